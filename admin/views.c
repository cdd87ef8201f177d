/* views: JSON for /pools, /calls, /clients and /config (see views.h). */
#include "admin/views.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/histo.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/upstream.h"

uint64_t views_wall_ms(struct sidecar *sc, uint64_t loop_ms)
{
    return sc->started_wall_ms + (loop_ms - sc->started_at);
}

void views_iso8601(uint64_t wall_ms, char *out, size_t size)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ms % 1000));
}

static json_t *iso(struct sidecar *sc, uint64_t loop_ms)
{
    char buf[40];
    views_iso8601(views_wall_ms(sc, loop_ms), buf, sizeof(buf));
    return json_string(buf);
}

static json_t *percentiles(const struct histo *h)
{
    return json_pack("{s:f, s:f, s:f, s:I}", "p50", histo_quantile(h, 0.50) / 1000.0, "p90",
                     histo_quantile(h, 0.90) / 1000.0, "p99", histo_quantile(h, 0.99) / 1000.0,
                     "count", (json_int_t)h->count);
}

static json_t *endpoint_json(struct sidecar *sc, const struct endpoint *e, uint64_t now)
{
    enum endpoint_health health = endpoint_health(e, now);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "address", e->addr->text, "resolved",
        e->resolved[0] ? e->resolved : "", "health", endpoint_health_name(health),
        "consecutive_failures", (json_int_t)e->consecutive_failures, "open_conns",
        (json_int_t)e->n_conns, "busy_conns", (json_int_t)e->n_busy, "dials", (json_int_t)e->dials,
        "dial_failures", (json_int_t)e->dial_failures, "ejections", (json_int_t)e->ejections);
    json_object_set_new(o, "ejected_until",
                        health == ENDPOINT_EJECTED ? iso(sc, e->ejected_until) : json_null());
    json_object_set_new(o, "backoff_until",
                        health == ENDPOINT_BACKOFF ? iso(sc, e->backoff_until) : json_null());
    json_object_set_new(o, "last_error",
                        e->last_error[0] ? json_string(e->last_error) : json_null());
    return o;
}

/* Reverse pools: one entry per agent id with its connections. */
static json_t *agents_json(struct sidecar *sc, const struct pool *p)
{
    json_t *agents = json_array();
    const struct list_node *lists[] = {&p->idle, &p->busy, &p->connecting};
    for (size_t l = 0; l < 3; l++) {
        for (const struct list_node *n = lists[l]->next; n != lists[l]; n = n->next) {
            const struct upstream_conn *up = list_entry(n, struct upstream_conn, pool_node);
            json_t *found = NULL;
            size_t i;
            json_t *a;
            json_array_foreach(agents, i, a)
            {
                if (strcmp(json_string_value(json_object_get(a, "id")), up->agent_id) == 0)
                    found = a;
            }
            if (!found) {
                found =
                    json_pack("{s:s, s:s, s:o, s:i, s:i}", "id", up->agent_id, "remote", up->peer,
                              "connected_since", iso(sc, up->connected_at), "conns", 0, "busy", 0);
                json_array_append_new(agents, found);
            }
            json_object_set_new(
                found, "conns",
                json_integer(json_integer_value(json_object_get(found, "conns")) + 1));
            if (up->state == UPSTREAM_BUSY)
                json_object_set_new(
                    found, "busy",
                    json_integer(json_integer_value(json_object_get(found, "busy")) + 1));
        }
    }
    return agents;
}

static json_t *pool_json(struct sidecar *sc, const struct pool *p)
{
    uint64_t now = uv_now(sc->loop);
    const struct config_pool *pc = p->pc;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(pc->name));
    json_object_set_new(o, "kind", json_string(pc->reverse ? "reverse" : "dialled"));
    json_object_set_new(o, "draining", json_boolean(p->draining));
    json_object_set_new(
        o, "config",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:s, s:s}", "max_conns", (json_int_t)pc->max_conns,
                  "min_idle", (json_int_t)pc->min_idle, "max_waiters", (json_int_t)pc->max_waiters,
                  "wait_timeout_ms", (json_int_t)pc->wait_timeout_ms, "call_timeout_ms",
                  (json_int_t)pc->call_timeout_ms, "balance",
                  pc->balance == CONFIG_BALANCE_LEAST_BUSY ? "least_busy" : "round_robin", "cancel",
                  pc->cancel == CONFIG_CANCEL_CLOSE ? "close" : "soft"));
    json_object_set_new(o, "conns",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)pool_total(p),
                                  "idle", (json_int_t)p->n_idle, "busy", (json_int_t)p->n_busy,
                                  "connecting", (json_int_t)p->n_connecting, "max",
                                  (json_int_t)pc->max_conns));
    json_object_set_new(o, "waiters", json_integer((json_int_t)p->n_waiters));
    json_t *eps = json_array();
    for (size_t i = 0; i < p->n_endpoints; i++)
        json_array_append_new(eps, endpoint_json(sc, &p->endpoints[i], now));
    json_object_set_new(o, "endpoints", eps);
    if (pc->reverse) {
        json_object_set_new(o, "accept", json_string(pc->accept.text));
        json_object_set_new(o, "agents", agents_json(sc, p));
    }
    json_t *counters = json_object();
#define X(name, help) json_object_set_new(counters, #name, json_integer((json_int_t)p->stats.name));
    POOL_COUNTERS(X)
#undef X
    json_object_set_new(o, "counters", counters);
    json_t *errors = json_object();
    for (int c = 0; c < CALL_CAUSE_COUNT; c++)
        json_object_set_new(errors, call_cause_name(c),
                            json_integer((json_int_t)p->stats.errors[c]));
    json_object_set_new(o, "errors", errors);
    json_object_set_new(o, "wait_ms", percentiles(&p->stats.wait_us));
    json_object_set_new(o, "call_ms", percentiles(&p->stats.call_us));
    return o;
}

