/*
 * test_varint: LEB128 varints (proxy/varint.c) at every width boundary, as
 * the DRPC reader takes them: at most 10 bytes, and the 10th byte may only
 * carry bit 63.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/varint.h"

/* Decodes from an exact-size heap copy, so a read past len shows under valgrind/ASan. */
static enum varint_result decode_exact(const uint8_t *p, size_t len, uint64_t *v, size_t *used)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, p, len);
    enum varint_result r = varint_decode(copy, len, v, used);
    free(copy);
    return r;
}

static void expect_roundtrip(uint64_t v, size_t want_len)
{
    uint8_t b[VARINT_MAX_LEN + 4];
    memset(b, 0xee, sizeof(b));
    size_t n = varint_encode(b, v);
    assert_int_equal(n, want_len);
    assert_int_equal(varint_size(v), n);
    assert_int_equal(b[n], 0xee); /* nothing written past the varint */
    for (size_t i = 0; i + 1 < n; i++)
        assert_true(b[i] & 0x80);
    assert_false(b[n - 1] & 0x80);
    uint64_t got = ~v;
    size_t used = 0;
    assert_int_equal(decode_exact(b, n, &got, &used), VARINT_OK);
    assert_int_equal(got, v);
    assert_int_equal(used, n);
    /* trailing bytes are not consumed */
    assert_int_equal(varint_decode(b, sizeof(b), &got, &used), VARINT_OK);
    assert_int_equal(got, v);
    assert_int_equal(used, n);
    /* every proper prefix asks for more */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(decode_exact(b, k, &got, &used), VARINT_NEED_MORE);
}

static void test_boundaries(void **state)
{
    (void)state;
    expect_roundtrip(0, 1);
    expect_roundtrip(1, 1);
    expect_roundtrip(127, 1);
    expect_roundtrip(128, 2);
    expect_roundtrip(300, 2);
    expect_roundtrip(1ULL << 63, 10);
    expect_roundtrip((1ULL << 63) - 1, 9);
    expect_roundtrip(UINT64_MAX, 10);
    /* 2^(7k) - 1 is the last value of k bytes, 2^(7k) the first of k+1 */
    for (unsigned k = 1; k <= 9; k++) {
        uint64_t edge = 1ULL << (7 * k);
        expect_roundtrip(edge - 1, k);
        expect_roundtrip(edge, k + 1);
    }
}

static void test_exact_bytes(void **state)
{
    (void)state;
    struct {
        uint64_t v;
        uint8_t bytes[VARINT_MAX_LEN];
        size_t n;
    } cases[] = {
        {0, {0x00}, 1},
        {127, {0x7f}, 1},
        {128, {0x80, 0x01}, 2},
        {300, {0xac, 0x02}, 2},
        {16383, {0xff, 0x7f}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {65536, {0x80, 0x80, 0x04}, 3},                  /* the 64 KiB frames of unary-200KiB */
        {1ULL << 30, {0x80, 0x80, 0x80, 0x80, 0x04}, 5}, /* 1 GiB */
        {1ULL << 63, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 10},
        {UINT64_MAX, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[VARINT_MAX_LEN];
        assert_int_equal(varint_encode(b, cases[i].v), cases[i].n);
        assert_memory_equal(b, cases[i].bytes, cases[i].n);
        uint64_t v;
        size_t used;
        assert_int_equal(decode_exact(cases[i].bytes, cases[i].n, &v, &used), VARINT_OK);
        assert_int_equal(v, cases[i].v);
        assert_int_equal(used, cases[i].n);
    }
}

static void test_need_more(void **state)
{
    (void)state;
    uint64_t v;
    size_t used;
    assert_int_equal(decode_exact(NULL, 0, &v, &used), VARINT_NEED_MORE);
    const uint8_t cont[9] = {0x80, 0xff, 0x80, 0xff, 0x80, 0xff, 0x80, 0xff, 0x80};
    for (size_t n = 1; n <= sizeof(cont); n++)
        assert_int_equal(decode_exact(cont, n, &v, &used), VARINT_NEED_MORE);
}

static void test_too_long(void **state)
{
    (void)state;
    uint64_t v;
    size_t used;
    /* 11 bytes */
    uint8_t eleven[11];
    memset(eleven, 0xff, 10);
    eleven[10] = 0x01;
    assert_int_equal(decode_exact(eleven, 11, &v, &used), VARINT_TOO_LONG);
    /* known at the 10th byte already */
    assert_int_equal(decode_exact(eleven, 10, &v, &used), VARINT_TOO_LONG);
    uint8_t zeros11[11];
    memset(zeros11, 0x80, 10);
    zeros11[10] = 0x00;
    assert_int_equal(decode_exact(zeros11, 11, &v, &used), VARINT_TOO_LONG);
    /* the 10th byte above 1 would need bit 64 or more */
    const uint8_t tenth[] = {0x02, 0x03, 0x7f, 0x80, 0x81, 0xff};
    for (size_t i = 0; i < sizeof(tenth); i++) {
        uint8_t b[VARINT_MAX_LEN];
        memset(b, 0x80, 9);
        b[9] = tenth[i];
        assert_int_equal(decode_exact(b, 10, &v, &used), VARINT_TOO_LONG);
    }
    /* a long run of continuation bytes is refused, not waited for */
    uint8_t run[64];
    memset(run, 0xff, sizeof(run));
    assert_int_equal(decode_exact(run, sizeof(run), &v, &used), VARINT_TOO_LONG);
}

/*
 * Non-canonical encodings (a redundant zero group) decode to their value,
 * as in Go's reader; re-encoding gives the short form.
 */
static void test_non_canonical(void **state)
{
    (void)state;
    uint64_t v;
    size_t used;
    const uint8_t zero2[] = {0x80, 0x00};
    assert_int_equal(decode_exact(zero2, 2, &v, &used), VARINT_OK);
    assert_int_equal(v, 0);
    assert_int_equal(used, 2);
    uint8_t ten_zero[VARINT_MAX_LEN];
    memset(ten_zero, 0xff, 9);
    ten_zero[9] = 0x00; /* 10th byte 0: 2^63 - 1 in ten bytes */
    assert_int_equal(decode_exact(ten_zero, 10, &v, &used), VARINT_OK);
    assert_int_equal(v, (1ULL << 63) - 1);
    assert_int_equal(used, 10);
}

/* Random values of every bit width round-trip. */
static void test_random(void **state)
{
    (void)state;
    uint64_t s = 0x243f6a8885a308d3ULL;
    for (int i = 0; i < 200000; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = (s * 0x2545F4914F6CDD1DULL) >> (i % 64);
        size_t want = 1;
        for (uint64_t t = v; t >= 0x80; t >>= 7)
            want++;
        uint8_t b[VARINT_MAX_LEN];
        size_t n = varint_encode(b, v);
        assert_int_equal(n, want);
        assert_int_equal(varint_size(v), n);
        uint64_t got;
        size_t used;
        assert_int_equal(varint_decode(b, n, &got, &used), VARINT_OK);
        assert_int_equal(got, v);
        assert_int_equal(used, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundaries),    cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_need_more),     cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_non_canonical), cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
