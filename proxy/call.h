/*
 * call: one RPC on its way through the sidecar, from the client's Invoke to
 * the end of its stream. It links a client connection (stream id S) to an
 * upstream connection (stream id U) and forwards frames both ways with the
 * stream id rewritten, frame by frame, as bytes arrive.
 *
 *   client --S--> call --U--> upstream
 *   client <--S-- call <--U-- upstream
 *
 * A call ends on Close, Error or Cancel from either side, or CloseSend
 * from both. call_finish() then hands the upstream back to its pool (clean
 * or not) and returns the client to CLIENT_IDLE. Failures the sidecar
 * detects itself become an Error packet on the client's stream id.
 *
 * States (only call.c writes c->state, through call_set_state):
 *
 *   call_start --> STARTING --first message whole, or CloseSend--> WAITING
 *   WAITING --a dial started for it--> DIALING
 *      ^                                  |
 *      +------ moved by a reload ---------+
 *   WAITING, DIALING --call_attach--> ACTIVE
 *   ACTIVE, CLIENT_CLOSED --the peer left before reading it: call_retry,
 *                           once, before any reply--> WAITING
 *   ACTIVE --client CloseSend--> CLIENT_CLOSED --upstream CloseSend--> DONE
 *   ACTIVE --upstream CloseSend--> UPSTREAM_CLOSED --client CloseSend--> DONE
 *   every state but DONE --Close, Error, Cancel, failure, client gone--> DONE
 *
 * STARTING holds no upstream connection: the client's frames wait in
 * c->pending until its request flows, and it is not routed yet. A
 * CloseSend the client sends while the call starts or waits is kept with
 * its other early frames (c->pending) and takes effect when they are
 * replayed at attach. The admin API shows both half-closed states as "half_closed".
 */
#ifndef SIDECAR_CALL_H
#define SIDECAR_CALL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/errors.h"
#include "proxy/frame.h"
#include "proxy/list.h"
#include "proxy/metadata.h"

struct loop_ctx;
struct client_conn;
struct upstream_conn;
struct pool;
struct config;
struct config_route;

enum call_state {
    CALL_STARTING,        /* Invoke read; its frames held until the request flows */
    CALL_WAITING,         /* routing, or queued for an upstream connection */
    CALL_DIALING,         /* queued, and a dial was started for it */
    CALL_ACTIVE,          /* attached; frames flow both ways */
    CALL_CLIENT_CLOSED,   /* attached; the client sent CloseSend, replies still flow */
    CALL_UPSTREAM_CLOSED, /* attached; the upstream sent CloseSend, requests still flow */
    CALL_DONE,            /* finished; freed once its timer handle is closed */
};

enum call_result {
    CALL_RESULT_OK,        /* both sides closed normally */
    CALL_RESULT_APP_ERROR, /* upstream answered with an Error packet */
    CALL_RESULT_CANCELLED, /* client cancelled, closed or abandoned the stream */
    CALL_RESULT_FAILED,    /* the sidecar failed the call (cause in fail_cause) */
};

struct call {
    uint64_t id;
    struct loop_ctx *lc; /* the loop it lives on; lc->sc is the process */
    struct client_conn *client;
    struct upstream_conn *up;
    struct pool *pool;
    struct config *cfg; /* snapshot the call was routed with (ref held) */
    int route_index;
    enum call_state state;
    struct list_node wait_node; /* pool.waiters while waiting */
    struct list_node sc_node;   /* loop_ctx.calls: every unfinished call */

    char *rpc;
    size_t rpc_len;
    char *agent;            /* reverse pools: the agent the call must reach, or NULL */
    struct metadata md;     /* decoded client metadata (+ route additions) */
    struct buf meta_packet; /* InvokeMetadata data to send upstream; empty = none */
    struct buf pending;     /* client frames that arrived before attach */

    uint64_t client_sid;
    uint64_t up_sid;
    uint64_t client_last_msg; /* last message id seen from the client */
    uint64_t up_msg;          /* last message id sent upstream (renumbered) */
    uint64_t up_src_msg;      /* client message id of the packet last forwarded */
    uint64_t down_msg;        /* last message id sent to the client */
    bool client_pkt_open;     /* the client is in mid-packet (or mid-frame) */
    bool up_pkt_open;         /* forwarded part of a packet upstream */
    bool down_pkt_open;       /* forwarded part of a packet to the client */
    uint64_t up_pkt_bytes;
    uint64_t down_pkt_bytes;
    size_t down_left; /* bytes of a frame toward the client still to come */

