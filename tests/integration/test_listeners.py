"""The client side of the sidecar: listeners (TCP, unix, header prefix,
stale sockets), client limits and timeouts, broken or confused clients
(each affects only itself), and shutdown on SIGTERM."""

import os
import signal
import socket
import time

import pytest

from . import drpc
from .procs import basic_config

ECHO = "/test.Echo/"
F = drpc.encode_frame


def test_unix_listener_and_header_prefix(pyserver, sidecar, short_tmp):
    path = os.path.join(short_tmp, "s.sock")
    cfg = basic_config(pyserver().addr)
    cfg["listeners"].append({"name": "sock", "address": "unix:" + path, "header": True})
    sidecar(cfg)
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    with drpc.Conn("unix:" + path) as c:
        assert c.unary(ECHO + "Unary", b"via unix") == b"via unix"
    with drpc.Conn("unix:" + path, header=True) as c:
        assert c.unary(ECHO + "Unary", b"with header") == b"with header"


def test_stale_unix_socket_is_replaced_live_one_refused(pyserver, sidecar, short_tmp):
    up = pyserver()
    path = os.path.join(short_tmp, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # leaves a stale socket file behind
    cfg = basic_config(up.addr)
    cfg["listeners"][0] = {"name": "sock", "address": "unix:" + path}
    sc = sidecar(cfg)
    with drpc.Conn("unix:" + path) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
    cfg2 = basic_config(up.addr)
    cfg2["listeners"][0] = {"name": "sock", "address": "unix:" + path}
    second = sidecar(cfg2, wait=False, expect_exit=1)
    assert second.wait(10) == 1
    assert "another process is listening" in second.stderr()
    assert sc.running()


def test_a_missing_socket_directory_is_named_as_missing(pyserver, sidecar, short_tmp):
    """libuv reports a bind under a missing directory as "permission
    denied"; the start names the real cause."""
    path = os.path.join(short_tmp, "no-such-dir", "s.sock")
    cfg = basic_config(pyserver().addr)
    cfg["listeners"].append({"name": "sock", "address": "unix:" + path})
    sc = sidecar(cfg, wait=False, expect_exit=1)
    assert sc.wait(10) == 1
    assert "bind %s: no such file or directory" % path in sc.stderr()


def test_a_stuck_owner_of_the_path_is_refused_without_blocking(pyserver, sidecar, short_tmp):
    """A process that listens on the path but never accepts, its backlog
    full: the probe must not wait for it, at start or on a reload (the
    reload runs on the loop that serves calls)."""
    up = pyserver()
    path = os.path.join(short_tmp, "stuck.sock")
    stuck = socket.socket(socket.AF_UNIX)
    stuck.bind(path)
    stuck.listen(0)
    queued = []
    while True:  # fill its backlog
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        queued.append(c)
    try:
        cfg = basic_config(up.addr)
        cfg["listeners"].append({"name": "sock", "address": "unix:" + path})
        first = sidecar(cfg, wait=False, expect_exit=1)
        assert first.wait(10) == 1
        assert "another process is listening on " + path in first.stderr()

        sc = sidecar(basic_config(up.addr))
        cfg = sc.config
        cfg["listeners"].append({"name": "sock", "address": "unix:" + path})
        sc.write_config(cfg)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 422 and "another process is listening" in body["error"], body
        with sc.conn() as c:
            assert c.unary(ECHO + "Unary", b"still serving") == b"still serving"
    finally:
        for c in queued:
            c.close()
        stuck.close()


def assert_protocol_error_then_closed(c):
    """The sidecar answers a broken client with at most one packet, an Error
    1011 "protocol error" if anything, then closes the connection."""
    frames = c.wait_closed(3)
    assert len(frames) <= 1, [drpc.frame_str(f) for f in frames]
    for f in frames:
        assert f.kind == drpc.KIND_ERROR, drpc.frame_str(f)
        code, text = drpc.decode_error(f.data)
        assert code == 1011 and text.startswith("drpc-sidecar: protocol error"), (code, text)


def test_client_protocol_errors_affect_only_that_client(pyserver, sidecar, fault_check):
    up = pyserver()
    sc = sidecar(basic_config(up.addr))
    check = fault_check(sc, {"default": up.open_conns})  # 32 clients of load meanwhile
    good = sc.conn()
    assert good.unary(ECHO + "Unary", b"before") == b"before"
    bad_inputs = [
        b"\x03" + b"\xff" * 11,                   # varint longer than 10 bytes
        F(0, 1, 1, b"x"),                         # kind 0
        b"\x05\x01\x01\x80\x80\x80\x80\x04",      # 1 GiB length
        F(drpc.KIND_MESSAGE, 1, 1, b"hi"),        # message before invoke
        b"GET / HTTP/1.1\r\n\r\n",                # not DRPC at all
    ]
    invoke = F(drpc.KIND_INVOKE, 1, 1, ECHO.encode() + b"Unary")
    bad_inputs += [  # found once the call is under way
        invoke + F(drpc.KIND_MESSAGE, 1, 2, b"a") + F(drpc.KIND_INVOKE, 1, 3, b"/x/Y"),
        invoke + F(drpc.KIND_MESSAGE, 1, 3, b"a") + F(drpc.KIND_MESSAGE, 1, 2, b"b"),
        # a control frame keeps its place in the id order (Go's reader checks it)
        invoke + F(drpc.KIND_MESSAGE, 1, 3, b"a", done=False) +
        F(20, 1, 2, b"", control=True),
    ]
    for raw in bad_inputs:
        with sc.conn(timeout=3) as bad:
            bad.send_raw(raw)
            assert_protocol_error_then_closed(bad)
    # each of them is counted, wherever the sidecar caught it
    stats = sc.admin_get("/stats")
    assert stats["counters"]["client_protocol_errors"] == len(bad_inputs)
    # a client that hangs up halfway through a frame (and mid-call)
    half = sc.conn()
    frame = F(drpc.KIND_INVOKE, 1, 1, ECHO.encode() + b"Unary") + \
        F(drpc.KIND_MESSAGE, 1, 2, b"z" * 1000)
    half.send_raw(frame[:len(frame) - 500])
    time.sleep(0.1)
    half.close()
    assert good.unary(ECHO + "Unary", b"after") == b"after"
    good.close()
    check.finish()


def test_late_frames_of_old_streams_are_dropped(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr))
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"one") == b"one"
        # a late Close and Message for stream 1 must not disturb stream 2
        c.send_raw(F(drpc.KIND_CLOSE, 1, 9) + F(drpc.KIND_MESSAGE, 1, 10, b"late"))
        assert c.unary(ECHO + "Unary", b"two") == b"two"


