/*
 * http: incremental HTTP/1.x request parsing for the admin API (llhttp),
 * kept apart from sockets so the fuzzer can feed it raw bytes.
 *
 * One request at a time: admin_http_feed() stops after a complete request
 * (pipelined bytes stay unconsumed), the caller answers it, calls
 * admin_http_next(), and feeds the rest. Limits answer 413/431/414 instead
 * of buffering without bound.
 */
#ifndef SIDECAR_ADMIN_HTTP_H
#define SIDECAR_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <llhttp.h>

#define ADMIN_HTTP_MAX_URL     2048
#define ADMIN_HTTP_MAX_HEADERS 8192 /* all header bytes */
#define ADMIN_HTTP_MAX_BODY    8192

enum admin_http_result {
    ADMIN_HTTP_NEED_MORE, /* everything consumed, request incomplete */
    ADMIN_HTTP_REQUEST,   /* a complete request is ready */
    ADMIN_HTTP_ERROR,     /* malformed or over a limit: answer error_status, then close */
};

struct admin_http {
    llhttp_t parser;
    llhttp_settings_t settings;
    char method[16];
    char url[ADMIN_HTTP_MAX_URL + 1];
    size_t url_len;
    char field[32]; /* current header name, lower-cased, truncated */
    size_t field_len;
    bool field_done;
    char auth[512]; /* Authorization value */
    size_t auth_len;
    size_t header_bytes;
    size_t body_len;
    bool keep_alive;
    bool complete;
    int error_status; /* 400, 413, 414 or 431 once ADMIN_HTTP_ERROR */
    const char *error_text;
};

void admin_http_init(struct admin_http *h);

/* Parses from data; *consumed says how many bytes were used. */
enum admin_http_result admin_http_feed(struct admin_http *h, const char *data, size_t len,
                                       size_t *consumed);

/* Resets for the next request on the same connection. */
void admin_http_next(struct admin_http *h);

#endif
