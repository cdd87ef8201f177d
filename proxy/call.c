/*
 * call: the life of one RPC through the sidecar (see call.h).
 *
 *   call_start --> STARTING --first message or CloseSend--> call_begin
 *                     +--request_start_timeout_ms--> call_fail (1016)
 *   call_begin --route--> pool_acquire --+--> call_attach ----> ACTIVE
 *                                        +--> WAITING --timer--> call_fail
 *   ACTIVE, CLIENT_CLOSED, UPSTREAM_CLOSED --end of stream--> call_finish
 *                                                 --> pool_release
 *
 * Until call_begin the client's frames wait in c->pending, so a client
 * that sends an Invoke (and maybe part of a message) and stalls holds no
 * upstream connection. A client that stops in mid-packet for
 * request_idle_timeout_ms (while the sidecar reads it) fails with 1007.
 *
 * Message ids toward the upstream are renumbered per upstream stream
 * (1, 2, 3 ... per packet) so the sidecar can insert packets of its own
 * (route metadata, Cancel) and ids still only grow. Ids toward the client
 * are the upstream's, unchanged; an Error the sidecar adds takes the next.
 */
#include "proxy/call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "proxy/accesslog.h"
#include "proxy/client.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/retry.h"
#include "proxy/router.h"
#include "proxy/rpc_stats.h"
#include "proxy/sidecar.h"
#include "proxy/state.h"
#include "proxy/upstream.h"

#define FRAME_SPLIT (64 * 1024) /* what the Go writer uses */

const char *call_state_name(enum call_state s)
{
    switch (s) {
    case CALL_STARTING:
        return "starting";
    case CALL_WAITING:
        return "waiting";
    case CALL_DIALING:
        return "dialing";
    case CALL_ACTIVE:
        return "active";
    case CALL_CLIENT_CLOSED:
    case CALL_UPSTREAM_CLOSED:
        return "half_closed";
    case CALL_DONE:
        return "done";
    }
    return "?";
}

static bool call_move_legal(enum call_state from, enum call_state to)
{
    if (to == CALL_DONE)
        return from != CALL_DONE;
    switch (from) {
    case CALL_STARTING:
        return to == CALL_WAITING;
    case CALL_WAITING:
        return to == CALL_DIALING || to == CALL_ACTIVE;
    case CALL_DIALING:
        return to == CALL_WAITING || to == CALL_ACTIVE;
    case CALL_ACTIVE:
        return to == CALL_CLIENT_CLOSED || to == CALL_UPSTREAM_CLOSED || to == CALL_WAITING;
    case CALL_CLIENT_CLOSED:
        return to == CALL_WAITING;
    case CALL_UPSTREAM_CLOSED:
    case CALL_DONE:
        return false;
    }
    return false;
}

/*
 * The one writer of c->state (see call.h for the moves). An illegal move
 * aborts with SIDECAR_STRICT_STATES; otherwise it is logged, the call is
 * failed and false is returned: the caller must not touch c again.
 */
static bool call_set_state(struct call *c, enum call_state to)
{
    if (!call_move_legal(c->state, to)) {
        state_illegal_move("call", c->id, call_state_name(c->state), call_state_name(to));
        call_fail(c, CALL_CAUSE_INTERNAL, "illegal state change");
        return false;
    }
    c->state = to;
    return true;
}

static bool call_queued(const struct call *c)
{
    return c->state == CALL_WAITING || c->state == CALL_DIALING;
}

static void call_free(struct call *c)
{
    metadata_free(&c->md);
    buf_free(&c->meta_packet);
    buf_free(&c->pending);
    free(c->rpc);
    free(c->agent);
    config_unref(c->cfg);
    free(c);
}

static void timer_closed(uv_handle_t *h)
{
    call_free(h->data);
}

static void call_timer_cb(uv_timer_t *t);

/* The client is in the middle of a packet: a frame or a multi-frame packet
 * started and not finished (a partial header counts). */
static bool client_mid_request(const struct call *c)
{
    const struct client_conn *cl = c->client;
    return cl && (c->client_pkt_open || cl->wire.in.len);
}

/* When the timer must next look: the earliest of the deadline, the wait
 * timeout, the start timeout and the mid-request idle timeout; 0 = never.
 * The idle timeout runs only while the client is read: time the sidecar
 * itself holds it back does not count. */
static uint64_t timer_next(const struct call *c)
{
    uint64_t next = c->deadline_at;
    if (call_queued(c) && c->wait_until && (!next || c->wait_until < next))
        next = c->wait_until;
    if (c->up && !c->up_replied && c->first_reply_at && (!next || c->first_reply_at < next))
        next = c->first_reply_at;
    if (c->state == CALL_STARTING && c->start_until && (!next || c->start_until < next))
        next = c->start_until;
    uint64_t idle = c->cfg->request_idle_timeout_ms;
    if (idle && client_mid_request(c) && c->client->wire.reading) {
        uint64_t at = c->client_active + idle;
        if (!next || at < next)
            next = at;
    }
    return next;
}

