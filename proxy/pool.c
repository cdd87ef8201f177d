/*
 * pool: checkout, release, the wait queue and endpoint health (see pool.h).
 *
 * Health per endpoint, a circuit breaker: a failed dial puts it in back-off
 * (base * 2^(n-1), capped); eject_after_failures consecutive failures eject
 * it for at most eject_ms. Calls dial healthy endpoints only, while one
 * exists. Meanwhile the janitor probes each endpoint that is out with one
 * dial whenever its back-off runs out (half-open), and the first dial that
 * connects readmits it at once. With no healthy endpoint, calls dial
 * themselves (panic mode, at most once per backoff_base_ms per endpoint) or
 * wait for a dial under way; when the pool has no connection at all and
 * every endpoint's last dial just failed, they fail at once with a precise
 * cause instead of sitting out their wait timeout.
 *
 *            dial fails                  eject_after_failures
 *   HEALTHY ------------> BACKOFF ----------------------------> EJECTED
 *      ^                    |  probe or panic dial connects        |
 *      +--------------------+--------------------------------------+
 */
#include "proxy/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/agent.h"
#include "proxy/call.h"
#include "proxy/log.h"
#include "proxy/sidecar.h"
#include "proxy/state.h"
#include "proxy/transport_tls.h"
#include "proxy/upstream.h"
#include "proxy/wire.h"

const char *endpoint_health_name(enum endpoint_health h)
{
    switch (h) {
    case ENDPOINT_HEALTHY:
        return "healthy";
    case ENDPOINT_BACKOFF:
        return "backoff";
    case ENDPOINT_EJECTED:
        return "ejected";
    case ENDPOINT_UNHEALTHY:
        return "unhealthy";
    }
    return "?";
}

enum endpoint_health endpoint_health(const struct endpoint *e, uint64_t now)
{
    if (e->ejected_until > now)
        return ENDPOINT_EJECTED;
    if (e->pool->pc->health_check.enabled && e->check.state != ENDPOINT_CHECK_HEALTHY)
        return ENDPOINT_UNHEALTHY;
    if (e->backoff_until > now)
        return ENDPOINT_BACKOFF;
    return ENDPOINT_HEALTHY;
}

static void endpoint_init(struct pool *p, struct endpoint *e, size_t index,
                          const struct config_addr *addr)
{
    e->pool = p;
    e->index = index;
    e->addr = addr;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&e->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&e->sa;
    e->literal = addr->kind == CONFIG_ADDR_UNIX || uv_ip4_addr(addr->host, addr->port, v4) == 0 ||
                 uv_ip6_addr(addr->host, addr->port, v6) == 0;
    if (e->literal) {
        snprintf(e->resolved, sizeof(e->resolved), "%s", addr->text);
        snprintf(e->resolved_list[0], sizeof(e->resolved_list[0]), "%s", addr->text);
        e->n_resolved = 1;
    }
}

int pool_create(struct sidecar *sc, struct config *cfg, size_t index, struct pool **out)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return UV_ENOMEM;
    p->sc = sc;
    p->lc = sc->lc;
    p->cfg = config_ref(cfg);
    p->pc = &cfg->pools[index];
    p->index = index;
    counted_list_init(&p->connecting);
    counted_list_init(&p->idle);
    counted_list_init(&p->busy);
    counted_list_init(&p->released);
    list_init(&p->waiters);
    list_init(&p->retired_node);
    p->n_endpoints = p->pc->n_endpoints;
    if (p->n_endpoints) {
        p->endpoints = calloc(p->n_endpoints, sizeof(*p->endpoints));
        if (!p->endpoints) {
            config_unref(p->cfg);
            free(p);
            return UV_ENOMEM;
        }
    }
    for (size_t i = 0; i < p->n_endpoints; i++)
        endpoint_init(p, &p->endpoints[i], i, &p->pc->endpoints[i]);
    *out = p;
    return 0;
}

/* Dials to e still under way (ordinary, panic or probe). */
static uint32_t dials_in_flight(const struct pool *p, const struct endpoint *e)
{
    uint32_t n = 0;
    for (const struct list_node *i = p->connecting.head.next; i != &p->connecting.head; i = i->next)
        if (list_entry(i, struct upstream_conn, pool_node)->ep == e)
            n++;
    return n;
}

