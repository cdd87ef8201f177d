/*
 * config: JSON file -> validated, immutable struct config (see config.h).
 *
 *   text --jansson--> json_t --validate each item, fill defaults--> config
 *     \--config_pos--> path -> line:column, for the error of any value
 *
 * Validation is complete before anything starts: syntax, unknown keys,
 * types, ranges, addresses, duplicates and cross-references (routes to
 * pools, agent routes to reverse pools). The first error wins and names
 * file, line, column and JSON path. Keys starting with "_" are ignored
 * everywhere so files can carry annotations.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <uv.h>

#include "config/config_pos.h"

#define MS_MAX_DAY   86400000ULL
#define MS_MAX_MONTH (30ULL * MS_MAX_DAY)
#define PATH_LEN     256

struct parser {
    const char *file;
    struct config_pos pos;
    struct config_error *err;
};

static int fail(struct parser *ps, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *ps, const char *path, const char *fmt, ...)
{
    struct config_error *e = ps->err;
    memset(e, 0, sizeof(*e));
    snprintf(e->file, sizeof(e->file), "%s", ps->file);
    snprintf(e->path, sizeof(e->path), "%s", path);
    if (config_pos_find(&ps->pos, path, &e->line, &e->column) != 0) {
        e->line = 1;
        e->column = 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
    return UV_EINVAL;
}

/* Appends s to out[*n], truncating at PATH_LEN (paths are for messages). */
static void append(char *out, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (len > PATH_LEN - 1 - *n)
        len = PATH_LEN - 1 - *n;
    memcpy(out + *n, s, len);
    *n += len;
    out[*n] = '\0';
}

static void join(char *out, const char *path, const char *key)
{
    size_t n = 0;
    out[0] = '\0';
    append(out, &n, path);
    if (path[0])
        append(out, &n, ".");
    append(out, &n, key);
}

static void join_index(char *out, const char *path, size_t i)
{
    char idx[32];
    size_t n = 0;
    out[0] = '\0';
    snprintf(idx, sizeof(idx), "[%zu]", i);
    append(out, &n, path);
    append(out, &n, idx);
}

static const char *type_name(const json_t *v)
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
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Fails on keys not in allowed (NULL-terminated); "_" keys are annotations. */
static int check_keys(struct parser *ps, const json_t *obj, const char *path,
                      const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (key[0] == '_')
            continue;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = true;
        if (!ok) {
            char p[PATH_LEN];
            join(p, path, key);
            fail(ps, p, "unknown key \"%s\"", key);
            config_pos_find_key(&ps->pos, p, &ps->err->line, &ps->err->column);
            return UV_EINVAL;
        }
    }
    return 0;
}

static int get_object(struct parser *ps, const json_t *v, const char *path)
{
    if (!json_is_object(v))
        return fail(ps, path, "must be an object, not %s", type_name(v));
    return 0;
}

static int get_u64(struct parser *ps, const json_t *obj, const char *path, const char *key,
                   uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    char p[PATH_LEN];
    join(p, path, key);
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return fail(ps, p, "must be an integer, not %s", type_name(v));
    json_int_t n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
        return fail(ps, p, "must be between %llu and %llu", (unsigned long long)min,
                    (unsigned long long)max);
    *out = (uint64_t)n;
    return 0;
}

static int get_u32(struct parser *ps, const json_t *obj, const char *path, const char *key,
                   uint32_t min, uint32_t max, uint32_t def, uint32_t *out)
{
    uint64_t v;
    int rc = get_u64(ps, obj, path, key, min, max, def, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

static int get_bool(struct parser *ps, const json_t *obj, const char *path, const char *key,
                    bool def, bool *out)
{
    char p[PATH_LEN];
    join(p, path, key);
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(ps, p, "must be true or false, not %s", type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* A non-empty string without NUL bytes; *out is a copy (NULL when absent). */
static int get_string(struct parser *ps, const json_t *obj, const char *path, const char *key,
                      bool required, char **out)
{
    char p[PATH_LEN];
    join(p, path, key);
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v) {
        if (required)
            return fail(ps, path[0] ? path : key, "missing required key \"%s\"", key);
        return 0;
    }
    if (!json_is_string(v))
        return fail(ps, p, "must be a string, not %s", type_name(v));
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0)
        return fail(ps, p, "must not be empty");
    if (strlen(s) != n)
        return fail(ps, p, "must not contain NUL characters");
    *out = strdup(s);
    return *out ? 0 : UV_ENOMEM;
}

static int get_choice(struct parser *ps, const json_t *obj, const char *path, const char *key,
                      const char *const *choices, int def, int *out)
{
    char p[PATH_LEN];
    join(p, path, key);
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_string(v)) {
        for (int i = 0; choices[i]; i++)
            if (strcmp(choices[i], json_string_value(v)) == 0) {
                *out = i;
                return 0;
            }
    }
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        strncat(list, i ? ", \"" : "\"", sizeof(list) - strlen(list) - 1);
        strncat(list, choices[i], sizeof(list) - strlen(list) - 1);
        strncat(list, "\"", sizeof(list) - strlen(list) - 1);
    }
    return fail(ps, p, "must be one of %s", list);
}

