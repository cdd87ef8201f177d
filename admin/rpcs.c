/*
 * rpcs: /metrics families and the /rpcs view over proxy/rpc_stats.h.
 *
 * Names were vetted when they were stored (rpc_stats_name_ok: printable
 * UTF-8), and are escaped again on the way out (metrics_escape_label,
 * jansson), so neither format depends on the other check alone.
 */
#include "admin/rpcs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/metrics.h"
#include "admin/metrics_table.h"
#include "proxy/call.h"
#include "proxy/rpc_stats.h"
#include "proxy/sidecar.h"

static const char *const result_names[] = {
#define X(value, label) [value] = label,
    METRICS_CALL_RESULTS(X)
#undef X
};

/* Appends with a sticky error, as metrics.c does. */
struct out {
    struct buf *b;
    int rc;
};

static void put(struct out *o, const char *s)
{
    if (!o->rc)
        o->rc = buf_append(o->b, s, strlen(s));
}

/* `drpc_sidecar_<name>{pool="P",rpc="R"` — the caller closes the brace. */
static void series(struct out *o, const char *name, const struct rpc_stats_pool *p,
                   const struct rpc_stats_entry *e)
{
    put(o, METRICS_PREFIX);
    put(o, name);
    put(o, "{pool=\"");
    if (!o->rc)
        o->rc = metrics_escape_label(o->b, p->name);
    put(o, "\",rpc=\"");
    if (!o->rc)
        o->rc = metrics_escape_label(o->b, e->name);
    put(o, "\"");
}

/* One sample: series(), then `,label="value"` when label is set, then the value. */
static void sample(struct out *o, const char *name, const struct rpc_stats_pool *p,
                   const struct rpc_stats_entry *e, const char *label, const char *label_value,
                   const char *value)
{
    series(o, name, p, e);
    if (label) {
        put(o, ",");
        put(o, label);
        put(o, "=\"");
        put(o, label_value);
        put(o, "\"");
    }
    put(o, "} ");
    put(o, value);
    put(o, "\n");
}

static const char *u64_text(uint64_t v, char *buf, size_t size)
{
    snprintf(buf, size, "%llu", (unsigned long long)v);
    return buf;
}

const struct rpc_stats_entry *rpcs_entry(const struct rpc_stats_pool *p, size_t k)
{
    if (k < p->n_entries)
        return p->entries[k];
    /* "other" shows once it counted a call. */
    return k == p->n_entries && rpc_stats_calls(&p->other) ? &p->other : NULL;
}

int rpcs_metrics_family(struct buf *out, int family)
{
    static const char *const heads[RPCS_FAMILIES] = {
        "# HELP " METRICS_PREFIX "rpc_calls_total Finished calls by pool, RPC name and result "
        "(names beyond metrics.max_rpcs count as rpc=\"other\")\n"
        "# TYPE " METRICS_PREFIX "rpc_calls_total counter\n",
        "# HELP " METRICS_PREFIX "rpc_errors_total Calls the sidecar failed, by pool, RPC "
        "name and cause (causes that occurred)\n"
        "# TYPE " METRICS_PREFIX "rpc_errors_total counter\n",
        "# HELP " METRICS_PREFIX "rpc_call_duration_seconds Call duration from Invoke to the "
        "end of the stream, by pool and RPC name\n"
        "# TYPE " METRICS_PREFIX "rpc_call_duration_seconds histogram\n",
    };
    return buf_append(out, heads[family], strlen(heads[family]));
}

int rpcs_metrics_entry(struct buf *out, int family, const struct rpc_stats_pool *p,
                       const struct rpc_stats_entry *e)
{
    struct out o = {out, 0};
    char n[24]; /* a counter's digits */
    if (family == 0) {
        for (size_t k = 0; k < 4; k++)
            sample(&o, "rpc_calls_total", p, e, "result", result_names[k],
                   u64_text(e->results[k], n, sizeof(n)));
    } else if (family == 1) {
        for (int c = 0; c < CALL_CAUSE_COUNT; c++) {
            if (e->errors[c])
                sample(&o, "rpc_errors_total", p, e, "cause", call_cause_name(c),
                       u64_text(e->errors[c], n, sizeof(n)));
        }
    } else {
        uint64_t cumulative = 0;
        for (size_t k = 0; k < HISTO_BUCKETS; k++) {
            cumulative += e->duration.counts[k];
            char le[32] = "+Inf";
            if (k < HISTO_BUCKETS - 1)
                metrics_format_seconds(histo_bounds_us[k], le, sizeof(le));
            sample(&o, "rpc_call_duration_seconds_bucket", p, e, "le", le,
                   u64_text(cumulative, n, sizeof(n)));
        }
        char sum[32];
        metrics_format_seconds(e->duration.sum_us, sum, sizeof(sum));
        sample(&o, "rpc_call_duration_seconds_sum", p, e, NULL, NULL, sum);
        sample(&o, "rpc_call_duration_seconds_count", p, e, NULL, NULL,
               u64_text(e->duration.count, n, sizeof(n)));
    }
    return o.rc;
}

