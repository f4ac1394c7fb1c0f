"""test_s3_multipart_rechunk.py - multipart parts of any size complete
(docs/S3.md, "Chunk alignment"): parts that are not a whole number of the
server's chunks (5 MiB + 1 byte with CHUNK_SIZE 1 MiB; parts stored
before a CHUNK_SIZE change) are copied once into new chunks at Complete,
with boto3 against a master serving S3, with a worker.

Covered: the object reads back byte-identical whole, in ranges across the
parts' boundaries and the new chunks', per part (?partNumber=1..3: the
part layout is the listed parts'), and through the REST API with its
SHA-256; the ETag is the multipart one ("-3"); a retried Complete answers
the same; nothing leaks (the parts' chunks that the copy does not share
are collected; an aborted misaligned upload releases everything; so does a
copy cut short by a master killed during it); parts
uploaded under CHUNK_SIZE 1 MiB and 4 MiB (a master restart between them)
complete into 4 MiB chunks. A copy that takes long answers as S3 does
(src/master/s3_hold.c): 200 at once, the XML declaration, a space every
S3_KEEPALIVE_MS, then the result or an <Error> as the body; a client that
hangs up stops the copy, which releases its chunks.
"""

import hashlib
import http.client
import os
import ssl
import threading
from xml.etree import ElementTree

import pytest

import echofs_harness as h
from s3_helpers import access_key, client, error_code, signed_request
from test_s3_multipart import md5, multipart_etag, referenced_chunks, upload_parts

MIB = 1024 * 1024


def s3_master(cluster, **env):
    port = h.free_port()
    master = cluster.start(workers=1, master_env={
        "S3_PORT": str(port), "REPLICATION_FACTOR": "1", "GC_GRACE_MS": "500", **env})
    master.s3_url = f"{cluster.scheme}://127.0.0.1:{port}"
    master.s3_verify = str(cluster.tls.ca) if cluster.tls else True
    return master


@pytest.fixture(scope="module")
def s3(shared_cluster):
    """CHUNK_SIZE 1 MiB (the default, said), chunks unreferenced for half a
    second collected (releases show in the stats)."""
    return s3_master(shared_cluster, CHUNK_SIZE=str(MIB))


@pytest.fixture(scope="module")
def alice(s3):
    c = client(s3, access_key(s3, "rechunk-alice"))
    c.create_bucket(Bucket="mpu")
    return c


def rest_file(master, user, key):
    files = [f for f in master.user_client(user).get("/api/v1/files", params={"limit": 1000})
             .json()["files"] if f.get("key") == key]
    assert len(files) == 1, files
    return files[0]


def assert_reads_back(master, c, user, key, parts):
    """Whole, in ranges, per part, and through the REST API."""
    data = b"".join(parts)
    etag = multipart_etag(parts)
    got = c.get_object(Bucket="mpu", Key=key)
    assert got["ETag"] == etag and got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    # ranges across every part boundary and every 1 MiB and 4 MiB boundary
    bounds, at = [], 0
    for p in parts[:-1]:
        at += len(p)
        bounds.append(at)
    bounds += list(range(MIB, len(data), MIB))
    for b in bounds:
        first, last = max(0, b - 7), min(len(data) - 1, b + 6)
        r = c.get_object(Bucket="mpu", Key=key, Range=f"bytes={first}-{last}")
        assert r["Body"].read() == data[first:last + 1], b
    # a range over most of the object, and the tail
    r = c.get_object(Bucket="mpu", Key=key, Range=f"bytes=3-{len(data) - 5}")
    assert r["Body"].read() == data[3:len(data) - 4]
    r = c.get_object(Bucket="mpu", Key=key, Range="bytes=-200")
    assert r["Body"].read() == data[-200:]
    # the parts as listed
    first = 0
    for n, p in enumerate(parts, 1):
        r = c.get_object(Bucket="mpu", Key=key, PartNumber=n)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert (r["ResponseMetadata"]["HTTPHeaders"]["content-range"] ==
                f"bytes {first}-{first + len(p) - 1}/{len(data)}")
        assert r["PartsCount"] == len(parts) and r["ETag"] == etag
        assert r["Body"].read() == p, n
        first += len(p)
    # one EchoFS file: its SHA-256 and the REST download agree
    f = rest_file(master, user, key)
    sha = hashlib.sha256(data).hexdigest()
    assert f["size"] == len(data) and f["sha256"] == sha
    assert master.user_client(user).download_sha256(f["file_id"]) == (len(data), sha)
    return f


