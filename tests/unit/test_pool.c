/*
 * Unit tests for the pool (proxy/pool.c) on a real loop: scripted clients
 * over socketpairs, scripted upstream servers on unix sockets, the real
 * sidecar in between (tests/unit/core_harness.h). Each test states the
 * rule it holds the pool to.
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

/* One unary call from cl on sid, served by up on up_sid. */
static void unary(struct h_peer *cl, uint64_t sid, struct h_peer *up, uint64_t up_sid)
{
    h_send_unary(cl, sid, "/svc/M", "req");
    h_serve_unary(up, up_sid, NULL, 0, "rep");
    h_expect_unary_reply(cl, sid, "rep");
}

/* cl opens a call that holds its connection until the upstream ends it:
 * Invoke and CloseSend (a call takes a connection once its request flows). */
static void send_hold(struct h_peer *cl, uint64_t sid, const char *rpc)
{
    h_send(cl, FRAME_KIND_INVOKE, sid, 1, rpc);
    h_send(cl, FRAME_KIND_CLOSE_SEND, sid, 2, NULL);
}

/* The upstream sees a call send_hold opened, on its stream up_sid. */
static void expect_hold(struct h_peer *up, uint64_t up_sid)
{
    h_expect(up, FRAME_KIND_INVOKE, up_sid, T);
    h_expect(up, FRAME_KIND_CLOSE_SEND, up_sid, T);
}

/* Starts a sidecar whose one endpoint listens; client *a opens a call
 * ("/svc/Hold", stream 1) that holds a connection. Returns its upstream. */
static struct h_peer *start_holding(struct h_env *e, const char *pool_opts, struct h_peer **a)
{
    h_start(e, 1, pool_opts, "");
    h_upstream_listen(e, 0);
    *a = h_client_new(e);
    send_hold(*a, 1, "/svc/Hold");
    struct h_peer *up = h_upstream_peer(e, 0, 0, T);
    expect_hold(up, 1);
    return up;
}

/* Starts a sidecar whose one endpoint listens; client *cl makes one unary
 * call (stream 1) over the connection it returns, now idle. */
static struct h_peer *start_served(struct h_env *e, const char *pool_opts, struct h_peer **cl)
{
    h_start(e, 1, pool_opts, "");
    h_upstream_listen(e, 0);
    *cl = h_client_new(e);
    h_send_unary(*cl, 1, "/svc/M", "req");
    struct h_peer *up = h_upstream_peer(e, 0, 0, T);
    h_serve_unary(up, 1, NULL, 0, "rep");
    h_expect_unary_reply(*cl, 1, "rep");
    assert_true(H_UNTIL(e, T, h_pool_idle(h_pool(e)) == 1));
    return up;
}

/* A call checks out an idle connection; released clean, it serves the next. */
static void test_checkout_and_clean_release(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "", "");
    h_upstream_listen(&e, 0);
    struct pool *p = h_pool(&e);
    struct h_peer *cl = h_client_new(&e);

    h_send_unary(cl, 1, "/svc/M", "req");
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    assert_true(H_UNTIL(&e, T, h_pool_busy(p) == 1));
    assert_int_equal(h_pool_idle(p), 0);
    h_serve_unary(up, 1, NULL, 0, "rep");
    h_expect_unary_reply(cl, 1, "rep");
    assert_true(H_UNTIL(&e, T, h_pool_idle(p) == 1));
    assert_int_equal(h_pool_busy(p), 0);

    /* The next call, from another client too, reuses it: no new dial. */
    struct h_peer *cl2 = h_client_new(&e);
    unary(cl, 3, up, 2);
    unary(cl2, 1, up, 3);
    assert_int_equal(h_upstream_accepted(&e, 0), 1);
    assert_int_equal(h_pool_dials(p), 1);
    assert_int_equal(h_pool_calls_ok(p), 3);
    assert_true(h_peer_quiet(up, 20)); /* nothing else was sent */
    assert_int_equal(h_finish(&e), 0);
}

