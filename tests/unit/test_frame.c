/*
 * test_frame: the frame codec (proxy/frame.c) against the ground truth.
 *
 * Every capture in shared/drpc-transcripts (found at run time, see
 * transcript.h) must, per direction:
 *   - parse into exactly the frames of NAME.frames.txt (kind, stream,
 *     message, done, control, length and the data shown),
 *   - re-encode (frame_header_encode + data) to the identical bytes,
 *   - parse the same when fed through an accumulating buffer in the reads
 *     the relay recorded, one byte at a time, split in two at every point,
 *     and in random chunks.
 * Then the malformed inputs, each with its precise error; Error packets
 * byte for byte against the captures; the 64 KiB packet split.
 *
 *   stream bytes --chunks--> [ accumulating buf ] --frame_parse--> frames
 *                                   ^  consume parsed  |
 *                                   +------------------+
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/varint.h"
#include "tests/unit/transcript.h"

#define DRPC_MAX_DATA (4u << 20) /* the drpc reader's default packet cap */
#define EXACT_TAIL    64         /* tails this short are parsed from an exact-size copy */
#define SPLIT_ALL_MAX 16384      /* streams up to this size are split at every point */
#define GiB           (1ull << 30)

static char tdir[PATH_MAX];
static bool have_transcripts;

/* xorshift64*: deterministic randomness for chunkings and streams. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

/*
 * frame_parse over an exact-size heap copy of bytes[0..len), so that a read
 * past len is caught by valgrind or ASan; f->data is moved back to point
 * into bytes.
 */
static enum frame_result parse_exact(const uint8_t *bytes, size_t len, size_t max_data,
                                     struct frame *f, size_t *used)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    memset(f, 0, sizeof(*f));
    *used = SIZE_MAX;
    enum frame_result r = frame_parse(copy, len, max_data, f, used);
    if (r == FRAME_OK) {
        assert_ptr_equal(f->data, copy + f->header_len);
        f->data = bytes + f->header_len;
    }
    free(copy);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Reference parse and the generic chunk feeder                             */
/* ------------------------------------------------------------------------ */

/* A stream parsed in one piece: the frames, where each starts, how it ends. */
struct ref {
    const uint8_t *bytes;
    size_t len;
    size_t max_data;
    struct frame *frames;
    size_t *offs; /* offs[i]: offset of frame i; offs[n]: where parsing stopped */
    size_t n;
    enum frame_result end; /* frame_parse at offs[n] with every byte present */
    size_t end_used;       /* and the size it reported */
};

static void ref_parse(struct ref *r, const uint8_t *bytes, size_t len, size_t max_data)
{
    memset(r, 0, sizeof(*r));
    r->bytes = bytes;
    r->len = len;
    r->max_data = max_data;
    size_t pos = 0, cap = 0;
    for (;;) {
        if (r->n + 1 >= cap) {
            cap = cap ? cap * 2 : 16;
            r->frames = realloc(r->frames, cap * sizeof(*r->frames));
            r->offs = realloc(r->offs, cap * sizeof(*r->offs));
            assert_non_null(r->frames);
            assert_non_null(r->offs);
        }
        r->offs[r->n] = pos;
        struct frame f;
        size_t used = SIZE_MAX;
        enum frame_result res = frame_parse(bytes + pos, len - pos, max_data, &f, &used);
        if (res != FRAME_OK) {
            r->end = res;
            r->end_used = used;
            if (res == FRAME_NEED_MORE && used != 0)
                assert_true(used > len - pos);
            return;
        }
        assert_in_range(f.header_len, 4, FRAME_HEADER_MAX);
        assert_ptr_equal(f.data, bytes + pos + f.header_len);
        assert_int_equal(used, f.header_len + f.len);
        assert_true(f.len <= max_data);
        r->frames[r->n++] = f;
        pos += used;
    }
}

static void ref_free(struct ref *r)
{
    free(r->frames);
    free(r->offs);
    memset(r, 0, sizeof(*r));
}

static void same_frame(const struct frame *got, const struct frame *want)
{
    assert_int_equal(got->kind, want->kind);
    assert_int_equal(got->done, want->done);
    assert_int_equal(got->control, want->control);
    assert_int_equal(got->stream_id, want->stream_id);
    assert_int_equal(got->message_id, want->message_id);
    assert_int_equal(got->len, want->len);
    assert_int_equal(got->header_len, want->header_len);
    if (got->len)
        assert_memory_equal(got->data, want->data, got->len);
}

/*
 * Feeds r's bytes in chunks ending at ends[0] <= ends[1] <= ... (a last
 * chunk runs to the end) through an accumulating buffer the way a
 * connection does: append the chunk, parse until NEED_MORE or an error,
 * drop what was parsed. Checks every frame against the reference, every
 * NEED_MORE against the frame it waits for, and how the stream ends.
 */
static void feed_chunks(const struct ref *r, const size_t *ends, size_t n_ends)
{
    struct buf acc = {0};
    size_t base = 0, fed = 0, k = 0, used = 0;
    enum frame_result last = FRAME_NEED_MORE;
    for (size_t c = 0; c <= n_ends && (int)last >= 0; c++) {
        size_t end = c < n_ends ? ends[c] : r->len;
        assert_in_range(end, fed, r->len);
        assert_int_equal(buf_append(&acc, r->bytes + fed, end - fed), 0);
        fed = end;
        size_t pos = 0;
        for (;;) {
            size_t avail = acc.len - pos;
            uint8_t *exact = NULL;
            const uint8_t *p;
            if (avail <= EXACT_TAIL) {
                exact = malloc(avail ? avail : 1);
                assert_non_null(exact);
                if (avail)
                    memcpy(exact, acc.data + pos, avail);
                p = exact;
            } else {
                p = acc.data + pos;
            }
            struct frame f;
            used = SIZE_MAX;
            last = frame_parse(p, avail, r->max_data, &f, &used);
            if (last == FRAME_OK) {
                assert_true(k < r->n);
                assert_int_equal(base + pos, r->offs[k]);
                assert_ptr_equal(f.data, p + f.header_len);
                assert_int_equal(used, f.header_len + f.len);
                same_frame(&f, &r->frames[k]);
                k++;
                pos += used;
                free(exact);
                continue;
            }
            free(exact);
            if (last == FRAME_NEED_MORE) {
                if (k < r->n) {
                    /* waiting for frame k: the header decides what it asks for */
                    const struct frame *w = &r->frames[k];
                    size_t total = w->header_len + w->len;
                    assert_true(avail < total);
                    assert_int_equal(used, avail >= w->header_len ? total : 0);
                } else if (r->end == FRAME_NEED_MORE) {
                    assert_true(used == 0 || used == r->end_used);
                } else {
                    /* errors show once the header is complete: until then no size */
                    assert_int_equal(used, 0);
                }
            } else {
                assert_int_equal(k, r->n);
                assert_int_equal(base + pos, r->offs[r->n]);
            }
            break;
        }
        buf_consume(&acc, pos);
        base += pos;
    }
    assert_int_equal(k, r->n);
    assert_int_equal(last, r->end);
    if (last == FRAME_NEED_MORE) {
        assert_int_equal(base + acc.len, r->len);
        assert_int_equal(used, r->end_used);
    }
    buf_free(&acc);
}

