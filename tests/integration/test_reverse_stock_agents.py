"""Reverse pools against agents that behave like a stock Go
drpc server on a connection it dialled (drpcserver.ServeOne / drpcmux):

- it sends nothing until it is invoked, and nothing beyond DRPC frames;
- with drpcmigrate.DialWithHeader its DRPC!!!1 prefix leaves with its first
  Write, i.e. with its first reply, never on its own at connect time.

Raw agents here are drpc.Conn sockets driven by the test (a Conn with
header=True puts the prefix in front of its first write, like
drpcmigrate.HeaderConn); real agents are drpc-testd --connect processes.
"""

import socket
import time

import pytest

from . import drpc
from .procs import SCALE, free_addr

ECHO = "/test.Echo/"
IDENTIFY = ECHO + "Identify"


def reverse_config(accept=None, identify=None, header=False, **pool):
    p = {"name": "agents", "accept": accept or free_addr(), "header": header,
         "wait_timeout_ms": 3000}
    if identify:
        p["identify"] = {"rpc": identify}
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


def idle_agents(sc, n):
    return wait_for(lambda: sc.admin_get("/pools/agents")["conns"]["idle"] == n)


def expect_call(agent, rpc, sid):
    """Reads one unary call (Invoke, Message, CloseSend) as the server; returns
    the request bytes. Skips the caller's Close of an older stream (late) and
    the call's InvokeMetadata."""
    while True:
        pkt = agent.read_packet()
        if pkt.stream < sid:
            continue
        if pkt.kind == drpc.KIND_INVOKE_METADATA:
            assert pkt.stream == sid, pkt
            continue
        break
    assert (pkt.kind, pkt.stream, pkt.data) == (drpc.KIND_INVOKE, sid, rpc.encode()), pkt
    msg = agent.read_packet()
    assert (msg.kind, msg.stream) == (drpc.KIND_MESSAGE, sid), msg
    end = agent.read_packet()
    assert (end.kind, end.stream) == (drpc.KIND_CLOSE_SEND, sid), end
    return msg.data


def unary_via(c, agent, sid, data):
    """One Unary call from caller c, served by the raw agent on stream sid."""
    c.start_unary(ECHO + "Unary", data)
    assert expect_call(agent, ECHO + "Unary", sid) == data
    reply(agent, sid, data)
    return c.finish_unary()


def reply(agent, sid, data):
    """Message + CloseSend in one write, as a Go server's unary reply."""
    agent.send_raw(drpc.encode_packet(drpc.KIND_MESSAGE, sid, 1, data)
                   + drpc.encode_packet(drpc.KIND_CLOSE_SEND, sid, 2))


# --- a stock agent: no identify, no header ----------------------------------


def test_stock_agent_gets_plain_client_streams_and_ip_id(sidecar):
    """Nothing reaches the agent before the first call, which comes as stream
    1, then 2: what a stock server on a dialled connection expects. Its id is
    its IP address and /pools shows it."""
    sc = sidecar(reverse_config())
    agent = drpc.Conn(accept_of(sc))
    try:
        assert idle_agents(sc, 1)
        assert agent.is_open(wait=0.5) and not agent._frames  # the sidecar sent nothing
        a = sc.admin_get("/pools/agents")["agents"]
        assert len(a) == 1 and a[0]["id"] == "127.0.0.1" and a[0]["conns"] == 1
        assert a[0]["remote"].startswith("127.0.0.1:") and a[0]["connected_since"]
        with sc.conn() as c:
            for sid, data in ((1, b"one"), (2, b"two")):
                c.start_unary("/svc.Agent/Do", data, {"agent-id": "127.0.0.1"})
                assert expect_call(agent, "/svc.Agent/Do", sid) == data
                reply(agent, sid, data.upper())
                assert c.finish_unary() == data.upper()
    finally:
        agent.close()


def test_idle_agent_that_closes_is_removed_at_once(sidecar):
    sc = sidecar(reverse_config(wait_timeout_ms=300))
    agent = drpc.Conn(accept_of(sc))
    assert idle_agents(sc, 1)
    agent.close()
    assert wait_for(lambda: sc.admin_get("/pools/agents")["agents"] == [], timeout=2)
    with sc.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1013 and "no agent connected" in e.value.message


