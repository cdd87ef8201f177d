"""Packaging: make install, the man page, the systemd unit, the Dockerfile,
the compose file and the Kubernetes manifest.

No Docker engine or systemd runs here, so the files are parsed and
cross-checked against the real thing: the admin paths the probes, the
HEALTHCHECK and the preStop hook use are called on a running drpc-sidecar
started with the container configs; the runtime packages of the image are
compared with what the binary links; the man page is compared with
`drpc-sidecar --help`; `make install-files` installs into a temp dir.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from .procs import free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SIDECAR_BUILD", os.path.join(ROOT, "build"))
SIDECAR = os.path.join(BUILD, "drpc-sidecar")
DOCKER = os.path.join(ROOT, "docker")
UNIT = os.path.join(ROOT, "config", "drpc-sidecar.service")
MAN = os.path.join(ROOT, "config", "drpc-sidecar.1")
K8S = os.path.join(DOCKER, "k8s", "drpc-sidecar.yaml")

try:
    import yaml
except ImportError:  # Debian: python3-yaml
    yaml = None

needs_yaml = pytest.mark.skipif(yaml is None, reason="python3-yaml not installed")
needs_sidecar = pytest.mark.skipif(not os.access(SIDECAR, os.X_OK),
                                   reason="no drpc-sidecar binary in %s" % BUILD)
needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")

ADMIN_PATHS = {"/healthz", "/readyz", "/drain", "/pools", "/calls", "/metrics"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_k8s():
    docs = [d for d in yaml.safe_load_all(read(K8S)) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment"]
    dep = by_kind["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    sidecar = [c for c in pod["containers"] + pod.get("initContainers", [])
               if c["name"] == "drpc-sidecar"][0]
    return by_kind["ConfigMap"], pod, sidecar


def dockerfile_stages():
    """[(from_line, [instructions])] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", read(os.path.join(DOCKER, "Dockerfile")))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        else:
            assert stages, "instruction before FROM: " + line
            stages[-1][1].append(line)
    return stages


def run_steps(instructions):
    """The shell commands of every RUN, split on &&, whitespace-normalised."""
    steps = []
    for ins in instructions:
        if ins.upper().startswith("RUN "):
            steps += [" ".join(s.split()) for s in ins[4:].split("&&")]
    return steps


# --- YAML ----------------------------------------------------------------

@needs_yaml
def test_every_yaml_under_docker_parses():
    files = sorted(glob.glob(os.path.join(DOCKER, "**", "*.y*ml"), recursive=True))
    assert files, "no YAML under docker/"
    for path in files:
        docs = [d for d in yaml.safe_load_all(read(path)) if d is not None]
        assert docs, path + ": empty"
        for d in docs:
            assert isinstance(d, dict), path


MONITORING_SERVICES = ("prometheus", "grafana")


@needs_yaml
def test_compose_services_run_what_the_image_installs():
    compose = yaml.safe_load(read(os.path.join(DOCKER, "docker-compose.yml")))
    services = compose["services"]
    assert set(services) == {"upstream", "sidecar", "legacy-client", "prometheus", "grafana"}
    installed = image_binaries()
    images = set()
    for name, svc in services.items():
        if name in MONITORING_SERVICES:
            continue  # stock images; test_monitoring.py checks what they load
        assert svc["build"]["dockerfile"] == "docker/Dockerfile", name
        assert os.path.normpath(os.path.join(DOCKER, svc["build"]["context"])) == ROOT, name
        images.add(svc.get("image"))
        entry = svc.get("entrypoint")
        if entry:
            assert entry[0] in installed, "%s runs %s, not in the image" % (name, entry[0])
        if name != "sidecar":
            # the image's HEALTHCHECK probes the sidecar's admin port: other
            # services turn it off or share the sidecar's network namespace
            assert (svc.get("healthcheck", {}).get("disable") is True
                    or svc.get("network_mode") == "service:sidecar"), name
    assert len(images) == 1, "one image for every service: %s" % images

    # the sidecar's upstream is the upstream service at the port it listens on
    cfg = json.loads(read(os.path.join(DOCKER, "config.json")))
    testd_listen = services["upstream"]["entrypoint"]
    port = testd_listen[testd_listen.index("--listen") + 1].rsplit(":", 1)[1]
    assert cfg["pools"][0]["endpoints"] == ["upstream:%s" % port]

    # the peer tools take literal addresses only (no DNS): the demo client
    # must reach the sidecar on an IP, i.e. from inside its network namespace
    client = services["legacy-client"]
    args = client["entrypoint"] + client.get("command", [])
    addr = args[args.index("--addr") + 1]
    assert re.fullmatch(r"(127\.0\.0\.1|localhost):\d+", addr), addr
    assert client.get("network_mode") == "service:sidecar"
    listen_ports = {l["address"].rsplit(":", 1)[1] for l in cfg["listeners"]}
    assert addr.rsplit(":", 1)[1] in listen_ports
    dep = client["depends_on"]
    assert dep["sidecar"]["condition"] == "service_healthy"


