"""Real processes for the integration tests: drpc-testd, drpc-sidecar, agents.

Each process writes stdout and stderr to files in the test's temp dir (so a
chatty process can never block on a full pipe). `Procs` owns every process a
test starts; at teardown it stops them all (SIGTERM, then SIGKILL after a
grace period) before judging any, and reports as problems: a non-zero (or
unexpected) exit status, a process that ignored SIGTERM, a process that died
on its own before teardown, and any sanitizer or valgrind report in its
output.

SIDECAR_VALGRIND=1 runs drpc-sidecar (only it, not the test peers) under
valgrind, and multiplies every timeout by SCALE. INSTRUMENTED is true under
valgrind or a sanitizer build, whose freed memory is not reused at once:
tests that bound memory growth allow more there.

In-process peers (pyserver.TestServer, Agent) registered with Procs.peer()
are closed after every process has stopped, so a sidecar never sees its
upstream vanish during its own shutdown.
"""

import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import time

from . import drpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The Go captures, kept in the repository (tests/data/drpc-transcripts/README.md).
TRANSCRIPTS = os.path.join(ROOT, "tests", "data", "drpc-transcripts")

VALGRIND = os.environ.get("SIDECAR_VALGRIND") == "1"
SCALE = 5 if VALGRIND else 1  # timeouts are multiplied by this
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite", "--quiet"]

START_TIMEOUT = 10.0 * SCALE  # until a process accepts / prints its address
STOP_TIMEOUT = 10.0 * SCALE  # SIGTERM -> exit

SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",  # UndefinedBehaviorSanitizer
    "WARNING: ThreadSanitizer",
)

LOG_TAIL = 12000  # characters of each log shown in a failure


_LIVE = set()  # every Proc not yet reaped: killed at exit if a run is interrupted


@atexit.register
def _kill_leftovers():
    for p in list(_LIVE):
        if p.popen.poll() is None:
            p.popen.kill()
            p.popen.wait()


class ProcessError(Exception):
    """A process failed to start or become ready."""


def _sanitized_build():
    """True when $SIDECAR_BUILD/drpc-sidecar was linked with ASan."""
    path = os.path.join(os.environ.get("SIDECAR_BUILD", ""), "drpc-sidecar")
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# Memory-growth bounds widen under these (ASan's quarantine, valgrind's heap).
INSTRUMENTED = VALGRIND or "ASAN_OPTIONS" in os.environ or _sanitized_build()


def build_dir():
    """$SIDECAR_BUILD, or None when it is not set."""
    b = os.environ.get("SIDECAR_BUILD")
    return os.path.abspath(b) if b else None


def binary_path(name):
    """Path of a binary in $SIDECAR_BUILD (None if SIDECAR_BUILD is unset)."""
    b = build_dir()
    return os.path.join(b, name) if b else None


def binary(name):
    """Path of $SIDECAR_BUILD/name; skips the test when SIDECAR_BUILD is
    unset and fails it when the binary was not built."""
    import pytest

    path = binary_path(name)
    if path is None:
        pytest.skip("SIDECAR_BUILD is not set (make test sets it; or export "
                    "SIDECAR_BUILD=/abs/path/to/build)")
    if not os.path.exists(path):
        pytest.fail("%s is missing: build it first (make B=%s all)" % (path, build_dir()))
    return path