int rpcs_render_metrics(const struct rpc_stats *rs, struct buf *out)
{
    int rc = 0;
    if (!rs)
        return 0;
    for (int f = 0; !rc && f < RPCS_FAMILIES; f++) {
        rc = rpcs_metrics_family(out, f);
        for (size_t i = 0; !rc && i < rs->n_pools; i++) {
            const struct rpc_stats_entry *e;
            for (size_t k = 0; !rc && (e = rpcs_entry(rs->pools[i], k)); k++)
                rc = rpcs_metrics_entry(out, f, rs->pools[i], e);
        }
    }
    return rc;
}

static double rate(uint64_t n, unsigned seconds)
{
    return seconds ? (double)n / seconds : 0.0;
}

json_t *rpcs_entry_json(const struct rpc_stats *rs, const struct rpc_stats_entry *e)
{
    unsigned w10 = rpc_stats_window(rs, 10), w60 = rpc_stats_window(rs, 60);
    uint64_t errors60;
    uint64_t calls10 = rpc_stats_recent(rs, e, 10, NULL);
    uint64_t calls60 = rpc_stats_recent(rs, e, 60, &errors60);
    json_t *results = json_object(), *errors = json_object();
    for (size_t k = 0; results && k < 4; k++)
        json_object_set_new(results, result_names[k], json_integer((json_int_t)e->results[k]));
    for (int c = 0; errors && c < CALL_CAUSE_COUNT; c++)
        if (e->errors[c])
            json_object_set_new(errors, call_cause_name(c), json_integer((json_int_t)e->errors[c]));
    const struct histo *h = &e->duration;
    /* s# and not s: a stored name is UTF-8 by construction, and its length is known. */
    return json_pack(
        "{s:s#, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o}", "rpc", e->name, (int)e->name_len,
        "calls", (json_int_t)rpc_stats_calls(e), "calls_per_second_10s", rate(calls10, w10),
        "calls_per_second_1m", rate(calls60, w60), "error_ratio_1m",
        calls60 ? (double)errors60 / (double)calls60 : 0.0, "p50_ms",
        histo_quantile(h, 0.5) / 1000.0, "p99_ms", histo_quantile(h, 0.99) / 1000.0, "max_ms",
        h->count ? h->max_us / 1000.0 : 0.0, "results", results, "errors", errors);
}

struct ranked {
    const struct rpc_stats_entry *e;
    uint64_t recent, total;
};

static int busiest_first(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->recent != y->recent)
        return x->recent < y->recent ? 1 : -1;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return strcmp(x->e->name, y->e->name);
}

const struct rpc_stats_entry **rpcs_rank(const struct rpc_stats *rs, const struct rpc_stats_pool *p,
                                         size_t *n_out)
{
    *n_out = 0;
    struct ranked *r = calloc(p->n_entries + 1, sizeof(*r));
    const struct rpc_stats_entry **list = calloc(p->n_entries + 1, sizeof(*list));
    if (!r || !list) {
        free(r);
        free(list);
        return NULL;
    }
    size_t n = 0;
    const struct rpc_stats_entry *e;
    for (size_t k = 0; (e = rpcs_entry(p, k)); k++)
        r[n++] = (struct ranked){e, rpc_stats_recent(rs, e, 60, NULL), rpc_stats_calls(e)};
    qsort(r, n, sizeof(*r), busiest_first);
    for (size_t k = 0; k < n; k++)
        list[k] = r[k].e;
    free(r);
    *n_out = n;
    return list;
}

static json_t *pool_json(const struct rpc_stats *rs, const struct rpc_stats_pool *p)
{
    size_t n;
    json_t *list = json_array();
    const struct rpc_stats_entry **ranked = rpcs_rank(rs, p, &n);
    if (!list || !ranked) {
        json_decref(list);
        free(ranked);
        return NULL;
    }
    for (size_t k = 0; k < n; k++)
        if (json_array_append_new(list, rpcs_entry_json(rs, ranked[k]))) {
            json_decref(list);
            list = NULL;
            break;
        }
    free(ranked);
    return list ? json_pack("{s:s, s:o}", "pool", p->name, "rpcs", list) : NULL;
}

json_t *rpcs_view(const struct sidecar *sc)
{
    json_t *pools = json_array();
    const struct rpc_stats *rs = sc->rpc_stats;
    for (size_t i = 0; pools && rs && i < rs->n_pools; i++)
        if (json_array_append_new(pools, pool_json(rs, rs->pools[i]))) {
            json_decref(pools);
            pools = NULL;
        }
    return json_pack("{s:I, s:o}", "max_rpcs", (json_int_t)sc->cfg->metrics_max_rpcs, "pools",
                     pools);
}
