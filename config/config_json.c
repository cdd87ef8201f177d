/*
 * config_json: a snapshot back to JSON (config_to_json, see config.h), for
 * GET /config. Every key the loader knows, with its effective value, under
 * the same names and in the order of config/README.md; the result loads
 * again to an equal snapshot (the tests and the fuzzer check that).
 */
#include "config/config.h"

#include "config/config_tls.h"

#include <stdio.h>

struct out {
    bool ok; /* false once any allocation failed */
};

static void put(struct out *o, json_t *obj, const char *key, json_t *v)
{
    if (json_object_set_new(obj, key, v) != 0) /* also fails on obj or v NULL */
        o->ok = false;
}

static void push(struct out *o, json_t *arr, json_t *v)
{
    if (json_array_append_new(arr, v) != 0)
        o->ok = false;
}

static json_t *u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static json_t *addr(const struct config_addr *a)
{
    return json_string(a->text ? a->text : "");
}

static json_t *listener_json(struct out *o, const struct config_listener *l)
{
    json_t *j = json_object();
    put(o, j, "name", json_string(l->name));
    put(o, j, "address", addr(&l->addr));
    put(o, j, "header", json_boolean(l->accept_header));
    put(o, j, "max_clients", u64(l->max_clients));
    if (l->addr.kind == CONFIG_ADDR_UNIX) {
        char mode[8];
        snprintf(mode, sizeof(mode), "%04o", l->unix_mode);
        put(o, j, "mode", json_string(mode));
    }
    put(o, j, "reuse_port", json_boolean(l->reuse_port));
    put(o, j, "client_idle_timeout_ms", u64(l->client_idle_timeout_ms));
    if (l->tls.enabled)
        put(o, j, "tls", config_tls_server_json(&l->tls));
    return j;
}

/* A pool key's JSON value, by its CONFIG_POOL_KEYS type. */
#define POOL_JSON_U32(v)     u64(v)
#define POOL_JSON_U64(v)     u64(v)
#define POOL_JSON_BOOL(v)    json_boolean(v)
#define POOL_JSON_BALANCE(v) json_string(config_balance_names[v])
#define POOL_JSON_CANCEL(v)  json_string(config_cancel_names[v])

