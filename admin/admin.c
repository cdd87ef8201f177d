/*
 * admin: the admin server's listener and connections (see admin.h).
 *
 *        accept (more than ADMIN_MAX_CONNS open: 503, then close)
 *          |
 *          v
 *   +-> [READING] --complete request--> [QUEUED] --pump: route--+--> [WRITING]
 *   |      | malformed or too large: 4xx ----------------------> |       ^  |
 *   |      | timeout: nothing sent yet -> close,                 |       |  |
 *   |      |          part of a request -> 408 --------------->  |       |  |
 *   |      |                                     POST /reload -> [WAITING] |
 *   |      |                       large page -> [PRODUCING] --complete-+  |
 *   |      |                                      ^  pump: one slice |     |
 *   |      |                                      +------------------+     |
 *   +------+-------------------- keep-alive <-----------------------------+
 *                                                                      | last answer
 *                                                                      v
 *        [LINGERING]: FIN sent, input read and dropped until the client's EOF
 *        or ADMIN_LINGER_MS, so the kernel does not reset the connection (and
 *        lose the answer) because of request bytes we never read --> close
 *
 * The pump: complete requests and pages in production wait on
 * admin.queue, FIFO; an idle handle takes at most ADMIN_PUMP_REQUESTS of
 * them per loop iteration (answering a request, or writing one slice of a
 * page, pages.h) and starts none after ADMIN_PUMP_BUDGET_NS. A page not
 * complete after its slice goes to the back of the queue. So the admin
 * server takes at most ADMIN_PUMP_BUDGET_NS of loop time per iteration,
 * plus one entry of a page or one small answer past it, however large the
 * pages and however many admin clients ask; the data plane runs between.
 *
 * Pacing: while the data plane is busy (a call in flight, or one started
 * within ADMIN_BUSY_MS), the admin server also takes no more than
 * ADMIN_SHARE_PERCENT of the loop's time. Its credit grows with the clock
 * at that rate (up to ADMIN_CREDIT_MAX_NS), each turn spends what it used,
 * and a turn that finds no credit stops the pump and starts the pace timer
 * for when there is some again, so the loop is free to sleep. A busy loop
 * often has no call in flight at the instant the pump runs (replies that
 * arrive together end their calls together), hence the calls started.
 * When the data plane is idle nothing waits on the loop, and the pump runs
 * every iteration.
 *
 * Deadlines (one timer per connection, meaning set by the state): a request
 * must arrive complete within admin.request_timeout_ms of its first byte
 * (slowloris), an idle keep-alive connection closes after the same time,
 * and a response must be taken by the client within it too.
 *
 * Buffers: c->in owns the bytes read and not parsed yet (reading stops at
 * ADMIN_IN_MAX); c->resp owns a page in production; the write in flight
 * owns c->head and c->body until its callback. A body goes out in pieces
 * of ADMIN_WRITE_PIECE, one write in flight, the next once the kernel took
 * the last: a large answer never costs the loop one big copy, and a client
 * that does not read holds its own answer back, nothing else. Reads land in the admin's shared
 * readbuf and are copied out at once. A connection is freed when both of its handles (socket,
 * timer) are closed; uv_close cancels its write or shutdown first.
 */
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "admin/http.h"
#include "admin/routes.h"
#include "config/config.h"
#include "proxy/reuseport.h"
#include "proxy/buf.h"
#include "proxy/handle.h"
#include "proxy/inspect.h"
#include "proxy/list.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"
#include "proxy/reload.h"
#include "proxy/sidecar.h"

