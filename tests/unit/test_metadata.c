/*
 * test_metadata: invoke metadata (proxy/metadata.c) against the
 * unary-metadata capture, round trips, repeated keys, binary bytes,
 * malformed input and the limits. Run under valgrind for leaks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/metadata.h"
#include "proxy/varint.h"
#include "tests/unit/transcript.h"

/* The InvokeMetadata data of the unary-metadata capture (client, frame 1). */
static const uint8_t capture_md[] = {
    0x0a, 0x0d, 0x0a, 0x04, 'u', 's', 'e', 'r', 0x12, 0x05, 'a', 'l', 'i', 'c', 'e', 0x0a,
    0x0e, 0x0a, 0x05, 't',  'r', 'a', 'c', 'e', 0x12, 0x05, 't', '-', '1', '2', '3'};

/* Appends one map entry (field 1) the way Go's encoder writes it: key and value always present. */
static void put_entry(struct buf *b, const void *key, size_t kl, const void *value, size_t vl)
{
    uint8_t v[VARINT_MAX_LEN];
    size_t entry = 1 + varint_size(kl) + kl + 1 + varint_size(vl) + vl;
    assert_int_equal(buf_append(b, "\x0a", 1), 0);
    assert_int_equal(buf_append(b, v, varint_encode(v, entry)), 0);
    assert_int_equal(buf_append(b, "\x0a", 1), 0);
    assert_int_equal(buf_append(b, v, varint_encode(v, kl)), 0);
    assert_int_equal(buf_append(b, key, kl), 0);
    assert_int_equal(buf_append(b, "\x12", 1), 0);
    assert_int_equal(buf_append(b, v, varint_encode(v, vl)), 0);
    assert_int_equal(buf_append(b, value, vl), 0);
}

/* Decodes from an exact-size heap copy (reads past len show under valgrind/ASan). */
static int decode_exact(const uint8_t *data, size_t len, const struct metadata_limits *lim,
                        struct metadata *md, const char **why)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, data, len);
    *why = "unset";
    int rc = metadata_decode(copy, len, lim, md, why);
    free(copy);
    if (rc == 0) {
        assert_null(*why);
    } else {
        /* a failed decode leaves nothing behind, and says why */
        assert_int_equal(md->n, 0);
        assert_null(md->pairs);
        assert_non_null(*why);
    }
    return rc;
}

static void expect_pair(const struct metadata_pair *p, const void *key, size_t kl,
                        const void *value, size_t vl)
{
    assert_int_equal(p->key_len, kl);
    assert_int_equal(p->value_len, vl);
    if (kl)
        assert_memory_equal(p->key, key, kl);
    if (vl)
        assert_memory_equal(p->value, value, vl);
    /* copies are NUL-terminated for C callers */
    assert_int_equal(p->key[kl], '\0');
    assert_int_equal(p->value[vl], '\0');
}

/* Two decoded sets hold the same pairs in the same order. */
static void same_metadata(const struct metadata *a, const struct metadata *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        expect_pair(&b->pairs[i], a->pairs[i].key, a->pairs[i].key_len, a->pairs[i].value,
                    a->pairs[i].value_len);
}

/* encode -> decode gives back md; returns the encoding in *out. */
static void roundtrip(const struct metadata *md, struct buf *out)
{
    assert_int_equal(metadata_encode(md, out), 0);
    struct metadata back = {0};
    const char *why;
    assert_int_equal(decode_exact(out->data, out->len, NULL, &back, &why), 0);
    same_metadata(md, &back);
    metadata_free(&back);
}

/* The capture's metadata bytes, from the transcript (a missing one fails). */
static void capture_bytes(struct buf *out)
{
    char dir[PATH_MAX];
    struct transcript t;
    const char *why;
    if (!transcript_find(dir, sizeof(dir)))
        fail_msg("drpc-transcripts not found (%s)", dir);
    if (transcript_load(dir, "unary-metadata", &t, &why) != 0)
        fail_msg("unary-metadata: %s", why);
    struct frame f;
    size_t used;
    const struct buf *client = &t.dir[TRANSCRIPT_CLIENT];
    assert_int_equal(frame_parse(client->data, client->len, 1 << 20, &f, &used), FRAME_OK);
    assert_int_equal(f.kind, FRAME_KIND_INVOKE_METADATA);
    assert_true(f.done);
    assert_int_equal(f.stream_id, 1);
    assert_int_equal(f.message_id, 1);
    assert_int_equal(buf_append(out, f.data, f.len), 0);
    /* the embedded copy is the capture */
    assert_int_equal(f.len, sizeof(capture_md));
    assert_memory_equal(f.data, capture_md, f.len);
    transcript_free(&t);
}

