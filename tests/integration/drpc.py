"""A blocking-socket DRPC client for the integration tests, written from the
wire notes (shared/drpc-wire.md) and the Go captures, sharing no code with
the C codec: its own varints, frames, packet assembly and metadata, so a bug
there cannot hide behind the same bug here.

It behaves like the upstream Go client (storj.io/drpc drpcconn) on the wire:

  unary      [InvokeMetadata] Invoke Message CloseSend      one write
             <- Message                                      the reply
             Close (message id one past the CloseSend)       not waiting for
                                                             the server's CloseSend
  streams    Invoke leaves with the first Message or the CloseSend; the
             stream ends on the server's CloseSend (both sides closed),
             an Error, or a Close/Cancel
  cancel     soft: Cancel with the control and done bits, connection kept;
             hard: close the connection (Conn.close)

Stream ids are 1, 2, 3... per connection; message ids count up from 1 per
stream and per direction. Late packets of older streams and control packets
are ignored on receipt. Every read has a deadline, so a silent peer fails
the test with TimeoutError instead of hanging it.

Layers, each usable alone (the hostile-input and transcript tests use the
lower ones):

  encode_varint / decode_varint      LEB128, at most 10 bytes
  encode_frame / FrameDecoder        one frame <-> bytes, streaming decode
  encode_packet / PacketAssembler    64 KiB split / Go reader's assembly rules
  encode_metadata / decode_metadata  map<string,string> at field 1
  encode_error / decode_error        8-byte big-endian code + text
  Conn, Stream                       the client

TLS (Python's ssl module, so OpenSSL again): tls_client_context() and
tls_server_context() build contexts with the C peer's knobs (CA, own
certificate, client CA, versions, no verification); dial()/Conn(tls=ctx)
run the handshake after the connect, verifying server_name or else the
dialled host (an IP is checked against the IP SANs); tls_info(sock) is the
"VERSION RESUMED PEER_CN" text of /test.Echo/TLSInfo.

pyserver.py builds the Python test service (upstream and agent) on these
layers. From a shell: `python3 tests/integration/drpc.py call [--tls-ca F]
[--tls-cert F --tls-key F] [--tls-server-name N] ADDR RPC [DATA]`.
"""

import collections
import socket
import ssl
import struct
import time
import warnings

KIND_INVOKE = 1
KIND_MESSAGE = 2
KIND_ERROR = 3
KIND_CANCEL = 4
KIND_CLOSE = 5
KIND_CLOSE_SEND = 6
KIND_INVOKE_METADATA = 7

KIND_NAMES = {
    KIND_INVOKE: "Invoke",
    KIND_MESSAGE: "Message",
    KIND_ERROR: "Error",
    KIND_CANCEL: "Cancel",
    KIND_CLOSE: "Close",
    KIND_CLOSE_SEND: "CloseSend",
    KIND_INVOKE_METADATA: "InvokeMetadata",
}

HEADER = b"DRPC!!!1"
SPLIT_SIZE = 64 * 1024  # the Go writer's frame size
MAX_PACKET = 4 << 20  # the Go reader's default packet cap
MAX_VARINT_LEN = 10
DEFAULT_TIMEOUT = 10.0  # seconds per read; conftest raises it under valgrind


class ProtocolError(Exception):
    """The peer sent bytes that break the DRPC rules."""


class ConnectionLost(Exception):
    """The peer closed or reset the connection before the call ended.

    `received` holds the messages a streaming call got before the loss."""

    def __init__(self, what, received=None):
        super().__init__(what)
        self.received = list(received or [])


class StreamClosed(Exception):
    """The server ended the stream with Close or Cancel instead of a reply."""


class DrpcError(Exception):
    """An Error packet: code (uint64) and text."""

    def __init__(self, code, message):
        super().__init__("drpc error code=%d: %s" % (code, message))
        self.code = code
        self.message = message


# --- varints ---------------------------------------------------------------


