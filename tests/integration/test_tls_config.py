"""The config's tls objects through the real binary, with the run-time test
PKI: every refusal at --check-config (file, line, column, JSON path, exit 2)
and at reload (422, the running config keeps serving).

A valid tls object is accepted on every socket kind (the connections
themselves are tested in test_tls.py); the unit tests
tests/unit/test_config_tls.c and test_tls_ctx.c cover the forms in detail.
"""

import json
import os
import re
import subprocess

import pytest

from . import drpc
from .procs import basic_config, binary

ECHO = "/test.Echo/"


def check(directory, cfg):
    """--check-config on cfg; (exit status, stdout + stderr)."""
    path = os.path.join(directory, "c.json")
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=1))
    p = subprocess.run([binary("drpc-sidecar"), "--check-config", "-c", path],
                       capture_output=True, timeout=10)
    return p.returncode, (p.stdout + p.stderr).decode()


def listener_cfg(tls):
    return {"listeners": [{"address": "127.0.0.1:1", "tls": tls}],
            "pools": [{"name": "p", "endpoints": ["127.0.0.1:2"]}]}


def pool_cfg(tls):
    return {"listeners": [{"address": "127.0.0.1:1"}],
            "pools": [{"name": "p", "endpoints": ["127.0.0.1:2"], "tls": tls}]}


def reverse_cfg(tls):
    return {"listeners": [{"address": "127.0.0.1:1"}],
            "pools": [{"name": "a", "accept": "127.0.0.1:3", "tls": tls}]}


def refusals(pki, tmp):
    """(id, config, JSON path, reason fragment) for every refusal."""
    os.makedirs(os.path.join(tmp, "unreadable"), exist_ok=True)
    s, c = pki.server, pki.client
    return [
        ("key-mismatch", listener_cfg({"cert_file": s.cert, "key_file": pki.server2.key}),
         "listeners[0].tls.key_file",
         "the key in %s does not match the certificate in %s" % (pki.server2.key, s.cert)),
        ("client-key-mismatch", pool_cfg({"cert_file": c.cert, "key_file": s.key}),
         "pools[0].tls.key_file", "does not match the certificate"),
        ("expired", listener_cfg({"cert_file": pki.expired.cert,
                                  "key_file": pki.expired.key}),
         "listeners[0].tls.cert_file",
         "the certificate in %s expired at " % pki.expired.cert),
        ("expired-agent-port", reverse_cfg({"cert_file": pki.expired.cert,
                                            "key_file": pki.expired.key}),
         "pools[0].tls.cert_file", "expired at"),
        ("missing-file", pool_cfg({"ca_file": os.path.join(tmp, "nope.pem")}),
         "pools[0].tls.ca_file", "cannot read %s: No such file or directory"
         % os.path.join(tmp, "nope.pem")),
        ("directory", listener_cfg({"cert_file": s.cert, "key_file": s.key,
                                    "client_ca_file": os.path.join(tmp, "unreadable")}),
         "listeners[0].tls.client_ca_file", "not a regular file"),
        ("not-pem", pool_cfg({"ca_file": s.key}), "pools[0].tls.ca_file",
         "holds no PEM certificate"),
        ("cert-without-key", pool_cfg({"cert_file": c.cert}), "pools[0].tls.cert_file",
         "needs key_file too: give both or neither"),
        ("key-without-cert", pool_cfg({"key_file": c.key}), "pools[0].tls.key_file",
         "needs cert_file too: give both or neither"),
        ("server-without-cert", listener_cfg({"client_ca_file": pki.ca.cert}),
         "listeners[0].tls.cert_file", "required key is missing"),
        ("server-shorthand", listener_cfg(True), "listeners[0].tls",
         "must be an object with cert_file and key_file"),
        ("client-ca-on-dialled", pool_cfg({"client_ca_file": pki.ca.cert}),
         "pools[0].tls.client_ca_file", "only applies where the sidecar is the TLS server"),
        ("verify-on-listener", listener_cfg({"cert_file": s.cert, "key_file": s.key,
                                             "verify": False}),
         "listeners[0].tls.verify", "only applies to dialled pools"),
        ("min-version", pool_cfg({"min_version": "1.1"}), "pools[0].tls.min_version",
         'must be one of "1.2", "1.3"'),
        ("ca-without-verify", pool_cfg({"verify": False, "ca_file": pki.ca.cert}),
         "pools[0].tls.ca_file", 'has no effect with "verify": false'),
        ("typo", pool_cfg({"server_nmae": "x"}), "pools[0].tls.server_nmae",
         'unknown key "server_nmae" (did you mean "server_name"?)'),
    ]


