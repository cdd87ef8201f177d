/*
 * transport_tls: TLS over the wire's socket (see transport_tls.h).
 *
 * Per-connection state (struct tls_xport, in w->xport):
 *
 *   handshake   SSL_do_handshake on every arrival of ciphertext; its output
 *               leaves through flush_out. Client: the owner's connect cb runs
 *               after it. Server: a read of 0 bytes tells the owner.
 *   reading     want_read mirrors the wire's read state. The socket is read
 *               while the handshake runs or the owner wants plaintext; else
 *               it is stopped (TCP back-pressure). read_start delivers what
 *               OpenSSL already holds from a zero timer, never synchronously.
 *   writing     ct: the ciphertext of the one uv_write in flight (made only
 *               when uv_try_write left some); held: the wire's write waiting
 *               for that one (or for the handshake); ct_carries: the write
 *               in flight completes the wire's write.
 *   closing     SSL_shutdown + one uv_try_write of close_notify; the socket
 *               and the timer close; the later callback frees the state and
 *               calls the owner's close cb.
 */
#include "proxy/transport_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proxy/buf.h"
#include "proxy/client.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/tls_ctx.h"
#include "proxy/tls_stats.h"
#include "proxy/upstream.h"
#include "proxy/wire.h"

/* Spare empty BIOs of this thread: an idle connection holds none (see
 * attach and detach_if_idle); a BIO whose buffer grew past
 * TLS_BIO_KEEP is freed instead of kept. */
#define TLS_SPARE_BIOS 64
#define TLS_BIO_KEEP   (16 * 1024)

struct tls_xport {
    SSL *ssl;
    BIO *rbio, *wbio; /* attached to ssl while it has work; NULL when idle */
    uv_timer_t timer; /* deferred delivery */
    bool server;
    bool done;      /* handshake completed */
    bool fatal;     /* a fatal error: no SSL_shutdown */
    bool want_read; /* the owner reads */
    bool sock_reading;
    bool closing;
    int sock_end;       /* UV_EOF or an error read from the socket; 0 while open */
    int end_status;     /* the end to deliver to the owner (UV_EOF, UV_EPROTO...) */
    bool end_delivered; /* it was delivered: nothing more is */
    bool hello_due;     /* server: the 0-byte "handshake done" read is still to come */
    bool got_bytes;     /* the peer sent something (a probe that only connects did not) */

    struct buf ct; /* ciphertext of the uv_write in flight */
    bool ct_inflight;
    bool ct_carries; /* that write completes the wire's write */
    uv_buf_t held;   /* the wire's write, waiting */
    bool held_pending;

    uv_connect_t conn_req; /* the socket's connect, under the owner's */
    uv_connect_t *owner_req;
    uv_connect_cb owner_cb; /* set until called */

    int closes_left;
    uv_close_cb close_cb;

    SSL_CTX *ctx;                        /* client: for forgetting the session (ref held) */
    const struct config_addr *ep;        /* client: the endpoint dialled */
    struct tls_stats *stats;             /* this listener's or pool's */
    struct tls_endpoint_stats *ep_stats; /* client: its endpoint's */
    uint64_t started_ns;
    char err[160];
};

static _Thread_local uint8_t scratch[64 * 1024];

static struct tls_xport *xp(const struct wire *w)
{
    return w->xport;
}

/* ---- the sidecar around a wire ----------------------------------------------- */

static struct sidecar *wire_sidecar(const struct wire *w)
{
    return w->lc->sc;
}

static const char *owner_name(const struct wire *w, const char **kind)
{
    if (w->owner == WIRE_CLIENT) {
        *kind = "listener";
        return client_from_wire((struct wire *)w)->listener->lc->name;
    }
    *kind = "pool";
    return upstream_from_wire((struct wire *)w)->pool->pc->name;
}

/* ---- buffers ---------------------------------------------------------------- */

static _Thread_local BIO *spare_bios[TLS_SPARE_BIOS];
static _Thread_local size_t n_spare_bios;

static BIO *bio_get(void)
{
    return n_spare_bios ? spare_bios[--n_spare_bios] : BIO_new(BIO_s_mem());
}

static void bio_put(BIO *b)
{
    BUF_MEM *bm = NULL;
    BIO_get_mem_ptr(b, &bm);
    if (n_spare_bios < TLS_SPARE_BIOS && bm && bm->max <= TLS_BIO_KEEP && BIO_ctrl_pending(b) == 0)
        spare_bios[n_spare_bios++] = b;
    else
        BIO_free(b);
}

