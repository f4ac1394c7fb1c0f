"""Replica rows that disagree with the workers' disks: the cluster believes
the disks, not its rows.

* A chunk whose every replica is marked bad while a worker still holds an
  intact copy recovers by itself: repair reads a bad replica, the bytes
  verify against the chunk id, the replica is good again and the chunk is
  copied back to REPLICATION_FACTOR good replicas (docs/LIFECYCLE.md T29,
  R12; it was weakness W5). A copy whose bytes do not verify stays bad.
* An upload of bytes already stored (a dedup hit) counts only the replicas
  whose workers confirm they hold the chunk (a HEAD each): copies lost
  behind the master's back are written again before the upload is
  acknowledged (LIFECYCLE T10).

Black-box: the replicas are made bad by what happens to real disks (a
worker started before its disk was mounted answers 404 for everything, and
reads mark its replicas bad; the disk is mounted again later), copies are
lost or replaced through the workers' own chunk API with the cluster
secret (what a buggy tool or an operator's cleanup would do), and the
master is watched through GET /api/v1/files/{id} (replicas lists the good
ones) and /api/v1/health (under_replicated, repair.failed_total).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from pathlib import Path

import echofs_harness as h

CHUNK = 65536
RF = 3
SLOWDOWN = 3.0 if h.SANITIZE else 1.0


def secs(seconds: float) -> float:
    return seconds * SLOWDOWN + h.TIMING_MARGIN_S


def master_env(**extra) -> dict:
    # No chunk cache: every read reaches a worker, so reads see (and mark)
    # what the workers hold.
    return {"CHUNK_SIZE": CHUNK, "REPLICATION_FACTOR": RF, "CHUNK_CACHE_SIZE": 0, **extra}


def poll(check, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    detail = None
    while True:
        done, detail = check()
        if done:
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}: {detail}")
        time.sleep(interval)


def chunks_of(api: h.ApiClient, fid: str) -> list[dict]:
    r = api.get(f"/api/v1/files/{fid}")
    assert r.status_code == 200, r.text
    return r.json()["chunks"]


def under_replicated(m: h.Master) -> int:
    return m.health()["under_replicated"]


def failed_total(m: h.Master) -> int:
    return m.health()["repair"]["failed_total"]


def listed(api: h.ApiClient, fid: str) -> list[list[str]]:
    """The workers listed as holding a good replica, per chunk."""
    return [sorted(r["worker_id"] for r in c["replicas"]) for c in chunks_of(api, fid)]


def unmount(w: h.Worker) -> Path:
    """Moves the worker's volume files aside (its disk not mounted);
    only while it is down. Returns where they went."""
    aside = w.dir / "unmounted"
    aside.mkdir()
    for p in (w.data_dir / "volumes").glob("*.vol"):
        shutil.move(str(p), aside / p.name)
    return aside


def mount(w: h.Worker, aside: Path) -> None:
    """Puts the volume files back, dropping what the worker created on the
    empty directory meanwhile; only while it is down."""
    for p in (w.data_dir / "volumes").glob("*.vol"):
        p.unlink()
    for p in aside.glob("*.vol"):
        shutil.move(str(p), w.data_dir / "volumes" / p.name)
    aside.rmdir()


def restart_all(cluster: h.Cluster, m: h.Master, between) -> None:
    """Stops every worker, calls between(worker) for each, starts them again
    under the same ids."""
    ids = [w.worker_id for w in cluster.workers]
    for w in cluster.workers:
        w.kill()
    for w in cluster.workers:
        between(w)
    for w in cluster.workers:
        w.start()
    for w, wid in zip(cluster.workers, ids):
        w.wait_ready()  # the master's record of the last run is still "alive"
        assert w.wait_registered() == wid
    m.wait_workers(alive=len(ids), total=len(ids))


def test_chunk_with_every_replica_marked_bad_recovers_from_an_intact_copy(cluster):
    """Every worker restarts before its disk is mounted: a download finds
    the chunks gone everywhere and marks every replica bad (503). The disks
    come back; nothing is uploaded; the chunks must return to 3 good
    replicas by themselves, and the file must read back."""
    m = cluster.start(workers=3, master_env=master_env())
    api = m.user_client()
    data = random.Random(29).randbytes(2 * CHUNK + 100)
    fid = api.upload(data, "x.bin")["file_id"]
    assert all(len(ws) == RF for ws in listed(api, fid))

    aside: dict[str, Path] = {}
    restart_all(cluster, m, lambda w: aside.__setitem__(w.name, unmount(w)))
    # One read of each chunk: each finds every replica gone (404).
    for i in range(3):
        r = api.get(f"/api/v1/files/{fid}/download",
                    headers={"Range": f"bytes={i * CHUNK}-{i * CHUNK + 9}"})
        h.assert_json_error(r, 503, "chunk_unavailable")
    assert listed(api, fid) == [[], [], []], "a replica of a lost chunk is still listed good"
    poll(lambda: (under_replicated(m) == 3, under_replicated(m)), secs(5),
         "the three chunks to count as under-replicated")

    restart_all(cluster, m, lambda w: mount(w, aside[w.name]))
    for w in cluster.workers:
        assert all(c["chunk_id"] in w.chunk_usage().ids for c in chunks_of(api, fid)), \
            f"{w.name} lacks a chunk after its disk came back"

    # No download, no upload: repair alone must find the intact copies.
    def recovered():
        lists, under = listed(api, fid), under_replicated(m)
        return all(len(ws) == RF for ws in lists) and under == 0, (lists, under)
    poll(recovered, secs(30),
         "the chunks to be back to 3 good replicas (under_replicated 0) without an upload")
    assert api.download(fid) == data


def replace_copy(w: h.Worker, chunk_id: str, payload: bytes) -> None:
    """Stores `payload` on w under `chunk_id`, through the worker's own API:
    the CRC32C is right for those bytes, so the worker serves them, but they
    are not the chunk (their SHA-256 is not its id)."""
    r = w.client(h.CLUSTER_SECRET).put(
        f"/chunks/{chunk_id}", data=payload,
        headers={"Content-Type": "application/octet-stream", "X-Chunk-Encoding": "identity",
                 "X-Chunk-CRC32C": f"{h.crc32c(payload):08x}"})
    assert r.status_code == 201, r.text


def delete_copy(w: h.Worker, chunk_id: str) -> None:
    r = w.client(h.CLUSTER_SECRET).delete(f"/chunks/{chunk_id}")
    assert r.status_code in (204, 404), r.text


def test_corrupt_sole_copy_is_never_marked_good(cluster):
    """Two copies are deleted behind the master's back, the third replaced
    by other bytes the worker serves as valid: every replica ends up bad,
    repair keeps trying the bad ones, and none is ever made good."""
    m = cluster.start(workers=3, master_env=master_env())
    api = m.user_client()
    data = random.Random(31).randbytes(5000)
    fid = api.upload(data, "y.bin")["file_id"]
    cid = chunks_of(api, fid)[0]["chunk_id"]
    corrupt = bytearray(data)
    corrupt[100] ^= 0x40
    assert hashlib.sha256(corrupt).hexdigest() != cid
    delete_copy(cluster.workers[0], cid)
    delete_copy(cluster.workers[1], cid)
    replace_copy(cluster.workers[2], cid, bytes(corrupt))

    h.assert_json_error(api.get(f"/api/v1/files/{fid}/download"), 503, "chunk_unavailable")
    assert listed(api, fid) == [[]], "a replica that failed its read is still listed good"
    poll(lambda: (under_replicated(m) == 1, under_replicated(m)), secs(5),
         "the chunk to count as under-replicated")
    # Repair tries the bad replicas (the chunk has no good one) and fails.
    failed_before = failed_total(m)
    poll(lambda: (failed_total(m) > failed_before, failed_total(m)), secs(20),
         "repair to try (and fail) to recover the chunk from its bad replicas")
    for _ in range(3):
        h.assert_json_error(api.get(f"/api/v1/files/{fid}/download"), 503,
                            "chunk_unavailable")
        assert listed(api, fid) == [[]], "a corrupt copy was made good"
    assert under_replicated(m) == 1
    assert h.read_chunk_payload(cluster.workers[2].data_dir, cid) == bytes(corrupt)


def test_upload_of_stored_bytes_rewrites_copies_lost_behind_the_masters_back(cluster):
    """The copies of a file's chunks are deleted from the workers without the
    master knowing (its rows still say good): every copy of chunk 0, one of
    chunk 1. The same bytes uploaded again as a new file must read back
    right after the 201, and each chunk must be on 3 workers again.
    The workers beat over HTTP whatever ECHOFS_TEST_WORKER_PROTOCOL says:
    on a gRPC stream a worker tells the master of a deleted copy at its next
    beat (a chunk delta, test_grpc.py), and the master would know."""
    m = cluster.start(workers=3, master_env=master_env(),
                      worker_env={"WORKER_PROTOCOL": "http"})
    # Each worker's first full report in first: one sent after the deletes
    # below (late on a loaded machine) tells the master of them (seen in CI).
    for w in cluster.workers:
        w.wait_for_log(r"chunk report sent", timeout=secs(20))
    api = m.user_client()
    data = random.Random(37).randbytes(3 * CHUNK)
    first = api.upload(data, "one.bin")["file_id"]
    chunks = chunks_of(api, first)
    assert [len(c["replicas"]) for c in chunks] == [RF] * 3
    for w in cluster.workers:
        delete_copy(w, chunks[0]["chunk_id"])
    delete_copy(cluster.workers[0], chunks[1]["chunk_id"])
    assert listed(api, first) == [sorted(w.worker_id for w in cluster.workers)] * 3, \
        "the master noticed the deletes: this test no longer tests a dedup hit"

    second = api.upload(data, "two.bin")["file_id"]
    assert second != first
    assert api.download(second) == data, "the new file is unreadable right after its 201"
    assert api.download(first) == data
    for c in chunks_of(api, second):
        holders = {r["worker_id"] for r in c["replicas"]}
        assert len(holders) == RF, c
        for w in cluster.workers:
            if w.worker_id in holders:
                assert c["chunk_id"] in w.chunk_usage().ids, \
                    f"{w.name} is listed for chunk {c['index']} but does not hold it"
    poll(lambda: (under_replicated(m) == 0, under_replicated(m)), secs(5),
         "no chunk to count as under-replicated")
