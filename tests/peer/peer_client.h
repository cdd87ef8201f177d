/*
 * peer_client: a DRPC client connection on libuv that behaves like the Go
 * client (drpcconn + drpcmanager, default options) on the wire:
 *
 *   unary          [InvokeMetadata] Invoke Message CloseSend in one write;
 *                  on the reply Message: Close (message id one past the
 *                  CloseSend) at once, without waiting for the CloseSend
 *   client stream  Invoke leaves with the first message, one write per
 *                  message, then CloseSend; the reply, then the server's
 *                  CloseSend ends the call
 *   server stream  Invoke + request, CloseSend; messages until CloseSend
 *   bidi           Invoke + first message; each further message after the
 *                  echo of the previous one; CloseSend; until CloseSend
 *
 * Stream ids count 1, 2, 3... per connection, one call at a time. A soft
 * cancel sends Cancel with the control and done bits; a hard cancel closes
 * the socket (peer_client_close). An Error ends a call with no Close.
 *
 * Ownership: the caller keeps a struct peer_call and everything it points
 * to alive until the call's on_done (or until it cancels or closes). Data
 * handed to on_message / on_done is valid during the callback only.
 */
#ifndef SIDECAR_PEER_CLIENT_H
#define SIDECAR_PEER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/metadata.h"
#include "tests/peer/peer_addr.h"
#include "tests/peer/peer_conn.h"

enum peer_call_shape {
    PEER_CALL_UNARY,
    PEER_CALL_CLIENT_STREAM,
    PEER_CALL_SERVER_STREAM,
    PEER_CALL_BIDI,
};

struct peer_msg {
    const void *data;
    size_t len;
};

struct peer_call {
    const char *rpc;
    enum peer_call_shape shape;
    const struct metadata *md;   /* NULL or empty: no InvokeMetadata */
    const struct peer_msg *msgs; /* unary and server stream: exactly msgs[0] (or empty) */
    size_t n_msgs;
    uint64_t cancel_after_ms; /* > 0: soft-cancel the call if not done by then */
};

enum peer_call_status {
    PEER_CALL_OK,        /* completed */
    PEER_CALL_ERROR,     /* the server answered an Error packet: code, text */
    PEER_CALL_CANCELLED, /* soft-cancelled after cancel_after_ms */
    PEER_CALL_CLOSED,    /* the server ended the stream without a reply */
    PEER_CALL_LOST,      /* the connection is gone (why says how) */
};

struct peer_call_result {
    enum peer_call_status status;
    uint64_t code;       /* PEER_CALL_ERROR */
    const uint8_t *text; /* PEER_CALL_ERROR: error text (not NUL-terminated) */
    size_t text_len;
    const char *why; /* PEER_CALL_CLOSED / LOST: static reason */
};

enum peer_client_state {
    PEER_CLIENT_INIT,        /* initialised, not dialled */
    PEER_CLIENT_CONNECTING,  /* dial in flight */
    PEER_CLIENT_IDLE,        /* connected; no call */
    PEER_CLIENT_AWAIT_REPLY, /* unary / client stream: waiting for the reply */
    PEER_CLIENT_AWAIT_END,   /* client stream: reply in; waiting for CloseSend */
    PEER_CLIENT_BIDI_ROUND,  /* bidi: waiting for the echo of the last message sent */
    PEER_CLIENT_STREAMING,   /* server stream / bidi: messages until CloseSend */
    PEER_CLIENT_CLOSING,     /* closed by us or the peer; on_closed follows */
};

struct peer_client;
typedef void (*peer_client_connect_cb)(struct peer_client *cl, int status);
typedef void (*peer_client_message_cb)(struct peer_client *cl, const uint8_t *data, size_t len);
typedef void (*peer_client_done_cb)(struct peer_client *cl, const struct peer_call_result *r);
typedef void (*peer_client_closed_cb)(struct peer_client *cl);

struct peer_client {
    struct peer_conn conn;
    enum peer_client_state state;
    bool header;  /* send DRPC!!!1 first (drpcmigrate) */
    uint64_t sid; /* stream id of the current / last call */
    uint64_t mid; /* last message id sent on it */
    const struct peer_call *call;
    size_t next_msg; /* bidi: next message to send */

    peer_client_connect_cb on_connect;
    peer_client_message_cb on_message; /* optional */
    peer_client_done_cb on_done;
    peer_client_closed_cb on_closed; /* the owner may free cl here */
    void *data;                      /* for the owner */
};

/* Initialises cl (zeroed by the caller) for a socket of addr's kind. On
 * error nothing needs closing. */
__attribute__((warn_unused_result)) int peer_client_init(struct peer_client *cl, uv_loop_t *loop,
                                                         enum peer_addr_kind kind, bool header,
                                                         peer_client_done_cb on_done,
                                                         peer_client_closed_cb on_closed);

/* Dials addr; on_connect(cl, status) follows unless an error is returned.
 * Either way the owner ends with peer_client_close(). */
__attribute__((warn_unused_result)) int peer_client_connect(struct peer_client *cl,
                                                            const struct peer_addr *addr,
                                                            peer_client_connect_cb on_connect);

/* Starts a call on stream sid+1. Returns UV_EBUSY unless the client is
 * IDLE, UV_EINVAL for a bad call; otherwise 0 and on_done follows. */
__attribute__((warn_unused_result)) int peer_client_call(struct peer_client *cl,
                                                         const struct peer_call *call);

/* Soft cancel: sends Cancel for the call in progress and ends it at once
 * (no on_done); the connection stays usable for the next call. */
void peer_client_soft_cancel(struct peer_client *cl);

/* Hard close (the Go client's default cancel): a call in progress gets no
 * on_done; on_closed follows. Idempotent. */
void peer_client_close(struct peer_client *cl);

const char *peer_client_status_name(enum peer_call_status s);

#endif
