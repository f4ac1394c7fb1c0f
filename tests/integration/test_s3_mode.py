"""test_s3_mode.py - the master with its chunks in S3 (S3_BUCKET_NAME,
src/master/chunk_s3.c) and its metadata in SQL (SQLite, or PostgreSQL in
that round): "modes mix" of issue 11.

Starts s3rver alone (scripts/aws_local.sh with AWS_LOCAL_SERVERS=s3: no
Java) on free ports once for the module, one bucket per test, created
with build/<dev|san>/tests/s3_probe, which also reads the bucket back.
Uploads (one-request and sessions; small, multi-chunk random and
compressible files) download byte-identical, ranges included; the bucket
holds exactly one object per distinct chunk (a generation key,
chunks/<2 hex>/<id>.<16 hex>) with its encoding and CRC32C; the same
content twice sends nothing new; deletes empty the bucket through the
collector; a restarted master reads everything back; S3 stopped during an
upload answers a JSON 503, leaves no file and health says so, and uploads
work again once it is back, without restarting the master; a corrupt
object is never served; objects no metadata names (legacy keys, unnamed
generations) are swept; objects written before generations (legacy keys,
rows without locations) stay readable and collectable.

Skipped (with the reason) when node, s3rver or the probe are missing;
ECHOFS_REQUIRE_AWS_LOCAL (CI) turns that into a failure. Not in the HTTPS
round (the S3 side is what is tested here).
"""

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

import echofs_harness as h

SCRIPTS = h.REPO / "scripts"
PREFIX = Path(os.environ.get("AWS_LOCAL_PREFIX", h.REPO / "build" / "aws-local"))
PROBE = Path(os.environ.get("ECHOFS_S3_PROBE") or
             h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "s3_probe")
CHUNK = 256 * 1024
GC_GRACE_MS = 1500
# The collector deletes an object only once S3 says it is older than
# grace/2, by S3's Last-Modified (1 s resolution): a few seconds at most.
GC_DEADLINE_S = 15 + h.TIMING_MARGIN_S


def _missing():
    if h.TLS:
        return "not in the HTTPS round: the S3 side is what this file tests"
    if not shutil.which("node"):
        return "node is missing (s3rver runs on Node.js)"
    if not (PREFIX / "node_modules/s3rver/bin/s3rver.js").exists():
        return f"s3rver missing under {PREFIX} (scripts/aws_local.sh install)"
    if not PROBE.exists():
        return f"{PROBE} is missing (make all)"
    return None


_WHY_NOT = _missing()
if _WHY_NOT and os.environ.get("ECHOFS_REQUIRE_AWS_LOCAL") and not _WHY_NOT.startswith("not in"):
    raise RuntimeError(f"ECHOFS_REQUIRE_AWS_LOCAL is set but {_WHY_NOT}")
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


def _clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "DYNAMODB_", "S3_", "ECHOFS_S3_PROBE"))}


