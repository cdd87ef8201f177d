/*
 * rpcs: the per-RPC numbers of proxy/rpc_stats.h as the admin API shows
 * them: Prometheus families for /metrics and the GET /rpcs JSON view.
 *
 * /metrics (labels {pool,rpc}; rpc="other" collects what has no series):
 *   drpc_sidecar_rpc_calls_total{pool,rpc,result}    counter
 *   drpc_sidecar_rpc_errors_total{pool,rpc,cause}    counter (causes seen)
 *   drpc_sidecar_rpc_call_duration_seconds{pool,rpc} histogram
 *
 * GET /rpcs: {"max_rpcs", "pools": [{"pool", "rpcs": [{"rpc", "calls",
 * "calls_per_second_10s", "calls_per_second_1m", "error_ratio_1m",
 * "p50_ms", "p99_ms", "max_ms", "results", "errors"}]}]}, each pool's RPCs
 * busiest first (calls over the last minute, then all calls).
 */
#ifndef SIDECAR_ADMIN_RPCS_H
#define SIDECAR_ADMIN_RPCS_H

#include <jansson.h>

#include "proxy/buf.h"

struct rpc_stats;
struct sidecar;

/* Appends the per-RPC families (nothing when rs is NULL). 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int rpcs_render_metrics(const struct rpc_stats *rs,
                                                            struct buf *out);

/* GET /rpcs; NULL when out of memory. */
json_t *rpcs_view(const struct sidecar *sc);

#endif
