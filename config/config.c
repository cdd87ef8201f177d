/*
 * config: JSON file -> validated, immutable struct config (see config.h).
 *
 *   bytes --jansson--> json_t --check each item, fill defaults--> config
 *                                  | on the first error only
 *                                  v
 *        config_pos_find(bytes, JSON path) -> line:column of the value
 *
 * Validation is complete before anything starts: syntax, unknown keys,
 * types, ranges, addresses, duplicates and cross-references (routes to
 * pools, agent routes to reverse pools, routes hidden by earlier ones,
 * listening sockets that clash). The first error wins and names file,
 * line, column and JSON path. Config keys starting with "_" are ignored
 * everywhere, so files can carry annotations; keys inside add_metadata
 * are data and are all taken literally.
 *
 * Owns: reading the file, the top level, listeners, pools, admin and
 * access log sections, the struct config life cycle (refs) and the error
 * format. Beside it: config_read.c (typed values, positioned errors),
 * config_routes.c (routes), config_addr.c (addresses), config_pos.c
 * (positions), config_json.c (the effective config as JSON), config_tls.c
 * (tls objects and the files they name).
 */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config_addr.h"
#include "config/config_read.h"
#include "config/config_routes.h"
#include "config/config_tls.h"

#define PATH_LEN     CONFIG_POS_PATH_MAX
#define MAX_FILE     (16u << 20)
#define BOM          "\xef\xbb\xbf"
#define UNIX_MODE_OK 0777

/* ---- listeners ------------------------------------------------------------ */

/* "mode": "0660" (octal digits) or an integer (its value, e.g. 432 = 0660). */
static int parse_mode(struct config_reader *rd, const json_t *mode, const char *p, uint32_t *out)
{
    if (json_is_string(mode)) {
        const char *s = json_string_value(mode);
        size_t n = strlen(s);
        if (n == 0 || n > 4 || strspn(s, "01234567") != n)
            return config_read_fail(rd, p, "must be an octal file mode like \"0660\"");
        *out = (uint32_t)strtoul(s, NULL, 8);
    } else if (json_is_integer(mode)) {
        json_int_t m = json_integer_value(mode);
        if (m < 0 || m > 07777)
            return config_read_fail(rd, p, "must be an octal file mode like \"0660\"");
        *out = (uint32_t)m;
    } else {
        return config_read_fail(rd, p, "must be an octal file mode like \"0660\", not %s",
                                config_read_type_name(mode));
    }
    if (*out > UNIX_MODE_OK)
        return config_read_fail(rd, p,
                                "must be at most \"0777\" (no setuid, setgid or sticky bits)");
    return 0;
}

static int parse_listener(struct config_reader *rd, const json_t *v, const char *path,
                          struct config_listener *l, size_t index)
{
    static const char *const keys[] = {
        "name", "address", "header", "max_clients", "mode", "reuse_port", "client_idle_timeout_ms",
        "tls",  NULL};
    int rc;
    if ((rc = config_read_object(rd, v, path)) || (rc = config_read_keys(rd, v, path, keys)) ||
        (rc = config_read_name(rd, v, path, false, &l->name)))
        return rc;
    if (!l->name) {
        char name[32];
        snprintf(name, sizeof(name), "listener%zu", index);
        if (!(l->name = strdup(name)))
            return UV_ENOMEM;
    }
    if ((rc = config_read_addr(rd, v, path, "address", true, true, &l->addr)) ||
        (rc = config_read_bool(rd, v, path, "header", false, &l->accept_header)) ||
        (rc = config_read_u32(rd, v, path, "max_clients", 0, 1000000, 0, &l->max_clients)) ||
        (rc = config_read_bool(rd, v, path, "reuse_port", true, &l->reuse_port)) ||
        (rc = config_read_u64(rd, v, path, "client_idle_timeout_ms", 0, CONFIG_READ_DAY_MS, 0,
                              &l->client_idle_timeout_ms)) ||
        (rc = config_tls_parse_server(rd, v, path, &l->tls)))
        return rc;
    l->unix_mode = 0660;
    const json_t *mode = json_object_get(v, "mode");
    if (mode) {
        char p[PATH_LEN];
        config_read_join(p, path, "mode");
        if (l->addr.kind != CONFIG_ADDR_UNIX)
            return config_read_fail(rd, p, "only applies to unix: listeners");
        if ((rc = parse_mode(rd, mode, p, &l->unix_mode)))
            return rc;
    }
    return 0;
}

