"""The dashboard in a real browser: headless Chromium loads GET / while calls
are in flight and runs the page's own fetches (--virtual-time-budget); the
rendered DOM must show the pool bar at the right fill and one row per
in-flight call, oldest first. A screenshot is left at
$SIDECAR_BUILD/dashboard.png for people to look at."""

import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from . import drpc
from .procs import SCALE, basic_config, build_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM, reason="chromium is not installed (apt-get install chromium; make deps does)")


def chromium(profile, *args):
    return subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile] + list(args),
                          capture_output=True, timeout=90 * SCALE)


@pytest.mark.timeout_s(120)
def test_dashboard_shows_pools_endpoints_and_calls(testd, sidecar):
    up = testd()
    cfg = basic_config(up.addr, max_conns=2, wait_timeout_ms=60000)
    sc = sidecar(cfg)
    # two calls hold both connections, a third waits: a full bar and a waiter
    held = []
    for _ in range(3):
        c = sc.conn()
        c.start_unary("/test.Echo/Sleep", b"30000")
        held.append(c)
    try:
        check_page(sc, up)
    finally:
        for c in held:
            c.close()


def check_page(sc, up):
    url = "http://%s/" % sc.admin
    with tempfile.TemporaryDirectory() as profile:
        dom = chromium(profile, "--virtual-time-budget=3000", "--dump-dom", url)
        html = dom.stdout.decode(errors="replace")
        assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
        main = html[html.find("<main>"):html.find("</main>")]
        assert main, html[:2000]
        # the pool bar: 2 of 2 busy, nothing idle or connecting, one waiting call
        start = main.find('<div class="pool" data-pool="default">')
        assert start >= 0, main[:3000]
        bar = main[start:main.find("</section>", start)]
        assert 'class="busy" style="width:100%"' in bar, bar
        assert 'class="idle" style="width:0%"' in bar
        assert 'class="connecting" style="width:0%"' in bar
        assert 'class="waiting" style="width:50%"' in bar  # 1 waiter against max 2
        assert '<b class="waiters">1</b>' in bar
        # endpoint health
        assert re.search(r"<td>%s</td><td>[^<]*</td><td><span class=\"badge b-ok\">healthy"
                         % re.escape(up.addr), main), main[:3000]
        # one row per call in flight, oldest first, with its state
        rows = re.findall(r'<tr class="call[^"]*" data-id="(\d+)">(.*?)</tr>', main, re.S)
        assert len(rows) == 3, main[:3000]
        assert [int(i) for i, _ in rows] == sorted(int(i) for i, _ in rows)
        assert all("/test.Echo/Sleep" in r for _, r in rows)
        states = sorted(re.search(r'<span class="badge [^"]*">(\w+)</span>', r).group(1)
                        for _, r in rows)
        assert states == ["half_closed", "half_closed", "waiting"]
        assert "(3)" in main  # the count next to the heading
        assert '<span id="err"></span>' in html  # no fetch failed

        screenshot(profile, url, "dashboard.png", "1280,800")


def screenshot(profile, url, name, size):
    """Leaves the rendered page at $SIDECAR_BUILD/name for people to look at."""
    shot = os.path.join(build_dir() or tempfile.gettempdir(), name)
    if os.path.exists(shot):
        os.unlink(shot)
    r = chromium(profile, "--virtual-time-budget=3000", "--window-size=" + size,
                 "--hide-scrollbars", "--screenshot=" + shot, url)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert os.path.getsize(shot) > 10000


