/*
 * Unit tests for the life of a call (proxy/call.c, with client.c and
 * upstream.c around it) on a real loop: how each packet ends a call, how
 * stream and message ids are rewritten, late packets of finished streams,
 * and soft and hard cancel. The scripted client and upstream see what a
 * real peer would (tests/unit/core_harness.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/core_harness.h"

#define T 1000 /* ms: how long a test waits for something that must happen */

/* cl opens a stream ("/svc/S") on client stream sid: an Invoke (message
 * id 1) and a first message "go" (id 2), which starts the call (it takes
 * an upstream connection once its request flows). */
static void send_open(struct h_peer *cl, uint64_t sid)
{
    h_send(cl, FRAME_KIND_INVOKE, sid, 1, "/svc/S");
    h_send(cl, FRAME_KIND_MESSAGE, sid, 2, "go");
}

/* The upstream sees the stream send_open opened, on its stream up_sid. */
static void expect_open(struct h_peer *up, uint64_t up_sid)
{
    assert_string_equal(h_expect(up, FRAME_KIND_INVOKE, up_sid, T), "/svc/S");
    assert_string_equal(h_expect(up, FRAME_KIND_MESSAGE, up_sid, T), "go");
}

/* Starts a sidecar with pool options, its endpoint listening; *cl opens a
 * stream on client stream sid (send_open). Returns the upstream connection,
 * which has seen the stream open on its stream 1. */
static struct h_peer *start_stream(struct h_env *e, const char *pool_opts, struct h_peer **cl,
                                   uint64_t sid)
{
    h_start(e, 1, pool_opts, "");
    h_upstream_listen(e, 0);
    *cl = h_client_new(e);
    send_open(*cl, sid);
    struct h_peer *up = h_upstream_peer(e, 0, 0, T);
    expect_open(up, 1);
    return up;
}

/* The call on cl is over and its connection went back idle (clean):
 * nothing more reached the upstream, and it was not closed. */
static void ended_clean(struct h_env *e, struct h_peer *cl, struct h_peer *up)
{
    assert_true(H_UNTIL(e, T, !h_client_in_call(cl)));
    assert_true(H_UNTIL(e, T, h_pool_idle(h_pool(e)) == 1));
    assert_true(h_peer_quiet(up, 20));
}

/* A unary call ends when both sides sent CloseSend. Stream ids are the
 * connection's own on each side; message ids toward the upstream are
 * renumbered per stream, those toward the client are the upstream's. */
static void test_unary_ids_rewritten(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "", "");
    h_upstream_listen(&e, 0);
    struct h_peer *cl = h_client_new(&e);

    h_send(cl, FRAME_KIND_INVOKE, 7, 1, "/svc/M");
    h_send(cl, FRAME_KIND_MESSAGE, 7, 5, "req");
    h_send(cl, FRAME_KIND_CLOSE_SEND, 7, 9, NULL);
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    struct h_frame f;
    const uint8_t kinds[] = {FRAME_KIND_INVOKE, FRAME_KIND_MESSAGE, FRAME_KIND_CLOSE_SEND};
    for (size_t i = 0; i < 3; i++) {
        assert_true(h_peer_frame(up, &f, T));
        assert_int_equal(f.kind, kinds[i]);
        assert_int_equal(f.sid, 1);
        assert_int_equal(f.mid, i + 1);
    }
    h_send(up, FRAME_KIND_MESSAGE, 1, 4, "rep");
    assert_true(h_client_in_call(cl)); /* one CloseSend is not the end */
    h_send(up, FRAME_KIND_CLOSE_SEND, 1, 6, NULL);
    assert_true(h_peer_frame(cl, &f, T));
    assert_int_equal(f.kind, FRAME_KIND_MESSAGE);
    assert_int_equal(f.sid, 7);
    assert_int_equal(f.mid, 4);
    assert_string_equal((const char *)f.data, "rep");
    assert_true(h_peer_frame(cl, &f, T));
    assert_int_equal(f.kind, FRAME_KIND_CLOSE_SEND);
    assert_int_equal(f.sid, 7);
    assert_int_equal(f.mid, 6);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_ok(h_pool(&e)), 1);

    /* The next stream of the client (9) is the connection's stream 2. */
    h_send_unary(cl, 9, "/svc/M", "again");
    h_serve_unary(up, 2, NULL, 0, "rep2");
    h_expect_unary_reply(cl, 9, "rep2");
    assert_int_equal(h_upstream_accepted(&e, 0), 1);
    assert_int_equal(h_finish(&e), 0);
}

