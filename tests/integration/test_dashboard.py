"""The dashboard at "/", driven in a real browser: Debian's Chromium
(/usr/bin/chromium), headless, through playwright-core from npm
(tests/browser/, installed with `npm ci` when node_modules is missing).

The browser side is tests/browser/dashboard.spec.js; this test owns the
cluster, kills a worker when the script asks, and checks what it reports.
A screenshot is left in tests/artifacts/dashboard.png.
tests/browser/dashboard_operators.spec.js drives the page of a master with
TOPOLOGY_VISIBLE_TO=operators (a plain user's token, then an admin's).
"""

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import echofs_harness as h

BROWSER_DIR = h.REPO / "tests" / "browser"
SPEC = BROWSER_DIR / "dashboard.spec.js"
OPERATORS_SPEC = BROWSER_DIR / "dashboard_operators.spec.js"
ARTIFACTS = h.REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# Each browser step may wait this long (the page refreshes every 2 s).
STEP_TIMEOUT_S = 60 if h.SANITIZE else 30
TOTAL_TIMEOUT_S = 240 if h.SANITIZE else 150


def browser_tools() -> str:
    """The node binary, with playwright-core installed; skips when the
    machine has no browser or no Node.js (scripts/install-deps.sh installs
    them), fails when npm cannot install the locked packages."""
    node = shutil.which("node")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; scripts/install-deps.sh)")
    if not node or not shutil.which("npm"):
        pytest.skip("Node.js and npm are missing (needed to run playwright-core)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"npm ci in {BROWSER_DIR} failed:\n{r.stdout}\n{r.stderr}"
    return node


class Script:
    """The node script: its stdout lines arrive in a queue (read by a
    thread), so every wait has a deadline."""

    def __init__(self, node: str, env: dict, log: Path, spec: Path = SPEC):
        self._stderr = open(log, "wb")
        self.proc = subprocess.Popen([node, str(spec)], cwd=BROWSER_DIR, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1,
                                     start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.steps: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: float):
        """The next protocol line (STEP lines are collected on the way), or
        None when the script ended."""
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"the browser script did not finish in time; steps: {self.steps}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is not None and line.startswith("STEP "):
                self.steps.append(line[5:])
                continue
            return line

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, deadline: float):
        """The script's closing "RESULT <json>" line, parsed, once the
        script has exited 0."""
        line = self.next_line(deadline)
        assert line is not None and line.startswith("RESULT "), \
            f"expected RESULT, got {line!r}; steps: {self.steps}"
        result = json.loads(line[len("RESULT "):])
        assert self.proc.wait(timeout=max(1, deadline - time.monotonic())) == 0
        return result

    def close(self) -> None:
        if self.proc.poll() is None:  # the browser too: it is in the session
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._stderr.close()


@pytest.mark.slow(reason="starts a browser and waits for a worker to be declared dead")
def test_dashboard_shows_the_cluster_uploads_and_downloads(cluster, tmp_path):
    node = browser_tools()
    # Two replicas, so that uploads still work with one of three workers dead.
    m = cluster.start(workers=3, master_env={"REPLICATION_FACTOR": 2})
    token = cluster.token("alice")
    upload = tmp_path / "holiday photos.bin"
    data = os.urandom(2 * 1024 * 1024 + 4321) + b"echofs " * 50000  # 3 chunks
    upload.write_bytes(data)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    for old in (screenshot, ARTIFACTS / "dashboard-failure.png"):
        old.unlink(missing_ok=True)

    env = {**h.base_environ(), "ECHOFS_URL": m.url, "ECHOFS_TOKEN": token,
           "UPLOAD_FILE": str(upload), "DOWNLOAD_DIR": str(downloads),
           "SCREENSHOT": str(screenshot), "CHROMIUM": str(CHROMIUM),
           "STEP_TIMEOUT_MS": str(STEP_TIMEOUT_S * 1000)}
    script = Script(node, env, tmp_path / "browser.log")
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    victim = cluster.workers[1]
    result = None
    try:
        line = script.next_line(deadline)
        assert line == "KILL", f"expected KILL, got {line!r}; steps: {script.steps}"
        victim.kill()
        script.send(f"killed {victim.worker_id}")
        result = script.result(deadline)
    finally:
        script.close()
        log = (tmp_path / "browser.log").read_text(errors="replace")
        if result is None:
            print(f"browser script steps: {script.steps}\n{log}")
    assert script.proc.returncode == 0, log
    assert result["killed"] == victim.worker_id

    # The page saw the worker dead: so does the master.
    assert m.worker_record(victim.worker_id)["status"] == "dead"
    # What the browser downloaded is what it uploaded, byte for byte.
    got = Path(result["downloaded"]).read_bytes()
    assert got == data
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    # And the master stored it under the user's name.
    files = m.user_client("alice").get("/api/v1/files").json()["files"]
    assert [(f["name"], f["size"]) for f in files] == [(upload.name, len(data))]
    assert screenshot.exists() and screenshot.stat().st_size > 10_000