/*
 * Panic mode (Envoy's panic threshold, for a pool with no healthy
 * endpoint): a call may dial an ejected or backing-off endpoint itself
 * when no dial to it is under way and its last dial failed at least
 * backoff_base_ms ago. Calls arriving meanwhile wait for that dial (or
 * fail fast when it just failed), so a pool under load dials a dead
 * endpoint at most once per backoff_base_ms, and one that comes back is
 * found within that time.
 */
static bool panic_dialable(const struct pool *p, const struct endpoint *e, uint64_t now)
{
    return now - e->last_failure_at >= p->pc->backoff_base_ms && dials_in_flight(p, e) == 0;
}

/* Picks a healthy endpoint per the balance setting; with none healthy and
 * panic allowed, a panic-dialable one (round robin); or NULL. */
static struct endpoint *pick_endpoint(struct pool *p, uint64_t now, bool panic)
{
    struct endpoint *best = NULL;
    for (size_t k = 0; k < p->n_endpoints; k++) {
        size_t i = (p->rr_next + k) % p->n_endpoints;
        struct endpoint *e = &p->endpoints[i];
        if (endpoint_health(e, now) != ENDPOINT_HEALTHY)
            continue;
        if (p->pc->balance == CONFIG_BALANCE_ROUND_ROBIN) {
            best = e;
            break;
        }
        /* A dial is for a call no open connection can take, so an
         * endpoint's connections (busy or still connecting) are its load. */
        if (!best || e->n_conns < best->n_conns ||
            (e->n_conns == best->n_conns && e->n_busy < best->n_busy))
            best = e;
    }
    for (size_t k = 0; !best && panic && k < p->n_endpoints; k++) {
        struct endpoint *e = &p->endpoints[(p->rr_next + k) % p->n_endpoints];
        if (panic_dialable(p, e, now))
            best = e;
    }
    if (best)
        p->rr_next = (best->index + 1) % p->n_endpoints;
    return best;
}

/* Whether some endpoint could be dialled now (does not advance round robin). */
static bool pick_endpoint_peek(const struct pool *p, uint64_t now, bool panic)
{
    for (size_t i = 0; i < p->n_endpoints; i++)
        if (endpoint_health(&p->endpoints[i], now) == ENDPOINT_HEALTHY)
            return true;
    for (size_t i = 0; panic && i < p->n_endpoints; i++)
        if (panic_dialable(p, &p->endpoints[i], now))
            return true;
    return false;
}

static const char *last_dial_error(const struct pool *p)
{
    const char *last = NULL;
    for (size_t i = 0; i < p->n_endpoints; i++)
        if (p->endpoints[i].last_error[0])
            last = p->endpoints[i].last_error;
    return last;
}

/* Whether some endpoint is healthy (not panic mode). */
static bool any_healthy(const struct pool *p, uint64_t now)
{
    for (size_t i = 0; i < p->n_endpoints; i++)
        if (endpoint_health(&p->endpoints[i], now) == ENDPOINT_HEALTHY)
            return true;
    return false;
}

static bool all_ejected(const struct pool *p, uint64_t now)
{
    for (size_t i = 0; i < p->n_endpoints; i++)
        if (endpoint_health(&p->endpoints[i], now) != ENDPOINT_EJECTED)
            return false;
    return p->n_endpoints > 0;
}

/* Starts one dial to a healthy endpoint, or for a call (for_call) in panic
 * mode to an unhealthy one; returns false when none can be dialled. */
static bool dial_one(struct pool *p, bool for_call)
{
    uint64_t now = uv_now(p->lc->loop);
    struct endpoint *e = pick_endpoint(p, now, for_call);
    if (!e)
        return false;
    bool panic = endpoint_health(e, now) != ENDPOINT_HEALTHY;
    struct upstream_conn *up;
    if (upstream_dial(p, e, &up) != 0)
        return false;
    if (panic) {
        p->stats.panic_dials++;
        e->probes++;
    }
    return true;
}

int endpoint_find_address(char (*list)[64], size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], text) == 0)
            return (int)i;
    return -1;
}

/* Fails every waiting call: the pool has nothing that could serve them. */
void pool_fail_waiters(struct pool *p, enum call_cause cause, const char *detail)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &p->waiters)
    {
        struct call *c = list_entry(n, struct call, wait_node);
        call_fail(c, cause, detail); /* takes it off the queue */
    }
}

