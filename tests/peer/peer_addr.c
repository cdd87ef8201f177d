/* peer_addr: address parsing for the test peer tools. */
#include "tests/peer/peer_addr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

int peer_addr_parse(const char *text, struct sockaddr_storage *sa, const char **unix_path)
{
    *unix_path = NULL;
    if (strncmp(text, "unix:", 5) == 0) {
        *unix_path = text + 5;
        return 0;
    }
    const char *colon = strrchr(text, ':');
    if (!colon)
        return -1;
    char host[128];
    size_t n = (size_t)(colon - text);
    if (text[0] == '[' && n >= 2) {
        text++;
        n -= 2;
    }
    if (n >= sizeof(host))
        return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    int port = atoi(colon + 1);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0)
        return 0;
    return -1;
}
