/*
 * fuzz_frame: frame_parse on arbitrary bytes, the way a connection reads.
 *
 *   input --one piece--> reference frames + final result
 *   input --chunks-----> [accumulating buf] --frame_parse--> same frames?
 *
 * The chunk sizes (1 byte up to whole) and the frame size cap come from a
 * hash of the input, so seeds are plain captured streams. abort() when:
 *   - chunked parsing differs from the one-piece parse in any frame, in the
 *     final result, or in a NEED_MORE size;
 *   - a frame breaks the contract (consumed = header + data, data inside
 *     the buffer, header 4..31 bytes, length within the cap, a kind
 *     outside 1..7 only with the control bit);
 *   - a frame's header, re-encoded, does not parse back to the same frame,
 *     or a canonical header does not re-encode byte for byte;
 *   - an Error frame does not survive frame_error_decode + frame_append_error,
 *     or frame_append_packet does not split and rejoin a frame's data.
 * Set CODEC_KNOWN_BUGS=1 to also use max_data = SIZE_MAX (see the report on
 * the pos + length wrap in frame_parse).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/frame.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool known_bugs;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_frame: check failed at line %d: %s\n", __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct ref_frame {
    size_t off;
    struct frame f;
};

struct ref {
    struct ref_frame *frames;
    size_t n;
    size_t end_off;
    enum frame_result end;
    size_t end_used;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t hash_input(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ULL ^ size;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ULL;
    return h | 1;
}

/* The contract of one parsed frame at p (avail bytes there). */
static void check_frame(const uint8_t *p, size_t avail, size_t max_data, const struct frame *f,
                        size_t used)
{
    CHECK(f->header_len >= 4 && f->header_len <= FRAME_HEADER_MAX);
    CHECK(f->len <= max_data);
    CHECK(f->len <= avail - f->header_len);
    CHECK(used == f->header_len + f->len);
    CHECK(used <= avail);
    CHECK(f->data == p + f->header_len);
    CHECK(f->kind < 64);
    CHECK(f->control || (f->kind >= FRAME_KIND_INVOKE && f->kind <= FRAME_KIND_INVOKE_METADATA));
    CHECK((p[0] & 1) == f->done);
    CHECK(((p[0] >> 1) & 0x3f) == f->kind);
    CHECK(((p[0] & 0x80) != 0) == f->control);
}

/* Re-encodes f and parses it back; a canonical header comes back byte for byte. */
static void check_reencode(const uint8_t *p, const struct frame *f, size_t max_data,
                           struct buf *scratch)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t h =
        frame_header_encode(hdr, f->kind, f->done, f->control, f->stream_id, f->message_id, f->len);
    CHECK(h <= f->header_len);
    if (h == f->header_len)
        CHECK(memcmp(hdr, p, h) == 0);
    buf_reset(scratch);
    CHECK(buf_append(scratch, hdr, h) == 0);
    CHECK(buf_append(scratch, f->data, f->len) == 0);
    struct frame g;
    size_t used;
    CHECK(frame_parse(scratch->data, scratch->len, max_data, &g, &used) == FRAME_OK);
    CHECK(used == scratch->len);
    CHECK(g.kind == f->kind && g.done == f->done && g.control == f->control);
    CHECK(g.stream_id == f->stream_id && g.message_id == f->message_id);
    CHECK(g.len == f->len && g.header_len == h);
    CHECK(memcmp(g.data, f->data, f->len) == 0);
    /* the header alone asks for exactly the whole frame */
    if (f->len > 0) {
        CHECK(frame_parse(scratch->data, h, max_data, &g, &used) == FRAME_NEED_MORE);
        CHECK(used == h + f->len);
    }

    if (f->kind == FRAME_KIND_ERROR && !f->control) {
        uint64_t code;
        const uint8_t *text;
        size_t tl;
        frame_error_decode(f->data, f->len, &code, &text, &tl);
        if (f->len < FRAME_ERROR_CODE_LEN) {
            CHECK(code == 0 && text == f->data && tl == f->len);
        } else {
            CHECK(text == f->data + FRAME_ERROR_CODE_LEN && tl == f->len - FRAME_ERROR_CODE_LEN);
            if (f->done) {
                /* frame_append_error writes exactly the canonical frame */
                struct buf e = {0};
                CHECK(frame_append_error(&e, f->stream_id, f->message_id, code, (const char *)text,
                                         tl) == 0);
                CHECK(e.len == scratch->len && memcmp(e.data, scratch->data, e.len) == 0);
                buf_free(&e);
            }
        }
    }
}

/* Splits f's data into a packet and checks the frames rejoin to it. */
static void check_split(const struct frame *f, uint64_t *rng)
{
    if (f->len == 0 || f->len > 4096 || f->control)
        return;
    size_t split = 1 + (size_t)(rng_next(rng) % f->len);
    if (f->len / split > 64)
        split = f->len / 64 + 1;
    struct buf b = {0};
    CHECK(frame_append_packet(&b, f->kind, f->stream_id, f->message_id, f->data, f->len, split) ==
          0);
    size_t pos = 0, at = 0;
    for (;;) {
        struct frame g;
        size_t used;
        CHECK(frame_parse(b.data + pos, b.len - pos, split, &g, &used) == FRAME_OK);
        CHECK(g.kind == f->kind && !g.control && g.stream_id == f->stream_id &&
              g.message_id == f->message_id);
        CHECK(g.len <= split && g.len > 0);
        CHECK(memcmp(g.data, f->data + at, g.len) == 0);
        at += g.len;
        pos += used;
        CHECK(g.done == (pos == b.len));
        if (g.done)
            break;
        CHECK(g.len == split);
    }
    CHECK(at == f->len);
    buf_free(&b);
}

