/*
 * config_addr: parsing config addresses and comparing listening addresses
 * (see config_addr.h). Parsing is purely syntactic: host names are kept as
 * written and resolved later without blocking (uv_getaddrinfo, at dial).
 */
#include "config/config_addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <uv.h>

/* RFC 1123 names, plus "_" (seen in service names), one trailing dot allowed. */
bool config_addr_valid_hostname(const char *h)
{
    size_t len = strlen(h);
    if (len > 0 && h[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-' && c != '_')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return h[len - 1] != '-';
}

static int fail(const char *reason, const char **why)
{
    *why = reason;
    return UV_EINVAL;
}

static int parse_unix(const char *text, struct config_addr *out, const char **why)
{
    const char *path = text + 5;
    if (!*path)
        return fail("unix socket path is empty", why);
    if (path[0] != '/')
        return fail("unix socket path must be absolute: unix:/path", why);
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail("unix socket path is too long (at most 107 bytes)", why);
    out->kind = CONFIG_ADDR_UNIX;
    out->path = strdup(path);
    out->text = strdup(text);
    if (!out->path || !out->text) {
        config_addr_free(out);
        return UV_ENOMEM;
    }
    return 0;
}

int config_addr_parse(const char *text, struct config_addr *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text, out, why);

    const char *colon = strrchr(text, ':');
    if (!colon)
        return fail("expected host:port, [ipv6]:port or unix:/path", why);
    char host[256];
    size_t hlen = (size_t)(colon - text);
    if (text[0] == '[') {
        if (hlen < 2 || text[hlen - 1] != ']')
            return fail("expected [ipv6]:port", why);
        if (hlen - 2 >= sizeof(host))
            return fail("host is too long", why);
        memcpy(host, text + 1, hlen - 2);
        host[hlen - 2] = '\0';
        unsigned char buf[16];
        if (inet_pton(AF_INET6, host, buf) != 1)
            return fail("not a valid IPv6 address", why);
    } else {
        if (hlen == 0)
            return fail("host is empty", why);
        if (hlen >= sizeof(host))
            return fail("host is too long", why);
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        if (strchr(host, ':'))
            return fail("IPv6 addresses must be written in brackets: [::1]:port", why);
        unsigned char buf[4];
        /* All digits and dots is meant as IPv4; never hand "1.2.3.400" to DNS. */
        if (strspn(host, "0123456789.") == hlen) {
            if (inet_pton(AF_INET, host, buf) != 1)
                return fail("not a valid IPv4 address", why);
        } else if (!config_addr_valid_hostname(host)) {
            return fail("host is not a valid name or address", why);
        }
    }
    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen)
        return fail("port must be a number between 1 and 65535", why);
    long n = strtol(port, NULL, 10);
    if (n < 1 || n > 65535)
        return fail("port must be a number between 1 and 65535", why);
    out->kind = CONFIG_ADDR_TCP;
    out->port = (uint16_t)n;
    out->host = strdup(host);
    out->text = strdup(text);
    if (!out->host || !out->text) {
        config_addr_free(out);
        return UV_ENOMEM;
    }
    return 0;
}

void config_addr_free(struct config_addr *a)
{
    free(a->text);
    free(a->host);
    free(a->path);
    memset(a, 0, sizeof(*a));
}

/* An IP host as bytes, IPv4-mapped IPv6 folded to IPv4; localhost is
 * 127.0.0.1 (what the listeners bind). Returns the length: 4, 16 or 0. */
static size_t host_bytes(const struct config_addr *a, unsigned char out[16])
{
    if (a->kind != CONFIG_ADDR_TCP || !a->host)
        return 0;
    const char *h = strcmp(a->host, "localhost") == 0 ? "127.0.0.1" : a->host;
    if (inet_pton(AF_INET, h, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, h, out) != 1)
        return 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out, mapped, 12) == 0) {
        memmove(out, out + 12, 4);
        return 4;
    }
    return 16;
}

static bool all_zero(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

bool config_addr_is_ip(const struct config_addr *a)
{
    unsigned char buf[16];
    return a->kind == CONFIG_ADDR_TCP && strcmp(a->host, "localhost") != 0 &&
           host_bytes(a, buf) != 0;
}

bool config_addr_is_loopback(const struct config_addr *a)
{
    if (a->kind == CONFIG_ADDR_UNIX)
        return true;
    unsigned char b[16];
    size_t n = host_bytes(a, b);
    if (n == 4)
        return b[0] == 127;
    static const unsigned char v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return n == 16 && memcmp(b, v6_loopback, 16) == 0;
}

/* The next segment of a unix path, skipping empty ("//") and "." ones;
 * *len 0 at the end. ".." is kept: behind a symlink it is not lexical. */
static const char *next_segment(const char *p, size_t *len)
{
    for (;;) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 1 && p[0] == '.') {
            p += 1;
            continue;
        }
        *len = n;
        return p;
    }
}

/* Whether two unix paths name the same file as written, up to "//" and
 * "/./" (unix:/run/x.sock and unix:/run/./x.sock are one socket). */
static bool same_unix_path(const char *a, const char *b)
{
    for (;;) { /* both absolute (checked at parse) */
        size_t na, nb;
        a = next_segment(a, &na);
        b = next_segment(b, &nb);
        if (na != nb || memcmp(a, b, na) != 0)
            return false;
        if (na == 0)
            return true;
        a += na;
        b += nb;
    }
}

bool config_addr_conflict(const struct config_addr *a, const struct config_addr *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == CONFIG_ADDR_UNIX)
        return same_unix_path(a->path, b->path);
    if (a->port != b->port)
        return false;
    unsigned char ha[16], hb[16];
    size_t na = host_bytes(a, ha), nb = host_bytes(b, hb);
    if (na == 0 || nb == 0) /* a name: compare as written */
        return strcmp(a->host, b->host) == 0;
    if ((na == 16 && all_zero(ha, 16)) || (nb == 16 && all_zero(hb, 16)))
        return true;
    if (na != nb)
        return false;
    if (all_zero(ha, na) || all_zero(hb, nb))
        return true;
    return memcmp(ha, hb, na) == 0;
}
