/*
 * health: active health checks of a dialled pool's endpoints (the pool's
 * "health_check" in the config).
 *
 * Every interval_ms the pool's janitor starts one check per endpoint, on a
 * connection of its own (at most one per endpoint at a time, never one of
 * the pool's): a TCP connect, or with "rpc" that unary DRPC call with
 * "request" as its message, which passes when the upstream ends the stream
 * without an Error. A check that has not passed within timeout_ms fails.
 *
 *   UNKNOWN --first result--> HEALTHY or UNHEALTHY
 *   HEALTHY --unhealthy_threshold failures in a row--> UNHEALTHY
 *   UNHEALTHY --healthy_threshold passes in a row--> HEALTHY
 *
 * An endpoint that is not HEALTHY gets no calls while another endpoint is
 * healthy (endpoint_health() says ENDPOINT_UNHEALTHY; with every endpoint
 * out the pool's panic rule applies). Turning unhealthy closes its idle
 * connections; a pass readmits it if dial failures had ejected it (the
 * checks are then the half-open probes).
 */
#ifndef SIDECAR_HEALTH_H
#define SIDECAR_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

struct pool;
struct health_probe;

enum endpoint_check_state {
    ENDPOINT_CHECK_UNKNOWN, /* no check has finished yet */
    ENDPOINT_CHECK_HEALTHY,
    ENDPOINT_CHECK_UNHEALTHY,
};

/* One endpoint's checks; all zero when the pool has none. */
struct endpoint_check {
    enum endpoint_check_state state;
    uint32_t successes, failures; /* in a row */
    uint64_t checks, failed;      /* since start */
    uint64_t next_at;             /* uv_now ms of the next check */
    uint64_t last_at;             /* uv_now ms the last one finished; 0 = none */
    uint64_t last_latency_us;
    char last_result[128];      /* "ok", or why it failed */
    struct health_probe *probe; /* the check in flight, or NULL */
};

/* Starts the checks that are due (from pool_janitor). */
void health_janitor(struct pool *p, uint64_t now);

/* Abandons the checks in flight (their handles close and free themselves). */
void health_stop(struct pool *p);

const char *health_state_name(enum endpoint_check_state s);

#endif
