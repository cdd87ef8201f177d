/*
 * metadata: invoke metadata through protobuf-c. The generated code comes
 * from proxy/metadata.proto at build time.
 */
#include "proxy/metadata.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "metadata.pb-c.h"

static char *dup_bytes(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static struct metadata_pair *find_pair(const struct metadata *md, const void *key, size_t len)
{
    for (size_t i = 0; i < md->n; i++)
        if (md->pairs[i].key_len == len && (len == 0 || memcmp(md->pairs[i].key, key, len) == 0))
            return &md->pairs[i];
    return NULL;
}

/* Sets key=value from raw bytes; replaces an existing key's value. */
static int set_bytes(struct metadata *md, const void *key, size_t key_len, const void *value,
                     size_t value_len)
{
    char *v = dup_bytes(value, value_len);
    if (!v)
        return UV_ENOMEM;
    struct metadata_pair *p = find_pair(md, key, key_len);
    if (p) {
        free(p->value);
        p->value = v;
        p->value_len = value_len;
        return 0;
    }
    char *k = dup_bytes(key, key_len);
    struct metadata_pair *np = realloc(md->pairs, (md->n + 1) * sizeof(*np));
    if (!k || !np) {
        free(k);
        free(v);
        if (np)
            md->pairs = np;
        return UV_ENOMEM;
    }
    md->pairs = np;
    md->pairs[md->n++] = (struct metadata_pair){k, key_len, v, value_len};
    return 0;
}

/* One decoded entry while duplicates are sorted out. */
struct wire_entry {
    const uint8_t *key;
    size_t key_len;
    size_t index; /* position on the wire */
};

static int by_key_then_index(const void *a, const void *b)
{
    const struct wire_entry *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = n ? memcmp(x->key, y->key, n) : 0;
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static bool same_key(const struct wire_entry *x, const struct wire_entry *y)
{
    return x->key_len == y->key_len && (x->key_len == 0 || memcmp(x->key, y->key, x->key_len) == 0);
}

/*
 * Copies msg's entries into out in wire order, a repeated key once, at its
 * first position, with its last value. Sorting finds the repeats in
 * O(n log n): the byte cap allows tens of thousands of pairs, which a
 * pairwise search would turn into seconds of work on the event loop.
 */
static int copy_entries(const Drpcsidecar__InvokeMetadata *msg, struct metadata *out)
{
    size_t n = msg->n_data;
    struct wire_entry *sorted = malloc(n * sizeof(*sorted));
    size_t *value_of = malloc(n * sizeof(*value_of)); /* at a key's first index: its last */
    out->pairs = calloc(n, sizeof(*out->pairs));
    int rc = UV_ENOMEM;
    if (!sorted || !value_of || !out->pairs)
        goto out;
    for (size_t i = 0; i < n; i++) {
        sorted[i] = (struct wire_entry){msg->data[i]->key.data, msg->data[i]->key.len, i};
        value_of[i] = SIZE_MAX;
    }
    qsort(sorted, n, sizeof(*sorted), by_key_then_index);
    for (size_t g = 0; g < n;) {
        size_t last = g;
        while (last + 1 < n && same_key(&sorted[g], &sorted[last + 1]))
            last++;
        value_of[sorted[g].index] = sorted[last].index;
        g = last + 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (value_of[i] == SIZE_MAX)
            continue;
        const ProtobufCBinaryData *k = &msg->data[i]->key, *v = &msg->data[value_of[i]]->value;
        struct metadata_pair *p = &out->pairs[out->n];
        if (!(p->key = dup_bytes(k->data, k->len)) || !(p->value = dup_bytes(v->data, v->len))) {
            free(p->key);
            goto out;
        }
        p->key_len = k->len;
        p->value_len = v->len;
        out->n++;
    }
    /* The call keeps these: give back the slots of repeated keys (32,768
     * copies of one key would otherwise hold 1 MiB for one pair). */
    if (out->n < n) {
        struct metadata_pair *fit = realloc(out->pairs, out->n * sizeof(*fit));
        if (fit)
            out->pairs = fit;
    }
    rc = 0;
out:
    free(sorted);
    free(value_of);
    return rc;
}

int metadata_decode(const uint8_t *data, size_t len, const struct metadata_limits *limits,
                    struct metadata *out, const char **why)
{
    size_t max_pairs = limits ? limits->max_pairs : 0;
    size_t max_bytes = limits && limits->max_bytes ? limits->max_bytes : METADATA_DEFAULT_MAX_BYTES;

    *why = NULL;
    if (len > max_bytes) {
        *why = "invoke metadata too large";
        return UV_EINVAL;
    }
    Drpcsidecar__InvokeMetadata *msg = drpcsidecar__invoke_metadata__unpack(NULL, len, data);
    if (!msg) {
        *why = "malformed invoke metadata";
        return UV_EINVAL;
    }
    int rc = 0;
    if (max_pairs && msg->n_data > max_pairs) {
        *why = "too many invoke metadata pairs";
        rc = UV_EINVAL;
    } else if (msg->n_data) {
        rc = copy_entries(msg, out);
    }
    drpcsidecar__invoke_metadata__free_unpacked(msg, NULL);
    if (rc)
        metadata_free(out);
    return rc;
}

int metadata_encode(const struct metadata *md, struct buf *b)
{
    Drpcsidecar__MetadataEntry *entries = calloc(md->n ? md->n : 1, sizeof(*entries));
    Drpcsidecar__MetadataEntry **ptrs = calloc(md->n ? md->n : 1, sizeof(*ptrs));
    int rc = UV_ENOMEM;
    if (!entries || !ptrs)
        goto out;
    for (size_t i = 0; i < md->n; i++) {
        drpcsidecar__metadata_entry__init(&entries[i]);
        entries[i].key.data = (uint8_t *)md->pairs[i].key;
        entries[i].key.len = md->pairs[i].key_len;
        entries[i].value.data = (uint8_t *)md->pairs[i].value;
        entries[i].value.len = md->pairs[i].value_len;
        ptrs[i] = &entries[i];
    }
    Drpcsidecar__InvokeMetadata msg;
    drpcsidecar__invoke_metadata__init(&msg);
    msg.n_data = md->n;
    msg.data = ptrs;
    size_t need = drpcsidecar__invoke_metadata__get_packed_size(&msg);
    rc = buf_reserve(b, need);
    if (rc || need == 0)
        goto out;
    b->len += drpcsidecar__invoke_metadata__pack(&msg, b->data + b->len);
out:
    free(entries);
    free(ptrs);
    return rc;
}

const struct metadata_pair *metadata_find(const struct metadata *md, const char *key)
{
    return find_pair(md, key, strlen(key));
}

const char *metadata_get(const struct metadata *md, const char *key)
{
    struct metadata_pair *p = find_pair(md, key, strlen(key));
    return p ? p->value : NULL;
}

int metadata_set(struct metadata *md, const char *key, const char *value)
{
    return set_bytes(md, key, strlen(key), value, strlen(value));
}

void metadata_free(struct metadata *md)
{
    for (size_t i = 0; i < md->n; i++) {
        free(md->pairs[i].key);
        free(md->pairs[i].value);
    }
    free(md->pairs);
    md->pairs = NULL;
    md->n = 0;
}
