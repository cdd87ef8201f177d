"""Runs every cmocka unit-test binary of the build as one pytest test each."""

import glob
import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("SIDECAR_BUILD", os.path.join(ROOT, "build"))
# One binary per tests/unit/test_*.c: a binary left in the build directory by
# a source that is gone must not run as if it still belonged to the suite.
SOURCES = sorted(glob.glob(os.path.join(ROOT, "tests", "unit", "test_*.c")))
BINARIES = [os.path.join(BUILD, "tests", os.path.basename(s)[:-2]) for s in SOURCES]


@pytest.mark.parametrize("path", BINARIES, ids=[os.path.basename(p) for p in BINARIES])
def test_unit_binary(path):
    env = dict(os.environ)
    env.setdefault("DRPC_TRANSCRIPTS", os.path.join(ROOT, "tests", "data", "drpc-transcripts"))
    cmd = [path]
    if os.environ.get("SIDECAR_VALGRIND") == "1":
        cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full",
               "--errors-for-leak-kinds=definite", "--quiet"] + cmd
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out
    assert "PASSED" in out or "[  PASSED  ]" in out, out


def test_unit_binaries_were_built():
    assert SOURCES, "no tests/unit/test_*.c"
    missing = [b for b in BINARIES if not os.access(b, os.X_OK)]
    assert not missing, "not built (run make first): %s" % missing
