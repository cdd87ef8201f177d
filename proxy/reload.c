/* reload: config hot reload (see reload.h). */
#include "proxy/reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "config/config_tls.h"
#include "proxy/agent.h"
#include "proxy/listener.h"
#include "proxy/fdlimit.h"
#include "proxy/log.h"
#include "proxy/notify.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"
#include "proxy/tls_ctx.h"

/* The threadpool job: owned by the sidecar's reload slot while it runs. */
struct reload_job {
    uv_work_t work;
    struct sidecar *sc;
    char *path;
    struct config *cfg;
    struct tls_ctx_set *tls; /* built from cfg in the job, like cfg */
    int status;
    char error[1024];
    reload_done_cb cb;
    void *arg;
};

static void load_work(uv_work_t *w)
{
    struct reload_job *job = w->data;
    struct config_error cerr;
    memset(&cerr, 0, sizeof(cerr));
    job->status = config_load(job->path, &job->cfg, &cerr);
    if (job->status != 0) {
        config_error_format(&cerr, job->error, sizeof(job->error));
        config_tls_thread_done();
        return;
    }
    /* Every certificate, key and CA file was read again by config_load:
     * new connections use them as soon as the snapshot is applied. */
    job->status = tls_ctx_set_build(job->cfg, &job->tls, job->error, sizeof(job->error));
    if (job->status != 0) {
        config_unref(job->cfg);
        job->cfg = NULL;
    }
    config_tls_thread_done();
}

