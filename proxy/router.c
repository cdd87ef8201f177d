/* router: first-match route selection over the config snapshot. */
#include "proxy/router.h"

#include <string.h>

static bool route_matches(const struct config_route *r, const char *rpc, size_t rpc_len,
                          const struct metadata *md)
{
    if (r->rpc && (strlen(r->rpc) != rpc_len || memcmp(r->rpc, rpc, rpc_len) != 0))
        return false;
    if (r->rpc_prefix) {
        size_t n = strlen(r->rpc_prefix);
        if (n > rpc_len || memcmp(r->rpc_prefix, rpc, n) != 0)
            return false;
    }
    if (r->metadata_key) {
        const struct metadata_pair *v = md ? metadata_find(md, r->metadata_key) : NULL;
        if (!v)
            return false;
        /* By full length: "b\0x" is not "b". */
        if (r->metadata_value && (v->value_len != strlen(r->metadata_value) ||
                                  memcmp(v->value, r->metadata_value, v->value_len) != 0))
            return false;
    }
    return true;
}

int router_match(const struct config *cfg, const char *rpc, size_t rpc_len,
                 const struct metadata *md)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (route_matches(&cfg->routes[i], rpc, rpc_len, md))
            return (int)i;
    return -1;
}
