/*
 * routes: the admin dispatch table and its handlers (see routes.h).
 *
 *   request --target--> path + query --table walk--> route found?
 *     no path match ............................... 404
 *     path matches, method does not ............... 405 + Allow
 *     POST from another origin .................... 403
 *     POST without the token (when one is set) .... 401
 *     otherwise ................................... handler(ctx, arg, query)
 *
 * Handlers read the live objects through views.c / metrics.c, or call
 * the data plane's own transition functions; none keeps anything.
 */
#include "admin/routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/admin.h"
#include "admin/dashboard.h"
#include "admin/history.h"
#include "admin/metrics.h"
#include "admin/pages.h"
#include "admin/rpcs.h"
#include "admin/views.h"
#include "config/config_addr.h"
#include "proxy/call.h"
#include "proxy/inspect.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

#define ARG_MAX 256 /* a decoded {name} or {id} path segment */

struct route_req {
    const struct admin_route_ctx *ctx;
    const char *arg;   /* the decoded '*' segment, or NULL */
    const char *query; /* after '?', "" when none */
};

typedef void (*route_fn)(const struct route_req *rq, struct admin_response *resp);

struct route {
    const char *method;  /* GET routes answer HEAD too */
    const char *pattern; /* '*' stands for one non-empty path segment */
    route_fn fn;
};

void admin_response_free(struct admin_response *resp)
{
    buf_free(&resp->body);
    pages_free(resp->page);
    resp->page = NULL;
}

static void set_body(struct admin_response *resp, int status, const char *content_type,
                     const char *text, size_t len)
{
    resp->status = status;
    resp->content_type = content_type;
    buf_reset(&resp->body);
    if (buf_append(&resp->body, text, len) != 0) {
        resp->status = 500; /* an empty 500: there was no memory for more */
        resp->content_type = "text/plain; charset=utf-8";
        buf_free(&resp->body);
    }
}

