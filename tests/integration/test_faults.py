"""Faults and hostile peers, each bounded in time and count: upstreams that
send garbage, break id rules, stall or vanish; dials that hang; slow
readers; connection floods. Each call fails with the right cause or
succeeds; the sidecar stays up and other clients never notice.

Every test here runs its fault under 32 clients of background load and ends
with fault_check's finish() (fault_checks.py): the load's calls succeeded
(or failed with the codes the test allows) within their pool's deadline,
the sidecar serves a new connection, /pools agrees with each upstream's own
count of open connections, and RSS is back near its baseline."""

import resource
import socket
import threading
import time

import pytest

from . import drpc
from .fault_checks import open_testd_conns, rss_kib
from .procs import INSTRUMENTED, basic_config, free_addr

ECHO = "/test.Echo/"
F = drpc.encode_frame


class RawUpstream:
    """Accepts connections and answers every request with handler(sock,
    request_bytes): a hostile upstream no real DRPC peer can imitate.
    open_conns() counts the connections whose peer has not hung up yet.
    Register it with procs.peer() so it outlives the sidecar."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.handler = handler
        self.conns = []
        self.ended = 0  # connections that saw EOF or an error
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                self.handler(s, data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.ended += 1

    def open_conns(self):
        with self.lock:
            return len(self.conns) - self.ended

    def close(self):
        self.closed = True
        self.sock.close()
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass


def with_pool(cfg, name, addr, **pool):
    """cfg plus pool `name` in front of addr, which gets the rpcs under
    "/NAME." (the fault); everything else still goes to `default` (the load)."""
    p = {"name": name, "endpoints": [addr]}
    p.update(pool)
    cfg["pools"].append(p)
    cfg["routes"] = [{"match": {"rpc_prefix": "/%s." % name}, "pool": name},
                     {"pool": "default"}]
    return cfg


def sid_of(request):
    """Stream id of the first frame of a request (ids < 128 in these tests)."""
    return request[1]


@pytest.mark.parametrize("reply,cause", [
    (lambda sid: b"\xff" * 16, 1012),                                       # garbage
    (lambda sid: F(drpc.KIND_MESSAGE, sid, 5, b"x", done=False) +
     F(drpc.KIND_MESSAGE, sid, 2, b"y"), 1012),                    # id goes backwards
    (lambda sid: F(drpc.KIND_INVOKE, sid, 1, b"/x/y"), 1012),     # invoke from a server
    (lambda sid: bytes([0x05, sid, 0x01]) + b"\xff\xff\xff\xff\x0f", 1008),  # 4 GiB frame
    (lambda sid: F(drpc.KIND_MESSAGE, sid + 5, 1, b"x"), 1012),   # unopened stream
])
def test_hostile_upstream_fails_only_that_call(procs, pyserver, sidecar, fault_check,
                                              reply, cause):
    bad = procs.peer(RawUpstream(lambda s, req: s.sendall(reply(sid_of(req)))))
    up = pyserver()
    sc = sidecar(with_pool(basic_config(up.addr), "bad", bad.addr, max_conns=2))
    check = fault_check(sc, {"default": up.open_conns, "bad": bad.open_conns})
    with sc.conn() as c, sc.conn() as other:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/bad.Svc/Call", b"x")
        assert e.value.code == cause
        assert c.unary(ECHO + "Unary", b"same client") == b"same client"
        assert other.unary(ECHO + "Unary", b"other") == b"other"
    check.finish()  # also: the "bad" pool and the RawUpstream both count 0 open
    # the broken connection was not returned to the pool
    time.sleep(0.2)
    assert all(s.fileno() == -1 or _closed(s) for s in bad.conns)


def _closed(s):
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_upstream_closes_halfway_through_a_frame(procs, pyserver, sidecar, fault_check):
    bad = procs.peer(RawUpstream(lambda s, req: (s.sendall(F(drpc.KIND_MESSAGE, sid_of(req), 1,
                                                              b"y" * 100)[:50]),
                                                 s.shutdown(socket.SHUT_RDWR))))
    up = pyserver()
    sc = sidecar(with_pool(basic_config(up.addr), "bad", bad.addr))
    check = fault_check(sc, {"default": up.open_conns, "bad": bad.open_conns})
    with sc.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/bad.Svc/Call", b"x")
        assert e.value.code == 1006
        assert c.unary(ECHO + "Unary", b"same client") == b"same client"
    check.finish()


def test_silent_upstream_hits_call_timeout(procs, pyserver, sidecar, fault_check):
    silent = procs.peer(RawUpstream(lambda s, req: None))  # reads, never answers
    up = pyserver()
    sc = sidecar(with_pool(basic_config(up.addr), "silent", silent.addr, call_timeout_ms=300))
    check = fault_check(sc, {"default": up.open_conns, "silent": silent.open_conns})
    with sc.conn() as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/silent.Svc/Call", b"x")
        assert e.value.code == 1007
        assert time.time() - t0 < 1.5
    check.finish()  # soft cancel (the default) keeps the silent connection: both count it


def test_dial_to_dead_port_fails_fast(pyserver, sidecar, fault_check):
    up = pyserver()
    sc = sidecar(with_pool(basic_config(up.addr), "dead", free_addr()))  # nothing listens
    check = fault_check(sc, {"default": up.open_conns, "dead": lambda: 0})
    with sc.conn() as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/dead.Svc/Call", b"x")
        assert e.value.code == 1005
        assert "connection refused" in e.value.message
        assert time.time() - t0 < 1
    check.finish()


def test_dial_that_hangs_hits_dial_timeout(pyserver, sidecar, fault_check):
    # A listener whose backlog is full and that never accepts: SYNs go unanswered.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    addr = "127.0.0.1:%d" % hole.getsockname()[1]
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(("127.0.0.1", hole.getsockname()[1]))
        except BlockingIOError:
            pass
        fillers.append(f)
    try:
        up = pyserver()
        sc = sidecar(with_pool(basic_config(up.addr), "hole", addr, dial_timeout_ms=300,
                               wait_timeout_ms=5000))
        # the hole never accepts: its own count of open connections is 0
        check = fault_check(sc, {"default": up.open_conns, "hole": lambda: 0})
        with sc.conn() as c:
            t0 = time.time()
            with pytest.raises(drpc.DrpcError) as e:
                c.unary("/hole.Svc/Call", b"x")
            assert e.value.code == 1005
            assert "dial timeout" in e.value.message
            assert time.time() - t0 < 2
        check.finish()
    finally:
        for f in fillers:
            f.close()
        hole.close()


def test_slow_reader_is_back_pressured(pyserver, sidecar, fault_check):
    up = pyserver()
    cfg = basic_config(up.addr)
    cfg["call_buffer_bytes"] = 256 * 1024
    sc = sidecar(cfg)
    check = fault_check(sc, {"default": up.open_conns})
    base = rss_kib(sc.pid)  # with the load running
    slow = sc.conn()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # ask for 100 MB and read almost nothing for 3 seconds
    slow.start_unary(ECHO + "ServerStream", b"100 1048576")
    peak = 0
    with sc.conn() as other:
        for _ in range(15):
            t0 = time.time()
            assert other.unary(ECHO + "Unary", b"fast") == b"fast"
            assert time.time() - t0 < 1.5
            slow.sock.recv(1024)
            peak = max(peak, check.sample_rss())
            time.sleep(0.2)
    grown = peak - base
    # The call's buffering stays near call_buffer_bytes (+ one read and one
    # frame); sanitizer builds keep freed memory in quarantine, hence more room.
    limit = 32 * 1024 if INSTRUMENTED else 4 * 1024
    assert grown < limit, "sidecar grew by %d KiB under a slow reader" % grown
    slow.close()
    check.finish()


def _flood_target(pyserver, sidecar, fault_check, n, limit):
    """A sidecar with max_clients = limit under the standard load (whose 32
    clients count toward it), with room for n more sockets in this process;
    returns (sidecar, check, RSS baseline in KiB)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n + 1000:
        pytest.skip("RLIMIT_NOFILE hard limit %d too low" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 1000), hard))
    up = pyserver()
    cfg = basic_config(up.addr)
    cfg["max_clients"] = limit
    sc = sidecar(cfg)
    time.sleep(0.2)
    check = fault_check(sc, {"default": up.open_conns})
    return sc, check, rss_kib(sc.pid)


