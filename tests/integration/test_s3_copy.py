"""test_s3_copy.py - CopyObject and GetBucketVersioning (docs/S3.md) with
boto3 and the aws CLI against a master serving S3, with two workers.

Covered: a copy shares the source's chunks (the workers hold no more
chunks and answer no chunk request while it is made) and has the
source's ETag; deleting the source keeps the copy readable, deleting
both lets the collector take the chunks; across buckets of one owner;
x-amz-metadata-directive COPY (the default) and REPLACE; copying onto
itself (InvalidRequest without REPLACE); an overwritten destination's
file released; the source in another user's bucket (AccessDenied,
nothing stored), a missing source key (NoSuchKey) or bucket
(NoSuchBucket); the source's encodings (leading "/", escaped key,
versionId=null; another version 501); copies racing the deletion of their source (whole or NoSuchKey); the
x-amz-copy-source-if-*
conditions (412 as S3) and the destination's If-None-Match / If-Match;
a file uploaded through the REST API put in a bucket (`_files/<id>` as
the copy source: the ETag its MD5, no chunk written); `aws s3api
copy-object`; GET ?versioning (empty configuration) and PUT
?versioning (501); the access log line with the query and without a
presigned URL's credentials.
"""

import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.parse

import botocore
import pytest
import requests

import echofs_harness as h
from s3_helpers import REGION, access_key, client, failure, start_s3

CHUNK = 256 * 1024
GC_GRACE_MS = 500
AWS_CLI = "/usr/bin/aws"  # Debian's awscli: the `aws` on PATH may be a shim


@pytest.fixture(scope="module")
def s3(shared_cluster):
    return start_s3(shared_cluster, REPLICATION_FACTOR="2", CHUNK_SIZE=str(CHUNK),
                    GC_GRACE_MS=str(GC_GRACE_MS))


@pytest.fixture(scope="module")
def alice_key(s3):
    return access_key(s3, "s3-copy-alice")


@pytest.fixture(scope="module")
def alice(s3, alice_key):
    return client(s3, alice_key)


@pytest.fixture(scope="module")
def bob(s3):
    return client(s3, access_key(s3, "s3-copy-bob"))


def with_headers(c, operation, headers):
    """@c, adding @headers to each request of @operation (this boto3 has
    no parameters for the destination conditions of CopyObject)."""
    def add(request, **_):
        for name, value in headers.items():
            request.headers[name] = value
    c.meta.events.register(f"before-sign.s3.{operation}", add)
    return c


def files_of(s3, user, bucket):
    """@user's EchoFS files of @bucket, as (key, sha256), sorted."""
    files = s3.user_client(user).get("/api/v1/files", params={"limit": 1000}).json()["files"]
    return sorted((f["key"], f["sha256"]) for f in files if f.get("bucket") == bucket)


def chunk_requests(cluster) -> int:
    """Chunk reads and writes (GET, HEAD, PUT on /chunks/{chunkId}) the
    workers of @cluster have answered so far, whatever the status."""
    total = 0.0
    for w in cluster.workers:
        text = requests.get(w.url + "/metrics", timeout=h.HTTP_TIMEOUT_S,
                            verify=str(cluster.tls.ca) if cluster.tls else True).text
        for line in text.splitlines():
            if (line.startswith("echofs_http_requests_total{")
                    and 'route="/chunks/{chunkId}"' in line
                    and any(f'method="{m}"' in line for m in ("GET", "HEAD", "PUT"))):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def chunk_ids(data):
    return {hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)}