    uint64_t started_at;    /* uv_now ms */
    uint64_t started_hr;    /* uv_hrtime ns */
    uint64_t attached_hr;   /* uv_hrtime ns, 0 until attached */
    uint64_t deadline_at;   /* uv_now ms; 0 = none */
    uint64_t wait_until;    /* uv_now ms while waiting */
    uint64_t start_until;   /* uv_now ms while STARTING; 0 = no limit */
    uint64_t client_active; /* uv_now ms of the client's last bytes, or of a resume */
    uint64_t timer_due;     /* uv_now ms the timer fires at; 0 = not armed */
    uint64_t msgs_up, msgs_down, bytes_up, bytes_down;

    /* Whether the connection may be reused and the call retried: a frame of
     * this call came from the upstream (a reply byte of any kind); until
     * then, meta_packet and pending keep what was sent so the call can go
     * to another connection once if the peer had closed before reading it
     * (retry_log_full: more than CALL_RETRY_LOG_MAX was sent, no retry). */
    bool up_replied;
    uint32_t unread_retries; /* sent to another connection after one lost it unread */
    uint32_t attempt;        /* 1, then one more per retry (retry.h) */
    bool retry_log_full;
    uint64_t up_in_at_attach;  /* the upstream's bytes_in when the call was attached */
    uint64_t up_out_at_attach; /* and its bytes_out (written to the kernel) */
    bool waits_absent;         /* waits for a named agent that had no connection */
    uint64_t first_reply_at;   /* uv_now ms; 0 = no first-reply deadline */
    const char *dirty_why;     /* why the upstream is not reused, when it is not */

    uv_timer_t timer; /* wait timeout, deadline, first-reply deadline: the first */
    bool timer_init;
    enum call_result result;
    enum call_cause fail_cause;
};

/*
 * Starts a call for the client's Invoke on stream sid. meta is the raw
 * InvokeMetadata data for that stream (may be NULL). The call routes and
 * acquires an upstream connection once its request flows (STARTING until
 * then); on any failure the client gets an Error packet.
 */
void call_start(struct client_conn *client, uint64_t sid, const uint8_t *rpc, size_t rpc_len,
                const uint8_t *meta, size_t meta_len);

/* The pool gives the call an upstream connection. */
void call_attach(struct call *c, struct upstream_conn *up, int checkout_kind);

/* The pool queued the call (waiting until wait_until, uv_now ms, 0 =
 * forever); dial_started: a dial was started for it. Arms the timer. */
void call_on_queued(struct call *c, uint64_t wait_until, bool dial_started);

/* A reload moved the waiting call to pool to (already queued there): a dial
 * started for it belongs to the old pool, and a dialled pool has no agents
 * to pick. */
void call_on_requeued(struct call *c, struct pool *to);

/* The process drains: a call still starting must start within
 * SIDECAR_DRAIN_FIRST_CALL_MS or it fails with shutting_down. */
void call_on_drain(struct call *c);

/* The client's bytes came in (or reading it resumed): restarts the
 * mid-request idle clock and arms the call's timer when something is due. */
void call_watch_client(struct call *c);

/* A frame, or piece of one, from the client for this call's stream. */
void call_on_client_frame(struct call *c, const struct frame *f);

/* A frame from the upstream for this call's stream. */
void call_on_upstream_frame(struct call *c, const struct frame *f);

/* The client disconnected or abandoned the stream (new Invoke); the
 * client has already let go of the call. */
void call_client_gone(struct call *c);

/* The upstream connection is gone or broke the protocol. */
void call_upstream_lost(struct call *c, enum call_cause cause, const char *detail);

/*
 * The upstream connection's peer closed or reset it before it can have
 * read the call (no reply byte came): the call goes to another connection
 * of its pool, up to max_conns + 1 times (a server shutting down closes
 * all its idle connections at once, so the next may be gone too, and each
 * one lost is closed); beyond that it fails like call_upstream_lost. The caller has detached c from
 * that connection.
 */
void call_retry(struct call *c, const char *detail);

/*
 * The call's connection is being closed for reason after the call's bytes
 * may have reached its peer (the caller has detached them): on a route with "retry": {"unanswered":
 * true} the call goes to another connection when no reply byte came, all
 * it sent is still kept, max_attempts and the pool's retry budget allow
 * (retry.h); otherwise it fails with upstream_lost.
 */
void call_upstream_closed(struct call *c, const char *reason);

/* Most bytes kept for a retry (metadata, invoke and client frames). */
#define CALL_RETRY_LOG_MAX (64 * 1024)

/* Fails the call from the sidecar's side: Error to the client, Cancel/close upstream. */
void call_fail(struct call *c, enum call_cause cause, const char *detail);

const char *call_state_name(enum call_state s);

/* checkout kinds for call_attach */
enum { CHECKOUT_IDLE, CHECKOUT_WAITED, CHECKOUT_DIALED };

#endif