void transport_tls_cleanup(void)
{
    while (n_spare_bios)
        BIO_free(spare_bios[--n_spare_bios]);
}

/* Gives ssl its BIOs before any call that reads or writes records. */
static int attach(struct tls_xport *x)
{
    if (x->rbio)
        return 0;
    BIO *r = bio_get(), *w = bio_get();
    if (!r || !w) {
        if (r)
            bio_put(r);
        if (w)
            bio_put(w);
        return UV_ENOMEM;
    }
    SSL_set_bio(x->ssl, r, w);
    x->rbio = r;
    x->wbio = w;
    return 0;
}

/* Takes the BIOs back once both are empty after the handshake: an idle
 * connection costs its SSL object and nothing more. */
static void detach_if_idle(struct tls_xport *x)
{
    if (!x->rbio || !x->done || x->closing || BIO_ctrl_pending(x->rbio) ||
        BIO_ctrl_pending(x->wbio))
        return;
    BIO *r = x->rbio, *w = x->wbio;
    BIO_up_ref(r);
    BIO_up_ref(w);
    SSL_set_bio(x->ssl, NULL, NULL); /* drops ssl's references */
    x->rbio = x->wbio = NULL;
    bio_put(r);
    bio_put(w);
}

static size_t pending_bytes(BIO *b)
{
    return b ? BIO_ctrl_pending(b) : 0;
}

/* ---- writing ---------------------------------------------------------------- */

static void tls_write_cb(uv_write_t *req, int status);
static void timer_cb(uv_timer_t *t);

/*
 * Hands the wbio's ciphertext to the kernel: uv_try_write from the scratch
 * buffer, the rest (if any) in one uv_write. carries: that write completes
 * the wire's write. Returns 1 when everything was taken now, 0 when a
 * write is in flight, or a UV error. Call only with nothing in flight.
 */
static int flush_out(struct wire *w, bool carries)
{
    struct tls_xport *x = xp(w);
    size_t pending;
    while ((pending = pending_bytes(x->wbio)) > 0) {
        int n = BIO_read(x->wbio, scratch,
                         pending < sizeof(scratch) ? (int)pending : (int)sizeof(scratch));
        if (n <= 0)
            break;
        uv_buf_t b = uv_buf_init((char *)scratch, (unsigned)n);
        int t = uv_try_write(&w->h.stream, &b, 1);
        if (t == n)
            continue;
        if (t < 0 && t != UV_EAGAIN) {
            (void)BIO_reset(x->wbio);
            return t;
        }
        size_t took = t > 0 ? (size_t)t : 0;
        size_t rest = (size_t)n - took + BIO_ctrl_pending(x->wbio);
        if (buf_reserve(&x->ct, rest) != 0) {
            (void)BIO_reset(x->wbio);
            return UV_ENOMEM;
        }
        memcpy(x->ct.data, scratch + took, (size_t)n - took);
        x->ct.len = (size_t)n - took;
        while (x->ct.len < rest) {
            int m = BIO_read(x->wbio, x->ct.data + x->ct.len, (int)(rest - x->ct.len));
            if (m <= 0)
                break;
            x->ct.len += (size_t)m;
        }
        b = uv_buf_init((char *)x->ct.data, (unsigned)x->ct.len);
        w->write_req.data = w;
        int rc = uv_write(&w->write_req, &w->h.stream, &b, 1, tls_write_cb);
        if (rc < 0) {
            buf_free(&x->ct);
            return rc;
        }
        x->ct_inflight = true;
        x->ct_carries = carries;
        return 0;
    }
    return 1;
}

/* Encrypts the held write once the socket is free and the handshake done;
 * else sends what OpenSSL has to say (handshake, alerts). From the loop. */
static void push(struct wire *w)
{
    struct tls_xport *x = xp(w);
    if (x->closing || x->ct_inflight)
        return;
    if (!x->done || !x->held_pending) {
        (void)flush_out(w, false); /* an error shows on the read side */
        return;
    }
    x->held_pending = false;
    ERR_clear_error();
    int n = attach(x) == 0 ? SSL_write(x->ssl, x->held.base, (int)x->held.len) : -1;
    if (n <= 0) {
        tls_ctx_error_text(x->ssl, n, x->err, sizeof(x->err));
        x->fatal = true;
        wire_on_written(w, UV_EPROTO);
        return;
    }
    int rc = flush_out(w, true);
    if (rc > 0)
        detach_if_idle(x);
    if (rc != 0)
        wire_on_written(w, rc > 0 ? 0 : rc);
}