def encode_varint(n):
    if n < 0 or n >= 1 << 64:
        raise ValueError("varint out of range: %r" % n)
    out = bytearray()
    while n >= 0x80:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf, pos=0):
    """Returns (value, next_pos), or None when buf ends inside the varint.
    Raises ProtocolError on a varint longer than 10 bytes or over 64 bits."""
    value = 0
    for i in range(MAX_VARINT_LEN):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            if value >= 1 << 64:
                raise ProtocolError("varint overflows 64 bits")
            return value, pos + i + 1
    raise ProtocolError("varint longer than %d bytes" % MAX_VARINT_LEN)


# --- frames ----------------------------------------------------------------

Frame = collections.namedtuple("Frame", "kind stream message data done control")
Frame.__doc__ = "One DRPC frame; data is bytes."


def frame_str(f):
    return "%s(%d) sid=%d mid=%d done=%s control=%s len=%d" % (
        KIND_NAMES.get(f.kind, "?"), f.kind, f.stream, f.message, f.done, f.control, len(f.data))


def encode_frame(kind, stream, message, data=b"", done=True, control=False):
    if not 0 <= kind < 64:
        raise ValueError("kind must fit 6 bits: %r" % kind)
    ctrl = (kind << 1) | (1 if done else 0) | (0x80 if control else 0)
    return (bytes([ctrl]) + encode_varint(stream) + encode_varint(message)
            + encode_varint(len(data)) + bytes(data))


def decode_frame(buf, pos=0, max_len=None):
    """Returns (Frame, next_pos), or None if buf holds only part of a frame."""
    if pos >= len(buf):
        return None
    ctrl = buf[pos]
    p = pos + 1
    fields = []
    for _ in range(3):
        r = decode_varint(buf, p)
        if r is None:
            return None
        fields.append(r[0])
        p = r[1]
    stream, message, length = fields
    if max_len is not None and length > max_len:
        raise ProtocolError("frame of %d bytes over the %d limit" % (length, max_len))
    if p + length > len(buf):
        return None
    f = Frame(kind=(ctrl >> 1) & 0x3F, stream=stream, message=message,
              data=bytes(buf[p:p + length]), done=bool(ctrl & 1), control=bool(ctrl & 0x80))
    return f, p + length


class FrameDecoder:
    """Streaming frame decoder: feed() bytes as they arrive, get whole frames.

    With expect_header=True the first 8 bytes must be DRPC!!!1 (a server's
    view of a header client); `header_seen` tells whether it was."""

    def __init__(self, expect_header=False, max_len=None):
        self.buf = bytearray()
        self.expect_header = expect_header
        self.header_seen = False
        self.max_len = max_len

    def feed(self, data):
        self.buf += data
        out = []
        pos = 0
        if self.expect_header and not self.header_seen:
            if len(self.buf) < len(HEADER):
                return out
            if bytes(self.buf[:len(HEADER)]) != HEADER:
                raise ProtocolError("missing DRPC!!!1 header: %r" % bytes(self.buf[:8]))
            self.header_seen = True
            pos = len(HEADER)
        while True:
            r = decode_frame(self.buf, pos, self.max_len)
            if r is None:
                break
            f, pos = r
            out.append(f)
        del self.buf[:pos]
        return out

    def pending(self):
        """Bytes of an unfinished frame held back."""
        return len(self.buf)


# --- packets ---------------------------------------------------------------

Packet = collections.namedtuple("Packet", "kind stream message data control")


def encode_packet(kind, stream, message, data=b"", split=SPLIT_SIZE, control=False):
    """A packet as the Go writer sends it: frames of at most `split` bytes
    sharing one id, done only on the last (an empty packet is one frame)."""
    data = bytes(data)
    if not data:
        return encode_frame(kind, stream, message, b"", True, control)
    out = bytearray()
    for off in range(0, len(data), split):
        out += encode_frame(kind, stream, message, data[off:off + split],
                            off + split >= len(data), control)
    return bytes(out)