/* Every byte its own chunk. */
static void feed_bytewise(const struct ref *r)
{
    size_t *ends = malloc((r->len + 1) * sizeof(*ends));
    assert_non_null(ends);
    for (size_t i = 0; i < r->len; i++)
        ends[i] = i + 1;
    feed_chunks(r, ends, r->len);
    free(ends);
}

/*
 * Two chunks, split at every point of streams up to SPLIT_ALL_MAX bytes
 * (or of every stream with CODEC_TEST_EXHAUSTIVE=1). Longer streams are
 * split at every point near a frame boundary (where the header bytes are)
 * and every 997th byte inside data, where all points are alike.
 */
static size_t feed_every_split(const struct ref *r)
{
    bool all = r->len <= SPLIT_ALL_MAX || getenv("CODEC_TEST_EXHAUSTIVE");
    size_t tried = 0;
    for (size_t cut = 0; cut <= r->len; cut++) {
        bool near = all || cut % 997 == 0;
        for (size_t i = 0; !near && i <= r->n; i++) {
            size_t start = r->offs[i];
            size_t hl = i < r->n ? r->frames[i].header_len : FRAME_HEADER_MAX;
            near = (cut >= start && cut <= start + hl + 2) || (cut + 2 >= start && cut <= start);
        }
        if (!near)
            continue;
        feed_chunks(r, &cut, 1);
        tried++;
    }
    return tried;
}

/* Random chunk sizes: mostly small, sometimes large, from a fixed seed. */
static void feed_random(const struct ref *r, uint64_t seed, int rounds)
{
    size_t *ends = malloc((r->len + 1) * sizeof(*ends));
    assert_non_null(ends);
    for (int round = 0; round < rounds; round++) {
        size_t n = 0, at = 0;
        while (at < r->len) {
            uint64_t pick = rng_next(&seed);
            size_t step =
                pick % 4 == 0 ? (size_t)rng_below(&seed, 70000) : (size_t)(pick >> 8) % 40;
            at = at + step > r->len ? r->len : at + step;
            ends[n++] = at;
        }
        feed_chunks(r, ends, n);
    }
    free(ends);
}

/* The whole battery for one byte stream. */
static void feed_all_ways(const struct ref *r, uint64_t seed)
{
    feed_chunks(r, NULL, 0);
    feed_bytewise(r);
    feed_every_split(r);
    feed_random(r, seed, 20);
}

/* ------------------------------------------------------------------------ */
/* The captures                                                             */
/* ------------------------------------------------------------------------ */

static int kind_from_label(const char *label)
{
    static const char *const labels[] = {NULL,     "Invoke", "Message",   "Error",
                                         "Cancel", "Close",  "CloseSend", "InvokeMetadata"};
    for (int k = 1; k < 8; k++)
        if (strcmp(labels[k], label) == 0)
            return k;
    fail_msg("unknown kind label %s in a frames file", label);
    return -1;
}

static void expect_frame(const struct frame *f, const struct transcript_frame *e)
{
    assert_int_equal(f->kind, kind_from_label(e->kind));
    assert_int_equal(f->stream_id, e->stream_id);
    assert_int_equal(f->message_id, e->message_id);
    assert_int_equal(f->done, e->done);
    assert_int_equal(f->control, e->control);
    assert_int_equal(f->len, e->len);
    if (e->cut) {
        assert_true(e->data_len > 0 && e->data_len < f->len);
    } else {
        assert_int_equal(e->data_len, f->len);
    }
    if (e->data_len)
        assert_memory_equal(f->data, e->data, e->data_len);
}

/* frame_header_encode + data gives back exactly the captured bytes. */
static void expect_reencodes(const struct ref *r)
{
    struct buf out = {0};
    for (size_t i = 0; i < r->n; i++) {
        const struct frame *f = &r->frames[i];
        uint8_t hdr[FRAME_HEADER_MAX];
        size_t h = frame_header_encode(hdr, f->kind, f->done, f->control, f->stream_id,
                                       f->message_id, f->len);
        assert_int_equal(h, f->header_len);
        assert_memory_equal(hdr, r->bytes + r->offs[i], h);
        assert_int_equal(buf_append(&out, hdr, h), 0);
        assert_int_equal(buf_append(&out, f->data, f->len), 0);
    }
    assert_int_equal(out.len, r->len);
    if (r->len)
        assert_memory_equal(out.data, r->bytes, r->len);
    /* frame_append writes the same */
    buf_reset(&out);
    for (size_t i = 0; i < r->n; i++) {
        const struct frame *f = &r->frames[i];
        assert_int_equal(frame_append(&out, f->kind, f->done, f->control, f->stream_id,
                                      f->message_id, f->data, f->len),
                         0);
    }
    assert_int_equal(out.len, r->len);
    if (r->len)
        assert_memory_equal(out.data, r->bytes, r->len);
    buf_free(&out);
}

static uint64_t name_seed(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h | 1;
}

