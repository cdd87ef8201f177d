/*
 * config_routes: the "routes" section (see config_routes.h).
 *
 * Routes are first-match (proxy/router.c), so order matters and a route
 * can be dead on arrival: after a default route, or after a route whose
 * conditions all follow from its own. Both are load errors, found by
 * comparing conditions pairwise (route_covers), since a route that can
 * never be chosen is a config mistake, not a choice.
 */
#include "config/config_routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_default_route(const struct config_route *r)
{
    return !r->rpc && !r->rpc_prefix && !r->metadata_key;
}

/* True when every call r matches is matched by g too (g's conditions all
 * follow from r's): placed before r, g leaves r nothing. */
static bool route_covers(const struct config_route *g, const struct config_route *r)
{
    if (g->rpc && !(r->rpc && strcmp(g->rpc, r->rpc) == 0))
        return false;
    if (g->rpc_prefix && !(r->rpc && starts_with(r->rpc, g->rpc_prefix)) &&
        !(r->rpc_prefix && starts_with(r->rpc_prefix, g->rpc_prefix)))
        return false;
    if (g->metadata_key) {
        if (!r->metadata_key || strcmp(g->metadata_key, r->metadata_key) != 0)
            return false;
        if (g->metadata_value &&
            !(r->metadata_value && strcmp(g->metadata_value, r->metadata_value) == 0))
            return false;
    }
    return true;
}

static int parse_match(struct config_reader *rd, const json_t *m, const char *p,
                       struct config_route *r)
{
    static const char *const mkeys[] = {"rpc", "rpc_prefix", "metadata", NULL};
    int rc;
    if ((rc = config_read_object(rd, m, p)) || (rc = config_read_keys(rd, m, p, mkeys)) ||
        (rc = config_read_string(rd, m, p, "rpc", false, &r->rpc)) ||
        (rc = config_read_string(rd, m, p, "rpc_prefix", false, &r->rpc_prefix)))
        return rc;
    const json_t *md = json_object_get(m, "metadata");
    if (md) {
        static const char *const mdkeys[] = {"key", "value", NULL};
        char mp[CONFIG_POS_PATH_MAX];
        config_read_join(mp, p, "metadata");
        if ((rc = config_read_object(rd, md, mp)) || (rc = config_read_keys(rd, md, mp, mdkeys)) ||
            (rc = config_read_string(rd, md, mp, "key", true, &r->metadata_key)))
            return rc;
        const json_t *val = json_object_get(md, "value");
        if (val) {
            char vp[CONFIG_POS_PATH_MAX];
            config_read_join(vp, mp, "value");
            if (!json_is_string(val))
                return config_read_fail(rd, vp, "must be a string, not %s",
                                        config_read_type_name(val));
            if (!(r->metadata_value = strdup(json_string_value(val))))
                return UV_ENOMEM;
        }
    }
    if (is_default_route(r))
        return config_read_fail(
            rd, p,
            "must give \"rpc\", \"rpc_prefix\" or \"metadata\"; leave \"match\" out "
            "for a default route");
    if (r->rpc && r->rpc_prefix && !starts_with(r->rpc, r->rpc_prefix))
        return config_read_fail(rd, p,
                                "can never match: \"rpc\" does not start with \"rpc_prefix\"");
    return 0;
}

static int parse_add_metadata(struct config_reader *rd, const json_t *add, const char *p,
                              struct config_route *r)
{
    int rc;
    if ((rc = config_read_object(rd, add, p)))
        return rc;
    r->add_metadata = calloc(json_object_size(add) + 1, sizeof(*r->add_metadata));
    if (!r->add_metadata)
        return UV_ENOMEM;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)add, key, val)
    {
        char kp[CONFIG_POS_PATH_MAX];
        config_read_join(kp, p, key);
        if (!key[0])
            return config_read_fail_key(rd, kp, "metadata keys must not be empty");
        if (!json_is_string(val))
            return config_read_fail(rd, kp, "must be a string, not %s", config_read_type_name(val));
        struct config_metadata_pair *pair = &r->add_metadata[r->n_add_metadata++];
        pair->key = strdup(key);
        pair->value = strdup(json_string_value(val));
        if (!pair->key || !pair->value)
            return UV_ENOMEM;
    }
    return 0;
}

/* "retry": {"unanswered": bool, "max_attempts": 2..10}; without it, or
 * with unanswered false, only calls that never reached the upstream are
 * retried (proxy/retry.h). */
static int parse_retry(struct config_reader *rd, const json_t *v, const char *path,
                       struct config_route *r)
{
    static const char *const keys[] = {"unanswered", "max_attempts", NULL};
    int rc;
    if ((rc = config_read_object(rd, v, path)) || (rc = config_read_keys(rd, v, path, keys)) ||
        (rc = config_read_bool(rd, v, path, "unanswered", false, &r->retry_unanswered)) ||
        (rc = config_read_u32(rd, v, path, "max_attempts", 2, 10, 2, &r->retry_max_attempts)))
        return rc;
    r->has_retry = true;
    return 0;
}

