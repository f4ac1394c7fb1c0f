"""test_s3_multipart.py - S3 multipart uploads (docs/S3.md#multipart-upload)
with boto3 and the aws CLI against a master serving S3, with a worker.

Covered: Create (headers and user metadata kept for the object), UploadPart
(ETag = MD5, part numbers 1..10000, a resent part replaces the earlier one
and releases its chunks), Complete (the object appears with ETag
"md5-of-md5s-N", byte-identical through S3 and /api/v1/files, as one file;
InvalidPartOrder, InvalidPart for an unknown part or a wrong ETag,
EntityTooSmall, MalformedXML; a retried Complete answers the same),
Abort (NoSuchUpload after, the parts' chunks collected), ListParts and
ListMultipartUploads with their pagination, a delimiter (CommonPrefixes)
and encoding-type=url, another user's upload id,
GetObject/HeadObject of one part (?partNumber: 206, x-amz-mp-parts-count,
InvalidPartNumber),
expiry by the collector (S3_MULTIPART_EXPIRY), and the issue's "done when":
a 200 MiB `aws s3 cp` (multipart above 8 MiB) identical through S3 and the
REST API with a "-N" ETag.
"""

import hashlib
import io
import os
import subprocess
import time

import pytest
import requests
from boto3.s3.transfer import TransferConfig

import echofs_harness as h
from s3_helpers import (REGION, access_key, client, error_code, failure, signed_request,
                        status_of)
from test_s3_api import AWS_CLI

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(shared_cluster):
    """A master with its S3 port and one worker; chunks unreferenced for
    half a second are collected, so releases show up in the stats."""
    port = h.free_port()
    master = shared_cluster.start(workers=1, master_env={
        "S3_PORT": str(port), "REPLICATION_FACTOR": "1", "GC_GRACE_MS": "500"})
    master.s3_port = port
    master.s3_url = f"{shared_cluster.scheme}://127.0.0.1:{port}"
    master.s3_verify = str(shared_cluster.tls.ca) if shared_cluster.tls else True
    return master


@pytest.fixture(scope="module")
def alice_key(s3):
    return access_key(s3, "mpu-alice")


@pytest.fixture(scope="module")
def alice(s3, alice_key):
    c = client(s3, alice_key)
    c.create_bucket(Bucket="mpu")
    return c


@pytest.fixture(scope="module")
def bob(s3):
    return client(s3, access_key(s3, "mpu-bob"))


def md5(data):
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts))
                        .hexdigest(), len(parts))


def referenced_chunks(master):
    """Chunks something references (files, sessions, parts), from the stats."""
    r = master.client(h.make_jwt({"sub": "root", "exp": int(time.time()) + 3600,
                                  "admin": True})).get("/api/v1/stats")
    assert r.status_code == 200, r.text
    return r.json()["chunks"], r.json()["gc"]["chunks_collected_total"]


def upload_parts(c, key, parts, bucket="mpu", **create):
    upload_id = c.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    etags = []
    for n, data in enumerate(parts, 1):
        r = c.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data)
        assert r["ETag"] == '"%s"' % md5(data)
        etags.append(r["ETag"])
    return upload_id, [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]


