/*
 * config: the parsed, validated configuration as an immutable snapshot.
 *
 * config_load() reads and validates a whole JSON file (jansson) into a new
 * struct config; nothing live points into the JSON. Live objects hold a
 * reference (config_ref/config_unref) to the snapshot they were built
 * from, so a reload can swap in a new snapshot while calls that started on
 * the old one finish with its settings. A snapshot is never modified after
 * config_load() returns it.
 *
 * Every error names the file, line, column and JSON path of the offending
 * value (struct config_error), e.g.
 *   example.json:12:20: pools[1].max_conns: must be between 1 and 65535
 */
#ifndef SIDECAR_CONFIG_H
#define SIDECAR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Listener, pool and route names: at most this many bytes, no control characters. */
#define CONFIG_NAME_MAX     63
/* Default cap of the adaptive busy poll: covers a loopback request/reply
 * round trip on a VM, so a steady exchange never sleeps. */
#define CONFIG_BUSY_POLL_US 50

enum config_addr_kind {
    CONFIG_ADDR_TCP,  /* host:port, [v6]:port; host may be a name (resolved async) */
    CONFIG_ADDR_UNIX, /* unix:/path */
};

struct config_addr {
    enum config_addr_kind kind;
    char *text; /* as written in the file, e.g. "127.0.0.1:7777" or "unix:/x" */
    char *host; /* TCP: host without brackets; NULL for unix */
    uint16_t port;
    char *path; /* unix: filesystem path; NULL for TCP */
};

enum config_cancel_mode {
    CONFIG_CANCEL_SOFT,  /* send a Cancel packet (control bit) and keep the conn */
    CONFIG_CANCEL_CLOSE, /* close the upstream connection */
};

enum config_balance {
    CONFIG_BALANCE_ROUND_ROBIN,
    CONFIG_BALANCE_LEAST_BUSY,
};

enum config_log_level {
    CONFIG_LOG_ERROR,
    CONFIG_LOG_WARN,
    CONFIG_LOG_INFO,
    CONFIG_LOG_DEBUG,
};

enum config_log_format {
    CONFIG_LOG_FORMAT_TEXT,
    CONFIG_LOG_FORMAT_JSON,
};

/* TLS ("tls" objects; config_tls.c). Files are read, parsed and checked at
 * load and their bytes kept in the snapshot: the contexts built from it
 * (proxy/tls_ctx.h) never touch the file system, so they can be built
 * anywhere, and a reload re-reads every file. */
enum config_tls_version {
    CONFIG_TLS_1_2,
    CONFIG_TLS_1_3,
};

/* The names of enum config_tls_version, by value: "1.2", "1.3". */
extern const char *const config_tls_version_names[];

/* A PEM file named by a tls key, read at load. */
struct config_tls_file {
    char *path; /* as written; NULL when the key is absent */
    char *data; /* its bytes, NUL-terminated (may hold a private key: never shown) */
    size_t len;
};

/* A dialled pool's "tls": the sidecar is the TLS client. */
struct config_tls_client {
    bool enabled;                /* "tls": true or an object */
    struct config_tls_file ca;   /* "ca_file"; absent: the system store */
    struct config_tls_file cert; /* "cert_file": client certificate (chain), with key */
    struct config_tls_file key;  /* "key_file" */
    char *server_name;           /* SNI and the name verified; NULL: the endpoint's host */
    bool verify;                 /* default true; false only when written */
    enum config_tls_version min_version;
};

/* A listener's or reverse pool's "tls": the sidecar is the TLS server. */
struct config_tls_server {
    bool enabled;
    struct config_tls_file cert;      /* "cert_file", required */
    struct config_tls_file key;       /* "key_file", required */
    struct config_tls_file client_ca; /* "client_ca_file": clients must present a certificate */
    enum config_tls_version min_version;
};

struct config_listener {
    char *name;
    struct config_addr addr;
    bool accept_header;              /* "header": accept an optional DRPC!!!1 prefix */
    uint32_t max_clients;            /* 0 = no per-listener limit */
    uint32_t unix_mode;              /* "mode": file mode of a unix socket, default 0660 */
    bool reuse_port;                 /* "reuse_port": SO_REUSEPORT on TCP, default true */
    uint64_t client_idle_timeout_ms; /* close a client idle this long between calls; 0 = never */
    struct config_tls_server tls;    /* "tls" */
};

