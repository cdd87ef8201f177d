/* busy_poll: the adaptive spin window (see busy_poll.h). */
#include "proxy/busy_poll.h"

bool busy_poll_should_spin(const struct busy_poll *bp, uint64_t cap_ns, uint32_t calls_in_flight,
                           uint32_t cores)
{
    return busy_poll_window(bp, cap_ns) > 0 && calls_in_flight < cores;
}

uint64_t busy_poll_window(const struct busy_poll *bp, uint64_t cap_ns)
{
    return bp->window_ns < cap_ns ? bp->window_ns : cap_ns;
}

enum busy_poll_verdict busy_poll_idle_ended(struct busy_poll *bp, uint64_t cap_ns, uint64_t idle_ns)
{
    if (bp->window_ns > cap_ns) /* a reload lowered the cap, maybe to 0 */
        bp->window_ns = cap_ns;
    if (cap_ns == 0)
        return BUSY_POLL_KEPT;
    if (idle_ns > cap_ns) {
        bp->window_ns /= 2;
        if (bp->window_ns < BUSY_POLL_START_NS)
            bp->window_ns = 0;
        return BUSY_POLL_SHRANK;
    }
    if (idle_ns <= bp->window_ns)
        return BUSY_POLL_KEPT;
    uint64_t grown = bp->window_ns ? bp->window_ns * 2 : BUSY_POLL_START_NS;
    bp->window_ns = grown < cap_ns ? grown : cap_ns;
    return BUSY_POLL_GREW;
}
