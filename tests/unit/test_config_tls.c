/*
 * Unit tests for the config's tls objects (config/config_tls.c): both
 * forms with every key, the shorthand, the effective JSON (paths, never
 * key material), the warning for verify false, and every refusal with its
 * JSON path, line and column: both-or-neither, unreadable files, a key
 * that does not match its certificate, an expired own certificate, files
 * with no PEM in them, keys of the other form; and that config_parse and
 * config_load accept tls objects without any flag. Certificates come from unit_pki (made at test
 * time); SSL_CERT_FILE points the "system store" at the test CA.
 *
 * Error cases mark the expected position with a backquote (`), as in
 * test_config.c.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "config/config.h"
#include "tests/unit/unit_pki.h"

static struct unit_pki pki;

#define pem(name) unit_pki_path(&pki, name)
#define fmt       unit_pki_printf

#define L1 "\"listeners\": [{\"address\": \"127.0.0.1:1\"}]"

static struct config *parse_ok(const char *text)
{
    struct config *cfg = NULL;
    struct config_error err;
    int rc = config_parse_flags(text, strlen(text), "t.json", CONFIG_ALLOW_TLS, &cfg, &err);
    if (rc != 0) {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        print_error("unexpected error: %s\nin: %s\n", msg, text);
    }
    assert_int_equal(rc, 0);
    return cfg;
}

/* line:column of byte offset off, counted like the loader (characters). */
static void position_of(const char *text, size_t off, int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < off; i++) {
        unsigned char b = (unsigned char)text[i];
        if (b == '\n') {
            (*line)++;
            *column = 1;
        } else if ((b & 0xC0) != 0x80) {
            (*column)++;
        }
    }
}

/* Parses marked (one ` at the expected position) with flags and checks
 * the error's path, position and that its text contains text. */
static void expect_error(unsigned flags, const char *marked, const char *path, const char *text)
{
    char buf[8192];
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
    int rc = config_parse_flags(buf, len, "t.json", flags, &cfg, &err);
    char msg[1024];
    config_error_format(&err, msg, sizeof(msg));
    if (rc != UV_EINVAL || cfg != NULL || strcmp(err.path, path) != 0 || err.line != line ||
        err.column != column || !strstr(err.text, text)) {
        print_error("case: %s\n  want: t.json:%d:%d: %s: ...%s...\n  got:  %s (rc %d)\n", marked,
                    line, column, path, text, msg, rc);
        fail();
    }
}

static void expect_tls_error(const char *marked, const char *path, const char *text)
{
    expect_error(CONFIG_ALLOW_TLS, marked, path, text);
}

/* A dialled pool whose tls object is body. */
static const char *pool_tls(const char *body)
{
    return fmt("{" L1 ", \"pools\": [{\"name\": \"p\", \"endpoints\": [\"127.0.0.1:2\"],\n"
               " \"tls\": %s}]}",
               body);
}

/* A listener whose tls object is body. */
static const char *listener_tls(const char *body)
{
    return fmt("{\"listeners\": [{\"address\": \"127.0.0.1:1\",\n \"tls\": %s}],"
               " \"pools\": [{\"name\": \"p\", \"endpoints\": [\"a:1\"]}]}",
               body);
}

/* ---- accepted forms ------------------------------------------------------------- */

