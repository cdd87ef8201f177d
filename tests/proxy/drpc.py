"""A small, independent DRPC implementation for the integration tests.

It shares nothing with the C codec, so a codec bug in the sidecar cannot
hide behind the same bug here. It follows the upstream Go implementation's
wire behaviour (see shared/drpc-wire.md and the transcripts):

* Client: a unary call writes [InvokeMetadata] Invoke Message CloseSend in
  one write, reads the reply, then sends Close for the stream without
  waiting for the server's CloseSend. Stream ids 1, 2, 3 per connection.
* Server (TestServer): the test service /test.Echo/* on a thread per
  connection; replies Message(s) then CloseSend, or a single Error.
"""

import select
import socket
import struct
import threading
import time

KIND_INVOKE = 1
KIND_MESSAGE = 2
KIND_ERROR = 3
KIND_CANCEL = 4
KIND_CLOSE = 5
KIND_CLOSE_SEND = 6
KIND_INVOKE_METADATA = 7

SPLIT = 64 * 1024
HEADER = b"DRPC!!!1"


class DrpcError(Exception):
    def __init__(self, code, message):
        super().__init__("code=%d %s" % (code, message))
        self.code = code
        self.message = message


class ConnectionLost(Exception):
    pass


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf, pos):
    """Returns (value, new_pos) or None if incomplete. Raises on > 10 bytes."""
    v = 0
    for i in range(10):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        v |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return v, pos + i + 1
    raise ValueError("varint longer than 10 bytes")


def frame(kind, sid, mid, data=b"", done=True, control=False):
    c = (kind << 1) | (1 if done else 0) | (0x80 if control else 0)
    return bytes([c]) + varint(sid) + varint(mid) + varint(len(data)) + data


def packet(kind, sid, mid, data=b""):
    """A packet split into 64 KiB frames like the Go writer."""
    if not data:
        return frame(kind, sid, mid, b"")
    out = bytearray()
    for off in range(0, len(data), SPLIT):
        chunk = data[off : off + SPLIT]
        out += frame(kind, sid, mid, chunk, done=off + SPLIT >= len(data))
    return bytes(out)


def parse_frame(buf, pos=0):
    """Returns (kind, sid, mid, done, control, data, new_pos) or None."""
    if pos >= len(buf):
        return None
    c = buf[pos]
    r = read_varint(buf, pos + 1)
    if r is None:
        return None
    sid, p = r
    r = read_varint(buf, p)
    if r is None:
        return None
    mid, p = r
    r = read_varint(buf, p)
    if r is None:
        return None
    n, p = r
    if p + n > len(buf):
        return None
    return ((c >> 1) & 0x3F, sid, mid, bool(c & 1), bool(c & 0x80), bytes(buf[p : p + n]), p + n)


def encode_metadata(md):
    out = bytearray()
    for k, v in md.items():
        kb, vb = k.encode(), v.encode()
        entry = b"\x0a" + varint(len(kb)) + kb + b"\x12" + varint(len(vb)) + vb
        out += b"\x0a" + varint(len(entry)) + entry
    return bytes(out)


def decode_metadata(data):
    md = {}
    pos = 0
    while pos < len(data):
        if data[pos] != 0x0A:
            raise ValueError("bad metadata tag")
        n, pos = read_varint(data, pos + 1)
        entry = data[pos : pos + n]
        pos += n
        k = v = b""
        q = 0
        while q < len(entry):
            tag = entry[q]
            ln, q = read_varint(entry, q + 1)
            if tag == 0x0A:
                k = entry[q : q + ln]
            elif tag == 0x12:
                v = entry[q : q + ln]
            q += ln
        md[k.decode()] = v.decode()
    return md


def error_data(code, text):
    return struct.pack(">Q", code) + text.encode()


def decode_error(data):
    if len(data) < 8:
        return 0, data.decode(errors="replace")
    return struct.unpack(">Q", data[:8])[0], data[8:].decode(errors="replace")


def parse_addr(addr):
    if addr.startswith("unix:"):
        return socket.AF_UNIX, addr[5:]
    host, port = addr.rsplit(":", 1)
    if host.startswith("["):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


