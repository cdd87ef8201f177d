/*
 * peer_server: listeners, server connections and drpcmanager's stream rules
 * (see peer_server.h).
 *
 *   listener --accept--> srv_conn --packets--> on_packet()
 *                                                 | current stream: message,
 *                                                 |   close-send, cancel
 *                                                 | newer Invoke: cancel the
 *                                                 |   current, start the next
 *                                                 v
 *                                            peer_stream (peer_service)
 *
 * A srv_conn owns its peer_conn (embedded; freed in conn_closed), its one
 * peer_stream and the InvokeMetadata waiting for its Invoke.
 */
#include "tests/peer/peer_server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/frame.h"
#include "proxy/handle.h"
#include "proxy/metadata.h"
#include "tests/peer/peer_conn.h"
#include "tests/peer/peer_service.h"

enum srv_conn_role {
    SRV_CONN_ACCEPTED, /* came in on a listener */
    SRV_CONN_DIALLED,  /* agent mode: we dialled it */
};

struct srv_conn {
    struct peer_conn conn;
    struct peer_server *srv;
    struct list_node node; /* on srv->conns until freed */
    enum srv_conn_role role;
    uint64_t id; /* 0 until accepted or connected */
    uint64_t rpcs;
    struct peer_stream stream;
    struct metadata meta; /* InvokeMetadata waiting for its Invoke */
    uint64_t meta_sid;    /* its stream id; 0 for none */
    peer_server_end_cb on_end;
    void *end_arg;
};

struct peer_listener {
    union stream_handle h;
    struct peer_server *srv;
    struct list_node node;
    char path[PEER_ADDR_PATH_MAX]; /* unix socket file to remove, or "" */
};

static struct srv_conn *srv_conn_of(struct peer_conn *c)
{
    return (struct srv_conn *)((char *)c - offsetof(struct srv_conn, conn));
}

void peer_server_init(struct peer_server *srv, uv_loop_t *loop, const char *name, bool header,
                      const char *ident)
{
    *srv = (struct peer_server){0};
    srv->loop = loop;
    srv->name = name;
    srv->header = header;
    srv->ident = ident;
    srv->state = PEER_SERVER_RUNNING;
    list_init(&srv->listeners);
    list_init(&srv->conns);
}

void peer_server_set_tls(struct peer_server *srv, struct peer_tls_ctx *accept,
                         struct peer_tls_ctx *dial)
{
    srv->tls_accept = accept;
    srv->tls_dial = dial;
}

/* --- the stream rules ----------------------------------------------------- */

static struct peer_service_info info_of(const struct srv_conn *sc)
{
    return (struct peer_service_info){sc->id, sc->rpcs, sc->srv->ident};
}

static void cancel_current(struct srv_conn *sc)
{
    if (sc->stream.state != PEER_STREAM_IDLE)
        peer_service_cancel(&sc->stream);
}

/* A packet of the current stream (drpcstream.HandlePacket). */
static void current_stream_packet(struct srv_conn *sc, const struct peer_packet *p)
{
    if (sc->stream.state == PEER_STREAM_IDLE)
        return; /* finished: late packets change nothing */
    struct peer_service_info info = info_of(sc);
    switch (p->kind) {
    case FRAME_KIND_MESSAGE:
        peer_service_message(&sc->stream, p->data, p->len, &info);
        return;
    case FRAME_KIND_CLOSE_SEND:
        peer_service_close_send(&sc->stream);
        return;
    case FRAME_KIND_CLOSE:
    case FRAME_KIND_CANCEL:
    case FRAME_KIND_ERROR:
        peer_service_cancel(&sc->stream); /* Go sends nothing after these */
        return;
    default:
        /* Invoke on an existing stream, or InvokeMetadata (unknown to it) */
        peer_conn_close(&sc->conn, "protocol error: invoke on existing stream");
        return;
    }
}