def test_copy_shares_the_chunks_and_outlives_its_source(s3, shared_cluster, alice):
    alice.create_bucket(Bucket="copy-src")
    alice.create_bucket(Bucket="copy-dst")
    data = os.urandom(3 * CHUNK + 1000)
    ids = chunk_ids(data)
    etag = alice.put_object(Bucket="copy-src", Key="big.bin", Body=data,
                            ContentType="application/x-test")["ETag"]
    before = shared_cluster.chunk_usage()
    assert ids <= set(before.ids)
    requests_before = chunk_requests(shared_cluster)

    got = alice.copy_object(Bucket="copy-dst", Key="copy.bin",
                            CopySource={"Bucket": "copy-src", "Key": "big.bin"})
    assert got["CopyObjectResult"]["ETag"] == etag
    assert abs(got["CopyObjectResult"]["LastModified"].timestamp() - time.time()) < 60
    # nothing was read, written or stored: the copy names the same chunks
    assert chunk_requests(shared_cluster) == requests_before
    after = shared_cluster.chunk_usage()
    assert (after.count, after.payload_bytes) == (before.count, before.payload_bytes)

    head = alice.head_object(Bucket="copy-dst", Key="copy.bin")
    assert head["ETag"] == etag and head["ContentType"] == "application/x-test"
    assert alice.get_object(Bucket="copy-dst", Key="copy.bin")["Body"].read() == data
    # two EchoFS files (one per object), the same bytes
    files = s3.user_client("s3-copy-alice").get("/api/v1/files",
                                                params={"limit": 1000}).json()["files"]
    mine = {(f["bucket"], f["key"]): f for f in files if f.get("bucket") in ("copy-src",
                                                                           "copy-dst")}
    assert set(mine) == {("copy-src", "big.bin"), ("copy-dst", "copy.bin")}
    src_file, copy_file = mine[("copy-src", "big.bin")], mine[("copy-dst", "copy.bin")]
    assert src_file["file_id"] != copy_file["file_id"]
    assert src_file["sha256"] == copy_file["sha256"] == hashlib.sha256(data).hexdigest()
    assert copy_file["name"] == "copy.bin" and copy_file["size"] == len(data)

    # the source goes: the copy keeps every chunk, past the collector's grace
    alice.delete_object(Bucket="copy-src", Key="big.bin")
    time.sleep(3 * GC_GRACE_MS / 1000 + 1.5)  # the collector passes every second
    assert ids <= set(shared_cluster.chunk_usage().ids)
    assert alice.get_object(Bucket="copy-dst", Key="copy.bin")["Body"].read() == data
    r = s3.user_client("s3-copy-alice").get(f"/api/v1/files/{copy_file['file_id']}/download")
    assert r.status_code == 200 and r.content == data

    # and when the copy goes too, the collector takes them
    alice.delete_object(Bucket="copy-dst", Key="copy.bin")
    h.wait_until(lambda: not ids & set(shared_cluster.chunk_usage().ids),
                 GC_GRACE_MS / 1000 + 15, interval=0.2,
                 what="the chunks of the deleted source and copy to be collected")


def test_copies_racing_the_sources_deletion_are_whole_or_refused(s3, alice_key, alice):
    """Copies of an object, one after another from several clients, while
    its file is deleted through the REST API (which locks the file's row,
    not the bucket's): each copy is either whole or refused (NoSuchKey),
    and stays whole after the collector's grace: no copy ever names
    chunks whose count reached 0."""
    alice.create_bucket(Bucket="copy-race")
    rest = s3.user_client("s3-copy-alice")
    copiers = [client(s3, alice_key) for _ in range(4)]
    data = os.urandom(2 * CHUNK + 5)
    alice.put_object(Bucket="copy-race", Key="src", Body=data)
    files = rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
    file_id = [f["file_id"] for f in files
               if f.get("bucket") == "copy-race" and f.get("key") == "src"][0]
    start = threading.Barrier(len(copiers) + 1)
    made = [[] for _ in copiers]
    errors = []
    copying = threading.Event()  # every copier has made one: delete now

    def copy(i):
        start.wait()
        for n in range(1000):  # until the source is gone
            key = f"c{i}-{n}"
            try:
                copiers[i].copy_object(Bucket="copy-race", Key=key, CopySource="copy-race/src")
                made[i].append(key)
                if all(made):
                    copying.set()
            except botocore.exceptions.ClientError as e:
                status = (e.response["ResponseMetadata"]["HTTPStatusCode"],
                          e.response["Error"]["Code"])
                if status != (404, "NoSuchKey"):
                    errors.append(status)
                return
            except Exception as e:  # noqa: BLE001 - reported in the assertion
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=copy, args=(i,)) for i in range(len(copiers))]
    for t in threads:
        t.start()
    start.wait()
    copying.wait(60)
    assert rest.delete(f"/api/v1/files/{file_id}").status_code == 204
    for t in threads:
        t.join()
    assert errors == []
    keys = [k for m in made for k in m]
    assert keys, "no copy was made before the source went"
    time.sleep(3 * GC_GRACE_MS / 1000 + 1.5)  # the collector passes every second
    for key in keys:
        assert alice.get_object(Bucket="copy-race", Key=key)["Body"].read() == data, key


