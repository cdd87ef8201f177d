"""Pool details: lifetime and idle limits, balancing across endpoints, DNS
names resolved off the loop, and reverse-pool agents in /pools. (That the
Python client sends the Go client's bytes is test_transcripts' job.)"""

import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, free_addr

ECHO = "/test.Echo/"


def conn_id(c):
    return int(c.unary(ECHO + "Conn", b"").split()[0])


def test_max_lifetime_replaces_connections_at_release(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr, max_conns=1, max_lifetime_ms=300))
    with sc.conn() as c:
        first = conn_id(c)
        assert conn_id(c) == first  # young: reused
        c.start_unary(ECHO + "Sleep", b"400")
        assert c.finish_unary() == b"slept"  # past its lifetime mid-call: not cut
        assert conn_id(c) != first


def test_max_lifetime_closes_idle_connections_before_their_next_call(pyserver, sidecar):
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=1, max_lifetime_ms=300, min_idle=0))
    with sc.conn() as c:
        first = conn_id(c)
        deadline = time.time() + 3 * SCALE
        while up.open_conns() and time.time() < deadline:
            time.sleep(0.05)
        assert up.open_conns() == 0  # closed while idle, by age
        assert conn_id(c) != first  # the next call never sees the old one


def test_idle_timeout_closes_idle_connections(pyserver, sidecar):
    up = pyserver()
    sc = sidecar(basic_config(up.addr, idle_timeout_ms=200, min_idle=0))
    with sc.conn() as c:
        c.unary(ECHO + "Unary", b"x")
    assert up.open_conns() == 1
    deadline = time.time() + 3
    while up.open_conns() and time.time() < deadline:
        time.sleep(0.05)
    assert up.open_conns() == 0
    assert sc.admin_get("/pools")["pools"][0]["conns"]["total"] == 0


def test_min_idle_warm_connections_stay_while_others_are_busy(testd, sidecar):
    """min_idle idle connections stay warm past idle_timeout_ms while calls
    hold other connections busy: no close-and-redial churn."""
    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=4, min_idle=2, idle_timeout_ms=200))
    a, b = sc.conn(timeout=10 * SCALE), sc.conn(timeout=10 * SCALE)
    try:
        a.start_unary(ECHO + "Sleep", b"1500")
        b.start_unary(ECHO + "Sleep", b"1500")
        deadline = time.monotonic() + 5 * SCALE
        while True:
            conns = sc.admin_get("/pools/default")["conns"]
            if conns["busy"] == 2 and conns["idle"] == 2:
                break
            assert time.monotonic() < deadline, conns
            time.sleep(0.02)
        dials = sc.admin_get("/pools/default")["counters"]["dials"]
        time.sleep(1.0)  # five idle timeouts
        p = sc.admin_get("/pools/default")
        assert p["counters"]["dials"] == dials, p["counters"]
        assert p["conns"]["idle"] == 2 and p["conns"]["busy"] == 2, p["conns"]
        assert a.finish_unary() == b"slept" and b.finish_unary() == b"slept"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("balance", ["round_robin", "least_busy"])
def test_balancing_spreads_dials(pyserver, sidecar, balance):
    a, b = pyserver(), pyserver()
    cfg = basic_config(a.addr, max_conns=4, balance=balance, wait_timeout_ms=10000)
    cfg["pools"][0]["endpoints"] = [a.addr, b.addr]
    sc = sidecar(cfg)
    conns = [sc.conn() for _ in range(4)]
    for c in conns:  # long enough to overlap even on a loaded machine
        c.start_unary(ECHO + "Sleep", b"1000")
    for c in conns:
        assert c.finish_unary() == b"slept"
        c.close()
    assert (a.accepted, b.accepted) == (2, 2), balance


