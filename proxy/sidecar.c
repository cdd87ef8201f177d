/*
 * sidecar: process lifecycle around the loop.
 *
 *   RUNNING --SIGTERM/SIGINT--> DRAINING: listeners closed, idle clients
 *     closed, in-flight calls finish (clients close after their reply);
 *     after shutdown_grace_ms the rest fail with "shutting down".
 *   DRAINING --no clients, no calls--> STOPPING: pools and timers closed;
 *     uv_run returns once the last handle is closed.
 */
#include "proxy/sidecar.h"
#include "proxy/tls_ctx.h"
#include "proxy/transport_tls.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/history.h"
#include "proxy/accesslog.h"
#include "proxy/agent.h"
#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/handoff.h"
#include "proxy/listener.h"
#include "proxy/fdlimit.h"
#include "proxy/log.h"
#include "proxy/notify.h"
#include "proxy/pool.h"
#include "proxy/rpc_stats.h"

#define JANITOR_INTERVAL_MS 100

/* Closes clients that sat between calls longer than their listener allows,
 * and trims the buffers of those idle for a while. */
static void close_idle_clients(struct loop_ctx *lc, uint64_t now)
{
    struct sidecar *sc = lc->sc;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &lc->clients)
    {
        struct client_conn *cl = list_entry(n, struct client_conn, sc_node);
        uint64_t limit = cl->listener->lc->client_idle_timeout_ms;
        client_linger_check(cl, now);
        if (cl->state != CLIENT_IDLE && cl->state != CLIENT_PREFIX)
            continue;
        /* A client still taking in a reply is not idle: each look that
         * finds less left to write than the last one counts as activity. */
        size_t unwritten = wire_unwritten(&cl->wire);
        if (unwritten && unwritten != cl->unwritten_seen)
            cl->last_active = now;
        cl->unwritten_seen = unwritten;
        if (now - cl->last_active >= WIRE_TRIM_IDLE_MS)
            wire_trim(&cl->wire); /* buffers a big call grew */
        /* Draining: clients that never sent a call (just connected, or
         * taken from a listener's backlog) get a short while to send it,
         * not the whole grace period. */
        if (sc->state == SIDECAR_DRAINING && (!limit || limit > SIDECAR_DRAIN_FIRST_CALL_MS))
            limit = SIDECAR_DRAIN_FIRST_CALL_MS; /* one taking in its reply is active, above */
        if (!limit)
            continue;
        if (now - cl->last_active >= limit)
            client_close(cl, "client_idle_timeout_ms reached");
    }
}

/* The loop context's janitor timer (started by sidecar_start). Its work
 * is the loop's clients and, through the back-pointer, the process's
 * pools: with one loop per worker, each worker's janitor keeps to its own
 * clients and its own share of each pool. */
static void janitor_cb(uv_timer_t *t)
{
    struct loop_ctx *lc = t->data;
    struct sidecar *sc = lc->sc;
    uint64_t now = uv_now(lc->loop);
    for (size_t i = 0; i < sc->n_pools; i++)
        pool_janitor(sc->pools[i], now);
    history_tick(&sc->history, sc);
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &sc->retired_pools)
    {
        struct pool *p = list_entry(n, struct pool, retired_node);
        pool_janitor(p, now);
        if (pool_total(p) == 0 && p->n_waiters == 0)
            pool_free(p);
    }
    /* A walk over every client is cheap once a second, wasteful ten times. */
    if (++lc->janitor_ticks % 10 == 0 || sc->state == SIDECAR_DRAINING)
        close_idle_clients(lc, now);
    /* After a flood of clients went away, hand the freed heap back to the
     * OS (glibc keeps it otherwise), at most every ten seconds. */
    if (lc->n_clients > lc->clients_peak)
        lc->clients_peak = lc->n_clients;
    if (lc->janitor_ticks % 100 == 0 || lc->clients_peak - lc->n_clients > 1000) {
        if (lc->clients_peak > lc->n_clients + 1000)
            malloc_trim(0);
        lc->clients_peak = lc->n_clients;
    }
}

