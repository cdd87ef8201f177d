"""The data plane: every kind of call through the real sidecar, pooling limits,
failures answered with precise errors, cancellation, routes, shutdown."""

import os
import signal
import socket
import threading
import time

import pytest

import drpc
from conftest import basic_config, free_port

ECHO = "/test.Echo/"


def conn_id(c):
    """Which upstream connection served this call, per the test server."""
    return int(c.unary(ECHO + "Conn", b"").split()[0])


def test_every_kind_of_call_passes_through(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    with drpc.Conn(sc.addr) as c:
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


def test_near_max_message_passes_and_over_max_is_refused(upstream, sidecar):
    cfg = basic_config(upstream.addr)
    cfg["max_message_size"] = 1 << 20
    sc = sidecar(cfg)
    with drpc.Conn(sc.addr) as c:
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


def test_64_clients_share_a_pool_of_4(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=4, wait_timeout_ms=20000))
    errors = []
    seen = set()
    lock = threading.Lock()

    def client(i):
        try:
            with drpc.Conn(sc.addr) as c:
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
    assert upstream.accepted <= 4, upstream.accepted
    assert len(seen) <= 4 and seen <= {1, 2, 3, 4}


def test_wait_timeout_and_max_waiters(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=1, max_waiters=1, wait_timeout_ms=1500))
    holder = drpc.Conn(sc.addr)
    holder.start_unary(ECHO + "Sleep", b"3000")
    time.sleep(0.2)
    waiter = drpc.Conn(sc.addr)
    waiter.start_unary(ECHO + "Unary", b"w")
    time.sleep(0.05)
    # the queue holds one waiter: the next call fails at once
    with drpc.Conn(sc.addr) as third:
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


def test_upstream_lost_mid_call_then_same_client_recovers(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    with drpc.Conn(sc.addr) as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.server_stream(ECHO + "Abort", b"3")
        assert e.value.code == 1006
        assert e.value.message.startswith("drpc-sidecar: upstream connection lost")
        assert c.unary(ECHO + "Unary", b"next") == b"next"


def test_upstream_killed_mid_call(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    with drpc.Conn(sc.addr) as c:
        c.start_unary(ECHO + "Sleep", b"2000")
        time.sleep(0.3)
        upstream.kill_connections()
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary()
        assert e.value.code == 1006
        assert c.unary(ECHO + "Unary", b"next") == b"next"


@pytest.mark.parametrize("mode", ["soft", "close"])
def test_client_hangup_mid_call_leaves_pool_consistent(upstream, sidecar, mode):
    sc = sidecar(basic_config(upstream.addr, max_conns=1, cancel=mode, wait_timeout_ms=5000))
    with drpc.Conn(sc.addr) as c:
        first = conn_id(c)
    gone = drpc.Conn(sc.addr)
    gone.start_unary(ECHO + "Sleep", b"400")
    time.sleep(0.1)
    gone.close()  # hard cancel, like the Go client's default
    time.sleep(0.1)
    with drpc.Conn(sc.addr) as c:
        # the single pooled connection is reusable (soft) or was replaced (close)
        t0 = time.time()
        cid = conn_id(c)
        if mode == "soft":
            assert cid == first
        else:
            assert cid != first
        assert time.time() - t0 < 2
        assert c.unary(ECHO + "Unary", b"ok") == b"ok"
    assert upstream.accepted == (1 if mode == "soft" else 2)


def test_soft_cancel_from_client_keeps_both_connections(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=1))
    with drpc.Conn(sc.addr) as c:
        first = conn_id(c)
        c.start_unary(ECHO + "Sleep", b"300")
        time.sleep(0.05)
        c.soft_cancel()
        assert c.unary(ECHO + "Unary", b"again") == b"again"
        assert conn_id(c) == first
    assert upstream.accepted == 1


def test_call_deadline(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, call_timeout_ms=200))
    with drpc.Conn(sc.addr) as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Sleep", b"3000")
        assert e.value.code == 1007
        assert 0.15 < time.time() - t0 < 1.5
        assert c.unary(ECHO + "Unary", b"fine") == b"fine"


def test_routes_pick_pools_and_add_metadata(sidecar):
    a, b = drpc.TestServer(), drpc.TestServer()
    try:
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
        with drpc.Conn(sc.addr) as c:
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
    finally:
        a.close()
        b.close()


