"""Config validation through the real binary: every bad config names the file,
line, column and JSON path, exits 2 and starts nothing."""

import json
import os
import subprocess

import pytest

from .procs import ROOT, binary

GOOD = {
    "listeners": [{"name": "local", "address": "127.0.0.1:7777"}],
    "admin": {"address": "127.0.0.1:9901"},
    "pools": [{"name": "default", "endpoints": ["127.0.0.1:8000"], "max_conns": 16},
              {"name": "storage", "endpoints": ["storage.internal:7777", "10.0.0.7:7777"]}],
    "routes": [{"match": {"rpc_prefix": "/storage."}, "pool": "storage"}, {"pool": "default"}],
}


def check(tmpdir, text):
    path = os.path.join(tmpdir, "c.json")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([binary("drpc-sidecar"), "--check-config", "-c", path],
                       capture_output=True, timeout=10)
    return p.returncode, (p.stdout + p.stderr).decode(), path


def test_issue_example_is_valid(short_tmp):
    code, out, path = check(short_tmp, json.dumps(GOOD, indent=2))
    assert code == 0, out
    assert "ok (1 listeners, 2 pools, 2 routes)" in out


def test_example_json_is_valid():
    p = subprocess.run([binary("drpc-sidecar"), "--check-config", "-c",
                        os.path.join(ROOT, "config", "example.json")], capture_output=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr


CASES = [
    # (description, text, expected "line:col: path: message" fragment)
    ("syntax", '{\n  "listeners": [1,}\n', ":2:19: invalid JSON"),
    ("unknown top key", '{\n  "listners": []\n}', ':2:3: listners: unknown key "listners"'),
    ("wrong type", '{"listeners": {}, "pools": []}', ":1:15: listeners: must be an array"),
    ("range", '{"listeners":[{"address":"127.0.0.1:1"}],\n "pools":[{"name":"p","endpoints":["a:1"],\n  "max_conns": 0}]}',
     ":3:16: pools[0].max_conns: must be between 1 and 65535"),
    ("bad address", '{"listeners":[{"address":"127.0.0.1:99999"}],"pools":[{"name":"p","endpoints":["a:1"]}]}',
     "listeners[0].address: port must be a number between 1 and 65535"),
    ("listener host name", '{"listeners":[{"address":"example.com:1"}],"pools":[{"name":"p","endpoints":["a:1"]}]}',
     "listeners[0].address: a listening address must be an IP address or localhost"),
    ("ipv6 without brackets", '{"listeners":[{"address":"::1:80"}],"pools":[{"name":"p","endpoints":["a:1"]}]}',
     "IPv6 addresses must be written in brackets"),
    ("duplicate pool", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]},\n{"name":"p","endpoints":["b:1"]}],"routes":[{"pool":"p"}]}',
     ':2:9: pools[1].name: duplicate pool name "p"'),
    ("unknown pool", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]}],"routes":[{"pool":"q"}]}',
     'routes[0].pool: no pool named "q"'),
    ("exclusive", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"],"accept":"127.0.0.1:2"}]}',
     'pools[0].accept: "endpoints" and "accept" are exclusive'),
    ("neither", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p"}]}',
     'pools[0]: needs "endpoints"'),
    ("min_idle", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"],"max_conns":2,"min_idle":3}]}',
     "pools[0].min_idle: must not exceed max_conns (2)"),
    ("routes needed", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]},{"name":"q","endpoints":["a:1"]}]}',
     'routes: required when there is more than one pool'),
    ("unreachable", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]}],"routes":[{"pool":"p"},{"pool":"p"}]}',
     "routes[1]: unreachable"),
    ("agent route to dialled pool", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]}],"routes":[{"pool":"p","agent_from_metadata":"k"}]}',
     "routes[0].agent_from_metadata: only applies to routes to a reverse pool"),
    ("duplicate address", '{"listeners":[{"name":"a","address":"127.0.0.1:1"},{"name":"b","address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]}]}',
     "listeners[1].address: 127.0.0.1:1 is already used by listeners[0].address"),
    ("insecure admin", '{"listeners":[{"address":"127.0.0.1:1"}],"admin":{"address":"0.0.0.0:9901"},"pools":[{"name":"p","endpoints":["a:1"]}]}',
     "admin.address: 0.0.0.0:9901 is not a loopback address: set admin.token"),
    ("enum", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"],"cancel":"hard"}]}',
     'pools[0].cancel: must be one of "soft", "close"'),
    ("nested unknown", '{"listeners":[{"address":"127.0.0.1:1"}],"pools":[{"name":"p","endpoints":["a:1"]}],"routes":[{"match":{"rpc_prefx":"/a"},"pool":"p"}]}',
     'routes[0].match.rpc_prefx: unknown key "rpc_prefx"'),
    ("duplicate key", '{"listeners":[{"address":"127.0.0.1:1"}],"listeners":[]}', "invalid JSON: duplicate object key"),
]


@pytest.mark.parametrize("desc,text,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_configs(short_tmp, desc, text, expect):
    code, out, path = check(short_tmp, text)
    assert code == 2, out
    assert out.startswith("drpc-sidecar: invalid config: " + path + ":"), out
    assert expect in out, out


def test_missing_file(short_tmp):
    p = subprocess.run([binary("drpc-sidecar"), "-c", os.path.join(short_tmp, "nope.json")],
                       capture_output=True, timeout=10)
    assert p.returncode == 2
    assert b"cannot open: No such file or directory" in p.stderr


def test_annotations_and_insecure_opt_in(short_tmp):
    cfg = dict(GOOD, _comment="ignored", admin={"address": "0.0.0.0:9901", "allow_insecure": True})
    code, out, _ = check(short_tmp, json.dumps(cfg))
    assert code == 0, out


def test_help_and_version():
    p = subprocess.run([binary("drpc-sidecar"), "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"--check-config" in p.stdout
    p = subprocess.run([binary("drpc-sidecar"), "--version"], capture_output=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith(b"drpc-sidecar ")
    p = subprocess.run([binary("drpc-sidecar")], capture_output=True, timeout=10)
    assert p.returncode == 2 and b"usage:" in p.stderr
