/*
 * libFuzzer target: admin request handling from raw bytes. The first byte
 * picks how the rest is sliced into reads (1, 2, 3, 7, 16, 64, 512 bytes or
 * all at once); every pipelined request is parsed and routed against a real
 * process built once by sidecar_start (a unix-socket listener, two pools
 * that never dial, a token), POSTs included, the way admin.c does it. The
 * loop is not run between inputs, except to reopen the listener after a
 * POST /drain closed it. Must never crash, leak or trip
 * a sanitizer; a request must never be answered with an unknown status.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/http.h"
#include "admin/routes.h"
#include "proxy/listener.h"
#include "proxy/pool.h"
#include "tests/fuzz/fuzz_process.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* No min_idle: a pool with one would dial from the janitor (never run here). */
static const char CONFIG[] = "{\"listeners\":[{\"address\":\"unix:%s\"}],"
                             "\"admin\":{\"address\":\"127.0.0.1:2\",\"token\":\"t\"},"
                             "\"pools\":[{\"name\":\"p\",\"endpoints\":[\"127.0.0.1:3\"]},"
                             "{\"name\":\"q r\",\"endpoints\":[\"127.0.0.1:4\",\"unix:/tmp/x\"]}],"
                             "\"routes\":[{\"pool\":\"p\"}]}";

/* Undoes what a mutation did, so every input starts from the same state. */
static void reset(struct sidecar *sc)
{
    if (sc->state != SIDECAR_RUNNING) {
        /* POST /drain: stop its timer, let the closed listener go, open it again. */
        sc->state = SIDECAR_RUNNING;
        uv_timer_stop(&sc->shutdown_timer);
        uv_run(sc->lc->loop, UV_RUN_NOWAIT);
        char err[256];
        if (sc->n_listeners == 0 &&
            listener_start(sc, &sc->cfg->listeners[0], &sc->listeners[0], err, sizeof(err)) != 0)
            abort();
        sc->n_listeners = 1;
    }
    for (size_t i = 0; i < sc->n_pools; i++)
        sc->pools[i]->draining = false;
}

static void answer(struct sidecar *sc, const struct admin_http *h)
{
    struct admin_response resp;
    memset(&resp, 0, sizeof(resp));
    struct admin_route_ctx ctx = {sc, NULL, 1};
    admin_route(&ctx, h, &resp);
    if (!resp.pending && strcmp(admin_http_status_text(resp.status), "Unknown") == 0)
        abort();
    char head[640];
    if (admin_http_head(head, sizeof(head), resp.status,
                        resp.content_type ? resp.content_type : "application/json", resp.body.len,
                        resp.headers, !h->keep_alive) < 0)
        abort();
    admin_response_free(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t slices[] = {1, 2, 3, 7, 16, 64, 512, SIZE_MAX};
    if (size == 0)
        return 0;
    size_t slice = slices[data[0] % 8];
    const char *in = (const char *)data + 1;
    size_t len = size - 1, pos = 0;
    struct sidecar *sc = fuzz_process_once(CONFIG, "fuzz_http"); /* POST /drain logs nothing */
    struct admin_http h;
    admin_http_init(&h);
    for (int requests = 0; requests < 32 && pos <= len;) {
        size_t n = len - pos < slice ? len - pos : slice, used = 0;
        enum admin_http_result r = admin_http_feed(&h, in + pos, n, &used);
        if (used > n)
            abort();
        pos += used;
        if (r == ADMIN_HTTP_ERROR) {
            if (h.error_status < 400 || h.error_status > 499)
                abort();
            break;
        }
        if (r == ADMIN_HTTP_REQUEST) {
            answer(sc, &h);
            admin_http_next(&h);
            requests++;
            continue;
        }
        if (pos == len)
            break; /* NEED_MORE and nothing left */
    }
    reset(sc);
    return 0;
}
