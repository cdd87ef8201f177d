"""TLS through the sidecar, on every socket kind: dialled pools (the
sidecar is the TLS client), listeners and reverse pools' agent ports (the
sidecar is the TLS server), with and without client certificates, against
the C peers (drpc-testd, drpc-call, agent mode), the Python peers (ssl
module) and GnuTLS (gnutls-cli). Every refusal is checked with its exact
reason; where a TLS 1.3 alert can lose its race against the reset, on the
sidecar's counters and log instead.
"""

import json
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
from .fault_checks import open_testd_conns
from .procs import INSTRUMENTED, SCALE, TRANSCRIPTS, basic_config, binary, free_addr

ECHO = "/test.Echo/"


def call(*args, timeout=20):
    """drpc-call ARGS -> (exit status, stdout, stderr)."""
    p = subprocess.run([binary("drpc-call")] + list(args), capture_output=True,
                       timeout=timeout * SCALE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def tls_testd(testd, cert, *extra):
    return testd("127.0.0.1:0", args=cert.server_args() + list(extra))


def tls_testd_at(testd, cert, addr):
    return testd(addr, args=cert.server_args())


_pki_holder = {}


@pytest.fixture(autouse=True)
def _keep_pki(pki):
    _pki_holder["pki"] = pki


def server_tls(cert, client_ca=None, **kw):
    t = {"cert_file": cert.cert, "key_file": cert.key}
    if client_ca is not None:
        t["client_ca_file"] = client_ca.cert
    t.update(kw)
    return t


def metric_lines(sc, name):
    """The sample lines of /metrics whose name starts with name."""
    host, port = sc.admin.rsplit(":", 1)
    import http.client
    c = http.client.HTTPConnection(host, int(port), timeout=5 * SCALE)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    return [l for l in text.splitlines() if l.startswith(name)]


def metric(sc, family_name, **labels):
    """The sum of the samples of family_name with these labels (0 when none)."""
    total = 0.0
    for l in metric_lines(sc, family_name):
        head, value = l.rsplit(" ", 1)
        if head.split("{")[0] != family_name:
            continue
        if all(('%s="%s"' % kv) in head for kv in labels.items()):
            total += float(value)
    return total


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def tls_pool_config(upstream, pki, tls=None, **pool):
    cfg = basic_config(upstream, **pool)
    cfg["pools"][0]["tls"] = tls if tls is not None else {"ca_file": pki.ca.cert}
    return cfg


# --- dialled pools: the sidecar is the TLS client -----------------------------


def test_tls_upstream_plain_in(testd, sidecar, pki):
    up = tls_testd(testd, pki.server)
    sc = sidecar(tls_pool_config(up.addr, pki))
    with sc.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"hello") == b"hello"
        info = conn.unary(ECHO + "TLSInfo", b"").decode()
        assert info.startswith("TLSv1.3 ") and info.endswith(" -"), info
        big = os.urandom(1 << 20)
        assert conn.unary(ECHO + "Unary", big) == big


def test_tls_upstream_mtls(testd, sidecar, pki):
    up = tls_testd(testd, pki.server, "--tls-client-ca", pki.ca.cert)
    sc = sidecar(tls_pool_config(up.addr, pki, {
        "ca_file": pki.ca.cert, "cert_file": pki.client.cert, "key_file": pki.client.key}))
    with sc.conn() as conn:
        assert conn.unary(ECHO + "TLSInfo", b"").decode().endswith(" agent-1")


def test_tls_upstream_python_server_tls12(pyserver, sidecar, pki):
    ctx = drpc.tls_server_context(pki.server.cert, pki.server.key, max_version="1.2")
    up = pyserver(tls=ctx)
    sc = sidecar(tls_pool_config(up.addr, pki))
    with sc.conn() as conn:
        assert conn.unary(ECHO + "TLSInfo", b"").decode().startswith("TLSv1.2 0")


def test_tls_upstream_server_name_and_verify_off(testd, sidecar, pki):
    up = tls_testd(testd, pki.wrong_host)
    # the right name: verified against the DNS SAN
    sc = sidecar(tls_pool_config(up.addr, pki, {"ca_file": pki.ca.cert,
                                                "server_name": "wrong.example"}))
    with sc.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"x") == b"x"
    sc.stop()
    sc = sidecar(tls_pool_config(up.addr, pki, {"verify": False}))
    with sc.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"y") == b"y"
    assert "verify" in sc.stderr()


