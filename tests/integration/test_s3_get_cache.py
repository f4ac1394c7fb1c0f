"""test_s3_get_cache.py - GetObject and HeadObject of a small object read
nothing from the store when this master's object cache holds it (SQLite,
which one master writes: docs/ARCHITECTURE.md, *S3 GetObject*), and still
see every write that answered before them.

Covered, with boto3 against a master serving S3: a repeated GET or HEAD
makes no object read and no chunk list read (SQLite; PostgreSQL and
DynamoDB read every time); a GET right after an overwrite, a delete, a
DeleteObjects, a copy onto itself with REPLACE metadata, a copy from
another key, a multipart upload completed over the key, a REST delete of
the object's file and a bucket delete answers the new state (body,
ETag, headers, NoSuchKey, NoSuchBucket); a NoSuchKey is never kept (a
PUT after it is seen at once).
"""

import hashlib
import os

import pytest
import requests

import echofs_harness as h
from s3_helpers import access_key, client, failure, start_s3

OBJECT_READS = "echofs_s3_object_reads_total"
LISTS_READ = "echofs_download_chunk_lists_read_total"
BUCKET = "cached"


def master_metric(master, name):
    text = requests.get(master.url + "/metrics", timeout=h.HTTP_TIMEOUT_S).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"the master's /metrics has no {name}")


@pytest.fixture(scope="module")
def s3(shared_cluster):
    return start_s3(shared_cluster, workers=2, REPLICATION_FACTOR="2")


@pytest.fixture(scope="module")
def alice(s3):
    c = client(s3, access_key(s3, "cache-alice"))
    c.create_bucket(Bucket=BUCKET)
    return c


def get(c, key, bucket=BUCKET):
    """(body, ETag, ContentType, Metadata) of a GET, and the HEAD agrees."""
    r = c.get_object(Bucket=bucket, Key=key)
    got = (r["Body"].read(), r["ETag"], r["ContentType"], r["Metadata"])
    head = c.head_object(Bucket=bucket, Key=key)
    assert (head["ETag"], head["ContentType"], head["Metadata"]) == got[1:]
    assert head["ContentLength"] == len(got[0])
    return got


def etag_of(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def cached(s3_master, c, key, data, shared_cluster):
    """GETs @key until the master holds it; checks that a repeated GET and
    HEAD then read nothing from the store (SQLite only)."""
    for _ in range(2):  # the first reads the object and its chunk list
        assert get(c, key)[0] == data
    reads = master_metric(s3_master, OBJECT_READS)
    lists = master_metric(s3_master, LISTS_READ)
    for _ in range(3):
        assert get(c, key)[0] == data
    reads = master_metric(s3_master, OBJECT_READS) - reads
    lists = master_metric(s3_master, LISTS_READ) - lists
    if shared_cluster.backend == "sqlite":
        assert reads == 0, f"{reads} object reads for 3 cached GETs and HEADs"
        assert lists == 0, f"{lists} chunk list reads for 3 cached GETs"
    else:
        assert reads == 6, f"{reads} object reads for 3 GETs and 3 HEADs"


def test_repeated_get_reads_nothing_then_sees_an_overwrite(s3, alice, shared_cluster):
    old, new = os.urandom(4096), os.urandom(3000)
    alice.put_object(Bucket=BUCKET, Key="over", Body=old, ContentType="text/old",
                     Metadata={"v": "1"})
    cached(s3, alice, "over", old, shared_cluster)
    alice.put_object(Bucket=BUCKET, Key="over", Body=new, ContentType="text/new",
                     Metadata={"v": "2"})
    assert get(alice, "over") == (new, etag_of(new), "text/new", {"v": "2"})


def test_get_after_delete_is_no_such_key(s3, alice, shared_cluster):
    data = os.urandom(4096)
    alice.put_object(Bucket=BUCKET, Key="gone", Body=data)
    cached(s3, alice, "gone", data, shared_cluster)
    alice.delete_object(Bucket=BUCKET, Key="gone")
    assert failure(alice.get_object, Bucket=BUCKET, Key="gone") == (404, "NoSuchKey")
    assert failure(alice.head_object, Bucket=BUCKET, Key="gone")[0] == 404


def test_get_after_delete_objects_is_no_such_key(s3, alice, shared_cluster):
    data = {k: os.urandom(4096) for k in ("batch-a", "batch-b")}
    for k, d in data.items():
        alice.put_object(Bucket=BUCKET, Key=k, Body=d)
        cached(s3, alice, k, d, shared_cluster)
    r = alice.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in data],
                                                    "Quiet": True})
    assert not r.get("Errors")
    for k in data:
        assert failure(alice.get_object, Bucket=BUCKET, Key=k) == (404, "NoSuchKey")


