/* Unit tests for admin request parsing, routing decisions, tokens and label escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "admin/http.h"
#include "admin/metrics.h"
#include "admin/routes.h"

static enum admin_http_result feed_all(struct admin_http *h, const char *s, size_t *used)
{
    return admin_http_feed(h, s, strlen(s), used);
}

static void test_simple_request(void **state)
{
    (void)state;
    struct admin_http h;
    admin_http_init(&h);
    size_t used;
    const char *req = "GET /calls?pool=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n";
    assert_int_equal(feed_all(&h, req, &used), ADMIN_HTTP_REQUEST);
    assert_int_equal(used, strlen(req));
    assert_string_equal(h.method, "GET");
    assert_string_equal(h.url, "/calls?pool=a");
    assert_string_equal(h.auth, "Bearer t");
    assert_true(h.keep_alive);
}

static void test_byte_by_byte_and_pipelined(void **state)
{
    (void)state;
    struct admin_http h;
    admin_http_init(&h);
    const char *two = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    size_t len = strlen(two), pos = 0, used;
    /* one byte at a time until the first request completes */
    enum admin_http_result r = ADMIN_HTTP_NEED_MORE;
    while (r == ADMIN_HTTP_NEED_MORE && pos < len) {
        r = admin_http_feed(&h, two + pos, 1, &used);
        pos += used;
    }
    assert_int_equal(r, ADMIN_HTTP_REQUEST);
    assert_string_equal(h.url, "/a");
    admin_http_next(&h);
    r = admin_http_feed(&h, two + pos, len - pos, &used);
    assert_int_equal(r, ADMIN_HTTP_REQUEST);
    assert_string_equal(h.method, "POST");
    assert_string_equal(h.url, "/b");
    assert_int_equal(h.body_len, 2);
}

static void test_limits_and_errors(void **state)
{
    (void)state;
    struct admin_http h;
    size_t used;
    admin_http_init(&h);
    assert_int_equal(feed_all(&h, "NOT HTTP\r\n\r\n", &used), ADMIN_HTTP_ERROR);
    assert_int_equal(h.error_status, 400);

    char big[ADMIN_HTTP_MAX_HEADERS + 200];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: %0*d\r\n\r\n", ADMIN_HTTP_MAX_HEADERS, 0);
    admin_http_init(&h);
    assert_int_equal(feed_all(&h, big, &used), ADMIN_HTTP_ERROR);
    assert_int_equal(h.error_status, 431);

    admin_http_init(&h);
    assert_int_equal(feed_all(&h, "POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", &used),
                     ADMIN_HTTP_ERROR);
    assert_int_equal(h.error_status, 413);

    char url[ADMIN_HTTP_MAX_URL + 64];
    snprintf(url, sizeof(url), "GET /%0*d HTTP/1.1\r\n\r\n", ADMIN_HTTP_MAX_URL, 0);
    admin_http_init(&h);
    assert_int_equal(feed_all(&h, url, &used), ADMIN_HTTP_ERROR);
    assert_int_equal(h.error_status, 414);

    admin_http_init(&h);
    assert_int_equal(feed_all(&h, "GET / HTTP/1.0\r\n\r\n", &used), ADMIN_HTTP_REQUEST);
    assert_false(h.keep_alive);
}

static void test_tokens(void **state)
{
    (void)state;
    assert_true(admin_token_ok("Bearer abc", "abc"));
    assert_false(admin_token_ok("Bearer abcd", "abc"));
    assert_false(admin_token_ok("Bearer ab", "abc"));
    assert_false(admin_token_ok("Basic abc", "abc"));
    assert_false(admin_token_ok("", "abc"));
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(metrics_escape_label(&b, "a\"b\\c\nd"), 0);
    assert_int_equal(b.len, strlen("a\\\"b\\\\c\\nd"));
    assert_memory_equal(b.data, "a\\\"b\\\\c\\nd", b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_request),    cmocka_unit_test(test_byte_by_byte_and_pipelined),
        cmocka_unit_test(test_limits_and_errors), cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_label_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
