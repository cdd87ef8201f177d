"""Hot reload: SIGHUP swaps in a new config without failing a single call."""

import json
import signal
import threading
import time

import drpc
from conftest import free_port

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


def test_reload_changes_routes_and_sizes(upstream, sidecar):
    listen, admin = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    a = make_config(listen, admin, [upstream.addr], 4, "a")
    sc = sidecar(a)
    with drpc.Conn(sc.addr) as c:
        assert c.unary(ECHO + "Metadata", b"") == b"config=a\n"
        sc.write_config(make_config(listen, admin, [upstream.addr], 2, "b"))
        sc.signal(signal.SIGHUP)
        deadline = time.time() + 5
        while c.unary(ECHO + "Metadata", b"") != b"config=b\n":
            assert time.time() < deadline
            time.sleep(0.02)
        # an invalid file changes nothing and says why
        with open(sc.path, "w") as f:
            f.write('{"listeners": [')
        sc.signal(signal.SIGHUP)
        time.sleep(0.3)
        assert c.unary(ECHO + "Metadata", b"") == b"config=b\n"
        assert "reload: refused, keeping the running config" in sc.output()
        assert "invalid JSON" in sc.output()


def test_reload_under_load_100_times(sidecar):
    x, y = drpc.TestServer(), drpc.TestServer()
    listen, admin = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    configs = [
        make_config(listen, admin, [x.addr], 4, "a"),
        make_config(listen, admin, [x.addr], 2, "b"),
        make_config(listen, admin, [x.addr, y.addr], 3, "c"),  # rebuilds the pool
    ]
    sc = sidecar(configs[0])
    stop = threading.Event()
    failures, counts = [], [0]
    lock = threading.Lock()

    def worker(i):
        try:
            with drpc.Conn(sc.addr) as c:
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
                with open(sc.path, "w") as f:
                    f.write('{"listeners": "broken"}')
            else:
                sc.write_config(configs[n % 3])
            sc.signal(signal.SIGHUP)
            time.sleep(0.03)
        sc.write_config(configs[1])
        sc.signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not failures, failures[:3]
    assert counts[0] > 100
    # converged: the final pool allows 2 connections; retired pools closed theirs
    deadline = time.time() + 5
    while x.open_conns() + y.open_conns() > 2 and time.time() < deadline:
        time.sleep(0.05)
    assert x.open_conns() + y.open_conns() <= 2
    out = sc.output()
    assert out.count("reload: applied") >= 50, out.count("reload: applied")
    assert out.count("reload: refused") >= 5
    x.close()
    y.close()


def test_reload_adds_and_removes_listeners(upstream, sidecar):
    listen, admin = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    cfg = make_config(listen, admin, [upstream.addr], 4, "a")
    sc = sidecar(cfg)
    extra = "127.0.0.1:%d" % free_port()
    cfg2 = dict(cfg, listeners=cfg["listeners"] + [{"name": "extra", "address": extra}])
    sc.write_config(cfg2)
    sc.signal(signal.SIGHUP)
    deadline = time.time() + 5
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
    sc.signal(signal.SIGHUP)
    deadline = time.time() + 5
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
