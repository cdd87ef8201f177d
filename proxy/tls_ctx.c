/*
 * tls_ctx: OpenSSL contexts from a config snapshot (see tls_ctx.h).
 *
 * Owns the SSL_CTXs of a set (one reference each; connections take their
 * own through SSL_new), the per-endpoint session cache of client contexts
 * (hung on the SSL_CTX as ex_data, so it lives exactly as long as the last
 * connection using the context) and the expiry list.
 *
 *   dial to ep:  tls_ctx_client_ssl ──SSL_set_session(ep's last)──▶ handshake
 *                                                   │ server sends a session
 *                new_session_cb ◀───────────────────┘ (TLS 1.3: after it)
 *                      └─▶ ep's slot: the previous session freed, this one kept
 */
#include "proxy/tls_ctx.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define SESSION_ID_CONTEXT "drpc-sidecar"

/* One endpoint's last session. */
struct session_slot {
    char *key; /* the endpoint's address text */
    SSL_SESSION *sess;
};

/* A client context's sessions, one slot per endpoint of its pool. */
struct session_cache {
    struct session_slot *slots;
    size_t n;
};

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ctx_cache_idx = -1; /* SSL_CTX ex_data: struct session_cache * */
static int ssl_slot_idx = -1;  /* SSL ex_data: struct session_slot * */

static void cache_free(struct session_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        SSL_SESSION_free(c->slots[i].sess);
        free(c->slots[i].key);
    }
    free(c->slots);
    free(c);
}

/* Frees a client context's session cache with the context. */
static void cache_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    cache_free(ptr);
}

static void ex_init(void)
{
    ctx_cache_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, cache_ex_free);
    ssl_slot_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- parsing from memory ------------------------------------------------------ */

static BIO *mem_bio(const struct config_tls_file *f)
{
    return BIO_new_mem_buf(f->data, (int)f->len);
}

/* Every certificate of f, in order; NULL when out of memory or none. */
static STACK_OF(X509) * read_certs(const struct config_tls_file *f)
{
    BIO *bio = mem_bio(f);
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509 *x;
    while (bio && certs && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        if (!sk_X509_push(certs, x))
            X509_free(x);
    BIO_free(bio);
    ERR_clear_error(); /* the end of the data reads as "no start line" */
    if (certs && sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        certs = NULL;
    }
    return certs;
}

static int fail(char *err, size_t size, const char *what, const char *name, const char *step)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, size, "%s %s: tls: %s: %s", what, name, step, r ? r : "out of memory");
    ERR_clear_error();
    return e ? UV_EINVAL : UV_ENOMEM;
}

/* ---- expiry --------------------------------------------------------------------- */

static int64_t asn1_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

static int add_expiry(struct tls_ctx_set *set, const char *kind, const char *owner,
                      const char *role, const char *file, X509 *x)
{
    struct tls_expiry *e = realloc(set->expiry, (set->n_expiry + 1) * sizeof(*e));
    if (!e)
        return UV_ENOMEM;
    set->expiry = e;
    e = &set->expiry[set->n_expiry];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->role = role;
    e->not_after = asn1_unix(X509_get0_notAfter(x));
    char subject[512] = "";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(b, subject, sizeof(subject) - 1);
        subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    e->owner = strdup(owner);
    e->file = strdup(file);
    e->subject = strdup(subject);
    set->n_expiry++; /* counted now, so a partial entry is freed */
    return e->owner && e->file && e->subject ? 0 : UV_ENOMEM;
}

/* Adds every certificate of f to the expiry list: role for the first,
 * rest_role for the others. */
static int expiry_of_file(struct tls_ctx_set *set, const char *kind, const char *owner,
                          const char *role, const char *rest_role, const struct config_tls_file *f)
{
    STACK_OF(X509) *certs = read_certs(f);
    if (!certs)
        return UV_ENOMEM;
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_X509_num(certs); i++)
        rc = add_expiry(set, kind, owner, i ? rest_role : role, f->path, sk_X509_value(certs, i));
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/* ---- contexts ------------------------------------------------------------------- */

static SSL_CTX *new_ctx(const SSL_METHOD *method, enum config_tls_version min)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, min == CONFIG_TLS_1_3 ? TLS1_3_VERSION
                                                                 : TLS1_2_VERSION) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Never prompts on a terminal: config_tls.c refused encrypted keys already. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* cert_file (leaf, then chain) and key_file into ctx. */
static int use_own(SSL_CTX *ctx, const struct config_tls_file *cert,
                   const struct config_tls_file *key, const char *what, const char *name, char *err,
                   size_t size)
{
    STACK_OF(X509) *chain = read_certs(cert);
    if (!chain)
        return fail(err, size, what, name, "cert_file");
    int ok = SSL_CTX_use_certificate(ctx, sk_X509_value(chain, 0)) == 1;
    for (int i = 1; ok && i < sk_X509_num(chain); i++)
        ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) == 1;
    sk_X509_pop_free(chain, X509_free);
    if (!ok)
        return fail(err, size, what, name, "cert_file");
    BIO *bio = mem_bio(key);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    ok = pkey && SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    return ok ? 0 : fail(err, size, what, name, "key_file");
}