/* A stream stays open after one side's CloseSend: the other side's
 * messages still flow, and the second CloseSend ends it. */
static void test_stream_half_close(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 1);

    /* The client finishes sending first. */
    h_send(cl, FRAME_KIND_MESSAGE, 1, 3, "a");
    h_send(cl, FRAME_KIND_MESSAGE, 1, 4, "b");
    h_send(cl, FRAME_KIND_CLOSE_SEND, 1, 5, NULL);
    assert_string_equal(h_expect(up, FRAME_KIND_MESSAGE, 1, T), "a");
    assert_string_equal(h_expect(up, FRAME_KIND_MESSAGE, 1, T), "b");
    h_expect(up, FRAME_KIND_CLOSE_SEND, 1, T);
    for (int i = 0; i < 3; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "r%d", i);
        h_send(up, FRAME_KIND_MESSAGE, 1, (uint64_t)i + 1, msg);
        assert_string_equal(h_expect(cl, FRAME_KIND_MESSAGE, 1, T), msg);
    }
    assert_true(h_client_in_call(cl));
    h_send(up, FRAME_KIND_CLOSE_SEND, 1, 4, NULL);
    h_expect(cl, FRAME_KIND_CLOSE_SEND, 1, T);
    ended_clean(&e, cl, up);

    /* The upstream finishes sending first. */
    send_open(cl, 2);
    expect_open(up, 2);
    h_send(up, FRAME_KIND_CLOSE_SEND, 2, 1, NULL);
    h_expect(cl, FRAME_KIND_CLOSE_SEND, 2, T);
    h_send(cl, FRAME_KIND_MESSAGE, 2, 3, "late but legal");
    assert_string_equal(h_expect(up, FRAME_KIND_MESSAGE, 2, T), "late but legal");
    assert_true(h_client_in_call(cl));
    h_send(cl, FRAME_KIND_CLOSE_SEND, 2, 4, NULL);
    h_expect(up, FRAME_KIND_CLOSE_SEND, 2, T);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_ok(h_pool(&e)), 2);
    assert_int_equal(h_finish(&e), 0);
}

/* Close from the upstream ends the call at once, clean. */
static void test_upstream_close_ends(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 1);
    h_send(up, FRAME_KIND_MESSAGE, 1, 1, "x");
    h_send(up, FRAME_KIND_CLOSE, 1, 2, NULL);
    assert_string_equal(h_expect(cl, FRAME_KIND_MESSAGE, 1, T), "x");
    h_expect(cl, FRAME_KIND_CLOSE, 1, T);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_ok(h_pool(&e)), 1);
    assert_int_equal(h_finish(&e), 0);
}

/* An Error from the upstream reaches the client as it was sent and ends
 * the call as an application error; the connection stays clean. */
static void test_upstream_error_ends(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 3);
    h_send_error(up, 1, 1, 42, "boom");
    assert_int_equal(h_expect_error(cl, 3, T), 42);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_app_error(h_pool(&e)), 1);

    /* The client's next stream uses the same connection. */
    h_send_unary(cl, 5, "/svc/M", "req");
    h_serve_unary(up, 2, NULL, 0, "rep");
    h_expect_unary_reply(cl, 5, "rep");
    assert_int_equal(h_upstream_accepted(&e, 0), 1);
    assert_int_equal(h_finish(&e), 0);
}

