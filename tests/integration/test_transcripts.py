"""The Go captures in tests/data/drpc-transcripts/ against the Python client and
the C test server:

  (a) encode   the Python client, driven through each captured scenario
               against a scripted server that plays the captured replies,
               writes exactly the captured client bytes;
  (b) replay   the captured client bytes sent to a real drpc-testd yield
               exactly the captured server bytes;
  (c) decode   the Python decoder parses each capture into exactly the
               frames listed in its .frames.txt, chunk by chunk.
"""

import glob
import os
import re
import socket
import threading
import time

import pytest

from . import drpc
from .procs import TRANSCRIPTS

CAPTURES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(TRANSCRIPTS, "*.txt"))
                  if not p.endswith(".frames.txt") and os.path.basename(p) != "README.txt")

ECHO = "/test.Echo/"


def load_chunks(name):
    """[(direction, bytes)] of NAME.txt, in read order."""
    out = []
    with open(os.path.join(TRANSCRIPTS, name + ".txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            d, _, hexdata = line.partition(" ")
            assert d in (">", "<"), "%s.txt: bad line %r" % (name, line[:40])
            out.append((d, bytes.fromhex(hexdata)))
    return out


def client_bytes(name):
    return b"".join(b for d, b in load_chunks(name) if d == ">")


def server_bytes(name):
    return b"".join(b for d, b in load_chunks(name) if d == "<")


# --- (c) decode ------------------------------------------------------------

CHUNK_RE = re.compile(r"^chunk (\d+) ([<>]) (\d+) bytes$")
FRAME_RE = re.compile(r"^\s+([<>]) kind=(\w+)\s+stream=(\d+) msg=(\d+) done=(true|false) "
                      r"control=(true|false) len=(\d+) data=(\".*\")(\.\.\.)?$")
HEADER_RE = re.compile(r'^\s+header "(.*)"$')


def load_frames_txt(name):
    """[{'n', 'dir', 'bytes', 'header', 'frames': [line tuple]}] of NAME.frames.txt."""
    chunks = []
    with open(os.path.join(TRANSCRIPTS, name + ".frames.txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            m = CHUNK_RE.match(line)
            if m:
                chunks.append({"n": int(m.group(1)), "dir": m.group(2), "bytes": int(m.group(3)),
                               "header": None, "frames": []})
                continue
            m = HEADER_RE.match(line)
            if m:
                chunks[-1]["header"] = m.group(1)
                continue
            m = FRAME_RE.match(line)
            assert m, "%s.frames.txt: unparsed line %r" % (name, line)
            chunks[-1]["frames"].append(m.groups())
    return chunks


def describe(d, f):
    """A frame in the .frames.txt notation (data cut to 40 bytes)."""
    return (d, drpc.KIND_NAMES[f.kind], str(f.stream), str(f.message), str(f.done).lower(),
            str(f.control).lower(), str(len(f.data)), drpc.go_quote(f.data[:40]),
            "..." if len(f.data) > 40 else None)


@pytest.mark.parametrize("name", CAPTURES)
def test_decoder_reproduces_frames_txt(name):
    chunks = load_chunks(name)
    listed = load_frames_txt(name)
    assert [(c["dir"], c["bytes"]) for c in listed] == [(d, len(b)) for d, b in chunks]
    header_client = name.startswith("header-")
    decoders = {">": drpc.FrameDecoder(expect_header=header_client), "<": drpc.FrameDecoder()}
    assemblers = {">": drpc.PacketAssembler(), "<": drpc.PacketAssembler()}
    packets = {">": [], "<": []}
    for (d, data), want in zip(chunks, listed):
        dec = decoders[d]
        had_header = dec.header_seen
        frames = dec.feed(data)
        got = [describe(d, f) for f in frames]
        assert got == want["frames"], "chunk %d of %s" % (want["n"], name)
        if want["header"] is not None:
            assert not had_header and dec.header_seen and want["header"] == "DRPC!!!1"
        for f in frames:
            pkt = assemblers[d].add(f)
            if pkt:
                packets[d].append(pkt)
    for d in "<>":
        assert decoders[d].pending() == 0, "%s: trailing partial frame (%s)" % (name, d)
        assert assemblers[d].discarded == 0
        assert not assemblers[d].open
    # every frame re-encodes to the same bytes (no alternative varint forms)
    for d in "<>":
        raw = b"".join(b for dd, b in chunks if dd == d)
        if d == ">" and header_client:
            raw = raw[len(drpc.HEADER):]
        frames = drpc.FrameDecoder().feed(raw)
        assert b"".join(drpc.encode_frame(*f) for f in frames) == raw
    if name == "unary-200KiB":
        msg = [p for p in packets[">"] if p.kind == drpc.KIND_MESSAGE]
        assert [len(p.data) for p in msg] == [204800]
        assert msg[0].data == bytes(i % 251 for i in range(204800))
        assert [p.data for p in packets["<"] if p.kind == drpc.KIND_MESSAGE] == [msg[0].data]


# The captures the tests here and in test_dataplane_wire lean on. A missing
# one is a failure: the parametrized tests would otherwise just run fewer.
KNOWN = ["bidi-3", "client-stream-5", "error-42", "hard-cancel-sleep", "header-unary-small",
         "server-stream-5x16", "soft-cancel-sleep", "unary-200KiB", "unary-3-sequential",
         "unary-metadata", "unary-small", "unknown-rpc"]


def test_the_captures_are_in_the_repository():
    assert os.path.isfile(os.path.join(TRANSCRIPTS, "README.txt")), TRANSCRIPTS
    assert os.path.isfile(os.path.join(TRANSCRIPTS, "README.md")), TRANSCRIPTS
    assert CAPTURES == KNOWN, "captures in %s: %s" % (TRANSCRIPTS, CAPTURES)


def test_every_capture_has_a_frames_txt():
    assert CAPTURES
    for name in CAPTURES:
        assert os.path.exists(os.path.join(TRANSCRIPTS, name + ".frames.txt")), name


def test_metadata_and_error_payloads_of_the_captures():
    pkts = _packets(client_bytes("unary-metadata"))
    md = [p for p in pkts if p.kind == drpc.KIND_INVOKE_METADATA]
    assert len(md) == 1
    assert sorted(drpc.decode_metadata_pairs(md[0].data)) == [("trace", "t-123"), ("user", "alice")]
    # our encoder, given the pairs in the captured order, makes the same bytes
    pairs = drpc.decode_metadata_pairs(md[0].data)
    assert drpc.encode_metadata(pairs) == md[0].data
    (err,) = _packets(server_bytes("error-42"))
    assert err.kind == drpc.KIND_ERROR
    assert drpc.decode_error(err.data) == (42, "the answer is wrong")
    assert drpc.encode_error(42, "the answer is wrong") == err.data
    (err,) = _packets(server_bytes("unknown-rpc"))
    assert drpc.decode_error(err.data) == (0, 'protocol error: unknown rpc: "/test.Echo/NoSuchMethod"')


def _packets(raw):
    asm = drpc.PacketAssembler()
    return [p for p in (asm.add(f) for f in drpc.FrameDecoder().feed(raw)) if p]


# --- (a) encode ------------------------------------------------------------


class ScriptedServer(threading.Thread):
    """The server side of a socketpair that plays a capture's server chunks:
    each is sent once the client has written every byte that preceded it in
    the capture. Records all client bytes until the client closes."""

    def __init__(self, sock, chunks):
        super().__init__(daemon=True)
        self.sock = sock
        self.plan = []  # (client bytes needed first, server chunk)
        seen = 0
        for d, b in chunks:
            if d == ">":
                seen += len(b)
            else:
                self.plan.append((seen, b))
        self.received = bytearray()
        self.error = None

    def run(self):
        try:
            self.sock.settimeout(10)
            while True:
                while self.plan and self.plan[0][0] <= len(self.received):
                    try:
                        self.sock.sendall(self.plan.pop(0)[1])
                    except OSError:
                        self.plan = []  # the client is gone (e.g. after its Close)
                try:
                    data = self.sock.recv(1 << 20)
                except ConnectionResetError:
                    # the client closed with our last chunk unread (e.g. the
                    # CloseSend after its Close); what it sent is all here
                    return
                if not data:
                    return
                self.received += data
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e
        finally:
            self.sock.close()


BIG = bytes(i % 251 for i in range(204800))


def _unknown(c):
    with pytest.raises(drpc.DrpcError) as e:
        c.unary(ECHO + "NoSuchMethod", b"x")
    assert (e.value.code, e.value.message) == (0, 'protocol error: unknown rpc: "/test.Echo/NoSuchMethod"')


def _error42(c):
    with pytest.raises(drpc.DrpcError) as e:
        c.unary(ECHO + "Error", b"42 the answer is wrong")
    assert (e.value.code, e.value.message) == (42, "the answer is wrong")


def _soft_cancel(c):
    c.start_unary(ECHO + "Sleep", b"2000")
    c.soft_cancel()
    assert c.unary(ECHO + "Unary", b"again") == b"again"


def _hard_cancel(c):
    c.start_unary(ECHO + "Sleep", b"2000")
    c.close()


# name -> (header, driver(conn)); each driver asserts the replies it gets
DRIVERS = {
    "unary-small": (False, lambda c: c.unary(ECHO + "Unary", b"hello") == b"hello"),
    "header-unary-small": (True, lambda c: c.unary(ECHO + "Unary", b"hello") == b"hello"),
    "unary-metadata": (False, lambda c: c.unary(ECHO + "Metadata", b"md?",
                                                [("user", "alice"), ("trace", "t-123")])
                       == b"trace=t-123\nuser=alice\n"),
    "unary-3-sequential": (False, lambda c: [c.unary(ECHO + "Unary", m) for m in
                                             (b"one", b"two", b"three")] == [b"one", b"two", b"three"]),
    "unary-200KiB": (False, lambda c: c.unary(ECHO + "Unary", BIG) == BIG),
    "client-stream-5": (False, lambda c: c.client_stream(ECHO + "ClientStream",
                                                         [b"c%d" % i for i in range(5)])
                        == b"c0c1c2c3c4"),
    "server-stream-5x16": (False, lambda c: c.server_stream(ECHO + "ServerStream", b"5 16")
                           == [bytes((k + i) % 251 for i in range(16)) for k in range(5)]),
    "bidi-3": (False, lambda c: c.bidi(ECHO + "Bidi", [b"ping%d" % i for i in range(3)])
               == [b"ping%d" % i for i in range(3)]),
    "error-42": (False, lambda c: _error42(c) is None),
    "unknown-rpc": (False, lambda c: _unknown(c) is None),
    "soft-cancel-sleep": (False, lambda c: _soft_cancel(c) is None),
    "hard-cancel-sleep": (False, lambda c: _hard_cancel(c) is None),
}


@pytest.mark.parametrize("name", CAPTURES)
def test_client_encoder_reproduces_capture(name):
    if name not in DRIVERS:
        pytest.skip("no Python driver for capture %s" % name)
    header, driver = DRIVERS[name]
    client_sock, server_sock = socket.socketpair()
    srv = ScriptedServer(server_sock, load_chunks(name))
    srv.start()
    c = drpc.Conn(sock=client_sock, header=header, timeout=5)
    try:
        assert driver(c), "%s: unexpected replies" % name
    finally:
        c.close()
        srv.join(10)
    assert not srv.is_alive() and srv.error is None, srv.error
    want = client_bytes(name)
    got = bytes(srv.received)
    if name == "unary-metadata":
        # pairs from a Go map: compare decoded, then (our order = captured) exact
        g, w = _packets(got), _packets(want)
        assert [(p.kind, p.stream, p.message) for p in g] == [(p.kind, p.stream, p.message) for p in w]
        gm = [drpc.decode_metadata(p.data) for p in g if p.kind == drpc.KIND_INVOKE_METADATA]
        wm = [drpc.decode_metadata(p.data) for p in w if p.kind == drpc.KIND_INVOKE_METADATA]
        assert gm == wm
    assert got == want, "%s:\n got  %s\n want %s" % (name, got.hex()[:400], want.hex()[:400])


# --- (b) replay against drpc-testd -----------------------------------------


def _recv_until(sock, buf, n, timeout=5.0):
    """Reads into buf until it holds n bytes (or EOF / timeout)."""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not data:
            break
        buf += data


def _nothing_more(sock, wait=0.3):
    sock.settimeout(wait)
    try:
        return sock.recv(4096)
    except socket.timeout:
        return b""


@pytest.mark.parametrize("name", CAPTURES)
def test_replay_against_testd(testd, name):
    chunks = load_chunks(name)
    server = testd(header=name.startswith("header-"))
    sock = drpc.dial(server.addr, timeout=5)
    got = bytearray()
    expected_before = 0  # server bytes the capture had shown by now
    try:
        for d, data in chunks:
            if d == "<":
                expected_before += len(data)
                continue
            _recv_until(sock, got, expected_before)
            sock.sendall(data)
            if name == "soft-cancel-sleep" and data.endswith(b"\x0d\x01\x03\x00"):
                time.sleep(0.1)  # let the Sleep start before the Cancel, as captured
        if name == "hard-cancel-sleep":
            sock.close()
            _hard_cancel_after(server)
            return
        want = server_bytes(name)
        _recv_until(sock, got, len(want))
        assert bytes(got) == want, "%s:\n got  %s\n want %s" % (name, bytes(got).hex()[:400],
                                                               want.hex()[:400])
        assert _nothing_more(sock) == b"", "%s: bytes after the captured reply" % name
        if name == "soft-cancel-sleep":
            # nothing for stream 1; stream 2 got Message "again" then CloseSend
            pkts = _packets(bytes(got))
            assert [(p.stream, p.kind, p.data) for p in pkts] == [
                (2, drpc.KIND_MESSAGE, b"again"), (2, drpc.KIND_CLOSE_SEND, b"")]
        # the connection carries the next stream
        c = drpc.Conn(sock=sock, timeout=5)
        c.next_sid = 1 + max((p.stream for p in _packets(client_bytes_nohdr(name))), default=0)
        assert c.unary(ECHO + "Unary", b"next") == b"next"
    finally:
        sock.close()


def client_bytes_nohdr(name):
    raw = client_bytes(name)
    return raw[len(drpc.HEADER):] if raw.startswith(drpc.HEADER) else raw


def _hard_cancel_after(server):
    """The client closed mid-Sleep: the server notices (its log says the
    connection closed, well before the 2 s sleep would end) and serves the
    next connection."""
    t0 = time.monotonic()
    server.wait_for_output("conn 1 closed", timeout=1.5, stream="stderr")
    with drpc.Conn(server.addr, timeout=5) as c:
        assert c.unary(ECHO + "Unary", b"after") == b"after"
        assert c.unary(ECHO + "Conn", b"") == b"2 2"
    assert time.monotonic() - t0 < 1.5