/*
 * The scalar keys of a pool, each declared once. This table gives the
 * members of struct config_pool, their parsing (range, default), the
 * refusal of dialling keys on a reverse pool and the pool's part of
 * config_to_json(); config/README.md documents the same keys.
 *
 *   X(key, type, min, max, default, scope)
 *
 * type   U32, U64  an integer in min..max
 *        BOOL      true or false (min, max unused)
 *        BALANCE   one of config_balance_names (default: the index)
 *        CANCEL    one of config_cancel_names (default: the index)
 * scope  ANY       both kinds of pool
 *        DIAL      dialled pools only: refused on a reverse pool ("agents
 *                  dial in") and left out of its JSON
 *
 * Keys are read, and unknown keys matched for "did you mean", in row order;
 * the JSON lists the ANY rows, then the DIAL rows. The day and month bounds
 * are config_read.h's.
 */
#define CONFIG_POOL_KEYS(X)                                                                        \
    /* open upstream connections at most (reverse pools: accepted agents) */                       \
    X(max_conns, U32, 1, 65535, 16, ANY)                                                           \
    /* idle connections dialled ahead; at most max_conns */                                        \
    X(min_idle, U32, 0, 65535, 0, DIAL)                                                            \
    /* 0 = never */                                                                                \
    X(idle_timeout_ms, U64, 0, CONFIG_READ_DAY_MS, 60000, DIAL)                                    \
    /* 0 = unlimited; checked at release */                                                        \
    X(max_lifetime_ms, U64, 0, CONFIG_READ_MONTH_MS, 0, ANY)                                       \
    X(dial_timeout_ms, U64, 1, CONFIG_READ_DAY_MS, 5000, ANY)                                      \
    /* 0 = fail fast when all busy */                                                              \
    X(max_waiters, U32, 0, 1000000, 1024, ANY)                                                     \
    X(wait_timeout_ms, U64, 0, CONFIG_READ_DAY_MS, 5000, ANY)                                      \
    /* 0 = none */                                                                                 \
    X(call_timeout_ms, U64, 0, CONFIG_READ_MONTH_MS, 0, ANY)                                       \
    X(balance, BALANCE, 0, 0, CONFIG_BALANCE_ROUND_ROBIN, DIAL)                                    \
    /* send DRPC!!!1 on new upstream connections (reverse: require it) */                          \
    X(header, BOOL, 0, 0, false, ANY)                                                              \
    X(cancel, CANCEL, 0, 0, CONFIG_CANCEL_SOFT, ANY)                                               \
    /* 0 = never eject */                                                                          \
    X(eject_after_failures, U32, 0, 1000, 3, DIAL)                                                 \
    X(eject_ms, U64, 1, CONFIG_READ_DAY_MS, 10000, DIAL)                                           \
    /* at most backoff_max_ms */                                                                   \
    X(backoff_base_ms, U64, 1, CONFIG_READ_DAY_MS, 100, DIAL)                                      \
    X(backoff_max_ms, U64, 1, CONFIG_READ_DAY_MS, 5000, DIAL)                                      \
    /* reverse pools: a call without a deadline of its own fails when its  */                      \
    /* agent sent no reply frame this long (0 = never) */                                          \
    X(first_reply_timeout_ms, U64, 0, CONFIG_READ_DAY_MS, 60000, AGENT)                            \
    /* reverse pools: calls waiting for one named agent (absent ones share one allowance) */       \
    X(max_waiters_per_agent, U32, 0, 1000000, 64, AGENT)                                           \
    /* retries of unanswered calls, as a share of the calls of the last second */                  \
    X(retry_budget_percent, U32, 0, 100, 20, ANY)

#define CONFIG_POOL_CTYPE_U32     uint32_t
#define CONFIG_POOL_CTYPE_U64     uint64_t
#define CONFIG_POOL_CTYPE_BOOL    bool
#define CONFIG_POOL_CTYPE_BALANCE enum config_balance
#define CONFIG_POOL_CTYPE_CANCEL  enum config_cancel_mode

/* A row as a member of struct config_pool. */
#define CONFIG_POOL_MEMBER(key, type, min, max, def, scope) CONFIG_POOL_CTYPE_##type key;

