/*
 * pool: a bounded set of upstream connections for one configured pool,
 * its endpoints' health, and the FIFO of calls waiting for a connection.
 *
 * Each open connection sits on the list of its state (upstream.h has the
 * table of legal moves); pool_set_upstream_state() is the one place that
 * changes the state, moves the node and keeps every count in that step.
 *
 *   NEW --dial, accept--> [connecting] --connected--+--> [idle] --checkout--+
 *                                                   |      ^                |
 *                                                   |      | clean,         |
 *                                                   |      | no waiter      v
 *                                                   +------|--a waiter--> [busy]
 *                                                          |               |  ^
 *                                                          |    call ended |  | clean,
 *                                                          |               v  | a waiter
 *                                                          +----------- [released]
 *                                                                          |
 *                    dirty, past max_lifetime, draining, over max_conns, ejected
 *                                                                          v
 *   any open state --dial failed, EOF, error, timeout, drain, reload--> CLOSING
 *
 * [connecting] holds RESOLVING, CONNECTING and HANDSHAKE (agents that are
 * still identifying); CLOSING is on no list and no longer counted. A
 * connection is RELEASED only inside pool_release(), which decides its
 * next state in the same step.
 *
 * An upstream connection carries exactly one call at a time and goes back
 * to idle (or straight to the first waiter) only when that call ended
 * cleanly; otherwise it is closed with a reason (PgBouncer's release_server).
 */
#ifndef SIDECAR_POOL_H
#define SIDECAR_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "proxy/errors.h"
#include "proxy/health.h"
#include "proxy/histo.h"
#include "proxy/list.h"
#include "proxy/retry.h"
#include "proxy/upstream.h"

struct sidecar;
struct loop_ctx;
struct call;
struct upstream_conn;
struct agent_listener;

/* X(field, help) — per-pool counters since start; feeds JSON and Prometheus. */
#define POOL_COUNTERS(X)                                                                           \
    X(calls, "Calls routed to the pool")                                                           \
    X(calls_ok, "Calls that ended without an error")                                               \
    X(calls_app_error, "Calls the upstream answered with an Error packet")                         \
    X(calls_cancelled, "Calls the client cancelled or abandoned")                                  \
    X(calls_failed, "Calls the sidecar failed (see errors by cause)")                              \
    X(dials, "Upstream dials started")                                                             \
    X(panic_dials, "Dials for calls while no endpoint was healthy (panic mode)")                   \
    X(dial_failures, "Upstream dials that failed or timed out")                                    \
    X(wait_timeouts, "Calls that timed out waiting for a connection")                              \
    X(checkouts_idle, "Checkouts served from an idle connection")                                  \
    X(checkouts_waited, "Checkouts served after waiting for a busy connection")                    \
    X(checkouts_dialed, "Checkouts served by a newly dialled connection")                          \
    X(conns_closed, "Upstream connections closed")                                                 \
    X(bytes_to_upstream, "Bytes forwarded to upstream")                                            \
    X(bytes_from_upstream, "Bytes forwarded from upstream")                                        \
    X(agents_accepted, "Agent connections accepted (reverse pools)")                               \
    X(agents_rejected, "Agent connections closed at accept: max_conns reached (reverse pools)")    \
    X(calls_retried, "Calls sent to another connection: the first one's peer had closed unread")   \
    X(calls_retried_unanswered, "Of those, calls lost after the request, before a reply (opt-in)") \
    X(retries_over_budget, "Unanswered calls not retried because the retry budget was spent")      \
    X(agent_identify_failures, "Agent connections closed before identify succeeded")               \
    X(agent_handshakes_evicted, "Agent connections in their handshake closed for a newer one")     \
    X(agent_id_conflicts, "Agent connections closed: their id is held from another address")       \
    X(agent_warnings_suppressed, "Warnings about agent peers not logged (one per peer per 10 s)")

struct pool_stats {
#define X(name, help) uint64_t name;
    POOL_COUNTERS(X)
#undef X
    uint64_t errors[CALL_CAUSE_COUNT];
    struct histo wait_us; /* time from call start to upstream attach */
    struct histo call_us; /* call duration */
};