static void test_capture(void **state)
{
    (void)state;
    struct buf wire = {0};
    capture_bytes(&wire);
    struct metadata md = {0};
    const char *why;
    assert_int_equal(decode_exact(wire.data, wire.len, NULL, &md, &why), 0);
    assert_int_equal(md.n, 2);
    assert_string_equal(metadata_get(&md, "user"), "alice");
    assert_string_equal(metadata_get(&md, "trace"), "t-123");
    assert_null(metadata_get(&md, "nope"));
    assert_null(metadata_get(&md, "use"));
    assert_null(metadata_get(&md, "users"));
    expect_pair(&md.pairs[0], "user", 4, "alice", 5);
    expect_pair(&md.pairs[1], "trace", 5, "t-123", 5);

    /* re-encoding gives the capture's bytes: order kept, same field layout as Go */
    struct buf enc = {0};
    roundtrip(&md, &enc);
    assert_int_equal(enc.len, wire.len);
    assert_memory_equal(enc.data, wire.data, wire.len);

    /* Go map order is random: the other order means the same */
    struct buf swapped = {0};
    put_entry(&swapped, "trace", 5, "t-123", 5);
    put_entry(&swapped, "user", 4, "alice", 5);
    assert_int_equal(swapped.len, wire.len);
    struct metadata md2 = {0};
    assert_int_equal(decode_exact(swapped.data, swapped.len, NULL, &md2, &why), 0);
    assert_int_equal(md2.n, 2);
    assert_string_equal(metadata_get(&md2, "user"), "alice");
    assert_string_equal(metadata_get(&md2, "trace"), "t-123");

    metadata_free(&md);
    metadata_free(&md2);
    buf_free(&wire);
    buf_free(&enc);
    buf_free(&swapped);
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct metadata md = {0};
    assert_int_equal(metadata_set(&md, "authorization", "Bearer abc.def"), 0);
    assert_int_equal(metadata_set(&md, "x-tenant", "42"), 0);
    assert_int_equal(metadata_set(&md, "k", ""), 0);
    assert_int_equal(metadata_set(&md, "", "empty key"), 0);
    char big[3000];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(metadata_set(&md, "big", big), 0); /* a 2-byte length varint */
    struct buf enc = {0};
    roundtrip(&md, &enc);
    /* decode(encode(x)) encodes to the same bytes */
    struct metadata back = {0};
    const char *why;
    assert_int_equal(decode_exact(enc.data, enc.len, NULL, &back, &why), 0);
    struct buf enc2 = {0};
    assert_int_equal(metadata_encode(&back, &enc2), 0);
    assert_int_equal(enc2.len, enc.len);
    assert_memory_equal(enc2.data, enc.data, enc.len);
    /* metadata_encode appends */
    struct buf pre = {0};
    assert_int_equal(buf_append(&pre, "hdr", 3), 0);
    assert_int_equal(metadata_encode(&md, &pre), 0);
    assert_int_equal(pre.len, 3 + enc.len);
    assert_memory_equal(pre.data, "hdr", 3);
    assert_memory_equal(pre.data + 3, enc.data, enc.len);
    metadata_free(&md);
    metadata_free(&back);
    buf_free(&enc);
    buf_free(&enc2);
    buf_free(&pre);
}

static void test_repeated_key(void **state)
{
    (void)state;
    struct buf w = {0};
    put_entry(&w, "k", 1, "first", 5);
    put_entry(&w, "other", 5, "x", 1);
    put_entry(&w, "k", 1, "second", 6);
    put_entry(&w, "k", 1, "last", 4);
    struct metadata md = {0};
    const char *why;
    assert_int_equal(decode_exact(w.data, w.len, NULL, &md, &why), 0);
    assert_int_equal(md.n, 2);
    assert_string_equal(metadata_get(&md, "k"), "last");
    assert_int_equal(md.pairs[0].value_len, 4);
    assert_string_equal(metadata_get(&md, "other"), "x");
    metadata_free(&md);
    buf_free(&w);
}

