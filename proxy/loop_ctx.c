/* loop_ctx: the per-loop context (see loop_ctx.h). */
#include "proxy/loop_ctx.h"

#include "proxy/wire.h"

static void flush_check_cb(uv_check_t *h)
{
    struct loop_ctx *lc = h->data;
    /* Flushing can schedule more flushes (a write completes at once and
     * resumes a peer); the loop ends when the list is empty. */
    while (!list_empty(&lc->flush_list)) {
        struct list_node *n = list_first(&lc->flush_list);
        list_remove(n);
        wire_flush(list_entry(n, struct wire, flush_node));
    }
    uv_check_stop(&lc->flush_check);
}

void loop_ctx_init(struct loop_ctx *lc, uv_loop_t *loop, struct sidecar *sc)
{
    lc->loop = loop;
    lc->sc = sc;
    list_init(&lc->clients);
    list_init(&lc->calls);
    list_init(&lc->client_cursors);
    list_init(&lc->call_cursors);
    list_init(&lc->flush_list);
    uv_check_init(loop, &lc->flush_check);
    lc->flush_check.data = lc;
    uv_timer_init(loop, &lc->janitor);
    lc->janitor.data = lc;
    budget_init(&lc->budget, loop);
    lc->handles_open = true;
}

void loop_ctx_schedule_flush(struct loop_ctx *lc, struct list_node *node, bool first)
{
    if (list_empty(&lc->flush_list))
        uv_check_start(&lc->flush_check, flush_check_cb);
    if (first)
        list_push_front(&lc->flush_list, node);
    else
        list_push_back(&lc->flush_list, node);
}

void loop_ctx_close(struct loop_ctx *lc)
{
    if (!lc->handles_open)
        return;
    lc->handles_open = false;
    uv_close((uv_handle_t *)&lc->janitor, NULL);
    uv_close((uv_handle_t *)&lc->flush_check, NULL);
    budget_close(&lc->budget);
}
