"""test_s3_conditional.py - S3 conditional requests (docs/S3.md) with boto3
against a master serving S3 on S3_PORT, with workers.

Covered: GetObject/HeadObject with If-Match, If-None-Match,
If-Modified-Since, If-Unmodified-Since (412 PreconditionFailed, 304 Not
Modified without a body, the precedence of the ETag conditions over the
date ones, quoted/unquoted/list/`*` entity tags, invalid dates ignored,
a missing key still 404); PutObject with If-None-Match: * (create only
if absent; eight racing PUTs of one key: exactly one 200, the others 412,
their files released), If-Match (replace only that ETag; 404 NoSuchKey
when absent) and If-Unmodified-Since (412 when modified after; If-Match
decides alone; If-Modified-Since 501); DeleteObjects (verbose and Quiet,
absent keys deleted, files released, Content-MD5 or an
x-amz-checksum-crc32/-crc32c/-sha256 required and each checked, MalformedXML, at most
1000 keys, KeyTooLongError per key, VersionId 501, the body capped,
another user's bucket AccessDenied).
"""

import base64
import email.utils
import hashlib
import threading
import time
import zlib

import boto3
import botocore
import pytest
import requests
from botocore.config import Config

import echofs_harness as h

REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3(shared_cluster):
    port = h.free_port()
    master = shared_cluster.start(workers=2, master_env={"S3_PORT": str(port), "REPLICATION_FACTOR": "2"})
    master.s3_url = f"{shared_cluster.scheme}://127.0.0.1:{port}"
    master.s3_verify = str(shared_cluster.tls.ca) if shared_cluster.tls else True
    return master


USER = "s3-cond-alice"


@pytest.fixture(scope="module")
def alice_key(s3):
    r = s3.user_client(USER).post("/api/v1/keys")
    assert r.status_code == 201, r.text
    return r.json()


def new_client(s3, body, headers=None):
    """A boto3 client of the key @body; @headers added to every PutObject
    (this boto3 has no IfNoneMatch/IfMatch parameters on PutObject)."""
    c = boto3.client(
        "s3", endpoint_url=s3.s3_url, region_name=REGION,
        aws_access_key_id=body["access_key_id"],
        aws_secret_access_key=body["secret_access_key"], verify=s3.s3_verify,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      signature_version="s3v4"))
    if headers:
        def add(request, **_):
            for name, value in headers.items():
                request.headers[name] = value
        c.meta.events.register("before-sign.s3.PutObject", add)
    return c


@pytest.fixture(scope="module")
def alice(s3, alice_key):
    return new_client(s3, alice_key)


