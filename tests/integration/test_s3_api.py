"""test_s3_api.py - the S3 API (docs/S3.md) with real clients: boto3 and
the aws CLI against a master serving S3 on S3_PORT, with workers.

Access keys come from the REST API (POST /api/v1/keys with a user's JWT),
as a user would get them. Covered: the listener (S3 XML errors with
x-amz-request-id, anonymous requests refused, path and virtual-host
addressing), buckets (create with the name rules and LocationConstraint,
BucketAlreadyOwnedByYou / BucketAlreadyExists, another user's bucket ->
AccessDenied, BucketNotEmpty, head, location, list), objects (put with
headers and user metadata, get and head with ranges, InvalidRange,
NoSuchKey, delete, overwrite), a 24 MiB object byte-identical through S3
and through /api/v1/files, a bad signature and a body that is not the
signed one (nothing stored), ListObjects v1 and v2 (prefix, delimiter,
pagination, byte order), what is not implemented (501 NotImplemented), and
the aws CLI's mb/cp/ls/rm/rb.
"""

import hashlib
import hmac
import io
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import botocore
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import echofs_harness as h
from s3_helpers import (REGION, access_key, client, error_code, signed_request, start_s3,
                        status_of)

S3_DOMAIN = "s3.echofs.test"
AWS_CLI = "/usr/bin/aws"  # Debian's awscli: the `aws` on PATH may be a shim


@pytest.fixture(scope="module")
def s3(shared_cluster):
    """The master (two workers, every chunk on both) with its S3 port."""
    return start_s3(shared_cluster, S3_DOMAIN=S3_DOMAIN, REPLICATION_FACTOR="2")


@pytest.fixture(scope="module")
def alice(s3):
    return client(s3, access_key(s3, "s3-alice"))


@pytest.fixture(scope="module")
def bob(s3):
    return client(s3, access_key(s3, "s3-bob"))


STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


class StreamingAuth(S3SigV4Auth):
    """botocore's S3 signer for the seed request of an aws-chunked body."""

    def payload(self, request):
        return STREAMING


def aws_chunked_put(key, url, data, chunk_size=64 * 1024, tamper=False, verify=True):
    """PUT @data as an aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD),
    each chunk signed as the S3 reference defines it, chained from
    botocore's seed signature; @tamper flips a byte of the second chunk
    after signing it."""
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    body_len = sum(len(f"{len(c):x};chunk-signature=") + 64 + 2 + len(c) + 2 for c in chunks)
    request = AWSRequest(method="PUT", url=url, data=b"", headers={
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(body_len)})
    StreamingAuth(Credentials(*key), "s3", REGION).add_auth(request)
    headers = dict(request.headers.items())
    amz_date = headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    signing_key = ("AWS4" + key[1]).encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    previous = headers["Authorization"].rsplit("Signature=", 1)[1]
    body = bytearray()
    for n, chunk in enumerate(chunks):
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                             hashlib.sha256(b"").hexdigest(),
                             hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        if tamper and n == 1:
            chunk = bytes([chunk[0] ^ 1]) + chunk[1:]
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    assert len(body) == body_len
    return requests.put(url, data=bytes(body), headers=headers, timeout=30, verify=verify)


# ---- the listener --------------------------------------------------------


def test_anonymous_request_is_refused_with_s3_xml(s3):
    r = requests.get(s3.s3_url + "/", timeout=10, verify=s3.s3_verify)
    assert r.status_code == 403
    assert r.headers["Content-Type"] == "application/xml"
    doc = ET.fromstring(r.content)
    assert doc.tag == "Error"
    assert doc.findtext("Code") == "AccessDenied"
    assert doc.findtext("Resource") == "/"
    assert doc.findtext("RequestId") == r.headers["x-amz-request-id"]
    # every answer has its own id
    again = requests.get(s3.s3_url + "/some-bucket/a/key", timeout=10, verify=s3.s3_verify)
    assert again.status_code == 403
    assert again.headers["x-amz-request-id"] != r.headers["x-amz-request-id"]
    assert ET.fromstring(again.content).findtext("Resource") == "/some-bucket/a/key"


