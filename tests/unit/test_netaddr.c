/*
 * Unit tests for proxy/netaddr.c, the one bind helper (listeners, agent
 * ports, admin) and the one peer-name formatter: addresses of each family,
 * real binds on loopback (with and without SO_REUSEPORT), the error texts
 * an operator sees, and the peer name of a really accepted connection.
 * Each loop test ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "config/config.h"
#include "proxy/netaddr.h"

static void test_format(void **state)
{
    (void)state;
    char out[64];
    struct sockaddr_in v4;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 7, &v4), 0);
    netaddr_format((const struct sockaddr *)&v4, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:7");
    struct sockaddr_in6 v6;
    assert_int_equal(uv_ip6_addr("::1", 65535, &v6), 0);
    netaddr_format((const struct sockaddr *)&v6, out, sizeof(out));
    assert_string_equal(out, "[::1]:65535");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    netaddr_format((const struct sockaddr *)&un, out, sizeof(out));
    assert_string_equal(out, "?");
    /* a short buffer is cut, never overrun */
    char small[6];
    netaddr_format((const struct sockaddr *)&v4, small, sizeof(small));
    assert_string_equal(small, "127.0");
}

static struct config_addr tcp_addr(char *host, uint16_t port, char *text)
{
    struct config_addr a = {.kind = CONFIG_ADDR_TCP, .text = text, .host = host, .port = port};
    return a;
}

static uint16_t bound_port(union stream_handle *h)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&h->tcp, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void test_bind_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    union stream_handle h;
    bool opened = true;
    char err[160] = "";

    struct config_addr name = tcp_addr("example.com", 1, "example.com:1");
    assert_int_equal(netaddr_bind(&loop, &name, false, "bind", &h, &opened, err, sizeof(err)),
                     UV_EINVAL);
    assert_false(opened);
    assert_string_equal(err, "bind example.com:1: host must be an IP address");

    struct config_addr un = {.kind = CONFIG_ADDR_UNIX,
                             .text = "unix:/nonexistent-dir/x.sock",
                             .path = "/nonexistent-dir/x.sock"};
    assert_int_equal(
        netaddr_bind(&loop, &un, false, "admin.address", &h, &opened, err, sizeof(err)), UV_ENOENT);
    assert_true(opened); /* the caller closes it */
    assert_string_equal(err, "admin.address /nonexistent-dir/x.sock: no such file or directory");
    uv_close(&h.handle, NULL);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bind_reuse_port(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    union stream_handle a, b, c;
    bool opened;
    char err[160] = "";

    struct config_addr any = tcp_addr("localhost", 0, "localhost:0");
    assert_int_equal(netaddr_bind(&loop, &any, true, "bind", &a, &opened, err, sizeof(err)), 0);
    assert_true(opened);
    assert_int_equal(uv_listen(&a.stream, 8, NULL), 0);
    uint16_t port = bound_port(&a);
    char text[32];
    snprintf(text, sizeof(text), "127.0.0.1:%u", port);
    struct config_addr same = tcp_addr("127.0.0.1", port, text);

    /* SO_REUSEPORT on both: a second process can bind the port */
    assert_int_equal(netaddr_bind(&loop, &same, true, "bind", &b, &opened, err, sizeof(err)), 0);
    assert_int_equal(uv_listen(&b.stream, 8, NULL), 0);
    /* without it, the port is taken (libuv reports it at listen) */
    int rc = netaddr_bind(&loop, &same, false, "bind", &c, &opened, err, sizeof(err));
    assert_true(opened);
    if (rc == 0)
        rc = uv_listen(&c.stream, 8, NULL);
    assert_int_equal(rc, UV_EADDRINUSE);

    uv_close(&a.handle, NULL);
    uv_close(&b.handle, NULL);
    uv_close(&c.handle, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

struct peer_test {
    union stream_handle server;
    uv_tcp_t accepted;
    uv_tcp_t client;
    uv_connect_t connect_req;
    char seen[64]; /* netaddr_peer_name of the accepted connection */
    int connected;
};

static void on_connection(uv_stream_t *server, int status)
{
    struct peer_test *t = server->data;
    assert_int_equal(status, 0);
    assert_int_equal(uv_tcp_init(server->loop, &t->accepted), 0);
    assert_int_equal(uv_accept(server, (uv_stream_t *)&t->accepted), 0);
    netaddr_peer_name(&t->accepted, t->seen, sizeof(t->seen));
    uv_close((uv_handle_t *)&t->accepted, NULL);
    uv_close(&t->server.handle, NULL);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct peer_test *t = req->data;
    assert_int_equal(status, 0);
    t->connected++;
}

static void test_peer_name_of_accepted(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct peer_test t;
    memset(&t, 0, sizeof(t));
    bool opened;
    char err[160];
    struct config_addr any = tcp_addr("127.0.0.1", 0, "127.0.0.1:0");
    assert_int_equal(netaddr_bind(&loop, &any, false, "bind", &t.server, &opened, err, sizeof(err)),
                     0);
    t.server.handle.data = &t;
    assert_int_equal(uv_listen(&t.server.stream, 8, on_connection), 0);

    struct sockaddr_in to;
    assert_int_equal(uv_ip4_addr("127.0.0.1", bound_port(&t.server), &to), 0);
    assert_int_equal(uv_tcp_init(&loop, &t.client), 0);
    t.connect_req.data = &t;
    assert_int_equal(
        uv_tcp_connect(&t.connect_req, &t.client, (const struct sockaddr *)&to, on_connect), 0);
    /* runs until both sides are done: on_connection closes the server */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.connected, 1);

    /* the server's view of the peer is the client's own address */
    struct sockaddr_storage mine;
    int len = sizeof(mine);
    assert_int_equal(uv_tcp_getsockname(&t.client, (struct sockaddr *)&mine, &len), 0);
    char want[64];
    netaddr_format((const struct sockaddr *)&mine, want, sizeof(want));
    assert_string_equal(t.seen, want);
    assert_non_null(strstr(t.seen, "127.0.0.1:"));

    /* a handle whose peer is unknown (never connected) names it "?" */
    char unknown[64];
    uv_tcp_t lone;
    assert_int_equal(uv_tcp_init(&loop, &lone), 0);
    netaddr_peer_name(&lone, unknown, sizeof(unknown));
    assert_string_equal(unknown, "?");
    uv_close((uv_handle_t *)&lone, NULL);

    uv_close((uv_handle_t *)&t.client, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_bind_errors),
        cmocka_unit_test(test_bind_reuse_port),
        cmocka_unit_test(test_peer_name_of_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
