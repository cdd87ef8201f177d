/* libFuzzer target: invoke metadata decode; what decodes must survive encode+decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/metadata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct metadata md = {0};
    const char *why;
    struct metadata_limits lim = {64, 1 << 16};
    if (metadata_decode(data, size, &lim, &md, &why) != 0)
        return 0;
    struct buf b = {0};
    if (metadata_encode(&md, &b) != 0)
        abort();
    struct metadata back = {0};
    if (metadata_decode(b.data, b.len, &lim, &back, &why) != 0 || back.n != md.n)
        abort();
    for (size_t i = 0; i < md.n; i++) {
        const struct metadata_pair *p = &md.pairs[i], *q = &back.pairs[i];
        if (p->key_len != q->key_len || p->value_len != q->value_len ||
            memcmp(p->key, q->key, p->key_len) || memcmp(p->value, q->value, p->value_len))
            abort();
    }
    metadata_free(&back);
    metadata_free(&md);
    buf_free(&b);
    return 0;
}