static json_t *pool_json(struct out *o, const struct config_pool *p)
{
    json_t *j = json_object();
    put(o, j, "name", json_string(p->name));
    if (p->reverse) {
        put(o, j, "accept", addr(&p->accept));
        if (p->identify_rpc)
            put(o, j, "identify", json_pack("{s:s}", "rpc", p->identify_rpc));
        if (p->accept_tls.enabled)
            put(o, j, "tls", config_tls_server_json(&p->accept_tls));
    } else {
        json_t *eps = json_array();
        for (size_t i = 0; i < p->n_endpoints; i++)
            push(o, eps, addr(&p->endpoints[i]));
        put(o, j, "endpoints", eps);
        if (p->tls.enabled)
            put(o, j, "tls", config_tls_client_json(&p->tls));
        const struct config_health_check *hc = &p->health_check;
        if (hc->enabled) {
            json_t *h = json_object();
            put(o, h, "interval_ms", u64(hc->interval_ms));
            put(o, h, "timeout_ms", u64(hc->timeout_ms));
            if (hc->rpc) {
                put(o, h, "rpc", json_string(hc->rpc));
                put(o, h, "request", json_string(hc->request));
            }
            put(o, h, "healthy_threshold", u64(hc->healthy_threshold));
            put(o, h, "unhealthy_threshold", u64(hc->unhealthy_threshold));
            put(o, j, "health_check", h);
        }
    }
    /* The keys of both kinds of pool (and of reverse pools only), then
     * (dialled pools only) the rest. */
    for (int dial = 0; dial <= !p->reverse; dial++) {
#define POOL_KEY_PUT(key, type, min, max, def, scope)                                              \
    if (CONFIG_POOL_DIAL_ONLY_##scope == dial && (p->reverse || !CONFIG_POOL_AGENT_ONLY_##scope))  \
        put(o, j, #key, POOL_JSON_##type(p->key));
        CONFIG_POOL_KEYS(POOL_KEY_PUT)
#undef POOL_KEY_PUT
    }
    return j;
}

static json_t *route_json(struct out *o, const struct config_route *r)
{
    json_t *j = json_object();
    put(o, j, "name", json_string(r->name ? r->name : ""));
    if (r->rpc || r->rpc_prefix || r->metadata_key) {
        json_t *m = json_object();
        if (r->rpc)
            put(o, m, "rpc", json_string(r->rpc));
        if (r->rpc_prefix)
            put(o, m, "rpc_prefix", json_string(r->rpc_prefix));
        if (r->metadata_key) {
            json_t *md = json_object();
            put(o, md, "key", json_string(r->metadata_key));
            if (r->metadata_value)
                put(o, md, "value", json_string(r->metadata_value));
            put(o, m, "metadata", md);
        }
        put(o, j, "match", m);
    }
    put(o, j, "pool", json_string(r->pool));
    if (r->n_add_metadata) {
        json_t *add = json_object();
        for (size_t i = 0; i < r->n_add_metadata; i++)
            put(o, add, r->add_metadata[i].key, json_string(r->add_metadata[i].value));
        put(o, j, "add_metadata", add);
    }
    if (r->has_call_timeout)
        put(o, j, "call_timeout_ms", u64(r->call_timeout_ms));
    if (r->agent_from_metadata)
        put(o, j, "agent_from_metadata", json_string(r->agent_from_metadata));
    if (r->has_retry) {
        json_t *retry = json_object();
        put(o, retry, "unanswered", json_boolean(r->retry_unanswered));
        put(o, retry, "max_attempts", u64(r->retry_max_attempts));
        put(o, j, "retry", retry);
    }
    return j;
}

static json_t *admin_json(struct out *o, const struct config_admin *a, bool redact)
{
    json_t *j = json_object();
    put(o, j, "enabled", json_boolean(a->enabled));
    put(o, j, "address", addr(&a->addr));
    if (a->token)
        put(o, j, "token", json_string(redact ? "<redacted>" : a->token));
    put(o, j, "allow_insecure", json_boolean(a->allow_insecure));
    put(o, j, "show_metadata_values", json_boolean(a->show_metadata_values));
    put(o, j, "request_timeout_ms", u64(a->request_timeout_ms));
    return j;
}

json_t *config_pool_to_json(const struct config_pool *p)
{
    struct out o = {true};
    json_t *j = pool_json(&o, p);
    if (!o.ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *config_to_json(const struct config *cfg, bool redact)
{
    struct out o = {true};
    json_t *root = json_object();

    json_t *ls = json_array();
    for (size_t i = 0; i < cfg->n_listeners; i++)
        push(&o, ls, listener_json(&o, &cfg->listeners[i]));
    put(&o, root, "listeners", ls);
    put(&o, root, "admin", admin_json(&o, &cfg->admin, redact));
    json_t *ps = json_array();
    for (size_t i = 0; i < cfg->n_pools; i++)
        push(&o, ps, pool_json(&o, &cfg->pools[i]));
    put(&o, root, "pools", ps);
    json_t *rs = json_array();
    for (size_t i = 0; i < cfg->n_routes; i++)
        push(&o, rs, route_json(&o, &cfg->routes[i]));
    put(&o, root, "routes", rs);

    /* null, not absent: the effective value is "off". */
    const struct config_access_log *al = &cfg->access_log;
    put(&o, root, "access_log",
        al->enabled ? json_pack("{s:s, s:s}", "path", al->path, "format",
                                al->format == CONFIG_LOG_FORMAT_JSON ? "json" : "text")
                    : json_null());
    put(&o, root, "log_level", json_string(config_log_level_name(cfg->log_level)));
    put(&o, root, "max_clients", u64(cfg->max_clients));
    put(&o, root, "shutdown_grace_ms", u64(cfg->shutdown_grace_ms));
    put(&o, root, "max_message_size", u64(cfg->max_message_size));
    put(&o, root, "max_metadata_size", u64(cfg->max_metadata_size));
    put(&o, root, "call_buffer_bytes", u64(cfg->call_buffer_bytes));
    put(&o, root, "max_buffered_bytes", u64(cfg->max_buffered_bytes));
    put(&o, root, "request_start_timeout_ms", u64(cfg->request_start_timeout_ms));
    put(&o, root, "request_idle_timeout_ms", u64(cfg->request_idle_timeout_ms));
    put(&o, root, "busy_poll_us", u64(cfg->busy_poll_us));
    put(&o, root, "metrics", json_pack("{s:o}", "max_rpcs", u64(cfg->metrics_max_rpcs)));
    if (!o.ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}