def test_dial_failure_fails_fast_then_recovers(sidecar):
    port = free_port()
    cfg = basic_config("127.0.0.1:%d" % port, backoff_base_ms=50, backoff_max_ms=100)
    sc = sidecar(cfg)
    with drpc.Conn(sc.addr) as c:
        t0 = time.time()
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Unary", b"x")
        assert e.value.code == 1005
        assert "connection refused" in e.value.message
        assert time.time() - t0 < 1
        srv = drpc.TestServer("127.0.0.1:%d" % port)
        try:
            deadline = time.time() + 5
            while True:
                try:
                    assert c.unary(ECHO + "Unary", b"back") == b"back"
                    break
                except drpc.DrpcError as err:
                    assert err.code in (1004, 1005)
                    assert time.time() < deadline
                    time.sleep(0.1)
        finally:
            srv.close()


def test_all_endpoints_ejected(sidecar):
    cfg = basic_config("127.0.0.1:%d" % free_port(), eject_after_failures=2, eject_ms=5000,
                       backoff_base_ms=1, backoff_max_ms=1)
    sc = sidecar(cfg)
    codes = []
    with drpc.Conn(sc.addr) as c:
        for _ in range(4):
            try:
                c.unary(ECHO + "Unary", b"x")
            except drpc.DrpcError as e:
                codes.append(e.code)
            time.sleep(0.02)
    assert codes[0] == 1005
    assert codes[-1] == 1004, codes


def test_second_endpoint_takes_over(sidecar, upstream):
    dead = "127.0.0.1:%d" % free_port()
    cfg = basic_config(dead, eject_after_failures=1)
    cfg["pools"][0]["endpoints"] = [dead, upstream.addr]
    sc2 = sidecar(cfg)
    ok = 0
    with drpc.Conn(sc2.addr) as c:
        for _ in range(10):
            try:
                c.unary(ECHO + "Unary", b"x")
                ok += 1
            except drpc.DrpcError as e:
                assert e.code == 1005
    assert ok >= 8


def test_unix_listener_and_header_prefix(upstream, sidecar, tmpdir_path):
    path = os.path.join(tmpdir_path, "s.sock")
    cfg = basic_config(upstream.addr)
    cfg["listeners"].append({"name": "sock", "address": "unix:" + path, "header": True})
    sc = sidecar(cfg)
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    with drpc.Conn("unix:" + path) as c:
        assert c.unary(ECHO + "Unary", b"via unix") == b"via unix"
    with drpc.Conn("unix:" + path, header=True) as c:
        assert c.unary(ECHO + "Unary", b"with header") == b"with header"


def test_header_to_upstream(sidecar):
    srv = drpc.TestServer(header=True)
    try:
        sc = sidecar(basic_config(srv.addr, header=True))
        with drpc.Conn(sc.addr) as c:
            assert c.unary(ECHO + "Unary", b"h") == b"h"
    finally:
        srv.close()


def test_stale_unix_socket_is_replaced_live_one_refused(upstream, sidecar, tmpdir_path):
    path = os.path.join(tmpdir_path, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # leaves a stale socket file behind
    cfg = basic_config(upstream.addr)
    cfg["listeners"][0] = {"name": "sock", "address": "unix:" + path}
    sc = sidecar(cfg)
    with drpc.Conn("unix:" + path) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
    cfg2 = basic_config(upstream.addr)
    cfg2["listeners"][0] = {"name": "sock", "address": "unix:" + path}
    second = sidecar(cfg2, wait=False, expect_exit=1)
    assert second.proc.wait(10) == 1
    assert "another process is listening" in second.output()
    assert sc.proc.poll() is None


def test_client_protocol_errors_affect_only_that_client(upstream, sidecar, background_load):
    sc = sidecar(basic_config(upstream.addr))
    background_load(sc.addr)
    good = drpc.Conn(sc.addr)
    assert good.unary(ECHO + "Unary", b"before") == b"before"
    bad_inputs = [
        b"\x03" + b"\xff" * 11,                       # varint longer than 10 bytes
        drpc.frame(0, 1, 1, b"x"),                    # kind 0
        b"\x05\x01\x01\x80\x80\x80\x80\x04",          # 1 GiB length
        drpc.frame(drpc.KIND_MESSAGE, 1, 1, b"hi"),  # message before invoke
        b"GET / HTTP/1.1\r\n\r\n",                    # not DRPC at all
    ]
    for raw in bad_inputs:
        with drpc.Conn(sc.addr) as bad:
            bad.send_raw(raw)
            bad.settimeout(3)
            with pytest.raises((drpc.DrpcError, drpc.ConnectionLost)) as e:
                bad.reader.read_packet()
                bad.reader.read_packet()
            if isinstance(e.value, drpc.DrpcError):
                assert e.value.code == 1011
                assert e.value.message.startswith("drpc-sidecar: protocol error")
            # then the sidecar closes that connection
            with pytest.raises(drpc.ConnectionLost):
                while True:
                    bad.reader.read_packet()
    # a client that hangs up halfway through a frame (and mid-call)
    half = drpc.Conn(sc.addr)
    frame = drpc.frame(drpc.KIND_INVOKE, 1, 1, ECHO.encode() + b"Unary") + \
        drpc.frame(drpc.KIND_MESSAGE, 1, 2, b"z" * 1000)
    half.send_raw(frame[:len(frame) - 500])
    time.sleep(0.1)
    half.close()
    assert good.unary(ECHO + "Unary", b"after") == b"after"
    good.close()


def test_late_frames_of_old_streams_are_dropped(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Unary", b"one") == b"one"
        # a late Close and Message for stream 1 must not disturb stream 2
        c.send_raw(drpc.frame(drpc.KIND_CLOSE, 1, 9) + drpc.frame(drpc.KIND_MESSAGE, 1, 10, b"late"))
        assert c.unary(ECHO + "Unary", b"two") == b"two"


def test_new_invoke_ends_unfinished_call(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=1))
    with drpc.Conn(sc.addr) as c:
        c.start_unary(ECHO + "Sleep", b"300")
        time.sleep(0.05)
        # abandon stream 1 and start stream 2, as a confused client might
        assert c.unary(ECHO + "Unary", b"next") == b"next"


def test_sigterm_drains_in_flight_calls(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr))
    c = drpc.Conn(sc.addr)
    c.start_unary(ECHO + "Sleep", b"500")
    idle = drpc.Conn(sc.addr)
    assert idle.unary(ECHO + "Unary", b"x") == b"x"
    time.sleep(0.1)
    sc.signal(signal.SIGTERM)
    assert c.finish_unary() == b"slept"
    assert sc.proc.wait(10) == 0
    # the listener is gone
    with pytest.raises(OSError):
        drpc.dial(sc.addr, timeout=1)
    c.close()
    idle.close()


