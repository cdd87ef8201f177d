/*
 * Unit tests for the admin API without sockets: request parsing (valid,
 * sliced, pipelined, malformed, over every cap), routing decisions
 * (404, 405 + Allow, 401, 403, handlers) on a real process built by
 * sidecar_start (a unix-socket listener, pools that never dial), the token
 * check, percent-decoding, Prometheus label escaping and number format,
 * and JSON strings from non-UTF-8 bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/http.h"
#include "admin/metrics.h"
#include "admin/routes.h"
#include "admin/views.h"
#include "config/config.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

/* ---- parsing ------------------------------------------------------------------ */

static enum admin_http_result feed_str(struct admin_http *h, const char *s, size_t *used)
{
    return admin_http_feed(h, s, strlen(s), used);
}

/* Parses one request from s; asserts the outcome and returns the error status (0 if none). */
static int parse_one(struct admin_http *h, const char *s, size_t len, enum admin_http_result want)
{
    size_t used;
    admin_http_init(h);
    enum admin_http_result r = admin_http_feed(h, s, len, &used);
    assert_int_equal(r, want);
    return h->error_status;
}

static void test_simple_request(void **state)
{
    (void)state;
    struct admin_http h;
    admin_http_init(&h);
    size_t used;
    const char *req = "GET /calls?pool=a HTTP/1.1\r\nHost: x:1\r\nAuthorization: Bearer t\r\n"
                      "X-Other: y\r\n\r\n";
    assert_int_equal(feed_str(&h, req, &used), ADMIN_HTTP_REQUEST);
    assert_int_equal(used, strlen(req));
    assert_string_equal(h.method, "GET");
    assert_string_equal(h.url, "/calls?pool=a");
    assert_string_equal(admin_http_header(&h, ADMIN_HDR_AUTHORIZATION), "Bearer t");
    assert_string_equal(admin_http_header(&h, ADMIN_HDR_HOST), "x:1");
    assert_null(admin_http_header(&h, ADMIN_HDR_ORIGIN));
    assert_true(h.keep_alive);
    /* a completed request stays complete until admin_http_next */
    assert_int_equal(admin_http_feed(&h, "GET", 3, &used), ADMIN_HTTP_REQUEST);
    assert_int_equal(used, 0);
}

static void test_sliced_and_pipelined(void **state)
{
    (void)state;
    struct admin_http h;
    admin_http_init(&h);
    const char *two = "GET /a HTTP/1.1\r\nAuthoriZation: Bear"
                      "er xyz\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
                      "GET /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    size_t len = strlen(two), pos = 0, used;
    /* one byte at a time until the first request completes */
    enum admin_http_result r = ADMIN_HTTP_NEED_MORE;
    while (r == ADMIN_HTTP_NEED_MORE && pos < len) {
        r = admin_http_feed(&h, two + pos, 1, &used);
        pos += used;
    }
    assert_int_equal(r, ADMIN_HTTP_REQUEST);
    assert_string_equal(h.url, "/a");
    assert_string_equal(admin_http_header(&h, ADMIN_HDR_AUTHORIZATION), "Bearer xyz");
    admin_http_next(&h);
    assert_null(admin_http_header(&h, ADMIN_HDR_AUTHORIZATION));
    /* the other two arrive in one read */
    r = admin_http_feed(&h, two + pos, len - pos, &used);
    assert_int_equal(r, ADMIN_HTTP_REQUEST);
    assert_string_equal(h.method, "POST");
    assert_string_equal(h.url, "/b");
    assert_int_equal(h.body_len, 2);
    pos += used;
    admin_http_next(&h);
    r = admin_http_feed(&h, two + pos, len - pos, &used);
    assert_int_equal(r, ADMIN_HTTP_REQUEST);
    assert_string_equal(h.url, "/c");
    assert_int_equal(h.body_len, 3);
    assert_int_equal(pos + used, len);
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    struct admin_http h;
    const char *r10 = "GET / HTTP/1.0\r\n\r\n";
    parse_one(&h, r10, strlen(r10), ADMIN_HTTP_REQUEST);
    assert_false(h.keep_alive);
    const char *r10ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    parse_one(&h, r10ka, strlen(r10ka), ADMIN_HTTP_REQUEST);
    assert_true(h.keep_alive);
    const char *close = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    parse_one(&h, close, strlen(close), ADMIN_HTTP_REQUEST);
    assert_false(h.keep_alive);
}

