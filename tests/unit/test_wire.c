/*
 * Unit tests for the wire (proxy/wire.c) as a call uses it, on a real
 * loop: back-pressure (past call_buffer_bytes queued toward a slow client
 * the sidecar stops reading the upstream, and resumes once the client
 * drains), one write in flight per connection, and the deferred flush
 * that sends the frames of one read in one write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "tests/unit/core_harness.h"

#define T     1000 /* ms: how long a test waits for something that must happen */
#define CHUNK (16 * 1024)

/* n Message packets of CHUNK bytes on stream 1, message ids 1..n; the
 * bytes of packet i are all (uint8_t)i. */
static void make_replies(struct buf *b, size_t n)
{
    uint8_t *data = malloc(CHUNK);
    assert_non_null(data);
    for (size_t i = 1; i <= n; i++) {
        memset(data, (int)(uint8_t)i, CHUNK);
        assert_int_equal(frame_append(b, FRAME_KIND_MESSAGE, true, false, 1, i, data, CHUNK), 0);
    }
    free(data);
}

/* Writes what the upstream socket takes until it takes nothing for ms. */
static size_t pump_until_stalled(struct h_env *e, struct h_peer *up, const struct buf *b,
                                 size_t written, uint64_t ms)
{
    uint64_t last = h_now(e);
    while (written < b->len && h_now(e) - last < ms) {
        size_t n = h_send_some(up, b->data + written, b->len - written);
        if (n) {
            written += n;
            last = h_now(e);
        }
        h_step(e);
    }
    return written;
}

/* Reads all n packets on the client, in order and intact, writing the
 * rest of b upstream meanwhile. */
static void receive_all(struct h_env *e, struct h_peer *cl, struct h_peer *up, const struct buf *b,
                        size_t written, size_t n)
{
    uint64_t deadline = h_now(e) + 5000;
    for (size_t got = 0; got < n;) {
        assert_true(h_now(e) < deadline);
        written += h_send_some(up, b->data + written, b->len - written);
        struct h_frame f;
        if (!h_peer_frame(cl, &f, 2))
            continue;
        if (f.len == 0) {
            /* A frame the sidecar passed on in pieces ends with an empty
             * frame that carries its done bit (call.c forward_down). */
            assert_true(f.done);
            assert_int_equal(f.mid, got);
            continue;
        }
        got++;
        assert_int_equal(f.kind, FRAME_KIND_MESSAGE);
        assert_int_equal(f.sid, 1);
        assert_int_equal(f.mid, got);
        assert_int_equal(f.len, CHUNK);
        assert_int_equal(f.data[0], (uint8_t)got);
        assert_int_equal(f.data[CHUNK - 1], (uint8_t)got);
    }
    assert_int_equal(written, b->len);
}

/* Starts a sidecar (top-level options top_opts) and a stream from a
 * client; returns the upstream connection that carries it. */
static struct h_peer *start_stream(struct h_env *e, const char *top_opts, struct h_peer **cl)
{
    h_start(e, 1, "", top_opts);
    h_upstream_listen(e, 0);
    *cl = h_client_new(e);
    h_send(*cl, FRAME_KIND_INVOKE, 1, 1, "/svc/Download");
    h_send(*cl, FRAME_KIND_CLOSE_SEND, 1, 2, NULL); /* the request flows: a connection */
    struct h_peer *up = h_upstream_peer(e, 0, 0, T);
    h_expect(up, FRAME_KIND_INVOKE, 1, T);
    h_expect(up, FRAME_KIND_CLOSE_SEND, 1, T);
    return up;
}

/*
 * Past call_buffer_bytes queued toward a client that does not read, the
 * sidecar stops reading the upstream: what it holds stays bounded and the
 * upstream's socket fills. Once the client reads, reading resumes and
 * every byte arrives, in order.
 */