void sidecar_count_result(struct sidecar *sc, const char *pool, const char *route, int result)
{
    struct route_counter *rc;
    for (rc = sc->route_counters; rc; rc = rc->next)
        if (strcmp(rc->pool, pool) == 0 && strcmp(rc->route, route) == 0)
            break;
    if (!rc) {
        rc = calloc(1, sizeof(*rc));
        if (!rc)
            return; /* a lost sample is better than a failed call */
        snprintf(rc->pool, sizeof(rc->pool), "%s", pool);
        snprintf(rc->route, sizeof(rc->route), "%s", route);
        rc->next = sc->route_counters;
        sc->route_counters = rc;
    }
    if (result >= 0 && result < 4)
        rc->results[result]++;
}

void sidecar_retire_pool(struct sidecar *sc, struct pool *p)
{
    p->retired = true;
    if (p->agents) {
        agent_listener_stop(p->agents);
        p->agents = NULL;
    }
    list_push_back(&sc->retired_pools, &p->retired_node);
    log_info("pool %s: retired by a reload (%u connections, %u waiting calls)", p->pc->name,
             pool_total(p), p->n_waiters);
    /* Nothing can resume a drained pool that left the config: its waiters
     * would wait for ever (or their timeout). */
    if (p->draining && p->n_waiters)
        pool_fail_waiters(p, CALL_CAUSE_NO_ROUTE, "its pool was removed by a reload while drained");
    pool_janitor(p, uv_now(sc->lc->loop));
}

static void stop_everything(struct sidecar *sc)
{
    if (sc->state == SIDECAR_STOPPING)
        return;
    sc->state = SIDECAR_STOPPING;
    log_info("shutdown: closing upstream connections");
    handoff_stop(sc);
    for (size_t i = 0; i < sc->n_pools; i++)
        pool_destroy(sc->pools[i]);
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &sc->retired_pools)
    {
        pool_destroy(list_entry(n, struct pool, retired_node));
    }
    sc->handles_open = false;
    uv_close((uv_handle_t *)&sc->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&sc->sig_term, NULL);
    uv_close((uv_handle_t *)&sc->sig_int, NULL);
    uv_close((uv_handle_t *)&sc->sig_hup, NULL);
    uv_close((uv_handle_t *)&sc->sig_usr1, NULL);
    accesslog_close(sc->accesslog);
    sc->accesslog = NULL;
    loop_ctx_close(sc->lc); /* run_loop returns: main.c stops the admin server */
}

static void shutdown_timer_cb(uv_timer_t *t)
{
    struct sidecar *sc = t->data;
    if (sc->state != SIDECAR_DRAINING)
        return;
    struct loop_ctx *lc = sc->lc;
    if (lc->n_calls == 0 && lc->n_clients == 0) {
        stop_everything(sc);
        return;
    }
    if (!sc->draining_deadline_passed) {
        /* Grace is over: fail what is left. */
        sc->draining_deadline_passed = true;
        log_warn("shutdown: grace period over, failing %u calls", lc->n_calls);
        while (!list_empty(&lc->calls)) {
            struct call *c = list_entry(list_first(&lc->calls), struct call, sc_node);
            call_fail(c, CALL_CAUSE_SHUTTING_DOWN, NULL);
        }
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &lc->clients)
        {
            struct client_conn *cl = list_entry(n, struct client_conn, sc_node);
            client_drain_and_close(cl, "shutting down");
        }
        /* Clients still flushing get a last second, then go. */
        uv_timer_start(&sc->shutdown_timer, shutdown_timer_cb, 1000, 0);
        return;
    }
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &lc->clients)
    {
        client_close(list_entry(n, struct client_conn, sc_node), "shutting down");
    }
}

void sidecar_maybe_finish_drain(struct sidecar *sc)
{
    if (sc->state != SIDECAR_DRAINING || sc->lc->n_calls || sc->lc->n_clients)
        return;
    /* Finish from the loop, not from deep inside a callback. */
    uv_timer_start(&sc->shutdown_timer, shutdown_timer_cb, 0, 0);
}

