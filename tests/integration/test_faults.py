"""Fault injection: no acknowledged byte may be lost.

Workers are SIGKILLed, SIGSTOPped, restarted on their data directories,
have bytes of their chunk files overwritten or chunk files removed, or run
out of room; the master is SIGKILLed in the middle of uploads. After each
fault every file the cluster acknowledged (201) must still download byte
for byte, and the cluster must heal: re-replication (REPAIR_AFTER_MS),
scrubbing (SCRUB_INTERVAL_MS), worker chunk reports (REPORT_INTERVAL_MS,
ORPHAN_GRACE_MS) and the collector (GC_GRACE_MS, UPLOAD_IDLE_TIMEOUT_MS)
bring every chunk back to REPLICATION_FACTOR good replicas on live workers
and remove what nothing needs.

Everything is black-box: HTTP (files, GET /api/v1/files/{id} for where the
replicas are, /api/v1/workers, /api/v1/health with "under_replicated" and
"repair": {"repaired_total", "failed_total"}), signals, and the workers'
data directories (chunks in the volume files WORKER_DATA_DIR/volumes/*.vol,
read and damaged through the harness's chunk_records helpers; quarantine in
WORKER_DATA_DIR/corrupt/). Every wait is a poll with a deadline, scaled
for sanitized binaries.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests

import echofs_harness as h

CHUNK = 65536  # CHUNK_SIZE of every test here: small files are multi-chunk
RF = 3

# Sanitized binaries are several times slower: deadlines grow with them.
SLOWDOWN = 3.0 if h.SANITIZE else 1.0


def secs(seconds: float) -> float:
    """A deadline of `seconds` on an unsanitized build, scaled and padded."""
    return seconds * SLOWDOWN + h.TIMING_MARGIN_S


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- polling -------------------------------------------------------------------


def poll(check: Callable[[], tuple[bool, Any]], timeout: float, what: str,
         interval: float = 0.2) -> Any:
    """Calls check() -> (done, detail) until done; returns the detail. On
    timeout fails with the last detail, so the message says what was still
    wrong. Connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    detail: Any = None
    while True:
        try:
            done, detail = check()
            if done:
                return detail
        except (requests.RequestException, OSError) as e:
            detail = f"error: {e!r}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}; "
                                 f"still: {detail}")
        time.sleep(interval)


def check_running(cluster: h.Cluster) -> None:
    """Fails at once if a process that should run died on its own."""
    for p in cluster.processes:
        p.check_alive()


# ---- payloads and uploads -----------------------------------------------------------


def payload(rng: random.Random, size: int, compressible: bool = False) -> bytes:
    """Random bytes, or text that gzip shrinks (stored compressed); either
    way unique, so no two chunks of a test deduplicate."""
    if not compressible:
        return rng.randbytes(size)
    tag = rng.randbytes(8).hex()
    out = bytearray()
    n = 0
    while len(out) < size:
        out += f"{tag} line {n:08d}: the quick brown fox jumps over the lazy dog\n".encode()
        n += 1
    return bytes(out[:size])


def upload_files(api: h.ApiClient, rng: random.Random, count: int, min_chunks: int,
                 max_chunks: int, prefix: str = "f") -> dict[str, bytes]:
    """Uploads count files of min_chunks..max_chunks chunks (every other one
    compressible); checks each File object; returns {file_id: bytes}."""
    files: dict[str, bytes] = {}
    for i in range(count):
        size = rng.randint((min_chunks - 1) * CHUNK + 1, max_chunks * CHUNK)
        data = payload(rng, size, compressible=i % 2 == 1)
        body = api.upload(data, name=f"{prefix}{i}.bin")
        assert body["size"] == size and body["sha256"] == sha(data), body
        assert body["chunk_count"] == math.ceil(size / CHUNK), body
        files[body["file_id"]] = data
    return files


def assert_downloads(api: h.ApiClient, files: dict[str, bytes], what: str = "") -> None:
    for fid, data in files.items():
        got = api.download(fid)
        assert got == data, (f"{what}: file {fid} came back wrong: {len(got)} bytes, sha256 "
                             f"{sha(got)}; expected {len(data)} bytes, {sha(data)}")


@dataclass
class Outcome:
    """One upload attempt of an Uploaders thread."""
    thread: int
    name: str
    size: int
    sha256: str
    started: float
    ended: float
    status: Optional[int]  # None: no HTTP answer (connection refused, reset, timeout)
    body: Any
    error: str = ""


class Uploaders:
    """Threads, each with its own client, uploading fresh files of
    sizer(rng) bytes one after another (raw body, ?name= unique) until
    stop(), or until each has made max_each attempts; every attempt is
    recorded as an Outcome."""

    def __init__(self, clients: list[h.ApiClient], sizer: Callable[[random.Random], int],
                 prefix: str, seed: int, timeout: float = 60.0, keep_data: bool = False,
                 max_each: Optional[int] = None):
        self.clients = clients
        self.sizer = sizer
        self.prefix = prefix
        self.seed = seed
        self.timeout = timeout
        self.keep_data = keep_data
        self.max_each = max_each
        self.data: dict[str, bytes] = {}
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i, c), daemon=True,
                                          name=f"{prefix}-uploader-{i}")
                         for i, c in enumerate(clients)]

    def start(self) -> "Uploaders":
        for t in self._threads:
            t.start()
        return self

    def _run(self, idx: int, client: h.ApiClient) -> None:
        rng = random.Random(self.seed * 1000 + idx)
        n = 0
        while not self._stop.is_set() and (self.max_each is None or n < self.max_each):
            data = payload(rng, self.sizer(rng))
            name = f"{self.prefix}-t{idx}-{n:04d}.bin"
            n += 1
            if self.keep_data:
                self.data[name] = data
            began = time.monotonic()
            status, body, error = None, None, ""
            try:
                r = client.post("/api/v1/files/upload", params={"name": name}, data=data,
                                headers={"Content-Type": "application/octet-stream"},
                                timeout=self.timeout)
                status = r.status_code
                try:
                    body = r.json()
                except ValueError:
                    body = r.text[:300]
            except requests.RequestException as e:
                error = repr(e)[:300]
            with self._lock:
                self.outcomes.append(Outcome(idx, name, len(data), sha(data), began,
                                             time.monotonic(), status, body, error))
            if status != 201:
                time.sleep(0.05)  # the master may be down: do not spin

    def stop(self, timeout: float = 120.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), f"{t.name} did not finish within {timeout}s"

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def acked(self) -> list[Outcome]:
        return [o for o in self.snapshot() if o.status == 201]


