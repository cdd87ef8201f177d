/*
 * upstream: one connection from the sidecar to an upstream DRPC server.
 * The sidecar is the DRPC client on it: it numbers the streams 1, 2, 3...
 * and carries one call at a time. Owned by its pool; freed in the last
 * close callback of its handles.
 */
#ifndef SIDECAR_UPSTREAM_H
#define SIDECAR_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/list.h"
#include "proxy/wire.h"

struct pool;
struct endpoint;
struct call;

/*
 * The state of an upstream connection is also the pool list it sits on;
 * pool_set_upstream_state() (pool.c) is the only writer of up->state and
 * moves the node between the lists in the same step. Legal moves:
 *
 *   from        to
 *   NEW         RESOLVING (dial a host name), CONNECTING (dial an IP literal
 *               or unix path), HANDSHAKE (agent accepted), CLOSING (refused)
 *   RESOLVING   CONNECTING, CLOSING
 *   CONNECTING  IDLE or BUSY (connected: parked, or straight to a waiter), CLOSING
 *   HANDSHAKE   IDLE or BUSY (agent identified), CLOSING
 *   IDLE        BUSY (checkout), CLOSING
 *   BUSY        RELEASED (its call ended), CLOSING (lost mid-call)
 *   RELEASED    IDLE or BUSY (clean: parked, or to the next waiter),
 *               CLOSING (dirty, past its lifetime, pool draining or shrunk)
 *   CLOSING     nothing
 *
 * Any other move is a bug: pool_set_upstream_state() aborts when built
 * with SIDECAR_STRICT_STATES (sanitizer, unit-test and fuzz builds) and
 * otherwise logs it and closes the connection.
 */
enum upstream_state {
    UPSTREAM_NEW,        /* allocated; on no list and not counted yet */
    UPSTREAM_RESOLVING,  /* on pool.connecting: uv_getaddrinfo in flight */
    UPSTREAM_CONNECTING, /* on pool.connecting: uv_connect in flight */
    UPSTREAM_HANDSHAKE,  /* on pool.connecting: reverse pools, identify call pending */
    UPSTREAM_IDLE,       /* on pool.idle; read for EOF and late packets */
    UPSTREAM_BUSY,       /* on pool.busy: carries exactly one call (up->call) */
    UPSTREAM_RELEASED,   /* on pool.released: its call ended; within pool_release the
                            pool hands it to a waiter, parks it idle or closes it */
    UPSTREAM_CLOSING,    /* on no list, not counted: handles closing; freed when the
                            last one is closed */
};
#define UPSTREAM_STATE_COUNT (UPSTREAM_CLOSING + 1)

struct upstream_conn {
    struct wire wire;
    uint64_t id;
    struct pool *pool;
    struct endpoint *ep;
    enum upstream_state state;
    struct list_node pool_node; /* on the pool list of its state (see above) */
    struct call *call;          /* while BUSY */

    uint64_t last_stream_id; /* last stream id used; the next call gets +1 */
    uint64_t created_at;     /* uv_now ms */
    uint64_t idle_since;
    /* uv_now of the last complete frame while wire.in holds an unfinished
     * one; 0 when it holds none. The janitor closes an idle connection
     * stuck mid-frame (pool.c). */
    uint64_t partial_since;
    uint64_t calls_served;
    /* Its last call was soft-cancelled: a server may still be running that
     * handler (Go runs one per connection), so the next call would wait. */
    bool after_cancel;
    char dialled[64]; /* the resolved address dialled (ip:port); "" for a literal */

    /* Reverse pools: the agent behind an accepted connection. */
    char agent_id[257];  /* identify reply, or the remote IP, or "conn-N" */
    char peer[64];       /* remote address */
    struct buf ident;    /* identify reply being assembled */
    uint8_t prefix_seen; /* bytes of DRPC!!!1 received (the agent's first bytes) */
    bool tls_identity;   /* the agent id is its certificate's, once the TLS handshake is done */
    uint64_t connected_at;

    uv_timer_t dial_timer; /* dial timeout; handshake timeout for agents */
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai_req;
    bool gai_pending;
    int dial_error;   /* a dial that failed before it started; reported from the loop */
    int open_handles; /* handles still to be closed before free */
    const char *close_reason;
};

/* Starts dialling ep; the pool learns the outcome through pool_on_*. */
__attribute__((warn_unused_result)) int upstream_dial(struct pool *p, struct endpoint *ep,
                                                      struct upstream_conn **out);

/* Reverse pools: accepts an agent connection from the pool's agent listener. */
void upstream_accept(struct pool *p, uv_stream_t *server);

/* Whether an upstream connection may move from one state to another (the
 * table above; pure, for pool_set_upstream_state and the unit test). */
bool upstream_move_legal(enum upstream_state from, enum upstream_state to);

/* Closes the connection with a logged reason (moves it to CLOSING, which
 * fails its call if it has one); idempotent. */
void upstream_close(struct upstream_conn *up, const char *reason);

/* Whether the peer has closed or reset the connection, as far as the
 * socket shows now (a peek: reads nothing). For an idle connection about
 * to carry a call: the loop may not have read the EOF yet. */
bool upstream_peer_gone(struct upstream_conn *up);

/* Re-evaluates whether to read (back-pressure from the call's client). */
void upstream_update_reading(struct upstream_conn *up);

const char *upstream_state_name(enum upstream_state s);

/* wire.c reports write completions here. */
void upstream_on_wire_written(struct upstream_conn *up, int status);

static inline struct upstream_conn *upstream_from_wire(struct wire *w)
{
    return list_entry(w, struct upstream_conn, wire);
}

#endif
