/*
 * run: drives the event loop until its last handle closes.
 *
 * After a socket read the loop does not go to sleep at once: for a window
 * that adapts to the gaps between reads (proxy/busy_poll.h), up to
 * busy_poll_us, it keeps polling with a zero timeout, so the next request
 * or reply is picked up without the sleeping thread's wake-up (on a
 * virtual machine that wake-up is a large part of a proxied hop). Each
 * poll is preceded by sched_yield(), so a process woken on the same core
 * (the app beside the sidecar, on a one-core VM, woken by our reply) runs
 * first instead of waiting for the spin to end. Nor does the loop spin
 * with as many calls in flight as cores (busy_poll_should_spin): their
 * peers need every core (measured in config/README.md, busy_poll_us).
 * busy_poll_us 0 turns it off.
 */
#ifndef DRPC_SIDECAR_RUN_H
#define DRPC_SIDECAR_RUN_H

struct loop_ctx;

/* Runs lc's loop until it has nothing left to run or lc is closed
 * (loop_ctx_close: the data plane has stopped); the caller then stops
 * whatever else runs on the loop (the admin server) and runs it dry.
 * Reads the config snapshot on every iteration, so a reload changes
 * busy_poll_us at once. */
void run_loop(struct loop_ctx *lc);

#endif
