/*
 * Unit tests for the access log (proxy/accesslog.c) on a real libuv loop:
 * lines in both formats land in a temp file and parse back (JSON through
 * jansson, text through a small logfmt reader), escaping holds for hostile
 * RPC names, SIGUSR1-style reopen follows a rename, the pending cap drops
 * and counts instead of growing, "-" writes to fd 2, and every test ends
 * with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/accesslog.h"

#define MAX_LINES 40000

struct fixture {
    uv_loop_t loop;
    char dir[64];
    char path[128];
};

/* Lines of a file, each without its '\n'; a last line without '\n' is
 * reported as partial. */
struct lines {
    char **v;
    size_t *len;
    size_t n;
    int partial;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_accesslog.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/access.log", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    static const char *const names[] = {"access.log", "access.log.1", "stderr.log"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Runs the loop until nothing is left, then requires a clean close. */
static void finish_loop(struct fixture *f)
{
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void read_lines(const char *path, struct lines *out)
{
    memset(out, 0, sizeof(*out));
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    out->v = calloc(MAX_LINES, sizeof(*out->v));
    out->len = calloc(MAX_LINES, sizeof(*out->len));
    assert_non_null(out->v);
    assert_non_null(out->len);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0) {
        assert_true(out->n < MAX_LINES);
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        else
            out->partial = 1;
        out->v[out->n] = malloc((size_t)n + 1);
        assert_non_null(out->v[out->n]);
        memcpy(out->v[out->n], line, (size_t)n + 1);
        out->len[out->n] = (size_t)n;
        out->n++;
    }
    free(line);
    fclose(fp);
}

static void free_lines(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->len);
    memset(l, 0, sizeof(*l));
}

static struct accesslog *open_log(struct fixture *f, const char *path,
                                  enum config_log_format format)
{
    struct config_access_log cfg = {.enabled = true, .path = (char *)path, .format = format};
    struct accesslog *al = NULL;
    char err[256] = "";
    assert_int_equal(accesslog_open(&f->loop, &cfg, &al, err, sizeof(err)), 0);
    assert_non_null(al);
    return al;
}

static struct accesslog_entry entry(uint64_t i, const char *rpc, size_t rpc_len)
{
    struct accesslog_entry e = {
        .time_ms = 1700000000123ull + i,
        .call_id = 1000 + i,
        .client_id = 7,
        .client_peer = "127.0.0.1:40000",
        .listener = "local",
        .route = "route0",
        .pool = "default",
        .endpoint = "127.0.0.1:8000",
        .rpc = rpc,
        .rpc_len = rpc_len,
        .result = "ok",
        .error_code = 0,
        .duration_us = 1234 + i,
        .wait_us = 56,
        .bytes_up = 10,
        .bytes_down = 20,
        .msgs_up = 1,
        .msgs_down = 2,
    };
    return e;
}

/* RPC names every format must survive. Each is ASCII, so after escaping
 * and parsing it must come back byte for byte. */
struct name {
    const char *s;
    size_t len;
};
#define NAME(lit)                                                                                  \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }
static const struct name ascii_names[] = {
    NAME("/test.Echo/Unary"),
    NAME("/quote\"d/and\\back\\slash"),
    NAME("/ctl\n\r\t\b\f\x01\x1f\x7f/end"),
    NAME("/with space/and=equals"),
    NAME("/nul\0inside"),
    NAME(""),
    NAME("\"}\n{\"injected\":1"),
};

/* Names with bytes outside ASCII: valid and invalid UTF-8. Whatever the
 * escaping, each line must stay one valid JSON object. */
static const struct name binary_names[] = {
    NAME("/caf\xc3\xa9/\xe2\x82\xac"), NAME("/lone\xc3"),         NAME("/bad\xff\xfe"),
    NAME("/surrogate\xed\xa0\x80"),    NAME("/overlong\xc0\xaf"), NAME("\x80\x80\x80"),
};

#define N_ASCII  (sizeof(ascii_names) / sizeof(ascii_names[0]))
#define N_BINARY (sizeof(binary_names) / sizeof(binary_names[0]))