json_t *views_pools(struct sidecar *sc, const char *name)
{
    if (name) {
        for (size_t i = 0; i < sc->n_pools; i++)
            if (strcmp(sc->pools[i]->pc->name, name) == 0)
                return pool_json(sc, sc->pools[i]);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < sc->n_pools; i++)
        json_array_append_new(arr, pool_json(sc, sc->pools[i]));
    return json_pack("{s:o}", "pools", arr);
}

static json_t *call_json(struct sidecar *sc, const struct call *c, uint64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)c->id));
    json_object_set_new(o, "rpc", json_stringn(c->rpc ? c->rpc : "", c->rpc_len));
    json_object_set_new(o, "state", json_string(call_state_name(c->state)));
    json_object_set_new(o, "client_id",
                        c->client ? json_integer((json_int_t)c->client->id) : json_null());
    json_object_set_new(o, "client_peer", c->client ? json_string(c->client->peer) : json_null());
    json_object_set_new(o, "listener",
                        c->client && c->client->listener
                            ? json_string(c->client->listener->lc->name)
                            : json_null());
    json_object_set_new(o, "route",
                        c->route_index >= 0 && c->cfg->routes[c->route_index].name
                            ? json_string(c->cfg->routes[c->route_index].name)
                            : json_null());
    json_object_set_new(o, "pool", c->pool ? json_string(c->pool->pc->name) : json_null());
    json_object_set_new(o, "upstream_id",
                        c->up ? json_integer((json_int_t)c->up->id) : json_null());
    json_object_set_new(o, "endpoint",
                        c->up ? json_string(c->up->ep ? c->up->ep->addr->text : c->up->agent_id)
                              : json_null());
    json_t *keys = json_array();
    json_t *values = json_object();
    for (size_t i = 0; i < c->md.n; i++) {
        json_array_append_new(keys, json_stringn(c->md.pairs[i].key, c->md.pairs[i].key_len));
        json_object_setn_new_nocheck(values, c->md.pairs[i].key, c->md.pairs[i].key_len,
                                     json_stringn(c->md.pairs[i].value, c->md.pairs[i].value_len));
    }
    json_object_set_new(o, "metadata_keys", keys);
    if (sc->cfg->admin.show_metadata_values)
        json_object_set_new(o, "metadata", values);
    else
        json_decref(values);
    json_object_set_new(o, "started_at", iso(sc, c->started_at));
    json_object_set_new(o, "age_ms", json_integer((json_int_t)(now - c->started_at)));
    json_object_set_new(o, "messages_up", json_integer((json_int_t)c->msgs_up));
    json_object_set_new(o, "messages_down", json_integer((json_int_t)c->msgs_down));
    json_object_set_new(o, "bytes_up", json_integer((json_int_t)c->bytes_up));
    json_object_set_new(o, "bytes_down", json_integer((json_int_t)c->bytes_down));
    return o;
}

json_t *views_calls(struct sidecar *sc, const char *pool, uint64_t min_age_ms)
{
    uv_update_time(sc->loop);
    uint64_t now = uv_now(sc->loop);
    json_t *arr = json_array();
    /* sidecar.calls is in start order: oldest (largest age) first */
    for (const struct list_node *n = sc->calls.next; n != &sc->calls; n = n->next) {
        const struct call *c = list_entry(n, struct call, sc_node);
        if (pool && (!c->pool || strcmp(c->pool->pc->name, pool) != 0))
            continue;
        if (now - c->started_at < min_age_ms)
            continue;
        json_array_append_new(arr, call_json(sc, c, now));
    }
    return json_pack("{s:o}", "calls", arr);
}

json_t *views_clients(struct sidecar *sc)
{
    uint64_t now = uv_now(sc->loop);
    json_t *arr = json_array();
    for (const struct list_node *n = sc->clients.next; n != &sc->clients; n = n->next) {
        const struct client_conn *cl = list_entry(n, struct client_conn, sc_node);
        json_t *o =
            json_pack("{s:I, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I}", "id",
                      (json_int_t)cl->id, "peer", cl->peer, "listener", cl->listener->lc->name,
                      "state", client_state_name(cl->state), "connected_at",
                      iso(sc, cl->connected_at), "age_ms", (json_int_t)(now - cl->connected_at),
                      "calls", (json_int_t)cl->calls, "errors", (json_int_t)cl->errors, "bytes_in",
                      (json_int_t)cl->wire.bytes_in, "bytes_out", (json_int_t)cl->wire.bytes_out);
        json_object_set_new(o, "call_id",
                            cl->call ? json_integer((json_int_t)cl->call->id) : json_null());
        json_object_set_new(
            o, "call_rpc", cl->call ? json_stringn(cl->call->rpc, cl->call->rpc_len) : json_null());
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "clients", arr);
}

json_t *views_config(struct sidecar *sc)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", sc->config_path ? json_string(sc->config_path) : json_null());
    json_object_set_new(o, "config", config_to_json(sc->cfg, true));
    const struct reload_status *st = &sc->last_reload;
    if (st->attempted) {
        char at[40];
        views_iso8601(st->at_wall_ms, at, sizeof(at));
        json_object_set_new(o, "last_reload",
                            json_pack("{s:b, s:s, s:o, s:I, s:I}", "ok", st->ok, "at", at, "error",
                                      st->ok ? json_null() : json_string(st->error), "applied",
                                      (json_int_t)st->count, "refused", (json_int_t)st->failures));
    } else {
        json_object_set_new(o, "last_reload", json_null());
    }
    return o;
}
