/*
 * inspect: what the admin API may ask the data plane, and nothing more.
 *
 * The admin server (admin/) does not walk the data plane's lists nor
 * re-derive its rules: it asks through these functions. Each answers from
 * the live objects at the moment of the call; the pointers it returns are
 * valid until the data plane's loop runs again (an admin handler uses them
 * and lets go before it returns). With one loop the answers are plain
 * reads; with one loop per worker (the threaded data plane) this is the
 * seam where a request goes to each worker and the answers are merged.
 *
 * Mutations (cancel a call, drain, reload) go through the same transition
 * functions as the data path: inspect_cancel_call here, pool_set_draining,
 * sidecar_shutdown and reload_start elsewhere.
 */
#ifndef SIDECAR_INSPECT_H
#define SIDECAR_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/list.h"

struct sidecar;
struct pool;
struct listener;
struct call;
struct client_conn;

/* Whether the process should receive traffic (GET /readyz). When not,
 * writes the first reason found into reason: draining, a listener that is
 * not open, or a pool (not drained by an operator) below its min_idle. */
bool inspect_ready(const struct sidecar *sc, char *reason, size_t size);

/* "running", "draining" or "stopping". */
const char *inspect_state_name(const struct sidecar *sc);

/* The data plane's clock (uv_now of its loop, ms): what every stored
 * timestamp (connected_at, started_at, ...) is measured on. */
uint64_t inspect_now(const struct sidecar *sc);

/* Clients connected and calls in flight, process-wide. */
uint32_t inspect_n_clients(const struct sidecar *sc);
uint32_t inspect_n_calls(const struct sidecar *sc);

/* Calls started so far: a change says the data plane was busy meanwhile,
 * even when no call is in flight at the moment of asking. */
uint64_t inspect_calls_started(const struct sidecar *sc);

/* The busy-poll window in force now, in microseconds (see busy_poll.h). */
uint64_t inspect_busy_poll_window_us(const struct sidecar *sc);

/* The i-th live pool or listener in config order; NULL past the last. */
struct pool *inspect_pool(const struct sidecar *sc, size_t i);
struct listener *inspect_listener(const struct sidecar *sc, size_t i);

/* Cursors over the unfinished calls (oldest first) and the connected
 * clients (longest connected first): pass NULL for the first, then the
 * last one returned; NULL after the last. */
struct call *inspect_next_call(const struct sidecar *sc, const struct call *prev);
struct client_conn *inspect_next_client(const struct sidecar *sc, const struct client_conn *prev);

/*
 * A walk over the clients or the calls that goes on over later loop turns
 * (the admin API's large pages), in the same order as the cursors above.
 * It returns the objects there when it started that are still there when
 * it reaches them: between two turns the data plane runs, and an object
 * that leaves before the walk reaches it is stepped over, never returned
 * after it is gone; objects that arrive meanwhile are not returned. The
 * walk holds no object; inspect_walk_end (idempotent) must come before w
 * is freed.
 */
struct inspect_walk {
    struct list_cursor cursor;
    struct list_node *head; /* the walked list */
    uint64_t end_id;        /* the newest object's id at the start (ids grow along the list) */
    bool started;
};

void inspect_walk_clients(const struct sidecar *sc, struct inspect_walk *w);
void inspect_walk_calls(const struct sidecar *sc, struct inspect_walk *w);

/* The next object of a walk started with the matching function, or NULL
 * at the end. Valid until the data plane's loop runs again. */
struct client_conn *inspect_walk_next_client(struct inspect_walk *w);
struct call *inspect_walk_next_call(struct inspect_walk *w);

void inspect_walk_end(struct inspect_walk *w);

/* The unfinished call with this id, or NULL. */
struct call *inspect_find_call(const struct sidecar *sc, uint64_t id);

/* Cancels a call as an operator asked (POST /calls/{id}/cancel): the
 * client gets Error "cancelled", the upstream a Cancel. c may be freed
 * before this returns: read what the answer shows first. */
void inspect_cancel_call(struct call *c);

#endif
