/*
 * libFuzzer target: admin request handling from raw bytes: parse every
 * pipelined request and route it against an idle sidecar with one pool.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/http.h"
#include "admin/routes.h"
#include "config/config.h"
#include "proxy/pool.h"
#include "proxy/sidecar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sidecar *fuzz_sidecar(void)
{
    static struct sidecar *sc;
    if (sc)
        return sc;
    static const char cfg_text[] =
        "{\"listeners\":[{\"address\":\"127.0.0.1:1\"}],\"admin\":{\"token\":\"t\"},"
        "\"pools\":[{\"name\":\"p\",\"endpoints\":[\"127.0.0.1:2\"]}]}";
    struct config *cfg;
    struct config_error err;
    if (config_parse(cfg_text, sizeof(cfg_text) - 1, "fuzz", &cfg, &err) != 0)
        abort();
    sc = calloc(1, sizeof(*sc));
    sc->loop = uv_default_loop();
    sc->cfg = cfg;
    list_init(&sc->clients);
    list_init(&sc->calls);
    list_init(&sc->flush_list);
    list_init(&sc->retired_pools);
    sc->pools = calloc(1, sizeof(*sc->pools));
    if (pool_create(sc, cfg, 0, &sc->pools[0]) != 0)
        abort();
    sc->n_pools = 1;
    /* no listeners: mutations that need a running loop are harmless here */
    sc->state = SIDECAR_DRAINING;
    return sc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sidecar *sc = fuzz_sidecar();
    struct admin_http h;
    admin_http_init(&h);
    size_t pos = 0;
    for (int n = 0; n < 16 && pos <= size; n++) {
        size_t used;
        enum admin_http_result r = admin_http_feed(&h, (const char *)data + pos, size - pos, &used);
        pos += used;
        if (r != ADMIN_HTTP_REQUEST)
            break;
        /* POST /drain would start a shutdown: the fuzz sidecar is not running */
        struct admin_response resp = {0};
        struct admin_route_ctx ctx = {sc, NULL, 1};
        if (strcmp(h.method, "POST") != 0 || strstr(h.url, "/pools/"))
            admin_route(&ctx, &h, &resp);
        admin_response_free(&resp);
        admin_http_next(&h);
    }
    return 0;
}
