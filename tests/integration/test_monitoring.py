"""The monitoring shipped under docker/: Prometheus alerting rules that
promtool accepts and whose unit tests pass, a Grafana dashboard, and a
compose setup that provisions both. Every metric an alert or a panel uses
must exist in the real /metrics output (a renamed family would otherwise
leave a silent alert or an empty panel)."""

import json
import os
import re
import shutil
import subprocess
import urllib.request

import pytest

from .procs import SCALE, basic_config, free_addr
from .test_reverse import _try, wait_for

try:
    import yaml
except ImportError:  # Debian: python3-yaml
    yaml = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(ROOT, "docker")
PROM = os.path.join(DOCKER, "prometheus")
ALERTS = os.path.join(PROM, "alerts.yml")
DASHBOARD = os.path.join(DOCKER, "grafana", "dashboards", "drpc-sidecar.json")
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed "
                                    "(apt-get install prometheus; make deps does)")
needs_yaml = pytest.mark.skipif(yaml is None, reason="python3-yaml not installed")

# Families the rules use before the sidecar exports them, and why.
PENDING = {}

METRIC = re.compile(r"\b((?:drpc_sidecar|process)_[a-zA-Z0-9_]+)")


def promtool(*args, cwd=None):
    p = subprocess.run([PROMTOOL] + list(args), capture_output=True, cwd=cwd,
                       timeout=60 * SCALE)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


@needs_promtool
def test_promtool_accepts_the_rules():
    rc, out = promtool("check", "rules", ALERTS)
    assert rc == 0, out
    assert "SUCCESS: 7 rules found" in out


@needs_promtool
def test_promtool_unit_tests_fire_the_alerts():
    rc, out = promtool("test", "rules", "alerts_test.yml", cwd=PROM)
    assert rc == 0, out
    assert "SUCCESS" in out


@needs_promtool
def test_promtool_accepts_the_prometheus_config(tmp_path):
    # the config names the rules where compose mounts them; point it here
    text = open(os.path.join(PROM, "prometheus.yml")).read()
    assert "/etc/prometheus/alerts.yml" in text
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text.replace("/etc/prometheus/alerts.yml", ALERTS))
    rc, out = promtool("check", "config", str(cfg))
    assert rc == 0, out


def rule_exprs():
    return [r["expr"] for g in yaml.safe_load(open(ALERTS))["groups"] for r in g["rules"]]


def panel_exprs():
    dash = json.load(open(DASHBOARD))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def families(text):
    """{name: type} from the # TYPE lines of an exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def used_family(name, fams):
    """The family a name in a query belongs to (histogram series have suffixes)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)] if name.endswith(suffix) else None
        if base and fams.get(base) == "histogram":
            return base
    return name


@needs_yaml
@pytest.mark.timeout_s(60)
def test_every_metric_an_alert_or_panel_uses_exists(testd, sidecar, pyagent, short_tmp, pki):
    # the families that appear only with some config: a reverse pool, an
    # access log, per-RPC accounting after a call, a TLS listener
    cfg = basic_config(testd().addr)
    cfg["listeners"].append({"name": "tls", "address": free_addr(),
                             "tls": {"cert_file": pki.server.cert, "key_file": pki.server.key}})
    agents = free_addr()
    cfg["pools"].append({"name": "agents", "accept": agents, "max_conns": 2})
    cfg["access_log"] = {"path": os.path.join(short_tmp, "access.log")}
    sc = sidecar(cfg)
    pyagent(agents, n=1)
    with sc.conn() as c:
        assert wait_for(lambda: _try(c))
    with urllib.request.urlopen("http://%s/metrics" % sc.admin, timeout=5 * SCALE) as r:
        fams = families(r.read().decode())
    assert "drpc_sidecar_rpc_calls_total" in fams

    for where, exprs in (("alerts.yml", rule_exprs()), ("drpc-sidecar.json", panel_exprs())):
        assert exprs, where
        used = {used_family(n, fams) for e in exprs for n in METRIC.findall(e)}
        assert used, where
        missing = sorted(n for n in used if n not in fams and n not in PENDING)
        assert not missing, "%s uses metrics /metrics does not have: %s" % (where, missing)
    for name in PENDING:
        assert name not in fams, "%s is exported now: make its rule a real one" % name


@needs_yaml
def test_compose_provisions_prometheus_and_grafana():
    compose = yaml.safe_load(open(os.path.join(DOCKER, "docker-compose.yml")))
    services = compose["services"]

    def mounts(svc):
        out = {}
        for v in services[svc]["volumes"]:
            src, dst = v.split(":")[:2]
            path = os.path.normpath(os.path.join(DOCKER, src))
            assert os.path.exists(path), "%s mounts missing %s" % (svc, src)
            out[dst] = path
        return out

    prom = mounts("prometheus")
    prom_cfg = yaml.safe_load(open(prom["/etc/prometheus/prometheus.yml"]))
    for rf in prom_cfg["rule_files"]:
        assert rf in prom, "rule file %s is not mounted" % rf
    # it scrapes the sidecar's admin port
    admin_port = json.load(open(os.path.join(DOCKER, "config.json")))["admin"]["address"]
    targets = [t for sc in prom_cfg["scrape_configs"] for s in sc["static_configs"]
               for t in s["targets"]]
    assert targets == ["sidecar:" + admin_port.rsplit(":", 1)[1]]

    graf = mounts("grafana")
    prov = graf["/etc/grafana/provisioning"]
    ds = yaml.safe_load(open(os.path.join(prov, "datasources", "prometheus.yml")))
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090"
    boards = yaml.safe_load(open(os.path.join(prov, "dashboards", "drpc-sidecar.yml")))
    (provider,) = boards["providers"]
    assert provider["options"]["path"] in graf
    dash = json.load(open(DASHBOARD))
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
