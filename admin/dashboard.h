/* dashboard: the self-contained HTML page served at GET / (see dashboard.c). */
#ifndef SIDECAR_ADMIN_DASHBOARD_H
#define SIDECAR_ADMIN_DASHBOARD_H

#include <stddef.h>

extern const char dashboard_html[];
extern const size_t dashboard_html_len;

#endif