def check_acked(outcomes: list[Outcome]) -> dict[str, Outcome]:
    """The File object of every 201 matches what was sent; {file_id: outcome}."""
    by_id = {}
    for o in outcomes:
        if o.status != 201:
            continue
        assert isinstance(o.body, dict) and o.body.get("size") == o.size and \
            o.body.get("sha256") == o.sha256 and o.body.get("name") == o.name, \
            f"upload {o.name} answered 201 with a wrong File object: {o.body!r}"
        by_id[o.body["file_id"]] = o
    return by_id


def assert_acked_download(api: h.ApiClient, acked: dict[str, Outcome], what: str) -> None:
    for fid, o in acked.items():
        size, digest = api.download_sha256(fid)
        assert (size, digest) == (o.size, o.sha256), \
            f"{what}: acknowledged upload {o.name} ({fid}) reads back as {size} bytes " \
            f"{digest}, expected {o.size} bytes {o.sha256}"


# ---- what the master says --------------------------------------------------------------


def file_info(api: h.ApiClient, fid: str) -> dict:
    r = api.get(f"/api/v1/files/{fid}")
    assert r.status_code == 200, f"GET /api/v1/files/{fid}: {r.status_code} {r.text[:300]}"
    info = r.json()
    assert len(info["chunks"]) == info["chunk_count"], info
    return info


def list_all_files(api: h.ApiClient) -> list[dict]:
    files: list[dict] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/api/v1/files", params=params)
        assert r.status_code == 200, f"GET /api/v1/files: {r.status_code} {r.text[:300]}"
        body = r.json()
        files += body["files"]
        cursor = body.get("next_cursor")
        if not cursor:
            return files


def alive_ids(m: h.Master) -> set[str]:
    return {w["worker_id"] for w in m.workers() if w["status"] == "alive"}


def repair_stats(m: h.Master) -> tuple[int, int, int]:
    """(under_replicated, repaired_total, failed_total) from the health."""
    health = m.health()
    assert isinstance(health.get("under_replicated"), int) and \
        isinstance(health.get("repair"), dict), f"health lacks the repair figures: {health}"
    rep = health["repair"]
    return health["under_replicated"], rep["repaired_total"], rep["failed_total"]


def replication_problems(api: h.ApiClient, m: h.Master, file_ids,
                         rf: int = RF) -> list[str]:
    """Chunks of these files that do not have exactly rf listed (good)
    replicas on distinct alive workers."""
    alive = alive_ids(m)
    problems = []
    for fid in file_ids:
        for c in file_info(api, fid)["chunks"]:
            listed = [r["worker_id"] for r in c["replicas"]]
            live = sorted({w for w in listed if w in alive})
            if len(live) != rf:
                problems.append(f"{fid} chunk {c['index']} ({c['chunk_id'][:12]}): "
                                f"{len(live)} replicas on alive workers, listed {listed}")
    return problems


def assert_replicated(cluster: h.Cluster, api: h.ApiClient, m: h.Master, file_ids) -> None:
    """Every chunk has RF replicas on alive workers, allowing a beat for a
    worker that the loaded master briefly counted dead."""
    def check():
        check_running(cluster)
        problems = replication_problems(api, m, file_ids)
        return not problems, problems[:6]
    poll(check, secs(3), "every chunk to have 3 replicas on alive workers")


def chunk_ids_of(api: h.ApiClient, file_ids) -> set[str]:
    return {c["chunk_id"] for fid in file_ids for c in file_info(api, fid)["chunks"]}


def holders(api: h.ApiClient, file_ids) -> dict[str, set[str]]:
    """{chunk_id: {worker ids listed as holding a good replica}}."""
    out: dict[str, set[str]] = {}
    for fid in file_ids:
        for c in file_info(api, fid)["chunks"]:
            out.setdefault(c["chunk_id"], set()).update(r["worker_id"] for r in c["replicas"])
    return out


def wait_fully_replicated(cluster: h.Cluster, api: h.ApiClient, m: h.Master, file_ids,
                          timeout: float, what: str,
                          extra: Optional[Callable[[], list[str]]] = None,
                          under_expected: int = 0) -> None:
    """Polls until every chunk of file_ids has exactly RF replicas on alive
    workers, health under_replicated == under_expected (chunks that cannot
    be repaired still count), and extra() (more conditions) reports no
    problem."""
    def check():
        check_running(cluster)
        problems = replication_problems(api, m, file_ids)
        under, repaired, failed = repair_stats(m)
        if under != under_expected:
            problems.append(f"health under_replicated={under}")
        if extra is not None:
            problems += extra()
        return not problems, f"{len(problems)} problems (repaired_total={repaired}, " \
                             f"failed_total={failed}): {problems[:6]}"
    poll(check, timeout, what, interval=0.3)


# ---- worker disks -------------------------------------------------------------------


def stored_payload(w: h.Worker, chunk_id: str) -> Optional[bytes]:
    """The chunk's payload as on w's disk now, or None when w does not hold it."""
    return h.read_chunk_payload(w.data_dir, chunk_id)


def quarantined(w: h.Worker) -> set[str]:
    d = w.data_dir / "corrupt"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def overwrite(path: Path, rng: random.Random, n: int = 64, lo: int = 0) -> int:
    """Writes n random bytes over path at a random offset >= lo (that changes
    at least one byte); returns the offset."""
    raw = path.read_bytes()
    off = rng.randint(min(lo, max(0, len(raw) - n)), max(0, len(raw) - n))
    junk = rng.randbytes(n)
    while junk[:len(raw) - off] == raw[off:off + n]:
        junk = rng.randbytes(n)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(junk)
        f.flush()
    return off


def disk_vs_needed(cluster: h.Cluster, needed: set[str], rf: int = RF) -> list[str]:
    """Differences between the chunk files on every worker's disk and
    exactly rf copies of each needed chunk (no orphan, no surplus)."""
    ids = cluster.chunk_usage().ids
    problems = []
    extra = {c: n for c, n in ids.items() if c not in needed}
    if extra:
        problems.append(f"{len(extra)} unneeded chunks still stored "
                        f"({sum(extra.values())} files), e.g. {sorted(extra)[:3]}")
    wrong = {c[:12]: ids.get(c, 0) for c in needed if ids.get(c, 0) != rf}
    if wrong:
        problems.append(f"{len(wrong)} needed chunks not stored exactly {rf} times: "
                        f"{dict(list(wrong.items())[:6])}")
    return problems


