/*
 * drpc-bench: N client connections, each making one call at a time like a
 * real DRPC client (Invoke+Message+CloseSend in one write; after the reply,
 * Close and the next call in one write), on one libuv loop.
 *
 *   drpc-bench --addr ADDR --conns N --duration SECS [--size BYTES] [--warmup SECS]
 *              [--mode unary|stream] [--stream-count C --stream-size S]
 *              [--max-calls N] [--rpc NAME] [--header]
 *
 * Prints one line: rps= p50_us= p99_us= p999_us= errors= calls= mbps=
 * Every echo is checked; a wrong reply counts as an error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/handle.h"

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "tests/peer/peer_addr.h"

enum bench_mode {
    MODE_UNARY,
    MODE_STREAM,
};

struct bench_conn {
    union stream_handle h;
    uv_connect_t connect;
    uv_write_t write;
    struct buf in;
    struct buf out;
    struct buf inflight;
    bool writing;
    bool done;
    uint64_t sid;
    uint64_t started_ns;
    uint64_t reply_bytes;
    bool reply_ok;
};

static struct {
    const char *addr;
    int conns;
    double duration, warmup;
    size_t size;
    enum bench_mode mode;
    unsigned stream_count, stream_size;
    uint64_t max_calls;
    const char *rpc;
    bool header;
} opt = {NULL, 1, 5, 0, 64, MODE_UNARY, 4, 1 << 20, 0, NULL, false};

static uv_loop_t *loop;
static struct sockaddr_storage sa;
static const char *unix_path;
static uint8_t *payload;
static char stream_request[64];
static uint64_t t_start, t_measure, t_end;
static uint64_t calls, errors, bytes;
static uint32_t *lat;
static size_t n_lat, cap_lat;
static bool stopping;
static int open_conns;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void record(uint64_t ns)
{
    if (n_lat == cap_lat) {
        size_t cap = cap_lat ? cap_lat * 2 : 1 << 16;
        uint32_t *p = realloc(lat, cap * sizeof(*p));
        if (!p)
            return;
        lat = p;
        cap_lat = cap;
    }
    uint64_t us = ns / 1000;
    lat[n_lat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void conn_closed(uv_handle_t *h)
{
    struct bench_conn *c = h->data;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->inflight);
    free(c);
    open_conns--;
}

static void finish(struct bench_conn *c)
{
    if (c->done)
        return;
    c->done = true;
    uv_close(&c->h.handle, conn_closed);
}

static void flush(struct bench_conn *c);

static void write_cb(uv_write_t *req, int status)
{
    struct bench_conn *c = req->data;
    c->writing = false;
    buf_reset(&c->inflight);
    if (c->done)
        return;
    if (status < 0) {
        errors++;
        finish(c);
        return;
    }
    flush(c);
}

static void flush(struct bench_conn *c)
{
    if (c->writing || c->out.len == 0 || c->done)
        return;
    uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    int n = uv_try_write(&c->h.stream, &b, 1);
    if (n > 0)
        buf_consume(&c->out, (size_t)n);
    if (c->out.len == 0)
        return;
    /* The rest goes async: the in-flight bytes move to `inflight`, which
     * nothing touches until write_cb; new requests keep going to `out`. */
    struct buf t = c->inflight;
    c->inflight = c->out;
    c->out = t;
    buf_reset(&c->out);
    c->write.data = c;
    b = uv_buf_init((char *)c->inflight.data, (unsigned)c->inflight.len);
    c->writing = true;
    if (uv_write(&c->write, &c->h.stream, &b, 1, write_cb) != 0) {
        c->writing = false;
        errors++;
        finish(c);
    }
}

/* Appends the next call's request (and the Close of the previous stream). */
static void next_call(struct bench_conn *c)
{
    uint64_t now = now_ns();
    if (stopping || now >= t_end || (opt.max_calls && calls >= opt.max_calls)) {
        finish(c);
        return;
    }
    int rc = 0;
    if (c->sid)
        rc = frame_append(&c->out, FRAME_KIND_CLOSE, true, false, c->sid, 4, NULL, 0);
    c->sid++;
    if (opt.mode == MODE_UNARY) {
        const char *rpc = opt.rpc ? opt.rpc : "/test.Echo/Unary";
        rc = rc ||
             frame_append(&c->out, FRAME_KIND_INVOKE, true, false, c->sid, 1, rpc, strlen(rpc)) ||
             frame_append_packet(&c->out, FRAME_KIND_MESSAGE, c->sid, 2, payload, opt.size,
                                 64 * 1024) ||
             frame_append(&c->out, FRAME_KIND_CLOSE_SEND, true, false, c->sid, 3, NULL, 0);
    } else {
        const char *rpc = "/test.Echo/ServerStream";
        rc = rc ||
             frame_append(&c->out, FRAME_KIND_INVOKE, true, false, c->sid, 1, rpc, strlen(rpc)) ||
             frame_append(&c->out, FRAME_KIND_MESSAGE, true, false, c->sid, 2, stream_request,
                          strlen(stream_request)) ||
             frame_append(&c->out, FRAME_KIND_CLOSE_SEND, true, false, c->sid, 3, NULL, 0);
    }
    if (rc) {
        errors++;
        finish(c);
        return;
    }
    c->started_ns = now;
    c->reply_bytes = 0;
    c->reply_ok = true;
    flush(c);
}

static void call_done(struct bench_conn *c, bool ok)
{
    uint64_t now = now_ns();
    if (!ok)
        errors++;
    if (now >= t_measure && ok) {
        calls++;
        record(now - c->started_ns);
        bytes += c->reply_bytes;
    }
    next_call(c);
}

