/*
 * notify: systemd's readiness protocol without libsystemd: one datagram
 * ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=...") to the unix socket
 * named by $NOTIFY_SOCKET ("@name" = abstract). A no-op when it is unset.
 * The socket is non-blocking: a full or missing receiver never stalls us.
 */
#ifndef SIDECAR_NOTIFY_H
#define SIDECAR_NOTIFY_H

/* Returns 0, or a negative errno; callers only log failures. */
int notify_send(const char *state);

#endif