static void assert_u64_field(json_t *obj, const char *key, uint64_t want)
{
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    assert_int_equal((uint64_t)json_integer_value(v), want);
}

static void assert_str_field(json_t *obj, const char *key, const char *want)
{
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);
    assert_true(json_is_string(v));
    assert_string_equal(json_string_value(v), want);
}

/* No raw control bytes may reach the file: a log line is one line. */
static void assert_no_raw_controls(const struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        for (size_t k = 0; k < l->len[i]; k++)
            assert_true((unsigned char)l->v[i][k] >= 0x20);
}

static void test_json_lines_parse(void **state)
{
    struct fixture *f = *state;
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_JSON);
    const size_t rounds = 30;
    size_t total = 0;
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < N_ASCII; i++, total++) {
            struct accesslog_entry e = entry(total, ascii_names[i].s, ascii_names[i].len);
            accesslog_call(al, &e);
        }
        for (size_t i = 0; i < N_BINARY; i++, total++) {
            struct accesslog_entry e = entry(total, binary_names[i].s, binary_names[i].len);
            e.result = "upstream_lost";
            e.error_code = 1006;
            e.endpoint = "-";
            accesslog_call(al, &e);
        }
        if (r % 7 == 0) /* let some writes complete between batches */
            uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(accesslog_dropped(al), 0);
    accesslog_close(al);
    finish_loop(f);

    struct lines l;
    read_lines(f->path, &l);
    assert_false(l.partial);
    assert_int_equal(l.n, total);
    assert_no_raw_controls(&l);
    for (size_t i = 0; i < l.n; i++) {
        json_error_t jerr;
        json_t *obj = json_loadb(l.v[i], l.len[i], JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
        if (!obj)
            fail_msg("line %zu does not parse (%s): %s", i, jerr.text, l.v[i]);
        assert_true(json_is_object(obj));
        assert_int_equal(json_object_size(obj), 18);
        size_t k = i % (N_ASCII + N_BINARY);
        assert_u64_field(obj, "call_id", 1000 + i);
        assert_u64_field(obj, "client_id", 7);
        assert_u64_field(obj, "duration_us", 1234 + i);
        assert_u64_field(obj, "wait_us", 56);
        assert_u64_field(obj, "bytes_up", 10);
        assert_u64_field(obj, "bytes_down", 20);
        assert_u64_field(obj, "msgs_up", 1);
        assert_u64_field(obj, "msgs_down", 2);
        assert_str_field(obj, "client", "127.0.0.1:40000");
        assert_str_field(obj, "listener", "local");
        assert_str_field(obj, "route", "route0");
        assert_str_field(obj, "pool", "default");
        json_t *rpc = json_object_get(obj, "rpc");
        assert_true(json_is_string(rpc));
        if (k < N_ASCII) {
            assert_str_field(obj, "result", "ok");
            assert_u64_field(obj, "error_code", 0);
            assert_str_field(obj, "endpoint", "127.0.0.1:8000");
            assert_int_equal(json_string_length(rpc), ascii_names[k].len);
            assert_memory_equal(json_string_value(rpc), ascii_names[k].s, ascii_names[k].len);
        } else {
            assert_str_field(obj, "result", "upstream_lost");
            assert_u64_field(obj, "error_code", 1006);
            assert_str_field(obj, "endpoint", "-");
        }
        json_decref(obj);
    }
    /* 1700000000123 ms = 2023-11-14T22:13:20.123Z */
    assert_non_null(strstr(l.v[0], "\"time\":\"2023-11-14T22:13:20.123Z\""));
    free_lines(&l);
}

/*
 * A minimal logfmt reader: key=value pairs separated by one space; a value
 * is either bare (no space, quote or control byte) or a JSON string.
 * Returns the number of pairs, values decoded into vals (malloc'd).
 */