/* Takes doc (NULL = out of memory) and answers it as JSON. */
static void set_json(struct admin_response *resp, int status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, ADMIN_JSON_FLAGS) : NULL;
    json_decref(doc);
    if (!text) {
        static const char oom[] = "{\"error\": \"out of memory\"}\n";
        set_body(resp, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    set_body(resp, status, "application/json", text, strlen(text));
    if (resp->status == status && buf_append(&resp->body, "\n", 1) != 0)
        resp->status = 500;
    free(text);
}

int admin_response_finish_page(struct admin_response *resp, uint64_t deadline_ns)
{
    int rc;
    do
        rc = pages_step(resp->page, deadline_ns);
    while (rc == 0 && deadline_ns == UINT64_MAX);
    if (rc < 0) {
        pages_free(resp->page);
        resp->page = NULL;
        admin_response_error(resp, 500, "out of memory");
        return 1;
    }
    if (rc == 1) {
        buf_free(&resp->body);
        pages_take_body(resp->page, &resp->body);
        pages_free(resp->page);
        resp->page = NULL;
    }
    return rc;
}

void admin_response_error(struct admin_response *resp, int status, const char *text)
{
    set_json(resp, status, json_pack("{s:s}", "error", text));
}

bool admin_token_ok(const char *authorization, const char *token)
{
    static const char prefix[] = "Bearer ";
    if (!authorization || strncasecmp(authorization, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *given = authorization + sizeof(prefix) - 1;
    size_t gl = strlen(given), tl = strlen(token);
    /* Every byte of the token is compared whatever the input, so the time
     * taken says nothing about how much of a guess was right. */
    unsigned diff = gl != tl;
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* Parses a whole decimal number ("0".."18446744073709551615"); false otherwise. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s || strspn(s, "0123456789") != strlen(s))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE)
        return false;
    *out = v;
    return true;
}

/* ?limit=N for the list views: 1..VIEWS_MAX_LIMIT, default VIEWS_DEFAULT_LIMIT. */
static bool query_limit(const struct route_req *rq, size_t *limit, struct admin_response *resp)
{
    char v[32];
    uint64_t n = VIEWS_DEFAULT_LIMIT;
    int found = admin_http_query(rq->query, "limit", v, sizeof(v));
    if (found < 0 || (found && (!parse_u64(v, &n) || n == 0 || n > VIEWS_MAX_LIMIT))) {
        char text[96];
        snprintf(text, sizeof(text), "limit must be a number from 1 to %d", VIEWS_MAX_LIMIT);
        admin_response_error(resp, 400, text);
        return false;
    }
    *limit = (size_t)n;
    return true;
}

/* ---- handlers -------------------------------------------------------------- */

static void h_dashboard(const struct route_req *rq, struct admin_response *resp)
{
    (void)rq;
    set_body(resp, 200, "text/html; charset=utf-8", dashboard_html, dashboard_html_len);
    /* The page loads nothing from anywhere; say so, so a browser enforces it. */
    snprintf(resp->headers, sizeof(resp->headers),
             "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
             "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'\r\n");
}

static void h_healthz(const struct route_req *rq, struct admin_response *resp)
{
    struct sidecar *sc = rq->ctx->sc;
    set_json(resp, 200,
             json_pack("{s:s, s:s}", "status", "ok", "state",
                       sc->state == SIDECAR_RUNNING ? "running" : "draining"));
}

static void not_ready(struct admin_response *resp, const char *reason)
{
    set_json(resp, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason", reason));
}

static void h_readyz(const struct route_req *rq, struct admin_response *resp)
{
    char reason[192];
    if (!inspect_ready(rq->ctx->sc, reason, sizeof(reason))) {
        not_ready(resp, reason);
        return;
    }
    set_json(resp, 200, json_pack("{s:s}", "status", "ready"));
}

static void h_stats(const struct route_req *rq, struct admin_response *resp)
{
    set_json(resp, 200, views_stats(rq->ctx->sc, rq->ctx->admin));
}

/* Leaves a large answer to be written a slice at a time (pages.h). */
static void set_page(const struct route_req *rq, struct admin_response *resp, enum pages_kind kind,
                     const char *content_type, const struct pages_query *q)
{
    resp->page = pages_new(rq->ctx->sc, rq->ctx->admin, kind, q);
    if (!resp->page) {
        admin_response_error(resp, 500, "out of memory");
        return;
    }
    resp->status = 200;
    resp->content_type = content_type;
}

static void h_pools(const struct route_req *rq, struct admin_response *resp)
{
    struct pages_query q = {0};
    set_page(rq, resp, PAGES_POOLS, "application/json", &q);
}

static void h_pool(const struct route_req *rq, struct admin_response *resp)
{
    const struct pool *p = sidecar_find_pool(rq->ctx->sc, rq->arg);
    if (!p) {
        admin_response_error(resp, 404, "no such pool");
        return;
    }
    set_json(resp, 200, views_pool(rq->ctx->sc, p));
}

static void set_pool_draining(const struct route_req *rq, struct admin_response *resp,
                              bool draining)
{
    struct pool *p = sidecar_find_pool(rq->ctx->sc, rq->arg);
    if (!p) {
        admin_response_error(resp, 404, "no such pool");
        return;
    }
    pool_set_draining(p, draining);
    set_json(resp, 200,
             json_pack("{s:s, s:b, s:I, s:I}", "pool", p->pc->name, "draining", p->draining,
                       "conns", (json_int_t)pool_total(p), "waiters", (json_int_t)p->n_waiters));
}

static void h_pool_drain(const struct route_req *rq, struct admin_response *resp)
{
    set_pool_draining(rq, resp, true);
}

static void h_pool_resume(const struct route_req *rq, struct admin_response *resp)
{
    set_pool_draining(rq, resp, false);
}

static void h_calls(const struct route_req *rq, struct admin_response *resp)
{
    char pool[ARG_MAX], age[32];
    uint64_t min_age = 0;
    size_t limit;
    int has_pool = admin_http_query(rq->query, "pool", pool, sizeof(pool));
    int has_age = admin_http_query(rq->query, "min_age_ms", age, sizeof(age));
    if (has_pool < 0) {
        admin_response_error(resp, 400, "pool: bad percent-encoding or too long");
        return;
    }
    if (has_age < 0 || (has_age && !parse_u64(age, &min_age))) {
        admin_response_error(resp, 400, "min_age_ms must be a whole number");
        return;
    }
    if (!query_limit(rq, &limit, resp))
        return;
    struct pages_query q = {.limit = limit, .min_age_ms = min_age, .has_pool = has_pool > 0};
    if (has_pool)
        snprintf(q.pool, sizeof(q.pool), "%s", pool);
    set_page(rq, resp, PAGES_CALLS, "application/json", &q);
}

static void h_call_cancel(const struct route_req *rq, struct admin_response *resp)
{
    uint64_t id;
    if (!parse_u64(rq->arg, &id)) {
        admin_response_error(resp, 400, "call id must be a whole number");
        return;
    }
    struct call *c = inspect_find_call(rq->ctx->sc, id);
    if (!c) {
        admin_response_error(resp, 404, "no such call in flight");
        return;
    }
    /* Capture what the answer shows: the cancel may free the call. */
    json_t *doc = json_pack("{s:I, s:b, s:o, s:s}", "id", (json_int_t)id, "cancelled", 1, "rpc",
                            views_string(c->rpc, c->rpc_len), "state", call_state_name(c->state));
    inspect_cancel_call(c);
    set_json(resp, 200, doc);
}

static void h_clients(const struct route_req *rq, struct admin_response *resp)
{
    size_t limit;
    if (query_limit(rq, &limit, resp)) {
        struct pages_query q = {.limit = limit};
        set_page(rq, resp, PAGES_CLIENTS, "application/json", &q);
    }
}

static void h_metrics(const struct route_req *rq, struct admin_response *resp)
{
    struct pages_query q = {0};
    set_page(rq, resp, PAGES_METRICS, "text/plain; version=0.0.4; charset=utf-8", &q);
}

static void h_rpcs(const struct route_req *rq, struct admin_response *resp)
{
    struct pages_query q = {0};
    set_page(rq, resp, PAGES_RPCS, "application/json", &q);
}

/* ?seconds=N: 1..HISTORY_SECONDS, default all of them. */
static void h_history(const struct route_req *rq, struct admin_response *resp)
{
    char v[32];
    uint64_t n = HISTORY_SECONDS;
    int found = admin_http_query(rq->query, "seconds", v, sizeof(v));
    if (found < 0 || (found && (!parse_u64(v, &n) || n == 0 || n > HISTORY_SECONDS))) {
        char text[96];
        snprintf(text, sizeof(text), "seconds must be a number from 1 to %d", HISTORY_SECONDS);
        admin_response_error(resp, 400, text);
        return;
    }
    struct pages_query q = {.seconds = (unsigned)n};
    set_page(rq, resp, PAGES_HISTORY, "application/json", &q);
}

static void h_config(const struct route_req *rq, struct admin_response *resp)
{
    set_json(resp, 200, views_config(rq->ctx->sc));
}

static void h_drain(const struct route_req *rq, struct admin_response *resp)
{
    struct sidecar *sc = rq->ctx->sc;
    bool was_running = sc->state == SIDECAR_RUNNING;
    uint32_t calls = inspect_n_calls(sc);
    /* The admin server keeps answering while the calls finish: it is only
     * stopped once nothing is left (stop_everything). */
    sidecar_shutdown(sc, "POST /drain");
    set_json(resp, 202,
             json_pack("{s:s, s:b, s:I}", "status", "draining", "already_draining", !was_running,
                       "calls_in_flight", (json_int_t)calls));
}

static void h_reload(const struct route_req *rq, struct admin_response *resp)
{
    if (!rq->ctx->admin) {
        admin_response_error(resp, 503, "reload is not available here");
        return;
    }
    int rc = admin_reload(rq->ctx->admin, rq->ctx->conn_id);
    if (rc == UV_EBUSY)
        admin_response_error(resp, 409, "a reload is already running");
    else if (rc)
        admin_response_error(resp, 503, uv_strerror(rc));
    else
        resp->pending = true;
}

/* The whole admin API. admin/README.md's table lists the same rows. */
static const struct route routes[] = {
    {"GET", "/", h_dashboard},
    {"GET", "/healthz", h_healthz},
    {"GET", "/readyz", h_readyz},
    {"GET", "/stats", h_stats},
    {"GET", "/pools", h_pools},
    {"GET", "/pools/*", h_pool},
    {"POST", "/pools/*/drain", h_pool_drain},
    {"POST", "/pools/*/resume", h_pool_resume},
    {"GET", "/calls", h_calls},
    {"POST", "/calls/*/cancel", h_call_cancel},
    {"GET", "/clients", h_clients},
    {"GET", "/metrics", h_metrics},
    {"GET", "/rpcs", h_rpcs},
    {"GET", "/history", h_history},
    {"GET", "/config", h_config},
    {"POST", "/drain", h_drain},
    {"POST", "/reload", h_reload},
};

/* Matches path against pattern; the decoded '*' segment goes to arg. */
static bool match(const char *pattern, const char *path, char *arg, size_t arg_size)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '*') {
            size_t n = strcspn(s, "/");
            if (n == 0 || admin_http_unescape(s, n, false, arg, arg_size) <= 0)
                return false;
            s += n;
            p++;
            continue;
        }
        if (*p++ != *s++)
            return false;
    }
    return *p == '\0' && *s == '\0';
}

