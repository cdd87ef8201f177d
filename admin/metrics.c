/*
 * metrics: the Prometheus text exposition (see metrics.h), one family per
 * row of metrics_table.h plus the reused counter tables.
 *
 * Rendering appends into one buffer with a sticky error (struct expo): the
 * first failed allocation stops every later append, and the caller sees
 * UV_ENOMEM once at the end instead of a check after every line.
 */
#include "admin/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "admin/admin.h"
#include "admin/metrics_table.h"
#include "proxy/accesslog.h"
#include "proxy/call.h"
#include "proxy/histo.h"
#include "proxy/tls_ctx.h"
#include "proxy/tls_stats.h"
#include "proxy/inspect.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

struct expo {
    struct buf *b;
    int rc; /* first error; nothing is appended after one */
};

static void put(struct expo *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct expo *x, const char *fmt, ...)
{
    if (x->rc)
        return;
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) {
        x->rc = UV_EINVAL;
        return;
    }
    if ((size_t)n < sizeof(tmp)) {
        x->rc = buf_append(x->b, tmp, (size_t)n);
        return;
    }
    /* Longer than tmp (a long help text): format again, in place. */
    x->rc = buf_reserve(x->b, (size_t)n + 1);
    if (x->rc)
        return;
    va_start(ap, fmt);
    vsnprintf((char *)x->b->data + x->b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    x->b->len += (size_t)n;
}

int metrics_escape_label(struct buf *out, const char *v)
{
    /* Runs of plain bytes go in one append. */
    const char *run = v;
    for (const char *c = v;; c++) {
        const char *esc = *c == '\\' ? "\\\\" : *c == '"' ? "\\\"" : *c == '\n' ? "\\n" : NULL;
        if (!esc && *c)
            continue;
        int rc = buf_append(out, run, (size_t)(c - run));
        if (!rc && esc)
            rc = buf_append(out, esc, 2);
        if (rc)
            return rc;
        if (!*c)
            return 0;
        run = c + 1;
    }
}

/* A label value, escaped, inside the quotes the caller wrote. */
static void put_label(struct expo *x, const char *v)
{
    if (!x->rc)
        x->rc = metrics_escape_label(x->b, v);
}

static void family(struct expo *x, const char *prefix, const char *name, const char *type,
                   const char *help)
{
    put(x, "# HELP %s%s %s\n# TYPE %s%s %s\n", prefix, name, help, prefix, name, type);
}

/* `prefix name{pool="P"` — the caller adds more labels and closes the brace. */
static void pool_series(struct expo *x, const char *name, const char *suffix, const struct pool *p)
{
    put(x, METRICS_PREFIX "%s%s{pool=\"", name, suffix);
    put_label(x, p->pc->name);
    put(x, "\"");
}

void metrics_format_seconds(uint64_t us, char *out, size_t size)
{
    int n = snprintf(out, size, "%llu.%06llu", (unsigned long long)(us / 1000000),
                     (unsigned long long)(us % 1000000));
    if (n < 0 || (size_t)n >= size)
        return;
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
    if (n > 0 && out[n - 1] == '.')
        out[--n] = '\0';
}

static void histogram(struct expo *x, const char *name, const struct pool *p, const struct histo *h)
{
    uint64_t cumulative = 0;
    for (size_t k = 0; k < HISTO_BUCKETS; k++) {
        cumulative += h->counts[k];
        char le[32] = "+Inf";
        if (k < HISTO_BUCKETS - 1)
            metrics_format_seconds(histo_bounds_us[k], le, sizeof(le));
        pool_series(x, name, "_bucket", p);
        put(x, ",le=\"%s\"} %llu\n", le, (unsigned long long)cumulative);
    }
    char sum[32];
    metrics_format_seconds(h->sum_us, sum, sizeof(sum));
    pool_series(x, name, "_sum", p);
    put(x, "} %s\n", sum);
    pool_series(x, name, "_count", p);
    put(x, "} %llu\n", (unsigned long long)h->count);
}

/*
 * Open descriptors: counts /proc/self/fd. opendir/readdir are blocking
 * calls, but on procfs they never wait for a disk (the kernel builds the
 * listing from the fd table), so this is as cheap as a syscall or two per
 * scrape and stays on the loop.
 */
