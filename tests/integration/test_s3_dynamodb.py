"""test_s3_dynamodb.py - the S3 API with its buckets and objects in DynamoDB
(src/meta/dynamodb_s3.c, docs/AWS.md "S3 buckets and objects"), two
masters on the same tables and bucket (full AWS mode on the local servers
of scripts/aws_local.sh), each with its own S3 listener.

- Two masters overwrite one key at once, many times: one object remains,
  its bytes and ETag those of one put; exactly one file is left in the
  files table, only its chunk is referenced (no file or reference leaked,
  none released twice), no release marker is left; deleting the object
  leaves no file and no reference.
- Two masters create the same bucket name at once for two users: exactly
  one gets it (the other BucketAlreadyExists), and the bucket is listed by
  its owner only.

test_s3_api.py, test_s3_conditional.py and test_keys.py run on DynamoDB in
the AWS round (make integration-aws); this file runs in the first and the
sanitizer rounds (its masters are on DynamoDB whatever the round).
Skipped in the HTTPS and PostgreSQL rounds, and when the local servers are
missing (ECHOFS_REQUIRE_AWS_LOCAL turns that into a failure).
"""

import hashlib
import os
import threading

import boto3
import botocore
import pytest
from botocore.config import Config

import echofs_harness as h

REGION = "us-east-1"
ROUNDS = 8  # puts per master in the overwrite race


def _missing():
    if h.TLS:
        return "not in the HTTPS round: the DynamoDB store is what this file tests"
    if h.BACKEND == "postgres":
        return "not in the PostgreSQL round: DynamoDB replaces the SQL metadata store"
    return h.aws_local_missing()


_WHY_NOT = _missing()
if (_WHY_NOT and os.environ.get("ECHOFS_REQUIRE_AWS_LOCAL")
        and not _WHY_NOT.startswith("not in")):
    raise RuntimeError(f"ECHOFS_REQUIRE_AWS_LOCAL is set but {_WHY_NOT}")
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


@pytest.fixture
def masters(tmp_path, request):
    """Two masters on one set of tables and one chunk bucket, each with an
    S3 listener."""
    cluster = h.Cluster(tmp_path, label=request.node.nodeid, backend="aws")
    try:
        pair = []
        for name in ("m1", "m2"):
            port = h.free_port()
            m = cluster.add_master(name, S3_PORT=str(port), GC_GRACE_MS="1500")
            m.s3_url = f"http://127.0.0.1:{port}"
            pair.append(m)
        yield cluster, pair
    finally:
        cluster.close()


