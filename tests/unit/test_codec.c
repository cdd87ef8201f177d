/*
 * Codec against the ground truth: every capture in shared/drpc-transcripts
 * decodes, per direction, into exactly the frames of its .frames.txt,
 * re-encodes to the identical bytes, and gives the same frames when fed
 * one byte at a time and when split at (many) points. Plus the malformed
 * inputs each with its precise error, varints, Error packets and metadata.
 */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/metadata.h"
#include "proxy/varint.h"

#define MAX_FRAMES 4096

static const char *kind_label(uint8_t k)
{
    static const char *const labels[] = {"?",      "Invoke", "Message",   "Error",
                                         "Cancel", "Close",  "CloseSend", "InvokeMetadata"};
    return k < 8 ? labels[k] : "?";
}

struct expect {
    char dir;
    char kind[32];
    unsigned long long stream, msg, len;
    int done, control;
};

struct capture {
    struct buf dir[2]; /* 0: client '>', 1: server '<' */
    struct expect *ex;
    size_t n_ex;
};

static char transcripts[PATH_MAX];

static bool find_transcripts(void)
{
    const char *env = getenv("DRPC_TRANSCRIPTS");
    const char *candidates[] = {env, "../shared/drpc-transcripts", "../../shared/drpc-transcripts"};
    for (size_t i = 0; i < 3; i++) {
        if (!candidates[i])
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/README.txt", candidates[i]);
        if (access(p, R_OK) == 0) {
            snprintf(transcripts, sizeof(transcripts), "%s", candidates[i]);
            return true;
        }
    }
    return false;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void load_capture(const char *name, struct capture *cap)
{
    memset(cap, 0, sizeof(*cap));
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s.txt", transcripts, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t lsz = 1 << 21;
    char *line = malloc(lsz);
    while (fgets(line, (int)lsz, f)) {
        int d = line[0] == '>' ? 0 : line[0] == '<' ? 1 : -1;
        if (d < 0)
            continue;
        for (char *p = line + 2; p[0] && p[1]; p += 2) {
            int hi = hexval(p[0]), lo = hexval(p[1]);
            if (hi < 0 || lo < 0)
                break;
            uint8_t b = (uint8_t)(hi << 4 | lo);
            assert_int_equal(buf_append(&cap->dir[d], &b, 1), 0);
        }
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s.frames.txt", transcripts, name);
    f = fopen(path, "r");
    assert_non_null(f);
    cap->ex = calloc(MAX_FRAMES, sizeof(*cap->ex));
    while (fgets(line, (int)lsz, f) && cap->n_ex < MAX_FRAMES) {
        struct expect e;
        char done[8], control[8];
        if (sscanf(line, " %c kind=%31s stream=%llu msg=%llu done=%7s control=%7s len=%llu", &e.dir,
                   e.kind, &e.stream, &e.msg, done, control, &e.len) != 7)
            continue;
        e.done = strcmp(done, "true") == 0;
        e.control = strcmp(control, "true") == 0;
        cap->ex[cap->n_ex++] = e;
    }
    fclose(f);
    free(line);
}

static void free_capture(struct capture *cap)
{
    buf_free(&cap->dir[0]);
    buf_free(&cap->dir[1]);
    free(cap->ex);
}

/* Parses a whole direction; returns the frames and checks nothing is left. */
static size_t parse_all(const struct buf *b, struct frame *out)
{
    size_t pos = 0, n = 0;
    while (pos < b->len) {
        size_t used;
        enum frame_result r = frame_parse(b->data + pos, b->len - pos, 4 << 20, &out[n], &used);
        assert_int_equal(r, FRAME_OK);
        pos += used;
        n++;
        assert_true(n < MAX_FRAMES);
    }
    return n;
}

/* Feeds b in chunks of the given sizes through an accumulating buffer. */
static size_t parse_chunked(const struct buf *b, const size_t *cuts, size_t n_cuts,
                            struct frame *out, struct buf *acc)
{
    size_t fed = 0, pos = 0, n = 0;
    buf_reset(acc);
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t until = c < n_cuts ? cuts[c] : b->len;
        assert_int_equal(buf_append(acc, b->data + fed, until - fed), 0);
        fed = until;
        for (;;) {
            size_t used;
            enum frame_result r =
                frame_parse(acc->data + pos, acc->len - pos, 4 << 20, &out[n], &used);
            if (r == FRAME_NEED_MORE)
                break;
            assert_int_equal(r, FRAME_OK);
            pos += used;
            n++;
        }
    }
    assert_int_equal(pos, acc->len);
    return n;
}

static void same_frames(const struct frame *a, const struct frame *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i].kind, b[i].kind);
        assert_int_equal(a[i].stream_id, b[i].stream_id);
        assert_int_equal(a[i].message_id, b[i].message_id);
        assert_int_equal(a[i].done, b[i].done);
        assert_int_equal(a[i].control, b[i].control);
        assert_int_equal(a[i].len, b[i].len);
        assert_memory_equal(a[i].data, b[i].data, a[i].len);
    }
}