def test_new_invoke_ends_unfinished_call(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr, max_conns=1))
    with sc.conn() as c:
        c.start_unary(ECHO + "Sleep", b"300")
        time.sleep(0.05)
        # abandon stream 1 and start stream 2, as a confused client might
        assert c.unary(ECHO + "Unary", b"next") == b"next"


def test_max_clients(pyserver, sidecar):
    cfg = basic_config(pyserver().addr)
    cfg["listeners"][0]["max_clients"] = 2
    sc = sidecar(cfg)
    time.sleep(0.2)  # let the readiness probe's connection close first
    a, b = sc.conn(), sc.conn()
    assert a.unary(ECHO + "Unary", b"a") == b"a"
    assert b.unary(ECHO + "Unary", b"b") == b"b"
    extra = sc.conn(timeout=3)
    with pytest.raises((drpc.ConnectionLost, OSError)):
        extra.unary(ECHO + "Unary", b"c")
    extra.close()
    assert a.unary(ECHO + "Unary", b"a2") == b"a2"
    a.close()
    time.sleep(0.1)
    with sc.conn() as d:
        assert d.unary(ECHO + "Unary", b"d") == b"d"
    b.close()


def test_client_idle_timeout(pyserver, sidecar):
    cfg = basic_config(pyserver().addr)
    cfg["listeners"][0]["client_idle_timeout_ms"] = 300
    sc = sidecar(cfg)
    c = sc.conn()
    assert c.unary(ECHO + "Unary", b"x") == b"x"
    time.sleep(1.6)
    with pytest.raises((drpc.ConnectionLost, OSError)):
        c.unary(ECHO + "Unary", b"y")
    c.close()


def _read_stream_slowly(sock, count, pause):
    """Reads a server stream's packets off sock in small reads with pauses
    (a slow reader); returns (messages, the kind that ended the stream)."""
    dec, asm, msgs = drpc.FrameDecoder(), drpc.PacketAssembler(), 0
    while True:
        time.sleep(pause)
        data = sock.recv(16384)
        if not data:
            return msgs, None
        for f in dec.feed(data):
            p = asm.add(f)
            if p is None:
                continue
            if p.kind == drpc.KIND_MESSAGE:
                msgs += 1
            elif p.kind in (drpc.KIND_CLOSE_SEND, drpc.KIND_ERROR, drpc.KIND_CLOSE):
                return msgs, p.kind


def test_client_idle_timeout_spares_a_client_still_taking_its_reply(testd, sidecar, short_tmp):
    """The upstream has finished its stream, the sidecar still writes the
    rest of it to a slow reader: that client is not idle, and it gets the
    whole stream although reading it takes several idle timeouts. (A unix
    socket: its fixed buffers keep the tail in the sidecar, where a closed
    TCP socket's kernel buffer would still deliver it.)"""
    path = os.path.join(short_tmp, "c.sock")
    cfg = basic_config(testd().addr)
    cfg["listeners"][0] = {"name": "sock", "address": "unix:" + path,
                           "client_idle_timeout_ms": 100}
    sidecar(cfg)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(F(drpc.KIND_INVOKE, 1, 1, (ECHO + "ServerStream").encode()) +
              F(drpc.KIND_MESSAGE, 1, 2, b"20 50000") + F(drpc.KIND_CLOSE_SEND, 1, 3))
    msgs, end = _read_stream_slowly(s, 20, 0.04)  # 1 MB in about 2.5 s
    assert (msgs, end) == (20, drpc.KIND_CLOSE_SEND)
    s.close()


def test_sigterm_drains_in_flight_calls(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr))
    c = sc.conn()
    c.start_unary(ECHO + "Sleep", b"500")
    idle = sc.conn()
    assert idle.unary(ECHO + "Unary", b"x") == b"x"
    time.sleep(0.1)
    sc.send_signal(signal.SIGTERM)
    assert c.finish_unary() == b"slept"
    assert sc.wait(10) == 0
    # the listener is gone
    with pytest.raises(OSError):
        drpc.dial(sc.addr, timeout=1)
    c.close()
    idle.close()


def test_sigterm_grace_fails_leftover_calls(pyserver, sidecar):
    cfg = basic_config(pyserver().addr)
    cfg["shutdown_grace_ms"] = 200
    sc = sidecar(cfg)
    c = sc.conn()
    c.start_unary(ECHO + "Sleep", b"3000")
    time.sleep(0.1)
    t0 = time.time()
    sc.send_signal(signal.SIGTERM)
    with pytest.raises(drpc.DrpcError) as e:
        c.finish_unary()
    assert e.value.code == 1009
    assert sc.wait(10) == 0
    assert time.time() - t0 < 3
    c.close()