/*
 * Dials under way that may still serve a waiter soon. With several
 * endpoints, one that has not connected within a quarter of
 * dial_timeout_ms (50 ms to 1 s) no longer counts: a blackholed endpoint
 * would otherwise hold its waiter for the whole dial timeout while another
 * endpoint could serve it, so the waiter gets a second dial (round robin
 * sends it elsewhere). Whichever connects first serves it.
 */
static uint32_t promising_dials(const struct pool *p)
{
    if (p->n_endpoints < 2)
        return p->connecting.n;
    uint64_t now = uv_now(p->lc->loop), stalled = p->pc->dial_timeout_ms / 4;
    stalled = stalled < 50 ? 50 : stalled > 1000 ? 1000 : stalled;
    uint32_t n = 0;
    for (const struct list_node *i = p->connecting.head.next; i != &p->connecting.head; i = i->next)
        if (now - list_entry(i, struct upstream_conn, pool_node)->created_at < stalled)
            n++;
    return n;
}

/* Dials for waiters that no pending dial will serve, within max_conns. */
static void serve_waiters(struct pool *p)
{
    if (p->pc->reverse || p->draining || p->sc->state == SIDECAR_STOPPING)
        return;
    while (p->n_waiters > promising_dials(p) && pool_total(p) < p->pc->max_conns) {
        if (!dial_one(p, true))
            break;
    }
    if (p->n_waiters > 0 && pool_total(p) == 0) {
        uint64_t now = uv_now(p->lc->loop);
        if (all_ejected(p, now)) {
            pool_fail_waiters(p, CALL_CAUSE_NO_HEALTHY_ENDPOINT, NULL);
            return;
        }
        /* Every endpoint is backing off after failed dials. */
        pool_fail_waiters(p, CALL_CAUSE_DIAL_FAILED, last_dial_error(p));
    }
}

/* The pool list an upstream connection in state s sits on (NULL: none). */
static struct counted_list *list_of(struct pool *p, enum upstream_state s)
{
    switch (s) {
    case UPSTREAM_RESOLVING:
    case UPSTREAM_CONNECTING:
    case UPSTREAM_HANDSHAKE:
        return &p->connecting;
    case UPSTREAM_IDLE:
        return &p->idle;
    case UPSTREAM_BUSY:
        return &p->busy;
    case UPSTREAM_RELEASED:
        return &p->released;
    case UPSTREAM_NEW:
    case UPSTREAM_CLOSING:
        break;
    }
    return NULL;
}

bool pool_set_upstream_state(struct pool *p, struct upstream_conn *up, enum upstream_state to,
                             const char *reason)
{
    enum upstream_state from = up->state;
    if (!upstream_move_legal(from, to)) {
        state_illegal_move("up", up->id, upstream_state_name(from), upstream_state_name(to));
        upstream_close(up, "internal error: illegal state change");
        return false;
    }
    struct counted_list *old_list = list_of(p, from), *new_list = list_of(p, to);
    if (old_list)
        counted_list_remove(old_list, &up->pool_node);
    up->state = to;
    struct endpoint *e = up->ep;
    if (from == UPSTREAM_BUSY && e)
        e->n_busy--;
    switch (to) {
    case UPSTREAM_IDLE:
        /* Most recently used first, except after a soft cancel: other idle
         * connections go before it while its server may still be busy.
         * An agent connection that has not served a call yet goes behind
         * the proven ones too: a probe or a squatter looks just like it
         * until a call shows what it is. */
        if (up->after_cancel || (!up->ep && up->calls_served == 0))
            counted_list_push_back(new_list, &up->pool_node);
        else
            counted_list_push_front(new_list, &up->pool_node);
        up->idle_since = uv_now(p->lc->loop);
        break;
    case UPSTREAM_BUSY:
        up->after_cancel = false;
        counted_list_push_back(new_list, &up->pool_node);
        if (e)
            e->n_busy++;
        break;
    case UPSTREAM_CLOSING:
        up->close_reason = reason;
        if (from != UPSTREAM_NEW) { /* NEW was never counted */
            if (e)
                e->n_conns--;
            p->stats.conns_closed++;
        }
        break;
    default:
        if (from == UPSTREAM_NEW && e)
            e->n_conns++;
        counted_list_push_back(new_list, &up->pool_node);
        break;
    }
    log_debug("up#%llu pool=%s: %s -> %s (%s)", (unsigned long long)up->id, p->pc->name,
              upstream_state_name(from), upstream_state_name(to), reason ? reason : "-");
    if (to == UPSTREAM_IDLE || to == UPSTREAM_BUSY)
        upstream_update_reading(up);
    return true;
}

