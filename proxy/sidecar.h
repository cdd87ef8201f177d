/*
 * sidecar: the process around the data plane: the current config snapshot,
 * the pool and listener registries, reload status, access log, signals,
 * stats, route counters and the lifecycle state. What one event loop owns
 * (read buffer, flush list, busy polling, janitor, clients and calls) is
 * in struct loop_ctx (loop_ctx.h), which points back here. Nothing of
 * this is global: it is passed explicitly.
 *
 * The admin server is not part of it: main.c starts it beside the data
 * plane, and it asks the data plane through inspect.h.
 */
#ifndef SIDECAR_SIDECAR_H
#define SIDECAR_SIDECAR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/busy_poll.h"
#include "proxy/fdlimit.h"
#include "proxy/list.h"
#include "proxy/loop_ctx.h"
#include "proxy/reload.h"
#include "proxy/tls_stats.h"

struct listener;
struct pool;
struct accesslog;
struct handoff;
struct rpc_stats;
struct history;
struct tls_ctx_set;
struct tls_stats;

/* While draining, a client gets this long to send a call it has not sent
 * (or finish starting one: see call_on_drain). */
#define SIDECAR_DRAIN_FIRST_CALL_MS 1000

enum sidecar_state {
    SIDECAR_RUNNING,
    SIDECAR_DRAINING, /* listeners closed; in-flight calls finishing */
    SIDECAR_STOPPING, /* closing every handle; the loop ends after */
};

/* X(field, help) — process-wide counters. */
#define SIDECAR_COUNTERS(X)                                                                        \
    X(clients_accepted, "Client connections accepted")                                             \
    X(clients_rejected, "Client connections closed at accept (max_clients)")                       \
    X(clients_rejected_fds,                                                                        \
      "Client connections closed at accept: only the descriptors kept for admin and upstreams "    \
      "were left")                                                                                 \
    X(clients_closed, "Client connections closed")                                                 \
    X(client_protocol_errors, "Client connections closed for a protocol error")                    \
    X(calls_no_route, "Calls that matched no route")                                               \
    X(calls_not_started,                                                                           \
      "Calls failed with request_not_started: no first message or CloseSend in time")              \
    X(calls_request_idle,                                                                          \
      "Calls failed because their client stopped mid-request (request_idle_timeout_ms)")           \
    X(clients_handed_off, "Client connections passed to a newer process (upgrade)")                \
    X(clients_adopted, "Client connections taken over from an older process (upgrade)")            \
    X(handoff_failures, "Client connections an upgrade closed instead of passing them on")         \
    X(busy_poll_catches, "Idle stretches ended by a read while busy polling (a wake-up saved)")    \
    X(busy_poll_timeouts,                                                                          \
      "Busy-poll windows that ran out with nothing read (CPU spent for nothing)")

struct sidecar_stats {
#define X(name, help) uint64_t name;
    SIDECAR_COUNTERS(X)
#undef X
};

/* Finished calls by (pool, route, result), for /metrics. Few routes: a list. */
struct route_counter {
    struct route_counter *next;
    char pool[CONFIG_NAME_MAX + 1]; /* config names fit whole: equal names, one entry */
    char route[CONFIG_NAME_MAX + 1];
    uint64_t results[4]; /* indexed by enum call_result */
};

struct sidecar {
    struct loop_ctx *lc;          /* the data plane's loop (one today; one per worker later) */
    struct config *cfg;           /* current snapshot (ref held) */
    struct tls_ctx_set *tls;      /* OpenSSL contexts built from cfg (tls_ctx.h); swapped with it */
    struct tls_stats *tls_stats;  /* handshake counters by listener and pool (tls_stats.h) */
    struct tls_log_limit tls_log; /* handshake failures logged once per peer per minute */
    char *config_path;            /* re-read on reload; NULL = reload not possible */
    bool signalled_stop;          /* a SIGTERM/SIGINT arrived (the next one cuts the grace) */
    bool verbose;                 /* -v: debug logging whatever log_level a reload brings */
    enum sidecar_state state;

    struct listener **listeners;
    size_t n_listeners;
    struct pool **pools; /* same order as cfg->pools */
    size_t n_pools;
    struct list_node retired_pools; /* replaced by a reload, finishing their calls */
    struct reload_status last_reload;
    bool reload_running;
    bool reload_again;           /* a SIGHUP came during a reload: run one more after it */
    struct accesslog *accesslog; /* NULL when access_log is not configured */
    struct handoff *handoff;     /* upgrade rendezvous (handoff.h); NULL if none */

    uint64_t started_at; /* uv_now ms */
    uint64_t started_wall_ms;

    struct fdlimit fds;         /* descriptor budget, raised by main before start */
    uint64_t fd_refusal_logged; /* uv_now ms of the last "descriptors reserved" warning */
    uv_timer_t shutdown_timer;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    uv_signal_t sig_usr1;
    bool handles_open; /* the timer and signals above are initialised and not closed */
    bool draining_deadline_passed;
    int exit_code;

    struct sidecar_stats stats;
    struct route_counter *route_counters;
    struct rpc_stats *rpc_stats; /* per-RPC counters (rpc_stats.h); created on first use */
    struct history *history;     /* per-second samples (admin/history.h); the janitor takes them */
};

/* Builds the loop context, listeners and pools from cfg (takes a ref).
 * On failure returns a UV error and writes a message into err; then call
 * sidecar_abort_start. */
__attribute__((warn_unused_result)) int
sidecar_start(struct sidecar *sc, uv_loop_t *loop, struct config *cfg, char *err, size_t err_size);

/* Once every port is open (main.c opens the admin server's between
 * sidecar_start and this): steers new connections on the data plane's
 * shared ports here and tells systemd the process is ready. */
void sidecar_ready(struct sidecar *sc);

/* Begins a graceful shutdown (SIGTERM, SIGINT, POST /drain). */
void sidecar_shutdown(struct sidecar *sc, const char *why);

/* After a failed sidecar_start: closes what was opened and runs the loop dry. */
void sidecar_abort_start(struct sidecar *sc);

/* After the loop has run dry: frees what is left (not sc itself). */
void sidecar_free(struct sidecar *sc);

/* Takes a pool out of service after a reload: it finishes its calls,
 * closes its connections as they come back, and is freed when empty. */
void sidecar_retire_pool(struct sidecar *sc, struct pool *p);

/* Once every port is open (start, or a reload that opened new ones), new
 * connections on the listeners' and agent ports go to this process (see
 * reuseport.h; the admin port is steered by main.c). */
void sidecar_steer_connections_here(struct sidecar *sc);

/* The live pool named name, or NULL. */
struct pool *sidecar_find_pool(struct sidecar *sc, const char *name);

/* Counts a finished call under its pool and route. */
void sidecar_count_result(struct sidecar *sc, const char *pool, const char *route, int result);

/* A client or call went away: lets a drain finish. */
void sidecar_maybe_finish_drain(struct sidecar *sc);

#endif
