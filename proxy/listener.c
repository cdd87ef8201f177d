/*
 * listener: binds a TCP or unix socket and accepts clients into client.c.
 * A stale unix socket file (nothing accepting on it) is replaced; a live
 * one is an error. TCP listeners set SO_REUSEPORT when configured, so a
 * new process can take over the port while the old one drains.
 */
#include "proxy/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/client.h"
#include "proxy/handoff.h"
#include "proxy/log.h"
#include "proxy/reuseport.h"
#include "proxy/sidecar.h"
#include "proxy/unix_path.h"

#define LISTEN_BACKLOG 511

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;
    if (status < 0) {
        log_warn("listener %s: accept error: %s", l->lc->name, uv_strerror(status));
        return;
    }
    client_accept(l, -1);
}

static int bind_unix(struct listener *l, uv_loop_t *loop, char *err, size_t err_size)
{
    const char *path = l->lc->addr.path;
    int taken = handoff_take_unix_listener(l->sc, l->lc->name, path);
    int rc = taken >= 0 ? 0 : unix_path_claim(path, err, err_size);
    if (rc)
        return rc;
    rc = uv_pipe_init(loop, &l->h.pipe, 0);
    if (rc) {
        if (taken >= 0)
            close(taken);
        return rc;
    }
    l->open = true;
    rc = taken >= 0 ? uv_pipe_open(&l->h.pipe, taken) : unix_path_bind(&l->h.pipe, path);
    if (rc) {
        snprintf(err, err_size, "bind %s: %s", path, uv_strerror(rc));
        return rc;
    }
    if (chmod(path, l->lc->unix_mode) != 0) {
        snprintf(err, err_size, "chmod %s: %s", path, strerror(errno));
        return uv_translate_sys_error(errno);
    }
    return 0;
}

static int bind_tcp(struct listener *l, uv_loop_t *loop, char *err, size_t err_size)
{
    const struct config_addr *a = &l->lc->addr;
    struct sockaddr_storage ss;
    const char *host = a->host;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, a->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, a->port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, err_size, "%s: listener host must be an IP address", a->text);
        return UV_EINVAL;
    }
    int rc = uv_tcp_init_ex(loop, &l->h.tcp, ss.ss_family);
    if (rc) {
        snprintf(err, err_size, "%s: %s", a->text, uv_strerror(rc));
        return rc;
    }
    l->open = true;
    if (l->lc->reuse_port && (rc = reuseport_enable(&l->h.tcp)) != 0) {
        snprintf(err, err_size, "%s: SO_REUSEPORT: %s", a->text, uv_strerror(rc));
        return rc;
    }
    rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
    if (rc) {
        snprintf(err, err_size, "bind %s: %s", a->text, uv_strerror(rc));
        return rc;
    }
    return 0;
}

static void listener_free(struct listener *l)
{
    config_unref(l->cfg);
    free(l);
}

static void listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    l->handle_closed = true;
    if (l->n_clients == 0)
        listener_free(l);
}

void listener_client_gone(struct listener *l)
{
    l->n_clients--;
    if (l->handle_closed && l->n_clients == 0)
        listener_free(l);
}

int listener_start(struct sidecar *sc, const struct config_listener *lc, struct listener **out,
                   char *err, size_t err_size)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l)
        return UV_ENOMEM;
    l->sc = sc;
    l->loop_ctx = sc->lc;
    l->cfg = config_ref(sc->cfg);
    l->lc = lc;
    int rc = lc->addr.kind == CONFIG_ADDR_UNIX ? bind_unix(l, sc->lc->loop, err, err_size)
                                               : bind_tcp(l, sc->lc->loop, err, err_size);
    l->h.handle.data = l;
    if (rc == 0) {
        rc = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
        if (rc)
            snprintf(err, err_size, "listen %s: %s", lc->addr.text, uv_strerror(rc));
    }
    if (rc) {
        if (l->open)
            uv_close(&l->h.handle, listener_closed);
        else
            listener_free(l);
        return rc;
    }
    log_info("listener %s: listening on %s", lc->name, lc->addr.text);
    *out = l;
    return 0;
}

/*
 * Takes every connection already queued on the listening socket before it
 * is closed. Closing a listening socket resets what is in its backlog; with
 * SO_REUSEPORT those are connections the kernel routed to this process
 * while a new one was already listening beside it, so a zero-downtime
 * upgrade would lose their calls. Bounded: at most one backlog's worth.
 */
static void accept_backlog(struct listener *l)
{
    uv_os_fd_t lfd;
    if (uv_fileno(&l->h.handle, &lfd) != 0)
        return;
    unsigned taken = 0;
    for (int i = 0; i < LISTEN_BACKLOG + 1; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN: the queue is empty */
        }
        client_accept(l, fd);
        taken++;
    }
    if (taken)
        log_info("listener %s: took %u queued connections before closing", l->lc->name, taken);
}

void listener_steer_here(struct listener *l)
{
    if (l->open && l->lc->addr.kind != CONFIG_ADDR_UNIX && l->lc->reuse_port) {
        char what[96];
        snprintf(what, sizeof(what), "listener %s", l->lc->name);
        reuseport_steer_here(&l->h.tcp, what);
    }
}

void listener_stop(struct listener *l, bool serve_queued)
{
    if (!l->open)
        return;
    if (serve_queued)
        accept_backlog(l);
    l->open = false;
    if (l->lc->addr.kind == CONFIG_ADDR_UNIX) {
        if (!handoff_unix_path_shared(l->sc, l->lc->addr.path)) {
            unlink(l->lc->addr.path);
        } else if (l->h.pipe.pipe_fname) {
            /* Another process listens on the path now: keep libuv from
             * unlinking the name it bound when the handle closes. */
            free((char *)l->h.pipe.pipe_fname);
            l->h.pipe.pipe_fname = NULL;
        }
    }
    uv_close(&l->h.handle, listener_closed);
}
