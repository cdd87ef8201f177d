"""Admin HTTP API against the real binary: live views, mutations, metrics,
token rules and every malformed-request case."""

import http.client
import json
import re
import socket
import subprocess
import threading
import time

import pytest

import drpc
from conftest import basic_config

ECHO = "/test.Echo/"


def get(sc, path, method="GET", headers=None):
    host, port = sc.admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    ctype = r.getheader("Content-Type", "")
    return r.status, (json.loads(body) if ctype.startswith("application/json") else body.decode()), r


def raw(sc, data, read_all=True, timeout=5):
    host, port = sc.admin.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
    except socket.timeout:
        pass
    s.close()
    return out


def wait_until(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def hold_calls(sc, n, ms):
    conns = []
    for _ in range(n):
        c = drpc.Conn(sc.addr)
        c.start_unary(ECHO + "Sleep", str(ms).encode())
        conns.append(c)
    return conns


def test_calls_and_pools_reflect_reality(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=2, wait_timeout_ms=10000))
    st, pools, _ = get(sc, "/pools")
    assert st == 200
    p = pools["pools"][0]
    assert p["name"] == "default" and p["conns"] == {"total": 0, "idle": 0, "busy": 0,
                                                     "connecting": 0, "max": 2}
    held = hold_calls(sc, 3, 1500)
    calls = wait_until(lambda: len(get(sc, "/calls")[1]["calls"]) == 3 and get(sc, "/calls")[1])
    states = sorted(c["state"] for c in calls["calls"])
    assert states == ["half_closed", "half_closed", "waiting"], states
    for c in calls["calls"]:
        assert c["rpc"] == ECHO + "Sleep" and c["pool"] == "default" and c["route"]
        assert c["age_ms"] >= 0 and c["started_at"].endswith("Z")
    st, pool, _ = get(sc, "/pools/default")
    assert pool["conns"]["busy"] == 2 and pool["conns"]["idle"] == 0 and pool["waiters"] == 1
    assert pool["endpoints"][0]["health"] == "healthy"
    st, filtered, _ = get(sc, "/calls?pool=nope")
    assert filtered["calls"] == []
    st, old, _ = get(sc, "/calls?min_age_ms=100000")
    assert old["calls"] == []
    st, clients, _ = get(sc, "/clients")
    assert len(clients["clients"]) == 3
    assert all(c["call_rpc"] == ECHO + "Sleep" for c in clients["clients"])
    for c in held:
        assert c.finish_unary() == b"slept"
    pool = wait_until(lambda: get(sc, "/pools/default")[1]["conns"]["idle"] == 2
                      and get(sc, "/pools/default")[1])
    assert pool["conns"]["busy"] == 0 and pool["waiters"] == 0
    assert pool["counters"]["calls"] == 3 and pool["counters"]["calls_ok"] == 3
    assert pool["counters"]["checkouts_waited"] == 1
    assert pool["call_ms"]["count"] == 3 and pool["call_ms"]["p50"] > 0
    assert get(sc, "/pools/nope")[0] == 404
    for c in held:
        c.close()


def test_cancel_a_call(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    c = hold_calls(sc, 1, 5000)[0]
    calls = wait_until(lambda: get(sc, "/calls")[1]["calls"])
    cid = calls[0]["id"]
    assert get(sc, "/calls/%d/cancel" % cid)[0] == 405  # GET never mutates
    st, body, _ = get(sc, "/calls/%d/cancel" % cid, "POST")
    assert st == 200 and body["cancelled"]
    with pytest.raises(drpc.DrpcError) as e:
        c.finish_unary()
    assert e.value.code == 1010 and e.value.message.startswith("drpc-sidecar: ")
    assert get(sc, "/calls/%d/cancel" % cid, "POST")[0] == 404
    assert get(sc, "/calls/abc/cancel", "POST")[0] == 400
    assert c.unary(ECHO + "Unary", b"ok") == b"ok"
    c.close()


def test_pool_drain_and_resume(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, wait_timeout_ms=3000))
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
        st, body, _ = get(sc, "/pools/default/drain", "POST")
        assert st == 200 and body["draining"] is True
        pool = get(sc, "/pools/default")[1]
        assert pool["draining"] and pool["conns"]["idle"] == 0
        c.start_unary(ECHO + "Unary", b"waits")
        assert wait_until(lambda: get(sc, "/pools/default")[1]["waiters"] == 1)
        assert get(sc, "/pools/default/resume", "POST")[0] == 200
        assert c.finish_unary() == b"waits"
        assert get(sc, "/pools/nope/drain", "POST")[0] == 404


