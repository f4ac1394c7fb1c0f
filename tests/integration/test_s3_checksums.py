"""test_s3_checksums.py - the x-amz-checksum-* newer SDKs send on PutObject
and UploadPart (docs/S3.md#checksums), against a master serving S3 with
workers.

The requests are built here (Debian's botocore does not send trailers by
default): signed with botocore's SigV4 signer, the aws-chunked bodies and
their chunk and trailer signatures computed as the S3 reference defines
them. Covered: a header checksum (CRC32, CRC32C, SHA1, SHA256) good and
bad; boto3's own ChecksumAlgorithm (a header over HTTP; over HTTPS, with
ECHOFS_TEST_TLS, botocore sends a real unsigned trailer); STREAMING-UNSIGNED-PAYLOAD-TRAILER good
and bad; STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER good, with a bad
trailer signature, a missing one, and a bad checksum; UploadPart with a
trailer (good: the part completes; bad: no part recorded); a refused PUT
stores nothing (no object, no file, an older object untouched); an
x-amz-trailer that is not a checksum, and a CRC64NVME, refused; boto3's
multipart upload with ChecksumAlgorithm (Create, UploadPart, Complete);
the checksums stored and returned with x-amz-checksum-mode: ENABLED
(GetObject, HeadObject, boto3 ChecksumMode; FULL_OBJECT, and a multipart
object's COMPOSITE "-N" value; none for a range or one part of several;
each part's in ListParts;
kept by a copy, dropped by an overwrite without one).
"""

import base64
import hashlib
import hmac
import zlib

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3_helpers import REGION, access_key, client, signed_request, start_s3

USER = "s3-sum-alice"
BUCKET = "sums"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"


@pytest.fixture(scope="module")
def s3(shared_cluster):
    return start_s3(shared_cluster, REPLICATION_FACTOR="2")


@pytest.fixture(scope="module")
def key(s3):
    return access_key(s3, USER)


@pytest.fixture(scope="module")
def alice(s3, key):
    c = client(s3, key)
    c.create_bucket(Bucket=BUCKET)
    return c


CRC64NVME_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x9A6C9329AC4BC9B5 if _c & 1 else _c >> 1
    CRC64NVME_TABLE.append(_c)


def crc64nvme(body):
    """CRC-64/NVME (S3's CRC64NVME), by table."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in body:
        crc = CRC64NVME_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


# The catalogue's check value, and a published one (minio/crc64nvme's
# README: "Hello, World!\n" is SoXXbx67KpE=): the reference itself is right.
assert crc64nvme(b"123456789") == 0xAE8B14860A799888
assert base64.b64encode(crc64nvme(b"Hello, World!\n").to_bytes(8, "big")) == b"SoXXbx67KpE="


def checksum(kind, body):
    """x-amz-checksum-<kind> of @body: base64 of the big-endian digest."""
    if kind == "sha256":
        digest = hashlib.sha256(body).digest()
    elif kind == "sha1":
        digest = hashlib.sha1(body).digest()
    elif kind == "crc32":
        digest = zlib.crc32(body).to_bytes(4, "big")
    elif kind == "crc64nvme":
        digest = crc64nvme(body).to_bytes(8, "big")
    else:  # crc32c, bitwise (no library for it in Debian's python3)
        crc = 0xFFFFFFFF
        for byte in body:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        digest = (crc ^ 0xFFFFFFFF).to_bytes(4, "big")
    return base64.b64encode(digest).decode()


class PayloadAuth(S3SigV4Auth):
    """botocore's S3 signer with x-amz-content-sha256 set to @mode."""

    def __init__(self, credentials, mode):
        super().__init__(credentials, "s3", REGION)
        self.mode = mode

    def payload(self, request):
        return self.mode


def url_of(s3, obj, query=""):
    return f"{s3.s3_url}/{BUCKET}/{obj}" + (f"?{query}" if query else "")


def header_put(s3, key, obj, data, headers, query=""):
    """A PUT of @data (signed payload) with @headers."""
    url = url_of(s3, obj, query)
    return requests.put(url, data=data, headers=signed_request(key, "PUT", url, data, headers),
                        timeout=30, verify=s3.s3_verify)


