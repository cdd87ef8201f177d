/*
 * peer_service: the rpcs of the test service (see peer_service.h).
 *
 *   start --unknown--> Error 0 -----------------------------------> IDLE
 *   start --ClientStream--> COLLECT --CloseSend--> Message, CloseSend -> IDLE
 *   start --Bidi--> ECHO (Message -> Message) --CloseSend--> CloseSend -> IDLE
 *   start --other--> REQUEST --Message--> reply ----------------------> IDLE
 *                            \--Message(Sleep)--> SLEEP --timer--> reply -> IDLE
 *                            \--Message(ServerStream/Abort)--> SEND --> IDLE
 *                            \--CloseSend--> Error 0 "EOF" (Go's MsgRecv) -> IDLE
 *
 * SEND writes a message only while fewer than SEND_MARK bytes are on their
 * way to the peer; otherwise it waits for the conn's drain callback (or, when
 * the kernel took everything synchronously, for a zero timer), so a slow
 * reader holds back the stream rather than the server's memory.
 */
#include "tests/peer/peer_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/frame.h"

#define SEND_MARK       PEER_CONN_LOW_WATER
#define SEND_TURN_BYTES (1u << 20) /* then yield to the loop */
#define COLLECT_MAX     (64u << 20)
#define MAX_MESSAGE     PEER_READER_MAX_PACKET /* what a Go client accepts */

static const struct {
    const char *name;
    enum peer_rpc rpc;
} rpc_table[] = {
    {"Unary", PEER_RPC_UNARY},
    {"ClientStream", PEER_RPC_CLIENT_STREAM},
    {"ServerStream", PEER_RPC_SERVER_STREAM},
    {"Bidi", PEER_RPC_BIDI},
    {"Error", PEER_RPC_ERROR},
    {"Metadata", PEER_RPC_METADATA},
    {"Sleep", PEER_RPC_SLEEP},
    {"Conn", PEER_RPC_CONN},
    {"Abort", PEER_RPC_ABORT},
    {"Identify", PEER_RPC_IDENTIFY},
    {"TLSInfo", PEER_RPC_TLS_INFO},
};

static enum peer_rpc rpc_lookup(const uint8_t *name, size_t len)
{
    size_t plen = strlen(PEER_SERVICE_PREFIX);
    if (len <= plen || memcmp(name, PEER_SERVICE_PREFIX, plen) != 0)
        return PEER_RPC_UNKNOWN;
    name += plen;
    len -= plen;
    for (size_t i = 0; i < sizeof(rpc_table) / sizeof(rpc_table[0]); i++)
        if (strlen(rpc_table[i].name) == len && memcmp(rpc_table[i].name, name, len) == 0)
            return rpc_table[i].rpc;
    return PEER_RPC_UNKNOWN;
}

void peer_service_init(struct peer_stream *st, struct peer_conn *conn)
{
    *st = (struct peer_stream){0};
    st->conn = conn;
    st->state = PEER_STREAM_IDLE;
}

void peer_service_free(struct peer_stream *st)
{
    metadata_free(&st->md);
    buf_free(&st->acc);
    buf_free(&st->scratch);
}

/* Back to IDLE; drops what the stream held beyond a small reusable size. */
static void stream_end(struct peer_stream *st)
{
    st->state = PEER_STREAM_IDLE;
    metadata_free(&st->md);
    buf_reset(&st->acc);
    if (st->acc.cap > (1u << 20))
        buf_free(&st->acc);
    if (st->scratch.cap > (1u << 20))
        buf_free(&st->scratch);
}

/* --- replies ------------------------------------------------------------- */

static void send_message(struct peer_stream *st, const void *data, size_t len)
{
    peer_conn_packet(st->conn, FRAME_KIND_MESSAGE, st->sid, ++st->mid, data, len);
}

static void send_close_send(struct peer_stream *st)
{
    peer_conn_packet(st->conn, FRAME_KIND_CLOSE_SEND, st->sid, ++st->mid, NULL, 0);
}

/* Success: the reply message, then CloseSend, as drpcserver does. */
static void finish_ok(struct peer_stream *st, const void *data, size_t len)
{
    send_message(st, data, len);
    send_close_send(st);
    stream_end(st);
    peer_conn_flush(st->conn);
}

