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

/* Appends the whole exposition to out; the admin server's own rows when
 * admin is not NULL. Returns 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int metrics_render(const struct sidecar *sc,
                                                       const struct admin *admin, struct buf *out);

/* Appends a label value escaped per the format (\\, \" and \n). 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int metrics_escape_label(struct buf *out, const char *v);

/* Formats microseconds as decimal seconds without trailing zeros ("0.00005", "2.5", "60"). */
void metrics_format_seconds(uint64_t us, char *out, size_t size);

/* Resident set size in bytes (0 when unknown). */
uint64_t metrics_resident_bytes(void);

/* Open file descriptors of this process (0 when unknown). */
uint64_t metrics_open_fds(void);

#endif