static void tls_write_cb(uv_write_t *req, int status)
{
    struct wire *w = req->data;
    struct tls_xport *x = xp(w);
    bool carries = x->ct_carries;
    x->ct_inflight = false;
    x->ct_carries = false;
    buf_free(&x->ct); /* only slow peers get here: no buffer kept */
    if (x->closing) {
        if (carries)
            wire_on_written(w, UV_ECANCELED);
        return;
    }
    if (status < 0) {
        if (carries) {
            wire_on_written(w, status);
        } else if (x->held_pending) {
            x->held_pending = false;
            wire_on_written(w, status);
        }
        return;
    }
    if (carries)
        wire_on_written(w, 0);
    if (!x->closing)
        push(w);
}

static int tls_try_write(struct wire *w, const uv_buf_t *buf)
{
    struct tls_xport *x = xp(w);
    if (x->fatal)
        return UV_EPROTO;
    if (x->closing || !x->done || x->ct_inflight || x->held_pending)
        return UV_EAGAIN;
    if (attach(x) != 0)
        return UV_EAGAIN; /* held, and retried from the loop */
    ERR_clear_error();
    int n = SSL_write(x->ssl, buf->base, (int)buf->len);
    if (n <= 0) {
        tls_ctx_error_text(x->ssl, n, x->err, sizeof(x->err));
        x->fatal = true;
        return UV_EPROTO;
    }
    int rc = flush_out(w, false);
    if (rc > 0)
        detach_if_idle(x);
    return rc < 0 ? rc : n;
}

static int tls_write(struct wire *w, const uv_buf_t *buf)
{
    struct tls_xport *x = xp(w);
    if (x->fatal)
        return UV_EPROTO;
    x->held = *buf;
    x->held_pending = true;
    /* try_write said EAGAIN: a write is in flight or the handshake runs;
     * their completion pushes the held bytes. */
    if (x->done && !x->ct_inflight)
        uv_timer_start(&x->timer, timer_cb, 0, 0); /* not expected; pushed from the loop */
    return 0;
}

static size_t tls_write_queue_size(const struct wire *w)
{
    const struct tls_xport *x = xp(w);
    return uv_stream_get_write_queue_size(&w->h.stream) + pending_bytes(x->wbio) +
           (x->held_pending ? x->held.len : 0);
}

/* ---- reading ---------------------------------------------------------------- */

static void tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    buf->base = (char *)scratch;
    buf->len = sizeof(scratch);
}

static void process(struct wire *w);
static void tls_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads the socket while the handshake runs or the owner wants data. */
static void update_socket(struct wire *w)
{
    struct tls_xport *x = xp(w);
    bool want = !x->closing && !x->sock_end && !x->end_status && (!x->done || x->want_read);
    if (want && !x->sock_reading) {
        if (uv_read_start(&w->h.stream, tls_alloc_cb, tls_read_cb) == 0)
            x->sock_reading = true;
    } else if (!want && x->sock_reading) {
        uv_read_stop(&w->h.stream);
        x->sock_reading = false;
    }
}

static void deliver_end(struct wire *w)
{
    struct tls_xport *x = xp(w);
    if (x->end_delivered || !x->want_read)
        return;
    x->end_delivered = true;
    uv_buf_t b = uv_buf_init(NULL, 0);
    w->read_cb(&w->h.stream, x->end_status, &b);
}

/* Hands the owner the plaintext OpenSSL has, one wire_alloc_cb buffer at a
 * time, while it reads. */
static void deliver(struct wire *w)
{
    struct tls_xport *x = xp(w);
    if (x->hello_due && x->want_read) {
        x->hello_due = false;
        uv_buf_t b = uv_buf_init(NULL, 0);
        w->read_cb(&w->h.stream, 0, &b);
    }
    while (x->want_read && !x->closing && !x->end_status) {
        uv_buf_t b;
        wire_alloc_cb(&w->h.handle, sizeof(scratch), &b);
        if (b.len == 0) {
            x->end_status = UV_ENOBUFS;
            break;
        }
        ERR_clear_error();
        int n = SSL_read(x->ssl, b.base, (int)b.len);
        if (n > 0) {
            w->read_cb(&w->h.stream, n, &b);
            continue;
        }
        int e = SSL_get_error(x->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            if (x->sock_end)
                x->end_status = x->sock_end;
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            x->end_status = UV_EOF;
            break;
        }
        tls_ctx_error_text(x->ssl, n, x->err, sizeof(x->err));
        x->fatal = true;
        x->end_status = UV_EPROTO;
    }
    if (x->end_status && !x->closing)
        deliver_end(w);
}