/*
 * A POST a browser sent from a page of another origin (the classic
 * <form action="http://127.0.0.1:9901/drain" method="post">) carries an
 * Origin header that is not this server's. Tools (curl, scripts) send no
 * Origin at all.
 */
static bool cross_origin(const struct admin_http *h)
{
    const char *origin = admin_http_header(h, ADMIN_HDR_ORIGIN);
    if (!origin)
        return false;
    const char *host = admin_http_header(h, ADMIN_HDR_HOST);
    static const char scheme[] = "http://";
    return !host || strncasecmp(origin, scheme, sizeof(scheme) - 1) != 0 ||
           strcasecmp(origin + sizeof(scheme) - 1, host) != 0;
}

/*
 * Whether a Host header names this machine's loopback: localhost (and
 * *.localhost, RFC 6761), 127.0.0.0/8 or [::1], with any port. A page on
 * attacker.example whose name is re-pointed at 127.0.0.1 (DNS rebinding)
 * reaches a loopback port as same-origin, so Origin proves nothing there;
 * its Host header still says attacker.example.
 */
static bool loopback_host(const char *host)
{
    char name[256];
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof(name))
            return false;
        memcpy(name, host + 1, (size_t)(end - host - 1));
        name[end - host - 1] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    size_t len = strcspn(host, ":");
    if (len == 0 || len >= sizeof(name))
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    if (name[len - 1] == '.')
        name[--len] = '\0'; /* "localhost." is the same name */
    static const char suffix[] = ".localhost";
    if (strcasecmp(name, "localhost") == 0 ||
        (len > sizeof(suffix) - 1 && strcasecmp(name + len - (sizeof(suffix) - 1), suffix) == 0))
        return true;
    struct in_addr a4;
    return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* An admin API on a loopback TCP address answers only requests addressed
 * to a loopback name; without a Host header (HTTP/1.0 tools) it answers. */