/* Arms the timer for timer_next(). */
static void arm_timer(struct call *c)
{
    uint64_t next = timer_next(c);
    c->timer_due = next;
    if (!next) {
        if (c->timer_init)
            uv_timer_stop(&c->timer);
        return;
    }
    if (!c->timer_init) {
        uv_timer_init(c->lc->loop, &c->timer);
        c->timer.data = c;
        c->timer_init = true;
    }
    uint64_t now = uv_now(c->lc->loop);
    uv_timer_start(&c->timer, call_timer_cb, next > now ? next - now : 0, 0);
}

void call_on_drain(struct call *c)
{
    if (c->state != CALL_STARTING)
        return;
    uint64_t by = uv_now(c->lc->loop) + SIDECAR_DRAIN_FIRST_CALL_MS;
    if (!c->start_until || c->start_until > by)
        c->start_until = by;
    arm_timer(c);
}

void call_watch_client(struct call *c)
{
    if (c->state == CALL_DONE)
        return;
    c->client_active = uv_now(c->lc->loop);
    uint64_t next = timer_next(c);
    /* A timer due no later looks again when it fires: no re-arm per read. */
    if (!next || (c->timer_due && c->timer_due <= next))
        return;
    arm_timer(c);
}

void call_on_queued(struct call *c, uint64_t wait_until, bool dial_started)
{
    c->wait_until = wait_until;
    if (dial_started && !call_set_state(c, CALL_DIALING))
        return;
    arm_timer(c);
}

void call_on_requeued(struct call *c, struct pool *to)
{
    if (!to->pc->reverse) {
        free(c->agent);
        c->agent = NULL;
    }
    c->pool = to;
    if (c->state == CALL_DIALING)
        (void)call_set_state(c, CALL_WAITING); /* legal: cannot fail */
}

static void record_result(struct call *c)
{
    struct pool *p = c->pool;
    if (!p)
        return;
    switch (c->result) {
    case CALL_RESULT_OK:
        p->stats.calls_ok++;
        break;
    case CALL_RESULT_APP_ERROR:
        p->stats.calls_app_error++;
        break;
    case CALL_RESULT_CANCELLED:
        p->stats.calls_cancelled++;
        break;
    case CALL_RESULT_FAILED:
        p->stats.calls_failed++;
        p->stats.errors[c->fail_cause]++;
        break;
    }
    uint64_t us = (uv_hrtime() - c->started_hr) / 1000;
    histo_record(&p->stats.call_us, us);
    rpc_stats_record(&c->lc->sc->rpc_stats, c->cfg->metrics_max_rpcs, p->pc->name, c->rpc,
                     c->rpc_len, (int)c->result, (int)c->fail_cause, us);
    const char *route = c->route_index >= 0 ? c->cfg->routes[c->route_index].name : NULL;
    sidecar_count_result(c->lc->sc, p->pc->name, route ? route : "", (int)c->result);
    p->stats.bytes_to_upstream += c->bytes_up;
    p->stats.bytes_from_upstream += c->bytes_down;
}

static const char *result_name(const struct call *c);

/* One access-log line for the finished call. */
static void log_access(struct call *c)
{
    struct sidecar *sc = c->lc->sc;
    if (!sc->accesslog)
        return;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    uint64_t end = uv_hrtime();
    const char *route = c->route_index >= 0 ? c->cfg->routes[c->route_index].name : NULL;
    struct accesslog_entry e = {
        .time_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000,
        .call_id = c->id,
        .client_id = c->client ? c->client->id : 0,
        .client_peer = c->client ? c->client->peer : "-",
        .listener = c->client && c->client->listener ? c->client->listener->lc->name : "-",
        .route = route ? route : "-",
        .pool = c->pool ? c->pool->pc->name : "-",
        .endpoint = c->up ? (c->up->ep ? c->up->ep->addr->text : c->up->agent_id) : "-",
        .rpc = c->rpc ? c->rpc : "",
        .rpc_len = c->rpc_len,
        .result = result_name(c),
        .error_code = c->result == CALL_RESULT_FAILED ? call_cause_code(c->fail_cause) : 0,
        .duration_us = (end - c->started_hr) / 1000,
        .wait_us = ((c->attached_hr ? c->attached_hr : end) - c->started_hr) / 1000,
        .bytes_up = c->bytes_up,
        .bytes_down = c->bytes_down,
        .msgs_up = c->msgs_up,
        .msgs_down = c->msgs_down,
        .attempt = c->attempt,
    };
    accesslog_call(sc->accesslog, &e);
}