/* ---- addresses ---------------------------------------------------------- */

static bool valid_hostname(const char *h)
{
    if (!*h || strlen(h) > 253)
        return false;
    for (const char *c = h; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_')
            return false;
    return true;
}

int config_addr_parse(const char *text, struct config_addr *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        if (!*path) {
            *why = "unix socket path is empty";
            return UV_EINVAL;
        }
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            *why = "unix socket path is too long";
            return UV_EINVAL;
        }
        out->kind = CONFIG_ADDR_UNIX;
        out->path = strdup(path);
        out->text = strdup(text);
        if (!out->path || !out->text) {
            config_addr_free(out);
            return UV_ENOMEM;
        }
        return 0;
    }
    const char *colon = strrchr(text, ':');
    if (!colon) {
        *why = "expected host:port, [ipv6]:port or unix:/path";
        return UV_EINVAL;
    }
    char host[256];
    size_t hlen = (size_t)(colon - text);
    if (text[0] == '[') {
        if (hlen < 2 || text[hlen - 1] != ']') {
            *why = "expected [ipv6]:port";
            return UV_EINVAL;
        }
        if (hlen - 2 >= sizeof(host)) {
            *why = "host is too long";
            return UV_EINVAL;
        }
        memcpy(host, text + 1, hlen - 2);
        host[hlen - 2] = '\0';
        unsigned char buf[16];
        if (inet_pton(AF_INET6, host, buf) != 1) {
            *why = "not a valid IPv6 address";
            return UV_EINVAL;
        }
    } else {
        if (hlen == 0) {
            *why = "host is empty";
            return UV_EINVAL;
        }
        if (hlen >= sizeof(host)) {
            *why = "host is too long";
            return UV_EINVAL;
        }
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        if (strchr(host, ':')) {
            *why = "IPv6 addresses must be written in brackets: [::1]:port";
            return UV_EINVAL;
        }
        if (!valid_hostname(host)) {
            *why = "host is not a valid name or address";
            return UV_EINVAL;
        }
    }
    const char *port = colon + 1;
    if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port)) {
        *why = "port must be a number between 1 and 65535";
        return UV_EINVAL;
    }
    long n = strtol(port, NULL, 10);
    if (n < 1 || n > 65535) {
        *why = "port must be a number between 1 and 65535";
        return UV_EINVAL;
    }
    out->kind = CONFIG_ADDR_TCP;
    out->port = (uint16_t)n;
    out->host = strdup(host);
    out->text = strdup(text);
    if (!out->host || !out->text) {
        config_addr_free(out);
        return UV_ENOMEM;
    }
    return 0;
}

void config_addr_free(struct config_addr *a)
{
    free(a->text);
    free(a->host);
    free(a->path);
    memset(a, 0, sizeof(*a));
}

static bool addr_is_ip_literal(const struct config_addr *a)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, a->host, buf) == 1 || inet_pton(AF_INET6, a->host, buf) == 1;
}

