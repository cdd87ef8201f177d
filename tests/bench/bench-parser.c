/*
 * bench-parser: frame_parse throughput, in MB/s over a stream of 64 KiB
 * frames and in frames/s over small unary-call frames (the shapes the
 * proxy sees). Best of 3 runs per case.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/frame.h"

static struct buf out; /* forward mode: frames re-encoded here, as the proxy does */
static int forward;

static double run(const struct buf *b, int reps, uint64_t *frames)
{
    uint64_t t0 = uv_hrtime();
    uint64_t n = 0;
    for (int r = 0; r < reps; r++) {
        size_t pos = 0;
        while (pos < b->len) {
            struct frame f;
            size_t used;
            if (frame_parse(b->data + pos, b->len - pos, 1 << 20, &f, &used) != FRAME_OK)
                abort();
            pos += used;
            n++;
            if (forward) {
                out.len = 0; /* the proxy writes each batch out; reuse the storage */
                if (buf_reserve(&out, FRAME_HEADER_MAX + f.len))
                    abort();
                out.len = frame_header_encode(out.data, f.kind, f.done, f.control, 7, f.message_id,
                                              f.len);
                memcpy(out.data + out.len, f.data, f.len);
                out.len += f.len;
            }
        }
    }
    *frames = n;
    return (double)(uv_hrtime() - t0) / 1e9;
}

int main(void)
{
    struct buf big = {0}, small = {0};
    static uint8_t payload[65536];
    for (uint64_t i = 0; i < 1024; i++) /* 64 MiB of 64 KiB frames */
        if (frame_append(&big, FRAME_KIND_MESSAGE, i % 4 == 3, false, 1, i / 4 + 2, payload,
                         sizeof(payload)))
            return 1;
    for (uint64_t s = 1; s <= 100000; s++) /* a unary call: invoke, message, close-send */
        if (frame_append(&small, FRAME_KIND_INVOKE, true, false, s, 1, "/test.Echo/Unary", 16) ||
            frame_append(&small, FRAME_KIND_MESSAGE, true, false, s, 2, "hello", 5) ||
            frame_append(&small, FRAME_KIND_CLOSE_SEND, true, false, s, 3, NULL, 0))
            return 1;
    for (forward = 0; forward < 2; forward++) {
        double best_big = 1e9, best_small = 1e9;
        uint64_t nb = 0, ns = 0;
        for (int i = 0; i < 3; i++) {
            double t = run(&big, 20, &nb);
            if (t < best_big)
                best_big = t;
            t = run(&small, 20, &ns);
            if (t < best_small)
                best_small = t;
        }
        const char *what = forward ? "parse + re-encode with a new stream id (copy)"
                                   : "parse only (zero-copy, data untouched)";
        printf("%s:\n", what);
        printf("  64 KiB frames: %.0f MB/s, %.2f M frames/s (%.1f MB in %.3f s)\n",
               (double)big.len * 20 / best_big / 1e6, (double)nb / best_big / 1e6,
               (double)big.len * 20 / 1e6, best_big);
        printf("  small frames:  %.1f M frames/s, %.0f MB/s (%llu frames in %.3f s)\n",
               (double)ns / best_small / 1e6, (double)small.len * 20 / best_small / 1e6,
               (unsigned long long)ns, best_small);
    }
    buf_free(&out);
    buf_free(&big);
    buf_free(&small);
    return 0;
}