static int parse_route(struct config_reader *rd, const json_t *v, const char *path,
                       struct config_route *r, const struct config *cfg, size_t index)
{
    static const char *const keys[] = {
        "name",  "match", "pool", "add_metadata", "call_timeout_ms", "agent_from_metadata",
        "retry", NULL};
    int rc;
    char p[CONFIG_POS_PATH_MAX];
    if ((rc = config_read_object(rd, v, path)) || (rc = config_read_keys(rd, v, path, keys)) ||
        (rc = config_read_name(rd, v, path, false, &r->name)))
        return rc;
    if (!r->name) {
        char name[32];
        snprintf(name, sizeof(name), "route%zu", index);
        if (!(r->name = strdup(name)))
            return UV_ENOMEM;
    }
    const json_t *m = json_object_get(v, "match");
    if (m) {
        config_read_join(p, path, "match");
        if ((rc = parse_match(rd, m, p, r)))
            return rc;
    }
    if ((rc = config_read_string(rd, v, path, "pool", true, &r->pool)))
        return rc;
    int pi = config_pool_index(cfg, r->pool);
    if (pi < 0) {
        config_read_join(p, path, "pool");
        return config_read_fail(rd, p, "no pool named \"%s\"", r->pool);
    }
    r->pool_index = (size_t)pi;
    const json_t *add = json_object_get(v, "add_metadata");
    if (add) {
        config_read_join(p, path, "add_metadata");
        if ((rc = parse_add_metadata(rd, add, p, r)))
            return rc;
    }
    r->has_call_timeout = json_object_get(v, "call_timeout_ms") != NULL;
    if ((rc = config_read_u64(rd, v, path, "call_timeout_ms", 0, CONFIG_READ_MONTH_MS, 0,
                              &r->call_timeout_ms)) ||
        (rc = config_read_string(rd, v, path, "agent_from_metadata", false,
                                 &r->agent_from_metadata)))
        return rc;
    const json_t *retry = json_object_get(v, "retry");
    if (retry) {
        config_read_join(p, path, "retry");
        if ((rc = parse_retry(rd, retry, p, r)))
            return rc;
    }
    if (r->agent_from_metadata && !cfg->pools[pi].reverse) {
        config_read_join(p, path, "agent_from_metadata");
        return config_read_fail(
            rd, p, "only applies to routes to a reverse pool; \"%s\" dials endpoints", r->pool);
    }
    return 0;
}

/* Route i against the routes before it: unique name, and reachable. */
static int check_route(struct config_reader *rd, const struct config *cfg, size_t i,
                       const char *path)
{
    const struct config_route *r = &cfg->routes[i];
    for (size_t j = 0; j < i; j++) {
        const struct config_route *g = &cfg->routes[j];
        if (is_default_route(g))
            return config_read_fail(
                rd, path, "unreachable: routes[%zu] has no \"match\" and takes every call", j);
        if (route_covers(g, r))
            return config_read_fail(
                rd, path, "unreachable: routes[%zu] already takes every call it matches", j);
        if (strcmp(g->name, r->name) == 0) {
            char np[CONFIG_POS_PATH_MAX];
            config_read_join(np, path, "name");
            return config_read_fail(rd, np, "duplicate route name \"%s\" (also routes[%zu])",
                                    r->name, j);
        }
    }
    return 0;
}

int config_routes_parse(struct config_reader *rd, const json_t *root, struct config *cfg)
{
    const json_t *rs = json_object_get(root, "routes");
    if (!rs) {
        /* One pool needs no routing: a default route to it, named "default". */
        if (cfg->n_pools != 1)
            return config_read_fail(rd, "routes", "required when there is more than one pool");
        cfg->routes = calloc(1, sizeof(*cfg->routes));
        if (!cfg->routes)
            return UV_ENOMEM;
        cfg->n_routes = 1;
        if (!(cfg->routes[0].pool = strdup(cfg->pools[0].name)) ||
            !(cfg->routes[0].name = strdup("default")))
            return UV_ENOMEM;
        return 0;
    }
    if (!json_is_array(rs))
        return config_read_fail(rd, "routes", "must be an array, not %s",
                                config_read_type_name(rs));
    if (json_array_size(rs) == 0)
        return config_read_fail(rd, "routes", "must list at least one route");
    cfg->routes = calloc(json_array_size(rs), sizeof(*cfg->routes));
    if (!cfg->routes)
        return UV_ENOMEM;
    for (size_t i = 0; i < json_array_size(rs); i++) {
        char p[CONFIG_POS_PATH_MAX];
        config_read_join_index(p, "routes", i);
        cfg->n_routes++;
        int rc;
        if ((rc = parse_route(rd, json_array_get(rs, i), p, &cfg->routes[i], cfg, i)) ||
            (rc = check_route(rd, cfg, i, p)))
            return rc;
    }
    return 0;
}
