/* tls_stats: TLS handshake counters by listener or pool (see tls_stats.h). */
#include "proxy/tls_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_stats *tls_stats_get(struct tls_stats **head, const char *kind, const char *name,
                                bool server)
{
    struct tls_stats **at = head;
    for (; *at; at = &(*at)->next)
        if (strcmp((*at)->kind, kind) == 0 && strcmp((*at)->name, name) == 0) {
            (*at)->server = server;
            return *at;
        }
    struct tls_stats *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->kind = kind;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->server = server;
    *at = s; /* at the end: /metrics lists them in order of first use */
    return s;
}

struct tls_endpoint_stats *tls_stats_endpoint(struct tls_stats *s, const char *endpoint)
{
    for (size_t i = 0; i < s->n_endpoints; i++)
        if (strcmp(s->endpoints[i].endpoint, endpoint) == 0)
            return &s->endpoints[i];
    if (s->n_endpoints == TLS_STATS_ENDPOINTS)
        return NULL;
    struct tls_endpoint_stats *e = &s->endpoints[s->n_endpoints++];
    snprintf(e->endpoint, sizeof(e->endpoint), "%s", endpoint);
    return e;
}

void tls_stats_reason(const char *text, char *out, size_t size)
{
    if (strncmp(text, "tls: ", 5) == 0)
        text += 5;
    size_t n = strcspn(text, ":");
    if (n >= size)
        n = size - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

void tls_stats_failed(struct tls_stats *s, const char *text)
{
    s->failed++;
    char reason[sizeof(s->reasons[0].reason)];
    tls_stats_reason(text, reason, sizeof(reason));
    for (size_t i = 0; i < s->n_reasons; i++)
        if (strcmp(s->reasons[i].reason, reason) == 0) {
            s->reasons[i].n++;
            return;
        }
    if (s->n_reasons == TLS_STATS_REASONS) {
        s->other_reasons++;
        return;
    }
    memcpy(s->reasons[s->n_reasons].reason, reason, sizeof(reason));
    s->reasons[s->n_reasons++].n = 1;
}

bool tls_log_allowed(struct tls_log_limit *l, const char *peer, uint64_t now_ms)
{
    char host[sizeof(l->peer[0])];
    snprintf(host, sizeof(host), "%s", peer);
    char *colon = strrchr(host, ':'); /* "1.2.3.4:5" and "[::1]:5" alike */
    if (colon)
        *colon = '\0';
    for (size_t i = 0; i < TLS_LOG_PEERS; i++)
        if (l->at[i] && strcmp(l->peer[i], host) == 0) {
            if (now_ms - l->at[i] < 60000)
                return false;
            l->at[i] = now_ms;
            return true;
        }
    memcpy(l->peer[l->next], host, sizeof(host));
    l->at[l->next] = now_ms ? now_ms : 1;
    l->next = (l->next + 1) % TLS_LOG_PEERS;
    return true;
}

void tls_stats_register(struct tls_stats **head, const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].tls.enabled)
            (void)tls_stats_get(head, "listener", cfg->listeners[i].name, true);
    for (size_t i = 0; i < cfg->n_pools; i++) {
        const struct config_pool *p = &cfg->pools[i];
        if (p->reverse ? p->accept_tls.enabled : p->tls.enabled)
            (void)tls_stats_get(head, "pool", p->name, p->reverse);
    }
}

void tls_stats_free(struct tls_stats *head)
{
    while (head) {
        struct tls_stats *next = head->next;
        free(head);
        head = next;
    }
}
