"""busy_poll_us: after traffic the loop keeps polling instead of sleeping,
for a window that adapts to the gaps it sees, up to busy_poll_us (default
50). Calls are served the same way; back-to-back calls are caught while
spinning; gaps longer than the cap bring the window down to nothing, so
sparse traffic and an idle sidecar cost next to no CPU; a reload changes
the cap and 0 turns it off. CPU time is read from /proc: a spinning loop
costs a large share of a core, a sleeping one next to nothing."""

import os
import re
import subprocess
import time

from .procs import INSTRUMENTED, SCALE, basic_config, binary

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


def cpu_demand_seconds(pid):
    """Time on a CPU plus time runnable but waiting for one (schedstat's
    first two fields): what a spinning loop asks for, whether or not a
    busy machine grants it."""
    with open("/proc/%d/schedstat" % pid) as f:
        run, wait = f.read().split()[:2]
    return (int(run) + int(wait)) / 1e9


def cpu_during(pid, seconds, work=None, measure=cpu_seconds):
    """CPU seconds pid used (or, with measure=cpu_demand_seconds, asked
    for) per wall second while work() ran in a loop (or while nothing
    happened)."""
    t0, c0 = time.monotonic(), measure(pid)
    while time.monotonic() - t0 < seconds:
        if work:
            work()
        time.sleep(0.004)
    return (measure(pid) - c0) / (time.monotonic() - t0)


def counters(sc):
    return sc.admin_get("/stats")["counters"]


def test_busy_polling_serves_calls_spins_while_they_flow_and_sleeps_after(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr)
    cfg["busy_poll_us"] = 10000  # longer than the gap between the calls below:
    # the window grows to cover it and the loop stops sleeping
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

    # a call every ~5 ms keeps the 10 ms window open: the loop never sleeps.
    # Measured as demand (on a CPU or waiting for one), so a machine busy
    # with other work, which takes the CPU from a spinning loop, does not
    # read as a loop that went to sleep.
    spinning = cpu_during(sc.pid, 1.0, one_call, measure=cpu_demand_seconds)
    idle = cpu_during(sc.pid, 1.0 * SCALE)
    print("cpu share: spinning %.3f, idle %.3f" % (spinning, idle))
    assert spinning > 0.6, "busy polling asked for only %.2f of a core" % spinning
    assert idle < QUIET, "the loop kept spinning with no traffic (%.2f of a core)" % idle
    spun = counters(sc)
    # the requests and replies of the slow calls came in while the loop was
    # spinning, and the window ran out at least once when the traffic stopped
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


def window_us(sc):
    return sc.admin_get("/stats")["busy_poll_window_us"]


def bench_and_catches(sc, conns):
    """Half a second of back-to-back calls from drpc-bench on `conns`
    connections: (calls made, idle stretches caught while spinning)."""
    before = counters(sc)
    p = subprocess.run([binary("drpc-bench"), "--addr", sc.addr, "--conns", str(conns),
                        "--duration", "0.5"], capture_output=True, timeout=30 * SCALE)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    calls = int(re.search(r"calls=(\d+)", out).group(1))
    caught = counters(sc)["busy_poll_catches"] - before["busy_poll_catches"]
    print("%d conns: calls %d, idle stretches caught while spinning %d, window %d us"
          % (conns, calls, caught, window_us(sc)))
    return calls, caught


def test_back_to_back_calls_are_caught_while_spinning(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr)
    # above any gap between back-to-back calls of two C peers, even when the
    # sidecar runs under valgrind; the window itself grows only as needed
    cfg["busy_poll_us"] = 1000
    sc = sidecar(cfg)
    assert window_us(sc) == 0  # no traffic yet: no spinning
    calls, caught = bench_and_catches(sc, 1)
    # two stretches per call (the reply, the next request), nearly all caught
    assert calls > 100 and caught >= calls, (calls, caught)
    assert 10 <= window_us(sc) <= 1000


def test_no_spinning_while_calls_in_flight_can_use_every_core(testd, sidecar):
    """With at least as many calls in flight as cores, the peers serving
    them can keep every core busy: the loop sleeps between reads instead of
    taking a core from them. Same cap and peers as the back-to-back test,
    where nearly every stretch is caught."""
    up = testd()
    cfg = basic_config(up.addr, max_conns=64)
    cfg["busy_poll_us"] = 1000
    sc = sidecar(cfg)
    calls, caught = bench_and_catches(sc, 4 * os.cpu_count())
    # only the moments when fewer calls than cores were in flight spin (the
    # clients' calls come in batches, between which none are in flight):
    # 0.1-0.3 caught stretches per call, where spinning regardless of the
    # calls in flight catches about one per call
    assert calls > 100 and caught < calls / 2, (calls, caught)


def test_default_cap_sparse_calls_spin_next_to_nothing(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr)  # busy_poll_us left at its default
    sc = sidecar(cfg)
    assert sc.admin_get("/config")["config"]["busy_poll_us"] == 50
    conn = sc.conn()

    def one_call():
        assert conn.unary(ECHO + "Unary", b"x") == b"x"

    # a call every ~5 ms: each gap before a request runs past the 50 us cap
    # and costs at most one window of spinning, so the loop sleeps nearly
    # all the time
    before = counters(sc)
    share = cpu_during(sc.pid, 1.0, one_call)
    after = counters(sc)
    print("cpu share with sparse calls: %.3f, window %d us" % (share, window_us(sc)))
    assert share < QUIET, "sparse calls kept the loop spinning (%.2f of a core)" % share
    assert window_us(sc) <= 50
    if not INSTRUMENTED:
        # natively a call's reads come close enough to start spins, and the
        # gaps before requests end them; under valgrind nothing is that close
        assert after["busy_poll_timeouts"] > before["busy_poll_timeouts"]
    # a reload to 0 takes effect at once, traffic or not
    cfg["busy_poll_us"] = 0
    sc.write_config(cfg)
    st, body = sc.admin_request("POST", "/reload")
    assert st == 200 and body["reloaded"] is True
    assert window_us(sc) == 0
    conn.close()