static void handshake_done(struct wire *w)
{
    struct tls_xport *x = xp(w);
    struct sidecar *sc = wire_sidecar(w);
    x->done = true;
    bool resumed = SSL_session_reused(x->ssl) == 1;
    if (x->stats) {
        x->stats->ok++;
        x->stats->resumed += resumed;
        histo_record(&x->stats->duration, (uv_hrtime() - x->started_ns) / 1000);
    }
    if (x->ep_stats) {
        x->ep_stats->handshakes++;
        x->ep_stats->resumed += resumed;
    }
    (void)sc;
    if (x->server) {
        x->hello_due = true;
        return;
    }
    uv_connect_cb cb = x->owner_cb;
    x->owner_cb = NULL;
    if (cb)
        cb(x->owner_req, 0);
}

static void handshake_failed(struct wire *w, int ret)
{
    struct tls_xport *x = xp(w);
    struct sidecar *sc = wire_sidecar(w);
    if (!x->ssl)
        ; /* the reason was set at install */
    else if (ret == 0 || (x->sock_end && SSL_get_error(x->ssl, ret) == SSL_ERROR_WANT_READ))
        snprintf(x->err, sizeof(x->err), "tls: connection closed during the handshake");
    else
        tls_ctx_error_text(x->ssl, ret, x->err, sizeof(x->err));
    x->fatal = true;
    x->end_status = UV_EPROTO;
    (void)flush_out(w, false); /* the alert, if OpenSSL made one */
    /* A peer that connected and left without a byte (a port probe) made
     * no handshake: nothing to count or log. */
    if (x->stats && (x->got_bytes || !x->server))
        tls_stats_failed(x->stats, x->err);
    if (x->server && !x->got_bytes)
        return;
    if (x->server) {
        char peer[64];
        wire_peer_name(w, peer, sizeof(peer));
        const char *kind, *name = owner_name(w, &kind);
        if (tls_log_allowed(&sc->tls_log, peer, uv_now(w->lc->loop)))
            log_warn("%s %s: TLS handshake with %s failed: %s", kind, name, peer, x->err);
        return;
    }
    if (x->ctx && x->ep)
        tls_ctx_client_forget(x->ctx, x->ep);
    uv_connect_cb cb = x->owner_cb;
    x->owner_cb = NULL;
    if (cb)
        cb(x->owner_req, UV_EPROTO);
}

/* Runs OpenSSL on what arrived: the handshake, then delivery. */
static void process(struct wire *w)
{
    struct tls_xport *x = xp(w);
    if (x->closing || x->end_delivered)
        return;
    if (x->ssl && attach(x) != 0 && !x->end_status) {
        snprintf(x->err, sizeof(x->err), "tls: out of memory");
        x->fatal = true;
        x->end_status = UV_ENOMEM;
    }
    if (!x->done && !x->end_status) {
        if (!x->ssl) { /* could not be made: fail like a handshake */
            handshake_failed(w, 0);
        } else {
            ERR_clear_error();
            int r = SSL_do_handshake(x->ssl);
            if (r == 1) {
                handshake_done(w);
            } else if (SSL_get_error(x->ssl, r) == SSL_ERROR_WANT_READ && !x->sock_end) {
                if (!x->ct_inflight)
                    (void)flush_out(w, false);
                update_socket(w);
                return;
            } else {
                handshake_failed(w, r);
            }
        }
        if (x->closing)
            return;
        if (!x->ct_inflight)
            push(w); /* held plaintext (agents' identify), session tickets */
        if (x->closing)
            return;
    }
    if (x->done || x->end_status)
        deliver(w);
    if (x->closing)
        return;
    if (!x->ct_inflight && pending_bytes(x->wbio))
        (void)flush_out(w, false); /* key update replies */
    if (!x->ct_inflight)
        detach_if_idle(x);
    update_socket(w);
}

static void tls_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wire *w = s->data;
    struct tls_xport *x = xp(w);
    if (x->closing)
        return;
    if (nread > 0) {
        x->got_bytes = true;
        if (!x->ssl || attach(x) != 0 || BIO_write(x->rbio, buf->base, (int)nread) != (int)nread) {
            x->sock_end = UV_ENOMEM;
            snprintf(x->err, sizeof(x->err), "tls: out of memory");
        }
    } else if (nread < 0) {
        x->sock_end = (int)nread;
        uv_read_stop(s);
        x->sock_reading = false;
    } else {
        return;
    }
    process(w);
}