static void test_upgrade_is_ignored(void **state)
{
    (void)state;
    struct admin_http h;
    admin_http_init(&h);
    size_t used;
    const char *s = "GET /a HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                    "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    assert_int_equal(feed_str(&h, s, &used), ADMIN_HTTP_REQUEST);
    assert_string_equal(h.url, "/a");
    admin_http_next(&h);
    size_t used2;
    assert_int_equal(admin_http_feed(&h, s + used, strlen(s) - used, &used2), ADMIN_HTTP_REQUEST);
    assert_string_equal(h.url, "/b");
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "NOT HTTP\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    };
    static const size_t lens[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 30};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct admin_http h;
        size_t len = lens[i] ? lens[i] : strlen(bad[i]), used;
        admin_http_init(&h);
        enum admin_http_result r = admin_http_feed(&h, bad[i], len, &used);
        if (r != ADMIN_HTTP_ERROR || h.error_status != 400)
            fail_msg("case %zu: result %d status %d", i, r, h.error_status);
        /* nothing more is parsed after an error */
        used = 99;
        assert_int_equal(admin_http_feed(&h, "GET / HTTP/1.1\r\n\r\n", 18, &used),
                         ADMIN_HTTP_ERROR);
        assert_int_equal(used, 0);
    }
}

static void test_caps(void **state)
{
    (void)state;
    struct admin_http h;
    char big[2 * ADMIN_HTTP_MAX_HEADERS];

    /* all headers together over the cap, each one small */
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    for (int i = 0; n < ADMIN_HTTP_MAX_HEADERS * 3 / 2; i++)
        n += snprintf(big + n, sizeof(big) - (size_t)n, "X-%d: %040d\r\n", i, 0);
    n += snprintf(big + n, sizeof(big) - (size_t)n, "\r\n");
    assert_int_equal(parse_one(&h, big, (size_t)n, ADMIN_HTTP_ERROR), 431);

    /* one kept header value over its cap */
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nAuthorization: Bearer %0*d\r\n\r\n",
             ADMIN_HTTP_MAX_VALUE, 0);
    assert_int_equal(parse_one(&h, big, strlen(big), ADMIN_HTTP_ERROR), 431);

    /* a body declared too large is refused before it arrives */
    const char *cl = "POST /drain HTTP/1.1\r\nContent-Length: 999999\r\n\r\n";
    assert_int_equal(parse_one(&h, cl, strlen(cl), ADMIN_HTTP_ERROR), 413);

    /* the request target */
    char url[ADMIN_HTTP_MAX_URL + 64];
    snprintf(url, sizeof(url), "GET /%0*d HTTP/1.1\r\n\r\n", ADMIN_HTTP_MAX_URL, 0);
    assert_int_equal(parse_one(&h, url, strlen(url), ADMIN_HTTP_ERROR), 414);

    /* exactly at the caps is fine */
    snprintf(url, sizeof(url), "GET /%0*d HTTP/1.1\r\n\r\n", ADMIN_HTTP_MAX_URL - 1, 0);
    parse_one(&h, url, strlen(url), ADMIN_HTTP_REQUEST);
    assert_int_equal(h.url_len, ADMIN_HTTP_MAX_URL);
}

