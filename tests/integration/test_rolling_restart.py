"""Rolling restart under load: no acknowledged upload is lost.

The upgrade procedure of docs/OPERATIONS.md ("Rolling restart and
upgrades"), run against a real cluster while clients keep uploading and
downloading: each worker in turn gets SIGTERM, is waited for until it has
exited (status 0, after draining its requests in flight), and is started
again on the same data directory and port; once the master lists it alive
under the same worker id and its /health answers, the next one goes. Then
the master is restarted the same way.

Every client request is recorded with its outcome. The test asserts:

  * every upload that was acknowledged (201 with a file id) downloads byte
    for byte at the end, and every download during the run that answered
    200 gave the right bytes;
  * a request that failed either got a JSON error envelope or no HTTP
    answer at all (connection refused or reset while the single master was
    down) -- never a hang (every request has a timeout) and never a half
    file: every file the listing shows reads back whole;
  * no request failed while a worker was restarting (a replica write the
    stopped worker refuses goes to another worker, as the masters' logs
    must show at least once; a read moves to the next replica), which
    needs more workers than REPLICATION_FACTOR;
  * afterwards every chunk has at least REPLICATION_FACTOR good replicas
    on alive workers and health counts no under-replicated chunk.

Two variants: one master (its clients get no answer while it is down and
must retry), and two masters on PostgreSQL and Redis with clients that
send a request to the other master when one does not answer (needs
ECHOFS_TEST_PG_URL; not one request may fail). A third test checks the
worker's side of a quick master restart: its retries while the master is
down stay one heartbeat interval apart.

The number of failed requests per phase is printed (pytest -s shows it);
docs/OPERATIONS.md quotes the figures of several runs.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

import echofs_harness as h
from test_faults import (Outcome, alive_ids, assert_acked_download, check_acked,
                         check_running, file_info, list_all_files, payload, poll, repair_stats,
                         secs, sha)

CHUNK = 65536  # CHUNK_SIZE: files of 2..5 chunks are cheap
RF = 2  # with 3 workers, one can be down and every chunk still gets RF copies
WORKERS = 3
SETTLE_S = 2.0  # steady load between two restarts
# How long each process stays down (the time an upgrade takes to swap the
# binary): longer than WORKER_DEAD_AFTER_MS (1 s in tests), so the master
# first still places replicas on the stopped worker (those writes are
# refused and go elsewhere), then counts it dead and places around it.
DOWN_S = 1.5
UPLOADERS = 3
DOWNLOADERS = 2


@dataclass
class Request:
    """One client request and what came of it."""
    kind: str  # "upload" or "download"
    name: str
    started: float
    ended: float
    status: Optional[int]  # None: no HTTP answer (refused, reset, timed out)
    body: Any
    error: str = ""
    size: int = 0
    sha256: str = ""
    phase: str = ""  # the phase under way when the outcome was known
    failovers: int = 0  # masters that gave no answer before this one did


class Load:
    """UPLOADERS threads uploading fresh files (single-chunk and 2..5
    chunks, alternately) and DOWNLOADERS threads downloading files already
    acknowledged, until stop(). Each thread has a client per master and
    starts on master (thread number mod masters); with several masters a
    request that gets no connection (refused or dropped before an answer)
    is sent again to the next one, as a client given every master's URL
    would (Request.failovers). The test names the phase under way with
    set_phase(); every request is recorded under the phase during which its
    outcome was known."""

    def __init__(self, masters: list[h.Master], seed: int):
        self.masters = masters
        self.seed = seed
        self.requests: list[Request] = []
        self.acked: list[Request] = []  # 201 uploads, for the downloaders
        self.wrong_bytes: list[str] = []
        self.phase = "warm-up"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            *(threading.Thread(target=self._upload, args=(i, self._clients(i)), daemon=True,
                               name=f"rolling-uploader-{i}") for i in range(UPLOADERS)),
            *(threading.Thread(target=self._download, args=(i, self._clients(i)), daemon=True,
                               name=f"rolling-downloader-{i}") for i in range(DOWNLOADERS)),
        ]

    def _clients(self, idx: int) -> list[h.ApiClient]:
        n = len(self.masters)
        return [self.masters[(idx + k) % n].user_client() for k in range(n)]

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def _record(self, req: Request) -> None:
        with self._lock:
            req.phase = self.phase
            self.requests.append(req)
            if req.kind == "upload" and req.status == 201:
                self.acked.append(req)

    @staticmethod
    def _send(clients: list[h.ApiClient], method: str, path: str, **kwargs: Any):
        """(response or None, error text, failovers)."""
        error = ""
        for k, client in enumerate(clients):
            try:
                return client.request(method, path, timeout=30, **kwargs), "", k
            except requests.ConnectionError as e:
                error = short_error(e)  # no answer: try the next master
            except requests.RequestException as e:
                return None, short_error(e), k
        return None, error, len(clients) - 1

    def _upload(self, idx: int, clients: list[h.ApiClient]) -> None:
        rng = random.Random(self.seed * 100 + idx)
        n = 0
        while not self._stop.is_set():
            size = rng.randint(1, CHUNK - 1) if n % 2 == 0 else \
                rng.randint(CHUNK + 1, 5 * CHUNK)
            data = payload(rng, size, compressible=n % 3 == 1)
            name = f"roll-t{idx}-{n:05d}.bin"
            n += 1
            began = time.monotonic()
            r, error, failovers = self._send(
                clients, "POST", "/api/v1/files/upload", params={"name": name}, data=data,
                headers={"Content-Type": "application/octet-stream"})
            status, body = (None, None) if r is None else (r.status_code, _body(r))
            self._record(Request("upload", name, began, time.monotonic(), status, body, error,
                                 len(data), sha(data), failovers=failovers))
            if status != 201:
                time.sleep(0.05)  # the master may be down: do not spin

    def _download(self, idx: int, clients: list[h.ApiClient]) -> None:
        rng = random.Random(self.seed * 100 + 50 + idx)
        while not self._stop.is_set():
            with self._lock:
                pick = rng.choice(self.acked) if self.acked else None
            if pick is None:
                time.sleep(0.05)
                continue
            fid = pick.body["file_id"]
            began = time.monotonic()
            r, error, failovers = self._send(clients, "GET", f"/api/v1/files/{fid}/download")
            status, body = (None, None) if r is None else (r.status_code, None)
            if status == 200 and len(r.content) < int(r.headers.get("Content-Length", -1)):
                # The connection closed before the body's end (a master
                # stopped mid-download): no answer, not wrong bytes. urllib3
                # 1.26 does not check the length itself.
                status, error = None, f"body cut at {len(r.content)} of " \
                    f"{r.headers['Content-Length']} bytes"
            if status == 200:
                if (len(r.content), sha(r.content)) != (pick.size, pick.sha256):
                    with self._lock:
                        self.wrong_bytes.append(
                            f"{pick.name} ({fid}): {len(r.content)} bytes "
                            f"{sha(r.content)[:16]}, expected {pick.size} {pick.sha256[:16]}")
            elif r is not None:
                body = _body(r)
            self._record(Request("download", pick.name, began, time.monotonic(), status, body,
                                 error, pick.size, pick.sha256, failovers=failovers))
            if status != 200:
                time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), f"{t.name} did not finish within {timeout}s"

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def wait_progress(self, uploads: int, what: str) -> None:
        """Waits until `uploads` more uploads have been acknowledged."""
        with self._lock:
            target = len(self.acked) + uploads

        def check():
            with self._lock:
                return len(self.acked) >= target, len(self.acked)
        poll(check, secs(30), f"{uploads} more acknowledged uploads {what}")


def _body(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:300]


def short_error(e: Exception) -> str:
    """A request exception in a few words: refused, reset, timed out."""
    text = repr(e)
    for kind in ("Connection refused", "Connection reset", "RemoteDisconnected",
                 "timed out"):
        if kind in text:
            return f"{type(e).__name__}: {kind}"
    return text[:300]


def failed(req: Request) -> bool:
    return req.status != (201 if req.kind == "upload" else 200)


def is_json_error(req: Request) -> bool:
    """An HTTP error with the envelope {"error": {"code", "message"}}."""
    if req.status is None:
        return False
    err = req.body.get("error") if isinstance(req.body, dict) else None
    return isinstance(err, dict) and isinstance(err.get("code"), str) and \
        h.ERROR_CODE_RE.match(err["code"]) is not None and isinstance(err.get("message"), str)


def error_kind(req: Request) -> str:
    """What a failure looked like to the client, in a word."""
    if req.status is not None:
        code = req.body.get("error", {}).get("code") if isinstance(req.body, dict) else None
        return f"{req.status} {code}"
    return req.error.split(": ", 1)[-1][:60]


def describe(req: Request) -> str:
    what = f"{req.status} {req.body!r}" if req.status is not None else req.error
    return f"{req.kind} {req.name} [{req.phase}]: {what}"[:400]


def restart_worker(w: h.Worker, m: h.Master) -> float:
    """SIGTERM (asserting a clean exit after its requests in flight), start
    on the same data directory and port, wait until the master lists it
    alive under the same id and its /health answers. Returns the seconds
    from SIGTERM until then."""
    old_id = w.worker_id
    began = time.monotonic()
    w.stop()
    time.sleep(DOWN_S)
    w.start()
    assert w.wait_registered(m) == old_id, f"{w.name} came back under another id"
    w.wait_ready()
    m.wait_workers(alive=WORKERS, total=WORKERS)
    return time.monotonic() - began


def restart_master(m: h.Master) -> float:
    began = time.monotonic()
    m.stop()
    time.sleep(DOWN_S)
    m.start()
    m.wait_ready()
    m.wait_workers(alive=WORKERS, total=WORKERS)
    return time.monotonic() - began


MASTER_ENV = {"CHUNK_SIZE": CHUNK, "REPLICATION_FACTOR": RF, "CHUNK_CACHE_SIZE": 0}


@pytest.mark.slow(reason="restarts 3 workers and the master, one at a time, under load")
def test_rolling_restart_under_load_loses_no_acknowledged_upload(cluster):
    m = cluster.start(workers=WORKERS, master_env=MASTER_ENV)
    rolling_restart(cluster, [m], "one master")


@pytest.mark.slow(reason="restarts 3 workers and two masters, one at a time, under load")
def test_rolling_restart_of_two_masters_with_failing_over_clients_fails_nothing(request,
                                                                                tmp_path):
    """Two masters on one PostgreSQL database and Redis, workers and
    clients given both URLs: a client whose master is down sends the
    request to the other, so not one request fails."""
    if not h.PG_URL or not Path(h.REDIS_SERVER).exists():
        pytest.skip("needs PostgreSQL and Redis (scripts/services.sh start DIR && . DIR/env)")
    from test_scaleout import start_pair  # imports only with PostgreSQL configured
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres",
                  redis=True if h.REDIS_ADDR else "dedicated")
    try:
        a, b = start_pair(c, workers=WORKERS, **MASTER_ENV)
        reqs = rolling_restart(c, [a, b], "two masters")
        bad = [r for r in reqs if failed(r)]
        assert not bad, f"{len(bad)} requests failed although every request could go to " \
            f"the other master: " + "; ".join(describe(r) for r in bad[:5])
    finally:
        c.close()


def rolling_restart(cluster: h.Cluster, masters: list[h.Master], label: str) -> list[Request]:
    """Runs the load, restarts each worker and then each master in turn,
    prints the failed requests per phase and checks what every variant
    must hold (see the module's docstring). Returns every request."""
    m = masters[0]
    api = m.user_client()
    marks = {x.name: x.log_mark() for x in masters}
    load = Load(masters, seed=15).start()
    took: dict[str, float] = {}
    try:
        load.wait_progress(6, "before the first restart")
        for w in cluster.workers:
            load.set_phase(f"restart {w.name}")
            took[w.name] = restart_worker(w, m)
            time.sleep(SETTLE_S)
            check_running(cluster)
            load.wait_progress(3, f"after {w.name}'s restart")
        for x in masters:
            load.set_phase(f"restart {x.name}")
            took[x.name] = restart_master(x)
            time.sleep(SETTLE_S)
            check_running(cluster)
        load.set_phase("after")
        load.wait_progress(6, "after the masters' restarts")
    finally:
        load.stop()

    reqs = load.snapshot()
    phases: dict[str, list[Request]] = {}
    for r in reqs:
        phases.setdefault(r.phase, []).append(r)
    print(f"\nrolling restart, {label}: {len(reqs)} requests, "
          f"{sum(r.failovers > 0 for r in reqs)} answered by another master")
    for phase, rs in phases.items():
        bad = [r for r in rs if failed(r)]
        secs_taken = f", SIGTERM to serving again {took[phase.split()[-1]]:.2f}s" \
            if phase.startswith("restart") else ""
        print(f"  {phase:18} {len(rs):5} requests "
              f"({sum(r.kind == 'upload' for r in rs)} uploads), {len(bad)} failed "
              f"({sum(r.status is None for r in bad)} without an HTTP answer, "
              f"{sum(r.status is not None for r in bad)} HTTP errors){secs_taken}")
        kinds: dict[str, int] = {}
        for r in bad:
            kinds[f"{r.kind} {error_kind(r)}"] = kinds.get(f"{r.kind} {error_kind(r)}", 0) + 1
        if kinds:
            print(f"  {'':18} {kinds}")

    # The stopped workers were written to, and those writes went elsewhere
    # (the path the zero failures above depend on).
    logs = "".join(x.stderr_since(marks[x.name]) for x in masters)
    refused = {w.name: logs.count(f"write to worker {w.worker_id} failed") for w in
               cluster.workers}
    print(f"  replica writes refused by a stopped worker and sent to another: {refused}")
    assert sum(refused.values()) > 0, \
        "no replica write reached a stopped worker: the restarts did not test that path"
    assert not load.wrong_bytes, f"downloads gave wrong bytes: {load.wrong_bytes[:5]}"
    # An error is JSON; only a master's own restart may leave a request
    # without an HTTP answer (nothing listens on its port for a moment).
    for r in reqs:
        if failed(r):
            master_down = r.phase.startswith("restart master")
            assert is_json_error(r) or (r.status is None and master_down), \
                f"a failed request got neither a JSON error nor a refused connection while " \
                f"a master restarted: {describe(r)}"
    during_workers = [r for r in reqs if failed(r) and r.phase.startswith("restart worker")]
    assert not during_workers, \
        f"{len(during_workers)} requests failed while a worker restarted (with " \
        f"{WORKERS} workers and REPLICATION_FACTOR={RF} none need to): " + \
        "; ".join(describe(r) for r in during_workers[:5])
    warm = [r for r in reqs if failed(r) and r.phase in ("warm-up", "after")]
    assert not warm, "requests failed with every process up: " + \
        "; ".join(describe(r) for r in warm[:5])

    # Every acknowledged upload reads back whole; nothing else is half there.
    acked = check_acked([_as_outcome(r) for r in reqs if r.kind == "upload"])
    assert_acked_download(api, acked, "after the rolling restart")
    by_name = {r.name: r for r in reqs if r.kind == "upload"}
    listed = list_all_files(api)
    missing = {o.name for o in acked.values()} - {f["name"] for f in listed}
    assert not missing, f"acknowledged uploads not listed: {sorted(missing)[:5]}"
    seen: set[str] = set()
    for f in listed:
        r = by_name.get(f["name"])
        assert r is not None, f"listed file {f} was never uploaded"
        assert r.status == 201 or r.status is None, \
            f"upload {r.name} answered {r.status} {r.body!r}, yet it is listed: {f}"
        # Twice only if the first master stored it and its answer was lost
        # before the client sent it again to the other.
        assert f["name"] not in seen or r.failovers > 0, f"{f['name']} is listed twice"
        seen.add(f["name"])
        size, digest = api.download_sha256(f["file_id"])
        assert (size, digest) == (r.size, r.sha256), f"listed {f['name']} reads back wrong"

    # Back to (at least) REPLICATION_FACTOR good replicas on alive workers
    # everywhere. More is possible: an upload sent again to the other
    # master after its answer was lost stores the same chunks a second time
    # (deduplicated, but placed anew), and surplus replicas that the
    # metadata names are kept.
    file_ids = [f["file_id"] for f in listed]
    surplus: set[str] = set()

    def replicated():
        check_running(cluster)
        alive = alive_ids(m)
        problems = []
        for fid in file_ids:
            for c in file_info(api, fid)["chunks"]:
                live = {r["worker_id"] for r in c["replicas"]} & alive
                if len(live) < RF:
                    problems.append(f"{fid} chunk {c['index']}: {sorted(live)}")
                elif len(live) > RF:
                    surplus.add(c["chunk_id"])
        under, _, _ = repair_stats(m)
        if under != 0:
            problems.append(f"health under_replicated={under}")
        return not problems, problems[:6]
    poll(replicated, secs(15), f"every chunk to have {RF} good replicas on alive workers",
         interval=0.3)
    twice = {f["name"] for f in listed if sum(g["name"] == f["name"] for g in listed) > 1}
    print(f"  {len(listed)} files listed ({len(twice)} twice: stored by a master whose "
          f"answer was lost, then sent to the other); {len(surplus)} chunks with more than "
          f"{RF} replicas")
    return reqs


def test_worker_retries_a_restarting_master_at_least_once_per_heartbeat_interval(cluster):
    """While the master is down, a registered worker's retries back off to
    at most one heartbeat interval apart (not to 5 s): the restarted master
    counts a worker dead, and refuses uploads with 503 no_capacity, until
    its next beat arrives, so that beat must come within an interval of the
    master's return. Counted at a stand-in that drops every connection on
    the master's port for WINDOW_S (HEARTBEAT_INTERVAL_MS is 200 ms here:
    about WINDOW_S / 0.2 tries; a backoff doubling up to 5 s makes 5)."""
    window_s = 3.0
    m = cluster.start(workers=1)
    w = cluster.workers[0]
    m.stop()
    rec = cluster.recorder(port=m.port)
    began = time.monotonic()
    time.sleep(window_s)
    tries = [t for t in rec.times if t - began <= window_s]
    rec.close()
    gaps = [round(b - a, 2) for a, b in zip(tries, tries[1:])]
    print(f"\n{len(tries)} tries in {window_s}s with the master down, gaps {gaps}")
    assert len(tries) >= 9, \
        f"{len(tries)} heartbeat tries in {window_s}s with the master down (gaps {gaps}): " \
        f"the retry backoff grows beyond the heartbeat interval"
    m.start()
    m.wait_ready()
    w.wait_registered(m)
    m.wait_workers(alive=1, total=1)


def _as_outcome(r: Request):
    """The shape test_faults.check_acked reads (status, body, size, sha256,
    name)."""
    return Outcome(0, r.name, r.size, r.sha256, r.started, r.ended, r.status, r.body, r.error)
