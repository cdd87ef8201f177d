/*
 * config_routes: the "routes" section of the config: each route's match,
 * pool and metadata, and the checks across routes (unique names, every
 * route reachable). Part of config_load(); see config.c.
 */
#ifndef SIDECAR_CONFIG_ROUTES_H
#define SIDECAR_CONFIG_ROUTES_H

#include <jansson.h>

#include "config/config.h"
#include "config/config_read.h"

/*
 * Fills cfg->routes from root["routes"]; cfg->pools must be complete (routes
 * name pools). With no "routes" and exactly one pool, makes one default
 * route, named "default", to it. Returns 0, UV_EINVAL (rd->err filled in) or
 * UV_ENOMEM; on failure cfg->n_routes counts the routes to free.
 */
int config_routes_parse(struct config_reader *rd, const json_t *root, struct config *cfg);

#endif