#define ADMIN_BACKLOG            64
#define ADMIN_IN_MAX             (64 * 1024) /* unparsed input held per connection */
#define ADMIN_LINGER_MS          1000 /* longest wait for the client's EOF after the last answer */
#define ADMIN_PUMP_REQUESTS      8    /* answers or page slices per loop iteration, at most */
#define ADMIN_PUMP_BUDGET_NS     (300 * 1000) /* ... and none started after this much time */
#define ADMIN_WRITE_PIECE        (64 * 1024)  /* bytes of a body per write */
#define ADMIN_SHARE_PERCENT      3   /* of the loop's time, at most, while the data plane is busy */
#define ADMIN_BUSY_MS            100 /* busy: a call in flight, or one started this recently */
#define ADMIN_CREDIT_MAX_NS      (2 * ADMIN_PUMP_BUDGET_NS) /* credit saved up, at most */
#define ADMIN_RETRY_MS           100 /* accept again after an allocation failed */
#define ADMIN_DEFAULT_TIMEOUT_MS 10000

enum admin_conn_state {
    ADMIN_CONN_READING,   /* waiting for (the rest of) a request */
    ADMIN_CONN_QUEUED,    /* a complete request waits on admin.queue for the pump */
    ADMIN_CONN_WAITING,   /* an asynchronous answer (POST /reload) is pending */
    ADMIN_CONN_PRODUCING, /* a large page is written a slice per pump turn, on admin.queue */
    ADMIN_CONN_WRITING,   /* one response being written */
    ADMIN_CONN_LINGERING, /* last response written, FIN sent; dropping input until EOF */
    ADMIN_CONN_CLOSING,   /* handles closing; freed in the last close callback */
};

struct admin {
    struct sidecar *sc; /* asked through proxy/inspect.h */
    uv_loop_t *loop;
    union stream_handle server;
    bool server_init;
    bool is_unix;
    char *unix_path; /* unlinked at stop; NULL unless we bound it */
    uv_idle_t pump;
    uv_timer_t retry;    /* accept again after conn_new failed */
    uv_timer_t pace;     /* restarts the pump once it has credit again */
    int64_t credit_ns;   /* loop time the pump may still use (pacing, above) */
    uint64_t credit_at;  /* uv_hrtime the credit was last brought up to */
    uint64_t calls_seen; /* inspect_calls_started at the last turn */
    uint64_t busy_at;    /* uv_hrtime the data plane was last seen busy */
    int open_handles;    /* server + pump + retry + pace until closed */
    bool stopped;
    struct list_node conns; /* every admin_conn not closing */
    struct list_node queue; /* QUEUED and PRODUCING conns, FIFO */
    uint32_t n_conns;
    uint64_t next_conn_id;
    struct admin_stats stats;
    char readbuf[16 * 1024];
};

struct admin_conn {
    struct admin *admin;
    uint64_t id;
    enum admin_conn_state state;
    struct list_node node;       /* admin.conns */
    struct list_node queue_node; /* admin.queue while QUEUED */
    union stream_handle h;
    uv_timer_t timer; /* the deadline of the current state */
    int open_handles;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    bool reading;
    bool eof;          /* the client sent FIN: answer what is complete, then close */
    bool got_bytes;    /* READING: part of a request has arrived */
    bool close_after;  /* of the response being written */
    bool pending_head; /* WAITING, PRODUCING: the request was a HEAD */
    bool pending_close;
    struct admin_response resp; /* PRODUCING: the page being written */
    struct admin_http http;
    struct buf in;  /* read, not yet parsed */
    char head[640]; /* status line and headers of the response being written */
    int head_len;
    struct buf body;  /* body of the response being written */
    size_t body_sent; /* of body, given to writes so far */
    uint64_t connected_at;
    char peer[64];
};

static void parse_input(struct admin_conn *c);

static uint64_t request_timeout(const struct admin *a)
{
    uint64_t ms = a->sc->cfg->admin.request_timeout_ms;
    return ms ? ms : ADMIN_DEFAULT_TIMEOUT_MS;
}

static void conn_closed(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->body);
    admin_response_free(&c->resp);
    free(c);
}