def test_s3_requests_are_in_the_masters_metrics(s3, alice):
    alice.list_buckets()
    text = requests.get(s3.url + "/metrics", timeout=10, verify=s3.s3_verify).text
    assert 'echofs_http_requests_total{route="*",method="GET",status="200"}' in text


def test_the_rest_api_is_not_served_on_the_s3_port(s3):
    r = requests.get(s3.s3_url + "/api/v1/health", timeout=10, verify=s3.s3_verify)
    assert r.status_code == 403  # an S3 request for bucket "api" (unsigned)
    assert ET.fromstring(r.content).findtext("Code") == "AccessDenied"


def test_bad_signature_is_refused_and_nothing_is_stored(s3, alice):
    alice.create_bucket(Bucket="sig-bucket")
    key_id, _ = access_key(s3, "s3-alice")
    forger = client(s3, (key_id, "not-the-secret-0123456789abcdefghijklmn"))
    assert error_code(forger.put_object, Bucket="sig-bucket", Key="k",
                      Body=b"x") == "SignatureDoesNotMatch"
    assert error_code(forger.list_buckets) == "SignatureDoesNotMatch"
    assert alice.list_objects_v2(Bucket="sig-bucket")["KeyCount"] == 0


def test_a_body_other_than_the_signed_one_is_not_stored(s3, alice):
    alice.create_bucket(Bucket="payload-bucket")
    key = access_key(s3, "s3-alice")
    url = f"{s3.s3_url}/payload-bucket/swapped"
    headers = signed_request(key, "PUT", url, body=b"the signed body")
    r = requests.put(url, data=b"a different body", headers=headers, timeout=10,
                     verify=s3.s3_verify)
    assert r.status_code == 400, r.text
    assert ET.fromstring(r.content).findtext("Code") == "XAmzContentSHA256Mismatch"
    assert error_code(alice.head_object, Bucket="payload-bucket", Key="swapped") == "404"
    # the same request with the body it signed is stored
    r = requests.put(url, data=b"the signed body", headers=headers, timeout=10, verify=s3.s3_verify)
    assert r.status_code == 200, r.text
    got = alice.get_object(Bucket="payload-bucket", Key="swapped")["Body"].read()
    assert got == b"the signed body"
    # and the refused one left no file behind in the owner's file list
    files = s3.user_client("s3-alice").get("/api/v1/files", params={"limit": 1000}).json()
    assert sum(1 for f in files["files"] if f["name"] == "swapped") == 1


def test_a_request_document_other_than_the_signed_one_is_refused(s3, alice):
    """The operations whose body is a document read whole (DeleteObjects,
    CompleteMultipartUpload) check it against the signed SHA-256 too:
    400 XAmzContentSHA256Mismatch, nothing done."""
    alice.create_bucket(Bucket="doc-bucket")
    alice.put_object(Bucket="doc-bucket", Key="keep", Body=b"kept")
    key = access_key(s3, "s3-alice")

    def swapped(url, signed, sent):
        headers = signed_request(key, "POST", url, body=signed)
        r = requests.post(url, data=sent, headers=headers, timeout=10, verify=s3.s3_verify)
        assert r.status_code == 400, r.text
        assert ET.fromstring(r.content).findtext("Code") == "XAmzContentSHA256Mismatch"

    delete = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    swapped(f"{s3.s3_url}/doc-bucket?delete", b"<Delete></Delete>", delete)
    assert alice.get_object(Bucket="doc-bucket", Key="keep")["Body"].read() == b"kept"
    upload_id = alice.create_multipart_upload(Bucket="doc-bucket", Key="mpu")["UploadId"]
    etag = alice.upload_part(Bucket="doc-bucket", Key="mpu", UploadId=upload_id,
                             PartNumber=1, Body=b"one part")["ETag"]
    complete = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>").encode()
    swapped(f"{s3.s3_url}/doc-bucket/mpu?uploadId={upload_id}", b"<x/>", complete)
    assert error_code(alice.head_object, Bucket="doc-bucket", Key="mpu") == "404"
    done = alice.complete_multipart_upload(Bucket="doc-bucket", Key="mpu", UploadId=upload_id,
                                           MultipartUpload={"Parts": [
                                               {"PartNumber": 1, "ETag": etag}]})
    assert done["ETag"].endswith('-1"')