def test_metadata_directive_copy_and_replace(alice):
    alice.create_bucket(Bucket="copy-meta")
    alice.put_object(Bucket="copy-meta", Key="src", Body=b"payload", ContentType="text/plain",
                     CacheControl="max-age=60", ContentDisposition="inline",
                     ContentEncoding="identity", Metadata={"color": "blue", "size": "l"})
    alice.copy_object(Bucket="copy-meta", Key="copied", CopySource="copy-meta/src")
    head = alice.head_object(Bucket="copy-meta", Key="copied")
    assert head["ContentType"] == "text/plain" and head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == "inline" and head["ContentEncoding"] == "identity"
    assert head["Metadata"] == {"color": "blue", "size": "l"}

    alice.copy_object(Bucket="copy-meta", Key="replaced", CopySource="copy-meta/src",
                      MetadataDirective="REPLACE", ContentType="application/json",
                      Metadata={"shape": "round"})
    head = alice.head_object(Bucket="copy-meta", Key="replaced")
    assert head["ContentType"] == "application/json" and head["Metadata"] == {"shape": "round"}
    assert "CacheControl" not in head and "ContentDisposition" not in head
    assert alice.get_object(Bucket="copy-meta", Key="replaced")["Body"].read() == b"payload"
    # REPLACE without a Content-Type: S3's default
    alice.copy_object(Bucket="copy-meta", Key="bare", CopySource="copy-meta/src",
                      MetadataDirective="REPLACE")
    head = alice.head_object(Bucket="copy-meta", Key="bare")
    assert head["ContentType"] == "binary/octet-stream" and head["Metadata"] == {}

    assert failure(alice.copy_object, Bucket="copy-meta", Key="x", CopySource="copy-meta/src",
                   MetadataDirective="MOVE") == (400, "InvalidArgument")
    assert failure(alice.copy_object, Bucket="copy-meta", Key="x", CopySource="copy-meta/src",
                   MetadataDirective="REPLACE",
                   Metadata={"big": "v" * 3000}) == (400, "MetadataTooLarge")
    keys = [c["Key"] for c in alice.list_objects_v2(Bucket="copy-meta")["Contents"]]
    assert keys == ["bare", "copied", "replaced", "src"]


def test_copy_onto_itself_needs_replace_and_releases_the_old_file(s3, alice):
    alice.create_bucket(Bucket="copy-self")
    etag = alice.put_object(Bucket="copy-self", Key="k", Body=b"same bytes",
                            Metadata={"v": "1"})["ETag"]
    assert failure(alice.copy_object, Bucket="copy-self", Key="k",
                   CopySource="copy-self/k") == (400, "InvalidRequest")
    assert failure(alice.copy_object, Bucket="copy-self", Key="k", CopySource="copy-self/k",
                   MetadataDirective="COPY") == (400, "InvalidRequest")
    got = alice.copy_object(Bucket="copy-self", Key="k", CopySource="copy-self/k",
                            MetadataDirective="REPLACE", Metadata={"v": "2"})
    assert got["CopyObjectResult"]["ETag"] == etag
    head = alice.head_object(Bucket="copy-self", Key="k")
    assert head["Metadata"] == {"v": "2"} and head["ETag"] == etag
    assert alice.get_object(Bucket="copy-self", Key="k")["Body"].read() == b"same bytes"
    # one object, one file: the one it replaced was released
    assert files_of(s3, "s3-copy-alice", "copy-self") == \
        [("k", hashlib.sha256(b"same bytes").hexdigest())]


