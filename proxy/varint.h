/*
 * varint: unsigned LEB128 integers as DRPC (and protobuf) write them.
 * The upstream reader refuses a varint longer than 10 bytes; so do we.
 */
#ifndef SIDECAR_VARINT_H
#define SIDECAR_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define VARINT_MAX_LEN 10

enum varint_result {
    VARINT_OK = 0,        /* decoded; *used says how many bytes */
    VARINT_NEED_MORE = 1, /* the buffer ends inside the varint */
    VARINT_TOO_LONG = -1, /* more than 10 bytes, or overflows 64 bits */
};

/* Decodes one varint from p[0..len). */
enum varint_result varint_decode(const uint8_t *p, size_t len, uint64_t *value, size_t *used);

/* Writes v into out (room for VARINT_MAX_LEN bytes); returns bytes written. */
size_t varint_encode(uint8_t *out, uint64_t v);

/* How many bytes varint_encode would write for v. */
size_t varint_size(uint64_t v);

#endif