/* A connection whose call ended mid-packet is closed, never parked idle. */
static void test_dirty_release_closes(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "", "");
    h_upstream_listen(&e, 0);
    struct pool *p = h_pool(&e);
    struct h_peer *cl = h_client_new(&e);

    h_send(cl, FRAME_KIND_INVOKE, 1, 1, "/svc/Stream");
    h_send(cl, FRAME_KIND_MESSAGE, 1, 2, "go"); /* the call takes a connection */
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    h_expect(up, FRAME_KIND_INVOKE, 1, T);
    h_expect(up, FRAME_KIND_MESSAGE, 1, T);
    /* The upstream sends the first frame of a packet, then the client cancels. */
    h_send_frame(up, FRAME_KIND_MESSAGE, false, false, 1, 1, "part", 4);
    h_expect(cl, FRAME_KIND_MESSAGE, 1, T);
    h_send(cl, FRAME_KIND_CANCEL, 1, 3, NULL);
    assert_true(h_peer_wait_eof(up, T));
    assert_int_equal(h_pool_idle(p), 0);
    assert_int_equal(h_pool_total(p), 0);

    /* The next call gets a new connection. */
    h_send_unary(cl, 2, "/svc/M", "req");
    struct h_peer *up2 = h_upstream_peer(&e, 0, 1, T);
    h_serve_unary(up2, 1, NULL, 0, "rep");
    h_expect_unary_reply(cl, 2, "rep");
    assert_int_equal(h_finish(&e), 0);
}

/* Calls waiting for a connection get one in the order they came. */
static void test_waiters_fifo(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "\"max_conns\": 1", "");
    h_upstream_listen(&e, 0);
    struct pool *p = h_pool(&e);
    struct h_peer *a = h_client_new(&e);
    h_send_unary(a, 1, "/svc/A", "req");
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    char rpc[64];
    h_serve_unary(up, 1, rpc, sizeof(rpc), "held");
    assert_string_equal(rpc, "/svc/A");
    h_expect_unary_reply(a, 1, "held");
    assert_true(H_UNTIL(&e, T, h_pool_idle(p) == 1));

    /* A holds the connection with a second call; B, C, D queue in order. */
    send_hold(a, 2, "/svc/A2");
    expect_hold(up, 2);
    const char *names[] = {"/svc/B", "/svc/C", "/svc/D"};
    struct h_peer *w[3];
    for (size_t i = 0; i < 3; i++) {
        w[i] = h_client_new(&e);
        h_send_unary(w[i], 1, names[i], "req");
        assert_true(H_UNTIL(&e, T, h_pool_waiters(p) == i + 1));
    }
    h_send(up, FRAME_KIND_CLOSE, 2, 1, NULL);
    h_expect(a, FRAME_KIND_CLOSE, 2, T);
    for (size_t i = 0; i < 3; i++) {
        h_serve_unary(up, 3 + i, rpc, sizeof(rpc), names[i]);
        assert_string_equal(rpc, names[i]);
        h_expect_unary_reply(w[i], 1, names[i]);
    }
    assert_int_equal(h_upstream_accepted(&e, 0), 1);
    assert_int_equal(h_finish(&e), 0);
}

/* The pool never opens more than max_conns; the rest of the calls wait. */
static void test_max_conns(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "\"max_conns\": 2", "");
    h_upstream_listen(&e, 0);
    struct pool *p = h_pool(&e);
    struct h_peer *c[3];
    for (size_t i = 0; i < 3; i++) {
        c[i] = h_client_new(&e);
        send_hold(c[i], 1, "/svc/Hold");
    }
    struct h_peer *u0 = h_upstream_peer(&e, 0, 0, T);
    struct h_peer *u1 = h_upstream_peer(&e, 0, 1, T);
    expect_hold(u0, 1);
    expect_hold(u1, 1);
    h_sleep(&e, 30);
    assert_int_equal(h_upstream_accepted(&e, 0), 2);
    assert_int_equal(h_pool_total(p), 2);
    assert_int_equal(h_pool_busy(p), 2);
    assert_int_equal(h_pool_waiters(p), 1);

    /* One call ends: the waiter gets that connection (stream 2 on it). */
    h_send(u0, FRAME_KIND_CLOSE, 1, 1, NULL);
    h_expect(u0, FRAME_KIND_INVOKE, 2, T);
    assert_int_equal(h_pool_waiters(p), 0);
    assert_int_equal(h_upstream_accepted(&e, 0), 2);
    assert_int_equal(h_finish(&e), 0);
}

