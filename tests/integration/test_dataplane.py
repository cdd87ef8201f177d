"""The data plane through the real sidecar in front of the Python upstream
(pyserver.TestServer, which counts what the sidecar does to it): every kind
of call, pooling limits, upstream failures answered with precise errors,
cancellation, deadlines, routes and endpoint failover."""

import os
import threading
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, free_addr

ECHO = "/test.Echo/"


def conn_id(c):
    """Which upstream connection served this call, per the test server."""
    return int(c.unary(ECHO + "Conn", b"").split()[0])


def test_every_kind_of_call_passes_through(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr))
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"hello") == b"hello"
        assert c.unary(ECHO + "Unary", b"") == b""
        big = bytes(i % 251 for i in range(204800))
        assert c.unary(ECHO + "Unary", big) == big
        md = {"user": "alice", "trace": "t-123"}
        assert c.unary(ECHO + "Metadata", b"md?", md) == b"trace=t-123\nuser=alice\n"
        assert c.client_stream(ECHO + "ClientStream", [b"c%d" % i for i in range(5)]) == b"c0c1c2c3c4"
        msgs = c.server_stream(ECHO + "ServerStream", b"5 16")
        assert msgs == [bytes((k + i) % 251 for i in range(16)) for k in range(5)]
        assert c.bidi(ECHO + "Bidi", [b"ping0", b"ping1", b"ping2"]) == [b"ping0", b"ping1", b"ping2"]
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Error", b"42 the answer is wrong")
        assert (e.value.code, e.value.message) == (42, "the answer is wrong")
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "NoSuchMethod", b"")
        assert e.value.code == 0
        assert e.value.message == 'protocol error: unknown rpc: "/test.Echo/NoSuchMethod"'
        # the client connection is still usable after all of that
        assert c.unary(ECHO + "Unary", b"still here") == b"still here"


def test_near_max_message_passes_and_over_max_is_refused(pyserver, sidecar):
    cfg = basic_config(pyserver().addr)
    cfg["max_message_size"] = 1 << 20
    sc = sidecar(cfg)
    with sc.conn() as c:
        ok = os.urandom((1 << 20) - 1)
        assert c.unary(ECHO + "Unary", ok) == ok
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x" * ((1 << 20) + 10))
        assert e.value.code == 1008
        assert e.value.message.startswith("drpc-sidecar: message larger than max_message_size")
        # same connection, next call fine
        assert c.unary(ECHO + "Unary", b"after") == b"after"
        # an oversized reply: ServerStream of one message over the limit
        with pytest.raises(drpc.DrpcError) as e:
            c.server_stream(ECHO + "ServerStream", b"1 %d" % ((1 << 20) + 5))
        assert e.value.code == 1008
        assert c.unary(ECHO + "Unary", b"after reply") == b"after reply"


@pytest.mark.timeout_s(60)
def test_64_clients_share_a_pool_of_4(pyserver, sidecar):
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=4, wait_timeout_ms=20000))
    errors = []
    seen = set()
    lock = threading.Lock()

    def client(i):
        try:
            with sc.conn() as c:
                for k in range(10):
                    payload = b"client-%d-call-%d" % (i, k)
                    assert c.unary(ECHO + "Unary", payload) == payload
                    reply = c.unary(ECHO + "Conn", b"")
                    with lock:
                        seen.add(int(reply.split()[0]))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert up.accepted <= 4, up.accepted
    assert len(seen) <= 4 and seen <= {1, 2, 3, 4}


def test_wait_timeout_and_max_waiters(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr, max_conns=1, max_waiters=1, wait_timeout_ms=1500))
    holder = sc.conn()
    holder.start_unary(ECHO + "Sleep", b"3000")
    time.sleep(0.2)
    waiter = sc.conn()
    waiter.start_unary(ECHO + "Unary", b"w")
    time.sleep(0.05)
    # the queue holds one waiter: the next call fails at once
    with sc.conn() as third:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            third.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1002
        assert time.time() - t0 < 0.75  # at once, not after wait_timeout_ms
    # the waiter times out after ~1500 ms
    with pytest.raises(drpc.DrpcError) as e:
        waiter.finish_unary()
    assert e.value.code == 1003
    assert "timed out waiting" in e.value.message
    assert holder.finish_unary() == b"slept"
    # after the holder is done the waiter's connection works again
    assert waiter.unary(ECHO + "Unary", b"later") == b"later"
    holder.close()
    waiter.close()


def test_upstream_lost_mid_call_then_same_client_recovers(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr))
    with sc.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.server_stream(ECHO + "Abort", b"3")
        assert e.value.code == 1006
        assert e.value.message.startswith("drpc-sidecar: upstream connection lost")
        assert c.unary(ECHO + "Unary", b"next") == b"next"