@needs_yaml
@needs_sidecar
def test_kubernetes_manifest():
    cm, pod, sc = load_k8s()
    cfg_text = cm["data"]["config.json"]
    cfg = json.loads(cfg_text)
    assert sc["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sc["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        port = sc[probe]["httpGet"]["port"]
        assert ports.get(port, port) == int(cfg["admin"]["address"].rsplit(":", 1)[1])
    mounts = {m["name"]: m["mountPath"] for m in sc["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    cfg_arg = sc["args"][sc["args"].index("-c") + 1]
    (vol,) = [n for n, path in mounts.items() if cfg_arg.startswith(path + "/")]
    assert vols[vol]["configMap"]["name"] == cm["metadata"]["name"]
    assert os.path.basename(cfg_arg) in cm["data"]

    # a non-loopback admin address needs a token (POST /drain then needs it)
    assert not cfg["admin"].get("allow_insecure"), "k8s admin is reachable pod-wide"
    assert cfg["admin"].get("token")

    # the preStop drain outlasts shutdown_grace_ms, and the pod's grace
    # period outlasts the preStop hook
    script = " ".join(sc["lifecycle"]["preStop"]["exec"]["command"])
    assert re.search(r"curl\b[^\n]*-X POST[^\n]*http://127\.0\.0\.1:9901/drain", script)
    for path in re.findall(r"http://127\.0\.0\.1:9901(/\w+)", script):
        assert path in ADMIN_PATHS, path
    sleep = int(re.search(r"sleep (\d+)", script).group(1))
    grace_ms = cfg.get("shutdown_grace_ms", 10000)
    assert sleep * 1000 > grace_ms
    assert pod["terminationGracePeriodSeconds"] > sleep

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            f.write(cfg_text)
        p = subprocess.run([SIDECAR, "--check-config", "-c", path], capture_output=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr


# --- the admin paths, called on a running sidecar -------------------------

class Running:
    """drpc-sidecar started on a container config rewritten to free loopback
    ports (listeners, admin; endpoints point at a closed local port)."""

    def __init__(self, cfg, tmp):
        self.admin_port = free_port()
        cfg = json.loads(json.dumps(cfg))
        cfg["admin"]["address"] = "127.0.0.1:%d" % self.admin_port
        for l in cfg["listeners"]:
            l["address"] = "127.0.0.1:%d" % free_port()
        for p in cfg["pools"]:
            p["endpoints"] = ["127.0.0.1:%d" % free_port()]
            p["min_idle"] = 0
        self.path = os.path.join(tmp, "config.json")
        with open(self.path, "w") as f:
            json.dump(cfg, f)
        self.log = open(os.path.join(tmp, "sidecar.log"), "w+")
        self.proc = subprocess.Popen([SIDECAR, "-c", self.path], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, "sidecar exited: " + self.output()
            try:
                if self.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "admin never answered: " + self.output()
            time.sleep(0.05)

    def get(self, path):
        url = "http://127.0.0.1:%d%s" % (self.admin_port, path)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def local(self, text):
        """Rewrites the container's admin address and config path to ours."""
        text = text.replace("127.0.0.1:9901", "127.0.0.1:%d" % self.admin_port)
        return text.replace("/etc/drpc-sidecar/config.json", self.path)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(15) is None:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@needs_sidecar
@needs_curl
def test_dockerfile_healthcheck_hits_healthz():
    stages = dockerfile_stages()
    hc = [i for i in stages[-1][1] if i.upper().startswith("HEALTHCHECK")]
    assert len(hc) == 1
    cmd = re.search(r"\bCMD\s+(.*)$", hc[0]).group(1)
    assert "/healthz" in cmd
    with tempfile.TemporaryDirectory() as tmp:
        sc = Running(json.loads(read(os.path.join(DOCKER, "config.json"))), tmp)
        try:
            p = subprocess.run(["sh", "-c", sc.local(cmd)], capture_output=True, timeout=10)
            assert p.returncode == 0, p.stderr
        finally:
            sc.stop()
        assert sc.proc.returncode == 0, sc.output()


@needs_yaml
@needs_sidecar
@needs_curl
def test_kubernetes_probes_and_prestop_drain_a_real_sidecar():
    cm, pod, spec = load_k8s()
    with tempfile.TemporaryDirectory() as tmp:
        sc = Running(json.loads(cm["data"]["config.json"]), tmp)
        try:
            for probe in ("readinessProbe", "livenessProbe"):
                status, _ = sc.get(spec[probe]["httpGet"]["path"])
                assert status == 200, probe
            # POST without the token is refused: the drain needs it
            p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X",
                                "POST", sc.local("http://127.0.0.1:9901/drain")],
                               capture_output=True, timeout=10)
            assert p.stdout == b"401"
            cmd = [sc.local(a) for a in spec["lifecycle"]["preStop"]["exec"]["command"]]
            cmd[-1] = re.sub(r"\bsleep \d+", "true", cmd[-1])
            p = subprocess.run(cmd, capture_output=True, timeout=20)
            assert p.returncode == 0, p.stderr
            # drained: no calls in flight, so it exits 0 well within the grace
            assert sc.wait(10) == 0, sc.output()
        finally:
            sc.stop()


# --- Dockerfile -------------------------------------------------------------

def test_dockerfile_builds_like_ci():
    stages = dockerfile_stages()
    assert len(stages) == 2
    (build_from, build), (run_from, runtime) = stages
    assert re.fullmatch(r"FROM debian:bookworm AS build", build_from)
    assert run_from == "FROM debian:bookworm-slim"
    steps = run_steps(build)
    # the same make targets as CI, in order, then the file-only install
    ci = read(os.path.join(ROOT, ".ci", "run"))
    assert re.search(r"^make deps$", ci, re.M) and "make test" in ci
    want = ["make deps", "make", "make install-files DESTDIR=/out PREFIX=/usr/local"]
    idx = [steps.index(w) for w in want]
    assert idx == sorted(idx), steps
    # host build output never reaches the build: ignored and removed
    assert any(re.fullmatch(r"rm -rf build build-\*", s) for s in steps[:idx[0]]), steps
    ignore = read(os.path.join(DOCKER, "Dockerfile.dockerignore")).split()
    assert "build" in ignore and "build-*" in ignore and ".git" in ignore
    assert any(i == "COPY --from=build /out/ /" for i in runtime)
    users = [i.split()[1] for i in runtime if i.startswith("USER ")]
    assert users and users[-1] == "drpc", users
    assert [i for i in runtime if i.startswith("ENTRYPOINT")] == [
        'ENTRYPOINT ["/usr/local/bin/drpc-sidecar"]']
    cfg = json.loads(read(os.path.join(DOCKER, "config.json")))
    exposed = {p for i in runtime if i.startswith("EXPOSE ") for p in i.split()[1:]}
    ports = {a["address"].rsplit(":", 1)[1] for a in cfg["listeners"]}
    ports.add(cfg["admin"]["address"].rsplit(":", 1)[1])
    assert ports <= exposed, (ports, exposed)


@needs_sidecar
def test_container_config_is_valid():
    p = subprocess.run([SIDECAR, "--check-config", "-c", os.path.join(DOCKER, "config.json")],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr


def image_binaries():
    """Absolute paths of the executables the image installs."""
    steps = run_steps(dockerfile_stages()[0][1])
    bins = {"/usr/local/bin/drpc-sidecar"}  # make install-files PREFIX=/usr/local
    for s in steps:
        if s.startswith("install ") and s.endswith("/out/usr/local/bin/"):
            for a in s.split()[1:-1]:
                if not a.startswith("-") and not a.isdigit():
                    bins.add("/usr/local/bin/" + os.path.basename(a))
    return bins


@needs_sidecar
def test_image_installs_the_peer_tools_that_exist():
    bins = image_binaries()
    for b in ("drpc-testd", "drpc-call", "drpc-bench"):
        assert "/usr/local/bin/" + b in bins, b
        assert os.access(os.path.join(BUILD, b), os.X_OK), b


@needs_sidecar
@pytest.mark.skipif(not shutil.which("ldd") or not shutil.which("dpkg"),
                    reason="needs ldd and dpkg")
def test_runtime_stage_installs_the_libraries_the_binary_links():
    runtime = dockerfile_stages()[-1][1]
    apt = [s for s in run_steps(runtime) if s.startswith("apt-get install")]
    assert len(apt) == 1
    pkgs = {w for w in apt[0].split()[2:] if not w.startswith("-")}
    out = subprocess.run(["ldd", SIDECAR], capture_output=True, text=True, check=True).stdout
    needed = set()
    for line in out.splitlines():
        m = re.search(r"=> (/\S+)", line)
        if not m:
            continue
        real = os.path.realpath(m.group(1))
        owner = None
        for cand in (m.group(1), real, real.replace("/usr/lib/", "/lib/", 1)):
            p = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if p.returncode == 0:
                owner = p.stdout.split(":")[0]
                break
        assert owner, "no package owns " + m.group(1)
        needed.add(owner)
    needed.discard("libc6")  # in every Debian image
    if any(n.startswith("libasan") or n.startswith("libubsan") for n in needed):
        pytest.skip("sanitizer build: links sanitizer runtimes")
    assert needed <= pkgs, "runtime stage misses %s" % sorted(needed - pkgs)
    assert pkgs - needed <= {"curl", "ca-certificates"}, "extra: %s" % sorted(pkgs - needed)


# --- man page -------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
def test_man_page_renders_without_warnings():
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-rLL=80n", "-P-c", MAN],
                       capture_output=True, timeout=30)
    assert p.returncode == 0
    assert p.stderr == b"", p.stderr.decode(errors="replace")
    text = re.sub(".\x08", "", p.stdout.decode())  # overstrike bold/underline
    text = re.sub("\x1b\\[[0-9;]*m", "", text)  # SGR, should grotty use it anyway
    text = text.replace("\u2010", "-").replace("\u2212", "-")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES",
                    "EXIT STATUS", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section
    for word in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "/etc/drpc-sidecar/config.json"):
        assert word in text, word


@needs_sidecar
def test_man_page_documents_every_option_of_help():
    p = subprocess.run([SIDECAR, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    opts = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", p.stdout))
    assert {"-c", "--config", "--check-config", "-v", "-h", "-V"} <= opts
    man = read(MAN).replace("\\-", "-")
    for o in opts:
        assert re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), man), o + " not in the man page"
    # and the exit statuses main() uses
    for word in ("0", "1", "2"):
        assert re.search(r"\b%s\b" % word, man.split(".SH EXIT STATUS", 1)[1].split(".SH")[0])


# --- systemd unit ---------------------------------------------------------

def test_systemd_unit():
    unit = read(UNIT)
    lines = {l.strip() for l in unit.splitlines()}
    for want in ("Type=notify",
                 "ExecStart=/usr/local/bin/drpc-sidecar -c /etc/drpc-sidecar/config.json",
                 "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
                 "Restart=on-failure", "DynamicUser=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "RuntimeDirectory=drpc-sidecar", "CapabilityBoundingSet=",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "SystemCallFilter=@system-service", "LimitNOFILE=65536"):
        assert want in lines, want
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
    assert stop > 10  # above the default shutdown_grace_ms (10 s)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verify():
    p = subprocess.run(["systemd-analyze", "verify", UNIT], capture_output=True, text=True,
                       timeout=60)
    # Outside an installed system the binary and its man page are missing;
    # anything else (unknown keys, bad values) is a finding.
    rest = [l for l in p.stderr.splitlines()
            if l.strip() and "is not executable" not in l
            and "Command 'man drpc-sidecar(1)' failed" not in l]
    assert not rest, "\n".join(rest)


# --- make install-files -----------------------------------------------------

@needs_sidecar
def test_make_install_files_into_destdir():
    probe = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "-n", "install-files",
                            "B=" + BUILD], capture_output=True, text=True, timeout=60)
    if "No rule to make target" in probe.stderr:
        pytest.skip("the Makefile has no install-files target yet")
    with tempfile.TemporaryDirectory() as dest:
        p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install-files",
                            "B=" + BUILD, "DESTDIR=" + dest, "PREFIX=/usr"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        files = {
            "usr/bin/drpc-sidecar": 0o755,
            "usr/share/man/man1/drpc-sidecar.1": 0o644,
            "usr/share/drpc-sidecar/example.json": 0o644,
            "usr/lib/systemd/system/drpc-sidecar.service": 0o644,
        }
        for rel, mode in files.items():
            path = os.path.join(dest, rel)
            assert os.path.isfile(path), rel
            assert os.stat(path).st_mode & 0o777 == mode, rel
        # nothing outside DESTDIR, nothing else inside it
        found = {os.path.relpath(os.path.join(d, f), dest)
                 for d, _, fs in os.walk(dest) for f in fs}
        assert found == set(files)
        v = subprocess.run([os.path.join(dest, "usr/bin/drpc-sidecar"), "--version"],
                           capture_output=True, text=True, timeout=10)
        assert v.returncode == 0 and v.stdout.strip(), v
        ex = subprocess.run([os.path.join(dest, "usr/bin/drpc-sidecar"), "--check-config", "-c",
                             os.path.join(dest, "usr/share/drpc-sidecar/example.json")],
                            capture_output=True, timeout=10)
        assert ex.returncode == 0, ex.stderr


# --- docs -------------------------------------------------------------------

DOCS = ["README.md", "config/README.md", "proxy/README.md", "admin/README.md",
        "docker/README.md", "tests/README.md", "tests/data/drpc-transcripts/README.md"]


def _anchors(text):
    """GitHub's heading anchors of a markdown text."""
    out = set()
    for h in re.findall(r"^#+ (.+)$", text, re.M):
        a = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        out.add(a)
    return out


def test_docs_sit_beside_their_code_and_every_link_resolves():
    """README.md is the front door; each module documents itself, and every
    relative link between the documents names a file (and heading) that
    exists."""
    assert len(read(os.path.join(ROOT, "README.md")).splitlines()) <= 200
    bad = []
    for doc in DOCS:
        path = os.path.join(ROOT, doc)
        text = read(path)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(dest):
                bad.append("%s: %s" % (doc, target))
            elif anchor and anchor not in _anchors(read(dest)):
                bad.append("%s: %s (no such heading)" % (doc, target))
    assert not bad, bad
    proxy = read(os.path.join(ROOT, "proxy", "README.md"))
    for section in ("## State machines", "## Per-loop context, process and transport",
                    "## Errors the sidecar sends", "## Reverse pools: agents that dial in"):
        assert section in proxy, section