@pytest.mark.slow(reason="starts a browser and watches two refreshes of the page")
def test_dashboard_under_operators_mode_shows_users_their_files_only(cluster, tmp_path):
    node = browser_tools()
    m = cluster.start(workers=2, master_env={"REPLICATION_FACTOR": 2,
                                             "TOPOLOGY_VISIBLE_TO": "operators"})
    name = "mine.bin"
    m.user_client("alice").upload(os.urandom(4000), name)
    admin = h.make_jwt({"sub": "root", "exp": int(time.time()) + 3600, "admin": True})
    env = {**h.base_environ(), "ECHOFS_URL": m.url, "ECHOFS_TOKEN": cluster.token("alice"),
           "ECHOFS_ADMIN_TOKEN": admin, "FILE_NAME": name, "WORKERS": "2",
           "CHROMIUM": str(CHROMIUM), "STEP_TIMEOUT_MS": str(STEP_TIMEOUT_S * 1000)}
    script = Script(node, env, tmp_path / "browser.log", OPERATORS_SPEC)
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    result = None
    try:
        result = script.result(deadline)
    finally:
        script.close()
        log = (tmp_path / "browser.log").read_text(errors="replace")
        if result is None:
            print(f"browser script steps: {script.steps}\n{log}")
    user, admin_view = result["user"], result["admin"]
    # a plain user: the files, no workers, no totals, and no error banner
    assert not user["workersVisible"] and not user["totalsVisible"], result
    assert user["workerRows"] == 0, result
    assert not user["errorVisible"], f"the page shows an error: {user['errorText']!r}"
    # an operator: everything
    assert admin_view["workersVisible"] and admin_view["totalsVisible"], result
    assert not admin_view["errorVisible"], result
    assert result["pageErrors"] == [], result


CHARTS_SPEC = BROWSER_DIR / "dashboard_charts.spec.js"


