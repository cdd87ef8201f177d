"""The test service in Python: an upstream (TestServer) and a reverse-pool
agent (Agent) that share nothing with the C code, so a codec bug in the
sidecar cannot hide behind the same bug in its peer (drpc-testd is the C
peer). Frames, packets, metadata and errors come from drpc.py; this module
only serves.

Like the Go server: a thread per connection, one stream at a time; replies
Message(s) then CloseSend, or a single Error; a Cancel, Close or a newer
stream ends the current one without a reply. Beyond drpc-testd it records
what the sidecar did to it (`accepted`, `calls`, `open_conns()`) and can
drop every connection at once (`kill_connections()`).

TLS: TestServer(tls=drpc.tls_server_context(...)) runs each handshake in
its connection's thread (a refused one lands in `tls_errors`, as "SSL
reason" text); Agent(tls=drpc.tls_client_context(...)) dials over TLS.
/test.Echo/TLSInfo answers drpc.tls_info() of the connection.

  python3 tests/integration/pyserver.py serve [--tls-cert F --tls-key F
      [--tls-client-ca F] [--tls-min V]] ADDR    runs it on ADDR
"""

import collections
import random
import select
import socket
import ssl
import threading
import time

try:
    from . import drpc
except ImportError:  # run as a script
    import drpc

ECHO = "/test.Echo/"


class _Reader:
    """Packets off one socket by the Go reader's rules. Control packets are
    skipped except a soft Cancel, which a server must see."""

    def __init__(self, sock, header):
        self.sock = sock
        self.decoder = drpc.FrameDecoder(expect_header=header)
        self.assembler = drpc.PacketAssembler()
        self.frames = collections.deque()
        self.pushed = []  # a packet read ahead by _stream_over, served first
        self.gate = None  # the connection, when the server closes idle ones

    def ready(self):
        """True when a packet may be read without waiting for the socket."""
        return bool(self.pushed or self.frames)

    def read_packet(self):
        if self.pushed:
            return self.pushed.pop()
        while True:
            while not self.frames:
                if self.gate is not None:
                    self.gate.before_recv()
                try:
                    data = self.sock.recv(1 << 16)
                except OSError as e:
                    raise drpc.ConnectionLost(str(e))
                if not data:
                    raise drpc.ConnectionLost("connection closed by peer")
                self.frames.extend(self.decoder.feed(data))
            p = self.assembler.add(self.frames.popleft())
            if p is None or (p.control and p.kind != drpc.KIND_CANCEL):
                continue
            return p