static size_t parse_logfmt(const char *s, size_t n, char keys[][32], char **vals, size_t *val_lens,
                           size_t max)
{
    size_t i = 0, count = 0;
    while (i < n) {
        assert_true(count < max);
        size_t k = i;
        while (i < n && s[i] != '=')
            i++;
        assert_true(i < n);
        assert_true(i - k > 0 && i - k < 32);
        memcpy(keys[count], s + k, i - k);
        keys[count][i - k] = '\0';
        i++; /* '=' */
        if (i < n && s[i] == '"') {
            size_t v = i++;
            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            assert_true(i < n);
            i++; /* closing quote */
            json_error_t jerr;
            json_t *js = json_loadb(s + v, i - v, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            if (!js)
                fail_msg("bad quoted value (%s): %.*s", jerr.text, (int)(i - v), s + v);
            assert_true(json_is_string(js));
            val_lens[count] = json_string_length(js);
            vals[count] = malloc(val_lens[count] + 1);
            assert_non_null(vals[count]);
            memcpy(vals[count], json_string_value(js), val_lens[count] + 1);
            json_decref(js);
        } else {
            size_t v = i;
            while (i < n && s[i] != ' ') {
                assert_true((unsigned char)s[i] > 0x20 && s[i] != '"');
                i++;
            }
            val_lens[count] = i - v;
            vals[count] = strndup(s + v, i - v);
            assert_non_null(vals[count]);
        }
        count++;
        if (i < n) {
            assert_true(s[i] == ' ');
            i++;
            assert_true(i < n); /* no trailing space */
        }
    }
    return count;
}

static void test_text_lines_parse(void **state)
{
    struct fixture *f = *state;
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_TEXT);
    size_t total = 0;
    for (size_t i = 0; i < N_ASCII; i++, total++) {
        struct accesslog_entry e = entry(total, ascii_names[i].s, ascii_names[i].len);
        accesslog_call(al, &e);
    }
    for (size_t i = 0; i < N_BINARY; i++, total++) {
        struct accesslog_entry e = entry(total, binary_names[i].s, binary_names[i].len);
        e.client_peer = "unix:/run/with space.sock";
        accesslog_call(al, &e);
    }
    accesslog_close(al);
    finish_loop(f);

    static const char *const want_keys[] = {
        "time",    "client",   "listener",   "route",     "pool",       "endpoint",
        "rpc",     "result",   "call_id",    "client_id", "error_code", "duration_us",
        "wait_us", "bytes_up", "bytes_down", "msgs_up",   "msgs_down",  "attempt",
    };
    const size_t n_keys = sizeof(want_keys) / sizeof(want_keys[0]);
    struct lines l;
    read_lines(f->path, &l);
    assert_false(l.partial);
    assert_int_equal(l.n, total);
    assert_no_raw_controls(&l);
    for (size_t i = 0; i < l.n; i++) {
        char keys[24][32];
        char *vals[24];
        size_t lens[24];
        size_t n = parse_logfmt(l.v[i], l.len[i], keys, vals, lens, 24);
        assert_int_equal(n, n_keys);
        for (size_t k = 0; k < n; k++)
            assert_string_equal(keys[k], want_keys[k]);
        char ts[48];
        snprintf(ts, sizeof(ts), "2023-11-14T22:13:20.%03zuZ", 123 + i);
        assert_string_equal(vals[0], ts);
        if (i < N_ASCII) {
            assert_string_equal(vals[1], "127.0.0.1:40000");
            assert_int_equal(lens[6], ascii_names[i].len);
            assert_memory_equal(vals[6], ascii_names[i].s, ascii_names[i].len);
        } else {
            assert_string_equal(vals[1], "unix:/run/with space.sock");
        }
        assert_string_equal(vals[7], "ok");
        char id[32];
        snprintf(id, sizeof(id), "%zu", 1000 + i);
        assert_string_equal(vals[8], id);
        for (size_t k = 0; k < n; k++)
            free(vals[k]);
    }
    /* simple values stay bare, values with spaces are quoted */
    assert_non_null(strstr(l.v[0], " rpc=/test.Echo/Unary "));
    assert_non_null(strstr(l.v[N_ASCII], " client=\"unix:/run/with space.sock\" "));
    free_lines(&l);
}