/* Closes the connection; idempotent. Nothing may touch c after the caller returns. */
static void conn_close(struct admin_conn *c, const char *reason)
{
    if (c->state == ADMIN_CONN_CLOSING)
        return;
    struct admin *a = c->admin;
    log_debug("admin#%llu %s: closed after %llu ms: %s", (unsigned long long)c->id, c->peer,
              (unsigned long long)(uv_now(a->loop) - c->connected_at), reason);
    c->state = ADMIN_CONN_CLOSING;
    list_remove(&c->node);
    if (list_linked(&c->queue_node))
        list_remove(&c->queue_node);
    a->n_conns--;
    a->stats.connections = a->n_conns;
    /* A page walking the data plane's lists leaves them now. */
    admin_response_free(&c->resp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close(&c->h.handle, conn_closed);
}

static void timer_cb(uv_timer_t *t);

static void arm_timer(struct admin_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct admin_conn *c = h->data;
    buf->base = c->admin->readbuf;
    buf->len = sizeof(c->admin->readbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads while there is room for input (or input to drop); idempotent. */
static void update_reading(struct admin_conn *c)
{
    bool want = c->state != ADMIN_CONN_CLOSING && !c->eof &&
                (c->state == ADMIN_CONN_LINGERING || c->in.len < ADMIN_IN_MAX);
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, alloc_cb, read_cb) != 0) {
            conn_close(c, "cannot read");
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct admin_conn *c = req->data;
    if (c->state == ADMIN_CONN_CLOSING)
        return;
    if (status < 0)
        conn_close(c, "shutdown failed");
}

/* The last answer is written: half-close and wait for the client's EOF. */
static void linger(struct admin_conn *c)
{
    if (c->eof) {
        conn_close(c, "answered");
        return;
    }
    c->state = ADMIN_CONN_LINGERING;
    buf_free(&c->in);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, &c->h.stream, shutdown_cb) != 0) {
        conn_close(c, "answered");
        return;
    }
    uint64_t t = request_timeout(c->admin);
    arm_timer(c, t < ADMIN_LINGER_MS ? t : ADMIN_LINGER_MS);
    update_reading(c);
}

/* Back to reading: the next request may already be buffered (pipelining). */
static void enter_reading(struct admin_conn *c)
{
    c->state = ADMIN_CONN_READING;
    c->got_bytes = c->in.len > 0;
    arm_timer(c, request_timeout(c->admin));
    parse_input(c);
}

static void write_cb(uv_write_t *req, int status);

/* Writes the next piece of the response: the head with the start of the
 * body first, then up to ADMIN_WRITE_PIECE bytes of body at a time. */