def test_health_ready_config_and_reload(upstream, sidecar):
    cfg = basic_config(upstream.addr, min_idle=2)
    sc = sidecar(cfg)
    assert get(sc, "/healthz")[1]["status"] == "ok"
    assert wait_until(lambda: get(sc, "/readyz")[0] == 200)
    st, conf, _ = get(sc, "/config")
    assert conf["config"]["pools"][0]["max_waiters"] == 1024  # defaults filled in
    assert conf["last_reload"] is None
    cfg["routes"] = [{"pool": "default", "add_metadata": {"v": "2"}}]
    sc.write_config(cfg)
    st, body, _ = get(sc, "/reload", "POST")
    assert st == 200 and body["reloaded"] is True
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Metadata", b"") == b"v=2\n"
    with open(sc.path, "w") as f:
        f.write('{"listeners": [], "pools": []}')
    st, body, _ = get(sc, "/reload", "POST")
    assert st == 422 and "listeners: must list at least one listener" in body["error"]
    conf = get(sc, "/config")[1]
    assert conf["last_reload"]["ok"] is False and "listeners" in conf["last_reload"]["error"]
    assert conf["last_reload"]["applied"] == 1 and conf["last_reload"]["refused"] == 1


def test_token_rules(upstream, sidecar):
    cfg = basic_config(upstream.addr)
    cfg["admin"]["token"] = "s3cret"
    sc = sidecar(cfg)
    assert get(sc, "/pools")[0] == 200  # reads need no token
    st, _, r = get(sc, "/pools/default/drain", "POST")
    assert st == 401 and r.getheader("WWW-Authenticate")
    assert get(sc, "/pools/default/drain", "POST", {"Authorization": "Bearer nope"})[0] == 401
    assert get(sc, "/pools/default/drain", "POST", {"Authorization": "Bearer s3cret"})[0] == 200
    conf = get(sc, "/config")[1]
    assert conf["config"]["admin"]["token"] == "<redacted>"
    # curl too
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                          "-H", "Authorization: Bearer s3cret",
                          "http://%s/pools/default/resume" % sc.admin],
                         capture_output=True, timeout=10)
    assert out.stdout == b"200"


