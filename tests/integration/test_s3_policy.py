"""Storage policies through the S3 API (issue 17), on six workers.

* PutObject, CreateMultipartUpload and CopyObject take x-amz-storage-class
  (STANDARD and REDUCED_REDUNDANCY: STORAGE_POLICY; STANDARD_IA and the
  other infrequent-access classes: ec:4+2) or x-echofs-policy (any policy
  this cluster stores); the file behind the object records it and every
  new chunk is one stripe of K + M shards on as many workers.
* A multipart upload remembers its policy: every part is stored by it.
* A copy records the asked policy on its file and shares the source's
  chunks, stored as they are (as any deduplicated chunk).
* Reads report the class of how the object is stored: HeadObject,
  GetObject, ListObjects, ListParts.
* Errors in S3 XML: an unknown class is 400 InvalidStorageClass, an
  archival one 501, a bad x-echofs-policy 400 InvalidArgument, a policy
  the live workers cannot place 503; other operations refuse the headers.
"""

from __future__ import annotations

import hashlib
import random

import pytest

import echofs_harness as h
from s3_helpers import access_key, client, failure, start_s3

CHUNK = 64 * 1024
PART = 5 * 1024 * 1024  # S3's smallest part but the last


@pytest.fixture(scope="module")
def s3(shared_cluster):
    h.skip_without_workers(shared_cluster)
    return start_s3(shared_cluster, workers=6, REPLICATION_FACTOR="3", CHUNK_SIZE=str(CHUNK),
                    CHUNK_CACHE_SIZE="0")


@pytest.fixture(scope="module")
def key(s3):
    return access_key(s3, "s3-policy-alice")


@pytest.fixture(scope="module")
def alice(s3, key):
    c = client(s3, key)
    c.create_bucket(Bucket="pol")
    return c


def with_headers(c, operation, headers):
    """@c, adding @headers to each request of @operation (x-echofs-policy
    is no boto3 parameter)."""
    def add(request, **_):
        for name, value in headers.items():
            request.headers[name] = value
    c.meta.events.register(f"before-sign.s3.{operation}", add)
    return c


def file_of(s3, key_name: str) -> dict:
    """The EchoFS file (with its chunks) behind object pol/@key_name."""
    api = s3.user_client("s3-policy-alice")
    files = api.get("/api/v1/files", params={"limit": 1000}).json()["files"]
    found = [f for f in files if f.get("bucket") == "pol" and f.get("key") == key_name]
    assert len(found) == 1, (key_name, files)
    r = api.get(f"/api/v1/files/{found[0]['file_id']}")
    assert r.status_code == 200, r.text
    return r.json()


def assert_stored(s3, key_name: str, policy: str, shards: int) -> dict:
    """Object @key_name's file says @policy and each chunk is on @shards
    distinct workers."""
    f = file_of(s3, key_name)
    assert f["policy"] == policy, f
    for c in f["chunks"]:
        holders = [x["worker_id"] for x in c["replicas"]]
        assert len(set(holders)) == len(holders) == shards, (key_name, c)
    return f


