"""The Python DRPC client on its own (no processes): its codec and the Go
reader's rules, and how a Conn treats what a server sends. The other tests
trust it, so it is pinned down here."""

import socket

import pytest

from . import drpc
from .drpc import (KIND_CLOSE, KIND_CLOSE_SEND, KIND_ERROR, KIND_INVOKE, KIND_MESSAGE,
                   Frame, encode_frame as F)


# --- varints and frames ----------------------------------------------------


@pytest.mark.parametrize("n,length", [(0, 1), (1, 1), (127, 1), (128, 2), (16383, 2), (16384, 3),
                                      (2**32, 5), (2**63, 10), (2**64 - 1, 10)])
def test_varint_round_trip(n, length):
    b = drpc.encode_varint(n)
    assert len(b) == length
    assert drpc.decode_varint(b) == (n, length)
    assert drpc.decode_varint(b[:-1]) is None  # truncated: need more


def test_varint_limits():
    with pytest.raises(ValueError):
        drpc.encode_varint(2**64)
    with pytest.raises(drpc.ProtocolError):
        drpc.decode_varint(b"\xff" * 10 + b"\x01")  # 11 bytes
    with pytest.raises(drpc.ProtocolError):
        drpc.decode_varint(b"\xff" * 9 + b"\x7f")  # 10 bytes but over 64 bits
    assert drpc.decode_varint(b"\x80\x00") == (0, 2)  # non-minimal is still a varint


def test_frame_layout():
    assert F(KIND_INVOKE, 1, 1, b"/a") == b"\x03\x01\x01\x02/a"
    assert F(KIND_CLOSE_SEND, 1, 3) == b"\x0d\x01\x03\x00"
    assert F(drpc.KIND_CANCEL, 1, 4, control=True) == b"\x89\x01\x04\x00"
    assert F(KIND_MESSAGE, 300, 2, b"x", done=False) == b"\x04\xac\x02\x02\x01x"


def test_decoder_any_split():
    frames = [Frame(KIND_INVOKE, 1, 1, b"/test.Echo/Unary", True, False),
              Frame(KIND_MESSAGE, 1, 2, bytes(range(200)), False, False),
              Frame(KIND_MESSAGE, 1, 2, b"", True, False),
              Frame(0x3F, 2**40, 2**20, b"c", True, True)]
    raw = b"".join(F(*f) for f in frames)
    for step in (1, 2, 3, 7, 64, len(raw)):
        d = drpc.FrameDecoder()
        got = []
        for i in range(0, len(raw), step):
            got += d.feed(raw[i:i + step])
        assert got == frames and d.pending() == 0


def test_decoder_header():
    d = drpc.FrameDecoder(expect_header=True)
    assert d.feed(b"DRPC!!") == [] and not d.header_seen
    assert d.feed(b"!1" + F(KIND_CLOSE, 1, 1)) == [Frame(KIND_CLOSE, 1, 1, b"", True, False)]
    with pytest.raises(drpc.ProtocolError):
        drpc.FrameDecoder(expect_header=True).feed(F(KIND_CLOSE, 1, 1) * 3)


def test_packet_split_like_go():
    raw = drpc.encode_packet(KIND_MESSAGE, 1, 2, bytes(204800))
    frames = drpc.FrameDecoder().feed(raw)
    assert [(len(f.data), f.done) for f in frames] == [(65536, False)] * 3 + [(8192, True)]
    assert drpc.FrameDecoder().feed(drpc.encode_packet(KIND_MESSAGE, 1, 2, b"")) == [
        Frame(KIND_MESSAGE, 1, 2, b"", True, False)]


# --- packet assembly (the Go reader's rules) --------------------------------


def assemble(*frames, **kw):
    a = drpc.PacketAssembler(**kw)
    return [p for p in (a.add(f) for f in frames) if p], a


def fr(kind, sid, mid, data=b"", done=True, control=False):
    return Frame(kind, sid, mid, data, done, control)