class S3Server:
    """s3rver through scripts/aws_local.sh, in @directory."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.script_env = dict(_clean_env(), AWS_LOCAL_PREFIX=str(PREFIX), AWS_LOCAL_SERVERS="s3")
        self._script("start", timeout=120)
        self.env = {}
        for line in (directory / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            self.env[key] = value
        assert "AWS_ENDPOINT_URL_DYNAMODB" not in self.env, "s3rver alone was asked for"

    def _script(self, cmd, timeout=60):
        r = subprocess.run([str(SCRIPTS / "aws_local.sh"), cmd, str(self.dir)],
                           env=self.script_env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"aws_local.sh {cmd} failed: {r.stderr}"

    def stop_s3(self):
        self._script("s3-stop")

    def start_s3(self):
        self._script("s3-start")

    def close(self):
        subprocess.run([str(SCRIPTS / "aws_local.sh"), "stop", str(self.dir)],
                       env=self.script_env, capture_output=True, text=True, timeout=120)


class Bucket:
    """One bucket of the server, read and written with s3_probe."""

    def __init__(self, server: S3Server, name: str):
        self.server = server
        self.name = name
        self.env = dict(_clean_env(), **{k: v for k, v in server.env.items()
                                         if k.startswith("AWS_")}, S3_BUCKET_NAME=name)
        self.probe("bucket-create")

    def probe(self, *args, ok=True):
        r = subprocess.run([str(PROBE), *map(str, args)], env=self.env, capture_output=True,
                           text=True, timeout=120)
        assert "Sanitizer" not in r.stderr, r.stderr
        assert r.returncode in (0, 1), f"s3_probe {args}: rc {r.returncode}: {r.stderr}"
        out = json.loads(r.stdout)
        assert (r.returncode == 0) == ok, f"s3_probe {args}: {out}"
        return out

    def keys(self, prefix="chunks/"):
        return sorted(k["key"] for k in self.probe("list-all", prefix, 1000)["keys"])

    def chunk_ids(self):
        return {chunk_of(k) for k in self.keys()}

    def key_of(self, chunk_id):
        """The one object of @chunk_id in the bucket."""
        found = [k for k in self.keys() if chunk_of(k) == chunk_id]
        assert len(found) == 1, (chunk_id, found)
        return found[0]

    def head(self, key):
        return self.probe("head", key)

    def get(self, key, tmp_path) -> bytes:
        out = tmp_path / f"get-{uuid.uuid4().hex}"
        self.probe("get", key, out)
        return out.read_bytes()

    def put(self, key, data: bytes, tmp_path, **meta):
        src = tmp_path / f"put-{uuid.uuid4().hex}"
        src.write_bytes(data)
        self.probe("put", key, src, *[f"{k}={v}" for k, v in meta.items()])

    def master_env(self):
        return {**{k: v for k, v in self.env.items() if k.startswith("AWS_")},
                "S3_BUCKET_NAME": self.name}


GEN_KEY = re.compile(r"^chunks/([0-9a-f]{2})/(\1[0-9a-f]{62})\.[0-9a-f]{16}$")


def legacy_key(chunk_id: str) -> str:
    """The key of a chunk's object written before generations."""
    return f"chunks/{chunk_id[:2]}/{chunk_id}"


def chunk_of(key: str) -> str:
    return key.rsplit("/", 1)[1].split(".")[0]


@pytest.fixture(scope="module")
def s3server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3-mode"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def bucket(s3server):
    return Bucket(s3server, f"efs-{uuid.uuid4().hex[:12]}")


def start_master(cluster, bucket, **env):
    return cluster.add_master(**bucket.master_env(), CHUNK_SIZE=CHUNK, MIN_CHUNK_SIZE=65536,
                              GC_GRACE_MS=GC_GRACE_MS, LOG_LEVEL="debug", **env)


def file_chunks(c, file_id):
    r = c.get(f"/api/v1/files/{file_id}")
    assert r.status_code == 200, r.text
    return r.json()["chunks"]