static void test_client_form_every_key(void **state)
{
    (void)state;
    struct config *cfg = parse_ok(pool_tls(
        fmt("{\"ca_file\": \"%s\", \"cert_file\": \"%s\", \"key_file\": \"%s\", \"server_name\": "
            "\"storage.internal\", \"verify\": true, \"min_version\": \"1.3\"}",
            pem("ca.pem"), pem("client.pem"), pem("client.key"))));
    const struct config_tls_client *t = &cfg->pools[0].tls;
    assert_true(t->enabled);
    assert_true(t->verify);
    assert_int_equal(t->min_version, CONFIG_TLS_1_3);
    assert_string_equal(t->server_name, "storage.internal");
    assert_string_equal(t->ca.path, pem("ca.pem"));
    assert_non_null(strstr(t->ca.data, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(t->key.data, "PRIVATE KEY"));
    assert_int_equal(strlen(t->cert.data), t->cert.len);
    assert_null(cfg->system_ca.path); /* a ca_file: the system store is not read */
    config_unref(cfg);
}

static void test_shorthand_true_and_system_store(void **state)
{
    (void)state;
    struct config *cfg = parse_ok(pool_tls("true"));
    const struct config_tls_client *t = &cfg->pools[0].tls;
    assert_true(t->enabled);
    assert_true(t->verify);
    assert_int_equal(t->min_version, CONFIG_TLS_1_2);
    assert_null(t->ca.path);
    assert_null(t->cert.path);
    assert_null(t->server_name);
    /* SSL_CERT_FILE (set in main) names the store OpenSSL would use. */
    assert_string_equal(cfg->system_ca.path, pem("ca.pem"));
    assert_non_null(strstr(cfg->system_ca.data, "BEGIN CERTIFICATE"));
    config_unref(cfg);

    cfg = parse_ok(pool_tls("false"));
    assert_false(cfg->pools[0].tls.enabled);
    assert_null(cfg->system_ca.path);
    config_unref(cfg);
}

static void test_server_forms(void **state)
{
    (void)state;
    const char *text = fmt(
        "{\"listeners\": [{\"address\": \"127.0.0.1:1\", \"tls\": {\"cert_file\": \"%s\", "
        "\"key_file\": \"%s\", \"client_ca_file\": \"%s\", \"min_version\": \"1.3\"}}],\n"
        " \"pools\": [{\"name\": \"agents\", \"accept\": \"127.0.0.1:3\", \"tls\": "
        "{\"cert_file\": \"%s\", \"key_file\": \"%s\"}}]}",
        pem("chain.pem"), pem("server.key"), pem("ca.pem"), pem("server.pem"), pem("server.key"));
    struct config *cfg = parse_ok(text);
    const struct config_tls_server *l = &cfg->listeners[0].tls;
    assert_true(l->enabled);
    assert_int_equal(l->min_version, CONFIG_TLS_1_3);
    assert_string_equal(l->client_ca.path, pem("ca.pem"));
    const struct config_tls_server *a = &cfg->pools[0].accept_tls;
    assert_true(a->enabled);
    assert_null(a->client_ca.path);
    assert_int_equal(a->min_version, CONFIG_TLS_1_2);
    assert_false(cfg->pools[0].tls.enabled);
    config_unref(cfg);
}

/* The effective JSON names the files and never holds their contents; it
 * loads again to the same JSON. */
static void test_json_paths_not_keys(void **state)
{
    (void)state;
    const char *text = fmt(
        "{\"listeners\": [{\"address\": \"127.0.0.1:1\", \"tls\": {\"cert_file\": \"%s\", "
        "\"key_file\": \"%s\", \"client_ca_file\": \"%s\"}}],\n"
        " \"pools\": [{\"name\": \"p\", \"endpoints\": [\"127.0.0.1:2\"], \"tls\": {\"cert_file\": "
        "\"%s\", \"key_file\": \"%s\", \"verify\": false}},\n"
        "  {\"name\": \"q\", \"endpoints\": [\"127.0.0.1:4\"], \"tls\": true},\n"
        "  {\"name\": \"r\", \"accept\": \"127.0.0.1:3\", \"tls\": {\"cert_file\": \"%s\", "
        "\"key_file\": \"%s\"}}],\n"
        " \"routes\": [{\"pool\": \"p\"}]}",
        pem("server.pem"), pem("server.key"), pem("ca.pem"), pem("client.pem"), pem("client.key"),
        pem("server.pem"), pem("server.key"));
    struct config *cfg = parse_ok(text);
    json_t *j = config_to_json(cfg, true);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_SORT_KEYS);
    assert_null(strstr(s, "PRIVATE KEY"));
    assert_null(strstr(s, "BEGIN"));
    json_t *lt = json_object_get(json_array_get(json_object_get(j, "listeners"), 0), "tls");
    assert_string_equal(json_string_value(json_object_get(lt, "key_file")), pem("server.key"));
    assert_string_equal(json_string_value(json_object_get(lt, "client_ca_file")), pem("ca.pem"));
    assert_string_equal(json_string_value(json_object_get(lt, "min_version")), "1.2");
    json_t *pools = json_object_get(j, "pools");
    json_t *pt = json_object_get(json_array_get(pools, 0), "tls");
    assert_true(json_is_false(json_object_get(pt, "verify")));
    assert_null(json_object_get(pt, "ca_file"));
    json_t *qt = json_object_get(json_array_get(pools, 1), "tls");
    assert_true(json_is_true(json_object_get(qt, "verify")));
    assert_int_equal(json_object_size(qt), 2); /* verify and min_version: the defaults */
    assert_non_null(json_object_get(json_array_get(pools, 2), "tls"));

    /* Round trip: the JSON loads (re-reading the files) to the same JSON. */
    struct config *cfg2 = parse_ok(s);
    json_t *j2 = config_to_json(cfg2, true);
    char *s2 = json_dumps(j2, JSON_SORT_KEYS);
    assert_string_equal(s, s2);
    free(s);
    free(s2);
    json_decref(j);
    json_decref(j2);
    config_unref(cfg2);
    config_unref(cfg);
}

