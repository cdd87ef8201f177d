/*
 * routes: the admin API as a dispatch table over the live state
 * (method + path pattern -> handler), PgBouncer's show_map idea.
 * GETs never change state; POSTs go through the same transition
 * functions as the data path (call_fail, pool_set_draining,
 * sidecar_shutdown, reload_start) and need the token when one is set.
 */
#ifndef SIDECAR_ADMIN_ROUTES_H
#define SIDECAR_ADMIN_ROUTES_H

#include <stdbool.h>
#include <stdint.h>

#include "admin/http.h"
#include "proxy/buf.h"

struct sidecar;
struct admin;

struct admin_response {
    int status;
    const char *content_type;
    struct buf body;   /* owned; freed by admin_response_free */
    char headers[256]; /* extra header lines, each ending in \r\n */
    bool pending;      /* answered later (POST /reload) */
};

struct admin_route_ctx {
    struct sidecar *sc;
    struct admin *admin; /* NULL in the fuzzer: async answers are refused */
    uint64_t conn_id;
};

/* Answers one parsed request. */
void admin_route(const struct admin_route_ctx *ctx, const struct admin_http *req,
                 struct admin_response *resp);

/* JSON error body {"error": text} with a status. */
void admin_response_error(struct admin_response *resp, int status, const char *text);

void admin_response_free(struct admin_response *resp);

/* Constant-time check of "Bearer <token>". */
bool admin_token_ok(const char *authorization, const char *token);

const char *admin_status_text(int status);

#endif
