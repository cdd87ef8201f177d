/*
 * libFuzzer target: the whole config loader (jansson, validation, the
 * position finder behind every error) on arbitrary bytes. It must never
 * crash or leak, and a config it accepts must survive the round trip
 * config_to_json -> text -> config_parse -> config_to_json unchanged:
 * GET /config shows a document that would load to the same snapshot.
 * tls objects are accepted (CONFIG_ALLOW_TLS), so their keys round-trip
 * too; the files they name are read (only regular files, at most
 * CONFIG_TLS_FILE_MAX bytes), so most paths fail as unreadable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct config *cfg)
{
    json_t *j1 = config_to_json(cfg, false);
    if (!j1)
        return; /* out of memory */
    char *text = json_dumps(j1, JSON_COMPACT);
    struct config *cfg2 = NULL;
    struct config_error err;
    if (text && config_parse_flags(text, strlen(text), "round-trip.json", CONFIG_ALLOW_TLS, &cfg2,
                                   &err) != 0) {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "effective config does not load again: %s\n%s\n", msg, text);
        abort();
    }
    if (cfg2) {
        json_t *j2 = config_to_json(cfg2, false);
        if (j2 && !json_equal(j1, j2)) {
            char *text2 = json_dumps(j2, JSON_COMPACT);
            fprintf(stderr, "round trip changed the config:\n%s\n%s\n", text, text2);
            abort();
        }
        json_decref(j2);
        config_unref(cfg2);
    }
    free(text);
    json_decref(j1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    struct config_error err;
    char msg[1024];
    int rc =
        config_parse_flags((const char *)data, size, "fuzz.json", CONFIG_ALLOW_TLS, &cfg, &err);
    if (rc == 0) {
        round_trip(cfg);
        json_decref(config_to_json(cfg, true));
        config_unref(cfg);
        return 0;
    }
    config_error_format(&err, msg, sizeof(msg));
    if (rc == UV_EINVAL && (err.line < 1 || err.column < 1)) {
        fprintf(stderr, "error without a position: %s\n", msg); /* every one has one */
        abort();
    }
    return 0;
}
