/*
 * config_pos: JSON path -> line:column of its value (see config_pos.h).
 *
 * One pass over the text, no allocation: a stack of open containers (kind,
 * next array index, length of the container's own path) and one path
 * buffer that grows by ".key" or "[i]" for each member and is cut back to
 * the container's path after it:
 *
 *   {"pools": [ {"name": "a"}, {"max_conns": 0} ]}
 *    ^"" ^"pools" ^"pools[0]"  ^"pools[1]"   ^"pools[1].max_conns"
 *
 * Every value start is compared with the target path; the last ancestor
 * seen is kept in case the target itself is absent (a missing key).
 */
#include "config/config_pos.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Containers nested deeper than this are skipped, not indexed: no config
 * key lives that deep, and such a path is cut to CONFIG_POS_PATH_MAX anyway. */
#define MAX_DEPTH 128

struct frame {
    bool object;
    size_t index; /* of the current array element */
    size_t len;   /* strlen of the container's own path */
};

struct scanner {
    const char *p;
    const char *end;
    int line;   /* of *p */
    int column; /* of *p, in code points */
    const char *target;
    bool want_key;
    char path[CONFIG_POS_PATH_MAX];
    size_t len;
    int found; /* -1 nothing yet, 1 an ancestor, 0 the target: stop */
    int found_line;
    int found_column;
};

void config_pos_append(char *buf, size_t *n, const char *s, size_t len)
{
    if (*n >= CONFIG_POS_PATH_MAX - 1)
        return;
    if (len > CONFIG_POS_PATH_MAX - 1 - *n)
        len = CONFIG_POS_PATH_MAX - 1 - *n;
    memcpy(buf + *n, s, len);
    *n += len;
    buf[*n] = '\0';
}

static void advance(struct scanner *s)
{
    unsigned char b = (unsigned char)*s->p++;
    if (b == '\n') {
        s->line++;
        s->column = 1;
    } else if ((b & 0xC0) != 0x80) {
        s->column++; /* UTF-8 continuation bytes are part of the same character */
    }
}

static void skip_ws(struct scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        advance(s);
}

static void set_len(struct scanner *s, size_t len)
{
    s->len = len;
    s->path[len] = '\0';
}

static void record(struct scanner *s, int found, int line, int column)
{
    s->found = found;
    s->found_line = line;
    s->found_column = column;
}

/* A value starts at s->p: is it the target, or an ancestor of it? */
static void visit_value(struct scanner *s)
{
    if (strcmp(s->path, s->target) == 0) {
        record(s, 0, s->line, s->column);
        return;
    }
    /* Equal first len bytes mean target has at least len bytes: [len] is safe. */
    if (strncmp(s->path, s->target, s->len) != 0)
        return;
    char next = s->target[s->len];
    if (s->len == 0 || next == '.' || next == '[')
        record(s, 1, s->line, s->column);
}

static int hex4(struct scanner *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (s->p >= s->end)
            return -1;
        char c = *s->p;
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
        advance(s);
    }
    *out = v;
    return 0;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* After the "\u" of an escape: the code point, joining a surrogate pair. */