/* Trusts every certificate of f; with client_list, also names them to
 * clients as acceptable issuers. */
static int trust(SSL_CTX *ctx, const struct config_tls_file *f, bool client_list)
{
    STACK_OF(X509) *certs = read_certs(f);
    if (!certs)
        return 0;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int ok = 1;
    for (int i = 0; ok && i < sk_X509_num(certs); i++) {
        ok = X509_STORE_add_cert(store, sk_X509_value(certs, i)) == 1;
        if (ok && client_list)
            ok = SSL_CTX_add_client_CA(ctx, sk_X509_value(certs, i)) == 1;
    }
    sk_X509_pop_free(certs, X509_free);
    return ok;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct session_slot *slot = SSL_get_ex_data(ssl, ssl_slot_idx);
    if (!slot || !SSL_SESSION_is_resumable(sess))
        return 0; /* not kept: OpenSSL frees it */
    SSL_SESSION_free(slot->sess);
    slot->sess = sess;
    return 1; /* the slot owns the reference */
}

static int build_client(const struct config *cfg, const struct config_pool *pc, SSL_CTX **out,
                        char *err, size_t size)
{
    const struct config_tls_client *t = &pc->tls;
    SSL_CTX *ctx = new_ctx(TLS_client_method(), t->min_version);
    if (!ctx)
        return fail(err, size, "pool", pc->name, "context");
    *out = ctx;
    int rc;
    if (t->cert.path && (rc = use_own(ctx, &t->cert, &t->key, "pool", pc->name, err, size)))
        return rc;
    if (t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (!trust(ctx, t->ca.path ? &t->ca : &cfg->system_ca, false))
            return fail(err, size, "pool", pc->name, t->ca.path ? "ca_file" : "system CA store");
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    struct session_cache *c = calloc(1, sizeof(*c));
    if (!c || !(c->slots = calloc(pc->n_endpoints, sizeof(*c->slots)))) {
        free(c);
        return fail(err, size, "pool", pc->name, "session cache");
    }
    for (size_t i = 0; i < pc->n_endpoints; i++, c->n++)
        if (!(c->slots[i].key = strdup(pc->endpoints[i].text))) {
            cache_free(c);
            return fail(err, size, "pool", pc->name, "session cache");
        }
    if (!SSL_CTX_set_ex_data(ctx, ctx_cache_idx, c)) {
        cache_free(c);
        return fail(err, size, "pool", pc->name, "session cache");
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    return 0;
}

static int build_server(const struct config_tls_server *t, const char *what, const char *name,
                        SSL_CTX **out, char *err, size_t size)
{
    SSL_CTX *ctx = new_ctx(TLS_server_method(), t->min_version);
    if (!ctx)
        return fail(err, size, what, name, "context");
    *out = ctx;
    int rc = use_own(ctx, &t->cert, &t->key, what, name, err, size);
    if (rc)
        return rc;
    /* Needed for resumption once client certificates are verified. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CONTEXT,
                                   sizeof(SESSION_ID_CONTEXT) - 1);
    if (t->client_ca.path) {
        if (!trust(ctx, &t->client_ca, true))
            return fail(err, size, what, name, "client_ca_file");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return 0;
}

/* The expiry entries of one server form. */
static int server_expiry(struct tls_ctx_set *set, const char *kind, const char *name,
                         const struct config_tls_server *t)
{
    int rc = expiry_of_file(set, kind, name, "cert", "chain", &t->cert);
    if (rc == 0 && t->client_ca.path)
        rc = expiry_of_file(set, kind, name, "client_ca", "client_ca", &t->client_ca);
    return rc;
}

int tls_ctx_set_build(const struct config *cfg, struct tls_ctx_set **out, char *err,
                      size_t err_size)
{
    pthread_once(&ex_once, ex_init);
    *out = NULL;
    err[0] = '\0';
    if (ctx_cache_idx < 0 || ssl_slot_idx < 0) {
        snprintf(err, err_size, "tls: cannot register ex_data indices");
        return UV_ENOMEM;
    }
    struct tls_ctx_set *set = calloc(1, sizeof(*set));
    if (!set)
        return UV_ENOMEM;
    set->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(SSL_CTX *));
    set->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(SSL_CTX *));
    int rc = set->listeners && set->pools ? 0 : UV_ENOMEM;
    if (rc == 0) {
        set->n_listeners = cfg->n_listeners;
        set->n_pools = cfg->n_pools;
    }
    for (size_t i = 0; rc == 0 && i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (!l->tls.enabled)
            continue;
        rc = build_server(&l->tls, "listener", l->name, &set->listeners[i], err, err_size);
        if (rc == 0)
            rc = server_expiry(set, "listener", l->name, &l->tls);
    }
    for (size_t i = 0; rc == 0 && i < cfg->n_pools; i++) {
        const struct config_pool *p = &cfg->pools[i];
        if (p->reverse && p->accept_tls.enabled) {
            rc = build_server(&p->accept_tls, "pool", p->name, &set->pools[i], err, err_size);
            if (rc == 0)
                rc = server_expiry(set, "pool", p->name, &p->accept_tls);
        } else if (!p->reverse && p->tls.enabled) {
            rc = build_client(cfg, p, &set->pools[i], err, err_size);
            if (rc == 0 && p->tls.cert.path)
                rc = expiry_of_file(set, "pool", p->name, "cert", "chain", &p->tls.cert);
            if (rc == 0 && p->tls.ca.path)
                rc = expiry_of_file(set, "pool", p->name, "ca", "ca", &p->tls.ca);
        }
    }
    if (rc) {
        if (!err[0])
            snprintf(err, err_size, "tls: out of memory");
        tls_ctx_set_free(set);
        return rc;
    }
    *out = set;
    return 0;
}

void tls_ctx_set_free(struct tls_ctx_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n_listeners; i++)
        SSL_CTX_free(set->listeners[i]);
    for (size_t i = 0; i < set->n_pools; i++)
        SSL_CTX_free(set->pools[i]);
    for (size_t i = 0; i < set->n_expiry; i++) {
        free(set->expiry[i].owner);
        free(set->expiry[i].file);
        free(set->expiry[i].subject);
    }
    free(set->listeners);
    free(set->pools);
    free(set->expiry);
    free(set);
}