# --- header: true with agents that dial like drpcmigrate.DialWithHeader -----


def test_lazy_header_agent_without_identify(sidecar):
    """drpcmigrate.HeaderConn writes DRPC!!!1 with the first reply; the agent
    must not be dropped for sending nothing first (dial_timeout_ms is also
    the agent handshake deadline)."""
    sc = sidecar(reverse_config(header=True, dial_timeout_ms=300))
    agent = drpc.Conn(accept_of(sc), header=True)  # prefix with the first write
    try:
        assert idle_agents(sc, 1)
        assert agent.is_open(wait=0.6)  # outlives the 300 ms handshake deadline
        with sc.conn() as c:
            assert unary_via(c, agent, 1, b"hi") == b"hi"  # DRPC!!!1 + Message + CloseSend
            assert unary_via(c, agent, 2, b"again") == b"again"
        assert sc.admin_get("/pools/agents")["conns"]["idle"] == 1
    finally:
        agent.close()


def test_lazy_header_agent_with_identify(sidecar):
    sc = sidecar(reverse_config(header=True, identify="/svc.Agent/Identify",
                                dial_timeout_ms=2000))
    agent = drpc.Conn(accept_of(sc), header=True)
    try:
        assert expect_call(agent, "/svc.Agent/Identify", 1) == b""
        reply(agent, 1, b" lazy-1\n")  # prefix, then the id (trimmed)
        assert idle_agents(sc, 1)
        assert [a["id"] for a in sc.admin_get("/pools/agents")["agents"]] == ["lazy-1"]
        with sc.conn() as c:
            c.start_unary(ECHO + "Unary", b"x", {"agent-id": "lazy-1"})
            assert expect_call(agent, ECHO + "Unary", 2) == b"x"
            reply(agent, 2, b"y")
            assert c.finish_unary() == b"y"
    finally:
        agent.close()


def test_eager_header_agent_still_accepted(sidecar):
    sc = sidecar(reverse_config(header=True))
    agent = drpc.Conn(accept_of(sc))
    try:
        agent.send_raw(drpc.HEADER)  # the prefix on its own, at connect
        assert idle_agents(sc, 1)
        with sc.conn() as c:
            assert unary_via(c, agent, 1, b"e") == b"e"
    finally:
        agent.close()


def test_header_required_from_the_first_byte(sidecar):
    """header: true still refuses an agent whose first bytes are not the
    prefix: at once when it sends junk, at its first reply otherwise (that
    caller gets upstream_lost)."""
    sc = sidecar(reverse_config(header=True))
    junk = drpc.Conn(accept_of(sc))
    junk.send_raw(b"GET / HTTP/1.1\r\n\r\n")
    junk.wait_closed(timeout=5 * SCALE)
    junk.close()
    plain = drpc.Conn(accept_of(sc))  # a server without the prefix
    try:
        assert idle_agents(sc, 1)
        with sc.conn() as c:
            c.start_unary(ECHO + "Unary", b"p")
            expect_call(plain, ECHO + "Unary", 1)
            reply(plain, 1, b"p")
            with pytest.raises(drpc.DrpcError) as e:
                c.finish_unary()
            assert e.value.code == 1006
        plain.wait_closed(timeout=5 * SCALE)
        assert "agent did not send the DRPC!!!1 header" in sc.stdout() + sc.stderr()
    finally:
        plain.close()


# --- errors while agents are still identifying -------------------------------


def test_agent_still_identifying_is_not_connected(sidecar):
    """A connection whose identify call is unanswered is no agent yet: calls
    fail with no_agent_connected / agent_not_connected, not wait_timeout,
    and its provisional id (its IP) does not match."""
    sc = sidecar(reverse_config(identify="/svc.Agent/Identify", wait_timeout_ms=300,
                                dial_timeout_ms=20000))
    agent = drpc.Conn(accept_of(sc))
    try:
        assert expect_call(agent, "/svc.Agent/Identify", 1) == b""  # and never answered
        v = sc.admin_get("/pools/agents")
        assert v["agents"] == [] and v["conns"]["connecting"] == 1, v
        with sc.conn() as c:
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Unary", b"x")
            assert e.value.code == 1013, e.value.message
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Unary", b"x", {"agent-id": "127.0.0.1"})
            assert e.value.code == 1014, e.value.message
    finally:
        agent.close()