def test_upload_complete_and_read_back_through_s3_and_rest(s3, alice):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(MIB + 4321)]
    data = b"".join(parts)
    upload_id, listed = upload_parts(alice, "docs/report.pdf", parts,
                                     ContentType="application/pdf",
                                     Metadata={"Author": "alice"},
                                     CacheControl="max-age=60")
    # not an object (nor a file) before Complete
    assert error_code(alice.head_object, Bucket="mpu", Key="docs/report.pdf") == "404"
    done = alice.complete_multipart_upload(Bucket="mpu", Key="docs/report.pdf",
                                           UploadId=upload_id,
                                           MultipartUpload={"Parts": listed})
    assert done["ETag"] == multipart_etag(parts)
    assert done["Bucket"] == "mpu" and done["Key"] == "docs/report.pdf"
    head = alice.head_object(Bucket="mpu", Key="docs/report.pdf")
    assert head["ContentLength"] == len(data) and head["ETag"] == multipart_etag(parts)
    assert head["ContentType"] == "application/pdf" and head["Metadata"] == {"author": "alice"}
    assert head["CacheControl"] == "max-age=60"
    assert alice.get_object(Bucket="mpu", Key="docs/report.pdf")["Body"].read() == data
    # a range across the first part boundary
    got = alice.get_object(Bucket="mpu", Key="docs/report.pdf",
                           Range=f"bytes={5 * MIB - 10}-{5 * MIB + 10}")["Body"].read()
    assert got == data[5 * MIB - 10:5 * MIB + 11]
    # one EchoFS file with the whole content's SHA-256
    rest = s3.user_client("mpu-alice")
    files = [f for f in rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
             if f.get("key") == "docs/report.pdf"]
    assert len(files) == 1, files
    assert files[0]["size"] == len(data)
    assert files[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert rest.download_sha256(files[0]["file_id"]) == (len(data),
                                                         hashlib.sha256(data).hexdigest())
    # a retried Complete (its answer lost) answers the same
    again = alice.complete_multipart_upload(Bucket="mpu", Key="docs/report.pdf",
                                            UploadId=upload_id,
                                            MultipartUpload={"Parts": listed})
    assert again["ETag"] == done["ETag"]
    # but the upload is no longer in progress
    assert error_code(alice.list_parts, Bucket="mpu", Key="docs/report.pdf",
                      UploadId=upload_id) == "NoSuchUpload"
    assert error_code(alice.abort_multipart_upload, Bucket="mpu", Key="docs/report.pdf",
                      UploadId=upload_id) == "NoSuchUpload"


def test_complete_replaces_an_existing_object_and_leaves_out_unlisted_parts(s3, alice):
    alice.put_object(Bucket="mpu", Key="replaced", Body=b"old bytes")
    parts = [os.urandom(5 * MIB), os.urandom(100)]
    upload_id, listed = upload_parts(alice, "replaced", parts + [os.urandom(MIB)])
    # part 3 is not listed: it is not in the object, and its chunk is released
    done = alice.complete_multipart_upload(Bucket="mpu", Key="replaced", UploadId=upload_id,
                                           MultipartUpload={"Parts": listed[:2]})
    assert done["ETag"] == multipart_etag(parts)
    assert alice.get_object(Bucket="mpu", Key="replaced")["Body"].read() == b"".join(parts)


def test_a_resent_part_replaces_the_earlier_one_and_releases_it(s3, alice):
    upload_id = alice.create_multipart_upload(Bucket="mpu", Key="resent")["UploadId"]
    first, second = os.urandom(2 * MIB), os.urandom(5 * MIB)
    last = os.urandom(10)
    before, _ = referenced_chunks(s3)
    alice.upload_part(Bucket="mpu", Key="resent", UploadId=upload_id, PartNumber=1, Body=first)
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 2, 10)
    r = alice.upload_part(Bucket="mpu", Key="resent", UploadId=upload_id, PartNumber=1,
                          Body=second)
    assert r["ETag"] == '"%s"' % md5(second)
    # the first version's two chunks are released, the second's five held
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 5, 10)
    alice.upload_part(Bucket="mpu", Key="resent", UploadId=upload_id, PartNumber=2, Body=last)
    parts = alice.list_parts(Bucket="mpu", Key="resent", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [
        (1, len(second), '"%s"' % md5(second)), (2, 10, '"%s"' % md5(last))]
    # the old ETag of part 1 is no part's any more
    assert error_code(alice.complete_multipart_upload, Bucket="mpu", Key="resent",
                      UploadId=upload_id, MultipartUpload={"Parts": [
                          {"PartNumber": 1, "ETag": '"%s"' % md5(first)},
                          {"PartNumber": 2, "ETag": '"%s"' % md5(last)}]}) == "InvalidPart"
    alice.complete_multipart_upload(Bucket="mpu", Key="resent", UploadId=upload_id,
                                    MultipartUpload={"Parts": [
                                        {"PartNumber": 1, "ETag": '"%s"' % md5(second)},
                                        {"PartNumber": 2, "ETag": '"%s"' % md5(last)}]})
    assert alice.get_object(Bucket="mpu", Key="resent")["Body"].read() == second + last


def test_complete_errors(s3, alice, alice_key):
    big, small = os.urandom(5 * MIB), os.urandom(MIB)
    upload_id, listed = upload_parts(alice, "errors", [big, small, big])
    complete = alice.complete_multipart_upload

    def fails(parts):
        return error_code(complete, Bucket="mpu", Key="errors", UploadId=upload_id,
                          MultipartUpload={"Parts": parts})

    assert fails([listed[1], listed[0]]) == "InvalidPartOrder"
    assert fails([listed[0], listed[0]]) == "InvalidPartOrder"
    assert fails([listed[0], {"PartNumber": 7, "ETag": listed[1]["ETag"]}]) == "InvalidPart"
    assert fails([listed[0], {"PartNumber": 2, "ETag": '"%s"' % md5(b"x")}]) == "InvalidPart"
    assert fails([listed[0], {"PartNumber": 2, "ETag": "not-an-etag"}]) == "InvalidPart"
    # part 2 (1 MiB) is not the last listed: too small
    assert fails(listed) == "EntityTooSmall"
    assert fails([]) == "MalformedXML"
    # nothing happened: the upload and its parts are all there
    assert len(alice.list_parts(Bucket="mpu", Key="errors", UploadId=upload_id)["Parts"]) == 3
    assert error_code(alice.head_object, Bucket="mpu", Key="errors") == "404"
    # a body that is not a CompleteMultipartUpload
    url = f"{s3.s3_url}/mpu/errors?uploadId={upload_id}"
    for body in [b"<Nope/>", b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                 b"</Part></CompleteMultipartUpload>", b"not xml"]:
        headers = signed_request(alice_key, "POST", url, body)
        r = requests.post(url, data=body, headers=headers, verify=s3.s3_verify)
        assert r.status_code == 400 and b"<Code>MalformedXML</Code>" in r.content, r.text
    # the last part may be small; parts 1 and 3 make a valid object
    done = complete(Bucket="mpu", Key="errors", UploadId=upload_id,
                    MultipartUpload={"Parts": [listed[0], listed[2]]})
    assert done["ETag"] == multipart_etag([big, big])


def test_upload_part_errors_and_another_users_upload(s3, alice, bob):
    upload_id = alice.create_multipart_upload(Bucket="mpu", Key="mine")["UploadId"]
    for number in (0, 10001):
        assert error_code(alice.upload_part, Bucket="mpu", Key="mine", UploadId=upload_id,
                          PartNumber=number, Body=b"x") == "InvalidArgument"
    assert error_code(alice.upload_part, Bucket="mpu", Key="mine", UploadId="0" * 32,
                      PartNumber=1, Body=b"x") == "NoSuchUpload"
    # the upload id names another key
    assert error_code(alice.upload_part, Bucket="mpu", Key="other", UploadId=upload_id,
                      PartNumber=1, Body=b"x") == "NoSuchUpload"
    # bob: alice's bucket is not his; in his own bucket her upload id is no upload
    assert error_code(bob.upload_part, Bucket="mpu", Key="mine", UploadId=upload_id,
                      PartNumber=1, Body=b"x") == "AccessDenied"
    assert error_code(bob.list_multipart_uploads, Bucket="mpu") == "AccessDenied"
    bob.create_bucket(Bucket="mpu-bob")
    assert error_code(bob.upload_part, Bucket="mpu-bob", Key="mine", UploadId=upload_id,
                      PartNumber=1, Body=b"x") == "NoSuchUpload"
    assert error_code(bob.abort_multipart_upload, Bucket="mpu-bob", Key="mine",
                      UploadId=upload_id) == "NoSuchUpload"
    # a Content-MD5 that is not the part's
    assert error_code(alice.upload_part, Bucket="mpu", Key="mine", UploadId=upload_id,
                      PartNumber=1, Body=b"abc",
                      ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==") == "BadDigest"
    assert alice.list_parts(Bucket="mpu", Key="mine", UploadId=upload_id).get("Parts", []) == []
    alice.abort_multipart_upload(Bucket="mpu", Key="mine", UploadId=upload_id)


def assert_part(c, key, number, data, first, total, parts_count, etag):
    """GetObject and HeadObject of part @number of @key: 206, its bytes
    @data at @first of @total, x-amz-mp-parts-count (absent when 0)."""
    r = c.get_object(Bucket="mpu", Key=key, PartNumber=number)
    body = r["Body"].read()
    head = c.head_object(Bucket="mpu", Key=key, PartNumber=number)
    for answer in (r, head):
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert answer["ContentLength"] == len(data)
        # (botocore's HeadObject has no ContentRange member)
        assert (answer["ResponseMetadata"]["HTTPHeaders"]["content-range"] ==
                f"bytes {first}-{first + len(data) - 1}/{total}")
        assert answer["ETag"] == etag
        assert answer.get("PartsCount") == (parts_count or None)
    assert body == data


def test_get_and_head_of_one_part(s3, alice, alice_key):
    parts = [os.urandom(5 * MIB), os.urandom(6 * MIB), os.urandom(4321)]
    data = b"".join(parts)
    upload_id, listed = upload_parts(alice, "parts/obj", parts)
    alice.complete_multipart_upload(Bucket="mpu", Key="parts/obj", UploadId=upload_id,
                                    MultipartUpload={"Parts": listed})
    etag = multipart_etag(parts)
    first = 0
    for n, part in enumerate(parts, 1):
        assert_part(alice, "parts/obj", n, part, first, len(data), 3, etag)
        first += len(part)
    # past the last part: 416 InvalidPartNumber, as S3
    assert failure(alice.get_object, Bucket="mpu", Key="parts/obj",
                   PartNumber=4) == (416, "InvalidPartNumber")
    assert status_of(alice.head_object, Bucket="mpu", Key="parts/obj", PartNumber=4) == 416
    # not a part number, or with a Range: 400, as S3
    url = f"{s3.s3_url}/mpu/parts/obj"
    for number in ("0", "10001", "x", ""):
        headers = signed_request(alice_key, "GET", f"{url}?partNumber={number}")
        r = requests.get(f"{url}?partNumber={number}", headers=headers, verify=s3.s3_verify)
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, (number,
                                                                                  r.text)
    assert failure(alice.get_object, Bucket="mpu", Key="parts/obj", PartNumber=1,
                   Range="bytes=0-1") == (400, "InvalidRequest")
    # the conditions still hold first
    assert status_of(alice.get_object, Bucket="mpu", Key="parts/obj", PartNumber=1,
                     IfNoneMatch=etag) == 304

    # parts left out of the Complete: part N is the Nth part joined
    upload_id, listed = upload_parts(alice, "parts/sparse", parts)
    alice.complete_multipart_upload(Bucket="mpu", Key="parts/sparse", UploadId=upload_id,
                                    MultipartUpload={"Parts": [listed[0], listed[2]]})
    sparse = multipart_etag([parts[0], parts[2]])
    assert_part(alice, "parts/sparse", 1, parts[0], 0, len(parts[0]) + len(parts[2]), 2, sparse)
    assert_part(alice, "parts/sparse", 2, parts[2], len(parts[0]),
                len(parts[0]) + len(parts[2]), 2, sparse)
    assert failure(alice.get_object, Bucket="mpu", Key="parts/sparse",
                   PartNumber=3) == (416, "InvalidPartNumber")

    # a single PUT: part 1 is the whole object, with no parts count
    alice.put_object(Bucket="mpu", Key="parts/whole", Body=b"abcdef")
    assert_part(alice, "parts/whole", 1, b"abcdef", 0, 6, 0, '"%s"' % md5(b"abcdef"))
    assert failure(alice.get_object, Bucket="mpu", Key="parts/whole",
                   PartNumber=2) == (416, "InvalidPartNumber")
    # an empty part (the last may be) or object has no range to name: 200, empty
    upload_id, listed = upload_parts(alice, "parts/empty-last", [parts[0], b""])
    alice.complete_multipart_upload(Bucket="mpu", Key="parts/empty-last", UploadId=upload_id,
                                    MultipartUpload={"Parts": listed})
    alice.put_object(Bucket="mpu", Key="parts/empty", Body=b"")
    for key, number, count in (("parts/empty-last", 2, 2), ("parts/empty", 1, None)):
        for call in (alice.get_object, alice.head_object):
            r = call(Bucket="mpu", Key=key, PartNumber=number)
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, (key, call)
            assert r["ContentLength"] == 0 and r.get("PartsCount") == count
            assert "content-range" not in r["ResponseMetadata"]["HTTPHeaders"]
            if "Body" in r:
                assert r["Body"].read() == b""
    assert_part(alice, "parts/empty-last", 1, parts[0], 0, len(parts[0]), 2,
                multipart_etag([parts[0], b""]))
    # a multipart object overwritten by a PUT has no parts any more
    alice.put_object(Bucket="mpu", Key="parts/sparse", Body=b"xyz")
    assert_part(alice, "parts/sparse", 1, b"xyz", 0, 3, 0, '"%s"' % md5(b"xyz"))
    assert failure(alice.get_object, Bucket="mpu", Key="parts/sparse",
                   PartNumber=2) == (416, "InvalidPartNumber")
    # a copy of a multipart object is one part (as S3's CopyObject makes)
    alice.copy_object(Bucket="mpu", Key="parts/copy", CopySource="mpu/parts/obj")
    assert_part(alice, "parts/copy", 1, data, 0, len(data), 0, etag)
    # another user's bucket
    assert failure(client(s3, access_key(s3, "mpu-eve")).get_object, Bucket="mpu",
                   Key="parts/obj", PartNumber=1) == (403, "AccessDenied")


def test_abort_releases_the_parts_and_their_chunks_are_collected(s3, alice):
    before, collected_before = referenced_chunks(s3)
    upload_id, _ = upload_parts(alice, "aborted", [os.urandom(3 * MIB), os.urandom(2 * MIB)])
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 5, 10)
    alice.abort_multipart_upload(Bucket="mpu", Key="aborted", UploadId=upload_id)
    h.wait_until(lambda: referenced_chunks(s3)[0] == before, 10)
    h.wait_until(lambda: referenced_chunks(s3)[1] >= collected_before + 5, 20)
    for call, kwargs in [(alice.list_parts, {}), (alice.abort_multipart_upload, {}),
                         (alice.upload_part, {"PartNumber": 1, "Body": b"x"}),
                         (alice.complete_multipart_upload, {"MultipartUpload": {"Parts": [
                             {"PartNumber": 1, "ETag": '"%s"' % md5(b"x")}]}})]:
        assert error_code(call, Bucket="mpu", Key="aborted", UploadId=upload_id,
                          **kwargs) == "NoSuchUpload", call
    assert error_code(alice.head_object, Bucket="mpu", Key="aborted") == "404"


def test_list_parts_and_uploads_paginate(s3, alice):
    alice.create_bucket(Bucket="mpu-list")
    ids = {}
    for key in ["b", "a/1", "a/2", "b"]:
        ids.setdefault(key, []).append(
            alice.create_multipart_upload(Bucket="mpu-list", Key=key)["UploadId"])
    want = sorted((k, u) for k, us in ids.items() for u in us)
    got = alice.list_multipart_uploads(Bucket="mpu-list")
    assert [(u["Key"], u["UploadId"]) for u in got["Uploads"]] == want
    assert not got["IsTruncated"]
    # uploads of one key in the order they began
    assert [u["UploadId"] for u in got["Uploads"] if u["Key"] == "b"] == ids["b"]
    pages, marker = [], {}
    while True:
        page = alice.list_multipart_uploads(Bucket="mpu-list", MaxUploads=1, **marker)
        pages += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        marker = {"KeyMarker": page["NextKeyMarker"],
                  "UploadIdMarker": page["NextUploadIdMarker"]}
    assert pages == want
    assert [u["Key"] for u in alice.list_multipart_uploads(
        Bucket="mpu-list", Prefix="a/")["Uploads"]] == ["a/1", "a/2"]
    # key-marker alone skips every upload of that key
    assert [u["Key"] for u in alice.list_multipart_uploads(
        Bucket="mpu-list", KeyMarker="a/2").get("Uploads", [])] == ["b", "b"]

    upload_id = ids["a/1"][0]
    for n in range(1, 6):
        alice.upload_part(Bucket="mpu-list", Key="a/1", UploadId=upload_id, PartNumber=n * 2,
                          Body=bytes([n]) * 10)
    numbers, marker = [], 0
    while True:
        page = alice.list_parts(Bucket="mpu-list", Key="a/1", UploadId=upload_id, MaxParts=2,
                                PartNumberMarker=marker)
        numbers += [p["PartNumber"] for p in page.get("Parts", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
    assert numbers == [2, 4, 6, 8, 10]
    # a bucket with uploads in progress can be deleted: they go with it
    for key, us in ids.items():
        for u in us:
            if u != upload_id:
                alice.abort_multipart_upload(Bucket="mpu-list", Key=key, UploadId=u)
    assert [u["UploadId"] for u in alice.list_multipart_uploads(
        Bucket="mpu-list")["Uploads"]] == [upload_id]
    alice.delete_bucket(Bucket="mpu-list")
    assert error_code(alice.list_parts, Bucket="mpu-list", Key="a/1",
                      UploadId=upload_id) == "NoSuchBucket"


def uploads_page(c, **kwargs):
    """One ListMultipartUploads page as (entries, answer): ("upload", key)
    and ("prefix", prefix) in the order S3 sorts them (byte order)."""
    page = c.list_multipart_uploads(Bucket="mpu-delim", **kwargs)
    entries = [("upload", u["Key"]) for u in page.get("Uploads", [])]
    entries += [("prefix", p["Prefix"]) for p in page.get("CommonPrefixes", [])]
    return sorted(entries, key=lambda e: e[1].encode()), page


def test_list_uploads_with_a_delimiter(s3, alice, alice_key):
    alice.create_bucket(Bucket="mpu-delim")
    keys = ["a.txt", "photos/2024/1.jpg", "photos/2024/2.jpg", "photos/2025/1.jpg",
            "photos/x.jpg", "videos/v.mp4", "z", "\u00fc/\u00e9"]
    # A prefix too long to jump past: passed over upload by upload. (Not on
    # DynamoDB, which refuses uploads of a key that long: see docs/S3.md.)
    long_keys = h.BACKEND != "aws"
    if long_keys:
        keys += ["L" * 1015 + "/1", "L" * 1015 + "/2", "L" * 1015 + "/3"]
    ids = {k: alice.create_multipart_upload(Bucket="mpu-delim", Key=k)["UploadId"] for k in keys}
    top = [("prefix", "L" * 1015 + "/")] if long_keys else []
    top += [("upload", "a.txt"), ("prefix", "photos/"), ("prefix", "videos/"), ("upload", "z"),
           ("prefix", "\u00fc/")]
    entries, page = uploads_page(alice, Delimiter="/")
    assert entries == top and not page["IsTruncated"] and page["Delimiter"] == "/"
    # within a prefix
    entries, _ = uploads_page(alice, Delimiter="/", Prefix="photos/")
    assert entries == [("prefix", "photos/2024/"), ("prefix", "photos/2025/"),
                       ("upload", "photos/x.jpg")]
    # a delimiter other than "/", and one ending inside a segment
    entries, _ = uploads_page(alice, Delimiter="2", Prefix="photos/")
    assert entries == [("prefix", "photos/2"), ("upload", "photos/x.jpg")]
    entries, _ = uploads_page(alice, Delimiter="/", Prefix="photos/202")
    assert entries == [("prefix", "photos/2024/"), ("prefix", "photos/2025/")]
    # one entry a page: each prefix once, counted in max-uploads
    got, marker = [], {}
    while True:
        entries, page = uploads_page(alice, Delimiter="/", MaxUploads=1, **marker)
        assert len(entries) == 1
        got += entries
        if not page["IsTruncated"]:
            break
        marker = {"KeyMarker": page["NextKeyMarker"],
                  "UploadIdMarker": page["NextUploadIdMarker"]}
    assert got == top
    # a key-marker that is a common prefix (or inside one) skips it
    after_photos = top[top.index(("prefix", "photos/")) + 1:]
    assert uploads_page(alice, Delimiter="/", KeyMarker="photos/")[0] == after_photos
    assert uploads_page(alice, Delimiter="/", KeyMarker="photos/2024/1.jpg")[0] == after_photos
    if long_keys:
        assert uploads_page(alice, Delimiter="/", KeyMarker="L" * 1015 + "/2")[0] == top[1:]
    # without a delimiter, every upload as before
    entries, _ = uploads_page(alice)
    assert entries == [("upload", k) for k in sorted(keys, key=str.encode)]
    # encoding-type=url: prefixes, the delimiter and keys encoded in the XML
    url = f"{s3.s3_url}/mpu-delim?uploads&delimiter=%2F&encoding-type=url"
    r = requests.get(url, headers=signed_request(alice_key, "GET", url), verify=s3.s3_verify)
    assert r.status_code == 200, r.text
    assert "<Prefix>%C3%BC/</Prefix>" in r.text and "<Delimiter>/</Delimiter>" in r.text
    assert "<Key>a.txt</Key>" in r.text and "<EncodingType>url</EncodingType>" in r.text
    for k, u in ids.items():
        alice.abort_multipart_upload(Bucket="mpu-delim", Key=k, UploadId=u)
    alice.delete_bucket(Bucket="mpu-delim")


def test_incomplete_uploads_expire_and_are_collected(cluster):
    port = h.free_port()
    master = cluster.start(workers=1, master_env={
        "S3_PORT": str(port), "REPLICATION_FACTOR": "1", "GC_GRACE_MS": "200",
        "S3_MULTIPART_EXPIRY": "3"})
    master.s3_url = f"{cluster.scheme}://127.0.0.1:{port}"
    master.s3_verify = str(cluster.tls.ca) if cluster.tls else True
    c = client(master, access_key(master, "mpu-expiry"))
    c.create_bucket(Bucket="expiring")
    before, collected_before = referenced_chunks(master)
    upload_id, listed = upload_parts(c, "left", [os.urandom(2 * MIB)], bucket="expiring")
    assert referenced_chunks(master)[0] == before + 2
    h.wait_until(lambda: not c.list_multipart_uploads(Bucket="expiring").get("Uploads"), 30)
    h.wait_until(lambda: referenced_chunks(master)[0] == before, 10)
    h.wait_until(lambda: referenced_chunks(master)[1] >= collected_before + 2, 20)
    assert error_code(c.complete_multipart_upload, Bucket="expiring", Key="left",
                      UploadId=upload_id, MultipartUpload={"Parts": listed}) == "NoSuchUpload"
    assert error_code(c.upload_part, Bucket="expiring", Key="left", UploadId=upload_id,
                      PartNumber=2, Body=b"x") == "NoSuchUpload"


def test_upload_part_copy_from_objects_and_ranges(s3, alice, bob):
    source = os.urandom(7 * MIB + 5)
    alice.put_object(Bucket="mpu", Key="copy/source", Body=source)
    upload_id = alice.create_multipart_upload(Bucket="mpu", Key="copy/target")["UploadId"]
    whole = alice.upload_part_copy(Bucket="mpu", Key="copy/target", UploadId=upload_id,
                                   PartNumber=1, CopySource={"Bucket": "mpu",
                                                             "Key": "copy/source"})
    assert whole["CopyPartResult"]["ETag"] == '"%s"' % md5(source)
    ranged = alice.upload_part_copy(Bucket="mpu", Key="copy/target", UploadId=upload_id,
                                    PartNumber=2, CopySource="mpu/copy/source",
                                    CopySourceRange="bytes=100-1048675")
    piece = source[100:1048676]
    assert ranged["CopyPartResult"]["ETag"] == '"%s"' % md5(piece)
    tail = b"and a part sent as bytes"
    r = alice.upload_part(Bucket="mpu", Key="copy/target", UploadId=upload_id, PartNumber=3,
                          Body=tail)
    # a copied part of 7 MiB + 5 (not a whole number of 1 MiB chunks)
    # leading: its bytes are copied into new chunks at Complete
    # (test_s3_multipart_rechunk.py)
    joined = alice.create_multipart_upload(Bucket="mpu", Key="copy/joined")["UploadId"]
    w = alice.upload_part_copy(Bucket="mpu", Key="copy/joined", UploadId=joined, PartNumber=1,
                               CopySource="mpu/copy/source")
    t = alice.upload_part(Bucket="mpu", Key="copy/joined", UploadId=joined, PartNumber=2,
                          Body=tail)
    alice.complete_multipart_upload(Bucket="mpu", Key="copy/joined", UploadId=joined,
                                    MultipartUpload={"Parts": [
                                        {"PartNumber": 1, "ETag": w["CopyPartResult"]["ETag"]},
                                        {"PartNumber": 2, "ETag": t["ETag"]}]})
    assert alice.get_object(Bucket="mpu", Key="copy/joined")["Body"].read() == source + tail
    aligned = alice.upload_part_copy(Bucket="mpu", Key="copy/target", UploadId=upload_id,
                                     PartNumber=1, CopySource="mpu/copy/source",
                                     CopySourceRange=f"bytes=0-{6 * MIB - 1}")
    done = alice.complete_multipart_upload(
        Bucket="mpu", Key="copy/target", UploadId=upload_id, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": aligned["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]}]})
    assert done["ETag"] == multipart_etag([source[:6 * MIB], piece])
    assert alice.get_object(Bucket="mpu", Key="copy/target")["Body"].read() == \
        source[:6 * MIB] + piece
    # errors: a missing source, a range past its end, another user's bucket
    upload_id = alice.create_multipart_upload(Bucket="mpu", Key="copy/bad")["UploadId"]

    def copy_fails(**kwargs):
        return error_code(alice.upload_part_copy, Bucket="mpu", Key="copy/bad",
                          UploadId=upload_id, PartNumber=1, **kwargs)

    assert copy_fails(CopySource="mpu/copy/none") == "NoSuchKey"
    assert copy_fails(CopySource="mpu/copy/source",
                      CopySourceRange=f"bytes=0-{len(source)}") == "InvalidArgument"
    bob.create_bucket(Bucket="mpu-bob-src")
    bob.put_object(Bucket="mpu-bob-src", Key="secret", Body=b"bob's")
    assert copy_fails(CopySource="mpu-bob-src/secret") == "AccessDenied"
    assert alice.list_parts(Bucket="mpu", Key="copy/bad", UploadId=upload_id).get(
        "Parts", []) == []
    alice.abort_multipart_upload(Bucket="mpu", Key="copy/bad", UploadId=upload_id)


