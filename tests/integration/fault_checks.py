"""The end-of-fault check every fault test ends with: a fault runs
under concurrent load, and afterwards

  1. every background call succeeded, or failed with a DRPC code the test
     allows (an explicit argument: the codes the fault may cause the load);
  2. no background call took longer than the deadline of the load's pool
     plus a margin;
  3. the sidecar is still running and a fresh connection completes a call;
  4. once idle, each pool's open connections (GET /pools/{name} "conns"
     "total") equal the upstream's own count of open connections;
  5. the sidecar's RSS is back within a stated bound of its baseline.

    check = fault_check(sc, {"default": up.open_conns})   # baseline, load on
    ... the fault, and the test's own assertions ...
    check.finish()                                         # 1-5

The load (load.BackgroundLoad: 32 clients, unary, server stream and bidi)
runs from the fault_check() call until finish(), for at least
min_window_s. Upstream counters: pyserver.TestServer.open_conns, a
RawUpstream's open_conns, or open_testd_conns(proc) for drpc-testd, which
logs "conn N open" and "conn N closed" on stderr.
"""

import re
import time

from . import drpc, load
from .procs import INSTRUMENTED, SCALE

ECHO = "/test.Echo/"

# A background call is tiny (a few hundred bytes over loopback); on a pool
# with no call_timeout_ms this is the stated bound of one call once it holds
# an upstream connection.
CALL_BOUND_S = 1.0
# Added to every deadline: scheduling on 2 shared cores, the Python clients'
# GIL. Sanitizers and valgrind slow the sidecar several times over.
MARGIN_S = (3.0 if INSTRUMENTED else 1.0) * SCALE
# RSS after the fault, against the baseline before the load started: the
# allocator keeps some freed memory (and ASan's quarantine keeps all of it
# for a while), so "near" means within this many KiB.
RSS_BOUND_KIB = (48 if INSTRUMENTED else 4) * 1024
SETTLE_S = 5.0 * SCALE  # how long closes may take to be seen on both sides


def rss_kib(pid):
    """VmRSS of a process in KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_TESTD_OPEN = re.compile(r": conn (\d+) open ")
_TESTD_CLOSED = re.compile(r": conn (\d+) closed ")


def open_testd_conns(proc):
    """Connections drpc-testd has open now, from its stderr log (it prints
    one "conn N open" and one "conn N closed" line per connection)."""
    text = proc.stderr()
    return len(set(_TESTD_OPEN.findall(text)) - set(_TESTD_CLOSED.findall(text)))


class FaultCheck:
    """Brackets one fault; see the module docstring.

    sc          the Sidecar (needs an admin address)
    upstreams   {pool name: callable returning the upstream's open
                connections}; every pool the test touches should be here
    pool        the pool the load's calls go to (its config gives the deadline)
    n           load clients
    allowed     DRPC codes the fault may cause background calls to fail with
    deadline_s  the longest a background call may take before the margin;
                default: the pool's wait_timeout_ms plus its call_timeout_ms
                (or CALL_BOUND_S when it has none)
    min_window_s  the load runs at least this long
    rss_bound_kib how far above the baseline RSS may end
    """

    def __init__(self, sc, upstreams, pool="default", n=32, allowed=(), deadline_s=None,
                 min_window_s=1.0, rss_bound_kib=RSS_BOUND_KIB):
        self.sc = sc
        self.upstreams = dict(upstreams)
        self.pool = pool
        self.allowed = frozenset(allowed)
        self.deadline_s = self._deadline(deadline_s)
        self.min_window_s = min_window_s
        self.rss_bound_kib = rss_bound_kib
        self.rss_base = rss_kib(sc.pid)
        self.rss_peak = self.rss_base
        self.t0 = time.monotonic()
        self.load = load.BackgroundLoad(sc.addr, n, self.allowed)
        self.finished = False  # finish() was called
        self.load.wait_started(10 * SCALE)

    def _deadline(self, given):
        if given is not None:
            return given
        cfg = self.sc.admin_get("/pools/" + self.pool)["config"]
        call = cfg["call_timeout_ms"] / 1000.0 if cfg["call_timeout_ms"] else CALL_BOUND_S
        return cfg["wait_timeout_ms"] / 1000.0 + call

    @property
    def clients(self):
        """Client connections the load holds open until finish()."""
        return self.load.n

    def sample_rss(self):
        """The sidecar's RSS now (KiB); the peak is part of the summary."""
        now = rss_kib(self.sc.pid)
        self.rss_peak = max(self.rss_peak, now)
        return now

    def finish(self):
        """Ends the load and asserts 1-5 of the module docstring; returns a
        summary dict (also printed)."""
        self.finished = True
        left = self.min_window_s - (time.monotonic() - self.t0)
        if left > 0:
            time.sleep(left)
        self.sample_rss()
        bg = self.load
        bg.stop()  # 1: no failure outside the allowed codes; some calls succeeded
        assert set(bg.errors) <= self.allowed, (bg.errors, self.allowed)
        # 2: nobody waited past the deadline
        bound = self.deadline_s + MARGIN_S
        assert bg.max_latency <= bound, "a background call took %.2fs > %.2fs: %s" % (
            bg.max_latency, bound, bg.slowest)
        # 3: still up, and serves a new connection
        assert self.sc.running(), "the sidecar exited (status %s)" % self.sc.returncode
        with drpc.Conn(self.sc.addr) as c:
            assert c.unary(ECHO + "Unary", b"after the fault") == b"after the fault"
        # 4: /pools agrees with each upstream once idle
        counts = self._settle(self._conns_agree, "pool connections vs upstream")
        # 5: memory back near its baseline
        rss = self._settle(self._rss_near_baseline, "RSS")
        summary = {"calls": bg.calls, "errors": dict(bg.errors),
                   "max_latency_s": round(bg.max_latency, 3), "bound_s": round(bound, 2),
                   "conns": counts, "rss_kib": (self.rss_base, self.rss_peak, rss)}
        print("fault check: %s" % summary)
        return summary

    def _rss_near_baseline(self):
        now = self.sample_rss()
        return now - self.rss_base <= self.rss_bound_kib, now

    def _conns_agree(self):
        seen = {}
        ok = True
        for name, upstream_open in self.upstreams.items():
            c = self.sc.admin_get("/pools/" + name)["conns"]
            up = upstream_open()
            seen[name] = {"pool": c["total"], "busy": c["busy"],
                          "connecting": c["connecting"], "upstream": up}
            ok &= c["busy"] == 0 and c["connecting"] == 0 and c["total"] == up
        return ok, seen

    def _settle(self, probe, what):
        """Polls probe() -> (ok, value) until ok; asserts within SETTLE_S."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            ok, value = probe()
            if ok:
                return value
            if time.monotonic() > deadline:
                if what == "RSS":
                    raise AssertionError(
                        "RSS not back near its baseline: %d -> peak %d -> %d KiB (bound +%d)"
                        % (self.rss_base, self.rss_peak, value, self.rss_bound_kib))
                raise AssertionError("%s disagree after %.1fs: %s" % (what, SETTLE_S, value))
            time.sleep(0.05)

    def abandon(self):
        """Stops the load without judging it (teardown; idempotent)."""
        self.load.stop_event.set()
        for t in self.load.threads:
            t.join(5)
