"""Fixtures: real drpc-sidecar processes in front of real DRPC servers on loopback.

`sidecar(config)` writes the config to a temp file, starts the binary from
$SIDECAR_BUILD, waits until every listener accepts, and at teardown sends
SIGTERM and fails the test if the process did not exit 0 within its grace
or printed a sanitizer report. SIDECAR_VALGRIND=1 runs it under valgrind.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import drpc  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SIDECAR_BUILD", os.path.join(ROOT, "build"))
VALGRIND = os.environ.get("SIDECAR_VALGRIND") == "1"
# Under ASan (quarantine) or valgrind, freed memory is not reused at once:
# memory-growth assertions get wider bounds there.
INSTRUMENTED = VALGRIND or "ASAN_OPTIONS" in os.environ
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                   "Invalid read", "Invalid write", "definitely lost: [1-9]")


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.path.exists(path):
        pytest.fail("%s is missing: run make first" % path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(addr, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            drpc.dial(addr, timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing accepts on %s after %.1fs" % (addr, timeout))


class Sidecar:
    def __init__(self, config, tmpdir, extra_args=(), wait=True):
        self.config = config
        self.path = os.path.join(tmpdir, "sidecar-%d.json" % id(self))
        self.write_config(config)
        self.log_path = os.path.join(tmpdir, "sidecar-%d.log" % id(self))
        self.log = open(self.log_path, "wb")
        cmd = [binary("drpc-sidecar"), "-c", self.path] + list(extra_args)
        if VALGRIND:
            cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                   "--errors-for-leak-kinds=definite", "--quiet"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.stopped = False
        self.timed_out = False
        if wait:
            t = 30 if VALGRIND else 10
            for lst in config["listeners"]:
                wait_connectable(lst["address"], t)
            admin = config.get("admin") or {}
            if admin.get("enabled", True) and admin.get("address"):
                wait_connectable(admin["address"], t)

    def write_config(self, config):
        with open(self.path, "w") as f:
            json.dump(config, f, indent=2)

    @property
    def addr(self):
        return self.config["listeners"][0]["address"]

    @property
    def admin(self):
        return self.config["admin"]["address"]

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout * (4 if VALGRIND else 1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.timed_out = True
        return self.proc.returncode

    def check_clean(self):
        out = self.output()
        for mark in SANITIZER_MARKS:
            if mark in out:
                raise AssertionError("sanitizer/valgrind report:\n" + out)


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory(prefix="drpc-sidecar-test-") as d:
        yield d


@pytest.fixture
def upstream():
    srv = drpc.TestServer()
    yield srv
    srv.close()


@pytest.fixture
def sidecar(tmpdir_path, request):
    started = []

    def start(config, extra_args=(), wait=True, expect_exit=0):
        sc = Sidecar(config, tmpdir_path, extra_args, wait)
        sc.expect_exit = expect_exit
        started.append(sc)
        return sc

    yield start
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    # Stop every process before judging any, so one bad exit leaks nothing.
    codes = [sc.stop() for sc in started]
    problems = []
    for sc, code in zip(started, codes):
        if failed:
            sys.stderr.write("---- sidecar log ----\n" + sc.output()[-8000:])
        try:
            sc.check_clean()
        except AssertionError as e:
            problems.append(str(e))
        if sc.timed_out:
            problems.append("drpc-sidecar did not exit after SIGTERM:\n" + sc.output()[-8000:])
        elif sc.expect_exit is not None and code != sc.expect_exit:
            problems.append("drpc-sidecar exited %s:\n%s" % (code, sc.output()[-8000:]))
    assert not problems, "\n".join(problems)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def basic_config(upstream_addr, **pool):
    """One listener, one pool in front of upstream_addr, admin on its own port."""
    p = {"name": "default", "endpoints": [upstream_addr], "max_conns": 4}
    p.update(pool)
    return {
        "listeners": [{"name": "local", "address": "127.0.0.1:%d" % free_port()}],
        "admin": {"address": "127.0.0.1:%d" % free_port()},
        "pools": [p],
        "routes": [{"pool": "default"}],
    }


@pytest.fixture(autouse=True)
def _per_test_timeout():
    """Fails a test that runs longer than 120 s instead of hanging the suite."""

    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded 120 s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


class BackgroundLoad:
    """n clients making mixed unary and streaming calls until stopped; every
    call must succeed (fault tests assert the fault touched no one else)."""

    def __init__(self, addr, n=32, rpc_prefix="/test.Echo/"):
        import threading

        self.addr = addr
        self.stop_event = threading.Event()
        self.failures = []
        self.calls = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i, rpc_prefix), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i, prefix):
        try:
            with drpc.Conn(self.addr) as c:
                while not self.stop_event.is_set():
                    if i % 3 == 0:
                        assert len(c.server_stream(prefix + "ServerStream", b"4 512")) == 4
                    elif i % 3 == 1:
                        assert c.bidi(prefix + "Bidi", [b"a", b"b"]) == [b"a", b"b"]
                    else:
                        assert c.unary(prefix + "Unary", b"bg%d" % i) == b"bg%d" % i
                    with self.lock:
                        self.calls += 1
        except Exception as e:  # noqa: BLE001
            self.failures.append(repr(e))

    def stop(self):
        """Stops the clients and asserts none of their calls failed; idempotent."""
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        assert not self.failures, self.failures[:3]
        assert self.calls > 0


@pytest.fixture
def background_load():
    loads = []

    def start(addr, n=32):
        load = BackgroundLoad(addr, n)
        loads.append(load)
        return load

    yield start
    for load in loads:
        load.stop()