/* Gives up to a call; false when the move failed (up is closed then). */
static bool checkout(struct pool *p, struct upstream_conn *up)
{
    return pool_set_upstream_state(p, up, UPSTREAM_BUSY, "checkout");
}

/* Whether a connection may serve the call (reverse pools: the right agent). */
static bool fits(const struct upstream_conn *up, const struct call *c)
{
    return !c->agent || strcmp(c->agent, up->agent_id) == 0;
}

/*
 * Waiters that a connection being dialled, or one the pool may still dial,
 * will serve. max_waiters bounds only the calls beyond these: the ones that
 * must wait for a busy connection to be released.
 */
static uint32_t dial_slots(const struct pool *p)
{
    /* A draining process still dials for the calls it serves (serve_waiters
     * does until STOPPING), so those dials are slots too. */
    if (p->pc->reverse || p->draining || p->sc->state == SIDECAR_STOPPING)
        return 0;
    uint32_t total = pool_total(p);
    bool can_dial = total < p->pc->max_conns && pick_endpoint_peek(p, uv_now(p->lc->loop), true);
    return p->connecting.n + (can_dial ? p->pc->max_conns - total : 0);
}

/*
 * Whether an idle connection is still fit to carry a call: its peer may
 * have closed it since the loop last read it (a probe's connect and close,
 * an agent that left). Such a connection is closed, and false returned.
 */
static bool still_open(struct pool *p, struct upstream_conn *up)
{
    if (!upstream_peer_gone(up))
        return true;
    upstream_close(up, "closed by peer while idle (seen at checkout)");
    (void)p;
    return false;
}

/*
 * Reverse pools: calls waiting for one named agent are capped by
 * max_waiters_per_agent, and calls naming agents that have no connection
 * share one such allowance, so calls for absent agents cannot take every
 * place in the queue. Fails the call and returns false when it may not wait.
 */
static bool agent_may_wait(struct pool *p, struct call *c)
{
    c->waits_absent = false;
    if (!c->agent || !p->pc->reverse)
        return true;
    bool absent = pool_agent_conns(p, c->agent) == 0;
    uint32_t same = 0, cap = p->pc->max_waiters_per_agent;
    for (const struct list_node *i = p->waiters.next; i != &p->waiters && same < cap; i = i->next) {
        const struct call *w = list_entry(i, struct call, wait_node);
        if (absent ? w->waits_absent : (w->agent && strcmp(w->agent, c->agent) == 0))
            same++;
    }
    if (same < cap) {
        c->waits_absent = absent;
        return true;
    }
    char detail[320];
    if (absent) {
        snprintf(detail, sizeof(detail),
                 "%u calls already wait for agents that are not connected "
                 "(max_waiters_per_agent)",
                 same);
        call_fail(c, CALL_CAUSE_AGENT_NOT_CONNECTED, detail);
    } else {
        snprintf(detail, sizeof(detail),
                 "%u calls already wait for agent %.256s (max_waiters_per_agent)", same, c->agent);
        call_fail(c, CALL_CAUSE_POOL_EXHAUSTED, detail);
    }
    return false;
}

static void acquire(struct pool *p, struct call *c);

void pool_acquire(struct pool *p, struct call *c)
{
    p->stats.calls++;
    retry_budget_note_call(&p->retry_budget, uv_now(p->lc->loop));
    acquire(p, c);
}

void pool_retry(struct pool *p, struct call *c)
{
    p->stats.calls_retried++;
    acquire(p, c);
}