/* An Invoke or InvokeMetadata of a newer stream (NewServerStream). */
static void newer_stream_packet(struct srv_conn *sc, const struct peer_packet *p)
{
    cancel_current(sc);
    if (p->kind == FRAME_KIND_INVOKE_METADATA) {
        /* Go decodes it at once; a malformed one ends the connection. */
        const struct metadata_limits limits = {1u << 20, PEER_READER_MAX_PACKET};
        const char *why;
        metadata_free(&sc->meta);
        if (metadata_decode(p->data, p->len, &limits, &sc->meta, &why) != 0) {
            peer_conn_close(&sc->conn, why ? why : "out of memory");
            return;
        }
        sc->meta_sid = p->stream_id;
        return;
    }

    struct metadata md = {0};
    if (sc->meta_sid == p->stream_id)
        md = sc->meta;
    else
        metadata_free(&sc->meta);
    sc->meta = (struct metadata){0};
    sc->meta_sid = 0;
    sc->rpcs++;
    struct peer_service_info info = info_of(sc);
    peer_service_start(&sc->stream, p->stream_id, p->data, p->len, &md, &info);
    metadata_free(&md);
}

static void on_packet(struct peer_conn *c, const struct peer_packet *p)
{
    struct srv_conn *sc = srv_conn_of(c);
    if (p->control) {
        /* A soft cancel ends the current stream; other control packets are
         * for peers that know them. */
        if (p->kind == FRAME_KIND_CANCEL && p->stream_id == sc->stream.sid)
            cancel_current(sc);
        return;
    }
    if (p->stream_id == sc->stream.sid) {
        current_stream_packet(sc, p);
    } else if (p->stream_id < sc->stream.sid) {
        return; /* an older stream (the reader already refuses most of these) */
    } else if (p->kind == FRAME_KIND_INVOKE || p->kind == FRAME_KIND_INVOKE_METADATA) {
        newer_stream_packet(sc, p);
    } else {
        /* A stream nobody invoked: Go cancels the current one and waits for
         * that Invoke; the packet itself is never used. */
        cancel_current(sc);
    }
}

static void on_drain(struct peer_conn *c)
{
    peer_service_drain(&srv_conn_of(c)->stream);
}

/* --- connection lifetime -------------------------------------------------- */

static void conn_closed(struct peer_conn *c)
{
    struct srv_conn *sc = srv_conn_of(c);
    if (sc->id) {
        fprintf(stderr,
                "%s: conn %" PRIu64 " closed (%s) rpcs=%" PRIu64 " in=%" PRIu64 " out=%" PRIu64
                " age_ms=%" PRIu64 "\n",
                sc->srv->name, sc->id, c->close_reason ? c->close_reason : "closed", sc->rpcs,
                c->bytes_in, c->bytes_out, uv_now(sc->srv->loop) - c->opened_ms);
    }
    list_remove(&sc->node);
    peer_service_free(&sc->stream);
    metadata_free(&sc->meta);
    peer_server_end_cb on_end = sc->on_end;
    void *arg = sc->end_arg;
    free(sc);
    if (on_end)
        on_end(arg);
}

/* A new srv_conn on srv->conns, or NULL (nothing to close). */
static struct srv_conn *conn_new(struct peer_server *srv, enum peer_addr_kind kind,
                                 enum srv_conn_role role)
{
    struct srv_conn *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    if (peer_conn_init(&sc->conn, srv->loop, kind, on_packet, conn_closed) != 0) {
        free(sc);
        return NULL;
    }
    sc->conn.on_drain = on_drain;
    peer_conn_set_tls(&sc->conn, role == SRV_CONN_ACCEPTED ? srv->tls_accept : srv->tls_dial);
    sc->srv = srv;
    sc->role = role;
    peer_service_init(&sc->stream, &sc->conn);
    list_push_back(&srv->conns, &sc->node);
    return sc;
}

static void conn_opened(struct srv_conn *sc, const char *how)
{
    char peer[PEER_ADDR_TEXT_MAX];
    sc->id = ++sc->srv->next_conn_id;
    peer_conn_peer_name(&sc->conn, peer, sizeof(peer));
    fprintf(stderr, "%s: conn %" PRIu64 " open (%s) peer=%s\n", sc->srv->name, sc->id, how, peer);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct peer_listener *l = listener->data;
    struct peer_server *srv = l->srv;
    if (status < 0 || srv->state != PEER_SERVER_RUNNING)
        return;
    struct srv_conn *sc = conn_new(
        srv, listener->type == UV_NAMED_PIPE ? PEER_ADDR_UNIX : PEER_ADDR_TCP, SRV_CONN_ACCEPTED);
    if (!sc) {
        fprintf(stderr, "%s: out of memory accepting a connection\n", srv->name);
        return;
    }
    int rc = peer_conn_accept(&sc->conn, listener, srv->header);
    if (rc) {
        fprintf(stderr, "%s: accept: %s\n", srv->name, uv_strerror(rc));
        peer_conn_close(&sc->conn, "accept failed");
        return;
    }
    conn_opened(sc, "accepted");
}

