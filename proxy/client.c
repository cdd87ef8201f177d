/*
 * client: a local application's DRPC connection.
 *
 * Frames for the current call's stream go to the call. A frame for a newer
 * stream starts the next RPC: InvokeMetadata and Invoke packets are
 * assembled here (they are small and capped) and call_start() takes over.
 * Frames for older streams are late and dropped, as the upstream server
 * would. A protocol violation answers an Error where the client can still
 * read one, then closes this client only.
 */
#include "proxy/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/call.h"
#include "proxy/errors.h"
#include "proxy/fdlimit.h"
#include "proxy/handoff.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/sidecar.h"
#include "proxy/state.h"
#include "proxy/upstream.h"

#define MAX_RPC_NAME       4096
/* Frame headers a starting call may hold beyond its first message's data. */
#define CLIENT_START_SLACK (64 * 1024)
#define STR_(x)            #x
#define STR(x)             STR_(x)

const char *client_state_name(enum client_state s)
{
    switch (s) {
    case CLIENT_PREFIX:
        return "prefix";
    case CLIENT_IDLE:
        return "idle";
    case CLIENT_IN_CALL:
        return "in_call";
    case CLIENT_LINGER:
        return "linger";
    case CLIENT_DRAINING:
        return "draining";
    case CLIENT_HANDOFF:
        return "handoff";
    case CLIENT_CLOSING:
        return "closing";
    }
    return "?";
}

static bool client_move_legal(enum client_state from, enum client_state to)
{
    switch (from) {
    case CLIENT_PREFIX:
        return to == CLIENT_IDLE || to == CLIENT_DRAINING || to == CLIENT_CLOSING;
    case CLIENT_IDLE:
        return to == CLIENT_IN_CALL || to == CLIENT_LINGER || to == CLIENT_HANDOFF ||
               to == CLIENT_DRAINING || to == CLIENT_CLOSING;
    case CLIENT_IN_CALL:
        return to == CLIENT_IDLE;
    case CLIENT_LINGER:
        return to == CLIENT_DRAINING || to == CLIENT_CLOSING;
    case CLIENT_DRAINING:
        return to == CLIENT_CLOSING;
    case CLIENT_HANDOFF:
        return to == CLIENT_IDLE || to == CLIENT_CLOSING;
    case CLIENT_CLOSING:
        return false;
    }
    return false;
}

/*
 * The one writer of cl->state (see client.h for the moves). An illegal move
 * aborts with SIDECAR_STRICT_STATES; otherwise it is logged, the client is
 * closed and false is returned: the caller must stop using it.
 */
static bool client_set_state(struct client_conn *cl, enum client_state to)
{
    if (!client_move_legal(cl->state, to)) {
        state_illegal_move("client", cl->id, client_state_name(cl->state), client_state_name(to));
        if (cl->state != CLIENT_CLOSING)
            client_close(cl, "internal error: illegal state change");
        return false;
    }
    cl->state = to;
    return true;
}

/* Still reading frames (a lingering client too): neither draining, handed
 * off nor closing. */
static bool client_open(const struct client_conn *cl)
{
    return cl->state != CLIENT_DRAINING && cl->state != CLIENT_HANDOFF &&
           cl->state != CLIENT_CLOSING;
}

/* Lets go of the call in progress, if any, which then ends as abandoned. */
static void client_detach_call(struct client_conn *cl)
{
    struct call *c = cl->call;
    if (!c)
        return;
    cl->call = NULL;
    (void)client_set_state(cl, CLIENT_IDLE); /* IN_CALL -> IDLE: legal */
    call_client_gone(c);
}

static void client_closed_cb(uv_handle_t *h)
{
    struct client_conn *cl = client_from_wire(h->data);
    wire_release(&cl->wire);
    buf_free(&cl->meta);
    buf_free(&cl->invoke);
    free(cl);
}