def read_back(c, key_name: str, data: bytes) -> None:
    got = c.get_object(Bucket="pol", Key=key_name)["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), key_name


def test_put_object_takes_a_class_or_a_policy(s3, alice):
    s3.wait_workers(alive=6, total=6)
    rng = random.Random(1701)
    data = {k: rng.randbytes(3 * CHUNK + 17) for k in ("ia", "ec32", "std", "rr", "plain")}
    alice.put_object(Bucket="pol", Key="ia", Body=data["ia"], StorageClass="STANDARD_IA")
    with_headers(client(s3, access_key(s3, "s3-policy-alice")), "PutObject",
                 {"x-echofs-policy": "ec:3+2"}).put_object(Bucket="pol", Key="ec32",
                                                           Body=data["ec32"])
    alice.put_object(Bucket="pol", Key="std", Body=data["std"], StorageClass="STANDARD")
    alice.put_object(Bucket="pol", Key="rr", Body=data["rr"], StorageClass="REDUCED_REDUNDANCY")
    alice.put_object(Bucket="pol", Key="plain", Body=data["plain"])

    assert_stored(s3, "ia", "ec:4+2", 6)
    assert_stored(s3, "ec32", "ec:3+2", 5)
    for k in ("std", "rr", "plain"):
        assert_stored(s3, k, "replicas:3", 3)
    for k, d in data.items():
        read_back(alice, k, d)

    # Reads name the class of how each object is stored now.
    classes = {"ia": "STANDARD_IA", "ec32": "STANDARD_IA", "std": "STANDARD",
               "rr": "STANDARD", "plain": "STANDARD"}
    for k, want in classes.items():
        head = alice.head_object(Bucket="pol", Key=k)
        assert head.get("StorageClass", "STANDARD") == want, (k, head)
        raw = head["ResponseMetadata"]["HTTPHeaders"]
        assert ("x-amz-storage-class" in raw) == (want != "STANDARD"), (k, raw)
        assert alice.get_object(Bucket="pol", Key=k).get("StorageClass", "STANDARD") == want
    listed = {o["Key"]: o["StorageClass"]
              for o in alice.list_objects_v2(Bucket="pol")["Contents"]}
    assert {k: listed[k] for k in classes} == classes
    listed_v1 = {o["Key"]: o["StorageClass"]
                 for o in alice.list_objects(Bucket="pol")["Contents"]}
    assert {k: listed_v1[k] for k in classes} == classes


def test_multipart_parts_are_stored_by_the_uploads_policy(s3, alice, key):
    s3.wait_workers(alive=6, total=6)
    rng = random.Random(1702)
    ec = with_headers(client(s3, key), "CreateMultipartUpload", {"x-echofs-policy": "ec:2+1"})
    cases = (("mp-ia", alice, {"StorageClass": "STANDARD_IA"}, "ec:4+2", 6),
             ("mp-ec21", ec, {}, "ec:2+1", 3),
             ("mp-plain", alice, {}, "replicas:3", 3))
    for name, c, extra, policy, shards in cases:
        parts = [rng.randbytes(PART), rng.randbytes(CHUNK + 9)]
        up = c.create_multipart_upload(Bucket="pol", Key=name, **extra)["UploadId"]
        etags = []
        for n, part in enumerate(parts, 1):
            etags.append(alice.upload_part(Bucket="pol", Key=name, UploadId=up, PartNumber=n,
                                           Body=part)["ETag"])
        listed = alice.list_parts(Bucket="pol", Key=name, UploadId=up)
        want_class = "STANDARD" if policy.startswith("replicas") else "STANDARD_IA"
        assert listed["StorageClass"] == want_class, listed
        uploads = alice.list_multipart_uploads(Bucket="pol", Prefix=name)["Uploads"]
        assert [(u["UploadId"], u["StorageClass"]) for u in uploads] == [(up, want_class)]
        alice.complete_multipart_upload(
            Bucket="pol", Key=name, UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                       for n, e in enumerate(etags, 1)]})
        assert_stored(s3, name, policy, shards)
        read_back(alice, name, b"".join(parts))


def holders(f: dict) -> list[int]:
    return [len(c["replicas"]) for c in f["chunks"]]


def test_copy_takes_the_policy_and_shares_the_chunks(s3, alice, key):
    """A copy never moves bytes: the destination's file records the asked
    policy, and its chunks, the source's, stay stored as they are (the
    rule of every deduplicated chunk)."""
    s3.wait_workers(alive=6, total=6)
    rng = random.Random(1703)
    data = rng.randbytes(4 * CHUNK + 3)
    alice.put_object(Bucket="pol", Key="c-src", Body=data, ContentType="text/x-src",
                     Metadata={"who": "src"})
    src = assert_stored(s3, "c-src", "replicas:3", 3)
    src_chunks = [c["chunk_id"] for c in src["chunks"]]

    alice.copy_object(Bucket="pol", Key="c-ia", CopySource="pol/c-src",
                      StorageClass="STANDARD_IA")
    f = file_of(s3, "c-ia")
    assert f["policy"] == "ec:4+2" and f["replication"] == 6, f
    assert [c["chunk_id"] for c in f["chunks"]] == src_chunks
    assert holders(f) == [3] * len(src_chunks)  # shared, stored as they were
    read_back(alice, "c-ia", data)
    head = alice.head_object(Bucket="pol", Key="c-ia")
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentType"] == "text/x-src" and head["Metadata"] == {"who": "src"}
    assert_stored(s3, "c-src", "replicas:3", 3)  # the source is as it was

    # No header: the source's policy.
    alice.copy_object(Bucket="pol", Key="c-plain", CopySource="pol/c-ia")
    assert file_of(s3, "c-plain")["policy"] == "ec:4+2"
    # An EC source copied as replicas:3 (x-echofs-policy): its shards stay.
    ec_data = rng.randbytes(2 * CHUNK)
    alice.put_object(Bucket="pol", Key="c-ec", Body=ec_data, StorageClass="STANDARD_IA")
    rep = with_headers(client(s3, key), "CopyObject", {"x-echofs-policy": "replicas:3"})
    rep.copy_object(Bucket="pol", Key="c-rep", CopySource="pol/c-ec")
    f = file_of(s3, "c-rep")
    assert f["policy"] == "replicas:3" and f["replication"] == 3, f
    assert holders(f) == [6, 6]
    assert "StorageClass" not in alice.head_object(Bucket="pol", Key="c-rep")
    read_back(alice, "c-rep", ec_data)

    # Onto itself with a class and nothing else: allowed (how S3 changes an
    # object's class), where without one it is 400 InvalidRequest.
    assert failure(alice.copy_object, Bucket="pol", Key="c-src", CopySource="pol/c-src") == \
        (400, "InvalidRequest")
    alice.copy_object(Bucket="pol", Key="c-src", CopySource="pol/c-src",
                      StorageClass="STANDARD_IA")
    assert file_of(s3, "c-src")["policy"] == "ec:4+2"
    read_back(alice, "c-src", data)

    # A REST file as the source (_files/<file id>).
    api = s3.user_client("s3-policy-alice")
    r = api.post("/api/v1/files/upload", params={"name": "rest.bin"}, data=data)
    assert r.status_code == 201, r.text
    alice.copy_object(Bucket="pol", Key="c-rest", CopySource=f"_files/{r.json()['file_id']}",
                      StorageClass="ONEZONE_IA")
    assert file_of(s3, "c-rest")["policy"] == "ec:4+2"
    read_back(alice, "c-rest", data)