def trailer_put(s3, key, obj, data, kind="crc32", value=None, signed=False, query="",
                chunk_size=64 * 1024, trailer_signature=None, drop_signature=False,
                trailer_name=None):
    """PUT @data as an aws-chunked body ending with the trailer
    x-amz-checksum-<kind>: @value (default: the right one). @signed: every
    chunk and the trailer signed (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER),
    else STREAMING-UNSIGNED-PAYLOAD-TRAILER. @trailer_signature replaces
    the computed x-amz-trailer-signature; @drop_signature leaves it out."""
    name = f"x-amz-checksum-{kind}"
    value = checksum(kind, data) if value is None else value
    url = url_of(s3, obj, query)
    request = AWSRequest(method="PUT", url=url, data=b"", headers={
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": trailer_name or name, "x-amz-sdk-checksum-algorithm": kind.upper()})
    PayloadAuth(Credentials(*key), SIGNED_TRAILER if signed else UNSIGNED_TRAILER).add_auth(
        request)
    headers = dict(request.headers.items())
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    body = bytearray()
    if not signed:
        for chunk in chunks:
            body += f"{len(chunk):x}\r\n".encode() + chunk + (b"\r\n" if chunk else b"")
        body += f"{name}:{value}\r\n\r\n".encode()
    else:
        amz_date = headers["X-Amz-Date"]
        scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
        signing_key = ("AWS4" + key[1]).encode()
        for part in (amz_date[:8], REGION, "s3", "aws4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        previous = headers["Authorization"].rsplit("Signature=", 1)[1]
        for chunk in chunks:
            to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                                 hashlib.sha256(b"").hexdigest(),
                                 hashlib.sha256(chunk).hexdigest()])
            previous = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
            body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk
            body += b"\r\n" if chunk else b""
        to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
                             hashlib.sha256(f"{name}:{value}\n".encode()).hexdigest()])
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        body += f"{name}:{value}\r\n".encode()
        if not drop_signature:
            body += f"x-amz-trailer-signature:{trailer_signature or signature}\r\n".encode()
        body += b"\r\n"
    return requests.put(url, data=bytes(body), headers=headers, timeout=30, verify=s3.s3_verify)


def code_of(r):
    return r.status_code, r.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in r.text else ""


def files_of(s3):
    files = s3.user_client(USER).get("/api/v1/files", params={"limit": 1000}).json()["files"]
    return sorted(f["key"] for f in files if f.get("bucket") == BUCKET)


def absent(s3, alice, obj):
    """@obj is neither an object nor a file."""
    assert alice.list_objects_v2(Bucket=BUCKET, Prefix=obj).get("KeyCount") == 0
    assert obj not in files_of(s3)


DATA = bytes(range(256)) * 700  # 179,200 bytes: three 64 KiB aws chunks


@pytest.mark.parametrize("kind", ["crc32", "crc32c", "sha1", "sha256", "crc64nvme"])
def test_header_checksum_good_and_bad(s3, key, alice, kind):
    value = checksum(kind, DATA)
    r = header_put(s3, key, f"h-{kind}", DATA, {f"x-amz-checksum-{kind}": value})
    assert r.status_code == 200, r.text
    assert r.headers[f"x-amz-checksum-{kind}"] == value
    assert alice.get_object(Bucket=BUCKET, Key=f"h-{kind}")["Body"].read() == DATA

    wrong = checksum(kind, DATA + b"x")
    r = header_put(s3, key, f"h-bad-{kind}", DATA, {f"x-amz-checksum-{kind}": wrong})
    assert code_of(r) == (400, "BadDigest")
    absent(s3, alice, f"h-bad-{kind}")


def test_header_checksum_malformed_or_two_refused(s3, key, alice):
    for headers in ({"x-amz-checksum-crc32": "not base64!"},
                    {"x-amz-checksum-crc32": base64.b64encode(b"12345").decode()},
                    {"x-amz-checksum-crc64nvme": checksum("crc32", DATA)},
                    {"x-amz-checksum-crc32": checksum("crc32", DATA),
                     "x-amz-checksum-sha256": checksum("sha256", DATA)},
                    {"x-amz-checksum-crc32": checksum("crc32", DATA),
                     "x-amz-checksum-crc64nvme": checksum("crc64nvme", DATA)}):
        r = header_put(s3, key, "h-malformed", DATA, headers)
        assert code_of(r) == (400, "InvalidRequest"), headers
    absent(s3, alice, "h-malformed")