def test_identify_reply_must_be_utf8(sidecar):
    sc = sidecar(reverse_config(identify="/svc.Agent/Identify"))
    agent = drpc.Conn(accept_of(sc))
    try:
        expect_call(agent, "/svc.Agent/Identify", 1)
        reply(agent, 1, b"agent-\xff\xfe")
        agent.wait_closed(timeout=5 * SCALE)
        out = sc.stdout() + sc.stderr()
        assert "identify returned an empty or invalid id" in out
        assert sc.admin_get("/pools/agents")["agents"] == []
    finally:
        agent.close()


# --- real agent processes (drpc-testd --connect) -----------------------------


def call_until(c, rpc, data=b"", md=None, timeout=5.0):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        try:
            return c.unary(rpc, data, md)
        except drpc.DrpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_agent_process_killed_mid_call_then_redials(sidecar, agent):
    sc = sidecar(reverse_config(identify=IDENTIFY))
    east = agent(accept_of(sc), conns=2, ident="east")
    west = agent(accept_of(sc), conns=1, ident="west")
    with sc.conn() as c:
        assert call_until(c, IDENTIFY, md={"agent-id": "east"}) == b"east"
        assert call_until(c, IDENTIFY, md={"agent-id": "west"}) == b"west"
        c.start_unary(ECHO + "Sleep", b"5000", {"agent-id": "west"})
        time.sleep(0.2)
        west.kill()
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary()
        assert e.value.code == 1006
        assert wait_for(lambda: [a["id"] for a in sc.admin_get("/pools/agents")["agents"]] == ["east"])
        # east is untouched; west comes back when a new process dials in
        assert c.unary(IDENTIFY, b"", {"agent-id": "east"}) == b"east"
        agent(accept_of(sc), conns=1, ident="west")
        assert call_until(c, IDENTIFY, md={"agent-id": "west"}) == b"west"


def test_max_conns_rejections_are_counted(sidecar, agent):
    sc = sidecar(reverse_config(max_conns=2))
    agent(accept_of(sc), conns=3, redial=False)
    assert wait_for(lambda: sc.admin_get("/pools/agents")["counters"]["agents_rejected"] >= 1)
    v = sc.admin_get("/pools/agents")
    assert v["counters"]["agents_accepted"] == 2 and v["conns"]["idle"] == 2
    assert [(a["id"], a["conns"]) for a in v["agents"]] == [("127.0.0.1", 2)]


def test_unix_socket_agents_get_connection_ids(sidecar, agent, short_tmp):
    sc = sidecar(reverse_config(accept="unix:%s/agents.sock" % short_tmp))
    agent(accept_of(sc), conns=2)
    assert idle_agents(sc, 2)
    ids = sorted(a["id"] for a in sc.admin_get("/pools/agents")["agents"])
    assert len(ids) == 2 and all(i.startswith("conn-") for i in ids), ids
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"u", {"agent-id": ids[1]}) == b"u"


def test_deadline_with_soft_cancel_keeps_the_agent_connection(sidecar, agent):
    sc = sidecar(reverse_config(call_timeout_ms=300, cancel="soft"))
    agent(accept_of(sc), conns=1, redial=False)
    assert idle_agents(sc, 1)
    with sc.conn() as c:
        first = c.unary(ECHO + "Conn", b"").split()[0]
        st = c.new_stream(ECHO + "Bidi")  # the agent answers, then the deadline passes
        st.send(b"x")
        assert st.recv() == b"x"
        with pytest.raises(drpc.DrpcError) as e:
            st.recv(timeout=3 * SCALE)
        assert e.value.code == 1007
        # the same agent connection serves the next call (the agent cannot be re-dialled)
        assert call_until(c, ECHO + "Conn", b"").split()[0] == first
    assert sc.admin_get("/pools/agents")["counters"]["agents_accepted"] == 1


def test_deadline_before_any_reply_closes_the_agent_connection(sidecar, agent):
    """A call that got no reply byte at all before its deadline may sit on a
    dead or hostile agent: that connection is closed, and a stock agent
    dials again."""
    sc = sidecar(reverse_config(call_timeout_ms=300, cancel="soft"))
    agent(accept_of(sc), conns=1)  # re-dials
    assert idle_agents(sc, 1)
    with sc.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Sleep", b"3000")
        assert e.value.code == 1007
        assert wait_for(lambda: sc.admin_get("/pools/agents")["counters"]["agents_accepted"] == 2)
        assert call_until(c, ECHO + "Unary", b"back") == b"back"