def test_dashboard_charts_show_an_upload_burst(cluster, tmp_path):
    """The charts of the last hour (GET /api/v1/stats/history, one sample
    every HISTORY_INTERVAL_MS, shortened here) after a short upload burst:
    each is drawn in Chromium and shows non-zero load."""
    node = browser_tools()
    m = cluster.start(workers=2, master_env={"REPLICATION_FACTOR": 2,
                                             "HISTORY_INTERVAL_MS": 500})
    c = m.user_client("alice")
    sent = 0
    for i in range(12):  # the burst: 12 uploads of 256 KiB
        data = os.urandom(256 * 1024)
        c.upload(data, f"burst-{i}.bin")
        sent += len(data)
    # The repair chart's caption needs a sample taken after the repair
    # loop's first count (null before it, about a second after start): a
    # fast burst can end sooner.
    h.wait_until(lambda: any(x["under_replicated_chunks"] is not None
                             for x in c.get("/api/v1/stats/history").json()["samples"][-1:]),
                 10, interval=0.2, what="a history sample after the first repair pass")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-charts.png"
    screenshot.unlink(missing_ok=True)
    env = {**h.base_environ(), "ECHOFS_URL": m.url, "ECHOFS_TOKEN": cluster.token("alice"),
           "SCREENSHOT": str(screenshot), "CHROMIUM": str(CHROMIUM),
           "STEP_TIMEOUT_MS": str(STEP_TIMEOUT_S * 1000)}
    script = Script(node, env, tmp_path / "browser.log", CHARTS_SPEC)
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    result = None
    try:
        result = script.result(deadline)
    finally:
        script.close()
        log = (tmp_path / "browser.log").read_text(errors="replace")
        if result is None:
            print(f"browser script steps: {script.steps}\n{log}")
    assert result["pageErrors"] == [], result["pageErrors"]
    assert result["hiddenWithoutToken"], "the charts show without a token"
    charts = result["charts"]
    for name in ("requests", "bytes", "latency", "disk"):
        assert charts[name]["peak"] > 0 and charts[name]["painted"] > 50, (name, charts[name])
    # What the page drew is what the master recorded: the burst's bytes.
    samples = result["history"]["samples"]
    received = sum(s["bytes_in_per_second"] * s["seconds"] for s in samples)
    assert received >= sent * 0.99, (received, sent)
    assert charts["bytes"]["peak"] == pytest.approx(
        max(max(s["bytes_in_per_second"], s["bytes_out_per_second"]) for s in samples))
    assert charts["repair"]["caption"].startswith("Under-replicated chunks: 0"), charts["repair"]
    assert screenshot.exists() and screenshot.stat().st_size > 5_000


POLICIES_SPEC = BROWSER_DIR / "dashboard_policies.spec.js"