def test_boto3_checksum_algorithm(s3, alice):
    # Debian's botocore computes it itself: a header over plain HTTP, an
    # unsigned trailer over HTTPS (ECHOFS_TEST_TLS)
    sent = []
    alice.meta.events.register("before-send.s3.PutObject",
                               lambda request, **_: sent.append(dict(request.headers)))
    for kind in ("CRC32", "SHA256"):
        got = alice.put_object(Bucket=BUCKET, Key="boto", Body=DATA, ChecksumAlgorithm=kind)
        assert got[f"Checksum{kind}"] == checksum(kind.lower(), DATA)
        assert alice.get_object(Bucket=BUCKET, Key="boto")["Body"].read() == DATA
    payload = sent[0]["x-amz-content-sha256"]
    payload = payload.decode() if isinstance(payload, bytes) else payload
    if s3.s3_url.startswith("https:"):
        assert payload == UNSIGNED_TRAILER
    else:
        assert "x-amz-checksum-crc32" in {k.lower() for k in sent[0]}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("kind", ["crc32", "crc32c", "sha256", "crc64nvme"])
def test_trailer_good(s3, key, alice, signed, kind):
    obj = f"t-{kind}-{signed}"
    r = trailer_put(s3, key, obj, DATA, kind=kind, signed=signed)
    assert r.status_code == 200, r.text
    assert r.headers[f"x-amz-checksum-{kind}"] == checksum(kind, DATA)
    assert r.headers["ETag"] == f'"{hashlib.md5(DATA).hexdigest()}"'
    assert alice.get_object(Bucket=BUCKET, Key=obj)["Body"].read() == DATA


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_trailer_empty_body(s3, key, alice, signed):
    r = trailer_put(s3, key, f"empty-{signed}", b"", signed=signed)
    assert r.status_code == 200, r.text
    assert r.headers["x-amz-checksum-crc32"] == "AAAAAA=="
    assert alice.get_object(Bucket=BUCKET, Key=f"empty-{signed}")["Body"].read() == b""


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_trailer_bad_checksum_stores_nothing(s3, key, alice, signed):
    obj = f"t-bad-{signed}"
    r = trailer_put(s3, key, obj, DATA, value=checksum("crc32", DATA[:-1]), signed=signed)
    assert code_of(r) == (400, "BadDigest")
    absent(s3, alice, obj)
    # an overwrite refused leaves the old object as it was
    alice.put_object(Bucket=BUCKET, Key=obj, Body=b"old")
    r = trailer_put(s3, key, obj, DATA, value=checksum("crc32", b"nope"), signed=signed)
    assert code_of(r) == (400, "BadDigest")
    assert alice.get_object(Bucket=BUCKET, Key=obj)["Body"].read() == b"old"


def test_signed_trailer_bad_or_missing_signature(s3, key, alice):
    r = trailer_put(s3, key, "t-badsig", DATA, signed=True, trailer_signature="0" * 64)
    assert code_of(r) == (403, "SignatureDoesNotMatch")
    r = trailer_put(s3, key, "t-badsig", DATA, signed=True, drop_signature=True)
    assert code_of(r) == (403, "SignatureDoesNotMatch")
    absent(s3, alice, "t-badsig")


def test_trailer_that_is_not_a_checksum_is_refused(s3, key, alice):
    r = trailer_put(s3, key, "t-other", DATA, trailer_name="x-amz-meta-foo")
    assert code_of(r) == (400, "InvalidRequest")
    # the trailer sent is not the one declared
    r = trailer_put(s3, key, "t-other", DATA, kind="crc32",
                    trailer_name="x-amz-checksum-sha256")
    assert code_of(r) == (400, "IncompleteBody")
    absent(s3, alice, "t-other")


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_upload_part_with_trailer(s3, key, alice, signed):
    obj = f"mpu-{signed}"
    upload = alice.create_multipart_upload(Bucket=BUCKET, Key=obj)["UploadId"]
    query = f"partNumber=1&uploadId={upload}"
    bad = trailer_put(s3, key, obj, DATA, value=checksum("crc32", b"x"), signed=signed,
                      query=query)
    assert code_of(bad) == (400, "BadDigest")
    assert alice.list_parts(Bucket=BUCKET, Key=obj, UploadId=upload).get("Parts", []) == []

    r = trailer_put(s3, key, obj, DATA, signed=signed, query=query)
    assert r.status_code == 200, r.text
    assert r.headers["x-amz-checksum-crc32"] == checksum("crc32", DATA)
    parts = alice.list_parts(Bucket=BUCKET, Key=obj, UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(DATA))]
    alice.complete_multipart_upload(
        Bucket=BUCKET, Key=obj, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r.headers["ETag"]}]})
    assert alice.get_object(Bucket=BUCKET, Key=obj)["Body"].read() == DATA


