/*
 * peer_service: the test service (/test.Echo/...), one stream at a time,
 * answering like the Go test server behind drpcmux does on the wire:
 *
 *   success: Message(s), then CloseSend       failure: one Error, nothing else
 *   cancelled (new Invoke, Cancel, Close, connection gone): nothing at all
 *
 * Message ids of the replies start at 1 on every stream; a packet larger
 * than 64 KiB goes as 64 KiB frames of one message id, only the last done.
 *
 * The connection side (which packets reach which stream, when a stream is
 * cancelled) lives in peer_server; this module only runs the rpcs. It
 * writes through the stream's peer_conn and uses its timer.
 */
#ifndef SIDECAR_PEER_SERVICE_H
#define SIDECAR_PEER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"
#include "proxy/metadata.h"
#include "tests/peer/peer_conn.h"

#define PEER_SERVICE_PREFIX "/test.Echo/"

enum peer_rpc {
    PEER_RPC_UNKNOWN,       /* any other name: Error 0 "protocol error: unknown rpc" */
    PEER_RPC_UNARY,         /* echo */
    PEER_RPC_CLIENT_STREAM, /* concatenation of every message */
    PEER_RPC_SERVER_STREAM, /* "COUNT SIZE": COUNT messages, byte i of k = (k+i)%251 */
    PEER_RPC_BIDI,          /* echo each message */
    PEER_RPC_ERROR,         /* "CODE MESSAGE": that error */
    PEER_RPC_METADATA,      /* sorted "key=value\n" of the invoke metadata */
    PEER_RPC_SLEEP,         /* milliseconds, then "slept" */
    PEER_RPC_CONN,          /* "CONNID RPCS" */
    PEER_RPC_ABORT,         /* "N": abort-0..abort-(N-1), then the connection drops */
    PEER_RPC_IDENTIFY,      /* the server's --id */
    PEER_RPC_TLS_INFO,      /* "VERSION RESUMED PEER_CN" of the conn, or "plaintext" */
};

enum peer_stream_state {
    PEER_STREAM_IDLE,    /* no stream, or it is finished: its late packets are ignored */
    PEER_STREAM_REQUEST, /* unary-input rpc: waiting for the request message */
    PEER_STREAM_COLLECT, /* ClientStream: collecting until the client's CloseSend */
    PEER_STREAM_ECHO,    /* Bidi: echoing until the client's CloseSend */
    PEER_STREAM_SLEEP,   /* Sleep: the conn's timer runs */
    PEER_STREAM_SEND,    /* ServerStream: sending as the socket drains */
};

/* What an rpc may learn about the connection it runs on. */
struct peer_service_info {
    uint64_t conn_id;  /* 1, 2, 3... per process */
    uint64_t rpcs;     /* rpcs this connection has started, this one included */
    const char *ident; /* --id, or NULL */
};

struct peer_stream {
    struct peer_conn *conn;
    enum peer_stream_state state;
    enum peer_rpc rpc;
    uint64_t sid;
    uint64_t mid;       /* last message id sent on this stream */
    struct metadata md; /* its invoke metadata (owned) */
    struct buf acc;     /* ClientStream: the messages so far (owned) */
    struct buf scratch; /* ServerStream: one message being built (owned) */
    uint64_t left;      /* ServerStream: messages still to send */
    uint64_t size;      /* ServerStream: bytes per message */
    uint64_t k;         /* ServerStream: index of the next message */
};

void peer_service_init(struct peer_stream *st, struct peer_conn *conn);

/*
 * Starts stream sid for the rpc name (not NUL-terminated), taking over *md
 * (left empty). An unknown rpc is answered at once and leaves the stream
 * IDLE. info is read during the call only.
 */
void peer_service_start(struct peer_stream *st, uint64_t sid, const uint8_t *name, size_t len,
                        struct metadata *md, const struct peer_service_info *info);

/* A Message packet of the stream arrived. */
void peer_service_message(struct peer_stream *st, const uint8_t *data, size_t len,
                          const struct peer_service_info *info);

/* The client's CloseSend arrived. */
void peer_service_close_send(struct peer_stream *st);

/* Ends the stream without a word (cancel, close, superseded, conn gone). */
void peer_service_cancel(struct peer_stream *st);

/* The socket drained: a ServerStream writes on. */
void peer_service_drain(struct peer_stream *st);

/* Releases the stream's memory (the stream must be IDLE or its conn closing). */
void peer_service_free(struct peer_stream *st);

#endif