@pytest.mark.parametrize("case", ["wrong_ca", "expired", "wrong_host"])
def test_tls_upstream_refusals(testd, sidecar, pki, case):
    cert, reason = {
        "wrong_ca": (pki.other_server,
                     "tls: certificate verify failed: unable to get local issuer certificate"),
        "expired": (pki.expired, "tls: certificate verify failed: certificate has expired"),
        "wrong_host": (pki.wrong_host,
                       "tls: certificate verify failed: IP address mismatch"),
    }[case]
    up = tls_testd(testd, cert)
    sc = sidecar(tls_pool_config(up.addr, pki, dial_timeout_ms=2000))
    with sc.conn() as conn:
        with pytest.raises(drpc.DrpcError) as e:
            conn.unary(ECHO + "Unary", b"x")
    assert e.value.code == 1005, e.value
    assert reason in e.value.message, e.value.message
    st = sc.admin_get("/pools")
    ep = st["pools"][0]["endpoints"][0]
    assert ep["dial_failures"] >= 1, ep
    reason_label = reason.split(": ")[1]
    assert metric(sc, "drpc_sidecar_tls_handshakes_total", kind="pool", name="default",
                  result="failed", reason=reason_label) >= 1


def test_tls_upstream_missing_client_cert(testd, sidecar, pki):
    """TLS 1.3: the server refuses after the client's handshake is over; the
    call fails with the server's alert (or the reset that overtook it), and
    the upstream logs why."""
    up = tls_testd(testd, pki.server, "--tls-client-ca", pki.ca.cert)
    sc = sidecar(tls_pool_config(up.addr, pki))
    with sc.conn() as conn:
        with pytest.raises(drpc.DrpcError) as e:
            conn.unary(ECHO + "Unary", b"x")
    # the first read after the client's handshake brings the alert (1006,
    # as for any connection lost mid-call), or a reset that overtook it
    assert e.value.code == 1006, e.value
    assert ("tls: tlsv13 alert certificate required" in e.value.message or
            "connection reset" in e.value.message), e.value.message
    wait_for(lambda: "peer did not return a certificate" in up.stderr(), what="upstream log")


def test_tls_upstream_min_version_13_refuses_tls12_server(pyserver, sidecar, pki):
    ctx = drpc.tls_server_context(pki.server.cert, pki.server.key, max_version="1.2")
    up = pyserver(tls=ctx)
    sc = sidecar(tls_pool_config(up.addr, pki, {"ca_file": pki.ca.cert,
                                                "min_version": "1.3"}))
    with sc.conn() as conn:
        with pytest.raises(drpc.DrpcError) as e:
            conn.unary(ECHO + "Unary", b"x")
    assert e.value.code == 1005
    assert "tls: tlsv1 alert protocol version" in e.value.message, e.value.message


def test_tls_upstream_resumption(testd, sidecar, pki):
    """Each re-dial resumes the endpoint's session: the upstream says so."""
    up = tls_testd(testd, pki.server)
    cfg = tls_pool_config(up.addr, pki, max_conns=1, max_lifetime_ms=0)
    sc = sidecar(cfg)
    seen = []
    for _ in range(3):
        with sc.conn() as conn:
            seen.append(conn.unary(ECHO + "TLSInfo", b"").decode())
        # close the pooled upstream connection so the next call re-dials
        sc.admin_post("/pools/default/drain")
        wait_for(lambda: sc.admin_get("/pools")["pools"][0]["conns"]["idle"] == 0, what="drain")
        sc.admin_post("/pools/default/resume")
    assert seen[0].split()[1] == "0", seen
    assert all(s.split()[1] == "1" for s in seen[1:]), seen
    assert metric(sc, "drpc_sidecar_tls_resumed_total", kind="pool", name="default") >= 2


# --- listeners: the sidecar is the TLS server ---------------------------------


def tls_listener_config(upstream, pki, client_ca=None, header=False, **kw):
    cfg = basic_config(upstream)
    cfg["listeners"][0]["tls"] = server_tls(pki.server, client_ca, **kw)
    if header:
        cfg["listeners"][0]["header"] = True
    return cfg


def test_tls_listener(testd, sidecar, pki):
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki))
    rc, out, err = call("--tls-ca", pki.ca.cert, sc.addr, ECHO + "Unary", "hi")
    assert rc == 0 and out.strip() == "hi", (rc, out, err)
    ctx = drpc.tls_client_context(pki.ca.cert)
    with drpc.Conn(sc.addr, tls=ctx) as conn:
        assert conn.unary(ECHO + "Unary", b"py") == b"py"
        big = os.urandom(3 << 20)
        assert conn.unary(ECHO + "Unary", big) == big
    clients = sc.admin_get("/clients")
    assert clients is not None


