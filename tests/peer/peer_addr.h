/* peer_addr: "host:port", "[v6]:port" or "unix:/path" for the test peer tools. */
#ifndef SIDECAR_PEER_ADDR_H
#define SIDECAR_PEER_ADDR_H

#include <sys/socket.h>

/* Fills sa for TCP, or sets *unix_path (pointing into text) for unix:. 0 or -1. */
int peer_addr_parse(const char *text, struct sockaddr_storage *sa, const char **unix_path);

#endif