void client_close(struct client_conn *cl, const char *reason)
{
    if (cl->state == CLIENT_CLOSING)
        return;
    struct loop_ctx *lc = cl->wire.lc;
    struct sidecar *sc = lc->sc;
    client_detach_call(cl);
    if (cl->state == CLIENT_CLOSING) /* the call's end closed it */
        return;
    bool counted = list_linked(&cl->sc_node);
    (void)client_set_state(cl, CLIENT_CLOSING); /* legal from every other state */
    budget_forget(&lc->budget, &cl->wire.budget, sc->cfg->max_buffered_bytes);
    if (counted) {
        list_cursor_unlink(&lc->client_cursors, &cl->sc_node);
        lc->n_clients--;
        sc->stats.clients_closed++;
        uint64_t age = uv_now(lc->loop) - cl->connected_at;
        log_info("client#%llu %s: closed (%s) age=%llums calls=%llu in=%llu out=%llu",
                 (unsigned long long)cl->id, cl->peer, reason, (unsigned long long)age,
                 (unsigned long long)cl->calls, (unsigned long long)cl->wire.bytes_in,
                 (unsigned long long)cl->wire.bytes_out);
    }
    wire_close(&cl->wire, client_closed_cb);
    if (counted) {
        listener_client_gone(cl->listener);
        sidecar_maybe_finish_drain(sc);
    }
}

void client_drain_and_close(struct client_conn *cl, const char *reason)
{
    if (!cl || !client_open(cl))
        return;
    client_detach_call(cl);
    if (!client_open(cl) || !client_set_state(cl, CLIENT_DRAINING))
        return;
    cl->close_reason = reason;
    budget_forget(&cl->wire.lc->budget, &cl->wire.budget, cl->wire.lc->sc->cfg->max_buffered_bytes);
    wire_read_stop(&cl->wire);
    cl->wire.shutdown = true;
    if (wire_queued(&cl->wire) == 0)
        client_close(cl, reason);
    else
        wire_schedule_flush(&cl->wire);
}

void client_close_after_reply(struct client_conn *cl, const char *reason)
{
    if (cl->state != CLIENT_IDLE || !cl->last_sid || cl->closed_sid >= cl->last_sid) {
        client_drain_and_close(cl, reason);
        return;
    }
    if (!client_set_state(cl, CLIENT_LINGER))
        return;
    cl->close_reason = reason;
    cl->linger_until = uv_now(cl->wire.lc->loop) + CLIENT_LINGER_MS;
    client_update_reading(cl);
}

void client_linger_check(struct client_conn *cl, uint64_t now)
{
    if (cl->state == CLIENT_LINGER && now >= cl->linger_until)
        client_drain_and_close(cl, cl->close_reason);
}

void client_send_error(struct client_conn *cl, uint64_t sid, uint64_t msg, uint64_t code,
                       const char *text)
{
    if (cl->state == CLIENT_CLOSING)
        return;
    cl->errors++;
    if (frame_append_error(&cl->wire.out, sid, msg, code, text, strlen(text)) != 0) {
        client_close(cl, "out of memory");
        return;
    }
    wire_schedule_flush(&cl->wire);
}

void client_protocol_error(struct client_conn *cl, uint64_t sid, const char *why)
{
    struct sidecar *sc = cl->wire.lc->sc;
    sc->stats.client_protocol_errors++;
    char text[256];
    snprintf(text, sizeof(text), "drpc-sidecar: %s: %s", call_cause_text(CALL_CAUSE_PROTOCOL), why);
    log_warn("client#%llu %s: %s", (unsigned long long)cl->id, cl->peer, text);
    if (cl->call) {
        call_fail(cl->call, CALL_CAUSE_PROTOCOL, why);
    } else {
        client_send_error(cl, sid ? sid : (cl->last_sid ? cl->last_sid : 1), 1,
                          call_cause_code(CALL_CAUSE_PROTOCOL), text);
    }
    client_drain_and_close(cl, "protocol error");
}

void client_call_started(struct client_conn *cl, struct call *c)
{
    cl->calls++;
    if (client_set_state(cl, CLIENT_IN_CALL))
        cl->call = c;
}

bool client_end_frame(struct client_conn *cl, size_t left)
{
    /* At most max_message_size (the frame cap toward clients); a stock Go
     * peer's frames are 64 KiB. Only out of memory closes the client. */
    if (cl->frame_cut)
        return false;
    if (buf_reserve(&cl->wire.out, left) == 0) {
        memset(cl->wire.out.data + cl->wire.out.len, 0, left);
        cl->wire.out.len += left;
        wire_schedule_flush(&cl->wire);
        return true;
    }
    cl->frame_cut = true;
    return false;
}

