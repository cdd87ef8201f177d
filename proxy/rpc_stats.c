/*
 * rpc_stats: per-pool, per-RPC counters (see rpc_stats.h).
 *
 *   call ends --> rpc_stats_record(pool, rpc)
 *                   pool table (linear: few pools)
 *                   --> name index (FNV-1a, linear probing)
 *                         found: that entry
 *                         new and room (< max_rpcs) and a plain name: new entry
 *                         otherwise: the pool's "other" entry
 *
 * Entries are never removed, so a name keeps its series for the life of
 * the process and the index needs no tombstones.
 */
#include "proxy/rpc_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/call.h"
#include "proxy/utf8.h"

/* Eight bytes a step (a byte-wise hash was a third of the per-call cost),
 * seeded per table so names chosen to collide cannot be prepared in advance. */
static uint32_t hash_name(uint64_t seed, const char *s, size_t n)
{
    uint64_t h = seed ^ n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    return (uint32_t)(h ^ (h >> 29));
}

int rpc_stats_name_ok(const char *rpc, size_t len)
{
    if (len == 0 || len > RPC_STATS_NAME_MAX)
        return 0;
    if (len == sizeof(RPC_STATS_OTHER) - 1 && memcmp(rpc, RPC_STATS_OTHER, len) == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)rpc[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return utf8_valid((const unsigned char *)rpc, len);
}

static struct rpc_stats_pool *find_pool(struct rpc_stats *rs, const char *name)
{
    for (size_t i = 0; i < rs->n_pools; i++)
        if (strcmp(rs->pools[i]->name, name) == 0)
            return rs->pools[i];
    struct rpc_stats_pool **pools = realloc(rs->pools, (rs->n_pools + 1) * sizeof(*pools));
    if (!pools)
        return NULL;
    rs->pools = pools;
    struct rpc_stats_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->other.name = (char *)RPC_STATS_OTHER;
    p->other.name_len = sizeof(RPC_STATS_OTHER) - 1;
    rs->pools[rs->n_pools++] = p;
    return p;
}

/* The slot for (rpc, h) in p's index: the entry or an empty slot. */
static struct rpc_stats_entry **lookup(struct rpc_stats_pool *p, const char *rpc, size_t len,
                                       uint32_t h)
{
    size_t mask = p->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct rpc_stats_entry *e = p->slots[i];
        if (!e || (e->hash == h && e->name_len == len && memcmp(e->name, rpc, len) == 0))
            return &p->slots[i];
    }
}

/* Keeps the index at most half full. 0, or -1 when out of memory. */
static int grow(struct rpc_stats_pool *p)
{
    if (p->n_entries == p->cap_entries) {
        size_t cap = p->cap_entries ? p->cap_entries * 2 : 8;
        struct rpc_stats_entry **es = realloc(p->entries, cap * sizeof(*es));
        if (!es)
            return -1;
        p->entries = es;
        p->cap_entries = cap;
    }
    if ((p->n_entries + 1) * 2 <= p->n_slots)
        return 0;
    size_t n = p->n_slots ? p->n_slots * 2 : 16;
    struct rpc_stats_entry **slots = calloc(n, sizeof(*slots));
    if (!slots)
        return -1;
    free(p->slots);
    p->slots = slots;
    p->n_slots = n;
    for (size_t i = 0; i < p->n_entries; i++) {
        struct rpc_stats_entry *e = p->entries[i];
        *lookup(p, e->name, e->name_len, e->hash) = e;
    }
    return 0;
}

