"""Reverse pools against broken and hostile agents, beside stock-behaving
ones (drpc-testd --connect: a stock Go agent's behaviour on the wire).

The hostile agents are RawAgent sockets driven by the test: one that
identifies and then never answers, one that stops mid-frame, TCP probes
that connect and close, an agent that closes with the call unread, calls
that name absent agents, ids with a NUL, agents that fail identify.
"""

import http.client
import select
import socket
import threading
import time

import pytest

from . import drpc
from . import test_reverse_stock_agents as stock
from .procs import SCALE, free_addr
from .test_reverse_stock_agents import accept_of, wait_for

ECHO = "/test.Echo/"
IDENTIFY = ECHO + "Identify"


def reverse_config(identify=True, **pool):
    """test_reverse_stock_agents' config, with identify as a switch."""
    return stock.reverse_config(identify=IDENTIFY if identify else None, **pool)


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

    def __init__(self, addr, ident=None, source=None):
        sock = None
        if source:  # another loopback address: another agent host
            host, port = addr.rsplit(":", 1)
            sock = socket.socket()
            sock.bind((source, 0))
            sock.connect((host, int(port)))
        self.c = drpc.Conn(addr, sock=sock)
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


# --- 1. a silent connection is not reused ------------------------------------


def test_a_never_answering_agent_loses_one_call_and_its_connection(sidecar, agent, procs):
    """first_reply_timeout_ms ends the call stuck on an agent that identified
    and then never answers, and closes that connection: the next calls go to
    the stock agent."""
    sc = sidecar(reverse_config(first_reply_timeout_ms=400))
    agent(accept_of(sc), conns=2, ident="good")
    mute = procs.peer(RawAgent(accept_of(sc), "mute"))
    assert wait_for(lambda: agent_conns(sc) == {"good": 2, "mute": 1})
    with sc.conn() as c:
        t0 = time.monotonic()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"anyone?", {"agent-id": "mute"})
        assert e.value.code == 1007
        assert "first_reply_timeout_ms" in e.value.message and "mute" in e.value.message
        assert 0.35 < time.monotonic() - t0 < 3 * SCALE
        assert mute.closed_by_sidecar()
        assert wait_for(lambda: agent_conns(sc) == {"good": 2})
        for i in range(20):
            assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
        # a stock agent's long call that replies at its end is bounded by
        # first_reply_timeout_ms too, but a call with its own deadline is not
    assert pool(sc)["config"]["first_reply_timeout_ms"] == 400


def test_a_stream_that_replied_is_not_cut_by_the_first_reply_deadline(sidecar, agent):
    """The deadline is for the first reply only: a stream that answered at
    once may run far longer."""
    sc = sidecar(reverse_config(first_reply_timeout_ms=300))
    agent(accept_of(sc), conns=1, ident="good")
    assert wait_for(lambda: agent_conns(sc) == {"good": 1})
    with sc.conn() as c:
        st = c.new_stream(ECHO + "Bidi")
        st.send(b"one")
        assert st.recv() == b"one"
        time.sleep(0.8)
        st.send(b"two")
        assert st.recv() == b"two"
        st.close_send()
        assert st.recv_all() == []


@pytest.mark.parametrize("ending", ["call_timeout", "client_cancel", "client_gone"])
def test_a_call_ended_before_any_reply_closes_the_agent_connection(sidecar, procs, ending):
    """The sidecar used to soft-cancel and park the connection: the next
    call went to the same silent agent."""
    extra = {"call_timeout_ms": 300} if ending == "call_timeout" else {}
    sc = sidecar(reverse_config(**extra))
    mute = procs.peer(RawAgent(accept_of(sc), "mute"))
    assert wait_for(lambda: agent_conns(sc) == {"mute": 1})
    c = sc.conn()
    try:
        if ending == "call_timeout":
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Unary", b"x")
            assert e.value.code == 1007
        else:
            c.start_unary(ECHO + "Unary", b"x")
            mute.read_call()
            if ending == "client_cancel":
                c.soft_cancel()
            else:
                c.close()
        assert mute.closed_by_sidecar()
        assert wait_for(lambda: pool(sc)["conns"]["total"] == 0)
    finally:
        c.close()


