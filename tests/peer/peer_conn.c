/*
 * peer_conn: the test peer's transport (see peer_conn.h).
 *
 *   IDLE --accept--> PREFIX --8 bytes ok--> OPEN <--drained-- BLOCKED
 *     \--connect--> CONNECTING --ok--------^  \--queued>HIGH--^
 *   any --close/reset/error--> CLOSING --both handles closed--> on_closed
 *   OPEN --shutdown--> SHUTDOWN --peer EOF--> CLOSING
 *   with TLS: accept/connect --> HANDSHAKE --done--> PREFIX or OPEN
 *
 * Writes: peer_conn_flush() first tries a synchronous uv_try_write() (no
 * allocation on the fast path) when nothing is queued, and queues the rest
 * as one uv_write that owns its bytes: small remainders are copied behind
 * the request, large ones take over the staging buffer. With TLS the
 * staged plaintext is encrypted into `cout` first, which is then written
 * the same way; handshake messages and alerts leave through `cout` too.
 */
#include "tests/peer/peer_conn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/frame.h"

#define READ_CHUNK     (64 * 1024)
#define KEEP_BUF_BYTES (1u << 20) /* idle buffers above this are released */

struct peer_write {
    uv_write_t req;
    struct peer_conn *conn;
    size_t len;
    struct buf owned; /* the staging buffer it took over, or empty */
    uint8_t copy[];   /* the bytes, when copied */
};

static void closed_one(struct peer_conn *c)
{
    if (--c->open_handles > 0)
        return;
    peer_reader_free(&c->rd);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->cin);
    buf_free(&c->cout);
    peer_tls_free(c->tls);
    c->tls = NULL;
    c->on_closed(c); /* the owner frees c here */
}

static void socket_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

/* The timer's data belongs to the owner, hence the way back by offset. */
static void timer_closed(uv_handle_t *h)
{
    closed_one((struct peer_conn *)((char *)h - offsetof(struct peer_conn, timer)));
}

int peer_conn_init(struct peer_conn *c, uv_loop_t *loop, enum peer_addr_kind kind,
                   peer_conn_packet_cb on_packet, peer_conn_cb on_closed)
{
    int rc =
        kind == PEER_ADDR_UNIX ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
    if (rc)
        return rc;
    uv_timer_init(loop, &c->timer); /* cannot fail */
    c->h.handle.data = c;
    c->open_handles = 2;
    c->kind = kind;
    c->state = PEER_CONN_IDLE;
    c->on_packet = on_packet;
    c->on_closed = on_closed;
    c->opened_ms = uv_now(loop);
    peer_reader_init(&c->rd, PEER_READER_MAX_PACKET);
    return 0;
}

static void handle_close(struct peer_conn *c, const char *reason, bool reset)
{
    if (c->state == PEER_CONN_CLOSING)
        return;
    if (c->tls && !reset && c->queued == 0 && peer_tls_ready(c->tls) && !c->error[0]) {
        /* close_notify, as Go's tls.Conn.Close sends: best effort, never queued */
        peer_tls_close_notify(c->tls);
        if (peer_tls_output(c->tls, &c->cout) == 0 && c->cout.len > 0) {
            uv_buf_t b = uv_buf_init((char *)c->cout.data, (unsigned)c->cout.len);
            (void)uv_try_write(&c->h.stream, &b, 1);
        }
    }
    c->state = PEER_CONN_CLOSING;
    c->close_reason = reason;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    if (reset && c->kind == PEER_ADDR_TCP && uv_tcp_close_reset(&c->h.tcp, socket_closed) == 0)
        return;
    uv_close(&c->h.handle, socket_closed);
}

void peer_conn_close(struct peer_conn *c, const char *reason)
{
    handle_close(c, reason, false);
}

void peer_conn_reset(struct peer_conn *c, const char *reason)
{
    handle_close(c, reason, true);
}

/* --- writing ------------------------------------------------------------- */

static void resume_reading(struct peer_conn *c);

