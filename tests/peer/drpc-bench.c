/*
 * drpc-bench: DRPC load from N client connections on one libuv loop, each
 * making one call at a time through peer_client, like a real Go client.
 *
 *   drpc-bench --addr ADDR [--conns N] [--duration SECS] [--warmup SECS]
 *              [--size BYTES] [--rpc NAME] [--mode unary|stream]
 *              [--stream-count C] [--stream-size S] [--max-calls N]
 *              [--header] [--no-verify] [--reconnect] [TLS options]
 *
 * unary:  calls RPC (default /test.Echo/Unary) with SIZE bytes; each request
 *         is unique (connection and call number in its first 12 bytes) and
 *         the reply must echo it exactly.
 * stream: calls RPC (default /test.Echo/ServerStream) with "C S"; the reply
 *         must be C messages of S bytes, byte i of message k = (k+i)%251.
 *
 * A wrong reply, an Error, a lost connection or a failed dial counts as an
 * error; a lost connection is dialled again after 100 ms. Calls finishing
 * in the warmup are not measured. At the end it prints one line:
 *
 *   rps=R p50_us=A p99_us=B p999_us=C errors=E calls=N mbps=M
 *
 * (mbps: reply payload in 10^6 bytes per second). --reconnect makes each
 * call on a new connection (dial, one call, close). With TLS options
 * (tests/peer/README.md) the connections speak TLS and reuse the newest
 * session unless --tls-no-resume; the line then ends with
 * "tls_handshakes=H tls_resumed=R". Exit status 0 when
 * errors=0, 1 otherwise, 2 for bad arguments.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "tests/peer/peer_client.h"
#include "tests/peer/peer_histo.h"

#define NAME      "drpc-bench"
#define REDIAL_MS 100
#define GRACE_MS  5000 /* for calls still running at the end */
#define TAG_LEN   12   /* connection index (4) and call number (8) */

enum bench_mode {
    MODE_UNARY,
    MODE_STREAM,
};

enum bench_state {
    BENCH_RUNNING,  /* calls go on */
    BENCH_DRAINING, /* time is up or max-calls reached: no new calls */
};

enum bconn_state {
    BCONN_CONNECTING, /* dialling */
    BCONN_CALLING,    /* one call in flight */
    BCONN_PACING,     /* --rate: waiting for the next call's start time */
    BCONN_BACKOFF,    /* connection lost; waiting to dial again */
    BCONN_RECONNECT,  /* --reconnect: call done, client closing, then dial again */
    BCONN_CLOSING,    /* client closing; then the retry timer */
    BCONN_FINISHED,   /* every handle closed */
};

struct bconn {
    struct peer_client cl;
    uv_timer_t retry;
    enum bconn_state state;
    uint32_t index;
    uint64_t seq;
    uint8_t *req; /* unary request buffer (owned) */
    struct peer_msg msg;
    struct peer_call call;
    uint64_t started_ns;
    uint64_t due_ns; /* --rate: when the next call is due (a fixed schedule); 0 = not started */
    uint64_t got_msgs, got_bytes;
    bool bad; /* a reply did not match */
};

static struct {
    const char *addr_text;
    struct peer_addr addr;
    int conns;
    double duration, warmup;
    size_t size;
    enum bench_mode mode;
    uint64_t stream_count, stream_size;
    uint64_t max_calls;
    double rate; /* calls/s per connection; 0 = back to back */
    const char *rpc;
    bool header, verify, reconnect;
    struct peer_tls_opts tls_opts;
    struct peer_tls_ctx *tls;
} opt = {.conns = 1,
         .duration = 5,
         .size = 64,
         .stream_count = 4,
         .stream_size = 1 << 20,
         .verify = true};

static struct {
    uv_loop_t *loop;
    enum bench_state state;
    uv_timer_t deadline, grace;
    struct bconn *conns;
    int live; /* bconns not FINISHED */
    uint64_t t_measure, t_end, t_last;
    uint64_t started, calls, errors, bytes;
    bool max_reached; /* --max-calls ended the run before the deadline */
    char stream_req[64];
    struct peer_histo histo;
} run;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void conn_error(struct bconn *b, const char *what, const char *detail)
{
    run.errors++;
    if (run.errors <= 10)
        fprintf(stderr, NAME ": conn %u: %s%s%s\n", b->index, what, detail ? ": " : "",
                detail ? detail : "");
}

