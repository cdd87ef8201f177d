/* agent: reverse-pool listener (see agent.h). */
#include "proxy/agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/sidecar.h"
#include "proxy/pool.h"
#include "proxy/reuseport.h"
#include "proxy/unix_path.h"
#include "proxy/upstream.h"

static void on_agent_connection(uv_stream_t *server, int status)
{
    struct agent_listener *al = server->data;
    if (status < 0) {
        log_warn("pool %s: agent accept error: %s", al->pool->pc->name, uv_strerror(status));
        return;
    }
    upstream_accept(al->pool, server);
}

static void agent_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

int agent_listener_start(struct pool *p, struct agent_listener **out, char *err, size_t err_size)
{
    const struct config_addr *a = &p->pc->accept;
    uv_loop_t *loop = p->lc->loop;
    struct agent_listener *al = calloc(1, sizeof(*al));
    if (!al)
        return UV_ENOMEM;
    al->pool = p;
    int rc;
    if (a->kind == CONFIG_ADDR_UNIX) {
        char why[160];
        rc = unix_path_claim(a->path, why, sizeof(why));
        if (rc) {
            snprintf(err, err_size, "pool %s: accept: %s", p->pc->name, why);
            free(al);
            return rc;
        }
        rc = uv_pipe_init(loop, &al->h.pipe, 0);
        if (rc == 0) {
            al->open = true;
            rc = unix_path_bind(&al->h.pipe, a->path);
        }
    } else {
        struct sockaddr_storage ss;
        const char *host = strcmp(a->host, "localhost") == 0 ? "127.0.0.1" : a->host;
        if (uv_ip4_addr(host, a->port, (struct sockaddr_in *)&ss) != 0 &&
            uv_ip6_addr(host, a->port, (struct sockaddr_in6 *)&ss) != 0) {
            snprintf(err, err_size, "pool %s: accept %s: host must be an IP address", p->pc->name,
                     a->text);
            free(al);
            return UV_EINVAL;
        }
        rc = uv_tcp_init_ex(loop, &al->h.tcp, ss.ss_family);
        if (rc == 0) {
            al->open = true;
            rc = reuseport_enable(&al->h.tcp); /* agents move to a newer process too */
        }
        if (rc == 0)
            rc = uv_tcp_bind(&al->h.tcp, (struct sockaddr *)&ss, 0);
    }
    al->h.handle.data = al;
    if (rc == 0)
        rc = uv_listen(&al->h.stream, 128, on_agent_connection);
    if (rc) {
        snprintf(err, err_size, "pool %s: accept %s: %s", p->pc->name, a->text, uv_strerror(rc));
        if (al->open)
            uv_close(&al->h.handle, agent_listener_closed);
        else
            free(al);
        return rc;
    }
    log_info("pool %s: accepting agents on %s", p->pc->name, a->text);
    *out = al;
    return 0;
}

void agent_listener_stop(struct agent_listener *al)
{
    if (!al->open)
        return;
    al->open = false;
    if (al->pool->pc->accept.kind == CONFIG_ADDR_UNIX)
        unlink(al->pool->pc->accept.path);
    uv_close(&al->h.handle, agent_listener_closed);
}

void agent_listener_steer_here(struct agent_listener *al)
{
    if (al && al->open && al->pool->pc->accept.kind != CONFIG_ADDR_UNIX) {
        char what[96];
        snprintf(what, sizeof(what), "pool %s agents", al->pool->pc->name);
        reuseport_steer_here(&al->h.tcp, what);
    }
}
