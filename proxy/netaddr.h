/*
 * netaddr: the socket-address chores every listening and connected socket
 * shares: binding a configured address (client listeners, reverse pools'
 * agent ports, the admin server) and naming a peer for logs and views.
 */
#ifndef SIDECAR_NETADDR_H
#define SIDECAR_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "proxy/handle.h"

struct config_addr;

/* "ip:port" for IPv4, "[ip]:port" for IPv6, "?" for another family. */
void netaddr_format(const struct sockaddr *sa, char *out, size_t size);

/* The remote end of a connected TCP handle, as netaddr_format writes it;
 * "?" when the kernel does not know it (the peer is gone). */
void netaddr_peer_name(const uv_tcp_t *tcp, char *out, size_t size);

/*
 * Initialises h on loop and binds it to a, ready for uv_listen:
 *   - unix: a stale socket file at the path is replaced (unix_path_claim),
 *     anything else there is an error;
 *   - TCP: the host must be an IP literal or "localhost" (127.0.0.1); with
 *     reuse_port the socket joins a SO_REUSEPORT group (reuseport.h).
 * *opened says whether h was initialised, on failure too: the caller then
 * uv_closes it. Returns 0 or a UV error with "WHAT ADDR: reason" in err,
 * `what` naming the socket for the operator ("bind", "admin.address",
 * "pool p: accept").
 */
__attribute__((warn_unused_result)) int netaddr_bind(uv_loop_t *loop, const struct config_addr *a,
                                                     bool reuse_port, const char *what,
                                                     union stream_handle *h, bool *opened,
                                                     char *err, size_t err_size);

#endif
