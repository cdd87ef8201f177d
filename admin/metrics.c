/* metrics: Prometheus text exposition (see metrics.h). */
#include "admin/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "proxy/call.h"
#include "proxy/histo.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

#define PREFIX "drpc_sidecar_"

/* X(name, help, value expression over `p`) — per-pool gauges. */
#define POOL_GAUGES(X)                                                                             \
    X(pool_connections_idle, "Idle upstream connections", p->n_idle)                               \
    X(pool_connections_busy, "Upstream connections carrying a call", p->n_busy)                    \
    X(pool_connections_connecting, "Upstream connections being dialled or handshaking",            \
      p->n_connecting)                                                                             \
    X(pool_connections_max, "Configured max_conns", p->pc->max_conns)                              \
    X(pool_waiters, "Calls waiting for an upstream connection", p->n_waiters)                      \
    X(pool_draining, "1 while the pool is drained by an operator", p->draining ? 1 : 0)

/* X(name, help, value expression over `sc`) — process gauges. */
#define PROCESS_GAUGES(X)                                                                          \
    X(clients, "Connected client connections", sc->n_clients)                                      \
    X(calls_in_flight, "Calls in progress (waiting or active)", sc->n_calls)                       \
    X(draining, "1 while the process drains for shutdown", sc->state != SIDECAR_RUNNING ? 1 : 0)

static int appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return UV_EINVAL;
    if ((size_t)n < sizeof(tmp))
        return buf_append(b, tmp, (size_t)n);
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int metrics_escape_label(struct buf *out, const char *v)
{
    int rc = 0;
    for (const char *c = v; *c && rc == 0; c++) {
        if (*c == '\\')
            rc = buf_append(out, "\\\\", 2);
        else if (*c == '"')
            rc = buf_append(out, "\\\"", 2);
        else if (*c == '\n')
            rc = buf_append(out, "\\n", 2);
        else
            rc = buf_append(out, c, 1);
    }
    return rc;
}

static int family(struct buf *b, const char *name, const char *type, const char *help)
{
    return appendf(b, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help, name, type);
}

static int pool_label(struct buf *b, const char *name, const struct pool *p, const char *extra)
{
    int rc = appendf(b, PREFIX "%s{pool=\"", name);
    if (!rc)
        rc = metrics_escape_label(b, p->pc->name);
    if (!rc)
        rc = appendf(b, "\"%s}", extra ? extra : "");
    return rc;
}

static int histogram(struct buf *b, const char *name, const char *help, struct sidecar *sc,
                     size_t offset)
{
    int rc = family(b, name, "histogram", help);
    for (size_t i = 0; i < sc->n_pools && !rc; i++) {
        const struct pool *p = sc->pools[i];
        const struct histo *h = (const struct histo *)((const char *)&p->stats + offset);
        uint64_t cum = 0;
        for (size_t k = 0; k < HISTO_BUCKETS && !rc; k++) {
            cum += h->counts[k];
            char le[32];
            if (k == HISTO_BUCKETS - 1)
                snprintf(le, sizeof(le), "+Inf");
            else
                snprintf(le, sizeof(le), "%g", histo_bounds_us[k] / 1e6);
            char extra[64];
            snprintf(extra, sizeof(extra), ",le=\"%s\"", le);
            char bucket[96];
            snprintf(bucket, sizeof(bucket), "%s_bucket", name);
            rc = pool_label(b, bucket, p, extra);
            if (!rc)
                rc = appendf(b, " %llu\n", (unsigned long long)cum);
        }
        char n2[96];
        snprintf(n2, sizeof(n2), "%s_sum", name);
        if (!rc)
            rc = pool_label(b, n2, p, NULL);
        if (!rc)
            rc = appendf(b, " %.6f\n", h->sum_us / 1e6);
        snprintf(n2, sizeof(n2), "%s_count", name);
        if (!rc)
            rc = pool_label(b, n2, p, NULL);
        if (!rc)
            rc = appendf(b, " %llu\n", (unsigned long long)h->count);
    }
    return rc;
}

/* Open file descriptors: a procfs directory read, which never waits on a disk. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream itself */
}