static void timer_cb(uv_timer_t *t)
{
    struct wire *w = t->data;
    struct tls_xport *x = xp(w);
    if (x->closing)
        return;
    if (x->held_pending && !x->ct_inflight && x->done)
        push(w);
    if (!x->closing)
        process(w);
}

static int tls_read_start(struct wire *w)
{
    struct tls_xport *x = xp(w);
    x->want_read = true;
    if (!x->ssl || x->hello_due || x->end_status ||
        (x->done && (SSL_pending(x->ssl) > 0 || pending_bytes(x->rbio) > 0)))
        uv_timer_start(&x->timer, timer_cb, 0, 0);
    update_socket(w);
    return 0;
}

static void tls_read_stop(struct wire *w)
{
    struct tls_xport *x = xp(w);
    x->want_read = false;
    update_socket(w);
}

/* ---- connecting ------------------------------------------------------------- */

static void tls_connected(uv_connect_t *req, int status)
{
    struct wire *w = req->data;
    struct tls_xport *x = xp(w);
    if (status < 0 || x->closing) {
        uv_connect_cb cb = x->owner_cb;
        x->owner_cb = NULL;
        if (cb)
            cb(x->owner_req, status < 0 ? status : UV_ECANCELED);
        return;
    }
    x->started_ns = uv_hrtime();
    process(w); /* the ClientHello */
}

static int tls_connect(struct wire *w, uv_connect_t *req, const struct sockaddr *sa,
                       const char *path, uv_connect_cb cb)
{
    struct tls_xport *x = xp(w);
    x->owner_req = req;
    x->owner_cb = cb;
    x->conn_req.data = w;
    if (path) {
        uv_pipe_connect(&x->conn_req, &w->h.pipe, path, tls_connected);
        return 0;
    }
    int rc = uv_tcp_connect(&x->conn_req, &w->h.tcp, sa, tls_connected);
    if (rc)
        x->owner_cb = NULL;
    return rc;
}

/* ---- closing ---------------------------------------------------------------- */

static void closed_one(struct wire *w)
{
    struct tls_xport *x = xp(w);
    if (--x->closes_left > 0)
        return;
    uv_close_cb cb = x->close_cb;
    buf_free(&x->ct);
    SSL_free(x->ssl);
    SSL_CTX_free(x->ctx);
    free(x);
    w->xport = NULL;
    w->ops = &transport_stream; /* nothing moves any more; views see no TLS */
    cb(&w->h.handle);
}

static void timer_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void socket_closed(uv_handle_t *h)
{
    struct wire *w = h->data;
    struct tls_xport *x = xp(w);
    if (x->held_pending) {
        x->held_pending = false;
        wire_on_written(w, UV_ECANCELED);
    }
    uv_connect_cb cb = x->owner_cb;
    x->owner_cb = NULL;
    if (cb)
        cb(x->owner_req, UV_ECANCELED);
    closed_one(w);
}

static void tls_close(struct wire *w, uv_close_cb cb)
{
    struct tls_xport *x = xp(w);
    x->closing = true;
    x->close_cb = cb;
    x->want_read = false;
    if (x->sock_reading)
        uv_read_stop(&w->h.stream);
    x->sock_reading = false;
    uv_timer_stop(&x->timer);
    /* close_notify, without waiting for the peer's: keeps the session
     * resumable, and tells the peer this was no truncation. */
    if (x->ssl && x->done && !x->fatal && x->sock_end == 0 && attach(x) == 0) {
        ERR_clear_error();
        (void)SSL_shutdown(x->ssl);
        ERR_clear_error();
        if (!x->ct_inflight) {
            int n = BIO_read(x->wbio, scratch, (int)sizeof(scratch));
            if (n > 0) {
                uv_buf_t b = uv_buf_init((char *)scratch, (unsigned)n);
                (void)uv_try_write(&w->h.stream, &b, 1);
            }
        }
    }
    x->closes_left = 2;
    uv_close((uv_handle_t *)&x->timer, timer_closed);
    uv_close(&w->h.handle, socket_closed);
}

static int tls_peer_addr(const struct wire *w, struct sockaddr_storage *ss)
{
    return transport_stream.peer_addr(w, ss);
}

