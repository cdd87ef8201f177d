"""Fixtures for the integration tests.

  procs           Procs: every process of this test; stopped and judged at
                  teardown (exit status, SIGTERM honoured, sanitizer reports)
  testd           testd(*listen, header=False, ident=None, args=()) -> Testd
                  (.addr, .addrs, .conn()); listen defaults to 127.0.0.1:0
  sidecar         sidecar(config, args=(), wait=True, expect_exit=0) -> Sidecar
                  (.addr, .admin, .config_path, .write_config(), .reload(),
                  .conn()); requires `drpc-sidecar --version` to work, else skip
  agent           agent(connect, conns=1, ident=None, header=False, redial=True)
                  -> Agent (drpc-testd --connect)
  pki             the session's test PKI (pki.py: CAs, server, client, expired,
                  other-CA, wrong-host certificates), made with the openssl CLI
  pyserver        pyserver(addr="127.0.0.1:0", header=False, ident="", tls=None) ->
                  pyserver.TestServer (.addr, .accepted, .calls, .open_conns(),
                  .kill_connections()): the Python upstream, closed at teardown
  pyagent         pyagent(connect, n=1, ident="", header=False, tls=None,
                  server_name=None) ->
                  pyserver.Agent: the Python reverse-pool agent
  fault_check     fault_check(sidecar, {pool: upstream_open_conns}, allowed=(),
                  ...) -> fault_checks.FaultCheck: RSS baseline, 32 clients
                  of background load until .finish(), which asserts the
                  end-of-fault checks (fault_checks.py)
  free_port       free_port(host="127.0.0.1") -> int
  free_addr       free_addr(host="127.0.0.1") -> "127.0.0.1:PORT" / "[::1]:PORT"
  short_tmp       a short temp dir (unix socket paths must fit 108 bytes)
  transcripts     path of tests/data/drpc-transcripts (fails if absent)

Every test runs under a SIGALRM deadline (30 s; @pytest.mark.timeout_s(N)
to change it; times SCALE under valgrind) and every client read has its own
timeout, so a hang fails the test. A failed test shows each process's
stdout/stderr.
"""

import os
import shutil
import signal
import tempfile

import pytest

from . import drpc, fault_checks, pki as pki_mod, procs as procs_mod, pyserver as pyserver_mod

drpc.DEFAULT_TIMEOUT = 10.0 * procs_mod.SCALE

DEFAULT_TEST_TIMEOUT = 30


class DeadlineExceeded(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(seconds): per-test deadline (SIGALRM)")


@pytest.fixture(autouse=True)
def _deadline(request):
    mark = request.node.get_closest_marker("timeout_s")
    seconds = int((mark.args[0] if mark else DEFAULT_TEST_TIMEOUT) * procs_mod.SCALE)

    def on_alarm(signum, frame):
        raise DeadlineExceeded("test exceeded its %d s deadline" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def short_tmp():
    d = tempfile.mkdtemp(prefix="drpc-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs(request, short_tmp):
    mgr = procs_mod.Procs(short_tmp)
    request.node._drpc_procs = mgr
    yield mgr
    problems = mgr.stop_all()
    if problems:
        pytest.fail("process problems:\n  " + "\n  ".join(problems) + "\n" + mgr.logs(),
                    pytrace=False)


@pytest.fixture
def testd(procs):
    return procs.testd


@pytest.fixture
def sidecar(procs):
    ok, why = procs_mod.sidecar_version_ok()
    if not ok:
        pytest.skip("drpc-sidecar not usable: " + why)
    return procs.sidecar


@pytest.fixture
def agent(procs):
    return procs.agent


@pytest.fixture
def pyserver(procs):
    def start(addr="127.0.0.1:0", header=False, ident="", tls=None):
        return procs.peer(pyserver_mod.TestServer(addr, header, ident, tls))

    return start


@pytest.fixture
def pyagent(procs):
    def start(connect, n=1, ident="", header=False, tls=None, server_name=None):
        return procs.peer(pyserver_mod.Agent(connect, n, ident, header, tls, server_name))

    return start


@pytest.fixture
def fault_check(request, procs):  # after procs: the load stops before the sidecar
    checks = []

    def start(sc, upstreams, **kw):
        checks.append(fault_checks.FaultCheck(sc, upstreams, **kw))
        return checks[-1]

    yield start
    for c in checks:
        c.abandon()
    unfinished = [c for c in checks if not c.finished]
    if not getattr(request.node, "_drpc_call_failed", True):
        assert not unfinished, "the test started a fault_check and never called finish()"


@pytest.fixture
def free_port():
    return procs_mod.free_port


@pytest.fixture
def free_addr():
    return procs_mod.free_addr


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return pki_mod.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def transcripts():
    assert os.path.isfile(os.path.join(procs_mod.TRANSCRIPTS, "README.txt")), \
        "the wire captures are missing from %s" % procs_mod.TRANSCRIPTS
    return procs_mod.TRANSCRIPTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed call, attach every process's output to the report; note
    for fault_check's teardown whether the call failed."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._drpc_call_failed = rep.failed
    mgr = getattr(item, "_drpc_procs", None)
    if mgr is not None and rep.failed and rep.when == "call":
        for p in mgr.all:
            rep.sections.append(("%s pid %d" % (p.name, p.pid), p.logs()))
