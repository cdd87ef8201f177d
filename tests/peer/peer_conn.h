/*
 * peer_conn: one DRPC transport of the test peer (TCP or unix socket), on
 * libuv, shared by the server, the agent and the client.
 *
 *   socket --read--> in --peer_reader--> on_packet(packet)     (owner)
 *   owner --peer_conn_packet()--> out --flush--> try_write / uv_write
 *
 * Ownership: the conn owns `in` (bytes read, not yet parsed), `out` (frames
 * staged for the next write) and every queued write's bytes until its
 * callback. A packet handed to on_packet points into `in` or into the
 * reader; it is valid only during the callback.
 *
 * The owner embeds the struct, sets it up with peer_conn_init(), and frees
 * its memory in on_closed, which runs once both embedded handles (the
 * socket and the owner's timer) are closed. After peer_conn_close() the
 * conn delivers nothing more except on_closed.
 *
 * Writes are corked while a read is being processed, so every reply the
 * owner produces for one read leaves in one write. Bytes queued toward the
 * peer are counted: above PEER_CONN_HIGH_WATER reading stops until they
 * drain below PEER_CONN_LOW_WATER, and on_drain tells a producer (a server
 * stream) when to write more.
 *
 * TLS (peer_conn_set_tls before accepting or dialling) sits under all of
 * this: ciphertext is read into `cin` and written from `cout`, the owner
 * still sees plaintext packets and stages plaintext frames, which wait in
 * `out` until the handshake is done. An accepted conn is the TLS server, a
 * dialled one the client; a dialled conn's on_connect follows the
 * handshake, and a failed handshake is UV_EPROTO with its reason in
 * peer_conn_strerror().
 */
#ifndef SIDECAR_PEER_CONN_H
#define SIDECAR_PEER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/handle.h"
#include "tests/peer/peer_addr.h"
#include "tests/peer/peer_reader.h"
#include "tests/peer/peer_tls.h"

/* Frame payloads are split like the Go writer does. */
#define PEER_CONN_SPLIT      (64 * 1024)
#define PEER_CONN_LOW_WATER  (256 * 1024)
#define PEER_CONN_HIGH_WATER (8 * 1024 * 1024)
#define PEER_CONN_LINGER_MS  5000 /* after a shutdown, for the peer's EOF */

enum peer_conn_state {
    PEER_CONN_IDLE,       /* handles initialised; neither accepted nor connected */
    PEER_CONN_CONNECTING, /* peer_conn_connect() in flight; writes stay staged */
    PEER_CONN_HANDSHAKE,  /* TLS handshake in flight; frames stay staged */
    PEER_CONN_PREFIX,     /* accepted; waiting for the 8-byte DRPC!!!1 prefix */
    PEER_CONN_OPEN,       /* reading and writing frames */
    PEER_CONN_BLOCKED,    /* open, but reading paused: too many bytes queued */
    PEER_CONN_SHUTDOWN,   /* write side shut after the queued bytes; input ignored */
    PEER_CONN_CLOSING,    /* uv_close issued; on_closed follows */
};

struct peer_conn;
typedef void (*peer_conn_packet_cb)(struct peer_conn *c, const struct peer_packet *p);
typedef void (*peer_conn_cb)(struct peer_conn *c);
typedef void (*peer_conn_connect_cb)(struct peer_conn *c, int status);

struct peer_conn {
    union stream_handle h; /* the socket; h.handle.data = this */
    uv_timer_t timer;      /* for the owner (Sleep, cancel-after...), data too */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    enum peer_conn_state state;
    enum peer_addr_kind kind;
    int open_handles;

    struct peer_reader rd;
    struct buf in;
    struct buf out;
    size_t queued; /* bytes in uv_write requests not yet completed */
    int cork;      /* > 0: peer_conn_flush() waits for peer_conn_uncork() */

    peer_conn_packet_cb on_packet;
    peer_conn_cb on_drain; /* optional: queued bytes fell to PEER_CONN_LOW_WATER */
    peer_conn_cb on_closed;
    peer_conn_connect_cb on_connect;

