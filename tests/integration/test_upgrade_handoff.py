"""Upgrades that hand client connections to the new process (proxy/handoff.h).

The documented upgrade: start the new binary on the same config file, then
SIGTERM the old one. The old process passes each client connection to the
new one between two calls, so a client that reuses its connection (as the
Go drpc pool does) never sees it closed. These clients count every call
that raises as a failure: with close-after-reply, each busy connection
loses one call per upgrade.

A new process joins the old one's rendezvous only when started with the
same -c path; the harness writes a config file per Sidecar, so the new
one is given the old one's path with a second -c (the last one counts)."""

import json
import re
import os
import signal
import socket
import threading
import time

from . import drpc
from .procs import SCALE, basic_config

ECHO = "/test.Echo/"


def _reusing_client(addr, stop, tally, failures, i):
    """One connection for as long as it lasts: Echo and short Sleeps, so
    that calls are in flight whenever the old process gets SIGTERM."""
    c = None
    n = 0
    while not stop.is_set():
        try:
            if c is None:
                c = drpc.Conn(addr, timeout=10 * SCALE)
            n += 1
            if n % 3 == 0:
                assert c.unary(ECHO + "Sleep", b"30") == b"slept"
            else:
                data = b"c%d-%d" % (i, n)
                assert c.unary(ECHO + "Unary", data) == data
            tally[i] += 1
        except Exception as e:  # noqa: BLE001 - the request was written: a failed call
            failures.append("client %d call %d: %r" % (i, n, e))
            if c is not None:
                c.close()
            c = None
    if c is not None:
        c.close()