static void bconn_close(struct bconn *b)
{
    if (b->state == BCONN_CLOSING || b->state == BCONN_FINISHED)
        return;
    uv_timer_stop(&b->retry);
    b->state = BCONN_CLOSING;
    peer_client_close(&b->cl);
}

static void retry_closed(uv_handle_t *h)
{
    struct bconn *b = h->data;
    b->state = BCONN_FINISHED;
    free(b->req);
    b->req = NULL;
    if (--run.live == 0) {
        uv_close((uv_handle_t *)&run.deadline, NULL);
        uv_close((uv_handle_t *)&run.grace, NULL);
    }
}

/* --- calls ---------------------------------------------------------------- */

static void fill_tag(struct bconn *b)
{
    uint8_t tag[TAG_LEN];
    for (int i = 0; i < 4; i++)
        tag[i] = (uint8_t)(b->index >> (8 * i));
    for (int i = 0; i < 8; i++)
        tag[4 + i] = (uint8_t)(b->seq >> (8 * i));
    memcpy(b->req, tag, opt.size < TAG_LEN ? opt.size : TAG_LEN);
}

static void start_call(struct bconn *b)
{
    if (run.state == BENCH_RUNNING && opt.max_calls && run.started >= opt.max_calls) {
        run.state = BENCH_DRAINING; /* the window ends with the last call */
        run.max_reached = true;
    }
    if (run.state != BENCH_RUNNING) {
        bconn_close(b);
        return;
    }
    b->seq++;
    if (opt.mode == MODE_UNARY)
        fill_tag(b);
    b->got_msgs = b->got_bytes = 0;
    b->bad = false;
    b->started_ns = now_ns();
    int rc = peer_client_call(&b->cl, &b->call);
    if (rc) {
        conn_error(b, "call", uv_strerror(rc));
        bconn_close(b);
        return;
    }
    b->state = BCONN_CALLING;
    run.started++;
}

static bool stream_message_ok(uint64_t k, const uint8_t *p, size_t n)
{
    if (n != opt.stream_size)
        return false;
    unsigned v = (unsigned)(k % 251);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != v)
            return false;
        if (++v == 251)
            v = 0;
    }
    return true;
}

static struct bconn *bconn_of(struct peer_client *cl)
{
    return (struct bconn *)((char *)cl - offsetof(struct bconn, cl));
}

static void on_message(struct peer_client *cl, const uint8_t *data, size_t len)
{
    struct bconn *b = bconn_of(cl);
    if (opt.verify) {
        if (opt.mode == MODE_UNARY)
            b->bad |= len != opt.size || (len && memcmp(data, b->req, len) != 0);
        else
            b->bad |= !stream_message_ok(b->got_msgs, data, len);
    }
    b->got_msgs++;
    b->got_bytes += len;
}

static void on_pace(uv_timer_t *t)
{
    start_call(t->data);
}

