/*
 * pages: the admin API's large answers, written a slice at a time.
 *
 * GET /clients, /calls, /pools, /metrics, /rpcs and /history grow with
 * traffic or history, and building one whole took tens of milliseconds of
 * loop time at a few thousand clients, during which no call moved. A page
 * here is a small state machine instead: each pages_step appends the next
 * entries of the document to its body and stops once PAGES_SLICE_ITEMS
 * entries are written or the caller's deadline has passed, and the admin
 * server (admin.c) runs one step per turn of its pump, so the loop serves
 * the data plane between any two slices.
 *
 * Consistency between slices, page by page:
 *   /clients, /calls  an inspect_walk (proxy/inspect.h), a cursor the data
 *                     plane moves off an object that leaves between two
 *                     slices, which is then never touched again. The page shows
 *                     the objects that were there when it started (ids up
 *                     to the newest one then) and are still there when the
 *                     walk reaches them; total counts the same set.
 *   /pools            by index into the live pool array, read again each
 *                     slice (a reload meanwhile shows the new pools after).
 *   /metrics, /rpcs   per-RPC entries by index: they are never removed.
 *                     /rpcs ranks them once, at the first slice.
 *   /history          from a copy of the ring taken at the first slice, so
 *                     a sample taken meanwhile cannot shift the columns.
 * Each entry (a client, a call, a pool, a series of one RPC, a column) is
 * read in one step, so it is consistent in itself; the ages and idle times
 * of /clients and /calls are all as of the page's start, so they compare.
 *
 * The text is the same JSON (2-space indent) or Prometheus text as a
 * document built whole would be; the admin server sends it with a
 * Content-Length once it is complete.
 */
#ifndef SIDECAR_ADMIN_PAGES_H
#define SIDECAR_ADMIN_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

struct sidecar;
struct admin;
struct pages;

/* Entries written per step at most (a client, a call, a pool, one RPC's
 * samples of one family, one history column). */
#define PAGES_SLICE_ITEMS 32

enum pages_kind {
    PAGES_CLIENTS,
    PAGES_CALLS,
    PAGES_POOLS,
    PAGES_METRICS,
    PAGES_RPCS,
    PAGES_HISTORY,
};

/* What the request asked for; fields a page does not use are ignored. */
struct pages_query {
    size_t limit;        /* clients, calls: entries shown at most */
    uint64_t min_age_ms; /* calls */
    bool has_pool;       /* calls: only the calls of pool */
    char pool[256];      /* as the query gave it */
    unsigned seconds;    /* history */
};

/* A page of kind for q; NULL when out of memory. Nothing is read yet.
 * /metrics shows admin's own numbers when admin is not NULL. */
struct pages *pages_new(struct sidecar *sc, const struct admin *admin, enum pages_kind kind,
                        const struct pages_query *q);

/*
 * Appends the next slice: stops after PAGES_SLICE_ITEMS entries, or at the
 * first entry boundary once uv_hrtime() >= deadline_ns (at least one entry
 * per step). Returns 1 when the document is complete, 0 when more is to
 * come, UV_ENOMEM (the page is then unusable).
 */
__attribute__((warn_unused_result)) int pages_step(struct pages *pg, uint64_t deadline_ns);

/* Moves the text written so far into out (which must be empty). */
void pages_take_body(struct pages *pg, struct buf *out);

/* Steps run so far. */
uint64_t pages_steps(const struct pages *pg);

/* Frees pg (NULL is fine), leaving any list it walks. */
void pages_free(struct pages *pg);

#endif