static bool addr_is_loopback(const struct config_addr *a)
{
    if (a->kind == CONFIG_ADDR_UNIX)
        return true;
    if (strcmp(a->host, "localhost") == 0 || strcmp(a->host, "::1") == 0)
        return true;
    struct in_addr v4;
    if (inet_pton(AF_INET, a->host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    return false;
}

/* Parses the string at obj[key] as an address; local = must be bindable here. */
static int get_addr(struct parser *ps, const json_t *obj, const char *path, const char *key,
                    bool required, bool local, struct config_addr *out)
{
    char p[PATH_LEN];
    join(p, path, key);
    char *s = NULL;
    int rc = get_string(ps, obj, path, key, required, &s);
    if (rc || !s)
        return rc;
    const char *why = NULL;
    rc = config_addr_parse(s, out, &why);
    free(s);
    if (rc == UV_EINVAL)
        return fail(ps, p, "%s", why);
    if (rc)
        return rc;
    if (local && out->kind == CONFIG_ADDR_TCP && strcmp(out->host, "localhost") != 0 &&
        !addr_is_ip_literal(out)) {
        config_addr_free(out);
        return fail(ps, p, "a listening address must be an IP address or localhost");
    }
    return 0;
}

/* ---- sections ----------------------------------------------------------- */

static int parse_listener(struct parser *ps, const json_t *v, const char *path,
                          struct config_listener *l, size_t index)
{
    static const char *const keys[] = {
        "name", "address", "header", "max_clients", "mode", "reuse_port", "client_idle_timeout_ms",
        NULL};
    int rc;
    if ((rc = get_object(ps, v, path)) || (rc = check_keys(ps, v, path, keys)))
        return rc;
    if ((rc = get_string(ps, v, path, "name", false, &l->name)))
        return rc;
    if (!l->name) {
        char name[32];
        snprintf(name, sizeof(name), "listener%zu", index);
        if (!(l->name = strdup(name)))
            return UV_ENOMEM;
    }
    if ((rc = get_addr(ps, v, path, "address", true, true, &l->addr)) ||
        (rc = get_bool(ps, v, path, "header", false, &l->accept_header)) ||
        (rc = get_u32(ps, v, path, "max_clients", 0, 1000000, 0, &l->max_clients)) ||
        (rc = get_bool(ps, v, path, "reuse_port", true, &l->reuse_port)) ||
        (rc = get_u64(ps, v, path, "client_idle_timeout_ms", 0, MS_MAX_DAY, 0,
                      &l->client_idle_timeout_ms)))
        return rc;
    l->unix_mode = 0660;
    const json_t *mode = json_object_get(v, "mode");
    if (mode) {
        char p[PATH_LEN];
        join(p, path, "mode");
        if (l->addr.kind != CONFIG_ADDR_UNIX)
            return fail(ps, p, "only applies to unix: listeners");
        if (json_is_string(mode)) {
            const char *s = json_string_value(mode);
            char *end;
            errno = 0;
            long m = strtol(s, &end, 8);
            if (!*s || *end || errno || m < 0 || m > 0777)
                return fail(ps, p, "must be an octal file mode like \"0660\"");
            l->unix_mode = (uint32_t)m;
        } else if (json_is_integer(mode) && json_integer_value(mode) >= 0 &&
                   json_integer_value(mode) <= 0777) {
            l->unix_mode = (uint32_t)json_integer_value(mode);
        } else {
            return fail(ps, p, "must be an octal file mode like \"0660\"");
        }
    }
    return 0;
}

static int parse_pool(struct parser *ps, const json_t *v, const char *path, struct config_pool *pl)
{
    static const char *const keys[] = {"name",
                                       "endpoints",
                                       "accept",
                                       "identify",
                                       "max_conns",
                                       "min_idle",
                                       "idle_timeout_ms",
                                       "max_lifetime_ms",
                                       "dial_timeout_ms",
                                       "max_waiters",
                                       "wait_timeout_ms",
                                       "call_timeout_ms",
                                       "balance",
                                       "header",
                                       "cancel",
                                       "eject_after_failures",
                                       "eject_ms",
                                       "backoff_base_ms",
                                       "backoff_max_ms",
                                       NULL};
    static const char *const balances[] = {"round_robin", "least_busy", NULL};
    static const char *const cancels[] = {"soft", "close", NULL};
    int rc;
    if ((rc = get_object(ps, v, path)) || (rc = check_keys(ps, v, path, keys)) ||
        (rc = get_string(ps, v, path, "name", true, &pl->name)))
        return rc;

    const json_t *eps = json_object_get(v, "endpoints");
    const json_t *acc = json_object_get(v, "accept");
    char p[PATH_LEN];
    if (eps && acc) {
        join(p, path, "accept");
        return fail(ps, p,
                    "\"endpoints\" and \"accept\" are exclusive: a pool either dials "
                    "endpoints or accepts agents");
    }
    if (!eps && !acc)
        return fail(ps, path, "needs \"endpoints\" (dialled pool) or \"accept\" (reverse pool)");
    if (eps) {
        join(p, path, "endpoints");
        if (!json_is_array(eps))
            return fail(ps, p, "must be an array of addresses, not %s", type_name(eps));
        if (json_array_size(eps) == 0)
            return fail(ps, p, "must list at least one endpoint");
        pl->n_endpoints = json_array_size(eps);
        pl->endpoints = calloc(pl->n_endpoints, sizeof(*pl->endpoints));
        if (!pl->endpoints)
            return UV_ENOMEM;
        for (size_t i = 0; i < pl->n_endpoints; i++) {
            char ep[PATH_LEN];
            join_index(ep, p, i);
            const json_t *e = json_array_get(eps, i);
            if (!json_is_string(e))
                return fail(ps, ep, "must be a string address, not %s", type_name(e));
            const char *why;
            rc = config_addr_parse(json_string_value(e), &pl->endpoints[i], &why);
            if (rc == UV_EINVAL)
                return fail(ps, ep, "%s", why);
            if (rc)
                return rc;
        }
    } else {
        pl->reverse = true;
        if ((rc = get_addr(ps, v, path, "accept", true, true, &pl->accept)))
            return rc;
        const json_t *id = json_object_get(v, "identify");
        if (id) {
            join(p, path, "identify");
            static const char *const idkeys[] = {"rpc", NULL};
            if ((rc = get_object(ps, id, p)) || (rc = check_keys(ps, id, p, idkeys)) ||
                (rc = get_string(ps, id, p, "rpc", true, &pl->identify_rpc)))
                return rc;
        }
    }
    if (!pl->reverse && json_object_get(v, "identify")) {
        join(p, path, "identify");
        return fail(ps, p, "only applies to reverse pools (with \"accept\")");
    }

    int balance = 0, cancel = 0;
    if ((rc = get_u32(ps, v, path, "max_conns", 1, 65535, 16, &pl->max_conns)) ||
        (rc = get_u32(ps, v, path, "min_idle", 0, 65535, 0, &pl->min_idle)) ||
        (rc =
             get_u64(ps, v, path, "idle_timeout_ms", 0, MS_MAX_DAY, 60000, &pl->idle_timeout_ms)) ||
        (rc = get_u64(ps, v, path, "max_lifetime_ms", 0, MS_MAX_MONTH, 0, &pl->max_lifetime_ms)) ||
        (rc = get_u64(ps, v, path, "dial_timeout_ms", 1, MS_MAX_DAY, 5000, &pl->dial_timeout_ms)) ||
        (rc = get_u32(ps, v, path, "max_waiters", 0, 1000000, 1024, &pl->max_waiters)) ||
        (rc = get_u64(ps, v, path, "wait_timeout_ms", 0, MS_MAX_DAY, 5000, &pl->wait_timeout_ms)) ||
        (rc = get_u64(ps, v, path, "call_timeout_ms", 0, MS_MAX_MONTH, 0, &pl->call_timeout_ms)) ||
        (rc = get_choice(ps, v, path, "balance", balances, 0, &balance)) ||
        (rc = get_bool(ps, v, path, "header", false, &pl->header)) ||
        (rc = get_choice(ps, v, path, "cancel", cancels, 0, &cancel)) ||
        (rc =
             get_u32(ps, v, path, "eject_after_failures", 0, 1000, 3, &pl->eject_after_failures)) ||
        (rc = get_u64(ps, v, path, "eject_ms", 1, MS_MAX_DAY, 10000, &pl->eject_ms)) ||
        (rc = get_u64(ps, v, path, "backoff_base_ms", 1, MS_MAX_DAY, 100, &pl->backoff_base_ms)) ||
        (rc = get_u64(ps, v, path, "backoff_max_ms", 1, MS_MAX_DAY, 5000, &pl->backoff_max_ms)))
        return rc;
    pl->balance = (enum config_balance)balance;
    pl->cancel = (enum config_cancel_mode)cancel;
    if (pl->min_idle > pl->max_conns) {
        join(p, path, "min_idle");
        return fail(ps, p, "must not exceed max_conns (%u)", pl->max_conns);
    }
    if (pl->backoff_base_ms > pl->backoff_max_ms) {
        join(p, path, "backoff_base_ms");
        return fail(ps, p, "must not exceed backoff_max_ms (%llu)",
                    (unsigned long long)pl->backoff_max_ms);
    }
    if (pl->reverse && pl->min_idle) {
        join(p, path, "min_idle");
        return fail(ps, p, "does not apply to reverse pools: agents dial in");
    }
    return 0;
}

static int parse_route(struct parser *ps, const json_t *v, const char *path, struct config_route *r,
                       const struct config *cfg, size_t index)
{
    static const char *const keys[] = {
        "name", "match", "pool", "add_metadata", "call_timeout_ms", "agent_from_metadata", NULL};
    int rc;
    char p[PATH_LEN];
    if ((rc = get_object(ps, v, path)) || (rc = check_keys(ps, v, path, keys)) ||
        (rc = get_string(ps, v, path, "name", false, &r->name)))
        return rc;
    if (!r->name) {
        char name[32];
        snprintf(name, sizeof(name), "route%zu", index);
        if (!(r->name = strdup(name)))
            return UV_ENOMEM;
    }
    const json_t *m = json_object_get(v, "match");
    if (m) {
        join(p, path, "match");
        static const char *const mkeys[] = {"rpc", "rpc_prefix", "metadata", NULL};
        if ((rc = get_object(ps, m, p)) || (rc = check_keys(ps, m, p, mkeys)) ||
            (rc = get_string(ps, m, p, "rpc", false, &r->rpc)) ||
            (rc = get_string(ps, m, p, "rpc_prefix", false, &r->rpc_prefix)))
            return rc;
        const json_t *md = json_object_get(m, "metadata");
        if (md) {
            char mp[PATH_LEN];
            join(mp, p, "metadata");
            static const char *const mdkeys[] = {"key", "value", NULL};
            if ((rc = get_object(ps, md, mp)) || (rc = check_keys(ps, md, mp, mdkeys)) ||
                (rc = get_string(ps, md, mp, "key", true, &r->metadata_key)))
                return rc;
            const json_t *val = json_object_get(md, "value");
            if (val) {
                char vp[PATH_LEN];
                join(vp, mp, "value");
                if (!json_is_string(val))
                    return fail(ps, vp, "must be a string, not %s", type_name(val));
                if (!(r->metadata_value = strdup(json_string_value(val))))
                    return UV_ENOMEM;
            }
        }
    }
    if ((rc = get_string(ps, v, path, "pool", true, &r->pool)))
        return rc;
    int pi = config_pool_index(cfg, r->pool);
    if (pi < 0) {
        join(p, path, "pool");
        return fail(ps, p, "no pool named \"%s\"", r->pool);
    }
    r->pool_index = (size_t)pi;
    const json_t *add = json_object_get(v, "add_metadata");
    if (add) {
        join(p, path, "add_metadata");
        if ((rc = get_object(ps, add, p)))
            return rc;
        r->n_add_metadata = json_object_size(add);
        r->add_metadata =
            calloc(r->n_add_metadata ? r->n_add_metadata : 1, sizeof(*r->add_metadata));
        if (!r->add_metadata)
            return UV_ENOMEM;
        const char *key;
        json_t *val;
        size_t i = 0;
        json_object_foreach((json_t *)add, key, val)
        {
            char kp[PATH_LEN];
            join(kp, p, key);
            if (!json_is_string(val))
                return fail(ps, kp, "must be a string, not %s", type_name(val));
            if (!key[0])
                return fail(ps, kp, "metadata keys must not be empty");
            r->add_metadata[i].key = strdup(key);
            r->add_metadata[i].value = strdup(json_string_value(val));
            if (!r->add_metadata[i].key || !r->add_metadata[i].value)
                return UV_ENOMEM;
            i++;
        }
    }
    if (json_object_get(v, "call_timeout_ms")) {
        r->has_call_timeout = true;
        if ((rc = get_u64(ps, v, path, "call_timeout_ms", 0, MS_MAX_MONTH, 0, &r->call_timeout_ms)))
            return rc;
    }
    if ((rc = get_string(ps, v, path, "agent_from_metadata", false, &r->agent_from_metadata)))
        return rc;
    if (r->agent_from_metadata && !cfg->pools[r->pool_index].reverse) {
        join(p, path, "agent_from_metadata");
        return fail(ps, p, "only applies to routes to a reverse pool; \"%s\" dials endpoints",
                    r->pool);
    }
    return 0;
}

static int parse_admin(struct parser *ps, const json_t *root, struct config_admin *a)
{
    static const char *const keys[] = {"enabled",
                                       "address",
                                       "token",
                                       "allow_insecure",
                                       "show_metadata_values",
                                       "request_timeout_ms",
                                       NULL};
    const json_t *v = json_object_get(root, "admin");
    const char *path = "admin";
    int rc;
    a->enabled = true;
    a->request_timeout_ms = 10000;
    if (v && !json_is_null(v)) {
        if ((rc = get_object(ps, v, path)) || (rc = check_keys(ps, v, path, keys)) ||
            (rc = get_bool(ps, v, path, "enabled", true, &a->enabled)) ||
            (rc = get_addr(ps, v, path, "address", false, true, &a->addr)) ||
            (rc = get_string(ps, v, path, "token", false, &a->token)) ||
            (rc = get_bool(ps, v, path, "allow_insecure", false, &a->allow_insecure)) ||
            (rc = get_bool(ps, v, path, "show_metadata_values", false, &a->show_metadata_values)) ||
            (rc = get_u64(ps, v, path, "request_timeout_ms", 100, MS_MAX_DAY, 10000,
                          &a->request_timeout_ms)))
            return rc;
    }
    if (!a->addr.text) {
        const char *why;
        if ((rc = config_addr_parse("127.0.0.1:9901", &a->addr, &why)))
            return rc;
    }
    if (a->enabled && !addr_is_loopback(&a->addr) && !a->token && !a->allow_insecure)
        return fail(ps, "admin.address",
                    "%s is not a loopback address: set admin.token, or admin.allow_insecure "
                    "to expose the admin API without one",
                    a->addr.text);
    return 0;
}

static int parse_access_log(struct parser *ps, const json_t *root, struct config_access_log *al)
{
    static const char *const keys[] = {"path", "format", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    const json_t *v = json_object_get(root, "access_log");
    if (!v || json_is_null(v))
        return 0;
    int rc, format = 0;
    if ((rc = get_object(ps, v, "access_log")) || (rc = check_keys(ps, v, "access_log", keys)) ||
        (rc = get_string(ps, v, "access_log", "path", true, &al->path)) ||
        (rc = get_choice(ps, v, "access_log", "format", formats, 0, &format)))
        return rc;
    al->enabled = true;
    al->format = (enum config_log_format)format;
    return 0;
}

/* Fails when two sockets the sidecar listens on share an address. */
static int check_duplicate_addresses(struct parser *ps, const struct config *cfg)
{
    struct {
        const char *text;
        char path[PATH_LEN];
    } seen[256];
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_listeners && n < 256; i++, n++) {
        seen[n].text = cfg->listeners[i].addr.text;
        snprintf(seen[n].path, PATH_LEN, "listeners[%zu].address", i);
    }
    for (size_t i = 0; i < cfg->n_pools && n < 256; i++) {
        if (!cfg->pools[i].reverse)
            continue;
        seen[n].text = cfg->pools[i].accept.text;
        snprintf(seen[n].path, PATH_LEN, "pools[%zu].accept", i);
        n++;
    }
    if (cfg->admin.enabled && n < 256) {
        seen[n].text = cfg->admin.addr.text;
        snprintf(seen[n].path, PATH_LEN, "admin.address");
        n++;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(seen[i].text, seen[j].text) == 0)
                return fail(ps, seen[i].path, "%s is already used by %s", seen[i].text,
                            seen[j].path);
    return 0;
}

static int parse_root(struct parser *ps, const json_t *root, struct config *cfg)
{
    static const char *const keys[] = {"listeners",
                                       "admin",
                                       "pools",
                                       "routes",
                                       "access_log",
                                       "log_level",
                                       "max_clients",
                                       "shutdown_grace_ms",
                                       "max_message_size",
                                       "max_metadata_size",
                                       "call_buffer_bytes",
                                       NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int rc;
    if (!json_is_object(root))
        return fail(ps, "", "the config must be a JSON object, not %s", type_name(root));
    if ((rc = check_keys(ps, root, "", keys)))
        return rc;
    int level = CONFIG_LOG_INFO;
    if ((rc = get_choice(ps, root, "", "log_level", levels, CONFIG_LOG_INFO, &level)) ||
        (rc = get_u32(ps, root, "", "max_clients", 0, 10000000, 10000, &cfg->max_clients)) ||
        (rc = get_u64(ps, root, "", "shutdown_grace_ms", 0, MS_MAX_DAY, 10000,
                      &cfg->shutdown_grace_ms)) ||
        (rc = get_u64(ps, root, "", "max_message_size", 1024, 256ULL << 20, 4ULL << 20,
                      &cfg->max_message_size)) ||
        (rc = get_u64(ps, root, "", "max_metadata_size", 64, 4ULL << 20, 64ULL << 10,
                      &cfg->max_metadata_size)) ||
        (rc = get_u64(ps, root, "", "call_buffer_bytes", 64ULL << 10, 1ULL << 30, 1ULL << 20,
                      &cfg->call_buffer_bytes)))
        return rc;
    cfg->log_level = (enum config_log_level)level;

    const json_t *ls = json_object_get(root, "listeners");
    if (!ls)
        return fail(ps, "", "missing required key \"listeners\"");
    if (!json_is_array(ls))
        return fail(ps, "listeners", "must be an array, not %s", type_name(ls));
    if (json_array_size(ls) == 0)
        return fail(ps, "listeners", "must list at least one listener");
    cfg->n_listeners = json_array_size(ls);
    cfg->listeners = calloc(cfg->n_listeners, sizeof(*cfg->listeners));
    if (!cfg->listeners)
        return UV_ENOMEM;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        char p[PATH_LEN];
        join_index(p, "listeners", i);
        if ((rc = parse_listener(ps, json_array_get(ls, i), p, &cfg->listeners[i], i)))
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->listeners[j].name, cfg->listeners[i].name) == 0) {
                char np[PATH_LEN];
                join(np, p, "name");
                return fail(ps, np, "duplicate listener name \"%s\"", cfg->listeners[i].name);
            }
    }

    const json_t *ps_ = json_object_get(root, "pools");
    if (!ps_)
        return fail(ps, "", "missing required key \"pools\"");
    if (!json_is_array(ps_))
        return fail(ps, "pools", "must be an array, not %s", type_name(ps_));
    if (json_array_size(ps_) == 0)
        return fail(ps, "pools", "must list at least one pool");
    cfg->n_pools = json_array_size(ps_);
    cfg->pools = calloc(cfg->n_pools, sizeof(*cfg->pools));
    if (!cfg->pools)
        return UV_ENOMEM;
    for (size_t i = 0; i < cfg->n_pools; i++) {
        char p[PATH_LEN];
        join_index(p, "pools", i);
        if ((rc = parse_pool(ps, json_array_get(ps_, i), p, &cfg->pools[i])))
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->pools[j].name, cfg->pools[i].name) == 0) {
                char np[PATH_LEN];
                join(np, p, "name");
                return fail(ps, np, "duplicate pool name \"%s\"", cfg->pools[i].name);
            }
    }

    const json_t *rs = json_object_get(root, "routes");
    if (!rs) {
        if (cfg->n_pools != 1)
            return fail(ps, "", "\"routes\" is required when there is more than one pool");
        cfg->n_routes = 1;
        cfg->routes = calloc(1, sizeof(*cfg->routes));
        if (!cfg->routes || !(cfg->routes[0].pool = strdup(cfg->pools[0].name)) ||
            !(cfg->routes[0].name = strdup("default")))
            return UV_ENOMEM;
    } else {
        if (!json_is_array(rs))
            return fail(ps, "routes", "must be an array, not %s", type_name(rs));
        if (json_array_size(rs) == 0)
            return fail(ps, "routes", "must list at least one route");
        cfg->n_routes = json_array_size(rs);
        cfg->routes = calloc(cfg->n_routes, sizeof(*cfg->routes));
        if (!cfg->routes)
            return UV_ENOMEM;
        for (size_t i = 0; i < cfg->n_routes; i++) {
            char p[PATH_LEN];
            join_index(p, "routes", i);
            if (i > 0) {
                const struct config_route *prev = &cfg->routes[i - 1];
                if (!prev->rpc && !prev->rpc_prefix && !prev->metadata_key)
                    return fail(ps, p,
                                "unreachable: routes[%zu] has no \"match\" and takes every call",
                                i - 1);
            }
            if ((rc = parse_route(ps, json_array_get(rs, i), p, &cfg->routes[i], cfg, i)))
                return rc;
        }
    }
    if ((rc = parse_admin(ps, root, &cfg->admin)) ||
        (rc = parse_access_log(ps, root, &cfg->access_log)) ||
        (rc = check_duplicate_addresses(ps, cfg)))
        return rc;
    return 0;
}

