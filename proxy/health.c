/*
 * health: one check at a time per endpoint, each on its own connection
 * (see health.h).
 *
 *   health_janitor --due--> start: socket + timeout timer
 *     connect_cb --no rpc--> finish(pass)
 *                --rpc----> write Invoke, Message, CloseSend (stream 1)
 *     read_cb: Close or CloseSend --> finish(pass); Error, EOF --> finish(fail)
 *     timer_cb --> finish(fail: timed out)
 *   finish: records the result on the endpoint (unless abandoned), closes
 *   the handles; the probe is freed when the last one is closed.
 *
 * A probe holds its endpoint only while ep is set: health_stop() clears it
 * when the pool goes away, so late callbacks touch nothing but the probe.
 */
#include "proxy/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

/* A check reply longer than this is not a health check's: it fails. */
#define HEALTH_REPLY_MAX (1024 * 1024)

struct health_probe {
    struct endpoint *ep; /* NULL once abandoned */
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } sock;
    bool sock_init;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_write_t write_req;
    struct buf out; /* the request, owned until the write callback */
    struct buf in;  /* reply bytes not parsed yet */
    char chunk[4096];
    uint64_t started_hr;
    int open_handles;
    bool done;
};

const char *health_state_name(enum endpoint_check_state s)
{
    switch (s) {
    case ENDPOINT_CHECK_UNKNOWN:
        return "unknown";
    case ENDPOINT_CHECK_HEALTHY:
        return "healthy";
    case ENDPOINT_CHECK_UNHEALTHY:
        return "unhealthy";
    }
    return "?";
}

static void probe_closed(uv_handle_t *h)
{
    struct health_probe *hp = h->data;
    if (--hp->open_handles > 0)
        return;
    buf_free(&hp->out);
    buf_free(&hp->in);
    free(hp);
}

/* Applies one result to the endpoint's state (health.h has the moves). */
static void record(struct endpoint *e, bool pass, const char *what, uint64_t latency_us)
{
    struct pool *p = e->pool;
    const struct config_health_check *hc = &p->pc->health_check;
    struct endpoint_check *k = &e->check;
    uint64_t now = uv_now(p->lc->loop);
    enum endpoint_check_state was = k->state;
    k->checks++;
    k->last_at = now;
    k->last_latency_us = latency_us;
    snprintf(k->last_result, sizeof(k->last_result), "%s", what);
    if (pass) {
        k->successes++;
        k->failures = 0;
        if (was != ENDPOINT_CHECK_HEALTHY &&
            (was == ENDPOINT_CHECK_UNKNOWN || k->successes >= hc->healthy_threshold)) {
            k->state = ENDPOINT_CHECK_HEALTHY;
            log_info("pool %s: endpoint %s healthy (health check passed %u times)", p->pc->name,
                     e->addr->text, k->successes);
            if (e->ejected_until > now || e->consecutive_failures)
                endpoint_readmit(p, e, "health check passed");
        }
        return;
    }
    k->failed++;
    k->failures++;
    k->successes = 0;
    if (was != ENDPOINT_CHECK_UNHEALTHY &&
        (was == ENDPOINT_CHECK_UNKNOWN || k->failures >= hc->unhealthy_threshold)) {
        k->state = ENDPOINT_CHECK_UNHEALTHY;
        log_warn("pool %s: endpoint %s unhealthy after %u failed health checks (%s)", p->pc->name,
                 e->addr->text, k->failures, what);
        pool_close_idle_of(p, e, "endpoint unhealthy");
    }
}

/* Ends the check: records it (unless abandoned) and closes its handles. */
static void finish(struct health_probe *hp, bool pass, const char *what)
{
    if (hp->done)
        return;
    hp->done = true;
    struct endpoint *e = hp->ep;
    if (e) {
        hp->ep = NULL;
        e->check.probe = NULL;
        record(e, pass, what, (uv_hrtime() - hp->started_hr) / 1000);
    }
    uv_timer_stop(&hp->timer);
    uv_close((uv_handle_t *)&hp->timer, probe_closed);
    if (hp->sock_init)
        uv_close(&hp->sock.handle, probe_closed);
}

static void timer_cb(uv_timer_t *t)
{
    finish(t->data, false, "timed out");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct health_probe *hp = h->data;
    *b = uv_buf_init(hp->chunk, sizeof(hp->chunk));
}

/* Looks at the frames of stream 1: an Error fails, the end of the stream passes. */
static void parse_reply(struct health_probe *hp)
{
    size_t pos = 0;
    while (!hp->done) {
        struct frame f;
        size_t used;
        enum frame_result r =
            frame_parse(hp->in.data + pos, hp->in.len - pos, HEALTH_REPLY_MAX, &f, &used);
        if (r == FRAME_NEED_MORE)
            break;
        if (r != FRAME_OK) {
            finish(hp, false, "protocol error in the reply");
            return;
        }
        pos += used;
        if (f.control || f.stream_id != 1 || !f.done)
            continue;
        if (f.kind == FRAME_KIND_ERROR) {
            uint64_t code;
            const uint8_t *text;
            size_t len;
            frame_error_decode(f.data, f.len, &code, &text, &len);
            char what[128];
            snprintf(what, sizeof(what), "error code=%llu: %.*s", (unsigned long long)code,
                     (int)(len > 80 ? 80 : len), (const char *)text);
            finish(hp, false, what);
        } else if (f.kind == FRAME_KIND_CLOSE || f.kind == FRAME_KIND_CLOSE_SEND) {
            finish(hp, true, "ok");
        }
    }
    if (hp->done)
        return;
    memmove(hp->in.data, hp->in.data + pos, hp->in.len - pos);
    hp->in.len -= pos;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct health_probe *hp = s->data;
    if (hp->done)
        return;
    if (nread < 0) {
        finish(hp, false, nread == UV_EOF ? "closed before answering" : uv_strerror((int)nread));
        return;
    }
    if (hp->in.len + (size_t)nread > HEALTH_REPLY_MAX) {
        finish(hp, false, "reply too long");
        return;
    }
    if (buf_append(&hp->in, b->base, (size_t)nread) != 0) {
        finish(hp, false, "out of memory");
        return;
    }
    parse_reply(hp);
}

