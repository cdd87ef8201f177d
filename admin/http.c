/*
 * http: admin request parsing on llhttp and response heads (see http.h).
 *
 * llhttp calls back with pieces of the URL, header names and values as
 * they arrive (one header may span several reads); the callbacks below
 * copy only what fits the caps and count everything else, so a request
 * costs at most sizeof(struct admin_http) however it is sliced.
 */
#include "admin/http.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *const kept_names[ADMIN_HDR_COUNT] = {
    [ADMIN_HDR_AUTHORIZATION] = "authorization",
    [ADMIN_HDR_ORIGIN] = "origin",
    [ADMIN_HDR_HOST] = "host",
};

static struct admin_http *from(llhttp_t *p)
{
    return p->data;
}

/* Records why the request is refused and stops the parser. */
static int fail(llhttp_t *p, int status, const char *text)
{
    struct admin_http *h = from(p);
    if (!h->error_status) {
        h->error_status = status;
        h->error_text = text;
    }
    return HPE_USER;
}

static int count_header_bytes(llhttp_t *p, size_t len)
{
    struct admin_http *h = from(p);
    h->header_bytes += len;
    if (h->header_bytes > ADMIN_HTTP_MAX_HEADERS)
        return fail(p, 431, "request headers too large");
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct admin_http *h = from(p);
    if (len > ADMIN_HTTP_MAX_URL - h->url_len)
        return fail(p, 414, "request target too long");
    memcpy(h->url + h->url_len, at, len);
    h->url_len += len;
    h->url[h->url_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct admin_http *h = from(p);
    if (h->in_value) { /* a new header starts */
        h->field_len = 0;
        h->in_value = false;
    }
    for (size_t i = 0; i < len && h->field_len < sizeof(h->field) - 1; i++) {
        char c = at[i];
        h->field[h->field_len++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    h->field[h->field_len] = '\0';
    return count_header_bytes(p, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct admin_http *h = from(p);
    h->in_value = true;
    h->current = ADMIN_HDR_NONE;
    for (int i = 0; i < ADMIN_HDR_COUNT; i++) {
        if (strcmp(h->field, kept_names[i]) != 0)
            continue;
        /* Two Authorization (or Host, Origin) headers: which one counts
         * would be a guess, and guessing about credentials is how bypasses
         * happen. */
        if (h->headers[i].present)
            return fail(p, 400, "duplicate header");
        h->headers[i].present = true;
        h->current = (enum admin_http_header)i;
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct admin_http *h = from(p);
    if (h->current != ADMIN_HDR_NONE) {
        struct admin_http_value *v = &h->headers[h->current];
        if (len > ADMIN_HTTP_MAX_VALUE - v->len)
            return fail(p, 431, "header value too long");
        memcpy(v->text + v->len, at, len);
        v->len += len;
        v->text[v->len] = '\0';
    }
    return count_header_bytes(p, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct admin_http *h = from(p);
    h->field_len = 0;
    h->field[0] = '\0';
    h->in_value = false;
    h->current = ADMIN_HDR_NONE;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct admin_http *h = from(p);
    const char *m = llhttp_method_name((llhttp_method_t)p->method);
    snprintf(h->method, sizeof(h->method), "%s", m);
    if (p->content_length > ADMIN_HTTP_MAX_BODY && p->content_length != ULLONG_MAX)
        return fail(p, 413, "request body too large");
    /* The admin API speaks HTTP/1.1 only: an Upgrade (curl --http2 asks
     * for h2c) is ignored as RFC 9110 allows, and the request answered as
     * a plain one. Clearing the flag keeps llhttp parsing this connection
     * as HTTP instead of handing the rest of the bytes to a new protocol. */
    p->upgrade = 0;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    struct admin_http *h = from(p);
    /* Chunked bodies have no Content-Length to check up front. */
    h->body_len += len;
    if (h->body_len > ADMIN_HTTP_MAX_BODY)
        return fail(p, 413, "request body too large");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct admin_http *h = from(p);
    h->complete = true;
    h->keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED; /* one request at a time: the rest waits for admin_http_next */
}

void admin_http_init(struct admin_http *h)
{
    memset(h, 0, sizeof(*h));
    h->current = ADMIN_HDR_NONE;
    llhttp_settings_init(&h->settings);
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_header_field;
    h->settings.on_header_field_complete = on_header_field_complete;
    h->settings.on_header_value = on_header_value;
    h->settings.on_header_value_complete = on_header_value_complete;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;
    llhttp_init(&h->parser, HTTP_REQUEST, &h->settings);
    h->parser.data = h;
}

void admin_http_next(struct admin_http *h)
{
    /* Keep the parser (it knows where the connection is); forget the request. */
    llhttp_t parser = h->parser;
    llhttp_settings_t settings = h->settings;
    memset(h, 0, sizeof(*h));
    h->current = ADMIN_HDR_NONE;
    h->settings = settings;
    h->parser = parser;
    h->parser.settings = &h->settings;
    h->parser.data = h;
    llhttp_resume(&h->parser);
}

enum admin_http_result admin_http_feed(struct admin_http *h, const char *data, size_t len,
                                       size_t *consumed)
{
    *consumed = 0;
    if (h->error_status)
        return ADMIN_HTTP_ERROR;
    if (h->complete)
        return ADMIN_HTTP_REQUEST;
    if (len == 0)
        return ADMIN_HTTP_NEED_MORE;
    llhttp_errno_t err = llhttp_execute(&h->parser, data, len);
    if (err == HPE_OK) {
        *consumed = len;
        return ADMIN_HTTP_NEED_MORE;
    }
    if (err == HPE_PAUSED && h->complete) {
        const char *pos = llhttp_get_error_pos(&h->parser);
        *consumed = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        return ADMIN_HTTP_REQUEST;
    }
    if (!h->error_status) {
        h->error_status = 400;
        h->error_text = "malformed request";
    }
    *consumed = len;
    return ADMIN_HTTP_ERROR;
}

const char *admin_http_header(const struct admin_http *h, enum admin_http_header which)
{
    return h->headers[which].present ? h->headers[which].text : NULL;
}

const char *admin_http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 422:
        return "Unprocessable Content";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

int admin_http_head(char *out, size_t size, int status, const char *content_type, size_t body_len,
                    const char *extra_headers, bool close)
{
    int n = snprintf(out, size,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "%s"
                     "Connection: %s\r\n\r\n",
                     status, admin_http_status_text(status), content_type, body_len,
                     extra_headers ? extra_headers : "", close ? "close" : "keep-alive");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int admin_http_unescape(const char *s, size_t n, bool plus_is_space, char *out, size_t size)
{
    if (size == 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (n - i < 3) /* "%" or "%4" at the end */
                return -1;
            int a = hex_value(s[i + 1]), b = hex_value(s[i + 2]);
            if (a < 0 || b < 0)
                return -1;
            c = (char)(a * 16 + b);
            i += 2;
            if (c == '\0')
                return -1;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (o + 1 >= size)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (int)o;
}

int admin_http_query(const char *query, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > kl && memcmp(p, key, kl) == 0 && p[kl] == '=')
            return admin_http_unescape(p + kl + 1, len - kl - 1, true, out, size) < 0 ? -1 : 1;
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}
