"""Admin views against the live data plane, beyond test_admin.py: what the upstream sees when an operator cancels a call, what a pool
drain does to calls already in flight and to new ones, ejected endpoints
and dials in flight as /pools, /calls and /metrics show them, and
percentiles that stay within what actually happened.

Where the upstream's side matters, the upstream is a scripted socket in
this process (a drpc.Conn over the accepted socket), so the test reads the
exact packets the sidecar sends it."""

import json
import os
import re
import socket
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, free_addr
from .test_admin import (calls, get, hold, iso_to_epoch, parse_prometheus, pool, post, samples,
                         wait_until)

ECHO = "/test.Echo/"


# --- a scripted upstream ---------------------------------------------------------


class ScriptedUpstream:
    """A listening socket on loopback; accept() gives a drpc.Conn over the
    sidecar's connection, used to read what the sidecar sends and to answer."""

    def __init__(self, backlog=8):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(backlog)
        self.addr = "127.0.0.1:%d" % self.srv.getsockname()[1]
        self.conns = []

    def accept(self, timeout=5.0):
        self.srv.settimeout(timeout * SCALE)
        s, _ = self.srv.accept()
        c = drpc.Conn(sock=s, timeout=5.0 * SCALE)
        c.addr = "sidecar"
        self.conns.append(c)
        return c

    def close(self):
        for c in self.conns:
            c.close()
        self.srv.close()


@pytest.fixture
def scripted():
    ups = []

    def make(**kw):
        u = ScriptedUpstream(**kw)
        ups.append(u)
        return u

    yield make
    for u in ups:
        u.close()


def read_until(up, kind):
    """Packets from the sidecar up to and including the first of `kind`."""
    got = []
    while True:
        p = up.read_packet()
        got.append(p)
        if p.kind == kind:
            return got


def answer(up, stream, data):
    up.send_raw(drpc.encode_frame(drpc.KIND_MESSAGE, stream, 1, data)
                + drpc.encode_frame(drpc.KIND_CLOSE_SEND, stream, 2))


# --- POST /calls/{id}/cancel: the upstream's side ------------------------------------


def test_cancel_reaches_the_upstream_as_a_cancel_packet(scripted, sidecar):
    """admin/README.md: "the client gets Error 1010, the upstream a Cancel". With the
    default cancel "soft" the Cancel is a packet on the stream and the
    connection carries the next call; with "close" the connection closes.
    (The call here has had a reply: one whose upstream never answered
    closes the connection either way, see test_reverse_hostile.py.)"""
    up = scripted()
    sc = sidecar(basic_config(up.addr, max_conns=1))
    c = sc.conn()
    st = c.new_stream(ECHO + "Bidi")
    st.send(b"first")
    u = up.accept()
    invoke = [p for p in read_until(u, drpc.KIND_MESSAGE) if p.kind == drpc.KIND_INVOKE][0]
    assert invoke.data == (ECHO + "Bidi").encode()
    u.send_raw(drpc.encode_frame(drpc.KIND_MESSAGE, invoke.stream, 1, b"first"))
    assert st.recv() == b"first"
    x = wait_until(lambda: calls(sc), what="the call")[0]
    assert x["state"] == "active" and x["endpoint"] == up.addr

    r = post(sc, "/calls/%d/cancel" % x["id"])
    assert r.status == 200 and r.json()["cancelled"] is True
    with pytest.raises(drpc.DrpcError) as e:
        st.recv()
    assert e.value.code == 1010
    cancel = u.read_packet()
    assert (cancel.kind, cancel.stream, cancel.control) == (drpc.KIND_CANCEL, invoke.stream, True)
    assert calls(sc) == []

    # the same upstream connection carries the next call (max_conns 1)
    c.start_unary(ECHO + "Unary", b"again")
    nxt = [p for p in read_until(u, drpc.KIND_CLOSE_SEND) if p.kind == drpc.KIND_INVOKE][0]
    assert nxt.stream > invoke.stream
    answer(u, nxt.stream, b"again")
    assert c.finish_unary() == b"again"
    assert pool(sc)["counters"]["dials"] == 1
    c.close()

    # cancel "close": the upstream connection is closed instead
    up2 = scripted()
    sc2 = sidecar(dict(basic_config(up2.addr, max_conns=1, cancel="close"),
                       admin={"address": free_addr()}))
    c2 = sc2.conn()
    c2.start_unary(ECHO + "Sleep", b"5000")
    u2 = up2.accept()
    read_until(u2, drpc.KIND_CLOSE_SEND)
    cid = wait_until(lambda: calls(sc2), what="the call")[0]["id"]
    assert post(sc2, "/calls/%d/cancel" % cid).status == 200
    with pytest.raises(drpc.DrpcError):
        c2.finish_unary()
    with pytest.raises(drpc.ConnectionLost):
        u2.read_packet()
    c2.close()