const struct transport_ops transport_tls = {
    .name = "tls",
    .connect = tls_connect,
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .try_write = tls_try_write,
    .write = tls_write,
    .write_queue_size = tls_write_queue_size,
    .close = tls_close,
    .peer_addr = tls_peer_addr,
};

/* ---- installing ------------------------------------------------------------- */

int transport_tls_install(struct wire *w, bool dialled)
{
    struct sidecar *sc = wire_sidecar(w);
    const struct tls_ctx_set *set = sc->tls;
    SSL_CTX *ctx = NULL;
    bool on, server;
    const char *kind = "pool", *name;
    const struct config_pool *pc = NULL;
    const struct config_addr *ep = NULL;
    if (w->owner == WIRE_CLIENT) {
        const struct listener *l = client_from_wire(w)->listener;
        on = l->lc->tls.enabled;
        server = true;
        kind = "listener";
        name = l->lc->name;
        size_t i = (size_t)(l->lc - l->cfg->listeners);
        if (on && set && l->cfg == sc->cfg && i < set->n_listeners)
            ctx = set->listeners[i];
    } else {
        const struct upstream_conn *up = upstream_from_wire(w);
        const struct pool *p = up->pool;
        pc = p->pc;
        server = pc->reverse;
        on = server ? pc->accept_tls.enabled : pc->tls.enabled;
        name = pc->name;
        ep = up->ep ? up->ep->addr : NULL;
        if (on && set && p->cfg == sc->cfg && p->index < set->n_pools)
            ctx = set->pools[p->index];
    }
    if (!on)
        return 0;
    if (dialled == server || (dialled && !ep))
        return UV_EINVAL;

    struct tls_xport *x = calloc(1, sizeof(*x));
    if (!x)
        return UV_ENOMEM;
    int rc = uv_timer_init(w->lc->loop, &x->timer);
    if (rc) {
        free(x);
        return rc;
    }
    x->timer.data = w;
    x->server = server;
    x->started_ns = uv_hrtime();
    x->stats = tls_stats_get(&sc->tls_stats, kind, name, server);
    if (ctx && !server) {
        x->ssl = tls_ctx_client_ssl(ctx, pc, ep);
        x->ep = ep;
        if (SSL_CTX_up_ref(ctx) == 1)
            x->ctx = ctx;
        if (x->stats)
            x->ep_stats = tls_stats_endpoint(x->stats, ep->text);
    } else if (ctx) {
        x->ssl = SSL_new(ctx);
        if (x->ssl)
            SSL_set_accept_state(x->ssl);
    }
    /* No context: a listener or pool left behind by a reload (its config
     * is not the current one). Its connections fail like a handshake. */
    snprintf(x->err, sizeof(x->err), "tls: %s",
             ctx ? "out of memory" : "no context (the configuration was replaced)");
    if (x->ssl)
        x->err[0] = '\0';
    w->xport = x;
    w->ops = &transport_tls;
    return 0;
}

bool transport_tls_get_info(const struct wire *w, struct transport_tls_info *out)
{
    memset(out, 0, sizeof(*out));
    const struct tls_xport *x = w->ops == &transport_tls ? xp(w) : NULL;
    if (!x)
        return false;
    out->done = x->done;
    if (!x->done || !x->ssl)
        return true;
    out->version = SSL_get_version(x->ssl);
    out->cipher = SSL_get_cipher_name(x->ssl);
    out->resumed = SSL_session_reused(x->ssl) == 1;
    X509 *peer = SSL_get0_peer_certificate(x->ssl);
    if (peer) {
        BIO *b = BIO_new(BIO_s_mem());
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
            int n = BIO_read(b, out->subject, sizeof(out->subject) - 1);
            out->subject[n > 0 ? n : 0] = '\0';
        }
        BIO_free(b);
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(peer), &tm) == 1)
            out->not_after = (int64_t)timegm(&tm);
    }
    return true;
}

const char *transport_tls_error(const struct wire *w)
{
    const struct tls_xport *x = w->ops == &transport_tls ? xp(w) : NULL;
    return x && x->err[0] ? x->err : NULL;
}

int transport_tls_peer_identity(const struct wire *w, char *buf, size_t size)
{
    const struct tls_xport *x = w->ops == &transport_tls ? xp(w) : NULL;
    if (!x || !x->ssl || !x->done)
        return UV_ENOENT;
    return tls_ctx_peer_identity(x->ssl, buf, size);
}