def dial(addr, timeout=10.0):
    fam, sa = parse_addr(addr)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sa)
    if fam != socket.AF_UNIX:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class PacketReader:
    """Assembles packets from frames, as the Go reader does."""

    def __init__(self, sock, keep_control=False):
        self.sock = sock
        self.buf = bytearray()
        self.last = (0, 0)
        self.keep_control = keep_control  # servers see soft Cancel packets
        self.pushed = []

    def _fill(self):
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("no data from peer within the timeout")
        except OSError as e:
            raise ConnectionLost(str(e))
        if not data:
            raise ConnectionLost("connection closed by peer")
        self.buf += data

    def read_frame(self):
        while True:
            f = parse_frame(self.buf)
            if f is not None:
                del self.buf[: f[6]]
                return f[:6]
            self._fill()

    def read_packet(self):
        """Returns (kind, sid, mid, data); control frames are skipped."""
        if self.pushed:
            return self.pushed.pop()
        cur = None
        data = bytearray()
        while True:
            kind, sid, mid, done, control, d = self.read_frame()
            if control:
                if self.keep_control and kind == KIND_CANCEL:
                    return kind, sid, mid, b""
                continue
            if (sid, mid) < self.last:
                raise ValueError("id monotonicity violation: %r after %r" % ((sid, mid), self.last))
            if cur is None or cur != (sid, mid, kind):
                if cur is not None and (sid, mid) == cur[:2] and kind != cur[2]:
                    raise ValueError("packet kind change")
                cur = (sid, mid, kind)
                data = bytearray()
            self.last = (sid, mid)
            data += d
            if done:
                self.last = (sid, mid + 1)
                return kind, sid, mid, bytes(data)


class Conn:
    """A DRPC client connection: one call at a time, like drpcconn."""

    def __init__(self, addr, header=False, timeout=10.0):
        self.sock = dial(addr, timeout)
        if header:
            self.sock.sendall(HEADER)
        self.reader = PacketReader(self.sock)
        self.sid = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def _open(self, rpc, metadata):
        self.sid += 1
        self.mid = 0
        out = bytearray()
        if metadata:
            self.mid += 1
            out += packet(KIND_INVOKE_METADATA, self.sid, self.mid, encode_metadata(metadata))
        self.mid += 1
        out += packet(KIND_INVOKE, self.sid, self.mid, rpc.encode())
        return out

    def _next(self, kind, data=b""):
        self.mid += 1
        return packet(kind, self.sid, self.mid, data)

    def _recv(self):
        """Next packet of the current stream; older streams' packets are ignored."""
        while True:
            kind, sid, mid, data = self.reader.read_packet()
            if sid < self.sid:
                continue
            if sid != self.sid:
                raise ValueError("packet for unknown stream %d" % sid)
            if kind == KIND_ERROR:
                raise DrpcError(*decode_error(data))
            return kind, data

    def unary(self, rpc, data=b"", metadata=None):
        out = self._open(rpc, metadata)
        out += self._next(KIND_MESSAGE, data)
        out += self._next(KIND_CLOSE_SEND)
        self.sock.sendall(out)
        while True:
            kind, reply = self._recv()
            if kind == KIND_MESSAGE:
                break
            if kind in (KIND_CLOSE, KIND_CLOSE_SEND):
                raise ConnectionLost("stream ended without a reply")
        # Like the Go client: close the stream as soon as the reply is in.
        self.sock.sendall(self._next(KIND_CLOSE))
        return reply

    def server_stream(self, rpc, data=b"", metadata=None):
        out = self._open(rpc, metadata)
        out += self._next(KIND_MESSAGE, data)
        out += self._next(KIND_CLOSE_SEND)
        self.sock.sendall(out)
        msgs = []
        while True:
            kind, d = self._recv()
            if kind == KIND_MESSAGE:
                msgs.append(d)
            elif kind in (KIND_CLOSE_SEND, KIND_CLOSE):
                return msgs

    def client_stream(self, rpc, messages, metadata=None):
        out = self._open(rpc, metadata)
        for m in messages:
            out += self._next(KIND_MESSAGE, m)
            self.sock.sendall(out)
            out = bytearray()
        self.sock.sendall(self._next(KIND_CLOSE_SEND))
        kind, reply = self._recv()
        while kind != KIND_MESSAGE:
            kind, reply = self._recv()
        self.sock.sendall(self._next(KIND_CLOSE))
        return reply

    def bidi(self, rpc, messages, metadata=None):
        out = self._open(rpc, metadata)
        replies = []
        for m in messages:
            out += self._next(KIND_MESSAGE, m)
            self.sock.sendall(out)
            out = bytearray()
            kind, d = self._recv()
            replies.append(d)
        self.sock.sendall(self._next(KIND_CLOSE_SEND))
        while True:
            kind, d = self._recv()
            if kind in (KIND_CLOSE_SEND, KIND_CLOSE):
                return replies

    def start_unary(self, rpc, data=b"", metadata=None):
        """Sends a unary request and returns without reading (for held calls)."""
        out = self._open(rpc, metadata)
        out += self._next(KIND_MESSAGE, data)
        out += self._next(KIND_CLOSE_SEND)
        self.sock.sendall(out)

    def finish_unary(self):
        while True:
            kind, reply = self._recv()
            if kind == KIND_MESSAGE:
                self.sock.sendall(self._next(KIND_CLOSE))
                return reply

    def soft_cancel(self):
        self.mid += 1
        self.sock.sendall(frame(KIND_CANCEL, self.sid, self.mid, b"", done=True, control=True))

    def send_raw(self, data):
        self.sock.sendall(data)