static void write_done(uv_write_t *req, int status)
{
    struct peer_write *w = (struct peer_write *)req;
    struct peer_conn *c = w->conn;
    c->queued -= w->len;
    buf_free(&w->owned);
    free(w);
    if (c->state == PEER_CONN_CLOSING)
        return; /* UV_ECANCELED after close */
    if (status < 0) {
        peer_conn_close(c, "write error");
        return;
    }
    if (c->queued > PEER_CONN_LOW_WATER)
        return;
    if (c->state == PEER_CONN_BLOCKED)
        resume_reading(c);
    if (c->on_drain && (c->state == PEER_CONN_OPEN || c->state == PEER_CONN_PREFIX))
        c->on_drain(c);
}

static void stop_reading_if_flooded(struct peer_conn *c)
{
    if (c->state == PEER_CONN_OPEN && c->queued > PEER_CONN_HIGH_WATER) {
        uv_read_stop(&c->h.stream);
        c->state = PEER_CONN_BLOCKED;
    }
}

/* Writes src (the staging buffer or the ciphertext) to the socket: at once
 * if possible, the rest in one queued write that owns its bytes. */
static void send_buf(struct peer_conn *c, struct buf *src)
{
    size_t off = 0;
    if (c->queued == 0) {
        uv_buf_t b = uv_buf_init((char *)src->data, (unsigned)src->len);
        int n = uv_try_write(&c->h.stream, &b, 1);
        if (n >= 0) {
            off = (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            peer_conn_close(c, "write error");
            return;
        }
    }
    size_t rest = src->len - off;
    if (rest == 0) {
        buf_reset(src);
        if (src->cap > KEEP_BUF_BYTES)
            buf_free(src);
        return;
    }

    struct peer_write *w;
    const uint8_t *base;
    if (rest > READ_CHUNK) {
        w = calloc(1, sizeof(*w));
        if (w) {
            w->owned = *src; /* take the buffer instead of copying it */
            *src = (struct buf){0};
            base = w->owned.data + off;
        }
    } else {
        w = malloc(sizeof(*w) + rest);
        if (w) {
            w->owned = (struct buf){0};
            memcpy(w->copy, src->data + off, rest);
            buf_reset(src);
            base = w->copy;
        }
    }
    if (!w) {
        peer_conn_close(c, "out of memory");
        return;
    }
    w->conn = c;
    w->len = rest;
    uv_buf_t b = uv_buf_init((char *)base, (unsigned)rest);
    int rc = uv_write(&w->req, &c->h.stream, &b, 1, write_done);
    if (rc) {
        buf_free(&w->owned);
        free(w);
        peer_conn_close(c, "write error");
        return;
    }
    c->queued += rest;
    stop_reading_if_flooded(c);
}

/* Sends whatever ciphertext TLS produced (records, handshake, alerts). */
static void tls_send(struct peer_conn *c)
{
    if (peer_tls_output(c->tls, &c->cout) != 0) {
        peer_conn_close(c, "out of memory");
        return;
    }
    if (c->cout.len > 0)
        send_buf(c, &c->cout);
}

void peer_conn_flush_now(struct peer_conn *c)
{
    if (c->out.len == 0)
        return;
    if (c->state != PEER_CONN_PREFIX && c->state != PEER_CONN_OPEN &&
        c->state != PEER_CONN_BLOCKED) {
        if (c->state != PEER_CONN_CONNECTING && c->state != PEER_CONN_IDLE &&
            c->state != PEER_CONN_HANDSHAKE)
            buf_reset(&c->out); /* shut down or closing: nobody will read it */
        return;
    }
    c->bytes_out += c->out.len;
    if (!c->tls) {
        send_buf(c, &c->out);
        return;
    }
    if (peer_tls_write(c->tls, c->out.data, c->out.len) != 0) {
        snprintf(c->error, sizeof(c->error), "%s", peer_tls_error(c->tls));
        peer_conn_close(c, c->error);
        return;
    }
    buf_reset(&c->out);
    if (c->out.cap > KEEP_BUF_BYTES)
        buf_free(&c->out);
    tls_send(c);
}

void peer_conn_flush(struct peer_conn *c)
{
    if (c->cork == 0)
        peer_conn_flush_now(c);
}

void peer_conn_cork(struct peer_conn *c)
{
    c->cork++;
}

void peer_conn_uncork(struct peer_conn *c)
{
    if (--c->cork == 0)
        peer_conn_flush(c);
}

static bool staging(struct peer_conn *c)
{
    return peer_conn_usable(c) || c->state == PEER_CONN_IDLE;
}

void peer_conn_packet(struct peer_conn *c, uint8_t kind, uint64_t sid, uint64_t mid,
                      const void *data, size_t len)
{
    if (staging(c) && frame_append_packet(&c->out, kind, sid, mid, data, len, PEER_CONN_SPLIT) != 0)
        peer_conn_close(c, "out of memory");
}

void peer_conn_control(struct peer_conn *c, uint8_t kind, uint64_t sid, uint64_t mid)
{
    if (staging(c) && frame_append(&c->out, kind, true, true, sid, mid, NULL, 0) != 0)
        peer_conn_close(c, "out of memory");
}

void peer_conn_error(struct peer_conn *c, uint64_t sid, uint64_t mid, uint64_t code,
                     const void *text, size_t len)
{
    if (staging(c) && frame_append_error(&c->out, sid, mid, code, text, len) != 0)
        peer_conn_close(c, "out of memory");
}

void peer_conn_raw(struct peer_conn *c, const void *data, size_t len)
{
    if (staging(c) && buf_append(&c->out, data, len) != 0)
        peer_conn_close(c, "out of memory");
}

/* --- reading ------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct peer_conn *c = h->data;
    if (c->tls) {
        if (buf_reserve(&c->cin, READ_CHUNK) != 0) {
            b->base = NULL;
            b->len = 0;
            return;
        }
        b->base = (char *)c->cin.data + c->cin.len;
        b->len = c->cin.cap - c->cin.len;
        return;
    }
    if (c->state == PEER_CONN_SHUTDOWN)
        buf_reset(&c->in); /* input is read and dropped */
    /* Room for the whole partial frame at once when its size is known. */
    size_t want = c->rd.want > c->in.len ? c->rd.want - c->in.len : 0;
    if (want < READ_CHUNK)
        want = READ_CHUNK;
    if (buf_reserve(&c->in, want) != 0) {
        b->base = NULL;
        b->len = 0; /* read_cb gets UV_ENOBUFS */
        return;
    }
    b->base = (char *)c->in.data + c->in.len;
    b->len = c->in.cap - c->in.len;
}