static void check_direction(const char *name, const struct transcript *t, int d)
{
    const uint8_t *bytes = t->dir[d].data;
    size_t len = t->dir[d].len;
    size_t skip_len = t->header_len[d];
    if (skip_len) {
        /* drpcmigrate's prefix: not a frame, and the parser must not take it for one */
        assert_int_equal(skip_len, DRPC_HEADER_LEN);
        assert_memory_equal(t->header[d], DRPC_HEADER, DRPC_HEADER_LEN);
        assert_true(len >= skip_len);
        assert_memory_equal(bytes, DRPC_HEADER, DRPC_HEADER_LEN);
        struct frame f;
        size_t used;
        assert_int_equal(frame_parse(bytes, len, DRPC_MAX_DATA, &f, &used), FRAME_ERR_KIND);
        bytes += skip_len;
        len -= skip_len;
    }

    struct ref r;
    ref_parse(&r, bytes, len, DRPC_MAX_DATA);
    /* every byte belongs to a complete frame */
    assert_int_equal(r.end, FRAME_NEED_MORE);
    assert_int_equal(r.end_used, 0);
    assert_int_equal(r.offs[r.n], len);

    size_t k = 0;
    for (size_t i = 0; i < t->n_frames; i++) {
        if (t->frames[i].dir != d)
            continue;
        assert_true(k < r.n);
        expect_frame(&r.frames[k], &t->frames[i]);
        k++;
    }
    assert_int_equal(k, r.n);

    expect_reencodes(&r);

    /* the reads the relay recorded, in this direction */
    size_t *ends = malloc((t->n_reads + 1) * sizeof(*ends));
    assert_non_null(ends);
    size_t n_ends = 0, at = 0;
    for (size_t i = 0; i < t->n_reads; i++) {
        if (t->reads[i].dir != d)
            continue;
        at += t->reads[i].len;
        ends[n_ends++] = at > skip_len ? at - skip_len : 0;
    }
    feed_chunks(&r, ends, n_ends);
    free(ends);

    feed_all_ways(&r, name_seed(name) + (uint64_t)d);

    /* the largest frame fits a max_data of exactly its size, and not one less */
    size_t largest = 0, first_largest = 0;
    for (size_t i = 0; i < r.n; i++)
        if (r.frames[i].len > largest) {
            largest = r.frames[i].len;
            first_largest = i;
        }
    struct ref tight;
    ref_parse(&tight, bytes, len, largest);
    assert_int_equal(tight.n, r.n);
    ref_free(&tight);
    if (largest > 0) {
        ref_parse(&tight, bytes, len, largest - 1);
        assert_int_equal(tight.end, FRAME_ERR_TOO_LARGE);
        assert_int_equal(tight.n, first_largest);
        feed_bytewise(&tight);
        ref_free(&tight);
    }
    ref_free(&r);
}

static void test_capture(void **state)
{
    const char *name = *state;
    struct transcript t;
    const char *why;
    if (transcript_load(tdir, name, &t, &why) != 0)
        fail_msg("%s: %s", name, why);
    /* the frames file is a faithful reading of the capture */
    assert_true(t.n_frames > 0);
    assert_int_equal(t.n_chunks, t.n_reads);
    for (size_t i = 0; i < t.n_reads; i++) {
        assert_int_equal(t.chunks[i].dir, t.reads[i].dir);
        assert_int_equal(t.chunks[i].len, t.reads[i].len);
    }
    check_direction(name, &t, TRANSCRIPT_CLIENT);
    check_direction(name, &t, TRANSCRIPT_SERVER);
    transcript_free(&t);
}

/* The captures are part of the repository: without them the run fails. */
static void test_no_transcripts(void **state)
{
    (void)state;
    fail_msg("drpc-transcripts not found (%s)", tdir);
}

/* The captures every other test here leans on are all there. */
static void test_capture_set(void **state)
{
    (void)state;
    static const char *const known[] = {"bidi-3",
                                        "client-stream-5",
                                        "error-42",
                                        "hard-cancel-sleep",
                                        "header-unary-small",
                                        "server-stream-5x16",
                                        "soft-cancel-sleep",
                                        "unary-200KiB",
                                        "unary-3-sequential",
                                        "unary-metadata",
                                        "unary-small",
                                        "unknown-rpc"};
    char **names;
    size_t n = transcript_names(tdir, &names);
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = strcmp(names[j], known[i]) == 0;
        if (!found)
            fail_msg("capture %s missing from %s", known[i], tdir);
    }
    transcript_free_names(names, n);
}

/* Loads one direction of a capture; fails the test without transcripts. */
static void load_direction(const char *name, int d, struct buf *out)
{
    if (!have_transcripts)
        fail_msg("drpc-transcripts not found (%s)", tdir);
    struct transcript t;
    const char *why;
    if (transcript_load(tdir, name, &t, &why) != 0)
        fail_msg("%s: %s", name, why);
    *out = t.dir[d];
    t.dir[d] = (struct buf){0};
    transcript_free(&t);
}

/* ------------------------------------------------------------------------ */
/* Malformed and boundary inputs                                            */
/* ------------------------------------------------------------------------ */

/* Writes control byte + the three varints given as raw byte strings. */
static size_t raw_header(uint8_t *out, uint8_t control, const uint8_t *v0, size_t n0,
                         const uint8_t *v1, size_t n1, const uint8_t *v2, size_t n2)
{
    size_t n = 0;
    out[n++] = control;
    memcpy(out + n, v0, n0);
    n += n0;
    memcpy(out + n, v1, n1);
    n += n1;
    memcpy(out + n, v2, n2);
    n += n2;
    return n;
}

/* Parses a malformed stream whole and every other way; it must end with want. */
static void expect_stream_error(const uint8_t *bytes, size_t len, size_t max_data,
                                enum frame_result want, size_t frames_before)
{
    struct ref r;
    ref_parse(&r, bytes, len, max_data);
    assert_int_equal(r.end, want);
    assert_int_equal(r.n, frames_before);
    feed_chunks(&r, NULL, 0);
    feed_bytewise(&r);
    feed_every_split(&r);
    ref_free(&r);
}

