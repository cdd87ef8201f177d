/*
 * test_retry: the retry budget (proxy/retry.c): a share of the calls of
 * the last second, at least RETRY_BUDGET_MIN per second, with the previous
 * second fading out of the window as the current one goes on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/retry.h"

/* Retries the budget grants at now_ms, asking until it refuses. */
static unsigned take_all(struct retry_budget *b, uint64_t now_ms, uint32_t percent)
{
    unsigned n = 0;
    while (retry_budget_take(b, now_ms, percent))
        n++;
    return n;
}

static void test_floor_without_calls(void **state)
{
    (void)state;
    struct retry_budget b = {0};
    assert_int_equal(take_all(&b, 5000, 20), RETRY_BUDGET_MIN);
    /* the next second has the floor again, less what still counts of this one */
    assert_int_equal(take_all(&b, 7000, 20), RETRY_BUDGET_MIN);
}

static void test_share_of_calls(void **state)
{
    (void)state;
    struct retry_budget b = {0};
    for (int i = 0; i < 100; i++)
        retry_budget_note_call(&b, 10000 + (uint64_t)i);
    assert_int_equal(take_all(&b, 10500, 20), 20);
    /* 0% allows the floor only */
    struct retry_budget z = {0};
    for (int i = 0; i < 100; i++)
        retry_budget_note_call(&z, 10000);
    assert_int_equal(take_all(&z, 10000, 0), RETRY_BUDGET_MIN);
}

static void test_previous_second_fades(void **state)
{
    (void)state;
    struct retry_budget b = {0};
    for (int i = 0; i < 100; i++)
        retry_budget_note_call(&b, 20000);
    assert_int_equal(take_all(&b, 20000, 20), 20);
    /* half-way into the next second: half of the last one still counts,
     * its calls (50 -> 10 allowed) and its retries (20 -> 10 used) */
    assert_int_equal(take_all(&b, 21500, 20), 0);
    /* two seconds on, nothing of it is left */
    assert_int_equal(take_all(&b, 23000, 20), RETRY_BUDGET_MIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_floor_without_calls),
        cmocka_unit_test(test_share_of_calls),
        cmocka_unit_test(test_previous_second_fades),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
