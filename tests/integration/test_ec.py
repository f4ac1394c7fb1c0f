"""Erasure-coded files end to end (issue 17, first slice): `?policy=ec:4+2`
on six workers.

* Every new chunk of an EC file is one Reed-Solomon stripe of 4 data and 2
  parity shards, one shard per worker: the file object says `policy`, each
  chunk names its six shard holders, and the workers' disks hold about
  1.5x the data (not 3x).
* Files read back byte-identical with no worker down, with any two down
  (a pair holding only data shards, one holding only parity shards, a mixed
  pair), and in ranges; a shard whose bytes rotted on disk is found, its
  row marked bad, and the read is still right.
* Three workers down (more than M shards lost): the read fails with the
  JSON 503, never wrong bytes; an EC upload with fewer live workers than
  K + M is refused (503 no_capacity), a malformed policy is 400.
* Deleting the files lets the collector take every shard.

Shard i of a stripe is on the i-th of its workers by worker id
(docs/ARCHITECTURE.md "Erasure coding"), which is how the test picks data
and parity holders; since every stripe uses all six workers here, the pairs
are the same for every chunk.
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CHUNK = 64 * 1024
GC_GRACE_MS = 500
# ORPHAN_GRACE_MS short: a collector delete that found its worker killed
# by a test (the shards of a stripe refused with three workers down are
# collected while the next test kills two) leaves an orphan, which the
# master's watch of failed deletes removes once older than the grace
# (late_writes.h); test_deleted_ec_files_are_collected counts every copy.
MASTER_ENV = {"CHUNK_SIZE": CHUNK, "GC_GRACE_MS": GC_GRACE_MS, "CHUNK_CACHE_SIZE": 0,
              "REPLICATION_FACTOR": 3, "ORPHAN_GRACE_MS": 1000}
EC = {"policy": "ec:4+2"}


def files_of(rng: random.Random) -> dict[str, bytes]:
    text = ("".join(rng.choice("the quick brown fox jumps over a lazy dog\n")
                    for _ in range(50_000))).encode()
    return {
        "random.bin": rng.randbytes(5 * CHUNK + 1234),  # several chunks, raw stripes
        "text.txt": text,                                 # compressible: gzip stripes
        "small.bin": b"tiny ec file",                     # one short stripe
        "exact.bin": rng.randbytes(2 * CHUNK),            # whole chunks
    }


def upload(api: h.ApiClient, data: bytes, name: str, **params) -> dict:
    r = api.post("/api/v1/files/upload", params={"name": name, **params}, data=data)
    assert r.status_code == 201, r.text
    return r.json()


def read_all(api: h.ApiClient, stored: dict[str, tuple[dict, bytes]]) -> None:
    for name, (f, data) in stored.items():
        r = api.get(f"/api/v1/files/{f['file_id']}/download")
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text[:200]}"
        assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest(), name


def by_id(cluster: h.Cluster) -> list[h.Worker]:
    """The workers ordered by worker id: shard i of every stripe is on the
    i-th (every stripe spans all six)."""
    return sorted(cluster.workers, key=lambda w: w.stored_id())


def restart(m: h.Master, workers) -> None:
    """Starts killed workers again and waits until each serves its chunks
    (the master may still list it alive from before the kill)."""
    for w in workers:
        w.start()
    for w in workers:
        w.wait_ready()
    m.wait_workers(alive=6, total=6)


@pytest.fixture(scope="module")
def ec_cluster(shared_cluster):
    h.skip_without_workers(shared_cluster)
    m = shared_cluster.start(workers=6, master_env=MASTER_ENV)
    return shared_cluster, m


def test_ec_files_survive_any_two_workers_and_refuse_three(ec_cluster):
    cluster, m = ec_cluster
    api = m.user_client()
    rng = random.Random(17)
    stored = {}
    for name, data in files_of(rng).items():
        f = upload(api, data, name, **EC)
        assert f["policy"] == "ec:4+2", f
        assert f["size"] == len(data)
        stored[name] = (f, data)
    # A multipart upload takes the policy too.
    mp_data = rng.randbytes(3 * CHUNK + 7)
    r = api.post("/api/v1/files/upload", params=EC, files={"file": ("mp.bin", mp_data)})
    assert r.status_code == 201, r.text
    assert r.json()["policy"] == "ec:4+2"
    stored["mp.bin"] = (r.json(), mp_data)
    # The default stays replicated, and says so.
    rep = upload(api, rng.randbytes(CHUNK + 5), "replicated.bin")
    assert rep["policy"] == "replicas:3"

    ids = {w.stored_id() for w in cluster.workers}
    for name, (f, _) in stored.items():
        g = api.get(f"/api/v1/files/{f['file_id']}")
        assert g.status_code == 200, g.text
        assert g.json()["policy"] == "ec:4+2"
        for c in g.json()["chunks"]:
            holders = [x["worker_id"] for x in c["replicas"]]
            assert sorted(holders) == sorted(ids), (name, c)  # one shard per worker

    # Disk: the random file's stripes take ~1.5x its bytes (plus a 32-byte
    # header and the alignment of each shard), not 3x.
    fid = stored["random.bin"][0]["file_id"]
    chunk_ids = {c["chunk_id"] for c in api.get(f"/api/v1/files/{fid}").json()["chunks"]}
    on_disk = 0
    for w in cluster.workers:
        for cid, rec in h.chunk_records(w.data_dir).items():
            if cid in chunk_ids:
                on_disk += rec.length
    size = len(stored["random.bin"][1])
    assert size * 1.5 <= on_disk <= size * 1.55, (on_disk, size)
    # The stats count the same shards: every EC chunk's K+M shard records
    # on the workers' disks, and an overhead between ec:4+2's 1.5 and 3.
    ec_ids = {c["chunk_id"] for f, _ in stored.values()
              for c in api.get(f"/api/v1/files/{f['file_id']}").json()["chunks"]}
    shard_bytes = sum(rec.length for w in cluster.workers
                      for cid, rec in h.chunk_records(w.data_dir).items() if cid in ec_ids)
    stats = api.get("/api/v1/stats").json()
    assert stats["ec_chunks"] == len(ec_ids), stats
    assert stats["disk_bytes"]["ec"] == shard_bytes, (stats, shard_bytes)
    assert stats["disk_bytes"]["replicas"] > 0, stats  # replicated.bin, and others' files
    assert 1.5 < stats["storage_overhead"] < 3, stats
    metrics = m.client().get("/metrics").text
    assert f'echofs_disk_bytes{{policy="ec"}} {shard_bytes}' in metrics, metrics

    read_all(api, stored)
    # Range reads cut across shard and chunk boundaries.
    f, data = stored["random.bin"]
    for lo, hi in ((0, 10), (CHUNK // 4 - 3, CHUNK + 100), (len(data) - 50, len(data) - 1)):
        r = api.get(f"/api/v1/files/{f['file_id']}/download",
                    headers={"Range": f"bytes={lo}-{hi}"})
        assert r.status_code == 206, r.text
        assert r.content == data[lo:hi + 1]

    ws = by_id(cluster)
    for pair in ((ws[0], ws[1]),   # data shards 0 and 1
                 (ws[4], ws[5]),   # both parity shards
                 (ws[2], ws[5])):  # one of each
        for w in pair:
            w.kill()
        read_all(api, stored)
        r = api.get(f"/api/v1/files/{f['file_id']}/download",
                    headers={"Range": f"bytes={CHUNK - 5}-{CHUNK + 5}"})
        assert r.status_code == 206 and r.content == data[CHUNK - 5:CHUNK + 6]
        restart(m, pair)

    # Bit rot in data shard 0 of the first chunk: the worker's checksum (or
    # the shard's own) catches it; the stripe is rebuilt from the others
    # and the row is marked bad (until repair rebuilds the shard on ws[0],
    # the only worker without one: test_ec_repair.py).
    first = api.get(f"/api/v1/files/{f['file_id']}").json()["chunks"][0]["chunk_id"]
    mark = m.log_mark()
    h.damage_chunk_payload(ws[0].data_dir, first, random.Random(5))
    read_all(api, stored)
    holders = [x["worker_id"] for x in
               api.get(f"/api/v1/files/{f['file_id']}").json()["chunks"][0]["replicas"]]
    assert (ws[0].stored_id() not in holders
            or f"EC chunk {first[:12]} (ec:4+2): 1 of 6 shards were missing; rebuilt 1"
            in m.stderr_since(mark)), holders
    # ... and with a second worker down as well, still right (2 shards lost).
    ws[3].kill()
    read_all(api, stored)

    # A third worker down: more than M shards of every stripe are gone (every
    # stripe spans all six workers): the JSON 503, never wrong bytes.
    ws[4].kill()
    ws[5].kill()
    for name, (fx, _) in stored.items():
        r = api.get(f"/api/v1/files/{fx['file_id']}/download")
        assert_json_error(r, 503, "chunk_unavailable")
    m.wait_workers(alive=3, total=6)
    assert_json_error(api.post("/api/v1/files/upload", params={"name": "x", **EC},
                               data=b"x" * 100), 503, "no_capacity")
    # A narrower stripe fits on three workers.
    small = rng.randbytes(CHUNK + 99)
    f3 = upload(api, small, "narrow.bin", policy="ec:2+1")
    assert f3["policy"] == "ec:2+1"
    assert api.get(f"/api/v1/files/{f3['file_id']}/download").content == small
    # Refused with two live workers: the message names the stripe's shards,
    # even where K + M equals REPLICATION_FACTOR (3).
    ws[2].kill()
    m.wait_workers(alive=2, total=6)
    err = assert_json_error(api.post("/api/v1/files/upload",
                                     params={"name": "x", "policy": "ec:2+1"},
                                     data=b"x" * 100), 503, "no_capacity")
    assert "shards" in err["message"] and "replica" not in err["message"], err
    err = assert_json_error(api.post("/api/v1/files/upload", params={"name": "x"},
                                     data=b"x" * 100), 503, "no_capacity")
    assert "replica" in err["message"], err
    restart(m, (ws[2], ws[3], ws[4], ws[5]))


def session_upload(api: h.ApiClient, data: bytes, name: str, *, params=None,
                   body=None) -> dict:
    """Uploads @data through an upload session (init, chunks, complete);
    the file object."""
    r = api.post("/api/v1/files/upload/init", params=params or {},
                 json={"name": name, "size": len(data), **(body or {})})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    for i in range(0, max(len(data), 1), CHUNK):
        r = api.post("/api/v1/files/upload/chunk",
                     params={"session_id": sid, "chunk_index": i // CHUNK},
                     data=data[i:i + CHUNK],
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    r = api.post("/api/v1/files/upload/complete", json={"session_id": sid}, timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_session_uploads_take_the_policy(ec_cluster):
    """?policy= or the init body's "policy": the session remembers it, every
    chunk is a stripe of it, complete gives it to the file; checked at init
    as a one-request upload is (400, 503)."""
    cluster, m = ec_cluster
    api = m.user_client()
    m.wait_workers(alive=6, total=6)
    rng = random.Random(1717)
    r = api.post("/api/v1/files/upload/init", json={"name": "p.bin", **EC})
    assert r.status_code == 201 and r.json()["policy"] == "ec:4+2", r.text
    stored = {
        "sq.bin": (session_upload(api, d := rng.randbytes(4 * CHUNK + 321), "sq.bin",
                                  params=EC), d),
        "sb.bin": (session_upload(api, d := rng.randbytes(2 * CHUNK), "sb.bin", body=EC), d),
        "both.bin": (session_upload(api, d := b"short stripe", "both.bin", params=EC,
                                    body=EC), d),
    }
    ids = {w.stored_id() for w in cluster.workers}
    for name, (f, _) in stored.items():
        assert f["policy"] == "ec:4+2", f
        g = api.get(f"/api/v1/files/{f['file_id']}").json()
        assert g["policy"] == "ec:4+2", g
        for c in g["chunks"]:
            holders = [x["worker_id"] for x in c["replicas"]]
            assert sorted(holders) == sorted(ids), (name, c)  # one shard per worker
    # Without a policy a session stores by STORAGE_POLICY, as before.
    rep = session_upload(api, rng.randbytes(CHUNK + 1), "rep.bin")
    assert rep["policy"] == "replicas:3", rep
    read_all(api, stored)

    ws = by_id(cluster)
    pair = (ws[1], ws[4])  # a data shard and a parity shard
    for w in pair:
        w.kill()
    read_all(api, stored)
    # Four live workers cannot place ec:4+2's six shards: refused at init.
    m.wait_workers(alive=4, total=6)
    for kw in ({"params": EC}, {"json": {"name": "x", **EC}}):
        r = api.post("/api/v1/files/upload/init", **({"json": {"name": "x"}} | kw))
        assert_json_error(r, 503, "no_capacity")
    restart(m, pair)

    # Malformed, not a string, or two different policies: 400.
    for body, params in (({"policy": "ec:4+0"}, {}), ({"policy": 42}, {}),
                         ({}, {"policy": "raid5"}), ({}, {"policy": "replicas:2"}),
                         ({"policy": "ec:4+2"}, {"policy": "ec:2+1"})):
        r = api.post("/api/v1/files/upload/init", params=params, json={"name": "x", **body})
        assert_json_error(r, 400, "invalid_policy")


def test_cli_put_takes_the_policy(ec_cluster, tmp_path):
    """`echofs put --policy ec:4+2`: a small file (one request, ?policy=) and
    one over --threshold (a session, the init body's policy) are stored by
    it; a bad policy is the server's 400."""
    from test_cli import cli_env, echofs
    cluster, m = ec_cluster
    api = m.user_client()
    m.wait_workers(alive=6, total=6)
    env = cli_env(m, tmp_path)
    rng = random.Random(1718)
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small.write_bytes(rng.randbytes(CHUNK // 2))
    large.write_bytes(rng.randbytes(3 * CHUNK + 5))
    p = echofs(env, "put", "-q", "--policy", "ec:4+2", "--threshold", str(CHUNK),
               "--chunk-size", str(CHUNK), str(small), str(large))
    assert p.returncode == 0, p.stderr.decode()
    ids = p.stdout.decode().split()
    assert len(ids) == 2, p.stdout
    for fid, path in zip(ids, (small, large)):
        g = api.get(f"/api/v1/files/{fid}").json()
        assert g["policy"] == "ec:4+2", g
        assert api.get(f"/api/v1/files/{fid}/download").content == path.read_bytes()
    for size in (10, 3 * CHUNK):  # one request, then a session
        f = tmp_path / f"bad{size}.bin"
        f.write_bytes(rng.randbytes(size))
        p = echofs(env, "put", "-q", "--policy", "raid5", "--threshold", str(CHUNK),
                   "--chunk-size", str(CHUNK), str(f))
        assert p.returncode != 0 and b"400 invalid_policy" in p.stderr, p.stderr


@pytest.mark.parametrize("policy", ["ec:4+0", "ec:0+2", "ec:04+2", "EC:4+2", "ec:4+2 ",
                                    "replicas:2", "raid5", "ec:10+7", ""])
def test_bad_policy_is_400(ec_cluster, policy):
    cluster, m = ec_cluster
    api = m.user_client()
    r = api.post("/api/v1/files/upload", params={"name": "x", "policy": policy}, data=b"x")
    assert_json_error(r, 400, "invalid_policy")


def test_deleted_ec_files_are_collected(ec_cluster):
    cluster, m = ec_cluster
    api = m.user_client()
    m.wait_workers(alive=6, total=6)
    for f in api.get("/api/v1/files", params={"limit": 1000}).json()["files"]:
        assert api.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
    f = upload(api, os.urandom(3 * CHUNK), "gone.bin", **EC)
    assert api.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
    # With workers on gRPC streams the collector pushes a chunk's six shard
    # deletes at once and each worker acknowledges within a few ms
    # (heartbeat.c's short receive slice while its copier holds deletes):
    # ~1.4 s for the module's 36 chunks here, ~15 s before (one push after
    # another, each Ack at the end of a 100 ms slice). The 60 s bound is
    # for a loaded machine.
    wait_until(lambda: cluster.chunk_usage().count == 0, GC_GRACE_MS / 1000 + 60,
               what="every shard collected")


def test_a_shard_whose_worker_is_gone_is_written_elsewhere(cluster):
    """A worker dies and the master does not know yet (it still counts it
    alive): the shards placement gives it fail and go to another worker, so
    the upload succeeds with every stripe on distinct live workers."""
    h.skip_without_workers(cluster)
    m = cluster.start(workers=5, master_env={**MASTER_ENV, "WORKER_DEAD_AFTER_MS": 60000})
    api = m.user_client()
    dead = cluster.workers[0]
    dead_id = dead.stored_id()
    dead.kill()
    mark = m.log_mark()
    data = random.Random(3).randbytes(8 * CHUNK)  # 8 stripes of 4 shards on 5 workers
    f = upload(api, data, "replaced.bin", policy="ec:3+1")
    assert "trying another" in m.stderr_since(mark)
    for c in api.get(f"/api/v1/files/{f['file_id']}").json()["chunks"]:
        holders = [x["worker_id"] for x in c["replicas"]]
        assert len(set(holders)) == 4 and dead_id not in holders, c
    assert api.get(f"/api/v1/files/{f['file_id']}/download").content == data
