"""Reverse pools: agents dial into the sidecar and serve DRPC on those
connections. Most tests use the Python agent (pyserver.Agent dials a fixed
number of connections once, so a test controls exactly what is connected);
the last one runs the C agent (drpc-testd --connect --redial)."""

import threading
import time

import pytest

from . import drpc
from .procs import SCALE, free_addr

ECHO = "/test.Echo/"


def reverse_config(identify=True, max_conns=8, wait_timeout_ms=1000, header=False):
    pool = {"name": "agents", "accept": free_addr(), "max_conns": max_conns,
            "wait_timeout_ms": wait_timeout_ms, "header": header}
    if identify:
        pool["identify"] = {"rpc": ECHO + "Identify"}
    return {
        "listeners": [{"name": "local", "address": free_addr()}],
        "admin": {"address": free_addr()},
        "pools": [pool],
        "routes": [
            {"match": {"metadata": {"key": "agent-id"}}, "pool": "agents",
             "agent_from_metadata": "agent-id"},
            {"pool": "agents"},
        ],
    }


def accept_addr(cfg):
    return cfg["pools"][0]["accept"]


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout * SCALE
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def agent_of(c, agent=None):
    md = {"agent-id": agent} if agent else None
    return c.unary(ECHO + "Identify", b"", md).decode()


def _try(c):
    try:
        c.unary(ECHO + "Unary", b"ping")
        return True
    except drpc.DrpcError:
        return False


def test_calls_of_every_kind_reach_agents(sidecar, pyagent):
    cfg = reverse_config()
    sc = sidecar(cfg)
    pyagent(accept_addr(cfg), n=2, ident="alpha")
    with sc.conn() as c:
        assert wait_for(lambda: _try(c))
        assert c.unary(ECHO + "Unary", b"hi agent") == b"hi agent"
        assert c.server_stream(ECHO + "ServerStream", b"3 8") == [
            bytes((k + i) % 251 for i in range(8)) for k in range(3)]
        assert c.client_stream(ECHO + "ClientStream", [b"a", b"b"]) == b"ab"
        assert c.bidi(ECHO + "Bidi", [b"x", b"y"]) == [b"x", b"y"]
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Error", b"7 nope")
        assert e.value.code == 7
        assert c.unary(ECHO + "Metadata", b"", {"k": "v"}) == b"k=v\n"
        assert agent_of(c) == "alpha"


def test_concurrency_is_bounded_by_agent_connections(sidecar, pyagent):
    cfg = reverse_config(wait_timeout_ms=10000)
    sc = sidecar(cfg)
    pyagent(accept_addr(cfg), n=2, ident="a")
    with sc.conn() as c:
        assert wait_for(lambda: _try(c))
    results = []

    def caller():
        with sc.conn() as c:
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


def test_agent_targeted_calls(sidecar, pyagent):
    cfg = reverse_config(wait_timeout_ms=400)
    sc = sidecar(cfg)
    pyagent(accept_addr(cfg), n=2, ident="agent-a")
    pyagent(accept_addr(cfg), n=1, ident="agent-b")
    with sc.conn() as c:
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
        assert 0.3 < time.time() - t0 < 2 * SCALE


def test_no_agent_connected(sidecar):
    sc = sidecar(reverse_config(wait_timeout_ms=300))
    with sc.conn() as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1013
        assert time.time() - t0 >= 0.25


def test_agent_arriving_while_call_waits(sidecar, pyagent):
    cfg = reverse_config(wait_timeout_ms=3000, identify=False)
    sc = sidecar(cfg)
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"patience")
        time.sleep(0.3)
        pyagent(accept_addr(cfg), n=1)
        assert c.finish_unary() == b"patience"
        # without identify the agent id is its IP address
        assert c.unary(ECHO + "Unary", b"x", {"agent-id": "127.0.0.1"}) == b"x"