def test_dashboard_is_self_contained(testd, sidecar):
    """Nothing is loaded from anywhere else, and the page says so to browsers."""
    import http.client

    up = testd()
    sc = sidecar(basic_config(up.addr))
    host, port = sc.admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5 * SCALE)
    conn.request("GET", "/")
    r = conn.getresponse()
    page = r.read().decode()
    conn.close()
    assert r.status == 200 and r.getheader("Content-Type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in r.getheader("Content-Security-Policy")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page), "external reference"
    assert "@import" not in page and "url(" not in page
    assert page.isascii()


def series_points(html, pool, field):
    m = re.search(r'<polyline class="series" data-series="%s %s" data-points="([^"]*)"'
                  % (re.escape(pool), field), html)
    assert m, "no %s %s series in:\n%s" % (pool, field, html[:3000])
    return [float(v) for v in m.group(1).split(",")] if m.group(1) else []


@pytest.mark.timeout_s(150)
def test_dashboard_charts_show_an_error_burst(testd, sidecar):
    """Calls for 3 s, then 2 s of nothing but errors, then 3 s of calls
    again; a page opened afterwards draws all of it at once from /history:
    the error series is zero, then a burst, then zero, while throughput
    never stops. Leaves $SIDECAR_BUILD/dashboard-history.png."""
    up = testd()
    sc = sidecar(basic_config(up.addr))
    bursts = {"ok": 0, "error": 0}

    def run(c, seconds, rpc, data, kind):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                c.unary(rpc, data)
            except drpc.DrpcError as e:
                assert e.code == 7
            bursts[kind] += 1
            time.sleep(0.005)

    with sc.conn() as c:
        run(c, 3, "/test.Echo/Unary", b"x", "ok")
        run(c, 2, "/test.Echo/Error", b"7 burst", "error")
        run(c, 3, "/test.Echo/Unary", b"x", "ok")
    time.sleep(1.5)  # the last second is sampled

    url = "http://%s/" % sc.admin
    with tempfile.TemporaryDirectory() as profile:
        dom = chromium(profile, "--virtual-time-budget=3000", "--dump-dom", url)
        html = dom.stdout.decode(errors="replace")
        assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
        assert '<span id="err"></span>' in html, html[:2000]

        errors = series_points(html, "default", "app_errors")
        calls = series_points(html, "default", "calls")
        assert len(errors) == len(calls) >= 8
        assert sum(errors) == bursts["error"]
        assert sum(calls) == bursts["ok"] + bursts["error"]
        hot = [i for i, v in enumerate(errors) if v > 0]
        # one burst, in the middle: quiet seconds with calls before and after it
        assert hot and hot == list(range(hot[0], hot[-1] + 1)), errors
        assert 1 <= len(hot) <= 4, errors
        assert any(calls[i] > 0 for i in range(hot[0])), (calls, errors)
        assert any(calls[i] > 0 for i in range(hot[-1] + 1, len(calls))), (calls, errors)
        assert max(errors) > 10 * max(errors[:hot[0]] + errors[hot[-1] + 1:] + [0.1])
        assert set(series_points(html, "default", "max")) == {4}
        assert max(series_points(html, "default", "call_p99_ms")) > 0
        for name in ("throughput", "errors", "latency", "connections"):
            assert 'data-chart="%s"' % name in html
        # the top RPCs table: the two RPCs that ran
        main = html[html.find("<main>"):html.find("</main>")]
        rows = re.findall(r'<tr class="rpc" data-rpc="([^"]*)">', main)
        assert set(rows) == {"/test.Echo/Unary", "/test.Echo/Error"}, rows

        screenshot(profile, url, "dashboard-history.png", "1280,1100")


@pytest.mark.timeout_s(120)
def test_dashboard_lists_certificates_expiring_within_14_days(testd, sidecar, pki):
    up = testd()
    cfg = basic_config(up.addr)
    cfg["listeners"][0]["tls"] = {"cert_file": pki.soon.cert, "key_file": pki.soon.key,
                                  "client_ca_file": pki.ca.cert}
    sc = sidecar(cfg)
    url = "http://%s/" % sc.admin
    with tempfile.TemporaryDirectory() as profile:
        dom = chromium(profile, "--virtual-time-budget=3000", "--dump-dom", url)
        html = dom.stdout.decode(errors="replace")
        assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
        html = html[html.find("<main>"):html.find("</main>")]
        rows = re.findall(r'<tr class="cert" data-file="([^"]*)">(.*?)</tr>', html, re.S)
        # the 5-day certificate, not the 30-day CA
        assert [f for f, _ in rows] == [pki.soon.cert], (rows, pki.soon.cert)
        assert "CN=soon" in rows[0][1], rows
        assert re.search(r'class="badge b-warn">(4\.9|5\.0)<', rows[0][1]), rows
        assert "(1 of 2)" in html
