"""busy_poll_us: the loop keeps polling after a read instead of sleeping.
Calls are served the same way, the spin ends when traffic stops, and a
reload turns it on and off. CPU time is read from /proc: a spinning loop
costs a large share of a core, a sleeping one next to nothing."""

import os
import time

from .procs import INSTRUMENTED, SCALE, basic_config

ECHO = "/test.Echo/"
TICK = os.sysconf("SC_CLK_TCK")
# A sleeping loop's share: next to nothing, but each call costs many times
# more under valgrind or the sanitizers. A spinning loop takes a whole core.
QUIET = 0.4 if INSTRUMENTED else 0.15


def cpu_seconds(pid):
    """Time on a CPU. schedstat counts nanoseconds; utime + stime are
    sampled at clock ticks, which a process that wakes in step with the
    client's timer is charged for unfairly often."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def cpu_during(pid, seconds, work=None):
    """CPU seconds pid used per wall second while work() ran in a loop
    (or while nothing happened)."""
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    while time.monotonic() - t0 < seconds:
        if work:
            work()
        time.sleep(0.004)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def counters(sc):
    return sc.admin_get("/stats")["counters"]


def test_busy_polling_serves_calls_spins_while_they_flow_and_sleeps_after(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr)
    cfg["busy_poll_us"] = 10000  # longer than the gap between the calls below
    sc = sidecar(cfg)
    assert sc.admin_get("/config")["config"]["busy_poll_us"] == 10000
    conns = [sc.conn() for _ in range(4)]
    for i in range(200):
        body = b"m%d" % i
        assert conns[i % 4].unary(ECHO + "Unary", body) == body
    msgs = [b"s%d" % i for i in range(20)]
    assert conns[1].bidi(ECHO + "Bidi", msgs) == msgs

    n = [0]

    def one_call():
        n[0] += 1
        assert conns[0].unary(ECHO + "Unary", b"x") == b"x"

    # a call every ~5 ms keeps the 10 ms window open: the loop never sleeps
    spinning = cpu_during(sc.pid, 1.0, one_call)
    idle = cpu_during(sc.pid, 1.0 * SCALE)
    print("cpu share: spinning %.3f, idle %.3f" % (spinning, idle))
    assert spinning > 0.6, "busy polling used only %.2f of a core" % spinning
    assert idle < QUIET, "the loop kept spinning with no traffic (%.2f of a core)" % idle
    spun = counters(sc)
    # the replies of the slow calls came in while the loop was spinning,
    # and the window ran out at least once when the traffic stopped
    assert spun["busy_poll_catches"] >= n[0] and spun["busy_poll_timeouts"] >= 1, spun

    # a reload turns it off: the same slow traffic now costs next to nothing
    cfg["busy_poll_us"] = 0
    sc.write_config(cfg)
    st, body = sc.admin_request("POST", "/reload")
    assert st == 200 and body["reloaded"] is True
    assert sc.admin_get("/config")["config"]["busy_poll_us"] == 0
    sleeping = cpu_during(sc.pid, 1.0, one_call)
    assert sleeping < QUIET, "busy polling still on after the reload (%.2f)" % sleeping
    print("cpu share with busy polling off: %.3f" % sleeping)
    after = counters(sc)
    assert [after[k] - spun[k] for k in ("busy_poll_catches", "busy_poll_timeouts")] == [0, 0]
    assert n[0] > 50
    for c in conns:
        c.close()