def page_bytes(n: int) -> str:
    """The page's bytes() in Python: what a size reads as on the page."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i, v = 0, float(n)
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.1f} {units[i]}" if i else f"{n} {units[0]}"


@pytest.mark.slow(reason="starts a browser, kills workers and waits for the EC rebuild")
def test_dashboard_shows_storage_policies_and_ec_stripes(cluster, tmp_path):
    """Issue 17: the totals show, by storage policy, the files, their
    logical, stored and on-disk bytes and the overhead, beside the disk
    used per logical byte, the EC stripes degraded and unrecoverable and the
    shards rebuilt; each as /api/v1/stats says, with six workers and
    ec:4+2 files, then one worker lost (every stripe degraded: no seventh
    worker to rebuild onto), then a seventh worker (every stripe rebuilt),
    then three holders of every stripe lost (every stripe unrecoverable)."""
    node = browser_tools()
    chunk = 64 * 1024
    m = cluster.start(workers=6, master_env={"CHUNK_SIZE": chunk, "CHUNK_CACHE_SIZE": 0,
                                             "REPLICATION_FACTOR": 3, "REPAIR_AFTER_MS": 0})
    api = m.user_client("alice")
    ec_data = os.urandom(4 * chunk + 100)          # 5 stripes, stored as is
    rep_data = os.urandom(2 * chunk + 7)           # 3 replicated chunks
    for data, name, params in ((ec_data, "ec.bin", {"policy": "ec:4+2"}),
                               (rep_data, "rep.bin", {})):
        r = api.post("/api/v1/files/upload", params={"name": name, **params}, data=data)
        assert r.status_code == 201, r.text
    stripes = 5

    stats = api.get("/api/v1/stats").json()
    ec, rep = stats["by_policy"]["ec"], stats["by_policy"]["replicas"]
    assert (ec["files"], ec["logical_bytes"], ec["stored_bytes"]) == (1, len(ec_data), len(ec_data))
    assert (rep["files"], rep["logical_bytes"], rep["stored_bytes"]) == \
        (1, len(rep_data), len(rep_data))
    # The disk: what the workers hold of each policy's chunks, per policy.
    on_disk = sum(rec.length for w in cluster.workers
                  for rec in h.chunk_records(w.data_dir).values())
    assert ec["disk_bytes"] == stats["disk_bytes"]["ec"]
    assert rep["disk_bytes"] == stats["disk_bytes"]["replicas"] == 3 * len(rep_data)
    assert ec["disk_bytes"] + rep["disk_bytes"] == on_disk, (stats, on_disk)
    assert 1.5 <= ec["overhead"] <= 1.55 and rep["overhead"] == 3.0, stats
    logical = len(ec_data) + len(rep_data)
    assert stats["effective_overhead"] == pytest.approx(on_disk / logical), stats
    metrics = m.client().get("/metrics").text
    assert f'echofs_policy_logical_bytes{{policy="ec"}} {len(ec_data)}' in metrics
    assert f'echofs_policy_stored_bytes{{policy="replicas"}} {len(rep_data)}' in metrics
    assert "echofs_effective_overhead " in metrics

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-policies.png"
    screenshot.unlink(missing_ok=True)
    env = {**h.base_environ(), "ECHOFS_URL": m.url, "ECHOFS_TOKEN": cluster.token("alice"),
           "SCREENSHOT": str(screenshot), "CHROMIUM": str(CHROMIUM),
           "STEP_TIMEOUT_MS": str(STEP_TIMEOUT_S * 1000)}
    script = Script(node, env, tmp_path / "browser.log", POLICIES_SPEC)
    deadline = time.monotonic() + TOTAL_TIMEOUT_S

    def show(want: dict) -> dict:
        """The page once it shows @want (element id -> exact text)."""
        script.send(json.dumps(want))
        line = script.next_line(deadline)
        assert line is not None and line.startswith("SNAP "), \
            f"expected SNAP, got {line!r}; steps: {script.steps}"
        return json.loads(line[len("SNAP "):])

    def api_stats() -> dict:
        return api.get("/api/v1/stats").json()

    result = None
    try:
        healthy = show({"#t-ec-degraded": "0", "#t-ec-lost": "0", "#t-ec-rebuilt": "0",
                        "#t-files": "2"})
        assert healthy["cards"]["t-overhead"] == f"{stats['effective_overhead']:.2f}×"
        for key, p in (("ec", ec), ("replicas", rep)):
            row = healthy["policies"][key]
            assert row[1:] == [str(p["files"]), page_bytes(p["logical_bytes"]),
                               page_bytes(p["stored_bytes"]), page_bytes(p["disk_bytes"]),
                               f"{p['overhead']:.2f}×"], (key, row, p)
        assert healthy["policies"]["replicas"][0] == "replicated (replicas:3)"

        # One worker lost: every stripe has 5 of 6 shards, and none can be
        # rebuilt (each of the 5 live workers holds a shard of each).
        ws = sorted(cluster.workers, key=lambda w: w.stored_id())
        ws[0].kill()
        m.wait_workers(alive=5, total=6)
        h.wait_until(lambda: api_stats()["ec_stripes_degraded"] == stripes, timeout=30,
                   what="every stripe degraded")
        degraded = show({"#t-ec-degraded": str(stripes), "#t-ec-lost": "0"})
        assert degraded["cards"]["t-ec-rebuilt"] == "0"

        # A seventh worker: the lost shards are rebuilt onto it.
        cluster.add_worker()
        h.wait_until(lambda: api_stats()["ec_stripes_degraded"] == 0, timeout=60,
                   what="every stripe rebuilt")
        s = api_stats()
        assert s["repair"]["ec_shards_rebuilt_total"] == stripes, s
        rebuilt = show({"#t-ec-degraded": "0", "#t-ec-rebuilt": str(stripes)})
        assert rebuilt["cards"]["t-ec-lost"] == "0"

        # Three holders of every stripe lost: more than M, unrecoverable.
        for w in ws[1:4]:
            w.kill()
        h.wait_until(lambda: api_stats()["ec_stripes_unrecoverable"] == stripes, timeout=30,
                   what="every stripe unrecoverable")
        lost = show({"#t-ec-degraded": str(stripes), "#t-ec-lost": str(stripes)})
        assert lost["policies"]["ec"][1] == "1"  # the file is still counted

        script.send("END")
        result = script.result(deadline)
    finally:
        script.close()
        log = (tmp_path / "browser.log").read_text(errors="replace")
        if result is None:
            print(f"browser script steps: {script.steps}\n{log}")
    assert result["pageErrors"] == [], result["pageErrors"]
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
