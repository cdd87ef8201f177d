/*
 * Unit tests for the config loader (config/config.c, config_pos.c,
 * config_addr.c, config_json.c): every validation error with its exact
 * JSON path, line and column; syntax error positions; defaults; the
 * effective-config JSON, its redaction and round trip; the position finder
 * and the address syntax on their own. Run from the repository root (as
 * `make test` does): test_example_json loads config/example.json.
 *
 * Error cases mark the expected position with a backquote (`) in the text;
 * the marker is removed before parsing and its line:column (in characters)
 * is what the error must report.
 */
#include <setjmp.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "config/config.h"
#include "config/config_addr.h"
#include "config/config_pos.h"

/* The smallest valid pieces, to build cases from. */
#define L1 "\"listeners\": [{\"address\": \"127.0.0.1:1\"}]"
#define P1 "\"pools\": [{\"name\": \"p\", \"endpoints\": [\"a:1\"]}]"

/* line:column of the character at byte offset off, counted like the loader. */
static void position_of(const char *text, size_t off, int *line, int *column)
{
    *line = 1;
    *column = 1;
    size_t start = strncmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* a BOM is no column */
    for (size_t i = start; i < off; i++) {
        unsigned char b = (unsigned char)text[i];
        if (b == '\n') {
            (*line)++;
            *column = 1;
        } else if ((b & 0xC0) != 0x80) {
            (*column)++;
        }
    }
}

static struct config *parse_ok(const char *text)
{
    struct config *cfg = NULL;
    struct config_error err;
    int rc = config_parse(text, strlen(text), "t.json", &cfg, &err);
    if (rc != 0) {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        print_error("unexpected error: %s\nin: %s\n", msg, text);
    }
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    assert_int_equal(cfg->refs, 1);
    return cfg;
}

/* Parses marked (one ` at the expected position) and checks the error. */
static void expect_error_at(const char *marked, const char *path, const char *text)
{
    char buf[4096];
    const char *mark = strchr(marked, '`');
    assert_non_null(mark);
    size_t off = (size_t)(mark - marked), len = strlen(marked) - 1;
    assert_true(len < sizeof(buf));
    memcpy(buf, marked, off);
    memcpy(buf + off, mark + 1, len - off);
    buf[len] = '\0';
    int line, column;
    position_of(buf, off, &line, &column);

    struct config *cfg = (struct config *)1;
    struct config_error err;
    int rc = config_parse(buf, len, "t.json", &cfg, &err);
    char msg[1024];
    config_error_format(&err, msg, sizeof(msg));
    if (rc != UV_EINVAL || cfg != NULL || strcmp(err.path, path) != 0 || err.line != line ||
        err.column != column || !strstr(err.text, text) || strcmp(err.file, "t.json") != 0) {
        print_error("case: %s\n  want: t.json:%d:%d: %s: ...%s...\n  got:  %s (rc %d)\n", marked,
                    line, column, path, text, msg, rc);
        fail();
    }
}

/* ---- whole files ------------------------------------------------------------ */

static void test_example_json(void **state)
{
    (void)state;
    struct config *cfg = NULL;
    struct config_error err;
    int rc = config_load("config/example.json", &cfg, &err);
    if (rc) {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        print_error("%s\n", msg);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->path, "config/example.json");
    assert_int_equal(cfg->n_listeners, 2);
    assert_string_equal(cfg->listeners[0].name, "local");
    assert_int_equal(cfg->listeners[0].addr.kind, CONFIG_ADDR_TCP);
    assert_string_equal(cfg->listeners[0].addr.host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].addr.port, 7777);
    assert_string_equal(cfg->listeners[1].name, "sock");
    assert_int_equal(cfg->listeners[1].addr.kind, CONFIG_ADDR_UNIX);
    assert_string_equal(cfg->listeners[1].addr.path, "/tmp/drpc-sidecar.sock");
    assert_int_equal(cfg->listeners[1].unix_mode, 0660);
    assert_string_equal(cfg->admin.addr.text, "127.0.0.1:9901");
    assert_int_equal(cfg->n_pools, 1);
    assert_string_equal(cfg->pools[0].name, "default");
    assert_int_equal(cfg->pools[0].n_endpoints, 1);
    assert_string_equal(cfg->pools[0].endpoints[0].text, "127.0.0.1:8000");
    assert_int_equal(cfg->pools[0].max_conns, 16);
    assert_int_equal(cfg->pools[0].min_idle, 2);
    assert_int_equal(cfg->n_routes, 2);
    assert_string_equal(cfg->routes[0].rpc_prefix, "/test.Echo/");
    assert_int_equal(cfg->routes[0].n_add_metadata, 1);
    assert_string_equal(cfg->routes[0].add_metadata[0].key, "x-forwarded-by");
    assert_string_equal(cfg->routes[0].add_metadata[0].value, "drpc-sidecar");
    assert_null(cfg->routes[1].rpc_prefix);
    assert_int_equal(cfg->routes[1].pool_index, 0);
    config_unref(cfg);
}

static void test_issue_example(void **state)
{
    (void)state;
    struct config *cfg = parse_ok(
        "{\n"
        "  \"listeners\": [ { \"name\": \"local\", \"address\": \"127.0.0.1:7777\" },\n"
        "                 { \"name\": \"sock\",  \"address\": \"unix:/run/drpc-sidecar.sock\" } "
        "],\n"
        "  \"admin\":     { \"address\": \"127.0.0.1:9901\" },\n"
        "  \"pools\":     [ { \"name\": \"default\", \"endpoints\": [\"127.0.0.1:8000\"], "
        "\"max_conns\": 16 },\n"
        "                 { \"name\": \"storage\", \"endpoints\": [\"storage.internal:7777\", "
        "\"10.0.0.7:7777\"] } ],\n"
        "  \"routes\":    [ { \"match\": { \"rpc_prefix\": \"/storage.\" }, \"pool\": \"storage\" "
        "},\n"
        "                 { \"pool\": \"default\" } ]\n"
        "}\n");
    assert_string_equal(cfg->path, "t.json");
    assert_int_equal(cfg->n_pools, 2);
    assert_int_equal(cfg->pools[1].n_endpoints, 2);
    assert_string_equal(cfg->pools[1].endpoints[0].host, "storage.internal");
    assert_int_equal(cfg->pools[1].endpoints[0].port, 7777);
    assert_int_equal(cfg->routes[0].pool_index, 1);
    assert_string_equal(cfg->routes[0].name, "route0");
    assert_int_equal(cfg->routes[1].pool_index, 0);
    assert_string_equal(cfg->routes[1].name, "route1");
    assert_int_equal(config_pool_index(cfg, "storage"), 1);
    assert_int_equal(config_pool_index(cfg, "default"), 0);
    assert_int_equal(config_pool_index(cfg, "nope"), -1);
    config_unref(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{" L1 ", " P1 "}");
    assert_int_equal(cfg->log_level, CONFIG_LOG_INFO);
    assert_int_equal(cfg->max_clients, 10000);
    assert_int_equal(cfg->shutdown_grace_ms, 10000);
    assert_int_equal(cfg->max_message_size, 4 << 20);
    assert_int_equal(cfg->max_metadata_size, 64 << 10);
    assert_int_equal(cfg->call_buffer_bytes, 1 << 20);
    assert_int_equal(cfg->busy_poll_us, CONFIG_BUSY_POLL_US);
    assert_int_equal(cfg->metrics_max_rpcs, CONFIG_METRICS_MAX_RPCS);

    const struct config_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "listener0");
    assert_false(l->accept_header);
    assert_int_equal(l->max_clients, 0);
    assert_int_equal(l->unix_mode, 0660);
    assert_true(l->reuse_port);
    assert_int_equal(l->client_idle_timeout_ms, 0);

    const struct config_pool *p = &cfg->pools[0];
    assert_false(p->reverse);
    assert_null(p->identify_rpc);
    assert_int_equal(p->max_conns, 16);
    assert_int_equal(p->min_idle, 0);
    assert_int_equal(p->idle_timeout_ms, 60000);
    assert_int_equal(p->max_lifetime_ms, 0);
    assert_int_equal(p->dial_timeout_ms, 5000);
    assert_int_equal(p->max_waiters, 1024);
    assert_int_equal(p->wait_timeout_ms, 5000);
    assert_int_equal(p->call_timeout_ms, 0);
    assert_int_equal(p->balance, CONFIG_BALANCE_ROUND_ROBIN);
    assert_false(p->header);
    assert_int_equal(p->cancel, CONFIG_CANCEL_SOFT);
    assert_int_equal(p->eject_after_failures, 3);
    assert_int_equal(p->eject_ms, 10000);
    assert_int_equal(p->backoff_base_ms, 100);
    assert_int_equal(p->backoff_max_ms, 5000);

    /* One pool and no "routes": one default route to it. */
    assert_int_equal(cfg->n_routes, 1);
    const struct config_route *r = &cfg->routes[0];
    assert_string_equal(r->name, "default");
    assert_string_equal(r->pool, "p");
    assert_int_equal(r->pool_index, 0);
    assert_null(r->rpc);
    assert_null(r->rpc_prefix);
    assert_null(r->metadata_key);
    assert_int_equal(r->n_add_metadata, 0);
    assert_false(r->has_call_timeout);
    assert_null(r->agent_from_metadata);

    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.addr.text, "127.0.0.1:9901");
    assert_null(cfg->admin.token);
    assert_false(cfg->admin.allow_insecure);
    assert_false(cfg->admin.show_metadata_values);
    assert_int_equal(cfg->admin.request_timeout_ms, 10000);
    assert_false(cfg->access_log.enabled);
    assert_null(cfg->access_log.path);
    config_unref(cfg);
}