class PacketAssembler:
    """The Go reader's rules for turning frames into packets.

    Frames with the same (stream, message) id are concatenated until one has
    the done bit. A frame with a larger id starts a new packet and discards
    an unfinished one; a smaller id, or the id of a packet already complete,
    is an "id monotonicity violation"; a kind change inside a packet and a
    packet over max_packet bytes are protocol errors. A packet is a control
    packet if any of its frames has the control bit."""

    def __init__(self, max_packet=MAX_PACKET):
        self.max_packet = max_packet
        self.last = (0, 0)
        self.open = False  # a packet with id self.last is in progress
        self.kind = None
        self.control = False
        self.data = bytearray()
        self.discarded = 0  # unfinished packets dropped for a newer id

    def add(self, f):
        """Returns the completed Packet, or None while one is in progress."""
        fid = (f.stream, f.message)
        if fid < self.last or (fid == self.last and not self.open):
            raise ProtocolError("id monotonicity violation: %r after %r" % (fid, self.last))
        if fid > self.last:
            if self.open:
                self.discarded += 1
            self.last = fid
            self.open = True
            self.kind = f.kind
            self.control = False
            self.data = bytearray()
        elif f.kind != self.kind:
            raise ProtocolError("packet kind change %d -> %d at %r" % (self.kind, f.kind, fid))
        if len(self.data) + len(f.data) > self.max_packet:
            raise ProtocolError("data overflow: packet over %d bytes" % self.max_packet)
        self.data += f.data
        self.control = self.control or f.control
        if not f.done:
            return None
        self.open = False
        return Packet(self.kind, f.stream, f.message, bytes(self.data), self.control)


# --- error and metadata payloads -------------------------------------------


def encode_error(code, text):
    if isinstance(text, str):
        text = text.encode()
    return struct.pack(">Q", code) + text


def decode_error(data):
    """Returns (code, text). Shorter than 8 bytes: code 0, text as given (what
    the Go side makes of it is not specified; the tests never send that)."""
    if len(data) < 8:
        return 0, bytes(data).decode(errors="replace")
    return struct.unpack(">Q", data[:8])[0], bytes(data[8:]).decode(errors="replace")


def _pb_bytes(field, value):
    return encode_varint((field << 3) | 2) + encode_varint(len(value)) + value


def encode_metadata(md):
    """md: dict or iterable of (key, value) pairs (str or bytes), encoded in
    the given order as map<string,string> at field 1."""
    items = md.items() if isinstance(md, dict) else md
    out = bytearray()
    for k, v in items:
        k = k.encode() if isinstance(k, str) else bytes(k)
        v = v.encode() if isinstance(v, str) else bytes(v)
        out += _pb_bytes(1, _pb_bytes(1, k) + _pb_bytes(2, v))
    return bytes(out)


def _pb_fields(data):
    """Yields (field, wire_type, value) of a protobuf message; value is an int
    for varint/fixed types and bytes for length-delimited ones."""
    pos = 0
    while pos < len(data):
        r = decode_varint(data, pos)
        if r is None:
            raise ProtocolError("metadata: truncated tag")
        tag, pos = r
        field, wt = tag >> 3, tag & 7
        if field == 0:
            raise ProtocolError("metadata: field number 0")
        if wt == 0:
            r = decode_varint(data, pos)
            if r is None:
                raise ProtocolError("metadata: truncated varint")
            value, pos = r
        elif wt == 1 or wt == 5:
            n = 8 if wt == 1 else 4
            if pos + n > len(data):
                raise ProtocolError("metadata: truncated fixed field")
            value, pos = int.from_bytes(data[pos:pos + n], "little"), pos + n
        elif wt == 2:
            r = decode_varint(data, pos)
            if r is None:
                raise ProtocolError("metadata: truncated length")
            n, pos = r
            if pos + n > len(data):
                raise ProtocolError("metadata: length %d past the end" % n)
            value, pos = bytes(data[pos:pos + n]), pos + n
        else:
            raise ProtocolError("metadata: unsupported wire type %d" % wt)
        yield field, wt, value


