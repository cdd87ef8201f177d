/*
 * fdlimit: the descriptor budget (see fdlimit.h).
 */
#include "proxy/fdlimit.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

#include "admin/admin.h"
#include "config/config.h"
#include "proxy/log.h"

/* Listeners, log files, the loop's own descriptors, resolver sockets. */
#define FDLIMIT_BASE 32

/* The kernel's per-process ceiling (fs.nr_open); setrlimit refuses more. */
static uint64_t nr_open(void)
{
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v ? (uint64_t)v : 1048576;
}

static void set_client_max(struct fdlimit *fl)
{
    fl->client_max = fl->limit > 2 * FDLIMIT_RESERVE ? fl->limit - FDLIMIT_RESERVE : fl->limit / 2;
}

int fdlimit_raise(struct fdlimit *fl)
{
    struct rlimit rl;
    int rc = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    fl->soft_at_start = rl.rlim_cur;
    fl->hard = rl.rlim_max;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = rl;
        if (want.rlim_max == RLIM_INFINITY || want.rlim_max > nr_open())
            want.rlim_cur = nr_open();
        else
            want.rlim_cur = want.rlim_max;
        if (want.rlim_cur > rl.rlim_cur) {
            if (setrlimit(RLIMIT_NOFILE, &want) == 0)
                rl.rlim_cur = want.rlim_cur;
            else
                rc = -errno;
        }
    }
    fl->limit = rl.rlim_cur;
    set_client_max(fl);
    return rc;
}

uint64_t fdlimit_needed(const struct config *cfg)
{
    uint64_t clients = cfg->max_clients;
    if (!clients) {
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            if (!cfg->listeners[i].max_clients)
                return UINT64_MAX;
            clients += cfg->listeners[i].max_clients;
        }
    }
    uint64_t n = clients + FDLIMIT_BASE + (cfg->admin.enabled ? ADMIN_MAX_CONNS + 1 : 0);
    for (size_t i = 0; i < cfg->n_pools; i++)
        n += cfg->pools[i].max_conns + (cfg->pools[i].reverse ? 1 : 0);
    return n + cfg->n_listeners;
}

void fdlimit_check(struct fdlimit *fl, const struct config *cfg)
{
    uint64_t needed = fdlimit_needed(cfg);
    bool changed = needed != fl->needed;
    fl->needed = needed;
    if (!changed || needed <= fl->client_max)
        return;
    if (needed == UINT64_MAX)
        log_warn("max_clients is 0 (no limit): clients can take every file descriptor but the "
                 "%d kept for admin and upstreams (limit %llu)",
                 FDLIMIT_RESERVE, (unsigned long long)fl->limit);
    else
        log_warn("the file descriptor limit (%llu, hard %llu) is below what the config can use "
                 "(%llu: max_clients, pools' max_conns, admin); clients beyond %llu descriptors "
                 "will be refused. Raise LimitNOFILE / ulimit -n, or lower max_clients",
                 (unsigned long long)fl->limit, (unsigned long long)fl->hard,
                 (unsigned long long)needed, (unsigned long long)fl->client_max);
}