# --- POST /pools/{name}/drain with calls in flight ------------------------------------


def test_pool_drain_lets_in_flight_calls_finish_and_new_ones_wait_or_fail(testd, sidecar):
    """Drain: idle connections close, an in-flight call finishes normally and
    its connection is closed (not handed out again), a new call waits and
    fails after the pool's wait_timeout_ms; resume dials again."""
    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=2, wait_timeout_ms=800))
    quick = sc.conn()
    assert quick.unary(ECHO + "Unary", b"x") == b"x"
    wait_until(lambda: pool(sc)["conns"]["idle"] == 1, what="1 idle")
    held = hold(sc, 1, 1500)[0]  # takes the idle connection
    # only once it has: otherwise the next call may take it first and the
    # held call reuse it afterwards (seen under valgrind)
    wait_until(lambda: pool(sc)["conns"]["busy"] == 1, what="the held call attached")
    assert quick.unary(ECHO + "Unary", b"y") == b"y"  # dials a second one
    wait_until(lambda: pool(sc)["conns"] == {"total": 2, "idle": 1, "busy": 1, "connecting": 0,
                                             "max": 2}, what="1 idle + 1 busy")

    assert post(sc, "/pools/default/drain").status == 200
    p = pool(sc)
    assert p["draining"] is True
    assert p["conns"] == {"total": 1, "idle": 0, "busy": 1, "connecting": 0, "max": 2}
    assert [x["state"] for x in calls(sc)] == ["half_closed"]  # the call goes on

    # a new call waits, then fails per the pool's wait_timeout_ms
    t0 = time.monotonic()
    with pytest.raises(drpc.DrpcError) as e:
        quick.unary(ECHO + "Unary", b"waits")
    assert e.value.code == 1003, e.value  # wait_timeout
    assert 0.6 < time.monotonic() - t0 < 5 * SCALE

    # the in-flight call ends normally and its connection is not reused
    assert held.finish_unary() == b"slept"
    p = wait_until(lambda: pool(sc)["conns"]["total"] == 0 and pool(sc), what="no connections")
    assert p["counters"]["conns_closed"] == 2 and p["counters"]["calls_ok"] == 3
    assert p["errors"]["wait_timeout"] == 1 and p["counters"]["wait_timeouts"] == 1
    assert p["waiters"] == 0 and calls(sc) == []

    assert post(sc, "/pools/default/resume").status == 200
    assert quick.unary(ECHO + "Unary", b"z") == b"z"
    assert pool(sc)["counters"]["dials"] == 3
    quick.close()
    held.close()


# --- endpoint health and dials in flight -------------------------------------------------


def test_ejected_endpoint_in_pools_and_metrics(sidecar):
    dead = free_addr()  # nothing listens: every dial is refused at once
    sc = sidecar(basic_config(dead, eject_after_failures=2, eject_ms=5000, backoff_base_ms=1,
                              backoff_max_ms=1, wait_timeout_ms=2000))
    codes = []
    with sc.conn() as c:
        for _ in range(3):
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Unary", b"x")
            codes.append(e.value.code)
            time.sleep(0.02)
    assert codes[0] == 1005 and codes[-1] == 1004, codes  # dial_failed, then no_healthy_endpoint
    now = time.time()
    p = pool(sc)
    ep = p["endpoints"][0]
    assert ep["address"] == dead and ep["health"] == "ejected"
    # the third call dialled in panic mode (no healthy endpoint, the last
    # failure older than backoff_base_ms), and the janitor probes it too
    assert ep["consecutive_failures"] >= 3 and ep["dial_failures"] == ep["dials"] >= 3, ep
    assert ep["probes"] >= 1 and ep["readmissions"] == 0, ep
    assert ep["ejections"] == 1 and ep["open_conns"] == 0 and ep["last_error"]
    until = iso_to_epoch(ep["ejected_until"])
    assert now + 3 < until < now + 6, (now, ep["ejected_until"])
    assert p["counters"]["dial_failures"] >= 3 and p["counters"]["panic_dials"] >= 1
    assert p["errors"]["dial_failed"] >= 1 and p["errors"]["no_healthy_endpoint"] >= 1

    fams = parse_prometheus(get(sc, "/metrics").text)
    assert samples(fams, "drpc_sidecar_pool_endpoint_healthy", pool="default")[0][1] == 0
    assert samples(fams, "drpc_sidecar_pool_endpoint_ejections_total", pool="default")[0][1] == 1
    assert samples(fams, "drpc_sidecar_pool_endpoint_consecutive_failures",
                   pool="default")[0][1] >= 3