def test_process_drain(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    c = hold_calls(sc, 1, 600)[0]
    time.sleep(0.1)
    st, body, _ = get(sc, "/drain", "POST")
    assert st == 202 and body["calls_in_flight"] == 1
    # the admin API keeps answering while the call finishes
    assert get(sc, "/readyz")[0] == 503
    assert get(sc, "/metrics")[0] == 200
    assert c.finish_unary() == b"slept"
    assert sc.proc.wait(10) == 0
    c.close()


def test_malformed_requests(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    assert raw(sc, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(sc, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", read_all=False).startswith(b"HTTP/1.1 404")
    r = raw(sc, b"DELETE /pools HTTP/1.1\r\nHost: x\r\n\r\n", read_all=False)
    assert r.startswith(b"HTTP/1.1 405") and b"Allow: GET" in r
    big = b"GET /pools HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    assert raw(sc, big).startswith(b"HTTP/1.1 431")
    body = b"POST /drain HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
    assert raw(sc, body).startswith(b"HTTP/1.1 413")
    long_url = b"GET /" + b"x" * 3000 + b" HTTP/1.1\r\n\r\n"
    assert raw(sc, long_url).startswith(b"HTTP/1.1 414")
    # keep-alive: two pipelined requests on one connection
    r = raw(sc, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n"
                b"Connection: close\r\n\r\n")
    assert r.count(b"HTTP/1.1 200") == 2
    # the data plane never noticed
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Unary", b"fine") == b"fine"


def test_request_timeout_closes_slow_clients(upstream, sidecar):
    cfg = basic_config(upstream.addr)
    cfg["admin"]["request_timeout_ms"] = 300
    sc = sidecar(cfg)
    t0 = time.time()
    r = raw(sc, b"GET /pools HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    assert r.startswith(b"HTTP/1.1 408")
    assert time.time() - t0 < 3
    # many slowloris connections do not stop others from being served
    socks = []
    host, port = sc.admin.rsplit(":", 1)
    for _ in range(20):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET / HTTP/1.1\r\n")
        socks.append(s)
    assert get(sc, "/healthz")[0] == 200
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Unary", b"fine") == b"fine"
    for s in socks:
        s.close()


# ---- a strict Prometheus text format parser --------------------------------

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_prometheus(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}; raises on errors."""
    fams = {}
    cur = None
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert METRIC_NAME.match(name), line
            assert name not in fams, "family declared twice: " + name
            fams[name] = {"help": help_, "type": None, "samples": []}
            cur = name
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == cur and fams[name]["type"] is None, line
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            fams[name]["type"] = typ
        elif line.startswith("#") or not line:
            raise AssertionError("unexpected line: %r" % line)
        else:
            m = SAMPLE.match(line)
            assert m, "bad sample: %r" % line
            name, labels = m.group(1), {}
            if m.group(3):
                rest = m.group(3)
                while rest:
                    lm = LABEL.match(rest)
                    assert lm, "bad labels: %r" % line
                    labels[lm.group(1)] = lm.group(2)
                    rest = rest[lm.end():]
            value = float(m.group(4))
            fam = fams[cur]
            base = name
            if fam["type"] == "histogram":
                assert name in (cur + "_bucket", cur + "_sum", cur + "_count"), line
            else:
                assert name == cur, "sample %s outside its family %s" % (name, cur)
            if fam["type"] == "counter":
                assert base.endswith("_total"), line
                assert value >= 0
            fam["samples"].append((name, labels, value))
    for name, fam in fams.items():
        assert fam["type"], "no TYPE for " + name
        if fam["type"] == "histogram":
            series = {}
            for n, labels, v in fam["samples"]:
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                series.setdefault(key, {"buckets": [], "sum": None, "count": None})
                if n.endswith("_bucket"):
                    series[key]["buckets"].append((labels["le"], v))
                elif n.endswith("_sum"):
                    series[key]["sum"] = v
                else:
                    series[key]["count"] = v
            for s in series.values():
                les = [le for le, _ in s["buckets"]]
                assert les[-1] == "+Inf"
                counts = [v for _, v in s["buckets"]]
                assert counts == sorted(counts), "buckets not cumulative"
                bounds = [float(le) for le in les[:-1]]
                assert bounds == sorted(bounds)
                assert s["count"] == counts[-1] and s["sum"] is not None
    return fams


def test_metrics_parse_strictly(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    with drpc.Conn(sc.addr) as c:
        for _ in range(5):
            c.unary(ECHO + "Unary", b"m")
        with pytest.raises(drpc.DrpcError):
            c.unary(ECHO + "Error", b"3 x")
    st, text, r = get(sc, "/metrics")
    assert st == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    fams = parse_prometheus(text)
    calls = {s[1]["result"]: s[2] for s in fams["drpc_sidecar_calls_total"]["samples"]}
    assert calls["ok"] == 5 and calls["app_error"] == 1
    assert fams["drpc_sidecar_call_duration_seconds"]["type"] == "histogram"
    assert fams["drpc_sidecar_wait_duration_seconds"]["type"] == "histogram"
    assert fams["process_resident_memory_bytes"]["samples"][0][2] > 1e6
    assert fams["process_open_fds"]["samples"][0][2] > 3
    assert fams["drpc_sidecar_clients"]["type"] == "gauge"
    errs = [s for s in fams["drpc_sidecar_call_errors_total"]["samples"]]
    assert {s[1]["cause"] for s in errs} >= {"no_route", "upstream_lost", "wait_timeout"}
    # curl sees the same
    out = subprocess.run(["curl", "-sf", "http://%s/metrics" % sc.admin], capture_output=True,
                         timeout=10)
    assert out.returncode == 0 and b"drpc_sidecar_pool_calls_total" in out.stdout


def test_many_admin_clients_do_not_slow_calls(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                get(sc, "/calls")
                get(sc, "/metrics")
            except OSError:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        with drpc.Conn(sc.addr) as c:
            for i in range(200):
                assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
    finally:
        stop.set()
        for t in threads:
            t.join(10)