static int parse_listeners(struct config_reader *rd, const json_t *root, struct config *cfg)
{
    const json_t *ls = json_object_get(root, "listeners");
    if (!ls)
        return config_read_missing(rd, "", "listeners");
    if (!json_is_array(ls))
        return config_read_fail(rd, "listeners", "must be an array, not %s",
                                config_read_type_name(ls));
    if (json_array_size(ls) == 0)
        return config_read_fail(rd, "listeners", "must list at least one listener");
    cfg->listeners = calloc(json_array_size(ls), sizeof(*cfg->listeners));
    if (!cfg->listeners)
        return UV_ENOMEM;
    for (size_t i = 0; i < json_array_size(ls); i++) {
        char p[PATH_LEN];
        config_read_join_index(p, "listeners", i);
        cfg->n_listeners++; /* counted before parsing, so a partial one is freed */
        int rc = parse_listener(rd, json_array_get(ls, i), p, &cfg->listeners[i], i);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->listeners[j].name, cfg->listeners[i].name) == 0) {
                char np[PATH_LEN];
                config_read_join(np, p, "name");
                return config_read_fail(rd, np,
                                        "duplicate listener name \"%s\" (also listeners[%zu])",
                                        cfg->listeners[i].name, j);
            }
    }
    return 0;
}

/* ---- pools ---------------------------------------------------------------- */

static int parse_endpoints(struct config_reader *rd, const json_t *eps, const char *p,
                           struct config_pool *pl)
{
    if (!json_is_array(eps))
        return config_read_fail(rd, p, "must be an array of addresses, not %s",
                                config_read_type_name(eps));
    if (json_array_size(eps) == 0)
        return config_read_fail(rd, p, "must list at least one endpoint");
    pl->endpoints = calloc(json_array_size(eps), sizeof(*pl->endpoints));
    if (!pl->endpoints)
        return UV_ENOMEM;
    for (size_t i = 0; i < json_array_size(eps); i++) {
        char ep[PATH_LEN];
        config_read_join_index(ep, p, i);
        const json_t *e = json_array_get(eps, i);
        if (!json_is_string(e))
            return config_read_fail(rd, ep, "must be a string address, not %s",
                                    config_read_type_name(e));
        const char *why;
        int rc = config_addr_parse(json_string_value(e), &pl->endpoints[i], &why);
        if (rc == UV_EINVAL)
            return config_read_fail(rd, ep, "%s", why);
        if (rc)
            return rc;
        pl->n_endpoints++;
    }
    return 0;
}

const char *const config_balance_names[] = {"round_robin", "least_busy", NULL};
const char *const config_cancel_names[] = {"soft", "close", NULL};

/* Readers of one CONFIG_POOL_KEYS row, by its type column (hence the names). */
static int read_U32(struct config_reader *rd, const json_t *v, const char *path, const char *key,
                    uint64_t min, uint64_t max, uint64_t def, uint32_t *out)
{
    return config_read_u32(rd, v, path, key, (uint32_t)min, (uint32_t)max, (uint32_t)def, out);
}

static int read_U64(struct config_reader *rd, const json_t *v, const char *path, const char *key,
                    uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    return config_read_u64(rd, v, path, key, min, max, def, out);
}

static int read_BOOL(struct config_reader *rd, const json_t *v, const char *path, const char *key,
                     uint64_t min, uint64_t max, uint64_t def, bool *out)
{
    (void)min, (void)max;
    return config_read_bool(rd, v, path, key, def != 0, out);
}

static int read_BALANCE(struct config_reader *rd, const json_t *v, const char *path,
                        const char *key, uint64_t min, uint64_t max, uint64_t def,
                        enum config_balance *out)
{
    (void)min, (void)max;
    int i = 0, rc = config_read_choice(rd, v, path, key, config_balance_names, (int)def, &i);
    *out = (enum config_balance)i;
    return rc;
}

