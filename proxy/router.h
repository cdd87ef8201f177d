/*
 * router: picks the route for a call. Routes are tried in order; the first
 * whose conditions all hold wins (exact rpc, rpc prefix, metadata key and
 * optional value). A route without conditions matches everything.
 */
#ifndef SIDECAR_ROUTER_H
#define SIDECAR_ROUTER_H

#include <stddef.h>

#include "config/config.h"
#include "proxy/metadata.h"

/* Index of the matching route in cfg->routes, or -1 when none matches. */
int router_match(const struct config *cfg, const char *rpc, size_t rpc_len,
                 const struct metadata *md);

#endif
