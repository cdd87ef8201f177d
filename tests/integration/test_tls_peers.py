"""The test peers over TLS, with no sidecar between them: drpc-testd,
drpc-call, drpc-bench and the agent mode (C, OpenSSL through memory BIOs),
the Python client, server and agent (ssl module), and GnuTLS's gnutls-cli
and gnutls-serv as a TLS stack that is not OpenSSL. The sidecar's TLS tests
stand on these peers, so each refusal is checked with its exact reason.
"""

import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from . import drpc
from .procs import INSTRUMENTED, SCALE, TRANSCRIPTS, binary, wait_connectable

ECHO = "/test.Echo/"


def call(*args, timeout=20):
    """drpc-call ARGS -> (exit status, stdout, stderr)."""
    p = subprocess.run([binary("drpc-call")] + list(args), capture_output=True,
                       timeout=timeout * SCALE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def tls_testd(testd, cert, *extra, header=False, listen=("127.0.0.1:0",)):
    return testd(*listen, header=header, args=cert.server_args() + list(extra))


def closed_reasons(proc):
    """The close reasons drpc-testd logged, in order."""
    out = []
    for line in proc.stderr().splitlines():
        if " closed (" in line:
            out.append(line.split(" closed (", 1)[1].split(") ", 1)[0])
    return out


def refused_after_handshake(err, alert):
    """A TLS 1.3 server refuses a client certificate after the client's
    handshake is over: the client reads the alert, or, when the server's
    close (a reset: the request was unread) overtakes it, loses the
    connection. The server's log says why in both cases."""
    return alert in err or "drpc-call: lost: " in err


def wait_reason(proc, needle, timeout=5.0):
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if any(needle in r for r in closed_reasons(proc)):
            return
        time.sleep(0.02)
    raise AssertionError("no close reason with %r in %s" % (needle, closed_reasons(proc)))


# --- the PKI itself ------------------------------------------------------------


def test_pki_certificates_are_what_they_claim(pki):
    def verify(ca, cert):
        return subprocess.run(["openssl", "verify", "-CAfile", ca.cert, cert.cert],
                              capture_output=True, text=True)

    for c in (pki.server, pki.server2, pki.client, pki.client_dns_only, pki.wrong_host):
        assert verify(pki.ca, c).returncode == 0, c
    r = verify(pki.ca, pki.expired)
    assert r.returncode != 0 and "certificate has expired" in r.stdout + r.stderr
    for c in (pki.other_server, pki.other_client):
        assert verify(pki.ca, c).returncode != 0
        assert verify(pki.other_ca, c).returncode == 0
    text = subprocess.run(["openssl", "x509", "-in", pki.server.cert, "-noout", "-ext",
                           "subjectAltName"], capture_output=True, text=True).stdout
    assert "IP Address:127.0.0.1" in text and "IP Address:0:0:0:0:0:0:0:1" in text
    assert "DNS:localhost" in text


# --- C client <-> C server --------------------------------------------------------


def test_c_client_c_server_every_call_shape(testd, pki):
    srv = tls_testd(testd, pki.server)
    ca = ["--tls-ca", pki.ca.cert]
    assert call(*ca, srv.addr, ECHO + "Unary", "hello")[:2] == (0, "hello\n")
    assert call(*ca, "--meta", "a=1", srv.addr, ECHO + "Metadata", "x")[:2] == (0, "a=1\n\n")
    assert call(*ca, srv.addr, ECHO + "ClientStream", "a", "b")[:2] == (0, "ab\n")
    assert call(*ca, srv.addr, ECHO + "Bidi", "p", "q")[:2] == (0, "p\nq\n")
    assert call(*ca, srv.addr, ECHO + "Error", "42 nope")[:2] == (1, "error code=42 text=nope\n")
    # 8 MiB through the TLS write path and the client's back-pressure
    code, out, err = call(*ca, "--hex", srv.addr, ECHO + "ServerStream", "8 1048576")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 8
    for k, line in enumerate(lines):
        assert bytes.fromhex(line) == bytes((k + i) % 251 for i in range(1 << 20))
    code, out, err = call(*ca, "--repeat", "3", srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "TLSv1.3 0 -\n" * 3), err
    assert "drpc-call: tls TLSv1.3 0 server" in err  # the client's view: the server's CN


def test_c_tls_names_ipv6_localhost_and_tls12(testd, pki):
    srv = tls_testd(testd, pki.server, listen=("127.0.0.1:0", "[::1]:0"))
    ca = ["--tls-ca", pki.ca.cert]
    assert call(*ca, srv.addrs[1], ECHO + "Unary", "v6")[:2] == (0, "v6\n")
    assert call(*ca, "--tls-server-name", "localhost", srv.addr, ECHO + "Unary", "n")[:2] == \
        (0, "n\n")
    code, out, err = call(*ca, "--tls-max", "1.2", srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "TLSv1.2 0 -\n"), err


def test_c_mtls_client_certificate_identity(testd, pki):
    srv = tls_testd(testd, pki.server, "--tls-client-ca", pki.ca.cert)
    code, out, err = call(*pki.client.client_args(pki.ca), srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "TLSv1.3 0 agent-1\n"), err
    code, out, err = call(*pki.client_dns_only.client_args(pki.ca), srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "TLSv1.3 0 agent-2\n"), err  # no CN: the DNS SAN


def test_c_mtls_refusals(testd, pki):
    srv = tls_testd(testd, pki.server, "--tls-client-ca", pki.ca.cert)
    # no client certificate: TLS 1.3 clients learn it from the alert
    code, _, err = call("--tls-ca", pki.ca.cert, srv.addr, ECHO + "Unary", "x")
    assert code == 3 and refused_after_handshake(err, "tls: tlsv13 alert certificate required"), err
    wait_reason(srv, "tls: peer did not return a certificate")
    code, _, err = call("--tls-ca", pki.ca.cert, "--tls-max", "1.2", srv.addr, ECHO + "Unary", "x")
    assert code == 3 and "tls: sslv3 alert handshake failure" in err, err
    # a certificate from another CA
    code, _, err = call(*pki.other_client.client_args(pki.ca), srv.addr, ECHO + "Unary", "x")
    assert code == 3 and refused_after_handshake(err, "tls: tlsv1 alert unknown ca"), err
    wait_reason(srv, "tls: certificate verify failed: unable to get local issuer certificate")
    # an expired client certificate
    code, _, err = call(*pki.expired.client_args(pki.ca), srv.addr, ECHO + "Unary", "x")
    assert code == 3 and refused_after_handshake(err, "tls: sslv3 alert certificate expired"), err
    wait_reason(srv, "tls: certificate verify failed: certificate has expired")
    # and the server goes on serving
    assert call(*pki.client.client_args(pki.ca), srv.addr, ECHO + "Unary", "ok")[:2] == \
        (0, "ok\n")


BAD_CERT = "tls: sslv3 alert bad certificate"


@pytest.mark.parametrize("cert_name, args, reason, alert", [
    ("expired", [], "tls: certificate verify failed: certificate has expired",
     "tls: sslv3 alert certificate expired"),
    ("other_server", [], "tls: certificate verify failed: unable to get local issuer certificate",
     "tls: tlsv1 alert unknown ca"),
    ("wrong_host", [], "tls: certificate verify failed: IP address mismatch", BAD_CERT),
    ("wrong_host", ["--tls-server-name", "localhost"],
     "tls: certificate verify failed: hostname mismatch", BAD_CERT),
    ("server", ["--tls-server-name", "example.com"],
     "tls: certificate verify failed: hostname mismatch", BAD_CERT),
])
def test_c_client_refuses_bad_server_certificates(testd, pki, cert_name, args, reason, alert):
    srv = tls_testd(testd, getattr(pki, cert_name))
    code, out, err = call("--tls-ca", pki.ca.cert, *args, srv.addr, ECHO + "Unary", "x")
    assert (code, out) == (3, "")
    assert "drpc-call: connect %s: %s\n" % (srv.addr, reason) in err, err
    wait_reason(srv, alert)  # the client's alert tells the server why
    # --tls-no-verify encrypts without checking
    assert call("--tls-no-verify", srv.addr, ECHO + "Unary", "y")[:2] == (0, "y\n")


def test_tls11_client_refused_by_min_12(testd, pki):
    srv = tls_testd(testd, pki.server, "--tls-min", "1.2")
    code, _, err = call("--tls-ca", pki.ca.cert, "--tls-max", "1.1", srv.addr, ECHO + "Unary", "x")
    assert code == 3 and "tls: tlsv1 alert protocol version" in err, err
    wait_reason(srv, "tls: unsupported protocol")
    ctx = drpc.tls_client_context(pki.ca.cert, max_version="1.1")
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        drpc.Conn(srv.addr, tls=ctx, timeout=5)
    code, out, _ = call("--tls-ca", pki.ca.cert, "--tls-min", "1.2", srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "TLSv1.3 0 -\n")


def test_plaintext_and_tls_mismatch_refused(testd, pki):
    srv = tls_testd(testd, pki.server)
    code, _, err = call(srv.addr, ECHO + "Unary", "x")
    assert code == 3 and "lost" in err, err
    wait_reason(srv, "tls: wrong version number")
    with drpc.Conn(srv.addr, timeout=5) as c:  # garbage: not a ClientHello
        c.send_raw(b"\x00" * 64)
        assert not c.is_open(wait=2)
    plain = testd()
    code, _, err = call("--tls-ca", pki.ca.cert, plain.addr, ECHO + "Unary", "x")
    assert code == 3 and "drpc-call: connect %s: tls: " % plain.addr in err, err
    assert call("--tls-ca", pki.ca.cert, srv.addr, ECHO + "Unary", "ok")[:2] == (0, "ok\n")
    assert call(plain.addr, ECHO + "Unary", "ok")[:2] == (0, "ok\n")


def test_header_inside_tls(testd, pki):
    srv = tls_testd(testd, pki.server, header=True)
    assert call("--header", "--tls-ca", pki.ca.cert, srv.addr, ECHO + "Unary", "h")[:2] == \
        (0, "h\n")
    with srv.conn(tls=drpc.tls_client_context(pki.ca.cert), timeout=5) as c:
        assert c.unary(ECHO + "Unary", b"py") == b"py"


# --- resumption --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption_seen_by_the_server(testd, pki, short_tmp, version):
    srv = tls_testd(testd, pki.server, "--tls-client-ca", pki.ca.cert)
    session = os.path.join(short_tmp, "session-" + version)
    args = pki.client.client_args(pki.ca) + ["--tls-max", version, "--tls-session", session]
    v = "TLSv" + version
    assert call(*args, srv.addr, ECHO + "TLSInfo")[:2] == (0, "%s 0 agent-1\n" % v)
    assert os.path.getsize(session) > 0
    code, out, err = call(*args, srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "%s 1 agent-1\n" % v), err
    assert "drpc-call: tls %s 1 server" % v in err
    code, out, _ = call(*args, "--tls-no-resume", srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "%s 0 agent-1\n" % v)


def test_bench_reuses_sessions(testd, pki):
    srv = tls_testd(testd, pki.server)

    def bench(*extra):
        p = subprocess.run([binary("drpc-bench"), "--addr", srv.addr, "--tls-ca", pki.ca.cert,
                            "--reconnect", "--duration", "0.5"] + list(extra),
                           capture_output=True, text=True, timeout=30 * SCALE)
        assert p.returncode == 0, p.stderr
        return dict(kv.split("=") for kv in p.stdout.split())

    r = bench()
    hs, resumed = int(r["tls_handshakes"]), int(r["tls_resumed"])
    assert int(r["errors"]) == 0 and int(r["calls"]) >= 5
    assert hs >= int(r["calls"]) and resumed >= hs - 2, r  # all but the first dial(s)
    r = bench("--tls-no-resume")
    assert int(r["tls_resumed"]) == 0 and int(r["tls_handshakes"]) >= 5, r
    r = bench("--conns", "4", "--tls-max", "1.2")  # session-id cache and tickets in TLS 1.2
    assert int(r["errors"]) == 0 and int(r["tls_resumed"]) > 0, r


def test_python_client_resumes_against_c_server(testd, pki):
    srv = tls_testd(testd, pki.server)
    ctx = drpc.tls_client_context(pki.ca.cert)
    with drpc.Conn(srv.addr, tls=ctx, timeout=5) as c:
        assert c.unary(ECHO + "TLSInfo") == b"TLSv1.3 0 -"
        session = c.sock.session
    with drpc.Conn(srv.addr, tls=ctx, timeout=5, session=session) as c:
        assert c.unary(ECHO + "TLSInfo") == b"TLSv1.3 1 -"
        assert c.sock.session_reused


# --- Python <-> C --------------------------------------------------------------------


def test_python_client_c_server(testd, pki):
    srv = tls_testd(testd, pki.server, "--tls-client-ca", pki.ca.cert)
    ctx = drpc.tls_client_context(pki.ca.cert, pki.client.cert, pki.client.key)
    with drpc.Conn(srv.addr, tls=ctx, timeout=5) as c:
        assert c.unary(ECHO + "Unary", b"x" * 300000) == b"x" * 300000
        assert c.bidi(ECHO + "Bidi", [b"a", b"b"]) == [b"a", b"b"]
        assert c.unary(ECHO + "TLSInfo") == b"TLSv1.3 0 agent-1"
        assert drpc.cert_identity(c.sock.getpeercert()) == "server"
    # no client certificate: refused after the handshake (TLS 1.3)
    bare = drpc.tls_client_context(pki.ca.cert)
    with drpc.Conn(srv.addr, tls=bare, timeout=5) as c:
        with pytest.raises(drpc.ConnectionLost, match="CERTIFICATE_REQUIRED"):
            c.unary(ECHO + "Unary", b"x")
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        drpc.Conn(srv.addr, tls=ctx, timeout=5, server_name="127.0.0.2")


def test_c_client_python_server(pyserver, pki):
    srv = pyserver(tls=drpc.tls_server_context(pki.server.cert, pki.server.key, pki.ca.cert))
    args = pki.client.client_args(pki.ca)
    assert call(*args, srv.addr, ECHO + "Unary", "hi")[:2] == (0, "hi\n")
    assert call(*args, srv.addr, ECHO + "ClientStream", "a", "b")[:2] == (0, "ab\n")
    code, out, err = call(*args, "--hex", srv.addr, ECHO + "ServerStream", "3 70000")
    assert code == 0 and len(out.splitlines()) == 3, err
    code, out, err = call(*args, srv.addr, ECHO + "TLSInfo")
    assert (code, out) == (0, "TLSv1.3 0 agent-1\n"), err
    code, _, err = call("--tls-ca", pki.ca.cert, srv.addr, ECHO + "Unary", "x")
    assert code == 3 and refused_after_handshake(err, "tls: tlsv13 alert certificate required"), err
    code, _, err = call(*pki.other_client.client_args(pki.ca), srv.addr, ECHO + "Unary", "x")
    assert code == 3 and refused_after_handshake(err, "tls: tlsv1 alert unknown ca"), err
    deadline = time.monotonic() + 5
    while len(srv.tls_errors) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in e for e in srv.tls_errors), srv.tls_errors
    assert any("CERTIFICATE_VERIFY_FAILED" in e for e in srv.tls_errors), srv.tls_errors