/* Beyond max_waiters, a call fails at once with pool_exhausted (1002). */
static void test_max_waiters(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *a;
    struct h_peer *up = start_holding(&e, "\"max_conns\": 1, \"max_waiters\": 1", &a);
    struct pool *p = h_pool(&e);

    struct h_peer *b = h_client_new(&e);
    h_send_unary(b, 1, "/svc/B", "req");
    assert_true(H_UNTIL(&e, T, h_pool_waiters(p) == 1));
    struct h_peer *c = h_client_new(&e);
    h_send_unary(c, 1, "/svc/C", "req");
    assert_int_equal(h_expect_error(c, 1, T), 1002);
    assert_true(h_peer_quiet(b, 20)); /* B still waits, unharmed */
    assert_int_equal(h_pool_waiters(p), 1);

    /* A ends; B gets the connection. */
    h_send(up, FRAME_KIND_CLOSE, 1, 1, NULL);
    h_serve_unary(up, 2, NULL, 0, "rep");
    h_expect_unary_reply(b, 1, "rep");
    assert_int_equal(h_finish(&e), 0);
}

/* A call that waits longer than wait_timeout_ms fails with wait_timeout (1003). */
static void test_wait_timeout(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *a;
    struct h_peer *up = start_holding(&e, "\"max_conns\": 1, \"wait_timeout_ms\": 60", &a);
    struct pool *p = h_pool(&e);

    struct h_peer *b = h_client_new(&e);
    uint64_t t0 = h_now(&e);
    h_send_unary(b, 1, "/svc/B", "req");
    assert_int_equal(h_expect_error(b, 1, T), 1003);
    assert_true(h_now(&e) - t0 >= 55);
    assert_int_equal(h_pool_waiters(p), 0);
    /* The held call goes on. */
    h_send(up, FRAME_KIND_MESSAGE, 1, 1, "still here");
    assert_string_equal(h_expect(a, FRAME_KIND_MESSAGE, 1, T), "still here");
    assert_int_equal(h_finish(&e), 0);
}

/* The janitor keeps min_idle connections open without any call. */
static void test_min_idle(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "\"min_idle\": 2, \"max_conns\": 4", "");
    h_upstream_listen(&e, 0);
    struct pool *p = h_pool(&e);
    assert_true(H_UNTIL(&e, T, h_pool_idle(p) == 2));
    h_sleep(&e, 250); /* a few more janitor rounds: no more than min_idle */
    assert_int_equal(h_upstream_accepted(&e, 0), 2);
    assert_int_equal(h_pool_idle(p), 2);

    /* One is lost: the janitor dials a replacement. */
    h_peer_close(h_upstream_peer(&e, 0, 0, T));
    h_upstream_peer(&e, 0, 2, T);
    assert_true(H_UNTIL(&e, T, h_pool_idle(p) == 2));
    assert_int_equal(h_finish(&e), 0);
}

/* An idle connection is closed after idle_timeout_ms. */
static void test_idle_timeout(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_served(&e, "\"idle_timeout_ms\": 50", &cl);
    uint64_t idle_at = h_now(&e);
    struct pool *p = h_pool(&e);
    assert_true(h_peer_wait_eof(up, T));
    assert_true(h_now(&e) - idle_at >= 40);
    assert_int_equal(h_pool_total(p), 0);
    assert_int_equal(h_finish(&e), 0);
}

/* A connection older than max_lifetime_ms is closed when its call ends,
 * and an idle one by the janitor. */
static void test_max_lifetime(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1, "\"max_lifetime_ms\": 80", "");
    h_upstream_listen(&e, 0);
    struct pool *p = h_pool(&e);
    struct h_peer *cl = h_client_new(&e);

    /* Released after its lifetime: closed, not parked. */
    h_send_unary(cl, 1, "/svc/M", "req");
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    h_expect(up, FRAME_KIND_INVOKE, 1, T);
    h_sleep(&e, 100);
    h_expect(up, FRAME_KIND_MESSAGE, 1, T);
    h_expect(up, FRAME_KIND_CLOSE_SEND, 1, T);
    h_send(up, FRAME_KIND_MESSAGE, 1, 1, "rep");
    h_send(up, FRAME_KIND_CLOSE_SEND, 1, 2, NULL);
    h_expect_unary_reply(cl, 1, "rep");
    assert_int_equal(h_pool_total(p), 0); /* closed as it came back, not by the janitor */
    assert_true(h_peer_wait_eof(up, T));

    /* A young one is parked, then closed idle once it is too old. */
    h_send_unary(cl, 2, "/svc/M", "req");
    struct h_peer *up2 = h_upstream_peer(&e, 0, 1, T);
    uint64_t born = h_now(&e);
    h_serve_unary(up2, 1, NULL, 0, "rep");
    h_expect_unary_reply(cl, 2, "rep");
    assert_true(H_UNTIL(&e, T, h_pool_idle(p) == 1));
    assert_true(h_peer_wait_eof(up2, T));
    assert_true(h_now(&e) - born >= 50); /* not closed as it came back */
    assert_int_equal(h_pool_total(p), 0);
    assert_int_equal(h_finish(&e), 0);
}

