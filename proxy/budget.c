/* budget: the process-wide budget for buffered bytes (see budget.h). */
#include "proxy/budget.h"

#include "proxy/wire.h"

void budget_init(struct budget *b, uv_loop_t *loop)
{
    b->used = 0;
    b->n_paused = 0;
    b->pauses = 0;
    list_init(&b->paused);
    uv_check_init(loop, &b->resume_check);
    b->resume_check.data = b;
    b->check_open = true;
}

void budget_close(struct budget *b)
{
    if (!b->check_open)
        return;
    b->check_open = false;
    uv_close((uv_handle_t *)&b->resume_check, NULL);
}

void budget_entry_init(struct budget_entry *e)
{
    e->held = 0;
    e->paused = false;
    list_init(&e->node);
}

static void unpause(struct budget *b, struct budget_entry *e)
{
    if (!e->paused)
        return;
    e->paused = false;
    list_remove(&e->node);
    b->n_paused--;
}

/* Resumes every connection paused when it runs, once each; an owner
 * re-reads its own state and may be paused again (onto b->paused, not
 * this batch) if the budget filled up meanwhile. */
static void resume_cb(uv_check_t *h)
{
    struct budget *b = h->data;
    uv_check_stop(h);
    struct list_node batch;
    list_init(&batch);
    while (!list_empty(&b->paused)) {
        struct list_node *n = list_first(&b->paused);
        list_remove(n);
        list_push_back(&batch, n);
    }
    while (!list_empty(&batch)) {
        struct budget_entry *e = list_entry(list_first(&batch), struct budget_entry, node);
        unpause(b, e); /* takes it off batch */
        wire_budget_resumed(list_entry(e, struct wire, budget));
    }
}

/* The sum drained: resume the paused ones from the loop. */
static void maybe_resume(struct budget *b, uint64_t limit)
{
    if (b->n_paused && (!limit || b->used <= limit / 4 * 3) && b->check_open)
        uv_check_start(&b->resume_check, resume_cb);
}

bool budget_hold(struct budget *b, struct budget_entry *e, size_t held, uint64_t limit)
{
    b->used = b->used - e->held + held;
    e->held = held;
    if (e->paused) {
        if (limit && b->used > limit / 4 * 3 && held > BUDGET_ALLOWANCE)
            return true;
        unpause(b, e);
        maybe_resume(b, limit);
        return false;
    }
    maybe_resume(b, limit);
    if (!limit || b->used <= limit || held <= BUDGET_ALLOWANCE)
        return false;
    e->paused = true;
    list_push_back(&b->paused, &e->node);
    b->n_paused++;
    b->pauses++;
    return true;
}

size_t budget_read_size(const struct budget *b, const struct budget_entry *e, uint64_t limit,
                        size_t room)
{
    if (!limit || b->used <= limit)
        return room;
    size_t n = e->held < BUDGET_ALLOWANCE ? BUDGET_ALLOWANCE - e->held : 0;
    if (n < BUDGET_MIN_READ)
        n = BUDGET_MIN_READ;
    return n < room ? n : room;
}

void budget_forget(struct budget *b, struct budget_entry *e, uint64_t limit)
{
    unpause(b, e);
    b->used -= e->held;
    e->held = 0;
    maybe_resume(b, limit);
}