def test_agent_killed_mid_call_and_redial(sidecar, pyagent):
    cfg = reverse_config(wait_timeout_ms=3000)
    sc = sidecar(cfg)
    agent = pyagent(accept_addr(cfg), n=1, ident="solo")
    with sc.conn() as c:
        assert wait_for(lambda: _try(c))
        c.start_unary(ECHO + "Sleep", b"2000")
        time.sleep(0.2)
        agent.close()
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary()
        assert e.value.code == 1006
        pyagent(accept_addr(cfg), n=1, ident="solo")
        assert c.unary(ECHO + "Unary", b"back") == b"back"


def test_max_conns_caps_agent_connections(sidecar, pyagent):
    cfg = reverse_config(max_conns=2, identify=False)
    sc = sidecar(cfg)
    agent = pyagent(accept_addr(cfg), n=4)
    assert wait_for(lambda: agent.open_conns() == 2), agent.open_conns()
    with sc.conn() as c:
        assert c.unary(ECHO + "Conn", b"")


def test_failing_identify_closes_the_connection(sidecar, pyagent):
    cfg = reverse_config()
    cfg["pools"][0]["identify"] = {"rpc": ECHO + "NoSuchMethod"}
    sc = sidecar(cfg)
    agent = pyagent(accept_addr(cfg), n=1, ident="x")
    assert wait_for(lambda: agent.open_conns() == 0)
    sc.wait_for_output("identify call failed", stream="stderr")


def test_agents_must_send_header_when_asked(sidecar, pyagent):
    """With "header": true an agent whose first bytes are not DRPC!!!1 is
    closed when it first answers (its caller gets upstream_lost); one that
    sends the prefix first serves calls. (Since 3f1945f the prefix may come
    with the first reply, as drpcmigrate sends it, so a silent agent is no
    longer closed by the handshake deadline: see test_reverse_stock_agents.)"""
    cfg = reverse_config(header=True, identify=False)
    sc = sidecar(cfg)
    bad = pyagent(accept_addr(cfg), n=1)
    with sc.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"to the agent without the prefix")
        assert e.value.code == 1006
        assert wait_for(lambda: bad.open_conns() == 0)
        sc.wait_for_output("agent did not send the DRPC!!!1 header", stream="stderr")
        pyagent(accept_addr(cfg), n=1, header=True)
        assert wait_for(lambda: _try(c))
        assert c.unary(ECHO + "Unary", b"with the prefix") == b"with the prefix"


def test_c_agents_redial_through_a_reverse_pool(sidecar, agent):
    """drpc-testd --connect: two agents with two connections each, targeted
    by metadata; an agent connection lost mid-call is dialled again."""
    accept = free_addr()
    cfg = {
        "listeners": [{"name": "local", "address": free_addr()}],
        "admin": {"address": free_addr()},
        "pools": [{"name": "agents", "accept": accept, "identify": {"rpc": ECHO + "Identify"},
                   "wait_timeout_ms": 3000}],
        "routes": [{"match": {"metadata": {"key": "agent"}}, "pool": "agents",
                    "agent_from_metadata": "agent"}, {"pool": "agents"}],
    }
    sc = sidecar(cfg)
    for name in ("east", "west"):
        agent(accept, conns=2, ident=name)

    def both_there():
        try:
            c.unary(ECHO + "Identify", b"", {"agent": "west"})
            c.unary(ECHO + "Identify", b"", {"agent": "east"})
            return True
        except drpc.DrpcError:
            return False

    with sc.conn() as c:
        assert wait_for(both_there)
        for _ in range(5):
            assert c.unary(ECHO + "Identify", b"", {"agent": "west"}) == b"west"
            assert c.unary(ECHO + "Identify", b"", {"agent": "east"}) == b"east"
        # an agent connection lost mid-call: the agent re-dials
        with pytest.raises(drpc.DrpcError) as e:
            c.server_stream(ECHO + "Abort", b"1", {"agent": "east"})
        assert e.value.code == 1006
        assert wait_for(lambda: _identify(c, "east") == b"east")


def _identify(c, agent):
    try:
        return c.unary(ECHO + "Identify", b"", {"agent": agent})
    except drpc.DrpcError:
        return None