void sidecar_shutdown(struct sidecar *sc, const char *why)
{
    if (sc->state != SIDECAR_RUNNING)
        return;
    sc->state = SIDECAR_DRAINING;
    /* Ask systemd for the whole grace plus a margin, so a grace longer than
     * the unit's TimeoutStopSec does not end in SIGKILL mid-call. */
    char stopping[96];
    snprintf(stopping, sizeof(stopping), "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu",
             (unsigned long long)(sc->cfg->shutdown_grace_ms + 5000) * 1000);
    notify_send(stopping);
    log_info("shutdown (%s): draining %u clients, %u calls, grace %llu ms", why, sc->lc->n_clients,
             sc->lc->n_calls, (unsigned long long)sc->cfg->shutdown_grace_ms);
    /* Idle clients go now, except those that never sent a call (just
     * connected: their first call is likely on its way and a close would
     * reset it) and those with part of a call read. They get
     * SIDECAR_DRAIN_FIRST_CALL_MS to send it (see close_idle_clients) and are
     * closed after it. With a successor process, all of them go to it. */
    handoff_pass_idle_clients(sc);
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &sc->lc->clients)
    {
        struct client_conn *cl = list_entry(n, struct client_conn, sc_node);
        bool partial = cl->wire.in.len || cl->wire.cutting || cl->invoke.len || cl->meta.len;
        if ((cl->state == CLIENT_IDLE || cl->state == CLIENT_PREFIX) && cl->calls > 0 && !partial)
            client_close_after_reply(cl, "shutting down");
    }
    /* Calls still starting (their request has not flowed yet) get as long
     * as a first call. */
    list_for_each_safe(n, tmp, &sc->lc->calls)
    {
        call_on_drain(list_entry(n, struct call, sc_node));
    }
    /* Then stop the listeners: what they still had queued is accepted and
     * served one call (see listener_stop). Stopped listeners free
     * themselves: forget them here. */
    for (size_t i = 0; i < sc->n_listeners; i++)
        listener_stop(sc->listeners[i], true);
    sc->n_listeners = 0;
    uv_timer_start(&sc->shutdown_timer, shutdown_timer_cb, sc->cfg->shutdown_grace_ms, 0);
    sidecar_maybe_finish_drain(sc);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    struct sidecar *sc = s->data;
    if (signum == SIGUSR1) {
        log_info("SIGUSR1: reopening the access log");
        accesslog_reopen(sc->accesslog);
        return;
    }
    if (signum == SIGHUP) {
        int rc = reload_start(sc, NULL, NULL);
        if (rc == UV_EBUSY) {
            /* The running reload may have read the file before this edit:
             * read it once more when it is done (reload.c load_done). */
            sc->reload_again = true;
            log_info("SIGHUP: a reload is running; another follows it");
        } else if (rc) {
            log_warn("SIGHUP: reload not started: %s", uv_strerror(rc));
        }
        return;
    }
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (sc->state == SIDECAR_RUNNING) {
        sc->signalled_stop = true;
        sidecar_shutdown(sc, name);
        return;
    }
    if (!sc->signalled_stop) {
        /* POST /drain came first (a preStop hook, then the kubelet's or
         * systemd's SIGTERM): this is the first signal, not an impatient
         * second one, so the grace period stands. */
        sc->signalled_stop = true;
        log_info("%s: already draining; a second signal ends the grace period", name);
        return;
    }
    /* A second signal: stop waiting for the grace period. */
    if (sc->state == SIDECAR_DRAINING && !sc->draining_deadline_passed)
        uv_timer_start(&sc->shutdown_timer, shutdown_timer_cb, 0, 0);
}