def test_resolved_addresses_of_a_host_name_and_a_literal(testd, sidecar):
    """A host-name endpoint shows what the resolver answered, with ports, and
    which of those addresses the last dial went to; a literal shows itself."""
    up = testd()
    port = up.addr.rsplit(":", 1)[1]
    cfg = basic_config("localhost:" + port)
    cfg["pools"].append({"name": "lit", "endpoints": [up.addr]})
    cfg["routes"] = [{"pool": "lit", "match": {"rpc_prefix": "/lit."}}, {"pool": "default"}]
    sc = sidecar(cfg)
    p = pool(sc)
    ep = p["endpoints"][0]
    assert ep["address"] == "localhost:" + port
    assert ep["resolved_addresses"] == [] and ep["resolved"] == ""  # nothing dialled yet
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
    want = socket.getaddrinfo("localhost", int(port), 0, socket.SOCK_STREAM)
    shown = ["[%s]:%s" % (a[4][0], port) if a[0] == socket.AF_INET6 else "%s:%s" % (a[4][0], port)
             for a in want]
    ep = pool(sc)["endpoints"][0]
    assert ep["resolved_addresses"] == shown[:8], (ep, shown)
    assert ep["resolved"] in ep["resolved_addresses"]
    lit = pool(sc, "lit")["endpoints"][0]
    assert lit["resolved_addresses"] == [up.addr] and lit["resolved"] == up.addr


def test_a_drained_pool_does_not_make_the_process_unready(sidecar):
    """min_idle unmet keeps /readyz at 503, unless the operator drained that
    pool on purpose: draining one pool must not take the pod out of service."""
    sc = sidecar(basic_config(free_addr(), min_idle=1))  # nothing listens there
    r = get(sc, "/readyz")
    assert r.status == 503 and "pool default has 0 of min_idle 1" in r.json()["reason"]
    assert post(sc, "/pools/default/drain").status == 200
    r = get(sc, "/readyz")
    assert r.status == 200 and r.json() == {"status": "ready"}
    assert post(sc, "/pools/default/resume").status == 200
    assert get(sc, "/readyz").status == 503


def test_a_connection_to_an_ejected_endpoint_is_not_reused(scripted, sidecar):
    """Once an endpoint is ejected it gets no calls, not even over a
    connection opened before it failed: that one is closed when its call ends."""
    up = scripted()
    sc = sidecar(basic_config(up.addr, max_conns=2, min_idle=1, eject_after_failures=1,
                              eject_ms=10000, wait_timeout_ms=2000))
    u = up.accept()  # the min_idle connection
    wait_until(lambda: pool(sc)["conns"]["idle"] == 1, what="the idle connection")
    up.srv.close()  # the endpoint now refuses new connections; u stays open
    c1 = sc.conn()
    c1.start_unary(ECHO + "Unary", b"one")
    invoke = [p for p in read_until(u, drpc.KIND_CLOSE_SEND) if p.kind == drpc.KIND_INVOKE][0]
    c2 = sc.conn()
    c2.start_unary(ECHO + "Unary", b"two")  # needs a dial: refused, endpoint ejected
    wait_until(lambda: pool(sc)["endpoints"][0]["health"] == "ejected", what="the ejection")
    assert pool(sc)["waiters"] == 1  # c2 waits for the busy connection
    answer(u, invoke.stream, b"one")
    assert c1.finish_unary() == b"one"
    assert not u.is_open(wait=2.0 * SCALE)  # closed, not handed to c2 or kept idle
    with pytest.raises(drpc.DrpcError) as e:
        c2.finish_unary()
    assert e.value.code == 1004, e.value  # no_healthy_endpoint, at once
    p = pool(sc)
    assert p["conns"]["total"] == 0 and p["endpoints"][0]["open_conns"] == 0, p
    c1.close()
    c2.close()