static uint32_t scan_unicode_escape(struct scanner *s)
{
    uint32_t cp, lo;
    if (hex4(s, &cp) != 0)
        return 0xFFFD;
    if (cp < 0xD800 || cp > 0xDBFF)
        return cp;
    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
        return 0xFFFD; /* jansson rejects a lone high surrogate */
    advance(s);
    advance(s);
    if (hex4(s, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
        return 0xFFFD;
    return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
}

/* Reads a string token; when decode, appends its text to the path as
 * jansson would decode it, so keys with escapes compare equal. */
static void scan_string(struct scanner *s, bool decode)
{
    advance(s); /* opening quote */
    while (s->p < s->end && *s->p != '"') {
        if (*s->p != '\\') {
            if (decode)
                config_pos_append(s->path, &s->len, s->p, 1);
            advance(s);
            continue;
        }
        advance(s);
        if (s->p >= s->end)
            return;
        char esc = *s->p, c;
        advance(s);
        switch (esc) {
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u': {
            char utf8[4];
            size_t n = utf8_encode(scan_unicode_escape(s), utf8);
            if (decode)
                config_pos_append(s->path, &s->len, utf8, n);
            continue;
        }
        default: /* '"', '\\', '/' stand for themselves */
            c = esc;
            break;
        }
        if (decode)
            config_pos_append(s->path, &s->len, &c, 1);
    }
    if (s->p < s->end)
        advance(s); /* closing quote */
}

/* Skips a number, true, false or null; false when there was none. */
static bool skip_literal(struct scanner *s)
{
    const char *start = s->p;
    while (s->p < s->end && !strchr(",:]}[{\" \t\r\n", *s->p))
        advance(s);
    return s->p > start;
}

/* Skips a whole container at s->p without indexing it. */
static void skip_container(struct scanner *s)
{
    size_t open = 0;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            scan_string(s, false);
            continue;
        }
        advance(s);
        if (c == '{' || c == '[')
            open++;
        else if ((c == '}' || c == ']') && --open == 0)
            return;
    }
}

/* Positions the scanner on the value of the next member of f, its path
 * set. False when the text ends or is not JSON, or the target key was hit. */
static bool begin_member(struct scanner *s, struct frame *f)
{
    set_len(s, f->len);
    skip_ws(s);
    if (!f->object) {
        char idx[32];
        int n = snprintf(idx, sizeof(idx), "[%zu]", f->index);
        config_pos_append(s->path, &s->len, idx, (size_t)n);
        return true;
    }
    if (s->p >= s->end || *s->p != '"')
        return false;
    int line = s->line, column = s->column;
    if (s->len > 0)
        config_pos_append(s->path, &s->len, ".", 1);
    scan_string(s, true);
    if (s->want_key && strcmp(s->path, s->target) == 0) {
        record(s, 0, line, column);
        return false;
    }
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return false;
    advance(s);
    return true;
}

static void scan(struct scanner *s)
{
    struct frame stack[MAX_DEPTH];
    size_t depth = 0;
    for (;;) {
        /* A value starts here (after white space); s->path is its path. */
        skip_ws(s);
        if (s->p >= s->end)
            return;
        visit_value(s);
        if (s->found == 0)
            return;
        char c = *s->p;
        if ((c == '{' || c == '[') && depth < MAX_DEPTH) {
            stack[depth++] = (struct frame){c == '{', 0, s->len};
            advance(s);
            skip_ws(s);
            if (s->p < s->end && *s->p != (c == '{' ? '}' : ']')) {
                if (!begin_member(s, &stack[depth - 1]))
                    return;
                continue;
            }
            if (s->p < s->end)
                advance(s);
            depth--;
        } else if (c == '{' || c == '[') {
            skip_container(s);
        } else if (c == '"') {
            scan_string(s, false);
        } else if (!skip_literal(s)) {
            return;
        }
        /* After a value: the next member, or close containers. */
        for (;;) {
            if (depth == 0)
                return;
            struct frame *f = &stack[depth - 1];
            skip_ws(s);
            if (s->p >= s->end)
                return;
            if (*s->p == ',') {
                advance(s);
                f->index++;
                if (!begin_member(s, f))
                    return;
                break;
            }
            if (*s->p != (f->object ? '}' : ']'))
                return;
            advance(s);
            depth--;
        }
    }
}

int config_pos_find(const char *text, size_t len, const char *path, bool key, int *line,
                    int *column)
{
    struct scanner s = {
        .p = text,
        .end = text + len,
        .line = 1,
        .column = 1,
        .target = path,
        .want_key = key,
        .found = -1,
    };
    s.path[0] = '\0';
    scan(&s);
    if (s.found < 0)
        return -1;
    *line = s.found_line;
    *column = s.found_column;
    return s.found;
}
