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

#include <jansson.h>

#include "admin/http.h"
#include "proxy/buf.h"

struct sidecar;
struct admin;

struct pages;

/* How the admin API dumps JSON: 2-space indent, ASCII only, and reals
 * (milliseconds, whole microseconds) with 15 significant digits, which
 * print them exactly ("0.025") where jansson's default of 17 prints the
 * binary noise too ("0.025000000000000001"). */
#define ADMIN_JSON_FLAGS (JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15))

struct admin_response {
    int status;
    const char *content_type; /* a static string */
    struct buf body;          /* owned; admin_response_free() releases it */
    char headers[192];        /* extra header lines, each ending in \r\n */
    bool pending;             /* answered later (POST /reload) */
    /* A large answer still to be written (pages.h), owned; status and
     * content_type are set, body is empty. The admin server runs it a
     * slice per loop turn; without one (ctx.admin NULL) admin_route runs
     * it to the end before it returns. */
    struct pages *page;
};

struct admin_route_ctx {
    struct sidecar *sc;
    struct admin *admin; /* NULL in tests and the fuzzer: asynchronous answers are refused */
    uint64_t conn_id;
};

/* Answers one parsed request (h->complete) into resp, which starts zeroed.
 * With ctx->admin set, a large page may be left in resp->page. */
void admin_route(const struct admin_route_ctx *ctx, const struct admin_http *h,
                 struct admin_response *resp);

/* Replaces resp's body with the JSON {"error": text} and sets the status. */
void admin_response_error(struct admin_response *resp, int status, const char *text);

/* Runs one slice of resp->page (all of it when deadline_ns is UINT64_MAX;
 * see pages_step). When the page is complete its text becomes resp's body
 * (or resp a 500 when memory ran out) and 1 is returned; 0 while more is
 * to come. */
int admin_response_finish_page(struct admin_response *resp, uint64_t deadline_ns);

/* Frees resp's body and page. */
void admin_response_free(struct admin_response *resp);

/* "Bearer <token>" matches token; compares in time independent of where they differ. */
bool admin_token_ok(const char *authorization, const char *token);

#endif