def decode_metadata_pairs(data):
    """Returns the (key, value) str pairs in wire order (unknown fields are
    skipped like protobuf does; a missing key or value is the empty string)."""
    pairs = []
    for field, wt, entry in _pb_fields(data):
        if field != 1:
            continue
        if wt != 2:
            raise ProtocolError("metadata: entry with wire type %d" % wt)
        key = value = b""
        for f2, wt2, v in _pb_fields(entry):
            if f2 in (1, 2) and wt2 != 2:
                raise ProtocolError("metadata: key/value with wire type %d" % wt2)
            if f2 == 1:
                key = v
            elif f2 == 2:
                value = v
        pairs.append((key.decode(errors="replace"), value.decode(errors="replace")))
    return pairs


def decode_metadata(data):
    """Returns the metadata as a dict (a repeated key keeps its last value)."""
    return dict(decode_metadata_pairs(data))


_GO_ESC = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r",
           0x22: '\\"', 0x5C: "\\\\"}


def go_quote(data):
    """Go's %q of a byte string (strconv.Quote): printable runes as they are,
    the C escapes, \\xNN for bytes that are not valid UTF-8."""
    out = ['"']
    i = 0
    while i < len(data):
        c = data[i]
        if c < 0x80:
            if c in _GO_ESC:
                out.append(_GO_ESC[c])
            elif 0x20 <= c < 0x7F:
                out.append(chr(c))
            else:
                out.append("\\x%02x" % c)
            i += 1
            continue
        n = 2 if 0xC2 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF4 else 0
        try:
            r = bytes(data[i:i + n]).decode("utf-8") if n else ""
        except UnicodeDecodeError:
            r = ""
        if len(r) != 1:
            out.append("\\x%02x" % c)
            i += 1
            continue
        if r.isprintable():
            out.append(r)
        elif ord(r) < 0x10000:
            out.append("\\u%04x" % ord(r))
        else:
            out.append("\\U%08x" % ord(r))
        i += n
    out.append('"')
    return "".join(out)


# --- addresses and sockets -------------------------------------------------


def parse_addr(addr):
    """"127.0.0.1:80", "[::1]:80", "host:80", ("host", 80) -> (AF_INET*, (host, port));
    "unix:/path" -> (AF_UNIX, "/path")."""
    if isinstance(addr, tuple):
        return None, addr
    if addr.startswith("unix:"):
        return socket.AF_UNIX, addr[5:]
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("bad address %r (want HOST:PORT, [V6]:PORT or unix:/path)" % addr)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return None, (host, int(port))


# --- TLS ---------------------------------------------------------------------

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def _tls_versions(ctx, min_version, max_version):
    if max_version and TLS_VERSIONS[max_version] < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0; such a
        # peer exists to be refused by the other side.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        min_version = min_version or "1.0"
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if min_version:
            ctx.minimum_version = TLS_VERSIONS[min_version]
        if max_version:
            ctx.maximum_version = TLS_VERSIONS[max_version]


def tls_client_context(ca=None, cert=None, key=None, min_version=None, max_version=None,
                       verify=True):
    """A client context: trusts ca (default: the system store) unless
    verify=False, presents cert/key when given (mTLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if ca:
            ctx.load_verify_locations(ca)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    _tls_versions(ctx, min_version, max_version)
    return ctx


def tls_server_context(cert, key, client_ca=None, min_version=None, max_version=None):
    """A server context; with client_ca, clients must present a certificate
    that verifies against it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    _tls_versions(ctx, min_version, max_version)
    return ctx


def cert_identity(cert):
    """The CN of a getpeercert() dict, else its first DNS SAN, else "-"."""
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    for k, v in (cert or {}).get("subjectAltName", ()):
        if k == "DNS":
            return v
    return "-"


def tls_info(sock):
    """"VERSION RESUMED PEER_CN" of a TLS socket, or "plaintext"."""
    if not isinstance(sock, ssl.SSLSocket):
        return "plaintext"
    return "%s %d %s" % (sock.version(), 1 if sock.session_reused else 0,
                         cert_identity(sock.getpeercert()))