static void test_backpressure_stops_and_resumes(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "\"call_buffer_bytes\": 65536", &cl);
    h_peer_pause(cl, true);

    const size_t n = 256; /* 4 MiB: more than both sockets hold */
    struct buf b = {0};
    make_replies(&b, n);
    size_t written = pump_until_stalled(&e, up, &b, 0, 200);
    assert_true(written < b.len); /* the sidecar stopped taking bytes */
    assert_false(h_call_upstream_reading(cl));
    size_t queued = h_client_queued(cl);
    /* Stopped above the mark, it resumes only below a quarter of it. */
    assert_true(queued > 65536 / 4);
    assert_true(queued <= 65536 + 2 * 64 * 1024 + 64);
    uint64_t in = h_call_upstream_bytes_in(cl);
    h_sleep(&e, 30);
    assert_int_equal(h_call_upstream_bytes_in(cl), in); /* it stays stopped */
    assert_int_equal(h_client_queued(cl), queued);

    h_peer_pause(cl, false);
    receive_all(&e, cl, up, &b, written, n);
    assert_true(H_UNTIL(&e, T, h_call_upstream_reading(cl)));
    assert_int_equal(h_client_queued(cl), 0);
    buf_free(&b);
    assert_int_equal(h_finish(&e), 0);
}

/*
 * A connection has at most one write in flight: frames that come while a
 * write is blocked wait behind it and go out after it, in order.
 */
static void test_one_write_in_flight(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl); /* call_buffer_bytes: 1 MiB */
    h_peer_pause(cl, true);
    assert_int_equal(h_loop_writes_in_flight(&e), 0);

    const size_t n = 48; /* 768 KiB: more than the client socket holds */
    struct buf b = {0};
    make_replies(&b, n);
    size_t written = 0;
    bool blocked = false;
    for (size_t i = 0; i < n; i++) { /* one read per packet, one flush each */
        size_t end = written + CHUNK + 16;
        if (end > b.len)
            end = b.len;
        while (written < end) {
            size_t k = h_send_some(up, b.data + written, end - written);
            written += k;
            if (!k)
                h_step(&e);
        }
        h_sleep(&e, 1);
        assert_true(h_loop_writes_in_flight(&e) <= 1);
        blocked = blocked || h_client_writing(cl);
    }
    assert_true(blocked); /* the client socket did fill */
    assert_int_equal(h_loop_writes_in_flight(&e), 1);
    assert_true(h_call_upstream_reading(cl)); /* below call_buffer_bytes */

    h_peer_pause(cl, false);
    receive_all(&e, cl, up, &b, written, n);
    assert_true(H_UNTIL(&e, T, h_loop_writes_in_flight(&e) == 0));
    buf_free(&b);
    assert_int_equal(h_finish(&e), 0);
}

/*
 * The frames of one read leave in one write: over a packet socket, where
 * each write is one message, a client gets the ten replies an upstream
 * sent together in one read.
 */
static void test_flush_coalesces_one_read(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "", "");
    h_upstream_listen(&e, 0);
    struct h_peer *cl = h_client_new_type(&e, SOCK_SEQPACKET);
    h_send(cl, FRAME_KIND_INVOKE, 1, 1, "/svc/Download");
    h_send(cl, FRAME_KIND_CLOSE_SEND, 1, 2, NULL);
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    h_expect(up, FRAME_KIND_INVOKE, 1, T);
    h_expect(up, FRAME_KIND_CLOSE_SEND, 1, T);

    struct buf b = {0};
    for (uint64_t i = 1; i <= 10; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "m%llu", (unsigned long long)i);
        assert_int_equal(frame_append(&b, FRAME_KIND_MESSAGE, true, false, 1, i, msg, strlen(msg)),
                         0);
    }
    size_t reads = cl->reads;
    h_send_raw(up, b.data, b.len);
    for (uint64_t i = 1; i <= 10; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "m%llu", (unsigned long long)i);
        assert_string_equal(h_expect(cl, FRAME_KIND_MESSAGE, 1, T), msg);
    }
    assert_int_equal(cl->reads - reads, 1);
    buf_free(&b);
    assert_int_equal(h_finish(&e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backpressure_stops_and_resumes),
        cmocka_unit_test(test_one_write_in_flight),
        cmocka_unit_test(test_flush_coalesces_one_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