@pytest.mark.parametrize("balance", ["round_robin", "least_busy"])
def test_least_busy_dials_the_endpoint_with_fewest_connections(pyserver, sidecar, balance):
    """Endpoint b loses its connections while a keeps two. The next dial
    goes where round robin points (a, after a, b, a, b) or, with
    least_busy, to b, which has none."""
    a, b = pyserver(), pyserver()
    cfg = basic_config(a.addr, max_conns=4, balance=balance, wait_timeout_ms=10000)
    cfg["pools"][0]["endpoints"] = [a.addr, b.addr]
    sc = sidecar(cfg)

    def sleep_calls(n):
        conns = [sc.conn() for _ in range(n)]
        for c in conns:
            c.start_unary(ECHO + "Sleep", b"1000")
        for c in conns:
            assert c.finish_unary() == b"slept"
            c.close()

    def endpoint_conns():
        eps = sc.admin_get("/pools")["pools"][0]["endpoints"]
        return [e["open_conns"] for e in eps]

    sleep_calls(4)
    assert (a.accepted, b.accepted) == (2, 2)
    b.kill_connections()
    deadline = time.time() + 5 * SCALE
    while endpoint_conns() != [2, 0]:
        assert time.time() < deadline, endpoint_conns()
        time.sleep(0.02)
    sleep_calls(3)  # two take a's idle connections, the third needs a dial
    want = {"round_robin": (3, 2), "least_busy": (2, 3)}[balance]
    assert (a.accepted, b.accepted) == want


def test_host_name_endpoint_is_resolved(pyserver, sidecar):
    port = int(pyserver().addr.rsplit(":", 1)[1])
    sc = sidecar(basic_config("localhost:%d" % port))
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"via dns") == b"via dns"
    ep = sc.admin_get("/pools")["pools"][0]["endpoints"][0]
    assert ep["address"] == "localhost:%d" % port
    assert ep["resolved"] in ("127.0.0.1:%d" % port, "[::1]:%d" % port)  # the one dialled
    bad = sidecar(basic_config("no-such-host.invalid:1"))
    with bad.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1005 and "resolve" in e.value.message


def test_pools_view_lists_agents(pyagent, sidecar):
    accept = free_addr()
    cfg = {"listeners": [{"name": "l", "address": free_addr()}],
           "admin": {"address": free_addr()},
           "pools": [{"name": "agents", "accept": accept, "identify": {"rpc": ECHO + "Identify"}}]}
    sc = sidecar(cfg)
    pyagent(accept, n=3, ident="edge-1")
    deadline = time.time() + 5 * SCALE
    while time.time() < deadline:
        p = sc.admin_get("/pools")["pools"][0]
        if p["agents"] and p["agents"][0]["conns"] == 3 and p["conns"]["idle"] == 3:
            break
        time.sleep(0.05)
    assert p["kind"] == "reverse" and p["accept"] == accept
    assert [(x["id"], x["conns"], x["busy"]) for x in p["agents"]] == [("edge-1", 3, 0)]
    # its settings: where agents dial in, and nothing about dialling out
    assert p["config"]["accept"] == accept and "endpoints" not in p["config"]
    assert p["config"]["identify"] == {"rpc": ECHO + "Identify"}
    for key in ("min_idle", "idle_timeout_ms", "balance", "eject_ms", "backoff_max_ms"):
        assert key not in p["config"], key