def test_sigterm_grace_fails_leftover_calls(upstream, sidecar):
    cfg = basic_config(upstream.addr)
    cfg["shutdown_grace_ms"] = 200
    sc = sidecar(cfg)
    c = drpc.Conn(sc.addr)
    c.start_unary(ECHO + "Sleep", b"3000")
    time.sleep(0.1)
    t0 = time.time()
    sc.signal(signal.SIGTERM)
    with pytest.raises(drpc.DrpcError) as e:
        c.finish_unary()
    assert e.value.code == 1009
    assert sc.proc.wait(10) == 0
    assert time.time() - t0 < 3
    c.close()


def test_max_clients(upstream, sidecar):
    cfg = basic_config(upstream.addr)
    cfg["listeners"][0]["max_clients"] = 2
    sc = sidecar(cfg)
    time.sleep(0.2)  # let the readiness probe's connection close first
    a, b = drpc.Conn(sc.addr), drpc.Conn(sc.addr)
    assert a.unary(ECHO + "Unary", b"a") == b"a"
    assert b.unary(ECHO + "Unary", b"b") == b"b"
    extra = drpc.Conn(sc.addr)
    extra.settimeout(3)
    with pytest.raises((drpc.ConnectionLost, OSError)):
        extra.unary(ECHO + "Unary", b"c")
    extra.close()
    assert a.unary(ECHO + "Unary", b"a2") == b"a2"
    a.close()
    time.sleep(0.1)
    with drpc.Conn(sc.addr) as d:
        assert d.unary(ECHO + "Unary", b"d") == b"d"
    b.close()


def test_min_idle_prewarms(upstream, sidecar):
    sidecar(basic_config(upstream.addr, min_idle=3, max_conns=4))
    deadline = time.time() + 3
    while upstream.accepted < 3 and time.time() < deadline:
        time.sleep(0.02)
    assert upstream.accepted == 3


def test_idle_upstream_closed_by_server_is_not_reused(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=1))
    with drpc.Conn(sc.addr) as c:
        assert conn_id(c) == 1
        upstream.kill_connections()
        time.sleep(0.2)
        # the dead idle connection was dropped: the call gets a fresh one
        assert conn_id(c) == 2


def test_client_idle_timeout(upstream, sidecar):
    cfg = basic_config(upstream.addr)
    cfg["listeners"][0]["client_idle_timeout_ms"] = 300
    sc = sidecar(cfg)
    c = drpc.Conn(sc.addr)
    assert c.unary(ECHO + "Unary", b"x") == b"x"
    time.sleep(1.6)
    with pytest.raises((drpc.ConnectionLost, OSError)):
        c.unary(ECHO + "Unary", b"y")
    c.close()
