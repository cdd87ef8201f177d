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

/* Requests 1 ms apart whose replies come 30 us after they are sent: one
 * stretch of each kind per call. The window never settles above the
 * start value, so the CPU spent spinning per call stays at most that. */
static void test_sparse_calls_spin_at_most_the_start_value(void **state)
{
    (void)state;
    struct busy_poll bp = {0};
    uint64_t spun = 0;
    for (int call = 0; call < 1000; call++) {
        spun += bp.window_ns < 30 * US ? bp.window_ns : 30 * US;
        busy_poll_idle_ended(&bp, CAP, 30 * US); /* the upstream reply */
        spun += bp.window_ns;                    /* spent before the next request */
        busy_poll_idle_ended(&bp, CAP, 1000 * US);
        assert_true(bp.window_ns <= BUSY_POLL_START_NS);
    }
    assert_true(spun <= 1000 * 2 * (uint64_t)BUSY_POLL_START_NS);
}

static void test_the_cap_rules_the_window(void **state)
{
    (void)state;
    struct busy_poll bp = {.window_ns = CAP};
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
        cmocka_unit_test(test_sparse_calls_spin_at_most_the_start_value),
        cmocka_unit_test(test_the_cap_rules_the_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
