/*
 * views: JSON for /pools, /calls, /clients, /config and /stats (see views.h).
 *
 * Every document or entry is read from the live objects (each pool's
 * endpoints and connection lists, a call, a client) at the moment it is
 * built; nothing here keeps state between requests. The lists that grow
 * with traffic are walked by admin/pages.c, a slice per loop iteration. Fields shared with
 * /metrics are set by the VIEWS_SET_* expansion of metrics_table.h rows.
 */
#include "admin/views.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "admin/admin.h"
#include "admin/metrics.h"
#include "admin/metrics_table.h"
#include "config/config.h"
#include "proxy/accesslog.h"
#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/histo.h"
#include "proxy/inspect.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/tls_ctx.h"
#include "proxy/tls_stats.h"
#include "proxy/transport_tls.h"
#include "proxy/upstream.h"
#include "proxy/utf8.h"

/* How a metrics_table.h row's json_type becomes a field (NONE: not in JSON). */
#define VIEWS_SET_INT(obj, key, v)  json_object_set_new(obj, key, json_integer((json_int_t)(v)))
#define VIEWS_SET_BOOL(obj, key, v) json_object_set_new(obj, key, json_boolean(v))
#define VIEWS_SET_NONE(obj, key, v) ((void)0)
/* An X for the scalar tables; the object it fills is VIEWS_OBJ, defined around each use. */
#define VIEWS_ROW(metric, type, json, jtype, help, value)                                          \
    VIEWS_SET_##jtype(VIEWS_OBJ, #json, value);

uint64_t views_wall_ms(const struct sidecar *sc, uint64_t loop_ms)
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

static json_t *iso(const struct sidecar *sc, uint64_t loop_ms)
{
    char buf[40];
    views_iso8601(views_wall_ms(sc, loop_ms), buf, sizeof(buf));
    return json_string(buf);
}

json_t *views_string(const char *s, size_t n)
{
    if (!s)
        return json_string("");
    json_t *j = json_stringn(s, n); /* jansson refuses invalid UTF-8 */
    if (j)
        return j;
    struct buf b = {0};
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(u + i, n - i);
        int rc = len ? buf_append(&b, u + i, len) : buf_append(&b, UTF8_REPLACEMENT, 3);
        if (rc) {
            buf_free(&b);
            return NULL;
        }
        i += len ? len : 1;
    }
    j = json_stringn(b.data ? (const char *)b.data : "", b.len);
    buf_free(&b);
    return j;
}

static json_t *percentiles(const struct histo *h)
{
    return json_pack("{s:f, s:f, s:f, s:I}", "p50", histo_quantile(h, 0.50) / 1000.0, "p90",
                     histo_quantile(h, 0.90) / 1000.0, "p99", histo_quantile(h, 0.99) / 1000.0,
                     "count", (json_int_t)h->count);
}

/* An endpoint's active health checks (proxy/health.h), or null without. */
static json_t *health_check_json(const struct sidecar *sc, const struct endpoint *e)
{
    const struct endpoint_check *k = &e->check;
    if (!e->pool->pc->health_check.enabled)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "state", json_string(health_state_name(k->state)));
    json_object_set_new(o, "last_result",
                        k->last_at ? views_string(k->last_result, strlen(k->last_result))
                                   : json_null());
    json_object_set_new(o, "last_at", k->last_at ? iso(sc, k->last_at) : json_null());
    json_object_set_new(o, "last_latency_ms", json_real((double)k->last_latency_us / 1000.0));
    json_object_set_new(o, "consecutive_successes", json_integer((json_int_t)k->successes));
    json_object_set_new(o, "consecutive_failures", json_integer((json_int_t)k->failures));
    return o;
}

static json_t *unix_time(int64_t secs)
{
    char buf[40];
    views_iso8601((uint64_t)secs * 1000, buf, sizeof(buf));
    return json_string(buf);
}

/* A TLS connection as /pools and /clients show it; NULL when it is not TLS
 * or its handshake is not done. */