def session_upload(c, data: bytes, name: str, chunk_size: int = CHUNK):
    r = c.post("/api/v1/files/upload/init",
               json={"name": name, "size": len(data), "chunk_size": chunk_size})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    for i in range(0, max(1, (len(data) + chunk_size - 1) // chunk_size)):
        part = data[i * chunk_size:(i + 1) * chunk_size]
        r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": i},
                   data=part, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    r = c.post("/api/v1/files/upload/complete", json={"session_id": sid}, timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()


def text_bytes(n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += f"line {i}: the quick brown fox jumps over the lazy dog\n".encode()
        i += 1
    return bytes(out[:n])


def test_files_round_trip_with_one_object_per_distinct_chunk(cluster, bucket, tmp_path):
    m = start_master(cluster, bucket)
    health = m.health()
    assert health["status"] == "ok", health  # no worker needed
    assert health["chunk_backend"] == "s3" and health["chunk_store"] == "ok", health
    assert health["metadata_backend"] == h.BACKEND, health
    m.wait_for_log(f"chunk backend: s3 bucket={bucket.name} endpoint=")
    c = m.user_client()

    small = os.urandom(1000)
    rand = os.urandom(3 * CHUNK + 777)
    text = text_bytes(4 * CHUNK)
    sess = os.urandom(2 * CHUNK + 5)
    files = {
        "small": (c.upload(small, "small.bin"), small),
        "rand": (c.upload(rand, "rand.bin"), rand),
        "text": (c.upload(text, "text.txt"), text),
        "sess": (session_upload(c, sess, "sess.bin"), sess),
    }
    expected = {}
    for name, (f, data) in files.items():
        assert c.download(f["file_id"]) == data, name
        for ch in file_chunks(c, f["file_id"]):
            assert ch["replicas"] == [] and ch["backend"] == "s3", ch
            expected[ch["chunk_id"]] = ch
    # Ranges: across a chunk boundary, inside the last chunk, open-ended.
    rid = files["rand"][0]["file_id"]
    for lo, hi in [(CHUNK - 10, CHUNK + 10), (3 * CHUNK + 5, 3 * CHUNK + 700), (2 * CHUNK, None)]:
        spec = f"bytes={lo}-" + ("" if hi is None else str(hi))
        r = c.get(f"/api/v1/files/{rid}/download", headers={"Range": spec})
        assert r.status_code == 206, r.text
        assert r.content == rand[lo:None if hi is None else hi + 1]
    tid = files["text"][0]["file_id"]
    r = c.get(f"/api/v1/files/{tid}/download", headers={"Range": f"bytes={CHUNK + 3}-{CHUNK + 99}"})
    assert r.status_code == 206 and r.content == text[CHUNK + 3:CHUNK + 100]

    # Exactly one object per distinct chunk, a generation of it:
    # chunks/<2 hex>/<id>.<16 hex>.
    keys = bucket.keys()
    assert all(GEN_KEY.match(k) for k in keys), keys
    assert sorted(chunk_of(k) for k in keys) == sorted(expected)
    key_of = {chunk_of(k): k for k in keys}.get
    compressed = 0
    for chunk_id, ch in expected.items():
        info = bucket.head(key_of(chunk_id))
        assert info["size"] == ch["stored_size"], (ch, info)
        assert info["meta"]["encoding"] == ("gzip" if ch["compressed"] else "raw"), info
        body = bucket.get(key_of(chunk_id), tmp_path)
        assert info["meta"]["crc32c"] == f"{h.crc32c(body):08x}", info
        if ch["compressed"]:
            compressed += 1
            assert len(body) < ch["size"]
        else:
            assert hashlib.sha256(body).hexdigest() == chunk_id
    assert compressed >= 4, "the text file's chunks are stored gzip'd"

    # The same content again: no new object, nothing rewritten.
    before = {k: bucket.head(k)["etag"] for k in bucket.keys()}
    again = c.upload(rand, "rand-again.bin")
    again_s = session_upload(c, sess, "sess-again.bin")
    assert c.download(again["file_id"]) == rand
    assert c.download(again_s["file_id"]) == sess
    assert {k: bucket.head(k)["etag"] for k in bucket.keys()} == before
    stats = m.cluster_client().get("/metrics").text
    dedup = [line for line in stats.splitlines()
             if line.startswith("echofs_upload_chunks_deduplicated_total")]
    assert dedup and float(dedup[0].split()[-1]) >= 6, dedup


def test_repeated_chunks_in_flight_at_once_are_stored_once(cluster, bucket):
    """The same new chunk in flight several times at once through one
    master (a file whose chunks repeat, in the upload pipeline; sessions
    of several clients): each upload finds no row, but only one writes a
    generation; the others wait for its record and deduplicate
    (chunk_s3.c:claim_writer), instead of each storing an object of its
    own (6 objects instead of 3 without it)."""
    m = start_master(cluster, bucket)
    c = m.user_client()
    block = os.urandom(CHUNK)
    data = block * 8 + os.urandom(100)
    f = c.upload(data, "repeated.bin")
    assert c.download(f["file_id"]) == data
    chunks = file_chunks(c, f["file_id"])
    assert len({ch["chunk_id"] for ch in chunks}) == 2
    keys = bucket.keys()
    assert len(keys) == 2 and all(GEN_KEY.match(k) for k in keys), keys
    # Two sessions sending the same new chunk at once through one master.
    other = os.urandom(CHUNK)
    errors = []

    def send(i):
        try:
            session_upload(m.user_client(), other, f"s{i}.bin")
        except AssertionError as e:
            errors.append(str(e))
    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(bucket.keys()) == 3, bucket.keys()
    assert c.delete(f"/api/v1/files/{f['file_id']}").status_code == 204


def test_restart_reads_back_and_deletes_empty_the_bucket(cluster, bucket):
    m = start_master(cluster, bucket)
    c = m.user_client()
    shared = os.urandom(CHUNK)
    a_data = shared + os.urandom(CHUNK + 100)
    b_data = shared + text_bytes(CHUNK)
    a = c.upload(a_data, "a.bin")
    b = session_upload(c, b_data, "b.bin")
    assert len(bucket.keys()) == 4  # shared, a's own two, b's text chunk

    m.restart()
    m.wait_ready()
    c = m.user_client()
    assert c.download(a["file_id"]) == a_data
    assert c.download(b["file_id"]) == b_data

    a_only = {ch["chunk_id"] for ch in file_chunks(c, a["file_id"])} - \
        {ch["chunk_id"] for ch in file_chunks(c, b["file_id"])}
    assert len(a_only) == 2
    assert c.delete(f"/api/v1/files/{a['file_id']}").status_code == 204
    h.wait_until(lambda: not (bucket.chunk_ids() & a_only), GC_DEADLINE_S,
                 what="the collector to delete the objects of a's own chunks")
    assert c.download(b["file_id"]) == b_data  # the shared chunk stayed
    assert len(bucket.keys()) == 2
    assert c.delete(f"/api/v1/files/{b['file_id']}").status_code == 204
    h.wait_until(lambda: bucket.keys() == [], GC_DEADLINE_S,
                 what="the collector to empty the bucket")
    m.wait_for_log(r"collector: \d+ unreferenced chunks removed")


def test_s3_stopped_during_uploads_fails_cleanly_and_recovers(cluster, bucket, s3server):
    m = start_master(cluster, bucket)
    c = m.user_client()
    # One-request upload: S3 goes away after the first chunks were sent.
    stopped = threading.Event()

    def body():
        yield os.urandom(CHUNK)
        yield os.urandom(CHUNK)
        s3server.stop_s3()
        stopped.set()
        for _ in range(4):
            yield os.urandom(CHUNK)

    try:
        r = c.post("/api/v1/files/upload", params={"name": "cut.bin"}, data=body(),
                   headers={"Content-Type": "application/octet-stream"}, timeout=120)
        assert stopped.is_set()
        h.assert_json_error(r, 503, "chunk_store_unavailable")
        # A session: one chunk in, then S3 is down for the next.
        data = os.urandom(2 * CHUNK)
        r = c.post("/api/v1/files/upload/init",
                   json={"name": "sess.bin", "size": len(data), "chunk_size": CHUNK})
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 0},
                   data=data[:CHUNK], headers={"Content-Type": "application/octet-stream"})
        h.assert_json_error(r, 503, "chunk_store_unavailable")
        health = m.health()
        assert health["status"] == "degraded" and health["chunk_store"] == "unavailable", health
        assert bucket.name in health["chunk_store_detail"], health
        h.assert_json_error(c.post("/api/v1/files/upload/complete", json={"session_id": sid}),
                            409, "incomplete_session")
        assert c.get("/api/v1/files").json()["files"] == []  # nothing half-visible
        m.wait_for_log(r"PutObject s3://%s/chunks/.* failed: .*attempts\)" % bucket.name)
    finally:
        if stopped.is_set():
            s3server.start_s3()

    # Back: the same master stores and reads again.
    assert m.health()["chunk_store"] == "ok"
    r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 0},
               data=data[:CHUNK], headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 1},
               data=data[CHUNK:], headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/files/upload/complete", json={"session_id": sid})
    assert r.status_code in (200, 201), r.text
    assert c.download(r.json()["file_id"]) == data
    later = os.urandom(3 * CHUNK)
    f = c.upload(later, "later.bin")
    assert c.download(f["file_id"]) == later
    assert [x["name"] for x in c.get("/api/v1/files").json()["files"]].count("cut.bin") == 0


