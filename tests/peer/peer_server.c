/*
 * peer_server: one connection of the C test service (see peer_server.h).
 *
 *   read -> frames -> packets (same stream+message id, until done)
 *        -> IDLE --Invoke--> stream of the rpc --> reply --> IDLE
 *
 * Server streams write the next message only when the socket has drained
 * below a mark, so a slow reader holds back the server, not its memory.
 */
#include "tests/peer/peer_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/handle.h"
#include "proxy/metadata.h"

#define SPLIT      (64 * 1024)
#define MAX_PACKET (4u << 20)
#define WRITE_MARK (256 * 1024)

enum stream_kind {
    STREAM_NONE,
    STREAM_UNARY,  /* waits for the first message */
    STREAM_CLIENT, /* collects messages until CloseSend */
    STREAM_BIDI,   /* echoes each message */
    STREAM_SLEEP,  /* timer running */
    STREAM_SERVER, /* sending COUNT messages */
};

struct peer_conn {
    struct peer_server *srv;
    union stream_handle h;
    uv_timer_t timer;
    int open_handles;
    bool closing;
    struct list_node node;
    uint64_t id;
    uint64_t rpcs;
    bool header_ok;

    struct buf in;
    /* packet being assembled */
    struct buf pkt;
    uint64_t pkt_sid, pkt_mid;
    uint8_t pkt_kind;
    bool pkt_open;

    /* current stream */
    uint64_t sid;
    uint64_t mid; /* last message id we sent on it */
    enum stream_kind kind;
    char rpc[256];
    struct buf acc; /* client stream: concatenation */
    struct buf meta;
    uint64_t meta_sid;
    /* server stream progress */
    uint64_t ss_left, ss_size, ss_k;

    size_t queued; /* bytes in flight */
};

struct write_req {
    uv_write_t req;
    struct buf data;
};

static void conn_closed(uv_handle_t *h)
{
    struct peer_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    c->srv->open_conns--;
    if (c->srv->on_closed)
        c->srv->on_closed(c->srv);
    fprintf(stderr, "drpc-testd: conn %llu closed\n", (unsigned long long)c->id);
    buf_free(&c->in);
    buf_free(&c->pkt);
    buf_free(&c->acc);
    buf_free(&c->meta);
    free(c);
}

static void conn_close(struct peer_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    list_remove(&c->node);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close(&c->h.handle, conn_closed);
}

static void continue_server_stream(struct peer_conn *c);

static void write_done(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct peer_conn *c = req->data;
    c->queued -= w->data.len;
    buf_free(&w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->kind == STREAM_SERVER)
        continue_server_stream(c);
}

/* Takes the bytes of out and writes them. */
static void send_buf(struct peer_conn *c, struct buf *out)
{
    if (c->closing || out->len == 0) {
        buf_free(out);
        return;
    }
    struct write_req *w = calloc(1, sizeof(*w));
    if (!w) {
        buf_free(out);
        conn_close(c);
        return;
    }
    w->data = *out;
    memset(out, 0, sizeof(*out));
    w->req.data = c;
    c->queued += w->data.len;
    uv_buf_t b = uv_buf_init((char *)w->data.data, (unsigned)w->data.len);
    if (uv_write(&w->req, &c->h.stream, &b, 1, write_done) != 0) {
        c->queued -= w->data.len;
        buf_free(&w->data);
        free(w);
        conn_close(c);
    }
}

static void reply(struct peer_conn *c, uint8_t kind, const void *data, size_t len)
{
    struct buf out = {0};
    if (frame_append_packet(&out, kind, c->sid, ++c->mid, data, len, SPLIT) != 0) {
        conn_close(c);
        return;
    }
    send_buf(c, &out);
}

static void finish_ok(struct peer_conn *c, const void *data, size_t len)
{
    struct buf out = {0};
    if (frame_append_packet(&out, FRAME_KIND_MESSAGE, c->sid, ++c->mid, data, len, SPLIT) ||
        frame_append(&out, FRAME_KIND_CLOSE_SEND, true, false, c->sid, ++c->mid, NULL, 0)) {
        conn_close(c);
        return;
    }
    c->kind = STREAM_NONE;
    send_buf(c, &out);
}