static json_t *tls_conn_json(const struct wire *w)
{
    struct transport_tls_info ti;
    if (!transport_tls_get_info(w, &ti) || !ti.done)
        return NULL;
    json_t *o = json_pack("{s:s, s:s, s:b}", "version", ti.version ? ti.version : "", "cipher",
                          ti.cipher ? ti.cipher : "", "resumed", ti.resumed);
    if (!o)
        return NULL;
    json_object_set_new(o, "subject",
                        ti.subject[0] ? views_string(ti.subject, strlen(ti.subject)) : json_null());
    json_object_set_new(o, "not_after", ti.not_after ? unix_time(ti.not_after) : json_null());
    return o;
}

static const struct tls_stats *tls_stats_of(const struct sidecar *sc, const char *kind,
                                            const char *name)
{
    for (const struct tls_stats *t = sc->tls_stats; t; t = t->next)
        if (strcmp(t->kind, kind) == 0 && strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* A dialled TLS pool's endpoint: what its newest handshaken connection
 * negotiated, and how many of its handshakes resumed a session. */
static json_t *endpoint_tls_json(const struct sidecar *sc, const struct pool *p,
                                 const struct endpoint *e)
{
    json_t *o = NULL;
    const struct list_node *lists[] = {&p->busy.head, &p->idle.head};
    for (size_t l = 0; !o && l < 2; l++)
        for (const struct list_node *n = lists[l]->prev; !o && n != lists[l]; n = n->prev) {
            const struct upstream_conn *up = list_entry(n, struct upstream_conn, pool_node);
            if (up->ep == e)
                o = tls_conn_json(&up->wire);
        }
    if (!o)
        o = json_pack("{s:n, s:n, s:b, s:n, s:n}", "version", "cipher", "resumed", 0, "subject",
                      "not_after");
    const struct tls_stats *t = tls_stats_of(sc, "pool", p->pc->name);
    const struct tls_endpoint_stats *es = NULL;
    for (size_t i = 0; t && i < t->n_endpoints; i++)
        if (strcmp(t->endpoints[i].endpoint, e->addr->text) == 0)
            es = &t->endpoints[i];
    uint64_t hs = es ? es->handshakes : 0, res = es ? es->resumed : 0;
    json_object_set_new(o, "handshakes", json_integer((json_int_t)hs));
    json_object_set_new(o, "resumed_handshakes", json_integer((json_int_t)res));
    json_object_set_new(o, "resumed_share", json_real(hs ? (double)res / (double)hs : 0.0));
    return o;
}

static json_t *endpoint_json(const struct sidecar *sc, const struct endpoint *e, uint64_t now)
{
    enum endpoint_health health = endpoint_health(e, now);
    json_t *o = json_object();
    json_object_set_new(o, "address", json_string(e->addr->text));
    json_object_set_new(o, "resolved", json_string(e->resolved));
    json_t *all = json_array();
    for (size_t i = 0; i < e->n_resolved; i++)
        json_array_append_new(all, json_string(e->resolved_list[i]));
    json_object_set_new(o, "resolved_addresses", all);
    json_object_set_new(o, "health", json_string(endpoint_health_name(health)));
#define VIEWS_OBJ o
    METRICS_ENDPOINT(VIEWS_ROW)
#undef VIEWS_OBJ
    json_object_set_new(o, "ejected_until",
                        health == ENDPOINT_EJECTED ? iso(sc, e->ejected_until) : json_null());
    json_object_set_new(o, "backoff_until",
                        health == ENDPOINT_BACKOFF ? iso(sc, e->backoff_until) : json_null());
    json_object_set_new(o, "last_error",
                        e->last_error[0] ? views_string(e->last_error, strlen(e->last_error))
                                         : json_null());
    json_object_set_new(o, "health_check", health_check_json(sc, e));
    return o;
}

/*
 * Reverse pools: one entry per agent id with its connection counts. The
 * agents are gathered in a JSON object keyed by id (a hash table that keeps
 * insertion order), so thousands of agent connections cost a walk, not a
 * walk per agent.
 */
static json_t *agents_json(const struct sidecar *sc, const struct pool *p)
{
    json_t *by_id = json_object();
    const struct list_node *lists[] = {&p->idle.head, &p->busy.head, &p->connecting.head};
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        for (const struct list_node *n = lists[l]->next; n != lists[l]; n = n->next) {
            const struct upstream_conn *up = list_entry(n, struct upstream_conn, pool_node);
            /* A connection still identifying has no final id yet: it shows
             * in conns.connecting, not as an agent. */
            if (up->state != UPSTREAM_IDLE && up->state != UPSTREAM_BUSY)
                continue;
            json_t *a = json_object_get(by_id, up->agent_id);
            if (!a) {
                a = json_pack("{s:o, s:s, s:o, s:i, s:i}", "id",
                              views_string(up->agent_id, strlen(up->agent_id)), "remote", up->peer,
                              "connected_since", iso(sc, up->connected_at), "conns", 0, "busy", 0);
                if (!a || json_object_set_new(by_id, up->agent_id, a) != 0)
                    continue;
                json_t *t = tls_conn_json(&up->wire);
                json_object_set_new(a, "tls", t ? t : json_null());
            }
            json_int_t conns = json_integer_value(json_object_get(a, "conns"));
            json_int_t busy = json_integer_value(json_object_get(a, "busy"));
            json_object_set_new(a, "conns", json_integer(conns + 1));
            json_object_set_new(a, "busy", json_integer(busy + (up->state == UPSTREAM_BUSY)));
        }
    }
    json_t *arr = json_array();
    const char *key;
    json_t *a;
    json_object_foreach(by_id, key, a)
    {
        json_array_append(arr, a);
    }
    json_decref(by_id);
    return arr;
}

json_t *views_pool(const struct sidecar *sc, const struct pool *p)
{
    uint64_t now = inspect_now(sc);
    const struct config_pool *pc = p->pc;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(pc->name));
    json_object_set_new(o, "kind", json_string(pc->reverse ? "reverse" : "dialled"));
#define VIEWS_OBJ o
    METRICS_POOL_STATE(VIEWS_ROW)
#undef VIEWS_OBJ
    json_object_set_new(o, "config", config_pool_to_json(pc));
    json_t *conns = json_object();
#define VIEWS_OBJ conns
    METRICS_POOL_CONNS(VIEWS_ROW)
#undef VIEWS_OBJ
    json_object_set_new(o, "conns", conns);

    json_t *eps = json_array();
    for (size_t i = 0; i < p->n_endpoints; i++) {
        json_t *ep = endpoint_json(sc, &p->endpoints[i], now);
        json_object_set_new(
            ep, "tls", pc->tls.enabled ? endpoint_tls_json(sc, p, &p->endpoints[i]) : json_null());
        json_array_append_new(eps, ep);
    }
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
#define X(metric, json, help, member) json_object_set_new(o, #json, percentiles(&p->stats.member));
    METRICS_POOL_HISTOS(X)
#undef X
    return o;
}

