/*
 * config_addr: the address syntax of the config ("host:port", "[v6]:port",
 * "unix:/path") and the checks the loader makes on addresses it will listen
 * on. config_addr_parse() and config_addr_free() are public and declared in
 * config.h; this header adds the helpers the loader needs.
 */
#ifndef SIDECAR_CONFIG_ADDR_H
#define SIDECAR_CONFIG_ADDR_H

#include <stdbool.h>

#include "config/config.h"

/* True for an RFC 1123 host name (plus "_"; one trailing dot allowed). */
bool config_addr_valid_hostname(const char *h);

/* True for an IPv4 or IPv6 literal host (TCP addresses only). */
bool config_addr_is_ip(const struct config_addr *a);

/* True for unix:, localhost, 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z). */
bool config_addr_is_loopback(const struct config_addr *a);

/*
 * True when two addresses the sidecar listens on would take the same
 * socket: the same unix path, or the same TCP port on the same host, or on
 * a wildcard (0.0.0.0 covers IPv4; [::] covers both, as libuv binds it
 * dual-stack). Under SO_REUSEPORT such binds may not even fail; traffic
 * would be split silently. "localhost" counts as 127.0.0.1, as bound.
 */
bool config_addr_conflict(const struct config_addr *a, const struct config_addr *b);

#endif
