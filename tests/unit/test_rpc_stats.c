/*
 * test_rpc_stats: the per-RPC table (proxy/rpc_stats.c) and its Prometheus
 * rendering (admin/rpcs.c): names beyond max_rpcs and names that are not
 * plain labels land in "other", the index keeps finding names as it grows,
 * the per-second ring gives rates, and label values come out escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/rpcs.h"
#include "proxy/call.h"
#include "proxy/rpc_stats.h"

static void rec(struct rpc_stats **rs, uint32_t max, const char *pool, const char *rpc, int result)
{
    rpc_stats_record(rs, max, pool, rpc, strlen(rpc), result, CALL_CAUSE_WAIT_TIMEOUT, 1500);
}

static const struct rpc_stats_entry *find(const struct rpc_stats *rs, const char *pool,
                                          const char *rpc)
{
    for (size_t i = 0; i < rs->n_pools; i++) {
        const struct rpc_stats_pool *p = rs->pools[i];
        if (strcmp(p->name, pool) != 0)
            continue;
        if (strcmp(rpc, RPC_STATS_OTHER) == 0)
            return &p->other;
        for (size_t k = 0; k < p->n_entries; k++)
            if (strcmp(p->entries[k]->name, rpc) == 0)
                return p->entries[k];
    }
    return NULL;
}

static void test_off_counts_nothing(void **state)
{
    (void)state;
    struct rpc_stats *rs = NULL;
    rec(&rs, 0, "p", "/a/B", CALL_RESULT_OK);
    assert_null(rs);
}

static void test_first_names_then_other(void **state)
{
    (void)state;
    struct rpc_stats *rs = NULL;
    char name[32];
    /* 300 names through a table of 100: the index grows several times */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 300; i++) {
            snprintf(name, sizeof(name), "/svc.S/M%d", i);
            rec(&rs, 100, "p", name, CALL_RESULT_OK);
        }
    assert_int_equal(rs->n_pools, 1);
    assert_int_equal(rs->pools[0]->n_entries, 100);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "/svc.S/M%d", i);
        const struct rpc_stats_entry *e = find(rs, "p", name);
        assert_non_null(e);
        assert_int_equal(rpc_stats_calls(e), 2);
    }
    assert_null(find(rs, "p", "/svc.S/M100"));
    assert_int_equal(rpc_stats_calls(find(rs, "p", RPC_STATS_OTHER)), 400);
    /* a second pool has its own names */
    rec(&rs, 100, "q", "/svc.S/M299", CALL_RESULT_FAILED);
    assert_int_equal(find(rs, "q", "/svc.S/M299")->errors[CALL_CAUSE_WAIT_TIMEOUT], 1);
    rpc_stats_free(rs);
}

static void test_names_that_are_not_labels(void **state)
{
    (void)state;
    struct rpc_stats *rs = NULL;
    char long_name[RPC_STATS_NAME_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char *bad[] = {"", "other", "/a\nb", "/a\x7f", "/\xff\xfe", "/\xc0\xaf", long_name};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        rec(&rs, 100, "p", bad[i], CALL_RESULT_OK);
    rpc_stats_record(&rs, 100, "p", "/nul\0x", 6, CALL_RESULT_OK, 0, 1);
    assert_int_equal(rs->pools[0]->n_entries, 0);
    assert_int_equal(rpc_stats_calls(&rs->pools[0]->other), 8);
    long_name[RPC_STATS_NAME_MAX] = '\0'; /* exactly the limit: a name of its own */
    rec(&rs, 100, "p", long_name, CALL_RESULT_OK);
    rec(&rs, 100, "p", "/pkg.Svc/Méthode \"q\" \\", CALL_RESULT_OK);
    assert_int_equal(rs->pools[0]->n_entries, 2);
    rpc_stats_free(rs);
}

static void test_rates_over_the_ring(void **state)
{
    (void)state;
    struct rpc_stats *rs = NULL;
    /* 70 seconds: second s has s calls, every other one an app error */
    for (int s = 0; s < 70; s++) {
        for (int k = 0; k < s; k++)
            rec(&rs, 10, "p", "/a/B", k % 2 ? CALL_RESULT_APP_ERROR : CALL_RESULT_OK);
        rpc_stats_tick(rs);
    }
    const struct rpc_stats_entry *e = find(rs, "p", "/a/B");
    uint64_t errors;
    uint64_t calls = 0, app_errors = 0;
    for (int s = 60; s < 70; s++) {
        calls += (uint64_t)s;
        app_errors += (uint64_t)s / 2; /* the odd k below s */
    }
    assert_int_equal(rpc_stats_recent(rs, e, 10, &errors), calls);
    assert_int_equal(errors, app_errors);
    uint64_t sum = 0;
    for (int s = 10; s < 70; s++)
        sum += (uint64_t)s;
    assert_int_equal(rpc_stats_recent(rs, e, 60, NULL), sum);
    assert_int_equal(rpc_stats_window(rs, 60), 60);
    rpc_stats_free(rs);
}

static void test_exposition_escapes_labels(void **state)
{
    (void)state;
    struct rpc_stats *rs = NULL;
    rec(&rs, 100, "p", "/a\"b\\c/D", CALL_RESULT_FAILED);
    struct buf b = {0};
    assert_int_equal(rpcs_render_metrics(rs, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    const char *text = (const char *)b.data;
    assert_non_null(strstr(text, "drpc_sidecar_rpc_calls_total{pool=\"p\",rpc=\"/a\\\"b\\\\c/D\","
                                 "result=\"failed\"} 1\n"));
    assert_non_null(strstr(text, "drpc_sidecar_rpc_errors_total{pool=\"p\",rpc=\"/a\\\"b\\\\c/D\","
                                 "cause=\"wait_timeout\"} 1\n"));
    assert_non_null(strstr(text, "rpc=\"/a\\\"b\\\\c/D\",le=\"0.0025\"} 1\n"));
    assert_null(strstr(text, "rpc=\"other\",")); /* no empty "other" series */
    buf_free(&b);
    rpc_stats_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_counts_nothing),
        cmocka_unit_test(test_first_names_then_other),
        cmocka_unit_test(test_names_that_are_not_labels),
        cmocka_unit_test(test_rates_over_the_ring),
        cmocka_unit_test(test_exposition_escapes_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