static json_t *metadata_json(const struct metadata *md, bool values)
{
    json_t *keys = json_array();
    for (size_t i = 0; i < md->n; i++)
        json_array_append_new(keys, views_string(md->pairs[i].key, md->pairs[i].key_len));
    if (!values)
        return keys;
    json_t *o = json_object();
    for (size_t i = 0; i < md->n; i++) {
        const struct metadata_pair *mp = &md->pairs[i];
        json_t *k = views_string(mp->key, mp->key_len);
        size_t n = mp->value_len < VIEWS_MAX_VALUE_BYTES ? mp->value_len : VIEWS_MAX_VALUE_BYTES;
        /* A cut may split a UTF-8 sequence: views_string turns the cut sequence into U+FFFD. */
        /* By length: a key with a NUL byte reads as in metadata_keys. */
        if (k)
            json_object_setn_new(o, json_string_value(k), json_string_length(k),
                                 views_string(mp->value, n));
        json_decref(k);
    }
    json_decref(keys);
    return o;
}

json_t *views_call(const struct sidecar *sc, const struct call *c, uint64_t now)
{
    const struct client_conn *cl = c->client;
    const struct upstream_conn *up = c->up;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)c->id));
    json_object_set_new(o, "rpc", views_string(c->rpc, c->rpc_len));
    json_object_set_new(o, "state", json_string(call_state_name(c->state)));
    json_object_set_new(o, "client_id", cl ? json_integer((json_int_t)cl->id) : json_null());
    json_object_set_new(o, "client_peer", cl ? json_string(cl->peer) : json_null());
    json_object_set_new(o, "listener",
                        cl && cl->listener ? json_string(cl->listener->lc->name) : json_null());
    const char *route = c->route_index >= 0 && c->cfg ? c->cfg->routes[c->route_index].name : NULL;
    json_object_set_new(o, "route", route ? json_string(route) : json_null());
    json_object_set_new(o, "pool", c->pool ? json_string(c->pool->pc->name) : json_null());
    json_object_set_new(o, "upstream_id", up ? json_integer((json_int_t)up->id) : json_null());
    json_object_set_new(o, "endpoint",
                        !up      ? json_null()
                        : up->ep ? json_string(up->ep->addr->text)
                                 : views_string(up->agent_id, strlen(up->agent_id)));
    json_object_set_new(o, "agent",
                        c->agent ? views_string(c->agent, strlen(c->agent)) : json_null());
    json_object_set_new(o, "metadata_keys", metadata_json(&c->md, false));
    if (sc->cfg->admin.show_metadata_values)
        json_object_set_new(o, "metadata", metadata_json(&c->md, true));
    json_object_set_new(o, "started_at", iso(sc, c->started_at));
    json_object_set_new(o, "age_ms", json_integer((json_int_t)(now - c->started_at)));
    json_object_set_new(o, "messages_up", json_integer((json_int_t)c->msgs_up));
    json_object_set_new(o, "messages_down", json_integer((json_int_t)c->msgs_down));
    json_object_set_new(o, "bytes_up", json_integer((json_int_t)c->bytes_up));
    json_object_set_new(o, "bytes_down", json_integer((json_int_t)c->bytes_down));
    json_object_set_new(o, "attempt", json_integer((json_int_t)c->attempt));
    return o;
}

