"""Availability: an upstream restart costs its downtime and no more.

Each test runs real processes (the sidecar, drpc-testd or the Python
upstream) and prints its figures on one "figures:" line (pytest -s shows
them): time from the upstream accepting again to the first successful
call, failed calls by code, dials made while the upstream was down."""

import threading
import time
import urllib.request

from . import drpc
from .procs import SCALE, basic_config, free_addr
from .test_faults import RawUpstream

ECHO = "/test.Echo/"


class TimedLoad:
    """n clients making unary calls in a loop, each on its own connection;
    every call is recorded as (start, end, code): code None for success,
    the DRPC code of an error, or "lost" when the connection broke. A
    client reconnects after a lost connection. pause_s paces each client."""

    def __init__(self, addr, n=32, pause_s=0.0, rpc=ECHO + "Unary"):
        self.addr, self.rpc, self.pause_s = addr, rpc, pause_s
        self.records = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        c = None
        while not self.stop_event.is_set():
            if c is None:
                c = drpc.Conn(self.addr, timeout=10 * SCALE)
            t0 = time.monotonic()
            code = None
            try:
                assert c.unary(self.rpc, b"c%d" % i) == b"c%d" % i
            except drpc.DrpcError as e:
                code = e.code
            except (drpc.ConnectionLost, OSError):
                code = "lost"
                c.close()
                c = None
            with self.lock:
                self.records.append((t0, time.monotonic(), code))
            if self.pause_s:
                time.sleep(self.pause_s)
        if c is not None:
            c.close()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads)
        return list(self.records)


def failures(records):
    out = {}
    for _, _, code in records:
        if code is not None:
            out[code] = out.get(code, 0) + 1
    return out


def pool_view(sc, name="default"):
    return sc.admin_get("/pools/" + name)


def default_pool(addr):
    """basic_config with the pool's own defaults (no max_conns override)."""
    cfg = basic_config(addr)
    del cfg["pools"][0]["max_conns"]
    return cfg


def test_single_endpoint_restart_costs_its_downtime_only(testd, sidecar):
    """32 clients, default settings, the only upstream SIGKILLed and back
    1 s later: calls fail only while it is down and for at most 0.3 s after
    it accepts again, none waits past wait_timeout_ms meanwhile, and the
    sidecar does not dial in a hot loop while it is down."""
    addr = free_addr()
    up = testd(addr)
    sc = sidecar(default_pool(addr))
    load = TimedLoad(sc.addr, n=32)
    time.sleep(1.0)
    dials_before = pool_view(sc)["counters"]["dials"]
    t_kill = time.monotonic()
    up.kill()
    time.sleep(1.0)
    dials_down = pool_view(sc)["counters"]["dials"] - dials_before
    testd(addr)  # returns once it listens
    t_up = time.monotonic()
    time.sleep(1.5)
    records = load.stop()
    late = [r for r in records if r[2] is not None and r[1] > t_up + 0.3]
    first_ok = min((r[1] for r in records if r[2] is None and r[0] >= t_kill + 0.05 and
                    r[1] > t_up), default=None)
    longest = max(r[1] - r[0] for r in records)
    recover = first_ok - t_up if first_ok else None
    print("figures: restart: recovered %.3fs after accepting; failed %s of %d calls; "
          "dials while down (1 s) %d; longest call %.3fs"
          % (recover if recover is not None else -1, failures(records), len(records),
             dials_down, longest))
    assert not late, "calls failed more than 0.3 s after the upstream accepted: %r" % late[:5]
    assert recover is not None and recover <= 0.3
    assert longest < 5.0  # wait_timeout_ms
    # back-off holds: at most one dial per backoff_base_ms (100 ms), plus
    # the dials of the calls that found the pool empty at the kill
    assert dials_down <= 16 + 12, dials_down
    assert set(failures(records)) <= {1004, 1005, 1006}, failures(records)


