"""Whether admin work stalls the data plane: innocent calls/s and p99 of a
drpc-bench run through a sidecar holding N idle client connections, with
and without K admin clients looping on the largest pages
(GET /clients?limit=10000, /metrics, /calls), in paired alternating rounds
(quiet, loaded, loaded, quiet, ...) so drift on a shared machine hits both
alike. With --compare it does the same for a second sidecar binary (say,
one built from main) in the same rounds, each binary with its own process.

Prints per binary the median calls/s and p99 of each mode, the ratios
loaded/quiet (the target of issue 19: calls/s >= 0.9x, p99 <= 1.5x), and
how many admin pages were answered per second under load.

  /usr/bin/python3 tests/bench/admin_load.py --build build \\
      --compare /tmp/drpc-sidecar-main --clients 3000 --admin 8 --rounds 5
"""

import argparse
import http.client
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (Procs, bench(), sidecar_config, free_port)
sys.path.insert(0, os.path.join(bench.ROOT, "tests", "integration"))
import drpc  # noqa: E402

PAGES = ["/clients?limit=10000", "/metrics", "/calls"]


class AdminLoad:
    """k threads, each on one keep-alive connection, asking PAGES in turn."""

    def __init__(self, admin_port, k):
        self.port, self.k = admin_port, k
        self.stop = threading.Event()
        self.pages = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(k)]

    def run(self, i):
        conn = None
        n = i
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", PAGES[n % len(PAGES)])
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.pages += 1
                    else:
                        self.errors += 1
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                if conn:
                    conn.close()
                conn = None
            n += 1
        if conn:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def many_rpc_names(port, n):
    """n distinct RPC names, each called once: /metrics gets per-RPC series."""
    c = drpc.Conn("127.0.0.1:%d" % port)
    for i in range(n):
        try:
            c.unary("/bench.Admin/Method%03d" % i, b"x")
        except drpc.DrpcError:
            pass  # an unknown method still counts as a series
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(bench.ROOT, "build"))
    ap.add_argument("--compare", help="a second drpc-sidecar binary measured in the same rounds")
    ap.add_argument("--clients", type=int, default=3000, help="idle client connections held")
    ap.add_argument("--admin", type=int, default=8, help="admin clients looping on the pages")
    ap.add_argument("--rpcs", type=int, default=100, help="distinct RPC names called once")
    ap.add_argument("--conns", type=int, default=16, help="drpc-bench connections")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    binaries = {"this": os.path.join(build, "drpc-sidecar")}
    if a.compare:
        binaries["compare"] = os.path.abspath(a.compare)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, len(binaries) * a.clients + 2000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    tmp = tempfile.mkdtemp(prefix="drpc-admin-load-")
    procs = bench.Procs()
    idle = []
    try:
        up = bench.free_port()
        procs.start([os.path.join(build, "drpc-testd"), "--listen", "127.0.0.1:%d" % up], up)
        ports = {}
        for name, binary in binaries.items():
            port, admin = bench.free_port(), bench.free_port()
            cfg = bench.sidecar_config(port, admin, up, 16)
            path = os.path.join(tmp, "%s.json" % name)
            with open(path, "w") as f:
                json.dump(cfg, f)
            procs.start([binary, "-c", path], port)
            ports[name] = (port, admin)
            many_rpc_names(port, a.rpcs)
            for _ in range(a.clients):
                idle.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(1.0)
        res = {(b, m): [] for b in binaries for m in ("quiet", "loaded")}
        pages_per_s = {b: [] for b in binaries}
        for r in range(a.rounds):
            modes = ("quiet", "loaded") if r % 2 == 0 else ("loaded", "quiet")
            names = list(binaries) if r % 2 == 0 else list(reversed(list(binaries)))
            for b in names:
                port, admin = ports[b]
                for m in modes:
                    if m == "quiet":
                        out = bench.bench(build, port, ["--conns", str(a.conns)], a.duration,
                                          a.warmup)
                    else:
                        with AdminLoad(admin, a.admin) as load:
                            time.sleep(0.3)
                            p0, t0 = load.pages, time.monotonic()
                            out = bench.bench(build, port, ["--conns", str(a.conns)],
                                              a.duration, a.warmup)
                            pages_per_s[b].append((load.pages - p0) / (time.monotonic() - t0))
                    res[(b, m)].append(out)
                    print("round %d %-8s %-6s rps=%.0f p50_us=%.0f p99_us=%.0f errors=%d" % (
                        r, b, m, out.get("rps", 0), out.get("p50_us", 0), out.get("p99_us", 0),
                        out.get("errors", 0)), flush=True)
        print()
        print("medians of each mode, then (ratio) the median of the per-round ratios")
        print("%-8s %12s %12s %10s %10s %10s %10s %8s" % (
            "binary", "rps quiet", "rps loaded", "ratio", "p99 quiet", "p99 loaded", "ratio",
            "pages/s"))
        for b in binaries:
            rq = statistics.median(x.get("rps", 0) for x in res[(b, "quiet")])
            rl = statistics.median(x.get("rps", 0) for x in res[(b, "loaded")])
            pq = statistics.median(x.get("p99_us", 0) for x in res[(b, "quiet")])
            pl = statistics.median(x.get("p99_us", 0) for x in res[(b, "loaded")])
            # the two modes of a round ran back to back: their ratio drifts less
            r_rps = statistics.median(l.get("rps", 0) / max(q.get("rps", 0), 1) for q, l in
                                      zip(res[(b, "quiet")], res[(b, "loaded")]))
            r_p99 = statistics.median(l.get("p99_us", 0) / max(q.get("p99_us", 0), 1) for q, l
                                      in zip(res[(b, "quiet")], res[(b, "loaded")]))
            print("%-8s %12.0f %12.0f %5.2fx (%.2fx) %8.0fus %8.0fus %5.2fx (%.2fx) %8.1f" % (
                b, rq, rl, rl / rq if rq else 0, r_rps, pq, pl, pl / pq if pq else 0, r_p99,
                statistics.median(pages_per_s[b])))
    finally:
        for s in idle:
            s.close()
        procs.stop_all()


if __name__ == "__main__":
    main()