/* Failure: one Error packet, and nothing after it. */
static void finish_error(struct peer_stream *st, uint64_t code, const void *text, size_t len)
{
    peer_conn_error(st->conn, st->sid, ++st->mid, code, text, len);
    stream_end(st);
    peer_conn_flush(st->conn);
}

static void finish_error_str(struct peer_stream *st, uint64_t code, const char *text)
{
    finish_error(st, code, text, strlen(text));
}

/* --- unknown rpc: Go's %q of the name ------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_len(const uint8_t *p, size_t n)
{
    uint32_t c;
    size_t len;
    if (p[0] < 0xc2 || p[0] > 0xf4)
        return 0;
    len = p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
    if (n < len)
        return 0;
    c = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return len;
}

/*
 * Appends s quoted the way Go's %q does for the common cases: escapes for
 * quote, backslash and control bytes, \xNN for bytes that are not UTF-8.
 * (Go also escapes non-printable code points above ASCII; we keep them.)
 */
static int quote_go(struct buf *out, const uint8_t *s, size_t n)
{
    static const char esc[] = {['\a'] = 'a', ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n',
                               ['\r'] = 'r', ['\t'] = 't', ['\v'] = 'v'};
    int rc = buf_append(out, "\"", 1);
    for (size_t i = 0; i < n && rc == 0;) {
        uint8_t b = s[i];
        char tmp[8];
        if (b == '"' || b == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)b;
            rc = buf_append(out, tmp, 2);
            i++;
        } else if (b < sizeof(esc) && esc[b]) {
            tmp[0] = '\\';
            tmp[1] = esc[b];
            rc = buf_append(out, tmp, 2);
            i++;
        } else if (b >= 0x20 && b < 0x7f) {
            rc = buf_append(out, &b, 1);
            i++;
        } else if (b >= 0x80 && utf8_len(s + i, n - i) > 0) {
            size_t l = utf8_len(s + i, n - i);
            rc = buf_append(out, s + i, l);
            i += l;
        } else {
            snprintf(tmp, sizeof(tmp), "\\x%02x", b);
            rc = buf_append(out, tmp, 4);
            i++;
        }
    }
    return rc ? rc : buf_append(out, "\"", 1);
}

static void reply_unknown(struct peer_stream *st, const uint8_t *name, size_t len)
{
    static const char lead[] = "protocol error: unknown rpc: ";
    struct buf text = {0};
    if (buf_append(&text, lead, sizeof(lead) - 1) != 0 || quote_go(&text, name, len) != 0) {
        buf_free(&text);
        peer_conn_close(st->conn, "out of memory");
        return;
    }
    finish_error(st, 0, text.data, text.len);
    buf_free(&text);
}

/* --- the rpcs ------------------------------------------------------------- */

/* Parses up to two unsigned decimal numbers separated by one space.
 * Returns how many were found; *rest points after the first number's space. */
static int parse_numbers(const uint8_t *data, size_t len, uint64_t *a, uint64_t *b,
                         const uint8_t **rest, size_t *rest_len)
{
    char text[64];
    *rest = data;
    *rest_len = 0;
    if (len == 0)
        return 0;
    size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    const char *sp = memchr(data, ' ', len);
    *rest = sp ? (const uint8_t *)sp + 1 : data + len;
    *rest_len = (size_t)(data + len - *rest);
    char *end;
    if (n == 0 || text[0] < '0' || text[0] > '9')
        return 0;
    *a = strtoull(text, &end, 10);
    if (*end != ' ' || end[1] < '0' || end[1] > '9')
        return *end == ' ' || *end == '\0' ? 1 : 0;
    *b = strtoull(end + 1, &end, 10);
    return *end == '\0' ? 2 : 1;
}

static int cmp_pair(const void *x, const void *y)
{
    const struct metadata_pair *a = x, *b = y;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c != 0)
        return c;
    return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

