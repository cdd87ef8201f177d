/*
 * metrics: GET /metrics, the Prometheus text exposition format 0.0.4,
 * rendered from the rows of metrics_table.h and the counter tables it
 * reuses. Every family has # HELP and # TYPE before its samples; counters
 * end in _total; histograms have cumulative _bucket{le=...} series ending
 * in le="+Inf", then _sum and _count, in seconds.
 */
#ifndef SIDECAR_ADMIN_METRICS_H
#define SIDECAR_ADMIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

struct sidecar;
struct admin;

/*
 * The exposition is written in three parts, in this order (admin/pages.c
 * spreads them over loop iterations):
 *   metrics_render_pools    per pool, endpoint and route (sized by the config)
 *   rpcs_metrics_*          per pool and RPC name (admin/rpcs.h; sized by traffic,
 *                           so written a few entries at a time)
 *   metrics_render_process  listeners, the process, the admin server (when
 *                           admin is not NULL), the OS
 * Each appends to out and returns 0 or UV_ENOMEM.
 */
__attribute__((warn_unused_result)) int metrics_render_pools(const struct sidecar *sc,
                                                             struct buf *out);
__attribute__((warn_unused_result)) int
metrics_render_process(const struct sidecar *sc, const struct admin *admin, struct buf *out);

/* Appends a label value escaped per the format (\\, \" and \n). 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int metrics_escape_label(struct buf *out, const char *v);

/* Formats microseconds as decimal seconds without trailing zeros ("0.00005", "2.5", "60"). */
void metrics_format_seconds(uint64_t us, char *out, size_t size);

/* Resident set size in bytes (0 when unknown). */
uint64_t metrics_resident_bytes(void);

/* Open file descriptors of this process (0 when unknown). */
uint64_t metrics_open_fds(void);

#endif