def test_get_after_copy_onto_itself_with_replace(s3, alice, shared_cluster):
    data = os.urandom(4096)
    alice.put_object(Bucket=BUCKET, Key="self", Body=data, ContentType="text/old",
                     Metadata={"v": "1"})
    cached(s3, alice, "self", data, shared_cluster)
    alice.copy_object(Bucket=BUCKET, Key="self", CopySource=f"{BUCKET}/self",
                      MetadataDirective="REPLACE", ContentType="text/replaced",
                      Metadata={"v": "2", "w": "new"})
    assert get(alice, "self") == (data, etag_of(data), "text/replaced", {"v": "2", "w": "new"})


def test_get_after_copy_from_another_key(s3, alice, shared_cluster):
    old, new = os.urandom(4096), os.urandom(2048)
    alice.put_object(Bucket=BUCKET, Key="copy-dst", Body=old)
    alice.put_object(Bucket=BUCKET, Key="copy-src", Body=new, ContentType="text/src")
    cached(s3, alice, "copy-dst", old, shared_cluster)
    alice.copy_object(Bucket=BUCKET, Key="copy-dst", CopySource=f"{BUCKET}/copy-src")
    assert get(alice, "copy-dst") == (new, etag_of(new), "text/src", {})


def test_get_after_multipart_complete_over_the_key(s3, alice, shared_cluster):
    old, new = os.urandom(4096), os.urandom(5000)
    alice.put_object(Bucket=BUCKET, Key="multi", Body=old)
    cached(s3, alice, "multi", old, shared_cluster)
    up = alice.create_multipart_upload(Bucket=BUCKET, Key="multi", ContentType="text/multi")
    part = alice.upload_part(Bucket=BUCKET, Key="multi", UploadId=up["UploadId"],
                             PartNumber=1, Body=new)
    alice.complete_multipart_upload(
        Bucket=BUCKET, Key="multi", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    body, etag, content_type, _ = get(alice, "multi")
    assert body == new and content_type == "text/multi"
    assert etag.endswith('-1"'), etag


def test_get_after_rest_delete_of_its_file(s3, alice, shared_cluster):
    data = os.urandom(4096)
    alice.put_object(Bucket=BUCKET, Key="rest-deleted", Body=data)
    cached(s3, alice, "rest-deleted", data, shared_cluster)
    rest = s3.user_client("cache-alice")
    files = rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
    fid = [f["file_id"] for f in files if f.get("key") == "rest-deleted"]
    assert len(fid) == 1, files
    assert rest.delete(f"/api/v1/files/{fid[0]}").status_code == 204
    assert failure(alice.get_object, Bucket=BUCKET, Key="rest-deleted") == (404, "NoSuchKey")


def test_no_such_key_is_never_kept(s3, alice):
    assert failure(alice.get_object, Bucket=BUCKET, Key="later") == (404, "NoSuchKey")
    assert failure(alice.get_object, Bucket=BUCKET, Key="later") == (404, "NoSuchKey")
    data = os.urandom(100)
    alice.put_object(Bucket=BUCKET, Key="later", Body=data)
    assert get(alice, "later")[0] == data


def test_get_after_bucket_delete_is_no_such_bucket(s3, alice, shared_cluster):
    data = os.urandom(4096)
    alice.create_bucket(Bucket="cached-short")
    alice.put_object(Bucket="cached-short", Key="k", Body=data)
    for _ in range(3):
        assert get(alice, "k", bucket="cached-short")[0] == data
    alice.delete_object(Bucket="cached-short", Key="k")
    alice.delete_bucket(Bucket="cached-short")
    assert failure(alice.get_object, Bucket="cached-short", Key="k") == (404, "NoSuchBucket")