static void on_done(struct peer_client *cl, const struct peer_call_result *r)
{
    struct bconn *b = bconn_of(cl);
    uint64_t t = now_ns();
    bool ok = r->status == PEER_CALL_OK && !b->bad;
    if (ok && opt.verify && opt.mode == MODE_STREAM)
        ok = b->got_msgs == opt.stream_count;
    if (ok && opt.mode == MODE_UNARY)
        ok = b->got_msgs == 1;

    if (!ok) {
        char detail[160];
        if (r->status == PEER_CALL_ERROR)
            snprintf(detail, sizeof(detail), "code=%" PRIu64 " text=%.*s", r->code,
                     (int)(r->text_len > 100 ? 100 : r->text_len), (const char *)r->text);
        else if (r->status != PEER_CALL_OK)
            snprintf(detail, sizeof(detail), "%s", r->why ? r->why : "");
        else
            snprintf(detail, sizeof(detail),
                     "wrong reply (%" PRIu64 " messages, %" PRIu64 " bytes)", b->got_msgs,
                     b->got_bytes);
        conn_error(b, peer_client_status_name(r->status), detail);
    } else if (t >= run.t_measure && t <= run.t_end) {
        run.calls++;
        run.bytes += b->got_bytes;
        run.t_last = t;
        peer_histo_record(&run.histo, t - b->started_ns);
    }
    if (r->status == PEER_CALL_LOST)
        return; /* on_closed follows and dials again */
    if (opt.reconnect && run.state == BENCH_RUNNING) {
        b->state = BCONN_RECONNECT; /* on_closed dials again */
        peer_client_close(cl);
        return;
    }
    if (opt.rate > 0 && run.state == BENCH_RUNNING) {
        /* A fixed schedule, not "a period after the last start": libuv
         * timers tick in whole ms and fire late, and a call that starts
         * late makes the next one due sooner, so the rate holds on average.
         * A call already due starts at once. */
        if (!b->due_ns)
            b->due_ns = b->started_ns;
        b->due_ns += (uint64_t)(1e9 / opt.rate);
        if (b->due_ns > t) {
            b->state = BCONN_PACING;
            uv_timer_start(&b->retry, on_pace, (b->due_ns - t + 999999) / 1000000, 0);
            return;
        }
    }
    start_call(b);
}

/* --- connections ---------------------------------------------------------- */

static void dial(struct bconn *b);

static void on_retry(uv_timer_t *t)
{
    struct bconn *b = t->data;
    if (run.state != BENCH_RUNNING) {
        b->state = BCONN_CLOSING;
        uv_close((uv_handle_t *)&b->retry, retry_closed);
        return;
    }
    dial(b);
}

static void on_closed(struct peer_client *cl)
{
    struct bconn *b = bconn_of(cl);
    if (b->state == BCONN_RECONNECT && run.state == BENCH_RUNNING) {
        b->state = BCONN_BACKOFF;
        uv_timer_start(&b->retry, on_retry, 0, 0); /* from the loop, not this callback */
        return;
    }
    if (b->state != BCONN_CLOSING && b->state != BCONN_RECONNECT && run.state == BENCH_RUNNING) {
        /* lost: dial again after a pause, like a client would */
        b->state = BCONN_BACKOFF;
        uv_timer_start(&b->retry, on_retry, REDIAL_MS, 0);
        return;
    }
    b->state = BCONN_CLOSING;
    uv_close((uv_handle_t *)&b->retry, retry_closed);
}

static void on_connect(struct peer_client *cl, int status)
{
    struct bconn *b = bconn_of(cl);
    if (status < 0) {
        conn_error(b, "connect", peer_conn_strerror(&cl->conn, status));
        b->state = BCONN_BACKOFF; /* on_closed schedules the retry */
        peer_client_close(cl);
        return;
    }
    start_call(b);
}

static void dial(struct bconn *b)
{
    memset(&b->cl, 0, sizeof(b->cl));
    int rc = peer_client_init(&b->cl, run.loop, opt.addr.kind, opt.header, on_done, on_closed);
    if (rc) {
        conn_error(b, "init", uv_strerror(rc));
        uv_timer_start(&b->retry, on_retry, REDIAL_MS, 0);
        return;
    }
    b->cl.on_message = on_message;
    peer_conn_set_tls(&b->cl.conn, opt.tls);
    b->state = BCONN_CONNECTING;
    rc = peer_client_connect(&b->cl, &opt.addr, on_connect);
    if (rc) {
        conn_error(b, "connect", uv_strerror(rc));
        b->state = BCONN_BACKOFF;
        peer_client_close(&b->cl);
    }
}

