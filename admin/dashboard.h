/* dashboard: the self-contained HTML page served at GET / (no external assets). */
#ifndef SIDECAR_ADMIN_DASHBOARD_H
#define SIDECAR_ADMIN_DASHBOARD_H

extern const char dashboard_html[];

#endif