/* Every key, none at its default. */
static const char *const ALL_KEYS =
    "{\n"
    "  \"_comment\": \"annotations are ignored at every level\",\n"
    "  \"listeners\": [\n"
    "    {\"name\": \"tcp\", \"address\": \"[::1]:7000\", \"header\": true, \"max_clients\": 5,\n"
    "     \"reuse_port\": false, \"client_idle_timeout_ms\": 30000, \"_note\": 1},\n"
    "    {\"name\": \"sock\", \"address\": \"unix:/tmp/x.sock\", \"mode\": \"0600\"},\n"
    "    {\"name\": \"sock2\", \"address\": \"unix:/tmp/y.sock\", \"mode\": 384}\n"
    "  ],\n"
    "  \"admin\": {\"enabled\": true, \"address\": \"0.0.0.0:9000\", \"token\": \"s3cret\",\n"
    "            \"allow_insecure\": true, \"show_metadata_values\": true,\n"
    "            \"request_timeout_ms\": 2000},\n"
    "  \"pools\": [\n"
    "    {\"name\": \"dial\", \"endpoints\": [\"a.example:1\", \"10.0.0.1:2\", \"[fe80::1]:3\"],\n"
    "     \"max_conns\": 64, \"min_idle\": 4, \"idle_timeout_ms\": 1000, \"max_lifetime_ms\": "
    "2000,\n"
    "     \"dial_timeout_ms\": 300, \"max_waiters\": 0, \"wait_timeout_ms\": 0,\n"
    "     \"call_timeout_ms\": 9000, \"balance\": \"least_busy\", \"header\": true,\n"
    "     \"cancel\": \"close\", \"eject_after_failures\": 0, \"eject_ms\": 50,\n"
    "     \"backoff_base_ms\": 10, \"backoff_max_ms\": 20},\n"
    "    {\"name\": \"agents\", \"accept\": \"127.0.0.1:7100\", \"identify\": {\"rpc\": "
    "\"/a.B/Id\"}}\n"
    "  ],\n"
    "  \"routes\": [\n"
    "    {\"name\": \"exact\", \"match\": {\"rpc\": \"/s.B/Get\", \"rpc_prefix\": \"/s.\"},\n"
    "     \"pool\": \"dial\", \"call_timeout_ms\": 0},\n"
    "    {\"match\": {\"metadata\": {\"key\": \"agent\"}}, \"pool\": \"agents\",\n"
    "     \"agent_from_metadata\": \"agent\"},\n"
    "    {\"match\": {\"metadata\": {\"key\": \"tenant\", \"value\": \"\"}}, \"pool\": \"dial\",\n"
    "     \"add_metadata\": {\"x-a\": \"1\", \"_b\": \"2\"}, \"call_timeout_ms\": 77},\n"
    "    {\"name\": \"rest\", \"pool\": \"dial\"}\n"
    "  ],\n"
    "  \"access_log\": {\"path\": \"-\", \"format\": \"json\"},\n"
    "  \"log_level\": \"debug\", \"max_clients\": 0, \"shutdown_grace_ms\": 0,\n"
    "  \"max_message_size\": 1024, \"max_metadata_size\": 64, \"call_buffer_bytes\": 65536,\n"
    "  \"busy_poll_us\": 50\n"
    "}\n";

static void test_all_keys(void **state)
{
    (void)state;
    struct config *cfg = parse_ok(ALL_KEYS);
    assert_int_equal(cfg->log_level, CONFIG_LOG_DEBUG);
    assert_int_equal(cfg->max_clients, 0);
    assert_int_equal(cfg->shutdown_grace_ms, 0);
    assert_int_equal(cfg->max_message_size, 1024);
    assert_int_equal(cfg->max_metadata_size, 64);
    assert_int_equal(cfg->call_buffer_bytes, 65536);
    assert_int_equal(cfg->busy_poll_us, 50);

    assert_int_equal(cfg->n_listeners, 3);
    const struct config_listener *l = &cfg->listeners[0];
    assert_string_equal(l->addr.host, "::1");
    assert_int_equal(l->addr.port, 7000);
    assert_true(l->accept_header);
    assert_int_equal(l->max_clients, 5);
    assert_false(l->reuse_port);
    assert_int_equal(l->client_idle_timeout_ms, 30000);
    assert_int_equal(cfg->listeners[1].unix_mode, 0600);
    assert_int_equal(cfg->listeners[2].unix_mode, 0600); /* 384 == 0600 */

    const struct config_pool *p = &cfg->pools[0];
    assert_int_equal(p->n_endpoints, 3);
    assert_string_equal(p->endpoints[2].host, "fe80::1");
    assert_int_equal(p->max_conns, 64);
    assert_int_equal(p->min_idle, 4);
    assert_int_equal(p->idle_timeout_ms, 1000);
    assert_int_equal(p->max_lifetime_ms, 2000);
    assert_int_equal(p->dial_timeout_ms, 300);
    assert_int_equal(p->max_waiters, 0);
    assert_int_equal(p->wait_timeout_ms, 0);
    assert_int_equal(p->call_timeout_ms, 9000);
    assert_int_equal(p->balance, CONFIG_BALANCE_LEAST_BUSY);
    assert_true(p->header);
    assert_int_equal(p->cancel, CONFIG_CANCEL_CLOSE);
    assert_int_equal(p->eject_after_failures, 0);
    assert_int_equal(p->eject_ms, 50);
    assert_int_equal(p->backoff_base_ms, 10);
    assert_int_equal(p->backoff_max_ms, 20);
    const struct config_pool *rp = &cfg->pools[1];
    assert_true(rp->reverse);
    assert_int_equal(rp->n_endpoints, 0);
    assert_string_equal(rp->accept.text, "127.0.0.1:7100");
    assert_string_equal(rp->identify_rpc, "/a.B/Id");

    assert_int_equal(cfg->n_routes, 4);
    const struct config_route *r = cfg->routes;
    assert_string_equal(r[0].name, "exact");
    assert_string_equal(r[0].rpc, "/s.B/Get");
    assert_string_equal(r[0].rpc_prefix, "/s.");
    assert_true(r[0].has_call_timeout);
    assert_int_equal(r[0].call_timeout_ms, 0);
    assert_string_equal(r[1].name, "route1");
    assert_string_equal(r[1].metadata_key, "agent");
    assert_null(r[1].metadata_value);
    assert_int_equal(r[1].pool_index, 1);
    assert_string_equal(r[1].agent_from_metadata, "agent");
    assert_string_equal(r[2].metadata_value, "");
    /* add_metadata is data: its "_" keys are kept. */
    assert_int_equal(r[2].n_add_metadata, 2);
    assert_string_equal(r[2].add_metadata[1].key, "_b");
    assert_int_equal(r[2].call_timeout_ms, 77);
    assert_string_equal(r[3].name, "rest");

    assert_string_equal(cfg->admin.addr.text, "0.0.0.0:9000");
    assert_string_equal(cfg->admin.token, "s3cret");
    assert_true(cfg->admin.allow_insecure);
    assert_true(cfg->admin.show_metadata_values);
    assert_int_equal(cfg->admin.request_timeout_ms, 2000);
    assert_true(cfg->access_log.enabled);
    assert_string_equal(cfg->access_log.path, "-");
    assert_int_equal(cfg->access_log.format, CONFIG_LOG_FORMAT_JSON);
    config_unref(cfg);
}

/* to_json -> text -> parse -> to_json gives the same document. */
static void check_round_trip(const char *text)
{
    struct config *cfg = parse_ok(text);
    json_t *j1 = config_to_json(cfg, false);
    assert_non_null(j1);
    char *dumped = json_dumps(j1, JSON_INDENT(2));
    assert_non_null(dumped);
    struct config *cfg2 = parse_ok(dumped);
    json_t *j2 = config_to_json(cfg2, false);
    if (!json_equal(j1, j2)) {
        char *d2 = json_dumps(j2, JSON_INDENT(2));
        print_error("first:\n%s\nsecond:\n%s\n", dumped, d2);
        free(d2);
        fail();
    }
    free(dumped);
    json_decref(j1);
    json_decref(j2);
    config_unref(cfg2);
    config_unref(cfg);
}

