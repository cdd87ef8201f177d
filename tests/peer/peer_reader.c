/* peer_reader: drpcwire.Reader's packet assembly rules (see peer_reader.h). */
#include "tests/peer/peer_reader.h"

#include "proxy/frame.h"

/* A finished packet's buffer above this is released rather than kept. */
#define KEEP_PACKET_BUF (1u << 20)

void peer_reader_init(struct peer_reader *r, size_t max_packet)
{
    *r = (struct peer_reader){0};
    r->state = PEER_READER_BETWEEN;
    r->sid = 1; /* Go starts at ID{Stream: 1, Message: 1} */
    r->mid = 1;
    r->max_packet = max_packet ? max_packet : PEER_READER_MAX_PACKET;
}

void peer_reader_free(struct peer_reader *r)
{
    buf_free(&r->pkt);
}

static enum peer_read_result fail(struct peer_reader *r, const char *why)
{
    r->state = PEER_READER_FAILED;
    r->error = why;
    return PEER_READ_ERROR;
}

static bool id_less(uint64_t s1, uint64_t m1, uint64_t s2, uint64_t m2)
{
    return s1 < s2 || (s1 == s2 && m1 < m2);
}

enum peer_read_result peer_reader_next(struct peer_reader *r, const uint8_t *in, size_t len,
                                       size_t *used, struct peer_packet *out)
{
    size_t pos = 0;
    *used = 0;
    r->want = 0;
    if (r->state == PEER_READER_FAILED)
        return PEER_READ_ERROR;

    for (;;) {
        struct frame f;
        size_t n;
        enum frame_result fr = frame_parse(in + pos, len - pos, r->max_packet, &f, &n);
        if (fr == FRAME_NEED_MORE) {
            r->want = n;
            *used = pos;
            return PEER_READ_MORE;
        }
        if (fr == FRAME_ERR_TOO_LARGE)
            return fail(r, "data overflow");
        if (fr != FRAME_OK)
            return fail(r, frame_strerror(fr));
        pos += n;

        if (f.control) {
            /* Outside packet assembly and the id checks, like Go's reader. */
            *out = (struct peer_packet){f.kind, true, f.stream_id, f.message_id, f.data, f.len};
            *used = pos;
            return PEER_READ_PACKET;
        }
        if (id_less(f.stream_id, f.message_id, r->sid, r->mid))
            return fail(r, "id monotonicity violation");

        bool first =
            r->state != PEER_READER_ASSEMBLING || f.stream_id != r->sid || f.message_id != r->mid;
        if (first) {
            /* A newer id: whatever was assembled is dropped. */
            r->sid = f.stream_id;
            r->mid = f.message_id;
            r->kind = f.kind;
            if (r->pkt.cap > KEEP_PACKET_BUF)
                buf_free(&r->pkt);
            buf_reset(&r->pkt);
        } else if (f.kind != r->kind) {
            return fail(r, "packet kind change");
        }

        if (first && f.done) {
            /* The common case: a packet of one frame, handed over in place. */
            r->state = PEER_READER_BETWEEN;
            r->mid++;
            *out = (struct peer_packet){f.kind, false, f.stream_id, f.message_id, f.data, f.len};
            *used = pos;
            return PEER_READ_PACKET;
        }
        if (f.len > r->max_packet - r->pkt.len)
            return fail(r, "data overflow");
        if (buf_append(&r->pkt, f.data, f.len) != 0)
            return fail(r, "out of memory");
        if (!f.done) {
            r->state = PEER_READER_ASSEMBLING;
            continue;
        }
        r->state = PEER_READER_BETWEEN;
        r->mid++; /* a finished id may not be used again */
        *out = (struct peer_packet){r->kind, false, r->sid, f.message_id, r->pkt.data, r->pkt.len};
        *used = pos;
        return PEER_READ_PACKET;
    }
}