static const char *result_name(const struct call *c)
{
    switch (c->result) {
    case CALL_RESULT_OK:
        return "ok";
    case CALL_RESULT_APP_ERROR:
        return "app_error";
    case CALL_RESULT_CANCELLED:
        return "cancelled";
    case CALL_RESULT_FAILED:
        return call_cause_name(c->fail_cause);
    }
    return "?";
}

/*
 * The call ends while a frame toward its client is unfinished: the client
 * fills in the rest, or, when that is large, closes once the call has let
 * go of it (client_end_frame). Returns false in that case: nothing more
 * may be written to the client.
 */
static bool end_client_frame(struct call *c)
{
    size_t left = c->down_left;
    c->down_left = 0;
    return !c->client || !left || client_end_frame(c->client, left);
}

/*
 * Ends the call: the upstream goes back to its pool (clean or closed), the
 * client back to idle, the call is freed. Nothing may touch c afterwards.
 */
static void call_finish(struct call *c, bool up_clean, const char *reason)
{
    if (c->state == CALL_DONE)
        return;
    struct sidecar *sc = c->lc->sc;
    if (c->pool)
        pool_cancel_wait(c->pool, c);
    (void)call_set_state(c, CALL_DONE); /* legal from every other state */
    if (c->timer_init)
        uv_timer_stop(&c->timer);
    record_result(c);
    log_access(c);
    log_debug("call#%llu %.*s: %s in %lluus", (unsigned long long)c->id, (int)c->rpc_len,
              c->rpc ? c->rpc : "", result_name(c),
              (unsigned long long)((uv_hrtime() - c->started_hr) / 1000));

    struct upstream_conn *up = c->up;
    if (up) {
        c->up = NULL;
        up->call = NULL;
        pool_release(c->pool, up, up_clean, c->dirty_why ? c->dirty_why : reason);
    }
    end_client_frame(c);
    struct client_conn *cl = c->client;
    if (cl) {
        c->client = NULL;
        client_call_ended(cl);
    }
    list_cursor_unlink(&c->lc->call_cursors, &c->sc_node);
    c->lc->n_calls--;
    if (c->timer_init)
        uv_close((uv_handle_t *)&c->timer, timer_closed);
    else
        call_free(c);
    sidecar_maybe_finish_drain(sc);
}

/*
 * Tells the upstream the stream is over on the client's behalf. Returns
 * whether the connection is still clean enough to reuse.
 */
static bool cancel_upstream(struct call *c)
{
    struct upstream_conn *up = c->up;
    if (!up || !c->pool)
        return false;
    if (c->pool->pc->cancel != CONFIG_CANCEL_SOFT || c->up_pkt_open || c->down_pkt_open)
        return false;
    /* A peer that has not answered at all (or stopped mid-frame) may be
     * dead or hostile: another call on it would only wait the same way. */
    if (!c->up_replied || up->wire.in.len) {
        c->dirty_why = c->up_replied ? "upstream stopped mid-frame"
                                     : "no reply from upstream before the call ended";
        return false;
    }
    if (frame_append(&up->wire.out, FRAME_KIND_CANCEL, true, true, c->up_sid, ++c->up_msg, NULL,
                     0) != 0)
        return false;
    wire_schedule_flush(&up->wire);
    up->after_cancel = true;
    return true;
}

void call_fail(struct call *c, enum call_cause cause, const char *detail)
{
    if (c->state == CALL_DONE)
        return;
    char text[512];
    if (detail && *detail)
        snprintf(text, sizeof(text), "drpc-sidecar: %s: %s", call_cause_text(cause), detail);
    else
        snprintf(text, sizeof(text), "drpc-sidecar: %s", call_cause_text(cause));
    c->result = CALL_RESULT_FAILED;
    c->fail_cause = cause;
    if (c->pool && (cause == CALL_CAUSE_WAIT_TIMEOUT || cause == CALL_CAUSE_NO_AGENT ||
                    cause == CALL_CAUSE_AGENT_NOT_CONNECTED))
        c->pool->stats.wait_timeouts++;
    log_info("call#%llu client#%llu %.*s: failed: %s", (unsigned long long)c->id,
             c->client ? (unsigned long long)c->client->id : 0ULL, (int)c->rpc_len,
             c->rpc ? c->rpc : "", text);
    if (end_client_frame(c) && c->client)
        client_send_error(c->client, c->client_sid, c->down_msg + 1, call_cause_code(cause), text);
    bool clean = cancel_upstream(c);
    call_finish(c, clean, call_cause_name(cause));
}

