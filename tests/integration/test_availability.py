"""Availability: an upstream restart costs its downtime and no more.

Each test runs real processes (the sidecar, drpc-testd or the Python
upstream) and prints its figures on one "figures:" line (pytest -s shows
them): time from the upstream accepting again to the first successful
call, failed calls by code, dials made while the upstream was down."""

import threading
import time

from . import drpc
from .procs import SCALE, basic_config, free_addr

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