def _flood(sc, n, socks):
    """Opens n connections (kept in socks for the caller to close) and returns
    how many the sidecar kept open: the rest were closed at accept."""
    host, port = sc.addr.rsplit(":", 1)
    for _ in range(n):
        socks.append(socket.create_connection((host, int(port))))
    time.sleep(1.5)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


@pytest.mark.timeout_s(60)
def test_connection_flood_with_max_clients(pyserver, sidecar, fault_check):
    n, limit = 3000, 1000
    sc, check, base = _flood_target(pyserver, sidecar, fault_check, n, limit)
    socks = []
    try:
        alive = _flood(sc, n, socks)
        assert alive + check.clients == limit, alive
        peak = check.sample_rss()
        rss_limit = 64 * 1024 if INSTRUMENTED else 8 * 1024
        assert peak - base < rss_limit, "RSS grew %d KiB for %d clients" % (peak - base, limit)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"after the flood") == b"after the flood"
    print("flood: %d connections, %d served, RSS %d -> %d KiB" % (n, limit, base, peak))
    check.finish()


@pytest.mark.timeout_s(60)
def test_upstream_sigkilled_under_load_then_restarted(testd, sidecar, fault_check):
    """32 clients of mixed unary and streaming calls; the upstream process is
    SIGKILLed mid-call and restarted a second later. Every call succeeds or
    fails with a documented cause; the endpoint is ejected, then readmitted."""
    addr = free_addr()
    ups = [testd(addr)]  # the one running now: the check counts its connections
    sc = sidecar(basic_config(addr, max_conns=8, eject_after_failures=2, eject_ms=500,
                              backoff_base_ms=20, backoff_max_ms=100, wait_timeout_ms=3000))
    base = rss_kib(sc.pid)
    # calls fail only as no_healthy_endpoint, dial_failed or upstream_lost,
    # and none waits past wait_timeout_ms (3 s) plus the margin
    check = fault_check(sc, {"default": lambda: open_testd_conns(ups[-1])},
                        allowed=(1004, 1005, 1006), deadline_s=3.0)
    time.sleep(1.0)
    ups[0].kill()
    ejected = False
    deadline = time.time() + 1.0
    while time.time() < deadline:
        ep = sc.admin_get("/pools/default")["endpoints"][0]
        ejected |= ep["health"] == "ejected"
        time.sleep(0.05)
    ups.append(testd(addr))
    before = check.load.calls
    time.sleep(2.0)
    result = check.finish()
    causes = result["errors"]
    assert causes.get(1006, 0) >= 1, causes  # calls in flight at the kill
    assert ejected
    assert result["calls"] > before  # calls succeed again once it is back
    ep = sc.admin_get("/pools/default")["endpoints"][0]
    assert ep["ejections"] >= 1
    assert rss_kib(sc.pid) - base < (64 if INSTRUMENTED else 16) * 1024
    print("kill test: ok=%d errors by code=%s" % (result["calls"], causes))


@pytest.mark.timeout_s(90)
def test_flood_of_10000_connections(pyserver, sidecar, fault_check):
    n, limit = 10000, 2000
    sc, check, base = _flood_target(pyserver, sidecar, fault_check, n, limit)
    socks = []
    try:
        alive = _flood(sc, n, socks)
        peak = check.sample_rss()
        assert alive + check.clients == limit, alive
        with sc.conn() as c:
            pass  # over the limit: closed at accept
    finally:
        for s in socks:
            s.close()
    time.sleep(1.5)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"served again") == b"served again"
    after = rss_kib(sc.pid)
    print("flood: %d connections, %d served, RSS %d -> peak %d -> %d KiB" %
          (n, limit, base, peak, after))
    assert peak - base < (64 if INSTRUMENTED else 16) * 1024
    if not INSTRUMENTED:  # ASan's quarantine keeps freed memory
        assert after - base < 1024, "RSS did not come back: %d -> %d KiB" % (base, after)
    check.finish()
