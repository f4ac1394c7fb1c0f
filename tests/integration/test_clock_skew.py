"""Clock skew between a worker and the master deletes nothing acknowledged.

A worker runs with its wall clock 30 s ahead of or behind the master's
(Debian's libfaketime, LD_PRELOAD; its monotonic clock is left alone).
Every decision that can delete a copy or mark a replica bad must be made on
one clock (docs/LIFECYCLE.md, "Which clock decides what"):

  * the collector's conditional DELETE carries a duration
    (X-Unmodified-For-Ms) that the worker measures from its own write time
    on its own clock: a copy written again just before the DELETE arrives is
    kept on a worker behind the master, and a collected chunk is really
    deleted on a worker ahead of it;
  * the end of a full report compares replica creation times with the
    master's reading of the report's start: a worker ahead of the master,
    reporting while uploads are recorded, gets no fresh replica marked bad.

Issue 19: four workers, two 20 s behind and two 20 s ahead, under upload
and delete churn of the same bytes lose nothing and repair nothing; and a
master 20 s ahead of its clients judges token and session expiry on its
own clock.

Needs libfaketime (`apt-get install faketime`, in scripts/install-deps.sh).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
from pathlib import Path

import pytest

import echofs_harness as h
import nemesis as nm
from echofs_harness import wait_until
from test_faults import (CHUNK, RF, disk_vs_needed, file_info, master_env, poll, repair_stats,
                         replication_problems, secs)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
if not LIBFAKETIME.exists():
    pytest.skip("clock skew tests need libfaketime (apt-get install faketime)",
                allow_module_level=True)

SKEW_S = 30
COLLECTED = r"collector: \d+ unreferenced chunks removed"


def skewed(seconds: int) -> dict:
    """A worker's environment with its wall clock @seconds off (+ ahead)."""
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if h.SANITIZE:
        # ASan insists on being first in the library list; a preloaded
        # libfaketime comes before it.  Both work in that order.
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    return env


def worker_clock_offset(w: h.Worker) -> float:
    """How far the worker's wall clock is from ours, from its Date header."""
    r = w.client(h.CLUSTER_SECRET).get("/health")
    their = time.mktime(time.strptime(r.headers["Date"], "%a, %d %b %Y %H:%M:%S GMT"))
    ours = time.mktime(time.gmtime())
    return their - ours


def one_worker_cluster(cluster: h.Cluster, skew_s: int, master_env: dict,
                       worker_env: dict | None = None) -> tuple[h.Master, h.Worker]:
    m = cluster.add_master(REPLICATION_FACTOR=1, **master_env)
    w = cluster.add_worker(master=m, **skewed(skew_s), **(worker_env or {}))
    m.wait_workers(alive=1, total=1)
    offset = worker_clock_offset(w)
    assert abs(offset - skew_s) < 3, f"the worker's clock is {offset:+.0f} s off, not {skew_s:+d}"
    return m, w


def stored_bytes(w: h.Worker, chunk_id: str) -> tuple[bytes, str]:
    r = w.client(h.CLUSTER_SECRET).get(f"/chunks/{chunk_id}")
    assert r.status_code == 200, r.text
    return r.content, r.headers["X-Chunk-Encoding"]


def test_collector_deletes_a_collected_chunk_on_a_worker_ahead(cluster):
    """Before the fix the DELETE said "unless written since <master time -
    grace/2>": a worker 30 s ahead stamped every write later than that and
    answered 412 for ever, keeping every collected chunk."""
    m, w = one_worker_cluster(cluster, +SKEW_S, {"GC_GRACE_MS": 500})
    api = m.user_client()
    data = os.urandom(5000)
    fid = api.upload(data, name="doomed.bin")["file_id"]
    assert set(w.chunk_usage().ids) == {hashlib.sha256(data).hexdigest()}
    mark = m.log_mark()
    assert api.delete(f"/api/v1/files/{fid}").status_code == 204
    m.wait_for_log(COLLECTED, timeout=5 + h.TIMING_MARGIN_S, since=mark)
    wait_until(lambda: w.chunk_usage().count == 0, 5 + h.TIMING_MARGIN_S,
               what="the collected chunk to leave the worker ahead of the master")