def test_a_call_timeout_on_a_blackholed_dialled_upstream_closes_it(sidecar):
    """The same rule for dialled pools: the connection to an upstream that
    accepted and never answered is closed, not parked."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    try:
        addr = "127.0.0.1:%d" % lsock.getsockname()[1]
        sc = sidecar({"listeners": [{"address": free_addr()}],
                      "admin": {"address": free_addr()},
                      "pools": [{"name": "default", "endpoints": [addr], "max_conns": 1,
                                 "call_timeout_ms": 300}]})
        with sc.conn() as c:
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Unary", b"x")
            assert e.value.code == 1007
        lsock.settimeout(5 * SCALE)
        up, _ = lsock.accept()
        up.settimeout(5 * SCALE)
        got = b""
        while True:  # the call's bytes, then EOF: the sidecar closed it
            data = up.recv(65536)
            if not data:
                break
            got += data
        assert b"Unary" in got
        up.close()
        assert wait_for(lambda: sc.admin_get("/pools/default")["conns"]["total"] == 0)
    finally:
        lsock.close()


def test_an_agent_stopped_mid_frame_is_closed(sidecar, agent, procs):
    """An agent that sends the header of a 4 MiB frame and stops: no reply
    frame ever completes, so the first-reply deadline ends the call and the
    connection (it is not parked holding a half-read frame)."""
    sc = sidecar(reverse_config(first_reply_timeout_ms=400))
    agent(accept_of(sc), conns=1, ident="good")
    half = procs.peer(RawAgent(accept_of(sc), "half"))
    assert wait_for(lambda: agent_conns(sc) == {"good": 1, "half": 1})
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"x", {"agent-id": "half"})
        sid, _ = half.read_call()
        frame = drpc.encode_frame(drpc.KIND_MESSAGE, sid, 1, b"\0" * (4 << 20))
        half.c.send_raw(frame[:12] + b"\0" * 1000)
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary(timeout=5 * SCALE)
        assert e.value.code == 1007
        assert half.closed_by_sidecar()
        assert c.unary(ECHO + "Unary", b"fine") == b"fine"


# --- 2. real agents are not locked out ------------------------------------------


def test_silent_handshakes_give_their_slots_to_a_real_agent(sidecar, agent, procs):
    """max_conns connections that never answer identify used to keep every
    agent out until dial_timeout_ms; the one waiting longest now makes room."""
    sc = sidecar(reverse_config(max_conns=4, dial_timeout_ms=5000))
    squatters = [procs.peer(RawAgent(accept_of(sc))) for _ in range(4)]
    assert wait_for(lambda: pool(sc)["conns"]["connecting"] == 4)
    t0 = time.monotonic()
    agent(accept_of(sc), conns=1, ident="good")
    assert wait_for(lambda: agent_conns(sc) == {"good": 1}, timeout=2.0)
    assert time.monotonic() - t0 < 2.0 * SCALE
    with sc.conn() as c:
        assert c.unary(IDENTIFY, b"", {"agent-id": "good"}) == b"good"
    assert pool(sc)["counters"]["agent_handshakes_evicted"] >= 1
    assert squatters[0].closed_by_sidecar()


def test_an_id_held_from_one_address_is_not_taken_from_another(sidecar, agent, procs):
    """Two agents claimed "dup" and every call went to the later one. The
    first address keeps the id; the other is turned away (counted)."""
    sc = sidecar(reverse_config())
    agent(accept_of(sc), conns=1, ident="dup")
    assert wait_for(lambda: agent_conns(sc) == {"dup": 1})
    first = pool(sc)["agents"][0]["remote"]
    other = procs.peer(RawAgent(accept_of(sc), "dup", source="127.0.0.2"))
    assert other.closed_by_sidecar()
    assert pool(sc)["counters"]["agent_id_conflicts"] == 1
    a = pool(sc)["agents"]
    assert len(a) == 1 and a[0]["remote"] == first and a[0]["conns"] == 1
    with sc.conn() as c:
        for _ in range(20):
            assert c.unary(IDENTIFY, b"", {"agent-id": "dup"}) == b"dup"


def test_a_new_agent_connection_goes_behind_proven_ones(sidecar, agent, procs):
    """A connection that has not served a call yet is tried last: a silent
    squatter that arrives after a working agent gets no call while that
    agent is free (it got the very next one)."""
    sc = sidecar(reverse_config(identify=False, call_timeout_ms=500))
    agent(accept_of(sc), conns=1)
    assert idle(sc, 1)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"proven") == b"proven"
        procs.peer(RawAgent(accept_of(sc)))  # silent
        assert idle(sc, 2)
        for i in range(10):
            assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i


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


# --- 4. retry calls an agent never received -----------------------------------


def _load(sc, stop, ok, failures, n=4):
    def caller():
        with sc.conn() as c:
            while not stop.is_set():
                try:
                    c.unary(ECHO + "Unary", b"load")
                    ok.append(1)
                except drpc.DrpcError as e:
                    failures.append((e.code, e.message))
    threads = [threading.Thread(target=caller) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_connect_close_probes_lose_no_calls(sidecar, agent):
    """A TCP health check (connect, close) on the agent port beside a light
    load: a probe's connection may get a call before the sidecar reads its
    EOF; that call goes to another connection instead of failing."""
    sc = sidecar(reverse_config(identify=False))
    agent(accept_of(sc), conns=2)
    assert idle(sc, 2)
    stop, ok, failures = threading.Event(), [], []
    threads = _load(sc, stop, ok, failures)
    host, port = accept_of(sc).rsplit(":", 1)
    for _ in range(300):
        s = socket.create_connection((host, int(port)))
        s.close()
        time.sleep(0.003)
    stop.set()
    for t in threads:
        t.join(10 * SCALE)
    # One race remains (see the reverse-pool issue): a call written to a
    # probe's connection after its FIN but before its reset arrived reads
    # as an agent that took the call and left, which is not retried. Main
    # lost about one call in three probes; at most one may go now.
    assert len(failures) <= 1 and all(code == 1006 for code, _ in failures), failures
    assert len(ok) > 100


def stock_then_raw(sidecar, agent, procs):
    """A pool without identify, a stock agent's connection, then a raw
    agent's behind it; a held call keeps the stock one busy (300 ms), so
    the next call goes to the raw one. Returns (sidecar, raw, holder): the
    holder's Sleep reply is b"slept"."""
    sc = sidecar(reverse_config(identify=False))
    agent(accept_of(sc), conns=1)
    assert idle(sc, 1)
    raw = procs.peer(RawAgent(accept_of(sc)))
    assert idle(sc, 2)
    holder = procs.peer(sc.conn())
    holder.start_unary(ECHO + "Sleep", b"300")  # the older connection: the stock agent's
    assert wait_for(lambda: pool(sc)["conns"]["busy"] == 1)
    return sc, raw, holder