# ---- the test service, served by TestServer --------------------------------


class _ServerConn(threading.Thread):
    def __init__(self, server, sock, conn_id):
        super().__init__(daemon=True)
        self.server = server
        self.sock = sock
        self.conn_id = conn_id
        self.rpcs = 0
        self.wlock = threading.Lock()

    def send(self, data):
        with self.wlock:
            self.sock.sendall(data)

    def run(self):
        try:
            self._serve()
        except (ConnectionLost, OSError, ValueError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._gone(self)

    def _serve(self):
        reader = PacketReader(self.sock, keep_control=True)
        if self.server.header:
            while len(reader.buf) < 8:
                reader._fill()
            if bytes(reader.buf[:8]) != HEADER:
                return
            del reader.buf[:8]
        meta = {}
        meta_sid = 0
        cur = 0
        while True:
            kind, sid, mid, data = reader.read_packet()
            if sid <= cur and kind not in (KIND_INVOKE, KIND_INVOKE_METADATA):
                continue
            if kind == KIND_INVOKE_METADATA:
                meta, meta_sid = decode_metadata(data), sid
                continue
            if kind != KIND_INVOKE:
                continue
            cur = sid
            self.rpcs += 1
            md = meta if meta_sid == sid else {}
            self._call(reader, sid, data.decode(errors="replace"), md)

    def _read_request(self, reader, sid, streaming=False):
        """Messages of stream sid until CloseSend (streaming) or the first one."""
        msgs = []
        while True:
            kind, s, mid, data = reader.read_packet()
            if s < sid:
                continue
            if s > sid:
                raise ValueError("client moved on")
            if kind == KIND_MESSAGE:
                msgs.append(data)
                if not streaming:
                    return msgs
            elif kind == KIND_CLOSE_SEND:
                return msgs
            elif kind in (KIND_CLOSE, KIND_CANCEL, KIND_ERROR):
                return None

    def _sleep(self, reader, sid, seconds):
        """Sleeps, stopping early (False) when the stream is cancelled or replaced."""
        deadline = time.time() + seconds
        while True:
            left = deadline - time.time()
            if left <= 0:
                return True
            if not reader.buf and not reader.pushed:
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    return True
            kind, s, mid, data = reader.read_packet()
            if s < sid:
                continue
            if s > sid:
                reader.pushed.append((kind, s, mid, data))
                return False
            if kind in (KIND_CANCEL, KIND_CLOSE, KIND_ERROR):
                return False

    def _call(self, reader, sid, rpc, md):
        self.server.calls.append(rpc)
        mid = [0]

        def nxt():
            mid[0] += 1
            return mid[0]

        def reply(kind, data=b""):
            self.send(packet(kind, sid, nxt(), data))

        name = rpc[len("/test.Echo/") :] if rpc.startswith("/test.Echo/") else None
        if name == "ClientStream":
            msgs = self._read_request(reader, sid, streaming=True)
            if msgs is None:
                return
            reply(KIND_MESSAGE, b"".join(msgs))
            reply(KIND_CLOSE_SEND)
            return
        if name == "Bidi":
            while True:
                kind, s, m, data = reader.read_packet()
                if s != sid:
                    continue
                if kind == KIND_MESSAGE:
                    reply(KIND_MESSAGE, data)
                elif kind == KIND_CLOSE_SEND:
                    reply(KIND_CLOSE_SEND)
                    return
                else:
                    return
        msgs = self._read_request(reader, sid)
        if msgs is None:
            return
        req = msgs[0] if msgs else b""
        if name == "Unary":
            reply(KIND_MESSAGE, req)
        elif name == "ServerStream":
            count, size = (int(x) for x in req.split())
            for k in range(count):
                reply(KIND_MESSAGE, bytes((k + i) % 251 for i in range(size)))
        elif name == "Error":
            code, _, text = req.decode().partition(" ")
            self.send(packet(KIND_ERROR, sid, nxt(), error_data(int(code), text)))
            return
        elif name == "Metadata":
            reply(KIND_MESSAGE, "".join("%s=%s\n" % kv for kv in sorted(md.items())).encode())
        elif name == "Sleep":
            if not self._sleep(reader, sid, int(req) / 1000.0):
                return  # cancelled: like the Go server, send nothing more
            reply(KIND_MESSAGE, b"slept")
        elif name == "Conn":
            reply(KIND_MESSAGE, b"%d %d" % (self.conn_id, self.rpcs))
        elif name == "Identify":
            reply(KIND_MESSAGE, self.server.ident.encode())
        elif name == "Abort":
            for i in range(int(req)):
                reply(KIND_MESSAGE, b"abort-%d" % i)
            time.sleep(0.05)
            self.sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionLost("abort")
        else:
            self.send(
                packet(KIND_ERROR, sid, nxt(),
                       error_data(0, 'protocol error: unknown rpc: "%s"' % rpc)))
            return
        reply(KIND_CLOSE_SEND)


class TestServer:
    """The test service on a loopback port (or unix path), a thread per connection."""

    __test__ = False

    def __init__(self, addr="127.0.0.1:0", header=False, ident=""):
        fam, sa = parse_addr(addr)
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        if fam != socket.AF_UNIX:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(sa)
        self.sock.listen(1024)
        if fam == socket.AF_UNIX:
            self.addr = addr
        else:
            host, port = self.sock.getsockname()[:2]
            self.addr = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (host, port)
        self.header = header
        self.ident = ident
        self.lock = threading.Lock()
        self.conns = set()
        self.accepted = 0
        self.calls = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            if s.family != socket.AF_UNIX:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepted += 1
                c = _ServerConn(self, s, self.accepted)
                self.conns.add(c)
            c.start()

    def _gone(self, c):
        with self.lock:
            self.conns.discard(c)

    def open_conns(self):
        with self.lock:
            return len(self.conns)

    def kill_connections(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.kill_connections()


class Agent:
    """Reverse-pool agent: dials the sidecar n times and serves the test service."""

    def __init__(self, addr, n=1, ident="", header=False):
        self.server = TestServer.__new__(TestServer)
        self.server.header = False
        self.server.ident = ident
        self.server.lock = threading.Lock()
        self.server.conns = set()
        self.server.accepted = 0
        self.server.calls = []
        self.server.closed = False
        for _ in range(n):
            s = dial(addr)
            s.settimeout(None)
            if header:
                s.sendall(HEADER)
            with self.server.lock:
                self.server.accepted += 1
                c = _ServerConn(self.server, s, self.server.accepted)
                self.server.conns.add(c)
            c.start()

    def open_conns(self):
        return self.server.open_conns()

    def close(self):
        self.server.closed = True
        self.server.kill_connections()


def main(argv):
    """Command line: `serve ADDR` runs the test service; `call ADDR RPC [DATA]` calls it."""
    import sys

    if len(argv) >= 2 and argv[0] == "serve":
        srv = TestServer(argv[1])
        print("drpc test server listening on %s" % srv.addr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            srv.close()
        return 0
    if len(argv) >= 3 and argv[0] == "call":
        with Conn(argv[1]) as c:
            try:
                out = c.unary(argv[2], (argv[3] if len(argv) > 3 else "").encode())
            except DrpcError as e:
                print("error code=%d text=%s" % (e.code, e.message))
                return 1
        sys.stdout.buffer.write(out + b"\n")
        return 0
    print("usage: drpc.py serve ADDR | call ADDR RPC [DATA]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
