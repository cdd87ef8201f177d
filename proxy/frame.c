/* frame: DRPC frame parse/encode (see frame.h for the layout). */
#include "proxy/frame.h"

#include <string.h>

#include "proxy/varint.h"

static bool kind_known(uint8_t kind)
{
    return kind >= FRAME_KIND_INVOKE && kind <= FRAME_KIND_INVOKE_METADATA;
}

enum frame_result frame_parse_header(const uint8_t *buf, size_t len, size_t max_data,
                                     struct frame *out)
{
    if (len < 1)
        return FRAME_NEED_MORE;

    uint8_t control = buf[0];
    size_t pos = 1;
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        size_t used;
        switch (varint_decode(buf + pos, len - pos, &ids[i], &used)) {
        case VARINT_OK:
            pos += used;
            break;
        case VARINT_NEED_MORE:
            return FRAME_NEED_MORE;
        case VARINT_TOO_LONG:
            return FRAME_ERR_VARINT;
        }
    }

    uint8_t kind = (control >> 1) & 0x3f;
    bool is_control = (control & FRAME_CONTROL_FLAG) != 0;
    if (!is_control && !kind_known(kind))
        return FRAME_ERR_KIND;
    /* The second test keeps pos + length from wrapping when the caller
     * passes SIZE_MAX ("no cap"). */
    if (ids[2] > max_data || ids[2] > SIZE_MAX - pos)
        return FRAME_ERR_TOO_LARGE;

    out->kind = kind;
    out->done = (control & FRAME_CONTROL_DONE) != 0;
    out->control = is_control;
    out->stream_id = ids[0];
    out->message_id = ids[1];
    out->data = buf + pos;
    out->len = (size_t)ids[2];
    out->frame_len = (size_t)ids[2];
    out->offset = 0;
    out->header_len = pos;
    return FRAME_OK;
}

enum frame_result frame_parse(const uint8_t *buf, size_t len, size_t max_data, struct frame *out,
                              size_t *consumed)
{
    *consumed = 0;
    struct frame f;
    enum frame_result r = frame_parse_header(buf, len, max_data, &f);
    if (r != FRAME_OK)
        return r;
    size_t total = f.header_len + f.frame_len;
    *consumed = total;
    if (len < total)
        return FRAME_NEED_MORE;
    *out = f;
    return FRAME_OK;
}

const char *frame_strerror(enum frame_result r)
{
    switch (r) {
    case FRAME_OK:
        return "ok";
    case FRAME_NEED_MORE:
        return "incomplete frame";
    case FRAME_ERR_VARINT:
        return "varint longer than 10 bytes";
    case FRAME_ERR_TOO_LARGE:
        return "frame length above the maximum";
    case FRAME_ERR_KIND:
        return "unknown frame kind";
    }
    return "unknown frame error";
}

const char *frame_kind_name(uint8_t kind)
{
    static const char *const names[] = {
        [FRAME_KIND_INVOKE] = "invoke",
        [FRAME_KIND_MESSAGE] = "message",
        [FRAME_KIND_ERROR] = "error",
        [FRAME_KIND_CANCEL] = "cancel",
        [FRAME_KIND_CLOSE] = "close",
        [FRAME_KIND_CLOSE_SEND] = "close_send",
        [FRAME_KIND_INVOKE_METADATA] = "invoke_metadata",
    };
    if (kind_known(kind))
        return names[kind];
    return "kind?";
}

size_t frame_header_encode(uint8_t *out, uint8_t kind, bool done, bool control, uint64_t stream_id,
                           uint64_t message_id, size_t data_len)
{
    out[0] = (uint8_t)(((kind & 0x3f) << 1) | (done ? FRAME_CONTROL_DONE : 0) |
                       (control ? FRAME_CONTROL_FLAG : 0));
    size_t n = 1;
    n += varint_encode(out + n, stream_id);
    n += varint_encode(out + n, message_id);
    n += varint_encode(out + n, (uint64_t)data_len);
    return n;
}

int frame_append(struct buf *b, uint8_t kind, bool done, bool control, uint64_t stream_id,
                 uint64_t message_id, const void *data, size_t len)
{
    int rc = buf_reserve(b, FRAME_HEADER_MAX + len);
    if (rc)
        return rc;
    b->len +=
        frame_header_encode(b->data + b->len, kind, done, control, stream_id, message_id, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int frame_append_packet(struct buf *b, uint8_t kind, uint64_t stream_id, uint64_t message_id,
                        const void *data, size_t len, size_t split)
{
    const uint8_t *p = data;
    size_t start = b->len;
    if (split == 0)
        split = len ? len : 1;
    do {
        size_t n = len < split ? len : split;
        int rc = frame_append(b, kind, n == len, false, stream_id, message_id, p, n);
        if (rc) {
            b->len = start;
            return rc;
        }
        p += n;
        len -= n;
    } while (len > 0);
    return 0;
}

int frame_append_error(struct buf *b, uint64_t stream_id, uint64_t message_id, uint64_t code,
                       const char *text, size_t text_len)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t data_len = FRAME_ERROR_CODE_LEN + text_len;
    size_t h =
        frame_header_encode(hdr, FRAME_KIND_ERROR, true, false, stream_id, message_id, data_len);
    int rc = buf_reserve(b, h + data_len);
    if (rc)
        return rc;
    memcpy(b->data + b->len, hdr, h);
    b->len += h;
    for (int i = 7; i >= 0; i--)
        b->data[b->len++] = (uint8_t)(code >> (8 * i));
    if (text_len)
        memcpy(b->data + b->len, text, text_len);
    b->len += text_len;
    return 0;
}

void frame_error_decode(const uint8_t *data, size_t len, uint64_t *code, const uint8_t **text,
                        size_t *text_len)
{
    if (len < FRAME_ERROR_CODE_LEN) {
        *code = 0;
        *text = data;
        *text_len = len;
        return;
    }
    uint64_t c = 0;
    for (int i = 0; i < FRAME_ERROR_CODE_LEN; i++)
        c = (c << 8) | data[i];
    *code = c;
    *text = data + FRAME_ERROR_CODE_LEN;
    *text_len = len - FRAME_ERROR_CODE_LEN;
}
