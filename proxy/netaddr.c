/* netaddr: binding configured addresses and naming peers (see netaddr.h). */
#include "proxy/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "proxy/reuseport.h"
#include "proxy/unix_path.h"

void netaddr_format(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        uv_ip4_name(v4, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(v4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(v6, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(v6->sin6_port));
    } else {
        snprintf(out, size, "?");
    }
}

void netaddr_peer_name(const uv_tcp_t *tcp, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, size, "?");
        return;
    }
    netaddr_format((const struct sockaddr *)&ss, out, size);
}

static int bind_unix(uv_loop_t *loop, const struct config_addr *a, const char *what,
                     union stream_handle *h, bool *opened, char *err, size_t err_size)
{
    char why[160];
    int rc = unix_path_claim(a->path, why, sizeof(why));
    if (rc) {
        snprintf(err, err_size, "%s %s: %s", what, a->text, why);
        return rc;
    }
    rc = uv_pipe_init(loop, &h->pipe, 0);
    if (rc == 0) {
        *opened = true;
        rc = unix_path_bind(&h->pipe, a->path);
    }
    if (rc)
        snprintf(err, err_size, "%s %s: %s", what, a->path, uv_strerror(rc));
    return rc;
}

static int bind_tcp(uv_loop_t *loop, const struct config_addr *a, bool reuse_port, const char *what,
                    union stream_handle *h, bool *opened, char *err, size_t err_size)
{
    struct sockaddr_storage ss;
    const char *host = strcmp(a->host, "localhost") == 0 ? "127.0.0.1" : a->host;
    if (uv_ip4_addr(host, a->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, a->port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, err_size, "%s %s: host must be an IP address", what, a->text);
        return UV_EINVAL;
    }
    int rc = uv_tcp_init_ex(loop, &h->tcp, ss.ss_family);
    if (rc == 0) {
        *opened = true;
        if (reuse_port && (rc = reuseport_enable(&h->tcp)) != 0) {
            snprintf(err, err_size, "%s %s: SO_REUSEPORT: %s", what, a->text, uv_strerror(rc));
            return rc;
        }
        rc = uv_tcp_bind(&h->tcp, (struct sockaddr *)&ss, 0);
    }
    if (rc)
        snprintf(err, err_size, "%s %s: %s", what, a->text, uv_strerror(rc));
    return rc;
}

int netaddr_bind(uv_loop_t *loop, const struct config_addr *a, bool reuse_port, const char *what,
                 union stream_handle *h, bool *opened, char *err, size_t err_size)
{
    *opened = false;
    if (a->kind == CONFIG_ADDR_UNIX)
        return bind_unix(loop, a, what, h, opened, err, err_size);
    return bind_tcp(loop, a, reuse_port, what, h, opened, err, err_size);
}