    struct peer_tls_ctx *tls_ctx;   /* borrowed; NULL for plaintext */
    struct peer_tls *tls;           /* owned, from accept or dial until the close */
    struct buf cin, cout;           /* TLS: ciphertext read / to write */
    bool prefix_after_handshake;    /* TLS server: then wait for DRPC!!!1 */
    bool connect_pending;           /* TLS client: on_connect follows the handshake */
    char error[PEER_TLS_ERROR_MAX]; /* a TLS failure's reason */

    const char *close_reason; /* static text (or error), for the owner's log line */
    uint64_t bytes_in, bytes_out;
    uint64_t opened_ms; /* uv_now() at init */
};

/*
 * Initialises the handles of c (which the owner zeroed) for a socket of the
 * given kind. Never fails for valid arguments; returns a UV_E* code if libuv
 * refuses, in which case nothing needs closing.
 */
__attribute__((warn_unused_result)) int peer_conn_init(struct peer_conn *c, uv_loop_t *loop,
                                                       enum peer_addr_kind kind,
                                                       peer_conn_packet_cb on_packet,
                                                       peer_conn_cb on_closed);

/* Makes the next accept or dial of c use TLS with ctx (which outlives c). */
void peer_conn_set_tls(struct peer_conn *c, struct peer_tls_ctx *ctx);

/* "plaintext", or peer_tls_describe() of the conn's session. */
void peer_conn_tls_describe(const struct peer_conn *c, char *out, size_t len);

/* The text for a status from on_connect: the TLS reason for UV_EPROTO. */
const char *peer_conn_strerror(const struct peer_conn *c, int status);

/* Accepts a pending connection of listener into c and starts reading. */
__attribute__((warn_unused_result)) int peer_conn_accept(struct peer_conn *c, uv_stream_t *listener,
                                                         bool expect_prefix);

/*
 * Dials addr. Returns an error (and no callback follows) or 0, and later
 * calls on_connect with 0 (reading has started) or a UV_E* code (the owner
 * decides whether to close).
 */
__attribute__((warn_unused_result)) int peer_conn_connect(struct peer_conn *c,
                                                          const struct peer_addr *addr,
                                                          peer_conn_connect_cb on_connect);

/* Staging: append to `out` (frames split at 64 KiB). On allocation failure
 * the conn is closed; callers that go on check peer_conn_usable(). */
void peer_conn_packet(struct peer_conn *c, uint8_t kind, uint64_t sid, uint64_t mid,
                      const void *data, size_t len);
void peer_conn_control(struct peer_conn *c, uint8_t kind, uint64_t sid, uint64_t mid);
void peer_conn_error(struct peer_conn *c, uint64_t sid, uint64_t mid, uint64_t code,
                     const void *text, size_t len);
void peer_conn_raw(struct peer_conn *c, const void *data, size_t len);

/* Writes what is staged (unless corked or not yet connected). */
void peer_conn_flush(struct peer_conn *c);
void peer_conn_cork(struct peer_conn *c);
/* Writes what is staged even while corked (before a close, say). */
void peer_conn_flush_now(struct peer_conn *c);
void peer_conn_uncork(struct peer_conn *c);

/* Bytes on their way to the peer: queued writes plus staged bytes. */
static inline size_t peer_conn_pending(const struct peer_conn *c)
{
    return c->queued + c->out.len;
}

/* True while frames can still be written (connecting, open or blocked). */
static inline bool peer_conn_usable(const struct peer_conn *c)
{
    return c->state == PEER_CONN_CONNECTING || c->state == PEER_CONN_HANDSHAKE ||
           c->state == PEER_CONN_PREFIX || c->state == PEER_CONN_OPEN ||
           c->state == PEER_CONN_BLOCKED;
}

/* Closes c; idempotent. reason is a static string kept for the log. */
void peer_conn_close(struct peer_conn *c, const char *reason);

/* Like peer_conn_close, but a TCP socket is reset (RST) rather than closed. */
void peer_conn_reset(struct peer_conn *c, const char *reason);

/* Sends what is staged and queued, then FIN; closes once the peer closes
 * too, or PEER_CONN_LINGER_MS later. Takes over the conn's timer. */
void peer_conn_shutdown(struct peer_conn *c, const char *reason);

/* "1.2.3.4:PORT" of the peer, or "unix" / "?" into out (PEER_ADDR_TEXT_MAX). */
void peer_conn_peer_name(const struct peer_conn *c, char *out, size_t len);

#endif
