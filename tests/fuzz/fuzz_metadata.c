/*
 * fuzz_metadata: metadata_decode on arbitrary bytes. abort() when:
 *   - a failed decode leaves pairs behind or gives no reason;
 *   - decoded pairs are not NUL-terminated copies, or a key repeats;
 *   - encode -> decode does not give the same pairs, or a second encode
 *     gives different bytes;
 *   - tighter limits (derived from the input) do not decide exactly as the
 *     entry count and size say;
 *   - an independent reading of the protobuf (map entries at field 1, key
 *     field 1, value field 2, last value wins) that also accepts the input
 *     finds different pairs.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/metadata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_metadata: check failed at line %d: %s\n", __LINE__, #cond);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the independent reader ------------------------------------------ */

struct opair {
    const uint8_t *k, *v;
    size_t kl, vl;
};

struct oread {
    struct opair *pairs;
    size_t n;       /* distinct keys */
    size_t entries; /* entries on the wire */
};

static bool rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (*p == end)
            return false;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool rd_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **b, size_t *n)
{
    uint64_t len;
    if (!rd_varint(p, end, &len) || len > (uint64_t)(end - *p))
        return false;
    *b = *p;
    *n = (size_t)len;
    *p += len;
    return true;
}

static bool skip_field(unsigned wt, const uint8_t **p, const uint8_t *end)
{
    uint64_t v;
    const uint8_t *b;
    size_t n;
    switch (wt) {
    case 0:
        return rd_varint(p, end, &v);
    case 1:
    case 5: {
        size_t w = wt == 1 ? 8 : 4;
        if ((size_t)(end - *p) < w)
            return false;
        *p += w;
        return true;
    }
    case 2:
        return rd_bytes(p, end, &b, &n);
    default:
        return false; /* groups and wire types 6, 7 */
    }
}

/* Field numbers run from 1 to 2^29 - 1 (protobuf-c and Go both refuse others). */
static bool field_number_ok(uint64_t tag)
{
    return tag >> 3 != 0 && tag >> 3 <= 0x1fffffff;
}

static bool oracle(const uint8_t *data, size_t size, struct oread *o)
{
    const uint8_t *p = data, *end = data + size;
    memset(o, 0, sizeof(*o));
    while (p < end) {
        uint64_t tag;
        if (!rd_varint(&p, end, &tag) || !field_number_ok(tag))
            return false;
        if (tag >> 3 != 1) {
            if (!skip_field(tag & 7, &p, end))
                return false;
            continue;
        }
        const uint8_t *e, *ee;
        size_t el;
        if ((tag & 7) != 2 || !rd_bytes(&p, end, &e, &el))
            return false;
        struct opair pr = {(const uint8_t *)"", (const uint8_t *)"", 0, 0};
        for (ee = e + el; e < ee;) {
            uint64_t t;
            if (!rd_varint(&e, ee, &t) || !field_number_ok(t))
                return false;
            if (t >> 3 == 1 || t >> 3 == 2) {
                const uint8_t *b;
                size_t n;
                if ((t & 7) != 2 || !rd_bytes(&e, ee, &b, &n))
                    return false;
                if (t >> 3 == 1) {
                    pr.k = b;
                    pr.kl = n;
                } else {
                    pr.v = b;
                    pr.vl = n;
                }
            } else if (!skip_field(t & 7, &e, ee)) {
                return false;
            }
        }
        o->entries++;
        size_t i = 0;
        while (i < o->n && (o->pairs[i].kl != pr.kl || memcmp(o->pairs[i].k, pr.k, pr.kl) != 0))
            i++;
        if (i == o->n) {
            o->pairs = realloc(o->pairs, (o->n + 1) * sizeof(*o->pairs));
            CHECK(o->pairs != NULL);
            o->n++;
        }
        o->pairs[i] = pr;
    }
    return true;
}

/* ---- checks ------------------------------------------------------------ */

static void check_pairs(const struct metadata *md)
{
    for (size_t i = 0; i < md->n; i++) {
        const struct metadata_pair *p = &md->pairs[i];
        CHECK(p->key != NULL && p->value != NULL);
        CHECK(p->key[p->key_len] == '\0' && p->value[p->value_len] == '\0');
        for (size_t j = 0; j < i; j++)
            CHECK(md->pairs[j].key_len != p->key_len ||
                  memcmp(md->pairs[j].key, p->key, p->key_len) != 0);
        /* a key without NUL inside is found by metadata_get */
        if (memchr(p->key, '\0', p->key_len) == NULL)
            CHECK(metadata_get(md, p->key) == p->value);
    }
}

static void same_pairs(const struct metadata *a, const struct metadata *b)
{
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct metadata_pair *p = &a->pairs[i], *q = &b->pairs[i];
        CHECK(p->key_len == q->key_len && p->value_len == q->value_len);
        CHECK(memcmp(p->key, q->key, p->key_len) == 0);
        CHECK(memcmp(p->value, q->value, p->value_len) == 0);
    }
}

static int decode(const uint8_t *data, size_t size, const struct metadata_limits *lim,
                  struct metadata *md)
{
    const char *why = "unset";
    int rc = metadata_decode(data, size, lim, md, &why);
    if (rc == 0) {
        CHECK(why == NULL);
        check_pairs(md);
    } else {
        CHECK(why != NULL && strcmp(why, "unset") != 0);
        CHECK(md->n == 0 && md->pairs == NULL);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* as the sidecar decodes: no pair limit, the byte cap bounds the work */
    static const struct metadata_limits lim = {0, METADATA_DEFAULT_MAX_BYTES};
    struct metadata md = {0};
    int rc = decode(data, size, &lim, &md);

    struct oread o;
    bool ok = oracle(data, size, &o);
    if (rc == 0 && ok) {
        CHECK(o.n == md.n);
        for (size_t i = 0; i < md.n; i++) {
            CHECK(o.pairs[i].kl == md.pairs[i].key_len && o.pairs[i].vl == md.pairs[i].value_len);
            CHECK(memcmp(o.pairs[i].k, md.pairs[i].key, o.pairs[i].kl) == 0);
            CHECK(memcmp(o.pairs[i].v, md.pairs[i].value, o.pairs[i].vl) == 0);
        }
    }

    if (rc == 0) {
        /* tighter limits from the input: decided exactly by entries and size */
        size_t h = size ? data[size / 2] : 0;
        struct metadata_limits tight = {1 + h % 8, size ? 1 + (h * 131) % size : 1};
        struct metadata t = {0};
        int trc = decode(data, size, &tight, &t);
        if (ok)
            CHECK((trc == 0) == (o.entries <= tight.max_pairs && size <= tight.max_bytes));
        if (trc == 0)
            same_pairs(&md, &t);
        metadata_free(&t);

        /* encode -> decode -> encode */
        struct buf b = {0}, b2 = {0};
        CHECK(metadata_encode(&md, &b) == 0);
        CHECK(b.len <= size); /* canonical, deduplicated, unknown fields dropped */
        struct metadata back = {0};
        CHECK(decode(b.data, b.len, &lim, &back) == 0);
        same_pairs(&md, &back);
        CHECK(metadata_encode(&back, &b2) == 0);
        CHECK(b2.len == b.len && (b.len == 0 || memcmp(b.data, b2.data, b.len) == 0));
        metadata_free(&back);
        buf_free(&b);
        buf_free(&b2);
    }
    free(o.pairs);
    metadata_free(&md);
    return 0;
}
