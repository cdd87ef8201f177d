/* agent: reverse-pool listener (see agent.h). */
#include "proxy/agent.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/loop_ctx.h"
#include "proxy/netaddr.h"
#include "proxy/pool.h"
#include "proxy/reuseport.h"
#include "proxy/upstream.h"

/* The slot of peer's IP: its own, or the one warned about longest ago. */
static struct agent_warn_slot *warn_slot(struct agent_listener *al, const char *ip)
{
    struct agent_warn_slot *oldest = &al->warn[0];
    for (size_t i = 0; i < AGENT_WARN_SLOTS; i++) {
        struct agent_warn_slot *w = &al->warn[i];
        if (strcmp(w->peer, ip) == 0)
            return w;
        if (w->last_ms < oldest->last_ms)
            oldest = w;
    }
    snprintf(oldest->peer, sizeof(oldest->peer), "%s", ip);
    oldest->last_ms = 0;
    oldest->suppressed = 0;
    return oldest;
}

void agent_peer_ip(const char *peer, char *out, size_t size)
{
    snprintf(out, size, "%s", peer);
    char *colon = strrchr(out, ':');
    if (colon && colon != out && strchr(out, ':') != colon && out[0] != '[')
        return; /* a bare IPv6 address: no port */
    if (colon && colon != out)
        *colon = '\0';
}

void agent_warn(struct pool *p, const char *peer, const char *fmt, ...)
{
    char ip[64];
    agent_peer_ip(peer, ip, sizeof(ip));
    uint64_t suppressed = 0;
    if (p->agents) {
        uint64_t now = uv_now(p->lc->loop);
        struct agent_warn_slot *w = warn_slot(p->agents, ip);
        if (w->last_ms && now - w->last_ms < AGENT_WARN_INTERVAL_MS) {
            w->suppressed++;
            p->stats.agent_warnings_suppressed++;
            return;
        }
        w->last_ms = now ? now : 1;
        suppressed = w->suppressed;
        w->suppressed = 0;
    }
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (suppressed)
        log_warn("%s (%llu more from %s suppressed)", text, (unsigned long long)suppressed, ip);
    else
        log_warn("%s", text);
}

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
    char what[96];
    snprintf(what, sizeof(what), "pool %s: accept", p->pc->name);
    /* SO_REUSEPORT: agents move to a newer process too. */
    int rc = netaddr_bind(loop, a, true, what, &al->h, &al->open, err, err_size);
    al->h.handle.data = al;
    if (rc == 0) {
        rc = uv_listen(&al->h.stream, 128, on_agent_connection);
        if (rc)
            snprintf(err, err_size, "%s %s: %s", what, a->text, uv_strerror(rc));
    }
    if (rc) {
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
