/*
 * drpc-call: one DRPC call (or --repeat N calls on one connection) from the
 * command line, through peer_client, so its bytes are the Go client's.
 *
 *   drpc-call [--header] [--meta K=V]... [--stream unary|client|server|bidi]
 *             [--repeat N] [--hex] [--soft-cancel-after MS]
 *             [--hard-cancel-after MS] [--timeout MS] [--msg-file FILE]...
 *             ADDR RPC [MESSAGE...]
 *
 * Without --stream the shape follows the test service: ClientStream is a
 * client stream, ServerStream and Abort server streams, Bidi bidi, anything
 * else unary (one MESSAGE, empty if none). --msg-file adds a message read
 * from FILE (any bytes), before the MESSAGE arguments.
 *
 * Output: each reply message on its own line (raw, or hex with --hex); a
 * cancelled call prints "cancelled"; a DRPC error prints
 * "error code=N text=TEXT".
 * With TLS options (tests/peer/README.md) the call goes over TLS; stderr
 * then gets "drpc-call: tls VERSION RESUMED PEER_CN" once connected, and a
 * failed handshake is a connection failure with OpenSSL's reason.
 * --tls-session FILE offers the session saved there by an earlier run and
 * saves the newest one at the end.
 *
 * Exit status: 0 ok (or cancelled), 1 DRPC error, 2 usage, 3 connection
 * failed, lost or timed out (the reason goes to stderr).
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/buf.h"
#include "proxy/metadata.h"
#include "tests/peer/peer_client.h"

#define NAME      "drpc-call"
#define MAX_FILES 64

enum exit_code {
    EXIT_OK = 0,
    EXIT_DRPC_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_TRANSPORT = 3,
};

static struct {
    struct peer_client client;
    uv_timer_t deadline; /* --hard-cancel-after or --timeout of the current call */
    struct peer_call call;
    struct peer_addr addr;
    const char *addr_text;
    uint64_t repeat, done_calls;
    uint64_t hard_cancel_ms, timeout_ms;
    bool hex;
    int status;
    struct peer_tls_ctx *tls;
} cli;

static void usage(FILE *f)
{
    fprintf(f, "usage: " NAME " [--header] [--meta K=V]... [--stream unary|client|server|bidi]\n"
               "                 [--repeat N] [--hex] [--soft-cancel-after MS]\n"
               "                 [--hard-cancel-after MS] [--timeout MS] [--msg-file FILE]...\n"
               "                 ADDR RPC [MESSAGE...]\n" PEER_TLS_USAGE);
}

static void print_line(const uint8_t *p, size_t n)
{
    if (cli.hex) {
        for (size_t i = 0; i < n; i++)
            printf("%02x", p[i]);
    } else if (n > 0) {
        fwrite(p, 1, n, stdout);
    }
    putchar('\n');
}

static void on_message(struct peer_client *cl, const uint8_t *data, size_t len)
{
    (void)cl;
    print_line(data, len);
}

static void finish_all(int status)
{
    cli.status = status;
    uv_timer_stop(&cli.deadline);
    peer_client_close(&cli.client);
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    if (cli.hard_cancel_ms) {
        /* the Go client's default cancel: no packet, the socket goes */
        printf("cancelled\n");
        finish_all(EXIT_OK);
        return;
    }
    fprintf(stderr, NAME ": timed out after %" PRIu64 " ms\n", cli.timeout_ms);
    finish_all(EXIT_TRANSPORT);
}

static void start_call(void)
{
    int rc = peer_client_call(&cli.client, &cli.call);
    if (rc) {
        fprintf(stderr, NAME ": call: %s\n", uv_strerror(rc));
        finish_all(EXIT_TRANSPORT);
        return;
    }
    uint64_t ms = cli.hard_cancel_ms ? cli.hard_cancel_ms : cli.timeout_ms;
    if (ms)
        uv_timer_start(&cli.deadline, on_deadline, ms, 0);
}