class _ServerConn(threading.Thread):
    """One connection of the service; conn_id numbers them from 1."""

    def __init__(self, server, sock, conn_id):
        super().__init__(daemon=True)
        self.server = server
        self.sock = sock
        self.conn_id = conn_id
        self.rpcs = 0
        self.wlock = threading.Lock()
        self.state_lock = threading.Lock()
        self.active = False  # a call is under way or its bytes are being read
        self.in_call = False
        self.idle_closed = False

    def send(self, data):
        with self.wlock:
            self.sock.sendall(data)

    # --- closing idle connections, as a server shutting down gracefully or
    # with an idle timeout does: only between calls, with nothing unread

    def before_recv(self):
        """Waits until the socket is readable, then marks the connection
        active before taking its bytes, so close_if_idle never closes it
        with a request read but not yet served. A connection close_if_idle
        picked is closed here, by its own thread, as Go's server closes an
        idle connection: a plain close (a reset if bytes came meanwhile)."""
        with self.state_lock:
            self.active = self.in_call
        while True:
            readable = select.select([self.sock], [], [], 0.005)[0]
            with self.state_lock:
                if self.idle_closed:
                    self.sock.close()
                    raise drpc.ConnectionLost("closed while idle")
                if readable:
                    self.active = True
                    return

    def close_if_idle(self):
        """Picks the connection to be closed when no call is under way and
        no byte waits unread; returns whether it did."""
        with self.state_lock:
            if self.active or self.idle_closed:
                return False
            try:
                if self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    return False
            except BlockingIOError:
                pass
            except OSError:
                return False
            self.idle_closed = True
            return True

    def run(self):
        try:
            if self.server.tls is not None:
                try:
                    self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.server.tls_errors.append(str(e))
                    raise drpc.ConnectionLost("tls: %s" % e)
            self._serve()
        except (drpc.ConnectionLost, drpc.ProtocolError, OSError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._gone(self)

    def _serve(self):
        reader = _Reader(self.sock, self.server.header)
        if self.server.idle_close:
            reader.gate = self
        meta, meta_sid, cur = {}, 0, 0
        while True:
            p = reader.read_packet()
            if p.stream <= cur and p.kind not in (drpc.KIND_INVOKE, drpc.KIND_INVOKE_METADATA):
                continue
            if p.kind == drpc.KIND_INVOKE_METADATA:
                meta, meta_sid = drpc.decode_metadata(p.data), p.stream
                continue
            if p.kind != drpc.KIND_INVOKE:
                continue
            cur = p.stream
            self.rpcs += 1
            self.in_call = True
            self._call(reader, p.stream, p.data.decode(errors="replace"),
                       meta if meta_sid == p.stream else {})
            self.in_call = False

    def _read_request(self, reader, sid, streaming=False):
        """Messages of stream sid until CloseSend (streaming) or the first
        one; None when the stream was cancelled or closed."""
        msgs = []
        while True:
            p = reader.read_packet()
            if p.stream < sid:
                continue
            if p.stream > sid:
                raise drpc.ProtocolError("client moved on")
            if p.kind == drpc.KIND_MESSAGE:
                msgs.append(p.data)
                if not streaming:
                    return msgs
            elif p.kind == drpc.KIND_CLOSE_SEND:
                return msgs
            elif p.kind in (drpc.KIND_CLOSE, drpc.KIND_CANCEL, drpc.KIND_ERROR):
                return None

    def _stream_over(self, reader, sid, wait):
        """Reads what the client sends for up to wait seconds (0: only what
        has arrived); True as soon as it cancels, closes or replaces stream sid."""
        deadline = time.time() + wait
        while True:
            left = max(0.0, deadline - time.time())
            if not reader.ready() and not select.select([self.sock], [], [], left)[0]:
                return False
            p = reader.read_packet()
            if p.stream < sid:
                continue
            if p.stream > sid:
                reader.pushed.append(p)
                return True
            if p.kind in (drpc.KIND_CANCEL, drpc.KIND_CLOSE, drpc.KIND_ERROR):
                return True

    def _call(self, reader, sid, rpc, md):
        self.server.calls.append(rpc)
        mid = [0]

        def put(kind, data=b""):
            mid[0] += 1
            self.send(drpc.encode_packet(kind, sid, mid[0], data))

        name = rpc[len(ECHO):] if rpc.startswith(ECHO) else None
        if name == "ClientStream":
            msgs = self._read_request(reader, sid, streaming=True)
            if msgs is not None:
                put(drpc.KIND_MESSAGE, b"".join(msgs))
                put(drpc.KIND_CLOSE_SEND)
            return
        if name == "Bidi":
            while True:
                p = reader.read_packet()
                if p.stream != sid:
                    continue
                if p.kind == drpc.KIND_MESSAGE:
                    put(drpc.KIND_MESSAGE, p.data)
                elif p.kind == drpc.KIND_CLOSE_SEND:
                    put(drpc.KIND_CLOSE_SEND)
                    return
                else:
                    return
        msgs = self._read_request(reader, sid)
        if msgs is None:
            return
        req = msgs[0] if msgs else b""
        if name == "Unary":
            put(drpc.KIND_MESSAGE, req)
        elif name == "ServerStream":
            count, size = (int(x) for x in req.split())
            pattern = bytes(range(251)) * (size // 251 + 2)  # message k: byte i = (k + i) % 251
            for k in range(count):
                if k and self._stream_over(reader, sid, 0):
                    return  # like the Go server: nothing more once the client cancelled
                put(drpc.KIND_MESSAGE, pattern[k % 251:k % 251 + size])
        elif name == "Error":
            code, _, text = req.decode().partition(" ")
            put(drpc.KIND_ERROR, drpc.encode_error(int(code), text))
            return
        elif name == "Metadata":
            put(drpc.KIND_MESSAGE, "".join("%s=%s\n" % kv for kv in sorted(md.items())).encode())
        elif name == "Sleep":
            if self._stream_over(reader, sid, int(req) / 1000.0):
                return  # cancelled: like the Go server, send nothing more
            put(drpc.KIND_MESSAGE, b"slept")
        elif name == "Conn":
            put(drpc.KIND_MESSAGE, b"%d %d" % (self.conn_id, self.rpcs))
        elif name == "Identify":
            put(drpc.KIND_MESSAGE, self.server.ident.encode())
        elif name == "TLSInfo":
            put(drpc.KIND_MESSAGE, drpc.tls_info(self.sock).encode())
        elif name == "Abort":
            for i in range(int(req)):
                put(drpc.KIND_MESSAGE, b"abort-%d" % i)
            time.sleep(0.05)
            self.sock.shutdown(socket.SHUT_RDWR)
            raise drpc.ConnectionLost("abort")
        else:
            put(drpc.KIND_ERROR, drpc.encode_error(0, 'protocol error: unknown rpc: "%s"' % rpc))
            return
        put(drpc.KIND_CLOSE_SEND)


class _Service:
    """What TestServer and Agent share: the connections and the records."""

    def __init__(self, header, ident, tls=None):
        self.header = header
        self.ident = ident
        self.tls = tls  # server SSLContext for accepted connections, or None
        self.tls_errors = []  # refused handshakes, as text
        self.lock = threading.Lock()
        self.conns = set()
        self.accepted = 0  # connections served so far
        self.calls = []  # rpc names, in order
        self.closed = False
        self.idle_close = None  # (min_ms, max_ms) while close_idle_every runs
        self.idle_closes = 0  # connections closed for being idle

    def _serve_socket(self, sock):
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.accepted += 1
            c = _ServerConn(self, sock, self.accepted)
            self.conns.add(c)
        c.start()

    def _gone(self, c):
        with self.lock:
            self.conns.discard(c)

    def open_conns(self):
        with self.lock:
            return len(self.conns)

    def close_idle_every(self, min_ms, max_ms):
        """From now on, every min_ms to max_ms (at random) shut down each
        connection that is between calls with nothing unread, as a Go
        server shutting down gracefully or timing idle connections out
        does; counted in idle_closes. Applies to connections accepted
        after the call."""
        self.idle_close = (min_ms, max_ms)

        def run():
            while not self.closed:
                time.sleep(random.uniform(min_ms, max_ms) / 1000.0)
                with self.lock:
                    conns = list(self.conns)
                n = sum(1 for c in conns if c.close_if_idle())
                with self.lock:
                    self.idle_closes += n

        threading.Thread(target=run, daemon=True).start()

    def kill_connections(self):
        """Shuts every connection down at once (a crashed peer, seen from the sidecar)."""
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TestServer(_Service):
    """The test service on ADDR (port 0: any free port; `addr` is the bound
    one), serving header-prefixed connections when header=True."""

    __test__ = False

    def __init__(self, addr="127.0.0.1:0", header=False, ident="", tls=None):
        super().__init__(header, ident, tls)
        family, target = drpc.parse_addr(addr)
        family = family or (socket.AF_INET6 if ":" in target[0] else socket.AF_INET)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family != socket.AF_UNIX:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(target)
        self.sock.listen(1024)
        if family == socket.AF_UNIX:
            self.addr = addr
        else:
            host, port = self.sock.getsockname()[:2]
            self.addr = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, port)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self._serve_socket(s)

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.kill_connections()


class Agent(_Service):
    """A reverse-pool agent: dials ADDR n times at once (no redial) and
    serves the test service on those connections; with tls (a client
    SSLContext) over TLS, verifying server_name or the dialled host."""

    def __init__(self, addr, n=1, ident="", header=False, tls=None, server_name=None):
        super().__init__(False, ident)
        for _ in range(n):
            s = drpc.dial(addr, tls=tls, server_name=server_name)
            s.settimeout(None)
            if header:
                s.sendall(drpc.HEADER)
            self._serve_socket(s)

    def close(self):
        self.closed = True
        self.kill_connections()


def main(argv):
    import sys

    if argv and argv[0] == "serve":
        import argparse

        p = argparse.ArgumentParser(prog="pyserver.py serve")
        p.add_argument("--tls-cert")
        p.add_argument("--tls-key")
        p.add_argument("--tls-client-ca")
        p.add_argument("--tls-min", choices=sorted(drpc.TLS_VERSIONS))
        p.add_argument("addr")
        a = p.parse_args(argv[1:])
        tls = None
        if a.tls_cert:
            tls = drpc.tls_server_context(a.tls_cert, a.tls_key, a.tls_client_ca, a.tls_min)
        srv = TestServer(a.addr, tls=tls)
        print("drpc test server listening on %s" % srv.addr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            srv.close()
        return 0
    print("usage: pyserver.py serve [TLS options] ADDR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