static bool foreign_host(const struct admin_route_ctx *ctx, const struct admin_http *h,
                         const char *authority)
{
    const struct config_addr *bound = &ctx->sc->cfg->admin.addr;
    if (bound->kind != CONFIG_ADDR_TCP ||
        !(config_addr_is_loopback(bound) || strcmp(bound->host, "localhost") == 0))
        return false;
    /* An absolute-form target names the host itself, and a server must
     * take it over the Host header (RFC 9112 3.2.2): judge that one. */
    const char *host = authority ? authority : admin_http_header(h, ADMIN_HDR_HOST);
    return host && !loopback_host(host);
}

/* Splits a request target into path and query (both into buf); an
 * absolute-form target's host goes into authority (else it is NULL). */
static bool split_target(const char *url, char *buf, size_t size, const char **path,
                         const char **query, char *authority, size_t authority_size,
                         bool *has_authority)
{
    *has_authority = false;
    /* absolute-form (RFC 9112 3.2.2): "http://host:port/path" */
    if (strncasecmp(url, "http://", 7) == 0) {
        const char *start = url + 7;
        url = strchr(start, '/');
        size_t len = url ? (size_t)(url - start) : strlen(start);
        len = strcspn(start, "?#") < len ? strcspn(start, "?#") : len;
        if (len >= authority_size)
            return false;
        memcpy(authority, start, len);
        authority[len] = '\0';
        *has_authority = true;
        if (!url)
            url = "/";
    }
    if (url[0] != '/')
        return false; /* "*" (OPTIONS) or authority-form (CONNECT) */
    snprintf(buf, size, "%s", url);
    buf[strcspn(buf, "#")] = '\0';
    char *q = strchr(buf, '?');
    if (q)
        *q++ = '\0';
    *path = buf;
    *query = q ? q : "";
    return true;
}