static void test_empty(void **state)
{
    (void)state;
    struct metadata md = {0};
    const char *why;
    assert_int_equal(decode_exact(NULL, 0, NULL, &md, &why), 0);
    assert_int_equal(md.n, 0);
    assert_null(metadata_get(&md, "user"));
    struct buf b = {0};
    assert_int_equal(metadata_encode(&md, &b), 0);
    assert_int_equal(b.len, 0);
    metadata_free(&md);
    metadata_free(&md); /* freeing twice is harmless */
    buf_free(&b);
}

static void test_binary(void **state)
{
    (void)state;
    const uint8_t key[] = {'b', 'i', 'n', 0x00, 'k', 0xff};
    uint8_t value[256];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)i; /* starts with NUL, has invalid UTF-8 */
    struct buf w = {0};
    put_entry(&w, key, sizeof(key), value, sizeof(value));
    put_entry(&w, "\0", 1, "\0\0", 2);
    struct metadata md = {0};
    const char *why;
    assert_int_equal(decode_exact(w.data, w.len, NULL, &md, &why), 0);
    assert_int_equal(md.n, 2);
    expect_pair(&md.pairs[0], key, sizeof(key), value, sizeof(value));
    expect_pair(&md.pairs[1], "\0", 1, "\0\0", 2);
    /* metadata_get looks keys up as C strings: "bin" is not "bin\0k\xff" */
    assert_null(metadata_get(&md, "bin"));
    struct buf enc = {0};
    roundtrip(&md, &enc);
    assert_int_equal(enc.len, w.len);
    assert_memory_equal(enc.data, w.data, w.len);
    metadata_free(&md);
    buf_free(&w);
    buf_free(&enc);
}

/* Go writes empty keys and values; protobuf-c leaves them out. Both decode alike. */
static void test_empty_fields(void **state)
{
    (void)state;
    struct buf go = {0};
    put_entry(&go, "k", 1, "", 0);
    put_entry(&go, "", 0, "v", 1);
    const uint8_t missing[] = {0x0a, 0x03, 0x0a, 0x01, 'k', 0x0a, 0x03, 0x12, 0x01, 'v'};
    const uint8_t empty_entry[] = {0x0a, 0x00};
    struct metadata a = {0}, b = {0}, c = {0};
    const char *why;
    assert_int_equal(decode_exact(go.data, go.len, NULL, &a, &why), 0);
    assert_int_equal(decode_exact(missing, sizeof(missing), NULL, &b, &why), 0);
    same_metadata(&a, &b);
    assert_string_equal(metadata_get(&a, "k"), "");
    assert_string_equal(metadata_get(&a, ""), "v");
    assert_int_equal(decode_exact(empty_entry, sizeof(empty_entry), NULL, &c, &why), 0);
    assert_int_equal(c.n, 1);
    expect_pair(&c.pairs[0], "", 0, "", 0);
    metadata_free(&a);
    metadata_free(&b);
    metadata_free(&c);
    buf_free(&go);
}

/* Fields other than 1 (and, in an entry, other than 1 and 2) are skipped. */
static void test_unknown_fields(void **state)
{
    (void)state;
    const uint8_t top[] = {0x10, 0x01, 0x1a, 0x02, 'h',  'i', 0x15, 1,    2,  3,
                           4,    0x0a, 0x06, 0x0a, 0x01, 'k', 0x12, 0x01, 'v'};
    const uint8_t inner[] = {0x0a, 0x08, 0x18, 0x07, 0x0a, 0x01, 'k', 0x12, 0x01, 'v'};
    struct metadata md = {0};
    const char *why;
    assert_int_equal(decode_exact(top, sizeof(top), NULL, &md, &why), 0);
    assert_int_equal(md.n, 1);
    assert_string_equal(metadata_get(&md, "k"), "v");
    metadata_free(&md);
    assert_int_equal(decode_exact(inner, sizeof(inner), NULL, &md, &why), 0);
    assert_int_equal(md.n, 1);
    assert_string_equal(metadata_get(&md, "k"), "v");
    metadata_free(&md);
}

