/*
 * drpc-testd: the DRPC test service on TCP and unix sockets (server mode),
 * or dialling out as an agent for reverse pools (--connect).
 *
 *   drpc-testd --listen 127.0.0.1:8000 [--listen unix:/tmp/t.sock] [--header] [--id NAME]
 *   drpc-testd --connect 127.0.0.1:7000 [--conns N] [--redial] [--header] [--id NAME]
 *
 * Prints "drpc-testd listening on ADDR" per listener (port 0: the bound
 * one); exits cleanly on SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/handle.h"

#include "tests/peer/peer_addr.h"
#include "tests/peer/peer_server.h"

#define MAX_LISTENERS 8

static union stream_handle listeners[MAX_LISTENERS];
static int n_listeners;
static struct peer_server server;
static uv_signal_t sig_term, sig_int;
static uv_timer_t redial_timer;
static bool redial, stopping;
static struct sockaddr_storage connect_sa;
static const char *connect_unix;
static int want_conns;

static void on_connection(uv_stream_t *l, int status)
{
    if (status == 0)
        peer_server_accept(&server, l);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    stopping = true;
    for (int i = 0; i < n_listeners; i++)
        uv_close(&listeners[i].handle, NULL);
    uv_close((uv_handle_t *)&redial_timer, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    peer_server_close_all(&server);
}

static void dial_missing(uv_timer_t *t)
{
    (void)t;
    while (!stopping && (int)server.open_conns < want_conns)
        if (peer_server_dial(&server, (struct sockaddr *)&connect_sa, connect_unix) != 0)
            break;
}

static void on_conn_closed(struct peer_server *srv)
{
    (void)srv;
    if (redial && !stopping)
        uv_timer_start(&redial_timer, dial_missing, 100, 0);
}

static int listen_on(uv_loop_t *loop, const char *addr)
{
    struct sockaddr_storage sa;
    const char *path;
    if (n_listeners == MAX_LISTENERS || peer_addr_parse(addr, &sa, &path) != 0) {
        fprintf(stderr, "drpc-testd: bad address %s\n", addr);
        return -1;
    }
    int rc;
    if (path) {
        unlink(path);
        uv_pipe_init(loop, &listeners[n_listeners].pipe, 0);
        rc = uv_pipe_bind(&listeners[n_listeners].pipe, path);
    } else {
        uv_tcp_init(loop, &listeners[n_listeners].tcp);
        rc = uv_tcp_bind(&listeners[n_listeners].tcp, (struct sockaddr *)&sa, 0);
    }
    if (rc == 0)
        rc = uv_listen(&listeners[n_listeners].stream, 1024, on_connection);
    if (rc) {
        fprintf(stderr, "drpc-testd: listen %s: %s\n", addr, uv_strerror(rc));
        return -1;
    }
    if (path) {
        printf("drpc-testd listening on %s\n", addr);
    } else {
        struct sockaddr_storage bound;
        int len = sizeof(bound);
        uv_tcp_getsockname(&listeners[n_listeners].tcp, (struct sockaddr *)&bound, &len);
        char ip[64];
        if (bound.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof(ip));
            printf("drpc-testd listening on [%s]:%d\n", ip,
                   ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof(ip));
            printf("drpc-testd listening on %s:%d\n", ip,
                   ntohs(((struct sockaddr_in *)&bound)->sin_port));
        }
    }
    fflush(stdout);
    n_listeners++;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'}, {"connect", required_argument, NULL, 'c'},
        {"conns", required_argument, NULL, 'n'},  {"redial", no_argument, NULL, 'r'},
        {"header", no_argument, NULL, 'H'},       {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    uv_loop_t *loop = uv_default_loop();
    peer_server_init(&server, loop);
    const char *listen_addrs[MAX_LISTENERS];
    int n_listen = 0;
    const char *connect_to = NULL;
    want_conns = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "l:c:n:rHi:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (n_listen < MAX_LISTENERS)
                listen_addrs[n_listen++] = optarg;
            break;
        case 'c':
            connect_to = optarg;
            break;
        case 'n':
            want_conns = atoi(optarg);
            break;
        case 'r':
            redial = true;
            break;
        case 'H':
            server.header = true;
            break;
        case 'i':
            server.id = optarg;
            break;
        default:
            fprintf(stderr, "usage: drpc-testd --listen ADDR... | --connect ADDR [--conns N] "
                            "[--redial] [--header] [--id NAME]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (!n_listen && !connect_to) {
        fprintf(stderr, "drpc-testd: give --listen or --connect\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < n_listen; i++)
        if (listen_on(loop, listen_addrs[i]) != 0)
            return 1;
    uv_timer_init(loop, &redial_timer);
    if (connect_to) {
        if (peer_addr_parse(connect_to, &connect_sa, &connect_unix) != 0) {
            fprintf(stderr, "drpc-testd: bad address %s\n", connect_to);
            return 2;
        }
        server.on_closed = on_conn_closed;
        dial_missing(NULL);
    }
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
