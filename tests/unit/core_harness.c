/* core_harness: see core_harness.h. */
#include "tests/unit/core_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/upstream.h"
#include "proxy/wire.h"

#define H_MAX_DATA (16u << 20)

/* Where the sidecar keeps its clients and counts its calls (its loop
 * context): the only lines that know which struct holds them. */
static struct list_node *sidecar_clients(struct h_env *e)
{
    return &e->sc->lc->clients;
}

static uint32_t sidecar_n_clients(struct h_env *e)
{
    return e->sc->lc->n_clients;
}

static uint32_t sidecar_n_calls(struct h_env *e)
{
    return e->sc->lc->n_calls;
}

static struct listener *sidecar_listener(struct h_env *e)
{
    assert_true(e->sc->n_listeners > 0);
    return e->sc->listeners[0];
}

/* --- the loop --------------------------------------------------------------- */

uint64_t h_now(struct h_env *e)
{
    uv_update_time(&e->loop);
    return uv_now(&e->loop);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

void h_step(struct h_env *e)
{
    uv_run(&e->loop, UV_RUN_ONCE);
}

void h_sleep(struct h_env *e, uint64_t ms)
{
    uint64_t until = h_now(e) + ms;
    while (h_now(e) < until)
        h_step(e);
}

/* --- peers ------------------------------------------------------------------ */

static void peer_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct h_peer *p = h->data;
    (void)suggested;
    if (buf_reserve(&p->in, 64 * 1024) != 0) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = (char *)p->in.data + p->in.len;
    b->len = p->in.cap - p->in.len;
}

static void peer_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct h_peer *p = s->data;
    (void)b;
    if (nread < 0) {
        p->eof = true;
        uv_read_stop(s);
        p->reading = false;
        return;
    }
    if (nread > 0) {
        p->in.len += (size_t)nread;
        p->reads++;
    }
}

static struct h_peer *peer_new(struct h_env *e)
{
    assert_true(e->n_peers < H_MAX_PEERS);
    struct h_peer *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->env = e;
    assert_int_equal(uv_pipe_init(&e->loop, &p->pipe, 0), 0);
    p->pipe.data = p;
    p->open = true;
    e->peers[e->n_peers++] = p;
    return p;
}

static void peer_start_reading(struct h_peer *p)
{
    assert_int_equal(uv_read_start((uv_stream_t *)&p->pipe, peer_alloc_cb, peer_read_cb), 0);
    p->reading = true;
}

void h_peer_pause(struct h_peer *p, bool paused)
{
    if (paused && p->reading) {
        uv_read_stop((uv_stream_t *)&p->pipe);
        p->reading = false;
    } else if (!paused && !p->reading && !p->eof && p->open) {
        peer_start_reading(p);
    }
}

static void peer_closed_cb(uv_handle_t *h)
{
    (void)h;
}

void h_peer_close(struct h_peer *p)
{
    if (!p->open)
        return;
    p->open = false;
    p->reading = false;
    uv_close((uv_handle_t *)&p->pipe, peer_closed_cb);
}

static void upstream_conn_cb(uv_stream_t *server, int status)
{
    struct h_upstream *u = server->data;
    assert_int_equal(status, 0);
    struct h_peer *p = peer_new(u->env);
    assert_int_equal(uv_accept(server, (uv_stream_t *)&p->pipe), 0);
    assert_true(u->n_accepted < H_MAX_PEERS);
    u->accepted[u->n_accepted++] = p;
    peer_start_reading(p);
}

void h_upstream_listen(struct h_env *e, size_t i)
{
    struct h_upstream *u = &e->ups[i];
    assert_false(u->listening);
    u->env = e;
    unlink(u->path);
    assert_int_equal(uv_pipe_init(&e->loop, &u->server, 0), 0);
    u->server.data = u;
    assert_int_equal(uv_pipe_bind(&u->server, u->path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&u->server, 64, upstream_conn_cb), 0);
    u->listening = true;
}

void h_upstream_stop(struct h_env *e, size_t i)
{
    struct h_upstream *u = &e->ups[i];
    if (!u->listening)
        return;
    u->listening = false;
    uv_close((uv_handle_t *)&u->server, NULL);
    unlink(u->path);
}

size_t h_upstream_accepted(struct h_env *e, size_t i)
{
    return e->ups[i].n_accepted;
}