static void test_to_json_round_trip(void **state)
{
    (void)state;
    check_round_trip(ALL_KEYS);
    check_round_trip("{" L1 ", " P1 "}");
    check_round_trip("{" L1 ", " P1 ", \"admin\": {\"enabled\": false}, \"access_log\": null}");
}

static void test_to_json_values(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{" L1 ", " P1 "}");
    json_t *j = config_to_json(cfg, true);
    /* Defaults are filled in, under the file's key names. */
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(j, "pools"), 0), "max_waiters")),
                     1024);
    assert_string_equal(json_string_value(json_object_get(j, "log_level")), "info");
    assert_true(json_is_null(json_object_get(j, "access_log")));
    json_t *l0 = json_array_get(json_object_get(j, "listeners"), 0);
    assert_string_equal(json_string_value(json_object_get(l0, "name")), "listener0");
    assert_null(json_object_get(l0, "mode")); /* TCP: no mode */
    json_t *r0 = json_array_get(json_object_get(j, "routes"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "name")), "default");
    assert_null(json_object_get(r0, "match"));
    assert_null(json_object_get(json_object_get(j, "admin"), "token"));
    json_decref(j);
    config_unref(cfg);

    cfg = parse_ok("{\"listeners\": [{\"address\": \"unix:/tmp/s\", \"mode\": 416}], " P1 "}");
    j = config_to_json(cfg, true);
    l0 = json_array_get(json_object_get(j, "listeners"), 0);
    assert_string_equal(json_string_value(json_object_get(l0, "mode")), "0640");
    json_decref(j);
    config_unref(cfg);
}

static void test_redaction(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{" L1 ", " P1 ", \"admin\": {\"token\": \"s3cret\"}}");
    json_t *j = config_to_json(cfg, true);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "admin"), "token")),
                        "<redacted>");
    char *text = json_dumps(j, 0);
    assert_null(strstr(text, "s3cret"));
    free(text);
    json_decref(j);
    j = config_to_json(cfg, false);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "admin"), "token")),
                        "s3cret");
    json_decref(j);
    config_unref(cfg);
}

static void test_refs(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{" L1 ", " P1 "}");
    assert_ptr_equal(config_ref(cfg), cfg);
    assert_int_equal(cfg->refs, 2);
    config_unref(cfg);
    assert_int_equal(cfg->refs, 1);
    config_unref(cfg); /* frees: valgrind and ASan check there is nothing left */
    config_unref(NULL);
}

static void test_annotations(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("{\"_a\": {\"anything\": [1]}, " L1 ", \"pools\": [{\"_b\": 1, "
                                  "\"name\": \"p\", \"endpoints\": [\"a:1\"]}], \"routes\": "
                                  "[{\"_c\": null, \"match\": {\"_d\": 1, \"rpc\": \"/x\"}, "
                                  "\"pool\": \"p\"}, {\"pool\": \"p\"}]}");
    config_unref(cfg);
}

/* ---- syntax errors ------------------------------------------------------------- */

static void test_syntax_errors(void **state)
{
    (void)state;
    static const struct {
        const char *marked;
        const char *text;
    } cases[] = {
        /* jansson stops on the last character of the bad token */
        {"{\n  \"listeners\": [1,`}\n", "invalid JSON: unexpected token near '}'"},
        {"{\"a\": tr`u}", "invalid JSON: invalid token near 'tru'"},
        {"{\"a\": 1,\n \"a`\": 2}", "invalid JSON: duplicate object key near '\"a\"'"},
        {"{\"é\": `x}", "invalid JSON: invalid token"}, /* columns count characters */
        {"`", "'[' or '{' expected near end of file"},
        {"{} `x", "end of file expected near 'x'"},
        {"{\"a\":1,`}", "string or '}' expected near '}'"},
        {"{\"a\": \"x\\u0000`\"}", "\\u0000 is not allowed"},
        {"{\"a\": 9999999999999999999`9}", "too big integer"},
        {"\xef\xbb\xbf{\"a\": `x}", "invalid token"}, /* a byte order mark is no column */
        {"{\"a\": [1, 2\n\n`", "']' expected near end of file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error_at(cases[i].marked, "", cases[i].text);
}

static void test_bom_is_accepted(void **state)
{
    (void)state;
    struct config *cfg = parse_ok("\xef\xbb\xbf{" L1 ", " P1 "}");
    config_unref(cfg);
    expect_error_at("\xef\xbb\xbf{\"listeners\": [{\"address\": `\"x\"}], " P1 "}",
                    "listeners[0].address", "expected host:port");
}

/* A name of exactly CONFIG_NAME_MAX bytes, counted in bytes, not characters. */
static void test_longest_name_is_accepted(void **state)
{
    (void)state;
    static const char name[] = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9nnnnnnnnnnnnnnnnnnnnn";
    assert_int_equal(strlen(name), CONFIG_NAME_MAX);
    struct config *cfg =
        parse_ok("{" L1 ", \"pools\": [{\"name\": "
                 "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                 "\xc3\xa9\xc3\xa9\xc3\xa9nnnnnnnnnnnnnnnnnnnnn\", "
                 "\"endpoints\": [\"a:1\"]}]}");
    assert_string_equal(cfg->pools[0].name, name);
    config_unref(cfg);
}

/* ---- validation errors ---------------------------------------------------------- */

/* A name one byte over CONFIG_NAME_MAX. */
#define NAME_64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct bad {
    const char *marked;
    const char *path;
    const char *text;
};

static void run_bad(const struct bad *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_error_at(cases[i].marked, cases[i].path, cases[i].text);
}

#define RUN_BAD(cases) run_bad(cases, sizeof(cases) / sizeof(cases[0]))

static void test_positions_by_hand(void **state)
{
    (void)state;
    /* The positions the documentation and the integration tests quote,
     * checked without the marker helper. */
    static const struct {
        const char *text;
        int line, column;
        const char *formatted;
    } cases[] = {
        {"{\n  \"listners\": []\n}", 2, 3,
         "t.json:2:3: listners: unknown key \"listners\" (did you mean \"listeners\"?)"},
        {"{\"listeners\": {}, \"pools\": []}", 1, 15,
         "t.json:1:15: listeners: must be an array, not an object"},
        {"{\"listeners\":[{\"address\":\"127.0.0.1:1\"}],\n \"pools\":[{\"name\":\"p\","
         "\"endpoints\":[\"a:1\"],\n  \"max_conns\": 0}]}",
         3, 16, "t.json:3:16: pools[0].max_conns: must be between 1 and 65535"},
        {"{\"listeners\":[{\"address\":\"127.0.0.1:1\"}],\"pools\":[{\"name\":\"p\","
         "\"endpoints\":[\"a:1\"]},\n{\"name\":\"p\",\"endpoints\":[\"b:1\"]}],"
         "\"routes\":[{\"pool\":\"p\"}]}",
         2, 9, "t.json:2:9: pools[1].name: duplicate pool name \"p\" (also pools[0])"},
        {"{\n  \"listeners\": [1,}\n", 2, 19,
         "t.json:2:19: invalid JSON: unexpected token near '}'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *cfg;
        struct config_error err;
        assert_int_equal(config_parse(cases[i].text, strlen(cases[i].text), "t.json", &cfg, &err),
                         UV_EINVAL);
        assert_int_equal(err.line, cases[i].line);
        assert_int_equal(err.column, cases[i].column);
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        assert_string_equal(msg, cases[i].formatted);
    }
}

static void test_top_level_errors(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"`[1]", "", "the config must be a JSON object, not an array"},
        {"{\n  `\"listners\": []\n}", "listners", "unknown key \"listners\" (did you mean"},
        {"{" L1 ", " P1 ", `\"zzzzzzzz\": 1}", "zzzzzzzz", "unknown key \"zzzzzzzz\""},
        {"`{" P1 "}", "listeners", "required key is missing"},
        {"`{" L1 "}", "pools", "required key is missing"},
        {"{\"listeners\": `{}, " P1 "}", "listeners", "must be an array, not an object"},
        {"{\"listeners\": `[], " P1 "}", "listeners", "must list at least one listener"},
        {"{" L1 ", \"pools\": `[]}", "pools", "must list at least one pool"},
        {"{" L1 ", \"pools\": `null}", "pools", "must be an array, not null"},
        {"{" L1 ", " P1 ", \"log_level\": `\"verbose\"}", "log_level",
         "must be one of \"error\", \"warn\", \"info\", \"debug\""},
        {"{" L1 ", " P1 ", \"log_level\": `3}", "log_level", "must be one of"},
        {"{" L1 ", " P1 ", \"max_clients\": `-1}", "max_clients", "must be between 0 and 10000000"},
        {"{" L1 ", " P1 ", \"max_clients\": `10000001}", "max_clients", "must be between"},
        {"{" L1 ", " P1 ", \"max_clients\": `1.5}", "max_clients",
         "must be an integer, not a number with a fraction or exponent"},
        {"{" L1 ", " P1 ", \"max_clients\": `\"10\"}", "max_clients",
         "must be an integer, not a string"},
        {"{" L1 ", " P1 ", \"shutdown_grace_ms\": `true}", "shutdown_grace_ms",
         "must be an integer, not a boolean"},
        {"{" L1 ", " P1 ", \"shutdown_grace_ms\": `86400001}", "shutdown_grace_ms",
         "must be between 0 and 86400000"},
        {"{" L1 ", " P1 ", \"max_message_size\": `1023}", "max_message_size",
         "must be between 1024 and 268435456"},
        {"{" L1 ", " P1 ", \"max_metadata_size\": `63}", "max_metadata_size",
         "must be between 64 and 4194304"},
        {"{" L1 ", " P1 ", \"call_buffer_bytes\": `1}", "call_buffer_bytes",
         "must be between 65536 and 1073741824"},
        {"{" L1 ", " P1 ", \"busy_poll_us\": `10001}", "busy_poll_us",
         "must be between 0 and 10000"},
        {"{" L1 ", " P1 ", \"busy_poll_us\": `-1}", "busy_poll_us", "must be between 0 and 10000"},
        {"{" L1 ", " P1 ", \"metrics\": `[]}", "metrics", "must be an object, not an array"},
        {"{" L1 ", " P1 ", \"metrics\": {`\"max_rcps\": 1}}", "metrics.max_rcps",
         "unknown key \"max_rcps\" (did you mean \"max_rpcs\"?)"},
        {"{" L1 ", " P1 ", \"metrics\": {\"max_rpcs\": `10001}}", "metrics.max_rpcs",
         "must be between 0 and 10000"},
    };
    RUN_BAD(cases);
}