/* Feeds `in` to the reader and the owner until it runs dry or c stops. */
static void process_input(struct peer_conn *c)
{
    size_t pos = 0;
    peer_conn_cork(c);
    while ((c->state == PEER_CONN_OPEN || c->state == PEER_CONN_BLOCKED) && pos < c->in.len) {
        struct peer_packet p;
        size_t used;
        enum peer_read_result r =
            peer_reader_next(&c->rd, c->in.data + pos, c->in.len - pos, &used, &p);
        pos += used;
        if (r == PEER_READ_MORE)
            break;
        if (r == PEER_READ_ERROR) {
            peer_conn_close(c, c->rd.error);
            break;
        }
        c->on_packet(c, &p);
    }
    buf_consume(&c->in, pos);
    if (c->in.len == 0 && c->in.cap > KEEP_BUF_BYTES)
        buf_free(&c->in);
    peer_conn_uncork(c);
}

/* A dialled TLS conn learns how its dial ended. */
static void connect_finished(struct peer_conn *c, int status)
{
    c->connect_pending = false;
    if (status != 0) {
        uv_read_stop(&c->h.stream);
        c->state = PEER_CONN_IDLE;
    }
    c->on_connect(c, status);
}

/* The handshake failed: the alert goes out, then the conn ends. */
static void tls_failed(struct peer_conn *c)
{
    snprintf(c->error, sizeof(c->error), "%s", peer_tls_error(c->tls));
    tls_send(c);
    if (c->state == PEER_CONN_CLOSING)
        return;
    if (c->connect_pending)
        connect_finished(c, UV_EPROTO);
    else
        peer_conn_close(c, c->error);
}

/*
 * Decrypts the nread ciphertext bytes just read into `cin`, appending the
 * plaintext to `in`. Returns true when the caller goes on with `in`, false
 * when c is still in its handshake, closed or handed back to its owner.
 */