static int read_CANCEL(struct config_reader *rd, const json_t *v, const char *path, const char *key,
                       uint64_t min, uint64_t max, uint64_t def, enum config_cancel_mode *out)
{
    (void)min, (void)max;
    int i = 0, rc = config_read_choice(rd, v, path, key, config_cancel_names, (int)def, &i);
    *out = (enum config_cancel_mode)i;
    return rc;
}

/* "health_check": {"interval_ms", "timeout_ms", "rpc", "request",
 * "healthy_threshold", "unhealthy_threshold"} (proxy/health.h). */
static int parse_health_check(struct config_reader *rd, const json_t *v, const char *path,
                              struct config_health_check *hc)
{
    static const char *const keys[] = {"interval_ms",       "timeout_ms",          "rpc", "request",
                                       "healthy_threshold", "unhealthy_threshold", NULL};
    int rc;
    if ((rc = config_read_object(rd, v, path)) || (rc = config_read_keys(rd, v, path, keys)))
        return rc;
    const json_t *req = json_object_get(v, "request");
    if ((rc = config_read_u64(rd, v, path, "interval_ms", 10, CONFIG_READ_DAY_MS, 1000,
                              &hc->interval_ms)) ||
        (rc = config_read_u64(rd, v, path, "timeout_ms", 1, CONFIG_READ_DAY_MS, 1000,
                              &hc->timeout_ms)) ||
        (rc = config_read_string(rd, v, path, "rpc", false, &hc->rpc)) ||
        (rc = config_read_u32(rd, v, path, "healthy_threshold", 1, 1000, 2,
                              &hc->healthy_threshold)) ||
        (rc = config_read_u32(rd, v, path, "unhealthy_threshold", 1, 1000, 3,
                              &hc->unhealthy_threshold)))
        return rc;
    if (req) {
        char p[PATH_LEN];
        config_read_join(p, path, "request");
        if (!json_is_string(req))
            return config_read_fail(rd, p, "must be a string, not %s", config_read_type_name(req));
        if (!hc->rpc)
            return config_read_fail(rd, p, "needs \"rpc\": a TCP check sends nothing");
    }
    hc->request = strdup(req ? json_string_value(req) : "");
    if (!hc->request)
        return UV_ENOMEM;
    hc->enabled = true;
    return 0;
}

static int parse_pool(struct config_reader *rd, const json_t *v, const char *path,
                      struct config_pool *pl)
{
#define POOL_KEY_NAME(key, type, min, max, def, scope) #key,
    static const char *const keys[] = {
        "name",         "endpoints", "accept", "identify", CONFIG_POOL_KEYS(POOL_KEY_NAME) "tls",
        "health_check", NULL};
#undef POOL_KEY_NAME
    int rc;
    if ((rc = config_read_object(rd, v, path)) || (rc = config_read_keys(rd, v, path, keys)) ||
        (rc = config_read_name(rd, v, path, true, &pl->name)))
        return rc;