static void call_timer_cb(uv_timer_t *t)
{
    struct call *c = t->data;
    if (c->state == CALL_DONE)
        return;
    c->timer_due = 0;
    uint64_t now = uv_now(c->lc->loop);
    char detail[96];
    if (c->state == CALL_STARTING && c->start_until && now >= c->start_until &&
        c->lc->sc->state != SIDECAR_RUNNING) {
        call_fail(c, CALL_CAUSE_SHUTTING_DOWN, "the request had not started");
        return;
    }
    if (c->state == CALL_STARTING && c->start_until && now >= c->start_until) {
        c->lc->sc->stats.calls_not_started++;
        snprintf(detail, sizeof(detail), "no message or CloseSend within %llu ms of the invoke",
                 (unsigned long long)(now - c->started_at));
        call_fail(c, CALL_CAUSE_NOT_STARTED, detail);
        return;
    }
    if (call_queued(c) && c->wait_until && now >= c->wait_until) {
        snprintf(detail, sizeof(detail), "waited %llu ms",
                 (unsigned long long)(now - c->started_at));
        call_fail(c, c->pool ? pool_wait_timeout_cause(c->pool, c) : CALL_CAUSE_WAIT_TIMEOUT,
                  detail);
        return;
    }
    if (c->up && !c->up_replied && c->first_reply_at && now >= c->first_reply_at) {
        char why[400];
        snprintf(why, sizeof(why), "agent %s sent no reply within first_reply_timeout_ms (%llu ms)",
                 c->up->agent_id, (unsigned long long)c->pool->pc->first_reply_timeout_ms);
        call_fail(c, CALL_CAUSE_DEADLINE, why);
        return;
    }
    if (c->deadline_at && now >= c->deadline_at) {
        snprintf(detail, sizeof(detail), "after %llu ms",
                 (unsigned long long)(now - c->started_at));
        call_fail(c, CALL_CAUSE_DEADLINE, detail);
        return;
    }
    uint64_t idle = c->cfg->request_idle_timeout_ms;
    if (idle && client_mid_request(c) && c->client->wire.reading &&
        now - c->client_active >= idle) {
        c->lc->sc->stats.calls_request_idle++;
        snprintf(detail, sizeof(detail), "the client sent nothing for %llu ms in mid-request",
                 (unsigned long long)(now - c->client_active));
        call_fail(c, CALL_CAUSE_DEADLINE, detail);
        return;
    }
    arm_timer(c);
}

void call_start(struct client_conn *cl, uint64_t sid, const uint8_t *rpc, size_t rpc_len,
                const uint8_t *meta, size_t meta_len)
{
    struct loop_ctx *lc = cl->wire.lc;
    struct sidecar *sc = lc->sc;
    struct call *c = calloc(1, sizeof(*c));
    char *name = malloc(rpc_len + 1);
    if (!c || !name) {
        free(c);
        free(name);
        client_send_error(cl, sid, 1, call_cause_code(CALL_CAUSE_INTERNAL),
                          "drpc-sidecar: internal error (out of memory)");
        return;
    }
    memcpy(name, rpc, rpc_len);
    name[rpc_len] = '\0';
    c->id = ++lc->next_call_id;
    c->lc = lc;
    c->client = cl;
    c->cfg = config_ref(sc->cfg);
    c->route_index = -1;
    c->state = CALL_STARTING; /* its first state; only call_set_state changes it */
    c->rpc = name;
    c->rpc_len = rpc_len;
    c->client_sid = sid;
    c->attempt = 1;
    c->started_at = c->client_active = uv_now(lc->loop);
    c->started_hr = uv_hrtime();
    if (c->cfg->request_start_timeout_ms)
        c->start_until = c->started_at + c->cfg->request_start_timeout_ms;
    if (sc->state != SIDECAR_RUNNING) /* draining: as long as a first call gets */
        call_on_drain(c);
    list_init(&c->wait_node);
    list_push_back(&lc->calls, &c->sc_node);
    lc->n_calls++;
    client_call_started(cl, c);

    if (meta) {
        struct metadata_limits lim = {0, (size_t)c->cfg->max_metadata_size};
        const char *why = NULL;
        if (metadata_decode(meta, meta_len, &lim, &c->md, &why) != 0) {
            call_fail(c, CALL_CAUSE_PROTOCOL, why ? why : "out of memory");
            return;
        }
        /* Kept for the upstream unless a route rewrites it (call_begin). */
        if (buf_append(&c->meta_packet, meta, meta_len) != 0) {
            call_fail(c, CALL_CAUSE_INTERNAL, NULL);
            return;
        }
    }
    /* No upstream connection yet: see call_begin. The timer is armed at
     * the end of the client's read (call_watch_client), which for a stock
     * client has begun the call already. */
}

/*
 * The request flows (its first message is whole, or CloseSend came): routes
 * the call and checks out an upstream connection. A client that sends an
 * Invoke and stalls therefore holds no pooled connection. Routing uses the
 * config of this moment, whose pools are the live ones.
 */