def test_an_agent_that_half_closed_gets_no_more_calls(sidecar, agent, procs):
    """It served one call and shut its sending side: every later call goes
    to the stock agent. (Its EOF is read while it idles; a call handed to it
    in the instant between its reply and its EOF is not retried, since a
    half-closed agent still reads and may have received it.)"""
    sc, raw, holder = stock_then_raw(sidecar, agent, procs)
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"first")  # the only idle connection: raw
        sid, _ = raw.read_call()
        raw.reply(sid, b"first")
        raw.sock.shutdown(socket.SHUT_WR)
        assert c.finish_unary() == b"first"
        for i in range(6):
            assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
    assert holder.finish_unary() == b"slept"


def test_a_call_the_agent_never_read_is_retried_once(sidecar, agent, procs):
    """The agent closes with the call unread (a reset): it cannot have
    served it, so the call goes to another connection."""
    sc, raw, holder = stock_then_raw(sidecar, agent, procs)
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"retry me")  # the only idle connection: raw
        r, _, _ = select.select([raw.sock], [], [], 5 * SCALE)
        assert r
        raw.close()  # unread bytes: the kernel resets the connection
        assert c.finish_unary() == b"retry me"  # on the stock agent, once it is free
    assert holder.finish_unary() == b"slept"
    assert pool(sc)["counters"]["calls_retried"] == 1


def test_a_call_the_agent_read_is_not_retried(sidecar, agent, procs):
    """The agent read the call and closed: it may have acted on it."""
    sc, raw, holder = stock_then_raw(sidecar, agent, procs)
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"once")
        raw.read_call()
        raw.close()
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary()
        assert e.value.code == 1006
    assert holder.finish_unary() == b"slept"
    assert pool(sc)["counters"]["calls_retried"] == 0


# --- 5. per-agent fairness in the wait queue ----------------------------------


