"""Hot reload: SIGHUP or POST /reload swaps in a new config without failing
a single call; an invalid file changes nothing and says why."""

import json
import threading
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, free_addr

ECHO = "/test.Echo/"


def make_config(listen, admin, endpoints, max_conns, tag):
    return {
        "listeners": [{"name": "local", "address": listen}],
        "admin": {"address": admin},
        "pools": [{"name": "default", "endpoints": endpoints, "max_conns": max_conns,
                   "wait_timeout_ms": 10000}],
        "routes": [{"match": {"rpc": ECHO + "Metadata"}, "pool": "default",
                    "add_metadata": {"config": tag}},
                   {"pool": "default"}],
    }


def write_raw(sc, text):
    """Puts a (broken) file where the sidecar reads its config."""
    with open(sc.config_path, "w") as f:
        f.write(text)


def test_reload_changes_routes_and_sizes(pyserver, sidecar):
    up = pyserver()
    listen, adm = free_addr(), free_addr()
    sc = sidecar(make_config(listen, adm, [up.addr], 4, "a"))
    with sc.conn() as c:
        assert c.unary(ECHO + "Metadata", b"") == b"config=a\n"
        sc.write_config(make_config(listen, adm, [up.addr], 2, "b"))
        sc.reload()
        deadline = time.time() + 5 * SCALE
        while c.unary(ECHO + "Metadata", b"") != b"config=b\n":
            assert time.time() < deadline
            time.sleep(0.02)
        # an invalid file changes nothing and says why
        write_raw(sc, '{"listeners": [')
        sc.reload()
        sc.wait_for_output("reload: refused, keeping the running config", stream="stderr")
        assert c.unary(ECHO + "Metadata", b"") == b"config=b\n"
        assert "invalid JSON" in sc.stderr()


def test_reload_through_the_admin_api(pyserver, sidecar):
    cfg = basic_config(pyserver().addr)
    sc = sidecar(cfg)
    assert sc.admin_get("/config")["last_reload"] is None
    cfg["routes"] = [{"pool": "default", "add_metadata": {"v": "2"}}]
    sc.write_config(cfg)
    st, body = sc.admin_request("POST", "/reload")
    assert st == 200 and body["reloaded"] is True
    with sc.conn() as c:
        assert c.unary(ECHO + "Metadata", b"") == b"v=2\n"
    write_raw(sc, '{"listeners": [], "pools": []}')
    st, body = sc.admin_request("POST", "/reload")
    assert st == 422 and "listeners: must list at least one listener" in body["error"]
    last = sc.admin_get("/config")["last_reload"]
    assert last["ok"] is False and "listeners" in last["error"]
    assert last["applied"] == 1 and last["refused"] == 1


@pytest.mark.timeout_s(60)
def test_reload_under_load_100_times(pyserver, sidecar):
    x, y = pyserver(), pyserver()
    listen, adm = free_addr(), free_addr()
    configs = [
        make_config(listen, adm, [x.addr], 4, "a"),
        make_config(listen, adm, [x.addr], 2, "b"),
        make_config(listen, adm, [x.addr, y.addr], 3, "c"),  # rebuilds the pool
    ]
    sc = sidecar(configs[0])
    stop = threading.Event()
    failures, counts = [], [0]
    lock = threading.Lock()

    def worker(i):
        try:
            with sc.conn() as c:
                while not stop.is_set():
                    k = counts[0] % 3
                    if k == 0:
                        assert c.unary(ECHO + "Unary", b"w%d" % i) == b"w%d" % i
                    elif k == 1:
                        assert len(c.server_stream(ECHO + "ServerStream", b"3 100")) == 3
                    else:
                        assert c.bidi(ECHO + "Bidi", [b"a", b"b"]) == [b"a", b"b"]
                    with lock:
                        counts[0] += 1
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        for n in range(100):
            if n % 10 == 9:
                write_raw(sc, '{"listeners": "broken"}')
            else:
                sc.write_config(configs[n % 3])
            sc.reload()
            time.sleep(0.03)
        sc.write_config(configs[1])
        sc.reload()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not failures, failures[:3]
    assert counts[0] > 100
    # converged: the final pool allows 2 connections; retired pools closed theirs
    deadline = time.time() + 5 * SCALE
    while x.open_conns() + y.open_conns() > 2 and time.time() < deadline:
        time.sleep(0.05)
    assert x.open_conns() + y.open_conns() <= 2
    out = sc.stderr()
    assert out.count("reload: applied") >= 50, out.count("reload: applied")
    assert out.count("reload: refused") >= 5


