"""drpc-sidecar benchmark harness (make bench / make bench-quick).

Starts the C test server, drpc-sidecar in front of it, and HAProxy in TCP
mode in front of it, then runs the same drpc-bench workload against the
three targets in alternating rounds (A B C A B C ...) and reports medians
with the ratios sidecar/haproxy and sidecar/direct. For the unary rows it
also samples the CPU time each process (proxy, server, client) spends per
call and how much of the machine stays idle, which says whether a row is
bound by CPU or by wake-ups. Also measures the sidecar's RSS per idle
client connection and, with callgrind, user-space instructions per proxied
unary call. Results go to stdout and, as JSON,
to BUILD/bench/results.json. No thresholds: numbers, not verdicts.

The TLS rows (tls_bench; alone with --only tls): plaintext in and TLS to
the upstream, the sidecar against HAProxy (`server ... ssl verify required
ca-file ...`) at 1 and 64 connections, with each one's ratio to its own
plaintext run; new TLS connections per second through a TLS listener (dial,
one call, close; full handshakes) against HAProxy's `bind ... ssl`;
handshakes per second towards the upstream (a pool whose connections live
for one call) with the upstream resuming sessions and refusing to; and the
sidecar's RSS per idle TLS client connection.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from integration.procs import free_port  # noqa: E402  (the one port picker)
BUSY_POLL_US = 0  # the comparison rows: the sidecar with busy polling off
BUSY_ROW_1 = "1 conn, busy_poll_us %d" % BUSY_POLL_US


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d never opened" % port)


class Procs:
    """Every process gets its own session, as separate services would have
    (with sched_autogroup, one session is one scheduling group). In one
    shared session the scheduler weighs threads, not programs: HAProxy's
    two threads would get twice the CPU of the sidecar's one whenever the
    two cores are saturated, and client and server would lose to both."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, port=None, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.procs.append(p)
        if port:
            wait_port(port)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def sidecar_config(listen, admin, upstream, max_conns, busy_poll_us=None):
    """busy_poll_us None: the sidecar's default."""
    cfg = {
        "log_level": "warn",
        "max_clients": 100000,
        "listeners": [{"name": "bench", "address": "127.0.0.1:%d" % listen}],
        "admin": {"address": "127.0.0.1:%d" % admin},
        "pools": [{"name": "default", "endpoints": ["127.0.0.1:%d" % upstream],
                   "max_conns": max_conns, "max_waiters": 100000, "wait_timeout_ms": 30000}],
    }
    if busy_poll_us is not None:
        cfg["busy_poll_us"] = busy_poll_us
    return cfg


def cpu_ns(pid):
    """CPU time of every thread of pid so far, in ns (schedstat is exact;
    utime/stime are sampled at the tick)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just exited
    return total


def machine_ticks():
    """(idle, total) clock ticks of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


def bench(build, port, args, duration, warmup, pids=None):
    """One drpc-bench run. With pids ({"proxy": pid, "server": pid}) it also
    samples CPU time inside the measured window (from 0.2 s after the warm-up
    to 0.2 s before the end) of those processes, the client and the whole
    machine, and returns it per call in us (cpu_*_us) with the idle share."""
    cmd = [os.path.join(build, "drpc-bench"), "--addr", "127.0.0.1:%d" % port,
           "--duration", str(duration), "--warmup", str(warmup)] + args
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    window = duration - 0.4
    cpu = None
    if pids is not None and window > 0.2:
        watched = dict(pids, client=p.pid)
        time.sleep(warmup + 0.2)
        t0, m0 = time.monotonic(), machine_ticks()
        c0 = {k: cpu_ns(v) for k, v in watched.items() if v}
        time.sleep(window)
        t1, m1 = time.monotonic(), machine_ticks()
        c1 = {k: cpu_ns(v) for k, v in watched.items() if v}
        cpu = ({k: c1[k] - c0[k] for k in c0}, t1 - t0,
               (m1[0] - m0[0]) / max(1, m1[1] - m0[1]))
    stdout, _ = p.communicate(timeout=duration + warmup + 60)
    lines = stdout.decode().strip().splitlines()
    res = {k: float(v) for k, v in (kv.split("=") for kv in (lines[-1] if lines else "").split())}
    if cpu and res.get("rps"):
        used, wall, idle = cpu
        calls = res["rps"] * wall
        for k, ns in used.items():
            res["cpu_%s_us" % k] = ns / 1000 / calls
        # the machine's busy time per call, whoever spent it
        res["cpu_machine_us"] = (1 - idle) * (os.cpu_count() or 1) * wall * 1e6 / calls
        res["idle_share"] = idle
    return res