static bool tls_input(struct peer_conn *c, size_t nread)
{
    c->cin.len += nread;
    enum peer_tls_result r = peer_tls_feed(c->tls, c->cin.data, c->cin.len, &c->in);
    buf_reset(&c->cin);
    if (c->cin.cap > KEEP_BUF_BYTES)
        buf_free(&c->cin);
    if (r == PEER_TLS_ERROR) {
        tls_failed(c);
        return false;
    }
    tls_send(c); /* handshake replies, tickets */
    if (c->state == PEER_CONN_CLOSING)
        return false;
    if (c->state == PEER_CONN_HANDSHAKE) {
        if (!peer_tls_ready(c->tls))
            return false;
        c->state = c->prefix_after_handshake ? PEER_CONN_PREFIX : PEER_CONN_OPEN;
        if (c->connect_pending) {
            connect_finished(c, 0);
            if (!peer_conn_usable(c))
                return false;
        }
        peer_conn_flush(c); /* what was staged during the handshake */
        if (!peer_conn_usable(c))
            return false;
    }
    return c->in.len > 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct peer_conn *c = s->data;
    if (c->state == PEER_CONN_CLOSING || nread == 0)
        return;
    if (nread < 0 && c->connect_pending) {
        snprintf(c->error, sizeof(c->error), "tls: connection closed during the handshake");
        connect_finished(c, UV_EPROTO);
        return;
    }
    if (nread < 0) {
        const char *why = nread == UV_EOF          ? "eof"
                          : nread == UV_ECONNRESET ? "connection reset"
                                                   : "read error";
        peer_conn_close(c, c->state == PEER_CONN_SHUTDOWN ? c->close_reason : why);
        return;
    }
    c->bytes_in += (uint64_t)nread;
    if (c->state == PEER_CONN_SHUTDOWN) {
        buf_reset(&c->cin);
        return;
    }
    if (!c->tls)
        c->in.len += (size_t)nread;
    else if (!tls_input(c, (size_t)nread))
        return;

    if (c->state == PEER_CONN_PREFIX) {
        /* drpcmigrate: the prefix or nothing; reject at the first wrong byte */
        size_t n = c->in.len < DRPC_HEADER_LEN ? c->in.len : DRPC_HEADER_LEN;
        if (memcmp(c->in.data, DRPC_HEADER, n) != 0) {
            peer_conn_reset(c, "no DRPC!!!1 prefix");
            return;
        }
        if (c->in.len < DRPC_HEADER_LEN)
            return;
        buf_consume(&c->in, DRPC_HEADER_LEN);
        c->state = PEER_CONN_OPEN;
    }
    process_input(c);
}

static void resume_reading(struct peer_conn *c)
{
    c->state = PEER_CONN_OPEN;
    if (uv_read_start(&c->h.stream, alloc_cb, read_cb) != 0) {
        peer_conn_close(c, "read error");
        return;
    }
    process_input(c); /* whatever arrived before the pause and was not parsed */
}

static int start_reading(struct peer_conn *c, enum peer_conn_state state)
{
    if (c->kind == PEER_ADDR_TCP)
        uv_tcp_nodelay(&c->h.tcp, 1); /* small packets wait on replies: no Nagle */
    c->state = state;
    return uv_read_start(&c->h.stream, alloc_cb, read_cb);
}

void peer_conn_set_tls(struct peer_conn *c, struct peer_tls_ctx *ctx)
{
    c->tls_ctx = ctx;
}

void peer_conn_tls_describe(const struct peer_conn *c, char *out, size_t len)
{
    if (c->tls)
        peer_tls_describe(c->tls, out, len);
    else
        snprintf(out, len, "plaintext");
}

const char *peer_conn_strerror(const struct peer_conn *c, int status)
{
    return status == UV_EPROTO && c->error[0] ? c->error : uv_strerror(status);
}

