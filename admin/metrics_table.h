/*
 * metrics_table: every number the admin API exports, declared once
 * (twemproxy's nc_stats.h idea).
 *
 * A row names the Prometheus metric and its type, the JSON field that shows
 * the same number in a view, the help text, and how to read the value from
 * the live objects. metrics.c renders every row as Prometheus text and
 * views.c builds its JSON objects from the same rows, so /metrics and the
 * JSON views cannot disagree about a number or where it comes from.
 *
 * Scalar rows:  X(metric, prom_type, json_key, json_type, help, value)
 *   prom_type   gauge | counter (counters end in _total)
 *   json_type   INT | BOOL | NONE (NONE: Prometheus only)
 *   value       an expression over the row's subject, named as the table says
 *
 * Counters declared elsewhere are reused, not redeclared here:
 *   POOL_COUNTERS    (proxy/pool.h)    pool_<name>_total{pool}         /pools "counters"
 *   CALL_CAUSES      (proxy/errors.h)  call_errors_total{pool,cause}   /pools "errors"
 *   SIDECAR_COUNTERS (proxy/sidecar.h) <name>_total                    /stats "counters"
 *
 * Every metric name gets METRICS_PREFIX except the METRICS_OS rows, which
 * use the standard process_* names Prometheus client libraries export.
 */
#ifndef SIDECAR_ADMIN_METRICS_TABLE_H
#define SIDECAR_ADMIN_METRICS_TABLE_H

#define METRICS_PREFIX "drpc_sidecar_"

/* Per pool, labels {pool}; subject `p` (const struct pool *). JSON: /pools "conns". */
#define METRICS_POOL_CONNS(X)                                                                      \
    X(pool_connections_open, gauge, total, INT,                                                    \
      "Open upstream connections (idle + busy + connecting)", pool_total(p))                       \
    X(pool_connections_idle, gauge, idle, INT, "Idle upstream connections", pool_n_idle(p))        \
    X(pool_connections_busy, gauge, busy, INT, "Upstream connections carrying a call",             \
      pool_n_busy(p))                                                                              \
    X(pool_connections_connecting, gauge, connecting, INT,                                         \
      "Upstream connections being dialled or handshaking", pool_n_connecting(p))                   \
    X(pool_connections_max, gauge, max, INT, "Configured max_conns", p->pc->max_conns)

/* Per pool, labels {pool}; subject `p`. JSON: top level of each pool. */
#define METRICS_POOL_STATE(X)                                                                      \
    X(pool_waiters, gauge, waiters, INT, "Calls waiting for an upstream connection", p->n_waiters) \
    X(pool_draining, gauge, draining, BOOL, "1 while an operator drains the pool", p->draining)

/* Per pool, labels {pool}; X(metric, json_key, help, struct pool_stats member).
 * Prometheus: a histogram in seconds; JSON: {"p50","p90","p99" (ms), "count"}. */
#define METRICS_POOL_HISTOS(X)                                                                     \
    X(call_duration_seconds, call_ms, "Call duration from Invoke to the end of the stream",        \
      call_us)                                                                                     \
    X(wait_duration_seconds, wait_ms, "Time a call waited for an upstream connection", wait_us)

/* Per endpoint, labels {pool,endpoint}; subject `e` (const struct endpoint *)
 * at loop time `now`. JSON: /pools "endpoints". */
#define METRICS_ENDPOINT(X)                                                                        \
    X(pool_endpoint_healthy, gauge, healthy, NONE,                                                 \
      "1 when the endpoint may be dialled (not backing off, not ejected)",                         \
      endpoint_health(e, now) == ENDPOINT_HEALTHY)                                                 \
    X(pool_endpoint_connections, gauge, open_conns, INT, "Open connections to the endpoint",       \
      e->n_conns)                                                                                  \
    X(pool_endpoint_busy_connections, gauge, busy_conns, INT,                                      \
      "Connections to the endpoint carrying a call", e->n_busy)                                    \
    X(pool_endpoint_consecutive_failures, gauge, consecutive_failures, INT,                        \
      "Dial failures since the endpoint's last success", e->consecutive_failures)                  \
    X(pool_endpoint_dials_total, counter, dials, INT, "Dials started to the endpoint", e->dials)   \
    X(pool_endpoint_dial_failures_total, counter, dial_failures, INT,                              \
      "Dials to the endpoint that failed or timed out", e->dial_failures)                          \
    X(pool_endpoint_ejections_total, counter, ejections, INT,                                      \
      "Times the endpoint was ejected for consecutive failures", e->ejections)                     \
    X(pool_endpoint_probes_total, counter, probes, INT,                                            \
      "Probes (dials) made while the endpoint was ejected or backing off", e->probes)              \
    X(pool_endpoint_readmissions_total, counter, readmissions, INT,                                \
      "Times a successful probe or dial readmitted the endpoint before eject_ms ran out",          \
      e->readmissions)                                                                             \
    X(pool_endpoint_health_checks_total, counter, health_checks, INT,                              \
      "Active health checks of the endpoint that finished", e->check.checks)                       \
    X(pool_endpoint_health_check_failures_total, counter, health_check_failures, INT,              \
      "Active health checks of the endpoint that failed", e->check.failed)