def dial(addr, timeout=DEFAULT_TIMEOUT, tls=None, server_name=None, session=None):
    """A connected blocking socket with TCP_NODELAY (on TCP); with tls (a
    client SSLContext) the handshake is done, verifying server_name or the
    dialled host, offering session if given."""
    s = _dial_plain(addr, timeout)
    if tls is None:
        return s
    _, target = parse_addr(addr)
    host = server_name or (target[0] if isinstance(target, tuple) else None)
    try:
        return tls.wrap_socket(s, server_hostname=host, session=session)
    except BaseException:
        s.close()
        raise


def _dial_plain(addr, timeout):
    family, target = parse_addr(addr)
    if family == socket.AF_UNIX:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(target)
        except BaseException:
            s.close()
            raise
    else:
        s = socket.create_connection(target, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# --- the client ------------------------------------------------------------


class Stream:
    """One RPC on a Conn. Packets written by send()/close_send() with
    flush=False wait in the Conn's buffer (Go's NewStream does not flush the
    Invoke alone)."""

    def __init__(self, conn, sid):
        self.conn = conn
        self.id = sid
        self.mid = 0  # last message id sent on this stream
        self.send_closed = False  # we sent CloseSend
        self.recv_closed = False  # the server sent CloseSend
        self.done = False  # Error, Close or Cancel seen or sent

    def _put(self, kind, data=b"", flush=True, control=False):
        self.mid += 1
        self.conn._write(encode_packet(kind, self.id, self.mid, data, control=control), flush)

    def send(self, msg, flush=True):
        self._put(KIND_MESSAGE, msg, flush)

    def close_send(self, flush=True):
        self._put(KIND_CLOSE_SEND, b"", flush)
        self.send_closed = True

    def cancel(self):
        """Soft cancel: Cancel with the control and done bits; the server
        answers nothing more on this stream."""
        self._put(KIND_CANCEL, b"", True, control=True)
        self.done = True

    def close(self):
        """Close: we are done with the whole stream; nothing answers it."""
        self._put(KIND_CLOSE, b"", True)
        self.done = True

    def recv(self, timeout=None):
        """The next message; None once the server sent CloseSend. Raises
        DrpcError on an Error packet, StreamClosed on Close/Cancel."""
        if self.recv_closed:
            return None
        while True:
            pkt = self.conn._read_stream_packet(self, timeout)
            if pkt.kind == KIND_MESSAGE:
                return pkt.data
            if pkt.kind == KIND_CLOSE_SEND:
                self.recv_closed = True
                return None
            if pkt.kind == KIND_ERROR:
                self.done = True
                raise DrpcError(*decode_error(pkt.data))
            if pkt.kind in (KIND_CLOSE, KIND_CANCEL):
                self.done = True
                raise StreamClosed("server sent %s on stream %d" % (KIND_NAMES[pkt.kind], self.id))
            raise ProtocolError("unexpected %s packet from the server on stream %d"
                                % (KIND_NAMES.get(pkt.kind, pkt.kind), self.id))

    def recv_all(self, timeout=None):
        """Messages until the server's CloseSend; ConnectionLost carries the
        ones received before a loss."""
        out = []
        try:
            while True:
                m = self.recv(timeout)
                if m is None:
                    return out
                out.append(m)
        except ConnectionLost as e:
            raise ConnectionLost(str(e), out) from None


class Conn:
    """A client connection: Conn("127.0.0.1:7000"), Conn("unix:/p"),
    Conn(sock=connected_socket). header=True sends DRPC!!!1 with the first
    write. timeout bounds every read (and the connect)."""

    def __init__(self, addr=None, header=False, timeout=None, sock=None, tls=None,
                 server_name=None, session=None):
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.addr = addr
        self.sock = sock if sock is not None else dial(addr, self.timeout, tls, server_name,
                                                        session)
        self.decoder = FrameDecoder()
        self.assembler = PacketAssembler()
        self.out = bytearray(HEADER if header else b"")
        self.next_sid = 1
        self.stream = None  # the current (last opened) Stream
        self.ignored = []  # packets dropped: late, control (for assertions)
        self.closed = False
        self.eof = False
        self._frames = collections.deque()  # decoded, not yet consumed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Hard cancel: closes the connection."""
        if not self.closed:
            self.closed = True
            self.sock.close()

    # -- writing --

    def _write(self, data, flush=True):
        self.out += data
        if flush:
            self.flush()

    def flush(self):
        if self.out:
            data, self.out = bytes(self.out), bytearray()
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
                raise ConnectionLost("write to %s: %s" % (self.addr, e)) from None

    def send_raw(self, data):
        """Writes bytes as they are (after anything buffered)."""
        self._write(data, True)

    # -- reading --

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline, what):
        """Reads more bytes into the decoder; returns the new frames."""
        if self.eof:
            raise ConnectionLost("%s: connection to %s already closed by the peer" % (what, self.addr))
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("%s: nothing from %s in time" % (what, self.addr))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(256 * 1024)
        except socket.timeout:
            raise TimeoutError("%s: nothing from %s in time" % (what, self.addr)) from None
        except ConnectionResetError:
            self.eof = True
            raise ConnectionLost("%s: connection to %s reset" % (what, self.addr)) from None
        except ssl.SSLError as e:  # an alert: the TLS peer refused us
            self.eof = True
            raise ConnectionLost("%s: connection to %s: %s" % (what, self.addr, e)) from None
        if not data:
            self.eof = True
            raise ConnectionLost("%s: connection to %s closed by the peer" % (what, self.addr))
        return self.decoder.feed(data)

    def read_frame(self, timeout=None):
        """The next raw frame (no packet assembly, nothing ignored)."""
        deadline = self._deadline(timeout)
        while not self._frames:
            self._frames.extend(self._fill(deadline, "read_frame"))
        return self._frames.popleft()

    def read_packet(self, timeout=None):
        """The next complete packet (control packets included)."""
        deadline = self._deadline(timeout)
        while True:
            while not self._frames:
                self._frames.extend(self._fill(deadline, "read_packet"))
            pkt = self.assembler.add(self._frames.popleft())
            if pkt is not None:
                return pkt

    def _read_stream_packet(self, stream, timeout):
        deadline = self._deadline(timeout)
        while True:
            left = deadline - time.monotonic()
            pkt = self.read_packet(max(left, 0.001))
            if pkt.control or pkt.stream < stream.id:
                self.ignored.append(pkt)  # unknown control packet / late packet
                continue
            if pkt.stream > stream.id:
                raise ProtocolError("packet for stream %d while stream %d is current"
                                    % (pkt.stream, stream.id))
            return pkt

    def read_raw(self, timeout=None):
        """Whatever bytes arrive next (b"" on EOF); bypasses the decoder, so
        only use it on a connection driven by raw helpers."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            return self.sock.recv(256 * 1024)
        except socket.timeout:
            raise TimeoutError("read_raw: nothing from %s in time" % (self.addr,)) from None
        except ConnectionResetError:
            return b""

    def wait_closed(self, timeout=None):
        """Reads until the peer closes the connection; returns the frames that
        arrived before. TimeoutError if it stays open."""
        deadline = self._deadline(timeout)
        frames = list(self._frames)
        self._frames.clear()
        try:
            while True:
                frames.extend(self._fill(deadline, "wait_closed"))
        except ConnectionLost:
            return frames

    def is_open(self, wait=0.2):
        """True if the peer has not closed the connection within `wait` s
        (anything that arrives meanwhile is kept for later reads)."""
        try:
            self._frames.extend(self._fill(self._deadline(wait), "is_open"))
        except TimeoutError:
            return True
        except ConnectionLost:
            return False
        return True

    # -- streams --

    def new_stream(self, rpc, metadata=None):
        """Opens the next stream: [InvokeMetadata] Invoke, not flushed. An
        unfinished previous stream is simply left (its packets become late)."""
        st = Stream(self, self.next_sid)
        self.next_sid += 1
        self.stream = st
        if metadata:
            st._put(KIND_INVOKE_METADATA, encode_metadata(metadata), flush=False)
        st._put(KIND_INVOKE, rpc.encode() if isinstance(rpc, str) else rpc, flush=False)
        return st

    def start_unary(self, rpc, data=b"", metadata=None):
        """Sends a unary request ([InvokeMetadata] Invoke Message CloseSend in
        one write) without reading; finish with finish_unary() or cancel."""
        st = self.new_stream(rpc, metadata)
        st.send(data, flush=False)
        st.close_send(flush=True)
        return st

    def finish_unary(self, timeout=None):
        """Reads the reply of start_unary() and sends Close like Go's Invoke."""
        st = self.stream
        msg = st.recv(timeout)
        if msg is None:
            raise ProtocolError("stream %d ended without a reply message" % st.id)
        st.close()
        return msg

    def unary(self, rpc, data=b"", metadata=None, timeout=None):
        self.start_unary(rpc, data, metadata)
        return self.finish_unary(timeout)

    def iter_server_stream(self, rpc, data=b"", metadata=None, timeout=None):
        """Yields the messages of a server stream; returns on CloseSend."""
        st = self.start_unary(rpc, data, metadata)
        while True:
            m = st.recv(timeout)
            if m is None:
                return
            yield m

    def server_stream(self, rpc, data=b"", metadata=None, timeout=None):
        """Every message as a list; ConnectionLost.received has the partial list."""
        st = self.start_unary(rpc, data, metadata)
        return st.recv_all(timeout)

    def client_stream(self, rpc, messages, metadata=None, timeout=None, wait_end=True):
        """Sends each message (the Invoke leaves with the first), CloseSend,
        returns the one reply. wait_end also waits for the server's CloseSend
        (the Go client does not; the next call would skip it as late)."""
        st = self.new_stream(rpc, metadata)
        for m in messages:
            st.send(m)
        st.close_send()
        reply = st.recv(timeout)
        if reply is None:
            raise ProtocolError("client stream %d ended without a reply" % st.id)
        if wait_end:
            extra = st.recv(timeout)
            if extra is not None:
                raise ProtocolError("client stream %d: a second reply %r" % (st.id, extra[:40]))
        return reply

    def bidi(self, rpc, messages, metadata=None, timeout=None):
        """Round trips: send one message, read its echo; then CloseSend and
        read until the server's CloseSend. Returns every message received."""
        st = self.new_stream(rpc, metadata)
        got = []
        try:
            for m in messages:
                st.send(m)
                r = st.recv(timeout)
                if r is None:
                    return got
                got.append(r)
            st.close_send()
            got.extend(st.recv_all(timeout))
        except ConnectionLost as e:
            raise ConnectionLost(str(e), got + e.received) from None
        return got

    def soft_cancel(self):
        """Cancel (control+done bits) for the current stream; the connection
        stays usable for the next stream."""
        if self.stream is None:
            raise RuntimeError("no stream to cancel")
        self.stream.cancel()

    hard_cancel = close