void client_call_ended(struct client_conn *cl)
{
    cl->last_active = uv_now(cl->wire.lc->loop);
    cl->call = NULL;
    if (!client_set_state(cl, CLIENT_IDLE))
        return;
    if (cl->frame_cut) {
        client_drain_and_close(cl, "a call ended mid-frame");
        return;
    }
    if (cl->wire.lc->sc->state != SIDECAR_RUNNING) {
        if (!client_hand_off(cl))
            client_close_after_reply(cl, "shutting down");
        return;
    }
    client_update_reading(cl);
}

bool client_hand_off(struct client_conn *cl)
{
    /* A TLS session cannot move to another process: it is closed after
     * its last reply instead, and its client reconnects. */
    if (cl->wire.xport || (cl->state != CLIENT_IDLE && cl->state != CLIENT_PREFIX) ||
        !handoff_possible(cl->wire.lc->sc, cl))
        return false;
    if (wire_queued(&cl->wire) == 0)
        return handoff_client(cl) == 0;
    /* A PREFIX client has had no reply: only IDLE ones wait here. */
    if (!client_set_state(cl, CLIENT_HANDOFF))
        return true; /* closed */
    wire_read_stop(&cl->wire);
    wire_schedule_flush(&cl->wire);
    return true;
}

/* Its reply is written: pass it on, or fall back to closing it (after the
 * call it may have begun to send, as a drain without a successor would). */
static void hand_off_written(struct client_conn *cl)
{
    if (handoff_client(cl) == 0 || !client_set_state(cl, CLIENT_IDLE))
        return;
    if (cl->wire.in.len || cl->invoke.len || cl->meta.len)
        client_update_reading(cl);
    else
        client_close_after_reply(cl, "shutting down");
}

/* Appends one frame, or piece of a frame, of a small packet (Invoke,
 * InvokeMetadata) being assembled. The cap is judged at a frame's header,
 * before its data is taken in. */
static int assemble(struct buf *b, uint64_t *b_sid, uint64_t *b_msg, bool *done,
                    const struct frame *f, size_t cap)
{
    if (*b_sid != f->stream_id || *b_msg != f->message_id || (done && *done)) {
        buf_reset(b);
        *b_sid = f->stream_id;
        *b_msg = f->message_id;
        if (done)
            *done = false;
    }
    if (frame_first_piece(f) && f->frame_len > cap - b->len)
        return UV_E2BIG;
    return buf_append(b, f->data, f->len);
}

/*
 * Fails the call on stream sid before it started: an Error on that stream,
 * and the stream counts as started, so its remaining frames are late and
 * dropped. The connection carries the next stream, as it would after any
 * other failed call.
 */
static void refuse_stream(struct client_conn *cl, uint64_t sid, enum call_cause cause,
                          const char *why)
{
    char text[256];
    snprintf(text, sizeof(text), "drpc-sidecar: %s", why);
    log_info("client#%llu %s: stream %llu refused: %s", (unsigned long long)cl->id, cl->peer,
             (unsigned long long)sid, text);
    client_send_error(cl, sid, 1, call_cause_code(cause), text);
    cl->last_sid = sid;
    buf_free(&cl->invoke);
    buf_free(&cl->meta);
    cl->invoke_sid = cl->meta_sid = 0;
    cl->meta_done = false;
}

