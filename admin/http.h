/*
 * http: the admin API's HTTP/1.x on llhttp, kept apart from sockets so a
 * fuzzer or a unit test can feed it raw bytes.
 *
 *   bytes --admin_http_feed--> [request complete] --caller answers-->
 *         admin_http_next --> feed the rest (pipelined requests)
 *
 * One request at a time: admin_http_feed() stops right after a complete
 * request and leaves pipelined bytes unconsumed. Only what the admin API
 * uses is kept (method, target, three headers); the body is counted, never
 * stored. Every size is capped, and breaking a cap is an error with the
 * status to answer (413, 414, 431), never a bigger buffer.
 *
 * The second half builds responses: the status line and headers in front
 * of a body the caller owns.
 */
#ifndef SIDECAR_ADMIN_HTTP_H
#define SIDECAR_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <llhttp.h>

#define ADMIN_HTTP_MAX_URL     2048 /* request target, bytes */
#define ADMIN_HTTP_MAX_HEADERS 8192 /* every header name and value together */
#define ADMIN_HTTP_MAX_BODY    8192 /* no endpoint takes a body; small ones are tolerated */
#define ADMIN_HTTP_MAX_VALUE   512  /* a kept header value (Authorization, Origin, Host) */

enum admin_http_result {
    ADMIN_HTTP_NEED_MORE, /* everything consumed, the request is not complete yet */
    ADMIN_HTTP_REQUEST,   /* a complete request is ready; the rest is not consumed */
    ADMIN_HTTP_ERROR,     /* malformed or over a cap: answer error_status, then close */
};

/* The headers the admin API looks at; everything else is only counted. */
enum admin_http_header {
    ADMIN_HDR_NONE = -1,
    ADMIN_HDR_AUTHORIZATION,
    ADMIN_HDR_ORIGIN,
    ADMIN_HDR_HOST,
    ADMIN_HDR_COUNT
};

struct admin_http_value {
    char text[ADMIN_HTTP_MAX_VALUE + 1];
    size_t len;
    bool present;
};

struct admin_http {
    llhttp_t parser;
    llhttp_settings_t settings;

    /* The request being parsed; reset by admin_http_next(). */
    char method[16];
    char url[ADMIN_HTTP_MAX_URL + 1];
    size_t url_len;
    char field[32]; /* current header name, lower-cased (longer names cannot match) */
    size_t field_len;
    bool in_value;                  /* the value of `field` is being received */
    enum admin_http_header current; /* which kept header that value belongs to */
    struct admin_http_value headers[ADMIN_HDR_COUNT];
    size_t header_bytes;
    size_t body_len;
    bool keep_alive; /* valid once complete */
    bool complete;
    int error_status; /* 400, 413, 414 or 431 once ADMIN_HTTP_ERROR */
    const char *error_text;
};

void admin_http_init(struct admin_http *h);

/*
 * Parses from data; *consumed says how many bytes were used. After
 * ADMIN_HTTP_REQUEST the caller answers, calls admin_http_next() and feeds
 * data + *consumed onwards. After ADMIN_HTTP_ERROR nothing more is parsed.
 */
enum admin_http_result admin_http_feed(struct admin_http *h, const char *data, size_t len,
                                       size_t *consumed);

/* Resets for the next request on the same connection. */
void admin_http_next(struct admin_http *h);

/* A kept header's value, or NULL when the request did not carry it. */
const char *admin_http_header(const struct admin_http *h, enum admin_http_header which);

/* Reason phrase of a status code the admin API uses ("Unknown" otherwise). */
const char *admin_http_status_text(int status);

/*
 * Writes the status line and headers of a response with a body of body_len
 * bytes into out (NUL-terminated). extra_headers is "" or whole lines, each
 * ending in \r\n. Returns the length, or -1 when out is too small.
 */
int admin_http_head(char *out, size_t size, int status, const char *content_type, size_t body_len,
                    const char *extra_headers, bool close);

/*
 * Percent-decodes n bytes of s into out (NUL-terminated); '+' becomes a
 * space when plus_is_space (query strings). Returns the decoded length, or
 * -1 for a bad escape, an encoded NUL or an out that is too small.
 */
int admin_http_unescape(const char *s, size_t n, bool plus_is_space, char *out, size_t size);

/*
 * The value of key in a query string ("a=1&b=2", no leading '?'),
 * percent-decoded into out. 1 when found, 0 when absent, -1 when present
 * but badly encoded or too long.
 */
int admin_http_query(const char *query, const char *key, char *out, size_t size);

#endif
