/*
 * test_busy_poll: the adaptive spin window (proxy/busy_poll.c). A steady
 * exchange with short gaps must reach the cap and stay there; gaps beyond
 * the cap must bring the window down to 0; a lowered cap applies at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/busy_poll.h"

#define US  1000u
#define CAP (50 * US)

static void test_starts_off_and_grows_by_doubling_to_the_cap(void **state)
{
    (void)state;
    struct busy_poll bp = {0};
    /* gaps of 30 us: within the cap, longer than the window until it fits */
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 30 * US), BUSY_POLL_GREW);
    assert_int_equal(bp.window_ns, BUSY_POLL_START_NS);
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 30 * US), BUSY_POLL_GREW);
    assert_int_equal(bp.window_ns, 2 * BUSY_POLL_START_NS);
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 30 * US), BUSY_POLL_GREW);
    assert_int_equal(bp.window_ns, 4 * BUSY_POLL_START_NS);
    for (int i = 0; i < 100; i++)
        assert_int_equal(busy_poll_idle_ended(&bp, CAP, 30 * US), BUSY_POLL_KEPT);
    assert_int_equal(bp.window_ns, 4 * BUSY_POLL_START_NS);
    /* a 45 us gap: 40 doubled is past the cap, so the cap */
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 45 * US), BUSY_POLL_GREW);
    assert_int_equal(bp.window_ns, CAP);
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 45 * US), BUSY_POLL_KEPT);
}

static void test_a_stretch_the_window_covers_keeps_it(void **state)
{
    (void)state;
    struct busy_poll bp = {.window_ns = 20 * US};
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 0), BUSY_POLL_KEPT);
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 20 * US), BUSY_POLL_KEPT);
    assert_int_equal(bp.window_ns, 20 * US);
    /* exactly the cap still counts as catchable */
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, CAP), BUSY_POLL_GREW);
    assert_int_equal(bp.window_ns, 40 * US);
}

static void test_gaps_beyond_the_cap_halve_it_down_to_off(void **state)
{
    (void)state;
    struct busy_poll bp = {.window_ns = CAP};
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, CAP + 1), BUSY_POLL_SHRANK);
    assert_int_equal(bp.window_ns, 25 * US);
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 5000 * US), BUSY_POLL_SHRANK);
    assert_int_equal(bp.window_ns, 12500);
    /* below the start value spinning stops altogether */
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 5000 * US), BUSY_POLL_SHRANK);
    assert_int_equal(bp.window_ns, 0);
    assert_int_equal(busy_poll_idle_ended(&bp, CAP, 5000 * US), BUSY_POLL_SHRANK);
    assert_int_equal(bp.window_ns, 0);
}

/* The CPU a stretch of idle_ns costs with the window in force: the spin,
 * up to the window (a stretch the window covers ends in it). */
static uint64_t spin_of(const struct busy_poll *bp, uint64_t idle_ns)
{
    return idle_ns < bp->window_ns ? idle_ns : bp->window_ns;
}

/* Calls 5 ms apart, each with three reads close together (the request,
 * the upstream reply 30 us later, the client's trailing frame 20 us
 * after that), starting from a window at the cap (after a burst). The
 * window stays up, but each call wastes at most one window, never more
 * than the cap, on the gap before the next request. */
static void test_sparse_calls_waste_at_most_one_window_per_gap(void **state)
{
    (void)state;
    struct busy_poll bp = {.window_ns = CAP};
    uint64_t wasted = 0;
    for (int call = 0; call < 1000; call++) {
        uint64_t spun = spin_of(&bp, 5000 * US);
        assert_true(spun <= CAP);
        wasted += spun;
        busy_poll_idle_ended(&bp, CAP, 5000 * US); /* the request */
        busy_poll_idle_ended(&bp, CAP, 30 * US);   /* the reply */
        busy_poll_idle_ended(&bp, CAP, 20 * US);   /* the trailing frame */
    }
    assert_true(wasted <= 1000 * (uint64_t)CAP);
    /* with one read per call and nothing close together it dies out */
    for (int call = 0; call < 4; call++)
        busy_poll_idle_ended(&bp, CAP, 5000 * US);
    assert_int_equal(bp.window_ns, 0);
}

static void test_no_spin_with_as_many_calls_in_flight_as_cores(void **state)
{
    (void)state;
    struct busy_poll bp = {.window_ns = CAP};
    assert_true(busy_poll_should_spin(&bp, CAP, 0, 2));
    assert_true(busy_poll_should_spin(&bp, CAP, 1, 2));
    assert_false(busy_poll_should_spin(&bp, CAP, 2, 2));
    assert_false(busy_poll_should_spin(&bp, CAP, 64, 2));
    /* one core: only between calls, while the app needs it to send the next */
    assert_true(busy_poll_should_spin(&bp, CAP, 0, 1));
    assert_false(busy_poll_should_spin(&bp, CAP, 1, 1));
    /* no window, or a cap of 0: never */
    assert_false(busy_poll_should_spin(&bp, 0, 0, 8));
    bp.window_ns = 0;
    assert_false(busy_poll_should_spin(&bp, CAP, 0, 8));
}

static void test_the_cap_rules_the_window(void **state)
{
    (void)state;
    struct busy_poll bp = {.window_ns = CAP};
    assert_int_equal(busy_poll_window(&bp, CAP), CAP);
    assert_int_equal(busy_poll_window(&bp, 20 * US), 20 * US); /* before any stretch */
    assert_int_equal(busy_poll_window(&bp, 0), 0);
    /* a reload lowered the cap: the window follows at the next stretch */
    assert_int_equal(busy_poll_idle_ended(&bp, 20 * US, 10 * US), BUSY_POLL_KEPT);
    assert_int_equal(bp.window_ns, 20 * US);
    /* a cap of 0 turns spinning off whatever the traffic */
    assert_int_equal(busy_poll_idle_ended(&bp, 0, 0), BUSY_POLL_KEPT);
    assert_int_equal(bp.window_ns, 0);
    assert_int_equal(busy_poll_idle_ended(&bp, 0, 1), BUSY_POLL_KEPT);
    assert_int_equal(bp.window_ns, 0);
    /* a cap below the start value: grows straight to the cap */
    assert_int_equal(busy_poll_idle_ended(&bp, 5 * US, 3 * US), BUSY_POLL_GREW);
    assert_int_equal(bp.window_ns, 5 * US);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_off_and_grows_by_doubling_to_the_cap),
        cmocka_unit_test(test_a_stretch_the_window_covers_keeps_it),
        cmocka_unit_test(test_gaps_beyond_the_cap_halve_it_down_to_off),
        cmocka_unit_test(test_sparse_calls_waste_at_most_one_window_per_gap),
        cmocka_unit_test(test_no_spin_with_as_many_calls_in_flight_as_cores),
        cmocka_unit_test(test_the_cap_rules_the_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
