"""drpc-testd directly, with the independent Python client: every rpc of the
test service, the connection rules (stream ids, late and control packets,
cancellation, limits) and every kind of listener; and drpc-call, the C
client, through a sidecar. (drpc-testd as an agent: test_reverse.)"""

import os
import socket
import subprocess
import threading
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, binary

ECHO = "/test.Echo/"


def pattern(k, size):
    return bytes((k + i) % 251 for i in range(size))


@pytest.fixture
def server(testd):
    return testd(ident="testd-1")


@pytest.fixture
def conn(server):
    with server.conn() as c:
        yield c


# --- unary -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 5, 65535, 65536, 65537, 204800, (4 << 20) - 1],
                         ids=lambda n: "%dB" % n)
def test_unary_echo_sizes(conn, size):
    data = os.urandom(size)
    assert conn.unary(ECHO + "Unary", data) == data
    assert conn.unary(ECHO + "Unary", b"after") == b"after"


def test_unary_reply_on_the_wire(conn):
    """Message (msg 1) then CloseSend (msg 2) on the caller's stream id; a
    200 KiB reply comes as 64 KiB frames sharing one message id."""
    for sid in (1, 2):
        conn.start_unary(ECHO + "Unary", b"hi")
        assert conn.read_frame() == drpc.Frame(drpc.KIND_MESSAGE, sid, 1, b"hi", True, False)
        assert conn.read_frame() == drpc.Frame(drpc.KIND_CLOSE_SEND, sid, 2, b"", True, False)
        conn.stream.close()
    big = pattern(0, 204800)
    conn.start_unary(ECHO + "Unary", big)
    frames = [conn.read_frame() for _ in range(5)]
    assert [(f.kind, f.stream, f.message, len(f.data), f.done) for f in frames] == [
        (drpc.KIND_MESSAGE, 3, 1, 65536, False), (drpc.KIND_MESSAGE, 3, 1, 65536, False),
        (drpc.KIND_MESSAGE, 3, 1, 65536, False), (drpc.KIND_MESSAGE, 3, 1, 8192, True),
        (drpc.KIND_CLOSE_SEND, 3, 2, 0, True)]
    assert b"".join(f.data for f in frames) == big


def test_many_sequential_calls_one_connection(conn):
    for i in range(300):
        assert conn.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
    assert conn.unary(ECHO + "Conn", b"") == b"1 301"


def test_concurrent_connections(server):
    errors = []

    def worker(i):
        try:
            with server.conn() as c:
                for j in range(30):
                    m = b"w%d-%d" % (i, j)
                    assert c.unary(ECHO + "Unary", m) == m
                assert c.server_stream(ECHO + "ServerStream", b"3 1000") == \
                    [pattern(k, 1000) for k in range(3)]
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors


def test_over_4mib_packet_closes_the_connection(conn):
    """Like Go's reader ("data overflow"), a packet over 4 MiB is fatal."""
    with pytest.raises(drpc.ConnectionLost):
        conn.unary(ECHO + "Unary", b"x" * ((4 << 20) + 1))


# --- streams ---------------------------------------------------------------


@pytest.mark.parametrize("count,size", [(5, 16), (0, 10), (1, 0), (100, 1000), (3, 200000)])
def test_server_stream(conn, count, size):
    msgs = conn.server_stream(ECHO + "ServerStream", b"%d %d" % (count, size))
    assert len(msgs) == count
    for k, m in enumerate(msgs):
        assert m == pattern(k, size), "message %d" % k
    assert conn.unary(ECHO + "Unary", b"next") == b"next"


def test_server_stream_bad_request(conn):
    with pytest.raises(drpc.DrpcError):
        conn.server_stream(ECHO + "ServerStream", b"nonsense")
    assert conn.unary(ECHO + "Unary", b"ok") == b"ok"


def test_server_stream_read_slowly(conn):
    """A reader that lags behind a 4 MB stream still gets it all."""
    n = 0
    for k, m in enumerate(conn.iter_server_stream(ECHO + "ServerStream", b"40 100000")):
        if k < 3:
            time.sleep(0.1)
        assert m == pattern(k, 100000)
        n += 1
    assert n == 40


@pytest.mark.parametrize("messages", [[b"c%d" % i for i in range(5)], [], [b""] * 3,
                                      [os.urandom(100000), os.urandom(70000)]],
                         ids=["five", "none", "empty", "large"])
def test_client_stream(conn, messages):
    assert conn.client_stream(ECHO + "ClientStream", messages) == b"".join(messages)
    assert conn.unary(ECHO + "Unary", b"next") == b"next"


