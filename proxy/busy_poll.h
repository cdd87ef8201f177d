/*
 * busy_poll: how long the event loop keeps polling after traffic before it
 * sleeps in the kernel, adapted to the traffic it sees (the rule KVM uses
 * for halt polling).
 *
 * On a virtual machine the wake-up of a sleeping thread is a large part of
 * a proxied hop, so a loop that keeps polling for a few tens of
 * microseconds after a read picks up the reply (or the next request)
 * without it. Spinning is only worth its CPU while the gaps are short:
 * every idle stretch (from the moment the loop runs out of work to the
 * next socket read) adjusts the window by how long it turned out to be:
 *   - no longer than the window: caught while spinning; keep it;
 *   - longer, but within the cap: a longer spin would have saved the
 *     wake-up; grow it (from BUSY_POLL_START_NS, doubling up to the cap);
 *   - beyond the cap: the spin only burnt CPU; halve it, and below
 *     BUSY_POLL_START_NS stop spinning.
 * A steady request/reply exchange thus spins up to the cap and never
 * sleeps; a gap longer than the cap costs at most one window of spinning
 * (never more than the cap) and halves the window; an idle sidecar never
 * spins, nor does one with as many calls in flight as cores. The reads
 * within one call (request, reply, trailing frames) come
 * close together, so sparse calls keep a window of up to the cap and
 * spend about one window per call; where a wake-up is as dear as on a
 * VM, that is no more CPU than sleeping and waking would take.
 */
#ifndef DRPC_SIDECAR_BUSY_POLL_H
#define DRPC_SIDECAR_BUSY_POLL_H

#include <stdbool.h>
#include <stdint.h>

#define BUSY_POLL_START_NS 10000u

enum busy_poll_verdict {
    BUSY_POLL_KEPT,   /* the stretch fit in the window */
    BUSY_POLL_GREW,   /* a longer window would have caught it */
    BUSY_POLL_SHRANK, /* the stretch ran past the cap */
};

struct busy_poll {
    uint64_t window_ns; /* spin this long before sleeping; 0 = sleep at once */
};

/* An idle stretch of idle_ns ended with a socket read; cap_ns is the
 * configured ceiling (0: never spin). Returns what happened to the window. */
enum busy_poll_verdict busy_poll_idle_ended(struct busy_poll *bp, uint64_t cap_ns,
                                            uint64_t idle_ns);

/* Whether the loop, just out of reads, should spin (window > 0) rather
 * than sleep. Not with as many calls in flight as cores: the peers
 * serving them can then use every core, and a spin would take one from
 * them and break up the batches of events each wake-up brings. */
bool busy_poll_should_spin(const struct busy_poll *bp, uint64_t cap_ns, uint32_t calls_in_flight,
                           uint32_t cores);

/* The window in force now: a reload that lowered the cap applies at once,
 * before the next stretch brings the window itself down. */
uint64_t busy_poll_window(const struct busy_poll *bp, uint64_t cap_ns);

#endif