/* ---- connections ---------------------------------------------------------------- */

static struct session_slot *slot_of(SSL_CTX *ctx, const struct config_addr *ep)
{
    struct session_cache *c = SSL_CTX_get_ex_data(ctx, ctx_cache_idx);
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->slots[i].key, ep->text) == 0)
            return &c->slots[i];
    return NULL;
}

static bool is_ip_literal(const char *s)
{
    unsigned char ip[16];
    return inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1;
}

SSL *tls_ctx_client_ssl(SSL_CTX *ctx, const struct config_pool *pc, const struct config_addr *ep)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    const char *name = pc->tls.server_name ? pc->tls.server_name : ep->host;
    bool ok = true;
    if (name && !is_ip_literal(name))
        ok = SSL_set_tlsext_host_name(ssl, name) == 1 &&
             (!pc->tls.verify || SSL_set1_host(ssl, name) == 1);
    else if (name && pc->tls.verify)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    struct session_slot *slot = slot_of(ctx, ep);
    if (ok && slot) {
        ok = SSL_set_ex_data(ssl, ssl_slot_idx, slot) == 1;
        /* A connection freed without SSL_shutdown marks its session
         * not resumable: it is not offered then. */
        if (ok && slot->sess && SSL_SESSION_is_resumable(slot->sess))
            ok = SSL_set_session(ssl, slot->sess) == 1;
    }
    if (!ok) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

void tls_ctx_client_forget(SSL_CTX *ctx, const struct config_addr *ep)
{
    struct session_slot *slot = slot_of(ctx, ep);
    if (slot) {
        SSL_SESSION_free(slot->sess);
        slot->sess = NULL;
    }
}

int tls_ctx_peer_identity(const SSL *ssl, char *buf, size_t size)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (!x || size == 0)
        return UV_ENOENT;
    X509_NAME *subj = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    const ASN1_STRING *s = NULL;
    if (i >= 0)
        s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
    GENERAL_NAMES *sans = NULL;
    if (!s && (sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)))
        for (int k = 0; !s && k < sk_GENERAL_NAME_num(sans); k++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, k);
            if (g->type == GEN_DNS)
                s = g->d.dNSName;
        }
    int rc = UV_ENOENT;
    if (s && ASN1_STRING_length(s) > 0) {
        size_t n = (size_t)ASN1_STRING_length(s);
        if (n >= size)
            n = size - 1;
        memcpy(buf, ASN1_STRING_get0_data(s), n);
        buf[n] = '\0';
        rc = 0;
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

void tls_ctx_error_text(const SSL *ssl, int ret, char *buf, size_t size)
{
    int e = SSL_get_error(ssl, ret);
    unsigned long err = ERR_peek_last_error();
    const char *reason = err ? ERR_reason_error_string(err) : NULL;
    long v = SSL_get_verify_result(ssl);
    if (err && ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK)
        snprintf(buf, size, "tls: %s: %s", reason ? reason : "certificate verify failed",
                 X509_verify_cert_error_string(v));
    else if (reason)
        snprintf(buf, size, "tls: %s", reason);
    else if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
        snprintf(buf, size, "tls: connection closed during the handshake");
    else
        snprintf(buf, size, "tls: error %d", e);
    ERR_clear_error();
}
