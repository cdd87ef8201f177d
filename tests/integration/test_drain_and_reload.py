"""Drain and reload edge cases: connections queued to a draining sidecar, a
strict zero-downtime upgrade, reloads that cannot apply or overlap, -v.

A DRPC client may only retry a call safely when the connection was closed
before its request went out (a Go drpc pool checks conn.Closed()). Clients
here that dial a fresh connection per call count every lost call as a
failure; they exercise the connections the kernel had queued to the old
process (its listen backlog, or accepted but not yet read) when it stopped
listening."""

import json
import os
import signal
import threading
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, free_addr

ECHO = "/test.Echo/"


def test_connections_queued_at_sigterm_are_served(testd, sidecar):
    """Connections that reached the sidecar (queued in its backlog, or
    accepted) but had not sent their first call when SIGTERM came are served
    one call, not closed or reset under a call the client is about to send."""
    up = testd()
    sc = sidecar(basic_config(up.addr), expect_exit=None)
    early = [drpc.Conn(sc.addr, timeout=5 * SCALE) for _ in range(5)]  # accepted, silent
    sc.send_signal(signal.SIGSTOP)  # the loop accepts nothing while stopped
    try:
        queued = [drpc.Conn(sc.addr, timeout=5 * SCALE) for _ in range(20)]  # kernel handshake
        sc.send_signal(signal.SIGTERM)
    finally:
        sc.send_signal(signal.SIGCONT)
    time.sleep(0.2)  # the drain has begun; now the clients send their calls
    for i, c in enumerate(early + queued):
        assert c.unary(ECHO + "Unary", b"q%d" % i) == b"q%d" % i
        assert not c.is_open(wait=2 * SCALE)  # then closed: the drain goes on
        c.close()
    assert sc.popen.wait(10 * SCALE) == 0


def test_silent_connection_does_not_hold_the_drain(testd, sidecar):
    up = testd()
    sc = sidecar(basic_config(up.addr), expect_exit=None)
    silent = drpc.Conn(sc.addr)
    assert silent.is_open(wait=0.1)
    t0 = time.monotonic()
    sc.send_signal(signal.SIGTERM)
    assert not silent.is_open(wait=5 * SCALE)  # closed after about a second
    assert sc.popen.wait(10 * SCALE) == 0
    assert time.monotonic() - t0 < 5 * SCALE
    silent.close()


def test_a_connection_from_before_the_drain_is_served_with_max_waiters_0(testd, sidecar):
    """max_waiters 0 refuses only waiting for a busy connection: the one
    call a connection accepted before POST /drain gets is dialled for."""
    up = testd()
    cfg = basic_config(up.addr, max_waiters=0, min_idle=0)
    sc = sidecar(cfg, expect_exit=None)
    with drpc.Conn(sc.addr, timeout=5 * SCALE) as c:
        assert c.is_open(wait=0.1)
        assert sc.admin_request("POST", "/drain")[0] == 202
        assert c.unary(ECHO + "Unary", b"first") == b"first"
    assert sc.popen.wait(10 * SCALE) == 0


def _fresh_conn_client(addr, stop, tally, failures):
    while not stop.is_set():
        try:
            with drpc.Conn(addr, timeout=5 * SCALE) as c:
                assert c.unary(ECHO + "Unary", b"f") == b"f"
            tally[0] += 1
        except Exception as e:  # noqa: BLE001 - the request was written: a failed call
            failures.append(repr(e))