static void acquire(struct pool *p, struct call *c)
{
    if (!p->draining) {
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &p->idle.head)
        {
            struct upstream_conn *up = list_entry(n, struct upstream_conn, pool_node);
            if (!fits(up, c) || !still_open(p, up) || !checkout(p, up))
                continue;
            call_attach(c, up, CHECKOUT_IDLE);
            return;
        }
    }
    if (p->n_waiters >= p->pc->max_waiters + dial_slots(p)) {
        call_fail(c, CALL_CAUSE_POOL_EXHAUSTED, NULL);
        return;
    }
    if (!agent_may_wait(p, c))
        return;
    uint64_t now = uv_now(p->lc->loop);
    if (!p->pc->reverse && !p->draining && pool_total(p) == 0 &&
        !pick_endpoint_peek(p, now, true)) {
        /* Nothing open, nothing dialling, nothing dialable even in panic
         * mode (its last dial just failed): fail fast. */
        if (all_ejected(p, now)) {
            call_fail(c, CALL_CAUSE_NO_HEALTHY_ENDPOINT, NULL);
            return;
        }
        call_fail(c, CALL_CAUSE_DIAL_FAILED, last_dial_error(p));
        return;
    }
    list_push_back(&p->waiters, &c->wait_node);
    p->n_waiters++;
    bool dialing = !p->pc->reverse && !p->draining && p->connecting.n < p->n_waiters &&
                   pool_total(p) < p->pc->max_conns && dial_one(p, true);
    call_on_queued(c, p->pc->wait_timeout_ms ? now + p->pc->wait_timeout_ms : 0, dialing);
}

void pool_cancel_wait(struct pool *p, struct call *c)
{
    if (!list_linked(&c->wait_node))
        return;
    list_remove(&c->wait_node);
    p->n_waiters--;
}

/* Gives a ready connection to the first waiter, or parks it as idle. */
static void hand_over(struct pool *p, struct upstream_conn *up, int kind)
{
    /* A drained pool hands nothing out, even a dial that was already under
     * way. An agent's new connection stays idle for the resume, since
     * closing it would only make the agent dial again. */
    if (p->draining && !p->pc->reverse) {
        upstream_close(up, "pool draining");
        return;
    }
    if (!p->draining && !list_empty(&p->waiters) && !still_open(p, up)) {
        serve_waiters(p); /* a dialled pool dials for the waiter instead */
        return;
    }
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &p->waiters)
    {
        struct call *c = list_entry(n, struct call, wait_node);
        if (p->draining)
            break;
        if (!fits(up, c))
            continue;
        if (!checkout(p, up))
            return;
        pool_cancel_wait(p, c);
        call_attach(c, up, kind);
        return;
    }
    (void)pool_set_upstream_state(p, up, UPSTREAM_IDLE, "parked");
}

void pool_release(struct pool *p, struct upstream_conn *up, bool clean, const char *reason)
{
    uint64_t now = uv_now(p->lc->loop);
    up->call = NULL;
    up->calls_served++;
    if (!pool_set_upstream_state(p, up, UPSTREAM_RELEASED, "call ended")) {
        serve_waiters(p);
        return;
    }

    /* From RELEASED, in this same step: closed, or to a waiter or idle. */
    if (!clean)
        upstream_close(up, reason ? reason : "not clean after call");
    else if ((p->draining && !p->pc->reverse) || p->sc->state == SIDECAR_STOPPING)
        upstream_close(up, "pool draining"); /* an agent's stays idle for the resume */
    else if (p->retired && list_empty(&p->waiters))
        upstream_close(up, "pool replaced by a reload");
    else if (pool_total(p) > p->pc->max_conns) /* itself included; waiters or not: a cap */
        upstream_close(up, "pool shrunk below its open connections");
    else if (p->pc->max_lifetime_ms && now - up->created_at >= p->pc->max_lifetime_ms)
        upstream_close(up, "max_lifetime reached");
    else if (up->ep && endpoint_health(up->ep, now) == ENDPOINT_EJECTED)
        upstream_close(up, "endpoint ejected");
    else if (up->ep && endpoint_health(up->ep, now) == ENDPOINT_UNHEALTHY && any_healthy(p, now))
        upstream_close(up, "endpoint unhealthy");
    else {
        hand_over(p, up, CHECKOUT_WAITED);
        return;
    }
    serve_waiters(p);
}

void endpoint_readmit(struct pool *p, struct endpoint *e, const char *how)
{
    uint64_t now = uv_now(p->lc->loop);
    if (e->ejected_until > now) {
        e->readmissions++;
        log_info("pool %s: endpoint %s readmitted (%s)", p->pc->name, e->addr->text, how);
    }
    e->consecutive_failures = 0;
    e->failed_addrs = 0;
    e->backoff_until = 0;
    e->ejected_until = 0;
    e->last_failure_at = 0;
}

