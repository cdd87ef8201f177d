"""The dashboard in a real browser: headless Chromium renders GET / while calls
are in flight; the rendered DOM must show the pool bar and the call rows. A
screenshot is kept under the build directory for people to look at."""

import os
import shutil
import subprocess
import tempfile

import pytest

import drpc
from conftest import BUILD, basic_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)")
def test_dashboard_shows_pools_and_calls(upstream, sidecar):
    sc = sidecar(basic_config(upstream.addr, max_conns=2, wait_timeout_ms=20000))
    held = []
    for _ in range(3):
        c = drpc.Conn(sc.addr)
        c.start_unary("/test.Echo/Sleep", b"8000")
        held.append(c)
    url = "http://%s/" % sc.admin
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM] + FLAGS + ["--user-data-dir=" + profile, "--virtual-time-budget=8000",
                                  "--dump-dom", url],
            capture_output=True, timeout=60)
        html = dom.stdout.decode(errors="replace")
        body = html[html.find("<main>"):html.find("<script>")]
        html = body
        assert 'class="pool" data-pool="default"' in html, html[:3000]
        assert html.count('class="call"') == 3, html[:3000]
        assert "/test.Echo/Sleep" in html
        assert 'class="busy" style="width:100%' in html  # 2 of 2 connections busy
        shot = os.path.join(BUILD, "dashboard.png")
        subprocess.run(
            [CHROMIUM] + FLAGS + ["--user-data-dir=" + profile, "--virtual-time-budget=8000",
                                  "--window-size=1280,800", "--screenshot=" + shot, url],
            capture_output=True, timeout=60)
        assert os.path.getsize(shot) > 10000
    for c in held:
        c.close()
