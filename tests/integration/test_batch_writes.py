"""Batched replica writes (issue 16, item 3): the small replica writes of
concurrent uploads go to each worker in one POST /chunks/batch, covered by
one group commit there.

- Concurrent 4 KiB uploads on a master and three workers (REPLICATION_FACTOR
  3): the master's metrics show more items than batches (uploads shared
  requests), every upload reads back byte for byte, and after the 201s
  every chunk is on every worker's disk: the workers are killed with
  SIGKILL and each one's volume files are read directly.
- The worker endpoint itself: items answered one by one (a CRC mismatch or
  a full store refuses that item only; the others are stored and read
  back), a malformed frame refused whole (400 invalid_batch, nothing
  stored).
- A worker without the endpoint (WORKER_BATCH_WRITES=0 answers 404, as an
  older worker would): the master falls back to single PUTs for it,
  remembers that, and every upload still lands on all three workers.
- REPLICA_BATCH_MAX_ITEMS=0: no batch is sent.

Against a build without batching the metrics are absent and the first
test fails (ECHOFS_BIN_DIR=<old build>/bin).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import echofs_harness as h

SMALL = 4096


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metric(url: str, name: str) -> float:
    r = requests.get(url + "/metrics", timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in {url}/metrics")


def frame(items: list[tuple[str, int, int, bytes]]) -> bytes:
    """A POST /chunks/batch body (include/echofs/chunk_batch.h)."""
    out = b"EFSB" + bytes([1, 0, 0, 0]) + struct.pack("<I", len(items))
    for chunk_id, flags, crc, payload in items:
        out += chunk_id.encode() + bytes([flags, 0, 0, 0])
        out += struct.pack("<III", crc, len(payload), 0) + payload
    return out


CRC = 0x2  # EFS_CHUNK_BATCH_CRC


def upload_many(api: h.ApiClient, count: int, threads: int = 16) -> dict[str, bytes]:
    blobs = [os.urandom(SMALL) for _ in range(count)]

    def one(i: int) -> tuple[str, bytes]:
        body = api.upload(blobs[i], name=f"small-{i}.bin")
        assert body["sha256"] == sha(blobs[i]), body
        return body["file_id"], blobs[i]

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, range(count)))


# WORKER_HTTP_THREADS 0: the handler waits for the group commit on its
# connection's thread; 2: it parks the request and the store's committer
# answers (event threads).
@pytest.mark.parametrize("http_threads", [0, 2])
def test_concurrent_small_uploads_go_in_batches_and_are_on_every_worker(cluster, http_threads):
    m = cluster.start(workers=3, master_env={"REPLICATION_FACTOR": 3},
                      worker_env={"WORKER_HTTP_THREADS": http_threads})
    api = m.user_client()
    files = upload_many(api, 400)
    batches = metric(m.url, "echofs_replica_batches_total")
    items = metric(m.url, "echofs_replica_batch_items_total")
    # Every replica of these uploads went in a batch, and uploads shared them.
    assert items == 3 * len(files), (batches, items)
    assert 0 < batches < items, (batches, items)
    on_workers = sum(metric(w.url, "echofs_worker_batch_items_total") for w in cluster.workers)
    assert on_workers == items
    for fid, data in files.items():
        assert api.download(fid) == data
    chunk_ids = set()
    for fid in files:
        r = api.get(f"/api/v1/files/{fid}")
        assert r.status_code == 200, r.text
        chunks = r.json()["chunks"]
        assert len(chunks) == 1 and len(chunks[0]["replicas"]) == 3, chunks
        chunk_ids.add(chunks[0]["chunk_id"])
    # Acknowledged means stored on each worker: read each one's volumes
    # after a SIGKILL (no clean close, no last sync).
    for w in cluster.workers:
        w.signal(signal.SIGKILL)
        w.wait_exit(timeout=10)
    for w in cluster.workers:
        records = h.chunk_records(w.data_dir)  # each volume read once, not once per chunk
        for cid in chunk_ids:
            rec = records.get(cid)
            assert rec is not None, f"chunk {cid[:12]} is not on {w.name}"
            with open(rec.path, "rb") as f:
                f.seek(rec.payload_offset)
                payload = f.read(rec.length)
            assert sha(payload) == cid, f"chunk {cid[:12]} on {w.name} is damaged"


def test_worker_answers_each_item_of_a_batch(cluster):
    m = cluster.add_master()
    full = cluster.add_worker("tight", master=m, WORKER_CAPACITY_BYTES=6000)
    wc = full.client(h.CLUSTER_SECRET)
    good = [os.urandom(SMALL) for _ in range(2)]
    bad = os.urandom(100)
    body = frame([(sha(good[0]), CRC, h.crc32c(good[0]), good[0]),
                  (sha(bad), CRC, h.crc32c(bad) ^ 1, bad),      # CRC mismatch
                  (sha(good[1]), CRC, h.crc32c(good[1]), good[1])])  # over capacity
    r = wc.post("/chunks/batch", data=body)
    assert r.status_code == 200, r.text
    got = r.json()["items"]
    assert [i["status"] for i in got] == [201, 400, 507], got
    assert got[1]["error"]["code"] == "checksum_mismatch", got
    assert got[2]["error"]["code"] == "insufficient_storage", got
    # the access log says 200 for the batch: the refusals are logged
    full.wait_for_log(rf"chunk batch: 2 of 3 chunks refused \(the first, chunk "
                      rf"{sha(bad)[:12]}: 400 ", timeout=5)
    r = wc.get(f"/chunks/{sha(good[0])}")
    assert r.status_code == 200 and r.content == good[0]
    assert r.headers["X-Chunk-Encoding"] == "identity"
    for missing in (sha(bad), sha(good[1])):
        assert wc.get(f"/chunks/{missing}").status_code == 404
    # Malformed: refused whole, nothing stored.
    other = os.urandom(10)
    whole = frame([(sha(other), CRC, h.crc32c(other), other)])
    for broken in (whole[:-1], whole + b"x", b"EFSB" + bytes([1, 0, 0, 0]) + b"\0\0\0\0",
                   whole.replace(b"EFSB", b"EFSX", 1)):
        r = wc.post("/chunks/batch", data=broken)
        h.assert_json_error(r, 400, "invalid_batch")
    assert wc.get(f"/chunks/{sha(other)}").status_code == 404
    # The cluster secret is required, as for a single PUT.
    r = requests.post(full.url + "/chunks/batch", data=whole, timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 401, r.text
    assert metric(full.url, "echofs_worker_batch_requests_total") == 1


def test_master_falls_back_to_single_puts_for_a_worker_without_batches(cluster):
    m = cluster.add_master(REPLICATION_FACTOR=3)
    new = [cluster.add_worker(master=m, wait=False) for _ in range(2)]
    old = cluster.add_worker("old", master=m, wait=False, WORKER_BATCH_WRITES=0)
    for w in (*new, old):
        w.wait_registered()
    m.wait_workers(alive=3, total=3)
    api = m.user_client()
    files = upload_many(api, 120)
    for fid, data in files.items():
        assert api.download(fid) == data
        chunk = api.get(f"/api/v1/files/{fid}").json()["chunks"][0]
        assert len(chunk["replicas"]) == 3, chunk
    assert metric(m.url, "echofs_replica_batch_unsupported_workers_total") == 1
    assert metric(old.url, "echofs_worker_batch_requests_total") == 0
    assert old.chunk_usage().count == len(files)
    # Remembered: the old worker was asked once (404), every later replica
    # of it went as a single PUT; the new workers took every one in batches.
    assert sum(metric(w.url, "echofs_worker_batch_items_total") for w in new) == 2 * len(files)
    assert m.stderr().count("answered 404 to POST /chunks/batch") == 1


def test_batches_off(cluster):
    m = cluster.start(workers=3, master_env={"REPLICATION_FACTOR": 3,
                                             "REPLICA_BATCH_MAX_ITEMS": 0})
    api = m.user_client()
    files = upload_many(api, 40)
    for fid, data in files.items():
        assert api.download(fid) == data
    assert metric(m.url, "echofs_replica_batches_total") == 0
    for w in cluster.workers:
        assert metric(w.url, "echofs_worker_batch_requests_total") == 0
        assert w.chunk_usage().count == len(files)


SYNC_GATE_SO = h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "sync_gate.so"


def test_an_item_refused_in_a_batch_fails_only_its_upload(cluster, tmp_path):
    """Two uploads whose replicas share one batch to a worker that has room
    for only one of them: that one is stored (201), the other's item is
    refused (507: over WORKER_CAPACITY_BYTES) and, with no fourth worker to
    take the replica, its upload fails; the first is untouched. Sizes: the
    tight worker holds 38,000 bytes; after a 20,000-byte file, 1,000 bytes
    fit and 20,000 do not, in either order in the batch. Its heartbeats are
    30 s apart, so placement still sees it empty (it needs a chunk's size
    plus 16 KiB free) and chooses it. The shared batch is arranged with
    tests/preload/sync_gate.c: the tight worker's group commit is held
    while a first batch is in flight there, so the next two uploads queue
    behind it and go together once the gate opens. The master gives up on
    a batch held for 3 s (its stall rule): the gate opens as soon as both
    have queued, well inside that."""
    assert SYNC_GATE_SO.exists(), f"{SYNC_GATE_SO} is missing: build it first (make)"
    gate = tmp_path / "gate"
    m = cluster.add_master(REPLICATION_FACTOR=3, HEARTBEAT_INTERVAL_MS=30000,
                           WORKER_DEAD_AFTER_MS=120000)
    roomy = [cluster.add_worker(master=m, wait=False) for _ in range(2)]
    env = {"WORKER_CAPACITY_BYTES": 38000, "LD_PRELOAD": str(SYNC_GATE_SO),
           "ECHOFS_SYNC_GATE": str(gate)}
    if h.SANITIZE:
        # ASan wants to be the first preloaded library; the shim is.
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    tight = cluster.add_worker("tight", master=m, wait=False, **env)
    for w in (*roomy, tight):
        w.wait_registered()
    m.wait_workers(alive=3, total=3)
    api = m.user_client()

    def items_on(w) -> float:
        return metric(w.url, "echofs_worker_batch_items_total")

    api.upload(os.urandom(20000), name="first.bin")
    gate.touch()
    held_data, fits, refused = os.urandom(10), os.urandom(1000), os.urandom(20000)
    with ThreadPoolExecutor(3) as pool:
        held = pool.submit(api.upload, held_data, name="held.bin")
        # Its batch to the tight worker is parsed there, its sync held.
        h.wait_until(lambda: metric(tight.url, "echofs_worker_batch_requests_total") == 2,
                     timeout=10)
        ok = pool.submit(api.upload, fits, name="fits.bin")
        bad = pool.submit(api.post, "/api/v1/files/upload", params={"name": "refused.bin"},
                          data=refused, headers={"Content-Type": "application/octet-stream"})
        # Both wait in the tight worker's queue behind the held batch; the
        # roomy workers took theirs at once: a held batch holds its own
        # worker's queue only (replica_batch.h).
        h.wait_until(lambda: metric(m.url, "echofs_replica_batch_queued") == 2, timeout=10)
        h.wait_until(lambda: all(items_on(w) == 4 for w in roomy), timeout=10)
        gate.unlink()
        held_body, ok_body, bad_resp = held.result(), ok.result(), bad.result()
    # One batch carried both to the tight worker: 3 requests, 4 items.
    assert metric(tight.url, "echofs_worker_batch_requests_total") == 3
    assert items_on(tight) == 4
    assert bad_resp.status_code != 201, bad_resp.text
    assert api.download(ok_body["file_id"]) == fits
    assert api.download(held_body["file_id"]) == held_data
    chunk = api.get(f"/api/v1/files/{ok_body['file_id']}").json()["chunks"][0]
    assert len(chunk["replicas"]) == 3, chunk
    assert re.search(rf"worker {re.escape(tight.worker_id)} answered 507 to a write",
                     m.stderr()), m.log_tail()
