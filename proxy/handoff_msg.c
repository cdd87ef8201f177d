/* handoff_msg: upgrade handoff messages (see handoff_msg.h). */
#include "proxy/handoff_msg.h"

#include <string.h>
#include <uv.h>

static const uint8_t MAGIC[4] = {'D', 'S', 'H', 'O'};

const char *handoff_msg_type_name(enum handoff_msg_type t)
{
    switch (t) {
    case HANDOFF_HELLO:
        return "hello";
    case HANDOFF_WELCOME:
        return "welcome";
    case HANDOFF_REFUSE:
        return "refuse";
    case HANDOFF_CONN:
        return "conn";
    case HANDOFF_LISTEN:
        return "listen";
    }
    return "?";
}

/* A bounds-checked reader over one body. */
struct reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static uint64_t get_be(struct reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | r->p[i];
    r->p += n;
    r->left -= n;
    return v;
}

static const uint8_t *get_bytes(struct reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

int handoff_msg_parse(const uint8_t *p, size_t len, struct handoff_msg *m, size_t *used)
{
    /* Judge what has arrived so far, so garbage fails at once rather than
     * after waiting for a length it announced. */
    size_t head = len < HANDOFF_MSG_HEADER ? len : HANDOFF_MSG_HEADER;
    for (size_t i = 0; i < head && i < 4; i++)
        if (p[i] != MAGIC[i])
            return UV_EPROTO;
    if (head > 4 && p[4] != HANDOFF_MSG_VERSION)
        return UV_EPROTO;
    if (head > 5 && (p[5] < HANDOFF_HELLO || p[5] > HANDOFF_LISTEN))
        return UV_EPROTO;
    if ((head > 6 && p[6] != 0) || (head > 7 && p[7] != 0))
        return UV_EPROTO;
    if (len < HANDOFF_MSG_HEADER)
        return HANDOFF_MSG_NEED_MORE;
    uint32_t body = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    if (body > HANDOFF_MSG_MAX_BODY)
        return UV_EPROTO;
    if (len - HANDOFF_MSG_HEADER < body)
        return HANDOFF_MSG_NEED_MORE;

    memset(m, 0, sizeof(*m));
    m->type = (enum handoff_msg_type)p[5];
    struct reader r = {p + HANDOFF_MSG_HEADER, body, false};
    size_t n;
    switch (m->type) {
    case HANDOFF_HELLO:
        m->pid = (uint32_t)get_be(&r, 4);
        n = (size_t)get_be(&r, 2);
        if (n == 0 || n > HANDOFF_MAX_PATH)
            return UV_EPROTO;
        m->text = (const char *)get_bytes(&r, n);
        m->text_len = n;
        break;
    case HANDOFF_WELCOME:
        m->pid = (uint32_t)get_be(&r, 4);
        m->n_listen = (uint16_t)get_be(&r, 2);
        break;
    case HANDOFF_LISTEN:
        n = (size_t)get_be(&r, 1);
        if (n == 0)
            return UV_EPROTO;
        m->text = (const char *)get_bytes(&r, n);
        m->text_len = n;
        n = (size_t)get_be(&r, 2);
        if (n == 0 || n > HANDOFF_MAX_PATH)
            return UV_EPROTO;
        m->path = (const char *)get_bytes(&r, n);
        m->path_len = n;
        break;
    case HANDOFF_REFUSE:
        n = (size_t)get_be(&r, 2);
        if (n > HANDOFF_MAX_REASON)
            return UV_EPROTO;
        m->text = (const char *)get_bytes(&r, n);
        m->text_len = n;
        break;
    case HANDOFF_CONN:
        m->flags = (uint8_t)get_be(&r, 1);
        if (m->flags & ~HANDOFF_CONN_PREFIX)
            return UV_EPROTO;
        n = (size_t)get_be(&r, 1);
        if (n == 0)
            return UV_EPROTO;
        m->text = (const char *)get_bytes(&r, n);
        m->text_len = n;
        m->last_sid = get_be(&r, 8);
        m->read_sid = get_be(&r, 8);
        m->client_id = get_be(&r, 8);
        n = (size_t)get_be(&r, 4);
        if (n > HANDOFF_MAX_PENDING)
            return UV_EPROTO;
        m->pending = get_bytes(&r, n);
        m->pending_len = n;
        /* A connection is between calls: no stream above the last one
         * read has started. */
        if (m->last_sid > m->read_sid)
            return UV_EPROTO;
        break;
    }
    if (r.bad || r.left != 0)
        return UV_EPROTO;
    if ((m->text && memchr(m->text, 0, m->text_len)) ||
        (m->path && memchr(m->path, 0, m->path_len)))
        return UV_EPROTO;
    *used = HANDOFF_MSG_HEADER + body;
    return 0;
}

static void put_be(uint8_t **w, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        (*w)[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    *w += n;
}

static void put_bytes(uint8_t **w, const void *p, size_t n)
{
    if (n)
        memcpy(*w, p, n);
    *w += n;
}

int handoff_msg_encode(struct buf *out, const struct handoff_msg *m)
{
    size_t body;
    switch (m->type) {
    case HANDOFF_HELLO:
        if (m->text_len == 0 || m->text_len > HANDOFF_MAX_PATH)
            return UV_EINVAL;
        body = 4 + 2 + m->text_len;
        break;
    case HANDOFF_WELCOME:
        body = 4 + 2;
        break;
    case HANDOFF_LISTEN:
        if (m->text_len == 0 || m->text_len > 255 || m->path_len == 0 ||
            m->path_len > HANDOFF_MAX_PATH || memchr(m->path, 0, m->path_len))
            return UV_EINVAL;
        body = 1 + m->text_len + 2 + m->path_len;
        break;
    case HANDOFF_REFUSE:
        if (m->text_len > HANDOFF_MAX_REASON)
            return UV_EINVAL;
        body = 2 + m->text_len;
        break;
    case HANDOFF_CONN:
        if (m->text_len == 0 || m->text_len > 255 || m->pending_len > HANDOFF_MAX_PENDING ||
            (m->flags & ~HANDOFF_CONN_PREFIX) || m->last_sid > m->read_sid)
            return UV_EINVAL;
        body = 1 + 1 + m->text_len + 3 * 8 + 4 + m->pending_len;
        break;
    default:
        return UV_EINVAL;
    }
    if (m->text && memchr(m->text, 0, m->text_len))
        return UV_EINVAL;
    int rc = buf_reserve(out, HANDOFF_MSG_HEADER + body);
    if (rc)
        return rc;
    uint8_t *w = out->data + out->len;
    put_bytes(&w, MAGIC, 4);
    put_be(&w, HANDOFF_MSG_VERSION, 1);
    put_be(&w, (uint64_t)m->type, 1);
    put_be(&w, 0, 2);
    put_be(&w, body, 4);
    switch (m->type) {
    case HANDOFF_HELLO:
        put_be(&w, m->pid, 4);
        put_be(&w, m->text_len, 2);
        put_bytes(&w, m->text, m->text_len);
        break;
    case HANDOFF_WELCOME:
        put_be(&w, m->pid, 4);
        put_be(&w, m->n_listen, 2);
        break;
    case HANDOFF_LISTEN:
        put_be(&w, m->text_len, 1);
        put_bytes(&w, m->text, m->text_len);
        put_be(&w, m->path_len, 2);
        put_bytes(&w, m->path, m->path_len);
        break;
    case HANDOFF_REFUSE:
        put_be(&w, m->text_len, 2);
        put_bytes(&w, m->text, m->text_len);
        break;
    case HANDOFF_CONN:
        put_be(&w, m->flags, 1);
        put_be(&w, m->text_len, 1);
        put_bytes(&w, m->text, m->text_len);
        put_be(&w, m->last_sid, 8);
        put_be(&w, m->read_sid, 8);
        put_be(&w, m->client_id, 8);
        put_be(&w, m->pending_len, 4);
        put_bytes(&w, m->pending, m->pending_len);
        break;
    }
    out->len += HANDOFF_MSG_HEADER + body;
    return 0;
}
