/*
 * list: intrusive circular doubly linked lists (the kernel/libuv idea).
 * A node embedded in an object puts it on exactly one list at a time;
 * the list an object sits on mirrors its state (PgBouncer's SocketState).
 * A counted_list keeps its length beside its head and changes both in the
 * same step, so a gauge read from it cannot drift from the list.
 */
#ifndef SIDECAR_LIST_H
#define SIDECAR_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct list_node {
    struct list_node *prev;
    struct list_node *next;
};

#define list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

#define list_for_each_safe(pos, tmp, head)                                                         \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                               \
         (pos) = (tmp), (tmp) = (pos)->next)

static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

static inline bool list_empty(const struct list_node *head)
{
    return head->next == head;
}

/* True when the node sits on some list (nodes start and end self-linked). */
static inline bool list_linked(const struct list_node *n)
{
    return n->next != n;
}

static inline void list_push_back(struct list_node *head, struct list_node *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void list_push_front(struct list_node *head, struct list_node *n)
{
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}

static inline void list_remove(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline struct list_node *list_first(const struct list_node *head)
{
    return list_empty(head) ? NULL : head->next;
}

/*
 * A cursor: a position in a list kept between the steps of a walk spread
 * over several loop iterations (the admin API's large pages), while the
 * data path goes on adding and removing nodes. The cursors of a list hang
 * on a cursor set beside it; a node leaves such a list through
 * list_cursor_unlink, which first moves every cursor standing on it to the
 * node after it. So a cursor never points at a node that left (and may be
 * freed), and a walk loses nothing that is still on the list.
 */
struct list_cursor {
    struct list_node node;  /* on the cursor set while the walk lasts */
    struct list_node *next; /* the next node to visit; the list's head at the end */
};

/* Removes n from its list, moving the cursors of `cursors` that stand on n. */
static inline void list_cursor_unlink(struct list_node *cursors, struct list_node *n)
{
    for (struct list_node *k = cursors->next; k != cursors; k = k->next) {
        struct list_cursor *c = list_entry(k, struct list_cursor, node);
        if (c->next == n)
            c->next = n->next;
    }
    list_remove(n);
}

/* A list that knows its length. Insert and remove only through these. */
struct counted_list {
    struct list_node head;
    uint32_t n;
};

static inline void counted_list_init(struct counted_list *l)
{
    list_init(&l->head);
    l->n = 0;
}

static inline void counted_list_push_back(struct counted_list *l, struct list_node *n)
{
    list_push_back(&l->head, n);
    l->n++;
}

static inline void counted_list_push_front(struct counted_list *l, struct list_node *n)
{
    list_push_front(&l->head, n);
    l->n++;
}

/* n must sit on l. */
static inline void counted_list_remove(struct counted_list *l, struct list_node *n)
{
    list_remove(n);
    l->n--;
}

static inline struct list_node *counted_list_first(const struct counted_list *l)
{
    return list_first(&l->head);
}

static inline struct list_node *counted_list_last(const struct counted_list *l)
{
    return l->n ? l->head.prev : NULL;
}

#endif