static void check_capture(const char *name)
{
    struct capture cap;
    load_capture(name, &cap);
    struct frame *frames = calloc(MAX_FRAMES, sizeof(*frames));
    struct frame *again = calloc(MAX_FRAMES, sizeof(*again));
    struct buf acc = {0}, enc = {0};
    size_t ex_seen[2] = {0, 0};
    /* header-unary-small: the client first sends the drpcmigrate prefix */
    if (cap.dir[0].len >= DRPC_HEADER_LEN && memcmp(cap.dir[0].data, DRPC_HEADER, 8) == 0)
        buf_consume(&cap.dir[0], DRPC_HEADER_LEN);
    for (int d = 0; d < 2; d++) {
        size_t n = parse_all(&cap.dir[d], frames);
        /* the .frames.txt lists this direction's frames in order */
        size_t k = 0;
        for (size_t i = 0; i < cap.n_ex; i++) {
            const struct expect *e = &cap.ex[i];
            if (e->dir != (d == 0 ? '>' : '<'))
                continue;
            assert_true(k < n);
            assert_string_equal(kind_label(frames[k].kind), e->kind);
            assert_int_equal(frames[k].stream_id, e->stream);
            assert_int_equal(frames[k].message_id, e->msg);
            assert_int_equal(frames[k].len, e->len);
            assert_int_equal(frames[k].done, e->done);
            assert_int_equal(frames[k].control, e->control);
            k++;
        }
        assert_int_equal(k, n);
        ex_seen[d] = k;

        /* re-encoding gives the identical bytes */
        buf_reset(&enc);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(frame_append(&enc, frames[i].kind, frames[i].done, frames[i].control,
                                          frames[i].stream_id, frames[i].message_id, frames[i].data,
                                          frames[i].len),
                             0);
        assert_int_equal(enc.len, cap.dir[d].len);
        assert_memory_equal(enc.data, cap.dir[d].data, enc.len);

        /* one byte at a time, for streams small enough to make it cheap */
        size_t len = cap.dir[d].len;
        if (len > 0 && len <= 4096) {
            size_t *cuts = malloc(len * sizeof(*cuts));
            for (size_t i = 0; i < len; i++)
                cuts[i] = i;
            assert_int_equal(parse_chunked(&cap.dir[d], cuts, len, again, &acc), n);
            same_frames(frames, again, n);
            free(cuts);
        }
        /* every split point into two chunks (a stride for big streams) */
        size_t stride = len <= 4096 ? 1 : 997;
        for (size_t cut = 0; cut <= len; cut += stride) {
            size_t one = cut;
            size_t got = parse_chunked(&cap.dir[d], &one, 1, again, &acc);
            assert_int_equal(got, n);
            same_frames(frames, again, n);
        }
    }
    assert_int_equal(ex_seen[0] + ex_seen[1], cap.n_ex);
    buf_free(&acc);
    buf_free(&enc);
    free(frames);
    free(again);
    free_capture(&cap);
}

static void test_transcripts(void **state)
{
    (void)state;
    if (!find_transcripts()) {
        print_message("transcripts not found (set DRPC_TRANSCRIPTS); skipping\n");
        skip();
    }
    DIR *dir = opendir(transcripts);
    assert_non_null(dir);
    struct dirent *de;
    int checked = 0;
    while ((de = readdir(dir))) {
        size_t n = strlen(de->d_name);
        if (n < 12 || strcmp(de->d_name + n - 11, ".frames.txt") != 0)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(n - 11), de->d_name);
        check_capture(name);
        checked++;
    }
    closedir(dir);
    assert_true(checked >= 12);
}

