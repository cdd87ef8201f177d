/* inspect: the admin API's questions to the data plane (see inspect.h). */
#include "proxy/inspect.h"

#include <stdio.h>

#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/listener.h"
#include "proxy/loop_ctx.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

bool inspect_ready(const struct sidecar *sc, char *reason, size_t size)
{
    if (sc->state != SIDECAR_RUNNING) {
        snprintf(reason, size, "draining");
        return false;
    }
    if (sc->n_listeners == 0) {
        snprintf(reason, size, "no listener is open");
        return false;
    }
    for (size_t i = 0; i < sc->n_listeners; i++) {
        if (!sc->listeners[i]->open) {
            snprintf(reason, size, "listener %s is not open", sc->listeners[i]->lc->name);
            return false;
        }
    }
    for (size_t i = 0; i < sc->n_pools; i++) {
        const struct pool *p = sc->pools[i];
        /* An operator-drained pool closes its idle connections on purpose;
         * that must not take the whole process out of service. */
        if (p->draining)
            continue;
        if (p->pc->min_idle && pool_n_ready(p) < p->pc->min_idle) {
            snprintf(reason, size, "pool %s has %u of min_idle %u connections", p->pc->name,
                     pool_n_ready(p), p->pc->min_idle);
            return false;
        }
    }
    return true;
}

const char *inspect_state_name(const struct sidecar *sc)
{
    switch (sc->state) {
    case SIDECAR_RUNNING:
        return "running";
    case SIDECAR_DRAINING:
        return "draining";
    case SIDECAR_STOPPING:
        break;
    }
    return "stopping";
}

uint64_t inspect_now(const struct sidecar *sc)
{
    return uv_now(sc->lc->loop);
}

uint32_t inspect_n_clients(const struct sidecar *sc)
{
    return sc->lc->n_clients;
}

uint32_t inspect_n_calls(const struct sidecar *sc)
{
    return sc->lc->n_calls;
}

uint64_t inspect_calls_started(const struct sidecar *sc)
{
    return sc->lc->next_call_id; /* ids are given out one by one from 1 */
}

uint64_t inspect_busy_poll_window_us(const struct sidecar *sc)
{
    return busy_poll_window(&sc->lc->busy_poll, (uint64_t)sc->cfg->busy_poll_us * 1000) / 1000;
}

struct pool *inspect_pool(const struct sidecar *sc, size_t i)
{
    return i < sc->n_pools ? sc->pools[i] : NULL;
}

struct listener *inspect_listener(const struct sidecar *sc, size_t i)
{
    return i < sc->n_listeners ? sc->listeners[i] : NULL;
}

struct call *inspect_next_call(const struct sidecar *sc, const struct call *prev)
{
    const struct list_node *head = &sc->lc->calls;
    const struct list_node *n = prev ? prev->sc_node.next : head->next;
    return n == head ? NULL : list_entry(n, struct call, sc_node);
}

struct client_conn *inspect_next_client(const struct sidecar *sc, const struct client_conn *prev)
{
    const struct list_node *head = &sc->lc->clients;
    const struct list_node *n = prev ? prev->sc_node.next : head->next;
    return n == head ? NULL : list_entry(n, struct client_conn, sc_node);
}

static void walk_start(struct list_node *list, struct list_node *cursors, uint64_t end_id,
                       struct inspect_walk *w)
{
    w->head = list;
    w->end_id = end_id;
    w->started = true;
    w->cursor.next = list->next;
    list_init(&w->cursor.node);
    list_push_back(cursors, &w->cursor.node);
}

/* Both lists are in id order: objects are appended as ids are given out. */
void inspect_walk_clients(const struct sidecar *sc, struct inspect_walk *w)
{
    struct list_node *l = &sc->lc->clients;
    walk_start(l, &sc->lc->client_cursors,
               list_empty(l) ? 0 : list_entry(l->prev, struct client_conn, sc_node)->id, w);
}

void inspect_walk_calls(const struct sidecar *sc, struct inspect_walk *w)
{
    struct list_node *l = &sc->lc->calls;
    walk_start(l, &sc->lc->call_cursors,
               list_empty(l) ? 0 : list_entry(l->prev, struct call, sc_node)->id, w);
}

/* The next node of w, or NULL at the end. */
static struct list_node *walk_next(struct inspect_walk *w)
{
    struct list_node *n = w->cursor.next;
    if (n == w->head)
        return NULL;
    w->cursor.next = n->next;
    return n;
}

struct client_conn *inspect_walk_next_client(struct inspect_walk *w)
{
    struct list_node *n = walk_next(w);
    struct client_conn *cl = n ? list_entry(n, struct client_conn, sc_node) : NULL;
    return cl && cl->id <= w->end_id ? cl : NULL;
}

struct call *inspect_walk_next_call(struct inspect_walk *w)
{
    struct list_node *n = walk_next(w);
    struct call *c = n ? list_entry(n, struct call, sc_node) : NULL;
    return c && c->id <= w->end_id ? c : NULL;
}

void inspect_walk_end(struct inspect_walk *w)
{
    if (w->started && list_linked(&w->cursor.node))
        list_remove(&w->cursor.node);
    w->started = false;
}

struct call *inspect_find_call(const struct sidecar *sc, uint64_t id)
{
    for (struct call *c = inspect_next_call(sc, NULL); c; c = inspect_next_call(sc, c))
        if (c->id == id)
            return c;
    return NULL;
}

void inspect_cancel_call(struct call *c)
{
    call_fail(c, CALL_CAUSE_CANCELLED, NULL);
}