@pytest.mark.parametrize("messages", [[b"ping%d" % i for i in range(3)], [],
                                      [b"m%d" % i for i in range(100)], [os.urandom(300000)]],
                         ids=["three", "none", "hundred", "large"])
def test_bidi(conn, messages):
    assert conn.bidi(ECHO + "Bidi", messages) == messages
    assert conn.unary(ECHO + "Unary", b"next") == b"next"


def test_bidi_pipelined(conn):
    """Messages sent ahead of the replies are echoed in order."""
    st = conn.new_stream(ECHO + "Bidi")
    for i in range(20):
        st.send(b"p%d" % i)
    st.close_send()
    assert st.recv_all() == [b"p%d" % i for i in range(20)]


# --- errors ----------------------------------------------------------------


@pytest.mark.parametrize("code,text", [(42, "the answer is wrong"), (0, "zero"), (1, "x"),
                                       (12, "unimplemented"), (2**64 - 1, "max code"),
                                       (7, "")])
def test_error_codes(conn, code, text):
    req = ("%d %s" % (code, text)).encode() if text else b"%d" % code
    with pytest.raises(drpc.DrpcError) as e:
        conn.unary(ECHO + "Error", req)
    assert (e.value.code, e.value.message) == (code, text)
    # the error ended the stream by itself; the connection goes on
    assert conn.unary(ECHO + "Unary", b"after") == b"after"


def test_error_is_one_packet_and_nothing_follows(conn):
    conn.start_unary(ECHO + "Error", b"42 the answer is wrong")
    f = conn.read_frame()
    assert (f.kind, f.stream, f.message, f.done) == (drpc.KIND_ERROR, 1, 1, True)
    assert drpc.decode_error(f.data) == (42, "the answer is wrong")
    assert conn.is_open(0.2) and not conn._frames  # no CloseSend after it


@pytest.mark.parametrize("rpc", ["/test.Echo/NoSuchMethod", "/other.Service/Unary", "x", "",
                                 "/test.Echo/Unary2", "/test.Echo/unary", "/test.Echo/Unary/x",
                                 '/test.Echo/\x00b\ta"d\\\x7f\xe9'],
                         ids=["other-method", "other-service", "x", "empty", "suffix", "case",
                                "subpath", "needs-quoting"])
def test_unknown_rpc_then_connection_still_usable(conn, rpc):
    """Answered like drpcmux: code 0, `protocol error: unknown rpc: %q`."""
    with pytest.raises(drpc.DrpcError) as e:
        conn.unary(rpc, b"x")
    assert e.value.code == 0
    assert e.value.message == "protocol error: unknown rpc: " + drpc.go_quote(rpc.encode())
    assert conn.unary(ECHO + "Unary", b"still here") == b"still here"
    with pytest.raises(drpc.DrpcError):
        conn.server_stream(rpc + "2", b"")
    assert conn.bidi(ECHO + "Bidi", [b"a"]) == [b"a"]


# --- metadata --------------------------------------------------------------


@pytest.mark.parametrize("md,want", [
    (None, b""),
    ({"user": "alice", "trace": "t-123"}, b"trace=t-123\nuser=alice\n"),
    ([("trace", "t-123"), ("user", "alice")], b"trace=t-123\nuser=alice\n"),
    ({"k": ""}, b"k=\n"),
    ({"ключ": "значение ✓"}, "ключ=значение ✓\n".encode()),
    # many pairs: no limit but the byte cap, as in Go
    ({"k%04d" % i: "v%d" % i for i in range(2000)},
     b"".join(b"k%04d=v%d\n" % (i, i) for i in range(2000))),
    ({"big": "v" * 20000}, b"big=" + b"v" * 20000 + b"\n"),
], ids=["none", "two", "two-reordered", "empty-value", "utf8", "2000-pairs", "20k-value"])
def test_metadata(conn, md, want):
    assert conn.unary(ECHO + "Metadata", b"md?", md) == want


def test_metadata_belongs_to_its_stream(conn):
    assert conn.unary(ECHO + "Metadata", b"", {"a": "1"}) == b"a=1\n"
    assert conn.unary(ECHO + "Metadata", b"") == b""  # not carried over
    assert conn.unary(ECHO + "Metadata", b"", {"b": "2"}) == b"b=2\n"


# --- cancellation ----------------------------------------------------------


def test_sleep(conn):
    t0 = time.monotonic()
    assert conn.unary(ECHO + "Sleep", b"100") == b"slept"
    assert time.monotonic() - t0 >= 0.09