static void test_listener_errors(void **state)
{
    (void)state;
#define LST(x) "{\"listeners\": [" x "], " P1 "}"
    static const struct bad cases[] = {
        {LST("`1"), "listeners[0]", "must be an object, not an integer"},
        {LST("`{\"name\": \"a\"}"), "listeners[0].address", "required key is missing"},
        {LST("{\"address\": \"127.0.0.1:1\", `\"adress\": 1}"), "listeners[0].adress",
         "unknown key \"adress\" (did you mean \"address\"?)"},
        {LST("{\"name\": `\"\", \"address\": \"127.0.0.1:1\"}"), "listeners[0].name",
         "must not be empty"},
        {LST("{\"name\": `7, \"address\": \"127.0.0.1:1\"}"), "listeners[0].name",
         "must be a string, not an integer"},
        {LST("{\"name\": `\"" NAME_64 "\", "
             "\"address\": \"127.0.0.1:1\"}"),
         "listeners[0].name", "must be at most 63 bytes, not 64"},
        {LST("{\"address\": `7}"), "listeners[0].address", "must be a string, not an integer"},
        {LST("{\"address\": `\"127.0.0.1:99999\"}"), "listeners[0].address",
         "port must be a number between 1 and 65535"},
        {LST("{\"address\": `\"127.0.0.1:0\"}"), "listeners[0].address",
         "port must be a number between 1 and 65535"},
        {LST("{\"address\": `\"127.0.0.1:\"}"), "listeners[0].address", "port must be a number"},
        {LST("{\"address\": `\"127.0.0.1:8o\"}"), "listeners[0].address", "port must be a number"},
        {LST("{\"address\": `\"127.0.0.1\"}"), "listeners[0].address",
         "expected host:port, [ipv6]:port or unix:/path"},
        {LST("{\"address\": `\":80\"}"), "listeners[0].address", "host is empty"},
        {LST("{\"address\": `\"::1:80\"}"), "listeners[0].address",
         "IPv6 addresses must be written in brackets"},
        {LST("{\"address\": `\"[::g]:80\"}"), "listeners[0].address", "not a valid IPv6 address"},
        {LST("{\"address\": `\"[::1:80\"}"), "listeners[0].address", "expected [ipv6]:port"},
        {LST("{\"address\": `\"1.2.3.400:80\"}"), "listeners[0].address",
         "not a valid IPv4 address"},
        {LST("{\"address\": `\"example.com:80\"}"), "listeners[0].address",
         "a listening address must be an IP address or localhost"},
        {LST("{\"address\": `\"unix:\"}"), "listeners[0].address", "unix socket path is empty"},
        {LST("{\"address\": `\"unix:run/x.sock\"}"), "listeners[0].address",
         "unix socket path must be absolute"},
        {LST("{\"address\": `\"unix:/tmp/"
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
             "xx"
             "xxxxxxxxxxxxxxxxx\"}"),
         "listeners[0].address", "unix socket path is too long"},
        {LST("{\"address\": \"127.0.0.1:1\", \"header\": `\"yes\"}"), "listeners[0].header",
         "must be true or false, not a string"},
        {LST("{\"address\": \"127.0.0.1:1\", \"max_clients\": `1000001}"),
         "listeners[0].max_clients", "must be between 0 and 1000000"},
        {LST("{\"address\": \"127.0.0.1:1\", \"reuse_port\": `1}"), "listeners[0].reuse_port",
         "must be true or false, not an integer"},
        {LST("{\"address\": \"127.0.0.1:1\", \"client_idle_timeout_ms\": `-5}"),
         "listeners[0].client_idle_timeout_ms", "must be between 0 and 86400000"},
        {LST("{\"address\": \"127.0.0.1:1\", \"mode\": `\"0660\"}"), "listeners[0].mode",
         "only applies to unix: listeners"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `\"0o660\"}"), "listeners[0].mode",
         "must be an octal file mode like \"0660\""},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `\"0680\"}"), "listeners[0].mode",
         "must be an octal file mode"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `\" 660\"}"), "listeners[0].mode",
         "must be an octal file mode"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `\"\"}"), "listeners[0].mode",
         "must be an octal file mode"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `\"4755\"}"), "listeners[0].mode",
         "no setuid, setgid or sticky bits"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `512}"), "listeners[0].mode",
         "must be at most \"0777\""},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `4096}"), "listeners[0].mode",
         "must be an octal file mode"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `-1}"), "listeners[0].mode",
         "must be an octal file mode"},
        {LST("{\"address\": \"unix:/tmp/s\", \"mode\": `true}"), "listeners[0].mode",
         "not a boolean"},
        {LST("{\"name\": \"a\", \"address\": \"127.0.0.1:1\"},\n {\"name\": `\"a\", "
             "\"address\": \"127.0.0.1:2\"}"),
         "listeners[1].name", "duplicate listener name \"a\" (also listeners[0])"},
        /* a default name counts too */
        {LST("{\"address\": \"127.0.0.1:1\"}, {\"name\": `\"listener0\", \"address\": "
             "\"127.0.0.1:2\"}"),
         "listeners[1].name", "duplicate listener name \"listener0\""},
    };
#undef LST
    RUN_BAD(cases);
}

