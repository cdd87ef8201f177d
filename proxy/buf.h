/*
 * buf: a growable byte buffer.
 *
 * Ownership: a struct buf owns `data` (malloc'd, may be NULL while empty).
 * Whoever embeds the struct frees it with buf_free(). Functions that can
 * fail return 0 or UV_ENOMEM and leave the buffer unchanged on failure.
 */
#ifndef SIDECAR_BUF_H
#define SIDECAR_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* Makes room for at least `extra` more bytes after len. */
__attribute__((warn_unused_result)) int buf_reserve(struct buf *b, size_t extra);

/* Appends n bytes (may be 0). */
__attribute__((warn_unused_result)) int buf_append(struct buf *b, const void *p, size_t n);

/* Drops the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* Empties the buffer but keeps its storage. */
static inline void buf_reset(struct buf *b)
{
    b->len = 0;
}

/* Releases the storage; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

#endif