def autogroup():
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return "on" if f.read().strip() == "1" else "off"
    except OSError:
        return "n/a"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_rss_per_conn(port, pid, n):
    """Opens n idle client connections; returns RSS growth per connection in bytes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 1000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    time.sleep(0.2)
    before = rss_kib(pid)
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection(("127.0.0.1", port)))
    time.sleep(1.0)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    return (after - before) * 1024 / n, before, after


def tls_idle_rss_per_conn(port, pid, ca, n):
    """Opens n TLS client connections (handshake done, one call each) and
    lets them idle; returns the sidecar's RSS growth per connection."""
    from integration import drpc
    ctx = drpc.tls_client_context(ca)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 1000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    warm = [drpc.Conn("127.0.0.1:%d" % port, tls=ctx) for _ in range(20)]
    for c in warm:
        c.unary("/test.Echo/Unary", b"w")
    time.sleep(1.5)  # idle wires give their buffers back
    before = rss_kib(pid)
    conns = []
    for _ in range(n):
        c = drpc.Conn("127.0.0.1:%d" % port, tls=ctx)
        c.unary("/test.Echo/Unary", b"x")
        conns.append(c)
    time.sleep(2.5)
    after = rss_kib(pid)
    for c in conns + warm:
        c.close()
    return (after - before) * 1024 / n


