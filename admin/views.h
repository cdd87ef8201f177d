/*
 * views: the admin API's JSON documents, built from the live objects each
 * time they are asked for (no copies that could drift from the data plane).
 * Field names are snake_case and stable; README documents them.
 */
#ifndef SIDECAR_ADMIN_VIEWS_H
#define SIDECAR_ADMIN_VIEWS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct sidecar;
struct pool;

/* GET /pools (name NULL) or one pool (NULL when there is no such pool). */
json_t *views_pools(struct sidecar *sc, const char *name);

/* GET /calls, filtered by pool (NULL = all) and minimum age. */
json_t *views_calls(struct sidecar *sc, const char *pool, uint64_t min_age_ms);

/* GET /clients */
json_t *views_clients(struct sidecar *sc);

/* GET /config: the effective config plus the outcome of the last reload. */
json_t *views_config(struct sidecar *sc);

/* Wall-clock milliseconds of a uv_now() timestamp. */
uint64_t views_wall_ms(struct sidecar *sc, uint64_t loop_ms);

/* ISO-8601 UTC ("2026-11-24T04:30:00.123Z") of wall-clock milliseconds. */
void views_iso8601(uint64_t wall_ms, char *out, size_t size);

#endif