static void add_allow(char *allow, size_t size, const char *method)
{
    const char *add = strcmp(method, "GET") == 0 ? "GET, HEAD" : method;
    if (strstr(allow, add))
        return;
    size_t len = strlen(allow);
    snprintf(allow + len, size - len, "%s%s", len ? ", " : "", add);
}

void admin_route(const struct admin_route_ctx *ctx, const struct admin_http *h,
                 struct admin_response *resp)
{
    char target[ADMIN_HTTP_MAX_URL + 1];
    char authority[ADMIN_HTTP_MAX_URL + 1];
    bool has_authority;
    const char *path, *query;
    if (!split_target(h->url, target, sizeof(target), &path, &query, authority, sizeof(authority),
                      &has_authority)) {
        admin_response_error(resp, 404, "not found");
        return;
    }
    if (foreign_host(ctx, h, has_authority ? authority : NULL)) {
        admin_response_error(resp, 403,
                             "the Host header does not name a loopback address: refused, "
                             "as this admin API listens on loopback (DNS rebinding)");
        return;
    }
    bool is_head = strcmp(h->method, "HEAD") == 0;
    char arg[ARG_MAX];
    char allow[64] = "";
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        if (!match(r->pattern, path, arg, sizeof(arg)))
            continue;
        bool is_get = strcmp(r->method, "GET") == 0;
        if (strcmp(h->method, r->method) != 0 && !(is_head && is_get)) {
            add_allow(allow, sizeof(allow), r->method);
            continue;
        }
        if (!is_get) {
            const char *token = ctx->sc->cfg->admin.token;
            if (cross_origin(h)) {
                admin_response_error(resp, 403, "cross-origin request refused");
                return;
            }
            if (token && !admin_token_ok(admin_http_header(h, ADMIN_HDR_AUTHORIZATION), token)) {
                admin_response_error(resp, 401, "missing or wrong bearer token");
                snprintf(resp->headers, sizeof(resp->headers),
                         "WWW-Authenticate: Bearer realm=\"drpc-sidecar\"\r\n");
                return;
            }
        }
        struct route_req rq = {ctx, strchr(r->pattern, '*') ? arg : NULL, query};
        r->fn(&rq, resp);
        if (resp->page && !ctx->admin)
            admin_response_finish_page(resp, UINT64_MAX);
        return;
    }
    if (allow[0]) {
        admin_response_error(resp, 405, "method not allowed");
        snprintf(resp->headers, sizeof(resp->headers), "Allow: %s\r\n", allow);
        return;
    }
    admin_response_error(resp, 404, "not found");
}
