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
#include "proxy/netaddr.h"
#include "proxy/reuseport.h"
#include "proxy/sidecar.h"

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

/* Binds l's address, or takes over the listening unix socket an older
 * process handed over (handoff.h); a unix socket gets its configured mode. */
static int bind_addr(struct listener *l, uv_loop_t *loop, char *err, size_t err_size)
{
    const struct config_addr *a = &l->lc->addr;
    int taken =
        a->kind == CONFIG_ADDR_UNIX ? handoff_take_unix_listener(l->sc, l->lc->name, a->path) : -1;
    int rc;
    if (taken >= 0) {
        rc = uv_pipe_init(loop, &l->h.pipe, 0);
        if (rc) {
            close(taken);
            return rc;
        }
        l->open = true;
        rc = uv_pipe_open(&l->h.pipe, taken);
        if (rc)
            snprintf(err, err_size, "bind %s: %s", a->path, uv_strerror(rc));
    } else {
        rc = netaddr_bind(loop, a, l->lc->reuse_port, "bind", &l->h, &l->open, err, err_size);
    }
    if (rc || a->kind != CONFIG_ADDR_UNIX)
        return rc;
    if (chmod(a->path, l->lc->unix_mode) != 0) {
        snprintf(err, err_size, "chmod %s: %s", a->path, strerror(errno));
        return uv_translate_sys_error(errno);
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
    int rc = bind_addr(l, sc->lc->loop, err, err_size);
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