def test_parts_of_any_size_complete_and_read_back(s3, alice):
    before, collected_before = referenced_chunks(s3)
    # (5,000,000 bytes is below S3's 5 MiB minimum: EntityTooSmall, as S3)
    parts = [os.urandom(5 * MIB + 1), os.urandom(5_300_001), os.urandom(123)]
    upload_id, listed = upload_parts(alice, "odd/sizes.bin", parts)
    # the parts' chunks: 6 + 6 + 1
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 13, 10)
    done = alice.complete_multipart_upload(Bucket="mpu", Key="odd/sizes.bin",
                                           UploadId=upload_id,
                                           MultipartUpload={"Parts": listed})
    assert done["ETag"] == multipart_etag(parts) and done["ETag"].endswith('-3"')
    f = assert_reads_back(s3, alice, "rechunk-alice", "odd/sizes.bin", parts)
    assert f["chunk_size"] == MIB and f["chunk_count"] == 11
    # the file's ceil(10,543,005 / 1 MiB) = 11 chunks stay (its first 5
    # are the first part's, deduplicated); the parts' other 8 are collected
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 11, 10)
    h.wait_until(lambda: referenced_chunks(s3)[1] >= collected_before + 8, 20)
    # a retried Complete (its answer lost) answers the same, and copies nothing
    again = alice.complete_multipart_upload(Bucket="mpu", Key="odd/sizes.bin",
                                            UploadId=upload_id,
                                            MultipartUpload={"Parts": listed})
    assert again["ETag"] == done["ETag"]
    assert referenced_chunks(s3)[0] == before + 11
    # deleting the object releases the rest
    alice.delete_object(Bucket="mpu", Key="odd/sizes.bin")
    h.wait_until(lambda: referenced_chunks(s3)[0] == before, 10)


def test_a_misaligned_part_in_the_middle_of_some_parts(s3, alice):
    """Part 3 (not a whole number of chunks) before an aligned part 4:
    copied; part 2 (left out) is released."""
    before, _ = referenced_chunks(s3)
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB + 3), os.urandom(5 * MIB + 1),
             os.urandom(2 * MIB)]
    upload_id, listed = upload_parts(alice, "some.bin", parts)
    chosen = [parts[0], parts[2], parts[3]]
    done = alice.complete_multipart_upload(
        Bucket="mpu", Key="some.bin", UploadId=upload_id,
        MultipartUpload={"Parts": [listed[0], listed[2], listed[3]]})
    assert done["ETag"] == multipart_etag(chosen)
    f = assert_reads_back(s3, alice, "rechunk-alice", "some.bin", chosen)
    assert f["size"] == 12 * MIB + 1
    # 13 chunks of 1 MiB (the last of 1 byte)
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 13, 10)
    alice.delete_object(Bucket="mpu", Key="some.bin")
    h.wait_until(lambda: referenced_chunks(s3)[0] == before, 10)


def test_an_aborted_misaligned_upload_leaks_nothing(s3, alice):
    before, collected_before = referenced_chunks(s3)
    upload_id, listed = upload_parts(alice, "aborted.bin",
                                     [os.urandom(5 * MIB + 1), os.urandom(777)])
    h.wait_until(lambda: referenced_chunks(s3)[0] == before + 7, 10)
    alice.abort_multipart_upload(Bucket="mpu", Key="aborted.bin", UploadId=upload_id)
    h.wait_until(lambda: referenced_chunks(s3)[0] == before, 10)
    h.wait_until(lambda: referenced_chunks(s3)[1] >= collected_before + 7, 20)
    assert error_code(alice.complete_multipart_upload, Bucket="mpu", Key="aborted.bin",
                      UploadId=upload_id,
                      MultipartUpload={"Parts": listed}) == "NoSuchUpload"
    assert error_code(alice.head_object, Bucket="mpu", Key="aborted.bin") == "404"


