/*
 * histo: fixed-bucket latency histogram (microseconds). The same buckets
 * feed Prometheus (_bucket/_sum/_count) and the admin percentiles, which
 * are interpolated within a bucket.
 */
#ifndef SIDECAR_HISTO_H
#define SIDECAR_HISTO_H

#include <stddef.h>
#include <stdint.h>

#define HISTO_BUCKETS 20

/* Upper bounds in microseconds; the last bucket is +Inf. */
extern const uint64_t histo_bounds_us[HISTO_BUCKETS - 1];

struct histo {
    uint64_t counts[HISTO_BUCKETS];
    uint64_t count;
    uint64_t sum_us;
};

void histo_record(struct histo *h, uint64_t us);

/* Estimated q-quantile (0 < q < 1) in microseconds; 0 when empty. */
uint64_t histo_quantile(const struct histo *h, double q);

#endif