/*
 * Failed dials back an endpoint off (dial_failed, 1005), and
 * eject_after_failures of them eject it (no_healthy_endpoint, 1004, at
 * once); a dial that connects readmits it at once.
 */
static void test_ejection_and_readmission(void **state)
{
    (void)state;
    struct h_env e;
    h_start(&e, 1,
            "\"eject_after_failures\": 2, \"eject_ms\": 60000, \"backoff_base_ms\": 1,"
            " \"backoff_max_ms\": 1",
            "");
    struct h_peer *cl = h_client_new(&e);
    h_send_unary(cl, 1, "/svc/M", "req");
    assert_int_equal(h_expect_error(cl, 1, T), 1005);
    assert_false(h_endpoint_ejected(&e, 0));
    h_sleep(&e, 5); /* past the back-off */
    h_send_unary(cl, 2, "/svc/M", "req");
    assert_int_equal(h_expect_error(cl, 2, T), 1004);
    assert_true(h_endpoint_ejected(&e, 0));
    uint64_t dials = h_pool_dials(h_pool(&e));

    /* Ejected, but the server is back: the next call dials it itself
     * (panic mode: no healthy endpoint, the last failure older than
     * backoff_base_ms), and that dial readmits it long before eject_ms. */
    h_upstream_listen(&e, 0);
    h_sleep(&e, 5);
    h_send_unary(cl, 3, "/svc/M", "req");
    struct h_peer *up = h_upstream_peer(&e, 0, 0, T);
    h_serve_unary(up, 1, NULL, 0, "rep");
    h_expect_unary_reply(cl, 3, "rep");
    assert_false(h_endpoint_ejected(&e, 0));
    assert_true(h_pool_dials(h_pool(&e)) > dials);
    assert_int_equal(h_finish(&e), 0);
}

/* A drained pool closes its idle connections and hands nothing out; calls
 * queue until it resumes. */
static void test_drain_and_resume(void **state)
{
    (void)state;
    struct h_env e;
    struct h_peer *cl;
    struct h_peer *up = start_served(&e, "", &cl);
    struct pool *p = h_pool(&e);

    h_pool_drain(&e, true);
    assert_true(h_peer_wait_eof(up, T));
    assert_int_equal(h_pool_total(p), 0);
    h_send_unary(cl, 2, "/svc/M", "req");
    assert_true(H_UNTIL(&e, T, h_pool_waiters(p) == 1));
    h_sleep(&e, 150);                                /* a janitor round or more */
    assert_int_equal(h_upstream_accepted(&e, 0), 1); /* no dial while drained */
    assert_true(h_peer_quiet(cl, 1));

    uint64_t dials = h_pool_dials(p);
    h_pool_drain(&e, false);
    assert_int_equal(h_pool_dials(p), dials + 1); /* at once, for the waiter */
    struct h_peer *up2 = h_upstream_peer(&e, 0, 1, T);
    h_serve_unary(up2, 1, NULL, 0, "rep");
    h_expect_unary_reply(cl, 2, "rep");
    assert_int_equal(h_finish(&e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkout_and_clean_release),
        cmocka_unit_test(test_dirty_release_closes),
        cmocka_unit_test(test_waiters_fifo),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_max_waiters),
        cmocka_unit_test(test_wait_timeout),
        cmocka_unit_test(test_min_idle),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_max_lifetime),
        cmocka_unit_test(test_ejection_and_readmission),
        cmocka_unit_test(test_drain_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
