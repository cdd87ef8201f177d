/*
 * core_harness: scaffolding for the core unit tests (test_pool.c,
 * test_call.c, test_wire.c). They run the real sidecar on a real uv loop:
 *
 *   test (scripted DRPC client) ==socketpair==> client_conn (adopted)
 *                                                  | call
 *   test (scripted DRPC server) <==unix socket== upstream_conn (dialled by the pool)
 *
 * The sidecar is built from a config string by the real constructors; its
 * clients are adopted from socketpairs the way a listener adopts accepted
 * sockets, and its pools dial unix sockets the harness listens on. The
 * test's ends are plain uv pipes that queue what they read; frames are
 * encoded and decoded with proxy/frame.c.
 *
 * Everything that builds the sidecar or peeks at its insides goes through
 * the h_* functions below, so a change of the core's API touches this file
 * pair only; the tests assert on what peers see and on these counts.
 */
#ifndef SIDECAR_TESTS_CORE_HARNESS_H
#define SIDECAR_TESTS_CORE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/frame.h"

struct sidecar;
struct pool;
struct h_env;

#define H_MAX_PEERS     64
#define H_MAX_UPSTREAMS 4

/* One end the test drives: a client of the sidecar or an upstream server. */
struct h_peer {
    struct h_env *env;
    uv_pipe_t pipe;
    bool open;      /* handle not yet closed */
    bool eof;       /* the sidecar closed its end */
    bool reading;   /* the test reads what arrives (h_peer_pause stops it) */
    size_t reads;   /* read callbacks that brought bytes */
    struct buf in;  /* bytes read and not yet taken as frames */
    struct buf cur; /* data of the frame h_peer_frame returned last */
    void *conn;     /* clients: the sidecar's client_conn (while it lives) */
};

/* A unix socket in the test's directory where the pool's endpoint i dials. */
struct h_upstream {
    struct h_env *env;
    uv_pipe_t server;
    bool listening;
    char path[108];
    struct h_peer *accepted[H_MAX_PEERS];
    size_t n_accepted;
};

struct h_env {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes uv_run(UV_RUN_ONCE) while a test waits */
    struct sidecar *sc;
    char dir[64];
    struct h_upstream ups[H_MAX_UPSTREAMS];
    struct h_peer *peers[H_MAX_PEERS];
    size_t n_peers;
};

/* A frame as the peer received it; data stays valid until the next
 * h_peer_frame on the same peer. */
struct h_frame {
    uint8_t kind;
    bool done;
    bool control;
    uint64_t sid;
    uint64_t mid;
    const uint8_t *data;
    size_t len;
};

/*
 * Starts a sidecar with one unix listener, no admin, and one pool "p"
 * whose n_endpoints endpoints are unix sockets in a fresh temp dir.
 * pool_opts and top_opts are extra JSON members (without braces, may be
 * "") for the pool and the top level. Nothing listens on the endpoints
 * until h_upstream_listen.
 */
void h_start(struct h_env *e, size_t n_endpoints, const char *pool_opts, const char *top_opts);

/* Closes every peer, shuts the sidecar down, runs the loop dry and frees
 * it. Returns uv_loop_close()'s result (the tests assert it is 0). */
int h_finish(struct h_env *e);

/* --- the loop --------------------------------------------------------------- */

uint64_t h_now(struct h_env *e);
void h_step(struct h_env *e); /* one loop iteration (at most ~1 ms asleep) */
void h_sleep(struct h_env *e, uint64_t ms);

/* Runs the loop until cond holds or ms pass; evaluates to cond's last value. */
#define H_UNTIL(e, ms, cond)                                                                       \
    ({                                                                                             \
        uint64_t h_deadline_ = h_now(e) + (ms);                                                    \
        bool h_ok_;                                                                                \
        while (!(h_ok_ = (cond)) && h_now(e) < h_deadline_)                                        \
            h_step(e);                                                                             \
        h_ok_;                                                                                     \
    })

/* --- peers ------------------------------------------------------------------ */

/* Starts listening on endpoint i's socket; h_upstream_stop closes it. */
void h_upstream_listen(struct h_env *e, size_t i);
void h_upstream_stop(struct h_env *e, size_t i);
/* Upstream connections endpoint i has accepted so far. */
size_t h_upstream_accepted(struct h_env *e, size_t i);
/* The n-th (from 0) connection endpoint i accepted, waiting up to ms for it. */
struct h_peer *h_upstream_peer(struct h_env *e, size_t i, size_t n, uint64_t ms);