static void finish_error(struct peer_conn *c, uint64_t code, const char *text)
{
    struct buf out = {0};
    if (frame_append_error(&out, c->sid, ++c->mid, code, text, strlen(text))) {
        conn_close(c);
        return;
    }
    c->kind = STREAM_NONE;
    send_buf(c, &out);
}

static void continue_server_stream(struct peer_conn *c)
{
    while (c->kind == STREAM_SERVER && c->queued < WRITE_MARK && !c->closing) {
        if (c->ss_left == 0) {
            reply(c, FRAME_KIND_CLOSE_SEND, NULL, 0);
            c->kind = STREAM_NONE;
            return;
        }
        struct buf out = {0};
        uint8_t *msg = malloc(c->ss_size ? c->ss_size : 1);
        if (!msg) {
            conn_close(c);
            return;
        }
        for (uint64_t i = 0; i < c->ss_size; i++)
            msg[i] = (uint8_t)((c->ss_k + i) % 251);
        int rc = frame_append_packet(&out, FRAME_KIND_MESSAGE, c->sid, ++c->mid, msg,
                                     (size_t)c->ss_size, SPLIT);
        free(msg);
        if (rc) {
            conn_close(c);
            return;
        }
        c->ss_k++;
        c->ss_left--;
        send_buf(c, &out);
    }
}

static void sleep_done(uv_timer_t *t)
{
    struct peer_conn *c = t->data;
    if (c->kind == STREAM_SLEEP)
        finish_ok(c, "slept", 5);
}

/* The first request message of a unary-style rpc arrived. */
static void on_request(struct peer_conn *c, const uint8_t *data, size_t len)
{
    const char *name = c->rpc + strlen("/test.Echo/");
    char text[256];
    size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    if (strcmp(name, "Unary") == 0) {
        finish_ok(c, data, len);
    } else if (strcmp(name, "ServerStream") == 0) {
        unsigned long long count = 0, size = 0;
        if (sscanf(text, "%llu %llu", &count, &size) != 2 || size > MAX_PACKET) {
            finish_error(c, 3, "want \"COUNT SIZE\"");
            return;
        }
        c->kind = STREAM_SERVER;
        c->ss_left = count;
        c->ss_size = size;
        c->ss_k = 0;
        continue_server_stream(c);
    } else if (strcmp(name, "Error") == 0) {
        char *sp = strchr(text, ' ');
        finish_error(c, strtoull(text, NULL, 10), sp ? sp + 1 : "");
    } else if (strcmp(name, "Sleep") == 0) {
        c->kind = STREAM_SLEEP;
        uv_timer_start(&c->timer, sleep_done, strtoull(text, NULL, 10), 0);
    } else if (strcmp(name, "Conn") == 0) {
        char out[64];
        int k = snprintf(out, sizeof(out), "%llu %llu", (unsigned long long)c->id,
                         (unsigned long long)c->rpcs);
        finish_ok(c, out, (size_t)k);
    } else if (strcmp(name, "Identify") == 0) {
        finish_ok(c, c->srv->id ? c->srv->id : "", c->srv->id ? strlen(c->srv->id) : 0);
    } else if (strcmp(name, "Metadata") == 0) {
        struct metadata md = {0};
        const char *why;
        struct buf out = {0};
        if (c->meta_sid == c->sid && c->meta.len &&
            metadata_decode(c->meta.data, c->meta.len, NULL, &md, &why) != 0) {
            finish_error(c, 0, why);
            return;
        }
        /* sorted key=value lines */
        for (size_t i = 0; i < md.n; i++)
            for (size_t j = i + 1; j < md.n; j++)
                if (strcmp(md.pairs[j].key, md.pairs[i].key) < 0) {
                    struct metadata_pair t = md.pairs[i];
                    md.pairs[i] = md.pairs[j];
                    md.pairs[j] = t;
                }
        for (size_t i = 0; i < md.n; i++)
            if (buf_append(&out, md.pairs[i].key, md.pairs[i].key_len) ||
                buf_append(&out, "=", 1) ||
                buf_append(&out, md.pairs[i].value, md.pairs[i].value_len) ||
                buf_append(&out, "\n", 1))
                break;
        finish_ok(c, out.data, out.len);
        buf_free(&out);
        metadata_free(&md);
    } else if (strcmp(name, "Abort") == 0) {
        unsigned long long count = strtoull(text, NULL, 10);
        for (unsigned long long i = 0; i < count; i++) {
            char m[32];
            int k = snprintf(m, sizeof(m), "abort-%llu", i);
            reply(c, FRAME_KIND_MESSAGE, m, (size_t)k);
        }
        conn_close(c);
    }
}

