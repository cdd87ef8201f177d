/*
 * peer_tls: OpenSSL behind memory BIOs for the test peer (see peer_tls.h).
 *
 *   feed: BIO_write(rbio) --> handshake until finished --> SSL_read until
 *         WANT_READ, appending plaintext to the caller's buffer
 *   write: SSL_write (a memory wbio never pushes back) --> output: drain wbio
 *
 * The rbio answers "retry" when empty (BIO_set_mem_eof_return -1), so SSL
 * reports WANT_READ instead of EOF: the socket's EOF is peer_conn's to see.
 */
#include "tests/peer/peer_tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define READ_STEP (16 * 1024)

struct peer_tls_ctx {
    SSL_CTX *ssl_ctx;
    bool server;
    struct peer_tls_opts opts;
    SSL_SESSION *session; /* client: the newest resumable session, or NULL */
    uint64_t handshakes, resumed;
};

struct peer_tls {
    struct peer_tls_ctx *ctx;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool ready;
    char err[PEER_TLS_ERROR_MAX];
};

/* --- options --------------------------------------------------------------- */

static int parse_version(const char *s)
{
    static const struct {
        const char *name;
        int version;
    } versions[] = {
        {"1.0", TLS1_VERSION},
        {"1.1", TLS1_1_VERSION},
        {"1.2", TLS1_2_VERSION},
        {"1.3", TLS1_3_VERSION},
    };
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
        if (strcmp(s, versions[i].name) == 0)
            return versions[i].version;
    return -1;
}

int peer_tls_opt_parse(struct peer_tls_opts *opts, int o, const char *arg)
{
    switch (o) {
    case PEER_TLS_OPT_CERT:
        opts->cert = arg;
        return 1;
    case PEER_TLS_OPT_KEY:
        opts->key = arg;
        return 1;
    case PEER_TLS_OPT_CA:
        opts->ca = arg;
        return 1;
    case PEER_TLS_OPT_CLIENT_CA:
        opts->client_ca = arg;
        return 1;
    case PEER_TLS_OPT_SERVER_NAME:
        opts->server_name = arg;
        return 1;
    case PEER_TLS_OPT_SESSION:
        opts->session = arg;
        return 1;
    case PEER_TLS_OPT_MIN:
        opts->min_version = parse_version(arg);
        return opts->min_version > 0 ? 1 : -1;
    case PEER_TLS_OPT_MAX:
        opts->max_version = parse_version(arg);
        return opts->max_version > 0 ? 1 : -1;
    case PEER_TLS_OPT_NO_VERIFY:
        opts->no_verify = true;
        return 1;
    case PEER_TLS_OPT_NO_RESUME:
        opts->no_resume = true;
        return 1;
    default:
        return 0;
    }
}

bool peer_tls_opts_wanted(const struct peer_tls_opts *o, bool server)
{
    if (server)
        return o->cert || o->key || o->client_ca;
    return o->cert || o->key || o->ca || o->server_name || o->no_verify || o->min_version ||
           o->max_version || o->session;
}

/* --- errors ---------------------------------------------------------------- */

/* "tls: REASON" from OpenSSL's error queue (or fallback), into out. */
static void ssl_error_text(char *out, size_t len, const SSL *ssl, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (e && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK)
        snprintf(out, len, "tls: certificate verify failed: %s", X509_verify_cert_error_string(v));
    else
        snprintf(out, len, "tls: %s", reason ? reason : fallback);
    ERR_clear_error();
}

/* --- contexts -------------------------------------------------------------- */

/* Client side: keep the newest session to offer on the next dial. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct peer_tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!SSL_SESSION_is_resumable(sess))
        return 0;
    if (ctx->session)
        SSL_SESSION_free(ctx->session);
    ctx->session = sess;
    return 1; /* we keep the reference */
}

