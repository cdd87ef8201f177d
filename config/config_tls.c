/*
 * config_tls: the "tls" objects (see config_tls.h).
 *
 *   "tls" --keys, types, both-or-neither--> paths
 *         --read (regular files, bounded)--> bytes --PEM--> X509 / EVP_PKEY
 *         --key matches certificate, own certificate not expired--> kept bytes
 *
 * The parsed OpenSSL objects are only for checking and are freed here; the
 * snapshot keeps the bytes, which proxy/tls_ctx.c parses again from memory.
 * Every refusal names the key whose file is at fault.
 */
#include "config/config_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/config_addr.h"

#define PATH_LEN CONFIG_POS_PATH_MAX

const char *const config_tls_version_names[] = {"1.2", "1.3", NULL};

static const char *const client_keys[] = {"ca_file", "cert_file",   "key_file", "server_name",
                                          "verify",  "min_version", NULL};
static const char *const server_keys[] = {"cert_file", "key_file", "client_ca_file", "min_version",
                                          NULL};

/* ---- files ------------------------------------------------------------------ */

void config_tls_file_free(struct config_tls_file *f)
{
    if (f->data) {
        OPENSSL_cleanse(f->data, f->len); /* may be a private key */
        free(f->data);
    }
    free(f->path);
    memset(f, 0, sizeof(*f));
}

/* OpenSSL's reason for the last error on this thread, and a clean queue. */
static const char *ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, size, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

/* Reads f->path whole into f->data. Only regular files: a FIFO or a device
 * named by mistake would block or never end. Blocking I/O (see config.h). */