def test_assembly_concatenates_and_discards():
    pkts, a = assemble(fr(KIND_MESSAGE, 1, 1, b"ab", False), fr(KIND_MESSAGE, 1, 1, b"cd"),
                       fr(KIND_MESSAGE, 1, 2, b"lost", False),  # unfinished, then a newer id
                       fr(KIND_MESSAGE, 1, 3, b"ok"), fr(KIND_INVOKE, 2, 1, b"/x"))
    assert [(p.kind, p.stream, p.message, p.data) for p in pkts] == [
        (KIND_MESSAGE, 1, 1, b"abcd"), (KIND_MESSAGE, 1, 3, b"ok"), (KIND_INVOKE, 2, 1, b"/x")]
    assert a.discarded == 1


@pytest.mark.parametrize("frames", [
    [fr(KIND_MESSAGE, 2, 1), fr(KIND_MESSAGE, 1, 5)],  # smaller stream id
    [fr(KIND_MESSAGE, 1, 3), fr(KIND_MESSAGE, 1, 2)],  # smaller message id
    [fr(KIND_MESSAGE, 1, 3), fr(KIND_MESSAGE, 1, 3)],  # same id after done
], ids=["stream-back", "message-back", "reuse"])
def test_assembly_monotonic_ids(frames):
    with pytest.raises(drpc.ProtocolError, match="monotonicity"):
        assemble(*frames)


def test_assembly_kind_change_and_overflow():
    with pytest.raises(drpc.ProtocolError, match="kind change"):
        assemble(fr(KIND_MESSAGE, 1, 1, b"a", False), fr(KIND_ERROR, 1, 1, b"b"))
    pkts, _ = assemble(fr(KIND_MESSAGE, 1, 1, b"x" * 6, False), fr(KIND_MESSAGE, 1, 1, b"x" * 4),
                       max_packet=10)
    assert len(pkts[0].data) == 10
    with pytest.raises(drpc.ProtocolError, match="overflow"):
        assemble(fr(KIND_MESSAGE, 1, 1, b"x" * 6, False), fr(KIND_MESSAGE, 1, 1, b"x" * 5),
                 max_packet=10)


def test_assembly_control_bit_on_any_frame():
    pkts, _ = assemble(fr(KIND_MESSAGE, 1, 1, b"a", False), fr(KIND_MESSAGE, 1, 1, b"b", True, True))
    assert pkts[0].control


# --- payloads ---------------------------------------------------------------


def test_metadata_codec():
    raw = drpc.encode_metadata([("user", "alice"), ("trace", "t-123")])
    assert raw == bytes.fromhex("0a0d0a04757365721205616c6963650a0e0a0574726163651205742d313233")
    assert drpc.decode_metadata(raw) == {"user": "alice", "trace": "t-123"}
    assert drpc.decode_metadata(b"") == {}
    # unknown fields (a varint at field 2, a fixed32 inside an entry) are skipped
    extra = b"\x10\x05" + drpc._pb_bytes(1, b"\x0a\x01k\x12\x01v\x1d\x01\x02\x03\x04")
    assert drpc.decode_metadata(extra) == {"k": "v"}
    # an entry without a value has the empty value
    assert drpc.decode_metadata(drpc._pb_bytes(1, b"\x0a\x01k")) == {"k": ""}


@pytest.mark.parametrize("bad", [b"\x0a", b"\x0a\x05\x0a\x01", b"\x0a\x02\x0a\x05", b"\x0b",
                                 b"\x08"], ids=["no-len", "short-entry", "short-key",
                                                "wiretype-3", "truncated-varint"])
def test_metadata_malformed(bad):
    with pytest.raises(drpc.ProtocolError):
        drpc.decode_metadata(bad)


def test_error_codec():
    assert drpc.encode_error(42, "no") == b"\x00" * 7 + b"\x2ano"
    assert drpc.decode_error(b"\xff" * 8 + b"max") == (2**64 - 1, "max")


def test_addresses():
    assert drpc.parse_addr("127.0.0.1:80") == (None, ("127.0.0.1", 80))
    assert drpc.parse_addr("[::1]:80") == (None, ("::1", 80))
    assert drpc.parse_addr("unix:/tmp/s") == (socket.AF_UNIX, "/tmp/s")
    with pytest.raises(ValueError):
        drpc.parse_addr("nohost")