static void on_new_stream_frame(struct client_conn *cl, const struct frame *f)
{
    struct sidecar *sc = cl->wire.lc->sc;
    if (f->control)
        return; /* e.g. a Cancel for a stream that never started */
    /* The client moved on: like the upstream server, end the old stream. */
    client_detach_call(cl);
    if (cl->frame_cut) {
        client_drain_and_close(cl, "a call ended mid-frame");
        return;
    }
    switch (f->kind) {
    case FRAME_KIND_INVOKE_METADATA: {
        int rc = assemble(&cl->meta, &cl->meta_sid, &cl->meta_msg, &cl->meta_done, f,
                          (size_t)sc->cfg->max_metadata_size);
        if (rc == UV_E2BIG) {
            char why[96];
            snprintf(why, sizeof(why), "invoke metadata larger than max_metadata_size (%llu bytes)",
                     (unsigned long long)sc->cfg->max_metadata_size);
            refuse_stream(cl, f->stream_id, CALL_CAUSE_TOO_LARGE, why);
            return;
        }
        if (rc) {
            client_close(cl, "out of memory");
            return;
        }
        if (frame_ends_packet(f))
            cl->meta_done = true;
        return;
    }
    case FRAME_KIND_INVOKE: {
        int rc = assemble(&cl->invoke, &cl->invoke_sid, &cl->invoke_msg, NULL, f, MAX_RPC_NAME);
        if (rc == UV_E2BIG) {
            refuse_stream(cl, f->stream_id, CALL_CAUSE_TOO_LARGE,
                          "rpc name longer than " STR(MAX_RPC_NAME) " bytes");
            return;
        }
        if (rc) {
            client_close(cl, "out of memory");
            return;
        }
        if (!frame_ends_packet(f))
            return;
        bool has_meta = cl->meta_sid == f->stream_id && cl->meta_done;
        cl->last_sid = f->stream_id;
        call_start(cl, f->stream_id, cl->invoke.data ? cl->invoke.data : (const uint8_t *)"",
                   cl->invoke.len, has_meta ? cl->meta.data : NULL, has_meta ? cl->meta.len : 0);
        /* call_start copied what it needs; idle clients keep no buffers. */
        buf_free(&cl->invoke);
        buf_free(&cl->meta);
        cl->invoke_sid = cl->meta_sid = 0;
        cl->meta_done = false;
        return;
    }
    default: {
        char why[96];
        snprintf(why, sizeof(why), "%s before invoke on stream %llu", frame_kind_name(f->kind),
                 (unsigned long long)f->stream_id);
        client_protocol_error(cl, f->stream_id, why);
        return;
    }
    }
}

static void on_frame(struct client_conn *cl, const struct frame *f)
{
    /* Ids only grow (Go's reader: "id monotonicity violation"): stream 0
     * is never valid, and a frame for a stream older than one already read
     * breaks the order, whereas late frames of the last stream are fine. */
    if (f->stream_id == 0 || f->stream_id < cl->read_sid) {
        char why[96];
        snprintf(why, sizeof(why), "stream id %llu after stream %llu (ids only grow)",
                 (unsigned long long)f->stream_id, (unsigned long long)cl->read_sid);
        client_protocol_error(cl, 0, f->stream_id == 0 ? "stream id 0" : why);
        return;
    }
    cl->read_sid = f->stream_id;
    if (f->kind == FRAME_KIND_CLOSE || f->kind == FRAME_KIND_CANCEL)
        cl->closed_sid = f->stream_id; /* soft (control) cancels included */
    if (cl->state == CLIENT_LINGER) {
        /* Its Close for the last stream, or the start of a call this
         * process will not serve (never forwarded, so safe to retry): go. */
        if (cl->closed_sid >= cl->last_sid || f->stream_id > cl->last_sid)
            client_drain_and_close(cl, cl->close_reason);
        return;
    }
    if (cl->call && f->stream_id == cl->call->client_sid) {
        call_on_client_frame(cl->call, f);
        return;
    }
    if (f->stream_id <= cl->last_sid) {
        log_debug("client#%llu: dropped late %s for stream %llu", (unsigned long long)cl->id,
                  frame_kind_name(f->kind), (unsigned long long)f->stream_id);
        return;
    }
    on_new_stream_frame(cl, f);
}

