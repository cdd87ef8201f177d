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

/* One column: a JSON array of the values expr reads from the samples [first, taken). */
#define COLUMN(expr)                                                                               \
    do {                                                                                           \
        col = json_array();                                                                        \
        for (uint64_t k_ = first; col && k_ < h->taken; k_++) {                                    \
            const struct history_sample *smp = &h->ring[k_ % HISTORY_SECONDS];                     \
            (void)smp;                                                                             \
            if (json_array_append_new(col, (expr))) {                                              \
                json_decref(col);                                                                  \
                col = NULL;                                                                        \
            }                                                                                      \
        }                                                                                          \
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

/* The first sample number the view of `seconds` shows. */
static uint64_t first_shown(const struct history *h, unsigned seconds)
{
    if (seconds > HISTORY_SECONDS)
        seconds = HISTORY_SECONDS;
    return h->taken > seconds ? h->taken - seconds : 0;
}

struct history *history_snapshot(const struct history *h)
{
    struct history *copy = malloc(sizeof(*copy));
    if (!copy)
        return NULL;
    if (h)
        memcpy(copy, h, sizeof(*copy));
    else
        memset(copy, 0, sizeof(*copy)); /* no sample yet */
    return copy;
}

json_t *history_view_head(const struct history *h, unsigned seconds)
{
    uint64_t first = first_shown(h, seconds);
    return json_pack("{s:i, s:i, s:I, s:I, s:i}", "interval_ms", HISTORY_INTERVAL_MS,
                     "capacity_seconds", HISTORY_SECONDS, "memory_bytes",
                     (json_int_t)sizeof(struct history), "samples", (json_int_t)(h->taken - first),
                     "pools_not_recorded", (int)h->pools_not_recorded);
}

json_t *history_process_column(const struct history *h, unsigned seconds, unsigned col_index,
                               const char **key)
{
    static const char *const keys[] = {"t", "clients", "calls_in_flight"};
    uint64_t first = first_shown(h, seconds);
    json_t *col = NULL;
    *key = col_index < sizeof(keys) / sizeof(keys[0]) ? keys[col_index] : NULL;
    switch (col_index) {
    case 0:
        COLUMN(int_json(smp->wall_ms));
        break;
    case 1:
        COLUMN(int_json(smp->clients));
        break;
    case 2:
        COLUMN(int_json(smp->calls_in_flight));
        break;
    }
    return col;
}

const char *history_slot_shown(const struct history *h, unsigned seconds, size_t slot)
{
    const struct history_slot *s = &h->slots[slot];
    /* A slot shows while the window holds samples of its pool. */
    if (slot >= HISTORY_MAX_POOLS || !s->name[0] || s->last_seen < first_shown(h, seconds))
        return NULL;
    return s->name;
}

json_t *history_pool_column(const struct history *h, unsigned seconds, size_t slot,
                            unsigned col_index, const char **key, bool *by_cause)
{
    static const char *const keys[] = {"calls",       "app_errors",  "errors", "call_p50_ms",
                                       "call_p99_ms", "wait_p99_ms", "busy",   "idle",
                                       "max",         "waiters"};
    const size_t n_plain = sizeof(keys) / sizeof(keys[0]);
    uint64_t first = first_shown(h, seconds);
    json_t *col = NULL;
    *by_cause = col_index >= n_plain;
    if (col_index >= n_plain + CALL_CAUSE_COUNT) {
        *key = NULL;
        return NULL;
    }
#define PS (&smp->pools[slot])
    if (*by_cause) {
        /* Failures by cause: only the causes that occurred in the window. */
        int c = (int)(col_index - n_plain);
        bool any = false;
        for (uint64_t k = first; k < h->taken && !any; k++)
            any = h->ring[k % HISTORY_SECONDS].pools[slot].errors[c] != 0;
        *key = call_cause_name(c);
        if (any)
            COLUMN(int_json(PS->errors[c]));
        return col;
    }
    *key = keys[col_index];
    switch (col_index) {
    case 0:
        COLUMN(int_json(PS->calls));
        break;
    case 1:
        COLUMN(int_json(PS->app_errors));
        break;
    case 2:
        COLUMN(int_json(failed(PS)));
        break;
    case 3:
        COLUMN(ms(PS->call_p50_us));
        break;
    case 4:
        COLUMN(ms(PS->call_p99_us));
        break;
    case 5:
        COLUMN(ms(PS->wait_p99_us));
        break;
    case 6:
        COLUMN(int_json(PS->busy));
        break;
    case 7:
        COLUMN(int_json(PS->idle));
        break;
    case 8:
        COLUMN(int_json(PS->max));
        break;
    case 9:
        COLUMN(int_json(PS->waiters));
        break;
    }
#undef PS
    return col;
}

void history_free(struct history *h)
{
    free(h);
}
