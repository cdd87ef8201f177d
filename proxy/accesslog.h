/*
 * accesslog: one line per finished call, written without blocking the
 * loop: lines are formatted into a pending buffer and written by libuv fs
 * requests (one in flight); above ACCESSLOG_MAX_PENDING bytes lines are
 * dropped and counted instead of growing memory. SIGUSR1 reopens the file
 * (logrotate). Metadata values are never logged.
 *
 * Ownership: the accesslog owns its pending and in-flight buffers and the
 * fd; accesslog_close() flushes, closes and frees it from the loop.
 */
#ifndef SIDECAR_ACCESSLOG_H
#define SIDECAR_ACCESSLOG_H

#include <stdint.h>
#include <uv.h>

#include "config/config.h"

#define ACCESSLOG_MAX_PENDING (4u << 20)

struct accesslog;

struct accesslog_entry {
    uint64_t time_ms; /* wall clock at the end of the call */
    uint64_t call_id;
    uint64_t client_id;
    const char *client_peer;
    const char *listener;
    const char *route;
    const char *pool;
    const char *endpoint;
    const char *rpc;
    size_t rpc_len;
    const char *result; /* ok, app_error, cancelled, or a failure cause */
    uint64_t error_code;
    uint64_t duration_us;
    uint64_t wait_us;
    uint64_t bytes_up, bytes_down, msgs_up, msgs_down;
    uint64_t attempt; /* 1, or more when the call was retried */
};

/* Opens cfg->path ("-" = stderr). Returns 0 or a UV error (message in err). */
__attribute__((warn_unused_result)) int accesslog_open(uv_loop_t *loop,
                                                       const struct config_access_log *cfg,
                                                       struct accesslog **out, char *err,
                                                       size_t err_size);

void accesslog_call(struct accesslog *al, const struct accesslog_entry *e);

/* Reopens the file after the current write (SIGUSR1). */
void accesslog_reopen(struct accesslog *al);

/* Flushes what is queued, closes and frees (asynchronously). */
void accesslog_close(struct accesslog *al);

uint64_t accesslog_dropped(const struct accesslog *al);

#endif
