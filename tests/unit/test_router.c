/* Unit tests for route selection (proxy/router.c), the latency histogram
 * and the call failure table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "proxy/errors.h"
#include "proxy/histo.h"
#include "proxy/metadata.h"
#include "proxy/router.h"

static int match(const struct config *cfg, const char *rpc, const struct metadata *md)
{
    return router_match(cfg, rpc, strlen(rpc), md);
}

static void test_first_match_wins(void **state)
{
    (void)state;
    struct config_route routes[4];
    memset(routes, 0, sizeof(routes));
    routes[0].rpc = "/storage.Blob/Get";
    routes[1].rpc_prefix = "/storage.";
    routes[2].rpc_prefix = "/test.";
    routes[2].metadata_key = "tenant";
    routes[2].metadata_value = "a";
    /* routes[3]: no conditions: the default route */
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.routes = routes;
    cfg.n_routes = 4;

    assert_int_equal(match(&cfg, "/storage.Blob/Get", NULL), 0);
    assert_int_equal(match(&cfg, "/storage.Blob/Put", NULL), 1);
    assert_int_equal(match(&cfg, "/storage.", NULL), 1);
    assert_int_equal(match(&cfg, "/storage", NULL), 3);
    assert_int_equal(match(&cfg, "/test.Echo/Unary", NULL), 3);

    struct metadata md = {0};
    assert_int_equal(metadata_set(&md, "tenant", "a"), 0);
    assert_int_equal(match(&cfg, "/test.Echo/Unary", &md), 2);
    assert_int_equal(metadata_set(&md, "tenant", "b"), 0);
    assert_int_equal(match(&cfg, "/test.Echo/Unary", &md), 3);
    metadata_free(&md);
}

static void test_exact_needs_full_name(void **state)
{
    (void)state;
    struct config_route r;
    memset(&r, 0, sizeof(r));
    r.rpc = "/a.B/C";
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.routes = &r;
    cfg.n_routes = 1;
    assert_int_equal(match(&cfg, "/a.B/C", NULL), 0);
    assert_int_equal(match(&cfg, "/a.B/CD", NULL), -1);
    assert_int_equal(match(&cfg, "/a.B/", NULL), -1);
    /* a name with an embedded NUL never equals a C-string route */
    assert_int_equal(router_match(&cfg, "/a.B/C\0x", 8, NULL), -1);
}

static void test_metadata_key_without_value(void **state)
{
    (void)state;
    struct config_route r[2];
    memset(r, 0, sizeof(r));
    r[0].metadata_key = "agent-id";
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.routes = r;
    cfg.n_routes = 1;
    struct metadata md = {0};
    assert_int_equal(match(&cfg, "/x/y", &md), -1);
    assert_int_equal(metadata_set(&md, "agent-id", ""), 0);
    assert_int_equal(match(&cfg, "/x/y", &md), 0);
    metadata_free(&md);
}

static void test_no_routes(void **state)
{
    (void)state;
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(match(&cfg, "/x/y", NULL), -1);
}

static void test_histo_quantiles(void **state)
{
    (void)state;
    struct histo h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(histo_quantile(&h, 0.5), 0);
    for (int i = 0; i < 90; i++)
        histo_record(&h, 80); /* bucket (50,100] */
    for (int i = 0; i < 10; i++)
        histo_record(&h, 4000); /* bucket (2500,5000] */
    assert_int_equal(h.count, 100);
    assert_int_equal(h.sum_us, 90 * 80 + 10 * 4000);
    uint64_t p50 = histo_quantile(&h, 0.5);
    assert_true(p50 > 50 && p50 <= 100);
    uint64_t p99 = histo_quantile(&h, 0.99);
    assert_true(p99 > 2500 && p99 <= 5000);
    histo_record(&h, UINT64_MAX / 2); /* lands in +Inf */
    assert_int_equal(h.counts[HISTO_BUCKETS - 1], 1);
}

/* Percentiles never leave the range of the values recorded, however wide
 * the bucket they fall in (20 s sits in the (10 s, 30 s] bucket). */
static void test_histo_stays_within_recorded_values(void **state)
{
    (void)state;
    struct histo h;
    memset(&h, 0, sizeof(h));
    histo_record(&h, 20000000);
    assert_int_equal(h.min_us, 20000000);
    assert_int_equal(h.max_us, 20000000);
    assert_int_equal(histo_quantile(&h, 0.5), 20000000);
    assert_int_equal(histo_quantile(&h, 0.99), 20000000);

    /* two quick waits and one long one: p99 is at most the long one */
    memset(&h, 0, sizeof(h));
    histo_record(&h, 25);
    histo_record(&h, 45);
    histo_record(&h, 20000000);
    assert_int_equal(h.min_us, 25);
    uint64_t p50 = histo_quantile(&h, 0.5);
    assert_true(p50 >= 25 && p50 <= 45);
    uint64_t p99 = histo_quantile(&h, 0.99);
    assert_true(p99 > 10000000 && p99 <= 20000000);

    /* the +Inf bucket interpolates up to the largest value, not to 60 s flat */
    memset(&h, 0, sizeof(h));
    histo_record(&h, 90000000);
    assert_int_equal(histo_quantile(&h, 0.99), 90000000);
}

static void test_error_table(void **state)
{
    (void)state;
    /* codes are distinct and documented names are stable */
    for (int i = 0; i < CALL_CAUSE_COUNT; i++)
        for (int j = i + 1; j < CALL_CAUSE_COUNT; j++)
            assert_true(call_cause_code(i) != call_cause_code(j));
    assert_int_equal(call_cause_code(CALL_CAUSE_NO_ROUTE), 1001);
    assert_string_equal(call_cause_name(CALL_CAUSE_UPSTREAM_LOST), "upstream_lost");
    assert_int_equal(call_cause_code(CALL_CAUSE_INTERNAL), 1015);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_exact_needs_full_name),
        cmocka_unit_test(test_metadata_key_without_value),
        cmocka_unit_test(test_no_routes),
        cmocka_unit_test(test_histo_quantiles),
        cmocka_unit_test(test_histo_stays_within_recorded_values),
        cmocka_unit_test(test_error_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
