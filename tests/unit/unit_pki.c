/*
 * unit_pki: the unit tests' throw-away PKI (see unit_pki.h), with the OpenSSL
 * API: no processes, no prompts.
 */
#include "tests/unit/unit_pki.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct cert {
    X509 *x;
    EVP_PKEY *key;
};

const char *unit_pki_path(const struct unit_pki *pki, const char *name)
{
    static char bufs[8][384];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", pki->dir, name);
    return b;
}

const char *unit_pki_printf(const char *fmt, ...)
{
    static char bufs[4][8192];
    static unsigned next;
    char *b = bufs[next++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(bufs[0]), fmt, ap);
    va_end(ap);
    return b;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int rc = X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
    X509_EXTENSION_free(ext);
    return rc;
}

/* A certificate for cn (NULL: none, an O only) with san (NULL: none),
 * valid from `from` to `to` seconds from now; issuer NULL = self-signed CA. */
static int make_cert(struct cert *c, const struct cert *issuer, const char *cn, const char *san,
                     long from, long to)
{
    static long serial = 1;
    c->key = EVP_EC_gen("P-256");
    c->x = X509_new();
    if (!c->key || !c->x)
        return -1;
    X509_set_version(c->x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c->x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c->x), from);
    X509_gmtime_adj(X509_getm_notAfter(c->x), to);
    X509_NAME *name = X509_NAME_new();
    if (cn)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    else
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"drpc-test", -1,
                                   -1, 0);
    X509_set_subject_name(c->x, name);
    X509_set_issuer_name(c->x, issuer ? X509_get_subject_name(issuer->x) : name);
    X509_NAME_free(name);
    X509_set_pubkey(c->x, c->key);
    X509 *ix = issuer ? issuer->x : c->x;
    if (!issuer) {
        if (add_ext(c->x, ix, NID_basic_constraints, "critical,CA:TRUE") ||
            add_ext(c->x, ix, NID_key_usage, "critical,keyCertSign,cRLSign"))
            return -1;
    } else {
        if (add_ext(c->x, ix, NID_basic_constraints, "CA:FALSE") ||
            add_ext(c->x, ix, NID_key_usage, "critical,digitalSignature") ||
            add_ext(c->x, ix, NID_ext_key_usage, "serverAuth,clientAuth") ||
            (san && add_ext(c->x, ix, NID_subject_alt_name, san)))
            return -1;
    }
    return X509_sign(c->x, issuer ? issuer->key : c->key, EVP_sha256()) > 0 ? 0 : -1;
}

static int write_cert(const struct unit_pki *pki, const char *name, const struct cert *c,
                      const struct cert *also)
{
    char file[128];
    snprintf(file, sizeof(file), "%s.pem", name);
    FILE *f = fopen(unit_pki_path(pki, file), "w");
    if (!f)
        return -1;
    int ok = PEM_write_X509(f, c->x) && (!also || PEM_write_X509(f, also->x));
    fclose(f);
    if (!ok || also)
        return ok ? 0 : -1;
    snprintf(file, sizeof(file), "%s.key", name);
    f = fopen(unit_pki_path(pki, file), "w");
    if (!f)
        return -1;
    ok = PEM_write_PrivateKey(f, c->key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return ok ? 0 : -1;
}

static void free_cert(struct cert *c)
{
    X509_free(c->x);
    EVP_PKEY_free(c->key);
}

#define DAY (24L * 3600)

int unit_pki_make(struct unit_pki *pki)
{
    snprintf(pki->dir, sizeof(pki->dir), "/tmp/drpc-pki-XXXXXX");
    if (!mkdtemp(pki->dir)) {
        perror("mkdtemp");
        return -1;
    }
    const char *server_san = "IP:127.0.0.1,DNS:localhost";
    struct cert ca = {0}, oca = {0}, server = {0}, server2 = {0}, client = {0}, nocn = {0},
                expired = {0}, other = {0};
    int rc = make_cert(&ca, NULL, "drpc-test-ca", NULL, -DAY, 30 * DAY) ||
             make_cert(&oca, NULL, "other-test-ca", NULL, -DAY, 30 * DAY) ||
             make_cert(&server, &ca, "server", server_san, -DAY, 30 * DAY) ||
             make_cert(&server2, &ca, "server", server_san, -DAY, 30 * DAY) ||
             make_cert(&client, &ca, "agent-1", "DNS:agent-1", -DAY, 30 * DAY) ||
             make_cert(&nocn, &ca, NULL, "DNS:agent-2", -DAY, 30 * DAY) ||
             make_cert(&expired, &ca, "server", server_san, -3 * DAY, -DAY) ||
             make_cert(&other, &oca, "server", server_san, -DAY, 30 * DAY) ||
             write_cert(pki, "ca", &ca, NULL) || write_cert(pki, "other_ca", &oca, NULL) ||
             write_cert(pki, "server", &server, NULL) ||
             write_cert(pki, "server2", &server2, NULL) ||
             write_cert(pki, "client", &client, NULL) || write_cert(pki, "nocn", &nocn, NULL) ||
             write_cert(pki, "expired", &expired, NULL) || write_cert(pki, "other", &other, NULL) ||
             write_cert(pki, "chain", &server, &ca);
    struct cert *all[] = {&ca, &oca, &server, &server2, &client, &nocn, &expired, &other};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        free_cert(all[i]);
    FILE *f = fopen(unit_pki_path(pki, "garbage.pem"), "w");
    if (!f || fputs("this is not a certificate\n", f) < 0)
        rc = -1;
    if (f)
        fclose(f);
    if (rc)
        fprintf(stderr, "unit_pki_make: cannot make the test PKI in %s\n", pki->dir);
    return rc ? -1 : 0;
}

void unit_pki_remove(struct unit_pki *pki)
{
    DIR *d = opendir(pki->dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            unlink(unit_pki_path(pki, e->d_name));
    if (d)
        closedir(d);
    rmdir(pki->dir);
}
