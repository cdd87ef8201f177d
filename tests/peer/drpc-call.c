/*
 * drpc-call: make one DRPC call (or --repeat N on one connection) from the
 * command line, behaving like the Go client on the wire: a unary call
 * writes [InvokeMetadata] Invoke Message CloseSend in one write, reads the
 * reply, then sends Close without waiting for the server's CloseSend.
 *
 *   drpc-call [--header] [--meta k=v]... [--stream client|server|bidi]
 *             [--repeat N] [--hex] [--soft-cancel-after MS] ADDR RPC [MESSAGE...]
 *
 * Prints each reply message on its own line; an Error prints
 * "error code=N text=..." and exits 1. Blocking sockets: it is a CLI.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/buf.h"
#include "proxy/frame.h"
#include "proxy/metadata.h"
#include "tests/peer/peer_addr.h"

enum call_shape {
    SHAPE_UNARY,
    SHAPE_CLIENT,
    SHAPE_SERVER,
    SHAPE_BIDI,
};

static int fd = -1;
static struct buf in;
static bool hex;

static int dial(const char *addr)
{
    struct sockaddr_storage sa;
    const char *path;
    if (peer_addr_parse(addr, &sa, &path) != 0)
        return -1;
    if (path) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        return connect(fd, (struct sockaddr *)&un, sizeof(un));
    }
    fd = socket(sa.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return connect(fd, (struct sockaddr *)&sa,
                   sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in));
}

static int send_all(struct buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    buf_reset(b);
    return 0;
}

/* Next frame, or -1 on EOF/error/timeout (timeout_ms < 0: wait forever). */
static int read_frame(struct frame *f, size_t *used, int timeout_ms)
{
    for (;;) {
        enum frame_result r = frame_parse(in.data, in.len, 16u << 20, f, used);
        if (r == FRAME_OK)
            return 0;
        if (r < 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            return -1;
        if (buf_reserve(&in, 65536) != 0)
            return -1;
        ssize_t n = recv(fd, in.data + in.len, in.cap - in.len, 0);
        if (n <= 0)
            return -1;
        in.len += (size_t)n;
    }
}

static void print_msg(const uint8_t *p, size_t n)
{
    if (hex) {
        for (size_t i = 0; i < n; i++)
            printf("%02x", p[i]);
    } else {
        fwrite(p, 1, n, stdout);
    }
    putchar('\n');
}

/* Reads replies of stream sid; returns 0 on success, 1 on an Error packet, -1 on loss. */
static int read_replies(uint64_t sid, enum call_shape shape, int want_msgs)
{
    struct buf msg = {0};
    int got = 0;
    for (;;) {
        struct frame f;
        size_t used;
        if (read_frame(&f, &used, 30000) != 0) {
            fprintf(stderr, "drpc-call: connection lost\n");
            buf_free(&msg);
            return -1;
        }
        if (f.stream_id == sid && !f.control) {
            if (f.kind == FRAME_KIND_MESSAGE) {
                if (buf_append(&msg, f.data, f.len) != 0)
                    return -1;
                if (f.done) {
                    print_msg(msg.data, msg.len);
                    buf_reset(&msg);
                    got++;
                    if (shape == SHAPE_UNARY || shape == SHAPE_CLIENT ||
                        (shape == SHAPE_BIDI && got == want_msgs)) {
                        buf_consume(&in, used);
                        buf_free(&msg);
                        return 0;
                    }
                }
            } else if (f.kind == FRAME_KIND_ERROR) {
                uint64_t code;
                const uint8_t *text;
                size_t len;
                frame_error_decode(f.data, f.len, &code, &text, &len);
                printf("error code=%llu text=%.*s\n", (unsigned long long)code, (int)len,
                       (const char *)text);
                buf_consume(&in, used);
                buf_free(&msg);
                return 1;
            } else if (f.kind == FRAME_KIND_CLOSE_SEND || f.kind == FRAME_KIND_CLOSE) {
                buf_consume(&in, used);
                buf_free(&msg);
                return 0;
            }
        }
        buf_consume(&in, used);
    }
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
        {NULL, 0, NULL, 0},
    };
    bool header = false;
    struct metadata md = {0};
    enum call_shape shape = SHAPE_UNARY;
    int repeat = 1, cancel_after = -1, o;
    while ((o = getopt_long(argc, argv, "Hm:s:r:xc:", opts, NULL)) != -1) {
        switch (o) {
        case 'H':
            header = true;
            break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            if (!eq)
                return 2;
            *eq = '\0';
            if (metadata_set(&md, optarg, eq + 1) != 0)
                return 1;
            break;
        }
        case 's':
            shape = strcmp(optarg, "client") == 0   ? SHAPE_CLIENT
                    : strcmp(optarg, "server") == 0 ? SHAPE_SERVER
                                                    : SHAPE_BIDI;
            break;
        case 'r':
            repeat = atoi(optarg);
            break;
        case 'x':
            hex = true;
            break;
        case 'c':
            cancel_after = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: drpc-call [--header] [--meta k=v]... [--stream "
                            "client|server|bidi] [--repeat N] [--hex] [--soft-cancel-after MS] "
                            "ADDR RPC [MESSAGE...]\n");
            return 2;
        }
    }
    if (argc - optind < 2) {
        fprintf(stderr, "drpc-call: ADDR and RPC are required\n");
        return 2;
    }
    const char *addr = argv[optind], *rpc = argv[optind + 1];
    char **msgs = argv + optind + 2;
    int n_msgs = argc - optind - 2;
    if (dial(addr) != 0) {
        fprintf(stderr, "drpc-call: connect %s: %s\n", addr, strerror(errno));
        return 1;
    }
    struct buf out = {0};
    if (header && buf_append(&out, DRPC_HEADER, DRPC_HEADER_LEN) != 0)
        return 1;
    int status = 0;
    for (uint64_t sid = 1; sid <= (uint64_t)repeat && status == 0; sid++) {
        uint64_t mid = 0;
        int rc = 0;
        if (md.n) {
            struct buf m = {0};
            rc = metadata_encode(&md, &m) || frame_append_packet(&out, FRAME_KIND_INVOKE_METADATA,
                                                                 sid, ++mid, m.data, m.len, 65536);
            buf_free(&m);
        }
        rc = rc || frame_append(&out, FRAME_KIND_INVOKE, true, false, sid, ++mid, rpc, strlen(rpc));
        if (shape == SHAPE_BIDI) {
            /* one round trip per message, then CloseSend */
            for (int i = 0; i < n_msgs && status == 0; i++) {
                rc = rc || frame_append_packet(&out, FRAME_KIND_MESSAGE, sid, ++mid, msgs[i],
                                               strlen(msgs[i]), 65536);
                if (rc || send_all(&out) != 0)
                    return 1;
                status = read_replies(sid, shape, 1);
            }
            rc = rc || frame_append(&out, FRAME_KIND_CLOSE_SEND, true, false, sid, ++mid, NULL, 0);
            if (rc || send_all(&out) != 0)
                return 1;
            if (status == 0)
                status = read_replies(sid, SHAPE_SERVER, 0);
            continue;
        }
        int count = shape == SHAPE_CLIENT ? n_msgs : 1;
        for (int i = 0; i < count; i++) {
            const char *m = i < n_msgs ? msgs[i] : "";
            rc = rc ||
                 frame_append_packet(&out, FRAME_KIND_MESSAGE, sid, ++mid, m, strlen(m), 65536);
        }
        rc = rc || frame_append(&out, FRAME_KIND_CLOSE_SEND, true, false, sid, ++mid, NULL, 0);
        if (rc || send_all(&out) != 0)
            return 1;
        if (cancel_after >= 0) {
            struct frame f;
            size_t used;
            if (read_frame(&f, &used, cancel_after) == 0) {
                status = read_replies(sid, shape, 0);
                break;
            }
            /* soft cancel: control + done bits, as SoftCancel=true does */
            if (frame_append(&out, FRAME_KIND_CANCEL, true, true, sid, ++mid, NULL, 0) ||
                send_all(&out) != 0)
                return 1;
            printf("cancelled\n");
            continue;
        }
        status = read_replies(sid, shape, 0);
        if (status == 0 && shape != SHAPE_SERVER) {
            /* like the Go client: Close as soon as the reply is in */
            if (frame_append(&out, FRAME_KIND_CLOSE, true, false, sid, ++mid, NULL, 0) ||
                send_all(&out) != 0)
                return 1;
        }
    }
    close(fd);
    buf_free(&out);
    buf_free(&in);
    metadata_free(&md);
    return status == 0 ? 0 : 1;
}
