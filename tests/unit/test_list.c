/*
 * test_list: list cursors (proxy/list.h), the position a walk spread over
 * loop iterations keeps while nodes leave the list under it: a cursor on a
 * node that leaves moves to the next one, others stay, and a walk sees
 * every node that is still there exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "proxy/list.h"

struct item {
    int id;
    struct list_node node;
};

static struct list_node list, cursors;
static struct item items[6];

static void setup_list(void)
{
    list_init(&list);
    list_init(&cursors);
    for (int i = 0; i < 6; i++) {
        items[i].id = i;
        list_init(&items[i].node);
        list_push_back(&list, &items[i].node);
    }
}

/* The id the cursor stands on, or -1 at the end of the list. */
static int at(const struct list_cursor *c)
{
    return c->next == &list ? -1 : list_entry(c->next, struct item, node)->id;
}

static void test_a_cursor_on_a_leaving_node_moves_on(void **state)
{
    (void)state;
    setup_list();
    struct list_cursor a = {.next = &items[2].node}, b = {.next = &items[4].node};
    list_push_back(&cursors, &a.node);
    list_push_back(&cursors, &b.node);
    list_cursor_unlink(&cursors, &items[2].node); /* a stands on it */
    assert_int_equal(at(&a), 3);
    assert_int_equal(at(&b), 4);
    assert_false(list_linked(&items[2].node));
    list_cursor_unlink(&cursors, &items[3].node); /* and on the next one too */
    assert_int_equal(at(&a), 4);
    list_cursor_unlink(&cursors, &items[5].node); /* the last: nobody there */
    list_cursor_unlink(&cursors, &items[4].node); /* both move to the end */
    assert_int_equal(at(&a), -1);
    assert_int_equal(at(&b), -1);
    list_cursor_unlink(&cursors, &items[0].node); /* behind both: they stay at the end */
    assert_int_equal(at(&a), -1);
    list_remove(&a.node);
    list_remove(&b.node);
    assert_true(list_empty(&cursors));
}

static void test_a_walk_sees_what_stays_once(void **state)
{
    (void)state;
    setup_list();
    struct list_cursor c = {.next = list.next};
    list_push_back(&cursors, &c.node);
    int seen[6] = {0};
    int steps = 0;
    while (c.next != &list) {
        struct item *it = list_entry(c.next, struct item, node);
        c.next = c.next->next;
        seen[it->id]++;
        /* between steps: the node just seen leaves, and so does the one
         * the cursor stands on, on every other step */
        list_cursor_unlink(&cursors, &it->node);
        if (++steps % 2 == 0 && c.next != &list)
            list_cursor_unlink(&cursors, c.next);
    }
    list_remove(&c.node);
    /* 0 seen, 1 seen, 2 left unseen, 3 seen, 4 seen, 5 left unseen */
    int want[6] = {1, 1, 0, 1, 1, 0};
    for (int i = 0; i < 6; i++)
        assert_int_equal(seen[i], want[i]);
    assert_true(list_empty(&list));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_cursor_on_a_leaving_node_moves_on),
        cmocka_unit_test(test_a_walk_sees_what_stays_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
