"""test_s3_put_md5.py - the MD5 of S3 bodies of several chunks, hashed on
a thread of the upload's own (src/master/upload_pipeline.h; docs/
PERFORMANCE.md, "S3 endpoint (issue 13)").

A master with 64 KiB chunks, so that a body of a few hundred KiB is
already several chunks and goes through the digest thread ("upload-md5"
in /proc/PID/task/*/comm). Covered: the ETag of PutObject and of
UploadPart is the body's MD5 (random bodies, one not a multiple of the
chunk size, one exactly a multiple); a Content-MD5 that does not match a
body of several chunks is refused with BadDigest and nothing is recorded
(no object, no file); a small body starts no digest thread; and a client
that hangs up mid-body while the digest thread runs leaves no thread of
the upload behind (the sanitizer build also checks for leaks), after
which the master takes the same key whole.
"""

import base64
import hashlib
import os
import socket
from pathlib import Path

import pytest

import echofs_harness as h
from s3_helpers import access_key, client, error_code, signed_request, start_s3

CHUNK = 64 * 1024
USER = "s3-md5-alice"
BUCKET = "md5s"


@pytest.fixture(scope="module")
def s3(shared_cluster):
    return start_s3(shared_cluster, REPLICATION_FACTOR="2", CHUNK_SIZE=str(CHUNK))


@pytest.fixture(scope="module")
def key(s3):
    return access_key(s3, USER)


@pytest.fixture(scope="module")
def alice(s3, key):
    c = client(s3, key)
    c.create_bucket(Bucket=BUCKET)
    return c


def threads_named(master, name):
    """How many threads of @master's process are called @name now."""
    count = 0
    for comm in Path(f"/proc/{master.pid}/task").glob("*/comm"):
        try:
            count += comm.read_text().strip() == name
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return count


def file_count(master):
    r = master.user_client(USER).get("/api/v1/files?limit=1000")
    assert r.status_code == 200, r.text
    return len(r.json()["files"])


@pytest.mark.parametrize("size", [5 * CHUNK + 1234, 8 * CHUNK])
def test_put_etag_is_the_md5_of_a_body_of_several_chunks(s3, alice, size):
    body = os.urandom(size)
    put = alice.put_object(Bucket=BUCKET, Key=f"obj-{size}", Body=body)
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = alice.get_object(Bucket=BUCKET, Key=f"obj-{size}")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]


def test_part_etag_is_the_md5_of_a_part_of_several_chunks(s3, alice):
    body = os.urandom(6 * CHUNK + 99)
    up = alice.create_multipart_upload(Bucket=BUCKET, Key="mp")
    part = alice.upload_part(Bucket=BUCKET, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                             Body=body)
    md5 = hashlib.md5(body)
    assert part["ETag"] == '"%s"' % md5.hexdigest()
    done = alice.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["ETag"] == '"%s-1"' % hashlib.md5(md5.digest()).hexdigest()
    assert alice.get_object(Bucket=BUCKET, Key="mp")["Body"].read() == body


def test_bad_content_md5_of_several_chunks_records_nothing(s3, alice):
    body = os.urandom(7 * CHUNK + 5)
    wrong = base64.b64encode(hashlib.md5(body[:-1]).digest()).decode()
    files = file_count(s3)
    assert error_code(alice.put_object, Bucket=BUCKET, Key="refused", Body=body,
                      ContentMD5=wrong) == "BadDigest"
    assert error_code(alice.head_object, Bucket=BUCKET, Key="refused") == "404"
    assert file_count(s3) == files


def test_small_body_starts_no_digest_thread(s3, alice):
    # One chunk: the MD5 is the connection thread's. (Sampled while the
    # PUTs run: a digest thread, were there one, lives until the reply.)
    assert threads_named(s3, "upload-md5") == 0
    for i in range(20):
        alice.put_object(Bucket=BUCKET, Key=f"small-{i}", Body=os.urandom(CHUNK // 2))
        assert threads_named(s3, "upload-md5") == 0


def test_hangup_mid_body_leaves_no_thread_behind(s3, alice, key):
    size = 256 * CHUNK  # 16 MiB declared, a quarter of it sent
    url = f"{s3.s3_url}/{BUCKET}/hangup"
    headers = signed_request(key, "PUT", url, headers={
        "Host": f"127.0.0.1:{s3.s3_port}", "Content-Length": str(size)},
        payload_sha256="UNSIGNED-PAYLOAD")
    def threads_now():
        # The SQLite store's checkpoint thread starts once the WAL first
        # holds 1,000 pages (src/meta/sqlite_checkpoint.c) and stays: not
        # the request's.
        status = Path(f"/proc/{s3.pid}/status").read_text().splitlines()
        return (int(next(line.split()[1] for line in status if line.startswith("Threads:")))
                - threads_named(s3, "meta-checkpoint"))
    base_threads = threads_now()
    sock = socket.create_connection(("127.0.0.1", s3.s3_port), timeout=30)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"PUT /{BUCKET}/hangup HTTP/1.1\r\n{head}\r\n".encode())
        block = os.urandom(CHUNK)
        for _ in range(64):
            sock.sendall(block)
        # The body is being stored: the upload's digest thread runs.
        h.wait_until(lambda: threads_named(s3, "upload-md5") == 1, 30)
    finally:
        sock.close()
    # The request ended with the connection: its pipeline stopped and
    # joined the digest thread and the helpers.
    h.wait_until(lambda: threads_named(s3, "upload-md5") == 0, 30)
    h.wait_until(lambda: threads_named(s3, "upload-helper") == 0, 30)

    h.wait_until(lambda: threads_now() <= base_threads, 30)
    assert error_code(alice.head_object, Bucket=BUCKET, Key="hangup") == "404"
    # The master is fine and takes the key whole.
    body = os.urandom(size // 4 + 3)
    put = alice.put_object(Bucket=BUCKET, Key="hangup", Body=body)
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    assert alice.get_object(Bucket=BUCKET, Key="hangup")["Body"].read() == body