def replicas_missing_on_disk(api: h.ApiClient, cluster: h.Cluster, file_ids) -> list[str]:
    """Replicas the master lists (on workers of this cluster) whose chunk
    file is not on that worker's disk."""
    by_id = {w.worker_id: w for w in cluster.workers}
    missing = []
    for fid in file_ids:
        for c in file_info(api, fid)["chunks"]:
            for r in c["replicas"]:
                w = by_id.get(r["worker_id"])
                if w is not None and c["chunk_id"] not in h.chunk_records(w.data_dir):
                    missing.append(f"file {fid} chunk {c['index']} ({c['chunk_id'][:12]}) "
                                   f"listed on {w.name} but not on its disk")
    return missing


def master_env(**extra: Any) -> dict:
    # No chunk cache: every read here must reach a worker, so that reads see
    # (and mark) damaged replicas and fail over from dead workers.
    return {"CHUNK_SIZE": CHUNK, "REPLICATION_FACTOR": RF, "CHUNK_CACHE_SIZE": 0, **extra}


# ---- 1. a worker crashes: reads fail over at once, then repair --------------------------


@pytest.mark.slow(reason="waits for a dead worker's chunks to be re-replicated")
def test_worker_crash_reads_fail_over_at_once_then_chunks_are_rereplicated(cluster):
    # Dead only after 3 s, so the first reads run while the master still
    # believes the killed worker is alive.
    m = cluster.start(workers=5, master_env=master_env(REPAIR_AFTER_MS=2000,
                                                       WORKER_DEAD_AFTER_MS=3000))
    api = m.user_client()
    rng = random.Random(1)
    files = upload_files(api, rng, 20, 2, 5)
    assert_replicated(cluster, api, m, files)
    where = holders(api, files)

    counts = {w.worker_id: sum(w.worker_id in hs for hs in where.values())
              for w in cluster.workers}
    victim = max(cluster.workers, key=lambda w: counts[w.worker_id])
    affected = {c for c, hs in where.items() if victim.worker_id in hs}
    assert affected, counts
    _, repaired_before, _ = repair_stats(m)

    victim.kill()
    began = time.monotonic()
    assert_downloads(api, files, "right after the SIGKILL")
    took = time.monotonic() - began
    rec = m.worker_record(victim.worker_id)
    assert rec["status"] == "alive", \
        f"the downloads took {took:.1f}s: too long to show reads failing over before the " \
        f"master noticed the crash ({rec})"

    m.wait_worker_status(victim.worker_id, "dead", timeout=secs(5))
    under, repaired, _ = repair_stats(m)
    assert repaired == repaired_before, \
        f"chunks re-replicated {time.monotonic() - began:.1f}s after the crash, before " \
        f"WORKER_DEAD_AFTER_MS + REPAIR_AFTER_MS (5 s): repaired_total {repaired}"
    poll(lambda: (repair_stats(m)[0] > 0, repair_stats(m)), secs(5),
         "health to count the dead worker's chunks as under-replicated")

    wait_fully_replicated(cluster, api, m, files, 60.0 * SLOWDOWN,
                          "every chunk back to 3 replicas on alive workers")
    under, repaired, failed = repair_stats(m)
    assert repaired - repaired_before >= len(affected), \
        f"repaired_total grew by {repaired - repaired_before}, {len(affected)} chunks had a " \
        f"replica on the dead worker"
    assert failed == 0, f"repair failures with 4 healthy workers: {failed}"
    assert_downloads(api, files, "after re-replication")


@pytest.mark.slow(reason="waits for a dead worker's chunks to be re-replicated")
def test_a_dead_workers_many_chunks_are_repaired_in_back_to_back_passes(cluster):
    """A pass takes at most 64 chunks; a full one that repaired something is
    followed at once (without the count), not a second later, so that
    REPAIR_BANDWIDTH bounds a dead worker's repair, not 64 chunks/s."""
    m = cluster.start(workers=4, master_env=master_env(REPAIR_AFTER_MS=0,
                                                       REPAIR_BANDWIDTH="1G"))
    api = m.user_client()
    files = upload_files(api, random.Random(64), 8, 20, 30)
    where = holders(api, files)
    victim = cluster.workers[0]
    held = sum(victim.worker_id in hs for hs in where.values())
    assert held > 2 * 64, f"the victim holds {held} chunks: not enough for three passes"
    mark = m.log_mark()
    victim.kill()
    m.wait_worker_status(victim.worker_id, "dead", timeout=secs(5))
    wait_fully_replicated(cluster, api, m, files, secs(60),
                          "every chunk back to 3 replicas on the 3 survivors")
    log = m.stderr_since(mark)
    assert "(a full pass continued)" in log, \
        "no full repair pass was followed at once:\n" + "\n".join(
            line for line in log.splitlines() if "repair:" in line)
    assert_downloads(api, files, "after the repair")


@pytest.mark.slow(reason="waits for re-replication from the last replica")
def test_two_workers_lost_at_once_chunks_are_copied_from_the_last_replica(cluster):
    m = cluster.start(workers=5, master_env=master_env(REPAIR_AFTER_MS=0))
    api = m.user_client()
    files = upload_files(api, random.Random(11), 10, 2, 4)
    gone = cluster.workers[:2]
    gone_ids = {w.worker_id for w in gone}
    where = holders(api, files)
    last_copy = [c for c, hs in where.items() if gone_ids <= hs]
    for w in gone:
        w.kill()
    assert_downloads(api, files, "with two of five workers killed")
    for w in gone:
        m.wait_worker_status(w.worker_id, "dead", timeout=secs(5))
    wait_fully_replicated(cluster, api, m, files, secs(30),
                          "every chunk back to 3 replicas on the 3 survivors")
    survivors = [w for w in cluster.workers if w not in gone]
    for w in survivors:
        assert set(w.chunk_usage().ids) >= set(where), f"{w.name} lacks chunks"
    assert repair_stats(m)[2] == 0, "repair failures"
    print(f"{len(last_copy)} chunks had a single replica left")
    for w in survivors[:2]:
        w.kill()
    assert_downloads(api, files, f"from {survivors[2].name} alone")


