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
            uint64_t lo = i == 0 ? 0 : histo_bounds_us[i - 1];
            if (i == HISTO_BUCKETS - 1)
                return lo;
            uint64_t hi = histo_bounds_us[i];
            double frac = (rank - (double)seen) / (double)h->counts[i];
            return lo + (uint64_t)(frac * (double)(hi - lo));
        }
        seen += h->counts[i];
    }
    return histo_bounds_us[HISTO_BUCKETS - 2];
}