def test_python_client_python_server_refusals(pyserver, pki):
    srv = pyserver(tls=drpc.tls_server_context(pki.expired.cert, pki.expired.key,
                                               min_version="1.2"))
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        drpc.Conn(srv.addr, tls=drpc.tls_client_context(pki.ca.cert), timeout=5)
    with drpc.Conn(srv.addr, tls=drpc.tls_client_context(verify=False), timeout=5) as c:
        assert c.unary(ECHO + "TLSInfo") == b"TLSv1.3 0 -"


# --- agents: the TLS client is the RPC server --------------------------------------


class TlsAcceptor:
    """A TLS listener that plays the sidecar's reverse-pool side: accepts
    agents' connections (handshake as the TLS server) and hands each out
    as a drpc.Conn, whose client side makes calls to the agent."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]

    def accept(self, timeout=10):
        self.sock.settimeout(timeout * SCALE)
        s, _ = self.sock.accept()
        s.settimeout(timeout * SCALE)
        return drpc.Conn(sock=self.ctx.wrap_socket(s, server_side=True), timeout=timeout)

    def close(self):
        self.sock.close()


@pytest.fixture
def acceptor(procs, pki):
    def make(client_ca=True):
        ctx = drpc.tls_server_context(pki.server.cert, pki.server.key,
                                      pki.ca.cert if client_ca else None)
        return procs.peer(TlsAcceptor(ctx))

    return make


def test_c_agent_over_tls(agent, acceptor, pki):
    acc = acceptor()
    agent(acc.addr, conns=1, ident="edge-1", header=True,
          args=pki.client.client_args(pki.ca))
    with acc.accept() as c:
        c.decoder = drpc.FrameDecoder(expect_header=True)  # it leaves with the first reply
        assert drpc.cert_identity(c.sock.getpeercert()) == "agent-1"
        assert c.unary(ECHO + "Identify") == b"edge-1"
        assert c.unary(ECHO + "TLSInfo") == b"TLSv1.3 0 server"


def test_c_agent_refuses_wrong_server_and_is_refused_without_cert(agent, acceptor, pki,
                                                                   short_tmp):
    acc = acceptor()
    a = agent(acc.addr, conns=1, redial=False, args=["--tls-ca", pki.other_ca.cert])
    with pytest.raises(ssl.SSLError):
        acc.accept()
    # the acceptor's OpenSSL sends the root along (it is in its trust store)
    want = "dial: tls: certificate verify failed: self-signed certificate in certificate chain"
    deadline = time.monotonic() + 5 * SCALE
    while want not in a.stderr() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert want in a.stderr()
    b = agent(acc.addr, conns=1, redial=False, args=["--tls-ca", pki.ca.cert])
    with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
        acc.accept()
    assert b.running()


def test_python_agent_over_tls(pyagent, acceptor, pki):
    acc = acceptor()
    got = {}

    def serve():
        got["conn"] = acc.accept()

    t = threading.Thread(target=serve)
    t.start()
    ctx = drpc.tls_client_context(pki.ca.cert, pki.client.cert, pki.client.key)
    pyagent(acc.addr, n=1, ident="py-edge", tls=ctx)
    t.join(10 * SCALE)
    with got["conn"] as c:
        assert c.unary(ECHO + "Identify") == b"py-edge"
        assert c.unary(ECHO + "TLSInfo") == b"TLSv1.3 0 server"
        assert drpc.cert_identity(c.sock.getpeercert()) == "agent-1"


# --- GnuTLS, a TLS stack that is not OpenSSL ------------------------------------------


needs_gnutls = pytest.mark.skipif(not shutil.which("gnutls-cli"), reason="gnutls-bin missing")


def _transcript(name):
    chunks = []
    with open(os.path.join(TRANSCRIPTS, name + ".txt")) as f:
        for line in f:
            d, _, hexdata = line.strip().partition(" ")
            if d in (">", "<"):
                chunks.append((d, bytes.fromhex(hexdata)))
    return (b"".join(b for d, b in chunks if d == ">"),
            b"".join(b for d, b in chunks if d == "<"))


@needs_gnutls
@pytest.mark.parametrize("name", ["unary-small", "bidi-3", "server-stream-5x16",
                                  "header-unary-small", "unary-metadata"])
def test_gnutls_cli_replays_go_capture(testd, pki, short_tmp, transcripts, name):
    """gnutls-cli as a raw TLS client carries the Go client's captured bytes
    to drpc-testd's TLS listener; the reply is the Go server's, byte for byte."""
    srv = tls_testd(testd, pki.server, header=name.startswith("header-"))
    client, want = _transcript(name)
    port = srv.addr.rsplit(":", 1)[1]
    p = subprocess.Popen(["gnutls-cli", "--x509cafile", pki.ca.cert, "-p", port,
                          "--logfile", os.path.join(short_tmp, "gnutls.log"), "127.0.0.1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(client)
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + 10 * SCALE
        while len(got) < len(want) and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 0.2)[0]:
                chunk = os.read(p.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                got += chunk
        assert got == want, "got %s\nwant %s" % (got.hex()[:200], want.hex()[:200])
    finally:
        p.stdin.close()
        p.wait(10 * SCALE)
    with open(os.path.join(short_tmp, "gnutls.log")) as f:
        assert "Handshake was completed" in f.read()


@needs_gnutls
def test_c_client_against_gnutls_serv(procs, pki, free_port):
    """drpc-call's TLS client (OpenSSL) completes a verified handshake, with
    a client certificate, against gnutls-serv; the echo is not DRPC, so only
    the handshake is judged."""
    port = free_port()
    procs.start("gnutls-serv", [shutil.which("gnutls-serv"), "--echo", "-p", str(port),
                                "--x509certfile", pki.server.cert,
                                "--x509keyfile", pki.server.key,
                                "--x509cafile", pki.ca.cert, "--require-client-cert"],
                expect_exit=None)
    wait_connectable("127.0.0.1:%d" % port)
    code, _, err = call(*pki.client.client_args(pki.ca), "--timeout", "1000",
                        "127.0.0.1:%d" % port, ECHO + "Unary", "x")
    assert "drpc-call: tls TLSv1.3 0 server\n" in err, err
    code, _, err = call("--tls-ca", pki.other_ca.cert, "127.0.0.1:%d" % port,
                        ECHO + "Unary", "x")
    assert code == 3 and "tls: certificate verify failed: unable to get local issuer " \
        "certificate" in err, err


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_slow_tls_reader_holds_back_the_server(testd, pki):
    """A 64 MiB server stream to a client that stops reading: drpc-testd's
    TLS path keeps to the write back-pressure (its memory stays bounded),
    and every byte arrives once the client reads again."""
    srv = tls_testd(testd, pki.server)
    base = _rss_kib(srv.pid)
    with drpc.Conn(srv.addr, tls=drpc.tls_client_context(pki.ca.cert), timeout=10) as c:
        st = c.new_stream(ECHO + "ServerStream")
        st.send(b"64 1048576", flush=False)
        st.close_send()
        time.sleep(1.0 * SCALE)  # the server fills the socket buffers, then waits
        grown = _rss_kib(srv.pid) - base
        assert grown < (48 if INSTRUMENTED else 24) * 1024, "drpc-testd grew %d KiB" % grown
        msgs = st.recv_all(timeout=60)
        assert len(msgs) == 64 and all(len(m) == 1 << 20 for m in msgs)
        assert msgs[63][:3] == bytes((63 + i) % 251 for i in range(3))