def test_corrupt_object_is_never_served(cluster, bucket, tmp_path):
    m = start_master(cluster, bucket, CHUNK_CACHE_SIZE=0)
    c = m.user_client()
    data = os.urandom(3 * CHUNK)
    f = c.upload(data, "victim.bin")
    chunks = file_chunks(c, f["file_id"])
    # Chunk 1: other bytes of the same length, with a CRC that matches
    # them (only the chunk id can tell).
    other = os.urandom(CHUNK)
    bucket.put(bucket.key_of(chunks[1]["chunk_id"]), other, tmp_path, encoding="raw",
               crc32c=f"{h.crc32c(other):08x}")
    r = c.get(f"/api/v1/files/{f['file_id']}/download",
              headers={"Range": f"bytes={CHUNK + 10}-{CHUNK + 20}"})
    h.assert_json_error(r, 503, "chunk_unavailable")
    # A whole download starts (chunk 0 is good) and must stop short: never
    # the wrong bytes.
    got = b""
    try:
        with c.get(f"/api/v1/files/{f['file_id']}/download", timeout=30, stream=True) as r:
            status = r.status_code
            for piece in r.iter_content(65536):
                got += piece
    except requests.exceptions.RequestException:
        pass  # the connection cut mid-body: the expected end of a 200
    if status == 200:
        assert len(got) < len(data), "the corrupt chunk was served"
        assert data.startswith(got), "bytes other than the file's were served"
    else:
        assert status == 503
    # Chunk 0: its own bytes with a CRC that does not match them.
    key0 = bucket.key_of(chunks[0]["chunk_id"])
    good0 = bucket.get(key0, tmp_path)
    bucket.put(key0, good0, tmp_path, encoding="raw", crc32c="00000000")
    h.assert_json_error(c.get(f"/api/v1/files/{f['file_id']}/download"), 503,
                        "chunk_unavailable")
    # Chunk 2 gone from the bucket.
    bucket.probe("delete", bucket.key_of(chunks[2]["chunk_id"]))
    r = c.get(f"/api/v1/files/{f['file_id']}/download",
              headers={"Range": f"bytes={2 * CHUNK}-"})
    h.assert_json_error(r, 503, "chunk_unavailable")
    # The same bytes uploaded again repair nothing silently wrong: the
    # missing object is written again (HeadObject finds it gone), as a new
    # generation that the chunk's row records: the first file reads it too.
    again = c.upload(data[2 * CHUNK:], "tail.bin")
    assert c.download(again["file_id"]) == data[2 * CHUNK:]
    r = c.get(f"/api/v1/files/{f['file_id']}/download", headers={"Range": f"bytes={2 * CHUNK}-"})
    assert r.status_code == 206 and r.content == data[2 * CHUNK:], r.text[:300]


