/*
 * client: one local application connection accepted on a listener. It
 * carries one RPC at a time (the DRPC rule); each RPC becomes a struct call.
 */
#ifndef SIDECAR_CLIENT_H
#define SIDECAR_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/list.h"
#include "proxy/wire.h"

struct listener;
struct call;

/*
 * States (only client.c writes cl->state, through client_set_state):
 *
 *   accept --> PREFIX --first bytes--> IDLE <--call ended-- IN_CALL
 *   accept (no DRPC!!!1 on this listener) --^  \--call started--^
 *   IDLE --close after its last reply (shutdown)--> LINGER
 *   IDLE --shutdown with a successor process, reply still queued--> HANDOFF
 *   HANDOFF --reply written--> passed on (CLOSING here), or IDLE if it cannot be
 *   PREFIX, IDLE, LINGER --drain (protocol error, shutdown, linger over)--> DRAINING
 *   DRAINING --queued bytes written--> CLOSING
 *   PREFIX, IDLE, LINGER, DRAINING --EOF, error, limit--> CLOSING
 *
 * IN_CALL holds exactly while client->call is set: a client that drains
 * or closes lets go of its call first (back to IDLE), and the call ends.
 * Half-closing is the call's business (call.h), not the client's.
 */
enum client_state {
    CLIENT_PREFIX,   /* listener accepts DRPC!!!1: first bytes not seen yet */
    CLIENT_IDLE,     /* between calls */
    CLIENT_IN_CALL,  /* one call in progress (client->call) */
    CLIENT_LINGER,   /* closing after its last reply: reads on, starts no call, and closes
                      * once the client's Close for that stream or its EOF came (or after
                      * CLIENT_LINGER_MS), so a reader that meets EOF before it took the
                      * reply (Go's) does not lose it */
    CLIENT_DRAINING, /* no more reads; close once queued bytes are written */
    CLIENT_HANDOFF,  /* no more reads; to the successor once queued bytes are written */
    CLIENT_CLOSING,  /* handle closing; freed in its close callback */
};

/* The longest a closing client is waited for after its last reply. */
#define CLIENT_LINGER_MS 1000

struct client_conn {
    struct wire wire;
    uint64_t id;
    struct listener *listener;
    enum client_state state;
    struct list_node sc_node; /* loop_ctx.clients */
    struct call *call;

    uint64_t last_sid;     /* highest stream id started; older frames are late */
    uint64_t read_sid;     /* highest stream id of any frame read; lower ones are refused */
    uint64_t closed_sid;   /* last stream the client sent Close or Cancel for */
    uint64_t linger_until; /* uv_now ms; CLIENT_LINGER ends by then */
    struct buf meta;       /* InvokeMetadata packet being assembled */
    uint64_t meta_sid;     /* its stream id (0 = none) */
    uint64_t meta_msg;
    bool meta_done;
    struct buf invoke; /* Invoke packet being assembled */
    uint64_t invoke_sid;
    uint64_t invoke_msg;
    uint8_t prefix_seen; /* bytes of DRPC!!!1 matched so far */

    uint64_t connected_at; /* uv_now ms */
    uint64_t last_active;  /* uv_now ms */
    size_t unwritten_seen; /* wire_unwritten at the janitor's last look */
    uint64_t calls;
    uint64_t errors;
    char peer[64];
    const char *close_reason;
    bool frame_cut; /* a call ended mid-frame toward it: close once the call is gone */
};

/* Accepts a pending connection on the listener's server handle (fd < 0),
 * or adopts fd, a connection already accepted from the listener's socket
 * (the client owns fd from here on, even on failure). */
void client_accept(struct listener *l, uv_os_sock_t fd);

/* The client's new call c started (call_start): IDLE -> IN_CALL. */
void client_call_started(struct client_conn *cl, struct call *c);

/* Adopts fd, a connection another process served until now (handoff.c):
 * it goes on after stream last_sid, having read frames up to read_sid;
 * pending holds bytes read there and not acted on, taken as if just read;
 * prefix: the listener's DRPC!!!1 prefix may still come. fd is owned from
 * here on, even on failure. */
void client_adopt(struct listener *l, uv_os_sock_t fd, bool prefix, uint64_t last_sid,
                  uint64_t read_sid, const uint8_t *pending, size_t pending_len);

/* The process drains and a successor takes connections: an IDLE or PREFIX
 * client goes to it once what is queued is written (CLIENT_HANDOFF).
 * Returns false when it cannot; the caller closes it as before. */
bool client_hand_off(struct client_conn *cl);

/* Its call is over: back to IDLE (and drain, or hand off, if the process
 * is stopping). */
void client_call_ended(struct client_conn *cl);

/* A call ended while a frame toward this client was unfinished, `left`
 * bytes short: fills it in with zeros (its done bit is clear, so the
 * client's reader drops the packet at the next id), or, out of memory,
 * has the client closed once the call has let go of it. Returns whether
 * the connection can still carry frames. */
bool client_end_frame(struct client_conn *cl, size_t left);

/* Sends an Error packet on stream sid (message id msg). */
void client_send_error(struct client_conn *cl, uint64_t sid, uint64_t msg, uint64_t code,
                       const char *text);

/* A protocol violation: counts it, fails the call in progress (or sends
 * an Error on stream sid) and closes the connection once that is written. */
void client_protocol_error(struct client_conn *cl, uint64_t sid, const char *why);

/* Closes a client between calls without racing its last reply: at once
 * when the client already ended that stream, else after its Close or EOF
 * (CLIENT_LINGER). */
void client_close_after_reply(struct client_conn *cl, const char *reason);

/* A lingering client past linger_until: drain and close. */
void client_linger_check(struct client_conn *cl, uint64_t now);

/* Stop reading, flush, then close (protocol errors, shutdown). */
void client_drain_and_close(struct client_conn *cl, const char *reason);

/* Close now; idempotent. */
void client_close(struct client_conn *cl, const char *reason);

/* Re-evaluates reading (back-pressure from the call's upstream). */
void client_update_reading(struct client_conn *cl);

const char *client_state_name(enum client_state s);

void client_on_wire_written(struct client_conn *cl, int status);

static inline struct client_conn *client_from_wire(struct wire *w)
{
    return list_entry(w, struct client_conn, wire);
}

#endif
