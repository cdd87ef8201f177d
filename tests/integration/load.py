"""Background load for fault tests: a fault must touch only the call it hits,
so these clients keep making calls through the sidecar meanwhile. Every
call must succeed, or fail with one of the DRPC codes the test allows (a
fault that legitimately hits the load, such as its upstream being killed).
Each call is timed, so a test can bound how long any client waited."""

import threading
import time

from . import drpc

ECHO = "/test.Echo/"
KINDS = ("server_stream", "bidi", "unary")  # client i makes calls of KINDS[i % 3]


class BackgroundLoad:
    """n clients, each on its own connection, making unary (i%3==2), server
    stream (i%3==0) or bidi (i%3==1) calls until stop().

    allowed: DRPC error codes a call may fail with (counted in `errors`,
    and the client goes on); any other failure ends that client and is
    recorded in `failures`.
    Results: calls (succeeded), errors {code: count}, failures [repr],
    max_latency (s) and slowest (a description of that call)."""

    def __init__(self, addr, n=32, allowed=()):
        self.addr = addr
        self.n = n
        self.allowed = frozenset(allowed)
        self.stop_event = threading.Event()
        self.failures = []
        self.errors = {}
        self.calls = 0
        self.max_latency = 0.0
        self.slowest = None
        self.started = 0  # clients that finished their first call
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _call(self, c, i):
        kind = KINDS[i % 3]
        if kind == "server_stream":
            assert len(c.server_stream(ECHO + "ServerStream", b"4 512")) == 4
        elif kind == "bidi":
            assert c.bidi(ECHO + "Bidi", [b"a", b"b"]) == [b"a", b"b"]
        else:
            assert c.unary(ECHO + "Unary", b"bg%d" % i) == b"bg%d" % i
        return kind

    def _record(self, i, t0, outcome):
        took = time.monotonic() - t0
        with self.lock:
            if took > self.max_latency:
                self.max_latency = took
                self.slowest = "client %d %s: %s after %.3fs" % (i, KINDS[i % 3], outcome, took)

    def _run(self, i):
        first = True
        try:
            with drpc.Conn(self.addr) as c:
                while not self.stop_event.is_set():
                    t0 = time.monotonic()
                    try:
                        self._call(c, i)
                    except drpc.DrpcError as e:
                        if e.code not in self.allowed:
                            raise
                        self._record(i, t0, "error %d" % e.code)
                        with self.lock:
                            self.errors[e.code] = self.errors.get(e.code, 0) + 1
                    else:
                        self._record(i, t0, "ok")
                        with self.lock:
                            self.calls += 1
                    if first:
                        first = False
                        with self.lock:
                            self.started += 1
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            self.failures.append("client %d (%s): %r" % (i, KINDS[i % 3], e))

    def wait_started(self, timeout):
        """Waits until every client has finished one call (or one has
        failed); raises AssertionError when that takes over timeout s."""
        deadline = time.monotonic() + timeout
        while self.started < self.n and not self.failures:
            assert time.monotonic() < deadline, (
                "only %d of %d load clients finished a first call within %.1fs"
                % (self.started, self.n, timeout))
            time.sleep(0.01)
        assert not self.failures, self.failures[:3]

    def stop(self):
        """Stops the clients and asserts none of their calls failed (other
        than with an allowed code); idempotent."""
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, "%d load clients still running 30 s after stop()" % len(alive)
        assert not self.failures, self.failures[:3]
        assert self.calls > 0