def test_objects_without_metadata_are_swept_after_the_orphan_grace(cluster, bucket, tmp_path):
    # The sweep runs every ORPHAN_GRACE_MS (when under 10 min).
    m = start_master(cluster, bucket, ORPHAN_GRACE_MS=4000)
    c = m.user_client()
    kept = os.urandom(CHUNK)
    f = c.upload(kept, "kept.bin")
    kept_id = hashlib.sha256(kept).hexdigest()
    kept_key = bucket.key_of(kept_id)
    orphan = os.urandom(5000)
    orphan_id = hashlib.sha256(orphan).hexdigest()
    put_at = time.monotonic()
    orphans = [
        legacy_key(orphan_id),  # a chunk without a row (key before generations)
        f"{legacy_key(orphan_id)}.{os.urandom(8).hex()}",  # the same, a generation
        # a generation of a referenced chunk that its row does not name
        # (a PutObject whose record failed, a master that died after it)
        f"{legacy_key(kept_id)}.{os.urandom(8).hex()}",
    ]
    for key in orphans:
        bucket.put(key, orphan if orphan_id in key else kept, tmp_path, encoding="raw")
    bucket.put("chunks/not-a-chunk", b"x", tmp_path)  # not ours to judge
    bucket.put(f"{legacy_key(kept_id)}.not-a-gen", b"x", tmp_path)  # nor this

    def gone():
        present = set(orphans) & set(bucket.keys())
        # By S3's clock (whole seconds) an object is at most 3 s old for
        # its first 2 s: within ORPHAN_GRACE_MS, so no sweep may delete it.
        assert present == set(orphans) or time.monotonic() - put_at >= 2.0, \
            "an object younger than ORPHAN_GRACE_MS was swept"
        return not present
    h.wait_until(gone, 30 + h.TIMING_MARGIN_S,
                 what="the orphan sweep to delete the objects no metadata names")
    assert sorted(bucket.keys()) == sorted(
        [kept_key, "chunks/not-a-chunk", f"{legacy_key(kept_id)}.not-a-gen"])
    assert c.download(f["file_id"]) == kept