def test_aws_chunked_body_is_decoded_and_every_chunk_verified(s3, alice):
    alice.create_bucket(Bucket="chunked-bucket")
    key = access_key(s3, "s3-alice")
    data = os.urandom(300 * 1024 + 17)
    url = f"{s3.s3_url}/chunked-bucket/streamed.bin"
    r = aws_chunked_put(key, url, data, verify=s3.s3_verify)
    assert r.status_code == 200, r.text
    got = alice.get_object(Bucket="chunked-bucket", Key="streamed.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    assert "ContentEncoding" not in got  # aws-chunked was the transfer's, not the object's
    # a chunk that is not the one signed: refused, and the object is unchanged
    r = aws_chunked_put(key, url, os.urandom(len(data)), tamper=True, verify=s3.s3_verify)
    assert r.status_code == 403, r.text
    assert ET.fromstring(r.content).findtext("Code") == "SignatureDoesNotMatch"
    assert alice.get_object(Bucket="chunked-bucket", Key="streamed.bin")["Body"].read() == data
    r = aws_chunked_put(key, f"{s3.s3_url}/chunked-bucket/never.bin", data, tamper=True,
                        verify=s3.s3_verify)
    assert r.status_code == 403
    assert error_code(alice.head_object, Bucket="chunked-bucket", Key="never.bin") == "404"


def test_virtual_host_addressing_under_s3_domain(s3, alice):
    alice.create_bucket(Bucket="vhost-bucket")
    alice.put_object(Bucket="vhost-bucket", Key="dir/file.txt", Body=b"by host name")
    key = access_key(s3, "s3-alice")
    host = f"vhost-bucket.{S3_DOMAIN}:{s3.s3_port}"
    headers = signed_request(key, "GET", f"http://{host}/dir/file.txt")
    headers["Host"] = host  # sent to 127.0.0.1, named as the bucket's host
    r = requests.get(f"{s3.s3_url}/dir/file.txt", headers=headers, timeout=10,
                     verify=s3.s3_verify)
    assert r.status_code == 200, r.text
    assert r.content == b"by host name"


# ---- buckets -----------------------------------------------------------------


def test_bucket_lifecycle_and_names(s3, alice, bob):
    alice.create_bucket(Bucket="life-bucket")
    assert error_code(alice.create_bucket, Bucket="life-bucket") == "BucketAlreadyOwnedByYou"
    assert error_code(bob.create_bucket, Bucket="life-bucket") == "BucketAlreadyExists"
    names = [b["Name"] for b in alice.list_buckets()["Buckets"]]
    assert "life-bucket" in names and names == sorted(names)
    assert "life-bucket" not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    head = alice.head_bucket(Bucket="life-bucket")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    assert alice.get_bucket_location(Bucket="life-bucket")["LocationConstraint"] is None

    for bad in ["ab", "Upper-Case", "under_score", "-dash-first", "dots..dots",
                "192.168.1.1", "x" * 64, "xn--punycode"]:
        assert error_code(alice.create_bucket, Bucket=bad) == "InvalidBucketName", bad
    assert error_code(alice.create_bucket, Bucket="elsewhere-bucket",
                      CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
                      ) == "IllegalLocationConstraintException"
    alice.create_bucket(Bucket="here-bucket",
                        CreateBucketConfiguration={"LocationConstraint": REGION})
    alice.delete_bucket(Bucket="here-bucket")

    alice.put_object(Bucket="life-bucket", Key="k", Body=b"v")
    assert error_code(alice.delete_bucket, Bucket="life-bucket") == "BucketNotEmpty"
    alice.delete_object(Bucket="life-bucket", Key="k")
    alice.delete_bucket(Bucket="life-bucket")
    assert status_of(alice.head_bucket, Bucket="life-bucket") == 404
    assert error_code(alice.delete_bucket, Bucket="life-bucket") == "NoSuchBucket"
    assert error_code(alice.list_objects_v2, Bucket="life-bucket") == "NoSuchBucket"
    # the name is free again, for anyone
    bob.create_bucket(Bucket="life-bucket")
    bob.delete_bucket(Bucket="life-bucket")


def test_malformed_create_bucket_configuration(s3):
    key = access_key(s3, "s3-alice")
    url = f"{s3.s3_url}/malformed-bucket"
    body = b"<CreateBucketConfiguration><LocationConstraint>us-east-1"
    r = requests.put(url, data=body, headers=signed_request(key, "PUT", url, body), timeout=10,
                     verify=s3.s3_verify)
    assert r.status_code == 400
    assert ET.fromstring(r.content).findtext("Code") == "MalformedXML"


def test_another_users_bucket_is_access_denied(s3, alice, bob):
    alice.create_bucket(Bucket="alice-private")
    alice.put_object(Bucket="alice-private", Key="secret.txt", Body=b"alice's")
    for call, kwargs in [
        (bob.head_bucket, {}),
        (bob.list_objects_v2, {}),
        (bob.list_objects, {}),
        (bob.get_bucket_location, {}),
        (bob.get_object, {"Key": "secret.txt"}),
        (bob.head_object, {"Key": "secret.txt"}),
        (bob.put_object, {"Key": "secret.txt", "Body": b"bob's"}),
        (bob.delete_object, {"Key": "secret.txt"}),
        (bob.delete_bucket, {}),
    ]:
        assert status_of(call, Bucket="alice-private", **kwargs) == 403, call
    assert error_code(bob.get_object, Bucket="alice-private", Key="secret.txt") == "AccessDenied"
    got = alice.get_object(Bucket="alice-private", Key="secret.txt")["Body"].read()
    assert got == b"alice's"


# ---- objects -------------------------------------------------------------------


def test_object_put_get_head_with_headers_and_metadata(s3, alice):
    alice.create_bucket(Bucket="obj-bucket")
    body = b"hello, EchoFS over S3\n" * 100
    put = alice.put_object(
        Bucket="obj-bucket", Key="docs/hello.txt", Body=body, ContentType="text/plain",
        ContentDisposition='attachment; filename="hello.txt"', CacheControl="max-age=60",
        ContentEncoding="identity", Expires="Wed, 21 Oct 2037 07:28:00 GMT",
        Metadata={"Color": "blue", "purpose": "a test & <xml>"})
    etag = '"%s"' % hashlib.md5(body).hexdigest()
    assert put["ETag"] == etag
    got = alice.get_object(Bucket="obj-bucket", Key="docs/hello.txt")
    assert got["Body"].read() == body
    assert got["ETag"] == etag
    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == 'attachment; filename="hello.txt"'
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentEncoding"] == "identity"
    assert got["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 21 Oct 2037 07:28:00 GMT"
    assert got["Metadata"] == {"color": "blue", "purpose": "a test & <xml>"}
    assert got["ContentLength"] == len(body)
    head = alice.head_object(Bucket="obj-bucket", Key="docs/hello.txt")
    assert head["ContentLength"] == len(body) and head["ETag"] == etag
    assert head["Metadata"] == got["Metadata"]
    # default type; an empty object
    alice.put_object(Bucket="obj-bucket", Key="empty", Body=b"")
    empty = alice.get_object(Bucket="obj-bucket", Key="empty")
    assert empty["Body"].read() == b"" and empty["ContentLength"] == 0
    assert empty["ContentType"] == "binary/octet-stream"
    assert empty["ETag"] == '"%s"' % hashlib.md5(b"").hexdigest()


def test_content_md5_is_checked(s3, alice):
    import base64
    alice.create_bucket(Bucket="md5-bucket")
    body = b"checked on arrival"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    alice.put_object(Bucket="md5-bucket", Key="ok", Body=body, ContentMD5=good)
    assert alice.get_object(Bucket="md5-bucket", Key="ok")["Body"].read() == body
    assert error_code(alice.put_object, Bucket="md5-bucket", Key="ok", Body=b"tampered!",
                      ContentMD5=good) == "BadDigest"
    assert error_code(alice.put_object, Bucket="md5-bucket", Key="other", Body=body,
                      ContentMD5=bad) == "BadDigest"
    assert error_code(alice.put_object, Bucket="md5-bucket", Key="other", Body=body,
                      ContentMD5="not base64") == "InvalidDigest"
    # nothing of the refused bodies was stored
    assert alice.get_object(Bucket="md5-bucket", Key="ok")["Body"].read() == body
    assert error_code(alice.head_object, Bucket="md5-bucket", Key="other") == "404"


def test_ranges(s3, alice):
    alice.create_bucket(Bucket="range-bucket")
    body = bytes(range(256)) * 40  # 10240 bytes
    alice.put_object(Bucket="range-bucket", Key="r", Body=body)
    for spec, first, last in [("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199),
                              ("bytes=10000-", 10000, 10239), ("bytes=-40", 10200, 10239),
                              ("bytes=10200-99999", 10200, 10239)]:
        got = alice.get_object(Bucket="range-bucket", Key="r", Range=spec)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, spec
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(body)}", spec
        assert got["Body"].read() == body[first:last + 1], spec
    assert error_code(alice.get_object, Bucket="range-bucket", Key="r",
                      Range="bytes=10240-") == "InvalidRange"
    assert error_code(alice.get_object, Bucket="range-bucket", Key="r",
                      Range="bytes=20000-20010") == "InvalidRange"
    # not a single range: the whole object, as S3
    whole = alice.get_object(Bucket="range-bucket", Key="r", Range="bytes=0-1,5-6")
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert whole["Body"].read() == body


def test_missing_keys_delete_and_overwrite(s3, alice):
    alice.create_bucket(Bucket="life-objects")
    assert error_code(alice.get_object, Bucket="life-objects", Key="nope") == "NoSuchKey"
    assert error_code(alice.head_object, Bucket="life-objects", Key="nope") == "404"
    assert error_code(alice.get_object, Bucket="no-such-bucket-x", Key="k") == "NoSuchBucket"
    assert error_code(alice.put_object, Bucket="no-such-bucket-x", Key="k",
                      Body=b"x") == "NoSuchBucket"
    # delete answers 204 whether or not the key exists
    assert alice.delete_object(Bucket="life-objects", Key="nope")[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    files = s3.user_client("s3-alice")
    alice.put_object(Bucket="life-objects", Key="over/write.bin", Body=b"first version")
    alice.put_object(Bucket="life-objects", Key="over/write.bin", Body=b"second, longer version")
    got = alice.get_object(Bucket="life-objects", Key="over/write.bin")["Body"].read()
    assert got == b"second, longer version"
    named = [f for f in files.get("/api/v1/files", params={"limit": 1000}).json()["files"]
             if f["name"] == "write.bin"]
    assert len(named) == 1 and named[0]["size"] == len(b"second, longer version")
    assert files.download(named[0]["file_id"]) == b"second, longer version"
    alice.delete_object(Bucket="life-objects", Key="over/write.bin")
    assert error_code(alice.get_object, Bucket="life-objects", Key="over/write.bin") == "NoSuchKey"
    files.download(named[0]["file_id"], expect=404)
    # the key limit
    long_key = "k" * 1025
    assert error_code(alice.put_object, Bucket="life-objects", Key=long_key,
                      Body=b"x") == "KeyTooLongError"
    alice.put_object(Bucket="life-objects", Key="k" * 1024, Body=b"x")
    alice.delete_object(Bucket="life-objects", Key="k" * 1024)


def test_readers_see_the_old_or_the_new_object_during_overwrites(s3, alice):
    """Overwrites of a 3-chunk object while other clients read it: every
    read is one version whole, as its ETag says."""
    import concurrent.futures
    import threading
    alice.create_bucket(Bucket="race-bucket")
    versions = [bytes([v]) * (2 * 1024 * 1024 + 1000 * v) for v in range(1, 5)]
    by_md5 = {hashlib.md5(v).hexdigest(): v for v in versions}
    alice.put_object(Bucket="race-bucket", Key="hot", Body=versions[0])
    done = threading.Event()

    def write():
        try:
            for i in range(12):
                alice.put_object(Bucket="race-bucket", Key="hot", Body=versions[i % 4])
        finally:
            done.set()

    def read():
        seen = 0
        while not done.is_set() or seen == 0:
            got = alice.get_object(Bucket="race-bucket", Key="hot")
            body = got["Body"].read()
            etag = got["ETag"].strip('"')
            assert by_md5.get(etag) == body, f"a read of {len(body)} bytes is no version whole"
            seen += 1
        return seen

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        readers = [pool.submit(read) for _ in range(2)]
        pool.submit(write).result()
        assert all(r.result() > 0 for r in readers)
    rest = s3.user_client("s3-alice")
    hot = [f for f in rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
           if f.get("key") == "hot"]
    assert len(hot) == 1  # every replaced version's file is gone


def test_large_object_is_identical_through_s3_and_the_rest_api(s3, alice):
    alice.create_bucket(Bucket="big-bucket")
    data = os.urandom(24 * 1024 * 1024 + 12345)
    sha = hashlib.sha256(data).hexdigest()
    # one PUT (multipart upload is not implemented)
    alice.upload_fileobj(io.BytesIO(data), "big-bucket", "videos/big.bin",
                         Config=TransferConfig(multipart_threshold=1 << 30))
    head = alice.head_object(Bucket="big-bucket", Key="videos/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    got = io.BytesIO()
    alice.download_fileobj("big-bucket", "videos/big.bin", got,
                           Config=TransferConfig(multipart_threshold=1 << 30))
    assert hashlib.sha256(got.getvalue()).hexdigest() == sha
    # a range across chunk boundaries (1 MiB chunks)
    part = alice.get_object(Bucket="big-bucket", Key="videos/big.bin",
                            Range="bytes=1048000-3146000")["Body"].read()
    assert part == data[1048000:3146001]
    # the same bytes are an EchoFS file of the bucket's owner
    rest = s3.user_client("s3-alice")
    files = [f for f in rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
             if f["name"] == "big.bin"]
    assert len(files) == 1
    assert files[0]["sha256"] == sha and files[0]["size"] == len(data)
    assert files[0]["bucket"] == "big-bucket" and files[0]["key"] == "videos/big.bin"
    one = rest.get(f"/api/v1/files/{files[0]['file_id']}").json()
    assert (one["bucket"], one["key"], one["owner"]) == ("big-bucket", "videos/big.bin",
                                                         "s3-alice")
    assert rest.download_sha256(files[0]["file_id"]) == (len(data), sha)
    alice.delete_object(Bucket="big-bucket", Key="videos/big.bin")


# ---- listing ---------------------------------------------------------------------


LIST_KEYS = sorted(["a", "a/b", "a/b/c", "a/d", "b", "b/", "b/x", "photos/2024/1.jpg",
                    "photos/2024/2.jpg", "photos/2025/1.jpg", "Zeta", "zeta", "\u00e9t\u00e9",
                    "caf\u00e9/menu", "x-1", "x_2", "x.3"],
                   key=lambda k: k.encode())


@pytest.fixture(scope="module")
def listed(alice):
    alice.create_bucket(Bucket="list-bucket")
    for key in LIST_KEYS:
        alice.put_object(Bucket="list-bucket", Key=key, Body=key.encode())
    return "list-bucket"


def test_list_v2_in_byte_order_with_pagination(alice, listed):
    everything = alice.list_objects_v2(Bucket=listed)
    assert [c["Key"] for c in everything["Contents"]] == LIST_KEYS
    assert everything["KeyCount"] == len(LIST_KEYS) and not everything["IsTruncated"]
    first = everything["Contents"][0]
    assert first["Size"] == len(first["Key"].encode())
    assert first["ETag"] == '"%s"' % hashlib.md5(first["Key"].encode()).hexdigest()
    for page_size in (1, 3, 7):
        keys, token = [], None
        while True:
            kwargs = {"ContinuationToken": token} if token else {}
            page = alice.list_objects_v2(Bucket=listed, MaxKeys=page_size, **kwargs)
            keys += [c["Key"] for c in page.get("Contents", [])]
            assert page["KeyCount"] <= page_size
            if not page["IsTruncated"]:
                break
            token = page["NextContinuationToken"]
        assert keys == LIST_KEYS, page_size
    after = alice.list_objects_v2(Bucket=listed, StartAfter="b/")
    assert [c["Key"] for c in after["Contents"]] == [k for k in LIST_KEYS if k.encode() > b"b/"]
    paginator = alice.get_paginator("list_objects_v2")
    keys = [c["Key"] for page in paginator.paginate(Bucket=listed, PaginationConfig={"PageSize": 4})
            for c in page.get("Contents", [])]
    assert keys == LIST_KEYS


def test_list_prefix_and_delimiter(alice, listed):
    top = alice.list_objects_v2(Bucket=listed, Delimiter="/")
    assert [c["Key"] for c in top["Contents"]] == [k for k in LIST_KEYS if "/" not in k]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/", "caf\u00e9/", "photos/"]
    photos = alice.list_objects_v2(Bucket=listed, Prefix="photos/", Delimiter="/")
    assert "Contents" not in photos
    assert [p["Prefix"] for p in photos["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    y2024 = alice.list_objects_v2(Bucket=listed, Prefix="photos/2024/")
    assert [c["Key"] for c in y2024["Contents"]] == ["photos/2024/1.jpg", "photos/2024/2.jpg"]
    b = alice.list_objects_v2(Bucket=listed, Prefix="b", Delimiter="/")
    assert [c["Key"] for c in b["Contents"]] == ["b"]
    assert [p["Prefix"] for p in b["CommonPrefixes"]] == ["b/"]
    # prefixes count toward max-keys and are not repeated across pages
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = alice.list_objects_v2(Bucket=listed, Delimiter="/", MaxKeys=2, **kwargs)
        seen += [c["Key"] for c in page.get("Contents", [])]
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    expected = [k for k in LIST_KEYS if "/" not in k] + ["a/", "b/", "caf\u00e9/", "photos/"]
    assert sorted(seen, key=lambda k: k.encode()) == sorted(expected, key=lambda k: k.encode())
    assert len(seen) == len(expected)
    assert alice.list_objects_v2(Bucket=listed, Prefix="nothing-here")["KeyCount"] == 0


def test_a_prefix_is_listed_once_whatever_its_keys_hold(alice):
    """The scan jumps past a common prefix's keys by appending U+10FFFF to
    it; keys that sort after that point are passed over one by one, and
    the prefix is still reported once (and the listing ends)."""
    alice.create_bucket(Bucket="edge-bucket")
    odd = "p/" + "\U0010ffff" * 5 + "x"
    for key in ["p/a", odd, "p/z", "q"]:
        alice.put_object(Bucket="edge-bucket", Key=key, Body=b"x")
    top = alice.list_objects_v2(Bucket="edge-bucket", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["p/"]
    assert [c["Key"] for c in top["Contents"]] == ["q"]
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = alice.list_objects_v2(Bucket="edge-bucket", Delimiter="/", MaxKeys=1, **kwargs)
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        seen += [c["Key"] for c in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == ["p/", "q"]
    assert [c["Key"] for c in alice.list_objects_v2(Bucket="edge-bucket")["Contents"]] == \
        ["p/a", "p/z", odd, "q"]


def test_list_v1_with_marker(alice, listed):
    keys, marker = [], ""
    while True:
        page = alice.list_objects(Bucket=listed, MaxKeys=5, Marker=marker)
        keys += [c["Key"] for c in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        marker = page.get("NextMarker") or page["Contents"][-1]["Key"]
    assert keys == LIST_KEYS
    top = alice.list_objects(Bucket=listed, Delimiter="/", MaxKeys=3)
    assert top["IsTruncated"]
    rest = alice.list_objects(Bucket=listed, Delimiter="/", Marker=top["NextMarker"])
    names = [c["Key"] for c in top.get("Contents", []) + rest.get("Contents", [])] + \
            [p["Prefix"] for p in top.get("CommonPrefixes", []) + rest.get("CommonPrefixes", [])]
    assert len(names) == len(set(names)) == len([k for k in LIST_KEYS if "/" not in k]) + 4


def test_invalid_list_arguments(alice, listed):
    assert error_code(alice.list_objects_v2, Bucket=listed,
                      ContinuationToken="not-a-token") == "InvalidArgument"
    assert status_of(alice.list_objects_v2, Bucket=listed, MaxKeys=-1) == 400


# ---- what is not implemented -----------------------------------------------------


def test_unsupported_operations_answer_not_implemented(alice):
    alice.create_bucket(Bucket="nyi-bucket")
    alice.put_object(Bucket="nyi-bucket", Key="k", Body=b"v")
    for call, kwargs in [
        (alice.get_bucket_acl, {}),
        (alice.get_object_acl, {"Key": "k"}),
        (alice.put_bucket_versioning, {"VersioningConfiguration": {"Status": "Enabled"}}),
        (alice.get_bucket_lifecycle_configuration, {}),
        (alice.get_bucket_policy, {}),
        (alice.get_object, {"Key": "k", "VersionId": "v1"}),
        (alice.put_object, {"Key": "k2", "Body": b"x", "ACL": "public-read"}),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            call(Bucket="nyi-bucket", **kwargs)
        err = info.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 501, (call, kwargs)
        assert err["Error"]["Code"] == "NotImplemented", (call, kwargs)
    # nothing happened
    assert [c["Key"] for c in alice.list_objects_v2(Bucket="nyi-bucket")["Contents"]] == ["k"]


# ---- the aws CLI -----------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(AWS_CLI), reason="Debian's awscli is not installed")
def test_aws_cli_mb_cp_ls_rm_rb(s3, tmp_path):
    key_id, secret = access_key(s3, "s3-carol")
    env = {**h.base_environ(), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "HOME": str(tmp_path)}

    def aws(*args):
        ca = [] if s3.s3_verify is True else ["--ca-bundle", s3.s3_verify]
        out = subprocess.run([AWS_CLI, "--endpoint-url", s3.s3_url, *ca, "s3", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"aws s3 {args}: {out.stdout}\n{out.stderr}"
        return out.stdout

    source = tmp_path / "upload.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    aws("mb", "s3://cli-bucket")
    aws("cp", str(source), "s3://cli-bucket/some/dir/upload.bin")
    listing = aws("ls", "s3://cli-bucket/some/dir/")
    assert "upload.bin" in listing and str(source.stat().st_size) in listing
    back = tmp_path / "back.bin"
    aws("cp", "s3://cli-bucket/some/dir/upload.bin", str(back))
    assert back.read_bytes() == source.read_bytes()
    aws("rm", "s3://cli-bucket/some/dir/upload.bin")
    aws("rb", "s3://cli-bucket")
    assert "cli-bucket" not in aws("ls")


# ---- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("env, says", [
    ({"S3_PORT": "8080", "MASTER_PORT": "8080"}, "S3_PORT (8080) must differ from MASTER_PORT"),
    ({"S3_PORT": "9000", "S3_DOMAIN": "s3.example.com:9000"}, "S3_DOMAIN"),
])
def test_s3_configuration_errors_stop_the_master(tmp_path, env, says):
    out = subprocess.run([str(h.BIN_DIR / "echofs-master")], capture_output=True, text=True,
                         timeout=30, cwd=tmp_path,
                         env={**h.base_environ(), "JWT_SECRET": h.JWT_SECRET,
                              "CLUSTER_SECRET": h.CLUSTER_SECRET,
                              "DATA_DIR": str(tmp_path / "m"), **env})
    assert out.returncode == 2, out.stderr
    assert says in out.stderr


@pytest.mark.requires_workers(reason="counts live workers against REPLICATION_FACTOR")
def test_uploads_are_refused_when_the_workers_cannot_hold_every_replica(cluster):
    """With fewer live workers than REPLICATION_FACTOR, PutObject and
    UploadPart answer 503 SlowDown naming the shortfall before they read
    the body (the chunk backend's `writable`), and nothing is stored."""
    m = start_s3(cluster, workers=2, REPLICATION_FACTOR="3")
    s = client(m, access_key(m, "s3-short"))
    s.create_bucket(Bucket="short")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s.put_object(Bucket="short", Key="k", Body=b"x" * 1000)
    err = info.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503, err
    assert err["Error"]["Code"] == "SlowDown", err
    assert "2 live workers, 3 needed" in err["Error"]["Message"], err
    up = s.create_multipart_upload(Bucket="short", Key="big")["UploadId"]
    assert error_code(s.upload_part, Bucket="short", Key="big", UploadId=up, PartNumber=1,
                      Body=b"y" * 1000) == "SlowDown"
    assert s.list_parts(Bucket="short", Key="big", UploadId=up).get("Parts", []) == []
    assert s.list_objects_v2(Bucket="short").get("KeyCount") == 0
