/*
 * admin: the admin HTTP server. main.c starts it beside the data plane
 * (on the same loop today) and stops it once the data plane has stopped.
 * It answers from the live objects (routes.c, views.c, metrics.c), which
 * it reaches through proxy/inspect.h.
 *
 * It must never hurt the data plane: at most ADMIN_MAX_CONNS connections
 * are served, requests are answered a few per loop iteration, large pages
 * are written a slice per iteration (pages.h) within a time budget per
 * iteration, every size is capped (http.h), and a client that does not
 * finish its request (or does not read its answer) within
 * admin.request_timeout_ms is closed.
 */
#ifndef SIDECAR_ADMIN_H
#define SIDECAR_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sidecar;
struct admin;

#define ADMIN_MAX_CONNS 64

/* The admin server's own numbers (rows of METRICS_ADMIN). */
struct admin_stats {
    uint64_t connections; /* open now */
    uint64_t requests;    /* answered */
    uint64_t rejected;    /* connections refused over ADMIN_MAX_CONNS */
    uint64_t timeouts;    /* connections closed by request_timeout_ms */
    uint64_t slices;      /* slices written of large answers (admin/pages.h) */
};

/* Listens on sc->cfg->admin.addr, on loop. Returns 0 or a UV error with a
 * message in err. Even on failure *out may be set: admin_stop and
 * admin_free it then. */
__attribute__((warn_unused_result)) int admin_start(struct sidecar *sc, uv_loop_t *loop,
                                                    struct admin **out, char *err, size_t err_size);

/* Stops listening and closes every admin connection (handles close async).
 * Idempotent. */
void admin_stop(struct admin *a);

/* The admin port takes every new connection of its SO_REUSEPORT group from
 * now on (see proxy/reuseport.h). Called once the process is started. */
void admin_steer_here(struct admin *a);

/* After the loop has run dry: frees the struct. */
void admin_free(struct admin *a);

/* POST /reload: starts a reload whose answer goes to connection conn_id
 * later. 0, UV_EBUSY (one is running) or another UV error. */
__attribute__((warn_unused_result)) int admin_reload(struct admin *a, uint64_t conn_id);

/* NULL when a is NULL (no admin server, as in the fuzzer). */
const struct admin_stats *admin_get_stats(const struct admin *a);

#endif