static void call_begin(struct call *c)
{
    struct sidecar *sc = c->lc->sc;
    if (c->cfg != sc->cfg) {
        config_unref(c->cfg);
        c->cfg = config_ref(sc->cfg);
    }
    if (!call_set_state(c, CALL_WAITING))
        return;
    int ri = router_match(c->cfg, c->rpc, c->rpc_len, &c->md);
    if (ri < 0) {
        sc->stats.calls_no_route++;
        call_fail(c, CALL_CAUSE_NO_ROUTE, c->rpc);
        return;
    }
    const struct config_route *route = &c->cfg->routes[ri];
    c->route_index = ri;
    c->pool = sc->pools[route->pool_index];

    if (route->agent_from_metadata) {
        const struct metadata_pair *agent = metadata_find(&c->md, route->agent_from_metadata);
        /* Agent ids are at most 256 bytes and hold no NUL: a value that
         * cannot be one names no agent (compared by its full length). */
        if (agent && (agent->value_len > 256 || memchr(agent->value, '\0', agent->value_len))) {
            call_fail(c, CALL_CAUSE_AGENT_NOT_CONNECTED,
                      agent->value_len > 256 ? "agent id in metadata longer than 256 bytes"
                                             : "agent id in metadata holds a NUL byte");
            return;
        }
        if (agent && !(c->agent = strdup(agent->value))) {
            call_fail(c, CALL_CAUSE_INTERNAL, NULL);
            return;
        }
    }
    if (route->n_add_metadata) {
        int rc = 0;
        for (size_t i = 0; i < route->n_add_metadata && rc == 0; i++)
            rc = metadata_set(&c->md, route->add_metadata[i].key, route->add_metadata[i].value);
        buf_reset(&c->meta_packet);
        if (rc == 0)
            rc = metadata_encode(&c->md, &c->meta_packet);
        if (rc != 0) {
            call_fail(c, CALL_CAUSE_INTERNAL, NULL);
            return;
        }
    }

    uint64_t timeout =
        route->has_call_timeout ? route->call_timeout_ms : c->pool->pc->call_timeout_ms;
    if (timeout)
        c->deadline_at = c->started_at + timeout;
    arm_timer(c);
    pool_acquire(c->pool, c);
}

/* Forwards one client frame, or piece of one, upstream with the upstream stream id. */
static bool forward_up(struct call *c, const struct frame *f)
{
    struct upstream_conn *up = c->up;
    /* A new packet gets the next upstream message id. */
    if (frame_first_piece(f)) {
        if (!c->up_pkt_open || f->message_id != c->up_src_msg)
            c->up_msg++;
        c->up_src_msg = f->message_id;
    }
    if (wire_put_frame(&up->wire, f, c->up_sid, c->up_msg) != 0) {
        call_fail(c, CALL_CAUSE_INTERNAL, NULL);
        return false;
    }
    /* Mid-frame the upstream is mid-packet too: nothing may be put between. */
    c->up_pkt_open = !frame_last_piece(f) || (!f->done && !f->control);
    wire_schedule_flush(&up->wire);
    return true;
}

/* Keeps a client frame, or piece of one, that came before the call had an
 * upstream connection: as it came (ids rewritten on replay). */
static int hold_pending(struct call *c, const struct frame *f)
{
    struct buf *b = &c->pending;
    int rc = buf_reserve(b, FRAME_HEADER_MAX + f->len);
    if (rc)
        return rc;
    if (frame_first_piece(f))
        b->len += frame_header_encode(b->data + b->len, f->kind, f->done, f->control, f->stream_id,
                                      f->message_id, f->frame_len);
    return buf_append(b, f->data, f->len);
}

/*
 * Forwards one upstream frame, or piece of one, to the client. A frame
 * that arrives in pieces goes out with its done bit cleared and an empty
 * frame with done after it: should the call end midway, the rest of the
 * frame can be filled in (end_client_frame) and the client's reader drops
 * the unfinished packet when the next id comes, instead of taking the
 * filler for a message.
 */
static int forward_down(struct call *c, struct client_conn *cl, const struct frame *f)
{
    if (frame_first_piece(f) && frame_last_piece(f))
        return wire_put_frame(&cl->wire, f, c->client_sid, f->message_id);
    int rc = wire_put_piece(&cl->wire, f, c->client_sid, f->message_id, false);
    c->down_left = f->frame_len - f->offset - f->len;
    if (rc == 0 && frame_ends_packet(f))
        rc = frame_append(&cl->wire.out, f->kind, true, f->control, c->client_sid, f->message_id,
                          NULL, 0);
    return rc;
}