static void on_done(struct peer_client *cl, const struct peer_call_result *r)
{
    (void)cl;
    uv_timer_stop(&cli.deadline);
    cli.done_calls++;
    switch (r->status) {
    case PEER_CALL_OK:
        break;
    case PEER_CALL_CANCELLED:
        printf("cancelled\n");
        break;
    case PEER_CALL_ERROR:
        printf("error code=%" PRIu64 " text=", r->code);
        if (r->text_len > 0)
            fwrite(r->text, 1, r->text_len, stdout);
        putchar('\n');
        finish_all(EXIT_DRPC_ERROR);
        return;
    case PEER_CALL_CLOSED:
    case PEER_CALL_LOST:
        fprintf(stderr, NAME ": %s: %s\n", peer_client_status_name(r->status), r->why);
        finish_all(EXIT_TRANSPORT);
        return;
    }
    if (cli.done_calls < cli.repeat)
        start_call();
    else
        finish_all(EXIT_OK);
}

static void on_closed(struct peer_client *cl)
{
    (void)cl;
    uv_close((uv_handle_t *)&cli.deadline, NULL);
}

static void on_connect(struct peer_client *cl, int status)
{
    if (status < 0) {
        fprintf(stderr, NAME ": connect %s: %s\n", cli.addr_text,
                peer_conn_strerror(&cl->conn, status));
        finish_all(EXIT_TRANSPORT);
        return;
    }
    if (cli.tls) {
        char info[256];
        peer_conn_tls_describe(&cl->conn, info, sizeof(info));
        fprintf(stderr, NAME ": tls %s\n", info);
    }
    start_call();
}

static enum peer_call_shape default_shape(const char *rpc)
{
    if (strcmp(rpc, "/test.Echo/ClientStream") == 0)
        return PEER_CALL_CLIENT_STREAM;
    if (strcmp(rpc, "/test.Echo/ServerStream") == 0 || strcmp(rpc, "/test.Echo/Abort") == 0)
        return PEER_CALL_SERVER_STREAM;
    if (strcmp(rpc, "/test.Echo/Bidi") == 0)
        return PEER_CALL_BIDI;
    return PEER_CALL_UNARY;
}

/* Reads a whole file into b (owned by the caller). */
static int read_file(const char *path, struct buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, NAME ": %s: cannot open\n", path);
        return -1;
    }
    int rc = 0;
    for (;;) {
        if (buf_reserve(b, 65536) != 0) {
            rc = -1;
            break;
        }
        size_t n = fread(b->data + b->len, 1, b->cap - b->len, f);
        b->len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}