/* Per listener, labels {listener}; subject `l` (const struct listener *). JSON: /stats. */
#define METRICS_LISTENER(X)                                                                        \
    X(listener_clients, gauge, clients, INT, "Connected clients of the listener", l->n_clients)    \
    X(listener_accepted_total, counter, accepted, INT, "Client connections the listener accepted", \
      l->accepted)                                                                                 \
    X(listener_rejected_total, counter, rejected, INT,                                             \
      "Client connections closed at accept (max_clients)", l->rejected)

/* Process-wide; subject `sc` (const struct sidecar *). JSON: /stats. */
#define METRICS_PROCESS(X)                                                                         \
    X(clients, gauge, clients, INT, "Connected client connections", inspect_n_clients(sc))         \
    X(calls_in_flight, gauge, calls_in_flight, INT, "Calls in progress (waiting or attached)",     \
      inspect_n_calls(sc))                                                                         \
    X(draining, gauge, draining, BOOL, "1 while the process drains for shutdown",                  \
      sc->state != SIDECAR_RUNNING)                                                                \
    X(access_log_dropped_lines_total, counter, access_log_dropped_lines, INT,                      \
      "Access log lines lost to a full buffer or a failed write",                                  \
      accesslog_dropped(sc->accesslog))                                                            \
    X(buffered_bytes, gauge, buffered_bytes, INT,                                                  \
      "Bytes held in partial frames and in calls not yet started (see max_buffered_bytes)",        \
      sc->lc->budget.used)                                                                         \
    X(buffered_bytes_limit, gauge, buffered_bytes_limit, INT,                                      \
      "Configured max_buffered_bytes (0 = no limit)", sc->cfg->max_buffered_bytes)                 \
    X(buffer_paused_connections, gauge, buffer_paused_connections, INT,                            \
      "Connections not read while the buffer budget is exceeded (each holds over 64 KiB)",         \
      sc->lc->budget.n_paused)                                                                     \
    X(buffer_pauses_total, counter, buffer_pauses, INT,                                            \
      "Times a connection was paused by the buffer budget", sc->lc->budget.pauses)

/* Process-wide durations, subject `sc`; X(metric, json_key, help, value in microseconds).
 * Prometheus: a gauge in seconds (base unit); JSON (/stats): json_key, in microseconds. */
#define METRICS_PROCESS_SECONDS(X)                                                                 \
    X(busy_poll_window_seconds, busy_poll_window_us,                                               \
      "How long the loop now polls after traffic before it sleeps (adapts up to busy_poll_us)",    \
      inspect_busy_poll_window_us(sc))

/* POOL_COUNTERS fields whose Prometheus name is not pool_<field>_total (byte
 * counters end in _bytes_total); X(field, metric). */
#define METRICS_POOL_COUNTER_NAMES(X)                                                              \
    X(bytes_to_upstream, pool_upstream_sent_bytes_total)                                           \
    X(bytes_from_upstream, pool_upstream_received_bytes_total)

/* The admin server itself; subject `a` (const struct admin_stats *). JSON: /stats "admin". */
#define METRICS_ADMIN(X)                                                                           \
    X(admin_connections, gauge, connections, INT, "Open admin API connections", a->connections)    \
    X(admin_requests_total, counter, requests, INT, "Admin API requests answered", a->requests)    \
    X(admin_connections_rejected_total, counter, rejected, INT,                                    \
      "Admin connections refused because ADMIN_MAX_CONNS were open", a->rejected)                  \
    X(admin_request_timeouts_total, counter, timeouts, INT,                                        \
      "Admin connections closed for not finishing a request in time", a->timeouts)                 \
    X(admin_response_slices_total, counter, response_slices, INT,                                  \
      "Slices the large admin answers were written in, one per loop iteration at most", a->slices)

/* Standard process metrics, no prefix; subject `sc`. JSON: /stats "process".
 * Each read is a small procfs read (see metrics.c). */
#define METRICS_OS(X)                                                                              \
    X(process_resident_memory_bytes, gauge, resident_memory_bytes, INT,                            \
      "Resident memory size in bytes", metrics_resident_bytes())                                   \
    X(process_open_fds, gauge, open_fds, INT, "Number of open file descriptors",                   \
      metrics_open_fds())                                                                          \
    X(process_max_fds, gauge, max_fds, INT, "Maximum number of open file descriptors",             \
      sc->fds.limit)                                                                               \
    X(process_start_time_seconds, gauge, start_time_seconds, INT,                                  \
      "Start time of the process since the Unix epoch in seconds", sc->started_wall_ms / 1000)

/* Finished calls, labels {pool,route,result}: calls_total from sc->route_counters.
 * X(enum call_result value, label). */
#define METRICS_CALL_RESULTS(X)                                                                    \
    X(CALL_RESULT_OK, "ok")                                                                        \
    X(CALL_RESULT_APP_ERROR, "app_error")                                                          \
    X(CALL_RESULT_CANCELLED, "cancelled")                                                          \
    X(CALL_RESULT_FAILED, "failed")

#endif