def test_overwriting_a_destination_releases_its_file(s3, alice):
    alice.create_bucket(Bucket="copy-over")
    alice.put_object(Bucket="copy-over", Key="src", Body=b"new")
    alice.put_object(Bucket="copy-over", Key="dst", Body=b"old")
    alice.copy_object(Bucket="copy-over", Key="dst", CopySource="copy-over/src")
    assert alice.get_object(Bucket="copy-over", Key="dst")["Body"].read() == b"new"
    new = hashlib.sha256(b"new").hexdigest()
    assert files_of(s3, "s3-copy-alice", "copy-over") == [("dst", new), ("src", new)]


def test_copy_errors_store_nothing(s3, alice, bob):
    alice.create_bucket(Bucket="copy-err")
    alice.put_object(Bucket="copy-err", Key="k", Body=b"alice's")
    bob.create_bucket(Bucket="copy-err-bob")
    # another user's source, another user's destination
    assert failure(bob.copy_object, Bucket="copy-err-bob", Key="stolen",
                   CopySource="copy-err/k") == (403, "AccessDenied")
    assert failure(alice.copy_object, Bucket="copy-err-bob", Key="pushed",
                   CopySource="copy-err/k") == (403, "AccessDenied")
    assert "Contents" not in bob.list_objects_v2(Bucket="copy-err-bob")
    assert files_of(s3, "s3-copy-bob", "copy-err-bob") == []
    # what does not exist
    assert failure(alice.copy_object, Bucket="copy-err", Key="x",
                   CopySource="copy-err/absent") == (404, "NoSuchKey")
    assert failure(alice.copy_object, Bucket="copy-err", Key="x",
                   CopySource="copy-err-none/k") == (404, "NoSuchBucket")
    assert failure(alice.copy_object, Bucket="copy-err-none", Key="x",
                   CopySource="copy-err/k") == (404, "NoSuchBucket")
    # a source without a key, another version
    assert failure(alice.copy_object, Bucket="copy-err", Key="x",
                   CopySource="copy-err") == (400, "InvalidArgument")
    assert failure(alice.copy_object, Bucket="copy-err", Key="x",
                   CopySource={"Bucket": "copy-err", "Key": "k", "VersionId": "v1"}) == \
        (501, "NotImplemented")
    assert [c["Key"] for c in alice.list_objects_v2(Bucket="copy-err")["Contents"]] == ["k"]
    assert files_of(s3, "s3-copy-alice", "copy-err") == \
        [("k", hashlib.sha256(b"alice's").hexdigest())]


def test_copy_source_encodings(s3, alice_key, alice):
    alice.create_bucket(Bucket="copy-enc")
    key = "dir/a b+c?d%e \u00e9t\u00e9.txt"
    alice.put_object(Bucket="copy-enc", Key=key, Body=b"encoded")
    # boto3's dict form (the key URL-encoded), with versionId=null
    alice.copy_object(Bucket="copy-enc", Key="one",
                      CopySource={"Bucket": "copy-enc", "Key": key, "VersionId": "null"})
    # a leading "/", sent as is by a raw request
    quoted = urllib.parse.quote(f"/copy-enc/{key}", safe="/")
    url = f"{s3.s3_url}/copy-enc/two"
    request = botocore.awsrequest.AWSRequest(method="PUT", url=url, data=b"",
                                             headers={"x-amz-copy-source": quoted})
    request.headers["x-amz-content-sha256"] = hashlib.sha256(b"").hexdigest()
    botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(*alice_key), "s3",
                              REGION).add_auth(request)
    r = requests.put(url, data=b"", headers=dict(request.headers.items()), verify=s3.s3_verify)
    assert r.status_code == 200, r.text
    assert "<CopyObjectResult" in r.text and "<ETag>" in r.text
    for k in ["one", "two"]:
        assert alice.get_object(Bucket="copy-enc", Key=k)["Body"].read() == b"encoded"


