/*
 * Unit tests for proxy/tls_ctx.c: contexts built from a config snapshot,
 * exercised by real handshakes between them in memory (a BIO pair, no
 * sockets): a TLS pool against a TLS listener with and without client
 * certificates, names and IP SANs verified, the refusals and their texts
 * (wrong CA, wrong host, missing client certificate, version below the
 * minimum), verify false, sessions resumed per endpoint, agent identities
 * from CN or DNS SAN, contexts outliving their set (a reload under an
 * established connection), and the expiry list.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/tls_ctx.h"
#include "tests/unit/unit_pki.h"

static struct unit_pki pki;

#define pem(name) unit_pki_path(&pki, name)
#define fmt       unit_pki_printf

/* A snapshot and its contexts. */
struct built {
    struct config *cfg;
    struct tls_ctx_set *set;
};

static struct built build(const char *text)
{
    struct built b = {0};
    struct config_error err;
    int rc = config_parse_flags(text, strlen(text), "t.json", CONFIG_ALLOW_TLS, &b.cfg, &err);
    if (rc) {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        print_error("%s\n", msg);
    }
    assert_int_equal(rc, 0);
    char why[256];
    rc = tls_ctx_set_build(b.cfg, &b.set, why, sizeof(why));
    if (rc)
        print_error("%s\n", why);
    assert_int_equal(rc, 0);
    return b;
}

static void unbuild(struct built *b)
{
    tls_ctx_set_free(b->set);
    config_unref(b->cfg);
}

/*
 * Listener 0: server.pem, with client_ca (when mtls) and min_version lmin.
 * Pool 0 "up": dials endpoint ep with the tls object ptls.
 */
static struct built setup(bool mtls, const char *lmin, const char *ep, const char *ptls)
{
    return build(fmt(
        "{\"listeners\": [{\"address\": \"127.0.0.1:1\", \"tls\": {\"cert_file\": \"%s\", "
        "\"key_file\": \"%s\", \"min_version\": \"%s\"%s%s%s}}],\n"
        " \"pools\": [{\"name\": \"up\", \"endpoints\": [\"%s\", \"10.0.0.9:7\"], \"tls\": %s}]}",
        pem("server.pem"), pem("server.key"), lmin, mtls ? ", \"client_ca_file\": \"" : "",
        mtls ? pem("ca.pem") : "", mtls ? "\"" : "", ep, ptls));
}

/* One connection's two ends, joined by a BIO pair. */
struct hs {
    SSL *client, *server;
    int crc, src;              /* last SSL_do_handshake results */
    char cwhy[256], swhy[256]; /* tls_ctx_error_text of a side that failed */
};

/* Runs the handshake to its end on both sides; then lets the client read
 * what followed (TLS 1.3 session tickets). Returns true when both ends
 * completed. */
static bool handshake(struct hs *h, SSL *client, SSL *server)
{
    h->client = client;
    h->server = server;
    BIO *cb = NULL, *sb = NULL;
    assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    SSL_set_bio(client, cb, cb);
    SSL_set_bio(server, sb, sb);
    SSL_set_accept_state(server);
    h->crc = h->src = 0;
    h->cwhy[0] = h->swhy[0] = '\0';
    /* Each side steps until it is done or fails; a side that failed stays
     * failed, so the other gets to read its alert. */
    for (int i = 0; i < 20 && (h->crc != 1 || h->src != 1); i++) {
        if (h->crc != 1 && !h->cwhy[0]) {
            h->crc = SSL_do_handshake(client);
            if (h->crc <= 0 && SSL_get_error(client, h->crc) != SSL_ERROR_WANT_READ)
                tls_ctx_error_text(client, h->crc, h->cwhy, sizeof(h->cwhy));
        }
        if (h->src != 1 && !h->swhy[0]) {
            h->src = SSL_do_handshake(server);
            if (h->src <= 0 && SSL_get_error(server, h->src) != SSL_ERROR_WANT_READ)
                tls_ctx_error_text(server, h->src, h->swhy, sizeof(h->swhy));
        }
        if ((h->cwhy[0] || h->crc == 1) && (h->swhy[0] || h->src == 1) && i > 0)
            break;
    }
    if (h->crc == 1 && h->src == 1) {
        char c;
        assert_int_equal(SSL_write(server, "x", 1), 1);
        assert_int_equal(SSL_read(client, &c, 1), 1); /* tickets come before it */
        assert_int_equal(c, 'x');
        return true;
    }
    /* Let the side that did not fail see the alert (TLS 1.3 clients finish
     * before the server has checked their certificate). */
    if (h->crc != 1 && h->src == 1 && (h->src = SSL_read(server, &(char){0}, 1)) <= 0)
        tls_ctx_error_text(server, h->src, h->swhy, sizeof(h->swhy));
    if (h->src != 1 && h->crc == 1 && (h->crc = SSL_read(client, &(char){0}, 1)) <= 0)
        tls_ctx_error_text(client, h->crc, h->cwhy, sizeof(h->cwhy));
    return false;
}