static void test_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } junk[] = {
        {"entry longer than the data", "\x0a\x10\x0a", 3},
        {"tag without its length", "\x0a", 1},
        {"field 1 as a varint", "\x08\x01", 2},
        {"field 1 as fixed64", "\x09\x01\x02\x03\x04\x05\x06\x07\x08", 9},
        {"field number 0", "\x02\x00", 2},
        {"tag 0", "\x00\x00", 2},
        {"start group", "\x0b", 1},
        {"wire type 6", "\x0e", 1},
        {"wire type 7", "\x0f", 1},
        {"11-byte tag varint", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11},
        {"truncated varint", "\x80", 1},
        {"key longer than its entry", "\x0a\x02\x0a\x05", 4},
        {"key as a varint", "\x0a\x02\x08\x01", 4},
        {"4 GiB entry length", "\x0a\xff\xff\xff\xff\x0f", 6},
        {"good entry, then a cut one",
         "\x0a\x03\x0a\x01k\x0a\x05\x0a\x03"
         "ab",
         11},
        {"text", "user=alice", 10},
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        struct metadata md = {0};
        const char *why;
        int rc = decode_exact((const uint8_t *)junk[i].bytes, junk[i].len, NULL, &md, &why);
        if (rc != UV_EINVAL)
            fail_msg("%s: rc %d, want UV_EINVAL", junk[i].what, rc);
        assert_string_equal(why, "malformed invoke metadata");
    }
    /* every proper prefix of the capture's metadata that cuts an entry is malformed */
    for (size_t n = 1; n < sizeof(capture_md); n++) {
        struct metadata md = {0};
        const char *why;
        int rc = decode_exact(capture_md, n, NULL, &md, &why);
        assert_int_equal(rc, n == 15 ? 0 : UV_EINVAL); /* 15: exactly the first entry */
        metadata_free(&md);
    }
}

/* n pairs "k0".."k<n-1>" = "v". */
static void many_pairs(struct buf *w, size_t n, const char *same_key)
{
    for (size_t i = 0; i < n; i++) {
        char k[32];
        int kl =
            same_key ? snprintf(k, sizeof(k), "%s", same_key) : snprintf(k, sizeof(k), "k%zu", i);
        put_entry(w, k, (size_t)kl, "v", 1);
    }
}

static void test_limits(void **state)
{
    (void)state;
    struct metadata md = {0};
    const char *why;
    struct buf w = {0};

    /* the defaults (NULL limits, or zeros): no pair limit, as in Go; the
     * byte cap bounds the count. 2,500 distinct keys, then each again. */
    many_pairs(&w, 2500, NULL);
    assert_int_equal(decode_exact(w.data, w.len, NULL, &md, &why), 0);
    assert_int_equal(md.n, 2500);
    assert_string_equal(md.pairs[2499].key, "k2499");
    metadata_free(&md);
    many_pairs(&w, 2500, NULL);
    struct metadata_limits zeros = {0, 0};
    assert_int_equal(decode_exact(w.data, w.len, &zeros, &md, &why), 0);
    assert_int_equal(md.n, 2500);
    metadata_free(&md);
    /* the most entries 64 KiB holds (an empty entry, 0a 00: 2 bytes), all one key */
    buf_reset(&w);
    while (w.len + 2 <= METADATA_DEFAULT_MAX_BYTES)
        assert_int_equal(buf_append(&w, "\x0a\x00", 2), 0);
    assert_int_equal(decode_exact(w.data, w.len, NULL, &md, &why), 0);
    assert_int_equal(md.n, 1);
    metadata_free(&md);

    /* a set maximum, exactly and one above; entries count, not distinct keys */
    struct metadata_limits three = {3, 0};
    buf_reset(&w);
    many_pairs(&w, 3, NULL);
    assert_int_equal(decode_exact(w.data, w.len, &three, &md, &why), 0);
    assert_int_equal(md.n, 3);
    metadata_free(&md);
    many_pairs(&w, 1, "k0");
    assert_int_equal(decode_exact(w.data, w.len, &three, &md, &why), UV_EINVAL);
    assert_string_equal(why, "too many invoke metadata pairs");
    buf_reset(&w);
    many_pairs(&w, 4, "same");
    assert_int_equal(decode_exact(w.data, w.len, &three, &md, &why), UV_EINVAL);

    /* bytes: exactly max_bytes is fine, one more is not */
    struct metadata_limits bytes = {0, sizeof(capture_md)};
    assert_int_equal(decode_exact(capture_md, sizeof(capture_md), &bytes, &md, &why), 0);
    metadata_free(&md);
    bytes.max_bytes = sizeof(capture_md) - 1;
    assert_int_equal(decode_exact(capture_md, sizeof(capture_md), &bytes, &md, &why), UV_EINVAL);
    assert_string_equal(why, "invoke metadata too large");
    /* the size is checked before parsing: garbage above the limit is "too large" */
    bytes.max_bytes = 2;
    assert_int_equal(decode_exact((const uint8_t *)"\x0a\x10\x0a", 3, &bytes, &md, &why),
                     UV_EINVAL);
    assert_string_equal(why, "invoke metadata too large");

    /* the default byte cap: 64 KiB in one value */
    buf_reset(&w);
    size_t vl = METADATA_DEFAULT_MAX_BYTES - (1 + 3 + 1 + 1 + 1 + 1 + 3);
    char *value = malloc(vl + 1);
    assert_non_null(value);
    memset(value, 'x', vl + 1);
    put_entry(&w, "k", 1, value, vl);
    assert_int_equal(w.len, METADATA_DEFAULT_MAX_BYTES);
    assert_int_equal(decode_exact(w.data, w.len, NULL, &md, &why), 0);
    assert_int_equal(md.pairs[0].value_len, vl);
    metadata_free(&md);
    buf_reset(&w);
    put_entry(&w, "k", 1, value, vl + 1);
    assert_int_equal(decode_exact(w.data, w.len, NULL, &md, &why), UV_EINVAL);
    assert_string_equal(why, "invoke metadata too large");
    free(value);
    buf_free(&w);
}