def test_calls_for_absent_agents_cannot_fill_the_wait_queue(sidecar, agent):
    sc = sidecar(reverse_config(max_waiters=40, max_waiters_per_agent=5,
                                wait_timeout_ms=2500))
    agent(accept_of(sc), conns=2, ident="good")
    assert wait_for(lambda: agent_conns(sc) == {"good": 2})
    ghosts = [sc.conn() for _ in range(45)]
    try:
        for i, g in enumerate(ghosts):
            g.start_unary(ECHO + "Unary", b"", {"agent-id": "ghost-%d" % i})
        assert wait_for(lambda: pool(sc)["waiters"] == 5)
        # legitimate calls that must wait for a busy agent connection
        results = []

        def legit():
            with sc.conn() as c:
                try:
                    results.append(c.unary(ECHO + "Sleep", b"100"))
                except drpc.DrpcError as e:
                    results.append(e.code)
        threads = [threading.Thread(target=legit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10 * SCALE)
        assert results == [b"slept"] * 8
        codes = []
        for g in ghosts:
            with pytest.raises(drpc.DrpcError) as e:
                g.finish_unary(timeout=5 * SCALE)
            codes.append(e.value.code)
            if "max_waiters_per_agent" in e.value.message:
                assert "agents that are not connected" in e.value.message
        assert codes == [1014] * 45
    finally:
        for g in ghosts:
            g.close()


def test_calls_for_one_busy_agent_are_capped(sidecar, agent):
    sc = sidecar(reverse_config(max_waiters_per_agent=3, wait_timeout_ms=5000))
    agent(accept_of(sc), conns=1, ident="busy")
    agent(accept_of(sc), conns=1, ident="other")
    assert wait_for(lambda: agent_conns(sc) == {"busy": 1, "other": 1})
    conns = [sc.conn() for _ in range(6)]
    try:
        conns[0].start_unary(ECHO + "Sleep", b"500", {"agent-id": "busy"})
        assert wait_for(lambda: pool(sc)["conns"]["busy"] == 1)
        for c in conns[1:]:
            c.start_unary(ECHO + "Unary", b"q", {"agent-id": "busy"})
        with sc.conn() as o:  # another agent's calls are not held up
            assert o.unary(ECHO + "Unary", b"o", {"agent-id": "other"}) == b"o"
        got = []
        for c in conns[1:]:
            try:
                got.append(c.finish_unary(timeout=5 * SCALE))
            except drpc.DrpcError as e:
                assert "3 calls already wait for agent busy (max_waiters_per_agent)" in e.message
                got.append(e.code)
        assert sorted(got, key=str) == sorted([b"q"] * 3 + [1002] * 2, key=str)
        assert conns[0].finish_unary() == b"slept"
    finally:
        for c in conns:
            c.close()


# --- 6. an idle agent connection stuck mid-frame -----------------------------------


def test_an_idle_agent_holding_half_a_frame_is_closed(sidecar, agent, procs):
    """An idle agent sends the start of a 1 MiB frame and stops: the
    sidecar would hold that buffer for good. Within dial_timeout_ms the
    connection goes; the stock agent beside it is untouched."""
    sc = sidecar(reverse_config(identify=False, dial_timeout_ms=400))
    agent(accept_of(sc), conns=1)
    assert idle(sc, 1)
    raw = procs.peer(RawAgent(accept_of(sc)))
    assert idle(sc, 2)
    frame = drpc.encode_frame(drpc.KIND_MESSAGE, 1, 1, b"\0" * (1 << 20))
    t0 = time.monotonic()
    raw.c.send_raw(frame[:64 * 1024])
    assert raw.closed_by_sidecar(timeout=5)
    # frame data is passed on as it arrives: the header, for a stream never
    # opened, closes the connection at once rather than after dial_timeout_ms
    assert time.monotonic() - t0 < 3 * SCALE
    assert idle(sc, 1)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"still here") == b"still here"


# --- 7. metadata by full length; identify failures and throttled warnings --------


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


def test_identify_failures_are_counted_and_their_warnings_throttled(sidecar):
    sc = sidecar(reverse_config(max_conns=4))
    for _ in range(30):
        a = RawAgent(accept_of(sc))
        sid, _ = a.read_call()
        a.c.send_raw(drpc.encode_packet(drpc.KIND_ERROR, sid, 1,
                                        drpc.encode_error(12, "unknown rpc")))
        assert a.closed_by_sidecar()
        a.close()
    p = wait_for(lambda: (lambda q: q if q["counters"]["agent_identify_failures"] == 30
                          else None)(pool(sc)))
    assert p["counters"]["agent_warnings_suppressed"] >= 28
    text = metrics_text(sc)
    assert 'pool_agent_identify_failures_total{pool="agents"} 30' in text
    assert "pool_agent_warnings_suppressed_total{" in text
    lines = [l for l in sc.stderr().splitlines()
             if "closed before it was ready" in l]
    assert 1 <= len(lines) <= 2, lines