static void test_address_clashes(void **state)
{
    (void)state;
#define LST(x) "{\"listeners\": [" x "], " P1 "}"
    static const struct bad cases[] = {
        {LST("{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}, {\"name\": \"b\", \"address\": "
             "`\"127.0.0.1:1\"}"),
         "listeners[1].address", "127.0.0.1:1 is already used by listeners[0].address"},
        {LST("{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}, {\"name\": \"b\", \"address\": "
             "`\"localhost:1\"}"),
         "listeners[1].address", "localhost:1 overlaps 127.0.0.1:1 of listeners[0].address"},
        {LST("{\"name\": \"a\", \"address\": \"0.0.0.0:1\"}, {\"name\": \"b\", \"address\": "
             "`\"127.0.0.1:1\"}"),
         "listeners[1].address", "overlaps 0.0.0.0:1"},
        {LST("{\"name\": \"a\", \"address\": \"10.1.2.3:1\"}, {\"name\": \"b\", \"address\": "
             "`\"[::]:1\"}"),
         "listeners[1].address", "overlaps 10.1.2.3:1"},
        {LST("{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}, {\"name\": \"b\", \"address\": "
             "`\"[::ffff:127.0.0.1]:1\"}"),
         "listeners[1].address", "overlaps"},
        {LST("{\"name\": \"a\", \"address\": \"[::1]:1\"}, {\"name\": \"b\", \"address\": "
             "`\"[0::1]:1\"}"),
         "listeners[1].address", "overlaps [::1]:1"},
        {LST("{\"name\": \"a\", \"address\": \"unix:/tmp/s\"}, {\"name\": \"b\", \"address\": "
             "`\"unix:/tmp/s\"}"),
         "listeners[1].address", "unix:/tmp/s is already used by listeners[0].address"},
        {"{" L1 ", " P1 ", \"admin\": {\"address\": `\"127.0.0.1:1\"}}", "admin.address",
         "127.0.0.1:1 is already used by listeners[0].address"},
        {"{" L1 ", \"pools\": [{\"name\": \"r\", \"accept\": `\"127.0.0.1:1\"}]}",
         "pools[0].accept", "already used by listeners[0].address"},
        {"{" L1 ", \"pools\": [{\"name\": \"r\", \"accept\": \"127.0.0.1:9901\"}],\n"
         "\"admin\": {\"address\": `\"127.0.0.1:9901\"}}",
         "admin.address", "already used by pools[0].accept"},
        /* the default admin address counts: the position is the document's */
        {"`{\"listeners\": [{\"address\": \"localhost:9901\"}], " P1 "}", "admin.address",
         "the default admin address 127.0.0.1:9901 is already used by listeners[0].address: set "
         "admin.address, or admin.enabled to false"},
    };
#undef LST
    RUN_BAD(cases);

    /* Not clashes: other port, other host, other family, admin off, a
     * dialled pool's endpoint. */
    static const char *const ok[] = {
        "{\"listeners\": [{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}, {\"name\": \"b\", "
        "\"address\": \"127.0.0.1:2\"}], " P1 "}",
        "{\"listeners\": [{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}, {\"name\": \"b\", "
        "\"address\": \"127.0.0.2:1\"}], " P1 "}",
        "{\"listeners\": [{\"name\": \"a\", \"address\": \"127.0.0.1:1\"}, {\"name\": \"b\", "
        "\"address\": \"[::1]:1\"}], " P1 "}",
        "{\"listeners\": [{\"name\": \"a\", \"address\": \"unix:/tmp/a\"}, {\"name\": \"b\", "
        "\"address\": \"unix:/tmp/b\"}], " P1 "}",
        "{\"listeners\": [{\"address\": \"127.0.0.1:9901\"}], \"admin\": {\"enabled\": false}, " P1
        "}",
        "{" L1 ", \"pools\": [{\"name\": \"p\", \"endpoints\": [\"127.0.0.1:1\"]}]}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        config_unref(parse_ok(ok[i]));
}

static void test_pool_errors(void **state)
{
    (void)state;
#define POOLS(x) "{" L1 ", \"pools\": [" x "]}"
    static const struct bad cases[] = {
        {POOLS("`\"p\""), "pools[0]", "must be an object, not a string"},
        {POOLS("`{\"endpoints\": [\"a:1\"]}"), "pools[0].name", "required key is missing"},
        {POOLS("{\"name\": `\"\", \"endpoints\": [\"a:1\"]}"), "pools[0].name",
         "must not be empty"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], `\"max_con\": 1}"), "pools[0].max_con",
         "unknown key \"max_con\" (did you mean \"max_conns\"?)"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"accept\": `\"127.0.0.1:2\"}"),
         "pools[0].accept", "\"endpoints\" and \"accept\" are exclusive"},
        {POOLS("`{\"name\": \"p\"}"), "pools[0]",
         "needs \"endpoints\" (dialled pool) or \"accept\" (reverse pool)"},
        {POOLS("{\"name\": \"p\", \"endpoints\": `\"a:1\"}"), "pools[0].endpoints",
         "must be an array of addresses, not a string"},
        {POOLS("{\"name\": \"p\", \"endpoints\": `[]}"), "pools[0].endpoints",
         "must list at least one endpoint"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\", `2]}"), "pools[0].endpoints[1]",
         "must be a string address, not an integer"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\",\n   `\"b\"]}"), "pools[0].endpoints[1]",
         "expected host:port"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [`\"-bad-.host:1\"]}"), "pools[0].endpoints[0]",
         "host is not a valid name or address"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [`\"a..b:1\"]}"), "pools[0].endpoints[0]",
         "host is not a valid name or address"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"max_conns\": `0}"),
         "pools[0].max_conns", "must be between 1 and 65535"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"max_conns\": `65536}"),
         "pools[0].max_conns", "must be between 1 and 65535"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"max_conns\": 2, \"min_idle\": `3}"),
         "pools[0].min_idle", "must not exceed max_conns (2)"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"min_idle\": `17}"),
         "pools[0].min_idle", "must not exceed max_conns (16)"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"idle_timeout_ms\": `null}"),
         "pools[0].idle_timeout_ms", "must be an integer, not null"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"max_lifetime_ms\": `2592000001}"),
         "pools[0].max_lifetime_ms", "must be between 0 and 2592000000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"dial_timeout_ms\": `0}"),
         "pools[0].dial_timeout_ms", "must be between 1 and 86400000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"max_waiters\": `1000001}"),
         "pools[0].max_waiters", "must be between 0 and 1000000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"wait_timeout_ms\": `1e3}"),
         "pools[0].wait_timeout_ms", "must be an integer"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"call_timeout_ms\": `-1}"),
         "pools[0].call_timeout_ms", "must be between 0 and 2592000000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"balance\": `\"random\"}"),
         "pools[0].balance", "must be one of \"round_robin\", \"least_busy\""},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"header\": `\"true\"}"),
         "pools[0].header", "must be true or false"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"cancel\": `\"hard\"}"),
         "pools[0].cancel", "must be one of \"soft\", \"close\""},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"eject_after_failures\": `1001}"),
         "pools[0].eject_after_failures", "must be between 0 and 1000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"eject_ms\": `0}"),
         "pools[0].eject_ms", "must be between 1 and 86400000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"backoff_base_ms\": `0}"),
         "pools[0].backoff_base_ms", "must be between 1 and 86400000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"backoff_base_ms\": `6000}"),
         "pools[0].backoff_base_ms", "must not exceed backoff_max_ms (5000)"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"backoff_max_ms\": `0}"),
         "pools[0].backoff_max_ms", "must be between 1 and 86400000"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"], \"identify\": `{\"rpc\": \"/x\"}}"),
         "pools[0].identify", "only applies to reverse pools"},
        {POOLS("{\"name\": \"r\", \"accept\": `\"agents.example:7\"}"), "pools[0].accept",
         "a listening address must be an IP address or localhost"},
        {POOLS("{\"name\": \"r\", \"accept\": `[\"127.0.0.1:7\"]}"), "pools[0].accept",
         "must be a string, not an array"},
        {POOLS("{\"name\": \"r\", \"accept\": \"127.0.0.1:7\", \"identify\": `\"/x\"}"),
         "pools[0].identify", "must be an object, not a string"},
        {POOLS("{\"name\": \"r\", \"accept\": \"127.0.0.1:7\", \"identify\": `{}}"),
         "pools[0].identify.rpc", "required key is missing"},
        {POOLS("{\"name\": \"r\", \"accept\": \"127.0.0.1:7\", \"identify\": {`\"rcp\": \"/x\"}}"),
         "pools[0].identify.rcp", "unknown key \"rcp\" (did you mean \"rpc\"?)"},
        {POOLS("{\"name\": \"r\", \"accept\": \"127.0.0.1:7\", \"min_idle\": `1}"),
         "pools[0].min_idle", "does not apply to reverse pools"},
        {POOLS("{\"name\": \"r\", \"accept\": \"127.0.0.1:7\", \"eject_ms\": `5}"),
         "pools[0].eject_ms", "does not apply to reverse pools"},
        {POOLS("{\"name\": \"r\", \"accept\": \"127.0.0.1:7\", \"balance\": "
               "`\"least_busy\"}"),
         "pools[0].balance", "does not apply to reverse pools"},
        {POOLS("{\"name\": \"p\", \"endpoints\": [\"a:1\"]}, {\"name\": `\"p\", \"endpoints\": "
               "[\"b:1\"]}"),
         "pools[1].name", "duplicate pool name \"p\" (also pools[0])"},
        {POOLS("{\"name\": `\"a\\u0007b\", \"endpoints\": [\"a:1\"]}"), "pools[0].name",
         "must not contain control characters"},
        {POOLS("{\"name\": `\"a\\nb\", \"endpoints\": [\"a:1\"]}"), "pools[0].name",
         "must not contain control characters"},
    };
#undef POOLS
    RUN_BAD(cases);
}

