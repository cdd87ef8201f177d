/* log: levelled stderr logging (the only process-wide mutable state is the level). */
#include "proxy/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static enum config_log_level current_level = CONFIG_LOG_INFO;

void log_set_level(enum config_log_level level)
{
    current_level = level;
}

enum config_log_level log_get_level(void)
{
    return current_level;
}

void log_write(enum config_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (level > current_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* Messages quote what peers sent (rpc names, agent ids, error texts):
     * a control character in them must not start a forged line. */
    char safe[sizeof(line) * 4];
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)line; *c && o + 5 < sizeof(safe); c++) {
        if (*c < 0x20 || *c == 0x7f)
            o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\x%02x", *c);
        else
            safe[o++] = (char)*c;
    }
    safe[o] = '\0';
    /* One fputs per line keeps lines whole on a shared stderr. */
    fprintf(stderr, "%s\n", safe);
}

void log_warn_text(const char *text, void *arg)
{
    (void)arg;
    log_warn("%s", text);
}
