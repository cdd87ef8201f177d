/*
 * metrics: GET /metrics in the Prometheus text exposition format (0.0.4).
 * Counters come from the same X-macro tables the JSON views use
 * (POOL_COUNTERS, SIDECAR_COUNTERS); gauges are declared once below in
 * metrics.c's tables.
 */
#ifndef SIDECAR_ADMIN_METRICS_H
#define SIDECAR_ADMIN_METRICS_H

#include "proxy/buf.h"

struct sidecar;

/* Appends the whole exposition to out. Returns 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int metrics_render(struct sidecar *sc, struct buf *out);

/* Escapes a label value (backslash, double quote, newline) into out. */
__attribute__((warn_unused_result)) int metrics_escape_label(struct buf *out, const char *v);

#endif
