/*
 * log: levelled logging to stderr. Each line carries a UTC timestamp, the
 * level and whatever object prefix the caller formats ("client#12 ...").
 * Nothing is logged per frame at info level.
 */
#ifndef SIDECAR_LOG_H
#define SIDECAR_LOG_H

#include "config/config.h"

void log_set_level(enum config_log_level level);
enum config_log_level log_get_level(void);

__attribute__((format(printf, 2, 3))) void log_write(enum config_log_level level, const char *fmt,
                                                     ...);

/* log_warn(text): the shape of config_tls_warnings' callback (arg unused). */
void log_warn_text(const char *text, void *arg);

#define log_error(...) log_write(CONFIG_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(CONFIG_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_write(CONFIG_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= CONFIG_LOG_DEBUG)                                                   \
            log_write(CONFIG_LOG_DEBUG, __VA_ARGS__);                                              \
    } while (0)

#endif