json_t *views_client(const struct sidecar *sc, const struct client_conn *cl, uint64_t now)
{
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)cl->id, "peer",
        cl->peer, "listener", cl->listener->lc->name, "state", client_state_name(cl->state),
        "connected_at", iso(sc, cl->connected_at), "age_ms", (json_int_t)(now - cl->connected_at),
        "calls", (json_int_t)cl->calls, "errors", (json_int_t)cl->errors, "bytes_in",
        (json_int_t)cl->wire.bytes_in, "bytes_out", (json_int_t)cl->wire.bytes_out);
    if (!o)
        return NULL;
    json_object_set_new(o, "idle_ms", json_integer((json_int_t)(now - cl->last_active)));
    json_t *t = tls_conn_json(&cl->wire);
    json_object_set_new(o, "tls", t ? t : json_null());
    json_object_set_new(o, "call_id",
                        cl->call ? json_integer((json_int_t)cl->call->id) : json_null());
    json_object_set_new(o, "call_rpc",
                        cl->call ? views_string(cl->call->rpc, cl->call->rpc_len) : json_null());
    return o;
}

json_t *views_config(const struct sidecar *sc)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", sc->config_path ? json_string(sc->config_path) : json_null());
    json_object_set_new(o, "config", config_to_json(sc->cfg, true));
    const struct reload_status *st = &sc->last_reload;
    if (st->attempted) {
        char at[40];
        views_iso8601(st->at_wall_ms, at, sizeof(at));
        json_object_set_new(
            o, "last_reload",
            json_pack("{s:b, s:s, s:o, s:I, s:I}", "ok", st->ok, "at", at, "error",
                      st->ok ? json_null() : views_string(st->error, strlen(st->error)), "applied",
                      (json_int_t)st->count, "refused", (json_int_t)st->failures));
    } else {
        json_object_set_new(o, "last_reload", json_null());
    }
    return o;
}

