"""Smoke: one unary call through a real drpc-sidecar in front of drpc-testd.
Skipped until `$SIDECAR_BUILD/drpc-sidecar --version` works."""

import pytest

from .procs import basic_config, sidecar_version_ok

OK, WHY = sidecar_version_ok()
pytestmark = pytest.mark.skipif(not OK, reason="drpc-sidecar not usable: %s" % WHY)


def test_unary_through_the_sidecar(testd, sidecar):
    up = testd(ident="up-1")
    sc = sidecar(basic_config(up.addr))
    with sc.conn() as c:
        assert c.unary("/test.Echo/Unary", b"hello") == b"hello"
        assert c.unary("/test.Echo/Identify", b"") == b"up-1"
        assert c.unary("/test.Echo/Unary", b"again") == b"again"