# Ports handed out by free_port come from below the kernel's ephemeral range
# (32768-60999 by default) and are never handed out twice in one run: a port
# picked by binding to 0 and closing can be picked again before its user binds
# it, and can be taken by any socket that binds to 0 or connects meanwhile.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_next_port = _PORT_LOW + (os.getpid() * 7919) % (_PORT_HIGH - _PORT_LOW)


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now, never returned before by this
    process, and outside the range the kernel picks ephemeral ports from."""
    global _next_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_PORT_HIGH - _PORT_LOW):
        port = _next_port
        _next_port = _PORT_LOW + (_next_port + 1 - _PORT_LOW) % (_PORT_HIGH - _PORT_LOW)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in %d-%d" % (_PORT_LOW, _PORT_HIGH))


def free_addr(host="127.0.0.1"):
    port = free_port(host)
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _valgrind_errors(text):
    """A valgrind error summary or definite leak line, else None."""
    for line in text.splitlines():
        if "ERROR SUMMARY:" in line and "ERROR SUMMARY: 0 errors" not in line:
            return line
        if "definitely lost:" in line and "definitely lost: 0 bytes" not in line:
            return line
    return None


def sanitizer_report(text):
    """The first line of a sanitizer/valgrind report in text, else None."""
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            return text[start:end if end >= 0 else len(text)]
    return _valgrind_errors(text)


def wait_connectable(addr, timeout=START_TIMEOUT, proc=None):
    """Polls until addr accepts a connection (the probe is closed at once).
    Raises ProcessError if proc exits meanwhile or the time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc is not None and not proc.running():
            raise ProcessError("%s exited (status %s) before %s accepted connections\n%s"
                               % (proc.name, proc.popen.returncode, addr, proc.logs()))
        try:
            drpc.dial(addr, timeout=0.5).close()
            return
        except OSError as e:
            last = e
        if time.monotonic() > deadline:
            raise ProcessError("nothing accepts on %s after %.1fs (%s)%s"
                               % (addr, timeout, last, "\n" + proc.logs() if proc else ""))
        time.sleep(0.02)