def test_tls_listener_with_header(testd, sidecar, pki):
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki, header=True))
    ctx = drpc.tls_client_context(pki.ca.cert)
    with drpc.Conn(sc.addr, tls=ctx, header=True) as conn:
        assert conn.unary(ECHO + "Unary", b"h") == b"h"
    with drpc.Conn(sc.addr, tls=ctx) as conn:
        assert conn.unary(ECHO + "Unary", b"n") == b"n"


def test_tls_listener_mtls(testd, sidecar, pki):
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki, client_ca=pki.ca))
    rc, out, err = call(*pki.client.client_args(pki.ca), sc.addr, ECHO + "Unary", "m")
    assert rc == 0 and out.strip() == "m", (rc, out, err)
    # /clients shows the version and the client certificate's subject
    with drpc.Conn(sc.addr, tls=drpc.tls_client_context(pki.ca.cert, pki.client.cert,
                                                         pki.client.key)) as conn:
        assert conn.unary(ECHO + "Unary", b"c") == b"c"
        cl = [c for c in sc.admin_get("/clients")["clients"] if c.get("tls")]
        assert cl and cl[0]["tls"]["version"] == "TLSv1.3", cl
        assert cl[0]["tls"]["subject"] == "CN=agent-1", cl


def refused_by_listener(sc, reason, before):
    wait_for(lambda: metric(sc, "drpc_sidecar_tls_handshakes_total", kind="listener",
                            name="local", result="failed", reason=reason) > before,
             what="failure counted as " + reason)


@pytest.mark.parametrize("case", ["missing_cert", "wrong_ca_cert", "tls11"])
def test_tls_listener_refusals(testd, sidecar, pki, case):
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki, client_ca=pki.ca))
    if case == "missing_cert":
        args, reason = ["--tls-ca", pki.ca.cert], "peer did not return a certificate"
        client_alert = "alert certificate required"
    elif case == "wrong_ca_cert":
        args, reason = pki.other_client.client_args(pki.ca), "certificate verify failed"
        client_alert = "alert unknown ca"
    else:
        args = pki.client.client_args(pki.ca) + ["--tls-max", "1.1"]
        reason, client_alert = "unsupported protocol", "tlsv1 alert protocol version"
    rc, out, err = call(*args, sc.addr, ECHO + "Unary", "x")
    assert rc != 0, (rc, out, err)
    if case == "tls11":
        assert "tls: tlsv1 alert protocol version" in err, err
    else:
        # TLS 1.3: the refusal comes after the client's handshake
        assert client_alert in err or "drpc-call: lost: " in err, err
    refused_by_listener(sc, reason, 0)
    assert "TLS handshake with 127.0.0.1" in sc.stderr() and reason in sc.stderr()
    # the sidecar is unaffected
    rc, out, err = call(*pki.client.client_args(pki.ca), sc.addr, ECHO + "Unary", "ok")
    assert rc == 0 and out.strip() == "ok", err


def test_tls_listener_failures_logged_once_per_peer_per_minute(testd, sidecar, pki):
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki, client_ca=pki.ca))
    for _ in range(4):
        call("--tls-ca", pki.ca.cert, sc.addr, ECHO + "Unary", "x")
    refused_by_listener(sc, "peer did not return a certificate", 3)
    assert sc.stderr().count("TLS handshake with 127.0.0.1") == 1, sc.stderr()


def test_tls_listener_plaintext_and_garbage_refused(testd, sidecar, pki):
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki))
    # a plaintext DRPC client: the sidecar answers with an alert and closes
    with drpc.Conn(sc.addr) as conn:
        with pytest.raises(drpc.ConnectionLost):
            conn.unary(ECHO + "Unary", b"x")
    host, port = sc.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(200))
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data[:1] in (b"", b"\x15"), data  # an alert record, or nothing
    refused_by_listener(sc, "http request", 0)
    # a TLS client against a plaintext listener: a clear refusal there
    up2 = testd()
    plain = sidecar(basic_config(up2.addr))
    rc, out, err = call("--tls-ca", pki.ca.cert, plain.addr, ECHO + "Unary", "x")
    assert rc == 3 and "tls: " in err, err
    assert plain.running
    with plain.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"still") == b"still"
    rc, out, err = call("--tls-ca", pki.ca.cert, sc.addr, ECHO + "Unary", "fine")
    assert rc == 0 and out.strip() == "fine", err