def test_soft_cancel_then_next_call_on_same_conn(conn):
    conn.start_unary(ECHO + "Sleep", b"5000")
    time.sleep(0.05)
    conn.soft_cancel()
    t0 = time.monotonic()
    assert conn.unary(ECHO + "Unary", b"again") == b"again"
    assert time.monotonic() - t0 < 1
    assert conn.unary(ECHO + "Conn", b"") == b"1 3"
    # nothing ever came for the cancelled stream 1
    assert not [p for p in conn.ignored if p.stream == 1]


def test_cancel_sent_before_the_request_arrives_is_harmless(conn):
    conn.start_unary(ECHO + "Sleep", b"5000")
    conn.soft_cancel()
    assert conn.unary(ECHO + "Unary", b"x") == b"x"
    assert not [p for p in conn.ignored if p.stream == 1]


def test_new_invoke_cancels_unfinished_stream(conn):
    """A new Invoke while Sleep runs ends the Sleep without a reply."""
    conn.start_unary(ECHO + "Sleep", b"300")
    assert conn.unary(ECHO + "Unary", b"x") == b"x"
    time.sleep(0.4)
    assert conn.unary(ECHO + "Unary", b"y") == b"y"
    assert not [p for p in conn.ignored if p.stream == 1]


def test_close_ends_a_stream(conn):
    st = conn.start_unary(ECHO + "Sleep", b"300")
    st.close()
    time.sleep(0.4)
    assert conn.unary(ECHO + "Unary", b"x") == b"x"
    assert not [p for p in conn.ignored if p.stream == 1]


def test_hard_cancel_server_stays_up(server):
    c = server.conn()
    c.start_unary(ECHO + "Sleep", b"5000")
    time.sleep(0.05)
    c.close()
    server.wait_for_output("conn 1 closed", timeout=2, stream="stderr")
    with server.conn() as c2:
        assert c2.unary(ECHO + "Unary", b"up") == b"up"
        assert c2.unary(ECHO + "Conn", b"") == b"2 2"


# --- Conn, Identify, Abort -------------------------------------------------


def test_conn_counts_connections_and_rpcs(server):
    with server.conn() as a, server.conn() as b:
        assert a.unary(ECHO + "Conn", b"") == b"1 1"
        assert b.unary(ECHO + "Conn", b"") == b"2 1"
        a.unary(ECHO + "Unary", b"")
        with pytest.raises(drpc.DrpcError):
            a.unary(ECHO + "Error", b"3 e")
        assert a.client_stream(ECHO + "ClientStream", [b"x"]) == b"x"
        assert a.unary(ECHO + "Conn", b"") == b"1 5"
        assert b.unary(ECHO + "Conn", b"") == b"2 2"


def test_identify(testd):
    with testd(ident="east-1").conn() as c:
        assert c.unary(ECHO + "Identify", b"") == b"east-1"
    with testd().conn() as c:
        assert c.unary(ECHO + "Identify", b"") == b""


@pytest.mark.parametrize("n", [0, 1, 3])
def test_abort_gives_messages_then_connection_loss(conn, n):
    with pytest.raises(drpc.ConnectionLost) as e:
        conn.server_stream(ECHO + "Abort", b"%d" % n)
    assert e.value.received == [b"abort-%d" % i for i in range(n)]


def test_abort_leaves_other_connections_alone(server):
    with server.conn() as other, server.conn() as c:
        assert other.unary(ECHO + "Unary", b"1") == b"1"
        with pytest.raises(drpc.ConnectionLost):
            c.server_stream(ECHO + "Abort", b"2")
        assert other.unary(ECHO + "Unary", b"2") == b"2"


# --- listeners and header mode ---------------------------------------------


def _every_call(c):
    assert c.unary(ECHO + "Unary", b"u") == b"u"
    assert c.unary(ECHO + "Unary", pattern(0, 200000)) == pattern(0, 200000)
    assert c.client_stream(ECHO + "ClientStream", [b"a", b"b"]) == b"ab"
    assert c.server_stream(ECHO + "ServerStream", b"2 3") == [pattern(0, 3), pattern(1, 3)]
    assert c.bidi(ECHO + "Bidi", [b"p"]) == [b"p"]
    assert c.unary(ECHO + "Metadata", b"", {"a": "b"}) == b"a=b\n"
    with pytest.raises(drpc.DrpcError):
        c.unary(ECHO + "Error", b"9 nine")


def test_unix_socket_listener(testd, short_tmp):
    path = os.path.join(short_tmp, "t.sock")
    server = testd("unix:" + path)
    assert server.addr == "unix:" + path
    with server.conn() as c:
        _every_call(c)


