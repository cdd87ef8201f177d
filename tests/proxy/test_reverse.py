"""Reverse pools: agents dial into the sidecar and serve DRPC on those connections."""

import threading
import time

import pytest

import drpc
from conftest import free_port

ECHO = "/test.Echo/"


def reverse_config(identify=True, max_conns=8, wait_timeout_ms=1000, header=False):
    pool = {"name": "agents", "accept": "127.0.0.1:%d" % free_port(), "max_conns": max_conns,
            "wait_timeout_ms": wait_timeout_ms, "header": header}
    if identify:
        pool["identify"] = {"rpc": ECHO + "Identify"}
    return {
        "listeners": [{"name": "local", "address": "127.0.0.1:%d" % free_port()}],
        "admin": {"address": "127.0.0.1:%d" % free_port()},
        "pools": [pool],
        "routes": [
            {"match": {"metadata": {"key": "agent-id"}}, "pool": "agents",
             "agent_from_metadata": "agent-id"},
            {"pool": "agents"},
        ],
    }


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def agent_of(c, agent=None):
    md = {"agent-id": agent} if agent else None
    return c.unary(ECHO + "Identify", b"", md).decode()


def test_calls_of_every_kind_reach_agents(sidecar):
    cfg = reverse_config()
    sc = sidecar(cfg)
    agent = drpc.Agent(cfg["pools"][0]["accept"], n=2, ident="alpha")
    try:
        with drpc.Conn(sc.addr) as c:
            deadline = time.time() + 5
            while True:
                try:
                    assert c.unary(ECHO + "Unary", b"hi agent") == b"hi agent"
                    break
                except drpc.DrpcError:
                    assert time.time() < deadline
                    time.sleep(0.05)
            assert c.server_stream(ECHO + "ServerStream", b"3 8") == [
                bytes((k + i) % 251 for i in range(8)) for k in range(3)]
            assert c.client_stream(ECHO + "ClientStream", [b"a", b"b"]) == b"ab"
            assert c.bidi(ECHO + "Bidi", [b"x", b"y"]) == [b"x", b"y"]
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Error", b"7 nope")
            assert e.value.code == 7
            assert c.unary(ECHO + "Metadata", b"", {"k": "v"}) == b"k=v\n"
            assert agent_of(c) == "alpha"
    finally:
        agent.close()


def test_concurrency_is_bounded_by_agent_connections(sidecar):
    cfg = reverse_config(wait_timeout_ms=10000)
    sc = sidecar(cfg)
    agent = drpc.Agent(cfg["pools"][0]["accept"], n=2, ident="a")
    try:
        with drpc.Conn(sc.addr) as c:
            assert wait_for(lambda: _try(c))
        results = []

        def caller():
            with drpc.Conn(sc.addr) as c:
                results.append(c.unary(ECHO + "Sleep", b"300"))

        t0 = time.time()
        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        # 4 calls of 300 ms over 2 agent connections take two rounds
        assert results == [b"slept"] * 4
        assert time.time() - t0 >= 0.55
    finally:
        agent.close()


def _try(c):
    try:
        c.unary(ECHO + "Unary", b"ping")
        return True
    except drpc.DrpcError:
        return False


def test_agent_targeted_calls(sidecar):
    cfg = reverse_config(wait_timeout_ms=400)
    sc = sidecar(cfg)
    addr = cfg["pools"][0]["accept"]
    a = drpc.Agent(addr, n=2, ident="agent-a")
    b = drpc.Agent(addr, n=1, ident="agent-b")
    try:
        with drpc.Conn(sc.addr) as c:
            assert wait_for(lambda: _try(c))
            time.sleep(0.2)  # let every identify finish
            for _ in range(5):
                assert agent_of(c, "agent-a") == "agent-a"
                assert agent_of(c, "agent-b") == "agent-b"
            t0 = time.time()
            with pytest.raises(drpc.DrpcError) as e:
                agent_of(c, "agent-zzz")
            assert e.value.code == 1014
            assert "agent not connected" in e.value.message
            assert 0.3 < time.time() - t0 < 2
    finally:
        a.close()
        b.close()


def test_no_agent_connected(sidecar):
    cfg = reverse_config(wait_timeout_ms=300)
    sc = sidecar(cfg)
    with drpc.Conn(sc.addr) as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1013
        assert time.time() - t0 >= 0.25


def test_agent_arriving_while_call_waits(sidecar):
    cfg = reverse_config(wait_timeout_ms=3000, identify=False)
    sc = sidecar(cfg)
    with drpc.Conn(sc.addr) as c:
        c.start_unary(ECHO + "Unary", b"patience")
        time.sleep(0.3)
        agent = drpc.Agent(cfg["pools"][0]["accept"], n=1)
        try:
            assert c.finish_unary() == b"patience"
            # without identify the agent id is its IP address
            assert c.unary(ECHO + "Unary", b"x", {"agent-id": "127.0.0.1"}) == b"x"
        finally:
            agent.close()


def test_agent_killed_mid_call_and_redial(sidecar):
    cfg = reverse_config(wait_timeout_ms=3000)
    sc = sidecar(cfg)
    addr = cfg["pools"][0]["accept"]
    agent = drpc.Agent(addr, n=1, ident="solo")
    with drpc.Conn(sc.addr) as c:
        assert wait_for(lambda: _try(c))
        c.start_unary(ECHO + "Sleep", b"2000")
        time.sleep(0.2)
        agent.close()
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary()
        assert e.value.code == 1006
        again = drpc.Agent(addr, n=1, ident="solo")
        try:
            assert c.unary(ECHO + "Unary", b"back") == b"back"
        finally:
            again.close()


def test_max_conns_caps_agent_connections(sidecar):
    cfg = reverse_config(max_conns=2, identify=False)
    sc = sidecar(cfg)
    agent = drpc.Agent(cfg["pools"][0]["accept"], n=4)
    try:
        assert wait_for(lambda: agent.open_conns() == 2, timeout=5), agent.open_conns()
        with drpc.Conn(sc.addr) as c:
            assert c.unary(ECHO + "Conn", b"")
    finally:
        agent.close()


def test_failing_identify_closes_the_connection(sidecar):
    cfg = reverse_config()
    cfg["pools"][0]["identify"] = {"rpc": ECHO + "NoSuchMethod"}
    sc = sidecar(cfg)
    agent = drpc.Agent(cfg["pools"][0]["accept"], n=1, ident="x")
    try:
        assert wait_for(lambda: agent.open_conns() == 0, timeout=5)
        assert "identify call failed" in sc.output()
    finally:
        agent.close()


def test_agents_must_send_header_when_asked(sidecar):
    cfg = reverse_config(header=True, identify=False)
    cfg["pools"][0]["dial_timeout_ms"] = 300  # the handshake deadline for agents
    sc = sidecar(cfg)
    bad = drpc.Agent(cfg["pools"][0]["accept"], n=1)
    good = drpc.Agent(cfg["pools"][0]["accept"], n=1, header=True)
    try:
        assert wait_for(lambda: bad.open_conns() == 0, timeout=5)
        assert "agent handshake timed out" in sc.output()
        with drpc.Conn(sc.addr) as c:
            assert wait_for(lambda: _try(c))
    finally:
        bad.close()
        good.close()
