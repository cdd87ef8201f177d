/*
 * history: the per-second ring (see history.h).
 *
 *   janitor (100 ms) --> history_tick: a second passed?
 *        --> for each live pool: its slot (by name), then
 *            delta = pool counters now - slot's copy; copy = now
 *        --> ring[taken % HISTORY_SECONDS] = that sample; taken++
 *        --> rpc_stats_tick (the per-RPC rates share this clock)
 */
#include "admin/history.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/call.h"
#include "proxy/inspect.h"
#include "proxy/pool.h"
#include "proxy/rpc_stats.h"
#include "proxy/sidecar.h"

static uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* The slot for pool name; a free one, or one whose pool has aged out of the ring. */
static struct history_slot *slot_for(struct history *h, const char *name)
{
    struct history_slot *free_slot = NULL;
    for (size_t i = 0; i < HISTORY_MAX_POOLS; i++) {
        struct history_slot *s = &h->slots[i];
        if (strcmp(s->name, name) == 0)
            return s;
        bool aged = s->name[0] && h->taken - s->last_seen > HISTORY_SECONDS;
        if (!free_slot && (!s->name[0] || aged))
            free_slot = s;
    }
    if (free_slot) {
        memset(free_slot, 0, sizeof(*free_slot));
        snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
    }
    return free_slot;
}

/* Per-second quantile: the histogram of the calls since the last sample. */
static uint32_t delta_quantile(const struct histo *now, const struct histo *before, double q)
{
    struct histo d = {.min_us = now->min_us, .max_us = now->max_us};
    for (size_t k = 0; k < HISTO_BUCKETS; k++) {
        d.counts[k] = now->counts[k] - before->counts[k];
        d.count += d.counts[k];
    }
    return clamp32(histo_quantile(&d, q));
}

static void sample_pool(struct history *h, struct history_sample *smp, const struct pool *p)
{
    struct history_slot *s = slot_for(h, p->pc->name);
    if (!s) {
        h->pools_not_recorded++;
        return;
    }
    struct history_pool_sample *out = &smp->pools[s - h->slots];
    const struct pool_stats *st = &p->stats;
    uint64_t calls = st->calls_ok + st->calls_app_error + st->calls_cancelled + st->calls_failed;
    /* A reload that rebuilt the pool starts its counters again. */
    if (s->pool != p || calls < s->calls || st->call_us.count < s->call.count ||
        st->wait_us.count < s->wait.count) {
        char name[sizeof(s->name)];
        memcpy(name, s->name, sizeof(name));
        memset(s, 0, sizeof(*s));
        memcpy(s->name, name, sizeof(name));
        s->pool = p;
    }
    s->last_seen = h->taken;
    out->calls = clamp32(calls - s->calls);
    out->app_errors = clamp32(st->calls_app_error - s->app_errors);
    for (int c = 0; c < CALL_CAUSE_COUNT; c++) {
        out->errors[c] = clamp32(st->errors[c] - s->errors[c]);
        s->errors[c] = st->errors[c];
    }
    out->call_p50_us = delta_quantile(&st->call_us, &s->call, 0.5);
    out->call_p99_us = delta_quantile(&st->call_us, &s->call, 0.99);
    out->wait_p99_us = delta_quantile(&st->wait_us, &s->wait, 0.99);
    out->busy = pool_n_busy(p);
    out->idle = pool_n_idle(p);
    out->max = p->pc->max_conns;
    out->waiters = p->n_waiters;
    s->calls = calls;
    s->app_errors = st->calls_app_error;
    s->call = st->call_us;
    s->wait = st->wait_us;
}

static void take_sample(struct history *h, struct sidecar *sc)
{
    struct history_sample *smp = &h->ring[h->taken % HISTORY_SECONDS];
    memset(smp, 0, sizeof(*smp));
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    smp->wall_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    smp->clients = inspect_n_clients(sc);
    smp->calls_in_flight = inspect_n_calls(sc);
    h->pools_not_recorded = 0;
    const struct pool *p;
    for (size_t i = 0; (p = inspect_pool(sc, i)); i++)
        sample_pool(h, smp, p);
    h->taken++;
}

void history_tick(struct history **hp, struct sidecar *sc)
{
    uint64_t now = inspect_now(sc);
    if (!*hp) {
        if (!(*hp = calloc(1, sizeof(**hp))))
            return;
        (*hp)->next_at = now + HISTORY_INTERVAL_MS;
        return;
    }
    struct history *h = *hp;
    if (now < h->next_at)
        return;
    /* Behind by more than a second (a stalled loop): sample once and go on. */
    h->next_at = now - h->next_at >= HISTORY_INTERVAL_MS ? now + HISTORY_INTERVAL_MS
                                                         : h->next_at + HISTORY_INTERVAL_MS;
    take_sample(h, sc);
    rpc_stats_tick(sc->rpc_stats);
}

