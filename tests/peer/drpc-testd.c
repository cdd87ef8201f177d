/*
 * drpc-testd: the DRPC test service (/test.Echo/...) in C on libuv.
 *
 *   drpc-testd --listen ADDR [--listen ADDR]... [--header] [--id NAME]
 *   drpc-testd [--agent] --connect ADDR [--conns N] [--redial] [--header] [--id NAME]
 *
 * ADDR is HOST:PORT, [V6]:PORT or unix:/path; port 0 picks a free port.
 * Server mode prints "drpc-testd listening on ADDR" (the bound address) per
 * listener, in --listen order, on stdout, flushed, once every listener is up. Agent mode dials
 * ADDR N times and serves the same service on those connections. Both can
 * run in one process. Connections are logged on stderr. SIGTERM or SIGINT
 * closes everything and exits 0 once the loop is empty.
 *
 * TLS (tests/peer/README.md): with --tls-cert/--tls-key the listeners speak
 * TLS (--tls-client-ca: client certificates required); agent connections
 * are TLS clients when any client-side TLS option is given. Each
 * connection's handshake failure is its close reason on stderr, and
 * /test.Echo/TLSInfo answers "VERSION RESUMED PEER_CN".
 *
 * Exit status: 0 after a signal, 1 if the loop could not be closed cleanly,
 * 2 for bad arguments or a listener that cannot be opened.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "tests/peer/peer_agent.h"
#include "tests/peer/peer_server.h"

#define NAME          "drpc-testd"
#define MAX_LISTENERS 16

static struct peer_server server;
static struct peer_agent agent;
static struct peer_tls_ctx *tls_accept, *tls_dial;
static bool agent_started;
static uv_signal_t sig_term, sig_int;

static void usage(FILE *f)
{
    fprintf(f, "usage: " NAME " --listen ADDR [--listen ADDR]... [--header] [--id NAME]\n"
               "       " NAME " [--agent] --connect ADDR [--conns N] [--redial] [--header] "
               "[--id NAME]\n"
               "ADDR: HOST:PORT, [V6]:PORT or unix:/path (port 0: any free port)\n" PEER_TLS_USAGE);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    fprintf(stderr, NAME ": %s: shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    if (agent_started)
        peer_agent_stop(&agent);
    peer_server_stop(&server);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"connect", required_argument, NULL, 'c'},
        {"conns", required_argument, NULL, 'n'},
        {"redial", no_argument, NULL, 'r'},
        {"agent", no_argument, NULL, 'a'},
        {"header", no_argument, NULL, 'H'},
        {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        PEER_TLS_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *listen_addrs[MAX_LISTENERS];
    int n_listen = 0, conns = 1, opt;
    const char *connect_to = NULL, *ident = NULL;
    bool header = false, redial = false, agent_mode = false;
    struct peer_tls_opts tls = {0};
    char *end;

    while ((opt = getopt_long(argc, argv, "l:c:n:raHi:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (n_listen == MAX_LISTENERS) {
                fprintf(stderr, NAME ": at most %d listeners\n", MAX_LISTENERS);
                return 2;
            }
            listen_addrs[n_listen++] = optarg;
            break;
        case 'c':
            connect_to = optarg;
            break;
        case 'n':
            conns = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || conns < 1 || conns > 100000) {
                fprintf(stderr, NAME ": --conns wants 1..100000\n");
                return 2;
            }
            break;
        case 'r':
            redial = true;
            break;
        case 'a':
            agent_mode = true;
            break;
        case 'H':
            header = true;
            break;
        case 'i':
            ident = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (peer_tls_opt_parse(&tls, opt, optarg) == 1)
                break;
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (n_listen == 0 && !connect_to) || (agent_mode && !connect_to)) {
        usage(stderr);
        return 2;
    }
    struct peer_addr dial_addr;
    if (connect_to && peer_addr_parse(connect_to, &dial_addr) != 0) {
        fprintf(stderr, NAME ": bad address %s\n", connect_to);
        return 2;
    }

    char err[PEER_TLS_ERROR_MAX];
    if (n_listen > 0 && peer_tls_opts_wanted(&tls, true) &&
        !(tls_accept = peer_tls_ctx_new(&tls, true, err, sizeof(err)))) {
        fprintf(stderr, NAME ": %s\n", err);
        return 2;
    }
    if (connect_to && peer_tls_opts_wanted(&tls, false) &&
        !(tls_dial = peer_tls_ctx_new(&tls, false, err, sizeof(err)))) {
        fprintf(stderr, NAME ": %s\n", err);
        peer_tls_ctx_free(tls_accept);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    peer_server_init(&server, loop, NAME, header, ident);
    peer_server_set_tls(&server, tls_accept, tls_dial);
    /* Signals first: a test may stop us the moment it sees the first line. */
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);

    /* Every listener is up before the first line: a reader of the lines
     * never sees an address of a process that then gives up. */
    int status = 0;
    static char bound[MAX_LISTENERS][PEER_ADDR_TEXT_MAX];
    for (int i = 0; i < n_listen && status == 0; i++) {
        int rc = peer_server_listen(&server, listen_addrs[i], bound[i], sizeof(bound[i]));
        if (rc) {
            fprintf(stderr, NAME ": listen %s: %s\n", listen_addrs[i], uv_strerror(rc));
            status = 2;
        }
    }
    for (int i = 0; i < n_listen && status == 0; i++)
        printf(NAME " listening on %s\n", bound[i]);
    fflush(stdout);
    if (status == 0 && connect_to) {
        if (peer_agent_start(&agent, &server, &dial_addr, conns, redial) == 0)
            agent_started = true;
    }
    if (status != 0) {
        /* close what was opened, then let the loop finish the closes */
        uv_close((uv_handle_t *)&sig_term, NULL);
        uv_close((uv_handle_t *)&sig_int, NULL);
        peer_server_stop(&server);
    }

    uv_run(loop, UV_RUN_DEFAULT);
    peer_tls_ctx_free(tls_accept);
    peer_tls_ctx_free(tls_dial);
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        fprintf(stderr, NAME ": loop not closed cleanly: %s\n", uv_strerror(rc));
        return 1;
    }
    return status;
}