int peer_conn_accept(struct peer_conn *c, uv_stream_t *listener, bool expect_prefix)
{
    int rc = uv_accept(listener, &c->h.stream);
    if (rc)
        return rc;
    if (!c->tls_ctx)
        return start_reading(c, expect_prefix ? PEER_CONN_PREFIX : PEER_CONN_OPEN);
    c->tls = peer_tls_new(c->tls_ctx, NULL);
    if (!c->tls)
        return UV_ENOMEM;
    c->prefix_after_handshake = expect_prefix;
    return start_reading(c, PEER_CONN_HANDSHAKE);
}

static void connect_done(uv_connect_t *req, int status)
{
    struct peer_conn *c = req->data;
    if (c->state == PEER_CONN_CLOSING)
        return;
    if (status == 0)
        status = start_reading(c, c->tls ? PEER_CONN_HANDSHAKE : PEER_CONN_OPEN);
    if (status == 0 && c->tls) {
        /* on_connect waits for the handshake (tls_input) */
        c->connect_pending = true;
        if (peer_tls_start(c->tls) == PEER_TLS_ERROR)
            tls_failed(c);
        else
            tls_send(c); /* the ClientHello */
        return;
    }
    if (status != 0)
        c->state = PEER_CONN_IDLE;
    c->on_connect(c, status);
}

int peer_conn_connect(struct peer_conn *c, const struct peer_addr *addr,
                      peer_conn_connect_cb on_connect)
{
    c->on_connect = on_connect;
    c->connect_req.data = c;
    if (c->tls_ctx) {
        c->tls = peer_tls_new(
            c->tls_ctx, addr->kind == PEER_ADDR_TCP ? (const struct sockaddr *)&addr->sa : NULL);
        if (!c->tls)
            return UV_ENOMEM;
    }
    if (addr->kind == PEER_ADDR_UNIX) {
        uv_pipe_connect(&c->connect_req, &c->h.pipe, addr->path, connect_done);
    } else {
        int rc = uv_tcp_connect(&c->connect_req, &c->h.tcp, (const struct sockaddr *)&addr->sa,
                                connect_done);
        if (rc)
            return rc;
    }
    c->state = PEER_CONN_CONNECTING;
    return 0;
}

/* --- shutdown ------------------------------------------------------------ */

static void linger_done(uv_timer_t *t)
{
    struct peer_conn *c = t->data;
    peer_conn_close(c, c->close_reason); /* the peer never closed its side */
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
    struct peer_conn *c = req->data;
    if (c->state == PEER_CONN_CLOSING)
        return;
    if (status < 0) {
        peer_conn_close(c, c->close_reason);
        return;
    }
    /* Wait for the peer's EOF (read_cb closes), but not for ever. The
     * owner's use of the timer is over once the conn is shut down. */
    c->timer.data = c;
    uv_timer_start(&c->timer, linger_done, PEER_CONN_LINGER_MS, 0);
}

void peer_conn_shutdown(struct peer_conn *c, const char *reason)
{
    if (!peer_conn_usable(c) || c->state == PEER_CONN_CONNECTING ||
        c->state == PEER_CONN_HANDSHAKE) {
        peer_conn_close(c, reason);
        return;
    }
    peer_conn_flush_now(c);
    if (c->tls && peer_conn_usable(c)) {
        peer_tls_close_notify(c->tls);
        tls_send(c);
    }
    if (!peer_conn_usable(c))
        return; /* the flush failed and closed c */
    if (c->state == PEER_CONN_BLOCKED && uv_read_start(&c->h.stream, alloc_cb, read_cb) != 0) {
        peer_conn_close(c, reason);
        return;
    }
    c->state = PEER_CONN_SHUTDOWN;
    c->close_reason = reason;
    uv_timer_stop(&c->timer);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, &c->h.stream, shutdown_done) != 0)
        peer_conn_close(c, reason);
}

void peer_conn_peer_name(const struct peer_conn *c, char *out, size_t len)
{
    if (c->kind == PEER_ADDR_UNIX) {
        snprintf(out, len, "unix");
        return;
    }
    struct sockaddr_storage sa;
    int n = sizeof(sa);
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&sa, &n) != 0 ||
        peer_addr_format_sockaddr((struct sockaddr *)&sa, out, len) != 0)
        snprintf(out, len, "?");
}