/* The upstream answers a message on its stream usid; the client gets it
 * on csid. A connection is reused only after its peer answered. */
static void answer_first(struct h_peer *up, uint64_t usid, struct h_peer *cl, uint64_t csid)
{
    h_send(up, FRAME_KIND_MESSAGE, usid, 1, "first");
    assert_string_equal(h_expect(cl, FRAME_KIND_MESSAGE, csid, T), "first");
}

/* Cancel, Error and Close packets from the client are passed on and end
 * the call; between whole packets, once the upstream has answered, the
 * connection stays clean. */
static void test_client_cancel_error_close(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 1);

    answer_first(up, 1, cl, 1);
    h_send(cl, FRAME_KIND_CANCEL, 1, 3, NULL);
    h_expect(up, FRAME_KIND_CANCEL, 1, T);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_cancelled(h_pool(&e)), 1);

    send_open(cl, 2);
    expect_open(up, 2);
    answer_first(up, 2, cl, 2);
    h_send_error(cl, 2, 3, 7, "client gave up");
    assert_int_equal(h_expect_error(up, 2, T), 7);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_cancelled(h_pool(&e)), 2);

    send_open(cl, 3);
    expect_open(up, 3);
    answer_first(up, 3, cl, 3);
    h_send(cl, FRAME_KIND_CLOSE, 3, 3, NULL);
    h_expect(up, FRAME_KIND_CLOSE, 3, T);
    ended_clean(&e, cl, up);
    assert_true(h_peer_quiet(cl, 1)); /* the client was told nothing */
    assert_int_equal(h_upstream_accepted(&e, 0), 1);
    assert_int_equal(h_finish(&e), 0);
}

/* A call that ends before its upstream sent anything (a Cancel from the
 * client, a client that left) costs the connection: a peer that never
 * answered would hold the next call the same way. */
static void test_silent_upstream_not_reused(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 1);
    h_send(cl, FRAME_KIND_CANCEL, 1, 3, NULL);
    assert_true(h_peer_wait_eof(up, T)); /* closed: what was queued for it goes too */
    assert_true(H_UNTIL(&e, T, h_pool_total(h_pool(&e)) == 0));

    send_open(cl, 2);
    struct h_peer *up2 = h_upstream_peer(&e, 0, 1, T);
    expect_open(up2, 1);
    h_peer_close(cl);
    assert_true(h_peer_wait_eof(up2, T));
    assert_int_equal(up2->in.len, 0); /* closed, no soft Cancel first */
    assert_int_equal(h_upstream_accepted(&e, 0), 2);
    assert_int_equal(h_finish(&e), 0);
}

/* Packets of a finished stream are late: dropped both ways, and neither
 * connection suffers. A frame for a stream the sidecar never opened
 * breaks the protocol and closes the upstream connection. */
static void test_late_packets(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 1);
    h_send(up, FRAME_KIND_CLOSE, 1, 1, NULL);
    h_expect(cl, FRAME_KIND_CLOSE, 1, T);
    ended_clean(&e, cl, up);

    h_send(up, FRAME_KIND_MESSAGE, 1, 2, "late reply");
    h_send(cl, FRAME_KIND_MESSAGE, 1, 2, "late request");
    h_send(cl, FRAME_KIND_CLOSE_SEND, 1, 3, NULL);
    assert_true(h_peer_quiet(cl, 30));
    assert_true(h_peer_quiet(up, 1));
    assert_int_equal(h_pool_idle(h_pool(&e)), 1);

    /* Both go on with the next stream. */
    h_send_unary(cl, 2, "/svc/M", "req");
    h_serve_unary(up, 2, NULL, 0, "rep");
    h_expect_unary_reply(cl, 2, "rep");
    assert_true(H_UNTIL(&e, T, h_pool_idle(h_pool(&e)) == 1));

    h_send(up, FRAME_KIND_MESSAGE, 9, 1, "never opened");
    assert_true(h_peer_wait_eof(up, T));
    assert_int_equal(h_pool_total(h_pool(&e)), 0);
    assert_int_equal(h_finish(&e), 0);
}