static bool same_text(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* A pool keeps its live object (and connections) when it still dials the
 * same endpoints the same way, or accepts agents on the same address. */
static bool pool_compatible(const struct config_pool *a, const struct config_pool *b)
{
    /* Plaintext idle connections must never be reused as TLS ones. */
    if (a->reverse != b->reverse || a->header != b->header || a->tls.enabled != b->tls.enabled ||
        a->accept_tls.enabled != b->accept_tls.enabled)
        return false;
    if (a->reverse)
        return same_text(a->accept.text, b->accept.text) &&
               same_text(a->identify_rpc, b->identify_rpc);
    if (a->n_endpoints != b->n_endpoints)
        return false;
    for (size_t i = 0; i < a->n_endpoints; i++)
        if (!same_text(a->endpoints[i].text, b->endpoints[i].text))
            return false;
    return true;
}

static struct listener *find_listener(struct sidecar *sc, const struct config_listener *lc)
{
    for (size_t i = 0; i < sc->n_listeners; i++) {
        struct listener *l = sc->listeners[i];
        if (strcmp(l->lc->name, lc->name) == 0 && strcmp(l->lc->addr.text, lc->addr.text) == 0)
            return l;
    }
    return NULL;
}

/* Points a kept pool at its entry in the new snapshot. */
static void repoint_pool(struct pool *p, struct config *cfg, size_t index)
{
    config_unref(p->cfg);
    p->cfg = config_ref(cfg);
    p->pc = &cfg->pools[index];
    p->index = index;
    for (size_t i = 0; i < p->n_endpoints; i++)
        p->endpoints[i].addr = &p->pc->endpoints[i];
}

static void repoint_listener(struct listener *l, struct config *cfg, size_t index)
{
    config_unref(l->cfg);
    l->cfg = config_ref(cfg);
    l->lc = &cfg->listeners[index];
}

/*
 * Applies cfg (and its TLS contexts) to the live sidecar, or leaves
 * everything as it was and returns an error. Takes over the caller's
 * reference on cfg and tls either way.
 */
static int apply(struct sidecar *sc, struct config *cfg, struct tls_ctx_set *tls, char *err,
                 size_t err_size)
{
    const struct config *old = sc->cfg;
    if (old->admin.enabled != cfg->admin.enabled ||
        (cfg->admin.enabled && !same_text(old->admin.addr.text, cfg->admin.addr.text))) {
        snprintf(err, err_size,
                 "admin.address or admin.enabled changed: restart drpc-sidecar to apply it");
        config_unref(cfg);
        tls_ctx_set_free(tls);
        return UV_EINVAL;
    }

    /* The access log is opened once at start (accesslog_open): a changed
     * one would be silently ignored, so say it needs a restart. */
    if (old->access_log.enabled != cfg->access_log.enabled ||
        (cfg->access_log.enabled && (!same_text(old->access_log.path, cfg->access_log.path) ||
                                     old->access_log.format != cfg->access_log.format))) {
        snprintf(err, err_size, "access_log changed: restart drpc-sidecar to apply it");
        config_unref(cfg);
        tls_ctx_set_free(tls);
        return UV_EINVAL;
    }

    /* A kept listener keeps its socket: settings made when it was bound
     * cannot change under it, and saying "reloaded" would be a lie. */
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct listener *l = find_listener(sc, &cfg->listeners[i]);
        if (!l)
            continue;
        const struct config_listener *now = l->lc, *next = &cfg->listeners[i];
        bool tcp = next->addr.kind == CONFIG_ADDR_TCP;
        const char *what = tcp && now->reuse_port != next->reuse_port  ? "reuse_port"
                           : !tcp && now->unix_mode != next->unix_mode ? "mode"
                                                                       : NULL;
        if (what) {
            snprintf(err, err_size,
                     "listeners[%zu].%s changed on a bound listener: restart drpc-sidecar to "
                     "apply it",
                     i, what);
            config_unref(cfg);
            tls_ctx_set_free(tls);
            return UV_EINVAL;
        }
    }

    struct listener **listeners =
        calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*listeners));
    struct pool **pools = calloc(cfg->n_pools, sizeof(*pools));
    bool *kept_pool = calloc(sc->n_pools ? sc->n_pools : 1, sizeof(*kept_pool));
    bool *fresh_listener = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(bool));
    bool *fresh_pool = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(bool));
    int rc = 0;
    if (!listeners || !pools || !kept_pool || !fresh_listener || !fresh_pool) {
        snprintf(err, err_size, "out of memory");
        rc = UV_ENOMEM;
        goto fail;
    }

    /* Pools first: a rebuilt reverse pool must release its port early. */
    for (size_t i = 0; i < cfg->n_pools; i++) {
        struct pool *p = sidecar_find_pool(sc, cfg->pools[i].name);
        if (p && pool_compatible(p->pc, &cfg->pools[i])) {
            pools[i] = p;
            kept_pool[p->index] = true;
            continue;
        }
        /* The new pool is built on the new snapshot: point sc->cfg at it
         * while creating so the pool holds the right reference. */
        rc = pool_create(sc, cfg, i, &pools[i]);
        if (rc) {
            snprintf(err, err_size, "pool %s: %s", cfg->pools[i].name, uv_strerror(rc));
            goto fail;
        }
        fresh_pool[i] = true;
        /* An operator's drain outlives the rebuild: only resume ends it. */
        if (p && p->draining)
            pools[i]->draining = true;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct listener *l = find_listener(sc, &cfg->listeners[i]);
        if (l) {
            listeners[i] = l;
            continue;
        }
        /* listener_start refs sc->cfg: build it against the new snapshot. */
        struct config *cur = sc->cfg;
        sc->cfg = cfg;
        rc = listener_start(sc, &cfg->listeners[i], &listeners[i], err, err_size);
        sc->cfg = cur;
        if (rc)
            goto fail;
        fresh_listener[i] = true;
    }
    /* Retired reverse pools give up their agent port before new ones bind. */
    for (size_t i = 0; i < sc->n_pools; i++)
        if (!kept_pool[i] && sc->pools[i]->agents) {
            agent_listener_stop(sc->pools[i]->agents);
            sc->pools[i]->agents = NULL;
        }
    for (size_t i = 0; i < cfg->n_pools; i++) {
        if (fresh_pool[i] && cfg->pools[i].reverse) {
            rc = agent_listener_start(pools[i], &pools[i]->agents, err, err_size);
            if (rc)
                goto fail_late;
        }
    }

    /* Commit: nothing below can fail. */
    for (size_t i = 0; i < sc->n_listeners; i++) {
        struct listener *l = sc->listeners[i];
        bool kept = false;
        for (size_t j = 0; j < cfg->n_listeners; j++)
            if (listeners[j] == l) {
                repoint_listener(l, cfg, j);
                kept = true;
            }
        if (!kept)
            listener_stop(l, true);
    }
    for (size_t i = 0; i < sc->n_pools; i++) {
        struct pool *p = sc->pools[i];
        if (kept_pool[i])
            continue;
        /* Waiting calls go to the successor unless the retired pool's own
         * agents will serve them (pool_move_waiters): a retired dialled
         * pool would keep dialling the old endpoints, and a drained one
         * hands nothing out, while the successor keeps the drain until a
         * resume reaches it. */
        for (size_t j = 0; j < cfg->n_pools; j++)
            if (fresh_pool[j] && strcmp(cfg->pools[j].name, p->pc->name) == 0)
                pool_move_waiters(p, pools[j]);
        sidecar_retire_pool(sc, p);
    }
    for (size_t i = 0; i < cfg->n_pools; i++)
        if (!fresh_pool[i])
            repoint_pool(pools[i], cfg, i);
    free(sc->listeners);
    free(sc->pools);
    sc->listeners = listeners;
    sc->n_listeners = cfg->n_listeners;
    sc->pools = pools;
    sc->n_pools = cfg->n_pools;
    config_unref(sc->cfg);
    sc->cfg = cfg;
    /* Established TLS connections keep their SSL (and its context
     * reference): only new ones see the new material. */
    tls_ctx_set_free(sc->tls);
    sc->tls = tls;
    tls_stats_register(&sc->tls_stats, cfg);
    log_set_level(sc->verbose ? CONFIG_LOG_DEBUG : cfg->log_level);
    fdlimit_check(&sc->fds, cfg);
    sidecar_steer_connections_here(sc);
    free(kept_pool);
    free(fresh_listener);
    free(fresh_pool);
    /* Let pools converge to their new sizes now rather than at the next tick. */
    uint64_t now = uv_now(sc->lc->loop);
    for (size_t i = 0; i < sc->n_pools; i++)
        pool_janitor(sc->pools[i], now);
    return 0;

