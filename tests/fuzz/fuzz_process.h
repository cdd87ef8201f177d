/*
 * fuzz_process: one real process (struct sidecar) for a whole fuzz run,
 * built by sidecar_start on a loop of its own the first time it is asked
 * for. config_fmt is a config whose one %s is a unix socket path for its
 * listener (no port to collide on); its pools must not have min_idle, so
 * nothing dials. Logs errors only. The loop is not run between inputs.
 * Aborts if the process cannot be built.
 */
#ifndef SIDECAR_TESTS_FUZZ_PROCESS_H
#define SIDECAR_TESTS_FUZZ_PROCESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/sidecar.h"

static inline struct sidecar *fuzz_process_once(const char *config_fmt, const char *name)
{
    static uv_loop_t loop;
    static struct sidecar sc;
    if (!sc.lc) {
        if (uv_loop_init(&loop) != 0)
            abort();
        char path[64], text[1024];
        snprintf(path, sizeof(path), "/tmp/%s.%d.sock", name, (int)uv_os_getpid());
        int n = snprintf(text, sizeof(text), config_fmt, path);
        struct config *cfg = NULL;
        struct config_error cerr;
        memset(&cerr, 0, sizeof(cerr));
        if (n < 0 || (size_t)n >= sizeof(text) ||
            config_parse(text, (size_t)n, name, &cfg, &cerr) != 0)
            abort();
        cfg->log_level = CONFIG_LOG_ERROR;
        char err[256];
        if (sidecar_start(&sc, &loop, cfg, err, sizeof(err)) != 0)
            abort();
    }
    return &sc;
}

#endif
