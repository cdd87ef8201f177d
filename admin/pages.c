/*
 * pages: large admin answers written a slice at a time (see pages.h).
 *
 *   pages_new --> step --> step --> ... --> step (returns 1) --> take body
 *                  |        |                |
 *                  each: at most PAGES_SLICE_ITEMS entries or until the
 *                  deadline, then back to the loop (admin.c's pump)
 *
 * A page is a `phase` number per kind plus the position inside it (an
 * index, or a list cursor). The JSON is written by a small streaming
 * writer that produces what json_dumps with ADMIN_JSON_FLAGS would: each
 * entry is built with jansson and dumped on its own, re-indented to where
 * it sits; the envelope around the entries is written here.
 */
#include "admin/pages.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/history.h"
#include "admin/metrics.h"
#include "admin/routes.h"
#include "admin/rpcs.h"
#include "admin/views.h"
#include "proxy/call.h"
#include "proxy/client.h"
#include "proxy/inspect.h"
#include "proxy/pool.h"
#include "proxy/rpc_stats.h"
#include "proxy/sidecar.h"

#define PAGES_MAX_DEPTH 6
#define PAGES_VISITS_PER_ITEM                                                                      \
    64 /* list nodes passed over (filtered out, beyond the limit) that cost one entry */

struct pages {
    struct sidecar *sc; /* asked through proxy/inspect.h */
    const struct admin *admin;
    enum pages_kind kind;
    struct pages_query q;
    struct buf body;
    int rc;         /* first error; the page is dead after one */
    unsigned phase; /* where in the document, per kind */
    uint64_t steps; /* pages_step calls so far */
    /* the step in progress */
    uint64_t deadline_ns;
    unsigned items;
    unsigned visits;
    /* the JSON writer: open containers and whether each has a child yet */
    int depth;
    bool has_child[PAGES_MAX_DEPTH + 1];
    /* /clients, /calls */
    struct inspect_walk walk; /* ends at the newest id of its start */
    uint64_t now;             /* loop time the page started: every age is as of then */
    size_t shown, total;
    /* /pools, /metrics, /rpcs, /history */
    size_t i, k;
    int family;
    bool family_started;
    const struct rpc_stats_entry **ranked; /* /rpcs: pool i's entries, busiest first */
    size_t n_ranked;
    struct history *hist; /* /history: the snapshot */
    bool in_pool, in_by_cause;
};

/* ---- the JSON writer -------------------------------------------------------- */

static void put(struct pages *pg, const char *s, size_t n)
{
    if (!pg->rc)
        pg->rc = buf_append(&pg->body, s, n);
}

static void newline(struct pages *pg, int depth)
{
    static const char spaces[] = "                ";
    put(pg, "\n", 1);
    for (int d = 0; d < depth; d++)
        put(pg, spaces, 2);
}

/* Appends text, each of its line breaks followed by the indent of depth. */
static void put_indented(struct pages *pg, const char *text, int depth)
{
    for (;;) {
        const char *nl = strchr(text, '\n');
        put(pg, text, nl ? (size_t)(nl - text) : strlen(text));
        if (!nl)
            return;
        newline(pg, depth);
        text = nl + 1;
    }
}

/* Takes v (NULL = out of memory) and appends its JSON text at depth. */
static void put_json(struct pages *pg, json_t *v, int depth)
{
    char *text = v ? json_dumps(v, ADMIN_JSON_FLAGS | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!text) {
        if (!pg->rc)
            pg->rc = UV_ENOMEM;
        return;
    }
    put_indented(pg, text, depth);
    free(text);
}

/* What comes before a member of the open container: comma, line, key. */
static void member(struct pages *pg, const char *key)
{
    if (pg->depth == 0)
        return;
    if (pg->has_child[pg->depth])
        put(pg, ",", 1);
    pg->has_child[pg->depth] = true;
    newline(pg, pg->depth);
    if (key) {
        put_json(pg, json_string(key), pg->depth);
        put(pg, ": ", 2);
    }
}

