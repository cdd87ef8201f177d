/*
 * admin: the admin HTTP server on the data plane's loop. Connections are
 * parsed with http.c, answered by routes.c, and written back with one
 * write in flight; keep-alive and pipelining work, slow or oversized
 * requests are cut off (request_timeout_ms, 413/431), and at most
 * ADMIN_MAX_CONNS connections are served at once.
 */
#ifndef SIDECAR_ADMIN_H
#define SIDECAR_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct sidecar;
struct admin;

#define ADMIN_MAX_CONNS 64

/* Listens on sc->cfg->admin.addr. Returns 0 or a UV error with a message in err. */
__attribute__((warn_unused_result)) int admin_start(struct sidecar *sc, struct admin **out,
                                                    char *err, size_t err_size);

/* Stops listening and closes every admin connection (handles close async). */
void admin_stop(struct admin *a);

/* After the loop has run dry: frees the struct. */
void admin_free(struct admin *a);

/* POST /reload: starts a reload whose answer goes to connection conn_id. */
__attribute__((warn_unused_result)) int admin_reload(struct admin *a, uint64_t conn_id);

#endif