def test_tls_listener_slow_reader_back_pressure(testd, sidecar, pki):
    """A TLS client that does not read a 16 MiB server stream: the sidecar
    stops reading the upstream (call_buffer_bytes), its memory stays
    bounded, and the stream arrives whole once the client reads."""
    up = testd()
    cfg = tls_listener_config(up.addr, pki)
    cfg["call_buffer_bytes"] = 256 * 1024
    sc = sidecar(cfg)
    ctx = drpc.tls_client_context(pki.ca.cert)
    n, size = 256, 64 * 1024
    base = sc.admin_get("/stats")["process"]["resident_memory_bytes"]
    with drpc.Conn(sc.addr, tls=ctx, timeout=30 * SCALE) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        st = conn.start_unary(ECHO + "ServerStream", b"%d %d" % (n, size))
        time.sleep(1.5 * SCALE)  # the upstream could send it all; nobody reads
        cl = sc.admin_get("/clients")["clients"][0]
        assert cl["bytes_out"] < n * size // 2, cl
        rss = sc.admin_get("/stats")["process"]["resident_memory_bytes"]
        if not INSTRUMENTED:  # valgrind's and ASan's own memory would swamp it
            assert rss - base < 12 << 20, (base, rss)
        got = 0
        while True:
            m = st.recv()
            if m is None:
                break
            got += len(m)
        assert got == n * size


# --- reverse pools: TLS agents ------------------------------------------------


def reverse_config(pki, client_ca=None, identify=None, header=False, listen=None):
    accept = free_addr()
    pool = {"name": "agents", "accept": accept, "max_conns": 8,
            "tls": server_tls(pki.server, client_ca)}
    if identify:
        pool["identify"] = {"rpc": identify}
    if header:
        pool["header"] = True
    return {
        "listeners": [{"name": "local", "address": listen or free_addr()}],
        "admin": {"address": free_addr()},
        "pools": [pool],
        "routes": [{"pool": "agents"}],
    }, accept


def agent_ids(sc):
    pools = sc.admin_get("/pools")["pools"]
    return sorted(c.get("agent") for c in pools[0].get("connections", []) if c.get("agent"))


def test_tls_agents_without_client_certs(agent, sidecar, pki):
    cfg, accept = reverse_config(pki)
    sc = sidecar(cfg)
    agent(accept, args=["--tls-ca", pki.ca.cert])
    wait_for(lambda: sc.admin_get("/pools")["pools"][0]["conns"]["idle"] >= 1, what="agent")
    with sc.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"a") == b"a"
        assert conn.unary(ECHO + "TLSInfo", b"").decode().startswith("TLSv1.3 ")


def test_tls_agents_identified_by_certificate(agent, pyagent, sidecar, pki):
    cfg, accept = reverse_config(pki, client_ca=pki.ca)
    cfg["routes"] = [{"pool": "agents", "agent_from_metadata": "agent"}]
    sc = sidecar(cfg)
    agent(accept, args=pki.client.client_args(pki.ca))
    pyagent(accept, tls=drpc.tls_client_context(pki.ca.cert, pki.client_dns_only.cert,
                                                pki.client_dns_only.key))
    wait_for(lambda: sc.admin_get("/pools")["pools"][0]["conns"]["idle"] >= 2, what="agents")
    log = sc.stderr()
    assert "agent agent-1 connected" in log and "agent agent-2 connected" in log, log
    for ident in ("agent-1", "agent-2"):
        with sc.conn() as conn:
            reply = conn.unary(ECHO + "TLSInfo", b"", metadata={"agent": ident}).decode()
            assert reply.startswith("TLSv1.3"), reply


def test_tls_agents_refused(agent, sidecar, pki):
    cfg, accept = reverse_config(pki, client_ca=pki.ca)
    sc = sidecar(cfg)
    agent(accept, args=pki.other_client.client_args(pki.ca), redial=False)
    agent(accept, args=["--tls-ca", pki.ca.cert], redial=False)
    wait_for(lambda: metric(sc, "drpc_sidecar_tls_handshakes_total", kind="pool",
                            name="agents", result="failed") >= 2, what="refusals")
    assert metric(sc, "drpc_sidecar_tls_handshakes_total", kind="pool", name="agents",
                  result="failed", reason="certificate verify failed") >= 1
    assert metric(sc, "drpc_sidecar_tls_handshakes_total", kind="pool", name="agents",
                  result="failed", reason="peer did not return a certificate") >= 1
    assert sc.admin_get("/pools")["pools"][0]["conns"]["idle"] == 0


