/*
 * peer_agent: dial-out connections for the test service (see peer_agent.h).
 *
 *   start --> dial_missing(): live < want ? peer_server_dial : done
 *   connection or failed dial over --> live-- --> redial ? backoff timer
 *   backoff timer --> dial_missing()
 */
#include "tests/peer/peer_agent.h"

#include <stdio.h>

static void dial_missing(struct peer_agent *a);

static void on_backoff(uv_timer_t *t)
{
    dial_missing(t->data);
}

static void on_conn_end(void *arg)
{
    struct peer_agent *a = arg;
    a->live--;
    if (a->state != PEER_AGENT_RUNNING)
        return;
    if (a->redial) {
        if (!uv_is_active((uv_handle_t *)&a->backoff))
            uv_timer_start(&a->backoff, on_backoff, PEER_AGENT_BACKOFF_MS, 0);
    } else if (a->live == 0) {
        fprintf(stderr, "%s: agent: no connection left (no --redial)\n", a->srv->name);
    }
}

static void dial_missing(struct peer_agent *a)
{
    while (a->state == PEER_AGENT_RUNNING && a->live < a->want) {
        int rc = peer_server_dial(a->srv, &a->addr, on_conn_end, a);
        if (rc) {
            fprintf(stderr, "%s: agent: dial: %s\n", a->srv->name, uv_strerror(rc));
            if (a->redial)
                uv_timer_start(&a->backoff, on_backoff, PEER_AGENT_BACKOFF_MS, 0);
            return;
        }
        a->live++;
    }
}

int peer_agent_start(struct peer_agent *a, struct peer_server *srv, const struct peer_addr *addr,
                     int want, bool redial)
{
    *a = (struct peer_agent){0};
    a->srv = srv;
    a->addr = *addr;
    a->want = want;
    a->redial = redial;
    a->state = PEER_AGENT_RUNNING;
    uv_timer_init(srv->loop, &a->backoff);
    a->backoff.data = a;
    dial_missing(a);
    return 0;
}

static void backoff_closed(uv_handle_t *h)
{
    struct peer_agent *a = h->data;
    a->state = PEER_AGENT_STOPPED;
}

void peer_agent_stop(struct peer_agent *a)
{
    if (a->state != PEER_AGENT_RUNNING)
        return;
    a->state = PEER_AGENT_STOPPING;
    uv_close((uv_handle_t *)&a->backoff, backoff_closed);
}
