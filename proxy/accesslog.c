/* accesslog: non-blocking per-call log lines (see accesslog.h). */
#include "proxy/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/buf.h"
#include "proxy/log.h"
#include "proxy/utf8.h"

enum accesslog_state {
    ACCESSLOG_OPEN,    /* writing to fd */
    ACCESSLOG_CLOSING, /* flushing, then close and free */
};

struct accesslog {
    uv_loop_t *loop;
    char *path; /* NULL for stderr */
    enum config_log_format format;
    enum accesslog_state state;
    uv_file fd;
    struct buf pending;
    struct buf inflight;
    uv_fs_t req;
    bool busy; /* a write, open or close request in flight */
    bool reopen_wanted;
    bool write_failing; /* the last write failed; logged once per streak */
    uint64_t dropped;
};

static void kick(struct accesslog *al);

static uint64_t count_lines(const struct buf *b)
{
    uint64_t n = 0;
    for (const uint8_t *p = b->data, *end = b->data + b->len;
         (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        n++;
    return n;
}

/* A failed write (disk full, file gone read-only) loses its lines: they are
 * counted as dropped, never retried forever. A short write keeps the rest. */
static void write_done(struct accesslog *al, ssize_t result)
{
    if (result < 0) {
        al->dropped += count_lines(&al->inflight);
        if (!al->write_failing)
            log_error("access log: write to %s failed: %s (lines are dropped and counted)",
                      al->path ? al->path : "stderr", uv_strerror((int)result));
        al->write_failing = true;
        buf_reset(&al->inflight);
        return;
    }
    if (al->write_failing)
        log_info("access log: writing to %s again", al->path ? al->path : "stderr");
    al->write_failing = false;
    buf_consume(&al->inflight, (size_t)result);
}

static void done_cb(uv_fs_t *req)
{
    struct accesslog *al = req->data;
    bool was_open = req->fs_type == UV_FS_OPEN;
    ssize_t result = req->result;
    uv_fs_req_cleanup(req);
    al->busy = false;
    if (was_open) {
        if (result < 0) {
            log_error("access log: cannot reopen %s: %s", al->path, uv_strerror((int)result));
            al->fd = -1;
        } else {
            al->fd = (uv_file)result;
        }
    } else if (req->fs_type == UV_FS_WRITE) {
        write_done(al, result);
    }
    kick(al);
}

/* Starts the next step: reopen, write, or (when closing) the final close. */
static void kick(struct accesslog *al)
{
    if (al->busy)
        return;
    al->req.data = al;
    if (al->reopen_wanted && al->path) {
        /* close the old file first; the open follows when the close is done */
        if (al->fd >= 0) {
            uv_file old = al->fd;
            al->fd = -1;
            al->busy = true;
            if (uv_fs_close(al->loop, &al->req, old, done_cb) == 0)
                return;
            al->busy = false;
        }
        al->reopen_wanted = false;
        al->busy = true;
        if (uv_fs_open(al->loop, &al->req, al->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                       0640, done_cb) == 0)
            return;
        al->busy = false;
    }
    if ((al->inflight.len || al->pending.len) && al->fd >= 0) {
        if (!al->inflight.len) {
            struct buf t = al->inflight;
            al->inflight = al->pending;
            al->pending = t;
            buf_reset(&al->pending);
        }
        uv_buf_t b = uv_buf_init((char *)al->inflight.data, (unsigned)al->inflight.len);
        al->busy = true;
        if (uv_fs_write(al->loop, &al->req, al->fd, &b, 1, -1, done_cb) == 0)
            return;
        al->busy = false;
    }
    if (al->state == ACCESSLOG_CLOSING && !al->busy) {
        if (al->fd >= 0 && al->path) {
            uv_file fd = al->fd;
            al->fd = -1;
            al->busy = true;
            if (uv_fs_close(al->loop, &al->req, fd, done_cb) == 0)
                return;
            al->busy = false;
        }
        buf_free(&al->pending);
        buf_free(&al->inflight);
        free(al->path);
        free(al);
    }
}

int accesslog_open(uv_loop_t *loop, const struct config_access_log *cfg, struct accesslog **out,
                   char *err, size_t err_size)
{
    struct accesslog *al = calloc(1, sizeof(*al));
    if (!al)
        return UV_ENOMEM;
    al->loop = loop;
    al->format = cfg->format;
    al->fd = STDERR_FILENO;
    if (strcmp(cfg->path, "-") != 0) {
        al->path = strdup(cfg->path);
        /* Opened once at start (before or outside the hot path); reopens are async. */
        int fd = open(cfg->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (!al->path || fd < 0) {
            int e = errno;
            snprintf(err, err_size, "access_log.path %s: %s", cfg->path, strerror(e));
            free(al->path);
            free(al);
            return uv_translate_sys_error(e);
        }
        al->fd = fd;
    }
    *out = al;
    return 0;
}

static void json_str(struct buf *b, const char *s, size_t n, int *rc)
{
    static const char hex[] = "0123456789abcdef";
    *rc = *rc || buf_append(b, "\"", 1);
    for (size_t i = 0; i < n && !*rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            *rc = buf_append(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            *rc = buf_append(b, e, 6);
        } else if (c >= 0x80) {
            /* Valid UTF-8 is kept as is; each invalid byte becomes U+FFFD,
             * so any input still makes one valid JSON string. */
            size_t len = utf8_sequence((const unsigned char *)s + i, n - i);
            *rc = len ? buf_append(b, s + i, len) : buf_append(b, "\\ufffd", 6);
            i += len ? len - 1 : 0;
        } else {
            *rc = buf_append(b, &s[i], 1);
        }
    }
    *rc = *rc || buf_append(b, "\"", 1);
}

static void text_val(struct buf *b, const char *s, size_t n, int *rc)
{
    bool quote = n == 0 || memchr(s, ' ', n) || memchr(s, '"', n) || memchr(s, '=', n);
    for (size_t i = 0; i < n && !quote;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = utf8_sequence((const unsigned char *)s + i, n - i);
        quote = c < 0x20 || c == 0x7f || len == 0;
        i += len ? len : 1;
    }
    if (quote)
        json_str(b, s, n, rc);
    else
        *rc = *rc || buf_append(b, s, n);
}

/* Fields that do not apply (no upstream yet, an agent without an id) may be
 * NULL; they are logged as "-". */
static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

void accesslog_call(struct accesslog *al, const struct accesslog_entry *e)
{
    if (!al || al->state != ACCESSLOG_OPEN)
        return;
    if (al->pending.len > ACCESSLOG_MAX_PENDING) {
        al->dropped++;
        return;
    }
    char ts[64];
    time_t secs = (time_t)(e->time_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(e->time_ms % 1000));
    struct {
        const char *key;
        const char *val;
        size_t len;
    } strs[] = {
        {"time", ts, strlen(ts)},
        {"client", or_dash(e->client_peer), strlen(or_dash(e->client_peer))},
        {"listener", or_dash(e->listener), strlen(or_dash(e->listener))},
        {"route", or_dash(e->route), strlen(or_dash(e->route))},
        {"pool", or_dash(e->pool), strlen(or_dash(e->pool))},
        {"endpoint", or_dash(e->endpoint), strlen(or_dash(e->endpoint))},
        {"rpc", e->rpc ? e->rpc : "", e->rpc ? e->rpc_len : 0},
        {"result", or_dash(e->result), strlen(or_dash(e->result))},
    };
    struct {
        const char *key;
        uint64_t val;
    } nums[] = {
        {"call_id", e->call_id},         {"client_id", e->client_id}, {"error_code", e->error_code},
        {"duration_us", e->duration_us}, {"wait_us", e->wait_us},     {"bytes_up", e->bytes_up},
        {"bytes_down", e->bytes_down},   {"msgs_up", e->msgs_up},     {"msgs_down", e->msgs_down},
        {"attempt", e->attempt},
    };
    size_t start = al->pending.len;
    int rc = 0;
    struct buf *b = &al->pending;
    bool json = al->format == CONFIG_LOG_FORMAT_JSON;
    rc = buf_append(b, json ? "{" : "", json ? 1 : 0);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]) && !rc; i++) {
        if (i)
            rc = buf_append(b, json ? "," : " ", 1);
        if (json) {
            json_str(b, strs[i].key, strlen(strs[i].key), &rc);
            rc = rc || buf_append(b, ":", 1);
            json_str(b, strs[i].val, strs[i].len, &rc);
        } else {
            rc = rc || buf_append(b, strs[i].key, strlen(strs[i].key)) || buf_append(b, "=", 1);
            text_val(b, strs[i].val, strs[i].len, &rc);
        }
    }
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]) && !rc; i++) {
        char n[64];
        int k =
            json ? snprintf(n, sizeof(n), ",\"%s\":%llu", nums[i].key,
                            (unsigned long long)nums[i].val)
                 : snprintf(n, sizeof(n), " %s=%llu", nums[i].key, (unsigned long long)nums[i].val);
        rc = buf_append(b, n, (size_t)k);
    }
    rc = rc || buf_append(b, json ? "}\n" : "\n", json ? 2 : 1);
    if (rc) {
        b->len = start;
        al->dropped++;
        return;
    }
    kick(al);
}

void accesslog_reopen(struct accesslog *al)
{
    if (!al || !al->path)
        return;
    al->reopen_wanted = true;
    kick(al);
}

void accesslog_close(struct accesslog *al)
{
    if (!al)
        return;
    al->state = ACCESSLOG_CLOSING;
    kick(al);
}

uint64_t accesslog_dropped(const struct accesslog *al)
{
    return al ? al->dropped : 0;
}