    const json_t *eps = json_object_get(v, "endpoints");
    const json_t *acc = json_object_get(v, "accept");
    const json_t *id = json_object_get(v, "identify");
    char p[PATH_LEN];
    if (eps && acc) {
        config_read_join(p, path, "accept");
        return config_read_fail(rd, p,
                                "\"endpoints\" and \"accept\" are exclusive: a pool either dials "
                                "endpoints or accepts agents");
    }
    if (!eps && !acc)
        return config_read_fail(rd, path,
                                "needs \"endpoints\" (dialled pool) or \"accept\" (reverse pool)");
    if (eps) {
        config_read_join(p, path, "endpoints");
        if ((rc = parse_endpoints(rd, eps, p, pl)))
            return rc;
        if (id) {
            config_read_join(p, path, "identify");
            return config_read_fail(rd, p, "only applies to reverse pools (with \"accept\")");
        }
        if ((rc = config_tls_parse_client(rd, v, path, &pl->tls)))
            return rc;
        for (size_t i = 0;
             pl->tls.enabled && pl->tls.verify && !pl->tls.server_name && i < pl->n_endpoints; i++)
            if (pl->endpoints[i].kind == CONFIG_ADDR_UNIX) {
                config_read_join(p, path, "tls");
                return config_read_fail(rd, p,
                                        "needs server_name: endpoints[%zu] is a unix: address, "
                                        "with no host name to verify",
                                        i);
            }
    } else {
        pl->reverse = true;
        if ((rc = config_read_addr(rd, v, path, "accept", true, true, &pl->accept)))
            return rc;
        if (id) {
            static const char *const idkeys[] = {"rpc", NULL};
            config_read_join(p, path, "identify");
            if ((rc = config_read_object(rd, id, p)) ||
                (rc = config_read_keys(rd, id, p, idkeys)) ||
                (rc = config_read_string(rd, id, p, "rpc", true, &pl->identify_rpc)))
                return rc;
        }
        /* The sidecar is the TLS server towards agents: the listener form. */
        if ((rc = config_tls_parse_server(rd, v, path, &pl->accept_tls)))
            return rc;
    }