@pytest.mark.slow(reason="waits for re-replication while many chunks cannot be repaired")
def test_unreadable_chunks_do_not_starve_the_repair_of_others(cluster):
    """Three of six workers are lost at once: the chunks that only they held
    cannot be repaired (until one returns), the others can and must be,
    however many of the first kind there are."""
    m = cluster.start(workers=3, master_env=master_env(REPAIR_AFTER_MS=0))
    api = m.user_client()
    rng = random.Random(12)
    # 70 chunks on the first three workers only: more than a repair batch.
    lost_file = upload_files(api, rng, 1, 70, 70, prefix="only-on-abc")
    first = list(cluster.workers)
    for _ in range(3):
        cluster.add_worker()
    m.wait_workers(alive=6, total=6)
    files = upload_files(api, rng, 12, 2, 3)
    first_ids = {w.worker_id for w in first}
    where = holders(api, files)
    savable = {fid for fid in files
               if all(where[c["chunk_id"]] - first_ids for c in file_info(api, fid)["chunks"])}
    assert len(savable) >= 6, "placement put almost everything on the first three workers"

    for w in first:
        w.kill()
    for w in first:
        m.wait_worker_status(w.worker_id, "dead", timeout=secs(5))
    r = api.get(f"/api/v1/files/{next(iter(lost_file))}/download")
    h.assert_json_error(r, 503, "chunk_unavailable")
    # The chunks held only by the dead workers (the 70 of lost_file, and
    # any of the other files') stay under-replicated.
    lost_where = holders(api, lost_file)
    unreadable = {c for c, ws in {**where, **lost_where}.items() if not ws - first_ids}
    wait_fully_replicated(cluster, api, m, savable, secs(10),
                          "the chunks with a surviving replica to be re-replicated "
                          "(the unreadable ones first in line must not block them)",
                          under_expected=len(unreadable))
    assert_downloads(api, {fid: files[fid] for fid in savable}, "after the repair")


def chunks_whose_ids(rng: random.Random, sizes: list[int], first_hex: str) -> bytes:
    """Random chunks of these sizes, each drawn until its id (SHA-256)
    starts with a digit in first_hex: the order repair takes them in."""
    out = bytearray()
    for size in sizes:
        while True:
            piece = rng.randbytes(size)
            if sha(piece)[0] in first_hex:
                break
        out += piece
    return bytes(out)


@pytest.mark.parametrize("repair_after_ms", [0, 1000])
def test_a_pass_that_repaired_nothing_backs_off_only_until_a_worker_dies(cluster, nemesis,
                                                                        repair_after_ms):
    """A repair pass that could repair nothing backs off for 10 s, unless
    the workers repair counts as holding replicas change meanwhile (those
    heard from within WORKER_DEAD_AFTER_MS + REPAIR_AFTER_MS). Workers lost
    one after another (a rack at once) leave chunks whose only counted
    holder is one that does not answer: every read fails, and with the
    fewest replicas left those chunks fill a whole pass. Here the last
    holder of 70 chunks (ids sorting first: they fill the 64 of a pass)
    stays alive but unreachable; the pass fails all 64 and repairs none of
    the chunks that can be copied. Once that worker is dead and no longer
    counted, the copies must be made at once, not after the rest of the
    10 s (they used to be: the cause of a CI failure of the test above).
    With REPAIR_AFTER_MS > 0 that is REPAIR_AFTER_MS after it is judged
    dead, not when it is judged dead (a pass then still counts it)."""
    m = cluster.start(workers=2, master_env=master_env(REPAIR_AFTER_MS=repair_after_ms))
    last, to_last, _ = nemesis.add_linked_worker(cluster, m, "last-holder")
    api = m.user_client()
    rng = random.Random(13)
    lost = api.upload(chunks_whose_ids(rng, [CHUNK] * 70, "0"), name="only-on-abc.bin")
    first = list(cluster.workers)
    for _ in range(3):
        cluster.add_worker()
    m.wait_workers(alive=6, total=6)
    files = {}
    for i in range(12):
        sizes = [CHUNK] * rng.randint(1, 2) + [rng.randint(1, CHUNK)]
        data = chunks_whose_ids(rng, sizes, "123456789abcdef")
        files[api.upload(data, name=f"f{i}.bin")["file_id"]] = data
    first_ids = {w.worker_id for w in first}
    where = holders(api, files)
    savable = {fid for fid in files
               if all(where[c["chunk_id"]] - first_ids for c in file_info(api, fid)["chunks"])}
    assert len(savable) >= 6, "placement put almost everything on the first three workers"
    lost_where = holders(api, [lost["file_id"]])
    assert len(lost_where) == 70 and all(ws == first_ids for ws in lost_where.values()), \
        lost_where
    unreadable = {c for c, ws in {**where, **lost_where}.items() if not ws - first_ids}

    to_last.cut(reset=True)  # the master's reads of it fail; its beats still arrive
    dying = [w for w in first if w is not last]
    for w in dying:  # both before either is judged dead: no pass reads from one
        w.kill()
    for w in dying:
        m.wait_worker_status(w.worker_id, "dead", timeout=secs(5))
    _, repaired, failed = repair_stats(m)
    # A pass after both deaths: all 64 of its chunks held only by the last.
    poll(lambda: (repair_stats(m)[2] >= failed + 64, repair_stats(m)),
         secs(15), "a repair pass that fails every chunk it takes")
    failed_at = time.monotonic()
    assert m.worker_record(last.worker_id)["status"] == "alive"
    assert repair_stats(m)[1] == repaired, "a chunk was repaired while the pass was full of " \
        "unreadable ones: the test does not test the back-off"

    mark = m.log_mark()
    last.kill()
    wait_fully_replicated(cluster, api, m, savable, secs(20),
                          "the chunks with a surviving replica to be re-replicated",
                          under_expected=len(unreadable))
    took = time.monotonic() - failed_at
    assert took < 9.5, f"repaired {took:.1f} s after the failed pass: the back-off ran out"
    assert "the workers counted as holding replicas changed during a back-off" in \
        m.stderr_since(mark)
    assert_downloads(api, {fid: files[fid] for fid in savable}, "after the repair")