/* ---- life cycle --------------------------------------------------------- */

static void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].name);
        config_addr_free(&cfg->listeners[i].addr);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_pools; i++) {
        struct config_pool *p = &cfg->pools[i];
        free(p->name);
        for (size_t j = 0; j < p->n_endpoints; j++)
            config_addr_free(&p->endpoints[j]);
        free(p->endpoints);
        config_addr_free(&p->accept);
        free(p->identify_rpc);
    }
    free(cfg->pools);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct config_route *r = &cfg->routes[i];
        free(r->name);
        free(r->rpc);
        free(r->rpc_prefix);
        free(r->metadata_key);
        free(r->metadata_value);
        free(r->pool);
        for (size_t j = 0; j < r->n_add_metadata; j++) {
            free(r->add_metadata[j].key);
            free(r->add_metadata[j].value);
        }
        free(r->add_metadata);
        free(r->agent_from_metadata);
    }
    free(cfg->routes);
    config_addr_free(&cfg->admin.addr);
    free(cfg->admin.token);
    free(cfg->access_log.path);
    free(cfg->path);
    free(cfg);
}

struct config *config_ref(struct config *cfg)
{
    cfg->refs++;
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (cfg && --cfg->refs == 0)
        config_free(cfg);
}

int config_parse(const char *text, size_t len, const char *name, struct config **out,
                 struct config_error *err)
{
    struct parser ps = {name, {0}, err};
    memset(err, 0, sizeof(*err));
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err->file, sizeof(err->file), "%s", name);
        err->line = jerr.line > 0 ? jerr.line : 1;
        err->column = jerr.column > 0 ? jerr.column : 1;
        snprintf(err->text, sizeof(err->text), "invalid JSON: %s", jerr.text);
        return UV_EINVAL;
    }
    int rc = config_pos_build(&ps.pos, text, len);
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (rc == 0 && !cfg)
        rc = UV_ENOMEM;
    if (rc == 0) {
        cfg->refs = 1;
        cfg->path = strdup(name);
        rc = cfg->path ? parse_root(&ps, root, cfg) : UV_ENOMEM;
    }
    if (rc == UV_ENOMEM && !err->text[0]) {
        snprintf(err->file, sizeof(err->file), "%s", name);
        snprintf(err->text, sizeof(err->text), "out of memory");
    }
    json_decref(root);
    config_pos_free(&ps.pos);
    if (rc) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *path, struct config **out, struct config_error *err)
{
    memset(err, 0, sizeof(*err));
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err->file, sizeof(err->file), "%s", path);
        snprintf(err->text, sizeof(err->text), "cannot open: %s", strerror(e));
        return uv_translate_sys_error(e);
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                free(text);
                fclose(f);
                snprintf(err->file, sizeof(err->file), "%s", path);
                snprintf(err->text, sizeof(err->text), "file larger than 16 MiB");
                return UV_EFBIG;
            }
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return UV_ENOMEM;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(text);
        snprintf(err->file, sizeof(err->file), "%s", path);
        snprintf(err->text, sizeof(err->text), "read error");
        return UV_EIO;
    }
    int rc = config_parse(text, len, path, out, err);
    free(text);
    return rc;
}

