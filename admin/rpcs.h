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

struct rpc_stats_entry;
struct rpc_stats_pool;

/* The per-RPC families of /metrics, each written whole before the next:
 * 0 rpc_calls_total, 1 rpc_errors_total, 2 rpc_call_duration_seconds. */
#define RPCS_FAMILIES 3

/* The k-th entry of p that /metrics and /rpcs show (the named ones, then
 * "other" once it counted a call); NULL past the last. Entries are never
 * removed, so k keeps its meaning between the slices of a page. */
const struct rpc_stats_entry *rpcs_entry(const struct rpc_stats_pool *p, size_t k);

/* Appends family's # HELP and # TYPE lines. 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int rpcs_metrics_family(struct buf *out, int family);

/* Appends family's samples of entry e of pool p. 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int rpcs_metrics_entry(struct buf *out, int family,
                                                           const struct rpc_stats_pool *p,
                                                           const struct rpc_stats_entry *e);

/* The entries of p busiest first, as GET /rpcs lists them; their number
 * in *n. NULL when out of memory; free() the array, not the entries. */
const struct rpc_stats_entry **rpcs_rank(const struct rpc_stats *rs, const struct rpc_stats_pool *p,
                                         size_t *n);

/* One entry of GET /rpcs; NULL when out of memory. */
json_t *rpcs_entry_json(const struct rpc_stats *rs, const struct rpc_stats_entry *e);

/* Appends the per-RPC families (nothing when rs is NULL). 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int rpcs_render_metrics(const struct rpc_stats *rs,
                                                            struct buf *out);

/* GET /rpcs whole (the admin server writes it in slices, admin/pages.c); NULL
 * when out of memory. */
json_t *rpcs_view(const struct sidecar *sc);

#endif