def test_upstream_killed_mid_call(pyserver, sidecar):
    up = pyserver()
    sc = sidecar(basic_config(up.addr))
    with sc.conn() as c:
        c.start_unary(ECHO + "Sleep", b"2000")
        time.sleep(0.3)
        up.kill_connections()
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary()
        assert e.value.code == 1006
        assert c.unary(ECHO + "Unary", b"next") == b"next"


@pytest.mark.parametrize("mode", ["soft", "close"])
def test_client_hangup_mid_call_leaves_pool_consistent(pyserver, sidecar, mode):
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=1, cancel=mode, wait_timeout_ms=5000))
    with sc.conn() as c:
        first = conn_id(c)
    gone = sc.conn()
    st = gone.new_stream(ECHO + "Bidi")  # a call the upstream has answered
    st.send(b"x")
    assert st.recv() == b"x"
    gone.close()  # hard cancel, like the Go client's default
    time.sleep(0.1)
    with sc.conn() as c:
        # the single pooled connection is reusable (soft) or was replaced (close)
        t0 = time.time()
        cid = conn_id(c)
        if mode == "soft":
            assert cid == first
        else:
            assert cid != first
        assert time.time() - t0 < 2
        assert c.unary(ECHO + "Unary", b"ok") == b"ok"
    assert up.accepted == (1 if mode == "soft" else 2)


def test_soft_cancel_from_client_keeps_both_connections(pyserver, sidecar):
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=1))
    with sc.conn() as c:
        first = conn_id(c)
        st = c.new_stream(ECHO + "Bidi")  # a call the upstream has answered
        st.send(b"x")
        assert st.recv() == b"x"
        c.soft_cancel()
        assert c.unary(ECHO + "Unary", b"again") == b"again"
        assert conn_id(c) == first
    assert up.accepted == 1


def test_a_call_cancelled_before_any_reply_closes_its_connection(pyserver, sidecar):
    """An upstream that has not answered at all may be dead: its connection
    is closed, not parked for the next call (even with cancel "soft")."""
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=1))
    with sc.conn() as c:
        first = conn_id(c)
        c.start_unary(ECHO + "Sleep", b"300")
        time.sleep(0.05)
        c.soft_cancel()
        assert c.unary(ECHO + "Unary", b"again") == b"again"
        assert conn_id(c) != first
    assert up.accepted == 2


def test_a_soft_cancelled_connection_is_reused_after_the_other_idle_ones(pyserver, sidecar):
    """A server may still be running a soft-cancelled call's handler (Go
    runs one handler per connection), so the next call takes another idle
    connection if there is one."""
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=2))

    def upstream_of_the_call():
        deadline = time.time() + 5 * SCALE
        while True:
            calls = sc.admin_get("/calls")["calls"]
            if calls and calls[0]["upstream_id"] is not None:
                return calls[0]["upstream_id"]
            assert time.time() < deadline
            time.sleep(0.02)

    with sc.conn() as a, sc.conn() as b:
        a.start_unary(ECHO + "Sleep", b"200")  # two connections, both idle after
        b.start_unary(ECHO + "Sleep", b"200")
        assert a.finish_unary() == b"slept" and b.finish_unary() == b"slept"
        st = a.new_stream(ECHO + "Bidi")  # answered, then soft-cancelled
        st.send(b"x")
        assert st.recv() == b"x"
        cancelled = upstream_of_the_call()
        a.soft_cancel()
        deadline = time.time() + 5 * SCALE
        while sc.admin_get("/pools/default")["conns"]["idle"] != 2:
            assert time.time() < deadline
            time.sleep(0.02)
        b.start_unary(ECHO + "Sleep", b"100")
        assert upstream_of_the_call() != cancelled
        assert b.finish_unary() == b"slept"


def test_idle_timeout_closes_connections_behind_a_young_soft_cancelled_one(pyserver, sidecar):
    """The soft-cancelled connection parks at the end of the idle list; an
    older idle connection before it still times out on time."""
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=2, idle_timeout_ms=1000))
    with sc.conn() as a, sc.conn() as b:
        a.start_unary(ECHO + "Sleep", b"100")  # two connections, idle from here
        b.start_unary(ECHO + "Sleep", b"100")
        assert a.finish_unary() == b"slept" and b.finish_unary() == b"slept"
        t0 = time.monotonic()
        time.sleep(0.6)
        st = a.new_stream(ECHO + "Bidi")  # answered, then soft-cancelled
        st.send(b"x")
        assert st.recv() == b"x"
        a.soft_cancel()  # that connection is idle again from about t0 + 0.65 s
        time.sleep(max(0, t0 + 1.35 - time.monotonic()))
        # the other one passed its timeout at t0 + 1 s; the cancelled one
        # has until t0 + 1.65 s
        assert sc.admin_get("/pools/default")["conns"]["total"] == 1


