/*
 * admin: server and connection lifecycle (see admin.h).
 *
 *   accept --> [reading] --request--> route --> response queued --> [reading]
 *                 |  \--timeout/limit/parse error--> error response, close
 *                 \--POST /reload--> [waiting] --reload done--> response
 *
 * Each connection owns its input buffer (bytes not parsed yet), its output
 * buffer and the bytes of the write in flight; it is freed when both of its
 * handles (socket, timer) are closed.
 */
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "proxy/handle.h"

#include "admin/http.h"
#include "admin/routes.h"
#include "config/config.h"
#include "proxy/buf.h"
#include "proxy/list.h"
#include "proxy/log.h"
#include "proxy/reload.h"
#include "proxy/sidecar.h"

#define ADMIN_MAX_OUT (8u << 20) /* a client that stops reading is cut off here */

struct admin {
    struct sidecar *sc;
    union stream_handle h;
    bool open;
    struct list_node conns;
    uint32_t n_conns;
    uint64_t next_conn_id;
    char readbuf[16 * 1024];
};

enum admin_conn_state {
    ADMIN_CONN_READING,  /* parsing requests */
    ADMIN_CONN_WAITING,  /* an async answer (reload) is pending */
    ADMIN_CONN_DRAINING, /* writing the last response, then close */
    ADMIN_CONN_CLOSING,
};

struct admin_conn {
    struct admin *admin;
    uint64_t id;
    enum admin_conn_state state;
    struct list_node node;
    union stream_handle h;
    uv_timer_t timer;
    int open_handles;
    struct admin_http http;
    bool keep_alive; /* of the request being answered */
    bool head;
    struct buf in;
    struct buf out;
    struct buf inflight;
    uv_write_t wreq;
    bool writing;
};

static void conn_closed(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->inflight);
    free(c);
}

static void conn_close(struct admin_conn *c)
{
    if (c->state == ADMIN_CONN_CLOSING)
        return;
    c->state = ADMIN_CONN_CLOSING;
    list_remove(&c->node);
    c->admin->n_conns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close(&c->h.handle, conn_closed);
}

static void process(struct admin_conn *c);

static void write_cb(uv_write_t *req, int status)
{
    struct admin_conn *c = req->data;
    c->writing = false;
    buf_reset(&c->inflight);
    if (c->state == ADMIN_CONN_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->out.len) {
        struct buf t = c->inflight;
        c->inflight = c->out;
        c->out = t;
        uv_buf_t b = uv_buf_init((char *)c->inflight.data, (unsigned)c->inflight.len);
        c->writing = true;
        if (uv_write(&c->wreq, &c->h.stream, &b, 1, write_cb) != 0) {
            c->writing = false;
            conn_close(c);
        }
        return;
    }
    if (c->state == ADMIN_CONN_DRAINING) {
        conn_close(c);
        return;
    }
    process(c); /* a pipelined request may be waiting in c->in */
}

static void flush(struct admin_conn *c)
{
    if (c->writing || c->out.len == 0 || c->state == ADMIN_CONN_CLOSING)
        return;
    struct buf t = c->inflight;
    c->inflight = c->out;
    c->out = t;
    uv_buf_t b = uv_buf_init((char *)c->inflight.data, (unsigned)c->inflight.len);
    c->wreq.data = c;
    c->writing = true;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, write_cb) != 0) {
        c->writing = false;
        conn_close(c);
    }
}

/* Queues a response; close_after ends the connection once it is written. */
static void respond(struct admin_conn *c, struct admin_response *resp, bool close_after)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s"
                     "Connection: %s\r\n\r\n",
                     resp->status, admin_status_text(resp->status),
                     resp->content_type ? resp->content_type : "application/json", resp->body.len,
                     resp->headers, close_after ? "close" : "keep-alive");
    if (n < 0 || (size_t)n >= sizeof(head) || buf_append(&c->out, head, (size_t)n) != 0 ||
        (!c->head && buf_append(&c->out, resp->body.data, resp->body.len) != 0) ||
        c->out.len > ADMIN_MAX_OUT) {
        conn_close(c);
        return;
    }
    if (close_after)
        c->state = ADMIN_CONN_DRAINING;
    flush(c);
}

