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

enum upstream_state {
    UPSTREAM_RESOLVING,  /* uv_getaddrinfo in flight */
    UPSTREAM_CONNECTING, /* uv_connect in flight */
    UPSTREAM_HANDSHAKE,  /* reverse pools: identify call pending (or not yet ready) */
    UPSTREAM_IDLE,       /* on pool.idle; read for EOF and late packets */
    UPSTREAM_BUSY,       /* carries exactly one call (up->call) */
    UPSTREAM_CLOSING,    /* handles closing; freed when the last one is closed */
};

struct upstream_conn {
    struct wire wire;
    uint64_t id;
    struct pool *pool;
    struct endpoint *ep;
    enum upstream_state state;
    struct list_node pool_node; /* on pool connecting/idle/busy */
    struct call *call;          /* while BUSY */

    uint64_t last_stream_id; /* last stream id used; the next call gets +1 */
    uint64_t created_at;     /* uv_now ms */
    uint64_t idle_since;
    uint64_t calls_served;
    bool dirty_reason_logged;
    /* Its last call was soft-cancelled: a server may still be running that
     * handler (Go runs one per connection), so the next call would wait. */
    bool after_cancel;
    char dialled[64]; /* the resolved address dialled (ip:port); "" for a literal */

    /* Reverse pools: the agent behind an accepted connection. */
    char agent_id[257];  /* identify reply, or the remote IP, or "conn-N" */
    char peer[64];       /* remote address */
    struct buf ident;    /* identify reply being assembled */
    uint8_t prefix_seen; /* bytes of DRPC!!!1 received (the agent's first bytes) */
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

/* Moves the connection to a new state (checks the transition). */
void upstream_set_state(struct upstream_conn *up, enum upstream_state s);

/* Closes the connection with a logged reason; idempotent. */
void upstream_close(struct upstream_conn *up, const char *reason);

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