def test_a_call_behind_a_slow_dial_is_dialing(scripted, sidecar):
    """An upstream whose accept queue is full drops the SYN, so the dial
    hangs: /calls says "dialing", /pools counts the connection as connecting."""
    up = scripted(backlog=0)
    fillers = []
    for _ in range(4):  # fill the accept queue; later connects hang
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", int(up.addr.rsplit(":", 1)[1])))
        fillers.append(s)
    try:
        sc = sidecar(basic_config(up.addr, dial_timeout_ms=20000, wait_timeout_ms=20000))
        c = sc.conn()
        c.start_unary(ECHO + "Unary", b"x")
        x = wait_until(lambda: calls(sc), what="the call")[0]
        if x["state"] != "dialing":
            pytest.skip("the kernel completed the dial; cannot hold one open here")
        assert x["upstream_id"] is None and x["endpoint"] is None
        p = pool(sc)
        assert p["conns"]["connecting"] == 1 and p["conns"]["total"] == 1 and p["waiters"] == 1
        fams = parse_prometheus(get(sc, "/metrics").text)
        assert samples(fams, "drpc_sidecar_pool_connections_connecting", pool="default")[0][1] == 1
        c.close()
    finally:
        for s in fillers:
            s.close()


# --- percentiles -------------------------------------------------------------------------


def test_percentiles_stay_within_what_happened(testd, sidecar):
    """A 600 ms call falls in the (0.5 s, 1 s] bucket; its p99 must not be
    reported as ~995 ms. And the JSON prints the milliseconds plainly."""
    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=1))
    with sc.conn() as c:
        t0 = time.monotonic()
        assert c.unary(ECHO + "Sleep", b"600") == b"slept"
        took_ms = (time.monotonic() - t0) * 1000
    p = wait_until(lambda: pool(sc)["call_ms"]["count"] == 1 and pool(sc), what="1 call counted")
    assert 600 <= p["call_ms"]["p50"] <= p["call_ms"]["p99"] <= took_ms, (p["call_ms"], took_ms)
    assert p["wait_ms"]["p99"] <= took_ms
    # whole microseconds, printed without binary noise (0.025, not 0.025000000000000001)
    text = get(sc, "/pools/default").text
    for m in re.finditer(r'"p(50|90|99)": ([0-9.eE+-]+)', text):
        assert re.fullmatch(r"\d+(\.\d{1,3})?", m.group(2)), m.group(0)
    assert json.loads(text)["name"] == "default"


# --- admin/README.md documents the API ---------------------------------------------------------


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def json_keys(doc, out=None):
    out = set() if out is None else out
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(k)
            json_keys(v, out)
    elif isinstance(doc, list):
        for v in doc:
            json_keys(v, out)
    return out


def test_readme_documents_every_route_and_field(testd, sidecar):
    """Issue #4: field names are documented in admin/README.md with an example
    for each endpoint. Every row of the dispatch table is in its table, and
    every field the live JSON views answer with appears in it."""
    with open(REPO + "/admin/routes.c") as f:
        table = re.findall(r'\{"(GET|POST)", "([^"]+)", h_\w+\}', f.read())
    with open(REPO + "/admin/README.md") as f:
        readme = f.read()
    assert len(table) >= 15
    for method, pattern in table:
        path = pattern.replace("/pools/*/", "/pools/{name}/").replace("/calls/*/", "/calls/{id}/")
        path = path.replace("/pools/*", "/pools/{name}")
        shown = "`%s %s" % (method, path)
        alt = path.rsplit("/", 1)[-1]  # "…/resume" in the drain row
        assert shown in readme or ("`…/%s`" % alt) in readme, shown

    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=1, wait_timeout_ms=10000))
    held = hold(sc, 2, 2000, metadata={"trace": "t"})
    wait_until(lambda: len(calls(sc)) == 2, what="2 calls")
    keys = set()
    for path in ("/pools", "/calls", "/clients", "/stats", "/healthz", "/readyz"):
        keys |= json_keys(get(sc, path).json())
    doc = get(sc, "/config").json()
    keys |= {k for k in doc if k != "config"}
    for c in held:
        c.close()
    keys -= {"trace"}  # a metadata key of this test, not a field
    missing = sorted(k for k in keys if not re.search(r'"%s"' % re.escape(k), readme))
    assert not missing, "fields not in admin/README.md: %s" % missing