/* A row's scope as truth values: ANY, DIAL (dialled pools only) or AGENT
 * (reverse pools only). */
#define CONFIG_POOL_DIAL_ONLY_ANY    0
#define CONFIG_POOL_DIAL_ONLY_DIAL   1
#define CONFIG_POOL_DIAL_ONLY_AGENT  0
#define CONFIG_POOL_AGENT_ONLY_ANY   0
#define CONFIG_POOL_AGENT_ONLY_DIAL  0
#define CONFIG_POOL_AGENT_ONLY_AGENT 1

/* The names of enum config_balance and enum config_cancel_mode, by value. */
extern const char *const config_balance_names[];
extern const char *const config_cancel_names[];

/* A pool's "health_check" (proxy/health.h). */
struct config_health_check {
    bool enabled;                 /* the key was given */
    uint64_t interval_ms;         /* between checks of one endpoint, default 1000 */
    uint64_t timeout_ms;          /* a check that takes longer fails, default 1000 */
    char *rpc;                    /* unary RPC whose success means healthy; NULL = TCP connect */
    char *request;                /* its request message, default "" */
    uint32_t healthy_threshold;   /* passes in a row that make an endpoint healthy, default 2 */
    uint32_t unhealthy_threshold; /* failures in a row that make it unhealthy, default 3 */
};

struct config_pool {
    char *name;
    /* Dialled pool: endpoints. Reverse pool: accept (exclusive with endpoints). */
    struct config_addr *endpoints;
    size_t n_endpoints;
    bool reverse;              /* true when "accept" is given */
    struct config_addr accept; /* reverse pools: where agents dial in */
    char *identify_rpc;        /* reverse pools: "identify": {"rpc": ...}; NULL = off */
    struct config_health_check health_check; /* dialled pools: "health_check" */
    struct config_tls_client tls;            /* dialled pools: "tls" */
    struct config_tls_server accept_tls;     /* reverse pools: "tls" (the listener form) */

    CONFIG_POOL_KEYS(CONFIG_POOL_MEMBER)
};

struct config_metadata_pair {
    char *key;
    char *value;
};

struct config_route {
    char *name; /* "name", default "route<N>"; for logs and metrics */
    /* "match": all given conditions must hold; none given = default route. */
    char *rpc;            /* "rpc": exact RPC name, or NULL */
    char *rpc_prefix;     /* "rpc_prefix": RPC name prefix, or NULL */
    char *metadata_key;   /* "metadata": {"key": K, "value": V}: key must be present */
    char *metadata_value; /* ... and equal V when V is given (may be NULL) */

    char *pool;        /* pool name as written */
    size_t pool_index; /* index into config.pools, resolved at load */

    struct config_metadata_pair *add_metadata; /* "add_metadata": {k: v, ...} */
    size_t n_add_metadata;

    bool has_call_timeout;    /* "call_timeout_ms" given on the route */
    uint64_t call_timeout_ms; /* overrides the pool's when has_call_timeout */

    char *agent_from_metadata; /* reverse pools: metadata key naming the agent */

    /* "retry": {"unanswered": ..., "max_attempts": ...} (proxy/retry.h) */
    bool has_retry;
    bool retry_unanswered;       /* retry a call lost before the first reply byte */
    uint32_t retry_max_attempts; /* attempts in all, 2..10, default 2 */
};

struct config_admin {
    bool enabled;                /* default true; "admin": {"enabled": false} turns it off */
    struct config_addr addr;     /* default 127.0.0.1:9901 */
    char *token;                 /* NULL = no token */
    bool allow_insecure;         /* allow a non-loopback address without a token */
    bool show_metadata_values;   /* /calls shows metadata values */
    uint64_t request_timeout_ms; /* default 10000 */
};

struct config_access_log {
    bool enabled;
    char *path; /* "-" = stderr */
    enum config_log_format format;
};

struct config {
    int refs;
    char *path; /* file it was loaded from ("<string>" for config_parse) */

    struct config_listener *listeners;
    size_t n_listeners;
    struct config_pool *pools;
    size_t n_pools;
    struct config_route *routes;
    size_t n_routes;
    struct config_admin admin;
    struct config_access_log access_log;

