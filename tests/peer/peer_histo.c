/* peer_histo: log-linear histogram (see peer_histo.h). */
#include "tests/peer/peer_histo.h"

#include <math.h>

/*
 * v < SUB: bucket v. Otherwise with m the index of v's top bit (m >= 7),
 * shift = m - 7 and top = v >> shift in [SUB, 2*SUB): bucket
 * SUB + shift*SUB + (top - SUB). Buckets 128..255 are exact again, so the
 * mapping is continuous.
 */
static unsigned bucket_of(uint64_t v)
{
    if (v < PEER_HISTO_SUB)
        return (unsigned)v;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = m - PEER_HISTO_SUB_BITS;
    unsigned top = (unsigned)(v >> shift);
    return PEER_HISTO_SUB + shift * PEER_HISTO_SUB + (top - PEER_HISTO_SUB);
}

static uint64_t bucket_high(unsigned i)
{
    if (i < PEER_HISTO_SUB)
        return i;
    unsigned shift = (i - PEER_HISTO_SUB) / PEER_HISTO_SUB;
    uint64_t top = PEER_HISTO_SUB + (i - PEER_HISTO_SUB) % PEER_HISTO_SUB;
    return ((top + 1) << shift) - 1;
}

void peer_histo_record(struct peer_histo *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->n++;
}

uint64_t peer_histo_quantile(const struct peer_histo *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    if (rank > h->n)
        rank = h->n;
    uint64_t seen = 0;
    for (unsigned i = 0; i < PEER_HISTO_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);
            if (v > h->max)
                v = h->max;
            return v < h->min ? h->min : v;
        }
    }
    return h->max;
}