# --- a Conn against a scripted peer ----------------------------------------


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    c = drpc.Conn(sock=a, timeout=2)
    yield c, b
    c.close()
    b.close()


def sent(peer):
    peer.settimeout(1)
    data = peer.recv(1 << 20)
    return [(f.kind, f.stream, f.message, f.data, f.control)
            for f in drpc.FrameDecoder().feed(data)]


def test_unary_writes_like_go_and_closes(pair):
    c, peer = pair
    peer.sendall(F(KIND_MESSAGE, 1, 1, b"r") + F(KIND_CLOSE_SEND, 1, 2))
    assert c.unary("/s/M", b"q", {"k": "v"}) == b"r"
    assert sent(peer) == [(drpc.KIND_INVOKE_METADATA, 1, 1, drpc.encode_metadata({"k": "v"}), False),
                          (KIND_INVOKE, 1, 2, b"/s/M", False), (KIND_MESSAGE, 1, 3, b"q", False),
                          (KIND_CLOSE_SEND, 1, 4, b"", False), (KIND_CLOSE, 1, 5, b"", False)]


def test_late_and_control_packets_are_skipped(pair):
    c, peer = pair
    peer.sendall(F(KIND_MESSAGE, 1, 1, b"one"))
    assert c.unary("/s/M", b"") == b"one"
    # stream 1's CloseSend arrives late, with an unknown control packet
    peer.sendall(F(KIND_CLOSE_SEND, 1, 2) + F(0x30, 1, 3, b"?", control=True)
                 + F(KIND_MESSAGE, 2, 1, b"two") + F(KIND_CLOSE_SEND, 2, 2))
    assert c.unary("/s/M", b"") == b"two"
    assert [(p.stream, p.kind) for p in c.ignored] == [(1, KIND_CLOSE_SEND), (1, 0x30)]


def test_error_close_and_future_streams(pair):
    c, peer = pair
    peer.sendall(F(KIND_ERROR, 1, 1, drpc.encode_error(12, "unimplemented")))
    with pytest.raises(drpc.DrpcError) as e:
        c.unary("/s/M", b"")
    assert (e.value.code, e.value.message) == (12, "unimplemented")
    assert [k for k, *_ in sent(peer)] == [KIND_INVOKE, KIND_MESSAGE, KIND_CLOSE_SEND]  # no Close
    peer.sendall(F(KIND_CLOSE, 2, 1))
    with pytest.raises(drpc.StreamClosed):
        c.unary("/s/M", b"")
    peer.sendall(F(KIND_MESSAGE, 9, 1, b"?"))
    with pytest.raises(drpc.ProtocolError):
        c.unary("/s/M", b"")


def test_connection_lost_keeps_received_messages(pair):
    c, peer = pair
    peer.sendall(F(KIND_MESSAGE, 1, 1, b"a") + F(KIND_MESSAGE, 1, 2, b"b"))
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(drpc.ConnectionLost) as e:
        c.server_stream("/s/S", b"")
    assert e.value.received == [b"a", b"b"]


def test_streams_and_soft_cancel_on_the_wire(pair):
    c, peer = pair
    st = c.new_stream("/s/B")
    peer.settimeout(0.05)
    with pytest.raises(socket.timeout):
        peer.recv(10)  # the Invoke is not flushed alone
    st.send(b"m")
    assert sent(peer) == [(KIND_INVOKE, 1, 1, b"/s/B", False), (KIND_MESSAGE, 1, 2, b"m", False)]
    c.soft_cancel()
    assert sent(peer) == [(drpc.KIND_CANCEL, 1, 3, b"", True)]
    peer.sendall(F(KIND_MESSAGE, 2, 1, b"x") + F(KIND_CLOSE_SEND, 2, 2))
    assert c.client_stream("/s/C", [b"1", b"2"]) == b"x"
    assert sent(peer) == [(KIND_INVOKE, 2, 1, b"/s/C", False), (KIND_MESSAGE, 2, 2, b"1", False),
                          (KIND_MESSAGE, 2, 3, b"2", False), (KIND_CLOSE_SEND, 2, 4, b"", False)]
