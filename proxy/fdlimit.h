/*
 * fdlimit: the process's file-descriptor budget.
 *
 * At start the soft RLIMIT_NOFILE is raised to the hard limit (a default
 * soft limit of 1024 is far below what max_clients allows). What a config
 * can need is computed (clients, pool and agent connections, admin, a
 * fixed base); a limit below it is logged and shown in /stats.
 *
 * The top FDLIMIT_RESERVE descriptors are kept for everything but clients:
 * a client whose accepted descriptor lands there is refused at once, so
 * admin requests (health probes) and upstream dials still get a
 * descriptor when clients have taken all the others. Descriptors are
 * allocated lowest-first, so an accepted one in the reserve means every
 * one below it is in use.
 */
#ifndef SIDECAR_FDLIMIT_H
#define SIDECAR_FDLIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct config;

/* Descriptors kept for admin, upstream dials, agents and files. */
#define FDLIMIT_RESERVE 64

struct fdlimit {
    uint64_t soft_at_start; /* the soft limit the process was started with */
    uint64_t limit;         /* the soft limit now in force */
    uint64_t hard;
    uint64_t needed;     /* what the current config can use; UINT64_MAX: no bound */
    uint64_t client_max; /* first descriptor number refused to a client */
};

/* Raises the soft limit to the hard one (capped by what the kernel allows).
 * Returns 0 or a negative errno; fl is filled in either case. */
int fdlimit_raise(struct fdlimit *fl);

/* Descriptors cfg can use at once: clients (max_clients, or per listener
 * when that is unbounded), pools' max_conns (agents included), admin, a
 * base for listeners, logs and the loop. UINT64_MAX when clients are
 * unbounded. */
uint64_t fdlimit_needed(const struct config *cfg);

/* Records what cfg needs; logs a warning when the limit is lower (at start
 * and at each reload that changes the answer). */
void fdlimit_check(struct fdlimit *fl, const struct config *cfg);

/* Whether a client's accepted descriptor falls into the reserve. */
static inline bool fdlimit_client_refused(const struct fdlimit *fl, int fd)
{
    return fl->client_max && (uint64_t)fd >= fl->client_max;
}

#endif
