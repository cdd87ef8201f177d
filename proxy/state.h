/*
 * state: what an illegal state change does, the same for clients, calls
 * and upstream connections. Each object's own *_set_state function checks
 * its table of legal moves and calls state_illegal_move() on a miss: with
 * SIDECAR_STRICT_STATES (make asan, fuzz builds) that aborts, so a test
 * that reaches one fails loudly; otherwise it logs, and the caller closes
 * or fails the object.
 */
#ifndef SIDECAR_STATE_H
#define SIDECAR_STATE_H

#include <stdint.h>
#include <stdlib.h>

#include "proxy/log.h"

static inline void state_illegal_move(const char *what, uint64_t id, const char *from,
                                      const char *to)
{
    log_error("%s#%llu: illegal state change %s -> %s", what, (unsigned long long)id, from, to);
#ifdef SIDECAR_STRICT_STATES
    abort();
#endif
}

#endif
