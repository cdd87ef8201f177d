/*
 * tls_ctx: OpenSSL contexts built from a config snapshot.
 *
 *   config snapshot (tls objects, file bytes read at load)
 *        --tls_ctx_set_build--> one SSL_CTX per TLS listener, per dialled
 *                               pool (client) and per reverse pool (server),
 *                               and the expiry of every configured certificate
 *
 * Building parses PEM from memory only (config_tls.c read the files), so
 * it may run anywhere; it runs where the snapshot is made (at start, and in
 * the reload job off the loop), so a reload re-reads every file and new
 * connections take the new material at once. A connection's SSL holds a
 * reference to its SSL_CTX (SSL_new takes one), so freeing a set never
 * pulls contexts from under established connections: they keep their
 * material until they close.
 *
 * Every context: minimum version from the config, renegotiation off,
 * SSL_MODE_RELEASE_BUFFERS (an idle connection holds no record buffers).
 *   client  verify on: SSL_VERIFY_PEER against ca_file or the system store;
 *           the name verified is server_name or the endpoint's host (an IP
 *           literal against the IP SANs), also sent as SNI when it is a
 *           name. Optional client certificate. Sessions: the last one per
 *           endpoint address is kept and offered on the next dial.
 *   server  certificate and key; with client_ca_file,
 *           SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT against it.
 *           Session tickets on.
 *
 * Not thread-safe beyond OpenSSL's own guarantees: a set and its contexts
 * are used on one loop (building on another thread, then handing over, is
 * fine).
 */
#ifndef SIDECAR_TLS_CTX_H
#define SIDECAR_TLS_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config/config.h"

/* One configured certificate's expiry, for tls_certificate_expiry_timestamp_seconds. */
struct tls_expiry {
    const char *kind;  /* "listener" or "pool" */
    char *owner;       /* the listener's or pool's name */
    const char *role;  /* "cert" (own, first of cert_file), "chain" (the rest of
                        * cert_file), "ca" (ca_file), "client_ca" (client_ca_file) */
    char *file;        /* the file's path as configured */
    char *subject;     /* the certificate's subject, one line (RFC 2253) */
    int64_t not_after; /* Unix seconds */
};

struct tls_ctx_set {
    SSL_CTX **listeners; /* by listener index; NULL for a plaintext listener */
    size_t n_listeners;
    SSL_CTX **pools; /* by pool index: client (dialled) or server (reverse); NULL = plaintext */
    size_t n_pools;
    struct tls_expiry *expiry; /* every configured own and CA certificate */
    size_t n_expiry;
};

/*
 * Builds the contexts of every tls object of cfg. Returns 0 and a new set
 * in *out, or a negative UV_E* code with a reason in err (OpenSSL's, naming
 * the listener or pool). cfg's files were checked at load, so a failure
 * here means memory or an OpenSSL limit.
 */
__attribute__((warn_unused_result)) int
tls_ctx_set_build(const struct config *cfg, struct tls_ctx_set **out, char *err, size_t err_size);
void tls_ctx_set_free(struct tls_ctx_set *set);

/*
 * A new client SSL for one dial of a TLS pool to ep (one of pc's
 * endpoints, by address): the name to verify and SNI set, the endpoint's
 * last session offered. Returns NULL when out of memory. The caller owns
 * the SSL (SSL_free); new sessions the server sends are kept for ep.
 * OpenSSL marks the session of an SSL freed without SSL_shutdown as not
 * resumable: a clean close calls SSL_shutdown first (sending close_notify
 * without waiting for the peer's is enough).
 */
SSL *tls_ctx_client_ssl(SSL_CTX *ctx, const struct config_pool *pc, const struct config_addr *ep);

/* Forgets ep's session (after a failed handshake, so the next dial does a
 * full one). */
void tls_ctx_client_forget(SSL_CTX *ctx, const struct config_addr *ep);

/*
 * The identity of a verified peer certificate, for agents: its subject CN,
 * or its first DNS SAN when it has no CN. Returns 0, or UV_ENOENT when
 * there is no peer certificate or neither name; the name is cut to size.
 */
int tls_ctx_peer_identity(const SSL *ssl, char *buf, size_t size);

/*
 * Why a handshake or record failed, as "tls: REASON" with OpenSSL's words
 * (for a failed verification: "tls: certificate verify failed: unable to
 * get local issuer certificate"). ret is what the failing SSL_* call
 * returned. Clears the thread's OpenSSL error queue.
 */
void tls_ctx_error_text(const SSL *ssl, int ret, char *buf, size_t size);

#endif
