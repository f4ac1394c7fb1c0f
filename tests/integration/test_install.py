"""test_install.py - installing without containers (docs/OPERATIONS.md,
"Installing without containers"): `make install` into a scratch DESTDIR
lays out the binaries, man pages, systemd units, the sysusers.d entry and
the example configuration; `systemd-analyze verify` accepts the installed
units; the man pages list every environment variable the programs read;
`make uninstall` removes what install wrote; and the daemons tell systemd
they are ready (sd_notify READY=1 on a NOTIFY_SOCKET the test owns) only
once their port answers.
"""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

import echofs_harness as h

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/usr/local"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
BIN_DIR = Path(os.environ.get("ECHOFS_BIN_DIR", ROOT / "bin"))

EXPECTED = {
    "bin/echofs-master": 0o755,
    "bin/echofs-worker": 0o755,
    "bin/echofs": 0o755,
    "share/man/man1/echofs.1": 0o644,
    "share/man/man8/echofs-master.8": 0o644,
    "share/man/man8/echofs-worker.8": 0o644,
    "lib/systemd/system/echofs-master.service": 0o644,
    "lib/systemd/system/echofs-worker@.service": 0o644,
    "lib/sysusers.d/echofs.conf": 0o644,
    "share/doc/echofs/examples/master.env.example": 0o644,
    "share/doc/echofs/examples/worker.env.example": 0o644,
    "share/doc/echofs/examples/worker-2.env.example": 0o644,
    "share/doc/echofs/examples/echofs.rules.yml": 0o644,
    "share/doc/echofs/examples/echofs-grafana.json": 0o644,
    "share/doc/echofs/OPERATIONS.md": 0o644,
    "share/doc/echofs/API.md": 0o644,
    "share/doc/echofs/MONITORING.md": 0o644,
}

# Which sources' variables each man page must list. src/common/config.c
# holds the TLS variables both daemons read (efs_env_tls).
MAN_SOURCES = {
    "echofs-master.8": ["src/master/config.c", "src/common/config.c"],
    "echofs-worker.8": ["src/worker/config.c", "src/common/config.c"],
    "echofs.1": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src/cli").glob("*.c")),
}
ENV_READ = re.compile(r'\b(?:efs_env_\w+|env_file|getenv|secure_getenv)\(\s*"([A-Z][A-Z0-9_]*)"')


