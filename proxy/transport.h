/*
 * transport: the byte stream under a wire (HAProxy's xprt, h2o's socket
 * layer). The wire frames, queues and paces plaintext; the transport moves
 * it over the socket, and may transform it on the way (TLS).
 *
 *   owner (client, upstream) --frames--> wire --plaintext--> transport --> socket
 *   owner <--read_cb(plaintext)-- wire <--plaintext------ transport <-- socket
 *
 * The socket itself is the wire's handle w->h (TCP or unix), created and
 * accepted or connected by the owner as before; every transport runs on
 * top of it. The first implementation, transport_stream (transport_stream.c),
 * is that socket as it is. This ops table is the one place in the code base
 * that dispatches through function pointers (see style.md, "What to avoid").
 *
 * Contract, for every implementation:
 *
 * Reading.
 *   - read_start(w) begins delivering to w->read_cb (stored by
 *     wire_read_start) with the signature of a uv_read_cb: the stream
 *     argument is &w->h.stream, nread > 0 plaintext bytes, or < 0 for the
 *     end (UV_EOF) or an error (a TLS failure is a UV error too, e.g.
 *     UV_EPROTO). Returns 0 or a UV error and never calls back from inside.
 *   - Each delivery lands where wire_alloc_cb says: in the loop's shared
 *     read buffer while the wire holds no partial frame, else at the end of
 *     w->in. A transport asks wire_alloc_cb again before every delivery,
 *     since the owner may have kept a partial frame from the last one.
 *   - read_stop(w) stops deliveries at once, even in the middle of what
 *     arrived: a TLS transport keeps the undelivered plaintext (or
 *     ciphertext) inside its own state and delivers it after the next
 *     read_start, from the loop (a zero-timeout timer or the like), never
 *     synchronously within read_start. Back-pressure thus holds: a wire
 *     whose peer is slow stops reading and the transport stops too.
 *   - A transport may read from the socket on its own while the owner is
 *     not reading (a TLS handshake, a close_notify), as long as no
 *     plaintext is delivered then.
 *
 * Writing. The wire keeps one write in flight (w->writing) and decides
 * when to flush (the deferred flush of loop_ctx); the transport does not
 * queue on its own beyond what one write needs.
 *   - try_write(w, buf) takes what it can without waiting: returns the
 *     number of plaintext bytes taken (0..len), UV_EAGAIN for none, or
 *     another UV error. Bytes taken are the transport's from then on.
 *   - write(w, buf) takes all of buf, which stays owned by the wire (in
 *     w->inflight) until the transport calls wire_on_written(w, status)
 *     from the loop. It is called only with no write in flight. A TLS
 *     transport may have its own ciphertext in flight at that moment (a
 *     handshake message, or the tail of an earlier record): it then keeps
 *     the plaintext reference, encrypts it when that ciphertext write
 *     completes, and reports the wire's write done only once all the
 *     ciphertext carrying buf is handed to the kernel. Before a handshake
 *     completes, writes are held the same way.
 *   - write_queue_size(w) is the number of bytes taken but not yet handed
 *     to the kernel (for TLS: ciphertext pending plus plaintext held), so
 *     the wire's idle accounting sees a slow reader the same way over any
 *     transport.
 *
 * Connecting (dialled upstreams). connect(w, req, sa, path, cb) connects
 * the owner's initialised socket to sa (TCP) or path (unix) and calls
 * cb(req, status) from the loop once the byte stream is usable: for TLS,
 * after the handshake, so a failed handshake is a failed dial (with the
 * dial timer running over it) and the owner never sees a half-made
 * connection. Returns 0 or a UV error and then never calls cb.
 *
 * Closing and naming.
 *   - close(w, cb) stops reads, cancels what is in flight (its write
 *     completes with UV_ECANCELED) and uv_closes the socket; cb runs from
 *     the socket's close callback. A TLS transport may first try to send
 *     close_notify (uv_try_write, no waiting) and frees its state in that
 *     callback. The wire has no half-close today: a drained client is
 *     closed once its replies are written, so there is no shutdown
 *     operation; one comes with its first user.
 *   - peer_addr(w, ss) is the remote address of a TCP socket
 *     (UV_EAFNOSUPPORT for a unix socket), for logs and the admin views.
 *
 * Choosing a transport. wire_init gives every wire transport_stream. A
 * TLS transport is installed by wire.c itself before the first byte
 * moves: in wire_connect for a dialled upstream, in wire_tune for an
 * accepted client or agent, from the TLS settings of the wire's pool or
 * listener (agent port), found through the owner the way wire.c already
 * finds it for write completions. client.c, upstream.c and call.c need no
 * change for it. An accepted TLS connection handshakes before its first
 * delivery; a failed handshake reaches the owner as a read error (the
 * connection is closed, no other is affected).
 */
#ifndef SIDECAR_TRANSPORT_H
#define SIDECAR_TRANSPORT_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

struct wire;

struct transport_ops {
    const char *name; /* "stream" or "tls", for logs and views */
    int (*connect)(struct wire *w, uv_connect_t *req, const struct sockaddr *sa, const char *path,
                   uv_connect_cb cb);
    int (*read_start)(struct wire *w);
    void (*read_stop)(struct wire *w);
    int (*try_write)(struct wire *w, const uv_buf_t *buf);
    int (*write)(struct wire *w, const uv_buf_t *buf);
    size_t (*write_queue_size)(const struct wire *w);
    void (*close)(struct wire *w, uv_close_cb cb);
    int (*peer_addr)(const struct wire *w, struct sockaddr_storage *ss);
};

/* The socket as it is: TCP or unix, plaintext. */
extern const struct transport_ops transport_stream;

#endif