struct h_peer *h_upstream_peer(struct h_env *e, size_t i, size_t n, uint64_t ms)
{
    struct h_upstream *u = &e->ups[i];
    if (!H_UNTIL(e, ms, u->n_accepted > n))
        fail_msg("endpoint %zu: connection #%zu never came (%zu accepted)", i, n, u->n_accepted);
    return u->accepted[n];
}

struct h_peer *h_client_new_type(struct h_env *e, int type)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), 0);
    uint32_t before = sidecar_n_clients(e);
    client_accept(sidecar_listener(e), fds[0]);
    assert_int_equal(sidecar_n_clients(e), before + 1);
    struct h_peer *p = peer_new(e);
    p->conn = list_entry(sidecar_clients(e)->prev, struct client_conn, sc_node);
    assert_int_equal(uv_pipe_open(&p->pipe, fds[1]), 0);
    peer_start_reading(p);
    return p;
}

struct h_peer *h_client_new(struct h_env *e)
{
    return h_client_new_type(e, SOCK_STREAM);
}

void h_send_raw(struct h_peer *p, const void *data, size_t len)
{
    const char *at = data;
    uint64_t deadline = h_now(p->env) + 2000;
    while (len > 0) {
        uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&p->pipe, &b, 1);
        if (n == UV_EAGAIN) {
            assert_true(h_now(p->env) < deadline);
            h_step(p->env);
            continue;
        }
        assert_true(n > 0);
        at += n;
        len -= (size_t)n;
    }
}

size_t h_send_some(struct h_peer *p, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&p->pipe, &b, 1);
    if (n == UV_EAGAIN)
        return 0;
    assert_true(n > 0);
    return (size_t)n;
}

void h_send_frame(struct h_peer *p, uint8_t kind, bool done, bool control, uint64_t sid,
                  uint64_t mid, const void *data, size_t len)
{
    struct buf b = {0};
    assert_int_equal(frame_append(&b, kind, done, control, sid, mid, data, len), 0);
    h_send_raw(p, b.data, b.len);
    buf_free(&b);
}

void h_send(struct h_peer *p, uint8_t kind, uint64_t sid, uint64_t mid, const char *text)
{
    h_send_frame(p, kind, true, false, sid, mid, text, text ? strlen(text) : 0);
}

void h_send_error(struct h_peer *p, uint64_t sid, uint64_t mid, uint64_t code, const char *text)
{
    struct buf b = {0};
    assert_int_equal(frame_append_error(&b, sid, mid, code, text, strlen(text)), 0);
    h_send_raw(p, b.data, b.len);
    buf_free(&b);
}

void h_send_unary(struct h_peer *p, uint64_t sid, const char *rpc, const char *msg)
{
    struct buf b = {0};
    assert_int_equal(frame_append(&b, FRAME_KIND_INVOKE, true, false, sid, 1, rpc, strlen(rpc)), 0);
    assert_int_equal(frame_append(&b, FRAME_KIND_MESSAGE, true, false, sid, 2, msg, strlen(msg)),
                     0);
    assert_int_equal(frame_append(&b, FRAME_KIND_CLOSE_SEND, true, false, sid, 3, NULL, 0), 0);
    h_send_raw(p, b.data, b.len);
    buf_free(&b);
}

static bool frame_ready(struct h_peer *p)
{
    struct frame f;
    size_t used;
    return frame_parse(p->in.data, p->in.len, H_MAX_DATA, &f, &used) == FRAME_OK;
}

bool h_peer_frame(struct h_peer *p, struct h_frame *out, uint64_t ms)
{
    if (!H_UNTIL(p->env, ms, frame_ready(p)))
        return false;
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(p->in.data, p->in.len, H_MAX_DATA, &f, &used), FRAME_OK);
    buf_reset(&p->cur);
    assert_int_equal(buf_append(&p->cur, f.data, f.len), 0);
    assert_int_equal(buf_append(&p->cur, "", 1), 0); /* a NUL for text */
    out->kind = f.kind;
    out->done = f.done;
    out->control = f.control;
    out->sid = f.stream_id;
    out->mid = f.message_id;
    out->data = p->cur.data;
    out->len = f.len;
    buf_consume(&p->in, used);
    return true;
}