def test_upload_part_header_checksum(s3, key, alice):
    obj = "mpu-header"
    upload = alice.create_multipart_upload(Bucket=BUCKET, Key=obj)["UploadId"]
    query = f"partNumber=1&uploadId={upload}"
    r = header_put(s3, key, obj, DATA, {"x-amz-checksum-sha256": checksum("sha256", b"")},
                   query=query)
    assert code_of(r) == (400, "BadDigest")
    assert alice.list_parts(Bucket=BUCKET, Key=obj, UploadId=upload).get("Parts", []) == []
    r = header_put(s3, key, obj, DATA, {"x-amz-checksum-sha256": checksum("sha256", DATA)},
                   query=query)
    assert r.status_code == 200, r.text
    alice.abort_multipart_upload(Bucket=BUCKET, Key=obj, UploadId=upload)


def test_boto3_multipart_with_checksum_algorithm(s3, alice):
    # what newer SDKs' managed transfers send: the algorithm on Create, a
    # checksum on each UploadPart (header over HTTP, trailer over HTTPS),
    # the parts' checksums in Complete (accepted; the object's composite
    # checksum comes from the parts' stored ones)
    obj = "boto-mpu"
    upload = alice.create_multipart_upload(Bucket=BUCKET, Key=obj,
                                           ChecksumAlgorithm="CRC32")["UploadId"]
    part = alice.upload_part(Bucket=BUCKET, Key=obj, UploadId=upload, PartNumber=1, Body=DATA,
                             ChecksumAlgorithm="CRC32")
    assert part["ChecksumCRC32"] == checksum("crc32", DATA)
    alice.complete_multipart_upload(
        Bucket=BUCKET, Key=obj, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"],
                                    "ChecksumCRC32": part["ChecksumCRC32"]}]})
    assert alice.get_object(Bucket=BUCKET, Key=obj)["Body"].read() == DATA
    head = alice.head_object(Bucket=BUCKET, Key=obj, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == composite("crc32", [checksum("crc32", DATA)])


def returned_checksums(c, obj, **kwargs):
    """The x-amz-checksum-* headers GetObject and HeadObject answer with
    x-amz-checksum-mode: ENABLED (the same for both; botocore checks a
    full-object one against the body it reads)."""
    seen = []
    for call in (c.get_object, c.head_object):
        r = call(Bucket=BUCKET, Key=obj, ChecksumMode="ENABLED", **kwargs)
        if "Body" in r:
            r["Body"].read()
        seen.append({k: v for k, v in r["ResponseMetadata"]["HTTPHeaders"].items()
                     if k.startswith("x-amz-checksum-")})
    assert seen[0] == seen[1]
    return seen[0]


@pytest.mark.parametrize("kind", ["crc32", "crc32c", "sha1", "sha256", "crc64nvme"])
def test_a_stored_checksum_is_returned_with_checksum_mode(s3, key, alice, kind):
    obj = f"kept-{kind}"
    value = checksum(kind, DATA)
    r = header_put(s3, key, obj, DATA, {f"x-amz-checksum-{kind}": value})
    assert r.status_code == 200, r.text
    assert returned_checksums(alice, obj) == {f"x-amz-checksum-{kind}": value,
                                              "x-amz-checksum-type": "FULL_OBJECT"}
    # part 1 of a single PUT is the whole object: returned too
    assert returned_checksums(alice, obj, PartNumber=1)[f"x-amz-checksum-{kind}"] == value
    # not without the mode, nor for a range
    plain = alice.get_object(Bucket=BUCKET, Key=obj)
    assert plain["Body"].read() == DATA
    assert not [k for k in plain["ResponseMetadata"]["HTTPHeaders"]
                if k.startswith("x-amz-checksum")]
    assert returned_checksums(alice, obj, Range="bytes=0-9") == {}
    # a copy has the same bytes and keeps it; an overwrite without one drops it
    alice.copy_object(Bucket=BUCKET, Key=obj + "-copy", CopySource=f"{BUCKET}/{obj}")
    assert returned_checksums(alice, obj + "-copy")[f"x-amz-checksum-{kind}"] == value
    alice.put_object(Bucket=BUCKET, Key=obj, Body=b"new")
    assert returned_checksums(alice, obj) == {}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_trailer_checksum_is_stored(s3, key, alice, signed):
    obj = f"kept-trailer-{signed}"
    r = trailer_put(s3, key, obj, DATA, kind="crc32c", signed=signed)
    assert r.status_code == 200, r.text
    assert returned_checksums(alice, obj)["x-amz-checksum-crc32c"] == checksum("crc32c", DATA)


def test_boto3_reads_the_stored_checksum(s3, alice):
    alice.put_object(Bucket=BUCKET, Key="kept-boto", Body=DATA, ChecksumAlgorithm="SHA256")
    got = alice.get_object(Bucket=BUCKET, Key="kept-boto", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == checksum("sha256", DATA)
    assert got["Body"].read() == DATA
    head = alice.head_object(Bucket=BUCKET, Key="kept-boto", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == checksum("sha256", DATA)


def composite(kind, values):
    """S3's composite checksum of parts with checksums @values (base64)."""
    joined = b"".join(base64.b64decode(v) for v in values)
    digest = base64.b64decode(checksum(kind, joined))
    return base64.b64encode(digest).decode() + f"-{len(values)}"


def test_a_multipart_object_has_the_composite_checksum(s3, key, alice):
    first = bytes(range(256)) * (5 * 4096)  # 5 MiB: a part but the last
    parts = []
    for kind in ("crc32", "sha256"):
        obj = f"kept-mpu-{kind}"
        upload = alice.create_multipart_upload(Bucket=BUCKET, Key=obj)["UploadId"]
        values = []
        for n, body in enumerate([first, DATA], 1):
            value = checksum(kind, body)
            r = header_put(s3, key, obj, body, {f"x-amz-checksum-{kind}": value},
                           query=f"partNumber={n}&uploadId={upload}")
            assert r.status_code == 200, r.text
            parts.append({"PartNumber": n, "ETag": r.headers["ETag"]})
            values.append(value)
        # ListParts shows each part's
        listed = alice.list_parts(Bucket=BUCKET, Key=obj, UploadId=upload)["Parts"]
        assert [p.get(f"Checksum{kind.upper()}") for p in listed] == values
        done = alice.complete_multipart_upload(Bucket=BUCKET, Key=obj, UploadId=upload,
                                               MultipartUpload={"Parts": parts[-2:]})
        assert done[f"Checksum{kind.upper()}"] == composite(kind, values)
        assert returned_checksums(alice, obj) == {
            f"x-amz-checksum-{kind}": composite(kind, values),
            "x-amz-checksum-type": "COMPOSITE"}
        # one part of several: no checksum (the object's is not the part's)
        assert returned_checksums(alice, obj, PartNumber=2) == {}
    # CRC64NVME parts: S3 combines them into a full-object CRC, not a
    # composite; not done here, so the object has none (docs/S3.md)
    obj = "kept-mpu-crc64nvme"
    upload = alice.create_multipart_upload(Bucket=BUCKET, Key=obj)["UploadId"]
    listed = []
    for n, body in enumerate([first, DATA], 1):
        r = header_put(s3, key, obj, body,
                       {"x-amz-checksum-crc64nvme": checksum("crc64nvme", body)},
                       query=f"partNumber={n}&uploadId={upload}")
        assert r.status_code == 200, r.text
        listed.append({"PartNumber": n, "ETag": r.headers["ETag"]})
    alice.complete_multipart_upload(Bucket=BUCKET, Key=obj, UploadId=upload,
                                    MultipartUpload={"Parts": listed})
    assert returned_checksums(alice, obj) == {}
    # a part without a checksum: the object has none
    obj = "kept-mpu-mixed"
    upload = alice.create_multipart_upload(Bucket=BUCKET, Key=obj)["UploadId"]
    r = header_put(s3, key, obj, first, {"x-amz-checksum-crc32": checksum("crc32", first)},
                   query=f"partNumber=1&uploadId={upload}")
    assert r.status_code == 200, r.text
    last = alice.upload_part(Bucket=BUCKET, Key=obj, UploadId=upload, PartNumber=2, Body=DATA)
    listed = alice.list_parts(Bucket=BUCKET, Key=obj, UploadId=upload)["Parts"]
    assert [p.get("ChecksumCRC32") for p in listed] == [checksum("crc32", first), None]
    alice.complete_multipart_upload(Bucket=BUCKET, Key=obj, UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r.headers["ETag"]},
                  {"PartNumber": 2, "ETag": last["ETag"]}]})
    assert returned_checksums(alice, obj) == {}