def tls_bench(build, tmp, procs, quick, rounds, duration, warmup):
    """The TLS rows (see the module docstring); a dict for results.json."""
    from integration import pki as pki_mod
    pki_dir = os.path.join(tmp, "pki")
    os.makedirs(pki_dir, exist_ok=True)
    pki = pki_mod.make(pki_dir)
    haproxy = shutil.which("haproxy")
    testd = os.path.join(build, "drpc-testd")
    sidecar = os.path.join(build, "drpc-sidecar")
    tls_args = ["--tls-cert", pki.server.cert, "--tls-key", pki.server.key]
    up, upt, upt_nr = free_port(), free_port(), free_port()
    procs.start([testd, "--listen", "127.0.0.1:%d" % up], up)
    procs.start([testd, "--listen", "127.0.0.1:%d" % upt] + tls_args, upt)
    procs.start([testd, "--listen", "127.0.0.1:%d" % upt_nr, "--tls-no-resume"] + tls_args,
                upt_nr)
    pids = {}

    def start_sidecar(name, upstream, max_conns, pool_tls=None, listener_tls=None, **pool):
        port, admin = free_port(), free_port()
        cfg = sidecar_config(port, admin, upstream, max_conns)
        if pool_tls:
            cfg["pools"][0]["tls"] = pool_tls
        cfg["pools"][0].update(pool)
        if listener_tls:
            cfg["listeners"][0]["tls"] = listener_tls
        path = os.path.join(tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        pids[port] = procs.start([sidecar, "-c", path], port).pid
        return port, admin

    ca = {"ca_file": pki.ca.cert}
    server_tls = {"cert_file": pki.server.cert, "key_file": pki.server.key}
    sc_plain = start_sidecar("tls-plain", up, 16)[0]
    sc_tls = start_sidecar("tls-up", upt, 16, ca)[0]
    sc_tls64 = start_sidecar("tls-up64", upt, 64, ca)[0]
    sc_plain64 = start_sidecar("tls-plain64", up, 64)[0]
    sc_in = start_sidecar("tls-in", up, 16, listener_tls=server_tls)[0]
    sc_hs, sc_hs_admin = start_sidecar("tls-hs", upt, 8, ca, max_lifetime_ms=1)
    sc_hs_nr, sc_hs_nr_admin = start_sidecar("tls-hs-nr", upt_nr, 8, ca, max_lifetime_ms=1)
    ha = {}
    if haproxy:
        combined = os.path.join(tmp, "server-combined.pem")
        with open(combined, "w") as f:
            f.write(open(pki.server.cert).read() + open(pki.server.key).read())
        ha = {k: free_port() for k in ("plain", "tls", "in")}
        with open(os.path.join(tmp, "haproxy-tls.cfg"), "w") as f:
            f.write("global\n  maxconn 9000\n\ndefaults\n  mode tcp\n"
                    "  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n"
                    "listen plain\n  bind 127.0.0.1:%d\n  server up 127.0.0.1:%d\n\n"
                    "listen tls\n  bind 127.0.0.1:%d\n"
                    "  server up 127.0.0.1:%d ssl verify required ca-file %s\n\n"
                    "listen tlsin\n  bind 127.0.0.1:%d ssl crt %s\n  server up 127.0.0.1:%d\n"
                    % (ha["plain"], up, ha["tls"], upt, pki.ca.cert, ha["in"], combined, up))
        ha_pid = procs.start([haproxy, "-f", os.path.join(tmp, "haproxy-tls.cfg"), "-db"],
                             ha["plain"]).pid
        for k in ("tls", "in"):
            wait_port(ha[k])
            pids[ha[k]] = ha_pid
        pids[ha["plain"]] = ha_pid

    def median_runs(targets, args):
        runs = {t: [] for t in targets}
        for _ in range(rounds):
            for t, port in targets.items():
                if port:
                    runs[t].append(bench(build, port, args, duration, warmup))
        out = {}
        for t, rs in runs.items():
            if rs:
                keys = set.intersection(*(set(r) for r in rs))
                out[t] = {k: statistics.median(r[k] for r in rs) for k in sorted(keys)}
            else:
                out[t] = None
        return out

    rows = []
    for conns, sc_t, sc_p in ((1, sc_tls, sc_plain), (64, sc_tls64, sc_plain64)):
        r = median_runs({"sidecar_tls": sc_t, "haproxy_tls": ha.get("tls"),
                         "sidecar_plain": sc_p, "haproxy_plain": ha.get("plain")},
                        ["--conns", str(conns), "--size", "64"])
        rows.append(("plaintext in, TLS to upstream, %d conn%s" % (conns, "s"[:conns > 1]),
                     r))
    client_tls = ["--tls-ca", pki.ca.cert, "--tls-no-resume"]
    newconn = median_runs({"sidecar": sc_in, "haproxy": ha.get("in")},
                          ["--conns", "4", "--size", "64", "--reconnect"] + client_tls)
    hs = median_runs({"resume_on": sc_hs, "resume_off": sc_hs_nr},
                     ["--conns", "4", "--size", "64"])

    def resumed_share(admin):
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin).read().decode()
        ok = res = 0.0
        for line in text.splitlines():
            if line.startswith("drpc_sidecar_tls_handshakes_total{") and 'result="ok"' in line:
                ok += float(line.rsplit(" ", 1)[1])
            if line.startswith("drpc_sidecar_tls_resumed_total{"):
                res += float(line.rsplit(" ", 1)[1])
        return res / ok if ok else 0.0

    shares = {"resume_on": resumed_share(sc_hs_admin), "resume_off": resumed_share(sc_hs_nr_admin)}
    idle_port, _ = start_sidecar("tls-idle", up, 16, listener_tls=server_tls)
    idle = tls_idle_rss_per_conn(idle_port, pids[idle_port], pki.ca.cert, 500 if quick else 2000)

    def v(r, t, key="rps"):
        return r[t][key] if r.get(t) else None

    def ratio(a, b):
        return "%.2f" % (a / b) if a and b else "n/a"

    def num(x):
        return "n/a" if x is None else "%.0f" % x

    print()
    print("TLS rows (rounds=%d, %.0fs each, calls/s medians)" % (rounds, duration))
    print("%-40s %10s %10s %10s %10s %8s %10s %10s" % (
        "workload", "sc TLS", "ha TLS", "sc plain", "ha plain", "sc/ha", "sc TLS/pl",
        "ha TLS/pl"))
    for name, r in rows:
        print("%-40s %10s %10s %10s %10s %8s %10s %10s" % (
            name, num(v(r, "sidecar_tls")), num(v(r, "haproxy_tls")),
            num(v(r, "sidecar_plain")), num(v(r, "haproxy_plain")),
            ratio(v(r, "sidecar_tls"), v(r, "haproxy_tls")),
            ratio(v(r, "sidecar_tls"), v(r, "sidecar_plain")),
            ratio(v(r, "haproxy_tls"), v(r, "haproxy_plain"))))
    print("new TLS connections/s through a TLS listener (4 clients; dial, 1 call, close; full "
          "handshakes): sidecar %s, haproxy %s (sc/ha %s)" % (
              num(v(newconn, "sidecar")), num(v(newconn, "haproxy")),
              ratio(v(newconn, "sidecar"), v(newconn, "haproxy"))))
    print("handshakes/s towards the upstream (a pool of 8 whose connections carry one call, "
          "4 clients): resumption on %s (%.0f%% resumed), off %s (%.0f%% resumed)" % (
              num(v(hs, "resume_on")), 100 * shares["resume_on"], num(v(hs, "resume_off")),
              100 * shares["resume_off"]))
    print("idle TLS client connections: sidecar RSS %+.0f bytes/conn" % idle)
    return {"rows": [{"workload": n, **r} for n, r in rows], "new_connections": newconn,
            "upstream_handshakes": hs, "resumed_share": shares,
            "idle_tls_rss_bytes_per_conn": idle}