/*
 * Half-open probes: an endpoint that is out (ejected, or with failures
 * since it last connected) gets one dial when its back-off runs out, with
 * or without calls asking for it, at most one at a time. The first that
 * connects readmits it (pool_on_connected) and serves a waiter or parks.
 */
static void probe_endpoints(struct pool *p, uint64_t now)
{
    for (size_t i = 0; i < p->n_endpoints && pool_total(p) < p->pc->max_conns; i++) {
        struct endpoint *e = &p->endpoints[i];
        if (!e->consecutive_failures || now < e->backoff_until || dials_in_flight(p, e))
            continue;
        struct upstream_conn *up;
        if (upstream_dial(p, e, &up) == 0)
            e->probes++;
    }
}

void pool_on_connected(struct pool *p, struct upstream_conn *up)
{
    if (up->ep)
        endpoint_readmit(p, up->ep, "connected");
    hand_over(p, up, CHECKOUT_DIALED);
}

/* An ejected or unhealthy endpoint gets no calls while it is out, not even
 * over connections opened before it failed: they are closed. */
void pool_close_idle_of(struct pool *p, const struct endpoint *e, const char *reason)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &p->idle.head)
    {
        struct upstream_conn *up = list_entry(n, struct upstream_conn, pool_node);
        if (up->ep == e)
            upstream_close(up, reason);
    }
}

void pool_on_dial_failed(struct pool *p, struct upstream_conn *up, int status, const char *what)
{
    struct endpoint *e = up->ep;
    uint64_t now = uv_now(p->lc->loop);
    p->stats.dial_failures++;
    if (e) {
        e->dial_failures++;
        const char *tls = transport_tls_error(&up->wire); /* OpenSSL's reason */
        snprintf(e->last_error, sizeof(e->last_error), "%s %s: %s", what, e->addr->text,
                 tls ? tls : uv_strerror(status));
        /* One dead address behind a name is not a dead endpoint: the next
         * dial goes to another address at once, and the endpoint backs off
         * only when every address it resolved to has failed. Failures are
         * kept per address, so dials that hit the same one at once count
         * once. */
        if (up->dialled[0] && e->n_resolved > 1) {
            /* An address the latest answer no longer holds marks nothing. */
            int at = endpoint_find_address(e->resolved_list, e->n_resolved, up->dialled);
            if (at >= 0) {
                e->failed_addrs |= (uint8_t)(1u << at);
                e->addr_cursor = (uint32_t)at + 1;
            }
            uint8_t all = (uint8_t)((1u << e->n_resolved) - 1);
            if ((e->failed_addrs & all) != all) {
                log_info("pool %s: %s; trying its next address", p->pc->name, e->last_error);
                upstream_close(up, "dial failed");
                serve_waiters(p);
                return;
            }
        } else {
            e->addr_cursor++;
        }
        e->failed_addrs = 0;
        e->consecutive_failures++;
        e->last_failure_at = now;
        uint32_t shift = e->consecutive_failures - 1;
        if (shift > 20)
            shift = 20;
        uint64_t delay = p->pc->backoff_base_ms << shift;
        if (delay > p->pc->backoff_max_ms)
            delay = p->pc->backoff_max_ms;
        e->backoff_until = now + delay;
        if (p->pc->eject_after_failures && e->consecutive_failures >= p->pc->eject_after_failures &&
            e->ejected_until <= now) {
            e->ejected_until = now + p->pc->eject_ms;
            e->ejections++;
            log_warn("pool %s: endpoint %s ejected for %llu ms after %u failures (%s)", p->pc->name,
                     e->addr->text, (unsigned long long)p->pc->eject_ms, e->consecutive_failures,
                     e->last_error);
            pool_close_idle_of(p, e, "endpoint ejected");
        } else {
            log_warn("pool %s: %s", p->pc->name, e->last_error);
        }
    }
    upstream_close(up, "dial failed");
    serve_waiters(p);
}

void pool_on_idle_lost(struct pool *p, struct upstream_conn *up)
{
    (void)p;
    upstream_close(up, "closed by upstream while idle");
}