const char *h_expect(struct h_peer *p, uint8_t kind, uint64_t sid, uint64_t ms)
{
    struct h_frame f;
    if (!h_peer_frame(p, &f, ms))
        fail_msg("expected a %s on stream %llu, got nothing", frame_kind_name(kind),
                 (unsigned long long)sid);
    if (f.kind != kind || f.sid != sid)
        fail_msg("expected a %s on stream %llu, got a %s on stream %llu (%.*s)",
                 frame_kind_name(kind), (unsigned long long)sid, frame_kind_name(f.kind),
                 (unsigned long long)f.sid, (int)f.len, (const char *)f.data);
    return (const char *)f.data;
}

uint64_t h_expect_error(struct h_peer *p, uint64_t sid, uint64_t ms)
{
    struct h_frame f;
    if (!h_peer_frame(p, &f, ms))
        fail_msg("expected an error on stream %llu, got nothing", (unsigned long long)sid);
    if (f.kind != FRAME_KIND_ERROR || f.sid != sid)
        fail_msg("expected an error on stream %llu, got a %s on stream %llu",
                 (unsigned long long)sid, frame_kind_name(f.kind), (unsigned long long)f.sid);
    uint64_t code;
    const uint8_t *text;
    size_t len;
    frame_error_decode(f.data, f.len, &code, &text, &len);
    return code;
}

bool h_peer_wait_eof(struct h_peer *p, uint64_t ms)
{
    return H_UNTIL(p->env, ms, p->eof);
}

bool h_peer_quiet(struct h_peer *p, uint64_t ms)
{
    size_t len = p->in.len;
    bool eof = p->eof;
    h_sleep(p->env, ms);
    return p->in.len == len && p->eof == eof;
}

void h_serve_unary(struct h_peer *up, uint64_t sid, char *rpc, size_t rpc_size, const char *reply)
{
    const char *name = h_expect(up, FRAME_KIND_INVOKE, sid, 1000);
    if (rpc)
        snprintf(rpc, rpc_size, "%s", name);
    h_expect(up, FRAME_KIND_MESSAGE, sid, 1000);
    h_expect(up, FRAME_KIND_CLOSE_SEND, sid, 1000);
    h_send(up, FRAME_KIND_MESSAGE, sid, 1, reply);
    h_send(up, FRAME_KIND_CLOSE_SEND, sid, 2, NULL);
}

void h_expect_unary_reply(struct h_peer *cl, uint64_t sid, const char *reply)
{
    assert_string_equal(h_expect(cl, FRAME_KIND_MESSAGE, sid, 1000), reply);
    h_expect(cl, FRAME_KIND_CLOSE_SEND, sid, 1000);
}

/* --- start and finish ------------------------------------------------------- */

