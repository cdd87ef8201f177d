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
#include "proxy/sidecar.h"
#include "proxy/transport_tls.h"
#include "proxy/upstream.h"

/* An output buffer bigger than this is freed by wire_trim. */
#define WIRE_READ_CHUNK (64 * 1024)
/* What a read can leave over: a partial frame header, or of the DRPC!!!1
 * prefix. More than that in wire.in was put there by its owner. */
#define WIRE_KEEP_MAX   (FRAME_HEADER_MAX + DRPC_HEADER_LEN)

void wire_init(struct wire *w, struct loop_ctx *lc, enum wire_owner owner)
{
    memset(w, 0, sizeof(*w));
    w->lc = lc;
    w->ops = &transport_stream;
    w->owner = owner;
    list_init(&w->flush_node);
    budget_entry_init(&w->budget);
    w->h.handle.data = w;
}

void wire_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct wire *w = h->data;
    size_t keep = w->in.len;
    if (keep > WIRE_KEEP_MAX) {
        /* Not a partial header: bytes put there by an owner (an adopted
         * connection's pending bytes). Read after them, privately. */
        if (buf_reserve(&w->in, WIRE_READ_CHUNK) != 0) {
            buf->base = NULL; /* libuv reports UV_ENOBUFS */
            buf->len = 0;
            return;
        }
        buf->base = (char *)w->in.data + w->in.len;
        buf->len = w->in.cap - w->in.len;
        return;
    }
    /* Reads land in the loop-wide buffer. A partial header left from the
     * last read (a few bytes) goes in front of it; wire.in keeps its copy
     * until wire_frames_begin, in case no bytes come. */
    if (keep)
        memcpy(w->lc->readbuf, w->in.data, keep);
    buf->base = (char *)w->lc->readbuf + keep;
    buf->len = budget_read_size(&w->lc->budget, &w->budget, w->lc->sc->cfg->max_buffered_bytes,
                                sizeof(w->lc->readbuf) - keep);
}

void wire_frames_begin(struct wire_frames *it, struct wire *w, ssize_t nread, const uv_buf_t *buf)
{
    it->w = w;
    it->pos = 0;
    w->bytes_in += (uint64_t)nread;
    if (!w->lc->first_read_ns)
        w->lc->first_read_ns = uv_hrtime();
    const uint8_t *rb = w->lc->readbuf;
    it->shared = (const uint8_t *)buf->base >= rb &&
                 (const uint8_t *)buf->base < rb + sizeof(w->lc->readbuf);
    if (it->shared) {
        it->data = rb;
        it->len = w->in.len + (size_t)nread;
        buf_reset(&w->in);
    } else {
        w->in.len += (size_t)nread;
        it->data = w->in.data;
        it->len = w->in.len;
    }
}

enum frame_result wire_frames_next(struct wire_frames *it, size_t max_data, struct frame *f)
{
    struct wire *w = it->w;
    size_t avail = it->len - it->pos;
    if (w->cutting) {
        if (avail == 0)
            return FRAME_NEED_MORE;
        size_t left = w->cut.frame_len - w->cut_off;
        size_t n = avail < left ? avail : left;
        *f = w->cut;
        f->data = it->data + it->pos;
        f->len = n;
        f->offset = w->cut_off;
        f->header_len = 0;
        it->pos += n;
        w->cut_off += n;
        w->cutting = w->cut_off < w->cut.frame_len;
        return FRAME_OK;
    }
    enum frame_result r = frame_parse_header(it->data + it->pos, avail, max_data, f);
    if (r != FRAME_OK)
        return r;
    size_t have = avail - f->header_len;
    it->pos += f->header_len;
    if (have >= f->frame_len) {
        it->pos += f->frame_len; /* whole: one piece */
        return FRAME_OK;
    }
    /* The data is still coming: hand out what is here as the first piece
     * and pass the rest on as it arrives. */
    f->len = have;
    it->pos += have;
    w->cut = *f;
    w->cut.data = NULL;
    w->cut_off = have;
    w->cutting = true;
    return FRAME_OK;
}

int wire_frames_end(struct wire_frames *it)
{
    struct wire *w = it->w;
    if (!it->shared) {
        buf_consume(&w->in, it->pos);
        return 0;
    }
    return buf_append(&w->in, it->data + it->pos, it->len - it->pos);
}

size_t wire_cut_left(const struct wire *w)
{
    return w->cutting ? w->cut.frame_len - w->cut_off : 0;
}

int wire_put_piece(struct wire *w, const struct frame *f, uint64_t stream_id, uint64_t message_id,
                   bool done)
{
    bool first = frame_first_piece(f);
    int rc = buf_reserve(&w->out, (first ? FRAME_HEADER_MAX : 0) + f->len);
    if (rc)
        return rc;
    if (first)
        w->out.len += frame_header_encode(w->out.data + w->out.len, f->kind, done, f->control,
                                          stream_id, message_id, f->frame_len);
    if (f->len)
        memcpy(w->out.data + w->out.len, f->data, f->len);
    w->out.len += f->len;
    return 0;
}

int wire_put_frame(struct wire *w, const struct frame *f, uint64_t stream_id, uint64_t message_id)
{
    return wire_put_piece(w, f, stream_id, message_id, f->done);
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

void wire_budget_resumed(struct wire *w)
{
    switch (w->owner) {
    case WIRE_CLIENT:
        client_update_reading(client_from_wire(w));
        break;
    case WIRE_UPSTREAM:
        upstream_update_reading(upstream_from_wire(w));
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
    /* An accepted connection of a TLS listener or agent port. A dialled
     * one got its TLS in wire_connect. */
    bool accepted = w->owner == WIRE_CLIENT || !upstream_from_wire(w)->ep;
    if (accepted && w->ops == &transport_stream && transport_tls_install(w, false) != 0)
        w->shutdown = true; /* never read: the idle timeout closes it */
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
    int rc = transport_tls_install(w, true);
    return rc ? rc : w->ops->connect(w, req, sa, path, cb);
}
