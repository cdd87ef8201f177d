/* run: the event loop driver, with optional busy polling (see run.h). */
#include "proxy/run.h"

#include <stdbool.h>
#include <uv.h>

#include "proxy/sidecar.h"

void sidecar_run(struct sidecar *sc)
{
    uint64_t seen_reads = sc->socket_reads;
    uint64_t last_read_ns = uv_hrtime();
    bool spinning = false;
    for (;;) {
        uint64_t window_ns = (uint64_t)sc->cfg->busy_poll_us * 1000;
        uv_run_mode mode = UV_RUN_ONCE;
        if (window_ns) {
            uint64_t now = uv_hrtime();
            if (sc->socket_reads != seen_reads) {
                if (spinning)
                    sc->stats.busy_poll_catches += sc->socket_reads - seen_reads;
                seen_reads = sc->socket_reads;
                last_read_ns = now;
            }
            /* Timers and signals alone never start a spin: only data does. */
            if (now - last_read_ns < window_ns)
                mode = UV_RUN_NOWAIT;
            else if (spinning)
                sc->stats.busy_poll_timeouts++;
        }
        spinning = mode == UV_RUN_NOWAIT;
        if (!uv_run(sc->loop, mode))
            return;
    }
}
