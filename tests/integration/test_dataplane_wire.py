"""Data-plane behaviour on the wire, each shown against the real
drpc-sidecar in front of the real drpc-testd:

  - the bytes a real Go client wrote (tests/data/drpc-transcripts) sent through
    the sidecar come back as the frames the real Go server wrote: the
    sidecar is invisible on the wire, for every captured call shape;
  - max_waiters bounds only calls waiting for a busy connection: a cold
    pool still dials up to max_conns for concurrent calls;
  - invoke metadata or an rpc name over the sidecar's caps fails that call
    with message_too_large, and the client's connection carries the next
    call (the Go server would have accepted such a packet up to 4 MiB);
  - packets an upstream sends late, for its previous stream, are dropped
    and the pooled connection is kept.
"""

import os
import socket
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config
from .test_transcripts import CAPTURES, _recv_until, load_chunks

ECHO = "/test.Echo/"


def _frames(raw):
    """(stream, message, kind, done, control, data) of every frame in raw."""
    dec = drpc.FrameDecoder(expect_header=raw.startswith(drpc.HEADER))
    return [(f.stream, f.message, f.kind, f.done, f.control, bytes(f.data)) for f in dec.feed(raw)]


def _client_closed_streams(name):
    """Streams the Go client ended with Close (a reply the server sends after
    that Close is late for the client: the sidecar may drop it)."""
    raw = b"".join(b for d, b in load_chunks(name) if d == ">")
    return {f[0] for f in _frames(raw) if f[2] == drpc.KIND_CLOSE}


@pytest.mark.parametrize("name", CAPTURES)
def test_go_client_bytes_through_the_sidecar_give_go_server_frames(testd, sidecar, name):
    """Each capture's client bytes, replayed chunk by chunk to the sidecar
    (waiting, like the Go client did, for the server bytes that preceded each
    chunk), yield the captured server frames: same stream ids, message ids,
    kinds, flags and data. One upstream connection, so its stream ids match
    the client's."""
    header = name.startswith("header-")
    up = testd()
    cfg = basic_config(up.addr, max_conns=1)
    cfg["listeners"][0]["header"] = header
    sc = sidecar(cfg)
    chunks = load_chunks(name)
    want = _frames(b"".join(b for d, b in chunks if d == "<"))
    sock = drpc.dial(sc.addr, timeout=5)
    got = bytearray()
    shown = 0  # server bytes the Go client had seen before its next write
    try:
        for d, data in chunks:
            if d == "<":
                shown += len(data)
                continue
            _recv_until(sock, got, shown)
            sock.sendall(data)
            if name == "soft-cancel-sleep" and data.endswith(b"\x0d\x01\x03\x00"):
                time.sleep(0.1)  # the Sleep starts before the Cancel, as captured
        if name == "hard-cancel-sleep":
            sock.close()
            # the pool stays consistent: the next client gets the connection
            with drpc.Conn(sc.addr, timeout=5) as c:
                assert c.unary(ECHO + "Unary", b"after") == b"after"
            return
        _recv_until(sock, got, sum(len(b) for d, b in chunks if d == "<"), timeout=3)
        frames = _frames(bytes(got))
        closed = _client_closed_streams(name)
        # a CloseSend the server sent after the client's Close may be dropped
        want_kept = [f for f in want
                     if f in frames or not (f[2] == drpc.KIND_CLOSE_SEND and f[0] in closed)]
        assert frames == want_kept, "%s:\n got  %s\n want %s" % (name, frames[:8], want_kept[:8])
        # the connection carries the next stream
        c = drpc.Conn(sock=sock, timeout=5)
        c.next_sid = 1 + max(f[0] for f in _frames(b"".join(b for d, b in chunks if d == ">")))
        assert c.unary(ECHO + "Unary", b"next") == b"next"
    finally:
        sock.close()