def test_bad_classes_and_policies(s3, alice, key):
    s3.wait_workers(alive=6, total=6)
    put = alice.put_object
    assert failure(put, Bucket="pol", Key="x", Body=b"x", StorageClass="BOGUS") == \
        (400, "InvalidStorageClass")
    assert failure(put, Bucket="pol", Key="x", Body=b"x", StorageClass="GLACIER") == \
        (501, "NotImplemented")
    assert failure(alice.create_multipart_upload, Bucket="pol", Key="x",
                   StorageClass="standard_ia") == (400, "InvalidStorageClass")
    assert failure(alice.copy_object, Bucket="pol", Key="x", CopySource="pol/std",
                   StorageClass="NOPE") == (400, "InvalidStorageClass")
    for bad in ("raid5", "ec:4+0", "EC:4+2", "replicas:2", "ec:10+7", "ec:04+2", "x" * 40):
        for op, call, kwargs in (
                ("PutObject", "put_object", {"Body": b"x"}),
                ("CreateMultipartUpload", "create_multipart_upload", {}),
                ("CopyObject", "copy_object", {"CopySource": "pol/std"})):
            c = with_headers(client(s3, key), op, {"x-echofs-policy": bad})
            assert failure(getattr(c, call), Bucket="pol", Key="x", **kwargs) == \
                (400, "InvalidArgument"), (bad, op)
    # Other operations take no policy: refused, not ignored.
    up = alice.create_multipart_upload(Bucket="pol", Key="x")["UploadId"]
    c = with_headers(client(s3, key), "UploadPart", {"x-echofs-policy": "ec:4+2"})
    assert failure(c.upload_part, Bucket="pol", Key="x", UploadId=up, PartNumber=1,
                   Body=b"x") == (501, "NotImplemented")
    alice.abort_multipart_upload(Bucket="pol", Key="x", UploadId=up)
    assert "x" not in {o["Key"] for o in alice.list_objects_v2(Bucket="pol").get("Contents", [])}


def test_a_policy_the_live_workers_cannot_place_is_503(s3, shared_cluster, alice, key):
    s3.wait_workers(alive=6, total=6)
    down = shared_cluster.workers[:2]
    for w in down:
        w.kill()
    try:
        s3.wait_workers(alive=4, total=6)
        assert failure(alice.put_object, Bucket="pol", Key="y", Body=b"y",
                       StorageClass="STANDARD_IA") == (503, "SlowDown")
        assert failure(alice.create_multipart_upload, Bucket="pol", Key="y",
                       StorageClass="STANDARD_IA") == (503, "SlowDown")
        assert failure(alice.copy_object, Bucket="pol", Key="y", CopySource="pol/std",
                       StorageClass="STANDARD_IA") == (503, "SlowDown")
        c = with_headers(client(s3, key), "PutObject", {"x-echofs-policy": "ec:3+2"})
        assert failure(c.put_object, Bucket="pol", Key="y", Body=b"y") == (503, "SlowDown")
        # What four workers can place still goes.
        c = with_headers(client(s3, key), "PutObject", {"x-echofs-policy": "ec:2+2"})
        c.put_object(Bucket="pol", Key="y", Body=b"y" * (CHUNK + 1))
        assert_stored(s3, "y", "ec:2+2", 4)
        alice.put_object(Bucket="pol", Key="z", Body=b"z", StorageClass="STANDARD")
    finally:
        for w in down:
            w.start()
        for w in down:
            w.wait_ready()
        s3.wait_workers(alive=6, total=6)
