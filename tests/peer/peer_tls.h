/*
 * peer_tls: TLS for the test peer, OpenSSL driven through memory BIOs so
 * that nothing blocks the loop. peer_conn owns one struct peer_tls per TLS
 * connection and moves bytes:
 *
 *   socket --ciphertext--> peer_tls_feed() --> rbio --SSL--> plaintext `in`
 *   plaintext `out` --peer_tls_write()--> SSL --> wbio --peer_tls_output()--> socket
 *
 * A context (struct peer_tls_ctx) holds what every connection of one tool
 * shares: certificates, CAs, versions and, on the client side, the newest
 * session, offered again by the next dial unless resumption is off. The
 * server side keeps a session cache and issues tickets (OpenSSL's
 * defaults), so both resumption styles work.
 *
 * Errors are texts like the sidecar's: "tls: certificate verify failed:
 * unable to get local issuer certificate".
 */
#ifndef SIDECAR_PEER_TLS_H
#define SIDECAR_PEER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/buf.h"

#define PEER_TLS_ERROR_MAX 256

/* The command-line knobs every tool shares (see tests/peer/README.md). */
struct peer_tls_opts {
    const char *cert, *key;  /* own certificate (server: required; client: mTLS) */
    const char *ca;          /* client: CAs that verify the server */
    const char *client_ca;   /* server: require client certificates from these CAs */
    const char *server_name; /* client: SNI and the name verified (default: the IP) */
    const char *session;     /* client: load / save the session here (drpc-call) */
    int min_version;         /* TLS1_2_VERSION..., 0: OpenSSL's default */
    int max_version;
    bool no_verify; /* client: encrypt without verifying */
    bool no_resume; /* client: never offer a session; server: never resume one */
};

/* getopt_long codes of the shared options (above any short option). */
enum peer_tls_opt {
    PEER_TLS_OPT_CERT = 0x1000,
    PEER_TLS_OPT_KEY,
    PEER_TLS_OPT_CA,
    PEER_TLS_OPT_CLIENT_CA,
    PEER_TLS_OPT_SERVER_NAME,
    PEER_TLS_OPT_MIN,
    PEER_TLS_OPT_MAX,
    PEER_TLS_OPT_NO_VERIFY,
    PEER_TLS_OPT_NO_RESUME,
    PEER_TLS_OPT_SESSION,
};

/* Entries for a struct option table. */
#define PEER_TLS_LONG_OPTIONS                                                                      \
    {"tls-cert", required_argument, NULL, PEER_TLS_OPT_CERT},                                      \
        {"tls-key", required_argument, NULL, PEER_TLS_OPT_KEY},                                    \
        {"tls-ca", required_argument, NULL, PEER_TLS_OPT_CA},                                      \
        {"tls-client-ca", required_argument, NULL, PEER_TLS_OPT_CLIENT_CA},                        \
        {"tls-server-name", required_argument, NULL, PEER_TLS_OPT_SERVER_NAME},                    \
        {"tls-min", required_argument, NULL, PEER_TLS_OPT_MIN},                                    \
        {"tls-max", required_argument, NULL, PEER_TLS_OPT_MAX},                                    \
        {"tls-no-verify", no_argument, NULL, PEER_TLS_OPT_NO_VERIFY},                              \
        {"tls-no-resume", no_argument, NULL, PEER_TLS_OPT_NO_RESUME},                              \
    {                                                                                              \
        "tls-session", required_argument, NULL, PEER_TLS_OPT_SESSION                               \
    }

#define PEER_TLS_USAGE                                                                             \
    "TLS: [--tls-cert F --tls-key F] [--tls-ca F] [--tls-client-ca F] [--tls-server-name N]\n"     \
    "     [--tls-min 1.0|1.1|1.2|1.3] [--tls-max V] [--tls-no-verify] [--tls-no-resume]\n"         \
    "     [--tls-session FILE]\n"

/*
 * Takes getopt code o with argument arg into *opts. Returns 1 if o is one
 * of the TLS options and was valid, -1 if it was one and invalid, 0 if it
 * is not a TLS option.
 */
int peer_tls_opt_parse(struct peer_tls_opts *opts, int o, const char *arg);

/* True when the options ask for TLS at all. */
bool peer_tls_opts_wanted(const struct peer_tls_opts *opts, bool server);

struct peer_tls_ctx;
struct peer_tls;

/* Builds a context for the client or the server side. On error returns
 * NULL with the reason in err. */
struct peer_tls_ctx *peer_tls_ctx_new(const struct peer_tls_opts *opts, bool server, char *err,
                                      size_t len);

/* Writes the newest client session to opts->session, if both exist. */
void peer_tls_ctx_save_session(const struct peer_tls_ctx *ctx);

/* Handshakes done and resumed ones (client side), for drpc-bench. */
void peer_tls_ctx_counts(const struct peer_tls_ctx *ctx, uint64_t *handshakes, uint64_t *resumed);

void peer_tls_ctx_free(struct peer_tls_ctx *ctx);

/* A connection of ctx. peer (client side) is the dialled address, whose IP
 * is verified when no server name is set. NULL when out of memory. */
struct peer_tls *peer_tls_new(struct peer_tls_ctx *ctx, const struct sockaddr *peer);

void peer_tls_free(struct peer_tls *t);

enum peer_tls_result {
    PEER_TLS_OK,    /* go on */
    PEER_TLS_EOF,   /* the peer sent close_notify */
    PEER_TLS_ERROR, /* handshake or record failure; see peer_tls_error() */
};

/*
 * Feeds ciphertext from the socket, advances the handshake and appends any
 * plaintext to in. Afterwards peer_tls_output() may hold bytes to send
 * (handshake messages, alerts, tickets) even on PEER_TLS_ERROR.
 */
enum peer_tls_result peer_tls_feed(struct peer_tls *t, const void *data, size_t len,
                                   struct buf *in);

/* Starts a client handshake (its ClientHello lands in the output). */
enum peer_tls_result peer_tls_start(struct peer_tls *t);

/* True once the handshake completed. */
bool peer_tls_ready(const struct peer_tls *t);

/* Encrypts plaintext (only once ready). Returns 0 or UV_ENOMEM / UV_EPROTO. */
int peer_tls_write(struct peer_tls *t, const void *data, size_t len);

/* Sends close_notify (into the output). */
void peer_tls_close_notify(struct peer_tls *t);

/* Moves every pending ciphertext byte to the end of out. 0 or UV_ENOMEM. */
int peer_tls_output(struct peer_tls *t, struct buf *out);

/* The reason of the last PEER_TLS_ERROR ("tls: ..."). */
const char *peer_tls_error(const struct peer_tls *t);

/* "VERSION RESUMED PEER_CN" of the session, e.g. "TLSv1.3 1 agent-1";
 * RESUMED is 0 or 1, PEER_CN "-" without a peer certificate. */
void peer_tls_describe(const struct peer_tls *t, char *out, size_t len);

#endif