def make(*args: str, **kw) -> subprocess.CompletedProcess:
    """make in the repository, with the sanitizer build's variables when the
    suite runs on sanitized binaries (so install takes those, already built)."""
    extra = [f"SANITIZE={os.environ['ECHOFS_SANITIZE']}"] if os.environ.get("ECHOFS_SANITIZE") else []
    return subprocess.run(["make", "--no-print-directory", "-s", *extra, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    r = make("install", f"DESTDIR={d}", f"PREFIX={PREFIX}")
    assert r.returncode == 0, f"make install failed:\n{r.stdout}\n{r.stderr}"
    return d


def installed(destdir: Path) -> Path:
    return destdir / PREFIX.lstrip("/")


def built_with_libsystemd() -> bool:
    r = subprocess.run(["readelf", "-d", str(BIN_DIR / "echofs-master")], capture_output=True,
                       text=True)
    return "libsystemd" in r.stdout


def test_install_lays_out_every_file_with_its_mode(destdir):
    root = installed(destdir)
    problems = []
    for rel, mode in EXPECTED.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_mode & 0o777 != mode:
            problems.append(f"{rel}: mode {oct(p.stat().st_mode & 0o777)}, want {oct(mode)}")
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    extra = [f for f in found if f not in EXPECTED]
    assert not problems and not extra, f"problems: {problems}; unexpected files: {extra}"
    # Nothing outside PREFIX: no /etc, no /var (the units make their directories).
    outside = [str(p.relative_to(destdir)) for p in destdir.iterdir()
               if p.name != PREFIX.strip("/").split("/")[0]]
    assert not outside, f"install wrote outside {PREFIX}: {outside}"
    for name in ("echofs-master", "echofs-worker", "echofs"):
        assert (root / "bin" / name).read_bytes() == (BIN_DIR / name).read_bytes(), name


def test_installed_binaries_run(destdir):
    r = subprocess.run([str(installed(destdir) / "bin/echofs"), "--help"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and "put" in r.stdout + r.stderr, r
    # A daemon without its required secrets refuses to start with status 2.
    r = subprocess.run([str(installed(destdir) / "bin/echofs-master")], capture_output=True,
                       text=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "JWT_SECRET" in r.stderr, r


def test_units_name_the_installed_binaries_and_are_hardened(destdir):
    units = installed(destdir) / "lib/systemd/system"
    want_type = "notify" if built_with_libsystemd() else "simple"
    for unit, binary, data in (("echofs-master.service", "echofs-master", "/var/lib/echofs/master"),
                               ("echofs-worker@.service", "echofs-worker",
                                "/var/lib/echofs/worker-%i")):
        text = (units / unit).read_text()
        assert not re.findall(r"@[A-Z]+@", text), f"{unit}: a placeholder was left"
        lines = set(text.splitlines())
        for line in (f"Type={want_type}", f"ExecStart={PREFIX}/bin/{binary}", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", f"ReadWritePaths={data}", "Restart=on-failure",
                     "User=echofs", "RestartPreventExitStatus=2"):
            assert line in lines, f"{unit} lacks {line!r}"
        assert any(l.startswith("EnvironmentFile=/etc/echofs/") for l in lines), unit


def test_systemd_analyze_verify_accepts_the_units(destdir, tmp_path):
    if not Path(SYSTEMD_ANALYZE).exists():
        pytest.skip(f"{SYSTEMD_ANALYZE} is missing (Debian package systemd)")
    # A root holding the installed tree and the system's own units (the
    # targets ours are ordered after), so verify resolves ExecStart= inside it.
    root = tmp_path / "root"
    shutil.copytree(destdir, root, symlinks=True)
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True,
                    dirs_exist_ok=True)
    unit_dir = f"{PREFIX}/lib/systemd/system"
    for unit in ("echofs-master.service", "echofs-worker@.service", "echofs-worker@1.service"):
        path = f"{unit_dir}/{unit}" if "@." in unit or "@" not in unit else unit
        r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", f"--root={root}", path],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "SYSTEMD_UNIT_PATH": f"{root}{unit_dir}:"})
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
            f"systemd-analyze verify {path}: {r.returncode}\n{r.stdout}{r.stderr}"

    # systemd's own rating of the hardening, offline: exposure 2.0 of 10 at
    # most (the units rate 1.2; without ProtectSystem=, NoNewPrivileges=
    # and an empty CapabilityBoundingSet= they rate 3.4).
    for unit in ("echofs-master.service", "echofs-worker@.service"):
        r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", f"--root={root}",
                            "--no-pager", "--threshold=20", f"{unit_dir}/{unit}"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "SYSTEMD_UNIT_PATH": f"{root}{unit_dir}:"})
        level = [l for l in r.stdout.splitlines() if "Overall exposure level" in l]
        assert r.returncode == 0, f"{unit} is not hardened enough: {level}\n{r.stderr}"

    # The check is real: a unit whose binary is not installed is refused.
    (root / PREFIX.lstrip("/") / "bin/echofs-master").unlink()
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", f"--root={root}",
                        f"{unit_dir}/echofs-master.service"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "echofs-master" in r.stderr, r


def test_man_pages_format_cleanly(destdir):
    if not shutil.which("groff"):
        pytest.skip("groff is missing")
    for page in ("man1/echofs.1", "man8/echofs-master.8", "man8/echofs-worker.8"):
        path = installed(destdir) / "share/man" / page
        r = subprocess.run(["groff", "-man", "-ww", "-z", str(path)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and not r.stderr.strip(), f"{page}: {r.stderr}"


def variables_read(sources: list[str]) -> set[str]:
    found = set()
    for rel in sources:
        found |= set(ENV_READ.findall((ROOT / rel).read_text()))
    return found


@pytest.mark.parametrize("page", sorted(MAN_SOURCES))
def test_man_page_lists_every_variable_its_program_reads(page):
    wanted = variables_read(MAN_SOURCES[page])
    assert len(wanted) >= (20 if "master" in page else 5), \
        f"only {sorted(wanted)} found in {MAN_SOURCES[page]}: the pattern broke?"
    text = (ROOT / "man" / page).read_text()
    # Listed as a tagged paragraph: ".TP" then ".B NAME".
    listed = set(re.findall(r"^\.TP\n\.B ([A-Z][A-Z0-9_]*)$", text, re.M))
    missing = sorted(wanted - listed)
    assert not missing, (f"man/{page} does not list {missing}, read by "
                         f"{', '.join(MAN_SOURCES[page])}: add a .TP/.B entry under ENVIRONMENT")


def test_the_variable_finder_sees_each_form():
    src = ('efs_env_u64("A_B", 1);\n(r = efs_env_string("C", NULL);\n'
           'env_file("TLS_X", &f);\nconst char *v = getenv("HOME");\nenv(name);\n')
    assert set(ENV_READ.findall(src)) == {"A_B", "C", "TLS_X", "HOME"}


def test_uninstall_removes_what_install_wrote(tmp_path):
    d = tmp_path / "dest"
    r = make("install", f"DESTDIR={d}", f"PREFIX={PREFIX}")
    assert r.returncode == 0, r.stderr
    r = make("uninstall", f"DESTDIR={d}", f"PREFIX={PREFIX}")
    assert r.returncode == 0, r.stderr
    left = sorted(str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir())
    assert not left, f"make uninstall left {left}"


class NotifySocket:
    """The service manager's side of sd_notify: a Unix datagram socket."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout: float) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def close(self):
        self.sock.close()


def require_libsystemd():
    if not built_with_libsystemd():
        pytest.skip("built without libsystemd (pkg-config libsystemd): the units use Type=simple")


def test_master_and_worker_notify_ready_once_listening(cluster, tmp_path):
    require_libsystemd()
    sock = NotifySocket(tmp_path / "notify.sock")
    try:
        m = cluster.add_master(start=False, NOTIFY_SOCKET=str(sock.path))
        m.start()
        message = sock.receive(30)
        assert message.startswith("READY=1\n") and "STATUS=serving on port" in message, message
        # Ready means ready: the port answers at once, without retrying.
        r = requests.get(m.url + "/api/v1/health", timeout=h.HTTP_TIMEOUT_S)
        assert r.status_code in (200, 503), r.text

        w = cluster.add_worker(master=m, start=False, wait=False, NOTIFY_SOCKET=str(sock.path))
        w.start()
        message = sock.receive(30)
        assert message.startswith("READY=1\n"), message
        r = requests.get(w.url + "/metrics", timeout=h.HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text

        # SIGTERM: STOPPING=1 before the graceful stop.
        w.stop()
        assert sock.receive(30).startswith("STOPPING=1"), "no STOPPING=1 from the worker"
        m.stop()
        assert sock.receive(30).startswith("STOPPING=1"), "no STOPPING=1 from the master"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent_and_the_daemon_runs(cluster):
    require_libsystemd()
    m = cluster.start(workers=1, master_env={"REPLICATION_FACTOR": 1})
    assert m.health()["status"] == "ok"
    assert "service manager" not in m.stderr()


def example_env(name: str) -> dict:
    """The KEY=VALUE lines of an example environment file (comments and
    blank lines skipped), as systemd's EnvironmentFile= reads them."""
    env = {}
    for line in (ROOT / "deploy/systemd" / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def test_example_environment_files_are_a_working_configuration(cluster):
    """The examples' settings start a master and a worker that registers,
    with only what must differ on this machine replaced: the addresses and
    ports (the harness's own) and the secrets (the harness's, so that it can
    talk to them; the examples' placeholders are checked to be there)."""
    master_env = example_env("master.env.example")
    worker_env = example_env("worker.env.example")
    assert {"JWT_SECRET", "CLUSTER_SECRET"} <= master_env.keys(), master_env
    assert {"CLUSTER_SECRET", "MASTER_URL"} <= worker_env.keys(), worker_env
    assert "WORKER_PORT" in example_env("worker-2.env.example")
    local = {"JWT_SECRET", "CLUSTER_SECRET", "MASTER_HOST", "MASTER_PORT", "WORKER_HOST",
             "WORKER_PORT", "MASTER_URL"}
    m = cluster.add_master(**{k: v for k, v in master_env.items() if k not in local})
    for _ in range(m.replication_factor):  # the example's REPLICATION_FACTOR
        cluster.add_worker(master=m, **{k: v for k, v in worker_env.items() if k not in local})
    assert m.health()["status"] == "ok"
