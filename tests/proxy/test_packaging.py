"""Packaging: make install, the man page, the systemd unit, the Dockerfile,
the compose file and the Kubernetes manifest (no Docker engine here: the
files are parsed and cross-checked against the real admin API paths)."""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import BUILD, ROOT

yaml = pytest.importorskip("yaml")

ADMIN_PATHS = {"/healthz", "/readyz", "/drain", "/pools", "/calls", "/metrics"}


def test_make_install_files():
    with tempfile.TemporaryDirectory() as dest:
        p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install-files",
                            "B=" + BUILD, "DESTDIR=" + dest, "PREFIX=/usr"],
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        for f in ("usr/bin/drpc-sidecar", "usr/share/man/man1/drpc-sidecar.1",
                  "usr/share/drpc-sidecar/example.json",
                  "usr/lib/systemd/system/drpc-sidecar.service"):
            assert os.path.exists(os.path.join(dest, f)), f
        assert os.access(os.path.join(dest, "usr/bin/drpc-sidecar"), os.X_OK)


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
def test_man_page_renders_cleanly():
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", os.path.join(ROOT, "config",
                                                                       "drpc-sidecar.1")],
                       capture_output=True, timeout=30)
    assert p.returncode == 0
    assert p.stderr == b"", p.stderr
    text = re.sub(".\x08", "", p.stdout.decode())  # drop overstrike bold/underline
    for word in ("SYNOPSIS", "--check-config", "SIGHUP", "SIGUSR1", "EXIT STATUS"):
        assert word.replace("-", "") in text.replace("\u2010", "-").replace("-", "")


def test_systemd_unit():
    unit = open(os.path.join(ROOT, "config", "drpc-sidecar.service")).read()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes",
                 "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert line in unit
    if shutil.which("systemd-analyze"):
        p = subprocess.run(["systemd-analyze", "verify", os.path.join(ROOT, "config",
                                                                       "drpc-sidecar.service")],
                           capture_output=True, timeout=30)
        assert b"Unknown key" not in p.stderr and b"Unknown section" not in p.stderr, p.stderr


def test_dockerfile_builds_like_ci():
    df = open(os.path.join(ROOT, "docker", "Dockerfile")).read()
    assert re.search(r"make deps && make && make install-files", df)
    assert "FROM debian:bookworm AS build" in df and "FROM debian:bookworm-slim" in df
    assert re.search(r"^USER drpc$", df, re.M)
    assert "HEALTHCHECK" in df and "/healthz" in df
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "make deps" in ci and "make test" in ci


def test_container_config_is_valid():
    p = subprocess.run([os.path.join(BUILD, "drpc-sidecar"), "--check-config", "-c",
                        os.path.join(ROOT, "docker", "config.json")], capture_output=True)
    assert p.returncode == 0, p.stderr


def test_compose_and_kubernetes_manifests():
    compose = yaml.safe_load(open(os.path.join(ROOT, "docker", "docker-compose.yml")))
    assert set(compose["services"]) == {"upstream", "sidecar", "legacy-client"}
    docs = list(yaml.safe_load_all(open(os.path.join(ROOT, "docker", "k8s",
                                                      "drpc-sidecar.yaml"))))
    kinds = {d["kind"] for d in docs}
    assert kinds == {"ConfigMap", "Deployment"}
    dep = [d for d in docs if d["kind"] == "Deployment"][0]
    sidecar = [c for c in dep["spec"]["template"]["spec"]["containers"]
               if c["name"] == "drpc-sidecar"][0]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre = " ".join(sidecar["lifecycle"]["preStop"]["exec"]["command"])
    assert "/drain" in pre
    for path in re.findall(r"http://127.0.0.1:9901(/\w+)", pre):
        assert path in ADMIN_PATHS
    cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(cm["data"]["config.json"])
    try:
        p = subprocess.run([os.path.join(BUILD, "drpc-sidecar"), "--check-config", "-c", f.name],
                           capture_output=True)
        assert p.returncode == 0, p.stderr
    finally:
        os.unlink(f.name)
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace * 1000 > 20000  # above the ConfigMap's shutdown_grace_ms