static void on_frame(struct bench_conn *c, const struct frame *f)
{
    if (f->stream_id != c->sid || f->control)
        return;
    switch (f->kind) {
    case FRAME_KIND_MESSAGE:
        if (opt.mode == MODE_UNARY && (c->reply_bytes + f->len > opt.size ||
                                       memcmp(f->data, payload + c->reply_bytes, f->len) != 0))
            c->reply_ok = false;
        c->reply_bytes += f->len;
        if (f->done && opt.mode == MODE_UNARY)
            call_done(c, c->reply_ok && c->reply_bytes == opt.size);
        return;
    case FRAME_KIND_CLOSE_SEND:
        if (opt.mode == MODE_STREAM)
            call_done(c, c->reply_bytes == (uint64_t)opt.stream_count * opt.stream_size);
        return;
    case FRAME_KIND_ERROR:
        call_done(c, false);
        return;
    default:
        return;
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct bench_conn *c = h->data;
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
    struct bench_conn *c = s->data;
    if (c->done)
        return;
    if (nread < 0) {
        if (!stopping && now_ns() < t_end)
            errors++;
        finish(c);
        return;
    }
    c->in.len += (size_t)nread;
    size_t pos = 0;
    for (;;) {
        struct frame f;
        size_t used;
        enum frame_result r = frame_parse(c->in.data + pos, c->in.len - pos, 16u << 20, &f, &used);
        if (r != FRAME_OK) {
            if (r < 0) {
                errors++;
                finish(c);
                return;
            }
            break;
        }
        pos += used;
        on_frame(c, &f);
        if (c->done)
            return;
    }
    buf_consume(&c->in, pos);
}

static void connected(uv_connect_t *req, int status)
{
    struct bench_conn *c = req->data;
    if (status < 0) {
        fprintf(stderr, "drpc-bench: connect %s: %s\n", opt.addr, uv_strerror(status));
        errors++;
        finish(c);
        return;
    }
    if (c->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&c->h.tcp, 1);
    if (opt.header && buf_append(&c->out, DRPC_HEADER, DRPC_HEADER_LEN) != 0) {
        finish(c);
        return;
    }
    uv_read_start(&c->h.stream, alloc_cb, read_cb);
    next_call(c);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(double q)
{
    if (!n_lat)
        return 0;
    size_t i = (size_t)(q * (double)(n_lat - 1));
    return lat[i];
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"conns", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"size", required_argument, NULL, 's'},
        {"mode", required_argument, NULL, 'm'},
        {"stream-count", required_argument, NULL, 'C'},
        {"stream-size", required_argument, NULL, 'S'},
        {"warmup", required_argument, NULL, 'w'},
        {"max-calls", required_argument, NULL, 'n'},
        {"rpc", required_argument, NULL, 'r'},
        {"header", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "a:c:d:s:m:C:S:w:n:r:H", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            opt.addr = optarg;
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 's':
            opt.size = (size_t)atol(optarg);
            break;
        case 'm':
            opt.mode = strcmp(optarg, "stream") == 0 ? MODE_STREAM : MODE_UNARY;
            break;
        case 'C':
            opt.stream_count = (unsigned)atoi(optarg);
            break;
        case 'S':
            opt.stream_size = (unsigned)atoi(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'n':
            opt.max_calls = (uint64_t)atoll(optarg);
            break;
        case 'r':
            opt.rpc = optarg;
            break;
        case 'H':
            opt.header = true;
            break;
        default:
            fprintf(stderr, "usage: drpc-bench --addr ADDR [--conns N] [--duration S] [--size B] "
                            "[--mode unary|stream] [--stream-count C] [--stream-size S] "
                            "[--warmup S] [--max-calls N] [--rpc NAME] [--header]\n");
            return 2;
        }
    }
    if (!opt.addr || peer_addr_parse(opt.addr, &sa, &unix_path) != 0) {
        fprintf(stderr, "drpc-bench: --addr host:port or unix:/path is required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    payload = malloc(opt.size ? opt.size : 1);
    for (size_t i = 0; i < opt.size; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    snprintf(stream_request, sizeof(stream_request), "%u %u", opt.stream_count, opt.stream_size);
    t_start = now_ns();
    t_measure = t_start + (uint64_t)(opt.warmup * 1e9);
    t_end = t_measure + (uint64_t)(opt.duration * 1e9);
    for (int i = 0; i < opt.conns; i++) {
        struct bench_conn *c = calloc(1, sizeof(*c));
        int rc = unix_path ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
        if (rc) {
            free(c);
            continue;
        }
        c->h.handle.data = c;
        c->connect.data = c;
        open_conns++;
        if (unix_path)
            uv_pipe_connect(&c->connect, &c->h.pipe, unix_path, connected);
        else if (uv_tcp_connect(&c->connect, &c->h.tcp, (struct sockaddr *)&sa, connected) != 0)
            finish(c);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(now_ns() - t_measure) / 1e9;
    if (secs > opt.duration)
        secs = opt.duration;
    qsort(lat, n_lat, sizeof(*lat), cmp_u32);
    printf("rps=%.1f p50_us=%u p99_us=%u p999_us=%u errors=%llu calls=%llu mbps=%.1f\n",
           secs > 0 ? (double)calls / secs : 0.0, pct(0.50), pct(0.99), pct(0.999),
           (unsigned long long)errors, (unsigned long long)calls,
           secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
    free(lat);
    free(payload);
    uv_loop_close(loop);
    return errors ? 1 : 0;
}