def test_check_config_refuses_each_with_its_position(pki, short_tmp):
    for name, cfg, path, reason in refusals(pki, short_tmp):
        code, out = check(short_tmp, cfg)
        assert code == 2, (name, out)
        m = re.search(r"invalid config: (\S+):(\d+):(\d+): (\S+): (.*)", out)
        assert m, (name, out)
        assert m.group(4) == path, (name, out)
        assert reason in m.group(5), (name, out)


def test_check_config_refuses_rpc_health_checks_over_tls(pki, short_tmp):
    """Health checks run on plain sockets: an rpc check of a TLS pool would
    always fail, so it is refused; a TCP connect check is fine."""
    cfg = pool_cfg({"ca_file": pki.ca.cert})
    cfg["pools"][0]["health_check"] = {"rpc": "/health.Health/Check"}
    code, out = check(short_tmp, cfg)
    assert code == 2 and "pools[0].health_check.rpc: is not supported with \"tls\" yet" in out, out
    cfg["pools"][0]["health_check"] = {"interval_ms": 500}
    code, out = check(short_tmp, cfg)
    assert code == 0, out


def test_check_config_accepts_valid_tls(pki, short_tmp):
    s, c, ca = pki.server, pki.client, pki.ca
    for cfg in [
        pool_cfg(True),
        pool_cfg({"ca_file": ca.cert, "cert_file": c.cert, "key_file": c.key,
                  "server_name": "localhost", "min_version": "1.3"}),
        listener_cfg({"cert_file": s.cert, "key_file": s.key, "client_ca_file": ca.cert}),
        reverse_cfg({"cert_file": s.cert, "key_file": s.key, "client_ca_file": ca.cert}),
    ]:
        code, out = check(short_tmp, cfg)
        assert code == 0 and ": ok (" in out, out
    code, out = check(short_tmp, pool_cfg({"verify": False}))
    assert code == 0 and "verify" in out, out
    code, out = check(short_tmp, pool_cfg(False))
    assert code == 0, out


def test_reload_refuses_tls_and_keeps_serving(pyserver, sidecar, pki):
    cfg = basic_config(pyserver().addr)
    sc = sidecar(cfg)
    with sc.conn() as conn:
        assert conn.unary(ECHO + "Unary", b"a") == b"a"
        bad = json.loads(json.dumps(cfg))
        bad["listeners"][0]["tls"] = {"cert_file": pki.expired.cert,
                                      "key_file": pki.expired.key}
        sc.write_config(bad)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 422, body
        assert "listeners[0].tls.cert_file: the certificate in %s expired at" \
            % pki.expired.cert in body["error"]
        assert conn.unary(ECHO + "Unary", b"b") == b"b"

        # a kept listener turned to TLS: the established plaintext client
        # goes on, new clients must speak TLS
        good = json.loads(json.dumps(cfg))
        good["listeners"][0]["tls"] = {"cert_file": pki.server.cert, "key_file": pki.server.key}
        sc.write_config(good)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 200, body
        assert conn.unary(ECHO + "Unary", b"c") == b"c"
        last = sc.admin_get("/config")["last_reload"]
        assert last["refused"] == 1 and last["applied"] == 1
    ctx = drpc.tls_client_context(pki.ca.cert)
    with drpc.Conn(sc.addr, tls=ctx) as tconn:
        assert tconn.unary(ECHO + "Unary", b"d") == b"d"
