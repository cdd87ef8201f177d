/*
 * transcript: loads the wire captures of tests/data/drpc-transcripts for the
 * codec unit tests. Header-only (static inline), because every unit test
 * binary is built from a single translation unit.
 *
 *   NAME.txt          "> HEX" client->server read, "< HEX" server->client
 *                     read; authoritative bytes
 *   NAME.frames.txt   "chunk N > M bytes" per read, then one line per frame:
 *                     "> kind=K stream=S msg=M done=B control=B len=L data=Q"
 *                     where Q is a Go-quoted string, cut to 40 bytes and
 *                     followed by "..." when the data is longer; and
 *                     'header "DRPC!!!1"' for the drpcmigrate prefix
 *
 * Ownership: transcript_load() fills a struct transcript that owns every
 * buffer in it; transcript_free() releases them.
 */
#ifndef SIDECAR_TESTS_TRANSCRIPT_H
#define SIDECAR_TESTS_TRANSCRIPT_H

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/buf.h"

#define TRANSCRIPT_CLIENT 0 /* "> " lines: bytes the client sent */
#define TRANSCRIPT_SERVER 1 /* "< " lines: bytes the server sent */
#define TRANSCRIPT_PREFIX 64

/* One TCP read of NAME.txt, or one "chunk" line of NAME.frames.txt. */
struct transcript_read {
    int dir;
    size_t len;
};

/* One frame line of NAME.frames.txt. */
struct transcript_frame {
    int dir;
    char kind[32];
    uint64_t stream_id;
    uint64_t message_id;
    uint64_t len;
    bool done;
    bool control;
    uint8_t data[TRANSCRIPT_PREFIX]; /* the data shown (a prefix if cut) */
    size_t data_len;
    bool cut; /* "..." followed: data is only a prefix */
};

struct transcript {
    struct buf dir[2]; /* every byte of each direction, in order */
    struct transcript_read *reads;
    size_t n_reads;
    struct transcript_read *chunks;
    size_t n_chunks;
    struct transcript_frame *frames;
    size_t n_frames;
    char header[2][32]; /* 'header "..."' lines, per direction */
    size_t header_len[2];
};

static inline bool transcript_dir_ok(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/README.txt", dir) >= (int)sizeof(p))
        return false;
    return access(p, R_OK) == 0;
}

/*
 * Finds the transcript directory: $DRPC_TRANSCRIPTS if set (and nothing
 * else then), else tests/data/drpc-transcripts from the current directory
 * (the repository root, where the suite runs the binaries), else
 * ../../tests/data/drpc-transcripts from the executable's directory
 * ($(B)/tests/test_x -> <repo>/tests/data). Fills out and returns true, or
 * returns false with out naming what was tried; callers fail then.
 */
static inline bool transcript_find(char *out, size_t size)
{
    const char *env = getenv("DRPC_TRANSCRIPTS");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return transcript_dir_ok(out);
    }
    if (transcript_dir_ok("tests/data/drpc-transcripts")) {
        snprintf(out, size, "tests/data/drpc-transcripts");
        return true;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int w = snprintf(out, size, "%s/../../tests/data/drpc-transcripts", exe);
            if (w > 0 && (size_t)w < size && transcript_dir_ok(out))
                return true;
        }
    }
    snprintf(out, size,
             "$DRPC_TRANSCRIPTS unset, tests/data/drpc-transcripts and "
             "<exe dir>/../../tests/data/drpc-transcripts missing");
    return false;
}

static inline int transcript_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the capture names (NAME of NAME.frames.txt), sorted; free with transcript_free_names. */
static inline size_t transcript_names(const char *dir, char ***names)
{
    *names = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    const char *suffix = ".frames.txt";
    size_t sl = strlen(suffix);
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= sl || strcmp(de->d_name + l - sl, suffix) != 0)
            continue;
        char **nn = realloc(*names, (n + 1) * sizeof(*nn));
        if (!nn)
            break;
        *names = nn;
        (*names)[n] = strndup(de->d_name, l - sl);
        if ((*names)[n])
            n++;
    }
    closedir(d);
    if (n)
        qsort(*names, n, sizeof(**names), transcript_cmp_names);
    return n;
}

