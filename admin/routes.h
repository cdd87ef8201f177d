/*
 * routes: the admin API as one dispatch table over the live state
 * (method + path pattern -> handler), PgBouncer's show_map idea.
 *
 * GETs only read. POSTs are the only mutations; they go through the same
 * transition functions the data path uses (call_fail, pool_set_draining,
 * sidecar_shutdown, reload_start), need `Authorization: Bearer <token>`
 * when admin.token is set, and are refused when a browser says they come
 * from another origin (a web page must not be able to drain the sidecar).
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
    const char *content_type; /* a static string */
    struct buf body;          /* owned; admin_response_free() releases it */
    char headers[192];        /* extra header lines, each ending in \r\n */
    bool pending;             /* answered later (POST /reload) */
};

struct admin_route_ctx {
    struct sidecar *sc;
    struct admin *admin; /* NULL in tests and the fuzzer: asynchronous answers are refused */
    uint64_t conn_id;
};

/* Answers one parsed request (h->complete) into resp, which starts zeroed. */
void admin_route(const struct admin_route_ctx *ctx, const struct admin_http *h,
                 struct admin_response *resp);

/* Replaces resp's body with the JSON {"error": text} and sets the status. */
void admin_response_error(struct admin_response *resp, int status, const char *text);

void admin_response_free(struct admin_response *resp);

/* "Bearer <token>" matches token; compares in time independent of where they differ. */
bool admin_token_ok(const char *authorization, const char *token);

#endif
