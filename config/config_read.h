/*
 * config_read: typed values out of the jansson tree, each failure a
 * positioned error. The loader's sections (config.c, config_routes.c) read
 * every key through these, so every error has the same shape: the JSON
 * path of the value, its line and column (config_pos), and a short reason.
 *
 * Conventions: path is the JSON path of obj ("" for the top level), key a
 * member of it. A missing key gives its default (or, when required, the
 * error "required key is missing" at the object's position). Every
 * function returns 0, UV_EINVAL with reader->err filled in, or UV_ENOMEM.
 */
#ifndef SIDECAR_CONFIG_READ_H
#define SIDECAR_CONFIG_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "config/config_pos.h"

#define CONFIG_READ_DAY_MS   86400000ULL
#define CONFIG_READ_MONTH_MS (30ULL * CONFIG_READ_DAY_MS)

/* One load: where positions come from and where the first error goes. */
struct config_reader {
    const char *file;
    const char *text; /* the bytes jansson parsed, for positions */
    size_t len;
    struct config_error *err;
    bool admin_default_addr; /* admin.address not given: say so if it clashes */
    unsigned flags;          /* CONFIG_ALLOW_TLS, ... */
};

/* Fails at the value of path (or its nearest present ancestor). */
int config_read_fail(struct config_reader *rd, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails at the key naming the value of path (unknown keys). */
int config_read_fail_key(struct config_reader *rd, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* out (CONFIG_POS_PATH_MAX bytes) = "path.key" / "path[i]", cut as
 * config_pos cuts paths, so positions are still found. out != path. */
void config_read_join(char *out, const char *path, const char *key);
void config_read_join_index(char *out, const char *path, size_t i);

/* "an object", "a string", ...: for "must be X, not Y". */
const char *config_read_type_name(const json_t *v);

/* Fails on a key of obj not in allowed (NULL-terminated), suggesting the
 * closest allowed one; keys starting with "_" are annotations. */
int config_read_keys(struct config_reader *rd, const json_t *obj, const char *path,
                     const char *const *allowed);

/* Fails unless v (at path) is an object. */
int config_read_object(struct config_reader *rd, const json_t *v, const char *path);

/* Fails with "required key is missing" for obj (at path) lacking key. */
int config_read_missing(struct config_reader *rd, const char *path, const char *key);

/* An integer in min..max. */
int config_read_u64(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                    uint64_t min, uint64_t max, uint64_t def, uint64_t *out);
int config_read_u32(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                    uint32_t min, uint32_t max, uint32_t def, uint32_t *out);

int config_read_bool(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                     bool def, bool *out);

/* A non-empty string; *out is a malloc'd copy, NULL when absent and not
 * required. */
int config_read_string(struct config_reader *rd, const json_t *obj, const char *path,
                       const char *key, bool required, char **out);

/* Like config_read_string for a listener, pool or route name: names label
 * metrics, key counters and name admin URLs, so they are at most
 * CONFIG_NAME_MAX bytes and hold no control characters. */
int config_read_name(struct config_reader *rd, const json_t *obj, const char *path, bool required,
                     char **out);

/* One of choices (NULL-terminated); *out is its index. */
int config_read_choice(struct config_reader *rd, const json_t *obj, const char *path,
                       const char *key, const char *const *choices, int def, int *out);

/* An address (config_addr_parse). listen: the sidecar binds it, so an IP
 * address, localhost or unix:, never a name to resolve. Untouched when
 * absent and not required. */
int config_read_addr(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                     bool required, bool listen, struct config_addr *out);

#endif