static void test_empty_and_short(void **state)
{
    (void)state;
    struct frame f;
    size_t used;
    assert_int_equal(parse_exact(NULL, 0, 100, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(used, 0);
    /* every proper prefix of a header is NEED_MORE with no size yet */
    const uint8_t close_send[] = {0x0d, 0x01, 0x03, 0x00};
    for (size_t n = 0; n < sizeof(close_send); n++) {
        assert_int_equal(parse_exact(close_send, n, 100, &f, &used), FRAME_NEED_MORE);
        assert_int_equal(used, 0);
    }
    assert_int_equal(parse_exact(close_send, 4, 0, &f, &used), FRAME_OK);
    assert_int_equal(used, 4);
    assert_int_equal(f.kind, FRAME_KIND_CLOSE_SEND);
    assert_true(f.done);
    assert_false(f.control);
    assert_int_equal(f.stream_id, 1);
    assert_int_equal(f.message_id, 3);
    assert_int_equal(f.len, 0);
    assert_int_equal(f.header_len, 4);
}

static void test_need_more_reports_size(void **state)
{
    (void)state;
    /* Message "hello": the 4-byte header announces 9 bytes in all */
    const uint8_t hello[] = {0x05, 0x01, 0x02, 0x05, 'h', 'e', 'l', 'l', 'o'};
    struct frame f;
    size_t used;
    for (size_t n = 0; n < sizeof(hello); n++) {
        assert_int_equal(parse_exact(hello, n, 100, &f, &used), FRAME_NEED_MORE);
        assert_int_equal(used, n < 4 ? 0 : sizeof(hello));
    }
    assert_int_equal(parse_exact(hello, sizeof(hello), 100, &f, &used), FRAME_OK);
    assert_int_equal(used, sizeof(hello));
    assert_memory_equal(f.data, "hello", 5);

    /* multi-byte varints: stream 300, message 2^40, 200 data bytes */
    struct buf b = {0};
    uint8_t data[200];
    memset(data, 0xab, sizeof(data));
    assert_int_equal(frame_append(&b, FRAME_KIND_MESSAGE, true, false, 300, 1ULL << 40, data, 200),
                     0);
    size_t hl = 1 + 2 + 6 + 2;
    assert_int_equal(b.len, hl + 200);
    for (size_t n = 0; n < b.len; n++) {
        assert_int_equal(parse_exact(b.data, n, 1000, &f, &used), FRAME_NEED_MORE);
        assert_int_equal(used, n < hl ? 0 : hl + 200);
    }
    assert_int_equal(parse_exact(b.data, b.len, 1000, &f, &used), FRAME_OK);
    assert_int_equal(f.stream_id, 300);
    assert_int_equal(f.message_id, 1ULL << 40);
    assert_int_equal(f.header_len, hl);

    /* a 1 GiB frame under a 2 GiB cap: the full size, long before the data */
    const uint8_t big[] = {0x04, 0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x04};
    assert_int_equal(parse_exact(big, sizeof(big), 2 * GiB, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(used, sizeof(big) + GiB);
    buf_free(&b);
}

static void test_varint_errors(void **state)
{
    (void)state;
    const uint8_t one[] = {0x01}, zero[] = {0x00};
    uint8_t eleven[11], ten_bad[10], ten_top[10], nine[9];
    memset(eleven, 0xff, 10);
    eleven[10] = 0x01; /* 11 bytes: too long */
    memset(ten_bad, 0xff, 9);
    ten_bad[9] = 0x02; /* the 10th byte carries bits above 2^64 */
    memset(ten_top, 0x80, 9);
    ten_top[9] = 0x01;     /* 2^63: the largest 10th byte */
    memset(nine, 0xff, 9); /* nine continuation bytes, then nothing */

    for (int pos = 0; pos < 3; pos++) {
        uint8_t h[64];
        size_t n;
        struct frame f;
        size_t used;
        const uint8_t *v[3] = {one, one, zero}; /* stream 1, message 1, empty */
        size_t l[3] = {1, 1, 1};
#define WITH(bytes, size)                                                                          \
    do {                                                                                           \
        v[pos] = (bytes);                                                                          \
        l[pos] = (size);                                                                           \
        n = raw_header(h, 0x05, v[0], l[0], v[1], l[1], v[2], l[2]);                               \
    } while (0)
        WITH(eleven, sizeof(eleven));
        assert_int_equal(parse_exact(h, n, 100, &f, &used), FRAME_ERR_VARINT);
        expect_stream_error(h, n, 100, FRAME_ERR_VARINT, 0);
        /* decidable at the 10th byte, before the 11th arrives */
        assert_int_equal(parse_exact(h, 1 + (size_t)pos + 10, 100, &f, &used), FRAME_ERR_VARINT);

        WITH(ten_bad, sizeof(ten_bad));
        assert_int_equal(parse_exact(h, n, 100, &f, &used), FRAME_ERR_VARINT);
        expect_stream_error(h, n, 100, FRAME_ERR_VARINT, 0);

        WITH(nine, sizeof(nine));
        assert_int_equal(parse_exact(h, 1 + (size_t)pos + 9, 100, &f, &used), FRAME_NEED_MORE);
        assert_int_equal(used, 0);

        WITH(ten_top, sizeof(ten_top));
        enum frame_result want = pos == 2 ? FRAME_ERR_TOO_LARGE : FRAME_OK;
        assert_int_equal(parse_exact(h, n, 100, &f, &used), want);
        if (want == FRAME_OK) {
            assert_int_equal(pos == 0 ? f.stream_id : f.message_id, 1ULL << 63);
            assert_int_equal(f.header_len, 13);
        }
#undef WITH
    }
    /* an error after good frames: the good ones still come out, in every feed */
    struct buf b = {0};
    assert_int_equal(frame_append(&b, FRAME_KIND_MESSAGE, true, false, 1, 2, "hello", 5), 0);
    assert_int_equal(frame_append(&b, FRAME_KIND_CLOSE_SEND, true, false, 1, 3, NULL, 0), 0);
    const uint8_t bad[] = {0x05, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff,
                           0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(buf_append(&b, bad, sizeof(bad)), 0);
    expect_stream_error(b.data, b.len, 100, FRAME_ERR_VARINT, 2);
    buf_free(&b);
}

static void test_too_large(void **state)
{
    (void)state;
    struct frame f;
    size_t used;
    /* a header announcing 1 GiB, and not one data byte: refused at once */
    const uint8_t gib[] = {0x05, 0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x04};
    assert_int_equal(parse_exact(gib, sizeof(gib), DRPC_MAX_DATA, &f, &used), FRAME_ERR_TOO_LARGE);
    expect_stream_error(gib, sizeof(gib), DRPC_MAX_DATA, FRAME_ERR_TOO_LARGE, 0);
    /* the largest length there is */
    const uint8_t max64[] = {0x05, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(parse_exact(max64, sizeof(max64), DRPC_MAX_DATA, &f, &used),
                     FRAME_ERR_TOO_LARGE);

    /* exactly at the cap is fine, one above is not */
    uint8_t h[FRAME_HEADER_MAX];
    size_t n = frame_header_encode(h, FRAME_KIND_MESSAGE, true, false, 1, 2, 1000);
    assert_int_equal(parse_exact(h, n, 1000, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(used, n + 1000);
    assert_int_equal(parse_exact(h, n, 999, &f, &used), FRAME_ERR_TOO_LARGE);
    /* a cap of 0 allows empty frames only */
    n = frame_header_encode(h, FRAME_KIND_MESSAGE, true, false, 1, 2, 1);
    assert_int_equal(parse_exact(h, n, 0, &f, &used), FRAME_ERR_TOO_LARGE);
    n = frame_header_encode(h, FRAME_KIND_CLOSE, true, false, 1, 2, 0);
    assert_int_equal(parse_exact(h, n, 0, &f, &used), FRAME_OK);

    /* the length varint itself incomplete: still waiting, no size yet */
    assert_int_equal(parse_exact(gib, sizeof(gib) - 1, DRPC_MAX_DATA, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(used, 0);
}

static void test_kinds(void **state)
{
    (void)state;
    struct frame f;
    size_t used;
    for (unsigned kind = 0; kind < 64; kind++) {
        for (unsigned done = 0; done < 2; done++) {
            bool known = kind >= 1 && kind <= 7;
            uint8_t b[] = {(uint8_t)(kind << 1 | done), 0x01, 0x02, 0x00};
            assert_int_equal(parse_exact(b, sizeof(b), 100, &f, &used),
                             known ? FRAME_OK : FRAME_ERR_KIND);
            if (known) {
                assert_int_equal(f.kind, kind);
                assert_int_equal(f.done, done);
                assert_false(f.control);
            }
            /* the control bit makes any kind acceptable (and ignorable) */
            b[0] |= FRAME_CONTROL_FLAG;
            assert_int_equal(parse_exact(b, sizeof(b), 100, &f, &used), FRAME_OK);
            assert_int_equal(f.kind, kind);
            assert_int_equal(f.done, done);
            assert_true(f.control);
            assert_int_equal(f.stream_id, 1);
            assert_int_equal(f.message_id, 2);
        }
    }
    /* the capture's soft cancel */
    const uint8_t cancel[] = {0x89, 0x01, 0x04, 0x00};
    assert_int_equal(parse_exact(cancel, 4, 0, &f, &used), FRAME_OK);
    assert_int_equal(f.kind, FRAME_KIND_CANCEL);
    assert_true(f.control);
    assert_true(f.done);
    assert_int_equal(f.message_id, 4);

    /* a bad kind is known only once the header is complete */
    const uint8_t k0[] = {0x00, 0x01, 0x01, 0x03, 'a', 'b', 'c'};
    for (size_t n = 0; n < 4; n++) {
        assert_int_equal(parse_exact(k0, n, 100, &f, &used), FRAME_NEED_MORE);
        assert_int_equal(used, 0);
    }
    expect_stream_error(k0, sizeof(k0), 100, FRAME_ERR_KIND, 0);
    /* precedence: a malformed varint before the kind, the kind before the size */
    const uint8_t k0_long[] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0x01, 0x01, 0x00};
    assert_int_equal(parse_exact(k0_long, sizeof(k0_long), 100, &f, &used), FRAME_ERR_VARINT);
    const uint8_t k9_big[] = {0x12, 0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x04};
    assert_int_equal(parse_exact(k9_big, sizeof(k9_big), 100, &f, &used), FRAME_ERR_KIND);
    /* an unknown control frame with data is skipped whole */
    const uint8_t ctl[] = {0x80 | (42 << 1), 0x05, 0x06, 0x02, 'h', 'i', 0x0d, 0x05, 0x07, 0x00};
    assert_int_equal(parse_exact(ctl, sizeof(ctl), 100, &f, &used), FRAME_OK);
    assert_int_equal(used, 6);
    assert_int_equal(f.kind, 42);
    assert_int_equal(f.len, 2);
    assert_int_equal(parse_exact(ctl + used, sizeof(ctl) - used, 100, &f, &used), FRAME_OK);
    assert_int_equal(f.kind, FRAME_KIND_CLOSE_SEND);
}

/*
 * max_data = SIZE_MAX ("no cap", as proxy/call.c passes when it re-parses
 * its own pending bytes) must not let pos + length wrap: a length of
 * 2^64 - 12 behind a 13-byte header must not come back as FRAME_OK with
 * *consumed = 1.
 */
static void test_length_wrap(void **state)
{
    (void)state;
    const uint8_t h[] = {0x05, 0x01, 0x01, 0xf4, 0xff, 0xff, 0xff,
                         0xff, 0xff, 0xff, 0xff, 0xff, 0x01}; /* length 2^64 - 12 */
    struct frame f;
    size_t used;
    enum frame_result r = parse_exact(h, sizeof(h), SIZE_MAX, &f, &used);
    assert_int_not_equal(r, FRAME_OK);
    if (r == FRAME_NEED_MORE)
        assert_true(used == 0 || used > sizeof(h));
    const uint8_t m[] = {0x05, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff,
                         0xff, 0xff, 0xff, 0xff, 0xff, 0x01}; /* length 2^64 - 1 */
    assert_int_not_equal(parse_exact(m, sizeof(m), SIZE_MAX, &f, &used), FRAME_OK);
}

/* The "DRPC!!!1" prefix: 'D' reads as kind 34 without the control bit. */
static void test_drpcmigrate_prefix(void **state)
{
    (void)state;
    struct frame f;
    size_t used;
    assert_int_equal(
        parse_exact((const uint8_t *)DRPC_HEADER, DRPC_HEADER_LEN, DRPC_MAX_DATA, &f, &used),
        FRAME_ERR_KIND);
}

static void test_header_encode(void **state)
{
    (void)state;
    uint8_t h[FRAME_HEADER_MAX];
    /* the control byte: bit0 done, bits1-6 kind, bit7 control */
    for (unsigned kind = 0; kind < 64; kind++)
        for (unsigned flags = 0; flags < 4; flags++) {
            bool done = flags & 1, control = flags & 2;
            size_t n = frame_header_encode(h, (uint8_t)kind, done, control, 1, 1, 0);
            assert_int_equal(n, 4);
            assert_int_equal(h[0], kind << 1 | done | (control ? 0x80 : 0));
        }
    /* the longest header is FRAME_HEADER_MAX */
    size_t n = frame_header_encode(h, FRAME_KIND_MESSAGE, false, false, UINT64_MAX, UINT64_MAX,
                                   (size_t)UINT64_MAX);
    assert_int_equal(n, FRAME_HEADER_MAX);
    struct frame f;
    size_t used;
    assert_int_equal(parse_exact(h, n, DRPC_MAX_DATA, &f, &used), FRAME_ERR_TOO_LARGE);
    n = frame_header_encode(h, FRAME_KIND_MESSAGE, false, false, UINT64_MAX, UINT64_MAX, 0);
    assert_int_equal(parse_exact(h, n, 0, &f, &used), FRAME_OK);
    assert_int_equal(f.stream_id, UINT64_MAX);
    assert_int_equal(f.message_id, UINT64_MAX);
    assert_false(f.done);
    assert_int_equal(f.header_len, 1 + 10 + 10 + 1);
    /* the kind is six bits: higher bits do not leak into done or control */
    n = frame_header_encode(h, 0xff, false, false, 1, 1, 0);
    assert_int_equal(h[0], 0x3f << 1);
    /* the soft-cancel bytes of the capture */
    n = frame_header_encode(h, FRAME_KIND_CANCEL, true, true, 1, 4, 0);
    const uint8_t cancel[] = {0x89, 0x01, 0x04, 0x00};
    assert_int_equal(n, 4);
    assert_memory_equal(h, cancel, 4);
}

/*
 * Random well-formed streams (every kind, control frames, varints of every
 * width, non-canonical varints, empty and 0..300-byte data), optionally
 * ending in a malformed frame, through every feed.
 */
static void test_random_streams(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 60; round++) {
        struct buf b = {0};
        size_t frames = (size_t)rng_below(&seed, 12);
        uint8_t data[300];
        for (size_t i = 0; i < frames; i++) {
            uint8_t kind = (uint8_t)rng_below(&seed, 64);
            bool control = !(kind >= 1 && kind <= 7) || rng_below(&seed, 8) == 0;
            uint64_t ids[2];
            for (int j = 0; j < 2; j++)
                ids[j] = rng_next(&seed) >> rng_below(&seed, 64);
            size_t len = (size_t)rng_below(&seed, 301);
            for (size_t j = 0; j < len; j++)
                data[j] = (uint8_t)rng_next(&seed);
            if (rng_below(&seed, 5) == 0) {
                /* non-canonical: a redundant zero group in the message id */
                uint8_t v[12];
                size_t vl = varint_encode(v, ids[1]);
                if (vl < 10) {
                    v[vl - 1] |= 0x80;
                    v[vl++] = 0x00;
                    uint8_t hb[40];
                    size_t hn = 0;
                    hb[hn++] = (uint8_t)(kind << 1 | (i + 1 == frames) | (control ? 0x80 : 0));
                    hn += varint_encode(hb + hn, ids[0]);
                    memcpy(hb + hn, v, vl);
                    hn += vl;
                    hn += varint_encode(hb + hn, len);
                    assert_int_equal(buf_append(&b, hb, hn), 0);
                    assert_int_equal(buf_append(&b, data, len), 0);
                    continue;
                }
            }
            assert_int_equal(
                frame_append(&b, kind, i + 1 == frames, control, ids[0], ids[1], data, len), 0);
        }
        size_t well_formed = b.len;
        enum frame_result want = FRAME_NEED_MORE;
        switch (rng_below(&seed, 5)) {
        case 0: { /* 11-byte varint */
            const uint8_t t[] = {0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff, 0x01, 0x01};
            assert_int_equal(buf_append(&b, t, sizeof(t)), 0);
            want = FRAME_ERR_VARINT;
            break;
        }
        case 1: { /* too large */
            uint8_t t[FRAME_HEADER_MAX];
            size_t tn = frame_header_encode(t, FRAME_KIND_MESSAGE, true, false, 9, 9, 301);
            assert_int_equal(buf_append(&b, t, tn), 0);
            want = FRAME_ERR_TOO_LARGE;
            break;
        }
        case 2: { /* unknown kind without the control bit */
            const uint8_t t[] = {0x00, 0x01, 0x01, 0x00};
            assert_int_equal(buf_append(&b, t, sizeof(t)), 0);
            want = FRAME_ERR_KIND;
            break;
        }
        case 3: { /* a frame cut short */
            uint8_t t[FRAME_HEADER_MAX + 8];
            size_t tn = frame_header_encode(t, FRAME_KIND_MESSAGE, true, false, 300, 2, 8);
            memset(t + tn, 'x', 3);
            assert_int_equal(buf_append(&b, t, tn + 3), 0);
            break;
        }
        default:
            break;
        }
        struct ref r;
        ref_parse(&r, b.data, b.len, 300);
        assert_int_equal(r.n, frames);
        assert_int_equal(r.offs[r.n], well_formed);
        assert_int_equal(r.end, want);
        feed_chunks(&r, NULL, 0);
        feed_bytewise(&r);
        feed_every_split(&r);
        feed_random(&r, seed, 5);
        ref_free(&r);
        buf_free(&b);
    }
}

/* ------------------------------------------------------------------------ */
/* Error packets and packet splitting                                       */
/* ------------------------------------------------------------------------ */

/* The server bytes of error-42 and unknown-rpc, as captured. */
static const uint8_t error42_server[] = {0x07, 0x01, 0x01, 0x1b, 0,   0,   0,   0,   0,   0,   0,
                                         0x2a, 't',  'h',  'e',  ' ', 'a', 'n', 's', 'w', 'e', 'r',
                                         ' ',  'i',  's',  ' ',  'w', 'r', 'o', 'n', 'g'};
#define UNKNOWN_RPC_TEXT "protocol error: unknown rpc: \"/test.Echo/NoSuchMethod\""

static void test_error_packets(void **state)
{
    (void)state;
    struct buf b = {0};
    struct frame f;
    size_t used;
    uint64_t code;
    const uint8_t *text;
    size_t text_len;

    /* error-42: code 42, "the answer is wrong" */
    assert_int_equal(frame_append_error(&b, 1, 1, 42, "the answer is wrong", 19), 0);
    assert_int_equal(b.len, sizeof(error42_server));
    assert_memory_equal(b.data, error42_server, b.len);
    struct buf cap = {0};
    load_direction("error-42", TRANSCRIPT_SERVER, &cap);
    assert_int_equal(cap.len, b.len);
    assert_memory_equal(cap.data, b.data, b.len);
    buf_free(&cap);
    assert_int_equal(parse_exact(b.data, b.len, 100, &f, &used), FRAME_OK);
    assert_int_equal(f.kind, FRAME_KIND_ERROR);
    assert_true(f.done);
    frame_error_decode(f.data, f.len, &code, &text, &text_len);
    assert_int_equal(code, 42);
    assert_int_equal(text_len, 19);
    assert_memory_equal(text, "the answer is wrong", 19);
    assert_ptr_equal(text, f.data + FRAME_ERROR_CODE_LEN);

    /* unknown-rpc: drpcmux's code 0 */
    buf_reset(&b);
    size_t tl = strlen(UNKNOWN_RPC_TEXT);
    assert_int_equal(frame_append_error(&b, 1, 1, 0, UNKNOWN_RPC_TEXT, tl), 0);
    assert_int_equal(b.len, 4 + 8 + tl);
    const uint8_t head[] = {0x07, 0x01, 0x01, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(b.data, head, sizeof(head));
    assert_memory_equal(b.data + sizeof(head), UNKNOWN_RPC_TEXT, tl);
    load_direction("unknown-rpc", TRANSCRIPT_SERVER, &cap);
    assert_int_equal(cap.len, b.len);
    assert_memory_equal(cap.data, b.data, b.len);
    buf_free(&cap);
    assert_int_equal(parse_exact(b.data, b.len, 100, &f, &used), FRAME_OK);
    frame_error_decode(f.data, f.len, &code, &text, &text_len);
    assert_int_equal(code, 0);
    assert_int_equal(text_len, tl);
    assert_memory_equal(text, UNKNOWN_RPC_TEXT, tl);

    /* codes with high bits, big-endian on the wire; text with a NUL */
    const uint64_t codes[] = {1ULL << 63, UINT64_MAX, 0xfedcba9876543210ULL, 12, 0x100};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        buf_reset(&b);
        assert_int_equal(frame_append_error(&b, 1ULL << 40, 300, codes[i], "a\0b", 3), 0);
        assert_int_equal(parse_exact(b.data, b.len, 100, &f, &used), FRAME_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(f.kind, FRAME_KIND_ERROR);
        assert_true(f.done);
        assert_false(f.control);
        assert_int_equal(f.stream_id, 1ULL << 40);
        assert_int_equal(f.message_id, 300);
        assert_int_equal(f.len, 11);
        for (int j = 0; j < 8; j++)
            assert_int_equal(f.data[j], (uint8_t)(codes[i] >> (56 - 8 * j)));
        frame_error_decode(f.data, f.len, &code, &text, &text_len);
        assert_int_equal(code, codes[i]);
        assert_int_equal(text_len, 3);
        assert_memory_equal(text, "a\0b", 3);
    }
    /* an empty text, and frame_append_error appends (keeps what was there) */
    buf_reset(&b);
    assert_int_equal(buf_append(&b, "xy", 2), 0);
    assert_int_equal(frame_append_error(&b, 2, 5, 7, NULL, 0), 0);
    assert_int_equal(b.len, 2 + 4 + 8);
    assert_memory_equal(b.data, "xy", 2);
    assert_int_equal(parse_exact(b.data + 2, b.len - 2, 100, &f, &used), FRAME_OK);
    frame_error_decode(f.data, f.len, &code, &text, &text_len);
    assert_int_equal(code, 7);
    assert_int_equal(text_len, 0);

    /* shorter than a code: code 0 and the whole data as text */
    const uint8_t seven[] = {0, 0, 0, 0, 0, 0, 42};
    for (size_t n = 0; n < 8; n++) {
        frame_error_decode(seven, n, &code, &text, &text_len);
        assert_int_equal(code, 0);
        assert_ptr_equal(text, seven);
        assert_int_equal(text_len, n);
    }
    frame_error_decode(error42_server + 4, 8, &code, &text, &text_len);
    assert_int_equal(code, 42);
    assert_int_equal(text_len, 0);
    buf_free(&b);
}

static uint8_t *pattern_251(size_t n)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i % 251);
    return p;
}

static void test_packet_split_200k(void **state)
{
    (void)state;
    const size_t total = 204800, split = 65536;
    uint8_t *data = pattern_251(total);
    struct buf b = {0};

    /* the server's reply: Message (msg 1) in four frames, then CloseSend */
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_MESSAGE, 1, 1, data, total, split), 0);
    const size_t sizes[] = {65536, 65536, 65536, 8192};
    size_t pos = 0;
    for (int i = 0; i < 4; i++) {
        struct frame f;
        size_t used;
        assert_int_equal(frame_parse(b.data + pos, b.len - pos, split, &f, &used), FRAME_OK);
        assert_int_equal(f.kind, FRAME_KIND_MESSAGE);
        assert_int_equal(f.len, sizes[i]);
        assert_int_equal(f.done, i == 3);
        assert_false(f.control);
        assert_int_equal(f.stream_id, 1);
        assert_int_equal(f.message_id, 1);
        assert_memory_equal(f.data, data + (size_t)i * split, f.len);
        pos += used;
    }
    assert_int_equal(pos, b.len);
    assert_int_equal(frame_append(&b, FRAME_KIND_CLOSE_SEND, true, false, 1, 2, NULL, 0), 0);

    struct buf cap = {0};
    load_direction("unary-200KiB", TRANSCRIPT_SERVER, &cap);
    assert_int_equal(cap.len, b.len);
    assert_memory_equal(cap.data, b.data, b.len);
    buf_free(&cap);
    /* and the client's side: Invoke, Message (msg 2), CloseSend, Close */
    buf_reset(&b);
    assert_int_equal(
        frame_append_packet(&b, FRAME_KIND_INVOKE, 1, 1, "/test.Echo/Unary", 16, split), 0);
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_MESSAGE, 1, 2, data, total, split), 0);
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_CLOSE_SEND, 1, 3, NULL, 0, split), 0);
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_CLOSE, 1, 4, NULL, 0, split), 0);
    load_direction("unary-200KiB", TRANSCRIPT_CLIENT, &cap);
    assert_int_equal(cap.len, b.len);
    assert_memory_equal(cap.data, b.data, b.len);
    buf_free(&cap);
    free(data);
    buf_free(&b);
}

