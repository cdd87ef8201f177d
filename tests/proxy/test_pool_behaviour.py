"""Pool details: lifetime and idle limits, balancing across endpoints, DNS
names resolved off the loop, reverse-pool agents in /pools, and the Python
client's bytes against the captured Go client bytes."""

import glob
import json
import os
import socket
import threading
import time
import urllib.request

import drpc
from conftest import basic_config, free_port

ECHO = "/test.Echo/"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRANSCRIPTS = os.environ.get("DRPC_TRANSCRIPTS",
                             os.path.join(ROOT, "..", "shared", "drpc-transcripts"))


def conn_id(c):
    return int(c.unary(ECHO + "Conn", b"").split()[0])


def pools(sc):
    return json.load(urllib.request.urlopen("http://%s/pools" % sc.admin, timeout=5))["pools"]


def test_max_lifetime_replaces_connections_at_release(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=1, max_lifetime_ms=300))
    with drpc.Conn(sc.addr) as c:
        first = conn_id(c)
        assert conn_id(c) == first  # young: reused
        time.sleep(0.4)
        c.unary(ECHO + "Unary", b"released past its lifetime")
        assert conn_id(c) != first


def test_idle_timeout_closes_idle_connections(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, idle_timeout_ms=200, min_idle=0))
    with drpc.Conn(sc.addr) as c:
        c.unary(ECHO + "Unary", b"x")
    assert upstream.open_conns() == 1
    deadline = time.time() + 3
    while upstream.open_conns() and time.time() < deadline:
        time.sleep(0.05)
    assert upstream.open_conns() == 0
    assert pools(sc)[0]["conns"]["total"] == 0


def test_round_robin_and_least_busy_spread_dials(sidecar):
    a, b = drpc.TestServer(), drpc.TestServer()
    try:
        for balance in ("round_robin", "least_busy"):
            cfg = basic_config(a.addr, max_conns=4, balance=balance, wait_timeout_ms=10000)
            cfg["pools"][0]["endpoints"] = [a.addr, b.addr]
            sc = sidecar(cfg)
            before = (a.accepted, b.accepted)
            conns = [drpc.Conn(sc.addr) for _ in range(4)]
            for c in conns:
                c.start_unary(ECHO + "Sleep", b"300")
            for c in conns:
                assert c.finish_unary() == b"slept"
                c.close()
            assert (a.accepted - before[0], b.accepted - before[1]) == (2, 2), balance
            sc.stop()
    finally:
        a.close()
        b.close()


def test_host_name_endpoint_is_resolved(upstream, sidecar):
    port = int(upstream.addr.rsplit(":", 1)[1])
    sc = sidecar(basic_config("localhost:%d" % port))
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Unary", b"via dns") == b"via dns"
    ep = pools(sc)[0]["endpoints"][0]
    assert ep["address"] == "localhost:%d" % port and ep["resolved"] in ("127.0.0.1", "::1")
    bad = sidecar(basic_config("no-such-host.invalid:1"))
    with drpc.Conn(bad.addr) as c:
        try:
            c.unary(ECHO + "Unary", b"x")
            raise AssertionError("resolved an invalid name")
        except drpc.DrpcError as e:
            assert e.code == 1005 and "resolve" in e.message


def test_pools_view_lists_agents(sidecar):
    accept = "127.0.0.1:%d" % free_port()
    cfg = {"listeners": [{"name": "l", "address": "127.0.0.1:%d" % free_port()}],
           "admin": {"address": "127.0.0.1:%d" % free_port()},
           "pools": [{"name": "agents", "accept": accept, "identify": {"rpc": ECHO + "Identify"}}]}
    sc = sidecar(cfg)
    agent = drpc.Agent(accept, n=3, ident="edge-1")
    try:
        deadline = time.time() + 5
        while time.time() < deadline:
            p = pools(sc)[0]
            if p["agents"] and p["agents"][0]["conns"] == 3 and p["conns"]["idle"] == 3:
                break
            time.sleep(0.05)
        assert p["kind"] == "reverse" and p["accept"] == accept
        assert [(x["id"], x["conns"], x["busy"]) for x in p["agents"]] == [("edge-1", 3, 0)]
    finally:
        agent.close()


class Recorder:
    """Accepts one connection and replays canned server bytes after each client chunk."""

    def __init__(self, server_chunks):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.got = b""
        self.server_chunks = server_chunks
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        s, _ = self.sock.accept()
        s.settimeout(2)
        for chunk in self.server_chunks:
            self._read_some(s)
            s.sendall(chunk)
        self._read_some(s)
        s.close()

    def _read_some(self, s):
        try:
            time.sleep(0.05)
            data = s.recv(1 << 20)
            while data:
                self.got += data
                s.settimeout(0.1)
                data = s.recv(1 << 20)
        except (socket.timeout, OSError):
            pass
        s.settimeout(2)


def capture(name):
    cli, srv = b"", []
    for line in open(os.path.join(TRANSCRIPTS, name + ".txt")):
        if line.startswith("> "):
            cli += bytes.fromhex(line[2:].strip())
        elif line.startswith("< "):
            srv.append(bytes.fromhex(line[2:].strip()))
    return cli, srv


def test_python_client_sends_the_go_clients_bytes():
    if not glob.glob(TRANSCRIPTS + "/*.txt"):
        import pytest
        pytest.skip("transcripts not found")
    cases = {
        "unary-small": lambda c: c.unary(ECHO + "Unary", b"hello"),
        "error-42": lambda c: _expect_error(c, ECHO + "Error", b"42 the answer is wrong"),
        "unknown-rpc": lambda c: _expect_error(c, ECHO + "NoSuchMethod", b"x"),
    }
    for name, call in cases.items():
        cli, srv = capture(name)
        rec = Recorder([b"".join(srv)])
        with drpc.Conn(rec.addr) as c:
            call(c)
            time.sleep(0.2)
        assert rec.got == cli, "%s: %s != %s" % (name, rec.got.hex(), cli.hex())


def _expect_error(c, rpc, data):
    try:
        c.unary(rpc, data)
    except drpc.DrpcError:
        return
    raise AssertionError("no error")