static void test_set(void **state)
{
    (void)state;
    struct metadata md = {0};
    assert_null(metadata_get(&md, "a"));
    /* add */
    assert_int_equal(metadata_set(&md, "a", "1"), 0);
    assert_int_equal(metadata_set(&md, "b", "2"), 0);
    assert_int_equal(md.n, 2);
    assert_string_equal(metadata_get(&md, "a"), "1");
    assert_string_equal(metadata_get(&md, "b"), "2");
    /* replace keeps the place and the count */
    assert_int_equal(metadata_set(&md, "a", "one, longer"), 0);
    assert_int_equal(md.n, 2);
    expect_pair(&md.pairs[0], "a", 1, "one, longer", 11);
    assert_int_equal(metadata_set(&md, "a", ""), 0);
    expect_pair(&md.pairs[0], "a", 1, "", 0);
    /* keys are case-sensitive bytes, and a prefix is another key */
    assert_int_equal(metadata_set(&md, "A", "upper"), 0);
    assert_int_equal(metadata_set(&md, "bb", "3"), 0);
    assert_int_equal(md.n, 4);
    assert_string_equal(metadata_get(&md, "A"), "upper");
    assert_string_equal(metadata_get(&md, "b"), "2");
    assert_string_equal(metadata_get(&md, "bb"), "3");
    /* set on decoded metadata, then encode: the wire carries the change */
    struct buf enc = {0};
    roundtrip(&md, &enc);
    struct metadata back = {0};
    const char *why;
    assert_int_equal(decode_exact(capture_md, sizeof(capture_md), NULL, &back, &why), 0);
    assert_int_equal(metadata_set(&back, "user", "bob"), 0);
    assert_int_equal(metadata_set(&back, "added", "yes"), 0);
    buf_reset(&enc);
    roundtrip(&back, &enc);
    struct metadata again = {0};
    assert_int_equal(decode_exact(enc.data, enc.len, NULL, &again, &why), 0);
    assert_string_equal(metadata_get(&again, "user"), "bob");
    assert_string_equal(metadata_get(&again, "trace"), "t-123");
    assert_string_equal(metadata_get(&again, "added"), "yes");
    metadata_free(&md);
    metadata_free(&back);
    metadata_free(&again);
    buf_free(&enc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capture),        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_repeated_key),   cmocka_unit_test(test_empty),
        cmocka_unit_test(test_binary),         cmocka_unit_test(test_empty_fields),
        cmocka_unit_test(test_unknown_fields), cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_limits),         cmocka_unit_test(test_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