def test_upgrade_side_by_side_loses_no_call_of_new_connections(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr, max_conns=8)
    old = sidecar(cfg, expect_exit=None)
    stop = threading.Event()
    failures, tally = [], [0]
    threads = [threading.Thread(target=_fresh_conn_client, args=(old.addr, stop, tally, failures))
               for _ in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        new = sidecar(cfg)  # the same config: every port is shared (SO_REUSEPORT)
        time.sleep(0.5)
        before = tally[0]
        old.send_signal(signal.SIGTERM)
        assert old.popen.wait(15 * SCALE) == 0
        time.sleep(0.8)
    finally:
        stop.set()
        for t in threads:
            t.join(10 * SCALE)
    assert not failures, "%d failed calls of %d: %s" % (len(failures), tally[0], failures[:5])
    assert tally[0] > before
    assert new.running()


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_reload_that_changes_the_access_log_is_refused(testd, sidecar, short_tmp):
    """The access log is opened at start; a reload must not pretend to apply
    a new one (before, the new path was silently ignored)."""
    up = testd()
    first, second = os.path.join(short_tmp, "a.log"), os.path.join(short_tmp, "b.log")
    cfg = basic_config(up.addr)
    cfg["access_log"] = {"path": first, "format": "json"}
    sc = sidecar(cfg)
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"1") == b"1"
    for changed in ({"path": second, "format": "json"}, {"path": first, "format": "text"}):
        sc.write_config(dict(cfg, access_log=changed))
        status, body = sc.admin_request("POST", "/reload")
        assert 400 <= status < 500, (status, body)
        assert "access_log changed: restart drpc-sidecar" in body["error"]
    sc.write_config({k: v for k, v in cfg.items() if k != "access_log"})
    assert sc.admin_request("POST", "/reload")[0] >= 400
    # the running log is untouched and keeps logging; an unchanged one reloads
    sc.write_config(cfg)
    assert sc.admin_request("POST", "/reload")[0] == 200
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"2") == b"2"
    deadline = time.monotonic() + 5 * SCALE
    while len(_lines(first)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not os.path.exists(second)


def test_sighup_during_a_reload_is_not_lost(testd, sidecar):
    """A SIGHUP that arrives while a reload is running must lead to one more
    reload: the operator's last edit has to be applied (before, it was
    logged as "not started" and dropped, leaving the older config live)."""
    up = testd()
    cfg = basic_config(up.addr)
    sc = sidecar(cfg)
    # many routes make each reload take a while, so SIGHUPs land during one
    filler = [{"match": {"rpc": "/filler.S/M%d" % i}, "pool": "default"} for i in range(3000)]
    for n in range(20):
        sc.write_config(dict(cfg, routes=filler + [{"pool": "default",
                                                    "add_metadata": {"n": str(n)}}]))
        sc.reload()
        time.sleep(0.002)
    deadline = time.monotonic() + 5 * SCALE
    with sc.conn() as c:
        while c.unary(ECHO + "Metadata", b"") != b"n=19\n":
            assert time.monotonic() < deadline, "the last edit was never applied:\n" + sc.stdout()
            time.sleep(0.05)


def test_verbose_flag_outlives_a_reload(testd, sidecar):
    """-v asks for debug logs whatever log_level the file says; a reload of
    that file must not quietly turn them off."""
    up = testd()
    cfg = dict(basic_config(up.addr), log_level="info")
    sc = sidecar(cfg, args=("-v",))
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"1") == b"1"
    sc.wait_for_output("/test.Echo/Unary: ok", stream="stderr")
    sc.write_config(cfg)
    assert sc.admin_request("POST", "/reload")[0] == 200
    with sc.conn() as c:
        assert c.unary(ECHO + "Unary", b"2") == b"2"
    sc.wait_for_output("/test.Echo/Unary: ok", count=2, stream="stderr")


def test_a_newer_process_on_the_port_takes_every_new_connection(testd, sidecar):
    """Two processes on one port (SO_REUSEPORT): once the newer one listens,
    new connections all go to it, so the older one can stop without a
    connection landing in its queue at the last moment."""
    up = testd()
    cfg = basic_config(up.addr)

    def accepted(sc):
        return sc.admin_get("/stats")["listeners"][0]["accepted"]

    old = sidecar(cfg)
    new = sidecar(dict(cfg, admin={"address": free_addr()}))
    assert new.addr == old.addr
    before = accepted(old), accepted(new)  # the fixture's readiness probes
    for i in range(40):
        with new.conn() as c:
            assert c.unary(ECHO + "Unary", b"%d" % i) == b"%d" % i
    assert (accepted(old), accepted(new)) == (before[0], before[1] + 40)
    assert "cannot steer" not in new.stderr()


def test_agents_move_to_the_newer_process(sidecar, agent):
    """A reverse pool's agent port is shared like the listeners: when the old
    process drains, its agents' connections close, they dial again, and the
    kernel hands them to the newer process, which serves calls with them."""
    accept = free_addr()
    cfg = {"listeners": [{"name": "local", "address": free_addr()}],
           "admin": {"address": free_addr()},
           "pools": [{"name": "agents", "accept": accept, "wait_timeout_ms": 5000}],
           "routes": [{"pool": "agents"}]}
    old = sidecar(cfg, expect_exit=None)
    agent(accept, conns=2)  # re-dials whenever a connection closes
    with old.conn() as c:
        assert c.unary(ECHO + "Unary", b"old") == b"old"
    new = sidecar(cfg)
    old.send_signal(signal.SIGTERM)
    assert old.popen.wait(15 * SCALE) == 0
    with new.conn() as c:  # the same address: now only the new process listens
        assert c.unary(ECHO + "Unary", b"new", timeout=5 * SCALE) == b"new"