def test_objects_written_before_generations_stay_readable_and_collectable(cluster, bucket,
                                                                         tmp_path):
    """An upgrade: chunks stored by a master before generation keys sit at
    chunks/<2 hex>/<id> and their rows record no location. Made here from
    a fresh upload (the object moved to its legacy key, the location rows
    removed, the master stopped meanwhile). They read back, dedup keeps
    them without a write, and the collector deletes them."""
    m = start_master(cluster, bucket, CHUNK_CACHE_SIZE=0)
    c = m.user_client()
    data = os.urandom(2 * CHUNK) + text_bytes(CHUNK)
    f = c.upload(data, "old.bin")
    ids = [ch["chunk_id"] for ch in file_chunks(c, f["file_id"])]
    m.stop()
    for chunk_id in ids:
        key = bucket.key_of(chunk_id)
        info = bucket.head(key)
        body = bucket.get(key, tmp_path)
        bucket.put(legacy_key(chunk_id), body, tmp_path, **info["meta"])
        bucket.probe("delete", key)
    if h.BACKEND == "postgres":
        cluster.psql("DELETE FROM replicas")
    else:
        db = sqlite3.connect(str(m.data_dir / "echofs.db"))
        try:
            with db:
                assert db.execute("DELETE FROM replicas").rowcount == len(ids)
        finally:
            db.close()
    m.start()
    m.wait_ready()
    c = m.user_client()
    assert sorted(bucket.keys()) == sorted(legacy_key(i) for i in ids)
    assert c.download(f["file_id"]) == data
    r = c.get(f"/api/v1/files/{f['file_id']}/download",
              headers={"Range": f"bytes={CHUNK - 5}-{CHUNK + 5}"})
    assert r.status_code == 206 and r.content == data[CHUNK - 5:CHUNK + 6]
    # The same bytes again: the legacy objects are there, nothing is sent.
    again = c.upload(data, "again.bin")
    assert sorted(bucket.keys()) == sorted(legacy_key(i) for i in ids)
    # A legacy object gone: the next upload writes a generation, recorded.
    bucket.probe("delete", legacy_key(ids[0]))
    third = c.upload(data[:CHUNK], "third.bin")
    assert c.download(third["file_id"]) == data[:CHUNK]
    assert c.download(f["file_id"]) == data
    assert GEN_KEY.match(bucket.key_of(ids[0]))
    for x in (f, again, third):
        assert c.delete(f"/api/v1/files/{x['file_id']}").status_code == 204
    h.wait_until(lambda: bucket.keys() == [], GC_DEADLINE_S,
                 what="the collector to delete the legacy objects and the generation")