enum endpoint_health {
    ENDPOINT_HEALTHY,
    ENDPOINT_BACKOFF,   /* recent dial failure: not dialled until backoff_until */
    ENDPOINT_EJECTED,   /* too many consecutive failures: unused until ejected_until */
    ENDPOINT_UNHEALTHY, /* active health checks have not passed (health.h) */
};

#define ENDPOINT_MAX_RESOLVED 8

struct endpoint {
    struct pool *pool;
    size_t index;
    const struct config_addr *addr; /* in pool->cfg */
    bool literal;                   /* addr is an IP literal or unix path: no DNS */
    struct sockaddr_storage sa;     /* for literals */
    char resolved[64];              /* address of the last dial (ip:port), for admin */
    /* The last resolution's answer (host names only; literals have one).
     * A dial takes the first address from addr_cursor on that has not
     * failed since the endpoint last connected (bit i of failed_addrs for
     * resolved_list[i]; a new answer carries the marks over by address),
     * so a dead address among several is skipped, by concurrent dials too. */
    char resolved_list[ENDPOINT_MAX_RESOLVED][64];
    uint8_t n_resolved;
    uint32_t addr_cursor;
    uint8_t failed_addrs;
    uint32_t consecutive_failures;
    uint64_t backoff_until; /* uv_now ms */
    uint64_t ejected_until; /* uv_now ms */
    uint32_t n_conns;       /* open (any state but NEW and CLOSING) */
    uint32_t n_busy;        /* BUSY */
    uint64_t dials;
    uint64_t dial_failures;
    uint64_t ejections;
    /* The circuit breaker (pool.c): when the last dial failed, the probes
     * made while the endpoint was out, and how often one readmitted it. */
    uint64_t last_failure_at; /* uv_now ms; 0 = none since it last connected */
    uint64_t probes;
    uint64_t readmissions;
    char last_error[256];
    struct endpoint_check check; /* active health checks (health.h) */
};

struct pool {
    struct sidecar *sc;
    struct loop_ctx *lc;          /* the loop its connections live on */
    struct config *cfg;           /* snapshot this pool was built from (ref held) */
    const struct config_pool *pc; /* in cfg */
    size_t index;                 /* in sc->pools */

    struct endpoint *endpoints;
    size_t n_endpoints;
    size_t rr_next;

    /* Each open upstream connection sits on exactly one of these lists,
     * the one of its state; only pool_set_upstream_state() changes them. */
    struct counted_list connecting; /* RESOLVING, CONNECTING, HANDSHAKE */
    struct counted_list idle;       /* IDLE, most recently used first */
    struct counted_list busy;       /* BUSY */
    struct counted_list released;   /* RELEASED (only inside pool_release) */

    struct list_node waiters; /* calls, FIFO */
    uint32_t n_waiters;

    bool draining; /* admin drain: no checkouts; idle conns closed (reverse pools: kept) */
    bool retired;  /* replaced by a reload: serves its waiters, then closes */
    struct list_node retired_node; /* sidecar.retired_pools */
    struct agent_listener *agents; /* reverse pools: where agents dial in */
    struct retry_budget retry_budget;
    struct pool_stats stats;
};

__attribute__((warn_unused_result)) int pool_create(struct sidecar *sc, struct config *cfg,
                                                    size_t index, struct pool **out);

/* Closes every connection and fails waiters; frees when all are gone. */
void pool_destroy(struct pool *p);

/*
 * Finds an upstream connection for the call: attaches an idle one now
 * (call_attach), or queues the call (dialling if the pool may grow), or
 * fails it (call_fail) when the wait queue is full or no endpoint is
 * healthy. The call may be finished and freed when this returns.
 */
void pool_acquire(struct pool *p, struct call *c);

/* pool_acquire for a call sent to another connection (call_retry; see
 * retry.h): counted as a retry, not as another call. */
void pool_retry(struct pool *p, struct call *c);

/* Removes a waiting call from the queue (client left, timeout). */
void pool_cancel_wait(struct pool *p, struct call *c);