def test_copy_source_conditions(s3, alice):
    alice.create_bucket(Bucket="copy-cond")
    etag = alice.put_object(Bucket="copy-cond", Key="src", Body=b"conditional")["ETag"]
    modified = int(alice.head_object(Bucket="copy-cond", Key="src")["LastModified"].timestamp())
    past, future = modified - 3600, time.time() + 3600
    src = {"Bucket": "copy-cond", "Key": "src"}
    copy = alice.copy_object

    def ok(**cond):
        copy(Bucket="copy-cond", Key="dst", CopySource=src, **cond)

    def refused(**cond):
        assert failure(copy, Bucket="copy-cond", Key="refused", CopySource=src, **cond) == \
            (412, "PreconditionFailed"), cond

    ok(CopySourceIfMatch=etag)
    ok(CopySourceIfMatch=etag.strip('"'))
    refused(CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    ok(CopySourceIfNoneMatch='"0123456789abcdef0123456789abcdef"')
    refused(CopySourceIfNoneMatch=etag)
    refused(CopySourceIfNoneMatch="*")
    ok(CopySourceIfModifiedSince=past)
    refused(CopySourceIfModifiedSince=modified)  # not modified after it
    ok(CopySourceIfUnmodifiedSince=modified)
    refused(CopySourceIfUnmodifiedSince=past)
    # S3's documented pairs: if-match true wins over if-unmodified-since
    # false; if-none-match false fails whatever if-modified-since says
    ok(CopySourceIfMatch=etag, CopySourceIfUnmodifiedSince=past)
    refused(CopySourceIfNoneMatch=etag, CopySourceIfModifiedSince=past)
    # a date later than now is ignored, as for GET
    ok(CopySourceIfModifiedSince=future)
    keys = [c["Key"] for c in alice.list_objects_v2(Bucket="copy-cond")["Contents"]]
    assert keys == ["dst", "src"]


def test_destination_conditions(s3, alice_key, alice):
    alice.create_bucket(Bucket="copy-dcond")
    alice.put_object(Bucket="copy-dcond", Key="src", Body=b"source")
    old = alice.put_object(Bucket="copy-dcond", Key="dst", Body=b"existing")["ETag"]

    def copier(headers):
        return with_headers(client(s3, alice_key), "CopyObject", headers)

    once = copier({"If-None-Match": "*"})
    assert failure(once.copy_object, Bucket="copy-dcond", Key="dst",
                   CopySource="copy-dcond/src") == (412, "PreconditionFailed")
    once.copy_object(Bucket="copy-dcond", Key="new", CopySource="copy-dcond/src")
    stale = copier({"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert failure(stale.copy_object, Bucket="copy-dcond", Key="dst",
                   CopySource="copy-dcond/src") == (412, "PreconditionFailed")
    assert failure(copier({"If-Match": old}).copy_object, Bucket="copy-dcond", Key="absent",
                   CopySource="copy-dcond/src") == (404, "NoSuchKey")
    assert alice.get_object(Bucket="copy-dcond", Key="dst")["Body"].read() == b"existing"
    copier({"If-Match": old}).copy_object(Bucket="copy-dcond", Key="dst",
                                          CopySource="copy-dcond/src")
    assert alice.get_object(Bucket="copy-dcond", Key="dst")["Body"].read() == b"source"
    source = hashlib.sha256(b"source").hexdigest()
    assert files_of(s3, "s3-copy-alice", "copy-dcond") == \
        [("dst", source), ("new", source), ("src", source)]


def chunk_writes(cluster) -> int:
    """Chunk PUTs the workers of @cluster have answered so far."""
    total = 0.0
    for w in cluster.workers:
        text = requests.get(w.url + "/metrics", timeout=h.HTTP_TIMEOUT_S,
                            verify=str(cluster.tls.ca) if cluster.tls else True).text
        for line in text.splitlines():
            if (line.startswith("echofs_http_requests_total{")
                    and 'route="/chunks/{chunkId}"' in line and 'method="PUT"' in line):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def test_a_file_uploaded_through_the_rest_api_is_put_in_a_bucket(s3, shared_cluster, alice,
                                                                 bob):
    alice.create_bucket(Bucket="copy-files")
    rest = s3.user_client("s3-copy-alice")
    data = os.urandom(2 * CHUNK + 123)
    f = rest.upload(data, "report.pdf")
    writes = chunk_writes(shared_cluster)
    got = alice.copy_object(Bucket="copy-files", Key="docs/report.pdf",
                            CopySource=f"_files/{f['file_id']}")
    # the ETag S3 clients check: the MD5 of the bytes (read once, not written)
    assert got["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert chunk_writes(shared_cluster) == writes
    head = alice.head_object(Bucket="copy-files", Key="docs/report.pdf")
    assert head["ContentType"] == "binary/octet-stream" and head["ContentLength"] == len(data)
    assert alice.get_object(Bucket="copy-files", Key="docs/report.pdf")["Body"].read() == data
    # the REST file stays a file of its own; the object is a new one
    assert files_of(s3, "s3-copy-alice", "copy-files") == \
        [("docs/report.pdf", hashlib.sha256(data).hexdigest())]
    assert rest.download(f["file_id"]) == data
    # with the request's headers, and the conditions of any copy
    alice.copy_object(Bucket="copy-files", Key="typed.pdf", CopySource=f"_files/{f['file_id']}",
                      MetadataDirective="REPLACE", ContentType="application/pdf",
                      CopySourceIfMatch=hashlib.md5(data).hexdigest())
    assert alice.head_object(Bucket="copy-files", Key="typed.pdf")["ContentType"] == \
        "application/pdf"
    assert failure(alice.copy_object, Bucket="copy-files", Key="x",
                   CopySource=f"_files/{f['file_id']}",
                   CopySourceIfNoneMatch=hashlib.md5(data).hexdigest()) == \
        (412, "PreconditionFailed")
    # deleting the REST file leaves the objects whole
    assert rest.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
    time.sleep(3 * GC_GRACE_MS / 1000 + 1.5)
    assert alice.get_object(Bucket="copy-files", Key="docs/report.pdf")["Body"].read() == data
    # another user's file, a missing one, not a file id: nothing stored
    other = s3.user_client("s3-copy-bob").upload(b"bob's", "b.txt")
    assert failure(alice.copy_object, Bucket="copy-files", Key="x",
                   CopySource=f"_files/{other['file_id']}") == (404, "NoSuchKey")
    assert failure(alice.copy_object, Bucket="copy-files", Key="x",
                   CopySource=f"_files/{f['file_id']}") == (404, "NoSuchKey")
    assert failure(alice.copy_object, Bucket="copy-files", Key="x",
                   CopySource="_files/not-an-id") == (400, "InvalidArgument")
    assert failure(bob.copy_object, Bucket="copy-files", Key="x",
                   CopySource=f"_files/{other['file_id']}") == (403, "AccessDenied")
    keys = [c["Key"] for c in alice.list_objects_v2(Bucket="copy-files")["Contents"]]
    assert keys == ["docs/report.pdf", "typed.pdf"]


@pytest.mark.skipif(not os.path.exists(AWS_CLI), reason="Debian's awscli is not installed")
def test_aws_cli_copy_object(s3, alice_key, alice, tmp_path):
    alice.create_bucket(Bucket="copy-cli")
    etag = alice.put_object(Bucket="copy-cli", Key="a/src.txt", Body=b"from the cli")["ETag"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=alice_key[0], AWS_SECRET_ACCESS_KEY=alice_key[1],
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    extra = ["--ca-bundle", s3.s3_verify] if isinstance(s3.s3_verify, str) else []
    out = subprocess.run([AWS_CLI, "--endpoint-url", s3.s3_url, *extra, "s3api", "copy-object",
                          "--bucket", "copy-cli", "--key", "b/copy.txt",
                          "--copy-source", "copy-cli/a/src.txt"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["CopyObjectResult"]["ETag"] == etag
    assert alice.get_object(Bucket="copy-cli", Key="b/copy.txt")["Body"].read() == \
        b"from the cli"
    # docs/S3.md's example: a file of the REST API into the bucket
    f = s3.user_client("s3-copy-alice").upload(b"a rest file", "rest.txt")
    out = subprocess.run([AWS_CLI, "--endpoint-url", s3.s3_url, *extra, "s3api", "copy-object",
                          "--bucket", "copy-cli", "--key", "from-rest.txt",
                          "--copy-source", f"_files/{f['file_id']}"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["CopyObjectResult"]["ETag"] == \
        f'"{hashlib.md5(b"a rest file").hexdigest()}"'
    assert alice.get_object(Bucket="copy-cli", Key="from-rest.txt")["Body"].read() == \
        b"a rest file"


def test_versioning_is_reported_off_and_cannot_be_enabled(alice, bob):
    alice.create_bucket(Bucket="copy-versions")
    got = alice.get_bucket_versioning(Bucket="copy-versions")
    assert "Status" not in got and "MFADelete" not in got
    assert failure(alice.put_bucket_versioning, Bucket="copy-versions",
                   VersioningConfiguration={"Status": "Enabled"}) == (501, "NotImplemented")
    assert failure(bob.get_bucket_versioning, Bucket="copy-versions") == (403, "AccessDenied")
    assert failure(alice.get_bucket_versioning, Bucket="copy-versions-none") == \
        (404, "NoSuchBucket")


def test_access_log_shows_the_query_but_no_credentials(s3, alice):
    alice.create_bucket(Bucket="copy-log")
    alice.put_object(Bucket="copy-log", Key="k", Body=b"logged")
    mark = s3.log_mark()
    alice.list_objects_v2(Bucket="copy-log", Prefix="k", MaxKeys=5)
    url = alice.generate_presigned_url("get_object", Params={"Bucket": "copy-log", "Key": "k"},
                                       ExpiresIn=60)
    assert requests.get(url, verify=s3.s3_verify).content == b"logged"
    # a name sent percent-encoded is still a secret (refused, and not logged)
    r = requests.get(f"{s3.s3_url}/copy-log/k?X%2DAmz%2DSignature=s3cr3tv4lue&x-id=GetObject",
                     verify=s3.s3_verify)
    assert r.status_code >= 400
    log = [line for line in s3.stderr_since(mark).splitlines() if "access GET /copy-log" in line]
    assert any("/copy-log?list-type=2&prefix=k&max-keys=5" in line
               or ("list-type=2" in line and "prefix=k" in line) for line in log), log
    presigned = [line for line in log if "/copy-log/k?" in line]
    assert presigned and "X-Amz-Date=" in presigned[0], log
    assert any("/copy-log/k?x-id=GetObject " in line for line in log), log
    for line in log:
        assert "X-Amz-Signature" not in line and "X-Amz-Credential" not in line, line
        assert "s3cr3tv4lue" not in line, line
        assert urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["X-Amz-Signature"][0] \
            not in line
