/*
 * peer_server: serves the test service (peer_service) on connections it
 * accepts on its listeners, or dials itself (agent mode), with the stream
 * rules of drpcmanager, the upstream Go server's connection manager:
 *
 *   - one stream at a time; packets of the current stream go to it, packets
 *     of an older stream are ignored;
 *   - an Invoke (or InvokeMetadata) of a newer stream cancels the current
 *     one if it is unfinished; InvokeMetadata is kept and applied to the
 *     Invoke with the same stream id;
 *   - an Invoke on the current stream is a protocol error;
 *   - a soft Cancel (control bit) ends the current stream, with no reply;
 *   - reader violations (peer_reader) close the connection.
 *
 * Each connection logs "NAME: conn N open ..." and "NAME: conn N closed
 * (reason) ..." to stderr; N counts 1, 2, 3... per process over every
 * listener and dial.
 */
#ifndef SIDECAR_PEER_SERVER_H
#define SIDECAR_PEER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/list.h"
#include "tests/peer/peer_addr.h"
#include "tests/peer/peer_tls.h"

enum peer_server_state {
    PEER_SERVER_RUNNING,  /* accepting and serving */
    PEER_SERVER_STOPPING, /* listeners and connections are closing */
};

/* Called once a dialled connection is gone (failed dial or closed). */
typedef void (*peer_server_end_cb)(void *arg);

struct peer_server {
    uv_loop_t *loop;
    const char *name;  /* log prefix, e.g. "drpc-testd" */
    bool header;       /* accepted conns must start with DRPC!!!1; dialled ones send it */
    const char *ident; /* the /test.Echo/Identify answer, or NULL */
    struct peer_tls_ctx *tls_accept; /* TLS server side of accepted conns, or NULL */
    struct peer_tls_ctx *tls_dial;   /* TLS client side of dialled conns, or NULL */
    enum peer_server_state state;
    uint64_t next_conn_id;
    struct list_node listeners; /* struct peer_listener */
    struct list_node conns;     /* every connection not yet freed */
};

void peer_server_init(struct peer_server *srv, uv_loop_t *loop, const char *name, bool header,
                      const char *ident);

/* TLS for the conns accepted from now on and for those dialled (either may
 * be NULL: plaintext). The contexts outlive the server. */
void peer_server_set_tls(struct peer_server *srv, struct peer_tls_ctx *accept,
                         struct peer_tls_ctx *dial);

/*
 * Listens on addr ("HOST:PORT", "[V6]:PORT", "unix:/path"); port 0 picks a
 * free port. Writes the address actually bound (the form the tools print)
 * into bound (PEER_ADDR_TEXT_MAX bytes). Returns 0 or a UV_E* code.
 */
__attribute__((warn_unused_result)) int
peer_server_listen(struct peer_server *srv, const char *addr, char *bound, size_t len);

/*
 * Dials addr and serves the test service on that connection (agent mode).
 * Returns an error (on_end will not be called) or 0; on_end(arg) runs once
 * the connection attempt or the connection is over.
 */
__attribute__((warn_unused_result)) int peer_server_dial(struct peer_server *srv,
                                                         const struct peer_addr *addr,
                                                         peer_server_end_cb on_end, void *arg);

/* Closes every listener and connection; the loop then runs dry. */
void peer_server_stop(struct peer_server *srv);

#endif