/* Starts connection index; on error nothing was started. */
static int bconn_start(struct bconn *b, uint32_t index)
{
    b->index = index;
    b->state = BCONN_FINISHED;
    if (opt.mode == MODE_UNARY) {
        b->req = malloc(opt.size ? opt.size : 1);
        if (!b->req)
            return UV_ENOMEM;
        for (size_t i = 0; i < opt.size; i++)
            b->req[i] = (uint8_t)(i * 7 + 1);
        b->msg = (struct peer_msg){b->req, opt.size};
        b->call.rpc = opt.rpc ? opt.rpc : "/test.Echo/Unary";
        b->call.shape = PEER_CALL_UNARY;
    } else {
        b->msg = (struct peer_msg){run.stream_req, strlen(run.stream_req)};
        b->call.rpc = opt.rpc ? opt.rpc : "/test.Echo/ServerStream";
        b->call.shape = PEER_CALL_SERVER_STREAM;
    }
    b->call.msgs = &b->msg;
    b->call.n_msgs = 1;
    uv_timer_init(run.loop, &b->retry);
    b->retry.data = b;
    run.live++;
    dial(b);
    return 0;
}

/* --- the run -------------------------------------------------------------- */

static void on_grace(uv_timer_t *t)
{
    (void)t;
    for (int i = 0; i < opt.conns; i++) {
        struct bconn *b = &run.conns[i];
        if (b->state == BCONN_CALLING)
            conn_error(b, "call still running at the end", NULL);
        if (b->state == BCONN_BACKOFF) {
            uv_timer_stop(&b->retry);
            b->state = BCONN_CLOSING;
            uv_close((uv_handle_t *)&b->retry, retry_closed);
        } else {
            bconn_close(b);
        }
    }
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    run.state = BENCH_DRAINING;
    for (int i = 0; i < opt.conns; i++) {
        struct bconn *b = &run.conns[i];
        if (b->state == BCONN_BACKOFF) {
            uv_timer_stop(&b->retry);
            b->state = BCONN_CLOSING;
            uv_close((uv_handle_t *)&b->retry, retry_closed);
        } else if (b->state == BCONN_CONNECTING || b->state == BCONN_PACING) {
            bconn_close(b);
        }
    }
    uv_timer_start(&run.grace, on_grace, GRACE_MS, 0);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: " NAME " --addr ADDR [--conns N] [--duration SECS] [--warmup SECS]\n"
               "                  [--size BYTES] [--rpc NAME] [--mode unary|stream]\n"
               "                  [--stream-count C] [--stream-size S] [--max-calls N]\n"
               "                  [--rate CALLS_PER_SEC_PER_CONN] [--header] [--no-verify]\n"
               "                  [--reconnect]\n" PEER_TLS_USAGE);
}

static bool parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"conns", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"size", required_argument, NULL, 's'},
        {"rpc", required_argument, NULL, 'r'},
        {"mode", required_argument, NULL, 'm'},
        {"stream-count", required_argument, NULL, 'C'},
        {"stream-size", required_argument, NULL, 'S'},
        {"max-calls", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'R'},
        {"header", no_argument, NULL, 'H'},
        {"no-verify", no_argument, NULL, 'V'},
        {"reconnect", no_argument, NULL, 'N'},
        PEER_TLS_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int o;
    char *end = NULL;
    while ((o = getopt_long(argc, argv, "a:c:d:w:s:r:m:C:S:n:R:HVN", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            opt.addr_text = optarg;
            break;
        case 'c':
            opt.conns = (int)strtol(optarg, &end, 10);
            if (opt.conns < 1 || opt.conns > 100000)
                return false;
            break;
        case 'd':
            opt.duration = strtod(optarg, &end);
            if (opt.duration <= 0)
                return false;
            break;
        case 'w':
            opt.warmup = strtod(optarg, &end);
            if (opt.warmup < 0)
                return false;
            break;
        case 's':
            opt.size = (size_t)strtoull(optarg, &end, 10);
            if (opt.size > PEER_READER_MAX_PACKET)
                return false;
            break;
        case 'r':
            opt.rpc = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "unary") == 0)
                opt.mode = MODE_UNARY;
            else if (strcmp(optarg, "stream") == 0)
                opt.mode = MODE_STREAM;
            else
                return false;
            break;
        case 'C':
            opt.stream_count = strtoull(optarg, &end, 10);
            break;
        case 'S':
            opt.stream_size = strtoull(optarg, &end, 10);
            if (opt.stream_size > PEER_READER_MAX_PACKET)
                return false;
            break;
        case 'n':
            opt.max_calls = strtoull(optarg, &end, 10);
            break;
        case 'R':
            opt.rate = strtod(optarg, &end);
            if (!(opt.rate == 0 || (opt.rate >= 0.01 && opt.rate <= 1e7))) /* also NaN */
                return false;
            break;
        case 'H':
            opt.header = true;
            break;
        case 'V':
            opt.verify = false;
            break;
        case 'N':
            opt.reconnect = true;
            break;
        default:
            if (peer_tls_opt_parse(&opt.tls_opts, o, optarg) != 1)
                return false;
        }
        if (end && *end != '\0')
            return false;
        end = NULL;
    }
    return optind == argc && opt.addr_text && peer_addr_parse(opt.addr_text, &opt.addr) == 0;
}

