/*
 * histo: fixed-bucket latency histogram (microseconds). The same buckets
 * feed Prometheus (_bucket/_sum/_count) and the admin percentiles, which
 * are interpolated within a bucket and then kept inside the smallest and
 * largest value recorded (a bucket can be wide: one 20 s call must not be
 * reported as a p99 of 29.8 s).
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
    uint64_t min_us; /* smallest and largest value recorded; valid when count > 0 */
    uint64_t max_us;
};

void histo_record(struct histo *h, uint64_t us);

/* Estimated q-quantile (0 < q < 1) in microseconds, within [min_us, max_us];
 * 0 when empty. */
uint64_t histo_quantile(const struct histo *h, double q);

#endif