/* Opens an object ('{') or array ('['), as member key of the open object. */
static void open_container(struct pages *pg, const char *key, char bracket)
{
    member(pg, key);
    put(pg, &bracket, 1);
    if (pg->depth < PAGES_MAX_DEPTH)
        pg->has_child[++pg->depth] = false;
    else if (!pg->rc)
        pg->rc = UV_EINVAL; /* a bug, not input: the pages nest 4 deep at most */
}

static void close_container(struct pages *pg, char bracket)
{
    if (pg->has_child[pg->depth])
        newline(pg, pg->depth - 1);
    put(pg, &bracket, 1);
    pg->depth--;
}

/* Takes v and writes it as member key (NULL in an array) of the open container. */
static void value(struct pages *pg, const char *key, json_t *v)
{
    member(pg, key);
    put_json(pg, v, pg->depth);
}

/* Whether the step must end before the next entry (one entry at least). */
static bool slice_full(const struct pages *pg)
{
    if (pg->items == 0)
        return false;
    return pg->items >= PAGES_SLICE_ITEMS || uv_hrtime() >= pg->deadline_ns;
}

/* A list node looked at but not shown: every PAGES_VISITS_PER_ITEM cost an entry. */
static void visited(struct pages *pg)
{
    if (++pg->visits % PAGES_VISITS_PER_ITEM == 0)
        pg->items++;
}

/* ---- /clients and /calls ----------------------------------------------------- */

static bool call_wanted(const struct pages *pg, const struct call *c, uint64_t now)
{
    if (pg->q.has_pool && (!c->pool || strcmp(c->pool->pc->name, pg->q.pool) != 0))
        return false;
    return now - c->started_at >= pg->q.min_age_ms;
}

/* The page's next client or call, NULL at the end. */
static const void *walk_next(struct pages *pg)
{
    if (pg->kind == PAGES_CLIENTS)
        return inspect_walk_next_client(&pg->walk);
    return inspect_walk_next_call(&pg->walk);
}

/* Returns true when the list is done. */
static bool step_list(struct pages *pg)
{
    struct sidecar *sc = pg->sc;
    if (pg->phase == 0) {
        /* One clock for the whole page, so ages compare across slices
         * (the dashboard sorts calls by age). */
        pg->now = inspect_now(sc);
        if (pg->kind == PAGES_CLIENTS)
            inspect_walk_clients(sc, &pg->walk);
        else
            inspect_walk_calls(sc, &pg->walk);
        open_container(pg, NULL, '{');
        open_container(pg, pg->kind == PAGES_CLIENTS ? "clients" : "calls", '[');
        pg->phase = 1;
    }
    while (!pg->rc) {
        if (slice_full(pg))
            return false;
        const void *x = walk_next(pg);
        if (!x)
            break;
        if (pg->kind == PAGES_CALLS && !call_wanted(pg, x, pg->now)) {
            visited(pg);
            continue;
        }
        if (pg->total++ >= pg->q.limit) {
            visited(pg); /* counted, not shown */
            continue;
        }
        value(pg, NULL,
              pg->kind == PAGES_CLIENTS ? views_client(sc, x, pg->now)
                                        : views_call(sc, x, pg->now));
        pg->shown++;
        pg->items++;
    }
    inspect_walk_end(&pg->walk);
    close_container(pg, ']');
    value(pg, "total", json_integer((json_int_t)pg->total));
    value(pg, "truncated", json_boolean(pg->total > pg->q.limit));
    close_container(pg, '}');
    return true;
}

/* ---- /pools ------------------------------------------------------------------ */

