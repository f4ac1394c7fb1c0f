"""A worker whose disk fills (issue 12, defect 13): it keeps serving reads,
reports itself full, gets no new chunks, and uploads keep succeeding on
the other workers; no acknowledged byte is lost.

The small worker's WORKER_DATA_DIR is a real 8 MiB tmpfs, so the full
path is the filesystem's own ENOSPC (and statvfs's free space), not
WORKER_CAPACITY_BYTES, which the store checks before writing and never
reaches the disk's limit. Mounting needs root: without it the test is
skipped, with the reason."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

import echofs_harness as h
from echofs_harness import wait_until

MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    why = h.mount_tmpfs(mnt, 8 * MIB)
    if why:
        pytest.skip(f"cannot mount an 8 MiB tmpfs (needs root): {why}")
    yield mnt
    h.unmount(mnt)


def test_full_worker_keeps_reading_and_uploads_go_elsewhere(cluster, small_disk):
    m = cluster.add_master(REPLICATION_FACTOR=3, CHUNK_SIZE=MIB)
    # The others' capacity is capped too, so that placement (weighted by
    # free space) sends the small worker its share until it is full.
    big = [cluster.add_worker(master=m, wait=False, WORKER_CAPACITY_BYTES=32 * MIB)
           for _ in range(3)]
    small = cluster.add_worker("small", master=m, wait=False, WORKER_DATA_DIR=small_disk)
    for w in big + [small]:
        w.wait_registered()
    c = m.user_client()

    # 27 MiB of incompressible data, 3 replicas: more than the small
    # worker holds (8 MiB; its share by free space would be about 10), and
    # all of it fits on the other three (each holds every chunk it is not
    # the one left out of: about 27 - 8/3 MiB, and 4 MiB more below).
    files = {}

    def upload(i):
        data = os.urandom(MIB + 4096 * i)
        r = c.post("/api/v1/files/upload", files={"file": (f"f{i}.bin", data)})
        return i, data, r
    with ThreadPoolExecutor(4) as pool:
        for i, data, r in pool.map(upload, range(26)):
            assert r.status_code == 201, f"upload {i}: {r.status_code} {r.text}"
            files[r.json()["file_id"]] = data

    for file_id, data in files.items():
        assert c.download(file_id) == data, f"file {file_id} differs"
        info = c.get(f"/api/v1/files/{file_id}").json()
        for chunk in info["chunks"]:  # good replicas only
            assert len(chunk["replicas"]) >= 3, f"chunk {chunk} has fewer than 3 replicas"

    # The small worker holds what fitted and still serves it.
    held = small.chunk_usage().ids
    assert held, "the small worker got nothing at all"
    wc = small.client(h.CLUSTER_SECRET)
    for chunk_id in held:
        r = wc.get(f"/chunks/{chunk_id}")
        assert r.status_code == 200, f"read of {chunk_id} on the full worker: {r.status_code}"

    # It reports itself full: less free space than one chunk.
    def full():
        rec = m.worker_record(small.worker_id)
        return rec if rec["status"] == "alive" and rec["free_bytes"] < MIB else None
    rec = wait_until(full, 5 + h.TIMING_MARGIN_S, what="the small worker to be listed full")
    assert rec["capacity_bytes"] <= 8 * MIB, rec

    # New uploads still succeed, and none goes to the full worker: it has
    # less free space than a chunk and the placement margin.
    before = set(small.chunk_usage().ids)
    for i in range(4):
        data = os.urandom(MIB)
        f = c.upload(data, f"later{i}.bin")
        assert c.download(f["file_id"]) == data
    assert set(small.chunk_usage().ids) == before

    # A write that runs into the full disk (a master with stale free
    # space) is refused with 507 and leaves nothing visible; what the
    # worker held before is intact, also after a restart (the torn record
    # is skipped by recovery).
    data = os.urandom(4 * MIB)
    chunk_id = hashlib.sha256(data).hexdigest()
    r = wc.put(f"/chunks/{chunk_id}", data=data,
               headers={"X-Chunk-Encoding": "identity"})
    assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage", \
        f"{r.status_code} {r.text}"
    assert wc.get(f"/chunks/{chunk_id}").status_code == 404
    small.restart()
    small.wait_ready()
    assert set(small.chunk_usage().ids) == before
    for chunk_id in before:
        r = wc.get(f"/chunks/{chunk_id}")
        assert r.status_code == 200, f"read of {chunk_id} after the restart: {r.status_code}"
    for file_id, data in files.items():
        assert c.download(file_id) == data, f"file {file_id} differs"
    m.check_alive()
