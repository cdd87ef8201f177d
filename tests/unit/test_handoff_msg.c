/*
 * test_handoff_msg: the upgrade handoff messages (proxy/handoff_msg.c):
 * every type round-trips, the bytes on the wire are the documented ones,
 * prefixes need more, and each malformation is refused as it arrives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "proxy/handoff_msg.h"

/* Parses from an exact-size heap copy, so a read past len shows under ASan. */
static int parse_exact(const uint8_t *p, size_t len, struct handoff_msg *m, size_t *used)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, p, len);
    int rc = handoff_msg_parse(copy, len, m, used);
    free(copy);
    return rc;
}

static void roundtrip(const struct handoff_msg *m, struct buf *out)
{
    out->len = 0;
    assert_int_equal(handoff_msg_encode(out, m), 0);
    struct handoff_msg got;
    size_t used = 0;
    assert_int_equal(handoff_msg_parse(out->data, out->len, &got, &used), 0);
    assert_int_equal(used, out->len);
    assert_int_equal(got.type, m->type);
    assert_int_equal(got.pid, m->pid);
    assert_int_equal(got.text_len, m->text_len);
    if (m->text_len)
        assert_memory_equal(got.text, m->text, m->text_len);
    assert_int_equal(got.path_len, m->path_len);
    if (m->path_len)
        assert_memory_equal(got.path, m->path, m->path_len);
    assert_int_equal(got.n_listen, m->n_listen);
    assert_int_equal(got.flags, m->flags);
    assert_int_equal(got.last_sid, m->last_sid);
    assert_int_equal(got.read_sid, m->read_sid);
    assert_int_equal(got.client_id, m->client_id);
    assert_int_equal(got.pending_len, m->pending_len);
    if (m->pending_len)
        assert_memory_equal(got.pending, m->pending, m->pending_len);
    for (size_t k = 0; k < out->len; k++)
        assert_int_equal(parse_exact(out->data, k, &got, &used), HANDOFF_MSG_NEED_MORE);
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct buf b = {0};
    const char *path = "/etc/drpc-sidecar/config.json";
    struct handoff_msg hello = {
        .type = HANDOFF_HELLO, .pid = 4242, .text = path, .text_len = strlen(path)};
    roundtrip(&hello, &b);
    struct handoff_msg welcome = {.type = HANDOFF_WELCOME, .pid = 7, .n_listen = 2};
    roundtrip(&welcome, &b);
    struct handoff_msg listen = {.type = HANDOFF_LISTEN,
                                 .text = "local",
                                 .text_len = 5,
                                 .path = "/run/s.sock",
                                 .path_len = 11};
    roundtrip(&listen, &b);
    struct handoff_msg refuse = {.type = HANDOFF_REFUSE, .text = "busy", .text_len = 4};
    roundtrip(&refuse, &b);
    struct handoff_msg refuse0 = {.type = HANDOFF_REFUSE};
    roundtrip(&refuse0, &b);
    const uint8_t pending[] = {0x03, 0x05, 0x01, 0x02, 'a', 'b'};
    struct handoff_msg conn = {.type = HANDOFF_CONN,
                               .flags = HANDOFF_CONN_PREFIX,
                               .text = "local",
                               .text_len = 5,
                               .last_sid = 3,
                               .read_sid = 5,
                               .client_id = 99,
                               .pending = pending,
                               .pending_len = sizeof(pending)};
    roundtrip(&conn, &b);
    conn.pending_len = 0;
    conn.flags = 0;
    roundtrip(&conn, &b);
    buf_free(&b);
}

static void test_exact_bytes(void **state)
{
    (void)state;
    struct buf b = {0};
    struct handoff_msg conn = {.type = HANDOFF_CONN,
                               .text = "l",
                               .text_len = 1,
                               .last_sid = 1,
                               .read_sid = 2,
                               .client_id = 3,
                               .pending = (const uint8_t *)"x",
                               .pending_len = 1};
    assert_int_equal(handoff_msg_encode(&b, &conn), 0);
    const uint8_t want[] = {'D', 'S', 'H', 'O', 1, 4, 0, 0, 0, 0, 0, 32, /* header */
                            0,   1,   'l', 0,   0, 0, 0, 0, 0, 0, 1, 0,  0, 0, 0, 0,
                            0,   0,   2,   0,   0, 0, 0, 0, 0, 0, 3, 0,  0, 0, 1, 'x'};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    buf_free(&b);
}

static void expect_bad(const uint8_t *p, size_t len)
{
    struct handoff_msg m;
    size_t used;
    assert_int_equal(parse_exact(p, len, &m, &used), UV_EPROTO);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_bad((const uint8_t *)"GET / HTTP/1.1", 14);
    expect_bad((const uint8_t *)"DSHX", 4);             /* magic, judged early */
    expect_bad((const uint8_t *)"DSHO\x02", 5);         /* version */
    expect_bad((const uint8_t *)"DSHO\x01\x09", 6);     /* type */
    expect_bad((const uint8_t *)"DSHO\x01\x02\x01", 7); /* reserved */
    /* a body over the limit, refused before it arrives */
    expect_bad((const uint8_t *)"DSHO\x01\x04\x00\x00\x7f\xff\xff\xff", 12);
    /* WELCOME with a body longer than its pid */
    expect_bad((const uint8_t *)"DSHO\x01\x02\x00\x00\x00\x00\x00\x05\x00\x00\x00\x01\x00", 17);
    /* HELLO whose path runs past the body */
    expect_bad((const uint8_t *)"DSHO\x01\x01\x00\x00\x00\x00\x00\x07\x00\x00\x00\x01\x00\x05/",
               19);
    /* HELLO with an empty path, and one with a NUL in it */
    expect_bad((const uint8_t *)"DSHO\x01\x01\x00\x00\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00", 18);
    expect_bad((const uint8_t *)"DSHO\x01\x01\x00\x00\x00\x00\x00\x08\x00\x00\x00\x01\x00\x02/\x00",
               20);
    /* CONN whose last stream is above the highest read, and unknown flags */
    struct buf b = {0};
    struct handoff_msg conn = {
        .type = HANDOFF_CONN, .text = "l", .text_len = 1, .last_sid = 2, .read_sid = 2};
    assert_int_equal(handoff_msg_encode(&b, &conn), 0);
    b.data[15 + 7] = 3; /* last_sid's low byte: 3 > read_sid 2 */
    expect_bad(b.data, b.len);
    b.data[15 + 7] = 2;
    b.data[12] = 0x02; /* flags */
    expect_bad(b.data, b.len);
    /* and the encoder refuses what the parser would */
    conn.last_sid = 5;
    size_t before = b.len;
    assert_int_equal(handoff_msg_encode(&b, &conn), UV_EINVAL);
    assert_int_equal(b.len, before);
    buf_free(&b);
}

static void test_stream_of_messages(void **state)
{
    (void)state;
    struct buf b = {0};
    struct handoff_msg w = {.type = HANDOFF_WELCOME, .pid = 1};
    struct handoff_msg c = {.type = HANDOFF_CONN, .text = "a", .text_len = 1};
    assert_int_equal(handoff_msg_encode(&b, &w), 0);
    assert_int_equal(handoff_msg_encode(&b, &c), 0);
    assert_int_equal(handoff_msg_encode(&b, &c), 0);
    size_t off = 0, n = 0, used;
    struct handoff_msg m;
    while (handoff_msg_parse(b.data + off, b.len - off, &m, &used) == 0) {
        off += used;
        n++;
    }
    assert_int_equal(n, 3);
    assert_int_equal(off, b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_stream_of_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