def failure(call, **kwargs):
    """(status, code) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(**kwargs)
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def http_date(seconds):
    return email.utils.formatdate(seconds, usegmt=True)


@pytest.fixture(scope="module")
def obj(alice):
    """A stored object: (bucket, key, quoted etag, last modified seconds)."""
    alice.create_bucket(Bucket="cond")
    alice.put_object(Bucket="cond", Key="k", Body=b"conditional body")
    head = alice.head_object(Bucket="cond", Key="k")
    return "cond", "k", head["ETag"], int(head["LastModified"].timestamp())


def test_if_match(alice, obj):
    bucket, key, etag, _ = obj
    for good in [etag, etag.strip('"'), "*", f'"0123", {etag}', f"W/{etag}"]:
        assert alice.get_object(Bucket=bucket, Key=key, IfMatch=good)["Body"].read() == \
            b"conditional body", good
        assert alice.head_object(Bucket=bucket, Key=key, IfMatch=good)["ETag"] == etag
    assert failure(alice.get_object, Bucket=bucket, Key=key, IfMatch='"0123"') == \
        (412, "PreconditionFailed")
    # HEAD answers have no body: botocore sees the status alone
    assert failure(alice.head_object, Bucket=bucket, Key=key, IfMatch='"0123"')[0] == 412
    # a missing key is 404 whatever the condition
    assert failure(alice.get_object, Bucket=bucket, Key="nope", IfMatch="*") == \
        (404, "NoSuchKey")


def test_if_none_match(s3, alice, obj):
    bucket, key, etag, modified = obj
    for same in [etag, etag.strip('"'), "*", f'"0123",{etag}']:
        assert failure(alice.get_object, Bucket=bucket, Key=key, IfNoneMatch=same)[0] == 304
        assert failure(alice.head_object, Bucket=bucket, Key=key, IfNoneMatch=same)[0] == 304
    got = alice.get_object(Bucket=bucket, Key=key, IfNoneMatch='"0123"')
    assert got["Body"].read() == b"conditional body"


def test_304_carries_the_validators_and_no_body(s3, alice, obj):
    bucket, key, etag, modified = obj
    url = f"{s3.s3_url}/{bucket}/{key}"
    request = botocore.awsrequest.AWSRequest(method="GET", url=url,
                                             headers={"If-None-Match": etag})
    request.headers["x-amz-content-sha256"] = botocore.auth.EMPTY_SHA256_HASH
    creds = alice._request_signer._credentials
    botocore.auth.S3SigV4Auth(creds, "s3", REGION).add_auth(request)
    r = requests.get(url, headers=dict(request.headers.items()), verify=s3.s3_verify)
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["ETag"] == etag
    assert r.headers["Last-Modified"] == http_date(modified)


def test_dates(alice, obj):
    bucket, key, etag, modified = obj
    before, after = http_date(modified - 60), http_date(modified)
    # If-Modified-Since: modified after the date -> 200, else 304
    assert alice.get_object(Bucket=bucket, Key=key, IfModifiedSince=before)["ETag"] == etag
    assert failure(alice.get_object, Bucket=bucket, Key=key, IfModifiedSince=after)[0] == 304
    assert failure(alice.head_object, Bucket=bucket, Key=key, IfModifiedSince=after)[0] == 304
    # If-Unmodified-Since: modified after the date -> 412, else 200
    assert failure(alice.get_object, Bucket=bucket, Key=key, IfUnmodifiedSince=before) == \
        (412, "PreconditionFailed")
    assert failure(alice.head_object, Bucket=bucket, Key=key, IfUnmodifiedSince=before)[0] == 412
    assert alice.get_object(Bucket=bucket, Key=key, IfUnmodifiedSince=after)["ETag"] == etag


def test_precedence(alice, obj):
    bucket, key, etag, modified = obj
    before, after = http_date(modified - 60), http_date(modified)
    # If-Match true wins over If-Unmodified-Since false
    assert alice.get_object(Bucket=bucket, Key=key, IfMatch=etag,
                            IfUnmodifiedSince=before)["ETag"] == etag
    # If-Match false fails even when If-Unmodified-Since holds
    assert failure(alice.get_object, Bucket=bucket, Key=key, IfMatch='"0123"',
                   IfUnmodifiedSince=after) == (412, "PreconditionFailed")
    # If-None-Match false (the ETag matches) wins over If-Modified-Since
    # true: 304 (S3's documented case)
    assert failure(alice.get_object, Bucket=bucket, Key=key, IfNoneMatch=etag,
                   IfModifiedSince=before)[0] == 304
    # If-None-Match true: If-Modified-Since (false) is not looked at
    assert alice.get_object(Bucket=bucket, Key=key, IfNoneMatch='"0123"',
                            IfModifiedSince=after)["ETag"] == etag
    # a 412 condition is decided before a 304 one
    assert failure(alice.get_object, Bucket=bucket, Key=key, IfMatch='"0123"',
                   IfNoneMatch=etag) == (412, "PreconditionFailed")


def test_unusable_dates_are_ignored(s3, alice, obj):
    bucket, key, etag, _ = obj
    future = http_date(time.time() + 3600)
    assert alice.get_object(Bucket=bucket, Key=key, IfModifiedSince=future)["ETag"] == etag
    url = f"{s3.s3_url}/{bucket}/{key}"
    for header in ["If-Modified-Since", "If-Unmodified-Since"]:
        request = botocore.awsrequest.AWSRequest(method="GET", url=url,
                                                 headers={header: "not a date"})
        request.headers["x-amz-content-sha256"] = botocore.auth.EMPTY_SHA256_HASH
        botocore.auth.S3SigV4Auth(alice._request_signer._credentials, "s3",
                                  REGION).add_auth(request)
        r = requests.get(url, headers=dict(request.headers.items()), verify=s3.s3_verify)
        assert r.status_code == 200, (header, r.text)
        assert r.content == b"conditional body"


# ---- PutObject -------------------------------------------------------------------------


def files_of(s3, bucket):
    """The user's EchoFS files of @bucket, as (key, sha256)."""
    files = s3.user_client(USER).get("/api/v1/files", params={"limit": 1000}).json()["files"]
    return sorted((f["key"], f["sha256"]) for f in files if f.get("bucket") == bucket)