def test_an_upstream_closing_idle_connections_never_fails_a_call(pyserver, sidecar):
    """The upstream shuts down every connection that is between calls every
    100-300 ms (a Go server shutting down gracefully, an idle timeout),
    while calls arrive at the same rhythm: no call fails. A connection
    found closed at checkout is skipped; one lost before its peer can have
    read the call is retried."""
    up = pyserver()
    up.close_idle_every(100, 300)
    sc = sidecar(default_pool(up.addr))
    load = TimedLoad(sc.addr, n=16, pause_s=0.1)
    time.sleep(6.0)
    records = load.stop()
    c = pool_view(sc)["counters"]
    print("figures: idle-close rhythm: %d calls, failed %s; upstream idle closes %d; "
          "calls retried %d"
          % (len(records), failures(records), up.idle_closes, c.get("calls_retried", -1)))
    assert up.idle_closes >= 10
    assert len(records) >= 60
    assert not failures(records), failures(records)


def rolling_restart(testd, sidecar, retry):
    """Two endpoints under 32 clients: kill A, restart it, kill B, restart
    it. Returns the records and the pool view."""
    a, b = free_addr(), free_addr()
    ups = {a: testd(a), b: testd(b)}
    cfg = default_pool(a)
    cfg["pools"][0]["endpoints"] = [a, b]
    if retry:
        cfg["routes"][0]["retry"] = {"unanswered": True, "max_attempts": 2}
    sc = sidecar(cfg)
    load = TimedLoad(sc.addr, n=32)
    time.sleep(0.7)
    for addr in (a, b):
        ups[addr].kill()
        time.sleep(0.7)
        ups[addr] = testd(addr)
        time.sleep(0.7)
    return load.stop(), pool_view(sc)


def test_rolling_restart_with_retry_unanswered_fails_no_call(testd, sidecar):
    records, p = rolling_restart(testd, sidecar, retry=True)
    c = p["counters"]
    print("figures: rolling restart, retry.unanswered: failed %s of %d calls; retried "
          "unanswered=%d in all=%d over_budget=%d"
          % (failures(records), len(records), c["calls_retried_unanswered"],
             c["calls_retried"], c["retries_over_budget"]))
    assert not failures(records), failures(records)


def test_rolling_restart_without_opt_in_fails_only_calls_in_flight(testd, sidecar):
    records, p = rolling_restart(testd, sidecar, retry=False)
    f = failures(records)
    print("figures: rolling restart, no opt-in: failed %s of %d calls; retried unanswered=%d "
          "in all=%d"
          % (f, len(records), p["counters"]["calls_retried_unanswered"],
             p["counters"]["calls_retried"]))
    assert set(f) <= {1006}, f
    assert f.get(1006, 0) <= 2 * 32  # at most the calls in flight at each kill
    assert p["counters"]["calls_retried_unanswered"] == 0


def test_retry_budget_holds_under_an_upstream_that_drops_calls(pyserver, sidecar):
    """Every call to /test.Echo/Abort loses its connection before a reply
    byte; the route retries unanswered calls up to 10 attempts, but the
    pool's budget keeps retries to 20% of its calls per second (at least
    3 per second): most calls fail with 1006 instead of storming."""
    up = pyserver()
    cfg = default_pool(up.addr)
    cfg["routes"][0]["retry"] = {"unanswered": True, "max_attempts": 10}
    sc = sidecar(cfg)
    calls, errors = 0, {}
    t0 = time.monotonic()
    with sc.conn() as c:
        while time.monotonic() - t0 < 2.0:
            calls += 1
            try:
                c.unary(ECHO + "Abort", b"0")
            except drpc.DrpcError as e:
                errors[e.code] = errors.get(e.code, 0) + 1
    took = time.monotonic() - t0
    cnt = pool_view(sc)["counters"]
    retried = cnt["calls_retried_unanswered"]
    print("figures: retry budget: %d calls in %.1fs, failed %s; retried %d, over budget %d"
          % (calls, took, errors, retried, cnt["retries_over_budget"]))
    assert errors.get(1006, 0) >= calls * 0.5
    assert cnt["retries_over_budget"] >= 1
    assert retried <= 0.2 * cnt["calls"] + 3 * (took + 2) + 2, (retried, cnt["calls"])


