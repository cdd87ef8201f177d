/*
 * transport_stream: the socket as it is, TCP or unix, plaintext (see
 * transport.h). Every operation is the libuv stream call itself; reads go
 * straight to the owner's callback, with no copy and no extra call.
 */
#include "proxy/transport.h"

#include "proxy/wire.h"

static int stream_connect(struct wire *w, uv_connect_t *req, const struct sockaddr *sa,
                          const char *path, uv_connect_cb cb)
{
    if (path) {
        uv_pipe_connect(req, &w->h.pipe, path, cb); /* reports its errors through cb */
        return 0;
    }
    return uv_tcp_connect(req, &w->h.tcp, sa, cb);
}

static int stream_read_start(struct wire *w)
{
    return uv_read_start(&w->h.stream, wire_alloc_cb, w->read_cb);
}

static void stream_read_stop(struct wire *w)
{
    uv_read_stop(&w->h.stream);
}

static int stream_try_write(struct wire *w, const uv_buf_t *buf)
{
    return uv_try_write(&w->h.stream, buf, 1);
}

static void stream_write_cb(uv_write_t *req, int status)
{
    wire_on_written(req->data, status);
}

static int stream_write(struct wire *w, const uv_buf_t *buf)
{
    w->write_req.data = w;
    return uv_write(&w->write_req, &w->h.stream, buf, 1, stream_write_cb);
}

static size_t stream_write_queue_size(const struct wire *w)
{
    return uv_stream_get_write_queue_size(&w->h.stream);
}

static void stream_close(struct wire *w, uv_close_cb cb)
{
    uv_close(&w->h.handle, cb);
}

static int stream_peer_addr(const struct wire *w, struct sockaddr_storage *ss)
{
    if (!w->is_tcp)
        return UV_EAFNOSUPPORT;
    int len = sizeof(*ss);
    return uv_tcp_getpeername(&w->h.tcp, (struct sockaddr *)ss, &len);
}

const struct transport_ops transport_stream = {
    .name = "stream",
    .connect = stream_connect,
    .read_start = stream_read_start,
    .read_stop = stream_read_stop,
    .try_write = stream_try_write,
    .write = stream_write,
    .write_queue_size = stream_write_queue_size,
    .close = stream_close,
    .peer_addr = stream_peer_addr,
};