int metrics_render(struct sidecar *sc, struct buf *b)
{
    int rc = 0;
#define X(name, help, expr)                                                                        \
    if (!rc)                                                                                       \
        rc = family(b, #name, "gauge", help);                                                      \
    for (size_t i = 0; i < sc->n_pools && !rc; i++) {                                              \
        const struct pool *p = sc->pools[i];                                                       \
        rc = pool_label(b, #name, p, NULL);                                                        \
        if (!rc)                                                                                   \
            rc = appendf(b, " %llu\n", (unsigned long long)(expr));                                \
    }
    POOL_GAUGES(X)
#undef X

#define X(name, help)                                                                              \
    if (!rc)                                                                                       \
        rc = family(b, "pool_" #name "_total", "counter", help);                                   \
    for (size_t i = 0; i < sc->n_pools && !rc; i++) {                                              \
        const struct pool *p = sc->pools[i];                                                       \
        rc = pool_label(b, "pool_" #name "_total", p, NULL);                                       \
        if (!rc)                                                                                   \
            rc = appendf(b, " %llu\n", (unsigned long long)p->stats.name);                         \
    }
    POOL_COUNTERS(X)
#undef X

    if (!rc)
        rc = family(b, "call_errors_total", "counter",
                    "Calls the sidecar failed, by pool and cause");
    for (size_t i = 0; i < sc->n_pools && !rc; i++) {
        const struct pool *p = sc->pools[i];
        for (int c = 0; c < CALL_CAUSE_COUNT && !rc; c++) {
            char extra[64];
            snprintf(extra, sizeof(extra), ",cause=\"%s\"", call_cause_name(c));
            rc = pool_label(b, "call_errors_total", p, extra);
            if (!rc)
                rc = appendf(b, " %llu\n", (unsigned long long)p->stats.errors[c]);
        }
    }

    static const char *const results[] = {"ok", "app_error", "cancelled", "failed"};
    if (!rc)
        rc = family(b, "calls_total", "counter", "Finished calls by pool, route and result");
    for (const struct route_counter *r = sc->route_counters; r && !rc; r = r->next) {
        for (int k = 0; k < 4 && !rc; k++) {
            rc = appendf(b, PREFIX "calls_total{pool=\"");
            if (!rc)
                rc = metrics_escape_label(b, r->pool);
            if (!rc)
                rc = appendf(b, "\",route=\"");
            if (!rc)
                rc = metrics_escape_label(b, r->route);
            if (!rc)
                rc = appendf(b, "\",result=\"%s\"} %llu\n", results[k],
                             (unsigned long long)r->results[k]);
        }
    }

    if (!rc)
        rc = histogram(b, "call_duration_seconds", "Call duration from Invoke to end of stream", sc,
                       offsetof(struct pool_stats, call_us));
    if (!rc)
        rc = histogram(b, "wait_duration_seconds", "Time a call waited for an upstream connection",
                       sc, offsetof(struct pool_stats, wait_us));

#define X(name, help)                                                                              \
    if (!rc)                                                                                       \
        rc = family(b, #name "_total", "counter", help);                                           \
    if (!rc)                                                                                       \
        rc = appendf(b, PREFIX #name "_total %llu\n", (unsigned long long)sc->stats.name);
    SIDECAR_COUNTERS(X)
#undef X

#define X(name, help, expr)                                                                        \
    if (!rc)                                                                                       \
        rc = family(b, #name, "gauge", help);                                                      \
    if (!rc)                                                                                       \
        rc = appendf(b, PREFIX #name " %llu\n", (unsigned long long)(expr));
    PROCESS_GAUGES(X)
#undef X

    size_t rss = 0;
    uv_resident_set_memory(&rss);
    if (!rc)
        rc = appendf(b,
                     "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                     "# TYPE process_resident_memory_bytes gauge\n"
                     "process_resident_memory_bytes %zu\n"
                     "# HELP process_open_fds Number of open file descriptors.\n"
                     "# TYPE process_open_fds gauge\n"
                     "process_open_fds %ld\n",
                     rss, open_fds());
    return rc;
}