def test_missing_bucket_is_named_in_health_and_uploads_answer_503(cluster, s3server):
    name = f"efs-missing-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in s3server.env.items() if k.startswith("AWS_")}
    m = cluster.add_master(**env, S3_BUCKET_NAME=name)
    health = m.health()
    assert health["status"] == "degraded" and health["chunk_store"] == "unavailable", health
    assert name in health["chunk_store_detail"] and "404" in health["chunk_store_detail"], health
    c = m.user_client()
    h.assert_json_error(c.post("/api/v1/files/upload", params={"name": "x"}, data=b"abc"),
                        503, "chunk_store_unavailable")
    m.wait_for_log(r"PutObject s3://%s/chunks/.* failed: NoSuchBucket" % name)
    assert c.get("/api/v1/files").json()["files"] == []


@pytest.mark.skipif(h.BACKEND != "postgres",
                    reason="two masters share metadata on PostgreSQL only (its round)")
def test_two_masters_over_one_bucket_store_once_and_collect_after_the_last_delete(
        cluster, bucket):
    a = start_master(cluster, bucket)
    b = start_master(cluster, bucket)
    data = os.urandom(3 * CHUNK + 11)
    results, errors = [], []

    def upload(m, i):
        c = m.user_client()
        try:
            r = c.post("/api/v1/files/upload", params={"name": f"copy-{i}.bin"}, data=data,
                       headers={"Content-Type": "application/octet-stream"}, timeout=60)
            if r.status_code == 201:
                results.append((i, r.json()["file_id"]))
            else:
                errors.append(f"{i}: {r.status_code} {r.text[:200]}")
        finally:
            c.close()

    threads = [threading.Thread(target=upload, args=((a, b)[i % 2], i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert len(results) == 6

    # Counted once: one row per distinct chunk, each referenced by the six
    # files. Uploads that found no row at the same instant each wrote and
    # recorded a generation of their own; the trim (R13) keeps the
    # smallest recorded one: once it settles, one object per chunk, the
    # one its row records (none left for the orphan sweep).
    def recorded():
        rows = cluster.psql("SELECT chunk_id || ' ' || worker_id FROM replicas").stdout.split()
        return sorted(f"chunks/{cid[:2]}/{cid}.{loc[3:]}"
                      for cid, loc in zip(rows[::2], rows[1::2]))
    assert cluster.psql("SELECT COUNT(*) FROM chunks").stdout.strip() == "4"
    assert cluster.psql("SELECT refcount FROM chunks").stdout.split() == ["6"] * 4
    chunk_ids = sorted(cluster.psql("SELECT chunk_id FROM chunks").stdout.split())

    def settled():
        keys = bucket.keys()
        return (keys == recorded() and sorted(chunk_of(k) for k in keys) == chunk_ids)
    h.wait_until(settled, 10, what="one object per chunk, the one its row records")
    keys = bucket.keys()
    ca, cb = a.user_client(), b.user_client()
    ids = [fid for _, fid in sorted(results)]
    for k, fid in enumerate(ids[:-1]):
        assert (ca, cb)[k % 2].delete(f"/api/v1/files/{fid}").status_code == 204
    time.sleep(GC_GRACE_MS / 1000 * 2)  # the collector had its chance
    assert cb.download(ids[-1]) == data and ca.download(ids[-1]) == data
    assert bucket.keys() == keys
    assert ca.delete(f"/api/v1/files/{ids[-1]}").status_code == 204
    h.wait_until(lambda: bucket.keys() == [], GC_DEADLINE_S,
                 what="the lease holder's collector to empty the bucket")