def test_put_if_none_match_creates_only_if_absent(s3, alice, alice_key):
    alice.create_bucket(Bucket="create-once")
    once = new_client(s3, alice_key, {"If-None-Match": "*"})
    assert once.put_object(Bucket="create-once", Key="k", Body=b"first")["ETag"]
    assert failure(once.put_object, Bucket="create-once", Key="k", Body=b"second") == \
        (412, "PreconditionFailed")
    assert alice.get_object(Bucket="create-once", Key="k")["Body"].read() == b"first"
    # after a delete the key is absent again
    alice.delete_object(Bucket="create-once", Key="k")
    once.put_object(Bucket="create-once", Key="k", Body=b"third")
    assert alice.get_object(Bucket="create-once", Key="k")["Body"].read() == b"third"
    # only * is S3's If-None-Match on PUT
    other = new_client(s3, alice_key, {"If-None-Match": '"0123"'})
    assert failure(other.put_object, Bucket="create-once", Key="k2", Body=b"x") == \
        (501, "NotImplemented")
    assert [k for k, _ in files_of(s3, "create-once")] == ["k"]


def test_racing_creates_one_wins_and_no_file_leaks(s3, alice, alice_key):
    alice.create_bucket(Bucket="race")
    racers = 8
    clients = [new_client(s3, alice_key, {"If-None-Match": "*"}) for _ in range(racers)]
    bodies = [f"racer {i} ".encode() * 20000 for i in range(racers)]  # ~180 KiB each
    start = threading.Barrier(racers)
    results = [None] * racers

    def put(i):
        start.wait()
        try:
            clients[i].put_object(Bucket="race", Key="k", Body=bodies[i])
            results[i] = 200
        except botocore.exceptions.ClientError as e:
            results[i] = (e.response["ResponseMetadata"]["HTTPStatusCode"],
                          e.response["Error"]["Code"])
        except Exception as e:  # noqa: BLE001 - reported in the assertion
            results[i] = repr(e)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if r == 200]
    assert len(winners) == 1, results
    assert all(r == (412, "PreconditionFailed") for i, r in enumerate(results)
               if i not in winners), results
    assert alice.get_object(Bucket="race", Key="k")["Body"].read() == bodies[winners[0]]
    # the losers' files were deleted: the bucket's one object is the one file
    assert files_of(s3, "race") == [("k", hashlib.sha256(bodies[winners[0]]).hexdigest())]