static void collect(const char *text, void *arg)
{
    snprintf(arg, 512, "%s", text);
}

static void test_verify_false_warns(void **state)
{
    (void)state;
    char said[512] = "";
    struct config *cfg = parse_ok(pool_tls("{\"verify\": false}"));
    assert_false(cfg->pools[0].tls.verify);
    assert_null(cfg->system_ca.path); /* nothing to verify against */
    assert_int_equal(config_tls_warnings(cfg, collect, said), 1);
    assert_non_null(strstr(said, "pool p: tls.verify is false"));
    config_unref(cfg);

    said[0] = '\0';
    cfg = parse_ok(pool_tls("true"));
    assert_int_equal(config_tls_warnings(cfg, collect, said), 0);
    assert_string_equal(said, "");
    config_unref(cfg);
}

/* ---- refusals ------------------------------------------------------------------- */

/* Plain config_parse accepts tls objects (CONFIG_ALLOW_TLS has no effect
 * any more) and still reports a broken one. */
static void test_accepted_without_flag(void **state)
{
    (void)state;
    struct config *cfg = NULL;
    struct config_error err;
    const char *on = pool_tls("true");
    assert_int_equal(config_parse(on, strlen(on), "t.json", &cfg, &err), 0);
    assert_true(cfg->pools[0].tls.enabled);
    config_unref(cfg);
    const char *l = listener_tls(
        fmt("{\"cert_file\": \"%s\", \"key_file\": \"%s\"}", pem("server.pem"), pem("server.key")));
    assert_int_equal(config_parse(l, strlen(l), "t.json", &cfg, &err), 0);
    assert_true(cfg->listeners[0].tls.enabled);
    config_unref(cfg);
    expect_error(0,
                 pool_tls(fmt("{\"cert_file\": \"%s\", \"key_file\": `\"%s\"}", pem("server.pem"),
                              pem("client.key"))),
                 "pools[0].tls.key_file", "does not match");
    const char *off = pool_tls("false");
    assert_int_equal(config_parse(off, strlen(off), "t.json", &cfg, &err), 0);
    config_unref(cfg);
}

static void test_both_or_neither(void **state)
{
    (void)state;
    expect_tls_error(pool_tls(fmt("{\"cert_file\": `\"%s\"}", pem("client.pem"))),
                     "pools[0].tls.cert_file", "needs key_file too: give both or neither");
    expect_tls_error(pool_tls(fmt("{\"key_file\": `\"%s\"}", pem("client.key"))),
                     "pools[0].tls.key_file", "needs cert_file too: give both or neither");
    expect_tls_error(listener_tls(fmt("{\"key_file\": `\"%s\"}", pem("server.key"))),
                     "listeners[0].tls.key_file", "needs cert_file too");
    /* A server needs its certificate: reported at the object lacking it. */
    expect_tls_error(listener_tls(fmt("`{\"client_ca_file\": \"%s\"}", pem("ca.pem"))),
                     "listeners[0].tls.cert_file", "required key is missing");
}