def test_reload_keeps_agent_connections(sidecar, agent):
    cfg = reverse_config(identify=IDENTIFY)
    sc = sidecar(cfg)
    agent(accept_of(sc), conns=1, ident="keep", redial=False)
    assert idle_agents(sc, 1)
    with sc.conn() as c:
        before = c.unary(ECHO + "Conn", b"", {"agent-id": "keep"}).split()[0]
        cfg["pools"][0]["wait_timeout_ms"] = 1234
        sc.write_config(cfg)
        sc.reload()
        assert wait_for(lambda: sc.admin_get("/pools/agents")["config"]["wait_timeout_ms"] == 1234)
        after = c.unary(ECHO + "Conn", b"", {"agent-id": "keep"}).split()[0]
        assert after == before


def test_calls_queued_during_drain_get_idle_agents_on_resume(sidecar, agent):
    """Drain keeps the idle agent connections open and unused (the sidecar
    cannot dial an agent back). A call queued meanwhile must get one as
    soon as the pool resumes, not wait out wait_timeout_ms."""
    sc = sidecar(reverse_config(wait_timeout_ms=4000))
    agent(accept_of(sc), conns=1, redial=False)
    assert idle_agents(sc, 1)
    assert sc.admin_post("/pools/agents/drain")["draining"] is True
    time.sleep(0.1)
    assert idle_agents(sc, 1)  # kept, unused while draining
    assert sc.admin_get("/pools/agents")["counters"]["agents_accepted"] == 1
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"queued")
        assert wait_for(lambda: sc.admin_get("/pools/agents")["waiters"] == 1)
        t0 = time.monotonic()
        assert sc.admin_post("/pools/agents/resume")["draining"] is False
        assert c.finish_unary(timeout=3 * SCALE) == b"queued"
        assert time.monotonic() - t0 < 1.5 * SCALE


def test_an_agent_arriving_during_a_drain_serves_nothing_until_resume(sidecar, agent):
    """A drained pool hands nothing out: an agent that connects while a call
    waits keeps its connection idle, and the call gets it at the resume."""
    sc = sidecar(reverse_config(wait_timeout_ms=4000))
    assert sc.admin_post("/pools/agents/drain")["draining"] is True
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"held")
        assert wait_for(lambda: sc.admin_get("/pools/agents")["waiters"] == 1)
        agent(accept_of(sc), conns=1)
        assert idle_agents(sc, 1)
        time.sleep(0.2)
        assert sc.admin_get("/pools/agents")["waiters"] == 1  # still waiting: not served while drained
        assert sc.admin_post("/pools/agents/resume")["draining"] is False
        assert c.finish_unary(timeout=3 * SCALE) == b"held"


@pytest.mark.timeout_s(120)
def test_dashboard_shows_agents(sidecar, agent):
    """The dashboard renders one row per agent id with its remote address,
    when it connected, its connections and how many are busy."""
    import re
    import shutil
    import subprocess
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed")
    sc = sidecar(reverse_config(identify=IDENTIFY, wait_timeout_ms=60000))
    agent(accept_of(sc), conns=2, ident="east")
    agent(accept_of(sc), conns=1, ident="west")
    assert idle_agents(sc, 3)
    with sc.conn() as c:
        c.start_unary(ECHO + "Sleep", b"30000", {"agent-id": "west"})
        assert wait_for(lambda: sc.admin_get("/pools/agents")["conns"]["busy"] == 1)
        with tempfile.TemporaryDirectory() as profile:
            r = subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                 "--virtual-time-budget=3000", "--dump-dom", "http://%s/" % sc.admin],
                capture_output=True, timeout=90 * SCALE)
        assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
        html = r.stdout.decode(errors="replace")
        main = html[html.find("<main>"):html.find("</main>")]
        assert "reverse, 2 agents" in main, main[:3000]
        rows = {m.group(1): m.groups()[1:] for m in re.finditer(
            r'<tr><td>agents</td><td>agent (\w+)</td><td>(127\.0\.0\.1:\d+)</td>'
            r'<td><span class="badge b-ok">connected</span> since ([^<]+)</td>'
            r'<td class="num">(\d+)</td><td class="num">(\d+)</td>', main)}
        assert set(rows) == {"east", "west"}, main[:3000]
        assert rows["east"][2:] == ("2", "0") and rows["west"][2:] == ("1", "1")
        assert all(r[1].strip() for r in rows.values())  # a time is shown


