/*
 * tls_stats: TLS handshake counters of one listener or pool, by name.
 *
 *   sidecar.tls_stats --> [listener a] --> [pool b] --> ...   (made on first use)
 *                                           └─ endpoints: handshakes, resumed
 *
 * An entry outlives reloads (same kind and name, same entry), so the
 * counters of /metrics only grow; a name that leaves the config keeps its
 * entry until the process ends (there are few names). Loop-thread only.
 *
 * Failure reasons are OpenSSL's words without the details ("certificate
 * verify failed", "wrong version number"): few distinct values, good
 * labels. The first TLS_STATS_REASONS go in a table; more count as "other".
 */
#ifndef SIDECAR_TLS_STATS_H
#define SIDECAR_TLS_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proxy/histo.h"

#define TLS_STATS_REASONS   16
#define TLS_STATS_ENDPOINTS 32

struct tls_reason_count {
    char reason[80];
    uint64_t n;
};

/* A dialled pool's endpoint: its handshakes and how many resumed. */
struct tls_endpoint_stats {
    char endpoint[128]; /* the endpoint as configured (cut) */
    uint64_t handshakes;
    uint64_t resumed;
};

struct tls_stats {
    struct tls_stats *next;
    const char *kind; /* "listener" or "pool" (static) */
    char name[CONFIG_NAME_MAX + 1];
    bool server; /* the sidecar is the TLS server (listener, agent port) */
    uint64_t ok;
    uint64_t resumed;
    uint64_t failed;
    struct tls_reason_count reasons[TLS_STATS_REASONS];
    size_t n_reasons;
    uint64_t other_reasons;
    struct histo duration; /* successful handshakes, microseconds */
    struct tls_endpoint_stats endpoints[TLS_STATS_ENDPOINTS];
    size_t n_endpoints;
};

/* Peers whose handshake failure was logged in the last minute (a ring). */
#define TLS_LOG_PEERS 64
struct tls_log_limit {
    char peer[TLS_LOG_PEERS][48];
    uint64_t at[TLS_LOG_PEERS];
    size_t next;
};

/* The entry of (kind, name), made when missing; NULL when out of memory. */
struct tls_stats *tls_stats_get(struct tls_stats **head, const char *kind, const char *name,
                                bool server);

/* The endpoint entry of a pool's entry, made when missing; NULL when full. */
struct tls_endpoint_stats *tls_stats_endpoint(struct tls_stats *s, const char *endpoint);

/* Counts a failed handshake with its reason text ("tls: REASON: detail"). */
void tls_stats_failed(struct tls_stats *s, const char *text);

/* The label of a failure text: "tls: certificate verify failed: x" ->
 * "certificate verify failed". */
void tls_stats_reason(const char *text, char *out, size_t size);

/* Whether a handshake failure of peer (an address, port ignored) may be
 * logged now: once per peer per minute. */
bool tls_log_allowed(struct tls_log_limit *l, const char *peer, uint64_t now_ms);

/* Makes the entries of every TLS listener and pool of cfg (so /metrics
 * shows them before their first handshake). Out of memory is ignored. */
void tls_stats_register(struct tls_stats **head, const struct config *cfg);

void tls_stats_free(struct tls_stats *head);

#endif