static void start_stream(struct peer_conn *c, uint64_t sid, const uint8_t *name, size_t len)
{
    c->sid = sid;
    c->mid = 0;
    c->rpcs++;
    buf_reset(&c->acc);
    size_t n = len < sizeof(c->rpc) - 1 ? len : sizeof(c->rpc) - 1;
    memcpy(c->rpc, name, n);
    c->rpc[n] = '\0';
    if (strncmp(c->rpc, "/test.Echo/", 11) != 0) {
        c->kind = STREAM_UNARY;
    } else if (strcmp(c->rpc + 11, "ClientStream") == 0) {
        c->kind = STREAM_CLIENT;
        return;
    } else if (strcmp(c->rpc + 11, "Bidi") == 0) {
        c->kind = STREAM_BIDI;
        return;
    } else {
        static const char *const known[] = {"Unary", "ServerStream", "Error",    "Sleep",
                                            "Conn",  "Identify",     "Metadata", "Abort"};
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(c->rpc + 11, known[i]) == 0;
        c->kind = ok ? STREAM_UNARY : STREAM_NONE;
        if (ok)
            return;
    }
    char text[320];
    snprintf(text, sizeof(text), "protocol error: unknown rpc: \"%s\"", c->rpc);
    c->kind = STREAM_UNARY;
    finish_error(c, 0, text);
}

/* Ends the current stream without a reply (cancel, close, superseded). */
static void cancel_stream(struct peer_conn *c)
{
    if (c->kind == STREAM_SLEEP)
        uv_timer_stop(&c->timer);
    c->kind = STREAM_NONE;
}

static void on_packet(struct peer_conn *c, uint8_t kind, uint64_t sid, const uint8_t *data,
                      size_t len)
{
    if (kind == FRAME_KIND_INVOKE_METADATA) {
        buf_reset(&c->meta);
        if (buf_append(&c->meta, data, len) != 0)
            conn_close(c);
        c->meta_sid = sid;
        if (sid > c->sid)
            cancel_stream(c);
        return;
    }
    if (kind == FRAME_KIND_INVOKE) {
        if (sid <= c->sid) {
            conn_close(c); /* ids only grow */
            return;
        }
        cancel_stream(c);
        start_stream(c, sid, data, len);
        return;
    }
    if (sid != c->sid || c->kind == STREAM_NONE)
        return; /* late packet of an older stream, or after the end */
    switch (kind) {
    case FRAME_KIND_MESSAGE:
        if (c->kind == STREAM_UNARY) {
            c->kind = STREAM_NONE; /* on_request may set another */
            on_request(c, data, len);
        } else if (c->kind == STREAM_CLIENT) {
            if (buf_append(&c->acc, data, len) != 0)
                conn_close(c);
        } else if (c->kind == STREAM_BIDI) {
            reply(c, FRAME_KIND_MESSAGE, data, len);
        }
        return;
    case FRAME_KIND_CLOSE_SEND:
        if (c->kind == STREAM_CLIENT)
            finish_ok(c, c->acc.data, c->acc.len);
        else if (c->kind == STREAM_BIDI) {
            reply(c, FRAME_KIND_CLOSE_SEND, NULL, 0);
            c->kind = STREAM_NONE;
        }
        return;
    case FRAME_KIND_CANCEL:
    case FRAME_KIND_CLOSE:
    case FRAME_KIND_ERROR:
        cancel_stream(c);
        return;
    default:
        return;
    }
}