def test_max_waiters_counts_only_calls_waiting_for_a_busy_connection(testd, sidecar):
    """max_waiters 0 means "never wait for a busy connection", not "never
    dial": a cold pool of max_conns 4 serves 4 concurrent calls by dialling
    (before the fix the first call already failed with pool_exhausted), and
    only the 5th, which would have to wait, fails at once."""
    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=4, max_waiters=0, wait_timeout_ms=10000))
    conns = [drpc.Conn(sc.addr) for _ in range(5)]
    try:
        for c in conns[:4]:
            c.start_unary(ECHO + "Sleep", b"600")
        time.sleep(0.2)  # the four are dialled or busy
        t0 = time.monotonic()
        with pytest.raises(drpc.DrpcError) as e:
            conns[4].unary(ECHO + "Unary", b"fifth")
        assert e.value.code == 1002
        assert e.value.message.startswith("drpc-sidecar: pool exhausted")
        assert time.monotonic() - t0 < 0.4  # at once, not after the sleeps
        assert [c.finish_unary() for c in conns[:4]] == [b"slept"] * 4
        # the upstream saw at most max_conns connections, and the refused
        # client's connection carries its next call
        ids = {int(conns[4].unary(ECHO + "Conn", b"").split()[0]) for _ in range(4)}
        assert ids <= {1, 2, 3, 4}
    finally:
        for c in conns:
            c.close()


def test_max_waiters_still_bounds_the_queue_once_the_pool_is_full(testd, sidecar):
    """A cold pool of max_conns 2, max_waiters 1: a burst of 4 calls written
    at once gets 2 dialled connections and 1 waiter; the 4th fails at once."""
    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=2, max_waiters=1, wait_timeout_ms=10000))
    conns = [drpc.Conn(sc.addr) for _ in range(4)]
    try:
        time.sleep(0.1)
        for c in conns:
            c.start_unary(ECHO + "Sleep", b"300")
        results = []
        for c in conns:
            try:
                results.append(c.finish_unary())
            except drpc.DrpcError as e:
                results.append(e.code)
        assert sorted(results, key=str) == sorted([b"slept"] * 3 + [1002], key=str), results
    finally:
        for c in conns:
            c.close()


def test_metadata_has_no_pair_limit_only_the_byte_cap(pyserver, sidecar):
    """Go decodes invoke metadata into a map with no limit on pairs, so
    neither does the sidecar: 3,000 pairs (about 40 KiB, within the 64 KiB
    default) reach the Python server, a repeated key once with its last
    value."""
    sc = sidecar(basic_config(pyserver().addr))
    pairs = [("k%04d" % i, "v%d" % i) for i in range(3000)] + [("k0007", "last")]
    want = b"".join(b"%s=%s\n" % (k.encode(), (b"last" if k == "k0007" else v.encode()))
                    for k, v in sorted(pairs[:3000]))
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Metadata", b"", pairs) == want
        assert c.unary(ECHO + "Unary", b"next") == b"next"


def test_oversized_metadata_fails_the_call_not_the_connection(testd, sidecar):
    """InvokeMetadata over max_metadata_size (here split over several frames,
    as a large packet would be) and an rpc name over 4096 bytes: each fails
    its call with message_too_large (1008); the rest of that stream is
    dropped and the same connection carries the next calls."""
    up = testd()
    cfg = basic_config(up.addr)
    cfg["max_metadata_size"] = 1024
    sc = sidecar(cfg)
    with drpc.Conn(sc.addr) as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary(ECHO + "Metadata", b"", {"k": "v" * 2000})
        assert e.value.code == 1008
        assert e.value.message.startswith("drpc-sidecar: invoke metadata larger than")
        assert c.unary(ECHO + "Metadata", b"", {"k": "v" * 900}) == b"k=" + b"v" * 900 + b"\n"

        # the same, written as 300-byte frames of one packet, then the call
        sid = c.next_sid
        c.next_sid += 1
        md = drpc.encode_metadata({"big": "x" * 3000})
        c.send_raw(drpc.encode_packet(drpc.KIND_INVOKE_METADATA, sid, 1, md, split=300) +
                   drpc.encode_packet(drpc.KIND_INVOKE, sid, 2, (ECHO + "Metadata").encode()) +
                   drpc.encode_packet(drpc.KIND_MESSAGE, sid, 3, b"") +
                   drpc.encode_packet(drpc.KIND_CLOSE_SEND, sid, 4, b""))
        pkt = c.read_packet()
        while pkt.stream < sid:  # the previous call's CloseSend, after our Close
            pkt = c.read_packet()
        assert (pkt.stream, pkt.kind) == (sid, drpc.KIND_ERROR)
        assert drpc.decode_error(pkt.data)[0] == 1008
        assert c.unary(ECHO + "Unary", b"after md") == b"after md"

        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/test.Echo/" + "U" * 5000, b"")
        assert e.value.code == 1008
        assert "rpc name longer than 4096 bytes" in e.value.message
        assert c.unary(ECHO + "Unary", b"after name") == b"after name"
        assert c.is_open()


