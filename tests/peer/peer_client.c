/*
 * peer_client: Go-client behaviour on the wire (see peer_client.h).
 *
 *   INIT --connect--> CONNECTING --ok--> IDLE --call--> AWAIT_REPLY | BIDI_ROUND
 *                                                       | STREAMING
 *   AWAIT_REPLY --Message--> unary: Close, IDLE    client stream: AWAIT_END
 *   AWAIT_END --CloseSend--> IDLE
 *   BIDI_ROUND --Message--> next message (BIDI_ROUND) or CloseSend (STREAMING)
 *   STREAMING --CloseSend--> IDLE
 *   any call state --Error / Close / Cancel / cancel timer--> IDLE
 *   any --conn gone or peer_client_close--> CLOSING --> on_closed
 *
 * on_done runs after the state is back to IDLE, so it may start the next
 * call; bytes staged while a read is processed leave in one write.
 */
#include "tests/peer/peer_client.h"

#include <stddef.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/frame.h"

static struct peer_client *client_of(struct peer_conn *c)
{
    return (struct peer_client *)((char *)c - offsetof(struct peer_client, conn));
}

const char *peer_client_status_name(enum peer_call_status s)
{
    switch (s) {
    case PEER_CALL_OK:
        return "ok";
    case PEER_CALL_ERROR:
        return "error";
    case PEER_CALL_CANCELLED:
        return "cancelled";
    case PEER_CALL_CLOSED:
        return "closed";
    case PEER_CALL_LOST:
        return "lost";
    }
    return "?";
}

static bool in_call(const struct peer_client *cl)
{
    return cl->state == PEER_CLIENT_AWAIT_REPLY || cl->state == PEER_CLIENT_AWAIT_END ||
           cl->state == PEER_CLIENT_BIDI_ROUND || cl->state == PEER_CLIENT_STREAMING;
}

/* Ends the call in progress: IDLE first, then on_done (which may call again). */
static void finish(struct peer_client *cl, const struct peer_call_result *r)
{
    uv_timer_stop(&cl->conn.timer);
    cl->call = NULL;
    cl->state = PEER_CLIENT_IDLE;
    cl->on_done(cl, r);
}

static void finish_status(struct peer_client *cl, enum peer_call_status status, const char *why)
{
    struct peer_call_result r = {.status = status, .why = why};
    finish(cl, &r);
}

/* --- sending -------------------------------------------------------------- */

static void send_packet(struct peer_client *cl, uint8_t kind, const void *data, size_t len)
{
    peer_conn_packet(&cl->conn, kind, cl->sid, ++cl->mid, data, len);
}

static void send_msg(struct peer_client *cl, size_t i)
{
    const struct peer_msg *m = &cl->call->msgs[i];
    send_packet(cl, FRAME_KIND_MESSAGE, m->data, m->len);
}

static void on_cancel_after(uv_timer_t *t)
{
    struct peer_client *cl = t->data;
    if (!in_call(cl))
        return;
    peer_conn_control(&cl->conn, FRAME_KIND_CANCEL, cl->sid, ++cl->mid);
    peer_conn_flush(&cl->conn);
    finish_status(cl, PEER_CALL_CANCELLED, "cancelled");
}