def main(argv):
    """`drpc.py call ADDR RPC [DATA]`: one unary call, the reply on stdout
    (`error code=N text=...` and status 1 for an Error), like drpc-call."""
    import argparse
    import sys

    if not argv or argv[0] != "call":
        print("usage: drpc.py call [TLS options] ADDR RPC [DATA]", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="drpc.py call")
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-server-name")
    p.add_argument("--tls-min", choices=sorted(TLS_VERSIONS))
    p.add_argument("--tls-max", choices=sorted(TLS_VERSIONS))
    p.add_argument("--tls-no-verify", action="store_true")
    p.add_argument("addr")
    p.add_argument("rpc")
    p.add_argument("data", nargs="?", default="")
    a = p.parse_args(argv[1:])
    tls = None
    if a.tls_ca or a.tls_cert or a.tls_no_verify or a.tls_server_name or a.tls_min or a.tls_max:
        tls = tls_client_context(a.tls_ca, a.tls_cert, a.tls_key, a.tls_min, a.tls_max,
                                 verify=not a.tls_no_verify)
    with Conn(a.addr, tls=tls, server_name=a.tls_server_name) as c:
        try:
            out = c.unary(a.rpc, a.data.encode())
        except DrpcError as e:
            print("error code=%d text=%s" % (e.code, e.message))
            return 1
    sys.stdout.buffer.write(out + b"\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
