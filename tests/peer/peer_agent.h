/*
 * peer_agent: agent mode. Keeps `want` connections dialled to one address
 * and serves the test service on each (the TCP client is the RPC server),
 * as an edge service does for a reverse pool. With redial, a connection
 * that ends (or a dial that fails) is dialled again after a short back-off.
 */
#ifndef SIDECAR_PEER_AGENT_H
#define SIDECAR_PEER_AGENT_H

#include <stdbool.h>
#include <uv.h>

#include "tests/peer/peer_addr.h"
#include "tests/peer/peer_server.h"

#define PEER_AGENT_BACKOFF_MS 100

enum peer_agent_state {
    PEER_AGENT_RUNNING,  /* keeping `want` connections */
    PEER_AGENT_STOPPING, /* no more dials; the timer is closing */
    PEER_AGENT_STOPPED,  /* the timer is closed */
};

struct peer_agent {
    struct peer_server *srv; /* serves the dialled connections */
    struct peer_addr addr;
    int want;    /* connections to keep */
    int live;    /* dials in flight plus open connections */
    bool redial; /* replace connections that end */
    enum peer_agent_state state;
    uv_timer_t backoff; /* next round of dials */
};

/* Starts dialling. Returns 0, or a UV_E* code (nothing to stop then). */
__attribute__((warn_unused_result)) int peer_agent_start(struct peer_agent *a,
                                                         struct peer_server *srv,
                                                         const struct peer_addr *addr, int want,
                                                         bool redial);

/* Stops re-dialling and closes the timer; the connections belong to srv. */
void peer_agent_stop(struct peer_agent *a);

#endif