def test_parts_stored_before_a_chunk_size_change_complete(cluster):
    master = s3_master(cluster, CHUNK_SIZE=str(MIB))
    c = client(master, access_key(master, "rechunk-bob"))
    c.create_bucket(Bucket="mpu")
    first = os.urandom(5 * MIB)  # 5 chunks of 1 MiB
    upload_id = c.create_multipart_upload(Bucket="mpu", Key="resized")["UploadId"]
    r1 = c.upload_part(Bucket="mpu", Key="resized", UploadId=upload_id, PartNumber=1,
                       Body=first)
    master.restart(CHUNK_SIZE=str(4 * MIB))
    master.wait_ready()
    if cluster.backend != "aws":
        master.wait_workers(alive=1, total=1)
    rest = [os.urandom(5 * MIB), os.urandom(1000)]  # 4 MiB + 1 MiB chunks, then 1
    listed = [{"PartNumber": 1, "ETag": r1["ETag"]}]
    for n, data in enumerate(rest, 2):
        r = c.upload_part(Bucket="mpu", Key="resized", UploadId=upload_id, PartNumber=n,
                          Body=data)
        assert r["ETag"] == '"%s"' % md5(data)
        listed.append({"PartNumber": n, "ETag": r["ETag"]})
    parts = [first] + rest
    done = c.complete_multipart_upload(Bucket="mpu", Key="resized", UploadId=upload_id,
                                       MultipartUpload={"Parts": listed})
    assert done["ETag"] == multipart_etag(parts)
    f = assert_reads_back(master, c, "rechunk-bob", "resized", parts)
    # copied into the chunk size of now: ceil((10 MiB + 1000) / 4 MiB) = 3
    assert f["chunk_size"] == 4 * MIB and f["chunk_count"] == 3


SYNC_GATE_SO = h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "sync_gate.so"


def gated_s3_master(cluster, gate, **env):
    """A master serving S3 and one worker whose fdatasync waits while the
    file @gate exists (tests/preload/sync_gate.c): the copy's new chunks
    cannot be stored while it does."""
    assert SYNC_GATE_SO.exists(), f"{SYNC_GATE_SO} is missing: build it first (make)"
    worker_env = {"LD_PRELOAD": str(SYNC_GATE_SO), "ECHOFS_SYNC_GATE": str(gate)}
    if h.SANITIZE:
        worker_env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    port = h.free_port()
    master = cluster.start(workers=1, worker_env=worker_env, master_env={
        "S3_PORT": str(port), "REPLICATION_FACTOR": "1", "GC_GRACE_MS": "500",
        "CHUNK_SIZE": str(MIB), **env})
    master.s3_url = f"{cluster.scheme}://127.0.0.1:{port}"
    master.s3_verify = str(cluster.tls.ca) if cluster.tls else True
    return master


def complete_in_thread(c, key, upload_id, listed, answer):
    """Complete on a thread of its own: its answer (or error) into @answer."""
    def run():
        try:
            answer["done"] = c.complete_multipart_upload(
                Bucket="mpu", Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed})
        except Exception as e:  # the caller checks it
            answer["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.requires_workers(reason="holds the worker's disk writes (tests/preload/sync_gate.c)")
def test_a_part_replaced_during_the_copy_is_never_mixed_in(cluster, tmp_path):
    """The worker's fdatasync is held (the copy's new chunks cannot be
    stored) while part 2 is replaced by bytes whose chunks are all stored
    already (part 1's: nothing to write); then released. The Complete
    listing the old part 2 is refused (its ETag is gone), its copy's
    chunks are released; listing the new one completes."""
    gate = tmp_path / "gate"
    master = gated_s3_master(cluster, gate)
    key = access_key(master, "rechunk-carol")
    c, racing = client(master, key), client(master, key)
    c.create_bucket(Bucket="mpu")
    before, _ = referenced_chunks(master)
    p1, p2, p3 = os.urandom(5 * MIB + 1), os.urandom(5 * MIB + 1), os.urandom(99)
    upload_id, listed = upload_parts(c, "raced", [p1, p2, p3])
    answer = {}
    gate.touch()
    mark = master.log_mark()
    t = None
    try:
        t = complete_in_thread(racing, "raced", upload_id, listed, answer)
        master.wait_for_log(r"parts not aligned on chunks: copying", 30, since=mark)
        r = c.upload_part(Bucket="mpu", Key="raced", UploadId=upload_id, PartNumber=2, Body=p1)
    finally:
        gate.unlink()
        if t:
            t.join(120)
    assert not t.is_alive()
    assert "error" in answer, answer
    assert answer["error"].response["Error"]["Code"] == "InvalidPart"
    # what stays: the parts' chunks (part 2 is part 1's now): 6 + 1
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 7, 10)
    listed[1] = {"PartNumber": 2, "ETag": r["ETag"]}
    done = c.complete_multipart_upload(Bucket="mpu", Key="raced", UploadId=upload_id,
                                       MultipartUpload={"Parts": listed})
    assert done["ETag"] == multipart_etag([p1, p1, p3])
    assert_reads_back(master, c, "rechunk-carol", "raced", [p1, p1, p3])