static void free_files(struct buf *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_free(&files[i]);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    *out = strtoull(s, &end, 10);
    return *end == '\0';
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"header", no_argument, NULL, 'H'},
        {"meta", required_argument, NULL, 'm'},
        {"stream", required_argument, NULL, 's'},
        {"repeat", required_argument, NULL, 'r'},
        {"hex", no_argument, NULL, 'x'},
        {"soft-cancel-after", required_argument, NULL, 'c'},
        {"hard-cancel-after", required_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'},
        {"msg-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        PEER_TLS_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct metadata md = {0};
    struct buf files[MAX_FILES] = {{0}};
    size_t n_files = 0;
    struct peer_msg *msgs = NULL;
    bool header = false, shape_given = false;
    struct peer_tls_opts tls = {0};
    int o;
    cli.repeat = 1;
    cli.timeout_ms = 60000;
    while ((o = getopt_long(argc, argv, "Hm:s:r:xc:k:t:f:h", opts, NULL)) != -1) {
        bool ok = true;
        switch (o) {
        case 'H':
            header = true;
            break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            ok = eq != NULL;
            if (ok) {
                *eq = '\0';
                ok = metadata_set(&md, optarg, eq + 1) == 0;
            }
            break;
        }
        case 's':
            shape_given = true;
            if (strcmp(optarg, "unary") == 0)
                cli.call.shape = PEER_CALL_UNARY;
            else if (strcmp(optarg, "client") == 0)
                cli.call.shape = PEER_CALL_CLIENT_STREAM;
            else if (strcmp(optarg, "server") == 0)
                cli.call.shape = PEER_CALL_SERVER_STREAM;
            else if (strcmp(optarg, "bidi") == 0)
                cli.call.shape = PEER_CALL_BIDI;
            else
                ok = false;
            break;
        case 'r':
            ok = parse_u64(optarg, &cli.repeat) && cli.repeat > 0;
            break;
        case 'x':
            cli.hex = true;
            break;
        case 'c':
            ok = parse_u64(optarg, &cli.call.cancel_after_ms) && cli.call.cancel_after_ms > 0;
            break;
        case 'k':
            ok = parse_u64(optarg, &cli.hard_cancel_ms) && cli.hard_cancel_ms > 0;
            break;
        case 't':
            ok = parse_u64(optarg, &cli.timeout_ms);
            break;
        case 'f':
            ok = n_files < MAX_FILES && read_file(optarg, &files[n_files++]) == 0;
            break;
        case 'h':
            usage(stdout);
            goto out;
        default:
            ok = peer_tls_opt_parse(&tls, o, optarg) == 1;
        }
        if (!ok) {
            usage(stderr);
            cli.status = EXIT_USAGE;
            goto out;
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        cli.status = EXIT_USAGE;
        goto out;
    }
    cli.addr_text = argv[optind];
    cli.call.rpc = argv[optind + 1];
    if (!shape_given)
        cli.call.shape = default_shape(cli.call.rpc);
    size_t n_args = (size_t)(argc - optind - 2), n_msgs = n_files + n_args;
    if ((cli.call.shape == PEER_CALL_UNARY || cli.call.shape == PEER_CALL_SERVER_STREAM) &&
        n_msgs > 1) {
        fprintf(stderr, NAME ": this call shape takes one MESSAGE\n");
        cli.status = EXIT_USAGE;
        goto out;
    }
    if (peer_addr_parse(cli.addr_text, &cli.addr) != 0) {
        fprintf(stderr, NAME ": bad address %s\n", cli.addr_text);
        cli.status = EXIT_USAGE;
        goto out;
    }
    if (peer_tls_opts_wanted(&tls, false)) {
        char err[PEER_TLS_ERROR_MAX];
        cli.tls = peer_tls_ctx_new(&tls, false, err, sizeof(err));
        if (!cli.tls) {
            fprintf(stderr, NAME ": %s\n", err);
            cli.status = EXIT_USAGE;
            goto out;
        }
    }
    msgs = calloc(n_msgs ? n_msgs : 1, sizeof(*msgs));
    if (!msgs) {
        cli.status = EXIT_TRANSPORT;
        goto out;
    }
    for (size_t i = 0; i < n_files; i++)
        msgs[i] = (struct peer_msg){files[i].data, files[i].len};
    for (size_t i = 0; i < n_args; i++) {
        const char *a = argv[optind + 2 + (int)i];
        msgs[n_files + i] = (struct peer_msg){a, strlen(a)};
    }
    cli.call.msgs = msgs;
    cli.call.n_msgs = n_msgs;
    cli.call.md = &md;

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    uv_timer_init(loop, &cli.deadline);
    int rc = peer_client_init(&cli.client, loop, cli.addr.kind, header, on_done, on_closed);
    if (rc == 0) {
        cli.client.on_message = on_message;
        peer_conn_set_tls(&cli.client.conn, cli.tls);
        rc = peer_client_connect(&cli.client, &cli.addr, on_connect);
        if (rc) {
            fprintf(stderr, NAME ": connect %s: %s\n", cli.addr_text, uv_strerror(rc));
            finish_all(EXIT_TRANSPORT);
        }
    } else {
        fprintf(stderr, NAME ": %s\n", uv_strerror(rc));
        cli.status = EXIT_TRANSPORT;
        uv_close((uv_handle_t *)&cli.deadline, NULL);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    fflush(stdout);
    if (uv_loop_close(loop) != 0)
        fprintf(stderr, NAME ": loop not closed cleanly\n");
out:
    peer_tls_ctx_save_session(cli.tls);
    peer_tls_ctx_free(cli.tls);
    free(msgs);
    free_files(files, n_files);
    metadata_free(&md);
    return cli.status;
}