def _sidecar_with_fake_resolver(testd, short_tmp, answers, **pool):
    """A sidecar whose pool dials names.test:PORT (PORT: a drpc-testd on
    127.0.0.1), with getaddrinfo answered from `answers`, one line per
    query in turn (tests/tools/fake_resolver.c). Run directly, not through
    the fixture, for the LD_PRELOAD; returns (config, process, log path)."""
    import json
    import os
    import subprocess

    from .procs import binary, binary_path, wait_connectable

    preload = binary_path("libfake_resolver.so")
    if not preload or not os.path.exists(preload):
        pytest.skip("libfake_resolver.so is not built")
    port = testd().addr.rsplit(":", 1)[1]
    path = os.path.join(short_tmp, "answers")
    with open(path, "w") as f:
        f.write("\n".join(answers) + "\n")
    cfg = basic_config("names.test:" + port, **pool)
    cfg_path = os.path.join(short_tmp, "c.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    log_path = os.path.join(short_tmp, "sidecar.log")
    env = dict(os.environ, LD_PRELOAD=preload, FAKE_RESOLVER_ANSWERS=path)
    # a sanitized sidecar: its runtime need not come first with this preload
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    with open(log_path, "w") as log:
        p = subprocess.Popen([binary("drpc-sidecar"), "-c", cfg_path], stdout=log, stderr=log,
                             env=env)
    try:
        wait_connectable(cfg["listeners"][0]["address"])
        wait_connectable(cfg["admin"]["address"])
    except Exception:
        p.kill()
        raise
    return cfg, p, log_path, port


def _endpoint(cfg):
    import http.client
    import json

    host, port = cfg["admin"]["address"].rsplit(":", 1)
    h = http.client.HTTPConnection(host, int(port), timeout=5 * SCALE)
    try:
        h.request("GET", "/pools/default")
        return json.loads(h.getresponse().read())["endpoints"][0]
    finally:
        h.close()


@pytest.mark.parametrize("answers,min_idle", [
    # the dead address first every time; three dials at the start hit it together
    (["::1,127.0.0.1"], 3),
    # round-robin DNS: the order rotates between the first dial and the next
    (["127.0.0.2,127.0.0.1", "127.0.0.1,127.0.0.2"], 0),
], ids=["dead-first", "rotating"])
def test_a_dead_address_behind_a_name_is_skipped_not_held_against_it(testd, short_tmp,
                                                                       answers, min_idle):
    """A name with a dead address (nothing listens there) and a live one:
    calls are served through the live one at once, and the endpoint is
    neither backed off nor ejected (here after one failure, to be sure),
    even with several dials hitting the dead one together, and when the
    answer's order changes between queries."""
    cfg, p, log_path, port = _sidecar_with_fake_resolver(
        testd, short_tmp, answers, eject_after_failures=1, eject_ms=60000, min_idle=min_idle)
    try:
        with drpc.Conn(cfg["listeners"][0]["address"], timeout=5 * SCALE) as c:
            for i in range(4):
                assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
        ep = _endpoint(cfg)
        want = [a if a.startswith("127.") else "[%s]" % a for a in answers[-1].split(",")]
        assert ep["health"] == "healthy", (ep, open(log_path).read())
        assert sorted(ep["resolved_addresses"]) == sorted("%s:%s" % (a, port) for a in want)
    finally:
        p.terminate()
        assert p.wait(15) == 0, open(log_path).read()


@pytest.mark.parametrize("balance", ["round_robin", "least_busy"])
def test_a_blackholed_endpoint_does_not_hold_calls_another_could_serve(testd, sidecar, balance):
    """One endpoint never answers a SYN (its accept queue is full), the
    other is healthy. A dial that has not connected within a quarter of
    dial_timeout_ms stops counting for its waiter, which gets a dial to the
    other endpoint: the calls are served although the dead endpoint's
    dials would outlast wait_timeout_ms."""
    import socket

    up = testd()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue; later SYNs are dropped
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(hole.getsockname())
        fillers.append(f)
    try:
        cfg = basic_config(up.addr, max_conns=8, dial_timeout_ms=20000, wait_timeout_ms=4000,
                           balance=balance)
        cfg["pools"][0]["endpoints"] = ["127.0.0.1:%d" % hole.getsockname()[1], up.addr]
        sc = sidecar(cfg)
        # one call alone: its first dial goes to the dead endpoint (listed first)
        with sc.conn(timeout=10 * SCALE) as c:
            assert c.unary(ECHO + "Unary", b"alone") == b"alone"
        conns = [sc.conn(timeout=10 * SCALE) for _ in range(3)]
        try:
            for c in conns:
                c.start_unary(ECHO + "Sleep", b"300")
            for c in conns:
                assert c.finish_unary() == b"slept"
        finally:
            for c in conns:
                c.close()
    finally:
        for f in fillers:
            f.close()
        hole.close()