int peer_client_call(struct peer_client *cl, const struct peer_call *call)
{
    if (cl->state != PEER_CLIENT_IDLE || !peer_conn_usable(&cl->conn))
        return UV_EBUSY;
    if (!call->rpc || (call->n_msgs > 0 && !call->msgs))
        return UV_EINVAL;
    if ((call->shape == PEER_CALL_UNARY || call->shape == PEER_CALL_SERVER_STREAM) &&
        call->n_msgs > 1)
        return UV_EINVAL;

    cl->call = call;
    cl->sid++;
    cl->mid = 0;
    cl->next_msg = 0;
    if (call->md && call->md->n > 0) {
        struct buf enc = {0};
        if (metadata_encode(call->md, &enc) != 0) {
            buf_free(&enc);
            cl->call = NULL;
            return UV_ENOMEM;
        }
        send_packet(cl, FRAME_KIND_INVOKE_METADATA, enc.data, enc.len);
        buf_free(&enc);
    }
    send_packet(cl, FRAME_KIND_INVOKE, call->rpc, strlen(call->rpc));

    static const struct peer_msg empty = {"", 0};
    switch (call->shape) {
    case PEER_CALL_UNARY: {
        /* one write, as drpcconn.Invoke does */
        const struct peer_msg *m = call->n_msgs ? &call->msgs[0] : &empty;
        send_packet(cl, FRAME_KIND_MESSAGE, m->data, m->len);
        send_packet(cl, FRAME_KIND_CLOSE_SEND, NULL, 0);
        cl->state = PEER_CLIENT_AWAIT_REPLY;
        break;
    }
    case PEER_CALL_SERVER_STREAM: {
        const struct peer_msg *m = call->n_msgs ? &call->msgs[0] : &empty;
        send_packet(cl, FRAME_KIND_MESSAGE, m->data, m->len);
        peer_conn_flush(&cl->conn);
        send_packet(cl, FRAME_KIND_CLOSE_SEND, NULL, 0);
        cl->state = PEER_CLIENT_STREAMING;
        break;
    }
    case PEER_CALL_CLIENT_STREAM:
        /* each MsgSend flushes; the Invoke leaves with the first */
        for (size_t i = 0; i < call->n_msgs; i++) {
            send_msg(cl, i);
            peer_conn_flush(&cl->conn);
        }
        send_packet(cl, FRAME_KIND_CLOSE_SEND, NULL, 0);
        cl->state = PEER_CLIENT_AWAIT_REPLY;
        break;
    case PEER_CALL_BIDI:
        if (call->n_msgs > 0) {
            send_msg(cl, 0);
            cl->next_msg = 1;
            cl->state = PEER_CLIENT_BIDI_ROUND;
        } else {
            send_packet(cl, FRAME_KIND_CLOSE_SEND, NULL, 0);
            cl->state = PEER_CLIENT_STREAMING;
        }
        break;
    }
    peer_conn_flush(&cl->conn);
    if (call->cancel_after_ms > 0) {
        cl->conn.timer.data = cl;
        uv_timer_start(&cl->conn.timer, on_cancel_after, call->cancel_after_ms, 0);
    }
    return 0;
}

void peer_client_soft_cancel(struct peer_client *cl)
{
    if (!in_call(cl))
        return;
    peer_conn_control(&cl->conn, FRAME_KIND_CANCEL, cl->sid, ++cl->mid);
    peer_conn_flush(&cl->conn);
    uv_timer_stop(&cl->conn.timer);
    cl->call = NULL;
    cl->state = PEER_CLIENT_IDLE;
}

/* --- receiving ------------------------------------------------------------ */

/* Hands a message over; false if the owner closed the client meanwhile. */
static bool deliver(struct peer_client *cl, const struct peer_packet *p)
{
    if (cl->on_message)
        cl->on_message(cl, p->data, p->len);
    return cl->state != PEER_CLIENT_CLOSING;
}

static void on_message(struct peer_client *cl, const struct peer_packet *p)
{
    switch (cl->state) {
    case PEER_CLIENT_AWAIT_REPLY:
        if (!deliver(cl, p))
            return;
        if (cl->call->shape == PEER_CALL_UNARY) {
            /* drpcconn.Invoke closes the stream as soon as it has the reply */
            send_packet(cl, FRAME_KIND_CLOSE, NULL, 0);
            peer_conn_flush(&cl->conn);
            finish_status(cl, PEER_CALL_OK, NULL);
        } else {
            cl->state = PEER_CLIENT_AWAIT_END;
        }
        return;
    case PEER_CLIENT_BIDI_ROUND:
        if (!deliver(cl, p))
            return;
        if (cl->next_msg < cl->call->n_msgs) {
            send_msg(cl, cl->next_msg++);
        } else {
            send_packet(cl, FRAME_KIND_CLOSE_SEND, NULL, 0);
            cl->state = PEER_CLIENT_STREAMING;
        }
        peer_conn_flush(&cl->conn);
        return;
    case PEER_CLIENT_STREAMING:
        (void)deliver(cl, p);
        return;
    default:
        return; /* a message after the reply: not ours to read */
    }
}