static void write_cb(uv_write_t *req, int status)
{
    struct health_probe *hp = req->data;
    if (status < 0 && status != UV_ECANCELED)
        finish(hp, false, uv_strerror(status));
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct health_probe *hp = req->data;
    if (hp->done || status == UV_ECANCELED)
        return;
    if (status < 0) {
        finish(hp, false, uv_strerror(status));
        return;
    }
    const struct config_pool *pc = hp->ep->pool->pc;
    const char *rpc = pc->health_check.rpc, *req_msg = pc->health_check.request;
    if (!rpc) {
        finish(hp, true, "ok");
        return;
    }
    int rc = 0;
    if (pc->header)
        rc = buf_append(&hp->out, DRPC_HEADER, DRPC_HEADER_LEN);
    if (rc == 0)
        rc = frame_append(&hp->out, FRAME_KIND_INVOKE, true, false, 1, 1, rpc, strlen(rpc));
    if (rc == 0)
        rc =
            frame_append(&hp->out, FRAME_KIND_MESSAGE, true, false, 1, 2, req_msg, strlen(req_msg));
    if (rc == 0)
        rc = frame_append(&hp->out, FRAME_KIND_CLOSE_SEND, true, false, 1, 3, NULL, 0);
    uv_buf_t b = uv_buf_init((char *)hp->out.data, (unsigned)hp->out.len);
    hp->write_req.data = hp;
    if (rc == 0)
        rc = uv_write(&hp->write_req, &hp->sock.stream, &b, 1, write_cb);
    if (rc == 0)
        rc = uv_read_start(&hp->sock.stream, alloc_cb, read_cb);
    if (rc != 0)
        finish(hp, false, uv_strerror(rc));
}

/* The address to check: a literal's, a unix path, or the one the last dial
 * of a host name went to. Returns 0, or UV_EAI_NONAME before any dial. */
static int check_addr(const struct endpoint *e, struct sockaddr_storage *ss)
{
    if (e->literal) {
        memcpy(ss, &e->sa, sizeof(*ss));
        return 0;
    }
    char host[64];
    snprintf(host, sizeof(host), "%s", e->resolved);
    char *colon = strrchr(host, ':');
    if (!colon)
        return UV_EAI_NONAME;
    *colon = '\0';
    int port = atoi(colon + 1);
    if (host[0] == '[') {
        host[strlen(host) - 1] = '\0';
        return uv_ip6_addr(host + 1, port, (struct sockaddr_in6 *)ss);
    }
    return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

static void start(struct pool *p, struct endpoint *e)
{
    uv_loop_t *loop = p->lc->loop;
    struct health_probe *hp = calloc(1, sizeof(*hp));
    if (!hp)
        return;
    hp->ep = e;
    hp->started_hr = uv_hrtime();
    e->check.probe = hp;
    /* Checks start interval_ms apart (or as soon as a slow one ends). */
    e->check.next_at = uv_now(loop) + p->pc->health_check.interval_ms;
    uv_timer_init(loop, &hp->timer);
    hp->timer.data = hp;
    hp->open_handles = 1;
    uv_timer_start(&hp->timer, timer_cb, p->pc->health_check.timeout_ms, 0);

    bool unix_socket = e->addr->kind == CONFIG_ADDR_UNIX;
    struct sockaddr_storage ss;
    int rc = unix_socket ? 0 : check_addr(e, &ss);
    if (rc == 0)
        rc = unix_socket ? uv_pipe_init(loop, &hp->sock.pipe, 0) : uv_tcp_init(loop, &hp->sock.tcp);
    if (rc != 0) {
        finish(hp, false, rc == UV_EAI_NONAME ? "not resolved yet" : uv_strerror(rc));
        return;
    }
    hp->sock_init = true;
    hp->open_handles++;
    hp->sock.handle.data = hp;
    hp->connect_req.data = hp;
    if (unix_socket)
        uv_pipe_connect(&hp->connect_req, &hp->sock.pipe, e->addr->path, connect_cb);
    else if ((rc = uv_tcp_connect(&hp->connect_req, &hp->sock.tcp, (struct sockaddr *)&ss,
                                  connect_cb)) != 0)
        finish(hp, false, uv_strerror(rc));
}

void health_janitor(struct pool *p, uint64_t now)
{
    if (!p->pc->health_check.enabled)
        return;
    for (size_t i = 0; i < p->n_endpoints; i++) {
        struct endpoint *e = &p->endpoints[i];
        if (!e->check.probe && now >= e->check.next_at)
            start(p, e);
    }
}

void health_stop(struct pool *p)
{
    for (size_t i = 0; i < p->n_endpoints; i++) {
        struct health_probe *hp = p->endpoints[i].check.probe;
        if (!hp)
            continue;
        hp->ep = NULL;
        p->endpoints[i].check.probe = NULL;
        finish(hp, false, "stopped");
    }
}
