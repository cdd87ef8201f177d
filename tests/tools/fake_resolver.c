/*
 * fake_resolver: a getaddrinfo for tests, loaded with LD_PRELOAD. Names
 * ending in ".test" are answered from the file named by
 * $FAKE_RESOLVER_ANSWERS: the k-th such query (from 0) gets line k modulo
 * the number of lines, a comma-separated list of numeric addresses, in
 * that order. Other names go to the real resolver. It lets a test give a
 * name several addresses, dead ones among them, and reorder them between
 * queries as round-robin DNS does, without touching /etc/hosts.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*getaddrinfo_fn)(const char *node, const char *service, const struct addrinfo *hints,
                              struct addrinfo **res);

static atomic_uint queries;

/* Line k (cycling) of the answers file into out; false if there is none. */
static bool answer_line(unsigned k, char *out, size_t size)
{
    const char *path = getenv("FAKE_RESOLVER_ANSWERS");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return false;
    unsigned lines = 0;
    while (fgets(out, (int)size, f))
        lines++;
    bool found = false;
    if (lines) {
        rewind(f);
        for (unsigned i = 0; i <= k % lines && fgets(out, (int)size, f); i++)
            found = true;
    }
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
    return found;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    size_t len = node ? strlen(node) : 0;
    if (len < 5 || strcmp(node + len - 5, ".test") != 0)
        return real(node, service, hints, res);
    char line[512];
    if (!answer_line(atomic_fetch_add(&queries, 1), line, sizeof(line)))
        return EAI_NONAME;
    struct addrinfo numeric;
    memset(&numeric, 0, sizeof(numeric));
    if (hints)
        numeric = *hints;
    numeric.ai_flags |= AI_NUMERICHOST;
    struct addrinfo *head = NULL, **tail = &head;
    char *save = NULL;
    for (char *a = strtok_r(line, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        struct addrinfo *one;
        if (real(a, service, &numeric, &one) != 0)
            continue;
        *tail = one; /* freeaddrinfo frees node by node, so chains join */
        while (*tail)
            tail = &(*tail)->ai_next;
    }
    *res = head;
    return head ? 0 : EAI_NONAME;
}