    enum config_log_level log_level; /* default info */
    uint32_t max_clients;            /* global limit, default 10000; 0 = none */
    uint64_t shutdown_grace_ms;      /* default 10000 */
    uint64_t max_message_size;       /* default 4 MiB (the upstream reader's) */
    uint64_t max_metadata_size;      /* default 64 KiB */
    uint64_t call_buffer_bytes;      /* per-call buffered bytes high-water mark, default 1 MiB */
    uint64_t
        max_buffered_bytes; /* process-wide budget (proxy/budget.h), default 32 MiB; 0 = none */
    uint64_t request_start_timeout_ms; /* Invoke to a first message or CloseSend; default 10 s */
    uint64_t request_idle_timeout_ms;  /* a client silent mid-packet; default 30 s */
    uint32_t busy_poll_us; /* cap of the adaptive spin after traffic (proxy/busy_poll.h); 0 = off */

    /* The system CA store, read at load when a dialled pool verifies
     * without a ca_file (path: the file OpenSSL names); else all zero. */
    struct config_tls_file system_ca;
    uint32_t metrics_max_rpcs; /* "metrics": {"max_rpcs"}: RPC names with their own series
                                * per pool (proxy/rpc_stats.h), default 100; 0 = no per-RPC
                                * accounting */
};

#define CONFIG_METRICS_MAX_RPCS       100
#define CONFIG_METRICS_MAX_RPCS_LIMIT 10000

struct config_error {
    char file[256];
    int line;       /* 1-based; 0 when not known */
    int column;     /* 1-based; 0 when not known */
    char path[256]; /* JSON path, e.g. "pools[1].max_conns"; "" for the whole file */
    char text[512];
};

/*
 * Reads, parses and validates the file at path. On success returns 0 and a
 * snapshot with refs == 1 in *out. On failure returns a negative UV_E* code
 * (UV_EINVAL for invalid content, the file error otherwise) and fills *err.
 * Blocking file I/O: call it off the event loop or before it runs.
 */
__attribute__((warn_unused_result)) int config_load(const char *path, struct config **out,
                                                    struct config_error *err);

/* As config_load, from a string; name is used as the file name in errors. */
__attribute__((warn_unused_result)) int config_parse(const char *text, size_t len, const char *name,
                                                     struct config **out, struct config_error *err);

/*
 * Flags of config_load_flags and config_parse_flags.
 *
 * CONFIG_ALLOW_TLS: no effect any more ("tls" objects are always accepted
 * now that every socket kind speaks TLS); kept so callers need no change.
 */
#define CONFIG_ALLOW_TLS 1u

__attribute__((warn_unused_result)) int
config_load_flags(const char *path, unsigned flags, struct config **out, struct config_error *err);
__attribute__((warn_unused_result)) int config_parse_flags(const char *text, size_t len,
                                                           const char *name, unsigned flags,
                                                           struct config **out,
                                                           struct config_error *err);

/*
 * Calls warn(text, arg) once for each setting that weakens security and is
 * worth saying at every start and reload (today: a pool's "verify": false).
 * Returns how many there were.
 */
size_t config_tls_warnings(const struct config *cfg, void (*warn)(const char *text, void *arg),
                           void *arg);

/* Formats an error as "file:line:col: path: text" into buf. */
void config_error_format(const struct config_error *err, char *buf, size_t size);

struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Looks a pool up by name; returns its index or -1. */
int config_pool_index(const struct config *cfg, const char *name);

/* The effective config (defaults filled in) as JSON, with the key names of
 * the file; the admin token is replaced by "<redacted>" when redact is true.
 * Caller owns the result; NULL when out of memory. */
json_t *config_to_json(const struct config *cfg, bool redact);

/* One pool's effective settings, as in config_to_json's "pools" (a reverse
 * pool lists no dialling keys). Caller owns the result; NULL when out of
 * memory. */
json_t *config_pool_to_json(const struct config_pool *p);

/* Parses an address string as the config does ("host:port", "[v6]:port",
 * "unix:/path"). Returns 0 or UV_EINVAL with a reason in why. */
__attribute__((warn_unused_result)) int config_addr_parse(const char *text, struct config_addr *out,
                                                          const char **why);
void config_addr_free(struct config_addr *a);

const char *config_log_level_name(enum config_log_level l);

#endif