# ---- 2. a worker crashes under 4 uploading clients ---------------------------------------


@pytest.mark.slow(reason="4 clients upload 1 MiB files for several seconds")
def test_uploads_survive_a_worker_crash(cluster):
    m = cluster.start(workers=5, master_env=master_env())
    clients = [m.user_client() for _ in range(4)]
    up = Uploaders(clients, lambda rng: 1 << 20, "crash", seed=2).start()
    victim = cluster.workers[2]
    try:
        poll(lambda: (len(up.acked()) >= 4, len(up.snapshot())), secs(30),
             "the uploads to get going")
        killed_at = time.monotonic()
        victim.kill()
        acked_before = len(up.acked())

        def enough():
            check_running(cluster)
            after = len(up.acked()) - acked_before
            return time.monotonic() - killed_at >= 3.0 and after >= 8, after
        poll(enough, secs(60), "8 more uploads after the crash")
    finally:
        up.stop()

    outcomes = up.snapshot()
    failed = [o for o in outcomes if o.status != 201]
    assert not failed, f"{len(failed)} of {len(outcomes)} uploads failed around the crash: " + \
        "; ".join(f"{o.name}: {o.status} {o.error or o.body}" for o in failed[:5])
    straddling = [o for o in outcomes if o.started < killed_at < o.ended]
    assert straddling, "no upload was in flight at the SIGKILL: the test did not test that"
    acked = check_acked(outcomes)
    api = clients[0]
    assert_acked_download(api, acked, "after the worker crash")
    for fid, o in acked.items():
        for c in file_info(api, fid)["chunks"]:
            listed = [r["worker_id"] for r in c["replicas"]]
            assert len(set(listed)) == RF, f"{o.name} chunk {c['index']}: replicas {listed}"
            if o.started > killed_at:
                assert victim.worker_id not in listed, \
                    f"{o.name}, uploaded after the crash, has a replica recorded on the " \
                    f"dead worker: chunk {c['index']} {listed}"


# ---- 3. silent corruption of every chunk file of one worker -----------------------------


@pytest.mark.slow(reason="waits for scrub passes (SCRUB_INTERVAL_MS=3000) and repair")
@pytest.mark.parametrize("damage_id_file", [False, True], ids=["chunks", "chunks+worker_id"])
def test_corrupted_worker_is_scrubbed_and_repaired(cluster, damage_id_file):
    m = cluster.start(workers=3, master_env=master_env(),
                      worker_env={"SCRUB_INTERVAL_MS": 3000, "REPORT_INTERVAL_MS": 2000})
    api = m.user_client()
    rng = random.Random(3)
    files = upload_files(api, rng, 10, 1, 4)
    needed = chunk_ids_of(api, files)
    victim, others = cluster.workers[0], cluster.workers[1:]
    old_id = victim.worker_id
    assert set(victim.chunk_usage().ids) == needed, "3 workers, 3 replicas: it holds them all"

    if damage_id_file:
        victim.kill()  # the damage happens while it is down; it reads its id at start
    damaged: dict[str, str] = {}  # chunk id -> sha256 of the damaged file
    for cid in sorted(needed):
        h.damage_chunk_payload(victim.data_dir, cid, rng)
        damaged[cid] = sha(stored_payload(victim, cid))
    if damage_id_file:
        overwrite(victim.id_file, rng)
        victim.start()

        def id_rewritten():  # Worker.stored_id() cannot read the garbage
            victim.check_alive()
            raw = victim.id_file.read_bytes().strip()
            return re.fullmatch(rb"[A-Za-z0-9_-]{1,64}", raw) is not None, raw[:70]
        poll(id_rewritten, secs(10), f"{victim.name} to store a new worker id", interval=0.05)
        new_id = victim.wait_registered()
        assert new_id != old_id, "a worker whose worker_id file is garbage registers anew"
        m.wait_worker_status(old_id, "dead", timeout=secs(3))

    assert_downloads(api, files, "with one replica of every chunk damaged")

    def healed() -> list[str]:
        problems = []
        for cid, bad in damaged.items():
            payload = stored_payload(victim, cid)
            if payload is None:
                problems.append(f"{cid[:12]} not back on {victim.name}")
                continue
            now = sha(payload)
            if now == bad:
                problems.append(f"{cid[:12]} still damaged on {victim.name}")
        return problems

    _, repaired_before, _ = repair_stats(m)
    wait_fully_replicated(cluster, api, m, files, secs(30),
                          "the damaged replicas to be found and rewritten", extra=healed)
    under, repaired, failed = repair_stats(m)
    assert repaired >= len(damaged), \
        f"repaired_total {repaired} (was {repaired_before} after the first downloads) for " \
        f"{len(damaged)} damaged replicas"
    if not damage_id_file:
        # Found by the scrubber or by a read, and kept aside for the operator.
        assert set(damaged) <= quarantined(victim), \
            f"not in {victim.name}'s corrupt/: {sorted(set(damaged) - quarantined(victim))[:5]}"

    for w in others:
        w.kill()
    assert_downloads(api, files, f"from {victim.name} alone after the repair")


# ---- 4. the master crashes during uploads ---------------------------------------------


