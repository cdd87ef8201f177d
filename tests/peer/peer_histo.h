/*
 * peer_histo: an HDR-style latency histogram for drpc-bench. Values below
 * 128 are exact; above, each power of two is cut into 128 buckets, so any
 * reported quantile is within 1/128 (< 0.8 %) of a recorded value, with a
 * fixed 58 KiB of counters however long the run.
 */
#ifndef SIDECAR_PEER_HISTO_H
#define SIDECAR_PEER_HISTO_H

#include <stdint.h>

#define PEER_HISTO_SUB_BITS 7
#define PEER_HISTO_SUB      (1u << PEER_HISTO_SUB_BITS)
#define PEER_HISTO_BUCKETS  (PEER_HISTO_SUB * (64 - PEER_HISTO_SUB_BITS + 1))

struct peer_histo {
    uint64_t counts[PEER_HISTO_BUCKETS];
    uint64_t n;
    uint64_t min, max;
};

void peer_histo_record(struct peer_histo *h, uint64_t v);

/* The q-quantile (0 <= q <= 1): the highest value of the bucket holding the
 * ceil(q*n)-th smallest sample, capped at the largest sample; 0 if empty. */
uint64_t peer_histo_quantile(const struct peer_histo *h, double q);

#endif