static int write_piece(struct admin_conn *c)
{
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (c->head_len) {
        bufs[n++] = uv_buf_init(c->head, (unsigned)c->head_len);
        c->head_len = 0;
    }
    size_t len = c->body.len - c->body_sent;
    if (len > ADMIN_WRITE_PIECE)
        len = ADMIN_WRITE_PIECE;
    if (len)
        bufs[n++] = uv_buf_init((char *)c->body.data + c->body_sent, (unsigned)len);
    c->body_sent += len;
    c->write_req.data = c;
    return uv_write(&c->write_req, &c->h.stream, bufs, n, write_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    struct admin_conn *c = req->data;
    if (c->state == ADMIN_CONN_CLOSING) {
        buf_free(&c->body); /* the write owned it until now */
        return;
    }
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    if (c->body_sent < c->body.len) {
        int rc = write_piece(c);
        if (rc)
            conn_close(c, uv_strerror(rc));
        return;
    }
    buf_free(&c->body);
    if (c->close_after)
        linger(c);
    else
        enter_reading(c);
}

/*
 * Writes resp (its body moves into the connection) with one write in
 * flight; head omits the body (HEAD), close ends the connection after.
 */
static void send_response(struct admin_conn *c, struct admin_response *resp, bool head, bool close)
{
    struct admin *a = c->admin;
    int n = admin_http_head(c->head, sizeof(c->head), resp->status,
                            resp->content_type ? resp->content_type : "application/json",
                            resp->body.len, resp->headers, close);
    if (n < 0) {
        conn_close(c, "response head too long");
        return;
    }
    buf_free(&c->body);
    c->body = resp->body;
    memset(&resp->body, 0, sizeof(resp->body));
    if (head)
        buf_free(&c->body);
    c->head_len = n;
    c->body_sent = 0;
    a->stats.requests++;
    c->close_after = close;
    c->state = ADMIN_CONN_WRITING;
    arm_timer(c, request_timeout(a)); /* a client that does not read is cut off */
    int rc = write_piece(c);
    if (rc) {
        conn_close(c, uv_strerror(rc));
        return;
    }
    update_reading(c);
}

/* Answers a request that cannot be served (malformed, too large, too late, too many). */
static void send_error(struct admin_conn *c, int status, const char *text)
{
    struct admin_response resp = {0};
    admin_response_error(&resp, status, text);
    log_debug("admin#%llu %s: %d %s", (unsigned long long)c->id, c->peer, status, text);
    send_response(c, &resp, false, true);
    admin_response_free(&resp);
}

static void pump_cb(uv_idle_t *h);

static void enqueue(struct admin_conn *c)
{
    struct admin *a = c->admin;
    c->state = ADMIN_CONN_QUEUED;
    uv_timer_stop(&c->timer);
    list_push_back(&a->queue, &c->queue_node);
    uv_idle_start(&a->pump, pump_cb); /* no-op when already running */
}

/* Parses what is buffered; a complete request goes to the pump. */
static void parse_input(struct admin_conn *c)
{
    size_t used = 0;
    enum admin_http_result r =
        admin_http_feed(&c->http, (const char *)c->in.data, c->in.len, &used);
    buf_consume(&c->in, used);
    if (c->in.len == 0)
        buf_free(&c->in); /* a connection between requests holds no buffer */
    switch (r) {
    case ADMIN_HTTP_NEED_MORE:
        if (c->eof)
            conn_close(c, c->got_bytes ? "client left mid-request" : "client left");
        else
            update_reading(c);
        return;
    case ADMIN_HTTP_REQUEST:
        enqueue(c);
        update_reading(c);
        return;
    case ADMIN_HTTP_ERROR:
        send_error(c, c->http.error_status, c->http.error_text);
        return;
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    if (c->state == ADMIN_CONN_CLOSING)
        return;
    if (nread == UV_EOF) {
        c->eof = true;
        update_reading(c);
        if (c->state == ADMIN_CONN_LINGERING)
            conn_close(c, "answered");
        else if (c->state == ADMIN_CONN_READING)
            parse_input(c); /* closes unless a complete request is buffered */
        /* QUEUED, WAITING, PRODUCING, WRITING: answer, then close */
        return;
    }
    if (nread < 0) {
        conn_close(c, uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || c->state == ADMIN_CONN_LINGERING)
        return;
    if (buf_append(&c->in, buf->base, (size_t)nread) != 0) {
        conn_close(c, "out of memory");
        return;
    }
    if (c->state != ADMIN_CONN_READING) {
        update_reading(c); /* pipelined: parsed once the current answer is out */
        return;
    }
    if (!c->got_bytes) { /* a request starts: its deadline runs from here */
        c->got_bytes = true;
        arm_timer(c, request_timeout(c->admin));
    }
    parse_input(c);
}

static void timer_cb(uv_timer_t *t)
{
    struct admin_conn *c = t->data;
    switch (c->state) {
    case ADMIN_CONN_READING:
        if (!c->got_bytes) {
            conn_close(c, "idle");
            return;
        }
        c->admin->stats.timeouts++;
        send_error(c, 408, "request not completed within admin.request_timeout_ms");
        return;
    case ADMIN_CONN_WRITING:
        c->admin->stats.timeouts++;
        conn_close(c, "response not taken within admin.request_timeout_ms");
        return;
    case ADMIN_CONN_LINGERING:
        conn_close(c, "answered");
        return;
    case ADMIN_CONN_QUEUED:
    case ADMIN_CONN_WAITING:
    case ADMIN_CONN_PRODUCING:
    case ADMIN_CONN_CLOSING:
        return;
    }
}

/* Routes the request parsed on c and sends (or defers) the answer. */
static void serve(struct admin_conn *c)
{
    struct admin *a = c->admin;
    struct admin_response resp = {0};
    struct admin_route_ctx ctx = {a->sc, a, c->id};
    bool head = strcmp(c->http.method, "HEAD") == 0;
    bool close = !c->http.keep_alive || c->eof;
    admin_route(&ctx, &c->http, &resp);
    /* Mutations are logged where operators look; reads only at debug. */
    if (strcmp(c->http.method, "POST") == 0)
        log_info("admin#%llu %s: POST %.200s -> %d", (unsigned long long)c->id, c->peer,
                 c->http.url, resp.pending ? 202 : resp.status);
    else
        log_debug("admin#%llu %s: %s %.200s -> %d (%zu bytes)", (unsigned long long)c->id, c->peer,
                  c->http.method, c->http.url, resp.status, resp.body.len);
    admin_http_next(&c->http);
    c->pending_head = head;
    c->pending_close = close;
    if (resp.pending) {
        c->state = ADMIN_CONN_WAITING;
        admin_response_free(&resp);
        return;
    }
    if (resp.page) {
        /* Written a slice per pump turn, from the back of the queue. */
        c->state = ADMIN_CONN_PRODUCING;
        c->resp = resp;
        list_push_back(&a->queue, &c->queue_node);
        return;
    }
    send_response(c, &resp, head, close);
    admin_response_free(&resp);
}

/* Writes one slice of c's page; sends it once complete, else requeues c. */
static void produce(struct admin_conn *c, uint64_t deadline_ns)
{
    struct admin *a = c->admin;
    a->stats.slices++;
    if (admin_response_finish_page(&c->resp, deadline_ns) == 0) {
        list_push_back(&a->queue, &c->queue_node);
        return;
    }
    send_response(c, &c->resp, c->pending_head, c->pending_close);
    admin_response_free(&c->resp);
}

static void pace_cb(uv_timer_t *t)
{
    struct admin *a = t->data;
    if (!list_empty(&a->queue))
        uv_idle_start(&a->pump, pump_cb);
}

/*
 * Brings the pump's credit up to now and returns how long this turn may
 * run, or 0 after stopping the pump until the pace timer brings credit.
 */
static uint64_t pump_budget(struct admin *a, uint64_t now)
{
    uint64_t started = inspect_calls_started(a->sc);
    if (started != a->calls_seen || inspect_n_calls(a->sc) > 0) {
        a->calls_seen = started;
        a->busy_at = now;
    }
    if (now - a->busy_at >= (uint64_t)ADMIN_BUSY_MS * 1000000) {
        a->credit_ns = ADMIN_CREDIT_MAX_NS;
        a->credit_at = now;
        return ADMIN_PUMP_BUDGET_NS;
    }
    a->credit_ns += (int64_t)((now - a->credit_at) * ADMIN_SHARE_PERCENT / 100);
    if (a->credit_ns > ADMIN_CREDIT_MAX_NS)
        a->credit_ns = ADMIN_CREDIT_MAX_NS;
    a->credit_at = now;
    if (a->credit_ns <= 0) {
        uint64_t wait_ns = (uint64_t)(-a->credit_ns) * 100 / ADMIN_SHARE_PERCENT;
        uv_idle_stop(&a->pump);
        uv_timer_start(&a->pace, pace_cb, wait_ns / 1000000 + 1, 0);
        return 0;
    }
    return (uint64_t)a->credit_ns < ADMIN_PUMP_BUDGET_NS ? (uint64_t)a->credit_ns
                                                         : ADMIN_PUMP_BUDGET_NS;
}

static void pump_cb(uv_idle_t *h)
{
    struct admin *a = h->data;
    uint64_t start = uv_hrtime();
    uint64_t budget = pump_budget(a, start);
    if (!budget)
        return;
    uint64_t deadline = start + budget;
    unsigned served = 0;
    while (!list_empty(&a->queue)) {
        struct admin_conn *c = list_entry(list_first(&a->queue), struct admin_conn, queue_node);
        list_remove(&c->queue_node);
        if (c->state == ADMIN_CONN_PRODUCING)
            produce(c, deadline);
        else
            serve(c);
        if (++served >= ADMIN_PUMP_REQUESTS || uv_hrtime() >= deadline)
            break;
    }
    a->credit_ns -= (int64_t)(uv_hrtime() - start);
    if (list_empty(&a->queue))
        uv_idle_stop(&a->pump);
}

static struct admin_conn *conn_new(struct admin *a)
{
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    uv_loop_t *loop = a->loop;
    int rc = a->is_unix ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
    if (rc) {
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->h.handle.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->admin = a;
    c->id = ++a->next_conn_id;
    c->connected_at = uv_now(loop);
    list_init(&c->queue_node);
    list_push_back(&a->conns, &c->node);
    a->n_conns++;
    a->stats.connections = a->n_conns;
    admin_http_init(&c->http);
    snprintf(c->peer, sizeof(c->peer), "unix");
    return c;
}

static void retry_cb(uv_timer_t *t);

static void on_connection(uv_stream_t *server, int status)
{
    struct admin *a = server->data;
    if (status < 0) {
        log_warn("admin: accept error: %s", uv_strerror(status));
        return;
    }
    if (a->stopped)
        return;
    struct admin_conn *c = conn_new(a);
    if (!c) {
        /* Not accepted, libuv stops watching the socket until we are: try
         * again shortly rather than leave the admin API deaf. */
        log_warn("admin: out of memory accepting a connection; retrying");
        uv_timer_start(&a->retry, retry_cb, ADMIN_RETRY_MS, 0);
        return;
    }
    if (uv_accept(server, &c->h.stream) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    if (!a->is_unix) {
        uv_tcp_nodelay(&c->h.tcp, 1);
        netaddr_peer_name(&c->h.tcp, c->peer, sizeof(c->peer));
    }
    if (a->n_conns > ADMIN_MAX_CONNS) {
        a->stats.rejected++;
        /* Beyond twice the cap even a short answer is too much work. */
        if (a->n_conns > 2 * ADMIN_MAX_CONNS)
            conn_close(c, "too many admin connections");
        else
            send_error(c, 503, "too many admin connections");
        return;
    }
    enter_reading(c);
}

static void retry_cb(uv_timer_t *t)
{
    struct admin *a = t->data;
    if (!a->stopped)
        on_connection(&a->server.stream, 0);
}

struct reload_answer {
    struct admin *admin;
    uint64_t conn_id;
};

static void reload_done(struct sidecar *sc, int status, const char *error, void *arg)
{
    (void)sc;
    struct reload_answer *ra = arg;
    struct admin *a = ra->admin;
    uint64_t id = ra->conn_id;
    free(ra);
    struct admin_conn *c = NULL;
    for (struct list_node *n = a->conns.next; n != &a->conns; n = n->next) {
        struct admin_conn *x = list_entry(n, struct admin_conn, node);
        if (x->id == id)
            c = x;
    }
    if (!c || c->state != ADMIN_CONN_WAITING)
        return; /* the client left; the outcome is in the log and in /config */
    struct admin_response resp = {0};
    json_t *doc = status == 0 ? json_pack("{s:b}", "reloaded", 1)
                              : json_pack("{s:b, s:s}", "reloaded", 0, "error",
                                          error ? error : uv_strerror(status));
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
    json_decref(doc);
    if (text && buf_append(&resp.body, text, strlen(text)) == 0 &&
        buf_append(&resp.body, "\n", 1) == 0) {
        resp.status = status == 0 ? 200 : 422;
        resp.content_type = "application/json";
    } else {
        admin_response_error(&resp, 500, "out of memory");
    }
    free(text);
    send_response(c, &resp, c->pending_head, c->pending_close);
    admin_response_free(&resp);
}

int admin_reload(struct admin *a, uint64_t conn_id)
{
    struct reload_answer *ra = malloc(sizeof(*ra));
    if (!ra)
        return UV_ENOMEM;
    ra->admin = a;
    ra->conn_id = conn_id;
    /* reload_start calls back from the loop later, never from in here. */
    int rc = reload_start(a->sc, reload_done, ra);
    if (rc)
        free(ra);
    return rc;
}

static void admin_handle_closed(uv_handle_t *h)
{
    struct admin *a = h->data;
    a->open_handles--;
}

/* Binds the admin address: shared with a newer process during an upgrade,
 * like the listeners. A unix socket gets no chmod: the process umask
 * decides who may connect (owner only by default), and without a token the
 * socket's mode is the access control. */
static int bind_addr(struct admin *a, const struct config_addr *addr, char *err, size_t err_size)
{
    bool opened;
    int rc = netaddr_bind(a->loop, addr, true, "admin.address", &a->server, &opened, err, err_size);
    if (opened) {
        a->server_init = true;
        a->open_handles++;
        a->server.handle.data = a;
    }
    if (rc == 0 && addr->kind == CONFIG_ADDR_UNIX) {
        a->unix_path = strdup(addr->path);
        if (!a->unix_path)
            rc = UV_ENOMEM;
    }
    return rc;
}

void admin_steer_here(struct admin *a)
{
    if (a && a->server_init && !a->is_unix)
        reuseport_steer_here(&a->server.tcp, "admin");
}

int admin_start(struct sidecar *sc, uv_loop_t *loop, struct admin **out, char *err, size_t err_size)
{
    *out = NULL;
    const struct config_addr *addr = &sc->cfg->admin.addr;
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, err_size, "admin: out of memory");
        return UV_ENOMEM;
    }
    a->sc = sc;
    a->loop = loop;
    a->is_unix = addr->kind == CONFIG_ADDR_UNIX;
    list_init(&a->conns);
    list_init(&a->queue);
    uv_idle_init(loop, &a->pump);
    a->pump.data = a;
    uv_timer_init(loop, &a->retry);
    a->retry.data = a;
    uv_timer_init(loop, &a->pace);
    a->pace.data = a;
    a->credit_ns = ADMIN_CREDIT_MAX_NS;
    a->credit_at = uv_hrtime();
    a->open_handles = 3;
    *out = a; /* from here on, admin_stop and admin_free clean up */

    err[0] = '\0';
    int rc = bind_addr(a, addr, err, err_size);
    if (rc == 0)
        rc = uv_listen(&a->server.stream, ADMIN_BACKLOG, on_connection);
    if (rc) {
        if (!err[0])
            snprintf(err, err_size, "admin.address %s: %s", addr->text, uv_strerror(rc));
        return rc;
    }
    log_info("admin: listening on %s%s%s", a->is_unix ? "" : "http://", addr->text,
             a->is_unix ? "" : "/");
    return 0;
}

void admin_stop(struct admin *a)
{
    if (a->stopped)
        return;
    a->stopped = true;
    if (a->server_init) {
        uv_close(&a->server.handle, admin_handle_closed);
        if (a->unix_path)
            unlink(a->unix_path);
    }
    uv_close((uv_handle_t *)&a->pump, admin_handle_closed);
    uv_close((uv_handle_t *)&a->retry, admin_handle_closed);
    uv_close((uv_handle_t *)&a->pace, admin_handle_closed);
    while (!list_empty(&a->conns))
        conn_close(list_entry(list_first(&a->conns), struct admin_conn, node), "admin stopping");
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    if (a->open_handles)
        log_error("admin: freed with %d handles open", a->open_handles);
    free(a->unix_path);
    free(a);
}

const struct admin_stats *admin_get_stats(const struct admin *a)
{
    return a ? &a->stats : NULL;
}