static bool load_session(struct peer_tls_ctx *ctx)
{
    FILE *f = fopen(ctx->opts.session, "r");
    if (!f)
        return true; /* nothing saved yet */
    SSL_SESSION *s = PEM_read_SSL_SESSION(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (s && SSL_SESSION_is_resumable(s))
        ctx->session = s;
    else if (s)
        SSL_SESSION_free(s);
    return true;
}

void peer_tls_ctx_save_session(const struct peer_tls_ctx *ctx)
{
    if (!ctx || !ctx->opts.session || !ctx->session)
        return;
    FILE *f = fopen(ctx->opts.session, "w");
    if (!f)
        return;
    PEM_write_SSL_SESSION(f, ctx->session);
    fclose(f);
}

void peer_tls_ctx_counts(const struct peer_tls_ctx *ctx, uint64_t *handshakes, uint64_t *resumed)
{
    *handshakes = ctx ? ctx->handshakes : 0;
    *resumed = ctx ? ctx->resumed : 0;
}

static bool set_versions(SSL_CTX *c, const struct peer_tls_opts *o)
{
    int min = o->min_version, max = o->max_version;
    if (max && max < TLS1_2_VERSION) {
        /* OpenSSL 3 offers TLS 1.0/1.1 only at security level 0: the
         * point of such a client is to be refused by the other side. */
        SSL_CTX_set_security_level(c, 0);
        if (!min)
            min = TLS1_VERSION;
    }
    return (!min || SSL_CTX_set_min_proto_version(c, min)) &&
           (!max || SSL_CTX_set_max_proto_version(c, max));
}

struct peer_tls_ctx *peer_tls_ctx_new(const struct peer_tls_opts *o, bool server, char *err,
                                      size_t len)
{
    if (server && (!o->cert || !o->key)) {
        snprintf(err, len, "tls: a server needs --tls-cert and --tls-key");
        return NULL;
    }
    if (!o->cert != !o->key) {
        snprintf(err, len, "tls: --tls-cert and --tls-key go together");
        return NULL;
    }
    struct peer_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        snprintf(err, len, "out of memory");
        return NULL;
    }
    ctx->server = server;
    ctx->opts = *o;
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    ctx->ssl_ctx = c;
    if (!c)
        goto fail;
    SSL_CTX_set_app_data(c, ctx);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (!set_versions(c, o))
        goto fail;
    if (o->cert && (SSL_CTX_use_certificate_chain_file(c, o->cert) != 1 ||
                    SSL_CTX_use_PrivateKey_file(c, o->key, SSL_FILETYPE_PEM) != 1 ||
                    SSL_CTX_check_private_key(c) != 1))
        goto fail;
    if (server) {
        static const unsigned char sid_ctx[] = "drpc-testd";
        SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1);
        if (o->client_ca) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
            if (!names || SSL_CTX_load_verify_locations(c, o->client_ca, NULL) != 1)
                goto fail;
            SSL_CTX_set_client_CA_list(c, names);
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
        if (o->no_resume) { /* no tickets, no cache: every handshake is a full one */
            SSL_CTX_set_num_tickets(c, 0);
            SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
            SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        }
    } else {
        if (!o->no_verify) {
            int ok = o->ca ? SSL_CTX_load_verify_locations(c, o->ca, NULL)
                           : SSL_CTX_set_default_verify_paths(c);
            if (ok != 1)
                goto fail;
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        }
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c, new_session);
        if (o->session && !o->no_resume)
            load_session(ctx);
    }
    return ctx;
fail:
    ssl_error_text(err, len, NULL, "cannot set up the context");
    peer_tls_ctx_free(ctx);
    return NULL;
}

void peer_tls_ctx_free(struct peer_tls_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->session)
        SSL_SESSION_free(ctx->session);
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* --- connections ----------------------------------------------------------- */

/* Client side: SNI and the name checked, or the dialled IP. */
static bool set_peer_name(struct peer_tls *t, const struct sockaddr *peer)
{
    const char *name = t->ctx->opts.server_name;
    char ip[INET6_ADDRSTRLEN] = "";
    unsigned char probe[sizeof(struct in6_addr)];
    if (!name && peer) {
        const void *a = peer->sa_family == AF_INET6
                            ? (const void *)&((const struct sockaddr_in6 *)peer)->sin6_addr
                            : (const void *)&((const struct sockaddr_in *)peer)->sin_addr;
        if (!inet_ntop(peer->sa_family, a, ip, sizeof(ip)))
            return false;
        name = ip;
    }
    if (!name)
        return true;
    bool is_ip = inet_pton(AF_INET, name, probe) == 1 || inet_pton(AF_INET6, name, probe) == 1;
    if (t->ctx->opts.no_verify)
        return is_ip || SSL_set_tlsext_host_name(t->ssl, name) == 1;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1;
    return SSL_set_tlsext_host_name(t->ssl, name) == 1 && SSL_set1_host(t->ssl, name) == 1;
}

