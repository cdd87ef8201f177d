/* varint: LEB128 encode/decode with the 10-byte limit of the DRPC reader. */
#include "proxy/varint.h"

enum varint_result varint_decode(const uint8_t *p, size_t len, uint64_t *value, size_t *used)
{
    uint64_t v = 0;
    for (size_t i = 0; i < VARINT_MAX_LEN; i++) {
        if (i == len)
            return VARINT_NEED_MORE;
        uint8_t b = p[i];
        /* The tenth byte may only carry the top bit of a 64-bit value. */
        if (i == VARINT_MAX_LEN - 1 && b > 1)
            return VARINT_TOO_LONG;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *value = v;
            *used = i + 1;
            return VARINT_OK;
        }
    }
    return VARINT_TOO_LONG;
}

size_t varint_encode(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}