void call_attach(struct call *c, struct upstream_conn *up, int checkout_kind)
{
    struct pool *p = c->pool;
    c->up = up;
    up->call = c;
    c->up_sid = ++up->last_stream_id;
    if (!call_set_state(c, CALL_ACTIVE))
        return;
    c->up_in_at_attach = up->wire.bytes_in;
    c->up_out_at_attach = up->wire.bytes_out;
    if (p->pc->reverse && !c->deadline_at && p->pc->first_reply_timeout_ms)
        c->first_reply_at = uv_now(c->lc->loop) + p->pc->first_reply_timeout_ms;
    if (!c->attached_hr) {
        c->attached_hr = uv_hrtime();
        histo_record(&p->stats.wait_us, (c->attached_hr - c->started_hr) / 1000);
    }
    switch (checkout_kind) {
    case CHECKOUT_IDLE:
        p->stats.checkouts_idle++;
        break;
    case CHECKOUT_WAITED:
        p->stats.checkouts_waited++;
        break;
    default:
        p->stats.checkouts_dialed++;
        break;
    }
    arm_timer(c);

    struct buf *out = &up->wire.out;
    int rc = 0;
    if (c->meta_packet.len)
        rc = frame_append_packet(out, FRAME_KIND_INVOKE_METADATA, c->up_sid, ++c->up_msg,
                                 c->meta_packet.data, c->meta_packet.len, FRAME_SPLIT);
    if (rc == 0)
        rc = frame_append_packet(out, FRAME_KIND_INVOKE, c->up_sid, ++c->up_msg, c->rpc, c->rpc_len,
                                 FRAME_SPLIT);
    if (rc != 0) {
        call_fail(c, CALL_CAUSE_INTERNAL, NULL);
        return;
    }
    if (c->retry_log_full || c->meta_packet.len + c->pending.len > CALL_RETRY_LOG_MAX)
        c->retry_log_full = true; /* else kept until the first reply, for a retry */
    if (c->retry_log_full)
        buf_free(&c->meta_packet);
    wire_schedule_flush(&up->wire);

    /* Replay what the client sent while the call waited; its last frame
     * may be partial, with the rest still to come from the client. */
    size_t pos = 0;
    while (pos < c->pending.len) {
        struct frame f;
        if (frame_parse_header(c->pending.data + pos, c->pending.len - pos, SIZE_MAX, &f) !=
            FRAME_OK)
            break;
        size_t have = c->pending.len - pos - f.header_len;
        f.len = have < f.frame_len ? have : f.frame_len;
        pos += f.header_len + f.len;
        if (!forward_up(c, &f))
            return;
        /* A CloseSend sent while the call waited takes effect now. */
        if (!f.control && frame_ends_packet(&f) && f.kind == FRAME_KIND_CLOSE_SEND &&
            c->state == CALL_ACTIVE && !call_set_state(c, CALL_CLIENT_CLOSED))
            return;
    }
    if (c->retry_log_full)
        buf_free(&c->pending);
    if (c->client)
        client_update_reading(c->client);
}

/* Until the upstream replies, keeps a forwarded client frame for a retry
 * (call_retry), within CALL_RETRY_LOG_MAX. */
static void keep_for_retry(struct call *c, const struct frame *f)
{
    if (c->up_replied || c->retry_log_full)
        return;
    if (c->meta_packet.len + c->pending.len + FRAME_HEADER_MAX + f->len > CALL_RETRY_LOG_MAX ||
        hold_pending(c, f) != 0) {
        c->retry_log_full = true;
        buf_free(&c->pending);
        buf_free(&c->meta_packet);
    }
}

/* The upstream answered: the call is no longer retried, so what was kept
 * for a retry goes. */
static void on_first_reply(struct call *c)
{
    c->up_replied = true;
    buf_free(&c->pending);
    buf_free(&c->meta_packet);
    if (c->first_reply_at)
        arm_timer(c);
}

