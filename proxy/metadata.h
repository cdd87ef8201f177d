/*
 * metadata: DRPC invoke metadata (map<string,string> at protobuf field 1),
 * decoded and encoded through protobuf-c.
 *
 * Ownership: struct metadata owns its pairs and their bytes; free it with
 * metadata_free(). Keys and values are NUL-terminated copies that also
 * carry a length, since the wire allows any bytes.
 */
#ifndef SIDECAR_METADATA_H
#define SIDECAR_METADATA_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

#define METADATA_DEFAULT_MAX_BYTES (64 * 1024)

struct metadata_pair {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
};

struct metadata {
    struct metadata_pair *pairs;
    size_t n;
};

struct metadata_limits {
    size_t max_pairs; /* more entries than this is an error; 0: no limit (Go has none) */
    size_t max_bytes; /* encoded size above this is an error */
};

/*
 * Decodes data into *out (which must be empty). A repeated key keeps its
 * last value, as a Go map would. Returns 0, or UV_EINVAL with *why set to a
 * static reason (malformed protobuf, too many pairs, too large), or
 * UV_ENOMEM.
 */
__attribute__((warn_unused_result)) int metadata_decode(const uint8_t *data, size_t len,
                                                        const struct metadata_limits *limits,
                                                        struct metadata *out, const char **why);

/* Appends the protobuf encoding of md to b. */
__attribute__((warn_unused_result)) int metadata_encode(const struct metadata *md, struct buf *b);

/* The pair for key, or NULL. Compare its value by value_len: a value may
 * hold NUL bytes, and then its C string is only a prefix of it. */
const struct metadata_pair *metadata_find(const struct metadata *md, const char *key);

/* The value for key (NUL-terminated), or NULL. */
const char *metadata_get(const struct metadata *md, const char *key);

/* Sets key to value, replacing an existing value. */
__attribute__((warn_unused_result)) int metadata_set(struct metadata *md, const char *key,
                                                     const char *value);

void metadata_free(struct metadata *md);

#endif