/* Splits len bytes with split and checks the frame sizes and done bits. */
static void expect_split(size_t len, size_t split, const size_t *sizes, size_t n)
{
    uint8_t *data = pattern_251(len ? len : 1);
    struct buf b = {0};
    assert_int_equal(buf_append(&b, "pre", 3), 0);
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_MESSAGE, 5, 6, data, len, split), 0);
    assert_memory_equal(b.data, "pre", 3);
    size_t pos = 3, at = 0;
    for (size_t i = 0; i < n; i++) {
        struct frame f;
        size_t used;
        assert_int_equal(frame_parse(b.data + pos, b.len - pos, SIZE_MAX / 2, &f, &used), FRAME_OK);
        assert_int_equal(f.len, sizes[i]);
        assert_int_equal(f.done, i + 1 == n);
        assert_int_equal(f.stream_id, 5);
        assert_int_equal(f.message_id, 6);
        if (f.len)
            assert_memory_equal(f.data, data + at, f.len);
        at += f.len;
        pos += used;
    }
    assert_int_equal(pos, b.len);
    assert_int_equal(at, len);
    free(data);
    buf_free(&b);
}

static void test_packet_split_edges(void **state)
{
    (void)state;
    expect_split(0, 16, (const size_t[]){0}, 1);
    expect_split(1, 16, (const size_t[]){1}, 1);
    expect_split(16, 16, (const size_t[]){16}, 1);
    expect_split(17, 16, (const size_t[]){16, 1}, 2);
    expect_split(32, 16, (const size_t[]){16, 16}, 2);
    expect_split(5, 1, (const size_t[]){1, 1, 1, 1, 1}, 5);
    expect_split(100, 0, (const size_t[]){100}, 1); /* 0: no split */
    expect_split(70000, 0, (const size_t[]){70000}, 1);
    expect_split(0, 0, (const size_t[]){0}, 1);
    expect_split(65536, 65536, (const size_t[]){65536}, 1);
}

