"""Operations: access log (formats, reopen), systemd readiness over
$NOTIFY_SOCKET, and a zero-downtime upgrade with SO_REUSEPORT."""

import json
import os
import signal
import socket
import threading
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, free_addr

ECHO = "/test.Echo/"


def wait_lines(path, n, timeout=5):
    deadline = time.time() + timeout * SCALE
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError("%s: fewer than %d lines" % (path, n))


def test_access_log_json_and_reopen(pyserver, sidecar, short_tmp):
    path = os.path.join(short_tmp, "access.log")
    cfg = basic_config(pyserver().addr)
    cfg["access_log"] = {"path": path, "format": "json"}
    sc = sidecar(cfg)
    with sc.conn() as c:
        c.unary(ECHO + "Unary", b"hello", {"secret": "do-not-log"})
        with pytest.raises(drpc.DrpcError):
            c.unary(ECHO + "Error", b"9 nope")
        with pytest.raises(drpc.DrpcError):
            c.unary("/weird\x01\"name", b"")
    lines = wait_lines(path, 3)
    recs = [json.loads(l) for l in lines]
    assert recs[0]["rpc"] == ECHO + "Unary" and recs[0]["result"] == "ok"
    assert recs[0]["pool"] == "default" and recs[0]["listener"] == "local"
    assert recs[0]["bytes_up"] == 5 and recs[0]["msgs_down"] == 1
    assert recs[0]["duration_us"] >= recs[0]["wait_us"] >= 0
    assert recs[1]["result"] == "app_error"
    assert recs[2]["rpc"] == "/weird\x01\"name"
    assert "do-not-log" not in open(path).read()
    # logrotate: move the file away, SIGUSR1, new lines go to a new file
    os.rename(path, path + ".1")
    sc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    with sc.conn() as c:
        c.unary(ECHO + "Unary", b"after rotate")
    assert len(wait_lines(path, 1)) == 1
    assert len(open(path + ".1").read().splitlines()) == 3


def test_log_lines_cannot_be_forged_by_peers(pyserver, sidecar):
    """An rpc name carries what the client chose, newlines included; the log
    quotes it with control characters escaped, so it stays one line."""
    cfg = basic_config(pyserver().addr)
    cfg["routes"] = [{"match": {"rpc_prefix": ECHO}, "pool": "default"}]
    sc = sidecar(cfg)
    forged = "2026-01-01T00:00:00.000Z ERROR forged by a client"
    with sc.conn() as c:
        with pytest.raises(drpc.DrpcError) as e:
            c.unary("/x\n" + forged + "\r\x1b[2J", b"")
        assert e.value.code == 1001
        assert c.unary(ECHO + "Unary", b"ok") == b"ok"
    sc.stop()
    log = sc.stderr()
    assert not [l for l in log.splitlines() if l.startswith(forged)], log
    assert "/x\\x0a" + forged + "\\x0d\\x1b[2J" in log, log


def test_access_log_text(pyserver, sidecar, short_tmp):
    path = os.path.join(short_tmp, "access.txt")
    cfg = basic_config(pyserver().addr)
    cfg["access_log"] = {"path": path, "format": "text"}
    sc = sidecar(cfg)
    with sc.conn() as c:
        c.unary(ECHO + "Unary", b"x")
    line = wait_lines(path, 1)[0]
    assert " rpc=/test.Echo/Unary " in line and " result=ok " in line
    assert line.startswith("time=") and " pool=default " in line


def test_systemd_readiness(pyserver, sidecar, short_tmp, monkeypatch):
    path = os.path.join(short_tmp, "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(5 * SCALE)
    monkeypatch.setenv("NOTIFY_SOCKET", path)  # inherited by the sidecar only
    sc = sidecar(basic_config(pyserver().addr))
    monkeypatch.delenv("NOTIFY_SOCKET")
    msg = rx.recv(4096).decode()
    assert "READY=1" in msg.split("\n")
    sc.reload()
    assert rx.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert "READY=1" in rx.recv(4096).decode()
    sc.stop()
    # the stop asks systemd for the grace (default 10 s) plus 5 s
    assert rx.recv(4096).decode() == "STOPPING=1\nEXTEND_TIMEOUT_USEC=15000000"
    rx.close()


def test_zero_downtime_upgrade_with_reuse_port(pyserver, sidecar):
    cfg = basic_config(pyserver().addr)
    old = sidecar(cfg)
    failures, done = [], [0]
    stop = threading.Event()

    def client():
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = drpc.Conn(old.addr)
                assert c.unary(ECHO + "Unary", b"u") == b"u"
                done[0] += 1
            except (drpc.ConnectionLost, ConnectionError, OSError):
                # the old process closed an idle connection (or reset one it
                # had not accepted yet): nothing was processed, dial again
                if c:
                    c.close()
                c = None
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
                return
        if c:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    new_cfg = dict(cfg, admin={"address": free_addr()})
    new = sidecar(new_cfg)  # same listener port, SO_REUSEPORT
    time.sleep(0.5)
    before = done[0]
    old.send_signal(signal.SIGTERM)
    assert old.wait(15) == 0
    time.sleep(0.8)
    stop.set()
    for t in threads:
        t.join(10)
    assert not failures, failures[:3]
    assert done[0] > before  # calls kept flowing through the new process
    assert new.running()