uint64_t metrics_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not counting the directory stream itself */
}

/* uv_resident_set_memory reads /proc/self/stat: a procfs read, as above. */
uint64_t metrics_resident_bytes(void)
{
    size_t rss = 0;
    return uv_resident_set_memory(&rss) == 0 ? (uint64_t)rss : 0;
}

/* One sample `name{pool="P"} value`. */
static void pool_sample(struct expo *x, const char *name, const struct pool *p, uint64_t value)
{
    pool_series(x, name, "", p);
    put(x, "} %llu\n", (unsigned long long)value);
}

/* The Prometheus name of a POOL_COUNTERS field: pool_<field>_total unless renamed. */
static const char *pool_counter_metric(const char *field, char *buf, size_t size)
{
#define X(f, metric)                                                                               \
    if (strcmp(field, #f) == 0)                                                                    \
        return #metric;
    METRICS_POOL_COUNTER_NAMES(X)
#undef X
    snprintf(buf, size, "pool_%s_total", field);
    return buf;
}

/* build_info and the config reload state, named as Prometheus names its own. */
static void process_info(struct expo *x, const struct sidecar *sc)
{
    family(x, METRICS_PREFIX, "build_info", "gauge",
           "Always 1; the version label says which build");
    put(x, METRICS_PREFIX "build_info{version=\"");
    put_label(x, SIDECAR_VERSION);
    put(x, "\"} 1\n");
    /* Before any reload, the config loaded at start is the last good one. */
    const struct reload_status *st = &sc->last_reload;
    uint64_t ok_ms = st->ok_wall_ms ? st->ok_wall_ms : sc->started_wall_ms;
    family(x, METRICS_PREFIX, "config_last_reload_successful", "gauge",
           "Whether the last configuration reload attempt was successful");
    put(x, METRICS_PREFIX "config_last_reload_successful %d\n", !st->attempted || st->ok);
    family(x, METRICS_PREFIX, "config_last_reload_success_timestamp_seconds", "gauge",
           "Timestamp of the last successful configuration load or reload");
    put(x, METRICS_PREFIX "config_last_reload_success_timestamp_seconds %llu.%03llu\n",
        (unsigned long long)(ok_ms / 1000), (unsigned long long)(ok_ms % 1000));
}

static void pool_families(struct expo *x, const struct sidecar *sc, uint64_t now)
{
    /* One family per row, one sample per pool. */
#define X(metric, type, json, jtype, help, value)                                                  \
    family(x, METRICS_PREFIX, #metric, #type, help);                                               \
    for (size_t i = 0; inspect_pool(sc, i); i++) {                                                 \
        const struct pool *p = inspect_pool(sc, i);                                                \
        pool_sample(x, #metric, p, (uint64_t)(value));                                             \
    }
    METRICS_POOL_CONNS(X)
    METRICS_POOL_STATE(X)
#undef X
#define X(name, help)                                                                              \
    {                                                                                              \
        char buf[96];                                                                              \
        const char *metric = pool_counter_metric(#name, buf, sizeof(buf));                         \
        family(x, METRICS_PREFIX, metric, "counter", help);                                        \
        for (size_t i = 0; inspect_pool(sc, i); i++)                                               \
            pool_sample(x, metric, inspect_pool(sc, i), inspect_pool(sc, i)->stats.name);          \
    }
    POOL_COUNTERS(X)
#undef X

    family(x, METRICS_PREFIX, "call_errors_total", "counter",
           "Calls the sidecar failed, by pool and cause (see errors.h)");
    for (size_t i = 0; inspect_pool(sc, i); i++) {
        const struct pool *p = inspect_pool(sc, i);
        for (int c = 0; c < CALL_CAUSE_COUNT; c++) {
            pool_series(x, "call_errors_total", "", p);
            put(x, ",cause=\"%s\"} %llu\n", call_cause_name(c),
                (unsigned long long)p->stats.errors[c]);
        }
    }

#define X(metric, json, help, member)                                                              \
    family(x, METRICS_PREFIX, #metric, "histogram", help);                                         \
    for (size_t i = 0; inspect_pool(sc, i); i++)                                                   \
        histogram(x, #metric, inspect_pool(sc, i), &inspect_pool(sc, i)->stats.member);
    METRICS_POOL_HISTOS(X)
#undef X

#define X(metric, type, json, jtype, help, value)                                                  \
    family(x, METRICS_PREFIX, #metric, #type, help);                                               \
    for (size_t i = 0; inspect_pool(sc, i); i++) {                                                 \
        const struct pool *p = inspect_pool(sc, i);                                                \
        for (size_t k = 0; k < p->n_endpoints; k++) {                                              \
            const struct endpoint *e = &p->endpoints[k];                                           \
            pool_series(x, #metric, "", p);                                                        \
            put(x, ",endpoint=\"");                                                                \
            put_label(x, e->addr->text);                                                           \
            put(x, "\"} %llu\n", (unsigned long long)(value));                                     \
        }                                                                                          \
    }
    METRICS_ENDPOINT(X)
#undef X
}

static void call_results(struct expo *x, const struct sidecar *sc)
{
    static const char *const names[] = {
#define X(value, label) [value] = label,
        METRICS_CALL_RESULTS(X)
#undef X
    };
    family(x, METRICS_PREFIX, "calls_total", "counter",
           "Finished calls by pool, route and result (ok, app_error, cancelled, failed)");
    for (const struct route_counter *r = sc->route_counters; r; r = r->next) {
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            put(x, METRICS_PREFIX "calls_total{pool=\"");
            put_label(x, r->pool);
            put(x, "\",route=\"");
            put_label(x, r->route);
            put(x, "\",result=\"%s\"} %llu\n", names[k], (unsigned long long)r->results[k]);
        }
    }
}

/* `prefix name{kind="K",name="N"` — the caller adds labels and closes. */
static void tls_series(struct expo *x, const char *name, const struct tls_stats *t)
{
    put(x, METRICS_PREFIX "%s{kind=\"%s\",name=\"", name, t->kind);
    put_label(x, t->name);
    put(x, "\"");
}

/* Handshakes by result and reason, resumed sessions and handshake times
 * of every TLS listener and pool, and the expiry of every configured
 * certificate. */
static void tls_families(struct expo *x, const struct sidecar *sc)
{
    if (!sc->tls_stats)
        return; /* no TLS configured, ever */
    family(x, METRICS_PREFIX, "tls_handshakes_total", "counter",
           "TLS handshakes by listener or pool, result (ok, failed) and failure reason");
    for (const struct tls_stats *t = sc->tls_stats; t; t = t->next) {
        tls_series(x, "tls_handshakes_total", t);
        put(x, ",result=\"ok\",reason=\"\"} %llu\n", (unsigned long long)t->ok);
        for (size_t i = 0; i < t->n_reasons; i++) {
            tls_series(x, "tls_handshakes_total", t);
            put(x, ",result=\"failed\",reason=\"");
            put_label(x, t->reasons[i].reason);
            put(x, "\"} %llu\n", (unsigned long long)t->reasons[i].n);
        }
        if (t->other_reasons) {
            tls_series(x, "tls_handshakes_total", t);
            put(x, ",result=\"failed\",reason=\"other\"} %llu\n",
                (unsigned long long)t->other_reasons);
        }
    }
    family(x, METRICS_PREFIX, "tls_resumed_total", "counter",
           "TLS handshakes that resumed a session (an abbreviated handshake)");
    for (const struct tls_stats *t = sc->tls_stats; t; t = t->next) {
        tls_series(x, "tls_resumed_total", t);
        put(x, "} %llu\n", (unsigned long long)t->resumed);
    }
    family(x, METRICS_PREFIX, "tls_handshake_duration_seconds", "histogram",
           "Time from the first handshake byte (accept, or TCP connected) to a completed "
           "TLS handshake");
    for (const struct tls_stats *t = sc->tls_stats; t; t = t->next) {
        uint64_t cumulative = 0;
        for (size_t k = 0; k < HISTO_BUCKETS; k++) {
            cumulative += t->duration.counts[k];
            char le[32] = "+Inf";
            if (k < HISTO_BUCKETS - 1)
                metrics_format_seconds(histo_bounds_us[k], le, sizeof(le));
            tls_series(x, "tls_handshake_duration_seconds_bucket", t);
            put(x, ",le=\"%s\"} %llu\n", le, (unsigned long long)cumulative);
        }
        char sum[32];
        metrics_format_seconds(t->duration.sum_us, sum, sizeof(sum));
        tls_series(x, "tls_handshake_duration_seconds_sum", t);
        put(x, "} %s\n", sum);
        tls_series(x, "tls_handshake_duration_seconds_count", t);
        put(x, "} %llu\n", (unsigned long long)t->duration.count);
    }
    if (!sc->tls)
        return;
    family(x, METRICS_PREFIX, "tls_certificate_expiry_timestamp_seconds", "gauge",
           "When a configured certificate (own, chain or CA) expires, in Unix seconds");
    for (size_t i = 0; i < sc->tls->n_expiry; i++) {
        const struct tls_expiry *e = &sc->tls->expiry[i];
        put(x, METRICS_PREFIX "tls_certificate_expiry_timestamp_seconds{kind=\"%s\",name=\"",
            e->kind);
        put_label(x, e->owner);
        put(x, "\",role=\"%s\",file=\"", e->role);
        put_label(x, e->file);
        put(x, "\",subject=\"");
        put_label(x, e->subject);
        put(x, "\"} %lld\n", (long long)e->not_after);
    }
}

int metrics_render_pools(const struct sidecar *sc, struct buf *out)
{
    struct expo x = {out, 0};
    pool_families(&x, sc, inspect_now(sc));
    call_results(&x, sc);
    return x.rc;
}

int metrics_render_process(const struct sidecar *sc, const struct admin *admin, struct buf *out)
{
    struct expo x = {out, 0};
    tls_families(&x, sc);

#define X(metric, type, json, jtype, help, value)                                                  \
    family(&x, METRICS_PREFIX, #metric, #type, help);                                              \
    for (size_t i = 0; inspect_listener(sc, i); i++) {                                             \
        const struct listener *l = inspect_listener(sc, i);                                        \
        put(&x, METRICS_PREFIX #metric "{listener=\"");                                            \
        put_label(&x, l->lc->name);                                                                \
        put(&x, "\"} %llu\n", (unsigned long long)(value));                                        \
    }
    METRICS_LISTENER(X)
#undef X

#define X(name, help)                                                                              \
    family(&x, METRICS_PREFIX, #name "_total", "counter", help);                                   \
    put(&x, METRICS_PREFIX #name "_total %llu\n", (unsigned long long)sc->stats.name);
    SIDECAR_COUNTERS(X)
#undef X

#define X(metric, type, json, jtype, help, value)                                                  \
    family(&x, METRICS_PREFIX, #metric, #type, help);                                              \
    put(&x, METRICS_PREFIX #metric " %llu\n", (unsigned long long)(value));
    METRICS_PROCESS(X)
#undef X

#define X(metric, json, help, value_us)                                                            \
    {                                                                                              \
        char secs[32];                                                                             \
        metrics_format_seconds(value_us, secs, sizeof(secs));                                      \
        family(&x, METRICS_PREFIX, #metric, "gauge", help);                                        \
        put(&x, METRICS_PREFIX #metric " %s\n", secs);                                             \
    }
    METRICS_PROCESS_SECONDS(X)
#undef X
    process_info(&x, sc);

    const struct admin_stats *a = admin_get_stats(admin);
    if (a) {
#define X(metric, type, json, jtype, help, value)                                                  \
    family(&x, METRICS_PREFIX, #metric, #type, help);                                              \
    put(&x, METRICS_PREFIX #metric " %llu\n", (unsigned long long)(value));
        METRICS_ADMIN(X)
#undef X
    }

#define X(metric, type, json, jtype, help, value)                                                  \
    family(&x, "", #metric, #type, help);                                                          \
    put(&x, #metric " %llu\n", (unsigned long long)(value));
    METRICS_OS(X)
#undef X
    return x.rc;
}
