/*
 * transport_tls: TLS under a wire (see transport.h for the contract),
 * OpenSSL driven through memory BIOs from the socket's libuv callbacks.
 *
 *   socket --uv_read (thread-local scratch)--> rbio --SSL_read--> wire_alloc_cb
 *                                                                 buffer --> read_cb
 *   wire --try_write/write--> SSL_write --> wbio --uv_try_write--> socket
 *                                            └ rest: one uv_write (x->ct) in flight
 *
 * Idle connections hold no buffers: ciphertext read goes through a scratch
 * buffer into the rbio, which is consumed at once; OpenSSL's record buffers
 * are released (SSL_MODE_RELEASE_BUFFERS); once both BIOs are empty they go
 * back to a per-thread spare list, so an idle connection holds its SSL
 * object alone (about 15 KiB with OpenSSL 3.0). One ciphertext write is in flight at a time; a wire
 * write that arrives meanwhile (or before the handshake is done) is held as
 * a plaintext reference and encrypted when the socket is free again.
 *
 * Installed by wire.c (wire_connect for dialled pools, wire_tune for
 * accepted clients and agents) from the sidecar's tls_ctx_set and the
 * owner's listener or pool. A dialled connection's owner hears of the
 * connect only once the handshake is done (or failed: UV_EPROTO, the reason
 * in transport_tls_error). An accepted connection delivers one read of
 * nread == 0 when its handshake completes (agents take their identity
 * then), and a failed handshake as a read error (UV_EPROTO).
 */
#ifndef SIDECAR_TRANSPORT_TLS_H
#define SIDECAR_TRANSPORT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/transport.h"

struct wire;

extern const struct transport_ops transport_tls;

/* Installs TLS on w when its listener or pool has TLS on (a no-op
 * otherwise). dialled: wire_connect (client side); else an accepted
 * connection (server side). 0 or a UV error (the wire stays plaintext
 * then and must not be used). */
__attribute__((warn_unused_result)) int transport_tls_install(struct wire *w, bool dialled);

/* Frees the thread's spare BIOs (at exit, for leak checkers). */
void transport_tls_cleanup(void);

/* What the admin views show of a TLS connection. */
struct transport_tls_info {
    bool done;           /* handshake completed */
    const char *version; /* "TLSv1.3" */
    const char *cipher;  /* "TLS_AES_128_GCM_SHA256" */
    bool resumed;
    char subject[256]; /* peer certificate subject (RFC 2253); "" without one */
    int64_t not_after; /* peer certificate's, Unix seconds; 0 without one */
};

/* false when w is not TLS. */
bool transport_tls_get_info(const struct wire *w, struct transport_tls_info *out);

/* Why the handshake or a record failed ("tls: ..."), or NULL. */
const char *transport_tls_error(const struct wire *w);

/* The verified peer certificate's CN, or its first DNS SAN (agents). */
int transport_tls_peer_identity(const struct wire *w, char *buf, size_t size);

#endif
