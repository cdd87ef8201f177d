"""Two drpc-sidecar binaries on the same workloads, alternately, in one run.

    /usr/bin/python3 tests/bench/compare.py --base OLD/drpc-sidecar \
        --new build/drpc-sidecar [--rounds 5] [--duration 5] [--config-json '{...}']

For a change that must not cost throughput (a refactoring, a new counter):
the same drpc-testd upstream and drpc-bench client (from --build) run the
1-connection and 64-connection unary rows against each binary in turn
(base new base new ...), and the medians and their ratio are printed.
--config-json merges extra top-level keys into both configs, and
--new-config-json into the new one's only (e.g. a feature switch).
No thresholds: numbers, not verdicts.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Procs, bench, free_port, sidecar_config  # noqa: E402

ROWS = [("unary 64 B, 1 conn", ["--conns", "1", "--size", "64"], 16),
        ("unary 64 B, 64 conns", ["--conns", "64", "--size", "64"], 16)]


def start_sidecar(procs, binary, upstream, max_conns, extra, tmp, tag):
    listen, admin = free_port(), free_port()
    cfg = sidecar_config(listen, admin, upstream, max_conns)
    cfg.update(extra)
    path = os.path.join(tmp, "%s.json" % tag)
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = procs.start([binary, "-c", path], port=listen)
    return listen, p.pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--config-json", default="{}")
    ap.add_argument("--new-config-json", default="{}")
    a = ap.parse_args()
    extra = json.loads(a.config_json)
    new_extra = dict(extra, **json.loads(a.new_config_json))
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="drpc-compare-")
    try:
        up = free_port()
        procs.start([os.path.join(a.build, "drpc-testd"), "--listen", "127.0.0.1:%d" % up],
                    port=up)
        print("%-24s %10s %10s %8s   %s" % ("workload", "base rps", "new rps", "new/base",
                                           "per-round new/base"))
        for name, args, max_conns in ROWS:
            targets = {
                "base": start_sidecar(procs, a.base, up, max_conns, extra, tmp, "base"),
                "new": start_sidecar(procs, a.new, up, max_conns, new_extra, tmp, "new"),
            }
            rps = {"base": [], "new": []}
            for _ in range(a.rounds):
                for who in ("base", "new"):
                    port, pid = targets[who]
                    r = bench(a.build, port, args, a.duration, 1.0)
                    rps[who].append(r.get("rps", 0.0))
            mb, mn = statistics.median(rps["base"]), statistics.median(rps["new"])
            rounds = " ".join("%.3f" % (n / b if b else 0) for b, n in zip(rps["base"], rps["new"]))
            print("%-24s %10.0f %10.0f %8.3f   %s" % (name, mb, mn, mn / mb if mb else 0, rounds),
                  flush=True)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