static void ref_parse(const uint8_t *data, size_t size, size_t max_data, struct ref *r,
                      struct buf *scratch, uint64_t *rng)
{
    size_t pos = 0, cap = 0;
    memset(r, 0, sizeof(*r));
    for (;;) {
        struct frame f;
        size_t used = SIZE_MAX;
        enum frame_result res = frame_parse(data + pos, size - pos, max_data, &f, &used);
        /* The header alone parses the same way; its length is the whole
         * frame's (cut-through hands the data on in pieces). */
        struct frame h;
        enum frame_result hres = frame_parse_header(data + pos, size - pos, max_data, &h);
        CHECK(hres == (res == FRAME_NEED_MORE && used ? FRAME_OK : res));
        if (hres == FRAME_OK) {
            CHECK(h.header_len + h.frame_len == used && h.offset == 0 && h.len == h.frame_len);
            CHECK(h.data == data + pos + h.header_len);
        }
        if (res != FRAME_OK) {
            CHECK(res == FRAME_NEED_MORE || res == FRAME_ERR_VARINT || res == FRAME_ERR_TOO_LARGE ||
                  res == FRAME_ERR_KIND);
            if (res == FRAME_NEED_MORE)
                CHECK(used == 0 || used > size - pos);
            r->end = res;
            r->end_used = used;
            r->end_off = pos;
            return;
        }
        check_frame(data + pos, size - pos, max_data, &f, used);
        check_reencode(data + pos, &f, max_data, scratch);
        check_split(&f, rng);
        if (r->n == cap) {
            cap = cap ? 2 * cap : 16;
            r->frames = realloc(r->frames, cap * sizeof(*r->frames));
            CHECK(r->frames != NULL);
        }
        r->frames[r->n++] = (struct ref_frame){pos, f};
        pos += used;
    }
}

/* Feeds data in chunks through an accumulating buffer; must match the reference. */
static void feed(const uint8_t *data, size_t size, size_t max_data, const struct ref *r,
                 uint64_t *rng, int mode)
{
    struct buf acc = {0};
    size_t base = 0, fed = 0, k = 0, used = 0;
    enum frame_result last = FRAME_NEED_MORE;
    while ((int)last >= 0) {
        size_t step;
        uint64_t x = rng_next(rng);
        if (mode == 0)
            step = 1;
        else if (x % 8 == 0)
            step = (size_t)(x >> 8) % 65536;
        else if (x % 8 < 3)
            step = (size_t)(x >> 8) % 64;
        else
            step = (size_t)(x >> 8) % 8;
        if (step > size - fed)
            step = size - fed;
        CHECK(buf_append(&acc, data + fed, step) == 0);
        fed += step;
        size_t pos = 0;
        for (;;) {
            struct frame f;
            size_t avail = acc.len - pos;
            const uint8_t *p = avail ? acc.data + pos : (const uint8_t *)"";
            used = SIZE_MAX;
            last = frame_parse(p, avail, max_data, &f, &used);
            if (last != FRAME_OK)
                break;
            CHECK(k < r->n && base + pos == r->frames[k].off);
            const struct frame *w = &r->frames[k].f;
            CHECK(f.kind == w->kind && f.done == w->done && f.control == w->control);
            CHECK(f.stream_id == w->stream_id && f.message_id == w->message_id);
            CHECK(f.len == w->len && f.header_len == w->header_len);
            CHECK(f.data == p + f.header_len && memcmp(f.data, w->data, f.len) == 0);
            CHECK(used == f.header_len + f.len);
            k++;
            pos += used;
        }
        size_t avail = acc.len - pos;
        if (last == FRAME_NEED_MORE) {
            if (k < r->n) {
                const struct frame *w = &r->frames[k].f;
                CHECK(avail < w->header_len + w->len);
                CHECK(used == (avail >= w->header_len ? w->header_len + w->len : 0));
            } else if (r->end == FRAME_NEED_MORE) {
                CHECK(used == 0 || used == r->end_used);
            } else {
                CHECK(used == 0);
            }
        } else {
            /* errors are stable: the same error, at the same place */
            CHECK(last == r->end && k == r->n && base + pos == r->end_off);
        }
        buf_consume(&acc, pos);
        base += pos;
        if (fed == size && last == FRAME_NEED_MORE)
            break;
    }
    CHECK(k == r->n && last == r->end);
    if (last == FRAME_NEED_MORE)
        CHECK(used == r->end_used && base == r->end_off);
    buf_free(&acc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    known_bugs = getenv("CODEC_KNOWN_BUGS") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = {0, 7, 300, 65536, 4u << 20, SIZE_MAX / 2, SIZE_MAX};
    uint64_t rng = hash_input(data, size);
    size_t n_caps = sizeof(caps) / sizeof(caps[0]) - (known_bugs ? 0 : 1);
    size_t max_data = caps[rng_next(&rng) % n_caps];

    struct buf scratch = {0};
    struct ref r;
    ref_parse(data, size, max_data, &r, &scratch, &rng);
    feed(data, size, max_data, &r, &rng, 1);
    if (size <= 4096)
        feed(data, size, max_data, &r, &rng, 0);
    free(r.frames);
    buf_free(&scratch);
    return 0;
}