@pytest.mark.slow(reason="waits out a 12 s GC_GRACE_MS")
def test_collector_keeps_a_copy_written_again_on_a_worker_behind(cluster):
    """A copy the worker wrote moments before the collector's DELETE (an
    upload that stored the bytes again) is kept, though the worker's clock is
    30 s behind: before the fix its write time looked older than the
    master's "unless written since" time and the copy was deleted."""
    grace_ms = 12000
    m, w = one_worker_cluster(cluster, -SKEW_S, {"GC_GRACE_MS": grace_ms})
    api = m.user_client()
    data = os.urandom(5000)
    cid = hashlib.sha256(data).hexdigest()
    fid = api.upload(data, name="again.bin")["file_id"]
    body, encoding = stored_bytes(w, cid)
    mark = m.log_mark()
    assert api.delete(f"/api/v1/files/{fid}").status_code == 204
    released = time.monotonic()
    # 9 s into the 12 s grace: the collector decides 3-4 s later, well
    # within the grace/2 (6 s) the worker measures on its own clock.
    time.sleep(max(0.0, released + 9 - time.monotonic()))
    r = w.client(h.CLUSTER_SECRET).put(f"/chunks/{cid}", data=body,
                               headers={"X-Chunk-Encoding": encoding,
                                        "X-Chunk-CRC32C": f"{h.crc32c(body):08x}"})
    assert r.status_code == 201, r.text
    assert not re.search(COLLECTED, m.stderr_since(mark)), \
        "the collector ran before the copy was written again: the machine is too slow"
    m.wait_for_log(COLLECTED, timeout=8 + h.TIMING_MARGIN_S, since=mark)
    time.sleep(0.5)  # the DELETE follows the metadata transaction
    assert cid in w.chunk_usage().ids, "the copy written again was deleted"
    assert stored_bytes(w, cid) == (body, encoding)


def test_reports_of_a_worker_ahead_mark_no_fresh_replica_bad(cluster):
    """A worker 30 s ahead sends a full report every 100 ms while uploads are
    recorded on it. Before the fix the end of each report marked bad every
    good replica recorded before its start (worker clock) - 5 s: on a worker
    ahead that includes replicas recorded after its snapshot, not listed in
    it. Every file must keep its one replica good, and read back."""
    m, w = one_worker_cluster(cluster, +SKEW_S, {}, {"REPORT_INTERVAL_MS": 100})
    api = m.user_client()
    files: dict[str, bytes] = {}
    stop = time.monotonic() + 4
    while time.monotonic() < stop:
        data = os.urandom(2000)
        files[api.upload(data, name="f.bin")["file_id"]] = data
    reports = len(re.findall(r"chunk report sent", w.stderr()))
    assert reports >= 5, f"only {reports} full reports ran during the uploads"
    bad = []
    for fid, data in files.items():
        info = api.get(f"/api/v1/files/{fid}").json()
        if len(info["chunks"][0]["replicas"]) != 1:
            bad.append(fid)
    assert not bad, f"{len(bad)} of {len(files)} files lost their good replica to a report"
    assert "no longer holds" not in m.stderr()
    for fid, data in files.items():
        assert api.download(fid) == data


# ---- issue 19 item 5: workers 20 s behind and 20 s ahead under same-bytes churn -------------

CHURN_SKEW_S = 20
BLOCK = 65536  # CHUNK_SIZE of the churn test


