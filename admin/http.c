/* http: admin request parsing on llhttp (see http.h). */
#include "admin/http.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

static struct admin_http *from(llhttp_t *p)
{
    return p->data;
}

static int fail(llhttp_t *p, int status, const char *text)
{
    struct admin_http *h = from(p);
    h->error_status = status;
    h->error_text = text;
    return HPE_USER;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct admin_http *h = from(p);
    if (h->url_len + len > ADMIN_HTTP_MAX_URL)
        return fail(p, 414, "URI too long");
    memcpy(h->url + h->url_len, at, len);
    h->url_len += len;
    h->url[h->url_len] = '\0';
    return 0;
}

static int count_header(llhttp_t *p, size_t len)
{
    struct admin_http *h = from(p);
    h->header_bytes += len;
    if (h->header_bytes > ADMIN_HTTP_MAX_HEADERS)
        return fail(p, 431, "request headers too large");
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct admin_http *h = from(p);
    if (h->field_done) {
        h->field_len = 0;
        h->field_done = false;
    }
    for (size_t i = 0; i < len && h->field_len < sizeof(h->field) - 1; i++)
        h->field[h->field_len++] = (char)tolower((unsigned char)at[i]);
    h->field[h->field_len] = '\0';
    return count_header(p, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct admin_http *h = from(p);
    h->field_done = true;
    if (strcmp(h->field, "authorization") == 0) {
        size_t room = sizeof(h->auth) - 1 - h->auth_len;
        size_t n = len < room ? len : room;
        memcpy(h->auth + h->auth_len, at, n);
        h->auth_len += n;
        h->auth[h->auth_len] = '\0';
    }
    return count_header(p, len);
}

static int on_headers_complete(llhttp_t *p)
{
    struct admin_http *h = from(p);
    const char *m = llhttp_method_name((llhttp_method_t)p->method);
    size_t n = strlen(m);
    if (n >= sizeof(h->method))
        n = sizeof(h->method) - 1;
    memcpy(h->method, m, n);
    h->method[n] = '\0';
    if (p->content_length > ADMIN_HTTP_MAX_BODY && p->content_length != ULLONG_MAX)
        return fail(p, 413, "request body too large");
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    struct admin_http *h = from(p);
    h->body_len += len;
    if (h->body_len > ADMIN_HTTP_MAX_BODY)
        return fail(p, 413, "request body too large");
    return 0; /* no admin endpoint takes a body: it is counted, not kept */
}

static int on_message_complete(llhttp_t *p)
{
    struct admin_http *h = from(p);
    h->complete = true;
    h->keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED; /* one request at a time */
}

void admin_http_init(struct admin_http *h)
{
    memset(h, 0, sizeof(*h));
    llhttp_settings_init(&h->settings);
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_header_field;
    h->settings.on_header_value = on_header_value;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;
    llhttp_init(&h->parser, HTTP_REQUEST, &h->settings);
    h->parser.data = h;
}

void admin_http_next(struct admin_http *h)
{
    llhttp_t keep = h->parser;
    llhttp_settings_t settings = h->settings;
    memset(h, 0, sizeof(*h));
    h->settings = settings;
    h->parser = keep;
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
    if (len == 0)
        return h->complete ? ADMIN_HTTP_REQUEST : ADMIN_HTTP_NEED_MORE;
    llhttp_errno_t err = llhttp_execute(&h->parser, data, len);
    if (err == HPE_OK) {
        *consumed = len;
        return ADMIN_HTTP_NEED_MORE;
    }
    if (err == HPE_PAUSED && h->complete) {
        const char *pos = llhttp_get_error_pos(&h->parser);
        *consumed = pos ? (size_t)(pos - data) : len;
        return ADMIN_HTTP_REQUEST;
    }
    if (!h->error_status) {
        h->error_status = 400;
        h->error_text = "malformed request";
    }
    *consumed = len;
    return ADMIN_HTTP_ERROR;
}