void pool_janitor(struct pool *p, uint64_t now)
{
    const struct config_pool *pc = p->pc;
    if (p->retired) {
        /* Waiters its agents can no longer serve go to the live pool of
         * the same name, if the config still has one. */
        struct pool *live = p->n_waiters ? sidecar_find_pool(p->sc, p->pc->name) : NULL;
        if (live && live != p)
            pool_move_waiters(p, live);
        while (list_empty(&p->waiters) && p->idle.n)
            upstream_close(
                list_entry(counted_list_first(&p->idle), struct upstream_conn, pool_node),
                "pool replaced by a reload");
        serve_waiters(p);
        return;
    }
    /* Idle connections past max_lifetime go now, not after one more call
     * (reverse pools check it at release only: an agent connection cannot
     * be dialled back). One whose peer began a frame while it idled and has
     * not finished it within dial_timeout_ms is broken or hostile, and
     * holds the frame's buffer: it goes. Those idle for a while give back
     * the buffers a big call grew. Closing an idle connection unlinks only
     * its own node. */
    bool check_age = pc->max_lifetime_ms && !pc->reverse;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &p->idle.head)
    {
        struct upstream_conn *up = list_entry(n, struct upstream_conn, pool_node);
        if (check_age && now - up->created_at >= pc->max_lifetime_ms)
            upstream_close(up, "max_lifetime reached");
        else if (up->partial_since && now - up->partial_since >= pc->dial_timeout_ms)
            upstream_close(up, "idle with an unfinished frame");
        else if (now - up->idle_since >= WIRE_TRIM_IDLE_MS)
            wire_trim(&up->wire);
    }
    /* A reload may have shrunk the pool: idle connections over the limit go first. */
    while (pool_total(p) > pc->max_conns && p->idle.n)
        upstream_close(list_entry(counted_list_last(&p->idle), struct upstream_conn, pool_node),
                       "pool shrunk by a reload");
    if (pc->reverse)
        return; /* agents dial in: nothing to dial, and closing them idle would hurt */
    if (pc->idle_timeout_ms) {
        /* From the tail, which mostly waited longest; the whole list, since
         * a soft-cancelled connection parks at the tail however young.
         * min_idle counts idle connections here as where they are dialled
         * below: counting busy ones too closed the warm ones under load,
         * then redialled. Closing one unlinks only its own node. */
        for (struct list_node *i = p->idle.head.prev, *prev;
             i != &p->idle.head && p->idle.n > pc->min_idle; i = prev) {
            prev = i->prev;
            struct upstream_conn *up = list_entry(i, struct upstream_conn, pool_node);
            if (now - up->idle_since >= pc->idle_timeout_ms)
                upstream_close(up, "idle timeout");
        }
    }
    if (!p->draining && p->sc->state == SIDECAR_RUNNING) {
        while (p->idle.n + p->connecting.n < pc->min_idle && pool_total(p) < pc->max_conns) {
            if (!dial_one(p, false))
                break;
        }
        if (pc->health_check.enabled)
            health_janitor(p, now); /* the checks are the probes */
        else
            probe_endpoints(p, now);
    }
    serve_waiters(p);
}

/*
 * Gives idle connections to the waiters they fit, in FIFO order. Needed when
 * a pool resumes: a reverse pool's agents may have dialled back while it was
 * draining, and their idle connections are all its queued calls can get
 * (there is nothing to dial).
 */
static void attach_idle_to_waiters(struct pool *p)
{
    /* Rescan after each attach: attaching may finish calls and change lists. */
    for (bool attached = true; attached && p->idle.n;) {
        attached = false;
        struct list_node *n, *tmp, *i, *itmp;
        list_for_each_safe(n, tmp, &p->waiters)
        {
            struct call *c = list_entry(n, struct call, wait_node);
            list_for_each_safe(i, itmp, &p->idle.head)
            {
                struct upstream_conn *up = list_entry(i, struct upstream_conn, pool_node);
                if (!fits(up, c))
                    continue;
                if (!still_open(p, up)) {
                    attached = true; /* the lists changed: rescan */
                    break;
                }
                if (!checkout(p, up))
                    continue;
                pool_cancel_wait(p, c);
                call_attach(c, up, CHECKOUT_WAITED);
                attached = true;
                break;
            }
            if (attached)
                break;
        }
    }
}

void pool_set_draining(struct pool *p, bool draining)
{
    p->draining = draining;
    if (draining) {
        /* Agents' idle connections stay open and unused until the resume:
         * the sidecar cannot dial an agent back, and an agent that does
         * not redial would be gone for good. */
        if (p->pc->reverse)
            return;
        while (p->idle.n) {
            struct upstream_conn *up =
                list_entry(counted_list_first(&p->idle), struct upstream_conn, pool_node);
            upstream_close(up, "pool draining");
        }
        return;
    }
    attach_idle_to_waiters(p);
    serve_waiters(p);
}