/* logrotate: rename, SIGUSR1 (accesslog_reopen), new lines in a new file. */
static void test_reopen_after_rename(void **state)
{
    struct fixture *f = *state;
    char rotated[160];
    snprintf(rotated, sizeof(rotated), "%s.1", f->path);
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_JSON);
    for (uint64_t i = 0; i < 10; i++) {
        struct accesslog_entry e = entry(i, "/before", 7);
        accesslog_call(al, &e);
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* all written */
    assert_int_equal(rename(f->path, rotated), 0);
    /* until the reopen, lines still go to the renamed file */
    struct accesslog_entry e0 = entry(10, "/before", 7);
    accesslog_call(al, &e0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    accesslog_reopen(al);
    for (uint64_t i = 11; i < 16; i++) {
        struct accesslog_entry e = entry(i, "/after", 6);
        accesslog_call(al, &e);
    }
    accesslog_close(al);
    finish_loop(f);

    struct lines old, cur;
    read_lines(rotated, &old);
    read_lines(f->path, &cur);
    assert_int_equal(old.n, 11);
    assert_int_equal(cur.n, 5);
    for (size_t i = 0; i < old.n; i++)
        assert_non_null(strstr(old.v[i], "\"rpc\":\"/before\""));
    for (size_t i = 0; i < cur.n; i++)
        assert_non_null(strstr(cur.v[i], "\"rpc\":\"/after\""));
    free_lines(&old);
    free_lines(&cur);
}

/* Reopen requested while a write is in flight and lines are pending: no
 * line is lost, torn or written twice; the reopen waits for the write. */
static void test_reopen_while_busy(void **state)
{
    struct fixture *f = *state;
    char rotated[160];
    snprintf(rotated, sizeof(rotated), "%s.1", f->path);
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_TEXT);
    uint64_t id = 0;
    for (; id < 500; id++) {
        struct accesslog_entry e = entry(id, "/x", 2);
        accesslog_call(al, &e);
    }
    assert_int_equal(rename(f->path, rotated), 0);
    accesslog_reopen(al);
    accesslog_reopen(al); /* twice: still one reopen */
    for (; id < 1000; id++) {
        struct accesslog_entry e = entry(id, "/y", 2);
        accesslog_call(al, &e);
    }
    accesslog_close(al);
    finish_loop(f);

    struct lines old, cur;
    read_lines(rotated, &old);
    read_lines(f->path, &cur);
    assert_false(old.partial);
    assert_false(cur.partial);
    assert_int_equal(old.n + cur.n, 1000);
    assert_true(old.n >= 1); /* the write in flight at reopen went to the old file */
    /* every call id exactly once, in order across old then new */
    for (size_t i = 0; i < old.n + cur.n; i++) {
        const char *s = i < old.n ? old.v[i] : cur.v[i - old.n];
        char want[32];
        snprintf(want, sizeof(want), " call_id=%zu ", 1000 + i);
        assert_non_null(strstr(s, want));
    }
    free_lines(&old);
    free_lines(&cur);
}

/* With the loop not running, pending bytes pass the cap: lines are
 * dropped and counted, memory stays bounded, and the rest is written. */
static void test_pending_cap_drops_and_counts(void **state)
{
    struct fixture *f = *state;
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_JSON);
    char rpc[512];
    memset(rpc, 'r', sizeof(rpc));
    rpc[0] = '/';
    const uint64_t total = 12000; /* ~ 12000 * 800 B = 9.6 MB > 4 MiB */
    for (uint64_t i = 0; i < total; i++) {
        struct accesslog_entry e = entry(i, rpc, sizeof(rpc));
        accesslog_call(al, &e);
    }
    uint64_t dropped = accesslog_dropped(al);
    assert_true(dropped > 0);
    assert_true(dropped < total);
    accesslog_close(al);
    finish_loop(f);

    struct lines l;
    read_lines(f->path, &l);
    assert_false(l.partial);
    assert_int_equal(l.n + dropped, total);
    /* pending stopped near the cap (plus the first line, sent at once) */
    size_t bytes = 0;
    for (size_t i = 0; i < l.n; i++)
        bytes += l.len[i] + 1;
    assert_true(bytes <= ACCESSLOG_MAX_PENDING + 2 * (l.len[0] + 1));
    /* the lines written are the first ones, in order */
    for (size_t i = 0; i < l.n; i += 997) {
        char want[48];
        snprintf(want, sizeof(want), "\"call_id\":%zu,", 1000 + i);
        assert_non_null(strstr(l.v[i], want));
    }
    free_lines(&l);
}