static int read_file(struct config_reader *rd, const char *p, struct config_tls_file *f)
{
    int fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return config_read_fail(rd, p, "cannot read %s: %s", f->path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = config_read_fail(rd, p, "cannot read %s: %s", f->path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = config_read_fail(rd, p, "cannot read %s: not a regular file", f->path);
    else if ((uint64_t)st.st_size > CONFIG_TLS_FILE_MAX)
        rc =
            config_read_fail(rd, p, "%s is larger than %u MiB", f->path, CONFIG_TLS_FILE_MAX >> 20);
    else if (!(f->data = malloc((size_t)st.st_size + 1)))
        rc = UV_ENOMEM;
    while (rc == 0 && f->len < (size_t)st.st_size) {
        ssize_t n = read(fd, f->data + f->len, (size_t)st.st_size - f->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = config_read_fail(rd, p, "cannot read %s: %s", f->path, strerror(errno));
        else if (n == 0)
            break; /* shrank under us: parse what is there */
        else
            f->len += (size_t)n;
    }
    if (f->data)
        f->data[f->len] = '\0';
    close(fd);
    return rc;
}

/* Reads obj[key] (a path string) and its file; f stays empty when absent. */
static int read_path_and_file(struct config_reader *rd, const json_t *obj, const char *path,
                              const char *key, struct config_tls_file *f)
{
    int rc = config_read_string(rd, obj, path, key, false, &f->path);
    if (rc || !f->path)
        return rc;
    char p[PATH_LEN];
    config_read_join(p, path, key);
    return read_file(rd, p, f);
}

/* The certificates of f, in order; NULL (error at p) when it holds none
 * or a broken one. */
static int parse_certs(struct config_reader *rd, const char *p, const struct config_tls_file *f,
                       STACK_OF(X509) * *out)
{
    char why[256];
    *out = NULL;
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (!bio || !certs) {
        BIO_free(bio);
        sk_X509_free(certs);
        return UV_ENOMEM;
    }
    ERR_clear_error();
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
        if (!sk_X509_push(certs, x)) {
            X509_free(x);
            BIO_free(bio);
            sk_X509_pop_free(certs, X509_free);
            return UV_ENOMEM;
        }
    /* The loop ends at the end of the data ("no start line") or at a block
     * that does not parse. */
    unsigned long e = ERR_peek_last_error();
    BIO_free(bio);
    if (e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        sk_X509_pop_free(certs, X509_free);
        return config_read_fail(rd, p, "%s holds a certificate that does not parse: %s", f->path,
                                ssl_reason(why, sizeof(why)));
    }
    ERR_clear_error();
    if (sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        return config_read_fail(rd, p, "%s holds no PEM certificate", f->path);
    }
    *out = certs;
    return 0;
}

/* A PEM passphrase callback that never prompts: encrypted keys fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static void format_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "?");
}

/*
 * An own certificate (cert_file at pc) and its key (key_file at pk): the
 * first certificate of the chain must not have expired and the key must be
 * its key.
 */
static int check_own(struct config_reader *rd, const char *pc, const char *pk,
                     const struct config_tls_file *cert, const struct config_tls_file *key)
{
    STACK_OF(X509) *chain = NULL;
    int rc = parse_certs(rd, pc, cert, &chain);
    if (rc)
        return rc;
    X509 *leaf = sk_X509_value(chain, 0);
    const ASN1_TIME *na = X509_get0_notAfter(leaf);
    if (X509_cmp_current_time(na) <= 0) {
        char when[64];
        format_time(na, when, sizeof(when));
        rc = config_read_fail(rd, pc, "the certificate in %s expired at %s", cert->path, when);
    }
    EVP_PKEY *pkey = NULL;
    if (rc == 0) {
        char why[256];
        BIO *bio = BIO_new_mem_buf(key->data, (int)key->len);
        if (!bio)
            rc = UV_ENOMEM;
        else if (!(pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)))
            rc = config_read_fail(rd, pk,
                                  "%s holds no usable PEM private key (%s; encrypted keys are "
                                  "not supported)",
                                  key->path, ssl_reason(why, sizeof(why)));
        BIO_free(bio);
    }
    if (rc == 0 && X509_check_private_key(leaf, pkey) != 1)
        rc = config_read_fail(rd, pk, "the key in %s does not match the certificate in %s",
                              key->path, cert->path);
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* A CA file (at p): at least one certificate, all of them parsing. Expired
 * CAs in a bundle are not an error: verification skips them. */
static int check_ca(struct config_reader *rd, const char *p, const struct config_tls_file *f)
{
    STACK_OF(X509) *certs = NULL;
    int rc = parse_certs(rd, p, f, &certs);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/* ---- the two forms ---------------------------------------------------------- */

/* Reads cert_file and key_file (both or neither; required ones must be
 * there) and checks them as a pair. */
static int read_own(struct config_reader *rd, const json_t *t, const char *tp, bool required,
                    struct config_tls_file *cert, struct config_tls_file *key)
{
    const json_t *c = json_object_get(t, "cert_file"), *k = json_object_get(t, "key_file");
    char pc[PATH_LEN], pk[PATH_LEN];
    config_read_join(pc, tp, "cert_file");
    config_read_join(pk, tp, "key_file");
    if (c && !k)
        return config_read_fail(rd, pc, "needs key_file too: give both or neither");
    if (k && !c)
        return config_read_fail(rd, pk, "needs cert_file too: give both or neither");
    if (required && !c)
        return config_read_fail(rd, pc,
                                "required key is missing: a TLS server needs a "
                                "certificate (cert_file and key_file)");
    int rc;
    if ((rc = read_path_and_file(rd, t, tp, "cert_file", cert)) ||
        (rc = read_path_and_file(rd, t, tp, "key_file", key)))
        return rc;
    return cert->path ? check_own(rd, pc, pk, cert, key) : 0;
}

/* Refuses the keys of the other form with a reason rather than a guess. */
static int refuse_other_form(struct config_reader *rd, const json_t *t, const char *tp, bool client)
{
    static const char *const server_only[] = {"client_ca_file", NULL};
    static const char *const client_only[] = {"ca_file", "server_name", "verify", NULL};
    for (const char *const *k = client ? server_only : client_only; *k; k++)
        if (json_object_get(t, *k)) {
            char p[PATH_LEN];
            config_read_join(p, tp, *k);
            return config_read_fail_key(
                rd, p,
                client ? "only applies where the sidecar is the TLS server (listeners, reverse "
                         "pools); a dialled pool verifies its upstream with ca_file"
                       : "only applies to dialled pools, where the sidecar is the TLS client; "
                         "here client_ca_file verifies the peers");
        }
    return 0;
}

static int read_min_version(struct config_reader *rd, const json_t *t, const char *tp,
                            enum config_tls_version *out)
{
    int v = CONFIG_TLS_1_2;
    int rc =
        config_read_choice(rd, t, tp, "min_version", config_tls_version_names, CONFIG_TLS_1_2, &v);
    *out = (enum config_tls_version)v;
    return rc;
}

/* SNI takes a host name; an IP literal is verified against the IP SANs. */
static bool valid_server_name(const char *s)
{
    unsigned char ip[16];
    return config_addr_valid_hostname(s) || inet_pton(AF_INET, s, ip) == 1 ||
           inet_pton(AF_INET6, s, ip) == 1;
}

int config_tls_parse_client(struct config_reader *rd, const json_t *obj, const char *path,
                            struct config_tls_client *out)
{
    const json_t *t = json_object_get(obj, "tls");
    out->verify = true;
    out->min_version = CONFIG_TLS_1_2;
    if (!t || json_is_false(t))
        return 0;
    char tp[PATH_LEN];
    config_read_join(tp, path, "tls");
    out->enabled = true;
    if (json_is_true(t))
        return 0;
    if (!json_is_object(t))
        return config_read_fail(rd, tp, "must be true, false or an object, not %s",
                                config_read_type_name(t));
    int rc;
    if ((rc = refuse_other_form(rd, t, tp, true)) ||
        (rc = config_read_keys(rd, t, tp, client_keys)) ||
        (rc = config_read_bool(rd, t, tp, "verify", true, &out->verify)) ||
        (rc = read_min_version(rd, t, tp, &out->min_version)) ||
        (rc = config_read_string(rd, t, tp, "server_name", false, &out->server_name)))
        return rc;
    char p[PATH_LEN];
    if (out->server_name && !valid_server_name(out->server_name)) {
        config_read_join(p, tp, "server_name");
        return config_read_fail(rd, p, "must be a host name or an IP address");
    }
    if (!out->verify && json_object_get(t, "ca_file")) {
        config_read_join(p, tp, "ca_file");
        return config_read_fail(rd, p, "has no effect with \"verify\": false");
    }
    if ((rc = read_own(rd, t, tp, false, &out->cert, &out->key)) ||
        (rc = read_path_and_file(rd, t, tp, "ca_file", &out->ca)))
        return rc;
    if (out->ca.path) {
        config_read_join(p, tp, "ca_file");
        return check_ca(rd, p, &out->ca);
    }
    return 0;
}

int config_tls_parse_server(struct config_reader *rd, const json_t *obj, const char *path,
                            struct config_tls_server *out)
{
    const json_t *t = json_object_get(obj, "tls");
    out->min_version = CONFIG_TLS_1_2;
    if (!t || json_is_false(t))
        return 0;
    char tp[PATH_LEN];
    config_read_join(tp, path, "tls");
    if (!json_is_object(t))
        return config_read_fail(rd, tp,
                                "must be an object with cert_file and key_file (a TLS server "
                                "presents a certificate), or false, not %s",
                                config_read_type_name(t));
    out->enabled = true;
    int rc;
    if ((rc = refuse_other_form(rd, t, tp, false)) ||
        (rc = config_read_keys(rd, t, tp, server_keys)) ||
        (rc = read_min_version(rd, t, tp, &out->min_version)) ||
        (rc = read_own(rd, t, tp, true, &out->cert, &out->key)) ||
        (rc = read_path_and_file(rd, t, tp, "client_ca_file", &out->client_ca)))
        return rc;
    if (out->client_ca.path) {
        char p[PATH_LEN];
        config_read_join(p, tp, "client_ca_file");
        return check_ca(rd, p, &out->client_ca);
    }
    return 0;
}

int config_tls_read_system_store(struct config_reader *rd, struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const struct config_tls_client *t = &cfg->pools[i].tls;
        if (!t->enabled || !t->verify || t->ca.path)
            continue;
        const char *file = getenv(X509_get_default_cert_file_env());
        if (!file || !*file)
            file = X509_get_default_cert_file();
        if (!(cfg->system_ca.path = strdup(file)))
            return UV_ENOMEM;
        char pp[PATH_LEN], tp[PATH_LEN];
        config_read_join_index(pp, "pools", i);
        config_read_join(tp, pp, "tls");
        int rc = read_file(rd, tp, &cfg->system_ca);
        if (rc == UV_EINVAL) /* say what the file was for */
            snprintf(rd->err->text + strlen(rd->err->text),
                     sizeof(rd->err->text) - strlen(rd->err->text),
                     " (the system CA store, used without ca_file)");
        return rc ? rc : check_ca(rd, tp, &cfg->system_ca);
    }
    return 0;
}

size_t config_tls_warnings(const struct config *cfg, void (*warn)(const char *text, void *arg),
                           void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const struct config_pool *p = &cfg->pools[i];
        if (!p->tls.enabled || p->tls.verify)
            continue;
        char text[256];
        snprintf(text, sizeof(text),
                 "pool %s: tls.verify is false: upstream certificates are not verified, the "
                 "connection is encrypted but not authenticated",
                 p->name);
        warn(text, arg);
        n++;
    }
    return n;
}

void config_tls_client_free(struct config_tls_client *t)
{
    config_tls_file_free(&t->ca);
    config_tls_file_free(&t->cert);
    config_tls_file_free(&t->key);
    free(t->server_name);
    t->server_name = NULL;
}

void config_tls_server_free(struct config_tls_server *t)
{
    config_tls_file_free(&t->cert);
    config_tls_file_free(&t->key);
    config_tls_file_free(&t->client_ca);
}

/* ---- JSON ------------------------------------------------------------------- */

static int put_path(json_t *j, const char *key, const struct config_tls_file *f)
{
    return f->path ? json_object_set_new(j, key, json_string(f->path)) : 0;
}

json_t *config_tls_client_json(const struct config_tls_client *t)
{
    json_t *j = json_object();
    if (!j || put_path(j, "ca_file", &t->ca) || put_path(j, "cert_file", &t->cert) ||
        put_path(j, "key_file", &t->key) ||
        (t->server_name && json_object_set_new(j, "server_name", json_string(t->server_name))) ||
        json_object_set_new(j, "verify", json_boolean(t->verify)) ||
        json_object_set_new(j, "min_version",
                            json_string(config_tls_version_names[t->min_version]))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *config_tls_server_json(const struct config_tls_server *t)
{
    json_t *j = json_object();
    if (!j || put_path(j, "cert_file", &t->cert) || put_path(j, "key_file", &t->key) ||
        put_path(j, "client_ca_file", &t->client_ca) ||
        json_object_set_new(j, "min_version",
                            json_string(config_tls_version_names[t->min_version]))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

void config_tls_thread_done(void)
{
    OPENSSL_thread_stop();
}
