"""/metrics passes `promtool check metrics` (the Prometheus project's own
linter: base units, _total counters, HELP and TYPE) in every state the
sidecar can be in: idle, under load with errors, and with a reverse pool.
Skipped when promtool is missing (`make deps` installs the prometheus
package, which ships it)."""

import shutil
import subprocess
import time
import urllib.request

import pytest

from . import drpc
from .load import BackgroundLoad
from .procs import SCALE, basic_config
from .test_reverse import _try, accept_addr, reverse_config, wait_for

PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed "
                                "(apt-get install prometheus; make deps does)")


def scrape(sc):
    with urllib.request.urlopen("http://%s/metrics" % sc.admin, timeout=5 * SCALE) as r:
        return r.read()


def promtool_check(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       timeout=30 * SCALE)
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")


def test_idle_metrics_pass_promtool(testd, sidecar):
    sc = sidecar(basic_config(testd().addr))
    promtool_check(scrape(sc))


@pytest.mark.timeout_s(60)
def test_metrics_under_load_with_errors_pass_promtool(testd, sidecar):
    up = testd()
    sc = sidecar(basic_config(up.addr, max_conns=2, max_waiters=1, wait_timeout_ms=50))
    load = BackgroundLoad(sc.addr, n=8, allowed=(1002, 1003))
    try:
        deadline = time.monotonic() + 10 * SCALE
        while load.calls < 50 or not load.errors:
            assert time.monotonic() < deadline, (load.calls, load.errors, load.failures[:3])
            time.sleep(0.02)
        # some names no route matches would still be escaped and counted
        with sc.conn() as c:
            with pytest.raises(drpc.DrpcError):
                c.unary('/odd"name\\with\nbytes/X', b"x", timeout=5 * SCALE)
        text = scrape(sc)
    except Exception:
        load.stop()
        raise
    load.stop()
    assert b"drpc_sidecar_rpc_calls_total" in text
    promtool_check(text)


def test_reverse_pool_metrics_pass_promtool(sidecar, pyagent):
    cfg = reverse_config()
    sc = sidecar(cfg)
    pyagent(accept_addr(cfg), n=2, ident="alpha")
    with sc.conn() as c:
        assert wait_for(lambda: _try(c))
        assert c.unary("/test.Echo/Unary", b"hi") == b"hi"
    promtool_check(scrape(sc))


def test_tls_metrics_pass_promtool(testd, sidecar, pki):
    """TLS families: handshakes with a failure reason, resumptions, the
    handshake histogram, certificate expiry (a label with a file path)."""
    up = testd("127.0.0.1:0", args=pki.server.server_args())
    cfg = basic_config(up.addr)
    cfg["pools"][0]["tls"] = {"ca_file": pki.ca.cert}
    cfg["listeners"][0]["tls"] = {"cert_file": pki.server.cert, "key_file": pki.server.key,
                                  "client_ca_file": pki.ca.cert}
    sc = sidecar(cfg)
    ctx = drpc.tls_client_context(pki.ca.cert, pki.client.cert, pki.client.key)
    with drpc.Conn(sc.addr, tls=ctx) as c:
        assert c.unary("/test.Echo/Unary", b"hi") == b"hi"
    with pytest.raises((drpc.ConnectionLost, OSError)):
        with drpc.Conn(sc.addr) as c:  # plaintext: a failed handshake
            c.unary("/test.Echo/Unary", b"x", timeout=5 * SCALE)
    text = scrape(sc)
    for fam in (b"drpc_sidecar_tls_handshakes_total", b"drpc_sidecar_tls_resumed_total",
                b"drpc_sidecar_tls_handshake_duration_seconds_bucket",
                b"drpc_sidecar_tls_certificate_expiry_timestamp_seconds"):
        assert fam in text, fam
    promtool_check(text)