/* Closes both ends cleanly (close_notify), as a connection ends. */
static void hs_free(struct hs *h)
{
    if (h->crc == 1 && h->src == 1) {
        SSL_shutdown(h->client);
        SSL_shutdown(h->server);
    }
    SSL_free(h->client);
    SSL_free(h->server);
    ERR_clear_error();
}

static SSL *client_for(struct built *b, size_t ep)
{
    SSL *ssl =
        tls_ctx_client_ssl(b->set->pools[0], &b->cfg->pools[0], &b->cfg->pools[0].endpoints[ep]);
    assert_non_null(ssl);
    return ssl;
}

static SSL *server_for(struct built *b)
{
    SSL *ssl = SSL_new(b->set->listeners[0]);
    assert_non_null(ssl);
    return ssl;
}

/* Expects the client's handshake to fail with text in its reason. */
static void expect_client_refused(struct built *b, const char *text)
{
    struct hs h;
    assert_false(handshake(&h, client_for(b, 0), server_for(b)));
    if (!strstr(h.cwhy, text)) {
        print_error("want ...%s..., got %s\n", text, h.cwhy);
        fail();
    }
    hs_free(&h);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_contexts_where_configured(void **state)
{
    (void)state;
    struct built b = build(fmt(
        "{\"listeners\": [{\"address\": \"127.0.0.1:1\"}, {\"address\": \"127.0.0.1:2\", "
        "\"tls\": {\"cert_file\": \"%s\", \"key_file\": \"%s\"}}],\n"
        " \"pools\": [{\"name\": \"plain\", \"endpoints\": [\"a:1\"]},"
        " {\"name\": \"up\", \"endpoints\": [\"a:2\"], \"tls\": true},"
        " {\"name\": \"agents\", \"accept\": \"127.0.0.1:3\", \"tls\": {\"cert_file\": \"%s\", "
        "\"key_file\": \"%s\", \"client_ca_file\": \"%s\"}}],"
        " \"routes\": [{\"pool\": \"plain\"}]}",
        pem("server.pem"), pem("server.key"), pem("server.pem"), pem("server.key"), pem("ca.pem")));
    assert_int_equal(b.set->n_listeners, 2);
    assert_null(b.set->listeners[0]);
    assert_non_null(b.set->listeners[1]);
    assert_int_equal(b.set->n_pools, 3);
    assert_null(b.set->pools[0]);
    assert_non_null(b.set->pools[1]);
    assert_non_null(b.set->pools[2]);
    SSL_CTX *c = b.set->pools[1], *s = b.set->pools[2];
    assert_true(SSL_CTX_get_options(c) & SSL_OP_NO_RENEGOTIATION);
    assert_true(SSL_CTX_get_mode(c) & SSL_MODE_RELEASE_BUFFERS);
    assert_true(SSL_CTX_get_mode(s) & SSL_MODE_RELEASE_BUFFERS);
    assert_int_equal(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER);
    assert_int_equal(SSL_CTX_get_verify_mode(s), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    assert_int_equal(SSL_CTX_get_verify_mode(b.set->listeners[1]), SSL_VERIFY_NONE);
    assert_false(SSL_CTX_get_options(s) & SSL_OP_NO_TICKET);
    unbuild(&b);
}

static void test_expiry_of_every_configured_certificate(void **state)
{
    (void)state;
    struct built b = build(fmt(
        "{\"listeners\": [{\"name\": \"in\", \"address\": \"127.0.0.1:1\", \"tls\": "
        "{\"cert_file\": "
        "\"%s\", \"key_file\": \"%s\", \"client_ca_file\": \"%s\"}}],\n"
        " \"pools\": [{\"name\": \"up\", \"endpoints\": [\"a:2\"], \"tls\": {\"ca_file\": \"%s\", "
        "\"cert_file\": \"%s\", \"key_file\": \"%s\"}},"
        " {\"name\": \"sys\", \"endpoints\": [\"a:3\"], \"tls\": true}],"
        " \"routes\": [{\"pool\": \"up\"}]}",
        pem("chain.pem"), pem("server.key"), pem("ca.pem"), pem("other_ca.pem"), pem("client.pem"),
        pem("client.key")));
    /* chain.pem: cert + chain; client_ca; the pool's cert and ca. The
     * system store of "sys" is not configured, so not listed. */
    assert_int_equal(b.set->n_expiry, 5);
    const struct tls_expiry *e = b.set->expiry;
    assert_string_equal(e[0].kind, "listener");
    assert_string_equal(e[0].owner, "in");
    assert_string_equal(e[0].role, "cert");
    assert_string_equal(e[0].file, pem("chain.pem"));
    assert_string_equal(e[0].subject, "CN=server");
    assert_string_equal(e[1].role, "chain");
    assert_string_equal(e[1].subject, "CN=drpc-test-ca");
    assert_string_equal(e[2].role, "client_ca");
    assert_string_equal(e[3].kind, "pool");
    assert_string_equal(e[3].owner, "up");
    assert_string_equal(e[3].role, "cert");
    assert_string_equal(e[3].subject, "CN=agent-1");
    assert_string_equal(e[4].role, "ca");
    assert_string_equal(e[4].subject, "CN=other-test-ca");
    int64_t now = (int64_t)time(NULL), month = 30LL * 86400;
    for (size_t i = 0; i < b.set->n_expiry; i++)
        assert_true(e[i].not_after > now + month - 3600 && e[i].not_after <= now + month + 60);
    unbuild(&b);
}

static void test_ip_endpoint_verified_by_ip_san(void **state)
{
    (void)state;
    struct built b =
        setup(false, "1.2", "127.0.0.1:7", fmt("{\"ca_file\": \"%s\"}", pem("ca.pem")));
    struct hs h;
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_int_equal(SSL_get_verify_result(h.client), X509_V_OK);
    assert_null(SSL_get_servername(h.server, TLSEXT_NAMETYPE_host_name)); /* no SNI for an IP */
    hs_free(&h);
    /* 10.0.0.9 is not among the certificate's SANs. */
    assert_false(handshake(&h, client_for(&b, 1), server_for(&b)));
    assert_string_equal(h.cwhy, "tls: certificate verify failed: IP address mismatch");
    hs_free(&h);
    unbuild(&b);
}

static void test_host_name_sni_and_server_name(void **state)
{
    (void)state;
    struct built b =
        setup(false, "1.2", "localhost:7", fmt("{\"ca_file\": \"%s\"}", pem("ca.pem")));
    struct hs h;
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_string_equal(SSL_get_servername(h.server, TLSEXT_NAMETYPE_host_name), "localhost");
    hs_free(&h);
    unbuild(&b);

    b = setup(false, "1.2", "127.0.0.1:7",
              fmt("{\"ca_file\": \"%s\", \"server_name\": \"wrong.example\"}", pem("ca.pem")));
    expect_client_refused(&b, "tls: certificate verify failed: hostname mismatch");
    unbuild(&b);

    b = setup(false, "1.2", "127.0.0.1:7",
              fmt("{\"ca_file\": \"%s\", \"server_name\": \"localhost\"}", pem("ca.pem")));
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_string_equal(SSL_get_servername(h.server, TLSEXT_NAMETYPE_host_name), "localhost");
    hs_free(&h);
    unbuild(&b);
}

static void test_wrong_ca_and_verify_false(void **state)
{
    (void)state;
    struct built b =
        setup(false, "1.2", "127.0.0.1:7", fmt("{\"ca_file\": \"%s\"}", pem("other_ca.pem")));
    expect_client_refused(&b,
                          "tls: certificate verify failed: unable to get local issuer certificate");
    unbuild(&b);
    /* The system store (SSL_CERT_FILE, the other CA here) by default. */
    setenv("SSL_CERT_FILE", pem("other_ca.pem"), 1);
    b = setup(false, "1.2", "127.0.0.1:7", "true");
    expect_client_refused(&b, "unable to get local issuer certificate");
    unbuild(&b);
    setenv("SSL_CERT_FILE", pem("ca.pem"), 1);
    b = setup(false, "1.2", "127.0.0.1:7", "true");
    struct hs h;
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    hs_free(&h);
    unbuild(&b);
    /* Encrypted, not verified: wrong names and CAs pass. */
    b = setup(false, "1.2", "10.0.0.9:7", "{\"verify\": false}");
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_int_equal(SSL_CTX_get_verify_mode(b.set->pools[0]), SSL_VERIFY_NONE);
    hs_free(&h);
    unbuild(&b);
}

static void test_client_certificates(void **state)
{
    (void)state;
    /* With a client certificate: the listener sees who it is. */
    struct built b = setup(true, "1.2", "127.0.0.1:7",
                           fmt("{\"ca_file\": \"%s\", \"cert_file\": \"%s\", \"key_file\": \"%s\"}",
                               pem("ca.pem"), pem("client.pem"), pem("client.key")));
    struct hs h;
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    char id[64];
    assert_int_equal(tls_ctx_peer_identity(h.server, id, sizeof(id)), 0);
    assert_string_equal(id, "agent-1");
    assert_int_equal(tls_ctx_peer_identity(h.server, id, 4), 0); /* cut to size */
    assert_string_equal(id, "age");
    hs_free(&h);
    unbuild(&b);

    /* No CN: the first DNS SAN. */
    b = setup(true, "1.2", "127.0.0.1:7",
              fmt("{\"ca_file\": \"%s\", \"cert_file\": \"%s\", \"key_file\": \"%s\"}",
                  pem("ca.pem"), pem("nocn.pem"), pem("nocn.key")));
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_int_equal(tls_ctx_peer_identity(h.server, id, sizeof(id)), 0);
    assert_string_equal(id, "agent-2");
    hs_free(&h);
    unbuild(&b);

    /* Without one: refused at the handshake, on the server's side. */
    b = setup(true, "1.2", "127.0.0.1:7", fmt("{\"ca_file\": \"%s\"}", pem("ca.pem")));
    assert_false(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_string_equal(h.swhy, "tls: peer did not return a certificate");
    assert_int_equal(tls_ctx_peer_identity(h.server, id, sizeof(id)), UV_ENOENT);
    hs_free(&h);
    unbuild(&b);

    /* One from another CA: refused too. */
    b = setup(true, "1.2", "127.0.0.1:7",
              fmt("{\"ca_file\": \"%s\", \"cert_file\": \"%s\", \"key_file\": \"%s\"}",
                  pem("ca.pem"), pem("other.pem"), pem("other.key")));
    assert_false(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_non_null(strstr(h.swhy, "tls: certificate verify failed"));
    hs_free(&h);
    unbuild(&b);
}

static void test_min_version(void **state)
{
    (void)state;
    struct built b =
        setup(false, "1.3", "127.0.0.1:7", fmt("{\"ca_file\": \"%s\"}", pem("ca.pem")));
    SSL *c = client_for(&b, 0);
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    struct hs h;
    assert_false(handshake(&h, c, server_for(&b)));
    assert_string_equal(h.swhy, "tls: unsupported protocol");
    hs_free(&h);
    /* A 1.3 pool and a 1.2 server do not meet either. */
    unbuild(&b);
    b = setup(false, "1.2", "127.0.0.1:7",
              fmt("{\"ca_file\": \"%s\", \"min_version\": \"1.3\"}", pem("ca.pem")));
    SSL *s = server_for(&b);
    SSL_set_max_proto_version(s, TLS1_2_VERSION);
    assert_false(handshake(&h, client_for(&b, 0), s));
    assert_string_equal(h.cwhy, "tls: tlsv1 alert protocol version");
    hs_free(&h);
    unbuild(&b);
}

/* The second dial to an endpoint resumes; another endpoint does not get
 * its session; a forgotten session is not offered. */
static void resumes(const char *version)
{
    struct built b = setup(true, "1.2", "127.0.0.1:7",
                           fmt("{\"ca_file\": \"%s\", \"cert_file\": \"%s\", \"key_file\": \"%s\", "
                               "\"server_name\": \"localhost\", \"min_version\": \"%s\"}",
                               pem("ca.pem"), pem("client.pem"), pem("client.key"), version));
    struct hs h;
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_false(SSL_session_reused(h.client));
    hs_free(&h);
    for (int i = 0; i < 2; i++) {
        assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
        assert_true(SSL_session_reused(h.client));
        assert_true(SSL_session_reused(h.server));
        char id[64];
        assert_int_equal(tls_ctx_peer_identity(h.server, id, sizeof(id)), 0);
        assert_string_equal(id, "agent-1"); /* the resumed session still knows its peer */
        hs_free(&h);
    }
    /* Endpoint 1 has no session of its own (with server_name set, the
     * handshake itself succeeds). */
    assert_true(handshake(&h, client_for(&b, 1), server_for(&b)));
    assert_false(SSL_session_reused(h.client));
    hs_free(&h);
    tls_ctx_client_forget(b.set->pools[0], &b.cfg->pools[0].endpoints[0]);
    assert_true(handshake(&h, client_for(&b, 0), server_for(&b)));
    assert_false(SSL_session_reused(h.client));
    hs_free(&h);
    unbuild(&b);
}

static void test_resumption_tls12(void **state)
{
    (void)state;
    resumes("1.2");
}

static void test_resumption_tls13(void **state)
{
    (void)state;
    resumes("1.3");
}

/* A reload frees the old set: connections made from it keep their
 * contexts (SSL_new holds a reference), sessions included. */
static void test_connections_outlive_their_set(void **state)
{
    (void)state;
    struct built b =
        setup(false, "1.2", "127.0.0.1:7", fmt("{\"ca_file\": \"%s\"}", pem("ca.pem")));
    SSL *c = client_for(&b, 0), *s = server_for(&b);
    struct config *cfg = b.cfg;
    tls_ctx_set_free(b.set);
    struct hs h;
    assert_true(handshake(&h, c, s));
    hs_free(&h);
    config_unref(cfg);
}

int main(void)
{
    if (unit_pki_make(&pki) != 0)
        return 1;
    setenv("SSL_CERT_FILE", pem("ca.pem"), 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contexts_where_configured),
        cmocka_unit_test(test_expiry_of_every_configured_certificate),
        cmocka_unit_test(test_ip_endpoint_verified_by_ip_san),
        cmocka_unit_test(test_host_name_sni_and_server_name),
        cmocka_unit_test(test_wrong_ca_and_verify_false),
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_min_version),
        cmocka_unit_test(test_resumption_tls12),
        cmocka_unit_test(test_resumption_tls13),
        cmocka_unit_test(test_connections_outlive_their_set),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unit_pki_remove(&pki);
    return rc;
}