void call_on_client_frame(struct call *c, const struct frame *f)
{
    bool first = frame_first_piece(f);
    if (first && !f->control &&
        (f->kind == FRAME_KIND_INVOKE || f->kind == FRAME_KIND_INVOKE_METADATA)) {
        client_protocol_error(c->client, f->stream_id, "invoke on a stream that is already open");
        return;
    }
    /* Control frames take part in the id order too, as in Go's reader
     * (which passes them on as packets with Control set). */
    if (f->message_id < c->client_last_msg) {
        client_protocol_error(c->client, f->stream_id, "message id went backwards");
        return;
    }
    bool new_packet = f->message_id != c->client_last_msg;
    c->client_last_msg = f->message_id;

    if (f->control) {
        /* A soft cancel from a client with SoftCancel; other control frames are ignored. */
        if (f->kind != FRAME_KIND_CANCEL || !first)
            return;
        c->result = CALL_RESULT_CANCELLED;
        bool clean = cancel_upstream(c);
        call_finish(c, clean, "client cancelled");
        return;
    }

    if (f->kind == FRAME_KIND_MESSAGE) {
        /* Judged at each frame's header, before any of its data goes on. */
        if (first) {
            c->up_pkt_bytes = (new_packet ? 0 : c->up_pkt_bytes) + f->frame_len;
            if (c->up_pkt_bytes > c->cfg->max_message_size) {
                char detail[96];
                snprintf(detail, sizeof(detail), "request of more than %llu bytes",
                         (unsigned long long)c->cfg->max_message_size);
                call_fail(c, CALL_CAUSE_TOO_LARGE, detail);
                return;
            }
        }
        if (frame_ends_packet(f))
            c->msgs_up++;
    }
    c->bytes_up += f->len;
    c->client_pkt_open = !frame_ends_packet(f);

    if (c->up) {
        if (!forward_up(c, f))
            return;
        keep_for_retry(c, f);
    } else if (hold_pending(c, f) != 0) {
        call_fail(c, CALL_CAUSE_INTERNAL, NULL);
        return;
    }

    /* A packet acts once whole: an Error or Close cut into frames ends the
     * call at its last frame, not its first. */
    switch (frame_ends_packet(f) ? f->kind : FRAME_KIND_MESSAGE) {
    case FRAME_KIND_CLOSE_SEND:
        /* Waiting: it is in c->pending and acts on replay. Already closed:
         * nothing more to do. */
        if (c->state == CALL_UPSTREAM_CLOSED) {
            c->result = CALL_RESULT_OK;
            call_finish(c, true, NULL);
            return;
        }
        if (c->state == CALL_ACTIVE && !call_set_state(c, CALL_CLIENT_CLOSED))
            return;
        break;
    case FRAME_KIND_CLOSE:
        c->result = CALL_RESULT_OK;
        call_finish(c, c->up && !c->down_pkt_open && !c->up_pkt_open && c->up_replied,
                    c->up_replied ? "client closed mid-packet"
                                  : "client closed before the upstream replied");
        return;
    case FRAME_KIND_ERROR:
    case FRAME_KIND_CANCEL:
        c->result = CALL_RESULT_CANCELLED;
        call_finish(c, c->up && !c->down_pkt_open && !c->up_pkt_open && c->up_replied,
                    c->up_replied ? "client ended mid-packet"
                                  : "client ended the call before the upstream replied");
        return;
    default:
        break;
    }
    if (c->state == CALL_STARTING && frame_ends_packet(f) &&
        (f->kind == FRAME_KIND_MESSAGE || f->kind == FRAME_KIND_CLOSE_SEND)) {
        call_begin(c); /* may finish the call */
        return;
    }
    if (c->client)
        client_update_reading(c->client);
}

void call_on_upstream_frame(struct call *c, const struct frame *f)
{
    struct upstream_conn *up = c->up;
    struct client_conn *cl = c->client;
    /* A reply counts once a frame of it is whole: an upstream that stops
     * in its first frame still meets the first-reply deadline. */
    if (!c->up_replied && frame_last_piece(f))
        on_first_reply(c);
    bool first = frame_first_piece(f);
    if (f->control) {
        /* A soft cancel from the server ends the stream for both (a Go
         * stream terminates with context.Canceled); other control packets
         * are ignored, as Go ignores the ones it does not know. */
        if (f->kind != FRAME_KIND_CANCEL || !f->done || !first || !frame_last_piece(f) ||
            f->message_id < c->down_msg)
            return;
        if (cl && end_client_frame(c) &&
            wire_put_frame(&cl->wire, f, c->client_sid, f->message_id) == 0)
            wire_schedule_flush(&cl->wire);
        c->result = CALL_RESULT_CANCELLED;
        call_finish(c, !c->up_pkt_open && !c->down_pkt_open, "upstream cancelled mid-packet");
        return;
    }
    if (f->kind == FRAME_KIND_INVOKE || f->kind == FRAME_KIND_INVOKE_METADATA ||
        f->message_id < c->down_msg) {
        up->call = NULL;
        c->up = NULL;
        upstream_close(up, "protocol error: bad frame from upstream");
        call_upstream_lost(c, CALL_CAUSE_UPSTREAM_PROTOCOL,
                           f->message_id < c->down_msg ? "message id went backwards"
                                                       : "invoke from upstream");
        return;
    }
    bool new_packet = f->message_id != c->down_msg;
    if (f->kind == FRAME_KIND_MESSAGE) {
        if (first) {
            c->down_pkt_bytes = (new_packet ? 0 : c->down_pkt_bytes) + f->frame_len;
            if (c->down_pkt_bytes > c->cfg->max_message_size) {
                char detail[96];
                snprintf(detail, sizeof(detail), "reply of more than %llu bytes",
                         (unsigned long long)c->cfg->max_message_size);
                c->down_pkt_open = true; /* the upstream is mid-packet: never reuse it */
                call_fail(c, CALL_CAUSE_TOO_LARGE, detail);
                return;
            }
        }
        if (frame_ends_packet(f))
            c->msgs_down++;
    }
    c->bytes_down += f->len;
    c->down_msg = f->message_id;

    if (cl) {
        if (forward_down(c, cl, f) != 0) {
            call_fail(c, CALL_CAUSE_INTERNAL, NULL);
            return;
        }
        wire_schedule_flush(&cl->wire);
    }
    c->down_pkt_open = !frame_ends_packet(f);

    switch (frame_ends_packet(f) ? f->kind : FRAME_KIND_MESSAGE) { /* a packet acts once whole */
    case FRAME_KIND_CLOSE_SEND:
        if (c->state == CALL_CLIENT_CLOSED) {
            c->result = CALL_RESULT_OK;
            call_finish(c, !c->up_pkt_open, "client mid-packet");
            return;
        }
        if (c->state == CALL_ACTIVE && !call_set_state(c, CALL_UPSTREAM_CLOSED))
            return;
        break;
    case FRAME_KIND_ERROR:
        c->result = CALL_RESULT_APP_ERROR;
        call_finish(c, !c->up_pkt_open, "client mid-packet");
        return;
    case FRAME_KIND_CLOSE:
    case FRAME_KIND_CANCEL:
        c->result = CALL_RESULT_OK;
        call_finish(c, !c->up_pkt_open, "client mid-packet");
        return;
    default:
        break;
    }
    upstream_update_reading(up);
}