static void test_chunked_body_cap(void **state)
{
    (void)state;
    /* a chunked body is only known too large as it arrives */
    struct admin_http h;
    admin_http_init(&h);
    size_t used;
    char head[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(admin_http_feed(&h, head, strlen(head), &used), ADMIN_HTTP_NEED_MORE);
    char chunk[64 + 4096];
    int n = snprintf(chunk, sizeof(chunk), "1000\r\n");
    memset(chunk + n, 'a', 4096);
    memcpy(chunk + n + 4096, "\r\n", 2);
    size_t clen = (size_t)n + 4096 + 2;
    enum admin_http_result r = ADMIN_HTTP_NEED_MORE;
    for (int i = 0; i < 4 && r == ADMIN_HTTP_NEED_MORE; i++)
        r = admin_http_feed(&h, chunk, clen, &used);
    assert_int_equal(r, ADMIN_HTTP_ERROR);
    assert_int_equal(h.error_status, 413);
}

/* ---- routing ------------------------------------------------------------------ */

struct fixture {
    uv_loop_t loop;
    struct sidecar sc[1];
};

/* The listener is a unix socket of this process (no port to collide on);
 * no pool has min_idle, so nothing dials. The admin server is not started:
 * the routes are called directly. */
static const char *const CONFIG =
    "{\"listeners\":[{\"address\":\"unix:%s\"}],"
    "\"admin\":{\"address\":\"127.0.0.1:2\",\"token\":\"s3cret\"},"
    "\"pools\":[{\"name\":\"p\",\"endpoints\":[\"127.0.0.1:3\"],\"max_conns\":2},"
    "{\"name\":\"we\\\"ird\\\\name\",\"endpoints\":[\"127.0.0.1:4\"]}],"
    "\"routes\":[{\"pool\":\"p\"}]}";

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/tmp/test_admin_http.%d.sock", (int)uv_os_getpid());
    int n = snprintf(text, sizeof(text), CONFIG, path);
    struct config *cfg = NULL;
    struct config_error cerr;
    memset(&cerr, 0, sizeof(cerr));
    assert_int_equal(config_parse(text, (size_t)n, "test", &cfg, &cerr), 0);
    cfg->log_level = CONFIG_LOG_ERROR; /* POST /drain logs */
    char err[256] = "";
    int rc = sidecar_start(f->sc, &f->loop, cfg, err, sizeof(err));
    if (rc)
        fail_msg("sidecar_start: %s", err);
    f->sc->started_wall_ms = 1795000000000ull; /* 2026-11-18T11:06:40.000Z */
    *state = f;
    return 0;
}