def test_put_if_match_replaces_only_that_etag(s3, alice, alice_key):
    alice.create_bucket(Bucket="replace")
    etag = alice.put_object(Bucket="replace", Key="k", Body=b"v1")["ETag"]
    for quoted in [True, False]:  # the ETag as S3 sends it, and unquoted
        value = etag if quoted else etag.strip('"')
        etag = new_client(s3, alice_key, {"If-Match": value}).put_object(
            Bucket="replace", Key="k", Body=value.encode())["ETag"]
        assert alice.get_object(Bucket="replace", Key="k")["Body"].read() == value.encode()
    stale = new_client(s3, alice_key, {"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert failure(stale.put_object, Bucket="replace", Key="k", Body=b"lost") == \
        (412, "PreconditionFailed")
    any_object = new_client(s3, alice_key, {"If-Match": "*"})
    any_object.put_object(Bucket="replace", Key="k", Body=b"any")
    assert failure(any_object.put_object, Bucket="replace", Key="absent", Body=b"x") == \
        (404, "NoSuchKey")
    listed = new_client(s3, alice_key, {"If-Match": f'{etag}, "0123"'})
    assert failure(listed.put_object, Bucket="replace", Key="k", Body=b"x") == \
        (400, "InvalidArgument")
    assert alice.get_object(Bucket="replace", Key="k")["Body"].read() == b"any"
    # every refused body's file is gone
    assert [k for k, _ in files_of(s3, "replace")] == ["k"]


def test_put_if_unmodified_since(s3, alice, alice_key):
    alice.create_bucket(Bucket="put-dates")
    alice.put_object(Bucket="put-dates", Key="k", Body=b"v1")
    head = alice.head_object(Bucket="put-dates", Key="k")
    modified = int(head["LastModified"].timestamp())

    def putter(headers):
        return new_client(s3, alice_key, headers)

    # modified after the date: 412, the object stays
    assert failure(putter({"If-Unmodified-Since": http_date(modified - 60)}).put_object,
                   Bucket="put-dates", Key="k", Body=b"lost") == (412, "PreconditionFailed")
    assert alice.get_object(Bucket="put-dates", Key="k")["Body"].read() == b"v1"
    # not modified since: replaced
    putter({"If-Unmodified-Since": http_date(modified)}).put_object(
        Bucket="put-dates", Key="k", Body=b"v2")
    assert alice.get_object(Bucket="put-dates", Key="k")["Body"].read() == b"v2"
    # If-Match decides alone when both are given (RFC 7232 3.4)
    etag = alice.head_object(Bucket="put-dates", Key="k")["ETag"]
    putter({"If-Match": etag, "If-Unmodified-Since": http_date(modified - 60)}).put_object(
        Bucket="put-dates", Key="k", Body=b"v3")
    assert alice.get_object(Bucket="put-dates", Key="k")["Body"].read() == b"v3"
    # no object, or a date that does not parse: nothing to hold, stored
    putter({"If-Unmodified-Since": http_date(modified - 60)}).put_object(
        Bucket="put-dates", Key="new", Body=b"n")
    putter({"If-Unmodified-Since": "yesterday"}).put_object(
        Bucket="put-dates", Key="k", Body=b"v4")
    assert alice.get_object(Bucket="put-dates", Key="k")["Body"].read() == b"v4"
    # If-Modified-Since means nothing for a write (RFC 7232 3.3): refused
    assert failure(putter({"If-Modified-Since": http_date(modified)}).put_object,
                   Bucket="put-dates", Key="k", Body=b"x") == (501, "NotImplemented")
    assert alice.get_object(Bucket="put-dates", Key="k")["Body"].read() == b"v4"
    assert [k for k, _ in files_of(s3, "put-dates")] == ["k", "new"]


# ---- DeleteObjects ----------------------------------------------------------------------


def raw_delete(s3, body_key, bucket, body, md5=True, extra=None):
    """POST /bucket?delete with @body signed by @body_key; Content-MD5 right
    (True), absent (False) or as given (a string)."""
    url = f"{s3.s3_url}/{bucket}?delete"
    headers = dict(extra or {})
    if md5 is True:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    elif md5:
        headers["Content-MD5"] = md5
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body, headers=headers)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    creds = botocore.credentials.Credentials(body_key["access_key_id"],
                                             body_key["secret_access_key"])
    botocore.auth.S3SigV4Auth(creds, "s3", REGION).add_auth(request)
    return requests.post(url, data=body, headers=dict(request.headers.items()),
                         verify=s3.s3_verify)


def checksum(kind, body):
    """x-amz-checksum-<kind> of @body as S3 encodes it (base64 of the
    big-endian digest)."""
    if kind == "sha256":
        digest = hashlib.sha256(body).digest()
    elif kind == "crc32":
        digest = zlib.crc32(body).to_bytes(4, "big")
    else:  # crc32c, bitwise (no library for it in Debian's python3)
        crc = 0xFFFFFFFF
        for byte in body:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        digest = (crc ^ 0xFFFFFFFF).to_bytes(4, "big")
    return base64.b64encode(digest).decode()


def s3_code(r):
    return r.status_code, r.text.split("<Code>")[1].split("</Code>")[0]


def delete_xml(keys, quiet=None, extra=""):
    from xml.sax.saxutils import escape
    q = f"<Quiet>{quiet}</Quiet>" if quiet is not None else ""
    objects = "".join(f"<Object><Key>{escape(k)}</Key>{extra}</Object>" for k in keys)
    return f'<?xml version="1.0" encoding="UTF-8"?><Delete>{q}{objects}</Delete>'.encode()


def test_delete_objects_verbose_and_quiet(s3, alice):
    alice.create_bucket(Bucket="batch")
    keys = ["a", "b/c", "d & <e>", "\u00e9t\u00e9"]
    for k in keys:
        alice.put_object(Bucket="batch", Key=k, Body=k.encode())
    got = alice.delete_objects(Bucket="batch", Delete={
        "Objects": [{"Key": k} for k in keys[:3]] + [{"Key": "absent"}]})
    assert sorted(d["Key"] for d in got["Deleted"]) == sorted(keys[:3] + ["absent"])
    assert "Errors" not in got
    assert [c["Key"] for c in alice.list_objects_v2(Bucket="batch")["Contents"]] == [keys[3]]
    assert [k for k, _ in files_of(s3, "batch")] == [keys[3]]
    got = alice.delete_objects(Bucket="batch", Delete={"Objects": [{"Key": keys[3]}],
                                                       "Quiet": True})
    assert "Deleted" not in got and "Errors" not in got
    assert "Contents" not in alice.list_objects_v2(Bucket="batch")
    assert files_of(s3, "batch") == []


def test_delete_objects_thousand_keys(s3, alice, alice_key):
    alice.create_bucket(Bucket="batch-max")
    alice.put_object(Bucket="batch-max", Key="k-0", Body=b"x")
    keys = [f"k-{i}" for i in range(1000)]
    got = alice.delete_objects(Bucket="batch-max", Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(got["Deleted"]) == 1000
    assert "Contents" not in alice.list_objects_v2(Bucket="batch-max")
    r = raw_delete(s3, alice_key, "batch-max", delete_xml(keys + ["one more"]))
    assert s3_code(r) == (400, "MalformedXML")


def test_delete_objects_errors(s3, alice, alice_key):
    alice.create_bucket(Bucket="batch-bad")
    alice.put_object(Bucket="batch-bad", Key="k", Body=b"x")
    good = delete_xml(["k"])
    assert s3_code(raw_delete(s3, alice_key, "batch-bad", good, md5=False)) == \
        (400, "InvalidRequest")
    assert s3_code(raw_delete(s3, alice_key, "batch-bad", good, md5="not md5")) == \
        (400, "InvalidDigest")
    other = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert s3_code(raw_delete(s3, alice_key, "batch-bad", good, md5=other)) == \
        (400, "BadDigest")
    for bad in [b"", b"<Delete>", b"not xml", b"<Remove><Object><Key>k</Key></Object></Remove>",
                b"<Delete></Delete>", b"<Delete><Object></Object></Delete>",
                b"<Delete><Object><Key></Key></Object></Delete>",
                b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
                b"<Delete><Object><Key>k</Key><Key>k2</Key></Object></Delete>",
                b"<Delete><Other/><Object><Key>k</Key></Object></Delete>"]:
        assert s3_code(raw_delete(s3, alice_key, "batch-bad", bad)) == \
            (400, "MalformedXML"), bad
    assert s3_code(raw_delete(s3, alice_key, "batch-bad", delete_xml(
        ["k"], extra="<VersionId>v1</VersionId>"))) == (501, "NotImplemented")
    big = b"<Delete>" + b" " * (3 * 1024 * 1024) + b"</Delete>"
    assert s3_code(raw_delete(s3, alice_key, "batch-bad", big)) == \
        (400, "MaxMessageLengthExceeded")
    # nothing above deleted anything
    assert [c["Key"] for c in alice.list_objects_v2(Bucket="batch-bad")["Contents"]] == ["k"]
    # a key too long is that key's <Error>; the others are deleted
    got = alice.delete_objects(Bucket="batch-bad", Delete={
        "Objects": [{"Key": "x" * 1025}, {"Key": "k"}]})
    assert [d["Key"] for d in got["Deleted"]] == ["k"]
    assert [(e["Key"], e["Code"]) for e in got["Errors"]] == [("x" * 1025, "KeyTooLongError")]
    assert failure(alice.delete_objects, Bucket="batch-nope",
                   Delete={"Objects": [{"Key": "k"}]}) == (404, "NoSuchBucket")


def test_delete_objects_in_another_users_bucket_is_denied(s3, alice):
    alice.create_bucket(Bucket="batch-mine")
    alice.put_object(Bucket="batch-mine", Key="k", Body=b"x")
    r = s3.user_client("s3-cond-bob").post("/api/v1/keys")
    bob = new_client(s3, r.json())
    assert failure(bob.delete_objects, Bucket="batch-mine",
                   Delete={"Objects": [{"Key": "k"}]}) == (403, "AccessDenied")
    assert [c["Key"] for c in alice.list_objects_v2(Bucket="batch-mine")["Contents"]] == ["k"]


@pytest.mark.parametrize("kind", ["crc32", "crc32c", "sha256"])
def test_delete_objects_takes_a_checksum_instead_of_content_md5(s3, alice, alice_key, kind):
    bucket = f"batch-{kind}"
    alice.create_bucket(Bucket=bucket)
    for k in ["a", "b"]:
        alice.put_object(Bucket=bucket, Key=k, Body=b"x")
    header = f"x-amz-checksum-{kind}"
    body = delete_xml(["a"])
    # a wrong one, one that is not base64 of the right length: nothing deleted
    wrong = checksum(kind, b"another body")
    assert s3_code(raw_delete(s3, alice_key, bucket, body, md5=False,
                              extra={header: wrong})) == (400, "BadDigest")
    assert s3_code(raw_delete(s3, alice_key, bucket, body, md5=False,
                              extra={header: "AAAA"})) == (400, "InvalidRequest")
    # with Content-MD5 too, each is checked
    assert s3_code(raw_delete(s3, alice_key, bucket, body, md5=True,
                              extra={header: wrong})) == (400, "BadDigest")
    assert [c["Key"] for c in alice.list_objects_v2(Bucket=bucket)["Contents"]] == ["a", "b"]
    r = raw_delete(s3, alice_key, bucket, body, md5=False, extra={header: checksum(kind, body)})
    assert r.status_code == 200, r.text
    assert "<Deleted><Key>a</Key></Deleted>" in r.text
    assert [c["Key"] for c in alice.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]
    # what newer SDKs send: the algorithm named too, no Content-MD5
    body = delete_xml(["b"])
    r = raw_delete(s3, alice_key, bucket, body, md5=False,
                   extra={header: checksum(kind, body),
                          "x-amz-sdk-checksum-algorithm": kind.upper()})
    assert r.status_code == 200, r.text
    assert "Contents" not in alice.list_objects_v2(Bucket=bucket)