@pytest.mark.slow(reason="master crash and restart, then waits for the collector and reports")
def test_master_crash_during_uploads_loses_nothing_acknowledged(cluster):
    m = cluster.start(workers=3,
                      master_env=master_env(UPLOAD_IDLE_TIMEOUT_MS=1000, GC_GRACE_MS=500,
                                            ORPHAN_GRACE_MS=1500),
                      worker_env={"REPORT_INTERVAL_MS": 500})
    clients = [m.user_client() for _ in range(4)]
    api = m.user_client()
    up = Uploaders(clients, lambda rng: rng.randint(2 * CHUNK, 7 * CHUNK), "mc", seed=4,
                   timeout=30).start()
    try:
        poll(lambda: (len(up.acked()) >= 6, len(up.snapshot())), secs(30),
             "the uploads to get going")
        killed_at = time.monotonic()
        m.kill()
        time.sleep(0.5)
        m.start()
        m.wait_ready()
        restarted_at = time.monotonic()

        def enough():
            check_running(cluster)
            return sum(o.started > restarted_at for o in up.acked()) >= 6, len(up.acked())
        poll(enough, secs(60), "6 uploads to succeed after the master's restart")
    finally:
        up.stop()

    outcomes = up.snapshot()
    straddling = [o for o in outcomes if o.started < killed_at < o.ended]
    assert straddling, "no upload was in flight when the master was killed"
    acked = check_acked(outcomes)
    by_name = {o.name: o for o in outcomes}
    assert_acked_download(api, acked, "after the master's restart")

    listed = list_all_files(api)
    listed_names = [f["name"] for f in listed]
    assert len(set(listed_names)) == len(listed_names), "a file is listed twice"
    acked_names = {o.name for o in acked.values()}
    missing = acked_names - set(listed_names)
    assert not missing, f"acknowledged uploads not listed: {sorted(missing)[:5]}"
    for f in listed:
        o = by_name.get(f["name"])
        assert o is not None, f"listed file {f} was never uploaded"
        if o.status == 201:
            continue
        # The only uploads that may exist without a 201 are those cut off by
        # the crash after their commit (the answer was lost); never one that
        # got an HTTP error.
        assert o.status is None and o.started < killed_at < o.ended, \
            f"upload {o.name} answered {o.status} {o.body!r} (error {o.error!r}), yet it is " \
            f"listed: {f}"
    for f in listed:  # nothing half-visible: every listed file reads back whole
        o = by_name[f["name"]]
        assert (f["size"], f["sha256"]) == (o.size, o.sha256), f
        size, digest = api.download_sha256(f["file_id"])
        assert (size, digest) == (o.size, o.sha256), f"listed {f['name']} reads back wrong"

    # The chunks of uploads that never completed go: expired hidden sessions
    # through the collector, chunks never recorded through worker reports.
    file_ids = [f["file_id"] for f in listed]
    needed = chunk_ids_of(api, file_ids)
    print(f"{len(outcomes)} uploads: {len(acked)} acknowledged, "
          f"{sum(o.status is None for o in outcomes)} without an answer, "
          f"{sum(o.status not in (None, 201) for o in outcomes)} refused; {len(listed)} listed; "
          f"garbage right after: {disk_vs_needed(cluster, needed)}")
    poll(lambda: (not (p := disk_vs_needed(cluster, needed)), p), secs(30),
         "the workers to hold exactly 3 copies of each chunk the files need")
    assert_replicated(cluster, api, m, file_ids)
    assert_acked_download(api, acked, "after garbage collection")


# ---- 5. a worker hangs (SIGSTOP) during uploads ------------------------------------------


