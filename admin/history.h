/*
 * history: the last HISTORY_SECONDS seconds of the sidecar, one sample a
 * second, in a ring of fixed size; GET /history serves it and the
 * dashboard draws its charts from it.
 *
 * A sample holds, per pool: calls finished in that second, app errors and
 * sidecar failures by cause, p50/p99 call time and p99 wait time of the
 * calls that finished in it, and busy/idle/max connections and waiters at
 * the sampling moment; for the process: clients and calls in flight.
 *
 * Memory is fixed: sizeof(struct history), allocated once on the first
 * tick: 475,224 bytes (464 KiB) on x86-64, i.e. HISTORY_SECONDS samples of
 * 784 bytes (HISTORY_MAX_POOLS pool samples of 96 bytes plus 16 for the
 * process) and the pool slots; /history reports it as memory_bytes. Pools beyond
 * HISTORY_MAX_POOLS are not recorded (the view says how many); a pool that
 * left the config gives its slot up once it has aged out of the ring.
 *
 * Rates and per-second percentiles are differences of the pools' own
 * cumulative counters and histograms between two samples, so the data
 * path does nothing for the history.
 */
#ifndef SIDECAR_ADMIN_HISTORY_H
#define SIDECAR_ADMIN_HISTORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proxy/errors.h"
#include "proxy/histo.h"

struct sidecar;
struct pool;

#define HISTORY_SECONDS     600
#define HISTORY_MAX_POOLS   8
#define HISTORY_INTERVAL_MS 1000

struct history_pool_sample {
    uint32_t calls;                    /* finished in the second */
    uint32_t app_errors;               /* of those, answered with an Error by the upstream */
    uint32_t errors[CALL_CAUSE_COUNT]; /* of those, failed by the sidecar, by cause */
    uint32_t call_p50_us, call_p99_us, wait_p99_us;
    uint32_t busy, idle, max, waiters; /* at the sampling moment */
};

struct history_sample {
    uint64_t wall_ms; /* when it was taken */
    uint32_t clients, calls_in_flight;
    struct history_pool_sample pools[HISTORY_MAX_POOLS];
};

/* A pool slot: its name and the cumulative numbers of the last sample. */
struct history_slot {
    char name[CONFIG_NAME_MAX + 1]; /* "" = free */
    uint64_t last_seen;             /* sample number that last found the pool */
    const struct pool *pool;        /* the object the numbers below were read from */
    uint64_t calls, app_errors, errors[CALL_CAUSE_COUNT];
    struct histo call, wait;
};

struct history {
    struct history_sample ring[HISTORY_SECONDS];
    uint64_t taken;   /* samples taken; the newest is ring[(taken - 1) % HISTORY_SECONDS] */
    uint64_t next_at; /* uv_now ms of the next sample */
    uint32_t pools_not_recorded;
    struct history_slot slots[HISTORY_MAX_POOLS];
};

/* Called often (the janitor, every 100 ms): takes a sample when a second
 * has passed, and starts a new second in sc->rpc_stats. *h is allocated on
 * the first call (nothing happens while that fails). */
void history_tick(struct history **h, struct sidecar *sc);

/*
 * GET /history?seconds=N shows the newest N samples (1..HISTORY_SECONDS),
 * oldest first, as columns. admin/pages.c writes it a column at a time
 * from a snapshot, so a sample taken meanwhile cannot shift one column
 * against another; these are its pieces, each NULL when out of memory.
 */

/* A copy of h (an empty history when h is NULL: no sample yet); free() it. */
struct history *history_snapshot(const struct history *h);

/* {"interval_ms", "capacity_seconds", "memory_bytes", "samples", "pools_not_recorded"} */
json_t *history_view_head(const struct history *h, unsigned seconds);

/* Process column col (0..2: "t", "clients", "calls_in_flight") with its
 * key; *key is NULL past the last. */
json_t *history_process_column(const struct history *h, unsigned seconds, unsigned col,
                               const char **key);

/* The pool name of slot (0..HISTORY_MAX_POOLS-1) when the view shows it, else NULL. */
const char *history_slot_shown(const struct history *h, unsigned seconds, size_t slot);

/* Column col of a pool slot with its key (*key NULL past the last). The
 * columns "calls" .. "waiters" come first, then one per failure cause
 * (*by_cause set) that goes under "errors_by_cause": NULL with *key set
 * for a cause that did not occur in the window. */
json_t *history_pool_column(const struct history *h, unsigned seconds, size_t slot, unsigned col,
                            const char **key, bool *by_cause);

void history_free(struct history *h);

#endif
