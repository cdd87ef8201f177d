/*
 * reuseport: sharing TCP ports with a newer drpc-sidecar during an upgrade.
 *
 * Every TCP port the sidecar listens on (client listeners with reuse_port,
 * the admin server, reverse pools' agent ports) joins a SO_REUSEPORT group,
 * so a new process can bind the same ports while the old one drains. Once
 * the new process is fully started it steers all new connections of each
 * group to itself (see reuseport_steer_here).
 */
#ifndef SIDECAR_REUSEPORT_H
#define SIDECAR_REUSEPORT_H

#include <uv.h>

/* Sets SO_REUSEPORT on an initialised but unbound TCP handle (it must own a
 * socket already: uv_tcp_init_ex with an address family). 0 or a UV error. */
int reuseport_enable(uv_tcp_t *tcp);

/*
 * Makes the kernel hand this process every new connection of the port's
 * SO_REUSEPORT group. The group's sockets are kept in join order and a
 * classic BPF program may pick one by index: "always 1" selects the second
 * socket, the newcomer, while two listen, and falls back to the usual hash
 * when the index is out of range (a process alone, or the old one gone).
 * Without it the old process keeps receiving connections until its socket
 * closes, and one that lands between its last accept and the close is
 * reset. A refusal is logged (the upgrade then has that window).
 */
void reuseport_steer_here(uv_tcp_t *tcp, const char *what);

#endif