void h_start(struct h_env *e, size_t n_endpoints, const char *pool_opts, const char *top_opts)
{
    memset(e, 0, sizeof(*e));
    assert_true(n_endpoints >= 1 && n_endpoints <= H_MAX_UPSTREAMS);
    snprintf(e->dir, sizeof(e->dir), "/tmp/sc-unit-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    for (size_t i = 0; i < H_MAX_UPSTREAMS; i++)
        snprintf(e->ups[i].path, sizeof(e->ups[i].path), "%s/up%zu.sock", e->dir, i);

    char endpoints[512] = "";
    for (size_t i = 0; i < n_endpoints; i++) {
        size_t at = strlen(endpoints);
        snprintf(endpoints + at, sizeof(endpoints) - at, "%s\"unix:%s\"", i ? "," : "",
                 e->ups[i].path);
    }
    const char *level = getenv("H_LOG_LEVEL");
    char json[4096];
    int n = snprintf(json, sizeof(json),
                     "{\"listeners\": [{\"address\": \"unix:%s/l.sock\"}],"
                     " \"admin\": {\"enabled\": false}, \"log_level\": \"%s\","
                     " \"shutdown_grace_ms\": 200%s%s,"
                     " \"pools\": [{\"name\": \"p\", \"endpoints\": [%s]%s%s}]}",
                     e->dir, level ? level : "error", *top_opts ? ", " : "", top_opts, endpoints,
                     *pool_opts ? ", " : "", pool_opts);
    assert_true(n > 0 && (size_t)n < sizeof(json));
    struct config *cfg = NULL;
    struct config_error err;
    memset(&err, 0, sizeof(err));
    if (config_parse(json, strlen(json), "test", &cfg, &err) != 0) {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        fail_msg("config: %s", msg);
    }

    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(uv_timer_init(&e->loop, &e->tick), 0);
    assert_int_equal(uv_timer_start(&e->tick, tick_cb, 1, 1), 0);
    e->sc = calloc(1, sizeof(*e->sc));
    assert_non_null(e->sc);
    char msg[256] = "";
    if (sidecar_start(e->sc, &e->loop, cfg, msg, sizeof(msg)) != 0)
        fail_msg("sidecar_start: %s", msg);
}

int h_finish(struct h_env *e)
{
    struct sidecar *sc = e->sc;
    for (size_t i = 0; i < e->n_peers; i++)
        h_peer_close(e->peers[i]);
    for (size_t i = 0; i < H_MAX_UPSTREAMS; i++)
        h_upstream_stop(e, i);
    /* Clients see EOF and go; a shutdown with none left stops at once. */
    H_UNTIL(e, 2000, sidecar_n_clients(e) == 0 && sidecar_n_calls(e) == 0);
    sidecar_shutdown(sc, "test over");
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    sidecar_free(sc);
    free(sc);
    int rc = uv_loop_close(&e->loop);
    for (size_t i = 0; i < e->n_peers; i++) {
        buf_free(&e->peers[i]->in);
        buf_free(&e->peers[i]->cur);
        free(e->peers[i]);
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/l.sock", e->dir);
    unlink(path);
    for (size_t i = 0; i < H_MAX_UPSTREAMS; i++)
        unlink(e->ups[i].path);
    rmdir(e->dir);
    return rc;
}

/* --- looks at the sidecar --------------------------------------------------- */

struct pool *h_pool(struct h_env *e)
{
    return e->sc->pools[0];
}

uint32_t h_pool_idle(const struct pool *p)
{
    return pool_n_idle(p);
}

uint32_t h_pool_busy(const struct pool *p)
{
    return pool_n_busy(p);
}

uint32_t h_pool_connecting(const struct pool *p)
{
    return pool_n_connecting(p);
}

uint32_t h_pool_total(const struct pool *p)
{
    return pool_total(p);
}

uint32_t h_pool_waiters(const struct pool *p)
{
    return p->n_waiters;
}

uint64_t h_pool_dials(const struct pool *p)
{
    return p->stats.dials;
}

uint64_t h_pool_calls_ok(const struct pool *p)
{
    return p->stats.calls_ok;
}

uint64_t h_pool_calls_app_error(const struct pool *p)
{
    return p->stats.calls_app_error;
}

uint64_t h_pool_calls_cancelled(const struct pool *p)
{
    return p->stats.calls_cancelled;
}

bool h_endpoint_ejected(struct h_env *e, size_t i)
{
    const struct pool *p = h_pool(e);
    return endpoint_health(&p->endpoints[i], h_now(e)) == ENDPOINT_EJECTED;
}

void h_pool_drain(struct h_env *e, bool draining)
{
    pool_set_draining(h_pool(e), draining);
}

uint32_t h_calls_in_flight(struct h_env *e)
{
    return sidecar_n_calls(e);
}

/* The client_conn of p, if the sidecar still has it. */
static struct client_conn *client_of(struct h_peer *p)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, sidecar_clients(p->env))
    {
        if (list_entry(n, struct client_conn, sc_node) == p->conn)
            return p->conn;
    }
    return NULL;
}

bool h_client_in_call(struct h_peer *p)
{
    struct client_conn *cl = client_of(p);
    return cl && cl->call;
}

size_t h_client_queued(struct h_peer *p)
{
    struct client_conn *cl = client_of(p);
    assert_non_null(cl);
    return wire_queued(&cl->wire);
}

bool h_client_writing(struct h_peer *p)
{
    struct client_conn *cl = client_of(p);
    assert_non_null(cl);
    return cl->wire.writing;
}

static struct upstream_conn *call_upstream(struct h_peer *p)
{
    struct client_conn *cl = client_of(p);
    assert_non_null(cl);
    assert_non_null(cl->call);
    assert_non_null(cl->call->up);
    return cl->call->up;
}

uint64_t h_call_upstream_bytes_in(struct h_peer *p)
{
    return call_upstream(p)->wire.bytes_in;
}

bool h_call_upstream_reading(struct h_peer *p)
{
    return call_upstream(p)->wire.reading;
}

unsigned h_loop_writes_in_flight(struct h_env *e)
{
    /* Every request the loop counts; once dials are done, the tests' peers
     * write with uv_try_write only, so what is left are the sidecar's writes. */
    return e->loop.active_reqs.count;
}