static void rpc_metadata(struct peer_stream *st)
{
    struct buf out = {0};
    int rc = 0;
    if (st->md.n > 1)
        qsort(st->md.pairs, st->md.n, sizeof(st->md.pairs[0]), cmp_pair);
    for (size_t i = 0; i < st->md.n && rc == 0; i++) {
        const struct metadata_pair *p = &st->md.pairs[i];
        rc = buf_append(&out, p->key, p->key_len);
        rc = rc ? rc : buf_append(&out, "=", 1);
        rc = rc ? rc : buf_append(&out, p->value, p->value_len);
        rc = rc ? rc : buf_append(&out, "\n", 1);
    }
    if (rc)
        peer_conn_close(st->conn, "out of memory");
    else
        finish_ok(st, out.data, out.len);
    buf_free(&out);
}

static void send_more(struct peer_stream *st);

static void send_timer(uv_timer_t *t)
{
    send_more(t->data);
}

static void sleep_done(uv_timer_t *t)
{
    struct peer_stream *st = t->data;
    if (st->state == PEER_STREAM_SLEEP)
        finish_ok(st, "slept", 5);
}

/* Builds message k of a ServerStream or an Abort into scratch. */
static int build_message(struct peer_stream *st)
{
    buf_reset(&st->scratch);
    if (st->rpc == PEER_RPC_ABORT) {
        char m[32];
        int n = snprintf(m, sizeof(m), "abort-%" PRIu64, st->k);
        return buf_append(&st->scratch, m, (size_t)n);
    }
    int rc = buf_reserve(&st->scratch, (size_t)st->size);
    if (rc)
        return rc;
    uint8_t *p = st->scratch.data;
    unsigned v = (unsigned)(st->k % 251);
    for (uint64_t i = 0; i < st->size; i++) {
        p[i] = (uint8_t)v;
        if (++v == 251)
            v = 0;
    }
    st->scratch.len = (size_t)st->size;
    return 0;
}

/*
 * Sends ServerStream (or Abort) messages while the peer keeps up, then
 * CloseSend (or, for Abort, drops the connection without ending the stream).
 */
static void send_more(struct peer_stream *st)
{
    struct peer_conn *c = st->conn;
    size_t turn = 0;
    while (st->state == PEER_STREAM_SEND && peer_conn_usable(c)) {
        if (st->left == 0) {
            if (st->rpc == PEER_RPC_ABORT) {
                stream_end(st);
                peer_conn_shutdown(c, "abort rpc");
            } else {
                send_close_send(st);
                stream_end(st);
                peer_conn_flush(c);
            }
            return;
        }
        if (peer_conn_pending(c) >= SEND_MARK || turn >= SEND_TURN_BYTES) {
            peer_conn_flush(c);
            /* A queued write will call back on drain; if the kernel took
             * everything (or we are corked), look again on the next turn. */
            if (c->queued == 0 && peer_conn_usable(c)) {
                c->timer.data = st;
                uv_timer_start(&c->timer, send_timer, 0, 0);
            }
            return;
        }
        if (build_message(st) != 0) {
            peer_conn_close(c, "out of memory");
            return;
        }
        send_message(st, st->scratch.data, st->scratch.len);
        turn += st->scratch.len + 16;
        st->k++;
        st->left--;
    }
}

void peer_service_drain(struct peer_stream *st)
{
    if (st->state == PEER_STREAM_SEND)
        send_more(st);
}