def test_sigterm_after_post_drain_keeps_the_grace(testd, sidecar):
    """A preStop hook's POST /drain followed by the kubelet's (or systemd's)
    SIGTERM: the signal is the first one, so calls in flight still finish."""
    up = testd()
    sc = sidecar(basic_config(up.addr), expect_exit=None)
    with sc.conn() as c:
        c.start_unary(ECHO + "Sleep", b"800")
        time.sleep(0.1)
        assert sc.admin_request("POST", "/drain")[0] == 202
        sc.send_signal(signal.SIGTERM)
        assert c.finish_unary(timeout=5 * SCALE) == b"slept"
    assert sc.popen.wait(10 * SCALE) == 0
    assert "already draining; a second signal ends the grace period" in sc.stderr()


def test_reload_follows_a_swapped_config_symlink(testd, sidecar, short_tmp):
    """Kubernetes updates a mounted ConfigMap by swapping a symlink: a reload
    must read what the path names now, not the file it named at start."""
    up = testd()
    first, second = os.path.join(short_tmp, "a.json"), os.path.join(short_tmp, "b.json")
    link = os.path.join(short_tmp, "config.json")
    cfg = basic_config(up.addr)
    with open(first, "w") as f:
        json.dump(cfg, f)
    with open(second, "w") as f:
        json.dump(dict(cfg, routes=[{"pool": "default", "add_metadata": {"v": "2"}}]), f)
    os.symlink(first, link)
    sc = sidecar(cfg, args=("-c", link))
    with sc.conn() as c:
        assert c.unary(ECHO + "Metadata", b"") == b""
    tmp_link = link + ".new"
    os.symlink(second, tmp_link)
    os.replace(tmp_link, link)  # atomic swap, as the kubelet does
    assert sc.admin_request("POST", "/reload")[0] == 200
    with sc.conn() as c:
        assert c.unary(ECHO + "Metadata", b"") == b"v=2\n"


def _wait_for(pred, what):
    deadline = time.monotonic() + 5 * SCALE
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_drained_pool_stays_drained_when_a_reload_rebuilds_it(testd, sidecar):
    """An operator's drain ends with a resume, not with an unrelated reload
    that happens to rebuild the pool (new endpoints); a call that waited
    in the drained pool waits in the rebuilt one and is served on resume."""
    a, b = testd(), testd()
    cfg = basic_config(a.addr, wait_timeout_ms=0)  # no timeout: only a resume ends the wait
    sc = sidecar(cfg)
    sc.admin_post("/pools/default/drain")
    with sc.conn() as c:
        c.start_unary(ECHO + "Unary", b"waited")
        _wait_for(lambda: sc.admin_get("/pools/default")["waiters"] == 1, "a waiter")
        cfg["pools"][0]["endpoints"] = [b.addr]
        sc.write_config(cfg)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 200, body
        p = sc.admin_get("/pools/default")
        assert p["draining"] is True and p["config"]["endpoints"] == [b.addr]
        assert p["waiters"] == 1
        assert sc.admin_post("/pools/default/resume")["draining"] is False
        assert c.finish_unary(timeout=5 * SCALE) == b"waited"
        assert c.unary(ECHO + "Unary", b"next") == b"next"


def test_waiters_of_a_drained_pool_that_a_reload_removes_fail_at_once(testd, sidecar):
    """Nothing can resume a drained pool that left the config."""
    a = testd()
    cfg = basic_config(a.addr, wait_timeout_ms=0)
    cfg["pools"].append({"name": "gone", "endpoints": [a.addr], "wait_timeout_ms": 0})
    cfg["routes"] = [{"match": {"rpc": ECHO + "Sleep"}, "pool": "gone"}, {"pool": "default"}]
    sc = sidecar(cfg)
    sc.admin_post("/pools/gone/drain")
    with sc.conn() as c:
        c.start_unary(ECHO + "Sleep", b"10")
        _wait_for(lambda: sc.admin_get("/pools/gone")["waiters"] == 1, "a waiter")
        del cfg["pools"][1]
        cfg["routes"] = [{"pool": "default"}]
        sc.write_config(cfg)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 200, body
        with pytest.raises(drpc.DrpcError) as e:
            c.finish_unary(timeout=5 * SCALE)
        assert e.value.code == 1001
        assert "removed by a reload while drained" in e.value.message
        assert c.unary(ECHO + "Sleep", b"10") == b"slept"