/*
 * The call on `up` ended. A clean connection goes to the first waiter or
 * back to idle; a dirty one (or one past its lifetime, or of a draining
 * pool) is closed with `reason`.
 */
void pool_release(struct pool *p, struct upstream_conn *up, bool clean, const char *reason);

/* Upstream callbacks (direct calls from upstream.c). */
void pool_on_connected(struct pool *p, struct upstream_conn *up);
void pool_on_dial_failed(struct pool *p, struct upstream_conn *up, int status, const char *what);
void pool_on_idle_lost(struct pool *p, struct upstream_conn *up);

/*
 * The one writer of up->state: checks the move against the table
 * (upstream_move_legal), takes the connection off the list of its old
 * state and puts it on the list of the new one, and keeps the endpoint's
 * counts and the pool's closed counter in the same step. Entering IDLE
 * stamps idle_since (most recently used first, except after a soft
 * cancel); entering BUSY clears after_cancel; entering IDLE or BUSY
 * re-evaluates reading. Moving to CLOSING only does the bookkeeping:
 * upstream_close() is the way to close. An illegal move aborts with
 * SIDECAR_STRICT_STATES; otherwise it is logged, the connection is
 * closed and false is returned (the caller must not use it further).
 * reason says why, for logs.
 */
bool pool_set_upstream_state(struct pool *p, struct upstream_conn *up, enum upstream_state to,
                             const char *reason);

/* Periodic upkeep: idle timeouts, min_idle, readmission, retries. */
void pool_janitor(struct pool *p, uint64_t now);

/* Why a call that waited too long failed (reverse pools distinguish agents). */
enum call_cause pool_wait_timeout_cause(const struct pool *p, const struct call *c);

/* Reverse pools: the agent connection still in its handshake (identify
 * unanswered) that has waited longest, or NULL. */
struct upstream_conn *pool_oldest_handshake(struct pool *p);

/* Reverse pools: whether ready connections from an address other than
 * ip (no port) hold agent_id. */
bool pool_agent_id_held_elsewhere(const struct pool *p, const char *agent_id, const char *ip);

/* Number of ready (idle or busy) connections of a reverse pool's agent. */
uint32_t pool_agent_conns(const struct pool *p, const char *agent_id);

/* Frees a pool that has no connection and no waiter left. */
void pool_free(struct pool *p);

/* Admin drain/resume. */
void pool_set_draining(struct pool *p, bool draining);

/* A reload replaced from by to: the waiting calls from's own connections
 * will not serve (all of a dialled or drained pool's; those of a reverse
 * pool whose agents are gone) queue in to, in order, keeping their
 * deadlines (an agent they asked for is dropped when to dials endpoints). */
void pool_move_waiters(struct pool *from, struct pool *to);

/* Fails every call waiting in p. */
void pool_fail_waiters(struct pool *p, enum call_cause cause, const char *detail);

/* Closes e's idle connections (e was ejected or turned unhealthy). */
void pool_close_idle_of(struct pool *p, const struct endpoint *e, const char *reason);

/* A dial to e connected (or a health check passed): its failures are
 * forgotten and, if it was ejected, it is readmitted at once. */
void endpoint_readmit(struct pool *p, struct endpoint *e, const char *how);

const char *endpoint_health_name(enum endpoint_health h);
enum endpoint_health endpoint_health(const struct endpoint *e, uint64_t now);
/* Index of address text (ip:port) among the first n of a resolved list, or -1. */
int endpoint_find_address(char (*list)[64], size_t n, const char *text);

/* Open upstream connections by list. */
static inline uint32_t pool_n_connecting(const struct pool *p)
{
    return p->connecting.n;
}

static inline uint32_t pool_n_idle(const struct pool *p)
{
    return p->idle.n;
}

static inline uint32_t pool_n_busy(const struct pool *p)
{
    return p->busy.n;
}

/* Connections ready for calls (idle or busy; a released one is momentary). */
static inline uint32_t pool_n_ready(const struct pool *p)
{
    return p->idle.n + p->busy.n + p->released.n;
}

/* Total open upstream connections. */
static inline uint32_t pool_total(const struct pool *p)
{
    return p->connecting.n + pool_n_ready(p);
}

#endif