def test_boto3_transfer_uses_multipart_and_etag_has_the_part_count(s3, alice):
    data = os.urandom(20 * MIB + 77)
    alice.upload_fileobj(io.BytesIO(data), "mpu", "transfer.bin",
                         Config=TransferConfig(multipart_threshold=8 * MIB,
                                               multipart_chunksize=8 * MIB))
    head = alice.head_object(Bucket="mpu", Key="transfer.bin")
    parts = [data[i:i + 8 * MIB] for i in range(0, len(data), 8 * MIB)]
    assert head["ETag"] == multipart_etag(parts) and head["ETag"].endswith('-3"')
    got = io.BytesIO()
    alice.download_fileobj("mpu", "transfer.bin", got)
    assert got.getvalue() == data


@pytest.mark.skipif(not os.path.exists(AWS_CLI), reason="Debian's awscli is not installed")
@pytest.mark.skipif(h.BACKEND == "aws", reason="45 s of DynamoDB Local for 200 MiB; the AWS "
                    "round's multipart path runs in the other tests of this file")
def test_aws_cli_cp_of_200_mib_is_identical_through_s3_and_rest(s3, tmp_path):
    key_id, secret = access_key(s3, "mpu-carol")
    env = {**h.base_environ(), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "HOME": str(tmp_path)}

    def aws(*args):
        ca = [] if s3.s3_verify is True else ["--ca-bundle", s3.s3_verify]
        out = subprocess.run([AWS_CLI, "--endpoint-url", s3.s3_url, *ca, *args], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"aws {args}: {out.stdout}\n{out.stderr}"
        return out.stdout

    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as f:
        for _ in range(200):
            block = os.urandom(MIB)
            digest.update(block)
            f.write(block)
    sha = digest.hexdigest()
    aws("s3", "mb", "s3://mpu-cli")
    aws("s3", "cp", str(source), "s3://mpu-cli/big.bin")  # 8 MiB parts: 25 of them
    head = aws("s3api", "head-object", "--bucket", "mpu-cli", "--key", "big.bin")
    assert '-25\\"' in head, head
    back = tmp_path / "back.bin"
    aws("s3", "cp", "s3://mpu-cli/big.bin", str(back))
    digest = hashlib.sha256()
    with open(back, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    assert digest.hexdigest() == sha
    back.unlink()
    rest = s3.user_client("mpu-carol")
    files = [f for f in rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
             if f.get("key") == "big.bin"]
    assert len(files) == 1 and files[0]["sha256"] == sha
    assert rest.download_sha256(files[0]["file_id"]) == (200 * MIB, sha)
