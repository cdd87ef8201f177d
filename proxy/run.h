/*
 * run: drives the event loop until its last handle closes.
 *
 * With busy_poll_us > 0 the loop does not go to sleep right after it has
 * read from a socket: for that long it keeps polling with a zero timeout,
 * so the next request or reply is picked up without the sleeping thread's
 * wake-up (on a virtual machine that wake-up is a large part of a
 * proxied hop). It trades CPU for latency and is off by default.
 */
#ifndef DRPC_SIDECAR_RUN_H
#define DRPC_SIDECAR_RUN_H

struct sidecar;

/* Returns once uv_run has nothing left to run. Reads sc->cfg on every
 * iteration, so a reload changes busy_poll_us at once. */
void sidecar_run(struct sidecar *sc);

#endif