@pytest.mark.requires_workers(reason="holds the worker's disk writes (tests/preload/sync_gate.c)")
def test_a_master_killed_during_the_copy_leaks_nothing(cluster, tmp_path):
    """The master dies while the copy's chunks are being stored: after a
    restart the copy's session expires (UPLOAD_IDLE_TIMEOUT_MS) and its
    chunks are collected, the parts' stay, and the upload completes."""
    gate = tmp_path / "gate"
    master = gated_s3_master(cluster, gate, UPLOAD_IDLE_TIMEOUT_MS="1000")
    key = access_key(master, "rechunk-dave")
    c, racing = client(master, key), client(master, key)
    c.create_bucket(Bucket="mpu")
    before, _ = referenced_chunks(master)
    parts = [os.urandom(5 * MIB + 1), os.urandom(5 * MIB + 1), os.urandom(99)]
    upload_id, listed = upload_parts(c, "crashed", parts)
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 13, 10)
    answer = {}
    gate.touch()
    mark = master.log_mark()
    t = None
    try:
        t = complete_in_thread(racing, "crashed", upload_id, listed, answer)
        master.wait_for_log(r"parts not aligned on chunks: copying", 30, since=mark)
        master.kill()
    finally:
        gate.unlink()
        if t:
            t.join(120)
    assert not t.is_alive() and "error" in answer, answer
    master.restart()
    master.wait_ready()
    master.wait_workers(alive=1, total=1)
    # nothing new was recorded: the parts' 13 chunks
    assert referenced_chunks(master)[0] == before + 13
    done = c.complete_multipart_upload(Bucket="mpu", Key="crashed", UploadId=upload_id,
                                       MultipartUpload={"Parts": listed})
    assert done["ETag"] == multipart_etag(parts)
    assert_reads_back(master, c, "rechunk-dave", "crashed", parts)
    # file: ceil((10 MiB + 101) / 1 MiB) = 11 chunks, 5 of them part 1's
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 11, 10)
    # the dead copy had recorded part 1's 5 chunks in its session before
    # the first new one blocked: once the object goes, nothing holds them
    c.delete_object(Bucket="mpu", Key="crashed")
    h.wait_until(lambda: referenced_chunks(master)[0] == before, 60)


def complete_body(listed):
    return ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{p['PartNumber']}</PartNumber><ETag>{p['ETag']}</ETag></Part>"
        for p in listed) + "</CompleteMultipartUpload>").encode()


def raw_complete(master, key, object_key, upload_id, listed):
    """POSTs a Complete by hand (http.client: the body is read piece by
    piece); returns (connection, response) once the head has come."""
    body = complete_body(listed)
    path = f"/mpu/{object_key}?uploadId={upload_id}"
    headers = signed_request(key, "POST", master.s3_url + path, body)
    port = int(master.s3_url.rsplit(":", 1)[1])
    if master.s3_url.startswith("https"):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=60,
            context=ssl.create_default_context(cafile=master.s3_verify))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=body, headers=headers)
    return conn, conn.getresponse()


DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def held_complete(master, key, object_key, upload_id, listed):
    """raw_complete while the gate holds the copy's chunks: the head is
    200 before the copy has begun; returns (connection, response, the
    master's log mark from before the request) once the copy is under way."""
    mark = master.log_mark()
    conn, resp = raw_complete(master, key, object_key, upload_id, listed)
    assert resp.status == 200
    master.wait_for_log(r"parts not aligned on chunks: copying", 30, since=mark)
    return conn, resp, mark


