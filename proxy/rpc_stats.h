/*
 * rpc_stats: finished calls counted per pool and RPC name, with bounded
 * memory and cardinality.
 *
 * An RPC name is client input. Per pool, the first max_rpcs distinct names
 * (config "metrics": {"max_rpcs"}) get an entry of their own; every later
 * name, and every name that is not a plain label (empty, longer than
 * RPC_STATS_NAME_MAX bytes, not UTF-8, with a control character, or the
 * word "other"), is counted in the pool's "other" entry. So a pool never
 * holds more than max_rpcs + 1 entries, whatever clients send, and every
 * stored name is printable UTF-8 that renders as one Prometheus label value
 * and one JSON string.
 *
 * Memory: one entry is sizeof(struct rpc_stats_entry) (856 bytes on x86-64)
 * plus its name (at most RPC_STATS_NAME_MAX + 1 bytes) plus at most four
 * index slots and two list pointers: under 1.1 KiB a name, so about
 * 110 KiB per pool at the default max_rpcs of 100.
 *
 * Each entry also keeps per-second call and error counts for the last
 * RPC_STATS_RING seconds, for rates over 10 s and 1 min; rpc_stats_tick()
 * starts a new second (the history sampler calls it once a second).
 *
 * The table lives on the loop thread; nothing here locks.
 */
#ifndef SIDECAR_RPC_STATS_H
#define SIDECAR_RPC_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proxy/errors.h"
#include "proxy/histo.h"

#define RPC_STATS_NAME_MAX 200
#define RPC_STATS_RING     61 /* 60 whole seconds plus the one in progress */
#define RPC_STATS_OTHER    "other"

struct rpc_stats_entry {
    char *name; /* NUL-terminated, printable UTF-8; the overflow entry's is RPC_STATS_OTHER */
    size_t name_len;
    uint32_t hash;
    uint64_t results[4]; /* by enum call_result */
    uint64_t errors[CALL_CAUSE_COUNT];
    struct histo duration;
    uint32_t sec_calls[RPC_STATS_RING];  /* finished in each second; indexed by rpc_stats.sec */
    uint32_t sec_errors[RPC_STATS_RING]; /* of those, app errors and sidecar failures */
};

struct rpc_stats_pool {
    char name[CONFIG_NAME_MAX + 1];
    struct rpc_stats_entry other;
    struct rpc_stats_entry **entries; /* named entries, in order of first call */
    size_t n_entries;
    size_t cap_entries;
    struct rpc_stats_entry **slots; /* open-addressing index over entries; n_slots a power of 2 */
    size_t n_slots;
};

struct rpc_stats {
    struct rpc_stats_pool **pools; /* by pool name, in order of first call */
    size_t n_pools;
    uint32_t sec;   /* ring index of the second in progress */
    uint64_t ticks; /* seconds started so far (bounds the rate windows) */
    uint64_t seed;  /* of the name hash */
};

/*
 * Counts one finished call of duration us. *rs is created on first use.
 * max_rpcs 0 counts nothing. result is an enum call_result, cause the
 * enum call_cause when result is CALL_RESULT_FAILED. An allocation failure
 * loses the sample (or counts it under "other"), never the call.
 */
void rpc_stats_record(struct rpc_stats **rs, uint32_t max_rpcs, const char *pool, const char *rpc,
                      size_t rpc_len, int result, int cause, uint64_t us);

/* Starts a new second in every entry's ring. NULL is fine. */
void rpc_stats_tick(struct rpc_stats *rs);

/* Finished calls of e in the last `seconds` whole seconds (1..RPC_STATS_RING-1),
 * and the errors among them. */
uint64_t rpc_stats_recent(const struct rpc_stats *rs, const struct rpc_stats_entry *e,
                          unsigned seconds, uint64_t *errors);

/* Whole seconds rpc_stats_recent can look back now (at most `seconds`). */
unsigned rpc_stats_window(const struct rpc_stats *rs, unsigned seconds);

/* Finished calls of e (the sum of its results). */
uint64_t rpc_stats_calls(const struct rpc_stats_entry *e);

/* Whether a client's RPC name may be a label of its own (see above). */
int rpc_stats_name_ok(const char *rpc, size_t len);

void rpc_stats_free(struct rpc_stats *rs);

#endif