/* The request of a unary-input rpc. */
static void on_request(struct peer_stream *st, const uint8_t *data, size_t len,
                       const struct peer_service_info *info)
{
    uint64_t a = 0, b = 0;
    const uint8_t *rest;
    size_t rest_len;
    int n = parse_numbers(data, len, &a, &b, &rest, &rest_len);
    char text[192];

    switch (st->rpc) {
    case PEER_RPC_UNARY:
        finish_ok(st, data, len);
        return;
    case PEER_RPC_ERROR:
        if (n < 1) {
            finish_error_str(st, 0, "bad request: want \"CODE MESSAGE\"");
            return;
        }
        finish_error(st, a, rest, rest_len);
        return;
    case PEER_RPC_METADATA:
        rpc_metadata(st);
        return;
    case PEER_RPC_SLEEP:
        if (n != 1 || rest_len != 0) {
            finish_error_str(st, 0, "bad request: want milliseconds");
            return;
        }
        st->state = PEER_STREAM_SLEEP;
        st->conn->timer.data = st;
        uv_timer_start(&st->conn->timer, sleep_done, a, 0);
        return;
    case PEER_RPC_CONN: {
        int k = snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64, info->conn_id, info->rpcs);
        finish_ok(st, text, (size_t)k);
        return;
    }
    case PEER_RPC_IDENTIFY:
        finish_ok(st, info->ident ? info->ident : "", info->ident ? strlen(info->ident) : 0);
        return;
    case PEER_RPC_TLS_INFO:
        peer_conn_tls_describe(st->conn, text, sizeof(text));
        finish_ok(st, text, strlen(text));
        return;
    case PEER_RPC_SERVER_STREAM:
        if (n != 2 || b > MAX_MESSAGE) {
            finish_error_str(st, 0, "bad request: want \"COUNT SIZE\", SIZE up to 4 MiB");
            return;
        }
        st->left = a;
        st->size = b;
        st->k = 0;
        st->state = PEER_STREAM_SEND;
        send_more(st);
        return;
    case PEER_RPC_ABORT:
        if (n != 1 || rest_len != 0) {
            finish_error_str(st, 0, "bad request: want a count");
            return;
        }
        st->left = a;
        st->k = 0;
        st->state = PEER_STREAM_SEND;
        send_more(st);
        return;
    case PEER_RPC_UNKNOWN:
    case PEER_RPC_CLIENT_STREAM:
    case PEER_RPC_BIDI:
        break;
    }
    stream_end(st); /* not reached: these never wait for a request */
}

void peer_service_start(struct peer_stream *st, uint64_t sid, const uint8_t *name, size_t len,
                        struct metadata *md, const struct peer_service_info *info)
{
    (void)info;
    stream_end(st);
    st->sid = sid;
    st->mid = 0;
    st->md = *md;
    *md = (struct metadata){0};
    st->rpc = rpc_lookup(name, len);
    switch (st->rpc) {
    case PEER_RPC_UNKNOWN:
        /* drpcmux answers before reading the request */
        reply_unknown(st, name, len);
        return;
    case PEER_RPC_CLIENT_STREAM:
        st->state = PEER_STREAM_COLLECT;
        return;
    case PEER_RPC_BIDI:
        st->state = PEER_STREAM_ECHO;
        return;
    default:
        st->state = PEER_STREAM_REQUEST;
        return;
    }
}

void peer_service_message(struct peer_stream *st, const uint8_t *data, size_t len,
                          const struct peer_service_info *info)
{
    switch (st->state) {
    case PEER_STREAM_REQUEST:
        on_request(st, data, len, info);
        return;
    case PEER_STREAM_COLLECT:
        if (len > COLLECT_MAX - st->acc.len) {
            finish_error_str(st, 0, "client stream too large");
            return;
        }
        if (buf_append(&st->acc, data, len) != 0)
            peer_conn_close(st->conn, "out of memory");
        return;
    case PEER_STREAM_ECHO:
        send_message(st, data, len);
        peer_conn_flush(st->conn);
        return;
    case PEER_STREAM_IDLE:
    case PEER_STREAM_SLEEP:
    case PEER_STREAM_SEND:
        return; /* Go buffers it for a MsgRecv that never comes */
    }
}

void peer_service_close_send(struct peer_stream *st)
{
    switch (st->state) {
    case PEER_STREAM_REQUEST:
        /* MsgRecv saw the end of the client's messages: drpcserver sends io.EOF */
        finish_error_str(st, 0, "EOF");
        return;
    case PEER_STREAM_COLLECT:
        finish_ok(st, st->acc.data, st->acc.len);
        return;
    case PEER_STREAM_ECHO:
        send_close_send(st);
        stream_end(st);
        peer_conn_flush(st->conn);
        return;
    case PEER_STREAM_IDLE:
    case PEER_STREAM_SLEEP:
    case PEER_STREAM_SEND:
        return; /* the handler does not read any more */
    }
}

void peer_service_cancel(struct peer_stream *st)
{
    if (st->state == PEER_STREAM_SLEEP || st->state == PEER_STREAM_SEND)
        uv_timer_stop(&st->conn->timer);
    stream_end(st);
}