static void test_files_refused(void **state)
{
    (void)state;
    expect_tls_error(pool_tls(fmt("{\"cert_file\": `\"%s\", \"key_file\": \"%s\"}",
                                  pem("missing.pem"), pem("client.key"))),
                     "pools[0].tls.cert_file",
                     fmt("cannot read %s: No such file or directory", pem("missing.pem")));
    expect_tls_error(pool_tls(fmt("{\"ca_file\": `\"%s\"}", pki.dir)), "pools[0].tls.ca_file",
                     "not a regular file");
    expect_tls_error(pool_tls(fmt("{\"ca_file\": `\"%s\"}", pem("garbage.pem"))),
                     "pools[0].tls.ca_file", "holds no PEM certificate");
    expect_tls_error(listener_tls(fmt("{\"cert_file\": `\"%s\", \"key_file\": \"%s\"}",
                                      pem("garbage.pem"), pem("server.key"))),
                     "listeners[0].tls.cert_file", "holds no PEM certificate");
    expect_tls_error(listener_tls(fmt("{\"cert_file\": \"%s\", \"key_file\": `\"%s\"}",
                                      pem("server.pem"), pem("server.pem"))),
                     "listeners[0].tls.key_file", "holds no usable PEM private key");
    expect_tls_error(
        listener_tls(
            fmt("{\"cert_file\": \"%s\", \"key_file\": \"%s\", \"client_ca_file\": `\"%s\"}",
                pem("server.pem"), pem("server.key"), pem("nope.pem"))),
        "listeners[0].tls.client_ca_file", "cannot read");
}

static void test_key_mismatch_and_expiry(void **state)
{
    (void)state;
    expect_tls_error(listener_tls(fmt("{\"cert_file\": \"%s\", \"key_file\": `\"%s\"}",
                                      pem("server.pem"), pem("server2.key"))),
                     "listeners[0].tls.key_file",
                     fmt("the key in %s does not match the certificate in %s", pem("server2.key"),
                         pem("server.pem")));
    expect_tls_error(pool_tls(fmt("{\"cert_file\": \"%s\", \"key_file\": `\"%s\"}",
                                  pem("client.pem"), pem("server.key"))),
                     "pools[0].tls.key_file", "does not match the certificate");
    expect_tls_error(listener_tls(fmt("{\"cert_file\": `\"%s\", \"key_file\": \"%s\"}",
                                      pem("expired.pem"), pem("expired.key"))),
                     "listeners[0].tls.cert_file",
                     fmt("the certificate in %s expired at ", pem("expired.pem")));
    /* A chain file: the first certificate is the own one. */
    struct config *cfg = parse_ok(listener_tls(
        fmt("{\"cert_file\": \"%s\", \"key_file\": \"%s\"}", pem("chain.pem"), pem("server.key"))));
    config_unref(cfg);
}

static void test_reverse_pool_takes_listener_form(void **state)
{
    (void)state;
    const char *head = "{" L1 ", \"pools\": [{\"name\": \"a\", \"accept\": \"127.0.0.1:3\",\n";
    expect_tls_error(fmt("%s \"tls\": {\"cert_file\": \"%s\", \"key_file\": \"%s\", `\"ca_file\": "
                         "\"%s\"}}]}",
                         head, pem("server.pem"), pem("server.key"), pem("ca.pem")),
                     "pools[0].tls.ca_file", "only applies to dialled pools");
    expect_tls_error(fmt("%s \"tls\": `true}]}", head), "pools[0].tls",
                     "must be an object with cert_file and key_file");
}