def test_call_deadline(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr, call_timeout_ms=200))
    with sc.conn() as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Sleep", b"3000")
        assert e.value.code == 1007
        assert 0.15 < time.time() - t0 < 1.5
        assert c.unary(ECHO + "Unary", b"fine") == b"fine"


def test_routes_pick_pools_and_add_metadata(pyserver, sidecar):
    a, b = pyserver(), pyserver()
    cfg = basic_config(a.addr)
    cfg["pools"].append({"name": "other", "endpoints": [b.addr], "max_conns": 2})
    cfg["routes"] = [
        {"match": {"rpc": ECHO + "Conn"}, "pool": "other"},
        {"match": {"rpc_prefix": "/test.Echo/Meta", "metadata": {"key": "tenant", "value": "b"}},
         "pool": "other", "add_metadata": {"x-forwarded-by": "drpc-sidecar"}},
        {"match": {"rpc_prefix": "/test.Echo/Meta"}, "pool": "default",
         "add_metadata": {"x-forwarded-by": "drpc-sidecar"}},
        {"match": {"rpc_prefix": "/storage."}, "pool": "other"},
    ]
    sc = sidecar(cfg)
    with sc.conn() as c:
        c.unary(ECHO + "Conn", b"")
        assert b.calls == [ECHO + "Conn"] and a.calls == []
        assert c.unary(ECHO + "Metadata", b"") == b"x-forwarded-by=drpc-sidecar\n"
        assert a.calls == [ECHO + "Metadata"]
        out = c.unary(ECHO + "Metadata", b"", {"tenant": "b"})
        assert out == b"tenant=b\nx-forwarded-by=drpc-sidecar\n"
        assert b.calls[-1] == ECHO + "Metadata"
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"no route for me")
        assert e.value.code == 1001
        assert "/test.Echo/Unary" in e.value.message
        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/storage.Blob/Get", b"")  # routed to b, which does not know it
        assert e.value.code == 0
        assert c.unary(ECHO + "Metadata", b"") == b"x-forwarded-by=drpc-sidecar\n"


def test_dial_failure_fails_fast_then_recovers(pyserver, sidecar):
    addr = free_addr()
    sc = sidecar(basic_config(addr, backoff_base_ms=50, backoff_max_ms=100))
    with sc.conn() as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1005
        assert "connection refused" in e.value.message
        assert time.time() - t0 < 1
        pyserver(addr)
        deadline = time.time() + 5
        while True:
            try:
                assert c.unary(ECHO + "Unary", b"back") == b"back"
                break
            except drpc.DrpcError as err:
                assert err.code in (1004, 1005)
                assert time.time() < deadline
                time.sleep(0.1)


def test_all_endpoints_ejected(sidecar):
    cfg = basic_config(free_addr(), eject_after_failures=2, eject_ms=5000,
                       backoff_base_ms=1, backoff_max_ms=1)
    sc = sidecar(cfg)
    codes = []
    with sc.conn() as c:
        for _ in range(4):
            try:
                c.unary(ECHO + "Unary", b"x")
            except drpc.DrpcError as e:
                codes.append(e.code)
            time.sleep(0.02)
    assert codes[0] == 1005
    assert codes[-1] == 1004, codes


def test_second_endpoint_takes_over(pyserver, sidecar):
    dead = free_addr()
    cfg = basic_config(dead, eject_after_failures=1)
    cfg["pools"][0]["endpoints"] = [dead, pyserver().addr]
    sc = sidecar(cfg)
    ok = 0
    with sc.conn() as c:
        for _ in range(10):
            try:
                c.unary(ECHO + "Unary", b"x")
                ok += 1
            except drpc.DrpcError as e:
                assert e.code == 1005
    assert ok >= 8


def test_header_to_upstream(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver(header=True).addr, header=True))
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"h") == b"h"


def test_min_idle_prewarms(pyserver, sidecar):
    up = pyserver()
    sidecar(basic_config(up.addr, min_idle=3, max_conns=4))
    deadline = time.time() + 3
    while up.accepted < 3 and time.time() < deadline:
        time.sleep(0.02)
    assert up.accepted == 3


def test_idle_upstream_closed_by_server_is_not_reused(pyserver, sidecar):
    up = pyserver()
    sc = sidecar(basic_config(up.addr, max_conns=1))
    with sc.conn() as c:
        assert conn_id(c) == 1
        up.kill_connections()
        time.sleep(0.2)
        # the dead idle connection was dropped: the call gets a fresh one
        assert conn_id(c) == 2
