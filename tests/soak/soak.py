"""make soak DURATION=30m: mixed load through drpc-sidecar for a long time,
with random upstream kills and config reloads. Prints once a minute: calls,
errors by cause (from the sidecar's /pools), sidecar RSS and open fds.
Not part of CI. Exits non-zero if the sidecar died or RSS kept growing."""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from integration.procs import free_port  # noqa: E402  (the one port picker)


def parse_duration(s):
    units = {"s": 1, "m": 60, "h": 3600}
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", default="30m")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    total = parse_duration(a.duration)
    tmp = tempfile.mkdtemp(prefix="drpc-soak-")
    ups = [free_port(), free_port()]
    testd = {}

    def start_up(port):
        testd[port] = subprocess.Popen([os.path.join(b, "drpc-testd"), "--listen",
                                        "127.0.0.1:%d" % port],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    for p in ups:
        start_up(p)
    listen, admin = free_port(), free_port()
    cfg_path = os.path.join(tmp, "soak.json")

    def config(max_conns):
        return {"log_level": "warn", "listeners": [{"name": "l", "address": "127.0.0.1:%d" % listen}],
                "admin": {"address": "127.0.0.1:%d" % admin},
                "pools": [{"name": "default", "endpoints": ["127.0.0.1:%d" % p for p in ups],
                           "max_conns": max_conns, "wait_timeout_ms": 10000,
                           "eject_after_failures": 2, "eject_ms": 2000, "backoff_max_ms": 500}]}

    with open(cfg_path, "w") as f:
        json.dump(config(16), f)
    sc = subprocess.Popen([os.path.join(b, "drpc-sidecar"), "-c", cfg_path],
                          stderr=open(os.path.join(tmp, "sidecar.log"), "w"))
    time.sleep(0.5)
    stop = threading.Event()
    totals = {"calls": 0, "bench_errors": 0}
    lock = threading.Lock()

    def load(mode):
        while not stop.is_set():
            args = ["--conns", "16", "--size", "256"] if mode == "unary" else \
                   ["--conns", "2", "--mode", "stream", "--stream-count", "8", "--stream-size",
                    "65536"]
            out = subprocess.run([os.path.join(b, "drpc-bench"), "--addr", "127.0.0.1:%d" % listen,
                                  "--duration", "5"] + args, capture_output=True)
            line = out.stdout.decode().strip().splitlines()
            if line:
                kv = dict(x.split("=") for x in line[-1].split())
                with lock:
                    totals["calls"] += int(kv["calls"])
                    totals["bench_errors"] += int(kv["errors"])

    threads = [threading.Thread(target=load, args=(m,)) for m in ("unary", "unary", "stream")]
    for t in threads:
        t.start()
    start = time.time()
    next_report = start + 60
    kills = reloads = 0
    rss_samples = []
    ok = True
    while time.time() - start < total:
        time.sleep(random.uniform(3, 8))
        if sc.poll() is not None:
            print("sidecar died with %s" % sc.returncode)
            ok = False
            break
        if random.random() < 0.5:
            port = random.choice(ups)
            testd[port].send_signal(signal.SIGKILL)
            testd[port].wait()
            kills += 1
            time.sleep(1)
            start_up(port)
        else:
            with open(cfg_path, "w") as f:
                json.dump(config(random.choice([8, 16, 24])), f)
            sc.send_signal(signal.SIGHUP)
            reloads += 1
        if time.time() >= next_report:
            next_report += 60
            pools = json.load(urllib.request.urlopen("http://127.0.0.1:%d/pools" % admin))
            errs = {k: v for k, v in pools["pools"][0]["errors"].items() if v}
            with open("/proc/%d/status" % sc.pid) as f:
                rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]
            fds = len(os.listdir("/proc/%d/fd" % sc.pid))
            rss_samples.append(rss)
            with lock:
                print("t=%4dm calls=%d upstream_kills=%d reloads=%d errors=%s rss=%dKiB fds=%d" %
                      ((time.time() - start) // 60, totals["calls"], kills, reloads,
                       json.dumps(errs), rss, fds), flush=True)
    stop.set()
    for t in threads:
        t.join(30)
    sc.send_signal(signal.SIGTERM)
    code = sc.wait(30)
    for p in testd.values():
        p.terminate()
    print("done: calls=%d upstream_kills=%d reloads=%d sidecar_exit=%d" %
          (totals["calls"], kills, reloads, code))
    if len(rss_samples) >= 6 and rss_samples[-1] > 2 * rss_samples[len(rss_samples) // 3] + 4096:
        print("RSS kept growing: %s" % rss_samples)
        ok = False
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