static bool step_pools(struct pages *pg)
{
    struct sidecar *sc = pg->sc;
    if (pg->phase == 0) {
        open_container(pg, NULL, '{');
        open_container(pg, "pools", '[');
        pg->phase = 1;
    }
    /* By index, read again each time: a reload may replace the pools. */
    const struct pool *p;
    for (; (p = inspect_pool(sc, pg->i)) && !pg->rc; pg->i++) {
        if (slice_full(pg))
            return false;
        value(pg, NULL, views_pool(sc, p));
        pg->items++;
    }
    close_container(pg, ']');
    close_container(pg, '}');
    return true;
}

/* ---- /metrics ---------------------------------------------------------------- */

static bool step_metrics(struct pages *pg)
{
    struct sidecar *sc = pg->sc;
    if (pg->phase == 0) {
        if (!pg->rc)
            pg->rc = metrics_render_pools(sc, &pg->body);
        pg->items++;
        pg->phase = sc->rpc_stats ? 1 : 2;
    }
    const struct rpc_stats *rs = sc->rpc_stats;
    while (pg->phase == 1 && !pg->rc) {
        if (slice_full(pg))
            return false;
        if (pg->family == RPCS_FAMILIES) {
            pg->phase = 2;
            break;
        }
        if (!pg->family_started) {
            pg->rc = rpcs_metrics_family(&pg->body, pg->family);
            pg->family_started = true;
        }
        if (pg->i == rs->n_pools) {
            pg->family++;
            pg->family_started = false;
            pg->i = pg->k = 0;
            continue;
        }
        /* Entries are never removed: (pool, entry) indexes stay valid. */
        const struct rpc_stats_pool *p = rs->pools[pg->i];
        const struct rpc_stats_entry *e = rpcs_entry(p, pg->k);
        if (!e) {
            pg->i++;
            pg->k = 0;
            continue;
        }
        if (!pg->rc)
            pg->rc = rpcs_metrics_entry(&pg->body, pg->family, p, e);
        pg->k++;
        pg->items++;
    }
    if (slice_full(pg))
        return false;
    if (!pg->rc)
        pg->rc = metrics_render_process(sc, pg->admin, &pg->body);
    return true;
}

/* ---- /rpcs ------------------------------------------------------------------- */

static bool step_rpcs(struct pages *pg)
{
    struct sidecar *sc = pg->sc;
    const struct rpc_stats *rs = sc->rpc_stats;
    if (pg->phase == 0) {
        open_container(pg, NULL, '{');
        value(pg, "max_rpcs", json_integer((json_int_t)sc->cfg->metrics_max_rpcs));
        open_container(pg, "pools", '[');
        pg->phase = 1;
    }
    while (rs && pg->i < rs->n_pools && !pg->rc) {
        if (slice_full(pg))
            return false;
        const struct rpc_stats_pool *p = rs->pools[pg->i];
        if (!pg->in_pool) {
            /* Ranked once, when the pool's list starts. */
            pg->ranked = rpcs_rank(rs, p, &pg->n_ranked);
            if (!pg->ranked) {
                pg->rc = UV_ENOMEM;
                break;
            }
            open_container(pg, NULL, '{');
            value(pg, "pool", json_string(p->name));
            open_container(pg, "rpcs", '[');
            pg->in_pool = true;
            pg->k = 0;
            pg->items++;
            continue;
        }
        if (pg->k < pg->n_ranked) {
            value(pg, NULL, rpcs_entry_json(rs, pg->ranked[pg->k++]));
            pg->items++;
            continue;
        }
        close_container(pg, ']');
        close_container(pg, '}');
        free(pg->ranked);
        pg->ranked = NULL;
        pg->in_pool = false;
        pg->i++;
    }
    close_container(pg, ']');
    close_container(pg, '}');
    return true;
}

/* ---- /history ---------------------------------------------------------------- */