static void on_packet(struct peer_conn *c, const struct peer_packet *p)
{
    struct peer_client *cl = client_of(c);
    if (p->control || !in_call(cl) || p->stream_id != cl->sid)
        return; /* control packets, and late packets of finished streams */

    switch (p->kind) {
    case FRAME_KIND_MESSAGE:
        on_message(cl, p);
        return;
    case FRAME_KIND_CLOSE_SEND:
        if (cl->state == PEER_CLIENT_AWAIT_REPLY)
            finish_status(cl, PEER_CALL_CLOSED, "stream closed without a reply");
        else
            finish_status(cl, PEER_CALL_OK, NULL);
        return;
    case FRAME_KIND_ERROR: {
        struct peer_call_result r = {.status = PEER_CALL_ERROR};
        frame_error_decode(p->data, p->len, &r.code, &r.text, &r.text_len);
        finish(cl, &r);
        return;
    }
    case FRAME_KIND_CLOSE:
    case FRAME_KIND_CANCEL:
        finish_status(cl, PEER_CALL_CLOSED, "stream closed by the server");
        return;
    default:
        peer_conn_close(c, "protocol error: unexpected packet kind");
        return;
    }
}

/* --- connection ----------------------------------------------------------- */

static void conn_closed(struct peer_conn *c)
{
    struct peer_client *cl = client_of(c);
    cl->state = PEER_CLIENT_CLOSING;
    if (cl->call) {
        /* the call in progress learns of the loss after every message */
        struct peer_call_result r = {.status = PEER_CALL_LOST,
                                     .why = c->close_reason ? c->close_reason : "closed"};
        uv_timer_stop(&c->timer);
        cl->call = NULL;
        cl->on_done(cl, &r);
    }
    cl->on_closed(cl);
}

int peer_client_init(struct peer_client *cl, uv_loop_t *loop, enum peer_addr_kind kind, bool header,
                     peer_client_done_cb on_done, peer_client_closed_cb on_closed)
{
    int rc = peer_conn_init(&cl->conn, loop, kind, on_packet, conn_closed);
    if (rc)
        return rc;
    cl->state = PEER_CLIENT_INIT;
    cl->header = header;
    cl->on_done = on_done;
    cl->on_closed = on_closed;
    return 0;
}

static void connected(struct peer_conn *c, int status)
{
    struct peer_client *cl = client_of(c);
    if (status == 0) {
        cl->state = PEER_CLIENT_IDLE;
        if (cl->header) /* leaves with the first call, as drpcmigrate's does */
            peer_conn_raw(c, DRPC_HEADER, DRPC_HEADER_LEN);
    }
    cl->on_connect(cl, status);
}

int peer_client_connect(struct peer_client *cl, const struct peer_addr *addr,
                        peer_client_connect_cb on_connect)
{
    if (cl->state != PEER_CLIENT_INIT)
        return UV_EINVAL;
    cl->on_connect = on_connect;
    int rc = peer_conn_connect(&cl->conn, addr, connected);
    if (rc == 0)
        cl->state = PEER_CLIENT_CONNECTING;
    return rc;
}

void peer_client_close(struct peer_client *cl)
{
    if (cl->state == PEER_CLIENT_CLOSING)
        return;
    cl->call = NULL; /* a hard cancel: no on_done */
    cl->state = PEER_CLIENT_CLOSING;
    /* What the Go client had written (a Close, say) has left by now. */
    peer_conn_flush_now(&cl->conn);
    peer_conn_close(&cl->conn, "closed by client");
}
