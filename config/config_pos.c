/* config_pos: JSON path -> line/column index (see config_pos.h). */
#include "config/config_pos.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_DEPTH 64
#define MAX_PATH  256

struct scanner {
    const char *p;
    const char *end;
    int line;
    int column;
    struct config_pos *idx;
    int depth;
    bool failed;
};

static void advance(struct scanner *s)
{
    if (*s->p == '\n') {
        s->line++;
        s->column = 1;
    } else {
        s->column++;
    }
    s->p++;
}

static void skip_ws(struct scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        advance(s);
}

static int add(struct config_pos *idx, const char *path, int line, int column, int is_key)
{
    if (idx->n == idx->cap) {
        size_t cap = idx->cap ? idx->cap * 2 : 64;
        struct config_pos_entry *e = realloc(idx->entries, cap * sizeof(*e));
        if (!e)
            return UV_ENOMEM;
        idx->entries = e;
        idx->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return UV_ENOMEM;
    idx->entries[idx->n++] = (struct config_pos_entry){copy, is_key, line, column};
    return 0;
}

/* Reads a string token; its decoded text (escapes kept simple) goes to out. */
static void scan_string(struct scanner *s, char *out, size_t out_size)
{
    size_t n = 0;
    advance(s); /* opening quote */
    while (s->p < s->end && *s->p != '"') {
        char c = *s->p;
        if (c == '\\' && s->p + 1 < s->end) {
            advance(s);
            c = *s->p;
            switch (c) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u':
                /* Keys with \u escapes are rare: keep the escape as written. */
                if (out && n + 2 < out_size) {
                    out[n++] = '\\';
                }
                break;
            default:
                break;
            }
        }
        if (out && n + 1 < out_size)
            out[n++] = c;
        advance(s);
    }
    if (s->p < s->end)
        advance(s); /* closing quote */
    if (out)
        out[n] = '\0';
}

static void scan_value(struct scanner *s, const char *path);

static void scan_object(struct scanner *s, const char *path)
{
    advance(s); /* { */
    skip_ws(s);
    while (s->p < s->end && *s->p != '}' && !s->failed) {
        if (*s->p != '"') {
            s->failed = true;
            return;
        }
        char key[MAX_PATH];
        int key_line = s->line, key_column = s->column;
        scan_string(s, key, sizeof(key));
        skip_ws(s);
        if (s->p < s->end && *s->p == ':')
            advance(s);
        skip_ws(s);
        char child[MAX_PATH * 2 + 2];
        if (path[0])
            snprintf(child, sizeof(child), "%s.%s", path, key);
        else
            snprintf(child, sizeof(child), "%s", key);
        child[MAX_PATH - 1] = '\0'; /* paths only label error messages */
        if (add(s->idx, child, key_line, key_column, 1) != 0) {
            s->failed = true;
            return;
        }
        scan_value(s, child);
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            advance(s);
            skip_ws(s);
        }
    }
    if (s->p < s->end)
        advance(s); /* } */
}

static void scan_array(struct scanner *s, const char *path)
{
    advance(s); /* [ */
    skip_ws(s);
    for (size_t i = 0; s->p < s->end && *s->p != ']' && !s->failed; i++) {
        char child[MAX_PATH + 32];
        snprintf(child, sizeof(child), "%s[%zu]", path, i);
        child[MAX_PATH - 1] = '\0';
        scan_value(s, child);
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            advance(s);
            skip_ws(s);
        }
    }
    if (s->p < s->end)
        advance(s); /* ] */
}

static void scan_value(struct scanner *s, const char *path)
{
    skip_ws(s);
    if (s->p >= s->end || s->failed)
        return;
    if (add(s->idx, path, s->line, s->column, 0) != 0) {
        s->failed = true;
        return;
    }
    if (++s->depth > MAX_DEPTH) {
        s->failed = true;
        return;
    }
    switch (*s->p) {
    case '{':
        scan_object(s, path);
        break;
    case '[':
        scan_array(s, path);
        break;
    case '"':
        scan_string(s, NULL, 0);
        break;
    default: {
        /* number, true, false, null */
        const char *start = s->p;
        while (s->p < s->end && *s->p && !strchr(",]} \t\r\n", *s->p))
            advance(s);
        if (s->p == start)
            s->failed = true; /* not JSON we understand: stop indexing */
        break;
    }
    }
    s->depth--;
}

int config_pos_build(struct config_pos *idx, const char *text, size_t len)
{
    memset(idx, 0, sizeof(*idx));
    struct scanner s = {text, text + len, 1, 1, idx, 0, false};
    /* A UTF-8 byte order mark is not part of the document. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        s.p += 3;
    scan_value(&s, "");
    return s.failed && idx->n == 0 ? UV_ENOMEM : 0;
}

int config_pos_find_key(const struct config_pos *idx, const char *path, int *line, int *column)
{
    for (size_t i = 0; i < idx->n; i++) {
        if (idx->entries[i].is_key && strcmp(idx->entries[i].path, path) == 0) {
            *line = idx->entries[i].line;
            *column = idx->entries[i].column;
            return 0;
        }
    }
    return config_pos_find(idx, path, line, column);
}

int config_pos_find(const struct config_pos *idx, const char *path, int *line, int *column)
{
    char buf[MAX_PATH];
    snprintf(buf, sizeof(buf), "%s", path);
    for (;;) {
        for (size_t i = 0; i < idx->n; i++) {
            if (!idx->entries[i].is_key && strcmp(idx->entries[i].path, buf) == 0) {
                *line = idx->entries[i].line;
                *column = idx->entries[i].column;
                return 0;
            }
        }
        if (!buf[0])
            return -1;
        /* Walk up one level: "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> "". */
        char *dot = strrchr(buf, '.');
        char *bracket = strrchr(buf, '[');
        char *cut = dot > bracket ? dot : bracket;
        if (cut)
            *cut = '\0';
        else
            buf[0] = '\0';
    }
}

void config_pos_free(struct config_pos *idx)
{
    for (size_t i = 0; i < idx->n; i++)
        free(idx->entries[i].path);
    free(idx->entries);
    memset(idx, 0, sizeof(*idx));
}