def _have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_several_listeners_one_server(testd, short_tmp):
    listen = ["127.0.0.1:0", "unix:" + os.path.join(short_tmp, "s.sock")]
    if _have_ipv6():
        listen.append("[::1]:0")
    server = testd(*listen)
    assert len(server.addrs) == len(listen)
    assert server.addrs[0].startswith("127.0.0.1:") and not server.addrs[0].endswith(":0")
    if _have_ipv6():
        assert server.addrs[2].startswith("[::1]:")
    for i, a in enumerate(server.addrs):
        with drpc.Conn(a) as c:
            _every_call(c)
            # connection ids are shared across listeners
            assert c.unary(ECHO + "Conn", b"") == b"%d 8" % (i + 1)


def test_header_mode(testd):
    server = testd(header=True)
    with server.conn() as c:  # sends DRPC!!!1 first
        _every_call(c)
    # a client without the prefix is dropped
    with drpc.Conn(server.addr, timeout=3) as c:
        with pytest.raises(drpc.ConnectionLost):
            c.unary(ECHO + "Unary", b"no header")


def test_header_client_on_plain_server_gets_no_reply(server):
    """A plain server reads 'D' as a frame header announcing 67 bytes and
    waits (Go), or drops the connection: the call never succeeds."""
    with drpc.Conn(server.addr, header=True, timeout=0.5) as c:
        with pytest.raises((TimeoutError, drpc.ConnectionLost)):
            c.unary(ECHO + "Unary", b"x")


# --- wire rules with raw frames ----------------------------------------------


def F(kind, sid, mid, data=b"", done=True, control=False):
    return drpc.encode_frame(kind, sid, mid, data, done, control)


def unary_req(sid, rpc, data):
    return (F(drpc.KIND_INVOKE, sid, 1, rpc.encode()) + F(drpc.KIND_MESSAGE, sid, 2, data)
            + F(drpc.KIND_CLOSE_SEND, sid, 3))


def read_reply(c, sid):
    """The (kind, data) packets of stream sid up to its CloseSend/Error."""
    out = []
    while True:
        p = c.read_packet()
        assert p.stream == sid and not p.control, p
        out.append((p.kind, p.data))
        if p.kind in (drpc.KIND_CLOSE_SEND, drpc.KIND_ERROR):
            return out


def test_request_sent_one_byte_at_a_time(conn):
    req = unary_req(1, ECHO + "Unary", b"slow")
    for i in range(len(req)):
        conn.send_raw(req[i:i + 1])
        time.sleep(0.001)
    assert read_reply(conn, 1) == [(drpc.KIND_MESSAGE, b"slow"), (drpc.KIND_CLOSE_SEND, b"")]


def test_message_in_many_small_frames(conn):
    data = os.urandom(3000)
    req = F(drpc.KIND_INVOKE, 1, 1, b"/test.Echo/Unary")
    req += drpc.encode_packet(drpc.KIND_MESSAGE, 1, 2, data, split=7)
    req += F(drpc.KIND_CLOSE_SEND, 1, 3)
    conn.send_raw(req)
    assert read_reply(conn, 1)[0] == (drpc.KIND_MESSAGE, data)


def test_invoke_name_in_frames_and_large_varints(conn):
    """The rpc name split over frames; a stream id needing a 5-byte varint."""
    sid = 2**32 + 5
    req = drpc.encode_packet(drpc.KIND_INVOKE, sid, 1, b"/test.Echo/Unary", split=3)
    req += F(drpc.KIND_MESSAGE, sid, 2, b"v") + F(drpc.KIND_CLOSE_SEND, sid, 3)
    conn.send_raw(req)
    assert read_reply(conn, sid) == [(drpc.KIND_MESSAGE, b"v"), (drpc.KIND_CLOSE_SEND, b"")]


def test_unfinished_packet_discarded_by_a_newer_id(conn):
    req = F(drpc.KIND_INVOKE, 1, 1, b"/test.Echo/Unary")
    req += F(drpc.KIND_MESSAGE, 1, 2, b"partial", done=False)
    req += F(drpc.KIND_MESSAGE, 1, 3, b"whole") + F(drpc.KIND_CLOSE_SEND, 1, 4)
    conn.send_raw(req)
    assert read_reply(conn, 1)[0] == (drpc.KIND_MESSAGE, b"whole")


def test_unknown_control_packet_is_ignored(conn):
    conn.send_raw(F(0x3F, 1, 1, b"future", control=True))
    conn.send_raw(unary_req(1, ECHO + "Unary", b"ok"))
    assert read_reply(conn, 1) == [(drpc.KIND_MESSAGE, b"ok"), (drpc.KIND_CLOSE_SEND, b"")]