class Load:
    def __init__(self, addr, n=16):
        self.stop = threading.Event()
        self.failures = []
        self.tally = [0] * n
        self.threads = [threading.Thread(target=_reusing_client,
                                         args=(addr, self.stop, self.tally, self.failures, i))
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def calls(self):
        return sum(self.tally)

    def assert_no_failure(self):
        assert not self.failures, "%d failed calls of %d: %s" % (
            len(self.failures), self.calls(), self.failures[:5])

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(20 * SCALE)
        assert not any(t.is_alive() for t in self.threads)


def _rewrite(path, cfg):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.replace(tmp, path)


def _successor(sidecar, old, cfg, registered=True, **kw):
    """A new process on old's config file, by default once it registered with old."""
    new = sidecar(cfg, args=("-c", old.config_path), **kw)
    new.config_path = old.config_path
    if registered:
        new.wait_for_output("handoff: registered with pid %d" % old.pid, stream="stderr")
    return new


def _upgrade(sidecar, old, cfg, load):
    """Starts a new process on old's config file, SIGTERMs old; returns the new one."""
    new = _successor(sidecar, old, cfg)
    time.sleep(0.3)
    before = load.calls()
    old.send_signal(signal.SIGTERM)
    assert old.wait(15 * SCALE) == 0
    time.sleep(0.5)
    assert load.calls() > before  # calls kept flowing
    return new


def test_two_upgrades_lose_no_call_of_reused_connections(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr, max_conns=8)
    first = sidecar(cfg, expect_exit=None)
    load = Load(first.addr)
    try:
        time.sleep(0.5)
        second = _upgrade(sidecar, first, cfg, load)
        third = _upgrade(sidecar, second, cfg, load)
        time.sleep(0.3)
    finally:
        load.finish()
    load.assert_no_failure()
    assert all(n > 0 for n in load.tally)
    assert "handed off to pid %d" % second.pid in first.stderr()
    assert "handed off to pid %d" % third.pid in second.stderr()
    assert third.running()
    counters = third.admin_get("/stats")["counters"]
    assert counters["clients_adopted"] >= len(load.tally) and counters["handoff_failures"] == 0
    # Every connection moved: none was closed after its reply.
    assert not re.search(r"client#\d+ \S+: closed \(shutting down\)", first.stderr() + second.stderr())


def test_bytes_of_the_next_call_read_before_the_handoff_go_along(testd, sidecar):
    """A call cut in two: the first part is read by the old process, which
    then drains; the rest reaches the new one, which serves the call whole."""
    up = testd()
    cfg = basic_config(up.addr)
    old = sidecar(cfg, expect_exit=None)
    with drpc.Conn(old.addr, timeout=5 * SCALE) as c:  # before the new one takes new ones
        assert c.unary(ECHO + "Unary", b"one") == b"one"
        new = _successor(sidecar, old, cfg)
        st = c.new_stream(ECHO + "Unary", metadata=[(b"k", b"v")])
        st.send(b"two", flush=False)
        st.close_send(flush=False)
        whole = bytes(c.out)
        c.out.clear()
        # The InvokeMetadata whole, the Invoke cut in its rpc name.
        cut = whole.index(b"/test.Echo/Unary") + 5
        c.sock.sendall(whole[:cut])
        time.sleep(0.3)  # read by the old process
        old.send_signal(signal.SIGTERM)
        assert old.wait(10 * SCALE) == 0
        c.sock.sendall(whole[cut:])
        assert c.finish_unary() == b"two"
        assert c.unary(ECHO + "Unary", b"three") == b"three"
    assert "handed off to pid %d" % new.pid in old.stderr()


def test_a_single_process_still_drains(testd, sidecar):
    """No successor: SIGTERM drains as documented; a connection is closed
    after its in-flight call's reply."""
    up = testd()
    sc = sidecar(basic_config(up.addr), expect_exit=None)
    with drpc.Conn(sc.addr, timeout=5 * SCALE) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
        c.start_unary(ECHO + "Sleep", b"300")
        time.sleep(0.1)
        sc.send_signal(signal.SIGTERM)
        assert c.finish_unary() == b"slept"
        assert not c.is_open(wait=2 * SCALE)
    assert sc.wait(10 * SCALE) == 0
    assert "handoff:" in sc.stderr()  # it held the name, nobody came


def test_unrelated_sidecars_do_not_meet(testd, sidecar):
    """Another config file: no handoff, each drains on its own."""
    up = testd()
    a = sidecar(basic_config(up.addr), expect_exit=None)
    b = sidecar(basic_config(up.addr))
    with drpc.Conn(a.addr, timeout=5 * SCALE) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
        a.send_signal(signal.SIGTERM)
        assert not c.is_open(wait=3 * SCALE)
    assert a.wait(10 * SCALE) == 0
    assert "registered" not in a.stderr() + b.stderr()
    assert b.running()


def test_a_third_process_waits_its_turn(testd, sidecar):
    """A -> B -> C: C is refused while B is A's successor, and registers
    with B once A is gone; connections then move twice."""
    up = testd()
    cfg = basic_config(up.addr)
    a = sidecar(cfg, expect_exit=None)
    with drpc.Conn(a.addr, timeout=5 * SCALE) as c:
        assert c.unary(ECHO + "Unary", b"1") == b"1"
        b = _successor(sidecar, a, cfg, expect_exit=None)
        c3 = _successor(sidecar, a, cfg, registered=False)
        c3.wait_for_output("refused us", stream="stderr")
        a.send_signal(signal.SIGTERM)
        assert a.wait(10 * SCALE) == 0
        assert c.unary(ECHO + "Unary", b"2") == b"2"
        c3.wait_for_output("handoff: registered with pid %d" % b.pid, stream="stderr",
                           timeout=5 * SCALE)
        b.send_signal(signal.SIGTERM)
        assert b.wait(10 * SCALE) == 0
        assert c.unary(ECHO + "Unary", b"3") == b"3"
    assert c3.running()


def test_a_successor_that_dies_is_forgotten(testd, sidecar):
    """The successor is killed: the old process falls back to closing after
    the reply (no crash, the call in flight is answered)."""
    up = testd()
    cfg = basic_config(up.addr)
    old = sidecar(cfg, expect_exit=None)
    with drpc.Conn(old.addr, timeout=5 * SCALE) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
        new = _successor(sidecar, old, cfg, expect_exit=None)
        c.start_unary(ECHO + "Sleep", b"300")
        time.sleep(0.1)
        new.kill()
        old.wait_for_output("successor pid %d gone" % new.pid, stream="stderr")
        old.send_signal(signal.SIGTERM)
        assert c.finish_unary() == b"slept"
        assert not c.is_open(wait=3 * SCALE)
    assert old.wait(10 * SCALE) == 0


def test_garbage_on_the_rendezvous_is_refused(testd, sidecar):
    """A malformed message from a same-user peer closes that peer only."""
    up = testd()
    cfg = basic_config(up.addr)
    old = sidecar(cfg, expect_exit=None)
    name = _rendezvous_name(old)
    for junk in (b"GET / HTTP/1.0\r\n\r\n", b"DSHO\x01\x04\x00\x00\xff\xff\xff\xff",
                 b"DSHO\x01\x01\x00\x00\x00\x00\x00\x03abc"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(name)
        s.sendall(junk)
        s.settimeout(5 * SCALE)
        assert s.recv(100) == b""  # closed by the sidecar
        s.close()
    with drpc.Conn(old.addr, timeout=5 * SCALE) as c:
        assert c.unary(ECHO + "Unary", b"ok") == b"ok"
    assert old.running()
    old.stop()


def _rendezvous_name(sc):
    """The abstract name, as the sidecar logs it."""
    sc.wait_for_output("handoff: drpc-sidecar.handoff.", stream="stderr")
    for line in sc.stderr().splitlines():
        if "handoff: drpc-sidecar.handoff." in line:
            name = line.split("handoff: ", 1)[1].split(" ", 1)[0]
            return "\0" + name
    raise AssertionError("no rendezvous name logged")


def test_unix_listener_connections_move_too(testd, sidecar, short_tmp):
    """A unix-socket listener cannot be shared, so the new process gets a
    config with another path for it; its connections still move, provided
    the new process is started on the same config file (rewritten)."""
    up = testd()
    path_a = os.path.join(short_tmp, "a.sock")
    cfg = basic_config(up.addr, listen="unix:" + path_a)
    old = sidecar(cfg, expect_exit=None)
    load = Load(old.addr, n=8)
    try:
        time.sleep(0.5)
        # The same file, now naming another path (what a reload would refuse).
        path_b = os.path.join(short_tmp, "b.sock")
        cfg_b = dict(cfg, listeners=[{"name": "local", "address": "unix:" + path_b}])
        _rewrite(old.config_path, cfg_b)
        new = _upgrade(sidecar, old, cfg_b, load)
    finally:
        load.finish()
    load.assert_no_failure()
    assert "handed off to pid %d" % new.pid in old.stderr()


def test_unix_listener_shared_by_an_upgrade_on_the_same_config(testd, sidecar, short_tmp):
    """The same config, unix listener included: the new process takes the
    old one's listening socket (a path cannot be bound twice), then its
    connections; the path survives the old process and goes with the last."""
    up = testd()
    path = os.path.join(short_tmp, "s.sock")
    cfg = basic_config(up.addr, listen="unix:" + path)
    cfg["admin"] = {"enabled": False}
    first = sidecar(cfg, expect_exit=None)
    load = Load(first.addr, n=8)
    try:
        time.sleep(0.5)
        second = _upgrade(sidecar, first, cfg, load)
        assert "sharing %s with pid %d" % (path, first.pid) in second.stderr()
        third = _upgrade(sidecar, second, cfg, load)
        time.sleep(0.3)
    finally:
        load.finish()
    load.assert_no_failure()
    assert os.path.exists(path)
    with drpc.Conn(third.addr, timeout=5 * SCALE) as c:  # a fresh dial reaches the last one
        assert c.unary(ECHO + "Unary", b"new") == b"new"
    third.stop()
    assert not os.path.exists(path)


def test_a_successor_that_stops_first_leaves_the_unix_path(testd, sidecar, short_tmp):
    """B took A's unix socket and is stopped before A: the path stays A's."""
    up = testd()
    path = os.path.join(short_tmp, "s.sock")
    cfg = basic_config(up.addr, listen="unix:" + path)
    cfg["admin"] = {"enabled": False}
    a = sidecar(cfg, expect_exit=None)
    b = _successor(sidecar, a, cfg, expect_exit=None)
    b.stop()
    assert os.path.exists(path)
    for _ in range(3):
        with drpc.Conn(a.addr, timeout=5 * SCALE) as c:
            assert c.unary(ECHO + "Unary", b"a") == b"a"
    a.stop()
    assert not os.path.exists(path)


def test_a_successor_killed_mid_handoff(testd, sidecar):
    """The successor stops reading, takes the idle connections into its
    socket buffer, and is killed while the old process still has calls in
    flight: the old one does not crash, answers those calls and closes
    their connections after the reply, as without a successor."""
    up = testd()
    cfg = basic_config(up.addr, max_conns=8)
    old = sidecar(cfg, expect_exit=None)
    busy = [drpc.Conn(old.addr, timeout=5 * SCALE) for _ in range(4)]
    idle = [drpc.Conn(old.addr, timeout=5 * SCALE) for _ in range(4)]
    for c in busy + idle:
        assert c.unary(ECHO + "Unary", b"x") == b"x"
    new = _successor(sidecar, old, cfg, expect_exit=None)
    for c in busy:
        c.start_unary(ECHO + "Sleep", b"600")
    time.sleep(0.1)
    new.send_signal(signal.SIGSTOP)
    old.send_signal(signal.SIGTERM)
    old.wait_for_output("handed off to pid %d" % new.pid, stream="stderr")
    new.kill()
    for c in busy:
        assert c.finish_unary() == b"slept"
        assert not c.is_open(wait=3 * SCALE)
    assert old.wait(10 * SCALE) == 0
    assert "successor pid %d gone" % new.pid in old.stderr()
    for c in busy + idle:
        c.close()


def test_a_connection_the_successor_has_no_listener_for_is_closed(testd, sidecar):
    """The new config names the listener differently: the new process
    closes what it cannot place, between calls, like the fallback."""
    up = testd()
    cfg = basic_config(up.addr)
    old = sidecar(cfg, expect_exit=None)
    with drpc.Conn(old.addr, timeout=5 * SCALE) as c:
        assert c.unary(ECHO + "Unary", b"1") == b"1"
        renamed = dict(cfg, listeners=[dict(cfg["listeners"][0], name="other")])
        _rewrite(old.config_path, renamed)
        new = _successor(sidecar, old, renamed)
        old.send_signal(signal.SIGTERM)
        assert old.wait(10 * SCALE) == 0
        new.wait_for_output("no listener of that name", stream="stderr")
        assert not c.is_open(wait=3 * SCALE)
    assert new.running()