    const json_t *hc = json_object_get(v, "health_check");
    if (hc) {
        config_read_join(p, path, "health_check");
        if (pl->reverse)
            return config_read_fail(rd, p, "does not apply to reverse pools: agents dial in");
        if ((rc = parse_health_check(rd, hc, p, &pl->health_check)))
            return rc;
        /* Checks run on plain sockets of their own (proxy/health.c): a
         * DRPC call in plaintext to a TLS upstream would fail every time
         * and take a healthy endpoint out. A TCP connect check works. */
        if (pl->health_check.rpc && pl->tls.enabled) {
            char q[PATH_LEN];
            config_read_join(q, p, "rpc");
            return config_read_fail(rd, q,
                                    "is not supported with \"tls\" yet: health checks do not "
                                    "speak TLS; leave rpc out for a TCP connect check");
        }
    }

#define POOL_KEY_READ(key, type, min, max, def, scope)                                             \
    if ((rc = read_##type(rd, v, path, #key, min, max, def, &pl->key)))                            \
        return rc;
    CONFIG_POOL_KEYS(POOL_KEY_READ)
#undef POOL_KEY_READ
    if (pl->min_idle > pl->max_conns) {
        config_read_join(p, path, "min_idle");
        return config_read_fail(rd, p, "must not exceed max_conns (%u)", pl->max_conns);
    }
    if (pl->reverse) {
        /* Settings about dialling would be silently ignored: refuse them. */
#define POOL_KEY_REFUSE(key, type, min, max, def, scope)                                           \
    if (CONFIG_POOL_DIAL_ONLY_##scope && json_object_get(v, #key)) {                               \
        config_read_join(p, path, #key);                                                           \
        return config_read_fail(rd, p, "does not apply to reverse pools: agents dial in");         \
    }
        CONFIG_POOL_KEYS(POOL_KEY_REFUSE)
#undef POOL_KEY_REFUSE
    } else {
        /* And settings about agents on a dialled pool. */
#define POOL_KEY_REFUSE(key, type, min, max, def, scope)                                           \
    if (CONFIG_POOL_AGENT_ONLY_##scope && json_object_get(v, #key)) {                              \
        config_read_join(p, path, #key);                                                           \
        return config_read_fail(rd, p, "only applies to reverse pools (with \"accept\")");         \
    }
        CONFIG_POOL_KEYS(POOL_KEY_REFUSE)
#undef POOL_KEY_REFUSE
    }
    if (pl->backoff_base_ms > pl->backoff_max_ms) {
        config_read_join(p, path, "backoff_base_ms");
        return config_read_fail(rd, p, "must not exceed backoff_max_ms (%llu)",
                                (unsigned long long)pl->backoff_max_ms);
    }
    return 0;
}

static int parse_pools(struct config_reader *rd, const json_t *root, struct config *cfg)
{
    const json_t *pools = json_object_get(root, "pools");
    if (!pools)
        return config_read_missing(rd, "", "pools");
    if (!json_is_array(pools))
        return config_read_fail(rd, "pools", "must be an array, not %s",
                                config_read_type_name(pools));
    if (json_array_size(pools) == 0)
        return config_read_fail(rd, "pools", "must list at least one pool");
    cfg->pools = calloc(json_array_size(pools), sizeof(*cfg->pools));
    if (!cfg->pools)
        return UV_ENOMEM;
    for (size_t i = 0; i < json_array_size(pools); i++) {
        char p[PATH_LEN];
        config_read_join_index(p, "pools", i);
        cfg->n_pools++;
        int rc = parse_pool(rd, json_array_get(pools, i), p, &cfg->pools[i]);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->pools[j].name, cfg->pools[i].name) == 0) {
                char np[PATH_LEN];
                config_read_join(np, p, "name");
                return config_read_fail(rd, np, "duplicate pool name \"%s\" (also pools[%zu])",
                                        cfg->pools[i].name, j);
            }
    }
    return 0;
}

/* ---- admin, access log, top level ------------------------------------------ */

static int parse_admin(struct config_reader *rd, const json_t *root, struct config_admin *a)
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
    if (v) {
        if (!json_is_object(v))
            return config_read_fail(
                rd, path,
                "must be an object, not %s (\"admin\": {\"enabled\": false} turns the "
                "admin API off)",
                config_read_type_name(v));
        if ((rc = config_read_keys(rd, v, path, keys)) ||
            (rc = config_read_bool(rd, v, path, "enabled", true, &a->enabled)) ||
            (rc = config_read_addr(rd, v, path, "address", false, true, &a->addr)) ||
            (rc = config_read_string(rd, v, path, "token", false, &a->token)) ||
            (rc = config_read_bool(rd, v, path, "allow_insecure", false, &a->allow_insecure)) ||
            (rc = config_read_bool(rd, v, path, "show_metadata_values", false,
                                   &a->show_metadata_values)) ||
            (rc = config_read_u64(rd, v, path, "request_timeout_ms", 100, CONFIG_READ_DAY_MS, 10000,
                                  &a->request_timeout_ms)))
            return rc;
    }
    if (!a->addr.text) {
        const char *why;
        rd->admin_default_addr = true;
        if ((rc = config_addr_parse("127.0.0.1:9901", &a->addr, &why)))
            return rc;
    }
    if (a->enabled && !config_addr_is_loopback(&a->addr) && !a->token && !a->allow_insecure)
        return config_read_fail(
            rd, "admin.address",
            "%s is not a loopback address: set admin.token, or admin.allow_insecure "
            "to expose the admin API without one",
            a->addr.text);
    return 0;
}

static int parse_access_log(struct config_reader *rd, const json_t *root,
                            struct config_access_log *al)
{
    static const char *const keys[] = {"path", "format", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    const json_t *v = json_object_get(root, "access_log");
    if (!v || json_is_null(v))
        return 0;
    int rc, format = 0;
    if ((rc = config_read_object(rd, v, "access_log")) ||
        (rc = config_read_keys(rd, v, "access_log", keys)) ||
        (rc = config_read_string(rd, v, "access_log", "path", true, &al->path)) ||
        (rc = config_read_choice(rd, v, "access_log", "format", formats, 0, &format)))
        return rc;
    al->enabled = true;
    al->format = (enum config_log_format)format;
    return 0;
}

/* A socket the sidecar listens on, with the JSON path that configured it. */
static const struct config_addr *listen_addr(const struct config *cfg, size_t k, char *path)
{
    char item[PATH_LEN];
    if (k < cfg->n_listeners) {
        config_read_join_index(item, "listeners", k);
        config_read_join(path, item, "address");
        return &cfg->listeners[k].addr;
    }
    k -= cfg->n_listeners;
    if (k < cfg->n_pools) {
        if (!cfg->pools[k].reverse)
            return NULL;
        config_read_join_index(item, "pools", k);
        config_read_join(path, item, "accept");
        return &cfg->pools[k].accept;
    }
    if (!cfg->admin.enabled)
        return NULL;
    snprintf(path, PATH_LEN, "admin.address");
    return &cfg->admin.addr;
}

/* Fails when two sockets the sidecar listens on would be the same one. */
static int check_listen_addresses(struct config_reader *rd, const struct config *cfg)
{
    size_t n = cfg->n_listeners + cfg->n_pools + 1;
    for (size_t i = 1; i < n; i++) {
        char pi[PATH_LEN], pj[PATH_LEN];
        const struct config_addr *a = listen_addr(cfg, i, pi);
        for (size_t j = 0; a && j < i; j++) {
            const struct config_addr *b = listen_addr(cfg, j, pj);
            if (!b || !config_addr_conflict(a, b))
                continue;
            if (a == &cfg->admin.addr && rd->admin_default_addr)
                return config_read_fail(rd, pi,
                                        "the default admin address %s is already used by %s: set "
                                        "admin.address, or admin.enabled to false",
                                        a->text, pj);
            if (strcmp(a->text, b->text) == 0)
                return config_read_fail(rd, pi, "%s is already used by %s", a->text, pj);
            return config_read_fail(rd, pi, "%s overlaps %s of %s", a->text, b->text, pj);
        }
    }
    return 0;
}

/* "metrics": {"max_rpcs": N}; absent or null means the defaults. */
static int parse_metrics(struct config_reader *rd, const json_t *root, struct config *cfg)
{
    static const char *const keys[] = {"max_rpcs", NULL};
    const json_t *v = json_object_get(root, "metrics");
    cfg->metrics_max_rpcs = CONFIG_METRICS_MAX_RPCS;
    if (!v || json_is_null(v))
        return 0;
    int rc;
    if ((rc = config_read_object(rd, v, "metrics")) ||
        (rc = config_read_keys(rd, v, "metrics", keys)) ||
        (rc = config_read_u32(rd, v, "metrics", "max_rpcs", 0, CONFIG_METRICS_MAX_RPCS_LIMIT,
                              CONFIG_METRICS_MAX_RPCS, &cfg->metrics_max_rpcs)))
        return rc;
    return 0;
}

static int parse_root(struct config_reader *rd, const json_t *root, struct config *cfg)
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
                                       "max_buffered_bytes",
                                       "request_start_timeout_ms",
                                       "request_idle_timeout_ms",
                                       "busy_poll_us",
                                       "metrics",
                                       NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    int rc;
    if (!json_is_object(root))
        return config_read_fail(rd, "", "the config must be a JSON object, not %s",
                                config_read_type_name(root));
    int level = CONFIG_LOG_INFO;
    if ((rc = config_read_keys(rd, root, "", keys)) ||
        (rc = config_read_choice(rd, root, "", "log_level", levels, CONFIG_LOG_INFO, &level)) ||
        (rc =
             config_read_u32(rd, root, "", "max_clients", 0, 10000000, 10000, &cfg->max_clients)) ||
        (rc = config_read_u64(rd, root, "", "shutdown_grace_ms", 0, CONFIG_READ_DAY_MS, 10000,
                              &cfg->shutdown_grace_ms)) ||
        (rc = config_read_u64(rd, root, "", "max_message_size", 1024, 256ULL << 20, 4ULL << 20,
                              &cfg->max_message_size)) ||
        (rc = config_read_u64(rd, root, "", "max_metadata_size", 64, 4ULL << 20, 64ULL << 10,
                              &cfg->max_metadata_size)) ||
        (rc = config_read_u64(rd, root, "", "call_buffer_bytes", 64ULL << 10, 1ULL << 30,
                              1ULL << 20, &cfg->call_buffer_bytes)) ||
        (rc = config_read_u64(rd, root, "", "max_buffered_bytes", 0, 1ULL << 40, 32ULL << 20,
                              &cfg->max_buffered_bytes)) ||
        (rc = config_read_u64(rd, root, "", "request_start_timeout_ms", 0, CONFIG_READ_DAY_MS,
                              10000, &cfg->request_start_timeout_ms)) ||
        (rc = config_read_u64(rd, root, "", "request_idle_timeout_ms", 0, CONFIG_READ_DAY_MS, 30000,
                              &cfg->request_idle_timeout_ms)) ||
        (rc = config_read_u32(rd, root, "", "busy_poll_us", 0, 10000, CONFIG_BUSY_POLL_US,
                              &cfg->busy_poll_us)))
        return rc;
    cfg->log_level = (enum config_log_level)level;
    if ((rc = parse_listeners(rd, root, cfg)) || (rc = parse_pools(rd, root, cfg)) ||
        (rc = config_tls_read_system_store(rd, cfg)) || (rc = config_routes_parse(rd, root, cfg)) ||
        (rc = parse_admin(rd, root, &cfg->admin)) ||
        (rc = parse_access_log(rd, root, &cfg->access_log)) ||
        (rc = parse_metrics(rd, root, cfg)) || (rc = check_listen_addresses(rd, cfg)))
        return rc;
    return 0;
}

/* ---- life cycle ------------------------------------------------------------ */

/* Frees everything; safe on a partly filled config (failed parse). */
static void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].name);
        config_addr_free(&cfg->listeners[i].addr);
        config_tls_server_free(&cfg->listeners[i].tls);
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
        free(p->health_check.rpc);
        free(p->health_check.request);
        config_tls_client_free(&p->tls);
        config_tls_server_free(&p->accept_tls);
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
    config_tls_file_free(&cfg->system_ca);
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