void config_error_format(const struct config_error *err, char *buf, size_t size)
{
    if (err->line > 0 && err->path[0])
        snprintf(buf, size, "%s:%d:%d: %s: %s", err->file, err->line, err->column, err->path,
                 err->text);
    else if (err->line > 0)
        snprintf(buf, size, "%s:%d:%d: %s", err->file, err->line, err->column, err->text);
    else
        snprintf(buf, size, "%s: %s", err->file, err->text);
}

int config_pool_index(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_pools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *config_log_level_name(enum config_log_level l)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    return (unsigned)l < 4 ? names[l] : "?";
}

/* ---- effective config as JSON ------------------------------------------- */

static json_t *addr_json(const struct config_addr *a)
{
    return json_string(a->text ? a->text : "");
}

json_t *config_to_json(const struct config *cfg, bool redact)
{
    static const char *const balances[] = {"round_robin", "least_busy"};
    static const char *const cancels[] = {"soft", "close"};
    json_t *root = json_object();
    json_t *ls = json_array();
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        json_t *o = json_pack("{s:s, s:o, s:b, s:I, s:b, s:I}", "name", l->name, "address",
                              addr_json(&l->addr), "header", l->accept_header, "max_clients",
                              (json_int_t)l->max_clients, "reuse_port", l->reuse_port,
                              "client_idle_timeout_ms", (json_int_t)l->client_idle_timeout_ms);
        if (l->addr.kind == CONFIG_ADDR_UNIX) {
            char mode[8];
            snprintf(mode, sizeof(mode), "0%o", l->unix_mode);
            json_object_set_new(o, "mode", json_string(mode));
        }
        json_array_append_new(ls, o);
    }
    json_object_set_new(root, "listeners", ls);

    json_t *ps = json_array();
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const struct config_pool *p = &cfg->pools[i];
        json_t *o = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s, s:I, s:I, s:I, s:I}",
            "name", p->name, "max_conns", (json_int_t)p->max_conns, "min_idle",
            (json_int_t)p->min_idle, "idle_timeout_ms", (json_int_t)p->idle_timeout_ms,
            "max_lifetime_ms", (json_int_t)p->max_lifetime_ms, "dial_timeout_ms",
            (json_int_t)p->dial_timeout_ms, "max_waiters", (json_int_t)p->max_waiters,
            "wait_timeout_ms", (json_int_t)p->wait_timeout_ms, "call_timeout_ms",
            (json_int_t)p->call_timeout_ms, "balance", balances[p->balance], "header", p->header,
            "cancel", cancels[p->cancel], "eject_after_failures",
            (json_int_t)p->eject_after_failures, "eject_ms", (json_int_t)p->eject_ms,
            "backoff_base_ms", (json_int_t)p->backoff_base_ms, "backoff_max_ms",
            (json_int_t)p->backoff_max_ms);
        if (p->reverse) {
            json_object_set_new(o, "accept", addr_json(&p->accept));
            if (p->identify_rpc)
                json_object_set_new(o, "identify", json_pack("{s:s}", "rpc", p->identify_rpc));
        } else {
            json_t *eps = json_array();
            for (size_t j = 0; j < p->n_endpoints; j++)
                json_array_append_new(eps, addr_json(&p->endpoints[j]));
            json_object_set_new(o, "endpoints", eps);
        }
        json_array_append_new(ps, o);
    }
    json_object_set_new(root, "pools", ps);

    json_t *rs = json_array();
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct config_route *r = &cfg->routes[i];
        json_t *o = json_pack("{s:s, s:s}", "name", r->name ? r->name : "", "pool", r->pool);
        json_t *m = json_object();
        if (r->rpc)
            json_object_set_new(m, "rpc", json_string(r->rpc));
        if (r->rpc_prefix)
            json_object_set_new(m, "rpc_prefix", json_string(r->rpc_prefix));
        if (r->metadata_key) {
            json_t *md = json_pack("{s:s}", "key", r->metadata_key);
            if (r->metadata_value)
                json_object_set_new(md, "value", json_string(r->metadata_value));
            json_object_set_new(m, "metadata", md);
        }
        if (json_object_size(m))
            json_object_set_new(o, "match", m);
        else
            json_decref(m);
        if (r->n_add_metadata) {
            json_t *add = json_object();
            for (size_t j = 0; j < r->n_add_metadata; j++)
                json_object_set_new(add, r->add_metadata[j].key,
                                    json_string(r->add_metadata[j].value));
            json_object_set_new(o, "add_metadata", add);
        }
        if (r->has_call_timeout)
            json_object_set_new(o, "call_timeout_ms", json_integer((json_int_t)r->call_timeout_ms));
        if (r->agent_from_metadata)
            json_object_set_new(o, "agent_from_metadata", json_string(r->agent_from_metadata));
        json_array_append_new(rs, o);
    }
    json_object_set_new(root, "routes", rs);

    const struct config_admin *a = &cfg->admin;
    json_t *admin =
        json_pack("{s:b, s:o, s:b, s:b, s:I}", "enabled", a->enabled, "address",
                  addr_json(&a->addr), "allow_insecure", a->allow_insecure, "show_metadata_values",
                  a->show_metadata_values, "request_timeout_ms", (json_int_t)a->request_timeout_ms);
    if (a->token)
        json_object_set_new(admin, "token", json_string(redact ? "<redacted>" : a->token));
    json_object_set_new(root, "admin", admin);
    if (cfg->access_log.enabled)
        json_object_set_new(
            root, "access_log",
            json_pack("{s:s, s:s}", "path", cfg->access_log.path, "format",
                      cfg->access_log.format == CONFIG_LOG_FORMAT_JSON ? "json" : "text"));
    json_object_set_new(root, "log_level", json_string(config_log_level_name(cfg->log_level)));
    json_object_set_new(root, "max_clients", json_integer((json_int_t)cfg->max_clients));
    json_object_set_new(root, "shutdown_grace_ms",
                        json_integer((json_int_t)cfg->shutdown_grace_ms));
    json_object_set_new(root, "max_message_size", json_integer((json_int_t)cfg->max_message_size));
    json_object_set_new(root, "max_metadata_size",
                        json_integer((json_int_t)cfg->max_metadata_size));
    json_object_set_new(root, "call_buffer_bytes",
                        json_integer((json_int_t)cfg->call_buffer_bytes));
    return root;
}
