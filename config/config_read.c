/*
 * config_read: typed values out of the jansson tree, failing with
 * positioned errors (see config_read.h). Positions are looked up only when
 * an error is raised: a valid config costs no scan of the text.
 */
#include "config/config_read.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config_addr.h"

#define PATH_LEN    CONFIG_POS_PATH_MAX
#define MAX_SUGGEST 32 /* keys longer than this get no "did you mean" */

static int failv(struct config_reader *rd, const char *path, bool key, const char *fmt, va_list ap)
{
    struct config_error *e = rd->err;
    memset(e, 0, sizeof(*e));
    snprintf(e->file, sizeof(e->file), "%s", rd->file);
    snprintf(e->path, sizeof(e->path), "%s", path);
    if (config_pos_find(rd->text, rd->len, path, key, &e->line, &e->column) < 0) {
        e->line = 1;
        e->column = 1;
    }
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    return UV_EINVAL;
}

/* Fails at the value of path (or its nearest present ancestor). */
int config_read_fail(struct config_reader *rd, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(rd, path, false, fmt, ap);
    va_end(ap);
    return rc;
}

/* Fails at the key naming the value of path (unknown keys). */
int config_read_fail_key(struct config_reader *rd, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(rd, path, true, fmt, ap);
    va_end(ap);
    return rc;
}

/* out = path.key, cut as config_pos cuts it so positions still match. */
void config_read_join(char *out, const char *path, const char *key)
{
    size_t n = 0;
    out[0] = '\0';
    config_pos_append(out, &n, path, strlen(path));
    if (path[0])
        config_pos_append(out, &n, ".", 1);
    config_pos_append(out, &n, key, strlen(key));
}

void config_read_join_index(char *out, const char *path, size_t i)
{
    char idx[32];
    size_t n = 0;
    out[0] = '\0';
    config_pos_append(out, &n, path, strlen(path));
    config_pos_append(out, &n, idx, (size_t)snprintf(idx, sizeof(idx), "[%zu]", i));
}

const char *config_read_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction or exponent";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Levenshtein distance of two short strings, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[MAX_SUGGEST + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Fails on keys not in allowed (NULL-terminated); "_" keys are annotations. */
int config_read_keys(struct config_reader *rd, const json_t *obj, const char *path,
                     const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (key[0] == '_')
            continue;
        const char *close = NULL;
        size_t best = 3;
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++) {
            ok = strcmp(*a, key) == 0;
            if (!ok && strlen(key) <= MAX_SUGGEST && strlen(*a) <= MAX_SUGGEST) {
                size_t d = edit_distance(key, *a);
                if (d < best) {
                    best = d;
                    close = *a;
                }
            }
        }
        if (ok)
            continue;
        char p[PATH_LEN];
        config_read_join(p, path, key);
        if (close)
            return config_read_fail_key(rd, p, "unknown key \"%s\" (did you mean \"%s\"?)", key,
                                        close);
        return config_read_fail_key(rd, p, "unknown key \"%s\"", key);
    }
    return 0;
}

int config_read_object(struct config_reader *rd, const json_t *v, const char *path)
{
    if (!json_is_object(v))
        return config_read_fail(rd, path, "must be an object, not %s", config_read_type_name(v));
    return 0;
}

int config_read_missing(struct config_reader *rd, const char *path, const char *key)
{
    char p[PATH_LEN];
    config_read_join(p, path, key);
    return config_read_fail(rd, p, "required key is missing");
}

int config_read_u64(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                    uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    char p[PATH_LEN];
    config_read_join(p, path, key);
    if (!json_is_integer(v))
        return config_read_fail(rd, p, "must be an integer, not %s", config_read_type_name(v));
    json_int_t n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
        return config_read_fail(rd, p, "must be between %llu and %llu", (unsigned long long)min,
                                (unsigned long long)max);
    *out = (uint64_t)n;
    return 0;
}

int config_read_u32(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                    uint32_t min, uint32_t max, uint32_t def, uint32_t *out)
{
    uint64_t v;
    int rc = config_read_u64(rd, obj, path, key, min, max, def, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int config_read_bool(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                     bool def, bool *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        char p[PATH_LEN];
        config_read_join(p, path, key);
        return config_read_fail(rd, p, "must be true or false, not %s", config_read_type_name(v));
    }
    *out = json_is_true(v);
    return 0;
}

/* A non-empty string; *out is a copy, NULL when absent and not required.
 * (jansson already refuses NUL characters and invalid UTF-8.) */
int config_read_string(struct config_reader *rd, const json_t *obj, const char *path,
                       const char *key, bool required, char **out)
{
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v)
        return required ? config_read_missing(rd, path, key) : 0;
    char p[PATH_LEN];
    config_read_join(p, path, key);
    if (!json_is_string(v))
        return config_read_fail(rd, p, "must be a string, not %s", config_read_type_name(v));
    if (json_string_length(v) == 0)
        return config_read_fail(rd, p, "must not be empty");
    *out = strdup(json_string_value(v));
    return *out ? 0 : UV_ENOMEM;
}

int config_read_name(struct config_reader *rd, const json_t *obj, const char *path, bool required,
                     char **out)
{
    int rc = config_read_string(rd, obj, path, "name", required, out);
    if (rc || !*out)
        return rc;
    char p[PATH_LEN];
    config_read_join(p, path, "name");
    size_t len = strlen(*out);
    bool control = false;
    for (size_t i = 0; i < len; i++)
        control |= (unsigned char)(*out)[i] < 0x20 || (*out)[i] == 0x7f;
    if (len <= CONFIG_NAME_MAX && !control)
        return 0;
    free(*out);
    *out = NULL;
    if (control)
        return config_read_fail(rd, p, "must not contain control characters");
    return config_read_fail(rd, p, "must be at most %d bytes, not %zu", CONFIG_NAME_MAX, len);
}

int config_read_choice(struct config_reader *rd, const json_t *obj, const char *path,
                       const char *key, const char *const *choices, int def, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_string(v))
        for (int i = 0; choices[i]; i++)
            if (strcmp(choices[i], json_string_value(v)) == 0) {
                *out = i;
                return 0;
            }
    char list[256] = "";
    size_t n = 0;
    for (int i = 0; choices[i]; i++) {
        if (i)
            config_pos_append(list, &n, ", ", 2);
        config_pos_append(list, &n, "\"", 1);
        config_pos_append(list, &n, choices[i], strlen(choices[i]));
        config_pos_append(list, &n, "\"", 1);
    }
    char p[PATH_LEN];
    config_read_join(p, path, key);
    return config_read_fail(rd, p, "must be one of %s", list);
}

/* The address at obj[key]; listen = the sidecar binds it, so no DNS names. */
int config_read_addr(struct config_reader *rd, const json_t *obj, const char *path, const char *key,
                     bool required, bool listen, struct config_addr *out)
{
    char *s = NULL;
    int rc = config_read_string(rd, obj, path, key, required, &s);
    if (rc || !s)
        return rc;
    char p[PATH_LEN];
    config_read_join(p, path, key);
    const char *why = NULL;
    rc = config_addr_parse(s, out, &why);
    free(s);
    if (rc == UV_EINVAL)
        return config_read_fail(rd, p, "%s", why);
    if (rc)
        return rc;
    if (listen && out->kind == CONFIG_ADDR_TCP && strcmp(out->host, "localhost") != 0 &&
        !config_addr_is_ip(out))
        return config_read_fail(rd, p, "a listening address must be an IP address or localhost");
    return 0;
}