def test_same_bytes_churn_on_workers_behind_and_ahead_loses_and_repairs_nothing(cluster):
    """Four workers, two 20 s behind the master and two 20 s ahead
    (replication 3: every chunk has a copy on each side). Four clients
    upload files built from twelve 64 KiB blocks (so files share chunks),
    delete three in four after a moment and mostly upload the same bytes
    again 0.3-1.5 s later, for 10 s, with GC_GRACE_MS 1 s: collection of
    a chunk whose last file went and a fresh upload of the same chunk race
    all the while; two more clients upload new small files all the while,
    and the workers send a full report every 100 ms, racing all of it.
    Then: every file not deleted reads back, every deleted one is gone,
    under_replicated returns to 0 and every chunk settles at exactly 3
    copies, and the master repaired nothing and marked no replica bad: with
    no fault at all, any repair would have replaced a good replica. (With
    the end of a report judged on the worker's clock instead of the
    master's reading, as before issue 12's fix, this fails: 63 replicas
    marked bad, chunks repaired to 4 copies.)"""
    assert CHUNK == BLOCK
    # WORKER_DEAD_AFTER_MS 5 s: no worker is meant to die here, and on a
    # loaded machine a master stalled for a second would count the default
    # 1 s silence as a death (then repair, which this test forbids).
    m = cluster.add_master(**master_env(GC_GRACE_MS=1000, ORPHAN_GRACE_MS=1000,
                                        REPAIR_AFTER_MS=1000, WORKER_DEAD_AFTER_MS=5000))
    skews = [-CHURN_SKEW_S, -CHURN_SKEW_S, +CHURN_SKEW_S, +CHURN_SKEW_S]
    workers = [cluster.add_worker(master=m, wait=False, REPORT_INTERVAL_MS=100,
                                  **nm.clock_skew_env(s)) for s in skews]
    for w in workers:
        w.wait_registered()
    m.wait_workers(alive=4, total=4)
    for w, s in zip(workers, skews):
        offset = worker_clock_offset(w)
        assert abs(offset - s) < 3, f"{w.name}'s clock is {offset:+.0f} s off, not {s:+d}"
    under0, repaired0, failed0 = repair_stats(m)
    assert (under0, repaired0, failed0) == (0, 0, 0)
    mark = m.log_mark()

    rng0 = random.Random(519)
    blocks = [rng0.randbytes(BLOCK) for _ in range(12)]
    lock = threading.Lock()
    kept: dict[str, bytes] = {}     # acknowledged, never deleted
    deleted: set[str] = set()
    errors: list[str] = []
    stop_at = time.monotonic() + 10.0

    def churn(idx: int) -> None:
        rng = random.Random(519 + idx)
        api = m.user_client()
        n = 0
        data = b""
        while time.monotonic() < stop_at:
            n += 1
            if not data or rng.random() < 0.4:  # else the same bytes again
                data = b"".join(rng.choice(blocks) for _ in range(rng.randint(1, 3)))
                if rng.random() < 0.3:
                    data += rng.randbytes(rng.randint(1, 1000))  # a tail chunk of its own
            r = api.post("/api/v1/files/upload", params={"name": f"c{idx}-{n}.bin"},
                         data=data, headers={"Content-Type": "application/octet-stream"},
                         timeout=60)
            if r.status_code != 201:
                with lock:
                    errors.append(f"upload: {r.status_code} {r.text[:200]}")
                continue
            fid = r.json()["file_id"]
            if n % 4 == 0:  # one in four is kept
                with lock:
                    kept[fid] = data
                data = b""
                continue
            time.sleep(rng.uniform(0.0, 0.5))
            r = api.delete(f"/api/v1/files/{fid}", timeout=60)
            with lock:
                if r.status_code == 204:
                    deleted.add(fid)
                else:
                    errors.append(f"delete: {r.status_code} {r.text[:200]}")
            # The same bytes again around the moment the collector (every
            # second, GC_GRACE_MS 1 s) removes the chunks they lost.
            time.sleep(rng.uniform(0.3, 1.5))

    def fresh(idx: int) -> None:
        # New bytes all the while, kept: replicas recorded on every worker
        # while its reports run.
        rng = random.Random(619 + idx)
        api = m.user_client()
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            data = rng.randbytes(rng.randint(1000, 3000))
            r = api.post("/api/v1/files/upload", params={"name": f"n{idx}-{n}.bin"},
                         data=data, headers={"Content-Type": "application/octet-stream"},
                         timeout=60)
            with lock:
                if r.status_code == 201:
                    kept[r.json()["file_id"]] = data
                else:
                    errors.append(f"upload: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(4)]
    threads += [threading.Thread(target=fresh, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a churn thread hung"
    assert not errors, f"{len(errors)} requests failed: {errors[:5]}"
    assert len(kept) >= 4 and len(deleted) >= 10, (len(kept), len(deleted))
    log = m.stderr_since(mark)
    collected = sum(int(n) for n in re.findall(r"collector: (\d+) unreferenced chunks removed",
                                               log))
    assert collected >= 5, f"the collector removed {collected} chunks during the churn: " \
        "too few to race uploads of the same bytes"

    api = m.user_client()
    for fid, data in kept.items():
        assert api.download(fid) == data, f"acknowledged file {fid} came back wrong"
    for fid in deleted:
        assert api.get(f"/api/v1/files/{fid}").status_code == 404, f"deleted {fid} is back"
    needed = {c["chunk_id"] for fid in kept for c in file_info(api, fid)["chunks"]}

    def settled():
        problems = replication_problems(api, m, kept, RF)
        problems += disk_vs_needed(cluster, needed, RF)
        under = m.health()["under_replicated"]
        if under:
            problems.append(f"under_replicated={under}")
        return not problems, problems[:6]
    began = time.monotonic()
    poll(settled, secs(15), "every kept chunk at exactly 3 copies, the rest collected")
    took = time.monotonic() - began
    under, repaired, failed = repair_stats(m)
    log = m.stderr_since(mark)
    print(f"\n{len(kept)} files kept, {len(deleted)} deleted, {collected} chunks collected; "
          f"settled {took:.1f} s after the churn; repaired_total {repaired}")
    assert (repaired, failed) == (0, 0), \
        f"repair ran with no fault: repaired_total {repaired}, failed_total {failed}"
    for line in ("no longer holds", "had no good replica", "counted dead"):
        assert line not in log, f"the master logged {line!r}: " + \
            next(x for x in log.splitlines() if line in x)
    for fid, data in kept.items():
        assert api.download(fid) == data, f"acknowledged file {fid} came back wrong"


def test_token_and_session_expiry_follow_the_masters_clock(cluster):
    """A master 20 s ahead of the client and of its worker: a token that
    expires in 10 s by the client's clock is already expired (401), one
    that expires in 40 s is accepted, and a session's expires_at is
    SESSION_TTL after init on the master's clock. No worker takes part:
    workers never see user tokens or sessions."""
    m = cluster.add_master(REPLICATION_FACTOR=1, SESSION_TTL=60,
                           **nm.clock_skew_env(+CHURN_SKEW_S))
    cluster.add_worker(master=m)
    m.wait_workers(alive=1, total=1)
    _, claims, _ = h.decode_jwt(cluster.token("alice"))

    def with_exp(exp: float) -> h.ApiClient:
        return m.client(h.make_jwt({**claims, "exp": int(exp)}))
    now = time.time()
    r = with_exp(now + 10).get("/api/v1/files")
    h.assert_json_error(r, 401)
    assert with_exp(now + 40).get("/api/v1/files").status_code == 200
    r = with_exp(now + 40).post("/api/v1/files/upload/init", json={"name": "s.bin"})
    assert r.status_code == 201, r.text
    expires = h.parse_iso8601(r.json()["expires_at"]).timestamp()
    assert abs(expires - (now + CHURN_SKEW_S + 60)) < 3, \
        f"expires_at is {expires - now:+.0f} s from the client's now, expected " \
        f"{CHURN_SKEW_S + 60:+d} (SESSION_TTL on the master's clock)"
