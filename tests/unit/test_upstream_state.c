/*
 * test_upstream_state: the table of legal upstream connection moves
 * (upstream_move_legal, proxy/upstream.c). Every legal move is accepted and
 * every other pair of states, self-moves included, is rejected. The table
 * is written out here on its own, from upstream.h's comment, so a change to
 * the code's table shows up as a failure until both agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "proxy/upstream.h"

struct move {
    enum upstream_state from, to;
};

static const struct move legal[] = {
    {UPSTREAM_NEW, UPSTREAM_RESOLVING},
    {UPSTREAM_NEW, UPSTREAM_CONNECTING},
    {UPSTREAM_NEW, UPSTREAM_HANDSHAKE},
    {UPSTREAM_NEW, UPSTREAM_CLOSING},
    {UPSTREAM_RESOLVING, UPSTREAM_CONNECTING},
    {UPSTREAM_RESOLVING, UPSTREAM_CLOSING},
    {UPSTREAM_CONNECTING, UPSTREAM_IDLE},
    {UPSTREAM_CONNECTING, UPSTREAM_BUSY},
    {UPSTREAM_CONNECTING, UPSTREAM_CLOSING},
    {UPSTREAM_HANDSHAKE, UPSTREAM_IDLE},
    {UPSTREAM_HANDSHAKE, UPSTREAM_BUSY},
    {UPSTREAM_HANDSHAKE, UPSTREAM_CLOSING},
    {UPSTREAM_IDLE, UPSTREAM_BUSY},
    {UPSTREAM_IDLE, UPSTREAM_CLOSING},
    {UPSTREAM_BUSY, UPSTREAM_RELEASED},
    {UPSTREAM_BUSY, UPSTREAM_CLOSING},
    {UPSTREAM_RELEASED, UPSTREAM_IDLE},
    {UPSTREAM_RELEASED, UPSTREAM_BUSY},
    {UPSTREAM_RELEASED, UPSTREAM_CLOSING},
};
#define N_LEGAL (sizeof(legal) / sizeof(legal[0]))

static bool in_table(enum upstream_state from, enum upstream_state to)
{
    for (size_t i = 0; i < N_LEGAL; i++)
        if (legal[i].from == from && legal[i].to == to)
            return true;
    return false;
}

static void test_every_legal_move_is_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_LEGAL; i++) {
        if (!upstream_move_legal(legal[i].from, legal[i].to))
            fail_msg("%s -> %s rejected", upstream_state_name(legal[i].from),
                     upstream_state_name(legal[i].to));
    }
}

static void test_every_other_move_is_rejected(void **state)
{
    (void)state;
    size_t rejected = 0;
    for (int from = 0; from < UPSTREAM_STATE_COUNT; from++)
        for (int to = 0; to < UPSTREAM_STATE_COUNT; to++) {
            if (in_table(from, to))
                continue;
            if (upstream_move_legal(from, to))
                fail_msg("%s -> %s accepted", upstream_state_name(from), upstream_state_name(to));
            rejected++;
        }
    assert_int_equal(rejected, UPSTREAM_STATE_COUNT * UPSTREAM_STATE_COUNT - N_LEGAL);
}

/* Every state but CLOSING can close; nothing leaves CLOSING or comes back to NEW. */
static void test_closing_is_final_and_reachable_from_all(void **state)
{
    (void)state;
    for (int s = 0; s < UPSTREAM_STATE_COUNT; s++) {
        assert_int_equal(upstream_move_legal(s, UPSTREAM_CLOSING), s != UPSTREAM_CLOSING);
        assert_false(upstream_move_legal(UPSTREAM_CLOSING, s));
        assert_false(upstream_move_legal(s, UPSTREAM_NEW));
        assert_false(upstream_move_legal(s, s));
    }
}

/* Every state has a name of its own (admin and logs show them). */
static void test_state_names(void **state)
{
    (void)state;
    for (int a = 0; a < UPSTREAM_STATE_COUNT; a++) {
        assert_string_not_equal(upstream_state_name(a), "?");
        for (int b = a + 1; b < UPSTREAM_STATE_COUNT; b++)
            assert_string_not_equal(upstream_state_name(a), upstream_state_name(b));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_legal_move_is_accepted),
        cmocka_unit_test(test_every_other_move_is_rejected),
        cmocka_unit_test(test_closing_is_final_and_reachable_from_all),
        cmocka_unit_test(test_state_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
