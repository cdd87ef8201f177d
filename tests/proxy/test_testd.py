"""The C test server (drpc-testd) answers exactly like the upstream Go server:
every captured client byte stream, replayed in order, yields the captured
server bytes. Also covers agent mode (--connect) through a reverse pool."""

import glob
import os
import socket
import subprocess
import time

import pytest

import drpc
from conftest import binary, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRANSCRIPTS = os.environ.get("DRPC_TRANSCRIPTS",
                             os.path.join(ROOT, "..", "shared", "drpc-transcripts"))
CAPTURES = sorted(os.path.basename(p)[:-4] for p in glob.glob(TRANSCRIPTS + "/*.txt")
                  if not p.endswith(".frames.txt") and not p.endswith("README.txt"))


@pytest.fixture
def testd():
    def start(*args):
        p = subprocess.Popen([binary("drpc-testd")] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        started.append(p)
        line = p.stdout.readline().decode()
        assert line.startswith("drpc-testd listening on "), line
        return line.split()[-1]

    started = []
    yield start
    for p in started:
        p.terminate()
        assert p.wait(10) == 0


def read_exactly(s, n, timeout=5):
    s.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.skipif(not CAPTURES, reason="transcripts not found")
@pytest.mark.parametrize("name", CAPTURES)
def test_replay_matches_capture(testd, name):
    lines = [l.split(" ", 1) for l in open(os.path.join(TRANSCRIPTS, name + ".txt"))
             if l[:2] in ("> ", "< ")]
    header = name.startswith("header-")
    addr = testd("--listen", "127.0.0.1:0", *(["--header"] if header else []))
    s = drpc.dial(addr)
    got, want = b"", b""
    for direction, hexdata in lines:
        data = bytes.fromhex(hexdata.strip())
        if direction == ">":
            s.sendall(data)
            if name.startswith("soft-cancel") and data[:1] != b"\x89":
                time.sleep(0.1)  # let the Sleep start before its cancel
        else:
            want += data
            got += read_exactly(s, len(data))
    if name == "unary-metadata":
        # the request's pairs come from a Go map, but the reply is sorted
        assert got == want
    assert got == want, "%s: got %s want %s" % (name, got.hex(), want.hex())
    # nothing more arrives (no reply to a cancelled or closed stream)
    s.settimeout(0.3)
    try:
        extra = s.recv(100)
    except socket.timeout:
        extra = b""
    assert extra == b""
    s.close()


def test_every_rpc_with_the_python_client(testd):
    addr = testd("--listen", "127.0.0.1:0", "--id", "agent-7")
    with drpc.Conn(addr) as c:
        assert c.unary("/test.Echo/Unary", b"x" * 300000) == b"x" * 300000
        assert c.unary("/test.Echo/Metadata", b"", {"b": "2", "a": "1"}) == b"a=1\nb=2\n"
        assert c.client_stream("/test.Echo/ClientStream", [b"1", b"2"]) == b"12"
        assert c.bidi("/test.Echo/Bidi", [b"p", b"q"]) == [b"p", b"q"]
        assert len(c.server_stream("/test.Echo/ServerStream", b"100 1000")) == 100
        assert c.unary("/test.Echo/Conn", b"") == b"1 6"
        assert c.unary("/test.Echo/Identify", b"") == b"agent-7"
        c.start_unary("/test.Echo/Sleep", b"5000")
        c.soft_cancel()
        t0 = time.time()
        assert c.unary("/test.Echo/Unary", b"after cancel") == b"after cancel"
        assert time.time() - t0 < 1
        with pytest.raises(drpc.ConnectionLost):
            c.server_stream("/test.Echo/Abort", b"2")


def test_unix_listener(testd, tmpdir_path):
    path = os.path.join(tmpdir_path, "t.sock")
    addr = testd("--listen", "unix:" + path)
    with drpc.Conn(addr) as c:
        assert c.unary("/test.Echo/Unary", b"u") == b"u"


def test_agent_mode_through_a_reverse_pool(sidecar):
    accept = "127.0.0.1:%d" % free_port()
    cfg = {
        "listeners": [{"name": "local", "address": "127.0.0.1:%d" % free_port()}],
        "admin": {"address": "127.0.0.1:%d" % free_port()},
        "pools": [{"name": "agents", "accept": accept, "identify": {"rpc": "/test.Echo/Identify"},
                   "wait_timeout_ms": 3000}],
        "routes": [{"match": {"metadata": {"key": "agent"}}, "pool": "agents",
                    "agent_from_metadata": "agent"}, {"pool": "agents"}],
    }
    sc = sidecar(cfg)
    agents = [subprocess.Popen([binary("drpc-testd"), "--connect", accept, "--conns", "2",
                                "--redial", "--id", name], stderr=subprocess.DEVNULL)
              for name in ("east", "west")]
    try:
        with drpc.Conn(sc.addr) as c:
            deadline = time.time() + 5
            while True:
                try:
                    c.unary("/test.Echo/Identify", b"", {"agent": "west"})
                    c.unary("/test.Echo/Identify", b"", {"agent": "east"})
                    break
                except drpc.DrpcError:
                    assert time.time() < deadline
                    time.sleep(0.05)
            for _ in range(5):
                assert c.unary("/test.Echo/Identify", b"", {"agent": "west"}) == b"west"
                assert c.unary("/test.Echo/Identify", b"", {"agent": "east"}) == b"east"
            # an agent connection lost mid-call: the agent re-dials
            with pytest.raises(drpc.DrpcError) as e:
                c.server_stream("/test.Echo/Abort", b"1", {"agent": "east"})
            assert e.value.code == 1006
            deadline = time.time() + 5
            while True:
                try:
                    assert c.unary("/test.Echo/Identify", b"", {"agent": "east"}) == b"east"
                    break
                except drpc.DrpcError:
                    assert time.time() < deadline
    finally:
        for a in agents:
            a.terminate()
            assert a.wait(10) == 0


def test_drpc_call_cli_through_the_sidecar(upstream, sidecar):
    from conftest import basic_config

    sc = sidecar(basic_config(upstream.addr))

    def call(*args):
        p = subprocess.run([binary("drpc-call")] + list(args), capture_output=True, timeout=20)
        return p.returncode, p.stdout.decode()

    assert call(sc.addr, "/test.Echo/Unary", "hello") == (0, "hello\n")
    assert call("--meta", "a=1", sc.addr, "/test.Echo/Metadata", "x") == (0, "a=1\n\n")
    assert call("--stream", "client", sc.addr, "/test.Echo/ClientStream", "a", "b") == (0, "ab\n")
    assert call("--stream", "bidi", sc.addr, "/test.Echo/Bidi", "p", "q") == (0, "p\nq\n")
    code, out = call("--stream", "server", "--hex", sc.addr, "/test.Echo/ServerStream", "2 3")
    assert (code, out) == (0, "000102\n010203\n")
    assert call(sc.addr, "/test.Echo/Error", "42 nope") == (1, "error code=42 text=nope\n")
    code, out = call("--repeat", "3", sc.addr, "/test.Echo/Conn")
    assert code == 0 and len(out.splitlines()) == 3  # three calls on one client connection
    assert call("--soft-cancel-after", "100", sc.addr, "/test.Echo/Sleep", "3000") == \
        (0, "cancelled\n")