@pytest.mark.requires_workers(reason="holds the worker's disk writes (tests/preload/sync_gate.c)")
def test_a_long_copy_answers_200_at_once_and_spaces_until_its_document(cluster, tmp_path):
    """As S3 does for a Complete that takes long: the head (200) comes at
    once, then the XML declaration and a space every S3_KEEPALIVE_MS while
    the copy cannot store its chunks (the worker's fdatasync held), then
    the result. A client's read timeout never sees a silent connection."""
    gate = tmp_path / "gate"
    master = gated_s3_master(cluster, gate, S3_KEEPALIVE_MS="50")
    key = access_key(master, "rechunk-erin")
    c = client(master, key)
    c.create_bucket(Bucket="mpu")
    parts = [os.urandom(5 * MIB + 1), os.urandom(5 * MIB + 1), os.urandom(99)]
    upload_id, listed = upload_parts(c, "held", parts)
    gate.touch()
    try:
        # the head while no chunk of the copy can be stored
        conn, resp, _ = held_complete(master, key, "held", upload_id, listed)
        assert resp.getheader("Content-Type") == "application/xml"
        assert resp.getheader("x-amz-request-id")
        assert resp.read(len(DECLARATION)) == DECLARATION
        assert resp.read(5) == b"     "  # 5 keepalive intervals
    finally:
        gate.unlink()
    rest = resp.read()
    conn.close()
    doc = rest.lstrip(b" ")
    assert doc.startswith(b"<CompleteMultipartUploadResult"), rest[:300]
    root = ElementTree.fromstring(DECLARATION + rest)  # the whole body is one document
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    assert root.find("s3:ETag", ns).text == multipart_etag(parts)
    assert root.find("s3:Key", ns).text == "held"
    assert_reads_back(master, c, "rechunk-erin", "held", parts)


@pytest.mark.requires_workers(reason="holds the worker's disk writes (tests/preload/sync_gate.c)")
def test_an_error_after_the_200_is_the_body_and_a_client_that_leaves_stops_the_copy(
        cluster, tmp_path):
    """A held Complete whose part 2 is replaced during the copy: 200, then
    an <Error> InvalidPart as the body (S3 clients look for it). Another,
    whose client hangs up during the copy: the copy stops, its chunks are
    released (the parts' stay), the upload stays open and completes later."""
    gate = tmp_path / "gate"
    master = gated_s3_master(cluster, gate, S3_KEEPALIVE_MS="50")
    key = access_key(master, "rechunk-frank")
    c = client(master, key)
    c.create_bucket(Bucket="mpu")
    before, _ = referenced_chunks(master)
    p1, p2, p3 = os.urandom(5 * MIB + 1), os.urandom(5 * MIB + 1), os.urandom(99)
    upload_id, listed = upload_parts(c, "raced", [p1, p2, p3])
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 13, 10)
    gate.touch()
    try:
        conn, resp, _ = held_complete(master, key, "raced", upload_id, listed)
        r = c.upload_part(Bucket="mpu", Key="raced", UploadId=upload_id, PartNumber=2, Body=p1)
    finally:
        gate.unlink()
    body = resp.read()
    conn.close()
    assert body.startswith(DECLARATION), body[:300]
    root = ElementTree.fromstring(body)
    assert root.tag == "Error" and root.find("Code").text == "InvalidPart", body
    assert root.find("RequestId").text == resp.getheader("x-amz-request-id")
    # the parts' chunks only (part 2 is part 1's now): 6 + 1
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 7, 10)
    listed[1] = {"PartNumber": 2, "ETag": r["ETag"]}

    # The client leaves while the copy waits for the worker's disk.
    big = os.urandom(5 * MIB + 7)
    r = c.upload_part(Bucket="mpu", Key="raced", UploadId=upload_id, PartNumber=1, Body=big)
    listed[0] = {"PartNumber": 1, "ETag": r["ETag"]}
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 13, 10)
    gate.touch()
    try:
        conn, resp, mark = held_complete(master, key, "raced", upload_id, listed)
        assert resp.read(len(DECLARATION) + 2).startswith(DECLARATION)
        conn.close()  # hangs up
        # the master's next space finds the connection gone
        master.wait_for_log(r"access POST /mpu/raced\S* 200 .*aborted=", 30, since=mark)
    finally:
        gate.unlink()
    master.wait_for_log(r"the client left during the copy of its parts: stopped", 30,
                        since=mark)
    # the copy's chunks released: the parts' 6 + 6 + 1 stay
    h.wait_until(lambda: referenced_chunks(master)[0] == before + 13, 20)
    assert error_code(c.head_object, Bucket="mpu", Key="raced") == "404"
    done = c.complete_multipart_upload(Bucket="mpu", Key="raced", UploadId=upload_id,
                                       MultipartUpload={"Parts": listed})
    assert done["ETag"] == multipart_etag([big, p1, p3])
    assert_reads_back(master, c, "rechunk-frank", "raced", [big, p1, p3])