static void test_route_errors(void **state)
{
    (void)state;
#define P2                                                                                         \
    "\"pools\": [{\"name\": \"p\", \"endpoints\": [\"a:1\"]}, {\"name\": \"r\", \"accept\": "      \
    "\"127.0.0.1:2\"}]"
#define ROUTES(x) "{" L1 ", " P2 ", \"routes\": [" x "]}"
    static const struct bad cases[] = {
        {"`{" L1 ", " P2 "}", "routes", "required when there is more than one pool"},
        {"{" L1 ", " P2 ", \"routes\": `{}}", "routes", "must be an array, not an object"},
        {"{" L1 ", " P2 ", \"routes\": `[]}", "routes", "must list at least one route"},
        {ROUTES("`\"p\""), "routes[0]", "must be an object, not a string"},
        {ROUTES("`{\"name\": \"x\"}"), "routes[0].pool", "required key is missing"},
        {ROUTES("{\"pool\": `\"q\"}"), "routes[0].pool", "no pool named \"q\""},
        {ROUTES("{\"pool\": \"p\", `\"pol\": 1}"), "routes[0].pol",
         "unknown key \"pol\" (did you mean \"pool\"?)"},
        {ROUTES("{\"match\": `[], \"pool\": \"p\"}"), "routes[0].match",
         "must be an object, not an array"},
        {ROUTES("{\"match\": `{}, \"pool\": \"p\"}"), "routes[0].match",
         "must give \"rpc\", \"rpc_prefix\" or \"metadata\""},
        {ROUTES("{\"match\": `{\"_only\": \"a note\"}, \"pool\": \"p\"}"), "routes[0].match",
         "leave \"match\" out for a default route"},
        {ROUTES("{\"match\": {`\"rpc_prefx\": \"/a\"}, \"pool\": \"p\"}"),
         "routes[0].match.rpc_prefx", "unknown key \"rpc_prefx\" (did you mean \"rpc_prefix\"?)"},
        {ROUTES("{\"match\": {\"rpc\": `\"\"}, \"pool\": \"p\"}"), "routes[0].match.rpc",
         "must not be empty"},
        {ROUTES("{\"match\": {\"rpc_prefix\": `1}, \"pool\": \"p\"}"), "routes[0].match.rpc_prefix",
         "must be a string, not an integer"},
        {ROUTES("{\"match\": `{\"rpc\": \"/a.B/C\", \"rpc_prefix\": \"/b.\"}, \"pool\": \"p\"}"),
         "routes[0].match", "can never match: \"rpc\" does not start with \"rpc_prefix\""},
        {ROUTES("{\"match\": {\"metadata\": `\"k\"}, \"pool\": \"p\"}"), "routes[0].match.metadata",
         "must be an object, not a string"},
        {ROUTES("{\"match\": {\"metadata\": `{\"value\": \"v\"}}, \"pool\": \"p\"}"),
         "routes[0].match.metadata.key", "required key is missing"},
        {ROUTES("{\"match\": {\"metadata\": {\"key\": \"k\", \"value\": `1}}, \"pool\": \"p\"}"),
         "routes[0].match.metadata.value", "must be a string, not an integer"},
        {ROUTES("{\"match\": {\"metadata\": {\"key\": \"k\", `\"val\": \"v\"}}, \"pool\": \"p\"}"),
         "routes[0].match.metadata.val", "unknown key \"val\""},
        {ROUTES("{\"pool\": \"p\", \"add_metadata\": `[\"a\"]}"), "routes[0].add_metadata",
         "must be an object, not an array"},
        {ROUTES("{\"pool\": \"p\", \"add_metadata\": {\"a\": \"1\", \"b\": `2}}"),
         "routes[0].add_metadata.b", "must be a string, not an integer"},
        {ROUTES("{\"pool\": \"p\", \"add_metadata\": {`\"\": \"1\"}}"), "routes[0].add_metadata.",
         "metadata keys must not be empty"},
        {ROUTES("{\"pool\": \"p\", \"call_timeout_ms\": `-1}"), "routes[0].call_timeout_ms",
         "must be between 0 and 2592000000"},
        {ROUTES("{\"name\": `\"" NAME_64 "\", "
                "\"pool\": \"p\"}"),
         "routes[0].name", "must be at most 63 bytes, not 64"},
        {ROUTES("{\"pool\": \"p\", \"agent_from_metadata\": `\"k\"}"),
         "routes[0].agent_from_metadata",
         "only applies to routes to a reverse pool; \"p\" dials endpoints"},
        {ROUTES("{\"pool\": \"r\", \"agent_from_metadata\": `\"\"}"),
         "routes[0].agent_from_metadata", "must not be empty"},
        {ROUTES("{\"pool\": \"p\"},\n `{\"match\": {\"rpc\": \"/a\"}, \"pool\": \"p\"}"),
         "routes[1]", "unreachable: routes[0] has no \"match\" and takes every call"},
        {ROUTES("{\"pool\": \"p\"}, `{\"pool\": \"r\"}, {\"pool\": \"p\"}"), "routes[1]",
         "unreachable"},
        {ROUTES("{\"match\": {\"rpc_prefix\": \"/a.\"}, \"pool\": \"p\"},\n"
                "`{\"match\": {\"rpc\": \"/a.B/C\"}, \"pool\": \"r\"}"),
         "routes[1]", "unreachable: routes[0] already takes every call it matches"},
        {ROUTES("{\"match\": {\"rpc_prefix\": \"/a.\"}, \"pool\": \"p\"},\n"
                "`{\"match\": {\"rpc_prefix\": \"/a.B/\"}, \"pool\": \"r\"}"),
         "routes[1]", "unreachable: routes[0]"},
        {ROUTES("{\"match\": {\"rpc\": \"/a.B/C\"}, \"pool\": \"p\"},\n"
                "`{\"match\": {\"rpc\": \"/a.B/C\", \"metadata\": {\"key\": \"k\"}}, \"pool\": "
                "\"r\"}"),
         "routes[1]", "unreachable: routes[0]"},
        {ROUTES("{\"match\": {\"metadata\": {\"key\": \"k\"}}, \"pool\": \"p\"},\n"
                "`{\"match\": {\"metadata\": {\"key\": \"k\", \"value\": \"v\"}}, \"pool\": "
                "\"r\"}"),
         "routes[1]", "unreachable: routes[0]"},
        {ROUTES("{\"name\": \"a\", \"match\": {\"rpc\": \"/x\"}, \"pool\": \"p\"},\n"
                "{\"name\": `\"a\", \"pool\": \"p\"}"),
         "routes[1].name", "duplicate route name \"a\" (also routes[0])"},
        {ROUTES("{\"name\": \"route1\", \"match\": {\"rpc\": \"/x\"}, \"pool\": \"p\"},\n"
                "`{\"pool\": \"p\"}"),
         "routes[1].name", "duplicate route name \"route1\""},
    };
    RUN_BAD(cases);

    /* More specific routes first are fine. */
    struct config *cfg = parse_ok(
        ROUTES("{\"match\": {\"rpc\": \"/a.B/C\"}, \"pool\": \"p\"},"
               "{\"match\": {\"rpc_prefix\": \"/a.\", \"metadata\": {\"key\": \"k\", \"value\": "
               "\"v\"}}, \"pool\": \"r\", \"agent_from_metadata\": \"k\"},"
               "{\"match\": {\"rpc_prefix\": \"/a.\", \"metadata\": {\"key\": \"k\"}}, \"pool\": "
               "\"p\"},"
               "{\"match\": {\"rpc_prefix\": \"/a.\", \"metadata\": {\"key\": \"j\"}}, \"pool\": "
               "\"p\"},"
               "{\"match\": {\"rpc_prefix\": \"/a.\"}, \"pool\": \"p\"},"
               "{\"match\": {\"rpc_prefix\": \"/\"}, \"pool\": \"p\"},"
               "{\"pool\": \"p\"}"));
    assert_int_equal(cfg->n_routes, 7);
    assert_int_equal(cfg->routes[1].pool_index, 1);
    config_unref(cfg);
#undef ROUTES
#undef P2
}

