"""What per-RPC accounting costs: the `make bench` rows "unary 64 B, 1 conn"
and "unary 64 B, 64 conns" against two sidecars that differ only in
metrics.max_rpcs (0: off; 100: the default), in paired alternating rounds
(A B, B A, A B, ...) so drift on a shared machine hits both alike.
Prints the median calls/s of each, the sidecar's CPU time per call in the
same runs, and the change; no threshold. On a busy shared machine calls/s
swing far more than the difference, so it also counts, with callgrind,
the user-space instructions per proxied call of each (load does not move
that number).

  /usr/bin/python3 tests/bench/rpc_overhead.py --build build --rounds 6 --duration 3 --callgrind
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness: Procs, bench(), sidecar_config)

ROWS = [("unary 64 B, 1 conn", ["--conns", "1", "--size", "64"]),
        ("unary 64 B, 64 conns", ["--conns", "64", "--size", "64"])]


def instructions(build, up, tmp, max_rpcs):
    """bench.callgrind_instructions with metrics.max_rpcs set."""
    plain = bench.sidecar_config

    def with_max_rpcs(*args, **kw):
        cfg = plain(*args, **kw)
        cfg["metrics"] = {"max_rpcs": max_rpcs}
        return cfg

    bench.sidecar_config = with_max_rpcs
    try:
        return bench.callgrind_instructions(build, up, tmp, 2000, 6000)
    finally:
        bench.sidecar_config = plain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(bench.ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per call")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    tmp = tempfile.mkdtemp(prefix="drpc-rpc-overhead-")
    procs = bench.Procs()
    try:
        up = bench.free_port()
        procs.start([os.path.join(build, "drpc-testd"), "--listen", "127.0.0.1:%d" % up], up)
        ports, pids = {}, {}
        for max_rpcs in (0, 100):
            port, admin = bench.free_port(), bench.free_port()
            cfg = bench.sidecar_config(port, admin, up, 16)
            cfg["metrics"] = {"max_rpcs": max_rpcs}
            path = os.path.join(tmp, "sc%d.json" % max_rpcs)
            with open(path, "w") as f:
                json.dump(cfg, f)
            pids[max_rpcs] = procs.start([os.path.join(build, "drpc-sidecar"), "-c", path],
                                         port).pid
            ports[max_rpcs] = port
        results = {(row, m): [] for row, _ in ROWS for m in ports}
        rows = ROWS if a.rounds > 0 else []  # --rounds 0: instructions only
        cpu = {(row, m): [] for row, _ in ROWS for m in ports}
        for r in range(a.rounds):
            for row, args in ROWS:
                order = (0, 100) if r % 2 == 0 else (100, 0)
                for m in order:
                    res = bench.bench(build, ports[m], args, a.duration, a.warmup,
                                      {"proxy": pids[m]})
                    results[(row, m)].append(res.get("rps", 0.0))
                    cpu[(row, m)].append(res.get("cpu_proxy_us", 0.0))
        print("%-22s %14s %14s %8s" % ("row", "max_rpcs 0", "max_rpcs 100", "change"))
        for row, _ in rows:
            off = statistics.median(results[(row, 0)])
            on = statistics.median(results[(row, 100)])
            print("%-22s %14.0f %14.0f %+7.1f%%" % (row, off, on, 100 * (on - off) / off))
            print("  runs off: %s" % " ".join("%.0f" % v for v in results[(row, 0)]))
            print("  runs on:  %s" % " ".join("%.0f" % v for v in results[(row, 100)]))
            off, on = statistics.median(cpu[(row, 0)]), statistics.median(cpu[(row, 100)])
            print("  sidecar CPU per call: %.2f us vs %.2f us (%+.1f%%)"
                  % (off, on, 100 * (on - off) / off))
        if a.callgrind:
            off, on = (instructions(build, up, tmp, m) for m in (0, 100))
            if off and on:
                print("instructions per call (callgrind, 1 conn): %.0f vs %.0f (%+.1f%%)"
                      % (off, on, 100 * (on - off) / off))
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