static void test_malformed(void **state)
{
    (void)state;
    struct frame f;
    size_t used;
    /* empty and short input */
    assert_int_equal(frame_parse((const uint8_t *)"", 0, 100, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(frame_parse((const uint8_t *)"\x03\x01", 2, 100, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(used, 0);
    /* a complete header asks for the full size */
    const uint8_t partial[] = {0x05, 0x01, 0x02, 0x05, 'h', 'e'};
    assert_int_equal(frame_parse(partial, sizeof(partial), 100, &f, &used), FRAME_NEED_MORE);
    assert_int_equal(used, 9);
    /* varint of 11 bytes */
    uint8_t longv[16] = {0x03};
    memset(longv + 1, 0xff, 11);
    assert_int_equal(frame_parse(longv, 12, 100, &f, &used), FRAME_ERR_VARINT);
    /* tenth byte above 1 overflows 64 bits */
    uint8_t over[12] = {0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    assert_int_equal(frame_parse(over, 11, 100, &f, &used), FRAME_ERR_VARINT);
    /* 1 GiB length refused before any data arrives */
    const uint8_t huge[] = {0x05, 0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x04};
    assert_int_equal(frame_parse(huge, sizeof(huge), 4 << 20, &f, &used), FRAME_ERR_TOO_LARGE);
    /* kind 0 and kinds 8..63 without the control bit */
    const uint8_t k0[] = {0x01, 0x01, 0x01, 0x00};
    assert_int_equal(frame_parse(k0, sizeof(k0), 100, &f, &used), FRAME_ERR_KIND);
    for (unsigned k = 8; k < 64; k++) {
        uint8_t kb[] = {(uint8_t)(k << 1 | 1), 0x01, 0x01, 0x00};
        assert_int_equal(frame_parse(kb, sizeof(kb), 100, &f, &used), FRAME_ERR_KIND);
        kb[0] |= 0x80; /* with the control bit it is accepted (and ignorable) */
        assert_int_equal(frame_parse(kb, sizeof(kb), 100, &f, &used), FRAME_OK);
        assert_true(f.control);
        assert_int_equal(f.kind, k);
    }
    /* the soft cancel bytes of the capture */
    const uint8_t cancel[] = {0x89, 0x01, 0x04, 0x00};
    assert_int_equal(frame_parse(cancel, 4, 100, &f, &used), FRAME_OK);
    assert_int_equal(f.kind, FRAME_KIND_CANCEL);
    assert_true(f.control && f.done);
    assert_string_equal(frame_strerror(FRAME_ERR_VARINT), "varint longer than 10 bytes");
}

static void test_varint(void **state)
{
    (void)state;
    const uint64_t values[] = {0,     1,     127,        128,        300,
                               16383, 16384, 1ULL << 32, 1ULL << 63, UINT64_MAX};
    const size_t sizes[] = {1, 1, 1, 2, 2, 2, 3, 5, 10, 10};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint8_t b[VARINT_MAX_LEN];
        size_t n = varint_encode(b, values[i]);
        assert_int_equal(n, sizes[i]);
        assert_int_equal(varint_size(values[i]), n);
        uint64_t v;
        size_t used;
        assert_int_equal(varint_decode(b, n, &v, &used), VARINT_OK);
        assert_int_equal(v, values[i]);
        assert_int_equal(used, n);
        if (n > 1)
            assert_int_equal(varint_decode(b, n - 1, &v, &used), VARINT_NEED_MORE);
    }
}

static void test_error_packets(void **state)
{
    (void)state;
    struct buf b = {0};
    /* the error-42 capture's server bytes */
    assert_int_equal(frame_append_error(&b, 1, 1, 42, "the answer is wrong", 19), 0);
    const uint8_t want[] = {0x07, 0x01, 0x01, 0x1b, 0, 0, 0, 0, 0, 0, 0, 42};
    assert_memory_equal(b.data, want, sizeof(want));
    struct frame f;
    size_t used;
    assert_int_equal(frame_parse(b.data, b.len, 100, &f, &used), FRAME_OK);
    uint64_t code;
    const uint8_t *text;
    size_t tl;
    frame_error_decode(f.data, f.len, &code, &text, &tl);
    assert_int_equal(code, 42);
    assert_int_equal(tl, 19);
    assert_memory_equal(text, "the answer is wrong", 19);
    buf_reset(&b);
    assert_int_equal(frame_append_error(&b, 7, 3, 0xfedcba9876543210ULL, "", 0), 0);
    assert_int_equal(frame_parse(b.data, b.len, 100, &f, &used), FRAME_OK);
    frame_error_decode(f.data, f.len, &code, &text, &tl);
    assert_int_equal(code, 0xfedcba9876543210ULL);
    assert_int_equal(tl, 0);
    /* shorter than a code: all text, code 0 */
    frame_error_decode((const uint8_t *)"oops", 4, &code, &text, &tl);
    assert_int_equal(code, 0);
    assert_int_equal(tl, 4);
    buf_free(&b);
}

static void test_packet_split(void **state)
{
    (void)state;
    struct buf b = {0};
    uint8_t *data = malloc(204800);
    for (size_t i = 0; i < 204800; i++)
        data[i] = (uint8_t)(i % 251);
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_MESSAGE, 1, 1, data, 204800, 65536), 0);
    size_t pos = 0, sizes[4] = {65536, 65536, 65536, 8192};
    for (int i = 0; i < 4; i++) {
        struct frame f;
        size_t used;
        assert_int_equal(frame_parse(b.data + pos, b.len - pos, 1 << 20, &f, &used), FRAME_OK);
        assert_int_equal(f.len, sizes[i]);
        assert_int_equal(f.done, i == 3);
        assert_int_equal(f.message_id, 1);
        pos += used;
    }
    assert_int_equal(pos, b.len);
    /* an empty packet is one empty done frame */
    buf_reset(&b);
    assert_int_equal(frame_append_packet(&b, FRAME_KIND_CLOSE_SEND, 1, 3, NULL, 0, 65536), 0);
    const uint8_t cs[] = {0x0d, 0x01, 0x03, 0x00};
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, cs, 4);
    free(data);
    buf_free(&b);
}

static void test_metadata(void **state)
{
    (void)state;
    /* the unary-metadata capture's InvokeMetadata data */
    const uint8_t wire[] = "\n\r\n\x04user\x12\x05"
                           "alice\n\x0e\n\x05trace\x12\x05t-123";
    struct metadata md = {0};
    const char *why;
    assert_int_equal(metadata_decode(wire, sizeof(wire) - 1, NULL, &md, &why), 0);
    assert_int_equal(md.n, 2);
    assert_string_equal(metadata_get(&md, "user"), "alice");
    assert_string_equal(metadata_get(&md, "trace"), "t-123");
    assert_null(metadata_get(&md, "nope"));
    /* encode -> decode round trip, with a binary value */
    assert_int_equal(metadata_set(&md, "user", "bob"), 0);
    struct buf b = {0};
    assert_int_equal(metadata_encode(&md, &b), 0);
    struct metadata back = {0};
    assert_int_equal(metadata_decode(b.data, b.len, NULL, &back, &why), 0);
    assert_int_equal(back.n, 2);
    assert_string_equal(metadata_get(&back, "user"), "bob");
    metadata_free(&back);
    /* repeated key keeps the last value */
    const uint8_t rep[] = "\n\x06\n\x01k\x12\x01"
                          "a\n\x06\n\x01k\x12\x01"
                          "b";
    assert_int_equal(metadata_decode(rep, sizeof(rep) - 1, NULL, &back, &why), 0);
    assert_int_equal(back.n, 1);
    assert_string_equal(metadata_get(&back, "k"), "b");
    metadata_free(&back);
    /* empty metadata */
    assert_int_equal(metadata_decode((const uint8_t *)"", 0, NULL, &back, &why), 0);
    assert_int_equal(back.n, 0);
    /* garbage */
    const uint8_t junk[] = {0x0a, 0x10, 0x0a};
    assert_int_equal(metadata_decode(junk, sizeof(junk), NULL, &back, &why), UV_EINVAL);
    assert_string_equal(why, "malformed invoke metadata");
    /* limits */
    struct metadata_limits lim = {1, 0};
    assert_int_equal(metadata_decode(wire, sizeof(wire) - 1, &lim, &back, &why), UV_EINVAL);
    assert_string_equal(why, "too many invoke metadata pairs");
    struct metadata_limits small = {0, 10};
    assert_int_equal(metadata_decode(wire, sizeof(wire) - 1, &small, &back, &why), UV_EINVAL);
    assert_string_equal(why, "invoke metadata too large");
    metadata_free(&md);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transcripts),  cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_varint),       cmocka_unit_test(test_error_packets),
        cmocka_unit_test(test_packet_split), cmocka_unit_test(test_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
