/* libFuzzer target: the whole config loader on arbitrary bytes; never crash or leak. */
#include <stdint.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    struct config_error err;
    if (config_parse((const char *)data, size, "fuzz.json", &cfg, &err) == 0) {
        json_t *j = config_to_json(cfg, true);
        json_decref(j);
        config_unref(cfg);
    } else {
        char msg[1024];
        config_error_format(&err, msg, sizeof(msg));
    }
    return 0;
}
