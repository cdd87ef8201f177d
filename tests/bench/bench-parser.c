/*
 * bench-parser: frame_parse throughput on the two shapes the proxy sees.
 *
 *   64 KiB frames   a large message cut into 64 KiB frames, as drpc writes
 *                   it: MB/s of stream parsed
 *   small frames    unary traffic: a 5-byte Message and a CloseSend per
 *                   stream, stream ids counting up: frames/s
 *
 * Each shape is parsed two ways:
 *   in place   one contiguous buffer, frame_parse walks it (the pure cost
 *              of the parser: headers only, data is never touched)
 *   64K reads  the stream arrives in 64 KiB reads (the sidecar's read
 *              buffer) through an accumulating buffer: append the read,
 *              parse every complete frame, keep the partial tail
 *
 * Each case runs over a few hundred MB (in place: millions of 64 KiB frame
 * headers) or tens of millions of small frames, best of 3 runs, one line
 * per case. Usage: bench-parser [SCALE] (default 1; 0.1
 * for a quick look).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/frame.h"

#define READ_SIZE (64 * 1024)
#define MAX_DATA  (4u << 20)
#define RUNS      3

static volatile uint64_t sink; /* keeps the parse results alive */

struct result {
    double seconds;
    uint64_t frames;
    uint64_t bytes;
};

/* frame_parse over the whole buffer, passes times. */
static struct result parse_in_place(const struct buf *s, int passes)
{
    struct result r = {0};
    uint64_t acc = 0;
    uint64_t t0 = uv_hrtime();
    for (int p = 0; p < passes; p++) {
        size_t pos = 0;
        while (pos < s->len) {
            struct frame f;
            size_t used;
            if (frame_parse(s->data + pos, s->len - pos, MAX_DATA, &f, &used) != FRAME_OK)
                abort();
            acc += f.kind + f.len + f.stream_id;
            pos += used;
            r.frames++;
        }
        r.bytes += s->len;
    }
    r.seconds = (double)(uv_hrtime() - t0) / 1e9;
    sink += acc;
    return r;
}

/* The stream in READ_SIZE reads through an accumulating buffer, passes times. */
static struct result parse_reads(const struct buf *s, int passes)
{
    struct result r = {0};
    struct buf acc = {0};
    uint64_t sum = 0;
    if (buf_reserve(&acc, READ_SIZE + MAX_DATA + FRAME_HEADER_MAX))
        abort();
    uint64_t t0 = uv_hrtime();
    for (int p = 0; p < passes; p++) {
        for (size_t fed = 0; fed < s->len;) {
            size_t n = s->len - fed < READ_SIZE ? s->len - fed : READ_SIZE;
            if (buf_append(&acc, s->data + fed, n))
                abort();
            fed += n;
            size_t pos = 0;
            for (;;) {
                struct frame f;
                size_t used;
                enum frame_result res =
                    frame_parse(acc.data + pos, acc.len - pos, MAX_DATA, &f, &used);
                if (res == FRAME_NEED_MORE)
                    break;
                if (res != FRAME_OK)
                    abort();
                sum += f.kind + f.len + f.stream_id;
                pos += used;
                r.frames++;
            }
            buf_consume(&acc, pos);
        }
        if (acc.len != 0)
            abort();
        r.bytes += s->len;
    }
    r.seconds = (double)(uv_hrtime() - t0) / 1e9;
    sink += sum;
    buf_free(&acc);
    return r;
}

static struct result best_of(struct result (*fn)(const struct buf *, int), const struct buf *s,
                             int passes)
{
    struct result best = {0};
    for (int i = 0; i < RUNS; i++) {
        struct result r = fn(s, passes);
        if (i == 0 || r.seconds < best.seconds)
            best = r;
    }
    return best;
}

static void report(const char *what, struct result r)
{
    printf("%-46s %9.0f MB/s %7.2f M frames/s  (%.0f MB, %llu frames, %.3f s, best of %d)\n", what,
           (double)r.bytes / r.seconds / 1e6, (double)r.frames / r.seconds / 1e6,
           (double)r.bytes / 1e6, (unsigned long long)r.frames, r.seconds, RUNS);
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (scale <= 0)
        scale = 1.0;

    /* 64 MiB of 64 KiB Message frames: packets of 4 frames, the last one done */
    struct buf big = {0}, small = {0};
    uint8_t *payload = malloc(65536);
    if (!payload)
        return 1;
    for (size_t i = 0; i < 65536; i++)
        payload[i] = (uint8_t)(i % 251);
    for (uint64_t i = 0; i < 1024; i++)
        if (frame_append(&big, FRAME_KIND_MESSAGE, i % 4 == 3, false, 1, i / 4 + 2, payload, 65536))
            return 1;
    /* 1 M unary streams: Message "hello", CloseSend; stream ids up to 2^20 (3-byte varints) */
    for (uint64_t sid = 1; sid <= 1000000; sid++)
        if (frame_append(&small, FRAME_KIND_MESSAGE, true, false, sid, 1, "hello", 5) ||
            frame_append(&small, FRAME_KIND_CLOSE_SEND, true, false, sid, 2, NULL, 0))
            return 1;
    free(payload);

    /*
     * Passes: 64 KiB reads of 64 KiB frames cover 2 GB; in place, where
     * only the 1024 headers per pass cost anything, 4000 passes (4 M
     * frames) make the time measurable; small frames: 20 M frames.
     */
    int reads_passes = (int)(32 * scale + 0.5), place_passes = (int)(4000 * scale + 0.5);
    int small_passes = (int)(10 * scale + 0.5);
    reads_passes = reads_passes < 1 ? 1 : reads_passes;
    place_passes = place_passes < 1 ? 1 : place_passes;
    small_passes = small_passes < 1 ? 1 : small_passes;

    report("64 KiB frames, 64 KiB reads:", best_of(parse_reads, &big, reads_passes));
    report("64 KiB frames, in place (data untouched):",
           best_of(parse_in_place, &big, place_passes));
    report("small frames (message+closesend), 64 KiB reads:",
           best_of(parse_reads, &small, small_passes));
    report("small frames (message+closesend), in place:",
           best_of(parse_in_place, &small, small_passes));

    buf_free(&big);
    buf_free(&small);
    return sink == 42 ? 2 : 0;
}