struct peer_tls *peer_tls_new(struct peer_tls_ctx *ctx, const struct sockaddr *peer)
{
    struct peer_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ctx = ctx;
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (!set_peer_name(t, peer)) {
            peer_tls_free(t);
            ERR_clear_error();
            return NULL;
        }
        if (ctx->session && !ctx->opts.no_resume)
            SSL_set_session(t->ssl, ctx->session);
    }
    return t;
}

void peer_tls_free(struct peer_tls *t)
{
    if (!t)
        return;
    /* A session whose connection ended without an error stays resumable
     * (OpenSSL drops sessions of connections freed "unshut"). */
    if (t->ready && !t->err[0])
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl);
    free(t);
}

bool peer_tls_ready(const struct peer_tls *t)
{
    return t->ready;
}

const char *peer_tls_error(const struct peer_tls *t)
{
    return t->err[0] ? t->err : "tls: error";
}

/* The result of a failed SSL call r. */
static enum peer_tls_result failed(struct peer_tls *t, int r)
{
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return PEER_TLS_OK;
    if (e == SSL_ERROR_ZERO_RETURN)
        return PEER_TLS_EOF;
    ssl_error_text(t->err, sizeof(t->err), t->ssl,
                   e == SSL_ERROR_SYSCALL ? "unexpected eof" : "protocol error");
    return PEER_TLS_ERROR;
}

static enum peer_tls_result handshake(struct peer_tls *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1)
        return failed(t, r);
    t->ready = true;
    t->ctx->handshakes++;
    if (SSL_session_reused(t->ssl))
        t->ctx->resumed++;
    return PEER_TLS_OK;
}

enum peer_tls_result peer_tls_start(struct peer_tls *t)
{
    return handshake(t);
}

enum peer_tls_result peer_tls_feed(struct peer_tls *t, const void *data, size_t len, struct buf *in)
{
    if (len > 0 && BIO_write(t->rbio, data, (int)len) != (int)len) {
        snprintf(t->err, sizeof(t->err), "tls: out of memory");
        return PEER_TLS_ERROR;
    }
    if (!t->ready) {
        enum peer_tls_result r = handshake(t);
        if (r != PEER_TLS_OK || !t->ready)
            return r;
    }
    for (;;) {
        if (buf_reserve(in, READ_STEP) != 0) {
            snprintf(t->err, sizeof(t->err), "tls: out of memory");
            return PEER_TLS_ERROR;
        }
        ERR_clear_error();
        int n = SSL_read(t->ssl, in->data + in->len, (int)(in->cap - in->len));
        if (n <= 0)
            return failed(t, n);
        in->len += (size_t)n;
    }
}

int peer_tls_write(struct peer_tls *t, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        ERR_clear_error();
        int n = SSL_write(t->ssl, p, chunk);
        if (n <= 0) {
            ssl_error_text(t->err, sizeof(t->err), t->ssl, "write failed");
            return UV_EPROTO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void peer_tls_close_notify(struct peer_tls *t)
{
    ERR_clear_error();
    if (t->ready)
        SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int peer_tls_output(struct peer_tls *t, struct buf *out)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return 0;
    if (buf_reserve(out, n) != 0)
        return UV_ENOMEM;
    int got = BIO_read(t->wbio, out->data + out->len, (int)n);
    if (got > 0)
        out->len += (size_t)got;
    return 0;
}

/* The CN of cert, or its first DNS SAN, or "-". */
static void cert_name(X509 *cert, char *out, size_t len)
{
    snprintf(out, len, "-");
    if (!cert)
        return;
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)len) > 0)
        return;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            snprintf(out, len, "%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
            break;
        }
    }
    GENERAL_NAMES_free(sans);
}

void peer_tls_describe(const struct peer_tls *t, char *out, size_t len)
{
    char cn[128];
    cert_name(SSL_get0_peer_certificate(t->ssl), cn, sizeof(cn));
    snprintf(out, len, "%s %d %s", SSL_get_version(t->ssl), SSL_session_reused(t->ssl) ? 1 : 0, cn);
}