def test_a_refused_dial_sends_the_call_to_another_endpoint(pyserver, sidecar):
    """Safe retries, dial refused: with one endpoint refusing, every call is
    served by the other, none fails (the dial that was refused never
    carried a byte of the call)."""
    dead = free_addr()
    cfg = default_pool(dead)
    cfg["pools"][0]["endpoints"] = [dead, pyserver().addr]
    cfg["pools"][0]["max_conns"] = 1  # every call after the first needs the one connection
    sc = sidecar(cfg)
    with sc.conn() as c:
        for i in range(20):
            assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
    ep = pool_view(sc)["endpoints"][0]
    assert ep["dial_failures"] >= 1, ep


class CheckedUpstream(RawUpstream):
    """A DRPC upstream whose answers the test switches: mode "ok" echoes
    each request, "error" answers every call with an Error, "silent"
    accepts and reads but never answers (a blackhole), "drop_once" closes
    the connection of the first call without a reply byte. Records the
    request messages it received. Register with procs.peer()."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.messages = []
        super().__init__(None)

    def _serve(self, s):
        dec = drpc.FrameDecoder()
        msg = {}
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                for f in dec.feed(data):
                    if f.kind == drpc.KIND_MESSAGE:
                        msg[f.stream] = f.data
                        self.messages.append(f.data)
                    if f.kind != drpc.KIND_CLOSE_SEND or self.mode == "silent":
                        continue
                    if self.mode == "drop_once":  # lose this call, serve the next ones
                        self.mode = "ok"
                        s.close()
                        return
                    if self.mode == "error":
                        s.sendall(drpc.encode_frame(drpc.KIND_ERROR, f.stream, 1,
                                                    drpc.encode_error(13, "not serving")))
                    else:
                        s.sendall(drpc.encode_frame(drpc.KIND_MESSAGE, f.stream, 1,
                                                    msg.get(f.stream, b"")) +
                                  drpc.encode_frame(drpc.KIND_CLOSE_SEND, f.stream, 2))
        except OSError:
            pass


def endpoint_views(sc):
    return {e["address"]: e for e in pool_view(sc)["endpoints"]}


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)


def test_health_check_rpc_keeps_calls_off_an_endpoint_that_fails_it(procs, pyserver, sidecar):
    """One endpoint accepts connections but fails the check RPC: it is
    marked unhealthy before any call is routed, and never gets one."""
    bad = procs.peer(CheckedUpstream("error"))
    good = pyserver()
    cfg = default_pool(bad.addr)
    cfg["pools"][0]["endpoints"] = [bad.addr, good.addr]
    cfg["pools"][0]["health_check"] = {"interval_ms": 100, "rpc": ECHO + "Unary",
                                       "request": "ping"}
    sc = sidecar(cfg)
    eps = wait_for(lambda: (lambda v: v if v[bad.addr]["health_check"]["last_at"] and
                            v[good.addr]["health_check"]["last_at"] else None)(endpoint_views(sc)),
                   5, "the first checks")
    assert eps[bad.addr]["health"] == "unhealthy", eps[bad.addr]
    assert "error code=13" in eps[bad.addr]["health_check"]["last_result"]
    assert eps[good.addr]["health"] == "healthy", eps[good.addr]
    assert eps[good.addr]["health_check"]["state"] == "healthy"
    with sc.conn() as c:
        for i in range(20):
            assert c.unary(ECHO + "Unary", b"call%d" % i) == b"call%d" % i
    time.sleep(0.3)
    assert set(bad.messages) == {b"ping"}, bad.messages[:5]  # checks only, never a call
    eps = endpoint_views(sc)
    assert eps[bad.addr]["health_checks"] >= 2 and eps[bad.addr]["health_check_failures"] >= 2
    assert eps[bad.addr]["health_check"]["consecutive_failures"] >= 2
    assert eps[good.addr]["health_check"]["consecutive_successes"] >= 2
    metrics = urllib.request.urlopen("http://%s/metrics" % sc.admin, timeout=5).read().decode()
    assert "drpc_sidecar_pool_endpoint_health_check_failures_total" in metrics


def test_health_check_ejects_a_blackholed_endpoint_within_its_threshold(procs, sidecar):
    """An endpoint that keeps accepting but stops answering is marked
    unhealthy within unhealthy_threshold x interval_ms (plus the timeout of
    the check that was running), and its idle connections are closed."""
    up = procs.peer(CheckedUpstream("ok"))
    other = procs.peer(CheckedUpstream("ok"))
    cfg = default_pool(up.addr)
    cfg["pools"][0]["endpoints"] = [up.addr, other.addr]
    cfg["pools"][0]["min_idle"] = 2
    cfg["pools"][0]["health_check"] = {"interval_ms": 200, "timeout_ms": 150,
                                       "rpc": ECHO + "Unary", "unhealthy_threshold": 3}
    sc = sidecar(cfg)
    wait_for(lambda: endpoint_views(sc)[up.addr]["health"] == "healthy", 5, "healthy")
    up.mode = "silent"
    t0 = time.monotonic()
    wait_for(lambda: endpoint_views(sc)[up.addr]["health"] == "unhealthy", 5, "unhealthy")
    took = time.monotonic() - t0
    ep = endpoint_views(sc)[up.addr]
    print("figures: blackholed endpoint marked unhealthy after %.3fs (threshold 3 x 200 ms); "
          "last result %r" % (took, ep["health_check"]["last_result"]))
    # the first check to start after the switch starts within interval_ms;
    # from it, three fail interval_ms apart, the last after timeout_ms:
    # 2 x 200 + 150 ms, within unhealthy_threshold x interval_ms
    assert took <= 0.2 + 3 * 0.2 + 0.1, took
    assert ep["health_check"]["last_result"] == "timed out"
    assert ep["open_conns"] == 0 or ep["busy_conns"] == ep["open_conns"]
    with sc.conn() as c:
        for i in range(10):
            assert c.unary(ECHO + "Unary", b"x%d" % i) == b"x%d" % i


def test_a_call_lost_before_its_reply_is_retried_only_with_the_opt_in(procs, sidecar, short_tmp):
    """The upstream reads a whole request, then drops the connection
    without a reply byte: with retry.unanswered the call is served on
    another connection (attempt 2 in the access log), without it the call
    fails with 1006."""
    import json
    import os

    for opt_in in (True, False):
        up = procs.peer(CheckedUpstream("drop_once"))
        cfg = default_pool(up.addr)
        log = os.path.join(short_tmp, "access-%s.log" % opt_in)
        cfg["access_log"] = {"path": log, "format": "json"}
        if opt_in:
            cfg["routes"][0]["retry"] = {"unanswered": True, "max_attempts": 2}
        sc = sidecar(cfg)
        with sc.conn() as c:
            if opt_in:
                assert c.unary(ECHO + "Unary", b"once") == b"once"
            else:
                try:
                    c.unary(ECHO + "Unary", b"once")
                    raise AssertionError("the lost call succeeded without the opt-in")
                except drpc.DrpcError as e:
                    assert e.code == 1006, e
            assert c.unary(ECHO + "Unary", b"next") == b"next"
        cnt = pool_view(sc)["counters"]
        assert cnt["calls_retried_unanswered"] == (1 if opt_in else 0), cnt
        rec = wait_for(lambda: (lambda l: l if len(l) >= 2 else None)(
            [json.loads(x) for x in open(log).read().splitlines() if x.strip()]), 5, "the log")
        assert rec[0]["attempt"] == (2 if opt_in else 1), rec[0]
        assert rec[0]["result"] == ("ok" if opt_in else "upstream_lost"), rec[0]
        assert rec[1]["attempt"] == 1
