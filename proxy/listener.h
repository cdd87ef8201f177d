/*
 * listener: a TCP or unix socket where local applications connect.
 */
#ifndef SIDECAR_LISTENER_H
#define SIDECAR_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/handle.h"

struct sidecar;
struct loop_ctx;
struct config_listener;

/*
 * Lifetime: clients point at their listener, so a stopped listener is
 * freed only once its handle is closed and its last client is gone. It
 * holds a reference on the config snapshot its lc points into.
 */
struct listener {
    struct sidecar *sc;
    struct loop_ctx *loop_ctx;        /* the loop its clients live on */
    struct config *cfg;               /* ref held */
    const struct config_listener *lc; /* in cfg */
    union stream_handle h;
    bool open;
    bool handle_closed;
    uint32_t n_clients;
    uint64_t accepted;
    uint64_t rejected; /* closed at accept: over max_clients */
};

/* Binds and listens. Returns 0 or a UV error with a message in err. */
__attribute__((warn_unused_result)) int listener_start(struct sidecar *sc,
                                                       const struct config_listener *lc,
                                                       struct listener **out, char *err,
                                                       size_t err_size);

/* A TCP listener with reuse_port takes every new connection of its port
 * from now on (see reuseport.h). Called once the process is started. */
void listener_steer_here(struct listener *l);

/* Stops accepting; freed once the handle is closed and no client is left.
 * With serve_queued, connections already queued on the socket are taken
 * and served (an upgrade's old process, a drain); a start that failed
 * closes with them, unanswered, so the process can exit. */
void listener_stop(struct listener *l, bool serve_queued);

/* A client of l closed. */
void listener_client_gone(struct listener *l);

#endif