class _ScriptedUpstream:
    """A DRPC server on one accepted connection that answers each call, at
    its CloseSend, with the bytes reply(stream id) returns, and keeps the
    connection for the next call."""

    def __init__(self, reply):
        import threading

        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepted = 0
        self.error = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            s, _ = self.sock.accept()
            self.accepted += 1
            dec = drpc.FrameDecoder()
            while True:
                data = s.recv(65536)
                if not data:
                    return
                for f in dec.feed(data):
                    if f.kind == drpc.KIND_CLOSE_SEND:
                        s.sendall(self.reply(f.stream))
        except Exception as e:  # noqa: BLE001 (checked by the tests)
            self.error = e

    def close(self):
        self.sock.close()


def _late_then_answer(stream):
    """Late packets (a Message and an Error) for the stream before, as a
    slow server finishing an old stream would send, then the answer."""
    out = b""
    if stream > 1:
        old = stream - 1
        out += drpc.encode_packet(drpc.KIND_MESSAGE, old, 7, b"late") + \
            drpc.encode_packet(drpc.KIND_ERROR, old, 8, drpc.encode_error(5, "late error"))
    return out + drpc.encode_packet(drpc.KIND_MESSAGE, stream, 1, b"s%d" % stream) + \
        drpc.encode_packet(drpc.KIND_CLOSE_SEND, stream, 2)


def test_late_packets_from_the_upstream_are_dropped(sidecar):
    """Issue #3: late packets for finished streams are dropped in both
    directions. Packets the upstream sends for its previous stream reach
    neither the client's current call nor break the pooled connection."""
    up = _ScriptedUpstream(_late_then_answer)
    try:
        sc = sidecar(basic_config(up.addr, max_conns=1))
        with drpc.Conn(sc.addr) as c:
            for i in range(1, 4):
                assert c.unary(ECHO + "Unary", b"x") == b"s%d" % i
            c.is_open(0.3)  # collect anything still on its way
            # nothing of the late packets reached the client, not even as
            # packets it would have skipped itself
            assert not [p for p in c.ignored + [c.assembler.add(f) for f in c._frames]
                        if p is not None and (p.kind == drpc.KIND_ERROR or p.data == b"late")]
        assert up.accepted == 1 and up.error is None
    finally:
        up.close()


# An Error of code 42 with a 100 KB text, cut into 64 KiB frames as Go cuts
# any large packet (Go's own SendError writes one frame; other peers need not).
_BIG_ERROR_TEXT = b"e" * 100000


def _split_error(stream):
    return drpc.encode_packet(drpc.KIND_ERROR, stream, 1, drpc.encode_error(42, _BIG_ERROR_TEXT))


def test_an_error_cut_into_frames_ends_the_call_at_its_last_frame(sidecar):
    """The call ends when the Error packet is whole: the client gets all of
    it, and the upstream connection, clean again, carries the next call."""
    up = _ScriptedUpstream(_split_error)
    try:
        sc = sidecar(basic_config(up.addr, max_conns=1))
        with drpc.Conn(sc.addr) as c:
            for _ in range(3):
                with pytest.raises(drpc.DrpcError) as e:
                    c.unary(ECHO + "Unary", b"x")
                assert e.value.code == 42 and e.value.message == _BIG_ERROR_TEXT.decode()
        assert up.accepted == 1
        assert sc.admin_get("/pools/default")["counters"]["calls"] == 3
    finally:
        up.close()