# --- the data plane over agent connections ----------------------------------


def test_every_call_kind_through_agent_processes(sidecar, agent):
    sc = sidecar(reverse_config(identify=IDENTIFY))
    agent(accept_of(sc), conns=2, ident="a1")
    agent(accept_of(sc), conns=2, ident="a2")
    assert idle_agents(sc, 4)
    with sc.conn() as c:
        for who in ("a1", "a2"):
            md = {"agent-id": who}
            assert c.unary(ECHO + "Unary", b"u", md) == b"u"
            assert c.server_stream(ECHO + "ServerStream", b"3 1000", md) == [
                bytes((k + i) % 251 for i in range(1000)) for k in range(3)]
            assert c.client_stream(ECHO + "ClientStream", [b"a", b"b", b"c"], md) == b"abc"
            assert c.bidi(ECHO + "Bidi", [b"x", b"y"], md) == [b"x", b"y"]
            with pytest.raises(drpc.DrpcError) as e:
                c.unary(ECHO + "Error", b"42 nope", md)
            assert (e.value.code, e.value.message) == (42, "nope")
            assert c.unary(IDENTIFY, b"", md) == who.encode()
        assert c.unary(ECHO + "Metadata", b"", {"k": "v"}) == b"k=v\n"
        big = bytes(range(256)) * 800  # 200 KiB: several 64 KiB frames each way
        assert c.unary(ECHO + "Unary", big) == big


def test_concurrency_is_bounded_by_agent_connections(sidecar, agent):
    import threading

    sc = sidecar(reverse_config(wait_timeout_ms=10000))
    agent(accept_of(sc), conns=2)
    assert idle_agents(sc, 2)
    results, busiest = [], []

    def caller():
        with sc.conn() as c:
            results.append(c.unary(ECHO + "Sleep", b"400"))

    t0 = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and time.monotonic() - t0 < 10 * SCALE:
        v = sc.admin_get("/pools/agents")
        busiest.append(v["conns"]["busy"])
        time.sleep(0.05)
    for t in threads:
        t.join(10 * SCALE)
    assert results == [b"slept"] * 4
    assert time.monotonic() - t0 >= 0.75  # two rounds of 400 ms over 2 connections
    assert max(busiest) == 2


def test_soft_cancel_and_late_packets_on_an_agent_connection(sidecar):
    """The caller cancels a call the agent has begun to answer; the agent gets
    a Cancel (control bit, next message id) and keeps its connection; its
    late reply to the cancelled stream is dropped; the next call is the next
    stream on the same connection."""
    sc = sidecar(reverse_config(cancel="soft"))
    agent = drpc.Conn(accept_of(sc))
    try:
        assert idle_agents(sc, 1)
        with sc.conn() as c:
            c.start_unary(ECHO + "Sleep", b"1000")
            expect_call(agent, ECHO + "Sleep", 1)
            agent.send_raw(drpc.encode_frame(drpc.KIND_MESSAGE, 1, 1, b"part"))
            f = c.read_frame()
            assert (f.kind, f.stream, f.data) == (drpc.KIND_MESSAGE, 1, b"part"), f
            c.soft_cancel()
            f = agent.read_frame()
            assert (f.kind, f.stream, f.message, f.control) == (drpc.KIND_CANCEL, 1, 4, True), f
            reply(agent, 1, b"late")  # after the cancel: must not reach anyone
            assert unary_via(c, agent, 2, b"next") == b"next"
        assert sc.admin_get("/pools/agents")["counters"]["agents_accepted"] == 1
    finally:
        agent.close()