static void test_keys_and_types(void **state)
{
    (void)state;
    expect_tls_error(pool_tls("`\"yes\""), "pools[0].tls",
                     "must be true, false or an object, not a string");
    expect_tls_error(pool_tls("{\"verify\": `\"no\"}"), "pools[0].tls.verify",
                     "must be true or false");
    expect_tls_error(pool_tls("{\"min_version\": `\"1.1\"}"), "pools[0].tls.min_version",
                     "must be one of \"1.2\", \"1.3\"");
    expect_tls_error(pool_tls("{`\"ca_fil\": \"x\"}"), "pools[0].tls.ca_fil",
                     "unknown key \"ca_fil\" (did you mean \"ca_file\"?)");
    expect_tls_error(pool_tls("{`\"client_ca_file\": \"x\"}"), "pools[0].tls.client_ca_file",
                     "only applies where the sidecar is the TLS server");
    expect_tls_error(listener_tls("{`\"verify\": false}"), "listeners[0].tls.verify",
                     "only applies to dialled pools");
    expect_tls_error(listener_tls("`\"on\""), "listeners[0].tls", "must be an object");
    expect_tls_error(pool_tls("{\"server_name\": `\"bad name!\"}"), "pools[0].tls.server_name",
                     "must be a host name or an IP address");
    expect_tls_error(pool_tls("{\"server_name\": `\"\"}"), "pools[0].tls.server_name",
                     "must not be empty");
    expect_tls_error(pool_tls(fmt("{\"verify\": false, \"ca_file\": `\"%s\"}", pem("ca.pem"))),
                     "pools[0].tls.ca_file", "has no effect with \"verify\": false");
    expect_tls_error("{" L1 ", \"pools\": [{\"name\": \"p\", \"endpoints\": [\"unix:/x\"],\n"
                     " \"tls\": `true}]}",
                     "pools[0].tls", "needs server_name: endpoints[0] is a unix: address");
    /* With a name to verify, a unix endpoint is fine; IP literals are names too. */
    struct config *cfg = parse_ok("{" L1 ", \"pools\": [{\"name\": \"p\", \"endpoints\": "
                                  "[\"unix:/x\"], \"tls\": {\"server_name\": \"::1\"}}]}");
    config_unref(cfg);
}

static void test_system_store_unreadable(void **state)
{
    (void)state;
    setenv("SSL_CERT_FILE", pem("none.pem"), 1);
    expect_tls_error(pool_tls("`true"), "pools[0].tls",
                     "(the system CA store, used without ca_file)");
    /* Not needed without verification or with a ca_file. */
    config_unref(parse_ok(pool_tls("{\"verify\": false}")));
    config_unref(parse_ok(pool_tls(fmt("{\"ca_file\": \"%s\"}", pem("ca.pem")))));
    setenv("SSL_CERT_FILE", pem("ca.pem"), 1);
}

/* config_load_flags reads the file and passes the flag on. */
static void test_load_flags(void **state)
{
    (void)state;
    const char *path = pem("c.json");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(pool_tls("true"), f);
    fclose(f);
    struct config *cfg = NULL;
    struct config_error err;
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_true(cfg->pools[0].tls.enabled);
    config_unref(cfg);
    assert_int_equal(config_load_flags(path, CONFIG_ALLOW_TLS, &cfg, &err), 0);
    assert_true(cfg->pools[0].tls.enabled);
    config_unref(cfg);
}

int main(void)
{
    if (unit_pki_make(&pki) != 0)
        return 1;
    setenv("SSL_CERT_FILE", pem("ca.pem"), 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_form_every_key),
        cmocka_unit_test(test_shorthand_true_and_system_store),
        cmocka_unit_test(test_server_forms),
        cmocka_unit_test(test_json_paths_not_keys),
        cmocka_unit_test(test_verify_false_warns),
        cmocka_unit_test(test_accepted_without_flag),
        cmocka_unit_test(test_both_or_neither),
        cmocka_unit_test(test_files_refused),
        cmocka_unit_test(test_key_mismatch_and_expiry),
        cmocka_unit_test(test_reverse_pool_takes_listener_form),
        cmocka_unit_test(test_keys_and_types),
        cmocka_unit_test(test_system_store_unreadable),
        cmocka_unit_test(test_load_flags),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unit_pki_remove(&pki);
    return rc;
}
