/*
 * agent: the listener of a reverse pool. Agents dial in here and serve
 * DRPC on the connections they open; each accepted connection becomes an
 * upstream connection of the pool (upstream_accept), with the sidecar as
 * the DRPC client on it.
 *
 *   local app --dials--> drpc-sidecar <--dials-- agent (serves DRPC)
 *             one RPC at a time   |   calls fanned out over agent conns
 */
#ifndef SIDECAR_AGENT_H
#define SIDECAR_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/handle.h"

struct pool;

/* Warnings about agent peers are throttled per peer address (IP, without
 * the port): at most one line per AGENT_WARN_INTERVAL_MS; the lines held
 * back are counted in the pool's agent_warnings_suppressed, and the next
 * line logged for that peer says how many. */
#define AGENT_WARN_SLOTS       64
#define AGENT_WARN_INTERVAL_MS 10000

struct agent_warn_slot {
    char peer[64];
    uint64_t last_ms;    /* uv_now of the last line logged */
    uint64_t suppressed; /* lines held back since */
};

struct agent_listener {
    struct pool *pool;
    union stream_handle h;
    bool open; /* accepted and rejected agents are counted in the pool's stats */
    struct agent_warn_slot warn[AGENT_WARN_SLOTS]; /* the peers warned about last */
};

/* Listens on the pool's "accept" address. 0 or a UV error (message in err). */
__attribute__((warn_unused_result)) int
agent_listener_start(struct pool *p, struct agent_listener **out, char *err, size_t err_size);

/* The address of peer ("ip:port", "[v6]:port") without the port. */
void agent_peer_ip(const char *peer, char *out, size_t size);

/* Logs a warning about the agent connection from peer ("ip:port"),
 * throttled per IP (see AGENT_WARN_SLOTS). */
__attribute__((format(printf, 3, 4))) void agent_warn(struct pool *p, const char *peer,
                                                      const char *fmt, ...);

/* Stops accepting; freed when the handle is closed. */
void agent_listener_stop(struct agent_listener *al);

/* The agent port takes every new connection of its SO_REUSEPORT group from
 * now on (see reuseport.h). Called once the process is started. */
void agent_listener_steer_here(struct agent_listener *al);

#endif
