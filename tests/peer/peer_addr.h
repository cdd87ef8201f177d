/*
 * peer_addr: the addresses the test peer tools take and print.
 *
 *   127.0.0.1:PORT   [::1]:PORT   localhost:PORT   unix:/path
 *
 * Only literal IPs (and "localhost", read as 127.0.0.1) are accepted, so
 * parsing never needs DNS and never blocks the loop.
 */
#ifndef SIDECAR_PEER_ADDR_H
#define SIDECAR_PEER_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

enum peer_addr_kind {
    PEER_ADDR_TCP,  /* sa holds an IPv4 or IPv6 address and port */
    PEER_ADDR_UNIX, /* path holds a unix socket path */
};

#define PEER_ADDR_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
#define PEER_ADDR_TEXT_MAX (PEER_ADDR_PATH_MAX + 8)

struct peer_addr {
    enum peer_addr_kind kind;
    struct sockaddr_storage sa;
    char path[PEER_ADDR_PATH_MAX];
};

/* Parses text into *out. Returns 0, or UV_EINVAL for anything else. */
__attribute__((warn_unused_result)) int peer_addr_parse(const char *text, struct peer_addr *out);

/*
 * Formats a TCP socket address as "1.2.3.4:PORT" or "[::1]:PORT" into
 * out (PEER_ADDR_TEXT_MAX bytes). Returns 0 or a negative UV_E* code.
 */
int peer_addr_format_sockaddr(const struct sockaddr *sa, char *out, size_t len);

#endif