/* Whether a retired pool's own connections will serve a waiting call: a
 * reverse pool's agents still connected to it (the one the call asks for,
 * if any). A retired dialled pool's calls belong with the new endpoints,
 * and a drained pool hands nothing out. */
static bool retired_pool_serves(const struct pool *p, const struct call *c)
{
    if (p->draining || !p->pc->reverse)
        return false;
    return c->agent ? pool_agent_conns(p, c->agent) > 0 : pool_n_ready(p) > 0;
}

void pool_move_waiters(struct pool *from, struct pool *to)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &from->waiters)
    {
        struct call *c = list_entry(n, struct call, wait_node);
        if (retired_pool_serves(from, c))
            continue;
        pool_cancel_wait(from, c);
        list_push_back(&to->waiters, &c->wait_node);
        to->n_waiters++;
        to->stats.calls++;
        call_on_requeued(c, to);
    }
}

enum call_cause pool_wait_timeout_cause(const struct pool *p, const struct call *c)
{
    if (!p->pc->reverse)
        return CALL_CAUSE_WAIT_TIMEOUT;
    /* Connections still in their handshake (identify unanswered) are no
     * agent yet, and their provisional id (the IP) is not the agent's. */
    if (c->agent && pool_agent_conns(p, c->agent) == 0)
        return CALL_CAUSE_AGENT_NOT_CONNECTED;
    if (pool_n_ready(p) == 0)
        return CALL_CAUSE_NO_AGENT;
    return CALL_CAUSE_WAIT_TIMEOUT;
}

struct upstream_conn *pool_oldest_handshake(struct pool *p)
{
    struct upstream_conn *oldest = NULL;
    for (struct list_node *q = p->connecting.head.next; q != &p->connecting.head; q = q->next) {
        struct upstream_conn *up = list_entry(q, struct upstream_conn, pool_node);
        if (up->state == UPSTREAM_HANDSHAKE && (!oldest || up->created_at < oldest->created_at))
            oldest = up;
    }
    return oldest;
}

bool pool_agent_id_held_elsewhere(const struct pool *p, const char *agent_id, const char *ip)
{
    const struct list_node *lists[] = {&p->idle.head, &p->busy.head};
    for (size_t i = 0; i < 2; i++)
        for (const struct list_node *q = lists[i]->next; q != lists[i]; q = q->next) {
            const struct upstream_conn *up = list_entry(q, struct upstream_conn, pool_node);
            char other[64];
            agent_peer_ip(up->peer, other, sizeof(other));
            if (strcmp(up->agent_id, agent_id) == 0 && strcmp(other, ip) != 0)
                return true;
        }
    return false;
}

uint32_t pool_agent_conns(const struct pool *p, const char *agent_id)
{
    uint32_t n = 0;
    const struct list_node *lists[] = {&p->idle.head, &p->busy.head, &p->released.head};
    for (size_t i = 0; i < 3; i++)
        for (const struct list_node *q = lists[i]->next; q != lists[i]; q = q->next) {
            const struct upstream_conn *up = list_entry(q, struct upstream_conn, pool_node);
            if (strcmp(up->agent_id, agent_id) == 0)
                n++;
        }
    return n;
}

void pool_free(struct pool *p)
{
    health_stop(p);
    if (list_linked(&p->retired_node))
        list_remove(&p->retired_node);
    config_unref(p->cfg);
    free(p->endpoints);
    free(p);
}

void pool_destroy(struct pool *p)
{
    if (p->agents) {
        agent_listener_stop(p->agents);
        p->agents = NULL;
    }
    p->draining = true;
    health_stop(p);
    pool_fail_waiters(p, CALL_CAUSE_SHUTTING_DOWN, NULL);
    struct counted_list *lists[] = {&p->idle, &p->connecting, &p->busy, &p->released};
    for (size_t i = 0; i < 4; i++) {
        while (lists[i]->n) {
            struct upstream_conn *up =
                list_entry(counted_list_first(lists[i]), struct upstream_conn, pool_node);
            upstream_close(up, "shutting down");
        }
    }
}