static void test_admin_and_access_log_errors(void **state)
{
    (void)state;
#define WITH(x) "{" L1 ", " P1 ", " x "}"
    static const struct bad cases[] = {
        {WITH("\"admin\": `null"), "admin", "must be an object, not null"},
        {WITH("\"admin\": `false"), "admin", "{\"enabled\": false} turns the admin API off"},
        {WITH("\"admin\": {`\"adress\": \"127.0.0.1:5\"}"), "admin.adress",
         "unknown key \"adress\""},
        {WITH("\"admin\": {\"address\": `\"0.0.0.0:9901\"}"), "admin.address",
         "0.0.0.0:9901 is not a loopback address: set admin.token, or admin.allow_insecure"},
        {WITH("\"admin\": {\"address\": `\"10.0.0.1:9901\", \"allow_insecure\": false}"),
         "admin.address", "is not a loopback address"},
        {WITH("\"admin\": {\"address\": `\"[::]:9901\"}"), "admin.address",
         "is not a loopback address"},
        {WITH("\"admin\": {\"address\": `\"admin.example:9901\"}"), "admin.address",
         "a listening address must be an IP address or localhost"},
        {WITH("\"admin\": {\"address\": \"0.0.0.0:9901\", \"token\": `\"\"}"), "admin.token",
         "must not be empty"},
        {WITH("\"admin\": {\"enabled\": `\"no\"}"), "admin.enabled", "must be true or false"},
        {WITH("\"admin\": {\"request_timeout_ms\": `99}"), "admin.request_timeout_ms",
         "must be between 100 and 86400000"},
        {WITH("\"admin\": {\"show_metadata_values\": `1}"), "admin.show_metadata_values",
         "must be true or false"},
        {WITH("\"access_log\": `\"-\""), "access_log", "must be an object, not a string"},
        {WITH("\"access_log\": `{}"), "access_log.path", "required key is missing"},
        {WITH("\"access_log\": {\"path\": \"-\", \"format\": `\"xml\"}"), "access_log.format",
         "must be one of \"text\", \"json\""},
        {WITH("\"access_log\": {\"path\": \"-\", `\"level\": 1}"), "access_log.level",
         "unknown key \"level\""},
    };
    RUN_BAD(cases);

    /* Loopback, a token, the explicit opt-in, or a disabled admin API are fine. */
    static const char *const ok[] = {
        WITH("\"admin\": {\"address\": \"localhost:9901\"}"),
        WITH("\"admin\": {\"address\": \"127.8.9.10:9901\"}"),
        WITH("\"admin\": {\"address\": \"[::1]:9901\"}"),
        WITH("\"admin\": {\"address\": \"unix:/tmp/admin.sock\"}"),
        WITH("\"admin\": {\"address\": \"0.0.0.0:9901\", \"token\": \"t\"}"),
        WITH("\"admin\": {\"address\": \"0.0.0.0:9901\", \"allow_insecure\": true}"),
        WITH("\"admin\": {\"address\": \"0.0.0.0:9901\", \"enabled\": false}"),
        WITH("\"access_log\": null"),
        WITH("\"access_log\": {\"path\": \"/var/log/x\"}"),
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        config_unref(parse_ok(ok[i]));
#undef WITH
}

static void test_error_format(void **state)
{
    (void)state;
    struct config_error e;
    char buf[1200];
    memset(&e, 0, sizeof(e));
    strcpy(e.file, "c.json");
    strcpy(e.text, "cannot open: No such file or directory");
    config_error_format(&e, buf, sizeof(buf));
    assert_string_equal(buf, "c.json: cannot open: No such file or directory");
    e.line = 3;
    e.column = 7;
    strcpy(e.text, "invalid JSON: x");
    config_error_format(&e, buf, sizeof(buf));
    assert_string_equal(buf, "c.json:3:7: invalid JSON: x");
    strcpy(e.path, "pools[1].max_conns");
    strcpy(e.text, "must be between 1 and 65535");
    config_error_format(&e, buf, sizeof(buf));
    assert_string_equal(buf, "c.json:3:7: pools[1].max_conns: must be between 1 and 65535");
    char small[8];
    config_error_format(&e, small, sizeof(small));
    assert_string_equal(small, "c.json:");
}

static void test_load_errors(void **state)
{
    (void)state;
    struct config *cfg = (struct config *)1;
    struct config_error err;
    assert_int_equal(config_load("/nonexistent/c.json", &cfg, &err), UV_ENOENT);
    assert_null(cfg);
    assert_string_equal(err.file, "/nonexistent/c.json");
    assert_int_equal(err.line, 0);
    assert_string_equal(err.text, "cannot open: No such file or directory");

    assert_int_equal(config_load("/", &cfg, &err), UV_EISDIR);
    assert_string_equal(err.text, "cannot read: Is a directory");

    /* A file with an error: the file name in the error is the path given. */
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\n  \"listeners\": [\n    {\"address\": \"127.0.0.1:1\"}\n  ],\n"
                       "  \"pools\": [{\"name\": \"p\", \"endpoints\": [\"a:1\"],\n"
                       "             \"min_idle\": 99}]\n}\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(config_load(path, &cfg, &err), UV_EINVAL);
    char want[512], got[1200];
    snprintf(want, sizeof(want), "%s:6:26: pools[0].min_idle: must not exceed max_conns (16)",
             path);
    config_error_format(&err, got, sizeof(got));
    assert_string_equal(got, want);

    /* An empty file is a syntax error at 1:1. */
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    assert_int_equal(config_load(path, &cfg, &err), UV_EINVAL);
    assert_int_equal(err.line, 1);
    assert_int_equal(err.column, 1);
    assert_non_null(strstr(err.text, "invalid JSON"));
    unlink(path);
}

/* ---- position finder ------------------------------------------------------------ */

/* Checks that path (key = false: its value) is found where needle starts. */
static void expect_pos(const char *text, const char *path, bool key, const char *needle, int rc)
{
    const char *at = strstr(text, needle);
    assert_non_null(at);
    assert_null(strstr(at + 1, needle)); /* the needle must be unique */
    int want_line, want_column, line = 0, column = 0;
    position_of(text, (size_t)(at - text), &want_line, &want_column);
    int got = config_pos_find(text, strlen(text), path, key, &line, &column);
    if (got != rc || line != want_line || column != want_column) {
        print_error("path %s: want %d at %d:%d, got %d at %d:%d\n", path, rc, want_line,
                    want_column, got, line, column);
        fail();
    }
}

static void test_pos_find(void **state)
{
    (void)state;
    const char *t = "{\"a\": {\"b\\\"c\": [1, {\"d\": \"x\\\\\\\"y\"}, [[], {}], \"zz\"]},\n"
                    " \"\\u00e9t\\u00E9\": 2, \"é\": [true, null, -1.5e3],\n"
                    "\t\"\\ud83d\\ude00\": \"smile\", \"k.e[y]\": 3, \"\\/\\n\": {\"q\": [7]},\n"
                    "  \"arr\": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]}";
    expect_pos(t, "", false, "{\"a\"", 0);
    expect_pos(t, "a", false, "{\"b", 0);
    expect_pos(t, "a", true, "\"a\"", 0);
    expect_pos(t, "a.b\"c", false, "[1,", 0);
    expect_pos(t, "a.b\"c", true, "\"b\\\"c\"", 0);
    expect_pos(t, "a.b\"c[0]", false, "1, {", 0);
    expect_pos(t, "a.b\"c[0]", true, "1, {", 0); /* elements have no key */
    expect_pos(t, "a.b\"c[1]", false, "{\"d\"", 0);
    expect_pos(t, "a.b\"c[1].d", false, "\"x\\\\", 0);
    expect_pos(t, "a.b\"c[2]", false, "[[]", 0);
    expect_pos(t, "a.b\"c[2][0]", false, "[], {}", 0);
    expect_pos(t, "a.b\"c[2][1]", false, "{}]", 0);
    expect_pos(t, "a.b\"c[3]", false, "\"zz\"", 0);
    expect_pos(t, "été", false, "2, \"é\"", 0);             /* \u escapes decoded */
    expect_pos(t, "été", true, "\"\\u00e9t", 0);            /* ... and the key's position */
    expect_pos(t, "é[2]", false, "-1.5e3", 0);              /* columns count characters */
    expect_pos(t, "\xf0\x9f\x98\x80", false, "\"smile", 0); /* surrogate pair */
    expect_pos(t, "k.e[y]", false, "3, \"\\/", 0);
    expect_pos(t, "/\n.q[0]", false, "7]", 0);
    expect_pos(t, "arr[1]", false, "11", 0);
    expect_pos(t, "arr[10]", false, "20", 0);
    /* Absent paths: the nearest ancestor that is present. */
    expect_pos(t, "a.x", false, "{\"b", 1);
    expect_pos(t, "a.b\"c[1].dd", false, "{\"d\"", 1); /* "d" is no ancestor of "dd" */
    expect_pos(t, "a.b\"c[9]", false, "[1,", 1);
    expect_pos(t, "arr[100]", false, "[10", 1);
    expect_pos(t, "nope", false, "{\"a\"", 1);
    expect_pos(t, "nope", true, "{\"a\"", 1);

    int line = 0, column = 0;
    assert_int_equal(config_pos_find("", 0, "a", false, &line, &column), -1);
    assert_int_equal(config_pos_find("   ", 3, "", false, &line, &column), -1);
    /* CRLF line ends: the \r is the last column of its line. */
    expect_pos("{\r\n\"a\":\r\n  5}", "a", false, "5}", 0);
}

static void test_pos_robust(void **state)
{
    (void)state;
    int line, column;
    /* Text jansson would refuse: the scanner stops, never reads past len. */
    static const char *const junk[] = {
        "{",
        "[",
        "{\"a",
        "{\"a\\",
        "{\"a\\u12",
        "{\"a\":",
        "{\"a\" 1}",
        "{1: 2}",
        "[1 2]",
        "{\"a\":[}",
        "]]]]",
        "}",
        "\"\\ud800\\u0041\"",
        "{\"\\ud800\": 1}",
        ":",
        ",,,",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        size_t n = strlen(junk[i]);
        char *copy = malloc(n); /* no NUL: ASan sees any overread */
        memcpy(copy, junk[i], n);
        (void)config_pos_find(copy, n, "a.b", false, &line, &column);
        (void)config_pos_find(copy, n, "a", true, &line, &column);
        free(copy);
    }

    /* Deeper than the scanner indexes: skipped whole, later keys still found. */
    char deep[2000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"d\": ");
    for (int i = 0; i < 300; i++)
        deep[n++] = '[';
    deep[n++] = '"';
    deep[n++] = ']';
    deep[n++] = '"';
    for (int i = 0; i < 300; i++)
        deep[n++] = ']';
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, ", \"after\": 1}");
    assert_int_equal(config_pos_find(deep, n, "after", false, &line, &column), 0);
    assert_int_equal(line, 1);
    assert_int_equal(column, (int)n - 1);

    /* Paths longer than CONFIG_POS_PATH_MAX are cut the same way on both sides. */
    char longkey[600], text[700], path[CONFIG_POS_PATH_MAX];
    memset(longkey, 'k', 400);
    longkey[400] = '\0';
    snprintf(text, sizeof(text), "{\"%s\": 1}", longkey);
    size_t pn = 0;
    path[0] = '\0';
    config_pos_append(path, &pn, longkey, strlen(longkey));
    assert_int_equal(pn, CONFIG_POS_PATH_MAX - 1);
    assert_int_equal(config_pos_find(text, strlen(text), path, false, &line, &column), 0);
    assert_int_equal(column, 406);
    /* ... and an unknown key that long is reported at its key. */
    char cfgtext[900];
    snprintf(cfgtext, sizeof(cfgtext), "{" L1 ", " P1 ", \"%s\": 1}", longkey);
    struct config *cfg;
    struct config_error err;
    assert_int_equal(config_parse(cfgtext, strlen(cfgtext), "t.json", &cfg, &err), UV_EINVAL);
    assert_string_equal(err.path, path);
    assert_int_equal(err.column, (int)(strstr(cfgtext, longkey) - cfgtext)); /* the quote */
}

