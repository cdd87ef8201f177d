/*
 * upstream: dialling, reading and closing one upstream connection.
 *
 *   upstream_dial --> RESOLVING (host names only, uv_getaddrinfo)
 *                 --> CONNECTING (wire_connect, dial timer)
 *                 --> pool_on_connected: IDLE or BUSY
 *   upstream_accept --> HANDSHAKE (identify call) --> pool_on_connected
 *
 * Every state change goes through pool_set_upstream_state() (pool.c), and
 * every close through upstream_close(); upstream_move_legal() is the table.
 *
 * Frames read while BUSY go to the call when they carry its stream id;
 * frames of older streams are late and dropped; anything else breaks the
 * protocol and closes the connection. Handles (socket, dial timer) and the
 * getaddrinfo request are counted; the struct is freed when all are done.
 */
#include "proxy/upstream.h"
#include "proxy/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <sys/socket.h>

#include "proxy/agent.h"
#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/transport_tls.h"

const char *upstream_state_name(enum upstream_state s)
{
    switch (s) {
    case UPSTREAM_NEW:
        return "new";
    case UPSTREAM_RESOLVING:
        return "resolving";
    case UPSTREAM_CONNECTING:
        return "connecting";
    case UPSTREAM_HANDSHAKE:
        return "handshake";
    case UPSTREAM_IDLE:
        return "idle";
    case UPSTREAM_BUSY:
        return "busy";
    case UPSTREAM_RELEASED:
        return "released";
    case UPSTREAM_CLOSING:
        return "closing";
    }
    return "?";
}

bool upstream_move_legal(enum upstream_state from, enum upstream_state to)
{
    if (to == UPSTREAM_CLOSING)
        return from != UPSTREAM_CLOSING;
    switch (from) {
    case UPSTREAM_NEW:
        return to == UPSTREAM_RESOLVING || to == UPSTREAM_CONNECTING || to == UPSTREAM_HANDSHAKE;
    case UPSTREAM_RESOLVING:
        return to == UPSTREAM_CONNECTING;
    case UPSTREAM_CONNECTING:
    case UPSTREAM_HANDSHAKE:
    case UPSTREAM_RELEASED:
        return to == UPSTREAM_IDLE || to == UPSTREAM_BUSY;
    case UPSTREAM_IDLE:
        return to == UPSTREAM_BUSY;
    case UPSTREAM_BUSY:
        return to == UPSTREAM_RELEASED;
    case UPSTREAM_CLOSING:
        return false;
    }
    return false;
}

/* Agent peers can flood the log: their warnings are throttled per peer. */
#define up_warn(up, ...)                                                                           \
    ((up)->ep ? log_warn(__VA_ARGS__) : agent_warn((up)->pool, (up)->peer, __VA_ARGS__))