static bool step_history(struct pages *pg)
{
    unsigned secs = pg->q.seconds;
    if (pg->phase == 0) {
        /* A copy: the janitor may take a sample between two slices. */
        pg->hist = history_snapshot(pg->sc->history);
        json_t *head = pg->hist ? history_view_head(pg->hist, secs) : NULL;
        if (!head) {
            json_decref(head);
            pg->rc = UV_ENOMEM;
            return true;
        }
        open_container(pg, NULL, '{');
        const char *key;
        json_t *v;
        json_object_foreach(head, key, v)
        {
            value(pg, key, json_incref(v));
        }
        json_decref(head);
        pg->items++;
        pg->phase = 1;
        pg->k = 0;
    }
    while (pg->phase == 1 && !pg->rc) {
        if (slice_full(pg))
            return false;
        const char *key;
        json_t *col = history_process_column(pg->hist, secs, (unsigned)pg->k++, &key);
        if (!key) {
            open_container(pg, "pools", '[');
            pg->phase = 2;
            pg->i = 0;
            break;
        }
        value(pg, key, col);
        pg->items++;
    }
    while (pg->phase == 2 && pg->i < HISTORY_MAX_POOLS && !pg->rc) {
        if (slice_full(pg))
            return false;
        const char *name = history_slot_shown(pg->hist, secs, pg->i);
        if (!name) {
            pg->i++;
            continue;
        }
        if (!pg->in_pool) {
            open_container(pg, NULL, '{');
            value(pg, "pool", json_string(name));
            pg->in_pool = true;
            pg->k = 0;
        }
        const char *key;
        bool by_cause;
        json_t *col =
            history_pool_column(pg->hist, secs, pg->i, (unsigned)pg->k++, &key, &by_cause);
        if (!key) {
            if (pg->in_by_cause)
                close_container(pg, '}');
            close_container(pg, '}');
            pg->in_pool = pg->in_by_cause = false;
            pg->i++;
            continue;
        }
        if (by_cause && !pg->in_by_cause) {
            open_container(pg, "errors_by_cause", '{');
            pg->in_by_cause = true;
        }
        if (col || !by_cause) /* a cause that did not occur is left out */
            value(pg, key, col);
        pg->items++;
    }
    close_container(pg, ']');
    close_container(pg, '}');
    return true;
}

/* ---- the page ---------------------------------------------------------------- */

struct pages *pages_new(struct sidecar *sc, const struct admin *admin, enum pages_kind kind,
                        const struct pages_query *q)
{
    struct pages *pg = calloc(1, sizeof(*pg));
    if (!pg)
        return NULL;
    pg->sc = sc;
    pg->admin = admin;
    pg->kind = kind;
    pg->q = *q;
    return pg;
}

int pages_step(struct pages *pg, uint64_t deadline_ns)
{
    if (pg->rc)
        return pg->rc;
    pg->deadline_ns = deadline_ns;
    pg->items = 0;
    pg->steps++;
    bool done = false;
    switch (pg->kind) {
    case PAGES_CLIENTS:
    case PAGES_CALLS:
        done = step_list(pg);
        break;
    case PAGES_POOLS:
        done = step_pools(pg);
        break;
    case PAGES_METRICS:
        done = step_metrics(pg);
        break;
    case PAGES_RPCS:
        done = step_rpcs(pg);
        break;
    case PAGES_HISTORY:
        done = step_history(pg);
        break;
    }
    if (done && pg->kind != PAGES_METRICS)
        put(pg, "\n", 1); /* as the whole documents end */
    if (pg->rc) {
        inspect_walk_end(&pg->walk);
        return pg->rc;
    }
    return done ? 1 : 0;
}

void pages_take_body(struct pages *pg, struct buf *out)
{
    *out = pg->body;
    memset(&pg->body, 0, sizeof(pg->body));
}

uint64_t pages_steps(const struct pages *pg)
{
    return pg->steps;
}

void pages_free(struct pages *pg)
{
    if (!pg)
        return;
    inspect_walk_end(&pg->walk);
    buf_free(&pg->body);
    free(pg->ranked);
    free(pg->hist);
    free(pg);
}