static inline void transcript_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static inline int transcript_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends the UTF-8 encoding of rune r (Go's \u and \U escapes). */
static inline size_t transcript_utf8(uint8_t *out, uint32_t r)
{
    if (r < 0x80) {
        out[0] = (uint8_t)r;
        return 1;
    }
    if (r < 0x800) {
        out[0] = (uint8_t)(0xc0 | (r >> 6));
        out[1] = (uint8_t)(0x80 | (r & 0x3f));
        return 2;
    }
    if (r < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (r >> 12));
        out[1] = (uint8_t)(0x80 | ((r >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (r & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (r >> 18));
    out[1] = (uint8_t)(0x80 | ((r >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((r >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (r & 0x3f));
    return 4;
}

/*
 * Decodes the Go-quoted string starting at *s (at its opening quote) into
 * out (room for cap bytes); leaves *s after the closing quote. Returns the
 * decoded length, or (size_t)-1 if the quoting is malformed or too long.
 */
static inline size_t transcript_unquote(const char **s, uint8_t *out, size_t cap)
{
    const char *p = *s;
    size_t n = 0;
    if (*p++ != '"')
        return (size_t)-1;
    while (*p && *p != '"') {
        uint8_t tmp[4];
        size_t k = 1;
        if (*p != '\\') {
            tmp[0] = (uint8_t)*p++;
        } else {
            p++;
            char e = *p++;
            switch (e) {
            case 'a':
                tmp[0] = '\a';
                break;
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'n':
                tmp[0] = '\n';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'v':
                tmp[0] = '\v';
                break;
            case '\\':
            case '"':
            case '\'':
                tmp[0] = (uint8_t)e;
                break;
            case 'x': {
                int hi = transcript_hexval(p[0]), lo = hi < 0 ? -1 : transcript_hexval(p[1]);
                if (lo < 0)
                    return (size_t)-1;
                tmp[0] = (uint8_t)(hi << 4 | lo);
                p += 2;
                break;
            }
            case 'u':
            case 'U': {
                int digits = e == 'u' ? 4 : 8;
                uint32_t r = 0;
                for (int i = 0; i < digits; i++) {
                    int v = transcript_hexval(p[i]);
                    if (v < 0)
                        return (size_t)-1;
                    r = r << 4 | (uint32_t)v;
                }
                p += digits;
                k = transcript_utf8(tmp, r);
                break;
            }
            default:
                if (e >= '0' && e <= '7' && p[0] >= '0' && p[0] <= '7' && p[1] >= '0' &&
                    p[1] <= '7') {
                    tmp[0] = (uint8_t)((e - '0') << 6 | (p[0] - '0') << 3 | (p[1] - '0'));
                    p += 2;
                    break;
                }
                return (size_t)-1;
            }
        }
        if (n + k > cap)
            return (size_t)-1;
        memcpy(out + n, tmp, k);
        n += k;
    }
    if (*p != '"')
        return (size_t)-1;
    *s = p + 1;
    return n;
}

static inline void transcript_free(struct transcript *t)
{
    buf_free(&t->dir[0]);
    buf_free(&t->dir[1]);
    free(t->reads);
    free(t->chunks);
    free(t->frames);
    memset(t, 0, sizeof(*t));
}

static inline bool transcript_push_read(struct transcript_read **v, size_t *n, int dir, size_t len)
{
    struct transcript_read *nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return false;
    *v = nv;
    nv[(*n)++] = (struct transcript_read){dir, len};
    return true;
}

static inline int transcript_dir_of(char c)
{
    return c == '>' ? TRANSCRIPT_CLIENT : c == '<' ? TRANSCRIPT_SERVER : -1;
}

/* Parses one frame line (after its direction character); false if it is not one. */
static inline bool transcript_parse_frame(const char *s, struct transcript_frame *f)
{
    char done[8], control[8];
    unsigned long long sid, mid, len;
    int end = 0;
    if (sscanf(s, " kind=%31s stream=%llu msg=%llu done=%7s control=%7s len=%llu data=%n", f->kind,
               &sid, &mid, done, control, &len, &end) != 6 ||
        end == 0)
        return false;
    f->stream_id = sid;
    f->message_id = mid;
    f->len = len;
    f->done = strcmp(done, "true") == 0;
    f->control = strcmp(control, "true") == 0;
    const char *q = s + end;
    f->data_len = transcript_unquote(&q, f->data, sizeof(f->data));
    if (f->data_len == (size_t)-1)
        return false;
    f->cut = strncmp(q, "...", 3) == 0;
    return true;
}

/*
 * Loads dir/name.txt and dir/name.frames.txt into *t. Returns 0, or -1
 * with why (a static string) set.
 */
static inline int transcript_load(const char *dir, const char *name, struct transcript *t,
                                  const char **why)
{
    memset(t, 0, sizeof(*t));
    char path[PATH_MAX];
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    *why = NULL;

    int w = snprintf(path, sizeof(path), "%s/%s.txt", dir, name);
    FILE *f = w > 0 && (size_t)w < sizeof(path) ? fopen(path, "r") : NULL;
    if (!f) {
        *why = "cannot open NAME.txt";
        return -1;
    }
    while ((got = getline(&line, &cap, f)) > 0) {
        int d = transcript_dir_of(line[0]);
        if (d < 0 || line[1] != ' ')
            continue;
        size_t before = t->dir[d].len;
        const char *p = line + 2;
        while (transcript_hexval(p[0]) >= 0 && transcript_hexval(p[1]) >= 0) {
            uint8_t b = (uint8_t)(transcript_hexval(p[0]) << 4 | transcript_hexval(p[1]));
            if (buf_append(&t->dir[d], &b, 1) != 0)
                goto oom;
            p += 2;
        }
        if (*p != '\n' && *p != '\0') {
            *why = "bad hex in NAME.txt";
            goto fail;
        }
        if (!transcript_push_read(&t->reads, &t->n_reads, d, t->dir[d].len - before))
            goto oom;
    }
    fclose(f);

    w = snprintf(path, sizeof(path), "%s/%s.frames.txt", dir, name);
    f = w > 0 && (size_t)w < sizeof(path) ? fopen(path, "r") : NULL;
    if (!f) {
        *why = "cannot open NAME.frames.txt";
        goto fail_nofile;
    }
    int chunk_dir = -1;
    while ((got = getline(&line, &cap, f)) > 0) {
        const char *p = line;
        while (*p == ' ')
            p++;
        unsigned long num, bytes;
        char c;
        if (sscanf(p, "chunk %lu %c %lu bytes", &num, &c, &bytes) == 3) {
            chunk_dir = transcript_dir_of(c);
            if (chunk_dir < 0 || !transcript_push_read(&t->chunks, &t->n_chunks, chunk_dir, bytes))
                goto oom;
            continue;
        }
        if (strncmp(p, "header ", 7) == 0) {
            const char *q = p + 7;
            uint8_t h[sizeof(t->header[0])];
            size_t n = transcript_unquote(&q, h, sizeof(h));
            if (chunk_dir < 0 || n == (size_t)-1) {
                *why = "bad header line in NAME.frames.txt";
                goto fail;
            }
            memcpy(t->header[chunk_dir], h, n);
            t->header_len[chunk_dir] = n;
            continue;
        }
        int d = transcript_dir_of(*p);
        if (d < 0)
            continue;
        struct transcript_frame fr;
        if (!transcript_parse_frame(p + 1, &fr)) {
            *why = "unparsable frame line in NAME.frames.txt";
            goto fail;
        }
        fr.dir = d;
        struct transcript_frame *nf = realloc(t->frames, (t->n_frames + 1) * sizeof(*nf));
        if (!nf)
            goto oom;
        t->frames = nf;
        t->frames[t->n_frames++] = fr;
    }
    fclose(f);
    free(line);
    return 0;

oom:
    *why = "out of memory";
fail:
    fclose(f);
fail_nofile:
    free(line);
    transcript_free(t);
    return -1;
}

#endif