/* The real graceful shutdown: nothing is connected, so it stops at once. */
static int teardown(void **state)
{
    struct fixture *f = *state;
    sidecar_shutdown(f->sc, "test over");
    uv_run(&f->loop, UV_RUN_DEFAULT);
    sidecar_free(f->sc);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* Parses raw (one request) and routes it; the caller frees resp. */
static int route(struct fixture *f, const char *raw, struct admin_response *resp)
{
    struct admin_http h;
    size_t used;
    admin_http_init(&h);
    assert_int_equal(admin_http_feed(&h, raw, strlen(raw), &used), ADMIN_HTTP_REQUEST);
    memset(resp, 0, sizeof(*resp));
    struct admin_route_ctx ctx = {f->sc, NULL, 1};
    admin_route(&ctx, &h, resp);
    return resp->status;
}

/* Routes raw and checks the status; returns the body parsed as JSON (caller decrefs). */
static json_t *route_json(struct fixture *f, const char *raw, int want_status)
{
    struct admin_response resp;
    int status = route(f, raw, &resp);
    if (status != want_status)
        fail_msg("%s-> %d, wanted %d: %.*s", raw, status, want_status, (int)resp.body.len,
                 (const char *)resp.body.data);
    assert_string_equal(resp.content_type, "application/json");
    json_error_t err;
    json_t *doc = json_loadb((const char *)resp.body.data, resp.body.len, 0, &err);
    assert_non_null(doc);
    admin_response_free(&resp);
    return doc;
}

static void test_not_found_and_method(void **state)
{
    struct fixture *f = *state;
    struct admin_response resp;
    static const char *const missing[] = {
        "GET /nope HTTP/1.1\r\n\r\n",        "GET /pools/ HTTP/1.1\r\n\r\n",
        "GET /pools/p/ HTTP/1.1\r\n\r\n",    "GET /pools/p/x HTTP/1.1\r\n\r\n",
        "GET //pools HTTP/1.1\r\n\r\n",      "GET /calls/1 HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",        "GET /pools/%zz HTTP/1.1\r\n\r\n",
        "GET /pools/a%00b HTTP/1.1\r\n\r\n", "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        int status = route(f, missing[i], &resp);
        if (status != 404)
            fail_msg("%s -> %d", missing[i], status);
        admin_response_free(&resp);
    }

    assert_int_equal(route(f, "DELETE /pools HTTP/1.1\r\n\r\n", &resp), 405);
    assert_string_equal(resp.headers, "Allow: GET, HEAD\r\n");
    admin_response_free(&resp);
    /* GET never mutates: a POST-only path says so */
    assert_int_equal(route(f, "GET /drain HTTP/1.1\r\n\r\n", &resp), 405);
    assert_string_equal(resp.headers, "Allow: POST\r\n");
    admin_response_free(&resp);
    assert_int_equal(route(f, "GET /pools/p/drain HTTP/1.1\r\n\r\n", &resp), 405);
    assert_string_equal(resp.headers, "Allow: POST\r\n");
    admin_response_free(&resp);
    assert_int_equal(route(f, "GET /calls/7/cancel HTTP/1.1\r\n\r\n", &resp), 405);
    admin_response_free(&resp);
    assert_int_equal(route(f, "POST /pools/p HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &resp), 405);
    assert_string_equal(resp.headers, "Allow: GET, HEAD\r\n");
    admin_response_free(&resp);
}

/* A DNS-rebinding page reaches the loopback port as same-origin, under its own Host name. */
static void test_host_must_be_loopback(void **state)
{
    struct fixture *f = *state;
    static const char *const allowed[] = {
        "localhost:2", "LocalHost", "localhost.:2", "app.localhost:2",
        "127.0.0.1:2", "127.1.2.3", "[::1]:2",      "[::1]",
    };
    static const char *const refused[] = {
        "attacker.example:2",
        "127.0.0.1.evil.example",
        "localhost.evil:2",
        "evil-localhost",
        "[::2]:2",
        "[::1",
        "10.0.0.1:2",
        "",
    };
    char raw[256];
    struct admin_response resp;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        snprintf(raw, sizeof(raw), "GET /pools HTTP/1.1\r\nHost: %s\r\n\r\n", allowed[i]);
        if (route(f, raw, &resp) != 200)
            fail_msg("Host: %s -> %d", allowed[i], resp.status);
        admin_response_free(&resp);
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(raw, sizeof(raw), "GET /pools HTTP/1.1\r\nHost: %s\r\n\r\n", refused[i]);
        if (route(f, raw, &resp) != 403)
            fail_msg("Host: %s -> %d", refused[i], resp.status);
        admin_response_free(&resp);
    }
    /* same-origin by the page's own name, with the token: still refused */
    assert_int_equal(route(f,
                           "POST /drain HTTP/1.1\r\nHost: attacker.example:2\r\n"
                           "Origin: http://attacker.example:2\r\nAuthorization: Bearer s3cret\r\n"
                           "\r\n",
                           &resp),
                     403);
    admin_response_free(&resp);
    /* HTTP/1.0 tools may send no Host at all */
    json_decref(route_json(f, "GET /pools HTTP/1.0\r\n\r\n", 200));
}

static void test_token_and_origin(void **state)
{
    struct fixture *f = *state;
    struct admin_response resp;
    /* reads need no token */
    json_decref(route_json(f, "GET /pools HTTP/1.1\r\n\r\n", 200));
    /* mutations do */
    assert_int_equal(route(f, "POST /pools/p/drain HTTP/1.1\r\n\r\n", &resp), 401);
    assert_non_null(strstr(resp.headers, "WWW-Authenticate: Bearer"));
    admin_response_free(&resp);
    assert_int_equal(
        route(f, "POST /pools/p/drain HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n", &resp),
        401);
    admin_response_free(&resp);
    assert_int_equal(
        route(f, "POST /pools/p/drain HTTP/1.1\r\nAuthorization: Basic s3cret\r\n\r\n", &resp),
        401);
    admin_response_free(&resp);
    /* the token is checked before the pool is looked up: no probing for names */
    assert_int_equal(route(f, "POST /pools/zz/drain HTTP/1.1\r\n\r\n", &resp), 401);
    admin_response_free(&resp);
    /* a browser page of another origin is refused even with the right token */
    assert_int_equal(route(f,
                           "POST /pools/p/drain HTTP/1.1\r\nHost: 127.0.0.1:2\r\n"
                           "Origin: http://evil.example\r\nAuthorization: Bearer s3cret\r\n\r\n",
                           &resp),
                     403);
    admin_response_free(&resp);
    assert_int_equal(route(f,
                           "POST /pools/p/drain HTTP/1.1\r\nOrigin: null\r\n"
                           "Authorization: Bearer s3cret\r\n\r\n",
                           &resp),
                     403);
    admin_response_free(&resp);
    /* same origin, right token: done */
    json_t *doc = route_json(f,
                             "POST /pools/p/drain HTTP/1.1\r\nHost: 127.0.0.1:2\r\n"
                             "Origin: http://127.0.0.1:2\r\nAuthorization: bearer s3cret\r\n\r\n",
                             200);
    assert_true(json_is_true(json_object_get(doc, "draining")));
    json_decref(doc);
    assert_true(f->sc->pools[0]->draining);
    doc =
        route_json(f, "POST /pools/p/resume HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n", 200);
    assert_true(json_is_false(json_object_get(doc, "draining")));
    json_decref(doc);
    assert_false(f->sc->pools[0]->draining);
    json_decref(route_json(
        f, "POST /pools/zz/drain HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n", 404));
}

static void test_handlers(void **state)
{
    struct fixture *f = *state;
    json_t *doc = route_json(f, "GET /healthz HTTP/1.1\r\n\r\n", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "ok");
    json_decref(doc);
    /* the listener is open and no pool asks for min_idle */
    doc = route_json(f, "GET /readyz HTTP/1.1\r\n\r\n", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "ready");
    json_decref(doc);

    doc = route_json(f, "GET /pools/we%22ird%5Cname HTTP/1.1\r\n\r\n", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), "we\"ird\\name");
    json_t *conns = json_object_get(doc, "conns");
    assert_int_equal(json_integer_value(json_object_get(conns, "max")), 16);
    assert_int_equal(json_integer_value(json_object_get(conns, "total")), 0);
    json_decref(doc);

    /* absolute-form targets are the same resource */
    doc = route_json(f, "GET http://127.0.0.1:2/pools/p HTTP/1.1\r\n\r\n", 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "conns"), "max")), 2);
    json_decref(doc);

    doc = route_json(f, "GET /calls?pool=p&min_age_ms=5&limit=3 HTTP/1.1\r\n\r\n", 200);
    assert_int_equal(json_array_size(json_object_get(doc, "calls")), 0);
    assert_int_equal(json_integer_value(json_object_get(doc, "total")), 0);
    json_decref(doc);
    json_decref(route_json(f, "GET /calls?min_age_ms=abc HTTP/1.1\r\n\r\n", 400));
    json_decref(route_json(f, "GET /calls?min_age_ms=-1 HTTP/1.1\r\n\r\n", 400));
    json_decref(route_json(f, "GET /calls?limit=0 HTTP/1.1\r\n\r\n", 400));
    json_decref(route_json(f, "GET /calls?pool=%zz HTTP/1.1\r\n\r\n", 400));
    json_decref(route_json(f, "GET /clients?limit=99999999 HTTP/1.1\r\n\r\n", 400));

    const char *auth = "Authorization: Bearer s3cret\r\n\r\n";
    char req[256];
    snprintf(req, sizeof(req), "POST /calls/12/cancel HTTP/1.1\r\n%s", auth);
    json_decref(route_json(f, req, 404));
    snprintf(req, sizeof(req), "POST /calls/1x/cancel HTTP/1.1\r\n%s", auth);
    json_decref(route_json(f, req, 400));
    snprintf(req, sizeof(req), "POST /calls/99999999999999999999999/cancel HTTP/1.1\r\n%s", auth);
    json_decref(route_json(f, req, 400));
    snprintf(req, sizeof(req), "POST /reload HTTP/1.1\r\n%s", auth);
    json_decref(route_json(f, req, 503)); /* no admin server in this test */

    doc = route_json(f, "GET /config HTTP/1.1\r\n\r\n", 200);
    json_t *admin = json_object_get(json_object_get(doc, "config"), "admin");
    assert_string_equal(json_string_value(json_object_get(admin, "token")), "<redacted>");
    json_decref(doc);

    doc = route_json(f, "GET /stats HTTP/1.1\r\n\r\n", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(doc, "started_at")),
                        "2026-11-18T11:06:40.000Z");
    json_decref(doc);

    struct admin_response resp;
    assert_int_equal(route(f, "HEAD / HTTP/1.1\r\n\r\n", &resp), 200);
    assert_string_equal(resp.content_type, "text/html; charset=utf-8");
    assert_non_null(strstr(resp.headers, "Content-Security-Policy: default-src 'none'"));
    admin_response_free(&resp);

    /* last: POST /drain starts the real graceful shutdown */
    snprintf(req, sizeof(req), "POST /drain HTTP/1.1\r\n%s", auth);
    doc = route_json(f, req, 202);
    assert_true(json_is_false(json_object_get(doc, "already_draining")));
    json_decref(doc);
    assert_int_equal(f->sc->state, SIDECAR_DRAINING);
    doc = route_json(f, "GET /readyz HTTP/1.1\r\n\r\n", 503);
    assert_string_equal(json_string_value(json_object_get(doc, "reason")), "draining");
    json_decref(doc);
    doc = route_json(f, req, 202);
    assert_true(json_is_true(json_object_get(doc, "already_draining")));
    json_decref(doc);
    /* the drain closed the listener: running again, still not ready */
    f->sc->state = SIDECAR_RUNNING;
    doc = route_json(f, "GET /readyz HTTP/1.1\r\n\r\n", 503);
    assert_string_equal(json_string_value(json_object_get(doc, "reason")), "no listener is open");
    json_decref(doc);
}