bool upstream_peer_gone(struct upstream_conn *up)
{
    uv_os_fd_t fd;
    char b;
    if (!up->wire.handle_open || uv_fileno(&up->wire.h.handle, &fd) != 0)
        return false;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/*
 * Whether the peer closed the connection before it can have read the call
 * now on it: no reply byte came since the call was attached, and either
 * none of the call's bytes had been written yet, or the peer reset the
 * connection (status, or the socket's pending error after an EOF). A peer
 * closes with a reset when our bytes reach a socket it had already closed,
 * or when it closes with them still unread; a plain EOF after the call
 * went out may follow a read of it, so it is not retried.
 */
static bool call_unread(struct upstream_conn *up, int status)
{
    struct call *c = up->call;
    if (!c || c->up_replied || up->wire.bytes_in != c->up_in_at_attach)
        return false;
    if (status == UV_ECONNRESET || status == UV_EPIPE || up->wire.bytes_out == c->up_out_at_attach)
        return true;
    uv_os_fd_t fd;
    int err = 0;
    socklen_t len = sizeof(err);
    if (status != UV_EOF || uv_fileno(&up->wire.h.handle, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return false;
    return err == ECONNRESET || err == EPIPE;
}

/* Closes a connection whose peer left before reading its call, and sends
 * the call to another connection (call_retry). */
static void lost_unread(struct upstream_conn *up, const char *why)
{
    struct call *c = up->call;
    up->call = NULL;
    c->up = NULL;
    upstream_close(up, why);
    call_retry(c, why);
}

static void maybe_free(struct upstream_conn *up)
{
    if (up->open_handles > 0 || up->gai_pending)
        return;
    wire_release(&up->wire);
    buf_free(&up->ident);
    free(up);
}

static void handle_closed(uv_handle_t *h)
{
    struct upstream_conn *up;
    if (h->type == UV_TIMER)
        up = h->data;
    else
        up = upstream_from_wire(h->data);
    up->open_handles--;
    maybe_free(up);
}

void upstream_close(struct upstream_conn *up, const char *reason)
{
    if (up->state == UPSTREAM_CLOSING)
        return;
    struct pool *p = up->pool;
    struct call *c = up->call;
    enum upstream_state was = up->state;
    (void)pool_set_upstream_state(p, up, UPSTREAM_CLOSING, reason); /* legal from any other */
    budget_forget(&up->wire.lc->budget, &up->wire.budget, p->sc->cfg->max_buffered_bytes);
    up->call = NULL;
    uint64_t age = uv_now(p->lc->loop) - up->created_at;
    if (!up->ep && was == UPSTREAM_HANDSHAKE) {
        /* An agent connection that never became ready: a failed identify,
         * a missing header, a probe. Throttled, since peers can flood. */
        if (p->pc->identify_rpc)
            p->stats.agent_identify_failures++;
        agent_warn(p, up->peer,
                   "up#%llu pool=%s peer=%s: agent connection closed before it was "
                   "ready (%s) age=%llums",
                   (unsigned long long)up->id, p->pc->name, up->peer, reason,
                   (unsigned long long)age);
    } else if (!up->ep &&
               (was == UPSTREAM_IDLE || was == UPSTREAM_BUSY || was == UPSTREAM_RELEASED))
        log_info("up#%llu pool=%s agent=%s peer=%s: closed (%s) age=%llums calls=%llu",
                 (unsigned long long)up->id, p->pc->name, up->agent_id, up->peer, reason,
                 (unsigned long long)age, (unsigned long long)up->calls_served);
    else if (was == UPSTREAM_IDLE || was == UPSTREAM_BUSY || was == UPSTREAM_RELEASED)
        log_info("up#%llu pool=%s endpoint=%s: closed (%s) age=%llums calls=%llu in=%llu out=%llu",
                 (unsigned long long)up->id, p->pc->name, up->ep ? up->ep->addr->text : "-", reason,
                 (unsigned long long)age, (unsigned long long)up->calls_served,
                 (unsigned long long)up->wire.bytes_in, (unsigned long long)up->wire.bytes_out);
    else
        log_debug("up#%llu pool=%s: closed while %s (%s)", (unsigned long long)up->id, p->pc->name,
                  upstream_state_name(was), reason);

    uv_timer_stop(&up->dial_timer);
    uv_close((uv_handle_t *)&up->dial_timer, handle_closed);
    if (up->gai_pending)
        uv_cancel((uv_req_t *)&up->gai_req);
    if (up->wire.handle_open)
        wire_close(&up->wire, handle_closed);

    if (c)
        call_upstream_closed(c, reason);
}

/* A frame that is not for the current call: late (drop) or a violation. */
static void on_stray_frame(struct upstream_conn *up, const struct frame *f)
{
    if (f->stream_id <= up->last_stream_id) {
        log_debug("up#%llu: dropped late %s for stream %llu", (unsigned long long)up->id,
                  frame_kind_name(f->kind), (unsigned long long)f->stream_id);
        return;
    }
    if (f->control)
        return;
    up_warn(up, "up#%llu: %s for stream %llu that was never opened", (unsigned long long)up->id,
            frame_kind_name(f->kind), (unsigned long long)f->stream_id);
    struct call *c = up->call;
    if (c) {
        up->call = NULL;
        c->up = NULL;
        upstream_close(up, "protocol error: frame for an unopened stream");
        call_upstream_lost(c, CALL_CAUSE_UPSTREAM_PROTOCOL, "frame for an unopened stream");
        return;
    }
    upstream_close(up, "protocol error: frame for an unopened stream");
}

/* --- reverse pools: accepted agent connections -------------------------- */

#define AGENT_ID_MAX 256

/* The agent is ready for calls: it joins the pool like a dialled connection. */
static void agent_ready(struct upstream_conn *up)
{
    uv_timer_stop(&up->dial_timer);
    log_info("up#%llu pool=%s: agent %s connected from %s", (unsigned long long)up->id,
             up->pool->pc->name, up->agent_id, up->peer);
    buf_free(&up->ident);
    pool_on_connected(up->pool, up);
}

/* A TLS agent port with client_ca_file and no identify.rpc: the agent is
 * who its verified certificate says (CN, else first DNS SAN). */
static void agent_tls_identified(struct upstream_conn *up)
{
    char id[sizeof(up->agent_id)];
    up->tls_identity = false;
    if (transport_tls_peer_identity(&up->wire, id, sizeof(id)) != 0 ||
        !utf8_valid((const unsigned char *)id, strlen(id))) {
        upstream_close(up, "agent certificate names no CN or DNS SAN");
        return;
    }
    memcpy(up->agent_id, id, sizeof(id));
    agent_ready(up);
}

/* Sends the identify call (stream 1) or declares the agent ready (at
 * once, or after the TLS handshake when the certificate names it). */
static void agent_start(struct upstream_conn *up)
{
    const char *rpc = up->pool->pc->identify_rpc;
    if (up->tls_identity)
        return;
    if (!rpc) {
        agent_ready(up);
        return;
    }
    struct buf *out = &up->wire.out;
    up->last_stream_id = 1;
    if (frame_append(out, FRAME_KIND_INVOKE, true, false, 1, 1, rpc, strlen(rpc)) != 0 ||
        frame_append(out, FRAME_KIND_MESSAGE, true, false, 1, 2, NULL, 0) != 0 ||
        frame_append(out, FRAME_KIND_CLOSE_SEND, true, false, 1, 3, NULL, 0) != 0) {
        upstream_close(up, "out of memory");
        return;
    }
    wire_schedule_flush(&up->wire);
}

/*
 * Strips the DRPC!!!1 prefix an agent must send when the pool asks for it.
 * A stock Go agent dials with drpcmigrate.DialWithHeader, whose HeaderConn
 * writes the prefix together with its first Write: the agent's first reply
 * (to the identify call, or to the first routed call) carries it. So the
 * prefix is not waited for before the connection is used; it is required to
 * be the first bytes the agent sends, whenever those come, and anything else
 * closes the connection. Returns true when frames may be parsed from `it`.
 */
static bool agent_prefix(struct upstream_conn *up, struct wire_frames *it)
{
    if (up->ep || !up->pool->pc->header || up->prefix_seen == DRPC_HEADER_LEN)
        return true;
    while (up->prefix_seen < DRPC_HEADER_LEN && wire_frames_avail(it) > 0) {
        if (it->data[it->pos] != (uint8_t)DRPC_HEADER[up->prefix_seen]) {
            upstream_close(up, "agent did not send the DRPC!!!1 header");
            return false;
        }
        wire_frames_skip(it, 1);
        up->prefix_seen++;
    }
    return up->prefix_seen == DRPC_HEADER_LEN;
}

/* Frames of the identify call: the reply message becomes the agent id. */
static void identify_on_frame(struct upstream_conn *up, const struct frame *f)
{
    if (f->control)
        return;
    switch (f->kind) {
    case FRAME_KIND_MESSAGE:
        if (up->ident.len + f->len > AGENT_ID_MAX) {
            upstream_close(up, "identify reply longer than 256 bytes");
            return;
        }
        if (buf_append(&up->ident, f->data, f->len) != 0)
            upstream_close(up, "out of memory");
        return;
    case FRAME_KIND_CLOSE_SEND:
    case FRAME_KIND_CLOSE: {
        const char *p = (const char *)up->ident.data;
        size_t n = up->ident.len;
        while (n && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n' || p[n - 1] == '\r'))
            n--;
        if (n == 0 || memchr(p, '\0', n) || !utf8_valid((const unsigned char *)p, n)) {
            upstream_close(up, "identify returned an empty or invalid id");
            return;
        }
        memcpy(up->agent_id, p, n);
        up->agent_id[n] = '\0';
        /* The first address to hold an id keeps it: another address
         * claiming it is turned away until those connections are gone
         * (with TLS, the certificate is what proves an id). */
        char ip[64];
        agent_peer_ip(up->peer, ip, sizeof(ip));
        if (pool_agent_id_held_elsewhere(up->pool, up->agent_id, ip)) {
            up->pool->stats.agent_id_conflicts++;
            upstream_close(up, "agent id already held by connections from another address");
            return;
        }
        agent_ready(up);
        return;
    }
    case FRAME_KIND_ERROR: {
        uint64_t code;
        const uint8_t *text;
        size_t len;
        frame_error_decode(f->data, f->len, &code, &text, &len);
        log_debug("up#%llu pool=%s: identify call failed: code=%llu %.*s",
                  (unsigned long long)up->id, up->pool->pc->name, (unsigned long long)code,
                  (int)len, (const char *)text);
        upstream_close(up, "identify call failed");
        return;
    }
    default:
        upstream_close(up, "unexpected frame during identify");
        return;
    }
}

static void upstream_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct upstream_conn *up = upstream_from_wire(s->data);
    if (up->state == UPSTREAM_CLOSING)
        return;
    if (nread < 0) {
        const char *why = transport_tls_error(&up->wire);
        if (!why)
            why = nread == UV_EOF ? "closed by upstream" : uv_strerror((int)nread);
        if (up->state == UPSTREAM_BUSY && call_unread(up, (int)nread))
            lost_unread(up, "peer closed before reading the call");
        else if (up->state == UPSTREAM_BUSY)
            upstream_close(up, nread == UV_EOF ? "closed by upstream mid-call" : why);
        else if (up->state == UPSTREAM_HANDSHAKE)
            upstream_close(up, nread == UV_EOF ? "agent closed during handshake" : why);
        else
            pool_on_idle_lost(up->pool, up);
        return;
    }
    if (nread == 0) {
        if (up->tls_identity && up->state == UPSTREAM_HANDSHAKE)
            agent_tls_identified(up); /* the transport's "handshake done" */
        return;
    }

    size_t max = (size_t)up->pool->cfg->max_message_size;
    struct wire_frames it;
    struct frame f;
    enum frame_result r = FRAME_NEED_MORE;
    size_t frames = 0;
    wire_frames_begin(&it, &up->wire, nread, buf);
    if (agent_prefix(up, &it)) {
        while ((r = wire_frames_next(&it, max, &f)) == FRAME_OK) {
            frames++;
            if (up->call && f.stream_id == up->call->up_sid)
                call_on_upstream_frame(up->call, &f);
            else if (up->state == UPSTREAM_HANDSHAKE && f.stream_id == up->last_stream_id)
                identify_on_frame(up, &f);
            else
                on_stray_frame(up, &f);
            if (up->state == UPSTREAM_CLOSING)
                break;
        }
    }
    if (wire_frames_end(&it) != 0 && up->state != UPSTREAM_CLOSING) {
        upstream_close(up, "out of memory");
        return;
    }
    if (!up->wire.in.len && !up->wire.cutting)
        up->partial_since = 0;
    else if (!up->partial_since || frames)
        up->partial_since = uv_now(up->pool->lc->loop);
    if (r < 0 && up->state != UPSTREAM_CLOSING) {
        up_warn(up, "up#%llu: protocol error from upstream: %s", (unsigned long long)up->id,
                frame_strerror(r));
        struct call *c = up->call;
        if (c) {
            up->call = NULL;
            c->up = NULL;
            upstream_close(up, "upstream protocol error");
            call_upstream_lost(
                c, r == FRAME_ERR_TOO_LARGE ? CALL_CAUSE_TOO_LARGE : CALL_CAUSE_UPSTREAM_PROTOCOL,
                frame_strerror(r));
        } else {
            upstream_close(up, "upstream protocol error");
        }
        return;
    }
    if (up->state != UPSTREAM_CLOSING)
        upstream_update_reading(up);
}

void upstream_update_reading(struct upstream_conn *up)
{
    if (up->state != UPSTREAM_IDLE && up->state != UPSTREAM_BUSY && up->state != UPSTREAM_HANDSHAKE)
        return;
    struct sidecar *sc = up->pool->sc;
    /* Agents and upstreams follow the budget too (budget.h); with frame
     * data passed on as it arrives they hold at most a header and an
     * identify reply. */
    bool budget_paused = budget_hold(&up->wire.lc->budget, &up->wire.budget,
                                     up->wire.in.len + up->ident.len, sc->cfg->max_buffered_bytes);
    size_t high = (size_t)up->pool->cfg->call_buffer_bytes;
    size_t queued = 0;
    if (up->call && up->call->client)
        queued = wire_queued(&up->call->client->wire);
    if (up->wire.reading && (queued > high || budget_paused))
        wire_read_stop(&up->wire);
    else if (!up->wire.reading && queued <= high / 4 && !budget_paused)
        wire_read_start(&up->wire, upstream_read_cb);
}

void upstream_on_wire_written(struct upstream_conn *up, int status)
{
    if (up->state == UPSTREAM_CLOSING)
        return;
    if (status < 0) {
        if (up->state == UPSTREAM_BUSY && call_unread(up, status))
            lost_unread(up, "peer closed before reading the call");
        else
            upstream_close(up, uv_strerror(status));
        return;
    }
    if (up->call && up->call->client)
        client_update_reading(up->call->client);
}

static void on_connected(struct upstream_conn *up)
{
    struct pool *p = up->pool;
    uv_timer_stop(&up->dial_timer);
    wire_tune(&up->wire);
    if (p->pc->header) {
        if (buf_append(&up->wire.out, DRPC_HEADER, DRPC_HEADER_LEN) != 0) {
            pool_on_dial_failed(p, up, UV_ENOMEM, "connect");
            return;
        }
        wire_schedule_flush(&up->wire);
    }
    log_debug("up#%llu pool=%s: connected to %s", (unsigned long long)up->id, p->pc->name,
              up->ep ? up->ep->resolved : "-");
    pool_on_connected(p, up);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct upstream_conn *up = req->data;
    if (status == UV_ECANCELED || up->state == UPSTREAM_CLOSING)
        return;
    if (status < 0) {
        pool_on_dial_failed(up->pool, up, status, "connect");
        return;
    }
    on_connected(up);
}

static void dial_timer_cb(uv_timer_t *t)
{
    struct upstream_conn *up = t->data;
    if (up->state == UPSTREAM_CLOSING)
        return;
    if (up->state == UPSTREAM_HANDSHAKE) {
        upstream_close(up, "agent handshake timed out");
        return;
    }
    if (up->dial_error)
        pool_on_dial_failed(up->pool, up, up->dial_error, "dial");
    else
        pool_on_dial_failed(up->pool, up, UV_ETIMEDOUT, "dial timeout");
}

static int start_connect(struct upstream_conn *up, const struct sockaddr *sa)
{
    up->connect_req.data = up;
    return wire_connect(&up->wire, &up->connect_req, sa, NULL, connect_cb);
}

/* Records the resolver's answer on the endpoint (for admin), carries the
 * failed marks over to the addresses that are still in it (wherever they
 * are now: round-robin DNS reorders), and picks an address (see
 * failed_addrs). Returns its index, -1 without an endpoint. */
static int pick_address(struct endpoint *ep, const struct addrinfo *res,
                        struct sockaddr_storage *out)
{
    char list[ENDPOINT_MAX_RESOLVED][64];
    const struct addrinfo *by_index[ENDPOINT_MAX_RESOLVED];
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai && n < ENDPOINT_MAX_RESOLVED; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        netaddr_format(ai->ai_addr, list[n], sizeof(list[n]));
        by_index[n++] = ai;
    }
    if (n == 0) {
        memcpy(out, res->ai_addr, res->ai_addrlen);
        return -1;
    }
    if (!ep) {
        memcpy(out, by_index[0]->ai_addr, by_index[0]->ai_addrlen);
        return -1;
    }
    uint8_t failed = 0;
    for (size_t i = 0; i < ep->n_resolved; i++)
        if (ep->failed_addrs & (1u << i)) {
            int at = endpoint_find_address(list, n, ep->resolved_list[i]);
            if (at >= 0)
                failed |= (uint8_t)(1u << at);
        }
    memcpy(ep->resolved_list, list, n * sizeof(list[0]));
    ep->n_resolved = (uint8_t)n;
    ep->failed_addrs = failed;
    size_t want = ep->addr_cursor % n;
    for (size_t k = 0; k < n; k++) /* the first not failed yet, if any */
        if (!(failed & (1u << ((ep->addr_cursor + k) % n)))) {
            want = (ep->addr_cursor + k) % n;
            break;
        }
    memcpy(ep->resolved, list[want], sizeof(ep->resolved));
    memcpy(out, by_index[want]->ai_addr, by_index[want]->ai_addrlen);
    return (int)want;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct upstream_conn *up = req->data;
    up->gai_pending = false;
    if (up->state == UPSTREAM_CLOSING) {
        uv_freeaddrinfo(res);
        maybe_free(up);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        pool_on_dial_failed(up->pool, up, status < 0 ? status : UV_EAI_NONAME, "resolve");
        return;
    }
    struct sockaddr_storage ss;
    int at = pick_address(up->ep, res, &ss);
    if (at >= 0)
        memcpy(up->dialled, up->ep->resolved_list[at], sizeof(up->dialled));
    uv_freeaddrinfo(res);
    if (!pool_set_upstream_state(up->pool, up, UPSTREAM_CONNECTING, "resolved"))
        return;
    int rc = start_connect(up, (struct sockaddr *)&ss);
    if (rc < 0)
        pool_on_dial_failed(up->pool, up, rc, "connect");
}

/* Initialises the connection's socket handle and counts it for the close. */
static int init_socket(struct upstream_conn *up, bool unix_socket)
{
    uv_loop_t *loop = up->pool->lc->loop;
    int rc =
        unix_socket ? uv_pipe_init(loop, &up->wire.h.pipe, 0) : uv_tcp_init(loop, &up->wire.h.tcp);
    if (rc)
        return rc;
    up->wire.is_tcp = !unix_socket;
    up->wire.h.handle.data = &up->wire;
    up->wire.handle_open = true;
    up->open_handles++;
    return 0;
}

int upstream_dial(struct pool *p, struct endpoint *ep, struct upstream_conn **out)
{
    struct upstream_conn *up = calloc(1, sizeof(*up));
    if (!up)
        return UV_ENOMEM;
    wire_init(&up->wire, p->lc, WIRE_UPSTREAM);
    up->id = ++p->lc->next_upstream_id;
    up->pool = p;
    up->ep = ep;
    up->created_at = uv_now(p->lc->loop);
    list_init(&up->pool_node);

    uv_timer_init(p->lc->loop, &up->dial_timer);
    up->dial_timer.data = up;
    up->open_handles = 1;

    const struct config_addr *a = ep->addr;
    int rc = init_socket(up, a->kind == CONFIG_ADDR_UNIX);

    /* NEW is always left legally: this cannot fail. */
    (void)pool_set_upstream_state(p, up, ep->literal ? UPSTREAM_CONNECTING : UPSTREAM_RESOLVING,
                                  "dial");
    ep->dials++;
    p->stats.dials++;

    if (rc == 0 && a->kind == CONFIG_ADDR_UNIX) {
        up->connect_req.data = up;
        rc = wire_connect(&up->wire, &up->connect_req, NULL, a->path, connect_cb);
    } else if (rc == 0 && ep->literal) {
        rc = start_connect(up, (struct sockaddr *)&ep->sa);
    } else if (rc == 0) {
        char port[8];
        snprintf(port, sizeof(port), "%u", a->port);
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        up->gai_req.data = up;
        rc = uv_getaddrinfo(p->lc->loop, &up->gai_req, gai_cb, a->host, port, &hints);
        if (rc == 0)
            up->gai_pending = true;
    }
    if (rc < 0) {
        /* Report the failure from the loop, never from inside this call. */
        up->dial_error = rc;
        uv_timer_start(&up->dial_timer, dial_timer_cb, 0, 0);
    } else {
        uv_timer_start(&up->dial_timer, dial_timer_cb, p->pc->dial_timeout_ms, 0);
    }
    *out = up;
    return 0;
}

void upstream_accept(struct pool *p, uv_stream_t *server)
{
    struct sidecar *sc = p->sc;
    struct upstream_conn *up = calloc(1, sizeof(*up));
    if (!up) {
        log_error("pool %s: out of memory accepting an agent", p->pc->name);
        return;
    }
    wire_init(&up->wire, p->lc, WIRE_UPSTREAM);
    up->id = ++p->lc->next_upstream_id;
    up->pool = p;
    up->created_at = up->connected_at = uv_now(p->lc->loop);
    list_init(&up->pool_node);
    uv_timer_init(p->lc->loop, &up->dial_timer);
    up->dial_timer.data = up;
    up->open_handles = 1;
    int rc = init_socket(up, p->pc->accept.kind == CONFIG_ADDR_UNIX);
    if (rc == 0)
        rc = uv_accept(server, &up->wire.h.stream);
    /* Still NEW (on no pool list): closing now touches no counters. */
    if (rc != 0) {
        upstream_close(up, "accept failed");
        return;
    }
    wire_peer_name(&up->wire, up->peer, sizeof(up->peer));
    if (up->wire.is_tcp) {
        /* Default agent id: the remote IP address. */
        snprintf(up->agent_id, sizeof(up->agent_id), "%s", up->peer);
        char *colon = strrchr(up->agent_id, ':');
        if (colon)
            *colon = '\0';
        if (up->agent_id[0] == '[') {
            size_t n = strlen(up->agent_id);
            memmove(up->agent_id, up->agent_id + 1, n);
            n = strlen(up->agent_id);
            if (n && up->agent_id[n - 1] == ']')
                up->agent_id[n - 1] = '\0';
        }
    } else {
        snprintf(up->agent_id, sizeof(up->agent_id), "conn-%llu", (unsigned long long)up->id);
    }
    /* At max_conns, the connection that has waited longest in its handshake
     * (identify unanswered) gives its slot to the new one: connections that
     * never identify cannot keep out agents that do. */
    struct upstream_conn *pending =
        pool_total(p) >= p->pc->max_conns && sc->state != SIDECAR_STOPPING
            ? pool_oldest_handshake(p)
            : NULL;
    if (pending) {
        p->stats.agent_handshakes_evicted++;
        upstream_close(pending, "handshake evicted: its slot went to a newer agent connection");
    }
    if (pool_total(p) >= p->pc->max_conns || sc->state == SIDECAR_STOPPING) {
        p->stats.agents_rejected++;
        agent_warn(p, up->peer, "pool %s: agent from %s rejected: max_conns %u reached",
                   p->pc->name, up->peer, p->pc->max_conns);
        upstream_close(up, "max_conns reached");
        return;
    }
    p->stats.agents_accepted++;
    up->tls_identity =
        p->pc->accept_tls.enabled && p->pc->accept_tls.client_ca.path && !p->pc->identify_rpc;
    (void)pool_set_upstream_state(p, up, UPSTREAM_HANDSHAKE, "agent accepted");
    wire_tune(&up->wire);
    uv_timer_start(&up->dial_timer, dial_timer_cb, p->pc->dial_timeout_ms, 0);
    upstream_update_reading(up);
    agent_start(up); /* a "header" prefix is checked as the agent's bytes arrive */
}
