/* run: the event loop driver, with adaptive busy polling (see run.h). */
#include "proxy/run.h"

#include <sched.h>
#include <stdbool.h>
#include <uv.h>

#include "proxy/busy_poll.h"
#include "proxy/loop_ctx.h"
#include "proxy/sidecar.h"

enum run_phase {
    RUN_WAITING,  /* no read yet, or the last spin ran out: sleep in the kernel */
    RUN_SPINNING, /* the loop ran out of reads less than a window ago: poll */
};

void run_loop(struct loop_ctx *lc)
{
    struct sidecar *sc = lc->sc;
    enum run_phase phase = RUN_WAITING;
    uint64_t idle_since = 0; /* when the loop last ran out of reads */
    uint32_t cores = uv_available_parallelism();
    for (;;) {
        uint64_t cap_ns = (uint64_t)sc->cfg->busy_poll_us * 1000;
        if (lc->first_read_ns) {
            /* The iteration just run read data: the idle stretch before it
             * ended at its first read, and a new one starts now. */
            if (idle_since) {
                uint64_t idle_ns =
                    lc->first_read_ns > idle_since ? lc->first_read_ns - idle_since : 0;
                if (phase == RUN_SPINNING)
                    sc->stats.busy_poll_catches++;
                busy_poll_idle_ended(&lc->busy_poll, cap_ns, idle_ns);
            }
            lc->first_read_ns = 0;
            idle_since = uv_hrtime();
            phase = busy_poll_should_spin(&lc->busy_poll, cap_ns, lc->n_calls, cores) ? RUN_SPINNING
                                                                                      : RUN_WAITING;
        } else if (phase == RUN_SPINNING &&
                   uv_hrtime() - idle_since >= busy_poll_window(&lc->busy_poll, cap_ns)) {
            sc->stats.busy_poll_timeouts++;
            phase = RUN_WAITING;
        }
        if (phase == RUN_SPINNING)
            sched_yield(); /* a process woken on this core goes first */
        if (!uv_run(lc->loop, phase == RUN_SPINNING ? UV_RUN_NOWAIT : UV_RUN_ONCE) ||
            !lc->handles_open)
            return;
    }
}