static void timer_cb(uv_timer_t *t)
{
    struct admin_conn *c = t->data;
    if (c->state != ADMIN_CONN_READING)
        return;
    if (c->in.len == 0 && c->http.url_len == 0 && c->http.header_bytes == 0) {
        conn_close(c); /* an idle keep-alive connection: just go */
        return;
    }
    struct admin_response resp = {0};
    admin_response_error(&resp, 408, "request not completed within request_timeout_ms");
    uv_read_stop(&c->h.stream);
    respond(c, &resp, true);
    admin_response_free(&resp);
}

static void arm_timer(struct admin_conn *c)
{
    uv_timer_start(&c->timer, timer_cb, c->admin->sc->cfg->admin.request_timeout_ms, 0);
}

/* Parses and answers what is buffered, one request at a time. */
static void process(struct admin_conn *c)
{
    while (c->state == ADMIN_CONN_READING && !c->writing) {
        size_t used = 0;
        enum admin_http_result r =
            admin_http_feed(&c->http, (const char *)c->in.data, c->in.len, &used);
        buf_consume(&c->in, used);
        if (r == ADMIN_HTTP_NEED_MORE)
            return;
        if (r == ADMIN_HTTP_ERROR) {
            struct admin_response resp = {0};
            admin_response_error(&resp, c->http.error_status, c->http.error_text);
            uv_read_stop(&c->h.stream);
            respond(c, &resp, true);
            admin_response_free(&resp);
            return;
        }
        struct admin_response resp = {0};
        struct admin_route_ctx ctx = {c->admin->sc, c->admin, c->id};
        c->keep_alive = c->http.keep_alive;
        c->head = strcmp(c->http.method, "HEAD") == 0;
        admin_route(&ctx, &c->http, &resp);
        admin_http_next(&c->http);
        if (resp.pending) {
            c->state = ADMIN_CONN_WAITING;
            uv_timer_stop(&c->timer);
            admin_response_free(&resp);
            return;
        }
        respond(c, &resp, !c->keep_alive);
        admin_response_free(&resp);
        if (c->state == ADMIN_CONN_READING)
            arm_timer(c);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct admin_conn *c = h->data;
    buf->base = c->admin->readbuf;
    buf->len = sizeof(c->admin->readbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    if (c->state == ADMIN_CONN_CLOSING)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    /* Bound what a client can make us hold: a request plus some pipelining. */
    if (nread == 0)
        return;
    if (c->in.len + (size_t)nread > 4 * (ADMIN_HTTP_MAX_HEADERS + ADMIN_HTTP_MAX_BODY) ||
        buf_append(&c->in, buf->base, (size_t)nread) != 0) {
        conn_close(c);
        return;
    }
    process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct admin *a = server->data;
    if (status < 0)
        return;
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->admin = a;
    c->id = ++a->next_conn_id;
    list_init(&c->node);
    int rc = a->sc->cfg->admin.addr.kind == CONFIG_ADDR_UNIX
                 ? uv_pipe_init(a->sc->loop, &c->h.pipe, 0)
                 : uv_tcp_init(a->sc->loop, &c->h.tcp);
    if (rc) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    uv_timer_init(a->sc->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    list_push_back(&a->conns, &c->node);
    a->n_conns++;
    admin_http_init(&c->http);
    if (uv_accept(server, &c->h.stream) != 0 || a->n_conns > ADMIN_MAX_CONNS) {
        conn_close(c);
        return;
    }
    if (c->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&c->h.tcp, 1);
    arm_timer(c);
    uv_read_start(&c->h.stream, alloc_cb, read_cb);
}

struct reload_answer {
    struct admin *admin;
    uint64_t conn_id;
};

static void reload_done(struct sidecar *sc, int status, const char *error, void *arg)
{
    (void)sc;
    struct reload_answer *ra = arg;
    struct admin *a = ra->admin;
    struct admin_conn *c = NULL;
    for (struct list_node *n = a->conns.next; n != &a->conns; n = n->next) {
        struct admin_conn *x = list_entry(n, struct admin_conn, node);
        if (x->id == ra->conn_id)
            c = x;
    }
    free(ra);
    if (!c || c->state != ADMIN_CONN_WAITING)
        return; /* the client left; the outcome is in the log and /config */
    struct admin_response resp = {0};
    if (status == 0) {
        resp.status = 200;
        resp.content_type = "application/json";
        const char *body = "{\n  \"reloaded\": true\n}\n";
        if (buf_append(&resp.body, body, strlen(body)) != 0)
            resp.status = 500;
    } else {
        json_t *doc = json_pack("{s:b, s:s}", "reloaded", 0, "error", error ? error : "");
        char *text = json_dumps(doc, JSON_INDENT(2));
        json_decref(doc);
        resp.status = 422;
        resp.content_type = "application/json";
        if (!text || buf_append(&resp.body, text, strlen(text)) != 0)
            resp.status = 500;
        free(text);
    }
    c->state = ADMIN_CONN_READING;
    respond(c, &resp, !c->keep_alive);
    admin_response_free(&resp);
    if (c->state == ADMIN_CONN_READING)
        arm_timer(c);
}

int admin_reload(struct admin *a, uint64_t conn_id)
{
    struct reload_answer *ra = malloc(sizeof(*ra));
    if (!ra)
        return UV_ENOMEM;
    ra->admin = a;
    ra->conn_id = conn_id;
    int rc = reload_start(a->sc, reload_done, ra);
    if (rc)
        free(ra);
    return rc;
}

static void server_closed(uv_handle_t *h)
{
    (void)h;
}

int admin_start(struct sidecar *sc, struct admin **out, char *err, size_t err_size)
{
    const struct config_addr *addr = &sc->cfg->admin.addr;
    struct admin *a = calloc(1, sizeof(*a));
    if (!a)
        return UV_ENOMEM;
    a->sc = sc;
    list_init(&a->conns);
    int rc;
    if (addr->kind == CONFIG_ADDR_UNIX) {
        unlink(addr->path); /* the admin socket is ours alone */
        rc = uv_pipe_init(sc->loop, &a->h.pipe, 0);
        if (rc == 0) {
            a->open = true;
            rc = uv_pipe_bind(&a->h.pipe, addr->path);
        }
    } else {
        struct sockaddr_storage ss;
        const char *host = strcmp(addr->host, "localhost") == 0 ? "127.0.0.1" : addr->host;
        if (uv_ip4_addr(host, addr->port, (struct sockaddr_in *)&ss) != 0 &&
            uv_ip6_addr(host, addr->port, (struct sockaddr_in6 *)&ss) != 0) {
            snprintf(err, err_size, "admin.address %s: not an IP address", addr->text);
            free(a);
            return UV_EINVAL;
        }
        rc = uv_tcp_init(sc->loop, &a->h.tcp);
        if (rc == 0) {
            a->open = true;
            rc = uv_tcp_bind(&a->h.tcp, (struct sockaddr *)&ss, 0);
        }
    }
    a->h.handle.data = a;
    if (rc == 0)
        rc = uv_listen(&a->h.stream, 64, on_connection);
    if (rc) {
        snprintf(err, err_size, "admin.address %s: %s", addr->text, uv_strerror(rc));
        if (a->open)
            uv_close(&a->h.handle, server_closed);
        /* freed by admin_free once the loop ran dry */
        *out = a;
        a->open = false;
        return rc;
    }
    log_info("admin: listening on http://%s/", addr->text);
    *out = a;
    return 0;
}

void admin_stop(struct admin *a)
{
    if (a->open) {
        a->open = false;
        if (a->sc->cfg->admin.addr.kind == CONFIG_ADDR_UNIX)
            unlink(a->sc->cfg->admin.addr.path);
        uv_close(&a->h.handle, server_closed);
    }
    while (!list_empty(&a->conns))
        conn_close(list_entry(list_first(&a->conns), struct admin_conn, node));
}

void admin_free(struct admin *a)
{
    free(a);
}