def test_late_packets_of_an_old_stream_are_ignored(conn):
    """After stream 1 ended (both CloseSends), its late Close and Message
    change nothing; the next stream works."""
    conn.send_raw(unary_req(1, ECHO + "Unary", b"one"))
    assert read_reply(conn, 1)[0] == (drpc.KIND_MESSAGE, b"one")
    conn.send_raw(F(drpc.KIND_CLOSE, 1, 4) + F(drpc.KIND_MESSAGE, 1, 5, b"late"))
    conn.send_raw(F(drpc.KIND_INVOKE, 2, 1, b"/test.Echo/Bidi") + F(drpc.KIND_MESSAGE, 2, 2, b"b1"))
    assert conn.read_packet()[:4] == (drpc.KIND_MESSAGE, 2, 1, b"b1")
    conn.send_raw(F(drpc.KIND_CLOSE_SEND, 2, 3))
    assert conn.read_packet()[:3] == (drpc.KIND_CLOSE_SEND, 2, 2)
    assert conn.is_open(0.2) and not conn._frames


def test_stream_id_going_backwards_closes_the_connection(conn):
    conn.send_raw(unary_req(5, ECHO + "Unary", b"five"))
    assert read_reply(conn, 5)[0] == (drpc.KIND_MESSAGE, b"five")
    conn.send_raw(unary_req(4, ECHO + "Unary", b"four"))
    assert conn.wait_closed(3) == []


@pytest.mark.parametrize("garbage", [
    b"\x03" + b"\xff" * 10 + b"\x01",  # an 11-byte varint
    F(drpc.KIND_MESSAGE, 1, 1, b"a", done=False) + F(drpc.KIND_ERROR, 1, 1, b"b"),  # kind change
], ids=["long-varint", "kind-change"])
def test_protocol_errors_close_the_connection(server, garbage):
    with server.conn(timeout=3) as c:
        c.send_raw(garbage)
        assert c.wait_closed(3) == []
    with server.conn() as c:
        assert c.unary(ECHO + "Unary", b"fine") == b"fine"


def test_sigterm_with_open_connections_exits_cleanly(testd):
    server = testd()
    c = server.conn()
    assert c.unary(ECHO + "Unary", b"x") == b"x"
    c.start_unary(ECHO + "Sleep", b"5000")
    assert server.stop() == 0
    # the cancelled Sleep (stream 2) got no reply before the close
    assert [f for f in c.wait_closed(3) if f.stream == 2] == []
    c.close()


@pytest.mark.parametrize("shape", ["unary", "client", "bidi"])
def test_empty_message_after_a_large_one(conn, shape):
    """Empty packets right after one over 1 MiB (buffers released in between)."""
    big = os.urandom(2 << 20)
    if shape == "unary":
        assert conn.unary(ECHO + "Unary", big) == big
        assert conn.unary(ECHO + "Unary", b"") == b""
    elif shape == "client":
        assert conn.client_stream(ECHO + "ClientStream", [big, b"", b"z"]) == big + b"z"
    else:
        assert conn.bidi(ECHO + "Bidi", [big, b"", b"z"]) == [big, b"", b"z"]
    assert conn.unary(ECHO + "Unary", b"after") == b"after"


# --- drpc-call, the C client -------------------------------------------------


def test_drpc_call_cli_through_the_sidecar(pyserver, sidecar):
    sc = sidecar(basic_config(pyserver().addr))

    def call(*args):
        p = subprocess.run([binary("drpc-call")] + list(args), capture_output=True,
                           timeout=20 * SCALE)
        return p.returncode, p.stdout.decode()

    assert call(sc.addr, ECHO + "Unary", "hello") == (0, "hello\n")
    assert call("--meta", "a=1", sc.addr, ECHO + "Metadata", "x") == (0, "a=1\n\n")
    assert call("--stream", "client", sc.addr, ECHO + "ClientStream", "a", "b") == (0, "ab\n")
    assert call("--stream", "bidi", sc.addr, ECHO + "Bidi", "p", "q") == (0, "p\nq\n")
    code, out = call("--stream", "server", "--hex", sc.addr, ECHO + "ServerStream", "2 3")
    assert (code, out) == (0, "000102\n010203\n")
    assert call(sc.addr, ECHO + "Error", "42 nope") == (1, "error code=42 text=nope\n")
    code, out = call("--repeat", "3", sc.addr, ECHO + "Conn")
    assert code == 0 and len(out.splitlines()) == 3  # three calls on one client connection
    assert call("--soft-cancel-after", "100", sc.addr, ECHO + "Sleep", "3000") == \
        (0, "cancelled\n")
