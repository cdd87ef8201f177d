/* peer_addr: address parsing and printing for the test peer tools. */
#include "tests/peer/peer_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

int peer_addr_parse(const char *text, struct peer_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", 5) == 0) {
        size_t n = strlen(text + 5);
        if (n == 0 || n >= sizeof(out->path))
            return UV_EINVAL;
        out->kind = PEER_ADDR_UNIX;
        memcpy(out->path, text + 5, n + 1);
        return 0;
    }

    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || colon[1] == '\0')
        return UV_EINVAL;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535)
        return UV_EINVAL;

    char host[64];
    const char *h = text;
    size_t n = (size_t)(colon - text);
    if (h[0] == '[') {
        /* "[v6]:port": the brackets are not part of the address */
        if (n < 2 || h[n - 1] != ']')
            return UV_EINVAL;
        h++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(host))
        return UV_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");

    out->kind = PEER_ADDR_TCP;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&out->sa) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&out->sa) == 0)
        return 0;
    return UV_EINVAL;
}

int peer_addr_format_sockaddr(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    int rc;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        rc = uv_ip6_name(s6, ip, sizeof(ip));
        if (rc == 0)
            snprintf(out, len, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        rc = uv_ip4_name(s4, ip, sizeof(ip));
        if (rc == 0)
            snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    } else {
        rc = UV_EAFNOSUPPORT;
    }
    return rc;
}
