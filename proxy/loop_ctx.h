/*
 * loop_ctx: what one event loop owns, apart from the process (sidecar.h).
 *
 *   struct sidecar (process)           struct loop_ctx (one per loop)
 *     config snapshot, pools,    <--sc--  uv loop, shared read buffer,
 *     listeners, reload, stats,           flush list + check handle,
 *     access log, signals, state          busy polling, first-read time,
 *                                         janitor timer, id counters,
 *                                         its clients and its calls
 *
 * Every connection and call lives on exactly one loop and reaches it
 * through a pointer of its own (wire.lc, call.lc, pool.lc, listener.loop_ctx).
 * Nothing here is shared with another loop: the read buffer, the flush list
 * and the client/call lists are touched only from the loop's own thread,
 * which is what lets the threaded data plane run one loop_ctx per worker.
 *
 * The one way out to process state is the back-pointer `sc`. Through it
 * the data path reads the current config snapshot and the lifecycle state,
 * and counts into the process stats. With one loop that is plain memory;
 * with several workers each such access must become a per-loop copy (a
 * snapshot reference, per-loop counters summed by the admin side) or a
 * message to the owner.
 */
#ifndef SIDECAR_LOOP_CTX_H
#define SIDECAR_LOOP_CTX_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/budget.h"
#include "proxy/busy_poll.h"
#include "proxy/list.h"

struct sidecar;

#define LOOP_CTX_READBUF_SIZE (64 * 1024)

struct loop_ctx {
    uv_loop_t *loop;
    struct sidecar *sc; /* the process: see above for what may go through it */

    struct list_node clients; /* every client_conn on this loop */
    uint32_t n_clients;
    uint32_t clients_peak;  /* since the last heap trim */
    struct list_node calls; /* every unfinished call on this loop */
    uint32_t n_calls;
    /* list_cursor sets of the walks over clients and calls that span loop
     * turns (inspect_walk_*); both lists lose nodes only through
     * list_cursor_unlink. */
    struct list_node client_cursors;
    struct list_node call_cursors;

    uint64_t next_client_id;
    uint64_t next_call_id;
    uint64_t next_upstream_id;

    struct list_node flush_list; /* wires with a flush due this iteration */
    uv_check_t flush_check;
    uint64_t first_read_ns;     /* uv_hrtime of the first read that brought data since
                                 * run_loop looked; 0: none */
    struct busy_poll busy_poll; /* the adaptive spin window, owned by run_loop */
    /* Bytes held against max_buffered_bytes (budget.h). One loop: the
     * process's whole budget; with several, the sum becomes the process's
     * (an atomic) and each loop keeps its paused connections. */
    struct budget budget;
    uv_timer_t janitor; /* started by its owner (sidecar.c) */
    uint64_t janitor_ticks;
    bool handles_open;

    uint8_t readbuf[LOOP_CTX_READBUF_SIZE]; /* loop-wide read buffer (see wire.h) */
};

/* Initialises lc's lists and handles on loop. Cannot fail. */
void loop_ctx_init(struct loop_ctx *lc, uv_loop_t *loop, struct sidecar *sc);

/* Queues a wire's flush_node for the end-of-iteration flush; `first` puts
 * it ahead of the wires already queued. */
void loop_ctx_schedule_flush(struct loop_ctx *lc, struct list_node *node, bool first);

/* Closes lc's handles (async; the loop runs their close callbacks).
 * Idempotent. The clients and calls must be gone first. */
void loop_ctx_close(struct loop_ctx *lc);

#endif