def test_bidi_both_directions_heavy_at_once_completes_as_direct(sidecar, short_tmp):
    """A server that, like Go's, keeps reading while its handler blocks on a
    write, answers a bidi call's first message with 12 MiB; the client
    uploads 4 MiB before it reads any of that. Direct, the server's reader
    absorbs the upload; through the sidecar, the upload must still get
    through while the replies are back-pressured, or neither side moves."""
    import threading

    size, replies = (4 << 20) - 1024, 3
    # unix sockets on both hops: their buffers do not grow as TCP's do, so
    # the replies fill them and the outcome does not depend on timing
    up_path, sc_path = os.path.join(short_tmp, "up.sock"), os.path.join(short_tmp, "sc.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(up_path)
    lsock.listen(1)
    got = {"upload": 0, "error": None}

    def serve():
        try:
            s, _ = lsock.accept()
            s.settimeout(30 * SCALE)
            started, closed = threading.Event(), threading.Event()
            sid = []

            def reader():  # always reading, as Go's manageReader
                dec = drpc.FrameDecoder()
                while not closed.is_set():
                    data = s.recv(1 << 20)
                    if not data:
                        return
                    for f in dec.feed(data):
                        if f.kind == drpc.KIND_MESSAGE:
                            if not started.is_set():
                                sid.append(f.stream)
                                started.set()
                            else:
                                got["upload"] += len(f.data)
                        elif f.kind == drpc.KIND_CLOSE_SEND:
                            closed.set()

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            assert started.wait(30 * SCALE)
            for i in range(replies):  # blocks until the client reads
                s.sendall(drpc.encode_packet(drpc.KIND_MESSAGE, sid[0], 1 + i, b"r" * size))
            assert closed.wait(30 * SCALE)
            s.sendall(drpc.encode_packet(drpc.KIND_CLOSE_SEND, sid[0], 1 + replies))
            t.join(5)
            s.close()
        except Exception as e:  # noqa: BLE001 (checked below)
            got["error"] = e

    threading.Thread(target=serve, daemon=True).start()
    try:
        cfg = basic_config("unix:" + up_path)
        cfg["listeners"][0]["address"] = "unix:" + sc_path
        sidecar(cfg)
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(30 * SCALE)
        c.connect(sc_path)
        c.sendall(drpc.encode_packet(drpc.KIND_INVOKE, 1, 1, b"/t.PushPull") +
                  drpc.encode_packet(drpc.KIND_MESSAGE, 1, 2, b"start"))
        time.sleep(0.5)  # the replies pile up in the sidecar meanwhile
        c.sendall(drpc.encode_packet(drpc.KIND_MESSAGE, 1, 3, b"u" * size) +
                  drpc.encode_packet(drpc.KIND_CLOSE_SEND, 1, 4))
        dec, asm, received = drpc.FrameDecoder(), drpc.PacketAssembler(), 0
        done = False
        while not done:
            data = c.recv(1 << 20)
            assert data, "connection closed after %d reply bytes" % received
            for f in dec.feed(data):
                p = asm.add(f)
                if p is None:
                    continue
                if p.kind == drpc.KIND_MESSAGE:
                    received += len(p.data)
                elif p.kind == drpc.KIND_CLOSE_SEND:
                    done = True
        c.close()
        assert received == replies * size
        assert got["error"] is None and got["upload"] == size, got
    finally:
        lsock.close()


def _message_then_soft_cancel(stream):
    """One message, then the stream ends with a soft Cancel (control bit)."""
    return drpc.encode_packet(drpc.KIND_MESSAGE, stream, 1, b"part") + \
        drpc.encode_packet(drpc.KIND_CANCEL, stream, 2, b"", control=True)


def test_a_soft_cancel_from_the_upstream_reaches_the_client(sidecar):
    """Go's stream ends on a Cancel packet from its peer (context.Canceled):
    the client gets it at once, the call counts as cancelled, and the
    connection, clean, carries the next call."""
    up = _ScriptedUpstream(_message_then_soft_cancel)
    try:
        sc = sidecar(basic_config(up.addr, max_conns=1))
        with drpc.Conn(sc.addr, timeout=5 * SCALE) as c:
            for _ in range(2):
                sid = c.next_sid
                c.next_sid += 1
                c.send_raw(drpc.encode_packet(drpc.KIND_INVOKE, sid, 1, b"/u.X") +
                           drpc.encode_packet(drpc.KIND_MESSAGE, sid, 2, b"go") +
                           drpc.encode_packet(drpc.KIND_CLOSE_SEND, sid, 3))
                p = c.read_packet()
                assert (p.stream, p.kind, p.data) == (sid, drpc.KIND_MESSAGE, b"part")
                p = c.read_packet()
                assert (p.stream, p.kind, p.control) == (sid, drpc.KIND_CANCEL, True)
        assert up.accepted == 1
        counters = sc.admin_get("/pools/default")["counters"]
        assert counters["calls_cancelled"] == 2, counters
    finally:
        up.close()
