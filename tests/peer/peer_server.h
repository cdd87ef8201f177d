/*
 * peer_server: the DRPC test service in C on libuv, for benchmarks and as a
 * second independent server next to the Python one. It answers like the
 * upstream Go server: Message(s) then CloseSend, or a single Error; a new
 * Invoke or a Cancel/Close ends the stream in progress; late packets of
 * older streams are ignored.
 */
#ifndef SIDECAR_PEER_SERVER_H
#define SIDECAR_PEER_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/list.h"

struct peer_server;
typedef void (*peer_server_closed_cb)(struct peer_server *srv);

struct peer_server {
    uv_loop_t *loop;
    bool header;    /* expect the DRPC!!!1 prefix */
    const char *id; /* /test.Echo/Identify answer */
    uint64_t next_conn_id;
    uint32_t open_conns;
    peer_server_closed_cb on_closed; /* a connection ended (agents re-dial) */
    struct list_node conns;          /* every open connection */
};

/* Accepts a pending connection on a listening handle and serves it. */
void peer_server_accept(struct peer_server *srv, uv_stream_t *listener);

/* Initialises srv (zeroed by the caller) for loop. */
void peer_server_init(struct peer_server *srv, uv_loop_t *loop);

/* Closes every connection (SIGTERM). */
void peer_server_close_all(struct peer_server *srv);

/* Agent mode: dials out and serves the test service on that connection.
 * unix_path selects a unix socket (sa is then ignored). */
int peer_server_dial(struct peer_server *srv, const struct sockaddr *sa, const char *unix_path);

#endif
