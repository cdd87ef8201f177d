/*
 * views: the admin API's JSON documents, built from the live objects each
 * time they are asked for (no copies that could drift from the data plane).
 * Numbers that /metrics also exports come from the rows of
 * metrics_table.h. Field names are snake_case and stable; admin/README.md documents
 * them. Lists that grow with traffic (/calls, /clients) are capped by a
 * limit and say how many there were in total.
 */
#ifndef SIDECAR_ADMIN_VIEWS_H
#define SIDECAR_ADMIN_VIEWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct sidecar;
struct admin;

#define VIEWS_DEFAULT_LIMIT   1000  /* entries of /calls and /clients without ?limit= */
#define VIEWS_MAX_LIMIT       10000 /* the most ?limit= may ask for */
#define VIEWS_MAX_VALUE_BYTES 1024  /* metadata values shown, longer ones are cut */

/* GET /pools (name NULL), or one pool (NULL when there is no such pool). */
json_t *views_pools(const struct sidecar *sc, const char *name);

/* GET /calls: the oldest `limit` in-flight calls of pool (NULL = all) at
 * least min_age_ms old. */
json_t *views_calls(const struct sidecar *sc, const char *pool, uint64_t min_age_ms, size_t limit);

/* GET /clients: the `limit` longest-connected clients. */
json_t *views_clients(const struct sidecar *sc, size_t limit);

/* GET /config: the effective config (token redacted) and the last reload. */
json_t *views_config(const struct sidecar *sc);

/* GET /stats: process-wide state, counters, listeners, the admin server
 * (its rows only when admin is not NULL). */
json_t *views_stats(const struct sidecar *sc, const struct admin *admin);

/* A JSON string of n bytes that may not be UTF-8 (RPC names and metadata
 * come from clients): invalid bytes become U+FFFD instead of failing. */
json_t *views_string(const char *s, size_t n);

/* Wall-clock milliseconds of a uv_now() timestamp. */
uint64_t views_wall_ms(const struct sidecar *sc, uint64_t loop_ms);

/* ISO-8601 UTC with milliseconds ("2026-11-24T04:30:00.123Z"). */
void views_iso8601(uint64_t wall_ms, char *out, size_t size);

#endif