static int file_error(struct config_error *err, const char *file, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int file_error(struct config_error *err, const char *file, int rc, const char *fmt, ...)
{
    memset(err, 0, sizeof(*err));
    snprintf(err->file, sizeof(err->file), "%s", file);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, ap);
    va_end(ap);
    return rc;
}

int config_parse(const char *text, size_t len, const char *name, struct config **out,
                 struct config_error *err)
{
    return config_parse_flags(text, len, name, 0, out, err);
}

int config_parse_flags(const char *text, size_t len, const char *name, unsigned flags,
                       struct config **out, struct config_error *err)
{
    memset(err, 0, sizeof(*err));
    *out = NULL;
    /* Editors on some systems start files with a byte order mark; it is
     * invisible there, so it counts for no column either. */
    if (len >= 3 && memcmp(text, BOM, 3) == 0) {
        text += 3;
        len -= 3;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* jansson's line:column is where its lexer stopped: the last character
         * of the bad token, or where the file ended. */
        file_error(err, name, UV_EINVAL, "invalid JSON: %s", jerr.text);
        err->line = jerr.line > 0 ? jerr.line : 1;
        err->column = jerr.column > 0 ? jerr.column : 1;
        return UV_EINVAL;
    }
    struct config_reader rd = {name, text, len, err, false, flags};
    int rc = UV_ENOMEM;
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (cfg) {
        cfg->refs = 1;
        cfg->path = strdup(name);
        rc = cfg->path ? parse_root(&rd, root, cfg) : UV_ENOMEM;
    }
    json_decref(root);
    if (rc) {
        if (rc == UV_ENOMEM)
            file_error(err, name, rc, "out of memory");
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *path, struct config **out, struct config_error *err)
{
    return config_load_flags(path, 0, out, err);
}

int config_load_flags(const char *path, unsigned flags, struct config **out,
                      struct config_error *err)
{
    memset(err, 0, sizeof(*err));
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return file_error(err, path, uv_translate_sys_error(e), "cannot open: %s", strerror(e));
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE) {
                rc = file_error(err, path, UV_EFBIG, "larger than %u MiB", MAX_FILE >> 20);
                break;
            }
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                rc = file_error(err, path, UV_ENOMEM, "out of memory");
                break;
            }
            text = t;
        }
        errno = 0;
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0 && ferror(f)) {
            int e = errno ? errno : EIO;
            rc = file_error(err, path, uv_translate_sys_error(e), "cannot read: %s", strerror(e));
            break;
        }
        if (n == 0)
            break;
    }
    fclose(f);
    if (rc == 0)
        rc = config_parse_flags(text ? text : "", len, path, flags, out, err);
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