/* Strips an optional DRPC!!!1 prefix. Returns false while more bytes are needed. */
static bool check_prefix(struct client_conn *cl, struct wire_frames *it)
{
    size_t avail = wire_frames_avail(it);
    const uint8_t *p = it->data + it->pos;
    if (avail == 0)
        return false;
    /* No prefix, or not the prefix: a frame starts right away and the
     * frame parser judges it. */
    size_t n = avail < DRPC_HEADER_LEN ? avail : DRPC_HEADER_LEN;
    bool prefix = p[0] == (uint8_t)DRPC_HEADER[0] && memcmp(p, DRPC_HEADER, n) == 0;
    if (prefix && n < DRPC_HEADER_LEN)
        return false;
    if (prefix)
        wire_frames_skip(it, DRPC_HEADER_LEN);
    return client_set_state(cl, CLIENT_IDLE);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client_conn *cl = client_from_wire(s->data);
    if (!client_open(cl))
        return;
    if (nread < 0) {
        client_close(cl, nread == UV_EOF ? "eof" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    struct sidecar *sc = cl->wire.lc->sc;
    cl->last_active = uv_now(cl->wire.lc->loop);

    struct wire_frames it;
    wire_frames_begin(&it, &cl->wire, nread, buf);
    enum frame_result r = FRAME_NEED_MORE;
    if (cl->state != CLIENT_PREFIX || check_prefix(cl, &it)) {
        struct frame f;
        size_t max = (size_t)sc->cfg->max_message_size;
        while ((r = wire_frames_next(&it, max, &f)) == FRAME_OK) {
            on_frame(cl, &f);
            if (!client_open(cl))
                break;
        }
    }
    if (wire_frames_end(&it) != 0) {
        client_close(cl, "out of memory");
        return;
    }
    if (r < 0 && client_open(cl)) {
        uint64_t sid = cl->call ? cl->call->client_sid : 0;
        client_protocol_error(cl, sid, frame_strerror(r));
        return;
    }
    if (client_open(cl))
        client_update_reading(cl);
    if (cl->call)
        call_watch_client(cl->call);
}

void client_update_reading(struct client_conn *cl)
{
    if (!client_open(cl))
        return;
    struct call *c = cl->call;
    struct loop_ctx *lc = cl->wire.lc;
    const struct config *cfg = lc->sc->cfg;
    /* What this client makes the sidecar hold (budget.h), and whether the
     * buffer budget wants it paused for that. */
    size_t held = cl->wire.in.len + cl->invoke.len + cl->meta.len + (c ? c->pending.len : 0);
    bool budget_paused = budget_hold(&lc->budget, &cl->wire.budget, held, cfg->max_buffered_bytes);
    size_t high = (size_t)cfg->call_buffer_bytes;
    size_t queued = 0;
    if (c && c->up)
        queued = wire_queued(&c->up->wire);
    else if (c)
        queued = c->pending.len;
    /* A call begins once its first message is whole: hold that much. */
    if (c && c->state == CALL_STARTING && high < cfg->max_message_size + CLIENT_START_SLACK)
        high = (size_t)cfg->max_message_size + CLIENT_START_SLACK;
    /* Without a proxied call, what we owe the client counts too: a client
     * that pipelines calls the sidecar answers itself (errors) and never
     * reads would otherwise have them queued without bound. During a
     * proxied call it must not: the upstream's replies are bounded by
     * pausing the upstream, and pausing the client as well would couple
     * the directions, deadlocking a bidi stream that works direct. */
    if (!(c && c->up)) {
        size_t owed = wire_queued(&cl->wire);
        if (owed > queued)
            queued = owed;
    }
    if (cl->wire.reading && (queued > high || budget_paused)) {
        wire_read_stop(&cl->wire);
    } else if (!cl->wire.reading && queued <= high / 4 && !budget_paused) {
        wire_read_start(&cl->wire, client_read_cb);
        if (c && cl->wire.reading)
            call_watch_client(c); /* the pause does not count as the client's idle time */
    }
}

void client_on_wire_written(struct client_conn *cl, int status)
{
    if (cl->state == CLIENT_CLOSING)
        return;
    if (status < 0) {
        client_close(cl, uv_strerror(status));
        return;
    }
    if (cl->state == CLIENT_DRAINING) {
        if (wire_queued(&cl->wire) == 0)
            client_close(cl, cl->close_reason ? cl->close_reason : "drained");
        return;
    }
    if (cl->state == CLIENT_HANDOFF) {
        if (wire_queued(&cl->wire) == 0)
            hand_off_written(cl);
        return;
    }
    if (cl->call && cl->call->up)
        upstream_update_reading(cl->call->up);
    if (!cl->wire.reading)
        client_update_reading(cl);
}

/* client_accept and client_adopt: the new client, reading, or NULL. */
static struct client_conn *accept_on(struct listener *l, uv_os_sock_t fd)
{
    struct sidecar *sc = l->sc;
    struct loop_ctx *lc = l->loop_ctx;
    struct client_conn *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        log_error("listener %s: out of memory accepting a client", l->lc->name);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    wire_init(&cl->wire, lc, WIRE_CLIENT);
    list_init(&cl->sc_node);
    int rc;
    if (l->lc->addr.kind == CONFIG_ADDR_UNIX) {
        rc = uv_pipe_init(lc->loop, &cl->wire.h.pipe, 0);
    } else {
        rc = uv_tcp_init(lc->loop, &cl->wire.h.tcp);
        cl->wire.is_tcp = true;
    }
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        free(cl);
        return NULL;
    }
    cl->wire.h.handle.data = &cl->wire;
    cl->wire.handle_open = true;
    cl->listener = l;
    /* Its first state; only client_set_state changes it from here. */
    cl->state = l->lc->accept_header ? CLIENT_PREFIX : CLIENT_IDLE;
    if (fd >= 0) {
        rc =
            cl->wire.is_tcp ? uv_tcp_open(&cl->wire.h.tcp, fd) : uv_pipe_open(&cl->wire.h.pipe, fd);
        if (rc != 0)
            close(fd); /* the handle did not take it over */
    } else {
        rc = uv_accept(&l->h.stream, &cl->wire.h.stream);
    }
    if (rc != 0) {
        client_close(cl, "accept failed");
        return NULL;
    }
    const struct config *cfg = sc->cfg;
    const char *reject = NULL;
    /* No "shutting down" refusal: a connection accepted while draining
     * was queued to this process (see listener_stop) and gets served. */
    uv_os_fd_t fd_now = -1;
    if (uv_fileno(&cl->wire.h.handle, &fd_now) == 0 && fdlimit_client_refused(&sc->fds, fd_now)) {
        sc->stats.clients_rejected_fds++;
        l->rejected++;
        uint64_t now = uv_now(lc->loop);
        if (!sc->fd_refusal_logged || now - sc->fd_refusal_logged >= 1000) {
            sc->fd_refusal_logged = now;
            log_warn("listener %s: refusing clients: only the %d file descriptors kept for admin "
                     "and upstreams are left (limit %llu; %llu refused so far)",
                     l->lc->name, FDLIMIT_RESERVE, (unsigned long long)sc->fds.limit,
                     (unsigned long long)sc->stats.clients_rejected_fds);
        }
        client_close(cl, "file descriptors reserved");
        return NULL;
    }
    if (cfg->max_clients && lc->n_clients >= cfg->max_clients)
        reject = "max_clients reached";
    else if (l->lc->max_clients && l->n_clients >= l->lc->max_clients)
        reject = "listener max_clients reached";
    if (reject) {
        sc->stats.clients_rejected++;
        l->rejected++;
        log_debug("listener %s: rejected a client: %s", l->lc->name, reject);
        client_close(cl, reject);
        return NULL;
    }
    cl->id = ++lc->next_client_id;
    cl->connected_at = cl->last_active = uv_now(cl->wire.lc->loop);
    list_push_back(&lc->clients, &cl->sc_node);
    lc->n_clients++;
    sc->stats.clients_accepted++;
    l->n_clients++;
    l->accepted++;
    wire_tune(&cl->wire);
    wire_peer_name(&cl->wire, cl->peer, sizeof(cl->peer));
    log_debug("client#%llu %s: accepted on %s", (unsigned long long)cl->id, cl->peer, l->lc->name);
    wire_read_start(&cl->wire, client_read_cb);
    return cl;
}

void client_accept(struct listener *l, uv_os_sock_t fd)
{
    (void)accept_on(l, fd);
}

void client_adopt(struct listener *l, uv_os_sock_t fd, bool prefix, uint64_t last_sid,
                  uint64_t read_sid, const uint8_t *pending, size_t pending_len)
{
    struct client_conn *cl = accept_on(l, fd);
    if (!cl)
        return;
    cl->last_sid = last_sid;
    cl->read_sid = read_sid;
    if (!prefix && cl->state == CLIENT_PREFIX && !client_set_state(cl, CLIENT_IDLE))
        return;
    if (pending_len == 0)
        return;
    /* As if just read into the private buffer (see wire_frames_begin). */
    if (buf_reserve(&cl->wire.in, pending_len) != 0) {
        client_close(cl, "out of memory");
        return;
    }
    memcpy(cl->wire.in.data + cl->wire.in.len, pending, pending_len);
    uv_buf_t b = uv_buf_init((char *)cl->wire.in.data + cl->wire.in.len, (unsigned)pending_len);
    client_read_cb(&cl->wire.h.stream, (ssize_t)pending_len, &b);
}