static void test_names(void **state)
{
    (void)state;
    const char *want[] = {"kind?", "invoke",     "message",         "error", "cancel",
                          "close", "close_send", "invoke_metadata", "kind?"};
    for (uint8_t k = 0; k < 9; k++)
        assert_string_equal(frame_kind_name(k), want[k]);
    assert_string_equal(frame_kind_name(63), "kind?");
    assert_string_equal(frame_kind_name(255), "kind?");
    assert_string_equal(frame_strerror(FRAME_OK), "ok");
    assert_string_equal(frame_strerror(FRAME_NEED_MORE), "incomplete frame");
    assert_string_equal(frame_strerror(FRAME_ERR_VARINT), "varint longer than 10 bytes");
    assert_string_equal(frame_strerror(FRAME_ERR_TOO_LARGE), "frame length above the maximum");
    assert_string_equal(frame_strerror(FRAME_ERR_KIND), "unknown frame kind");
    assert_string_equal(frame_strerror((enum frame_result) - 99), "unknown frame error");
}

/* ------------------------------------------------------------------------ */

/* frame_parse_header: the header alone, with the data still to come; a
 * whole frame is one piece (offset 0, len == frame_len). */
static void test_header_only(void **state)
{
    (void)state;
    struct buf b = {0};
    uint8_t data[300];
    memset(data, 7, sizeof(data));
    assert_int_equal(frame_append(&b, FRAME_KIND_MESSAGE, true, false, 5, 9, data, sizeof(data)),
                     0);
    struct frame f;
    size_t used;
    for (size_t cut = 0; cut < b.len; cut++) {
        enum frame_result r = frame_parse_header(b.data, cut, SIZE_MAX, &f);
        if (cut < 5) { /* control byte, two one-byte ids, a two-byte length */
            assert_int_equal(r, FRAME_NEED_MORE);
            continue;
        }
        assert_int_equal(r, FRAME_OK);
        assert_int_equal(f.header_len, 5);
        assert_int_equal(f.frame_len, sizeof(data));
        assert_int_equal(f.offset, 0);
        assert_true(f.done && f.stream_id == 5 && f.message_id == 9);
        assert_true(frame_first_piece(&f));
        assert_int_equal(frame_parse(b.data, cut, SIZE_MAX, &f, &used), FRAME_NEED_MORE);
        assert_int_equal(used, b.len);
    }
    assert_int_equal(frame_parse_header(b.data, b.len, 299, &f), FRAME_ERR_TOO_LARGE);
    assert_int_equal(frame_parse(b.data, b.len, SIZE_MAX, &f, &used), FRAME_OK);
    assert_true(frame_first_piece(&f) && frame_last_piece(&f) && frame_ends_packet(&f));
    f.offset = 100; /* a middle piece of the same frame */
    f.len = 100;
    assert_false(frame_first_piece(&f) || frame_last_piece(&f) || frame_ends_packet(&f));
    f.len = 200;
    assert_true(frame_last_piece(&f) && frame_ends_packet(&f));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest codec[] = {
        cmocka_unit_test(test_empty_and_short),
        cmocka_unit_test(test_need_more_reports_size),
        cmocka_unit_test(test_varint_errors),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_drpcmigrate_prefix),
        cmocka_unit_test(test_header_encode),
        cmocka_unit_test(test_random_streams),
        cmocka_unit_test(test_error_packets),
        cmocka_unit_test(test_packet_split_200k),
        cmocka_unit_test(test_packet_split_edges),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_length_wrap),
        cmocka_unit_test(test_header_only),
    };
    have_transcripts = transcript_find(tdir, sizeof(tdir));
    int failed = cmocka_run_group_tests_name("frame codec", codec, NULL, NULL);

    /* One test per capture, discovered at run time. */
    char **names = NULL;
    size_t n_names = have_transcripts ? transcript_names(tdir, &names) : 0, n = n_names;
    struct CMUnitTest *caps = calloc(n + 1, sizeof(*caps));
    char(*labels)[128] = calloc(n + 1, sizeof(*labels));
    if (!caps || !labels)
        return 1;
    if (!have_transcripts) {
        caps[0] = (struct CMUnitTest){"captures", test_no_transcripts, NULL, NULL, NULL};
        n = 1;
    } else {
        for (size_t i = 0; i < n; i++) {
            snprintf(labels[i], sizeof(labels[i]), "capture %s", names[i]);
            caps[i] = (struct CMUnitTest){labels[i], test_capture, NULL, NULL, names[i]};
        }
        caps[n++] = (struct CMUnitTest){"capture set", test_capture_set, NULL, NULL, NULL};
    }
    failed += _cmocka_run_group_tests("frame captures", caps, n, NULL, NULL);
    free(caps);
    free(labels);
    transcript_free_names(names, n_names);
    return failed;
}
