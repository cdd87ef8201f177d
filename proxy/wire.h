/*
 * wire: one DRPC byte stream as the proxy uses it, embedded in both client
 * and upstream connections. The bytes move through a transport
 * (transport.h): the plain socket, TCP or unix, or later TLS over it.
 *
 *   transport --read--> [shared loop buffer]--frame pieces--> owner's handler
 *                        | partial header left over (< FRAME_HEADER_MAX)
 *                        v
 *                     wire.in (private; copied in front of the next read)
 *
 * Cut-through: once a frame's header is known, its data is handed on as
 * it arrives, piece by piece (struct frame offset/frame_len), never
 * assembled here. A connection's own read buffer is therefore at most a
 * partial header, whatever the frame size; owners that need whole packets
 * (Invoke, InvokeMetadata) assemble them under their own caps.
 *
 *   owner appends frames --> wire.out --flush (try_write, then
 *                                        write of the rest)--> transport
 *
 * Buffer ownership: wire.in and wire.out belong to the wire; the bytes of
 * an in-flight uv_write live in wire.inflight, owned by the wire until the
 * write callback. Idle connections hold no buffers at all: reads land in a
 * loop-wide buffer and only an incomplete frame is copied out.
 *
 * Flushes are deferred: wire_schedule_flush() puts the wire on the
 * loop context's flush list, drained once per loop iteration (a uv_check
 * handle), so all frames produced by one read leave in one write.
 */
#ifndef SIDECAR_WIRE_H
#define SIDECAR_WIRE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/handle.h"

#include "proxy/budget.h"
#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/list.h"
#include "proxy/transport.h"

struct loop_ctx;

enum wire_owner {
    WIRE_CLIENT,
    WIRE_UPSTREAM,
};

struct wire {
    union stream_handle h;           /* the socket, under any transport */
    const struct transport_ops *ops; /* moves the bytes (transport.h) */
    void *xport;                     /* the transport's own state; NULL for the stream */
    uv_read_cb read_cb;              /* the owner's, from wire_read_start */
    enum wire_owner owner;
    struct loop_ctx *lc; /* the loop this connection lives on */
    bool is_tcp;
    bool handle_open; /* h initialised and not yet closed */
    bool reading;
    bool writing;  /* a uv_write is in flight */
    bool shutdown; /* no more frames will be read (EOF seen or closing) */

    struct buf in;               /* incomplete frame header carried over between reads */
    struct frame cut;            /* header of the frame whose data is being passed on */
    size_t cut_off;              /* its data bytes handed out so far */
    bool cutting;                /* cut is a frame with data still to come */
    struct buf out;              /* frames waiting to be written */
    struct buf inflight;         /* bytes owned by the in-flight write */
    size_t inflight_off;         /* inflight's first bytes, already taken by uv_try_write */
    bool trim_after_write;       /* wire_trim came while a write was in flight */
    uv_write_t write_req;        /* the transport's one write in flight */
    struct list_node flush_node; /* on loop_ctx.flush_list while a flush is due */

    struct budget_entry budget; /* what the owner holds, in sidecar.budget */

    uint64_t bytes_in;
    uint64_t bytes_out;
};

/* Iterates the frames of one read (see wire.c for the buffer dance). */
struct wire_frames {
    struct wire *w;
    const uint8_t *data;
    size_t len;
    size_t pos;
    bool shared; /* data is the loop-wide buffer (else wire.in) */
};

void wire_init(struct wire *w, struct loop_ctx *lc, enum wire_owner owner);

/* alloc callback for uv_read_start on any wire */
void wire_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Starts iterating the nread bytes just read into buf (nread > 0). */
void wire_frames_begin(struct wire_frames *it, struct wire *w, ssize_t nread, const uv_buf_t *buf);

/* Next frame or piece of a frame (see frame.h); FRAME_NEED_MORE when the
 * rest is an incomplete header, < 0 on a protocol error. A frame whose
 * data is not all here yet is handed out as its first piece at once. */
enum frame_result wire_frames_next(struct wire_frames *it, size_t max_data, struct frame *f);

/* Bytes not yet handed out as frames (for a prefix check before framing). */
static inline size_t wire_frames_avail(const struct wire_frames *it)
{
    return it->len - it->pos;
}

/* Skips n bytes (a connection prefix). */
static inline void wire_frames_skip(struct wire_frames *it, size_t n)
{
    it->pos += n;
}

/* Bytes of the frame being passed on that are still to come (0: none). */
size_t wire_cut_left(const struct wire *w);

/* Keeps the unparsed rest (a partial header) for the next read. Returns 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int wire_frames_end(struct wire_frames *it);

/* Appends a frame, or a piece of one, with new stream/message ids to the
 * output: the first piece writes the header (length frame_len), every
 * piece its data. */
__attribute__((warn_unused_result)) int wire_put_frame(struct wire *w, const struct frame *f,
                                                       uint64_t stream_id, uint64_t message_id);

/* The same with the header's done bit given (see call.c forward_down). */
__attribute__((warn_unused_result)) int wire_put_piece(struct wire *w, const struct frame *f,
                                                       uint64_t stream_id, uint64_t message_id,
                                                       bool done);

/* Bytes queued toward this wire's peer and not yet written. */
static inline size_t wire_queued(const struct wire *w)
{
    return w->out.len + w->inflight.len - w->inflight_off;
}

/* Bytes not yet handed to the kernel, counting a write in flight only as
 * far as it got: unlike wire_queued, it shrinks while a slow peer reads. */
static inline size_t wire_unwritten(const struct wire *w)
{
    return w->out.len + (w->writing ? w->ops->write_queue_size(w) : 0);
}

void wire_schedule_flush(struct wire *w);

/* A wire idle this long gives its big buffers back (see wire_trim). */
#define WIRE_TRIM_IDLE_MS 1000

/* Gives back big buffers. They are kept while calls keep coming, since
 * regrowing them for every call or write costs copies and page faults; the
 * janitors trim wires idle for WIRE_TRIM_IDLE_MS. A write still in flight
 * is trimmed when it completes. */
void wire_trim(struct wire *w);

/* Writes what is queued: the transport's try_write first, one write of
 * the rest (w->inflight) if it did not take everything. */
void wire_flush(struct wire *w);

/* For transports: the write started by wire_flush completed. */
void wire_on_written(struct wire *w, int status);

/* Connects the owner's initialised socket to sa (TCP) or path (unix)
 * through the transport; cb(req, status) runs from the loop once the
 * stream is usable. 0 or a UV error (then cb never runs). */
__attribute__((warn_unused_result)) int wire_connect(struct wire *w, uv_connect_t *req,
                                                     const struct sockaddr *sa, const char *path,
                                                     uv_connect_cb cb);

/* The buffer budget lifted its pause: the owner re-decides whether to read. */
void wire_budget_resumed(struct wire *w);

/* Read control; both are idempotent. cb receives what the transport
 * delivers (plaintext), with the stream argument &w->h.stream. */
void wire_read_start(struct wire *w, uv_read_cb cb);
void wire_read_stop(struct wire *w);

/* The socket is connected or accepted: turns TCP_NODELAY (and keepalive)
 * on for TCP wires. */
void wire_tune(struct wire *w);

/* Starts closing: stops reading, drops the flush, closes the transport
 * and its socket (cb from the socket's close callback). Idempotent. */
void wire_close(struct wire *w, uv_close_cb cb);

/* Frees buffers; call from the close callback. */
void wire_release(struct wire *w);

/* "ip:port" or "unix" of the remote end, for logs. */
void wire_peer_name(struct wire *w, char *out, size_t size);

#endif