/* Soft cancel (the default): a client that goes away between packets,
 * once the upstream has answered, costs a control Cancel on the upstream
 * stream, and the connection is kept; one that goes away mid-packet costs
 * the connection. A control Cancel from the client (SoftCancel) does the
 * same as going away. */
static void test_soft_cancel(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 1);
    struct h_frame f;

    answer_first(up, 1, cl, 1);
    h_peer_close(cl);
    assert_true(h_peer_frame(up, &f, T));
    assert_int_equal(f.kind, FRAME_KIND_CANCEL);
    assert_true(f.control);
    assert_int_equal(f.sid, 1);
    assert_true(H_UNTIL(&e, T, h_pool_idle(h_pool(&e)) == 1));
    assert_true(h_peer_quiet(up, 20));

    /* A control Cancel from the client. */
    struct h_peer *cl2 = h_client_new(&e);
    send_open(cl2, 1);
    expect_open(up, 2);
    answer_first(up, 2, cl2, 1);
    h_send_frame(cl2, FRAME_KIND_CANCEL, true, true, 1, 3, NULL, 0);
    assert_true(h_peer_frame(up, &f, T));
    assert_int_equal(f.kind, FRAME_KIND_CANCEL);
    assert_true(f.control);
    assert_int_equal(f.sid, 2);
    ended_clean(&e, cl2, up);
    assert_int_equal(h_pool_calls_cancelled(h_pool(&e)), 2);

    /* Mid-packet: the connection goes. */
    send_open(cl2, 2);
    expect_open(up, 3);
    h_send_frame(cl2, FRAME_KIND_MESSAGE, false, false, 2, 3, "half", 4);
    assert_string_equal(h_expect(up, FRAME_KIND_MESSAGE, 3, T), "half");
    h_peer_close(cl2);
    assert_true(h_peer_wait_eof(up, T));
    assert_int_equal(h_pool_total(h_pool(&e)), 0);
    assert_int_equal(h_upstream_accepted(&e, 0), 1);
    assert_int_equal(h_finish(&e), 0);
}

/* Hard cancel ("cancel": "close"): a client that goes away costs the
 * connection, with nothing sent on it. */
static void test_hard_cancel(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "\"cancel\": \"close\"", &cl, 1);
    h_peer_close(cl);
    assert_true(h_peer_wait_eof(up, T));
    assert_int_equal(up->in.len, 0); /* no Cancel came before the close */
    assert_int_equal(h_pool_total(h_pool(&e)), 0);
    assert_int_equal(h_finish(&e), 0);
}

/* A control Cancel from the upstream (its SoftCancel) ends the stream for
 * both: the client gets it on its own stream id. */
static void test_upstream_soft_cancel(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_stream(&e, "", &cl, 4);
    h_send_frame(up, FRAME_KIND_CANCEL, true, true, 1, 1, NULL, 0);
    struct h_frame f;
    assert_true(h_peer_frame(cl, &f, T));
    assert_int_equal(f.kind, FRAME_KIND_CANCEL);
    assert_true(f.control);
    assert_int_equal(f.sid, 4);
    ended_clean(&e, cl, up);
    assert_int_equal(h_pool_calls_cancelled(h_pool(&e)), 1);
    assert_int_equal(h_finish(&e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_ids_rewritten),
        cmocka_unit_test(test_stream_half_close),
        cmocka_unit_test(test_upstream_close_ends),
        cmocka_unit_test(test_upstream_error_ends),
        cmocka_unit_test(test_client_cancel_error_close),
        cmocka_unit_test(test_silent_upstream_not_reused),
        cmocka_unit_test(test_late_packets),
        cmocka_unit_test(test_soft_cancel),
        cmocka_unit_test(test_hard_cancel),
        cmocka_unit_test(test_upstream_soft_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
