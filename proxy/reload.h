/*
 * reload: swaps in a new config snapshot without dropping anything.
 *
 *   SIGHUP / POST /reload
 *      --> config_load() on the libuv threadpool (file I/O off the loop)
 *      --> on the loop: validate what only the live state can tell (binds,
 *          admin address), then swap: listeners and pools are matched by
 *          name; unchanged ones are re-pointed at the new snapshot, new
 *          ones start, removed or rebuilt pools retire (they finish their
 *          calls and close their connections as those calls end).
 *   An invalid file changes nothing; the error is logged and kept for
 *   GET /config as last_reload.
 */
#ifndef SIDECAR_RELOAD_H
#define SIDECAR_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

struct sidecar;

struct reload_status {
    bool attempted;
    bool ok;
    uint64_t at_wall_ms;
    uint64_t ok_wall_ms; /* the last reload applied; 0 = none yet */
    uint64_t count;      /* reloads applied */
    uint64_t failures;   /* reloads refused */
    char error[1024];
};

/* Called on the loop when a reload finished: status 0 or a UV error, error text. */
typedef void (*reload_done_cb)(struct sidecar *sc, int status, const char *error, void *arg);

/*
 * Starts a reload from sc->config_path. Returns UV_EBUSY when one is
 * already running (cb is then never called); otherwise cb runs later from
 * the loop (cb may be NULL).
 */
__attribute__((warn_unused_result)) int reload_start(struct sidecar *sc, reload_done_cb cb,
                                                     void *arg);

#endif
