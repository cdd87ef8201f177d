/*
 * metadata: invoke metadata through protobuf-c. The generated code comes
 * from proxy/metadata.proto at build time.
 */
#include "proxy/metadata.h"

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

int metadata_decode(const uint8_t *data, size_t len, const struct metadata_limits *limits,
                    struct metadata *out, const char **why)
{
    size_t max_pairs = limits && limits->max_pairs ? limits->max_pairs : METADATA_DEFAULT_MAX_PAIRS;
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
    if (msg->n_data > max_pairs) {
        *why = "too many invoke metadata pairs";
        rc = UV_EINVAL;
        goto out;
    }
    for (size_t i = 0; i < msg->n_data; i++) {
        const Drpcsidecar__MetadataEntry *e = msg->data[i];
        rc = set_bytes(out, e->key.data, e->key.len, e->value.data, e->value.len);
        if (rc)
            break;
    }
out:
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
