"""Reverse pools against broken and hostile agents, beside stock-behaving
ones (drpc-testd --connect: a stock Go agent's behaviour on the wire).

The hostile agents are RawAgent sockets driven by the test: one that
identifies and then never answers, one that stops mid-frame, TCP probes
that connect and close, an agent that closes with the call unread, calls
that name absent agents, ids with a NUL, agents that fail identify.
"""

import http.client
import time

import pytest

from . import drpc
from .procs import SCALE, free_addr

ECHO = "/test.Echo/"
IDENTIFY = ECHO + "Identify"


def reverse_config(identify=True, **pool):
    p = {"name": "agents", "accept": free_addr(), "wait_timeout_ms": 3000}
    if identify:
        p["identify"] = {"rpc": IDENTIFY}
    p.update(pool)
    return {
        "listeners": [{"name": "local", "address": free_addr()}],
        "admin": {"address": free_addr()},
        "pools": [p],
        "routes": [
            {"match": {"metadata": {"key": "agent-id"}}, "pool": "agents",
             "agent_from_metadata": "agent-id"},
            {"pool": "agents"},
        ],
    }


def accept_of(sc):
    return sc.config["pools"][0]["accept"]


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def pool(sc):
    return sc.admin_get("/pools/agents")


def agent_conns(sc):
    return {a["id"]: a["conns"] for a in pool(sc)["agents"]}


def idle(sc, n):
    return wait_for(lambda: pool(sc)["conns"]["idle"] == n)


def metrics_text(sc):
    host, port = sc.admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5 * SCALE)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


class RawAgent:
    """An agent connection the test drives by hand (a drpc.Conn to the
    pool's accept port). With ident it answers the identify call first."""

    def __init__(self, addr, ident=None):
        self.c = drpc.Conn(addr)
        self.sock = self.c.sock
        if ident is not None:
            sid, rpc = self.read_call()
            assert rpc == IDENTIFY.encode(), rpc
            self.reply(sid, ident.encode())

    def read_call(self, timeout=None):
        """Reads one call up to its CloseSend; returns (stream id, rpc)."""
        sid = rpc = None
        while True:
            pkt = self.c.read_packet(timeout)
            if pkt.kind == drpc.KIND_INVOKE:
                sid, rpc = pkt.stream, pkt.data
            elif pkt.kind == drpc.KIND_CLOSE_SEND and pkt.stream == sid:
                return sid, rpc

    def reply(self, sid, data):
        self.c.send_raw(drpc.encode_packet(drpc.KIND_MESSAGE, sid, 1, data)
                        + drpc.encode_packet(drpc.KIND_CLOSE_SEND, sid, 2))

    def closed_by_sidecar(self, timeout=3.0):
        try:
            self.c.wait_closed(timeout * SCALE)
            return True
        except TimeoutError:
            return False

    def close(self):
        self.c.close()


# --- 3. drain keeps idle agent connections ------------------------------------


def test_drain_and_resume_keep_agents_that_do_not_redial(sidecar, agent):
    sc = sidecar(reverse_config(identify=False))
    agent(accept_of(sc), conns=2, redial=False)
    assert idle(sc, 2)
    with sc.conn() as c:
        c.start_unary(ECHO + "Sleep", b"300")  # busy through the drain
        assert wait_for(lambda: pool(sc)["conns"]["busy"] == 1)
        r = sc.admin_post("/pools/agents/drain")
        assert r["draining"] is True and r["conns"] == 2
        assert c.finish_unary() == b"slept"
    assert idle(sc, 2)  # open and unused, the busy one included
    time.sleep(0.2)
    assert pool(sc)["conns"]["idle"] == 2
    assert sc.admin_post("/pools/agents/resume")["draining"] is False
    with sc.conn() as c:
        for i in range(10):
            assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
    assert pool(sc)["counters"]["agents_accepted"] == 2


# --- 7. metadata values by their full length -----------------------------------


def test_an_agent_id_with_a_nul_names_no_agent(sidecar, agent):
    """"good-1\\0zzz" used to reach good-1: the value was compared up to its
    first NUL."""
    sc = sidecar(reverse_config(wait_timeout_ms=300))
    agent(accept_of(sc), conns=1, ident="good-1")
    assert wait_for(lambda: agent_conns(sc) == {"good-1": 1})
    with sc.conn() as c:
        assert c.unary(IDENTIFY, b"", {"agent-id": "good-1"}) == b"good-1"
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(IDENTIFY, b"", {"agent-id": "good-1\0zzz"})
        assert e.value.code == 1014 and "NUL" in e.value.message


def test_a_route_metadata_value_matches_by_full_length(sidecar, agent):
    cfg = reverse_config(identify=False)
    cfg["pools"].append({"name": "dead", "endpoints": [free_addr()], "wait_timeout_ms": 300})
    cfg["routes"].insert(0, {"match": {"metadata": {"key": "lane", "value": "b"}},
                             "pool": "dead"})
    sc = sidecar(cfg)
    agent(accept_of(sc), conns=1)
    assert idle(sc, 1)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"agents", {"lane": "b\0x"}) == b"agents"
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"dead", {"lane": "b"})
        assert e.value.code in (1004, 1005)
