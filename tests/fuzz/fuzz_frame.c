/*
 * libFuzzer target: the frame parser fed in chunks whose sizes come from the
 * input itself; every parsed frame must re-encode to a header that parses
 * back to the same frame.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    struct buf acc = {0};
    size_t fed = 0, pos = 0;
    while (fed < size) {
        size_t n = size - fed < chunk ? size - fed : chunk;
        if (buf_append(&acc, data + fed, n) != 0)
            abort();
        fed += n;
        for (;;) {
            struct frame f;
            size_t used;
            enum frame_result r = frame_parse(acc.data + pos, acc.len - pos, 1 << 16, &f, &used);
            if (r != FRAME_OK) {
                if (r < 0)
                    goto out;
                break;
            }
            uint8_t hdr[FRAME_HEADER_MAX];
            size_t h = frame_header_encode(hdr, f.kind, f.done, f.control, f.stream_id,
                                           f.message_id, f.len);
            struct buf one = {0};
            if (buf_append(&one, hdr, h) || buf_append(&one, f.data, f.len))
                abort();
            struct frame g;
            size_t used2;
            if (frame_parse(one.data, one.len, 1 << 16, &g, &used2) != FRAME_OK ||
                used2 != one.len || g.kind != f.kind || g.done != f.done ||
                g.control != f.control || g.stream_id != f.stream_id ||
                g.message_id != f.message_id || g.len != f.len ||
                memcmp(g.data, f.data, f.len) != 0)
                abort();
            buf_free(&one);
            pos += used;
        }
    }
out:
    buf_free(&acc);
    return 0;
}
