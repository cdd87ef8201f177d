/*
 * config_pos: where each value of a JSON text starts (line and column),
 * keyed by its JSON path ("pools[1].max_conns"). jansson keeps no
 * positions for values, so validation errors look them up here.
 *
 * The scanner runs only over text jansson has already accepted, so it
 * may assume well-formed JSON; on anything odd it simply stops indexing.
 */
#ifndef SIDECAR_CONFIG_POS_H
#define SIDECAR_CONFIG_POS_H

#include <stddef.h>

struct config_pos_entry {
    char *path;
    int is_key; /* position of the key naming the value, not of the value */
    int line;   /* 1-based */
    int column; /* 1-based, in bytes */
};

struct config_pos {
    struct config_pos_entry *entries;
    size_t n;
    size_t cap;
};

/* Indexes every value in text. Returns 0 or UV_ENOMEM. */
__attribute__((warn_unused_result)) int config_pos_build(struct config_pos *idx, const char *text,
                                                         size_t len);

/*
 * Position of the value at path; when path is not indexed, of its nearest
 * indexed parent. Returns 0 when found, -1 when nothing matched.
 */
int config_pos_find(const struct config_pos *idx, const char *path, int *line, int *column);

/* Position of the key that names the value at path (for "unknown key"). */
int config_pos_find_key(const struct config_pos *idx, const char *path, int *line, int *column);

void config_pos_free(struct config_pos *idx);

#endif
