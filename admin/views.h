/*
 * views: the admin API's JSON documents, built from the live objects each
 * time they are asked for (no copies that could drift from the data plane).
 * Numbers that /metrics also exports come from the rows of
 * metrics_table.h. Field names are snake_case and stable; admin/README.md documents
 * them. Lists that grow with traffic (/calls, /clients) are capped by a
 * limit and say how many there were in total; admin/pages.c writes them
 * (and the other large pages) a slice at a time from the entries here.
 */
#ifndef SIDECAR_ADMIN_VIEWS_H
#define SIDECAR_ADMIN_VIEWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct sidecar;
struct admin;
struct pool;
struct call;
struct client_conn;

#define VIEWS_DEFAULT_LIMIT   1000  /* entries of /calls and /clients without ?limit= */
#define VIEWS_MAX_LIMIT       10000 /* the most ?limit= may ask for */
#define VIEWS_MAX_VALUE_BYTES 1024  /* metadata values shown, longer ones are cut */

/* One pool of GET /pools, or GET /pools/{name}. */
json_t *views_pool(const struct sidecar *sc, const struct pool *p);

/* One in-flight call of GET /calls, read at loop time now. */
json_t *views_call(const struct sidecar *sc, const struct call *c, uint64_t now);

/* One connected client of GET /clients, read at loop time now. */
json_t *views_client(const struct sidecar *sc, const struct client_conn *cl, uint64_t now);

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

/* Every configured TLS certificate (own, chain, CA) with its expiry, for
 * /stats and the dashboard. */
json_t *views_tls_certificates(const struct sidecar *sc);

#endif
