/* routes: admin dispatch table and handlers (see routes.h). */
#include "admin/routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/dashboard.h"
#include "admin/metrics.h"
#include "admin/views.h"
#include "proxy/call.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

typedef void (*route_fn)(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                         struct admin_response *resp);

struct route {
    const char *method;
    const char *prefix; /* exact path, or the part before {arg} */
    const char *suffix; /* after {arg}; NULL = no argument */
    route_fn fn;
};

const char *admin_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 422:
        return "Unprocessable Entity";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

void admin_response_free(struct admin_response *resp)
{
    buf_free(&resp->body);
}

static void set_json(struct admin_response *resp, int status, json_t *doc)
{
    resp->status = status;
    resp->content_type = "application/json";
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
    json_decref(doc);
    buf_reset(&resp->body);
    if (!text || buf_append(&resp->body, text, strlen(text)) != 0 ||
        buf_append(&resp->body, "\n", 1) != 0) {
        resp->status = 500;
        buf_reset(&resp->body);
    }
    free(text);
}

void admin_response_error(struct admin_response *resp, int status, const char *text)
{
    set_json(resp, status, json_pack("{s:s}", "error", text));
}

bool admin_token_ok(const char *authorization, const char *token)
{
    const char *prefix = "Bearer ";
    size_t plen = strlen(prefix);
    if (strncmp(authorization, prefix, plen) != 0)
        return false;
    const char *given = authorization + plen;
    size_t gl = strlen(given), tl = strlen(token);
    /* Compare every byte whatever the lengths, so timing says nothing. */
    unsigned diff = (unsigned)(gl ^ tl);
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* ---- handlers ----------------------------------------------------------- */

static void h_dashboard(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                        struct admin_response *resp)
{
    (void)ctx, (void)arg, (void)query;
    resp->status = 200;
    resp->content_type = "text/html; charset=utf-8";
    if (buf_append(&resp->body, dashboard_html, strlen(dashboard_html)) != 0)
        admin_response_error(resp, 500, "out of memory");
}

static void h_healthz(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                      struct admin_response *resp)
{
    (void)arg, (void)query;
    set_json(resp, 200,
             json_pack("{s:s, s:s}", "status", "ok", "state",
                       ctx->sc->state == SIDECAR_RUNNING ? "running" : "draining"));
}

static void h_readyz(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                     struct admin_response *resp)
{
    (void)arg, (void)query;
    struct sidecar *sc = ctx->sc;
    if (sc->state != SIDECAR_RUNNING) {
        set_json(resp, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason", "draining"));
        return;
    }
    if (sc->n_listeners == 0) {
        set_json(resp, 503,
                 json_pack("{s:s, s:s}", "status", "not_ready", "reason", "no listener open"));
        return;
    }
    for (size_t i = 0; i < sc->n_pools; i++) {
        const struct pool *p = sc->pools[i];
        if (p->pc->min_idle && p->n_idle + p->n_busy < p->pc->min_idle) {
            char reason[256];
            snprintf(reason, sizeof(reason), "pool %s has %u of min_idle %u connections",
                     p->pc->name, p->n_idle + p->n_busy, p->pc->min_idle);
            set_json(resp, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason", reason));
            return;
        }
    }
    set_json(resp, 200, json_pack("{s:s}", "status", "ready"));
}

static void h_pools(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                    struct admin_response *resp)
{
    (void)arg, (void)query;
    set_json(resp, 200, views_pools(ctx->sc, NULL));
}

static void h_pool(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                   struct admin_response *resp)
{
    (void)query;
    json_t *doc = views_pools(ctx->sc, arg);
    if (!doc)
        admin_response_error(resp, 404, "no such pool");
    else
        set_json(resp, 200, doc);
}

static struct pool *find_pool(struct sidecar *sc, const char *name)
{
    for (size_t i = 0; i < sc->n_pools; i++)
        if (strcmp(sc->pools[i]->pc->name, name) == 0)
            return sc->pools[i];
    return NULL;
}

static void pool_drain(const struct admin_route_ctx *ctx, const char *arg,
                       struct admin_response *resp, bool drain)
{
    struct pool *p = find_pool(ctx->sc, arg);
    if (!p) {
        admin_response_error(resp, 404, "no such pool");
        return;
    }
    pool_set_draining(p, drain);
    set_json(resp, 200, json_pack("{s:s, s:b}", "pool", arg, "draining", drain));
}

static void h_pool_drain(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                         struct admin_response *resp)
{
    (void)query;
    pool_drain(ctx, arg, resp, true);
}

static void h_pool_resume(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                          struct admin_response *resp)
{
    (void)query;
    pool_drain(ctx, arg, resp, false);
}

/* Value of key in a query string ("a=1&b=2"), percent-decoded into out. */
static bool query_get(const char *query, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t n = 0;
            for (size_t i = kl + 1; i < len && n + 1 < size; i++) {
                if (p[i] == '%' && i + 2 < len + 1 && p[i + 1] && p[i + 2]) {
                    char hex[3] = {p[i + 1], p[i + 2], 0};
                    out[n++] = (char)strtol(hex, NULL, 16);
                    i += 2;
                } else {
                    out[n++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[n] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static void h_calls(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                    struct admin_response *resp)
{
    (void)arg;
    char pool[128], age[32];
    bool has_pool = query_get(query, "pool", pool, sizeof(pool));
    uint64_t min_age = 0;
    if (query_get(query, "min_age_ms", age, sizeof(age))) {
        char *end;
        min_age = strtoull(age, &end, 10);
        if (!age[0] || *end) {
            admin_response_error(resp, 400, "min_age_ms must be a number");
            return;
        }
    }
    set_json(resp, 200, views_calls(ctx->sc, has_pool ? pool : NULL, min_age));
}

static void h_call_cancel(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                          struct admin_response *resp)
{
    (void)query;
    char *end;
    unsigned long long id = strtoull(arg, &end, 10);
    if (!arg[0] || *end) {
        admin_response_error(resp, 400, "call id must be a number");
        return;
    }
    struct sidecar *sc = ctx->sc;
    for (struct list_node *n = sc->calls.next; n != &sc->calls; n = n->next) {
        struct call *c = list_entry(n, struct call, sc_node);
        if (c->id == id) {
            call_fail(c, CALL_CAUSE_CANCELLED, "by an operator");
            set_json(resp, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "cancelled", 1));
            return;
        }
    }
    admin_response_error(resp, 404, "no such call in flight");
}

static void h_clients(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                      struct admin_response *resp)
{
    (void)arg, (void)query;
    set_json(resp, 200, views_clients(ctx->sc));
}

static void h_metrics(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                      struct admin_response *resp)
{
    (void)arg, (void)query;
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (metrics_render(ctx->sc, &resp->body) != 0)
        admin_response_error(resp, 500, "out of memory");
}

static void h_config(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                     struct admin_response *resp)
{
    (void)arg, (void)query;
    set_json(resp, 200, views_config(ctx->sc));
}

static void h_drain(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                    struct admin_response *resp)
{
    (void)arg, (void)query;
    struct sidecar *sc = ctx->sc;
    uint32_t calls = sc->n_calls;
    sidecar_shutdown(sc, "POST /drain");
    set_json(resp, 202,
             json_pack("{s:s, s:I}", "status", "draining", "calls_in_flight", (json_int_t)calls));
}

static void h_reload(const struct admin_route_ctx *ctx, const char *arg, const char *query,
                     struct admin_response *resp)
{
    (void)arg, (void)query;
    if (!ctx->admin) {
        admin_response_error(resp, 503, "reload is not available here");
        return;
    }
    int rc = admin_reload(ctx->admin, ctx->conn_id);
    if (rc == UV_EBUSY)
        admin_response_error(resp, 409, "a reload is already running");
    else if (rc)
        admin_response_error(resp, 503, uv_strerror(rc));
    else
        resp->pending = true;
}

static const struct route routes[] = {
    {"GET", "/", NULL, h_dashboard},
    {"GET", "/healthz", NULL, h_healthz},
    {"GET", "/readyz", NULL, h_readyz},
    {"GET", "/pools", NULL, h_pools},
    {"GET", "/pools/", "", h_pool},
    {"POST", "/pools/", "/drain", h_pool_drain},
    {"POST", "/pools/", "/resume", h_pool_resume},
    {"GET", "/calls", NULL, h_calls},
    {"POST", "/calls/", "/cancel", h_call_cancel},
    {"GET", "/clients", NULL, h_clients},
    {"GET", "/metrics", NULL, h_metrics},
    {"GET", "/config", NULL, h_config},
    {"POST", "/drain", NULL, h_drain},
    {"POST", "/reload", NULL, h_reload},
};

/* Matches path against a route; the percent-decoded {arg} goes to arg. */
static bool match(const struct route *r, const char *path, char *arg, size_t arg_size)
{
    if (!r->suffix)
        return strcmp(path, r->prefix) == 0;
    size_t pl = strlen(r->prefix), sl = strlen(r->suffix), len = strlen(path);
    if (len <= pl + sl || strncmp(path, r->prefix, pl) != 0 ||
        strcmp(path + len - sl, r->suffix) != 0)
        return false;
    size_t n = 0;
    for (size_t i = pl; i < len - sl; i++) {
        char c = path[i];
        if (c == '/')
            return false;
        if (c == '%' && i + 2 < len - sl + 1 && path[i + 1] && path[i + 2]) {
            char hex[3] = {path[i + 1], path[i + 2], 0};
            c = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (n + 1 >= arg_size)
            return false;
        arg[n++] = c;
    }
    arg[n] = '\0';
    return n > 0 && !memchr(arg, '\0', n);
}

void admin_route(const struct admin_route_ctx *ctx, const struct admin_http *req,
                 struct admin_response *resp)
{
    char path[ADMIN_HTTP_MAX_URL + 1];
    snprintf(path, sizeof(path), "%s", req->url);
    char *query = strchr(path, '?');
    if (query)
        *query++ = '\0';
    char arg[256];
    char allow[64] = "";
    bool is_head = strcmp(req->method, "HEAD") == 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        if (!match(r, path, arg, sizeof(arg)))
            continue;
        bool same =
            strcmp(req->method, r->method) == 0 || (is_head && strcmp(r->method, "GET") == 0);
        if (!same) {
            if (!strstr(allow, r->method)) {
                if (allow[0])
                    strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
                strncat(allow, r->method, sizeof(allow) - strlen(allow) - 1);
            }
            continue;
        }
        const char *token = ctx->sc->cfg->admin.token;
        if (strcmp(r->method, "POST") == 0 && token && !admin_token_ok(req->auth, token)) {
            admin_response_error(resp, 401, "missing or wrong bearer token");
            snprintf(resp->headers, sizeof(resp->headers),
                     "WWW-Authenticate: Bearer realm=\"drpc-sidecar\"\r\n");
            return;
        }
        r->fn(ctx, r->suffix ? arg : NULL, query ? query : "", resp);
        return;
    }
    if (allow[0]) {
        admin_response_error(resp, 405, "method not allowed");
        snprintf(resp->headers, sizeof(resp->headers), "Allow: %s\r\n", allow);
        return;
    }
    admin_response_error(resp, 404, "not found");
}