int sidecar_start(struct sidecar *sc, uv_loop_t *loop, struct config *cfg, char *err,
                  size_t err_size)
{
    sc->cfg = cfg;
    sc->state = SIDECAR_RUNNING;
    fdlimit_check(&sc->fds, cfg);
    list_init(&sc->retired_pools);
    sc->lc = calloc(1, sizeof(*sc->lc));
    if (!sc->lc) {
        snprintf(err, err_size, "out of memory");
        return UV_ENOMEM;
    }
    loop_ctx_init(sc->lc, loop, sc);
    uv_update_time(loop);
    sc->started_at = uv_now(loop);
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    sc->started_wall_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    log_set_level(cfg->log_level);
    /* The TLS contexts of the snapshot; a reload builds the next ones off
     * the loop (reload.c). */
    int tls_rc = sc->tls ? 0 : tls_ctx_set_build(cfg, &sc->tls, err, err_size);
    if (tls_rc)
        return tls_rc;
    tls_stats_register(&sc->tls_stats, cfg);

    uv_timer_init(loop, &sc->shutdown_timer);
    sc->shutdown_timer.data = sc;
    uv_signal_init(loop, &sc->sig_term);
    sc->sig_term.data = sc;
    uv_signal_init(loop, &sc->sig_int);
    sc->sig_int.data = sc;
    uv_signal_init(loop, &sc->sig_hup);
    sc->sig_hup.data = sc;
    uv_signal_init(loop, &sc->sig_usr1);
    sc->sig_usr1.data = sc;
    sc->handles_open = true;
    /* Signals first: a SIGTERM that arrives once a listener is open must
     * drain, not kill the process with the default action. */
    uv_signal_start(&sc->sig_term, signal_cb, SIGTERM);
    uv_signal_start(&sc->sig_int, signal_cb, SIGINT);
    uv_signal_start(&sc->sig_hup, signal_cb, SIGHUP);
    uv_signal_start(&sc->sig_usr1, signal_cb, SIGUSR1);
    if (cfg->access_log.enabled) {
        int rc = accesslog_open(loop, &cfg->access_log, &sc->accesslog, err, err_size);
        if (rc)
            return rc;
    }

    sc->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(*sc->pools));
    sc->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*sc->listeners));
    if (!sc->pools || !sc->listeners) {
        snprintf(err, err_size, "out of memory");
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_pools; i++) {
        int rc = pool_create(sc, cfg, i, &sc->pools[i]);
        if (rc) {
            snprintf(err, err_size, "pool %s: %s", cfg->pools[i].name, uv_strerror(rc));
            return rc;
        }
        sc->n_pools++;
        if (cfg->pools[i].reverse) {
            rc = agent_listener_start(sc->pools[i], &sc->pools[i]->agents, err, err_size);
            if (rc)
                return rc;
        }
    }
    handoff_start(sc); /* before the listeners: it may bring unix sockets */
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        int rc = listener_start(sc, &cfg->listeners[i], &sc->listeners[i], err, err_size);
        if (rc)
            return rc;
        sc->n_listeners++;
    }
    uv_timer_start(&sc->lc->janitor, janitor_cb, 0, JANITOR_INTERVAL_MS);
    return 0;
}

void sidecar_ready(struct sidecar *sc)
{
    sidecar_steer_connections_here(sc);
    /* Listeners are open: tell systemd (Type=notify) we are ready. */
    notify_send("READY=1\nSTATUS=serving");
}

void sidecar_abort_start(struct sidecar *sc)
{
    for (size_t i = 0; i < sc->n_pools; i++)
        if (sc->pools[i]->agents) {
            agent_listener_stop(sc->pools[i]->agents);
            sc->pools[i]->agents = NULL;
        }
    for (size_t i = 0; i < sc->n_listeners; i++)
        listener_stop(sc->listeners[i], false);
    sc->n_listeners = 0;
    if (sc->handles_open)
        stop_everything(sc);
    if (sc->lc)
        uv_run(sc->lc->loop, UV_RUN_DEFAULT);
}

void sidecar_free(struct sidecar *sc)
{
    for (size_t i = 0; i < sc->n_pools; i++)
        pool_free(sc->pools[i]);
    while (!list_empty(&sc->retired_pools))
        pool_free(list_entry(list_first(&sc->retired_pools), struct pool, retired_node));
    free(sc->pools);
    free(sc->listeners);
    handoff_free(sc);
    while (sc->route_counters) {
        struct route_counter *next = sc->route_counters->next;
        free(sc->route_counters);
        sc->route_counters = next;
    }
    rpc_stats_free(sc->rpc_stats);
    history_free(sc->history);
    free(sc->lc);
    tls_ctx_set_free(sc->tls);
    sc->tls = NULL;
    tls_stats_free(sc->tls_stats);
    sc->tls_stats = NULL;
    transport_tls_cleanup();
    config_unref(sc->cfg);
}

struct pool *sidecar_find_pool(struct sidecar *sc, const char *name)
{
    for (size_t i = 0; i < sc->n_pools; i++)
        if (strcmp(sc->pools[i]->pc->name, name) == 0)
            return sc->pools[i];
    return NULL;
}

void sidecar_steer_connections_here(struct sidecar *sc)
{
    for (size_t i = 0; i < sc->n_listeners; i++)
        listener_steer_here(sc->listeners[i]);
    for (size_t i = 0; i < sc->n_pools; i++)
        agent_listener_steer_here(sc->pools[i]->agents);
}
