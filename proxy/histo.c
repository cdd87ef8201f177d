/* histo: bucketed latency histogram (see histo.h). */
#include "proxy/histo.h"

const uint64_t histo_bounds_us[HISTO_BUCKETS - 1] = {
    50,     100,    250,    500,     1000,    2500,    5000,     10000,    25000,    50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

void histo_record(struct histo *h, uint64_t us)
{
    size_t i = 0;
    while (i < HISTO_BUCKETS - 1 && us > histo_bounds_us[i])
        i++;
    h->counts[i]++;
    if (h->count == 0 || us < h->min_us)
        h->min_us = us;
    if (us > h->max_us)
        h->max_us = us;
    h->count++;
    h->sum_us += us;
}

uint64_t histo_quantile(const struct histo *h, double q)
{
    if (h->count == 0)
        return 0;
    double rank = q * (double)h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < HISTO_BUCKETS; i++) {
        if (h->counts[i] == 0)
            continue;
        if ((double)(seen + h->counts[i]) >= rank) {
            /* Interpolate over the part of the bucket values were seen in. */
            uint64_t lo = i == 0 ? 0 : histo_bounds_us[i - 1];
            uint64_t hi = i == HISTO_BUCKETS - 1 ? h->max_us : histo_bounds_us[i];
            if (lo < h->min_us)
                lo = h->min_us;
            if (hi > h->max_us)
                hi = h->max_us;
            if (hi <= lo)
                return lo;
            double frac = (rank - (double)seen) / (double)h->counts[i];
            return lo + (uint64_t)(frac * (double)(hi - lo));
        }
        seen += h->counts[i];
    }
    return h->max_us;
}
