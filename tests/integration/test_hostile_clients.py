"""Every hostile client input that leaves the client able
to read gets a precise DRPC Error (code 1011, "drpc-sidecar: protocol error:
<why>") on a stream it knows, and then the connection is closed; other
clients (a `good` one and 32 of background load, judged by fault_check's
finish(), fault_checks.py) never notice."""

import pytest

from . import drpc
from .fault_checks import open_testd_conns
from .procs import basic_config

ECHO = "/test.Echo/"


def _frame(kind, sid, mid, data=b"", done=True):
    return drpc.encode_frame(kind, sid, mid, data, done=done)


HOSTILE = [
    ("garbage", b"\xff" * 16, "varint longer than 10 bytes"),
    ("varint_over_10_bytes", b"\x03" + b"\xff" * 11, "varint longer than 10 bytes"),
    ("kind_0", _frame(0, 1, 1, b"x"), "kind"),
    ("1_GiB_length", b"\x05\x01\x01\x80\x80\x80\x80\x04", "frame length above the maximum"),
    ("message_before_invoke", _frame(drpc.KIND_MESSAGE, 1, 1, b"hi"), "before invoke"),
    ("http_request", b"GET / HTTP/1.1\r\n\r\n", ""),
    ("message_for_unopened_stream_mid_call",
     _frame(drpc.KIND_INVOKE, 1, 1, (ECHO + "Sleep").encode(), done=True) +
     _frame(drpc.KIND_MESSAGE, 1, 2, b"300") + _frame(drpc.KIND_CLOSE_SEND, 1, 3) +
     _frame(drpc.KIND_MESSAGE, 7, 1, b"x"), "before invoke"),
    # An rpc name over 4096 bytes is not a protocol error: it fails only its
    # call with 1008 and the connection stays (test_dataplane_wire.py).
]


@pytest.mark.parametrize("name,raw,why", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_client_gets_a_precise_error_then_is_closed(testd, sidecar, fault_check, name,
                                                            raw, why):
    up = testd()
    sc = sidecar(basic_config(up.addr))
    check = fault_check(sc, {"default": lambda: open_testd_conns(up)})
    good = sc.conn()
    assert good.unary(ECHO + "Unary", b"before") == b"before"
    with sc.conn(timeout=5) as bad:
        bad.send_raw(raw)
        frames = bad.wait_closed(timeout=5)
        errors = [f for f in frames if f.kind == drpc.KIND_ERROR]
        assert errors, "%s: closed without an Error packet (frames: %s)" % (
            name, [drpc.frame_str(f) for f in frames])
        code, text = drpc.decode_error(errors[-1].data)
        assert code == 1011, (code, text)
        assert text.startswith("drpc-sidecar: protocol error: "), text
        assert why in text, text
    assert good.unary(ECHO + "Unary", b"after") == b"after"
    good.close()
    check.finish()


def test_a_client_that_never_reads_is_paused_not_buffered(testd, sidecar, fault_check):
    """A client that pipelines calls the sidecar answers itself (no route:
    1001) and never reads the answers: once a call buffer's worth of them
    is queued, the sidecar stops reading that client, so its sends block
    and the sidecar's memory stays put; everyone else is served."""
    import socket
    import time

    up = testd()
    cfg = basic_config(up.addr)
    cfg["routes"] = [{"match": {"rpc_prefix": ECHO}, "pool": "default"}]
    sc = sidecar(cfg)
    check = fault_check(sc, {"default": lambda: open_testd_conns(up)})
    host, port = sc.addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(2)
    name = b"/nowhere/" + b"n" * 500  # each answer is an Error naming the rpc
    sent, sid, blocked = 0, 1, False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sent < (256 << 20):
        # Invoke and CloseSend: a call is routed once its request flows
        batch = b"".join(_frame(drpc.KIND_INVOKE, i, 1, name) + _frame(drpc.KIND_CLOSE_SEND, i, 2)
                         for i in range(sid, sid + 1000))
        sid += 1000
        try:
            s.sendall(batch)
        except socket.timeout:
            blocked = True
            break
        sent += len(batch)
    assert blocked, "the sidecar read %d MiB from a client that reads nothing" % (sent >> 20)
    assert sent < (64 << 20), sent
    clients = sc.admin_get("/clients")["clients"]
    assert max(c["bytes_in"] for c in clients) < (64 << 20)
    s.close()
    check.finish()