def callgrind_instructions(build, upstream_port, tmp, calls_small, calls_big):
    """User-space instructions per proxied 64 B unary call: the slope between
    two runs with different call counts, so startup and shutdown cancel out.
    Busy polling is off here: its polls run only where the loop would
    otherwise sleep, and under callgrind their number depends on how much
    the emulation slows the loop, not on the work a call takes."""
    if not shutil.which("valgrind"):
        return None
    totals = []
    for n in (calls_small, calls_big):
        listen, admin = free_port(), free_port()
        cfg_path = os.path.join(tmp, "cg-%d.json" % n)
        with open(cfg_path, "w") as f:
            json.dump(sidecar_config(listen, admin, upstream_port, 16, busy_poll_us=0), f)
        out_file = os.path.join(tmp, "callgrind.%d.out" % n)
        p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out_file,
                              os.path.join(build, "drpc-sidecar"), "-c", cfg_path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(listen, 60)
        subprocess.run([os.path.join(build, "drpc-bench"), "--addr", "127.0.0.1:%d" % listen,
                        "--conns", "1", "--duration", "120", "--max-calls", str(n)],
                       capture_output=True, timeout=300)
        p.send_signal(signal.SIGTERM)
        p.wait(120)
        total = None
        with open(out_file) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
        totals.append(total)
    if None in totals:
        return None
    return (totals[1] - totals[0]) / (calls_big - calls_small)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--mode", choices=["full", "quick"], default="full")
    ap.add_argument("--only", choices=["tls"], help="run only these rows")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    quick = a.mode == "quick"
    rounds = 1 if quick else 3
    duration = 1.0 if quick else 5.0
    warmup = 0.3 if quick else 1.0
    tmp = tempfile.mkdtemp(prefix="drpc-bench-")
    procs = Procs()
    if a.only == "tls":
        try:
            tls = tls_bench(build, tmp, procs, quick, rounds, duration, warmup)
        finally:
            procs.stop_all()
        out_dir = os.path.join(build, "bench")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results-tls.json"), "w") as f:
            json.dump(tls, f, indent=2)
        return 0
    haproxy = shutil.which("haproxy")
    try:
        up = free_port()
        server = procs.start([os.path.join(build, "drpc-testd"), "--listen",
                              "127.0.0.1:%d" % up], up)
        proxy_pid = {}  # listening port -> pid, for the CPU accounting

        def start_sidecar(name, max_conns, busy_poll_us=None):
            """A sidecar in front of the test server: (port, admin port, process)."""
            port, admin = free_port(), free_port()
            path = os.path.join(tmp, name + ".json")
            with open(path, "w") as f:
                json.dump(sidecar_config(port, admin, up, max_conns, busy_poll_us), f)
            proc = procs.start([os.path.join(build, "drpc-sidecar"), "-c", path], port)
            proxy_pid[port] = proc.pid
            return port, admin, proc

        sc_port = start_sidecar("sidecar", 16)[0]
        sc32_port, sc32_admin, _ = start_sidecar("sidecar32", 32)
        # The same 64-connection row with a pool as wide as the clients: the
        # gap between the two rows is what capping calls in flight at 16 costs.
        sc64_port = start_sidecar("sidecar64", 64)[0]
        # The default spins briefly after traffic (adaptive busy polling); the
        # same rows with it off show what that buys and what the rest costs.
        scbp_port = start_sidecar("sidecar-nospin", 16, BUSY_POLL_US)[0]
        ha_port = None
        if haproxy:
            ha_port = free_port()
            with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
                f.write("global\n  maxconn 9000\n\ndefaults\n  mode tcp\n"
                        "  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\n"
                        "listen drpc\n  bind 127.0.0.1:%d\n  server up 127.0.0.1:%d\n"
                        % (ha_port, up))
            proxy_pid[ha_port] = procs.start([haproxy, "-f", os.path.join(tmp, "haproxy.cfg"),
                                              "-db"], ha_port).pid

        n = 64 if not quick else 16
        workloads = [
            ("unary 64 B, 1 conn", ["--conns", "1", "--size", "64"], "rps", sc_port),
            ("unary 64 B, 64 conns", ["--conns", "64", "--size", "64"], "rps", sc_port),
            ("  same, pool of 64", ["--conns", "64", "--size", "64"], "rps", sc64_port),
            ("unary 16 KiB, 16 conns", ["--conns", "16", "--size", "16384"], "rps", sc_port),
            ("stream 1 MiB msgs, 4 conns", ["--conns", "4", "--mode", "stream", "--stream-count",
                                            "4", "--stream-size", "1048576"], "mbps", sc_port),
            ("256 callers, pool of 32", ["--conns", "256", "--size", "64"], "rps", sc32_port),
            (BUSY_ROW_1, ["--conns", "1", "--size", "64"], "rps", scbp_port),
            ("%d conns, busy_poll_us %d" % (n, BUSY_POLL_US), ["--conns", str(n), "--size", "64"],
             "rps", scbp_port),
        ]
        if quick:
            workloads[1] = ("unary 64 B, 16 conns", ["--conns", str(n), "--size", "64"], "rps",
                            sc_port)
            del workloads[2]
        targets = [("direct", up), ("sidecar", None), ("haproxy", ha_port)]
        results = []
        for name, args, metric, sport in workloads:
            runs = {t: [] for t, _ in targets}
            for _ in range(rounds):
                for t, port in targets:
                    if t == "sidecar":
                        port = sport
                    if port is None:
                        continue
                    pids = None
                    if metric == "rps":
                        pids = {"proxy": proxy_pid.get(port), "server": server.pid}
                    runs[t].append(bench(build, port, args, duration, warmup, pids))
            row = {"workload": name, "metric": metric}
            for t, _ in targets:
                if not runs[t]:
                    row[t] = None
                    continue
                keys = set.intersection(*(set(r) for r in runs[t]))
                row[t] = {k: statistics.median(r[k] for r in runs[t]) for k in sorted(keys)}
            results.append(row)

        # the wait-time p99 of the 256-caller row comes from the sidecar's own metrics
        pools = json.load(urllib.request.urlopen("http://127.0.0.1:%d/pools" % sc32_admin))
        wait_p99_ms = pools["pools"][0]["wait_ms"]["p99"]

        # a fresh sidecar, so memory freed by the load above cannot hide the cost
        idle_n = 1000 if quick else 10000
        idle_port, _, idle_sc = start_sidecar("idle", 16)
        per_conn, rss_before, rss_after = idle_rss_per_conn(idle_port, idle_sc.pid, idle_n)
        ha_per_conn = None
        if haproxy:
            ha_per_conn = idle_rss_per_conn(ha_port, proxy_pid[ha_port], idle_n)[0]

        instr = callgrind_instructions(build, up, tmp, 200 if quick else 1000,
                                       1200 if quick else 6000)
        tls = tls_bench(build, tmp, procs, quick, rounds, duration, warmup)
    finally:
        procs.stop_all()

    def fmt(row, t, key):
        v = row[t]
        return "n/a" if v is None else ("%.0f" % v[key] if v[key] >= 100 else "%.1f" % v[key])

    print()
    print("drpc-sidecar benchmark (%s): nproc=%d loadavg=%s rounds=%d duration=%.0fs each, "
          "one session per process (sched_autogroup %s)" %
          (a.mode, os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg()), rounds,
           duration, autogroup()))
    print("%-28s %-6s %10s %10s %10s %9s %9s %8s %8s %8s %7s" %
          ("workload", "metric", "direct", "sidecar", "haproxy", "sc/ha", "sc/direct",
           "p50 sc", "p50 ha", "p99 sc", "errors"))
    for row in results:
        m = row["metric"]
        sc_v = row["sidecar"][m] if row["sidecar"] else None
        ha_v = row["haproxy"][m] if row["haproxy"] else None
        di_v = row["direct"][m] if row["direct"] else None
        errs = sum(int(row[t]["errors"]) for t in ("direct", "sidecar", "haproxy") if row[t])
        print("%-28s %-6s %10s %10s %10s %9s %9s %8s %8s %8s %7d" % (
            row["workload"], m, fmt(row, "direct", m), fmt(row, "sidecar", m),
            fmt(row, "haproxy", m),
            "%.2f" % (sc_v / ha_v) if sc_v and ha_v else "n/a",
            "%.2f" % (sc_v / di_v) if sc_v and di_v else "n/a",
            fmt(row, "sidecar", "p50_us"), fmt(row, "haproxy", "p50_us"),
            fmt(row, "sidecar", "p99_us"), errs))
    # Where the time goes: the proxies' cost per call next to what the server
    # and client spend, and how much of the machine was left idle.
    cpu_rows = [r for r in results if r["sidecar"] and "cpu_machine_us" in r["sidecar"]]
    if cpu_rows:
        print("CPU per call in us (schedstat, inside the measured window): the proxy process, "
              "server + client, their sum; share of the machine left idle")
        print("%-28s %9s %9s %9s %9s %9s %9s %9s %8s %8s" %
              ("workload", "proxy sc", "proxy ha", "s+c sc", "s+c ha", "s+c dir", "sum sc",
               "sum ha", "idle sc", "idle ha"))

        def cpu(row, t, key):
            v = row[t]
            return "n/a" if not v or key not in v else "%.1f" % v[key]

        def total(row, t, keys):
            v = row[t]
            if not v or any(k not in v for k in keys):
                return "n/a"
            return "%.1f" % sum(v[k] for k in keys)

        def peers(row, t):
            return total(row, t, ("cpu_server_us", "cpu_client_us"))

        def chain(row, t):
            return total(row, t, ("cpu_proxy_us", "cpu_server_us", "cpu_client_us"))

        def idle(row, t):
            v = row[t]
            return "n/a" if not v or "idle_share" not in v else "%.0f%%" % (100 * v["idle_share"])

        for row in cpu_rows:
            print("%-28s %9s %9s %9s %9s %9s %9s %9s %8s %8s" % (
                row["workload"], cpu(row, "sidecar", "cpu_proxy_us"),
                cpu(row, "haproxy", "cpu_proxy_us"), peers(row, "sidecar"),
                peers(row, "haproxy"), peers(row, "direct"), chain(row, "sidecar"),
                chain(row, "haproxy"), idle(row, "sidecar"), idle(row, "haproxy")))
    added = {}
    for label, row in (("", results[0]),
                       (", busy_poll_us %d" % BUSY_POLL_US,
                        next((r for r in results if r["workload"] == BUSY_ROW_1), None))):
        if not row or not row["haproxy"]:
            continue
        add_sc = row["sidecar"]["p50_us"] - row["direct"]["p50_us"]
        add_ha = row["haproxy"]["p50_us"] - row["direct"]["p50_us"]
        ratio = add_sc / add_ha if add_ha > 0 else float("nan")
        added[label.lstrip(", ") or "default"] = {"sidecar_us": add_sc, "haproxy_us": add_ha,
                                                 "ratio": ratio}
        print("added p50 latency over direct, 1 conn%s: sidecar %.0f us, haproxy %.0f us "
              "(ratio %.2f)" % (label, add_sc, add_ha, ratio))
    print("256 callers over a pool of 32: p99 wait for an upstream connection %.2f ms" %
          wait_p99_ms)
    print("idle client connections (%d): sidecar RSS %+.0f bytes/conn (%d -> %d KiB)%s" % (
        idle_n, per_conn, rss_before, rss_after,
        ", haproxy %+.0f bytes/conn" % ha_per_conn if ha_per_conn is not None else ""))
    if instr is not None:
        print("user-space instructions per proxied 64 B unary call (callgrind, busy polling "
              "off): %.0f" % instr)

    out_dir = os.path.join(build, "bench")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"mode": a.mode, "nproc": os.cpu_count(), "loadavg": os.getloadavg(),
                   "rounds": rounds, "duration_s": duration, "autogroup": autogroup(),
                   "workloads": results,
                   "wait_p99_ms_pool32": wait_p99_ms, "idle_rss_bytes_per_conn": per_conn,
                   "haproxy_idle_rss_bytes_per_conn": ha_per_conn,
                   "instructions_per_call": instr, "added_p50_latency_1conn": added,
                   "tls": tls},
                  f, indent=2)
    print("results: %s" % os.path.join(out_dir, "results.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
