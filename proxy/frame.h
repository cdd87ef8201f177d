/*
 * frame: the DRPC wire frame codec.
 *
 *   +---------+-----------+------------+--------+------------+
 *   | control | stream id | message id | length | data ...   |
 *   | 1 byte  | varint    | varint     | varint | length B   |
 *   +---------+-----------+------------+--------+------------+
 *   control: bit0 done, bits1-6 kind, bit7 control flag
 *
 * frame_parse() is stateless: it looks at the bytes a caller has buffered
 * and either yields one frame whose data points into that buffer (no copy),
 * asks for more bytes, or names the protocol error. Feeding a stream in
 * arbitrary chunks works by appending to the buffer and parsing again.
 */
#ifndef SIDECAR_FRAME_H
#define SIDECAR_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

enum frame_kind {
    FRAME_KIND_INVOKE = 1,          /* data: rpc name */
    FRAME_KIND_MESSAGE = 2,         /* data: one message */
    FRAME_KIND_ERROR = 3,           /* data: 8-byte BE code + text */
    FRAME_KIND_CANCEL = 4,          /* empty; sent with the control bit */
    FRAME_KIND_CLOSE = 5,           /* empty: sender done with the stream */
    FRAME_KIND_CLOSE_SEND = 6,      /* empty: sender sends no more */
    FRAME_KIND_INVOKE_METADATA = 7, /* data: protobuf map<string,string> */
};

#define FRAME_HEADER_MAX   (1 + 3 * 10) /* control byte + three varints */
#define FRAME_CONTROL_DONE 0x01u
#define FRAME_CONTROL_FLAG 0x80u

/* The optional connection prefix of drpcmigrate listeners. */
#define DRPC_HEADER     "DRPC!!!1"
#define DRPC_HEADER_LEN 8

struct frame {
    uint8_t kind; /* 0..63; see enum frame_kind */
    bool done;    /* last frame of its packet */
    bool control; /* control bit: receivers that do not know it ignore it */
    uint64_t stream_id;
    uint64_t message_id;
    const uint8_t *data; /* points into the parsed buffer */
    size_t len;          /* bytes at data: the whole frame's, or one piece's */
    size_t header_len;   /* bytes before data in the buffer (first piece only) */
    /* A frame passed on as it arrives (cut-through, see wire.h) comes in
     * pieces: data/len is the piece at `offset` of the frame's frame_len
     * data bytes. A whole frame is one piece: offset 0, len == frame_len. */
    size_t frame_len;
    size_t offset;
};

/* The piece that carries the frame's header (its first, maybe empty, piece). */
static inline bool frame_first_piece(const struct frame *f)
{
    return f->offset == 0;
}

/* The piece that completes the frame. */
static inline bool frame_last_piece(const struct frame *f)
{
    return f->offset + f->len == f->frame_len;
}

/* The piece that completes the frame's packet: where a packet acts. */
static inline bool frame_ends_packet(const struct frame *f)
{
    return f->done && frame_last_piece(f);
}

enum frame_result {
    FRAME_OK = 0,
    FRAME_NEED_MORE = 1,
    FRAME_ERR_VARINT = -1,    /* a varint longer than 10 bytes */
    FRAME_ERR_TOO_LARGE = -2, /* length above the caller's maximum */
    FRAME_ERR_KIND = -3,      /* kind 0 or unknown, without the control bit */
};

/*
 * Parses one frame from buf[0..len). On FRAME_OK fills *out and sets
 * *consumed to the frame's total size. On FRAME_NEED_MORE sets *consumed to
 * the total size the frame will need when the header is complete (so the
 * caller can size its buffer), or 0 if the header itself is incomplete.
 * max_data bounds the data length of a single frame.
 */
enum frame_result frame_parse(const uint8_t *buf, size_t len, size_t max_data, struct frame *out,
                              size_t *consumed);

/*
 * Parses only the header at buf[0..len): on FRAME_OK fills *out as for a
 * whole frame whose data is still to come (data = buf + header_len; len and
 * frame_len = the declared length, of which fewer bytes may be buffered).
 */
enum frame_result frame_parse_header(const uint8_t *buf, size_t len, size_t max_data,
                                     struct frame *out);

/* A short human-readable reason for a frame_result. */
const char *frame_strerror(enum frame_result r);

/* Name of a kind for logs ("invoke", "message", ...; "kind?" otherwise). */
const char *frame_kind_name(uint8_t kind);

/* Encodes a header into out (FRAME_HEADER_MAX bytes); returns its length. */
size_t frame_header_encode(uint8_t *out, uint8_t kind, bool done, bool control, uint64_t stream_id,
                           uint64_t message_id, size_t data_len);

/* Appends a whole frame (header + data) to b. */
__attribute__((warn_unused_result)) int frame_append(struct buf *b, uint8_t kind, bool done,
                                                     bool control, uint64_t stream_id,
                                                     uint64_t message_id, const void *data,
                                                     size_t len);

/* Appends a packet split into frames of at most split bytes (64 KiB in Go). */
__attribute__((warn_unused_result)) int frame_append_packet(struct buf *b, uint8_t kind,
                                                            uint64_t stream_id, uint64_t message_id,
                                                            const void *data, size_t len,
                                                            size_t split);

/* Error packets: 8-byte big-endian code, then UTF-8 text. */
#define FRAME_ERROR_CODE_LEN 8
__attribute__((warn_unused_result)) int frame_append_error(struct buf *b, uint64_t stream_id,
                                                           uint64_t message_id, uint64_t code,
                                                           const char *text, size_t text_len);

/*
 * Splits Error packet data into code and text (text points into data).
 * Data shorter than 8 bytes is a bare text with code 0, as drpcerr reads it.
 */
void frame_error_decode(const uint8_t *data, size_t len, uint64_t *code, const uint8_t **text,
                        size_t *text_len);

#endif
