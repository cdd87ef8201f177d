/*
 * libFuzzer target: RPC names are client input, and they end up as label
 * values in /metrics and strings in /rpcs. The input is a run of calls,
 * each [name length][name bytes][result byte], recorded into a real
 * process's table (tests/fuzz/fuzz_process.h) (first byte: max_rpcs 0..7, so "other" fills up
 * fast); then its /metrics families are rendered and checked line by line against the text format
 * (names, label syntax, escapes, UTF-8 values, sample values), and /rpcs is rendered, parsed back
 * and its names must be exactly the stored ones. Must never crash, leak, trip a sanitizer, keep
 * more than max_rpcs + 1 entries per pool, or emit a line that breaks the
 * format.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/rpcs.h"
#include "proxy/call.h"
#include "proxy/rpc_stats.h"
#include "proxy/utf8.h"
#include "tests/fuzz/fuzz_process.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] = "{\"listeners\":[{\"address\":\"unix:%s\"}],"
                             "\"admin\":{\"address\":\"127.0.0.1:2\"},"
                             "\"pools\":[{\"name\":\"p\",\"endpoints\":[\"127.0.0.1:3\"]},"
                             "{\"name\":\"q r\",\"endpoints\":[\"127.0.0.1:4\"]}],"
                             "\"routes\":[{\"pool\":\"p\"}]}";

static int name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* One sample line (without its \n): name{l="v",...} value. Aborts when broken. */
static void check_sample(const char *s, const char *end)
{
    if (s == end || !name_start(*s))
        abort();
    while (s < end && name_char(*s))
        s++;
    if (s < end && *s == '{') {
        s++;
        for (;;) {
            if (s == end || !name_start(*s) || *s == ':')
                abort();
            while (s < end && name_char(*s))
                s++;
            if (end - s < 2 || s[0] != '=' || s[1] != '"')
                abort();
            s += 2;
            char value[RPC_STATS_NAME_MAX * 2 + 64];
            size_t n = 0;
            while (s < end && *s != '"') {
                char c = *s++;
                if (c == '\\') {
                    if (s == end)
                        abort();
                    c = *s++;
                    if (c == 'n')
                        c = '\n';
                    else if (c != '\\' && c != '"')
                        abort();
                }
                if (n == sizeof(value))
                    abort(); /* longer than any name the table keeps */
                value[n++] = c;
            }
            if (s == end || !utf8_valid((const unsigned char *)value, n))
                abort();
            s++; /* closing quote */
            if (s < end && *s == ',') {
                s++;
                continue;
            }
            if (s == end || *s != '}')
                abort();
            s++;
            break;
        }
    }
    if (s == end || *s != ' ')
        abort();
    s++;
    if (s == end)
        abort();
    if (end - s == 4 && memcmp(s, "+Inf", 4) == 0)
        return;
    for (; s < end; s++)
        if (!((*s >= '0' && *s <= '9') || *s == '.'))
            abort();
}

static void check_exposition(const struct buf *b)
{
    const char *s = (const char *)b->data, *end = s + b->len;
    if (b->len == 0 || end[-1] != '\n')
        abort();
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            abort();
        if (*s == '#') {
            if (strncmp(s, "# HELP ", 7) != 0 && strncmp(s, "# TYPE ", 7) != 0)
                abort();
        } else {
            check_sample(s, nl);
        }
        s = nl + 1;
    }
}

static int stored(const struct rpc_stats *rs, const char *pool, const char *name)
{
    for (size_t i = 0; rs && i < rs->n_pools; i++) {
        const struct rpc_stats_pool *p = rs->pools[i];
        if (strcmp(p->name, pool) != 0)
            continue;
        if (strcmp(name, RPC_STATS_OTHER) == 0)
            return 1;
        for (size_t k = 0; k < p->n_entries; k++)
            if (strcmp(p->entries[k]->name, name) == 0)
                return 1;
    }
    return 0;
}

static void check_rpcs_view(struct sidecar *sc)
{
    json_t *doc = rpcs_view(sc);
    if (!doc)
        abort();
    char *text = json_dumps(doc, JSON_ENSURE_ASCII);
    json_decref(doc);
    json_error_t err;
    json_t *back = text ? json_loads(text, 0, &err) : NULL;
    free(text);
    if (!back)
        abort();
    size_t i, k;
    json_t *p, *r;
    json_array_foreach(json_object_get(back, "pools"), i, p)
    {
        const char *pool = json_string_value(json_object_get(p, "pool"));
        json_array_foreach(json_object_get(p, "rpcs"), k, r)
        {
            const char *name = json_string_value(json_object_get(r, "rpc"));
            if (!pool || !name || !stored(sc->rpc_stats, pool, name))
                abort();
        }
    }
    json_decref(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct sidecar *sc = fuzz_process_once(CONFIG, "fuzz_rpc_stats");
    uint32_t max_rpcs = data[0] % 8;
    size_t pos = 1;
    while (pos < size) {
        size_t len = data[pos++] % (RPC_STATS_NAME_MAX + 8);
        if (len > size - pos)
            len = size - pos;
        const char *name = (const char *)data + pos;
        pos += len;
        uint8_t how = pos < size ? data[pos++] : 0;
        rpc_stats_record(&sc->rpc_stats, max_rpcs, how & 0x80 ? "q r" : "p", name, len, how % 4,
                         (how >> 2) % CALL_CAUSE_COUNT, (uint64_t)how * 997);
    }
    const struct rpc_stats *rs = sc->rpc_stats;
    for (size_t i = 0; rs && i < rs->n_pools; i++)
        if (rs->pools[i]->n_entries > max_rpcs)
            abort();
    struct buf b = {0};
    /* The families the names reach (all of /metrics would spend most of
     * each run reading /proc for the process gauges). */
    if (rpcs_render_metrics(sc->rpc_stats, &b) != 0)
        abort();
    if (b.len)
        check_exposition(&b);
    buf_free(&b);
    check_rpcs_view(sc);
    rpc_stats_free(sc->rpc_stats);
    sc->rpc_stats = NULL;
    return 0;
}