fail_late:
    /* Agent ports of retired pools were released: take them back, once the
     * new pools that already bound them (a rebuilt pool on the same
     * address) have let go. */
    for (size_t i = 0; i < cfg->n_pools; i++)
        if (fresh_pool[i] && pools[i]->agents) {
            agent_listener_stop(pools[i]->agents);
            pools[i]->agents = NULL;
        }
    for (size_t i = 0; i < sc->n_pools; i++) {
        struct pool *p = sc->pools[i];
        if (!kept_pool[i] && p->pc->reverse && !p->agents) {
            char ignored[256];
            if (agent_listener_start(p, &p->agents, ignored, sizeof(ignored)) != 0)
                log_error("reload: could not re-open %s: %s", p->pc->accept.text, ignored);
        }
    }
fail:
    if (listeners)
        for (size_t i = 0; i < cfg->n_listeners; i++)
            if (fresh_listener && fresh_listener[i] && listeners[i])
                listener_stop(listeners[i], true);
    if (pools)
        for (size_t i = 0; i < cfg->n_pools; i++)
            if (fresh_pool && fresh_pool[i] && pools[i])
                sidecar_retire_pool(sc, pools[i]);
    free(listeners);
    free(pools);
    free(kept_pool);
    free(fresh_listener);
    free(fresh_pool);
    config_unref(cfg);
    tls_ctx_set_free(tls);
    return rc ? rc : UV_EINVAL;
}

static void load_done(uv_work_t *w, int status)
{
    struct reload_job *job = w->data;
    struct sidecar *sc = job->sc;
    struct reload_status *st = &sc->last_reload;
    sc->reload_running = false;
    int rc = status ? status : job->status;
    char err[1024];
    snprintf(err, sizeof(err), "%s", job->error);
    if (rc == 0 && sc->state != SIDECAR_RUNNING) {
        config_unref(job->cfg);
        tls_ctx_set_free(job->tls);
        snprintf(err, sizeof(err), "shutting down");
        rc = UV_ECANCELED;
    } else if (rc == 0) {
        rc = apply(sc, job->cfg, job->tls, err, sizeof(err));
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    st->attempted = true;
    st->at_wall_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    st->ok = rc == 0;
    if (rc == 0) {
        st->count++;
        st->ok_wall_ms = st->at_wall_ms;
        st->error[0] = '\0';
        log_info("reload: applied %s (%zu listeners, %zu pools, %zu routes)", job->path,
                 sc->cfg->n_listeners, sc->cfg->n_pools, sc->cfg->n_routes);
        config_tls_warnings(sc->cfg, log_warn_text, NULL);
    } else {
        st->failures++;
        snprintf(st->error, sizeof(st->error), "%s", err);
        log_error("reload: refused, keeping the running config: %s", err);
    }
    notify_send(rc == 0 ? "READY=1\nSTATUS=serving (reloaded)" : "READY=1\nSTATUS=reload refused");
    if (job->cb)
        job->cb(sc, rc, rc ? err : NULL, job->arg);
    free(job->path);
    free(job);
    if (sc->reload_again) {
        sc->reload_again = false;
        int again = reload_start(sc, NULL, NULL);
        if (again && again != UV_ECANCELED)
            log_warn("SIGHUP: queued reload not started: %s", uv_strerror(again));
    }
}

int reload_start(struct sidecar *sc, reload_done_cb cb, void *arg)
{
    if (sc->reload_running)
        return UV_EBUSY;
    if (sc->state != SIDECAR_RUNNING || !sc->config_path)
        return UV_ECANCELED;
    struct reload_job *job = calloc(1, sizeof(*job));
    if (!job)
        return UV_ENOMEM;
    job->path = strdup(sc->config_path);
    if (!job->path) {
        free(job);
        return UV_ENOMEM;
    }
    job->sc = sc;
    job->cb = cb;
    job->arg = arg;
    job->work.data = job;
    /* uv_hrtime is CLOCK_MONOTONIC, which is what systemd expects here. */
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)(uv_hrtime() / 1000));
    notify_send(msg);
    int rc = uv_queue_work(sc->lc->loop, &job->work, load_work, load_done);
    if (rc) {
        notify_send("READY=1"); /* systemd must not wait for a reload that never ran */
        free(job->path);
        free(job);
        return rc;
    }
    sc->reload_running = true;
    return 0;
}