/* One column: a JSON array of n values read by get from the samples. */
#define COLUMN(obj, key, expr)                                                                     \
    do {                                                                                           \
        json_t *col_ = json_array();                                                               \
        for (uint64_t k_ = first; col_ && k_ < taken; k_++) {                                      \
            const struct history_sample *smp = &h->ring[k_ % HISTORY_SECONDS];                     \
            (void)smp;                                                                             \
            if (json_array_append_new(col_, (expr))) {                                             \
                json_decref(col_);                                                                 \
                col_ = NULL;                                                                       \
            }                                                                                      \
        }                                                                                          \
        if (!col_ || json_object_set_new((obj), (key), col_))                                      \
            ok = false;                                                                            \
    } while (0)

static json_t *ms(uint32_t us)
{
    return json_real(us / 1000.0);
}

static json_t *int_json(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static uint64_t failed(const struct history_pool_sample *ps)
{
    uint64_t n = 0;
    for (int c = 0; c < CALL_CAUSE_COUNT; c++)
        n += ps->errors[c];
    return n;
}

static bool pool_columns(const struct history *h, uint64_t first, size_t slot, json_t *po)
{
    bool ok = true;
    uint64_t taken = h->taken;
#define PS (&smp->pools[slot])
    COLUMN(po, "calls", int_json(PS->calls));
    COLUMN(po, "app_errors", int_json(PS->app_errors));
    COLUMN(po, "errors", int_json(failed(PS)));
    COLUMN(po, "call_p50_ms", ms(PS->call_p50_us));
    COLUMN(po, "call_p99_ms", ms(PS->call_p99_us));
    COLUMN(po, "wait_p99_ms", ms(PS->wait_p99_us));
    COLUMN(po, "busy", int_json(PS->busy));
    COLUMN(po, "idle", int_json(PS->idle));
    COLUMN(po, "max", int_json(PS->max));
    COLUMN(po, "waiters", int_json(PS->waiters));
    /* Failures by cause: only the causes that occurred in the window. */
    json_t *by_cause = json_object();
    for (int c = 0; ok && by_cause && c < CALL_CAUSE_COUNT; c++) {
        bool any = false;
        for (uint64_t k = first; k < h->taken && !any; k++)
            any = h->ring[k % HISTORY_SECONDS].pools[slot].errors[c] != 0;
        if (any)
            COLUMN(by_cause, call_cause_name(c), int_json(PS->errors[c]));
    }
#undef PS
    if (!by_cause || json_object_set_new(po, "errors_by_cause", by_cause))
        ok = false;
    return ok;
}

json_t *history_view(const struct history *h, unsigned seconds)
{
    if (seconds > HISTORY_SECONDS)
        seconds = HISTORY_SECONDS;
    uint64_t taken = h ? h->taken : 0; /* NULL: no sample yet */
    uint64_t first = taken > seconds ? taken - seconds : 0;
    bool ok = true;
    json_t *o = json_pack(
        "{s:i, s:i, s:I, s:I, s:i}", "interval_ms", HISTORY_INTERVAL_MS, "capacity_seconds",
        HISTORY_SECONDS, "memory_bytes", (json_int_t)sizeof(struct history), "samples",
        (json_int_t)(taken - first), "pools_not_recorded", h ? (int)h->pools_not_recorded : 0);
    if (!o)
        return NULL;
    COLUMN(o, "t", int_json(smp->wall_ms));
    COLUMN(o, "clients", int_json(smp->clients));
    COLUMN(o, "calls_in_flight", int_json(smp->calls_in_flight));
    json_t *pools = json_array();
    for (size_t i = 0; h && ok && pools && i < HISTORY_MAX_POOLS; i++) {
        const struct history_slot *s = &h->slots[i];
        /* A slot shows while the window holds samples of its pool. */
        if (!s->name[0] || s->last_seen < first)
            continue;
        json_t *po = json_pack("{s:s}", "pool", s->name);
        if (po && !pool_columns(h, first, i, po)) {
            json_decref(po);
            po = NULL;
        }
        if (!po || json_array_append_new(pools, po))
            ok = false;
    }
    if (!pools || json_object_set_new(o, "pools", pools))
        ok = false;
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void history_free(struct history *h)
{
    free(h);
}