/* "-" writes to fd 2 through the loop, and close leaves fd 2 open. */
static void test_stderr_dash(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/stderr.log", f->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);

    struct accesslog *al = open_log(f, "-", CONFIG_LOG_FORMAT_TEXT);
    for (uint64_t i = 0; i < 3; i++) {
        struct accesslog_entry e = entry(i, "/stderr", 7);
        accesslog_call(al, &e);
    }
    accesslog_reopen(al); /* a no-op for stderr */
    accesslog_close(al);
    int run_rc = uv_run(&f->loop, UV_RUN_DEFAULT);
    int close_rc = uv_loop_close(&f->loop);
    /* fd 2 must still be open: writing to it succeeds */
    ssize_t w = write(STDERR_FILENO, "after\n", 6);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    assert_int_equal(run_rc, 0);
    assert_int_equal(close_rc, 0);
    assert_int_equal(w, 6);

    struct lines l;
    read_lines(path, &l);
    assert_int_equal(l.n, 4);
    for (size_t i = 0; i < 3; i++)
        assert_non_null(strstr(l.v[i], " rpc=/stderr "));
    assert_string_equal(l.v[3], "after");
    free_lines(&l);
}

static void test_open_error_reports_path(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/no/such/dir/access.log", f->dir);
    struct config_access_log cfg = {
        .enabled = true, .path = path, .format = CONFIG_LOG_FORMAT_JSON};
    struct accesslog *al = NULL;
    char err[256] = "";
    assert_int_equal(accesslog_open(&f->loop, &cfg, &al, err, sizeof(err)), UV_ENOENT);
    assert_null(al);
    assert_non_null(strstr(err, path));
    finish_loop(f);
}

/* Closing with nothing queued, or right after lines without running the
 * loop in between, frees everything and writes every line. */
static void test_close_paths(void **state)
{
    struct fixture *f = *state;
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_JSON);
    accesslog_close(al);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    al = open_log(f, f->path, CONFIG_LOG_FORMAT_JSON);
    for (uint64_t i = 0; i < 100; i++) {
        struct accesslog_entry e = entry(i, "/c", 2);
        accesslog_call(al, &e);
    }
    accesslog_reopen(al);
    accesslog_close(al);
    finish_loop(f);

    struct lines l;
    read_lines(f->path, &l);
    assert_int_equal(l.n, 100);
    free_lines(&l);

    /* NULL is accepted everywhere (access log not configured) */
    struct accesslog_entry e = entry(0, "/n", 2);
    accesslog_call(NULL, &e);
    accesslog_reopen(NULL);
    accesslog_close(NULL);
    assert_int_equal(accesslog_dropped(NULL), 0);
}

/* Valid UTF-8 reaches the log as is (an operator greps for "/café"); each
 * byte that is not UTF-8 becomes U+FFFD, in both formats. */
