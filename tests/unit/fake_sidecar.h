/*
 * fake_sidecar: a struct sidecar for driving the admin routes without a
 * running data plane (tests/unit/test_admin_http.c, tests/fuzz/fuzz_http.c,
 * tests/fuzz/fuzz_rpc_stats.c).
 *
 * Built from a config string: one pool object per configured pool, made by
 * hand (no pool_create, so nothing dials, resolves or starts a timer), with
 * empty connection and waiter lists; no listeners, clients or calls. Its
 * loop holds only the shutdown timer (so POST /drain can run the real
 * sidecar_shutdown); the loop must not run while it is armed, since its
 * callback would stop handles the fake never opened. fake_sidecar_free()
 * closes it, and uv_loop_close() succeeds after that. The mutations reach
 * the real pool_set_draining / sidecar_shutdown, which find nothing to do.
 */
#ifndef SIDECAR_TESTS_FAKE_SIDECAR_H
#define SIDECAR_TESTS_FAKE_SIDECAR_H

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/history.h"
#include "config/config.h"
#include "proxy/list.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/rpc_stats.h"
#include "proxy/sidecar.h"

static inline struct sidecar *fake_sidecar_new(uv_loop_t *loop, const char *config_json)
{
    struct config *cfg = NULL;
    struct config_error err;
    memset(&err, 0, sizeof(err));
    if (config_parse(config_json, strlen(config_json), "fake", &cfg, &err) != 0)
        return NULL;
    struct sidecar *sc = calloc(1, sizeof(*sc));
    if (!sc)
        abort();
    sc->loop = loop;
    sc->cfg = cfg;
    sc->state = SIDECAR_RUNNING;
    list_init(&sc->clients);
    list_init(&sc->calls);
    list_init(&sc->flush_list);
    list_init(&sc->retired_pools);
    sc->started_at = uv_now(loop);
    sc->started_wall_ms = 1795000000000ull; /* 2026-11-18T11:06:40.000Z */
    uv_timer_init(loop, &sc->shutdown_timer);
    sc->shutdown_timer.data = sc;
    sc->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(*sc->pools));
    if (!sc->pools)
        abort();
    for (size_t i = 0; i < cfg->n_pools; i++) {
        struct pool *p = calloc(1, sizeof(*p));
        if (!p)
            abort();
        p->sc = sc;
        p->cfg = cfg;
        p->pc = &cfg->pools[i];
        p->index = i;
        counted_list_init(&p->connecting);
        counted_list_init(&p->idle);
        counted_list_init(&p->busy);
        counted_list_init(&p->released);
        list_init(&p->waiters);
        list_init(&p->retired_node);
        p->n_endpoints = p->pc->n_endpoints;
        p->endpoints = calloc(p->n_endpoints ? p->n_endpoints : 1, sizeof(*p->endpoints));
        if (!p->endpoints)
            abort();
        for (size_t k = 0; k < p->n_endpoints; k++) {
            p->endpoints[k].pool = p;
            p->endpoints[k].index = k;
            p->endpoints[k].addr = &p->pc->endpoints[k];
        }
        sc->pools[sc->n_pools++] = p;
    }
    return sc;
}

static inline void fake_sidecar_free(struct sidecar *sc)
{
    uv_close((uv_handle_t *)&sc->shutdown_timer, NULL);
    uv_run(sc->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < sc->n_pools; i++) {
        free(sc->pools[i]->endpoints);
        free(sc->pools[i]);
    }
    free(sc->pools);
    while (sc->route_counters) {
        struct route_counter *next = sc->route_counters->next;
        free(sc->route_counters);
        sc->route_counters = next;
    }
    rpc_stats_free(sc->rpc_stats);
    history_free(sc->history);
    config_unref(sc->cfg);
    free(sc);
}

/* For fuzz targets: one fake sidecar for the whole run, on a loop of its
 * own, built on the first call (later calls return it whatever config_json
 * says); aborts if it cannot be built. Logs errors only. */
static inline struct sidecar *fake_sidecar_once(const char *config_json)
{
    static uv_loop_t loop;
    static struct sidecar *sc;
    if (!sc) {
        log_set_level(CONFIG_LOG_ERROR);
        if (uv_loop_init(&loop) != 0)
            abort();
        sc = fake_sidecar_new(&loop, config_json);
        if (!sc)
            abort();
    }
    return sc;
}

#endif