/* ---- addresses ----------------------------------------------------------------- */

static void test_addr_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum config_addr_kind kind;
        const char *host_or_path;
        int port;
    } good[] = {
        {"127.0.0.1:7777", CONFIG_ADDR_TCP, "127.0.0.1", 7777},
        {"[::1]:1", CONFIG_ADDR_TCP, "::1", 1},
        {"[2001:db8::7]:65535", CONFIG_ADDR_TCP, "2001:db8::7", 65535},
        {"storage.internal:7777", CONFIG_ADDR_TCP, "storage.internal", 7777},
        {"my_svc-1.example.:80", CONFIG_ADDR_TCP, "my_svc-1.example.", 80},
        {"localhost:0080", CONFIG_ADDR_TCP, "localhost", 80},
        {"unix:/run/drpc-sidecar.sock", CONFIG_ADDR_UNIX, "/run/drpc-sidecar.sock", 0},
        {"unix:/a:b", CONFIG_ADDR_UNIX, "/a:b", 0},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct config_addr a;
        const char *why = "x";
        assert_int_equal(config_addr_parse(good[i].text, &a, &why), 0);
        assert_null(why);
        assert_int_equal(a.kind, good[i].kind);
        assert_string_equal(a.text, good[i].text);
        if (a.kind == CONFIG_ADDR_TCP) {
            assert_string_equal(a.host, good[i].host_or_path);
            assert_int_equal(a.port, good[i].port);
            assert_null(a.path);
        } else {
            assert_string_equal(a.path, good[i].host_or_path);
            assert_null(a.host);
        }
        config_addr_free(&a);
        assert_null(a.text);
    }
    static const char *const bad[] = {
        "",           "x",      "x:",          ":1",       "x:65536",
        "x:-1",       "x:1 ",   " x:1",        "x y:1",    "[::1]",
        "[::1]x:1",   "[]:1",   "[1.2.3.4]:1", "::1:80",   "300.1.1.1:1",
        "1.2.3:1",    "a..b:1", "-a:1",        "a-:1",     ".a:1",
        "unix:",      "unix:x", "Unix:/x",     "x:123456", "a.-b:1",
        "ex*ample:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config_addr a;
        const char *why = NULL;
        if (config_addr_parse(bad[i], &a, &why) != UV_EINVAL || !why) {
            print_error("accepted: \"%s\"\n", bad[i]);
            fail();
        }
        assert_null(a.text);
    }
    char long_label[80];
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ":1");
    struct config_addr a;
    const char *why;
    assert_int_equal(config_addr_parse(long_label, &a, &why), UV_EINVAL);
}

static void test_addr_helpers(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool loopback, ip;
    } cases[] = {
        {"127.0.0.1:1", true, true},          {"127.255.0.9:1", true, true},
        {"localhost:1", true, false},         {"[::1]:1", true, true},
        {"[::ffff:127.0.0.2]:1", true, true}, {"unix:/x", true, false},
        {"0.0.0.0:1", false, true},           {"[::]:1", false, true},
        {"10.0.0.1:1", false, true},          {"128.0.0.1:1", false, true},
        {"example.com:1", false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config_addr a;
        const char *why;
        assert_int_equal(config_addr_parse(cases[i].text, &a, &why), 0);
        assert_int_equal(config_addr_is_loopback(&a), cases[i].loopback);
        assert_int_equal(config_addr_is_ip(&a), cases[i].ip);
        config_addr_free(&a);
    }
    static const struct {
        const char *a, *b;
        bool clash;
    } pairs[] = {
        {"127.0.0.1:1", "127.0.0.1:1", true},  {"127.0.0.1:1", "127.0.0.1:2", false},
        {"127.0.0.1:1", "localhost:1", true},  {"0.0.0.0:1", "10.0.0.1:1", true},
        {"0.0.0.0:1", "[::1]:1", false},       {"[::]:1", "10.0.0.1:1", true},
        {"[::]:1", "[::1]:1", true},           {"127.0.0.1:1", "[::1]:1", false},
        {"unix:/a", "unix:/a", true},          {"unix:/a", "unix:/b", false},
        {"unix:/a", "127.0.0.1:1", false},     {"a.example:1", "a.example:1", true},
        {"a.example:1", "b.example:1", false}, {"[::ffff:10.0.0.1]:5", "10.0.0.1:5", true},
        {"unix:/a", "unix:/./a", true},        {"unix:/r//a", "unix:/r/./a/", true},
        {"unix:/r/../a", "unix:/a", false},    {"unix:/ab", "unix:/a/b", false},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        struct config_addr a, b;
        const char *why;
        assert_int_equal(config_addr_parse(pairs[i].a, &a, &why), 0);
        assert_int_equal(config_addr_parse(pairs[i].b, &b, &why), 0);
        if (config_addr_conflict(&a, &b) != pairs[i].clash ||
            config_addr_conflict(&b, &a) != pairs[i].clash) {
            print_error("%s vs %s: want %d\n", pairs[i].a, pairs[i].b, pairs[i].clash);
            fail();
        }
        config_addr_free(&a);
        config_addr_free(&b);
    }
}

static void test_log_level_name(void **state)
{
    (void)state;
    assert_string_equal(config_log_level_name(CONFIG_LOG_ERROR), "error");
    assert_string_equal(config_log_level_name(CONFIG_LOG_WARN), "warn");
    assert_string_equal(config_log_level_name(CONFIG_LOG_INFO), "info");
    assert_string_equal(config_log_level_name(CONFIG_LOG_DEBUG), "debug");
    assert_string_equal(config_log_level_name((enum config_log_level)9), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_json),
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_to_json_round_trip),
        cmocka_unit_test(test_to_json_values),
        cmocka_unit_test(test_redaction),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_annotations),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_bom_is_accepted),
        cmocka_unit_test(test_longest_name_is_accepted),
        cmocka_unit_test(test_positions_by_hand),
        cmocka_unit_test(test_top_level_errors),
        cmocka_unit_test(test_listener_errors),
        cmocka_unit_test(test_address_clashes),
        cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_admin_and_access_log_errors),
        cmocka_unit_test(test_error_format),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_pos_find),
        cmocka_unit_test(test_pos_robust),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_addr_helpers),
        cmocka_unit_test(test_log_level_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