def s3_client(master, user):
    r = master.user_client(user).post("/api/v1/keys")
    assert r.status_code == 201, r.text
    key = r.json()
    return boto3.client(
        "s3", endpoint_url=master.s3_url, region_name=REGION,
        aws_access_key_id=key["access_key_id"], aws_secret_access_key=key["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      signature_version="s3v4"))


def items(cluster, table_var, prefix):
    """Every item of one of the cluster's tables whose pk starts with @prefix
    (a consistent Scan, all pages)."""
    ddb = h.session_aws().client("dynamodb")
    out, start = [], None
    while True:
        args = {"TableName": cluster.aws_env[table_var], "ConsistentRead": True}
        if start:
            args["ExclusiveStartKey"] = start
        page = ddb.scan(**args)
        out += [i for i in page["Items"] if i["pk"]["S"].startswith(prefix)]
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


def refcounts(cluster):
    """chunk id -> refcount of every chunk item."""
    return {i["pk"]["S"]: int(i["refcount"]["N"])
            for i in items(cluster, "DYNAMODB_CHUNKS_TABLE", "")
            if i["sk"]["S"] == "META"}


def test_two_masters_overwriting_one_key_leave_one_object_and_no_leak(masters):
    cluster, (m1, m2) = masters
    c1, c2 = s3_client(m1, "alice"), s3_client(m2, "alice")
    c1.create_bucket(Bucket="race")
    bodies = {(n, i): os.urandom(1000 + 97 * i) + f"{n}/{i}".encode()
              for n in (1, 2) for i in range(ROUNDS)}
    errors = []

    def put(n, client):
        try:
            for i in range(ROUNDS):
                client.put_object(Bucket="race", Key="same/key", Body=bodies[(n, i)])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"master {n}: {e!r}")

    threads = [threading.Thread(target=put, args=(n, c)) for n, c in ((1, c1), (2, c2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors

    listing = c2.list_objects_v2(Bucket="race")
    assert [o["Key"] for o in listing.get("Contents", [])] == ["same/key"]
    body = c1.get_object(Bucket="race", Key="same/key")["Body"].read()
    winner = [k for k, v in bodies.items() if v == body]
    assert len(winner) == 1, "the object's bytes are not those of one put"
    head = c2.head_object(Bucket="race", Key="same/key")
    assert head["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'

    # One file left; only its chunk referenced, once; every release done.
    files = [i for i in items(cluster, "DYNAMODB_FILES_TABLE", "FILE#") if i["sk"]["S"] == "META"]
    assert len(files) == 1, files
    assert files[0]["s3_bucket"]["S"] == "race" and files[0]["s3_key"]["S"] == "same/key"
    assert items(cluster, "DYNAMODB_SESSIONS_TABLE", "RELEASE#") == []
    counts = refcounts(cluster)
    chunk = hashlib.sha256(body).hexdigest()
    assert counts.get(chunk) == 1, counts
    assert all(n == 0 for k, n in counts.items() if k != chunk), counts
    # The files' own listing agrees (the object is a file of its owner).
    r = m2.user_client("alice").get("/api/v1/files")
    assert r.status_code == 200, r.text
    assert [f["file_id"] for f in r.json()["files"]] == [files[0]["pk"]["S"][5:]]

    c2.delete_object(Bucket="race", Key="same/key")
    assert [i for i in items(cluster, "DYNAMODB_FILES_TABLE", "FILE#")
            if i["sk"]["S"] == "META"] == []
    assert all(n == 0 for n in refcounts(cluster).values())
    assert items(cluster, "DYNAMODB_FILES_TABLE", "OBJECTS#") == []
    c1.delete_bucket(Bucket="race")
    assert items(cluster, "DYNAMODB_FILES_TABLE", "BUCKET#") == []


def test_two_masters_creating_one_bucket_one_wins(masters):
    cluster, (m1, m2) = masters
    alice, bob = s3_client(m1, "alice"), s3_client(m2, "bob")
    for round_ in range(6):
        name = f"contested-{round_}"
        results = {}

        def create(who, client):
            try:
                client.create_bucket(Bucket=name)
                results[who] = "created"
            except botocore.exceptions.ClientError as e:
                results[who] = e.response["Error"]["Code"]

        threads = [threading.Thread(target=create, args=(w, c))
                   for w, c in (("alice", alice), ("bob", bob))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results.values()) == ["BucketAlreadyExists", "created"], results
        owner = "alice" if results["alice"] == "created" else "bob"
        other = "bob" if owner == "alice" else "alice"
        clients = {"alice": alice, "bob": bob}
        assert name in [b["Name"] for b in clients[owner].list_buckets()["Buckets"]]
        assert name not in [b["Name"] for b in clients[other].list_buckets()["Buckets"]]
        with pytest.raises(botocore.exceptions.ClientError) as info:
            clients[other].put_object(Bucket=name, Key="k", Body=b"x")
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    metas = items(cluster, "DYNAMODB_FILES_TABLE", "BUCKET#")
    assert len(metas) == 6
    counts = {i["pk"]["S"]: int(i["bucket_count"]["N"])
              for i in items(cluster, "DYNAMODB_FILES_TABLE", "BUCKETS#")
              if i["sk"]["S"] == "COUNT"}
    owned = {}
    for i in metas:
        owned[i["owner"]["S"]] = owned.get(i["owner"]["S"], 0) + 1
    assert counts == {f"BUCKETS#{o}": n for o, n in owned.items()}