class Proc:
    """One child process with its output in files.

    expect_exit: the status teardown requires after SIGTERM (None: any).
    """

    def __init__(self, name, argv, logdir, env=None, expect_exit=0):
        self.name = name
        self.argv = list(argv)
        self.expect_exit = expect_exit
        tag = "%s-%d" % (os.path.basename(name), id(self) % 100000)
        self.stdout_path = os.path.join(logdir, tag + ".stdout")
        self.stderr_path = os.path.join(logdir, tag + ".stderr")
        self.stopped_by_us = False
        self.timed_out = False
        self.died_early = False  # already gone when teardown came to stop it
        self.stop_timeout = STOP_TIMEOUT
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=env, start_new_session=True)
        self.pid = self.popen.pid
        _LIVE.add(self)

    def running(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def logs(self, tail=LOG_TAIL):
        """stdout and stderr, for failure messages."""
        parts = ["---- %s (pid %d) %s" % (self.name, self.pid, " ".join(self.argv))]
        for label, text in (("stdout", self.stdout()), ("stderr", self.stderr())):
            if text:
                if len(text) > tail:
                    text = "[... %d characters cut ...]\n" % (len(text) - tail) + text[-tail:]
                parts.append("---- %s %s:\n%s" % (self.name, label, text.rstrip("\n")))
        return "\n".join(parts)

    def wait_for_output(self, needle, count=1, timeout=START_TIMEOUT, stream="stdout"):
        """Waits until `needle` occurs count times in stdout (or stderr);
        returns the matching lines."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stdout() if stream == "stdout" else self.stderr()
            lines = [l for l in text.splitlines() if needle in l]
            if len(lines) >= count:
                return lines[:count]
            if not self.running():
                raise ProcessError("%s exited (status %s) before printing %r\n%s"
                                   % (self.name, self.popen.returncode, needle, self.logs()))
            if time.monotonic() > deadline:
                raise ProcessError("%s did not print %r %d times within %.1fs\n%s"
                                   % (self.name, needle, count, timeout, self.logs()))
            time.sleep(0.01)

    def send_signal(self, sig):
        if self.running():
            self.popen.send_signal(sig)

    def stop(self, timeout=None, sig=signal.SIGTERM):
        """Sends sig (SIGTERM) and waits; SIGKILL after timeout (default
        self.stop_timeout; recorded as a problem). Returns the exit status.
        Idempotent."""
        if timeout is None:
            timeout = self.stop_timeout
        if not self.stopped_by_us:
            self.stopped_by_us = True
            self.died_early = not self.running()
            self.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.timed_out = True
                self.popen.kill()
                self.popen.wait()
            _LIVE.discard(self)
        return self.popen.returncode

    def wait(self, timeout=None):
        """Waits for an exit the test caused (SIGTERM, POST /drain, a start
        that must fail) and returns the status; teardown then judges that
        status against expect_exit instead of calling it an early death."""
        seconds = STOP_TIMEOUT if timeout is None else timeout * SCALE
        try:
            self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            raise ProcessError("%s still running after %.1fs\n%s" % (self.name, seconds,
                                                                     self.logs())) from None
        self.stopped_by_us = True
        _LIVE.discard(self)
        return self.popen.returncode

    def kill(self):
        """SIGKILL now (tests of abrupt loss); teardown accepts any status."""
        self.expect_exit = None
        self.stopped_by_us = True
        self.died_early = False
        if self.running():
            self.popen.kill()
        self.popen.wait()
        _LIVE.discard(self)

    def problems(self):
        """What is wrong with how this process ran (call after stop())."""
        out = []
        if self.timed_out:
            out.append("%s did not exit within %.1fs of SIGTERM (killed)"
                       % (self.name, self.stop_timeout))
        elif self.died_early and self.expect_exit == 0:
            out.append("%s exited on its own (status %s) before teardown"
                       % (self.name, self.popen.returncode))
        elif self.expect_exit is not None and self.popen.returncode != self.expect_exit:
            rc = self.popen.returncode
            how = "signal %d" % -rc if rc is not None and rc < 0 else "status %s" % rc
            out.append("%s exited with %s, expected %s" % (self.name, how, self.expect_exit))
        report = sanitizer_report(self.stderr()) or sanitizer_report(self.stdout())
        if report:
            out.append("%s: sanitizer/valgrind report: %s" % (self.name, report.strip()))
        return out


class Testd(Proc):
    """drpc-testd serving on its --listen addresses (`addrs`, `addr`)."""

    def __init__(self, path, logdir, listen=("127.0.0.1:0",), header=False, ident=None,
                 args=()):
        argv = [path]
        for a in listen:
            argv += ["--listen", a]
        if header:
            argv.append("--header")
        if ident is not None:
            argv += ["--id", ident]
        argv += list(args)
        super().__init__("drpc-testd", argv, logdir)
        self.header = header
        self.n_listen = len(listen)
        self.addrs = []
        self.addr = None

    def wait_ready(self, timeout=START_TIMEOUT):
        """Waits for one "listening on ADDR" line per --listen (port 0 is
        printed as the bound port) and records the addresses."""
        lines = self.wait_for_output("drpc-testd listening on ", self.n_listen, timeout)
        self.addrs = [l.split("drpc-testd listening on ", 1)[1].strip() for l in lines]
        self.addr = self.addrs[0]

    def conn(self, **kw):
        """A drpc.Conn to the first listener (header mode as configured)."""
        kw.setdefault("header", self.header)
        return drpc.Conn(self.addr, **kw)


class Agent(Proc):
    """drpc-testd --connect ADDR: dials a reverse pool and serves the test
    service on the connections it opened. No readiness signal: callers wait
    for the sidecar to see it."""

    def __init__(self, path, logdir, connect, conns=1, ident=None, header=False, redial=True,
                 args=()):
        argv = [path, "--connect", connect, "--conns", str(conns)]
        if redial:
            argv.append("--redial")
        if header:
            argv.append("--header")
        if ident is not None:
            argv += ["--id", ident]
        argv += list(args)
        super().__init__("drpc-agent", argv, logdir)


class Sidecar(Proc):
    """drpc-sidecar -c FILE, ready once every listener (and the admin address,
    if configured) accepts connections. Its log is on stderr."""

    def __init__(self, path, logdir, config, args=(), expect_exit=0, wrap=()):
        self.config_path = os.path.join(logdir, "sidecar-%d.json" % (id(self) % 100000))
        self.config = config
        self.write_config(config)
        argv = [path, "-c", self.config_path] + list(args)
        if VALGRIND:
            argv = VALGRIND_CMD + argv
        argv = list(wrap) + argv  # e.g. prlimit, which execs the rest
        super().__init__("drpc-sidecar", argv, logdir, expect_exit=expect_exit)

    def write_config(self, config):
        """Rewrites the config file (for reload tests); atomic rename."""
        self.config = config
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config, f, indent=2)
        os.replace(tmp, self.config_path)

    def listener_addrs(self):
        return [l["address"] for l in self.config.get("listeners", [])]

    @property
    def addr(self):
        return self.listener_addrs()[0]

    @property
    def admin(self):
        adm = self.config.get("admin") or {}
        return adm.get("address") if adm.get("enabled", True) else None

    def wait_ready(self, timeout=START_TIMEOUT):
        """Every port connectable and the start logged: with shared ports
        (SO_REUSEPORT) an older process may answer before this one is up."""
        addrs = self.listener_addrs()
        if self.admin:
            addrs.append(self.admin)
        for a in addrs:
            wait_connectable(a, timeout, proc=self)
        if self.config.get("log_level", "info") in ("info", "debug") or "-v" in self.argv:
            self.wait_for_output(" started (pid %d)" % self.pid, timeout=timeout,
                                 stream="stderr")

    def reload(self):
        """SIGHUP: re-read the config file."""
        self.send_signal(signal.SIGHUP)

    def conn(self, **kw):
        return drpc.Conn(self.addr, **kw)

    def admin_request(self, method, path):
        """One request to the admin API (no token): (status, decoded JSON body)."""
        host, port = self.admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5 * SCALE)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            body = r.read()
            return r.status, json.loads(body) if body else None
        finally:
            conn.close()

    def admin_get(self, path):
        """The JSON body of GET path, which must answer 200."""
        status, body = self.admin_request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def admin_post(self, path):
        """The JSON body of POST path, which must succeed (200 or 202)."""
        status, body = self.admin_request("POST", path)
        assert status in (200, 202), (path, status, body)
        return body


def sidecar_version_ok():
    """(ok, why): does `$SIDECAR_BUILD/drpc-sidecar --version` succeed?"""
    path = binary_path("drpc-sidecar")
    if path is None:
        return False, "SIDECAR_BUILD is not set"
    if not os.path.exists(path):
        return False, "%s does not exist yet" % path
    try:
        p = subprocess.run([path, "--version"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "%s --version: %s" % (path, e)
    if p.returncode != 0:
        return False, "%s --version exited %d: %s" % (path, p.returncode,
                                                      p.stderr.decode(errors="replace")[:200])
    return True, p.stdout.decode(errors="replace").strip()


def basic_config(upstream_addr, listen=None, admin=None, **pool):
    """One listener, an admin port, one pool `default` in front of
    upstream_addr, a catch-all route. Extra keyword arguments go to the pool."""
    p = {"name": "default", "endpoints": [upstream_addr], "max_conns": 4}
    p.update(pool)
    return {
        "listeners": [{"name": "local", "address": listen or free_addr()}],
        "admin": {"address": admin or free_addr()},
        "pools": [p],
        "routes": [{"pool": "default"}],
    }


class Procs:
    """Every process one test started; see the module docstring."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.all = []
        self.peers = []  # in-process peers, closed after the processes stop

    def _binary(self, name):
        return binary(name)

    def _add(self, p):
        self.all.append(p)
        return p

    def start(self, name, argv, env=None, expect_exit=0):
        """Any command (argv[0] is looked up in $SIDECAR_BUILD if relative)."""
        if not os.path.isabs(argv[0]):
            argv = [self._binary(argv[0])] + list(argv[1:])
        return self._add(Proc(name, argv, self.logdir, env=env, expect_exit=expect_exit))

    def testd(self, *listen, header=False, ident=None, args=()):
        p = self._add(Testd(self._binary("drpc-testd"), self.logdir,
                            listen or ("127.0.0.1:0",), header, ident, args))
        p.wait_ready()
        return p

    def agent(self, connect, conns=1, ident=None, header=False, redial=True, args=()):
        return self._add(Agent(self._binary("drpc-testd"), self.logdir, connect, conns, ident,
                               header, redial, args))

    def sidecar(self, config, args=(), wait=True, expect_exit=0, wrap=()):
        p = self._add(Sidecar(self._binary("drpc-sidecar"), self.logdir, config, args, expect_exit,
                              wrap))
        if wait:
            p.wait_ready()
        return p

    def peer(self, obj):
        """Registers an in-process peer (anything with close()) for teardown."""
        self.peers.append(obj)
        return obj

    def stop_all(self):
        """Stops every process (newest first: the sidecar before its
        upstreams), closes the in-process peers, then returns the list of
        problems."""
        for p in reversed(self.all):
            p.stop()
        for obj in reversed(self.peers):
            obj.close()
        problems = []
        for p in self.all:
            problems += p.problems()
        return problems

    def logs(self):
        return "\n".join(p.logs() for p in self.all)