static void on_connected(struct peer_conn *c, int status)
{
    struct srv_conn *sc = srv_conn_of(c);
    if (status < 0) {
        fprintf(stderr, "%s: dial: %s\n", sc->srv->name, peer_conn_strerror(c, status));
        peer_conn_close(c, "dial failed");
        return;
    }
    conn_opened(sc, "dialled");
    if (sc->srv->header) {
        /* as drpcmigrate.DialWithHeader, whose HeaderConn prepends the prefix
         * to the first Write: staged now, it leaves with the first reply */
        peer_conn_raw(c, DRPC_HEADER, DRPC_HEADER_LEN);
    }
}

int peer_server_dial(struct peer_server *srv, const struct peer_addr *addr,
                     peer_server_end_cb on_end, void *arg)
{
    if (srv->state != PEER_SERVER_RUNNING)
        return UV_ECANCELED;
    struct srv_conn *sc = conn_new(srv, addr->kind, SRV_CONN_DIALLED);
    if (!sc)
        return UV_ENOMEM;
    int rc = peer_conn_connect(&sc->conn, addr, on_connected);
    if (rc) {
        /* no callback was promised: close quietly, on_end not set yet */
        peer_conn_close(&sc->conn, "dial failed");
        return rc;
    }
    sc->on_end = on_end;
    sc->end_arg = arg;
    return 0;
}

/* --- listeners ------------------------------------------------------------ */

static void listener_closed(uv_handle_t *h)
{
    struct peer_listener *l = h->data;
    if (l->path[0])
        unlink(l->path);
    free(l);
}

int peer_server_listen(struct peer_server *srv, const char *text, char *bound, size_t len)
{
    struct peer_addr addr;
    int rc = peer_addr_parse(text, &addr);
    if (rc)
        return rc;
    struct peer_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return UV_ENOMEM;
    l->srv = srv;
    if (addr.kind == PEER_ADDR_UNIX) {
        unlink(addr.path); /* a stale socket file from an earlier run */
        uv_pipe_init(srv->loop, &l->h.pipe, 0);
        rc = uv_pipe_bind(&l->h.pipe, addr.path);
        if (rc == 0)
            snprintf(l->path, sizeof(l->path), "%s", addr.path);
    } else {
        uv_tcp_init(srv->loop, &l->h.tcp);
        rc = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&addr.sa, 0);
    }
    l->h.handle.data = l;
    if (rc == 0)
        rc = uv_listen(&l->h.stream, 1024, on_connection);
    if (rc == 0) {
        if (addr.kind == PEER_ADDR_UNIX) {
            snprintf(bound, len, "unix:%s", addr.path);
        } else {
            struct sockaddr_storage sa;
            int n = sizeof(sa);
            rc = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&sa, &n);
            if (rc == 0)
                rc = peer_addr_format_sockaddr((struct sockaddr *)&sa, bound, len);
        }
    }
    if (rc) {
        uv_close(&l->h.handle, listener_closed);
        return rc;
    }
    list_push_back(&srv->listeners, &l->node);
    return 0;
}

void peer_server_stop(struct peer_server *srv)
{
    struct list_node *pos, *tmp;
    srv->state = PEER_SERVER_STOPPING;
    list_for_each_safe(pos, tmp, &srv->listeners)
    {
        struct peer_listener *l = list_entry(pos, struct peer_listener, node);
        list_remove(&l->node);
        uv_close(&l->h.handle, listener_closed);
    }
    list_for_each_safe(pos, tmp, &srv->conns)
    {
        struct srv_conn *sc = list_entry(pos, struct srv_conn, node);
        cancel_current(sc);
        sc->on_end = NULL; /* nobody re-dials during a stop */
        peer_conn_close(&sc->conn, "shutting down");
    }
}