json_t *views_tls_certificates(const struct sidecar *sc)
{
    json_t *arr = json_array();
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    for (size_t i = 0; sc->tls && i < sc->tls->n_expiry; i++) {
        const struct tls_expiry *e = &sc->tls->expiry[i];
        json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:f}", "kind", e->kind, "name",
                              e->owner, "role", e->role, "file", e->file, "subject",
                              views_string(e->subject, strlen(e->subject)), "not_after",
                              unix_time(e->not_after), "not_after_unix", (json_int_t)e->not_after,
                              "expires_in_days", (double)(e->not_after - tv.tv_sec) / 86400.0);
        if (c)
            json_array_append_new(arr, c);
    }
    return arr;
}

json_t *views_stats(const struct sidecar *sc, const struct admin *admin)
{
    uint64_t now = inspect_now(sc);
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(SIDECAR_VERSION));
    json_object_set_new(o, "state", json_string(inspect_state_name(sc)));
    json_object_set_new(o, "started_at", iso(sc, sc->started_at));
    json_object_set_new(o, "uptime_ms", json_integer((json_int_t)(now - sc->started_at)));
#define VIEWS_OBJ o
    METRICS_PROCESS(VIEWS_ROW)
#undef VIEWS_OBJ
#define X(metric, json, help, value_us)                                                            \
    json_object_set_new(o, #json, json_integer((json_int_t)(value_us)));
    METRICS_PROCESS_SECONDS(X)
#undef X
    json_t *counters = json_object();
#define X(name, help)                                                                              \
    json_object_set_new(counters, #name, json_integer((json_int_t)sc->stats.name));
    SIDECAR_COUNTERS(X)
#undef X
    json_object_set_new(o, "counters", counters);

    json_t *listeners = json_array();
    const struct listener *l;
    for (size_t i = 0; (l = inspect_listener(sc, i)); i++) {
        json_t *lo = json_pack("{s:s, s:s, s:b}", "name", l->lc->name, "address", l->lc->addr.text,
                               "open", l->open);
        if (!lo)
            continue;
#define VIEWS_OBJ lo
        METRICS_LISTENER(VIEWS_ROW)
#undef VIEWS_OBJ
        json_array_append_new(listeners, lo);
    }
    json_object_set_new(o, "listeners", listeners);

    const struct admin_stats *a = admin_get_stats(admin);
    if (a) {
        json_t *ao = json_object();
#define VIEWS_OBJ ao
        METRICS_ADMIN(VIEWS_ROW)
#undef VIEWS_OBJ
        json_object_set_new(o, "admin", ao);
    }
    json_t *proc = json_object();
#define VIEWS_OBJ proc
    METRICS_OS(VIEWS_ROW)
#undef VIEWS_OBJ
    json_object_set_new(o, "process", proc);
    json_object_set_new(o, "tls_certificates", views_tls_certificates(sc));
    const struct fdlimit *fl = &sc->fds;
    json_object_set_new(
        o, "file_descriptors",
        json_pack("{s:I, s:I, s:I, s:o, s:i, s:b}", "limit", (json_int_t)fl->limit, "hard",
                  (json_int_t)fl->hard, "soft_at_start", (json_int_t)fl->soft_at_start, "needed",
                  fl->needed == UINT64_MAX ? json_null() : json_integer((json_int_t)fl->needed),
                  "reserved", FDLIMIT_RESERVE, "limit_too_low", fl->needed > fl->client_max));
    return o;
}