# --- reload, load, interop ----------------------------------------------------


def test_tls_rotation_by_reload_while_calls_run(testd, sidecar, pki):
    up = testd()
    cfg = tls_listener_config(up.addr, pki)
    sc = sidecar(cfg)
    ctx = drpc.tls_client_context(pki.ca.cert)
    errors = []
    stop = threading.Event()

    def run():
        try:
            with drpc.Conn(sc.addr, tls=ctx) as conn:
                i = 0
                while not stop.is_set():
                    p = b"%d" % i
                    assert conn.unary(ECHO + "Unary", p) == p
                    i += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3 * SCALE)

    def presented():
        host, port = sc.addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=host) as ts:
                return ts.getpeercert(binary_form=True)

    first = presented()
    cfg["listeners"][0]["tls"] = server_tls(pki.server2)
    sc.write_config(cfg)
    st, body = sc.admin_request("POST", "/reload")
    assert st == 200, body
    second = presented()
    time.sleep(0.3 * SCALE)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    with open(pki.server.cert) as f:
        assert ssl.PEM_cert_to_DER_cert(f.read()) == first
    with open(pki.server2.cert) as f:
        assert ssl.PEM_cert_to_DER_cert(f.read()) == second


@pytest.mark.timeout_s(60)
def test_tls_upstream_kill_under_load(testd, sidecar, fault_check):
    """The fault suite's upstream kill, with a TLS upstream: calls fail only
    with documented causes, the endpoint is ejected, and once the upstream
    is back, new TLS connections serve again."""
    pki = _pki_holder["pki"]
    addr = free_addr()
    ups = [tls_testd_at(testd, pki.server, addr)]
    cfg = basic_config(addr, max_conns=8, eject_after_failures=2, eject_ms=500,
                       backoff_base_ms=20, backoff_max_ms=100, wait_timeout_ms=3000)
    cfg["pools"][0]["tls"] = {"ca_file": pki.ca.cert}
    sc = sidecar(cfg)
    check = fault_check(sc, {"default": lambda: open_testd_conns(ups[-1])},
                        allowed=(1004, 1005, 1006), deadline_s=3.0)
    time.sleep(1.0)
    ups[0].kill()
    ejected = False
    deadline = time.time() + 1.0
    while time.time() < deadline:
        ep = sc.admin_get("/pools/default")["endpoints"][0]
        ejected |= ep["health"] == "ejected"
        time.sleep(0.05)
    ups.append(tls_testd_at(testd, pki.server, addr))
    before = check.load.calls
    time.sleep(2.0)
    result = check.finish()
    assert result["errors"].get(1006, 0) >= 1, result
    assert ejected
    assert result["calls"] > before
    assert metric(sc, "drpc_sidecar_tls_handshakes_total", kind="pool", name="default",
                  result="ok") >= 2


def _gnutls_packets(raw):
    asm = drpc.PacketAssembler()
    return [(p.kind, bytes(p.data)) for p in
            (asm.add(f) for f in drpc.FrameDecoder().feed(raw)) if p]


def _transcript(name):
    """[(direction, bytes)] of a Go capture, in order."""
    chunks = []
    with open(os.path.join(TRANSCRIPTS, name + ".txt")) as f:
        for line in f:
            d, _, hexdata = line.strip().partition(" ")
            if d in (">", "<"):
                chunks.append((d, bytes.fromhex(hexdata)))
    return chunks


@pytest.mark.skipif(not shutil.which("gnutls-cli"), reason="gnutls-bin missing")
@pytest.mark.parametrize("name", ["unary-small", "bidi-3", "header-unary-small",
                                  "unary-metadata"])