/* A new client of the sidecar over a socketpair of the given type
 * (SOCK_STREAM normally), adopted by the listener. */
struct h_peer *h_client_new_type(struct h_env *e, int type);
struct h_peer *h_client_new(struct h_env *e);

/* Sends one frame (written whole or the test fails). */
void h_send_frame(struct h_peer *p, uint8_t kind, bool done, bool control, uint64_t sid,
                  uint64_t mid, const void *data, size_t len);
/* A whole packet of one frame with text as its data. */
void h_send(struct h_peer *p, uint8_t kind, uint64_t sid, uint64_t mid, const char *text);
/* Bytes as they are (several frames in one write, for instance). */
void h_send_raw(struct h_peer *p, const void *data, size_t len);
/* As much of data as the socket takes now, without waiting: returns that. */
size_t h_send_some(struct h_peer *p, const void *data, size_t len);
/* An Error packet with code and text. */
void h_send_error(struct h_peer *p, uint64_t sid, uint64_t mid, uint64_t code, const char *text);
/* Invoke, Message, CloseSend on sid (message ids 1, 2, 3): a unary request. */
void h_send_unary(struct h_peer *p, uint64_t sid, const char *rpc, const char *msg);

/* Waits up to ms for the next frame; false when none came. */
bool h_peer_frame(struct h_peer *p, struct h_frame *f, uint64_t ms);
/* Waits up to ms for a frame of this kind on sid, skipping none: the next
 * frame must match (the test fails otherwise). Returns its data as text. */
const char *h_expect(struct h_peer *p, uint8_t kind, uint64_t sid, uint64_t ms);
/* Expects an Error on sid; returns its code. */
uint64_t h_expect_error(struct h_peer *p, uint64_t sid, uint64_t ms);
/* True when the sidecar closed its end within ms (frames may precede). */
bool h_peer_wait_eof(struct h_peer *p, uint64_t ms);
/* Runs the loop for ms; true when no byte arrived on p meanwhile. */
bool h_peer_quiet(struct h_peer *p, uint64_t ms);
/* Stops or resumes taking bytes from the socket (a slow reader). */
void h_peer_pause(struct h_peer *p, bool paused);
/* Closes the test's end. */
void h_peer_close(struct h_peer *p);

/* The server side of a unary call: expects Invoke (returns the rpc name,
 * copied into rpc), Message and CloseSend on sid, then answers reply and
 * CloseSend. */
void h_serve_unary(struct h_peer *up, uint64_t sid, char *rpc, size_t rpc_size, const char *reply);
/* The client side: expects reply then CloseSend on sid. */
void h_expect_unary_reply(struct h_peer *cl, uint64_t sid, const char *reply);

/* --- looks at the sidecar (the only places that know its structs) --------- */

struct pool *h_pool(struct h_env *e);
uint32_t h_pool_idle(const struct pool *p);
uint32_t h_pool_busy(const struct pool *p);
uint32_t h_pool_connecting(const struct pool *p);
uint32_t h_pool_total(const struct pool *p);
uint32_t h_pool_waiters(const struct pool *p);
uint64_t h_pool_dials(const struct pool *p);
uint64_t h_pool_calls_ok(const struct pool *p);
uint64_t h_pool_calls_app_error(const struct pool *p);
uint64_t h_pool_calls_cancelled(const struct pool *p);
bool h_endpoint_ejected(struct h_env *e, size_t i);
void h_pool_drain(struct h_env *e, bool draining);
uint32_t h_calls_in_flight(struct h_env *e);

/* The sidecar's view of a client (p from h_client_new). */
bool h_client_in_call(struct h_peer *p);
size_t h_client_queued(struct h_peer *p); /* bytes queued toward this client */
bool h_client_writing(struct h_peer *p);  /* a write toward it is in flight */
/* The upstream connection serving p's call: bytes it read, and whether
 * the sidecar reads from it. */
uint64_t h_call_upstream_bytes_in(struct h_peer *p);
bool h_call_upstream_reading(struct h_peer *p);
/* Write requests in flight on the loop (the tests' own peers make none). */
unsigned h_loop_writes_in_flight(struct h_env *e);

#endif