void call_client_gone(struct call *c)
{
    end_client_frame(c); /* it may have moved on to a new stream: its reply follows */
    c->client = NULL;
    c->result = CALL_RESULT_CANCELLED;
    bool clean = cancel_upstream(c);
    call_finish(c, clean,
                c->pool && c->pool->pc->cancel == CONFIG_CANCEL_CLOSE
                    ? "client gone (cancel: close)"
                    : "client gone mid-packet");
}

/* Sends the call to another connection of its pool: back to WAITING, what
 * was kept (meta_packet, pending) replays at the next attach. */
static void requeue(struct call *c)
{
    c->attempt++;
    c->up_msg = c->up_src_msg = 0;
    c->up_pkt_open = false;
    c->first_reply_at = 0;
    if (!call_set_state(c, CALL_WAITING))
        return;
    pool_retry(c->pool, c);
}

void call_retry(struct call *c, const char *detail)
{
    if (c->state == CALL_DONE)
        return;
    c->up = NULL;
    if (!c->pool || c->unread_retries > c->pool->pc->max_conns || c->retry_log_full ||
        c->up_replied) {
        call_fail(c, CALL_CAUSE_UPSTREAM_LOST, detail);
        return;
    }
    log_info("call#%llu %.*s: %s; retrying on another connection (attempt %u)",
             (unsigned long long)c->id, (int)c->rpc_len, c->rpc ? c->rpc : "", detail,
             c->attempt + 1);
    c->unread_retries++;
    requeue(c);
}

/* Whether a call lost after its request went out may be retried (retry.h);
 * counts the retry, or a refusal by the budget. */
static bool unanswered_retry(struct call *c)
{
    const struct config_route *r = c->route_index >= 0 ? &c->cfg->routes[c->route_index] : NULL;
    struct pool *p = c->pool;
    if (!r || !r->retry_unanswered || c->attempt >= r->retry_max_attempts || !p || !c->client ||
        c->up_replied || c->retry_log_full ||
        (c->state != CALL_ACTIVE && c->state != CALL_CLIENT_CLOSED))
        return false;
    /* not when the sidecar itself is closing the pool's connections */
    if (p->draining || p->retired || p->sc->state != SIDECAR_RUNNING)
        return false;
    if (!retry_budget_take(&p->retry_budget, uv_now(c->lc->loop), p->pc->retry_budget_percent)) {
        p->stats.retries_over_budget++;
        return false;
    }
    p->stats.calls_retried_unanswered++;
    return true;
}

void call_upstream_closed(struct call *c, const char *reason)
{
    c->up = NULL;
    if (!unanswered_retry(c)) {
        call_fail(c, CALL_CAUSE_UPSTREAM_LOST, reason);
        return;
    }
    log_info("call#%llu %.*s: %s before any reply; retrying on another connection (attempt %u)",
             (unsigned long long)c->id, (int)c->rpc_len, c->rpc ? c->rpc : "", reason,
             c->attempt + 1);
    requeue(c);
}

void call_upstream_lost(struct call *c, enum call_cause cause, const char *detail)
{
    c->up = NULL;
    call_fail(c, cause, detail);
}