def test_tls_gnutls_cli_through_tls_listener(testd, sidecar, pki, short_tmp, name):
    """GnuTLS (not OpenSSL) as the client of a TLS listener with client
    certificates, carrying a stock Go client's captured bytes; the replies
    are the Go server's packets."""
    up = testd()
    sc = sidecar(tls_listener_config(up.addr, pki, client_ca=pki.ca,
                                     header=name.startswith("header-")))
    chunks = _transcript(name)
    want = _gnutls_packets(b"".join(b for d, b in chunks if d == "<"))
    port = sc.addr.rsplit(":", 1)[1]
    log = os.path.join(short_tmp, "gnutls.log")
    p = subprocess.Popen(["gnutls-cli", "--x509cafile", pki.ca.cert, "--x509certfile",
                          pki.client.cert, "--x509keyfile", pki.client.key, "-p", port,
                          "--logfile", log, "127.0.0.1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = b""

    def read_until(n_packets):
        nonlocal got
        deadline = time.monotonic() + 10 * SCALE
        while len(_gnutls_packets(got)) < n_packets and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 0.2)[0]:
                chunk = os.read(p.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                got += chunk

    try:
        # The client's bytes go as the Go client wrote them: what it sent
        # after a reply (its Close) waits for that reply, as through a proxy
        # a Close that overtakes the reply would end the call first.
        server_so_far = b""
        for d, data in chunks:
            if d == ">":
                read_until(len(_gnutls_packets(server_so_far)))
                p.stdin.write(data)
                p.stdin.flush()
            else:
                server_so_far += data
        read_until(len(want))
        assert _gnutls_packets(got) == want, (got.hex()[:300], want)
    finally:
        p.stdin.close()
        p.wait(10 * SCALE)
    with open(log) as f:
        assert "Handshake was completed" in f.read()
    cl = sc.admin_get("/stats")["counters"]
    assert cl["clients_accepted"] >= 1


def test_tls_expiry_metric_for_every_certificate(testd, sidecar, pki):
    up = tls_testd(testd, pki.server)
    cfg = tls_pool_config(up.addr, pki)
    cfg["listeners"][0]["tls"] = server_tls(pki.server, pki.ca)
    sc = sidecar(cfg)
    lines = metric_lines(sc, "drpc_sidecar_tls_certificate_expiry_timestamp_seconds")
    body = "\n".join(lines)
    assert 'kind="listener"' in body and 'role="cert"' in body and 'role="client_ca"' in body
    assert 'kind="pool"' in body and 'role="ca"' in body
    for l in lines:
        assert float(l.rsplit(" ", 1)[1]) > time.time()
    certs = sc.admin_get("/stats")["tls_certificates"]
    assert len(certs) == len(lines)
    assert all(c["expires_in_days"] > 20 for c in certs), certs


@pytest.mark.timeout_s(90)
def test_tls_idle_client_memory(testd, sidecar, pki):
    """RSS per idle TLS client connection (each made a call, then idles):
    OpenSSL's record buffers are released and the BIOs emptied, so an idle
    TLS client costs at most 16 KiB more than nothing."""
    from .fault_checks import rss_kib
    up = testd()
    cfg = tls_listener_config(up.addr, pki)
    cfg["max_clients"] = 4000
    sc = sidecar(cfg)
    ctx = drpc.tls_client_context(pki.ca.cert)
    n = 400
    warm = [drpc.Conn(sc.addr, tls=ctx) for _ in range(20)]  # heap and pool warm
    for c in warm:
        assert c.unary(ECHO + "Unary", b"w") == b"w"
    time.sleep(1.5 * SCALE)  # idle wires give their buffers back
    base = rss_kib(sc.pid)
    conns = []
    try:
        for _ in range(n):
            c = drpc.Conn(sc.addr, tls=ctx)
            assert c.unary(ECHO + "Unary", b"x") == b"x"
            conns.append(c)
        time.sleep(2.5 * SCALE)  # the janitor trims idle wires
        per_conn = (rss_kib(sc.pid) - base) * 1024 / n
    finally:
        for c in conns + warm:
            c.close()
    print("RSS per idle TLS client connection: %.0f bytes" % per_conn)
    # sanitizers and valgrind pad every allocation
    assert per_conn <= (64 if INSTRUMENTED else 16) * 1024, per_conn


def test_tls_upstream_with_tcp_health_checks(testd, sidecar, pki):
    """A TLS pool's active health checks are TCP connects (rpc checks are
    refused with tls): the endpoint is found healthy and serves."""
    up = tls_testd(testd, pki.server)
    cfg = tls_pool_config(up.addr, pki)
    cfg["pools"][0]["health_check"] = {"interval_ms": 100, "healthy_threshold": 1}
    sc = sidecar(cfg)
    wait_for(lambda: (sc.admin_get("/pools")["pools"][0]["endpoints"][0]["health_check"]
                      or {}).get("state") == "healthy", what="a passed check")
    with sc.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"ok") == b"ok"