static void on_frame(struct peer_conn *c, const struct frame *f)
{
    if (f->control) {
        if (f->kind == FRAME_KIND_CANCEL && f->stream_id == c->sid)
            cancel_stream(c); /* soft cancel */
        return;
    }
    if (!c->pkt_open || f->stream_id != c->pkt_sid || f->message_id != c->pkt_mid) {
        buf_reset(&c->pkt); /* a new id discards an unfinished packet */
        c->pkt_sid = f->stream_id;
        c->pkt_mid = f->message_id;
        c->pkt_kind = f->kind;
        c->pkt_open = true;
    } else if (f->kind != c->pkt_kind) {
        conn_close(c);
        return;
    }
    if (c->pkt.len + f->len > MAX_PACKET || buf_append(&c->pkt, f->data, f->len) != 0) {
        conn_close(c); /* data overflow */
        return;
    }
    if (f->done) {
        c->pkt_open = false;
        on_packet(c, c->pkt_kind, c->pkt_sid, c->pkt.data, c->pkt.len);
        if (c->pkt.cap > 1 << 20)
            buf_free(&c->pkt);
        else
            buf_reset(&c->pkt);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct peer_conn *c = h->data;
    if (buf_reserve(&c->in, 64 * 1024) != 0) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = (char *)c->in.data + c->in.len;
    b->len = c->in.cap - c->in.len;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct peer_conn *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    size_t pos = 0;
    if (c->srv->header && !c->header_ok) {
        if (c->in.len < DRPC_HEADER_LEN)
            return;
        if (memcmp(c->in.data, DRPC_HEADER, DRPC_HEADER_LEN) != 0) {
            conn_close(c);
            return;
        }
        c->header_ok = true;
        pos = DRPC_HEADER_LEN;
    }
    for (;;) {
        struct frame f;
        size_t used;
        enum frame_result r = frame_parse(c->in.data + pos, c->in.len - pos, MAX_PACKET, &f, &used);
        if (r == FRAME_NEED_MORE)
            break;
        if (r != FRAME_OK) {
            conn_close(c);
            return;
        }
        pos += used;
        on_frame(c, &f);
        if (c->closing)
            return;
    }
    buf_consume(&c->in, pos);
}

static struct peer_conn *conn_new(struct peer_server *srv, bool unix_socket)
{
    struct peer_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->srv = srv;
    int rc =
        unix_socket ? uv_pipe_init(srv->loop, &c->h.pipe, 0) : uv_tcp_init(srv->loop, &c->h.tcp);
    if (rc) {
        free(c);
        return NULL;
    }
    c->h.handle.data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->id = ++srv->next_conn_id;
    srv->open_conns++;
    list_push_back(&srv->conns, &c->node);
    return c;
}

static void conn_start(struct peer_conn *c)
{
    if (c->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&c->h.tcp, 1);
    fprintf(stderr, "drpc-testd: conn %llu open\n", (unsigned long long)c->id);
    uv_read_start(&c->h.stream, alloc_cb, read_cb);
}

void peer_server_accept(struct peer_server *srv, uv_stream_t *listener)
{
    struct peer_conn *c = conn_new(srv, listener->type == UV_NAMED_PIPE);
    if (!c)
        return;
    if (uv_accept(listener, &c->h.stream) != 0) {
        conn_close(c);
        return;
    }
    conn_start(c);
}

static void dial_done(uv_connect_t *req, int status)
{
    struct peer_conn *c = req->data;
    free(req);
    if (c->closing)
        return;
    if (status < 0) {
        fprintf(stderr, "drpc-agent: connect: %s\n", uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->srv->header) {
        /* an agent sends the prefix; it does not expect one back */
        struct buf out = {0};
        if (buf_append(&out, DRPC_HEADER, DRPC_HEADER_LEN) == 0)
            send_buf(c, &out);
        c->header_ok = true;
    }
    conn_start(c);
}

int peer_server_dial(struct peer_server *srv, const struct sockaddr *sa, const char *unix_path)
{
    struct peer_conn *c = conn_new(srv, unix_path != NULL);
    if (!c)
        return UV_ENOMEM;
    c->header_ok = !srv->header;
    uv_connect_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_close(c);
        return UV_ENOMEM;
    }
    req->data = c;
    if (unix_path) {
        uv_pipe_connect(req, &c->h.pipe, unix_path, dial_done);
        return 0;
    }
    int rc = uv_tcp_connect(req, &c->h.tcp, sa, dial_done);
    if (rc) {
        free(req);
        conn_close(c);
    }
    return rc;
}

void peer_server_init(struct peer_server *srv, uv_loop_t *loop)
{
    srv->loop = loop;
    list_init(&srv->conns);
}

void peer_server_close_all(struct peer_server *srv)
{
    while (!list_empty(&srv->conns))
        conn_close(list_entry(list_first(&srv->conns), struct peer_conn, node));
}