static void test_metrics_text(void **state)
{
    struct fixture *f = *state;
    struct admin_response resp;
    assert_int_equal(route(f, "GET /metrics HTTP/1.1\r\n\r\n", &resp), 200);
    assert_string_equal(resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_int_equal(buf_append(&resp.body, "", 1), 0);
    const char *text = (const char *)resp.body.data;
    assert_non_null(strstr(text, "# HELP drpc_sidecar_pool_connections_idle "));
    assert_non_null(strstr(text, "# TYPE drpc_sidecar_pool_calls_total counter\n"));
    assert_non_null(strstr(text, "drpc_sidecar_pool_connections_max{pool=\"p\"} 2\n"));
    /* the odd pool name comes out escaped */
    assert_non_null(strstr(text, "{pool=\"we\\\"ird\\\\name\"}"));
    assert_non_null(
        strstr(text, "drpc_sidecar_wait_duration_seconds_bucket{pool=\"p\",le=\"0.00005\"} 0\n"));
    assert_non_null(
        strstr(text, "drpc_sidecar_call_duration_seconds_bucket{pool=\"p\",le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(text, "# TYPE process_open_fds gauge\n"));
    admin_response_free(&resp);
}

/* ---- small functions ------------------------------------------------------------ */

static void test_tokens(void **state)
{
    (void)state;
    assert_true(admin_token_ok("Bearer abc", "abc"));
    assert_true(admin_token_ok("bearer abc", "abc"));
    assert_false(admin_token_ok("Bearer abcd", "abc"));
    assert_false(admin_token_ok("Bearer ab", "abc"));
    assert_false(admin_token_ok("Bearer ", "abc"));
    assert_false(admin_token_ok("Basic abc", "abc"));
    assert_false(admin_token_ok("", "abc"));
    assert_false(admin_token_ok(NULL, "abc"));
    assert_false(admin_token_ok("Bearer abc\0", "abcx"));
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(metrics_escape_label(&b, "a\"b\\c\nd"), 0);
    assert_int_equal(b.len, strlen("a\\\"b\\\\c\\nd"));
    assert_memory_equal(b.data, "a\\\"b\\\\c\\nd", b.len);
    buf_reset(&b);
    assert_int_equal(metrics_escape_label(&b, ""), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(metrics_escape_label(&b, "plain"), 0);
    assert_memory_equal(b.data, "plain", 5);
    buf_free(&b);

    char s[32];
    metrics_format_seconds(50, s, sizeof(s));
    assert_string_equal(s, "0.00005");
    metrics_format_seconds(2500000, s, sizeof(s));
    assert_string_equal(s, "2.5");
    metrics_format_seconds(60000000, s, sizeof(s));
    assert_string_equal(s, "60");
    metrics_format_seconds(0, s, sizeof(s));
    assert_string_equal(s, "0");
}

static void test_unescape_and_query(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(admin_http_unescape("a%2Fb+c", 7, true, out, sizeof(out)), 5);
    assert_string_equal(out, "a/b c");
    assert_int_equal(admin_http_unescape("a+c", 3, false, out, sizeof(out)), 3);
    assert_string_equal(out, "a+c");
    assert_int_equal(admin_http_unescape("%4", 2, false, out, sizeof(out)), -1);
    assert_int_equal(admin_http_unescape("%g0", 3, false, out, sizeof(out)), -1);
    assert_int_equal(admin_http_unescape("%00", 3, false, out, sizeof(out)), -1);
    assert_int_equal(admin_http_unescape("0123456789abcdef", 16, false, out, sizeof(out)), -1);
    assert_int_equal(admin_http_query("pool=a%20b&min_age_ms=5", "pool", out, sizeof(out)), 1);
    assert_string_equal(out, "a b");
    assert_int_equal(admin_http_query("xpool=a&pool=b", "pool", out, sizeof(out)), 1);
    assert_string_equal(out, "b");
    assert_int_equal(admin_http_query("pool", "pool", out, sizeof(out)), 0);
    assert_int_equal(admin_http_query("", "pool", out, sizeof(out)), 0);
    assert_int_equal(admin_http_query("pool=%", "pool", out, sizeof(out)), -1);
}

static void test_json_strings(void **state)
{
    (void)state;
    json_t *s = views_string("/svc.A/B", 8);
    assert_string_equal(json_string_value(s), "/svc.A/B");
    json_decref(s);
    /* invalid bytes, an overlong form, a surrogate and a cut sequence become U+FFFD */
    s = views_string("a\xff"
                     "b\xc0\xaf"
                     "c\xed\xa0\x80"
                     "d\xe2\x82",
                     12);
    assert_non_null(s);
    const char *want = "a\xef\xbf\xbd"
                       "b\xef\xbf\xbd\xef\xbf\xbd"
                       "c\xef\xbf\xbd\xef\xbf\xbd"
                       "\xef\xbf\xbd"
                       "d\xef\xbf\xbd\xef\xbf\xbd";
    assert_int_equal(json_string_length(s), strlen(want));
    assert_memory_equal(json_string_value(s), want, strlen(want));
    json_decref(s);
    /* valid multi-byte text is kept as it is */
    s = views_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    assert_memory_equal(json_string_value(s), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    json_decref(s);

    char iso[40];
    views_iso8601(1795000000123ull, iso, sizeof(iso));
    assert_string_equal(iso, "2026-11-18T11:06:40.123Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_request),
        cmocka_unit_test(test_sliced_and_pipelined),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_upgrade_is_ignored),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_chunked_body_cap),
        cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_and_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_must_be_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handlers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_text, setup, teardown),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_unescape_and_query),
        cmocka_unit_test(test_json_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