static void test_utf8_kept_invalid_replaced(void **state)
{
    struct fixture *f = *state;
    static const struct {
        struct name in;
        const char *want;
    } cases[] = {
        {NAME("/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80"),
         "/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80"},
        {NAME("/bad\xff\xfe"), "/bad\xef\xbf\xbd\xef\xbf\xbd"},
        {NAME("/lone\xc3"), "/lone\xef\xbf\xbd"},
        {NAME("/surrogate\xed\xa0\x80"), "/surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {NAME("/overlong\xc0\xaf"), "/overlong\xef\xbf\xbd\xef\xbf\xbd"},
    };
    const size_t n = sizeof(cases) / sizeof(cases[0]);
    for (int format = 0; format < 2; format++) {
        enum config_log_format fmt = format ? CONFIG_LOG_FORMAT_TEXT : CONFIG_LOG_FORMAT_JSON;
        struct accesslog *al = open_log(f, f->path, fmt);
        for (size_t i = 0; i < n; i++) {
            struct accesslog_entry e = entry(i, cases[i].in.s, cases[i].in.len);
            accesslog_call(al, &e);
        }
        accesslog_close(al);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

        struct lines l;
        read_lines(f->path, &l);
        assert_int_equal(l.n, n);
        for (size_t i = 0; i < n; i++) {
            char *rpc = NULL;
            size_t rpc_len = 0;
            if (fmt == CONFIG_LOG_FORMAT_JSON) {
                json_error_t jerr;
                json_t *obj = json_loadb(l.v[i], l.len[i], 0, &jerr);
                if (!obj)
                    fail_msg("line %zu does not parse (%s): %s", i, jerr.text, l.v[i]);
                rpc = strdup(json_string_value(json_object_get(obj, "rpc")));
                json_decref(obj);
                rpc_len = strlen(rpc);
            } else {
                char keys[24][32];
                char *vals[24];
                size_t lens[24];
                size_t k = parse_logfmt(l.v[i], l.len[i], keys, vals, lens, 24);
                assert_string_equal(keys[6], "rpc");
                rpc = vals[6];
                rpc_len = lens[6];
                for (size_t j = 0; j < k; j++)
                    if (j != 6)
                        free(vals[j]);
            }
            assert_int_equal(rpc_len, strlen(cases[i].want));
            assert_memory_equal(rpc, cases[i].want, rpc_len);
            free(rpc);
        }
        /* valid UTF-8 is written raw, not as \u escapes */
        assert_non_null(strstr(l.v[0], "/caf\xc3\xa9/"));
        free_lines(&l);
        unlink(f->path);
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* A call that never reached an upstream has no endpoint, an agent may have
 * no id: NULL fields are logged as "-". */
static void test_null_fields_are_dashes(void **state)
{
    struct fixture *f = *state;
    struct accesslog *al = open_log(f, f->path, CONFIG_LOG_FORMAT_JSON);
    struct accesslog_entry e = entry(0, NULL, 0);
    e.client_peer = e.listener = e.route = e.pool = e.endpoint = e.result = NULL;
    accesslog_call(al, &e);
    accesslog_close(al);
    finish_loop(f);
    struct lines l;
    read_lines(f->path, &l);
    assert_int_equal(l.n, 1);
    json_error_t jerr;
    json_t *obj = json_loadb(l.v[0], l.len[0], 0, &jerr);
    assert_non_null(obj);
    static const char *const keys[] = {"client", "listener", "route", "pool", "endpoint", "result"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_str_field(obj, keys[i], "-");
    assert_str_field(obj, "rpc", "");
    json_decref(obj);
    free_lines(&l);
}

/* A disk that refuses writes (/dev/full: ENOSPC) loses lines, but every lost
 * line is counted and the log neither spins nor grows. */
static void test_failed_writes_are_counted(void **state)
{
    struct fixture *f = *state;
    if (access("/dev/full", W_OK) != 0)
        skip();
    struct accesslog *al = open_log(f, "/dev/full", CONFIG_LOG_FORMAT_TEXT);
    const uint64_t total = 50;
    for (uint64_t i = 0; i < total; i++) {
        struct accesslog_entry e = entry(i, "/full", 5);
        accesslog_call(al, &e);
        if (i % 10 == 0)
            uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(accesslog_dropped(al), total);
    accesslog_close(al);
    finish_loop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_lines_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_lines_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_while_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_cap_drops_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_dash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_error_reports_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_utf8_kept_invalid_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_fields_are_dashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_writes_are_counted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
