"""Per-RPC numbers and history through the real binary: GET /rpcs counts
each name with its error ratio and latency, names beyond metrics.max_rpcs
and names that are not plain labels go to rpc="other" (escaped correctly
in /metrics and JSON), and GET /history has one sample a second with the
calls and errors of each second."""

import time
import urllib.request

import pytest

from . import drpc
from .procs import SCALE, basic_config

ECHO = "/test.Echo/"


def metrics_text(sc):
    with urllib.request.urlopen("http://%s/metrics" % sc.admin, timeout=5 * SCALE) as r:
        return r.read().decode()


def rpcs_of(sc, pool="default"):
    doc = sc.admin_get("/rpcs")
    for p in doc["pools"]:
        if p["pool"] == pool:
            return {r["rpc"]: r for r in p["rpcs"]}
    return {}


def call(c, rpc, data=b"x"):
    try:
        c.unary(rpc, data)
        return None
    except drpc.DrpcError as e:
        return e.code


def test_rpcs_counts_names_errors_and_other(testd, sidecar):
    cfg = basic_config(testd().addr)
    cfg["metrics"] = {"max_rpcs": 3}
    sc = sidecar(cfg)
    odd = '/odd.Svc/Quote"Back\\slash'
    with sc.conn() as c:
        for _ in range(6):
            assert call(c, ECHO + "Unary") is None
        for _ in range(2):
            assert call(c, ECHO + "Error", b"7 nope") == 7
        assert call(c, odd) is not None            # testd: unknown rpc, an app error
        assert call(c, "/fourth.Svc/Over") is not None  # beyond max_rpcs
        assert call(c, b"/bad\xff\xfeutf8") is not None  # not a label
        assert call(c, "other") is not None         # the word itself goes to other
    rpcs = rpcs_of(sc)
    assert set(rpcs) == {ECHO + "Unary", ECHO + "Error", odd, "other"}, rpcs.keys()
    assert sc.admin_get("/rpcs")["max_rpcs"] == 3
    u = rpcs[ECHO + "Unary"]
    assert u["calls"] == 6 and u["results"]["ok"] == 6 and u["error_ratio_1m"] == 0
    assert 0 < u["p50_ms"] <= u["p99_ms"] <= u["max_ms"] < 5000
    assert rpcs[ECHO + "Error"]["results"]["app_error"] == 2
    assert rpcs["other"]["calls"] == 3
    # busiest first within the pool: Unary has the most calls
    assert sc.admin_get("/rpcs")["pools"][0]["rpcs"][0]["rpc"] == ECHO + "Unary"

    text = metrics_text(sc)
    assert ('drpc_sidecar_rpc_calls_total{pool="default",rpc="/odd.Svc/Quote\\"Back\\\\slash",'
            'result="app_error"} 1') in text
    assert 'drpc_sidecar_rpc_calls_total{pool="default",rpc="other",result="app_error"} 3' in text
    assert "fourth" not in text and "bad" not in text
    assert ('drpc_sidecar_rpc_call_duration_seconds_count{pool="default",rpc="/test.Echo/Unary"} 6'
            in text)

    # rates: after the ring has turned, the last 10 s and minute see the calls
    deadline = time.monotonic() + 5 * SCALE
    while rpcs_of(sc)[ECHO + "Error"]["calls_per_second_10s"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    e = rpcs_of(sc)[ECHO + "Error"]
    assert e["error_ratio_1m"] == 1.0 and e["calls_per_second_1m"] > 0


def test_max_rpcs_zero_turns_per_rpc_accounting_off(testd, sidecar):
    cfg = basic_config(testd().addr)
    cfg["metrics"] = {"max_rpcs": 0}
    sc = sidecar(cfg)
    with sc.conn() as c:
        assert call(c, ECHO + "Unary") is None
    assert sc.admin_get("/rpcs") == {"max_rpcs": 0, "pools": []}
    assert "drpc_sidecar_rpc_calls_total{" not in metrics_text(sc)
    assert sc.admin_get("/config")["config"]["metrics"] == {"max_rpcs": 0}


@pytest.mark.timeout_s(60)
def test_history_has_a_sample_a_second_with_calls_and_errors(testd, sidecar):
    sc = sidecar(basic_config(testd().addr))
    made = errors = 0
    with sc.conn() as c:
        t_end = time.monotonic() + 3.5
        while time.monotonic() < t_end:
            assert call(c, ECHO + "Unary") is None
            made += 1
            if made % 5 == 0:
                assert call(c, ECHO + "Error", b"3 x") == 3
                errors += 1
            time.sleep(0.01)
    time.sleep(1.5)  # the last second is sampled
    h = sc.admin_get("/history?seconds=600")
    assert h["interval_ms"] == 1000 and h["capacity_seconds"] == 600
    assert 0 < h["memory_bytes"] < 1 << 20
    n = h["samples"]
    assert 4 <= n <= 10, n
    assert len(h["t"]) == len(h["clients"]) == len(h["calls_in_flight"]) == n
    assert all(b - a > 500 for a, b in zip(h["t"], h["t"][1:])), h["t"]
    (p,) = h["pools"]
    assert p["pool"] == "default"
    assert sum(p["calls"]) == made + errors
    assert sum(p["app_errors"]) == errors
    assert sum(p["errors"]) == 0 and p["errors_by_cause"] == {}
    assert max(p["call_p99_ms"]) > 0 and p["max"][-1] == 4
    assert sc.admin_get("/history?seconds=2")["samples"] == 2
    for bad in ("0", "601", "x"):
        status, body = sc.admin_request("GET", "/history?seconds=" + bad)
        assert status == 400 and "seconds must be" in body["error"]