def test_reload_adds_and_removes_listeners(pyserver, sidecar):
    up = pyserver()
    listen, adm = free_addr(), free_addr()
    cfg = make_config(listen, adm, [up.addr], 4, "a")
    sc = sidecar(cfg)
    extra = free_addr()
    cfg2 = dict(cfg, listeners=cfg["listeners"] + [{"name": "extra", "address": extra}])
    sc.write_config(cfg2)
    sc.reload()
    deadline = time.time() + 5 * SCALE
    while True:
        try:
            with drpc.Conn(extra) as c:
                assert c.unary(ECHO + "Unary", b"new listener") == b"new listener"
            break
        except OSError:
            assert time.time() < deadline
            time.sleep(0.05)
    # a client of the listener about to go keeps its connection and calls
    keeper = drpc.Conn(extra)
    assert keeper.unary(ECHO + "Unary", b"k") == b"k"
    sc.write_config(cfg)
    sc.reload()
    deadline = time.time() + 5 * SCALE
    while True:
        try:
            drpc.dial(extra, timeout=0.5).close()
            assert time.time() < deadline
            time.sleep(0.05)
        except OSError:
            break
    assert keeper.unary(ECHO + "Unary", b"still served") == b"still served"
    keeper.close()
    with drpc.Conn(listen) as c:
        assert c.unary(ECHO + "Unary", b"old listener") == b"old listener"


def test_socket_settings_of_a_bound_listener_need_a_restart(pyserver, sidecar, short_tmp):
    """mode (unix) and reuse_port (TCP) are set when a listener binds; a
    reload that changes them on a listener it keeps is refused and says
    so, rather than answering "reloaded" and leaving the socket as it was."""
    import os

    path = os.path.join(short_tmp, "l.sock")
    cfg = basic_config(pyserver().addr)
    cfg["listeners"].append({"name": "sock", "address": "unix:" + path, "mode": "0666"})
    sc = sidecar(cfg)
    for i, key, value in ((1, "mode", "0600"), (0, "reuse_port", False)):
        changed = json.loads(json.dumps(cfg))
        changed["listeners"][i][key] = value
        sc.write_config(changed)
        st, body = sc.admin_request("POST", "/reload")
        assert st == 422, body
        assert body["error"] == ("listeners[%d].%s changed on a bound listener: restart "
                                 "drpc-sidecar to apply it" % (i, key)), body
    assert oct(os.stat(path).st_mode & 0o777) == "0o666"
    assert sc.admin_get("/config")["config"]["listeners"][1]["mode"] == "0666"
    # the same settings, or other changes, still reload
    cfg["listeners"][1]["max_clients"] = 7
    sc.write_config(cfg)
    st, body = sc.admin_request("POST", "/reload")
    assert st == 200, body
    with drpc.Conn("unix:" + path) as c:
        assert c.unary(ECHO + "Unary", b"x") == b"x"


def test_a_smaller_max_conns_applies_while_calls_wait(testd, sidecar):
    """max_conns is a cap even under load: connections released over the
    new limit close instead of going to the next waiter."""
    up = testd()
    cfg = basic_config(up.addr, max_conns=4, wait_timeout_ms=20000)
    sc = sidecar(cfg)
    stop = threading.Event()
    errors = []

    def caller():
        try:
            with sc.conn(timeout=20 * SCALE) as c:
                while not stop.is_set():
                    assert c.unary(ECHO + "Sleep", b"50") == b"slept"
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 5 * SCALE
        while sc.admin_get("/pools/default")["conns"]["busy"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cfg["pools"][0]["max_conns"] = 2
        sc.write_config(cfg)
        assert sc.admin_request("POST", "/reload")[0] == 200
        seen = []
        deadline = time.monotonic() + 5 * SCALE
        while True:  # a few calls' time later, under the same load
            p = sc.admin_get("/pools/default")
            seen.append((p["conns"]["busy"] + p["conns"]["idle"] + p["conns"]["connecting"],
                         p["waiters"]))
            if seen[-1][0] <= 2 and seen[-1][1] > 0:
                break
            assert time.monotonic() < deadline, seen[-10:]
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors


def test_a_call_waiting_in_a_dialled_pool_goes_to_the_new_endpoints(testd, sidecar):
    """The one connection is busy, a call waits, and a reload points the
    pool at another server: the waiting call is served there, not left to
    the retired pool's old endpoint."""
    old, new = testd(), testd()
    cfg = basic_config(old.addr, max_conns=1, wait_timeout_ms=1500)
    sc = sidecar(cfg)
    with sc.conn() as a, sc.conn() as b:
        a.start_unary(ECHO + "Sleep", b"3000")
        deadline = time.monotonic() + 5 * SCALE
        while sc.admin_get("/pools/default")["conns"]["busy"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        b.start_unary(ECHO + "Unary", b"moved")
        while sc.admin_get("/pools/default")["waiters"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cfg["pools"][0]["endpoints"] = [new.addr]
        sc.write_config(cfg)
        assert sc.admin_request("POST", "/reload")[0] == 200
        assert b.finish_unary() == b"moved"
        assert a.finish_unary() == b"slept"  # the busy call ends on the old server