@pytest.mark.slow(reason="uploads wait out the 3 s stall detection while a worker is paused")
def test_paused_worker_stalls_are_detected_and_uploads_succeed(cluster):
    # The paused worker keeps looking alive (WORKER_DEAD_AFTER_MS=30000), so
    # placement keeps choosing it and only the stall detection (a write
    # moving less than 1 KiB/s for 3 s is given up) saves the uploads.
    # ORPHAN_GRACE_MS: a surplus copy no replica row names is dropped only
    # once that old (LIFECYCLE T17), so the abandoned writes go 2 s after
    # they land.
    m = cluster.start(workers=5, master_env=master_env(WORKER_DEAD_AFTER_MS=30000,
                                                       ORPHAN_GRACE_MS=2000),
                      worker_env={"REPORT_INTERVAL_MS": 500})
    clients = [m.user_client() for _ in range(3)]
    api = m.user_client()
    victim = cluster.workers[1]
    mark = m.log_mark()
    victim.pause()
    # Files of one or two chunks.
    up = Uploaders(clients, lambda rng: rng.choice([CHUNK, 2 * CHUNK]), "stall", seed=5,
                   timeout=60).start()
    try:
        time.sleep(7.0)
    finally:
        up.stop()
    outcomes = up.snapshot()
    beat = m.worker_record(victim.worker_id)["last_heartbeat"]
    victim.resume()
    poll(lambda: ((rec := m.worker_record(victim.worker_id))["status"] == "alive" and
                  rec["last_heartbeat"] != beat, rec), secs(5),
         f"{victim.name} to beat again after SIGCONT")

    assert outcomes, "no upload ran"
    failed = [o for o in outcomes if o.status != 201]
    assert not failed, f"{len(failed)} uploads failed while a worker was paused: " + \
        "; ".join(f"{o.name}: {o.status} {o.error or o.body}" for o in failed[:5])
    took = [(o.name, o.size // CHUNK, round(o.ended - o.started, 1)) for o in outcomes]
    slow = [t for t in took if t[2] > 10.0 + h.TIMING_MARGIN_S * SLOWDOWN]
    assert not slow, f"uploads (name, chunks, seconds) took longer than 10 s: {slow}"
    # One stalled replica write costs about 3 s; a one-chunk upload meets at
    # most one.
    slow = [t for t in took if t[1] == 1 and t[2] > 5.0 + h.TIMING_MARGIN_S]
    assert not slow, f"one-chunk uploads (name, chunks, seconds) took longer than a 3 s " \
        f"stall allows: {slow}; all: {took}"
    stalls = re.findall(rf"write to worker {re.escape(victim.worker_id)} failed",
                        m.stderr_since(mark))
    assert stalls, "no write to the paused worker was attempted: stall detection not exercised"
    acked = check_acked(outcomes)
    assert not (p := replicas_missing_on_disk(api, cluster, acked)), p[:6]
    assert_acked_download(api, acked, "after SIGCONT")
    for fid, o in acked.items():
        for c in file_info(api, fid)["chunks"]:
            listed = [r["worker_id"] for r in c["replicas"]]
            assert len(set(listed)) == RF, f"{o.name} chunk {c['index']}: replicas {listed}"
    # The writes the master gave up on may still land on the resumed worker;
    # its reports remove them once older than ORPHAN_GRACE_MS (the chunks
    # have 3 good replicas elsewhere).
    needed = chunk_ids_of(api, acked)
    poll(lambda: (not (p := disk_vs_needed(cluster, needed)), p), secs(15),
         "the abandoned writes to be removed from the resumed worker")


@pytest.mark.slow(reason="uploads wait out the 3 s stall detection while a worker is paused")
def test_replica_written_before_a_slow_one_is_not_reported_as_an_orphan(cluster):
    """While one replica write stalls (3 s), the replicas already written are
    on their workers' disks but not yet in the metadata. A chunk report
    in that window must not have them deleted as orphans: a 201 promises
    every recorded replica is durable. (ORPHAN_GRACE_MS=1000 is accepted by
    the master; the stall is shorter than the default write deadline.)"""
    m = cluster.start(workers=4, master_env=master_env(WORKER_DEAD_AFTER_MS=60000,
                                                       ORPHAN_GRACE_MS=1000),
                      worker_env={"REPORT_INTERVAL_MS": 300})
    api = m.user_client()
    victim = cluster.workers[0]
    victim.pause()
    rng = random.Random(10)
    files: dict[str, bytes] = {}
    stalled = 0
    while not stalled and len(files) < 10:  # until an upload met the paused worker
        data = payload(rng, CHUNK)
        began = time.monotonic()
        files[api.upload(data, name=f"slow{len(files)}.bin", timeout=60)["file_id"]] = data
        stalled += time.monotonic() - began > 2.0
    missing = replicas_missing_on_disk(api, cluster, files)
    victim.resume()
    assert not missing, f"{len(missing)} replicas recorded for acknowledged uploads are not " \
        f"on disk (deleted by a chunk report while the upload waited for a slow " \
        f"replica): {missing[:4]}"
    assert stalled, "no upload met the paused worker: the test tested nothing"
    assert_downloads(api, files, "after the stall")


# ---- 6. a crashed worker rejoins after its chunks were repaired elsewhere ------------------


@pytest.mark.slow(reason="repair, collection and a rejoin report")
def test_rejoining_worker_drops_surplus_and_deleted_chunks(cluster):
    m = cluster.start(workers=4,
                      master_env=master_env(REPAIR_AFTER_MS=500, GC_GRACE_MS=500,
                                            ORPHAN_GRACE_MS=1000),
                      worker_env={"REPORT_INTERVAL_MS": 1000})
    api = m.user_client()
    rng = random.Random(6)
    files = upload_files(api, rng, 8, 2, 4)
    where = holders(api, files)
    victim = cluster.workers[3]
    vid = victim.worker_id
    # The file to delete has a chunk on the victim.
    doomed = next(fid for fid in files
                  if any(vid in where[c["chunk_id"]] for c in file_info(api, fid)["chunks"]))
    doomed_chunks = chunk_ids_of(api, [doomed])
    assert doomed_chunks & set(victim.chunk_usage().ids)

    victim.kill()
    r = api.delete(f"/api/v1/files/{doomed}")
    assert r.status_code == 204, r.text
    del files[doomed]
    m.wait_worker_status(vid, "dead", timeout=secs(5))
    files.update(upload_files(api, rng, 1, 3, 3, prefix="while-away"))
    live = [w for w in cluster.workers if w is not victim]
    wait_fully_replicated(
        cluster, api, m, files, secs(30), "the repair while the worker is away",
        extra=lambda: [f"{c[:12]} of the deleted file still on a live worker"
                       for c in doomed_chunks if c in cluster.chunk_usage(live).ids])
    stale = set(victim.chunk_usage().ids)
    assert doomed_chunks & stale, "the dead worker's disk was touched"

    victim.start()
    assert victim.wait_registered() == vid, "a restarted worker keeps its worker_id"
    needed = chunk_ids_of(api, files)

    def settled():
        check_running(cluster)
        problems = disk_vs_needed(cluster, needed)
        left = doomed_chunks & set(victim.chunk_usage().ids)
        if left:
            problems.append(f"{len(left)} chunks of the deleted file still on {victim.name}")
        for fid in files:
            for c in file_info(api, fid)["chunks"]:
                listed = [x["worker_id"] for x in c["replicas"]]
                if len(listed) != RF:
                    problems.append(f"chunk {c['chunk_id'][:12]} lists {len(listed)} replicas")
        return not problems, problems[:6]
    poll(settled, secs(20), "the rejoined worker's report to remove what is not needed")
    assert_replicated(cluster, api, m, files)
    assert_downloads(api, files, "after the rejoin")


# ---- 7. a chunk file removed by hand is noticed by the next report ---------------------------


@pytest.mark.slow(reason="a replica must be older than the report's 5 s skew margin")
def test_chunk_files_lost_from_disk_are_reported_and_repaired(cluster):
    """Nothing reads the chunks: only the workers' chunk reports can tell the
    master that a chunk's bytes were lost from one worker's disk while it was
    down (its record made dead), and that another worker came back (same
    worker_id) with an empty chunk store (a replaced disk)."""
    m = cluster.start(workers=3, master_env=master_env(),
                      worker_env={"REPORT_INTERVAL_MS": 500})
    api = m.user_client()
    rng = random.Random(7)
    files = upload_files(api, rng, 3, 2, 3)
    needed = chunk_ids_of(api, files)
    one, wiped = cluster.workers[1], cluster.workers[2]
    cid = file_info(api, next(iter(files)))["chunks"][1]["chunk_id"]
    _, repaired_before, _ = repair_stats(m)
    one_id = one.worker_id
    one.kill()
    h.drop_chunk_record(one.data_dir, cid)
    assert cid not in one.chunk_usage().ids
    one.start()
    assert one.wait_registered() == one_id
    wid = wiped.worker_id
    wiped.kill()
    for p in list((wiped.data_dir / "volumes").glob("*.vol")):
        p.unlink()
    assert wiped.chunk_usage().count == 0
    wiped.start()
    assert wiped.wait_registered() == wid

    def noticed():
        under, repaired, _ = repair_stats(m)
        return under > 0 or repaired > repaired_before, (under, repaired)
    poll(noticed, secs(20), "the lost replicas to be noticed (under_replicated or repair)")
    wait_fully_replicated(cluster, api, m, files, secs(20), "the lost replicas to come back",
                          extra=lambda: disk_vs_needed(cluster, needed))
    assert repair_stats(m)[1] >= repaired_before + len(needed), \
        f"repaired_total {repair_stats(m)[1]} for {len(needed)} lost replicas"
    assert_downloads(api, files, "after the repair")
    for w in cluster.workers:
        if w is not wiped:
            w.kill()
    assert_downloads(api, files, f"from {wiped.name} alone")


# ---- 7b. a data directory of the layout before volume files ------------------------------


def write_old_layout_chunk(data_dir: Path, payload: bytes, gzip: bool = False,
                           damage: bool = False) -> str:
    """Writes a chunk file as workers stored them before volume files:
    chunks/<2 hex>/<id>, a 32-byte header ("EFSC", version 1, flags, length
    le64 at 8, payload CRC32C at 16, CRC32C of bytes 0..28 at 28), then the
    payload. Returns the chunk id (the payload's SHA-256)."""
    cid = hashlib.sha256(payload).hexdigest()
    crc = h.crc32c(payload) ^ (1 if damage else 0)
    head = bytearray(32)
    head[0:4] = b"EFSC"
    head[4] = 1
    head[5] = 1 if gzip else 0
    head[8:16] = len(payload).to_bytes(8, "little")
    head[16:20] = crc.to_bytes(4, "little")
    head[28:32] = h.crc32c(bytes(head[:28])).to_bytes(4, "little")
    d = data_dir / "chunks" / cid[:2]
    d.mkdir(parents=True, exist_ok=True)
    (d / cid).write_bytes(bytes(head) + payload)
    return cid


def test_worker_on_an_old_layout_data_dir_serves_its_chunks(cluster):
    """Upgrading a worker: its chunk files are imported into volume files at
    start and served as before; a damaged one is quarantined."""
    m = cluster.add_master(**master_env())
    w = cluster.add_worker(master=m, start=False)
    rng = random.Random(12)
    kept = [rng.randbytes(n) for n in (1, 1000, CHUNK)]
    ids = [write_old_layout_chunk(w.data_dir, p) for p in kept]
    bad = write_old_layout_chunk(w.data_dir, rng.randbytes(500), damage=True)
    w.start()
    w.wait_registered()
    wc = w.client(h.CLUSTER_SECRET)
    for cid, payload in zip(ids, kept):
        r = wc.get(f"/chunks/{cid}")
        assert r.status_code == 200, r.text
        assert r.content == payload
        assert r.headers["X-Chunk-Encoding"] == "identity"
    assert wc.get(f"/chunks/{bad}").status_code == 404
    assert bad in quarantined(w)
    assert not (w.data_dir / "chunks").exists(), "the old chunk directory was left behind"
    assert set(w.chunk_usage().ids) == set(ids)
    w.stop()
    w.start()
    w.wait_ready()
    assert w.client(h.CLUSTER_SECRET).get(f"/chunks/{ids[1]}").content == kept[1]


# ---- 8. a full worker --------------------------------------------------------------------


def test_full_worker_is_avoided_and_uploads_succeed(cluster):
    small = 120000  # room for one 64 KiB chunk
    # With one worker full, a busy master that counted one more worker dead
    # for a moment would have no room for 3 replicas: dead after 3 s only.
    m = cluster.add_master(**master_env(WORKER_DEAD_AFTER_MS=3000))
    roomy = {"WORKER_CAPACITY_BYTES": 8 << 20}  # comparable weights: the small one gets picked
    ws = [cluster.add_worker(wait=False, **roomy) for _ in range(3)]
    full = cluster.add_worker(wait=False, WORKER_CAPACITY_BYTES=small)
    for w in [*ws, full]:
        w.wait_registered()
    m.wait_workers(alive=4, total=4)
    mark = m.log_mark()

    clients = [m.user_client() for _ in range(3)]
    # Five each: the roomy workers' 8 MiB hold about 35 such uploads, and
    # how many more than 15 would start before stop() depends on timing.
    up = Uploaders(clients, lambda rng: rng.randint(3 * CHUNK + 1, 4 * CHUNK), "full",
                   seed=8, max_each=5).start()
    try:
        poll(lambda: (len(up.snapshot()) >= 15, len(up.snapshot())), secs(60),
             "15 uploads")
    finally:
        up.stop()
    outcomes = up.snapshot()
    failed = [o for o in outcomes if o.status != 201]
    assert not failed, f"{len(failed)} uploads failed with one worker full: " + \
        "; ".join(f"{o.name}: {o.status} {o.error or o.body}" for o in failed[:5])
    acked = check_acked(outcomes)
    api = clients[0]
    assert_acked_download(api, acked, "with one worker full")
    assert_replicated(cluster, api, m, acked)

    stored = full.chunk_usage()
    assert stored.payload_bytes <= small, \
        f"{full.name} stores {stored.payload_bytes} bytes, more than its capacity {small}"

    def reported():
        rec = m.worker_record(full.worker_id)
        ok = rec["capacity_bytes"] == small and \
            rec["free_bytes"] == small - full.chunk_usage().payload_bytes
        return ok, rec
    rec = poll(reported, secs(5), f"{full.name}'s free space in GET /api/v1/workers")
    assert rec["status"] == "alive" and rec["free_bytes"] < 2 * CHUNK, rec
    rejected = len(re.findall(rf"worker {re.escape(full.worker_id)} answered 507",
                              m.stderr_since(mark)))
    print(f"{full.name}: {stored.count} chunks stored, {rejected} writes answered 507")


# ---- 9. read repair: a damaged replica found by a download is replaced ---------------------


@pytest.mark.slow(reason="downloads until the damaged replica is read, then waits for repair")
def test_damaged_replica_found_by_a_read_is_replaced(cluster):
    m = cluster.start(workers=4, master_env=master_env())
    api = m.user_client()
    rng = random.Random(9)
    files = upload_files(api, rng, 1, 4, 4)
    fid = next(iter(files))
    chunk = file_info(api, fid)["chunks"][1]
    cid = chunk["chunk_id"]
    holder_id = chunk["replicas"][0]["worker_id"]
    holder = next(w for w in cluster.workers if w.worker_id == holder_id)
    h.damage_chunk_payload(holder.data_dir, cid, rng)
    _, repaired_before, _ = repair_stats(m)

    # Reads pick a random good replica first: download until one reads the
    # damaged copy (and the master stops listing it).
    for attempt in range(60):
        assert_downloads(api, files, f"download {attempt} with a damaged replica")
        listed = [r["worker_id"] for r in file_info(api, fid)["chunks"][1]["replicas"]]
        if holder_id not in listed or repair_stats(m)[1] > repaired_before:
            break
    else:
        raise AssertionError(f"60 downloads never noticed the damaged replica on {holder_id}")

    wait_fully_replicated(cluster, api, m, files, secs(15), "the damaged replica's replacement")
    assert repair_stats(m)[1] > repaired_before, "repaired_total did not grow"
    assert cid in quarantined(holder), f"{holder.name} did not quarantine the damaged chunk"
    assert_downloads(api, files, "after the read repair")
