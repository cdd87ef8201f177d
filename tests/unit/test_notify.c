/*
 * Unit tests for systemd readiness (proxy/notify.c): a unix datagram
 * socket stands in for systemd, bound at a path in a temp dir or in the
 * abstract namespace; NOTIFY_SOCKET names it; each notify_send() must
 * arrive as exactly one datagram with the state bytes, and nothing may
 * block: a missing or full receiver is an error return, not a stall.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/notify.h"

struct fixture {
    char dir[64];
    char path[128];
    int fd; /* the receiving socket, or -1 */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fd = -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_notify.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/notify.sock", f->dir);
    unsetenv("NOTIFY_SOCKET");
    /* a blocked sendto would hang the test: fail it instead */
    alarm(20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    alarm(0);
    unsetenv("NOTIFY_SOCKET");
    if (f->fd >= 0)
        close(f->fd);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Binds a datagram socket; name starting with '@' is abstract. */
static int bind_receiver(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(name);
    assert_true(len < sizeof(sa.sun_path));
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    assert_int_equal(
        bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
        0);
    return fd;
}

/* Receives one datagram without blocking; returns its length or -1. */
static ssize_t recv_one(int fd, char *buf, size_t size)
{
    ssize_t n = recv(fd, buf, size - 1, MSG_DONTWAIT);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

static void test_unset_is_noop(void **state)
{
    (void)state;
    assert_int_equal(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(notify_send("READY=1"), 0);
}

static void test_path_socket(void **state)
{
    struct fixture *f = *state;
    f->fd = bind_receiver(f->path);
    setenv("NOTIFY_SOCKET", f->path, 1);

    static const char *const msgs[] = {
        "READY=1\nSTATUS=serving",
        "RELOADING=1\nMONOTONIC_USEC=123456789",
        "STATUS=draining 3 calls",
        "STOPPING=1",
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
        assert_int_equal(notify_send(msgs[i]), 0);
    char buf[512];
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        ssize_t n = recv_one(f->fd, buf, sizeof(buf));
        assert_int_equal(n, (ssize_t)strlen(msgs[i]));
        assert_string_equal(buf, msgs[i]);
    }
    assert_int_equal(recv_one(f->fd, buf, sizeof(buf)), -1); /* exactly one datagram each */
}

static void test_abstract_socket(void **state)
{
    struct fixture *f = *state;
    char name[108];
    snprintf(name, sizeof(name), "@drpc-sidecar-test-notify-%ld", (long)getpid());
    f->fd = bind_receiver(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(notify_send("READY=1"), 0);
    char buf[64];
    assert_int_equal(recv_one(f->fd, buf, sizeof(buf)), 7);
    assert_string_equal(buf, "READY=1");

    /* the abstract name is exact: a longer name with the same prefix differs */
    char other[120];
    snprintf(other, sizeof(other), "%s-x", name);
    setenv("NOTIFY_SOCKET", other, 1);
    assert_true(notify_send("READY=1") < 0);
    assert_int_equal(recv_one(f->fd, buf, sizeof(buf)), -1);
}

static void test_bad_addresses(void **state)
{
    struct fixture *f = *state;
    /* relative paths are not accepted (systemd always sends absolute or @) */
    setenv("NOTIFY_SOCKET", "relative/notify.sock", 1);
    assert_int_equal(notify_send("READY=1"), -EINVAL);
    /* too long for sun_path */
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    assert_int_equal(notify_send("READY=1"), -EINVAL);
    /* nobody listening: an error, promptly */
    setenv("NOTIFY_SOCKET", f->path, 1);
    int rc = notify_send("READY=1");
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
}

/* A receiver that never reads: its queue fills and sends fail with EAGAIN
 * instead of blocking (the alarm in setup catches a stall). */
static void test_full_receiver_never_blocks(void **state)
{
    struct fixture *f = *state;
    f->fd = bind_receiver(f->path);
    setenv("NOTIFY_SOCKET", f->path, 1);
    char big[4096];
    memset(big, 'x', sizeof(big) - 1);
    memcpy(big, "STATUS=", 7);
    big[sizeof(big) - 1] = '\0';
    int ok = 0, again = 0;
    for (int i = 0; i < 10000 && again == 0; i++) {
        int rc = notify_send(big);
        if (rc == 0)
            ok++;
        else if (rc == -EAGAIN || rc == -EWOULDBLOCK)
            again++;
        else
            fail_msg("unexpected error %d (%s)", rc, strerror(-rc));
    }
    assert_true(ok > 0);
    assert_int_equal(again, 1);
    /* the queue drains and sending works again */
    char buf[8192];
    while (recv_one(f->fd, buf, sizeof(buf)) >= 0)
        ;
    assert_int_equal(notify_send("READY=1"), 0);
    assert_int_equal(recv_one(f->fd, buf, sizeof(buf)), 7);
}

int main(void)
{
    /* a blocked send past the alarm kills the test with SIGALRM: a failure */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unset_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abstract_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_receiver_never_blocks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