static struct rpc_stats_entry *entry_for(struct rpc_stats_pool *p, uint64_t seed, uint32_t max_rpcs,
                                         const char *rpc, size_t len)
{
    if (len == 0 || len > RPC_STATS_NAME_MAX)
        return &p->other;
    /* Stored names passed rpc_stats_name_ok, so a name equal to one needs
     * no check: the common case (a known name) costs a hash and a compare. */
    uint32_t h = hash_name(seed, rpc, len);
    if (p->n_slots) {
        struct rpc_stats_entry **slot = lookup(p, rpc, len, h);
        if (*slot)
            return *slot;
    }
    if (p->n_entries >= max_rpcs || !rpc_stats_name_ok(rpc, len) || grow(p) != 0)
        return &p->other;
    struct rpc_stats_entry *e = calloc(1, sizeof(*e));
    char *name = e ? malloc(len + 1) : NULL;
    if (!name) {
        free(e);
        return &p->other;
    }
    memcpy(name, rpc, len);
    name[len] = '\0';
    e->name = name;
    e->name_len = len;
    e->hash = h;
    p->entries[p->n_entries++] = e;
    *lookup(p, rpc, len, h) = e;
    return e;
}

void rpc_stats_record(struct rpc_stats **rsp, uint32_t max_rpcs, const char *pool, const char *rpc,
                      size_t rpc_len, int result, int cause, uint64_t us)
{
    if (max_rpcs == 0)
        return;
    if (!*rsp) {
        if (!(*rsp = calloc(1, sizeof(**rsp))))
            return;
        (*rsp)->seed = uv_hrtime() * 0x9e3779b97f4a7c15ULL;
    }
    struct rpc_stats *rs = *rsp;
    struct rpc_stats_pool *p = find_pool(rs, pool);
    if (!p)
        return;
    struct rpc_stats_entry *e = entry_for(p, rs->seed, max_rpcs, rpc ? rpc : "", rpc ? rpc_len : 0);
    if (result >= 0 && result < 4)
        e->results[result]++;
    if (result == CALL_RESULT_FAILED && cause >= 0 && cause < CALL_CAUSE_COUNT)
        e->errors[cause]++;
    histo_record(&e->duration, us);
    e->sec_calls[rs->sec]++;
    if (result == CALL_RESULT_APP_ERROR || result == CALL_RESULT_FAILED)
        e->sec_errors[rs->sec]++;
}

static void tick_entry(struct rpc_stats_entry *e, uint32_t sec)
{
    e->sec_calls[sec] = 0;
    e->sec_errors[sec] = 0;
}

void rpc_stats_tick(struct rpc_stats *rs)
{
    if (!rs)
        return;
    rs->sec = (rs->sec + 1) % RPC_STATS_RING;
    rs->ticks++;
    for (size_t i = 0; i < rs->n_pools; i++) {
        struct rpc_stats_pool *p = rs->pools[i];
        tick_entry(&p->other, rs->sec);
        for (size_t k = 0; k < p->n_entries; k++)
            tick_entry(p->entries[k], rs->sec);
    }
}

unsigned rpc_stats_window(const struct rpc_stats *rs, unsigned seconds)
{
    if (seconds > RPC_STATS_RING - 1)
        seconds = RPC_STATS_RING - 1;
    return rs->ticks < seconds ? (unsigned)rs->ticks : seconds;
}

uint64_t rpc_stats_recent(const struct rpc_stats *rs, const struct rpc_stats_entry *e,
                          unsigned seconds, uint64_t *errors)
{
    seconds = rpc_stats_window(rs, seconds);
    uint64_t calls = 0, errs = 0;
    for (unsigned k = 1; k <= seconds; k++) {
        uint32_t i = (rs->sec + RPC_STATS_RING - k) % RPC_STATS_RING;
        calls += e->sec_calls[i];
        errs += e->sec_errors[i];
    }
    if (errors)
        *errors = errs;
    return calls;
}

uint64_t rpc_stats_calls(const struct rpc_stats_entry *e)
{
    return e->results[0] + e->results[1] + e->results[2] + e->results[3];
}

void rpc_stats_free(struct rpc_stats *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n_pools; i++) {
        struct rpc_stats_pool *p = rs->pools[i];
        for (size_t k = 0; k < p->n_entries; k++) {
            free(p->entries[k]->name);
            free(p->entries[k]);
        }
        free(p->entries);
        free(p->slots);
        free(p);
    }
    free(rs->pools);
    free(rs);
}