def test_cancel_close_mode_closes_the_agent_connection(sidecar):
    """cancel: "close" behaves like the Go client's hard cancel: the agent
    connection goes (and the agent has to dial again)."""
    sc = sidecar(reverse_config(cancel="close", wait_timeout_ms=300))
    agent = drpc.Conn(accept_of(sc))
    try:
        assert idle_agents(sc, 1)
        c = sc.conn()
        c.start_unary(ECHO + "Sleep", b"1000")
        expect_call(agent, ECHO + "Sleep", 1)
        c.close()  # the caller hangs up mid-call
        agent.wait_closed(timeout=5 * SCALE)
        assert wait_for(lambda: sc.admin_get("/pools/agents")["agents"] == [])
    finally:
        agent.close()


def test_refused_reload_keeps_the_agent_socket(sidecar, agent, short_tmp):
    """A reload that rebuilds a reverse pool on the same unix path and then
    fails (another pool's port is taken) must leave the old pool accepting
    agents on that path, as the refusal says."""
    cfg = reverse_config(accept="unix:%s/agents.sock" % short_tmp)
    sc = sidecar(cfg)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        cfg["pools"][0]["identify"] = {"rpc": IDENTIFY}  # incompatible: the pool is rebuilt
        cfg["pools"].append({"name": "b", "accept": "127.0.0.1:%d" % taken.getsockname()[1]})
        sc.write_config(cfg)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 422 and "address already in use" in body["error"], body
    finally:
        taken.close()
    agent(accept_of(sc), conns=1, ident="after")
    assert idle_agents(sc, 1)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"u") == b"u"
    assert "could not re-open" not in sc.stderr()


def test_calls_waiting_when_a_reload_moves_the_agent_port_are_served_by_old_agents(sidecar,
                                                                                   agent):
    """The rebuilt pool has no agents yet; the retired one still has, and
    its waiting call is served on them, not moved where nothing serves it."""
    cfg = reverse_config()
    sc = sidecar(cfg)
    agent(accept_of(sc), conns=1, redial=False)
    assert idle_agents(sc, 1)
    busy, waiting = sc.conn(), sc.conn()
    try:
        busy.start_unary(ECHO + "Sleep", b"800")
        waiting.start_unary(ECHO + "Unary", b"waited")
        assert wait_for(lambda: sc.admin_get("/pools/agents")["waiters"] == 1)
        cfg["pools"][0]["accept"] = free_addr()
        sc.write_config(cfg)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 200, body
        assert busy.finish_unary() == b"slept"
        assert waiting.finish_unary() == b"waited"
    finally:
        busy.close()
        waiting.close()


@pytest.mark.parametrize("change", ["accept", "identify"])
def test_a_call_waiting_for_an_agent_is_served_by_the_rebuilt_pool(sidecar, agent, change):
    """No agent yet, a call waits, and a reload rebuilds the pool (a new
    agent address, or the same one with identify added). The agent that
    then connects reaches the new pool: the waiting call must be there."""
    cfg = reverse_config(wait_timeout_ms=5000)
    sc = sidecar(cfg)
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"waited")
        assert wait_for(lambda: sc.admin_get("/pools/agents")["waiters"] == 1)
        if change == "accept":
            cfg["pools"][0]["accept"] = free_addr()
        else:
            cfg["pools"][0]["identify"] = {"rpc": IDENTIFY}
        sc.write_config(cfg)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 200, body
        assert sc.admin_get("/pools/agents")["waiters"] == 1
        agent(accept_of(sc), conns=1, ident="late")
        assert c.finish_unary(timeout=10 * SCALE) == b"waited"


def test_reload_moves_the_agent_port(sidecar, agent):
    """A reload that changes "accept" rebuilds the pool: the old port
    closes (its agents are let go), the new one takes agents."""
    cfg = reverse_config(identify=IDENTIFY)
    sc = sidecar(cfg)
    old = accept_of(sc)
    agent(old, conns=1, ident="old", redial=False)
    assert idle_agents(sc, 1)
    new = free_addr()
    cfg["pools"][0]["accept"] = new
    sc.write_config(cfg)
    sc.reload()
    assert wait_for(lambda: sc.admin_get("/pools/agents")["accept"] == new)
    assert wait_for(lambda: sc.admin_get("/pools/agents")["agents"] == [])
    with pytest.raises(OSError):
        drpc.dial(old, timeout=1).close()
    agent(new, conns=1, ident="new")
    with sc.conn() as c:
        assert call_until(c, IDENTIFY, md={"agent-id": "new"}) == b"new"