int main(int argc, char **argv)
{
    if (!parse_args(argc, argv)) {
        usage(stderr);
        return 2;
    }
    if (peer_tls_opts_wanted(&opt.tls_opts, false)) {
        char err[PEER_TLS_ERROR_MAX];
        opt.tls = peer_tls_ctx_new(&opt.tls_opts, false, err, sizeof(err));
        if (!opt.tls) {
            fprintf(stderr, NAME ": %s\n", err);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    run.loop = uv_default_loop();
    run.state = BENCH_RUNNING;
    snprintf(run.stream_req, sizeof(run.stream_req), "%" PRIu64 " %" PRIu64, opt.stream_count,
             opt.stream_size);
    run.conns = calloc((size_t)opt.conns, sizeof(*run.conns));
    if (!run.conns) {
        fprintf(stderr, NAME ": out of memory\n");
        return 1;
    }
    uint64_t t0 = now_ns();
    run.t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    run.t_end = run.t_measure + (uint64_t)(opt.duration * 1e9);
    uv_timer_init(run.loop, &run.deadline);
    uv_timer_init(run.loop, &run.grace);
    uv_timer_start(&run.deadline, on_deadline, (uint64_t)((opt.warmup + opt.duration) * 1e3), 0);
    for (int i = 0; i < opt.conns; i++) {
        if (bconn_start(&run.conns[i], (uint32_t)i) != 0) {
            fprintf(stderr, NAME ": out of memory\n");
            run.errors++;
            for (int j = i + 1; j < opt.conns; j++)
                run.conns[j].state = BCONN_FINISHED;
            on_deadline(NULL);
            break;
        }
    }
    if (run.live == 0) {
        uv_close((uv_handle_t *)&run.deadline, NULL);
        uv_close((uv_handle_t *)&run.grace, NULL);
    }

    uv_run(run.loop, UV_RUN_DEFAULT);

    /* the window: warmup end to the deadline, or to the last call with --max-calls */
    uint64_t end = run.max_reached ? run.t_last : run.t_end;
    double secs = end > run.t_measure ? (double)(end - run.t_measure) / 1e9 : 0;
    printf("rps=%.1f p50_us=%.0f p99_us=%.0f p999_us=%.0f errors=%" PRIu64 " calls=%" PRIu64
           " mbps=%.1f",
           secs > 0 ? (double)run.calls / secs : 0.0,
           (double)peer_histo_quantile(&run.histo, 0.50) / 1e3,
           (double)peer_histo_quantile(&run.histo, 0.99) / 1e3,
           (double)peer_histo_quantile(&run.histo, 0.999) / 1e3, run.errors, run.calls,
           secs > 0 ? (double)run.bytes / secs / 1e6 : 0.0);
    if (opt.tls) {
        uint64_t hs, resumed;
        peer_tls_ctx_counts(opt.tls, &hs, &resumed);
        printf(" tls_handshakes=%" PRIu64 " tls_resumed=%" PRIu64, hs, resumed);
    }
    printf("\n");
    fflush(stdout);
    peer_tls_ctx_free(opt.tls);
    if (uv_loop_close(run.loop) != 0)
        fprintf(stderr, NAME ": loop not closed cleanly\n");
    free(run.conns);
    return run.errors ? 1 : 0;
}
