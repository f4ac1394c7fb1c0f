"""Downloads, black box: the master reads the next chunk ahead (and only
one; two for an erasure-coded file) while it sends the current one, a client that goes away mid-download
frees the reader and its read-ahead, and small files come out whole.

The workers' /metrics count the chunk GETs they answered; that is how the
tests see what the master asked for while a client is not reading."""

import hashlib
import os
import socket
import time

import pytest
import requests

import echofs_harness as h
from echofs_harness import wait_until
from s3_helpers import access_key, start_s3
from s3_helpers import client as s3_client

# Chunks far larger than what the loopback socket buffers hold, so a client
# that stops reading stops the master inside chunk 0.
BIG_CHUNK = 16 << 20


def chunk_gets(workers) -> int:
    """Chunk GETs answered 200 by all the workers so far."""
    total = 0.0
    for w in workers:
        text = requests.get(w.url + "/metrics", timeout=h.HTTP_TIMEOUT_S).text
        for line in text.splitlines():
            if (line.startswith("echofs_http_requests_total{")
                    and 'route="/chunks/{chunkId}"' in line and 'method="GET"' in line
                    and 'status="200"' in line):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def chunk_gets_since(workers, before: int, expected: int) -> int:
    """The chunk GETs the workers answered since @before, once at least
    @expected of them are counted: a worker counts a request when
    libmicrohttpd reports it completed, which may be after the master
    has the bytes (and the test its download). More than @expected is
    returned as it is, for the caller's assert to show."""
    wait_until(lambda: chunk_gets(workers) - before >= expected, 10.0,
                 what=f"{expected} chunk GETs counted by the workers")
    return chunk_gets(workers) - before


def requests_in_flight(master) -> float:
    text = requests.get(master.url + "/metrics", timeout=h.HTTP_TIMEOUT_S).text
    for line in text.splitlines():
        if line.startswith("echofs_http_requests_in_flight"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("the master's /metrics has no echofs_http_requests_in_flight")


def master_metric(master, name: str) -> float:
    text = requests.get(master.url + "/metrics", timeout=h.HTTP_TIMEOUT_S).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"the master's /metrics has no {name}")


def stalled_download(master, tok: str, file_id: str) -> socket.socket:
    """Starts GET .../download on a socket with a tiny receive buffer, reads
    the first bytes and then stops reading."""
    host, port = master.url.removeprefix("http://").split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(h.HTTP_TIMEOUT_S)
    s.connect((host, int(port)))
    s.sendall(f"GET /api/v1/files/{file_id}/download HTTP/1.1\r\nHost: {host}\r\n"
              f"Authorization: Bearer {tok}\r\n\r\n".encode())
    first = s.recv(1024)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    return s


def assert_stalled_download_reads(cluster, m, tok: str, file_id: str, before: int, gets: int,
                                  ahead: str) -> None:
    """A download whose client reads nothing makes the workers answer
    exactly @gets chunk GETs since @before (what is read ahead, @ahead, and
    no more); once the client is gone, so is the reader."""
    s = stalled_download(m, tok, file_id)
    try:
        wait_until(lambda: chunk_gets(cluster.workers) - before == gets, 10.0,
                   what=f"the master to read {ahead} ahead")
        time.sleep(0.5)
        assert chunk_gets(cluster.workers) - before == gets, f"read more than {ahead} ahead"
    finally:
        s.close()
    # The reader (and its read-ahead threads) went with the connection.
    wait_until(lambda: requests_in_flight(m) <= 1, 10.0,
               what="the abandoned download to end")  # 1: this scrape itself
    m.check_alive()


@pytest.mark.requires_workers(reason="counts the chunk reads the workers serve")
def test_next_chunk_is_read_ahead_while_the_client_is_not_reading(cluster):
    m = cluster.start(workers=3, master_env={"CHUNK_SIZE": BIG_CHUNK})
    tok = h.make_jwt({"sub": "ahead", "exp": int(time.time()) + 3600})
    c = m.client(tok)
    data = os.urandom(2 * BIG_CHUNK + 1)  # chunks 0, 1 and a 1-byte chunk 2
    f = c.upload(data, "ahead.bin")
    before = chunk_gets(cluster.workers)

    # Chunk 0 was read before the status line; chunk 1 is read ahead
    # although the client has not taken even chunk 0.
    assert_stalled_download_reads(cluster, m, tok, f["file_id"], before, 2, "chunk 1")

    n, digest = c.download_sha256(f["file_id"])
    assert (n, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert chunk_gets_since(cluster.workers, before, 2 + 3) == 2 + 3


@pytest.mark.requires_workers(reason="counts the shard reads the workers serve")
def test_ec_files_are_read_two_chunks_ahead(cluster):
    """An ec:4+2 chunk is ready when the slowest of its 4 data-shard GETs
    is, so the master reads two chunks ahead for it (4 GETs each), and no
    more; replicated files stay at one (the test above)."""
    m = cluster.start(workers=6, master_env={"CHUNK_SIZE": BIG_CHUNK})
    tok = h.make_jwt({"sub": "ahead-ec", "exp": int(time.time()) + 3600})
    c = m.client(tok)
    data = os.urandom(4 * BIG_CHUNK + 1)  # chunks 0-3 and a 1-byte chunk 4
    r = c.post("/api/v1/files/upload", params={"name": "ahead-ec.bin", "policy": "ec:4+2"},
               data=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text[:500]
    f = r.json()
    assert f["policy"] == "ec:4+2", f
    before = chunk_gets(cluster.workers)

    # Chunk 0 was read before the status line (its 4 data shards); chunks
    # 1 and 2 are read ahead although the client has not taken even chunk
    # 0; chunk 3 is not.
    assert_stalled_download_reads(cluster, m, tok, f["file_id"], before, 3 * 4,
                                  "chunks 1 and 2")

    n, digest = c.download_sha256(f["file_id"])
    assert (n, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert chunk_gets_since(cluster.workers, before, 3 * 4 + 5 * 4) == 3 * 4 + 5 * 4


@pytest.fixture(scope="module")
def master(shared_cluster):
    return shared_cluster.start(workers=3)


@pytest.mark.parametrize("spec,first,last", [
    (None, 0, 4095),
    ("bytes=0-0", 0, 0),
    ("bytes=100-199", 100, 199),
    ("bytes=-1", 4095, 4095),
])
def test_small_file_and_ranges_within_one_chunk(master, spec, first, last):
    m = master
    tok = h.make_jwt({"sub": "small", "exp": int(time.time()) + 3600})
    c = m.client(tok)
    data = os.urandom(4096)
    f = c.upload(data, "small.bin")
    headers = {"Range": spec} if spec else {}
    r = c.get(f"/api/v1/files/{f['file_id']}/download", headers=headers)
    assert r.status_code == (206 if spec else 200), r.text[:200]
    assert r.content == data[first:last + 1]
    assert r.headers["Content-Length"] == str(last - first + 1)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["ETag"] == f'"{f["sha256"]}"'
    if spec:
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/4096"
    head = c.head(f"/api/v1/files/{f['file_id']}/download")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "4096"
    assert head.content == b""


@pytest.mark.requires_workers(reason="counts the chunk reads the workers serve")
@pytest.mark.parametrize("cache", ["default", "0"])
def test_chunks_read_again_come_from_the_master_cache_unless_it_is_off(cluster, cache):
    """CHUNK_CACHE_SIZE: chunks a download verified are kept by id, so the
    next download of them asks no worker; 0 turns that off. The chunk list
    is still read per download: a deleted file is a 404 though its chunks
    are cached."""
    env = {"CHUNK_SIZE": 65536}
    if cache != "default":
        env["CHUNK_CACHE_SIZE"] = cache
    m = cluster.start(workers=3, master_env=env)
    c = m.user_client("cached")
    hits_before = master_metric(m, "echofs_chunk_cache_hits_total")
    data = os.urandom(3 * 65536 + 100)  # 4 chunks, the last one short
    f = c.upload(data, "cached.bin")
    before = chunk_gets(cluster.workers)
    assert c.download(f["file_id"]) == data
    assert chunk_gets_since(cluster.workers, before, 4) == 4

    assert c.download(f["file_id"]) == data
    r = c.get(f"/api/v1/files/{f['file_id']}/download", headers={"Range": "bytes=65000-131000"})
    assert r.status_code == 206 and r.content == data[65000:131001]  # chunks 0 and 1
    again = chunk_gets_since(cluster.workers, before, 4 + (6 if cache == "0" else 0)) - 4
    hits = master_metric(m, "echofs_chunk_cache_hits_total") - hits_before
    if cache == "0":
        assert again == 4 + 2, "with CHUNK_CACHE_SIZE=0 every read goes to a worker"
        assert hits == 0 and master_metric(m, "echofs_chunk_cache_bytes") == 0
    else:
        assert again == 0, f"{again} chunk reads reached the workers for cached chunks"
        assert hits == 4 + 2, f"the master counted {hits} cache hits, not 6"
        assert master_metric(m, "echofs_chunk_cache_bytes") >= len(data)

    c.delete(f"/api/v1/files/{f['file_id']}").raise_for_status()
    r = c.get(f"/api/v1/files/{f['file_id']}/download")
    h.assert_json_error(r, 404, "file_not_found")


LISTS_READ = "echofs_download_chunk_lists_read_total"


@pytest.mark.parametrize("cache", ["default", "0"])
def test_small_file_downloads_read_no_chunk_list_while_its_chunks_are_cached(cluster, cache):
    """A file of up to 4 chunks whose chunk ids a download read keeps them
    with its cached row: the next downloads (whole or a range) take the
    chunks from the chunk cache without reading the chunk list again,
    with SQLite, which no other master writes. With CHUNK_CACHE_SIZE=0, or
    a store other masters share (PostgreSQL, DynamoDB), every download
    reads it, as before. A delete through this master is a 404 at once."""
    env = {"CHUNK_SIZE": 65536}
    if cache != "default":
        env["CHUNK_CACHE_SIZE"] = cache
    m = cluster.start(workers=3, master_env=env)
    c = m.user_client("known")
    small = os.urandom(4096)
    three = os.urandom(2 * 65536 + 100)  # 3 chunks, the last one short
    files = [c.upload(small, "small.bin"), c.upload(three, "three.bin")]
    before = master_metric(m, LISTS_READ)
    for f, data in zip(files, (small, three)):
        assert c.download(f["file_id"]) == data
    assert master_metric(m, LISTS_READ) - before == 2, "a first download reads the list"

    before = master_metric(m, LISTS_READ)
    downloads = 0
    for f, data in zip(files, (small, three)):
        for _ in range(3):
            assert c.download(f["file_id"]) == data
            downloads += 1
        r = c.get(f"/api/v1/files/{f['file_id']}/download", headers={"Range": "bytes=100-4000"})
        assert r.status_code == 206 and r.content == data[100:4001]
        downloads += 1
    r = c.get(f"/api/v1/files/{files[1]['file_id']}/download",
              headers={"Range": "bytes=65000-131100"})  # chunks 0, 1 and 2
    assert r.status_code == 206 and r.content == three[65000:131101]
    downloads += 1
    lists = master_metric(m, LISTS_READ) - before
    if cache == "0" or cluster.backend != "sqlite":
        assert lists == downloads, f"{lists} chunk list reads for {downloads} downloads"
    else:
        assert lists == 0, f"{lists} chunk list reads for {downloads} downloads of cached chunks"

    for f in files:
        assert c.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
        h.assert_json_error(c.get(f"/api/v1/files/{f['file_id']}/download"), 404,
                            "file_not_found")


def test_file_removed_through_s3_is_never_served_from_its_known_chunks(cluster):
    """An S3 delete, overwrite or copy over a key removes the key's file
    without telling the REST file cache (the store does it in the same
    transaction): a file whose chunk ids this master knows, its chunk
    cached, is a 404 on its REST download as soon as the S3 call has
    answered, as when every download read the chunk list."""
    m = start_s3(cluster, workers=2, REPLICATION_FACTOR="2")
    s3 = s3_client(m, access_key(m, "s3-known"))
    rest = m.user_client("s3-known")
    s3.create_bucket(Bucket="known")

    def file_of(key, data):
        s3.put_object(Bucket="known", Key=key, Body=data)
        files = rest.get("/api/v1/files", params={"limit": 1000}).json()["files"]
        fid = [f["file_id"] for f in files if f.get("bucket") == "known" and f.get("key") == key]
        assert len(fid) == 1, files
        for _ in range(3):  # the first reads the chunk ids, the others need not
            assert rest.download(fid[0]) == data
        return fid[0]

    deleted = file_of("deleted", os.urandom(4096))
    s3.delete_object(Bucket="known", Key="deleted")
    h.assert_json_error(rest.get(f"/api/v1/files/{deleted}/download"), 404, "file_not_found")

    replaced = file_of("replaced", os.urandom(4096))
    s3.put_object(Bucket="known", Key="replaced", Body=b"new bytes")
    h.assert_json_error(rest.get(f"/api/v1/files/{replaced}/download"), 404, "file_not_found")

    copied_over = file_of("copied-over", os.urandom(4096))
    s3.copy_object(Bucket="known", Key="copied-over", CopySource="known/replaced")
    h.assert_json_error(rest.get(f"/api/v1/files/{copied_over}/download"), 404,
                        "file_not_found")
    assert s3.get_object(Bucket="known", Key="copied-over")["Body"].read() == b"new bytes"


@pytest.mark.requires_workers(reason="kills workers holding the chunk")
def test_known_chunk_not_cached_is_read_from_the_replicas_the_store_lists_now(cluster):
    """The chunk ids kept with a file's row carry no replicas: a chunk not
    in the chunk cache (CHUNK_CACHE_SIZE=0 here) is read through the chunk
    list as it is now: a download after one worker lost the chunk (its
    record dead on disk, the worker back) and another died is served by
    the third."""
    m = cluster.start(workers=3, master_env={"CHUNK_CACHE_SIZE": "0"})
    c = m.user_client("replicas")
    data = os.urandom(4096)
    f = c.upload(data, "replicas.bin")
    assert c.download(f["file_id"]) == data  # the ids are known from here on
    assert c.download(f["file_id"]) == data
    chunk_id = c.get(f"/api/v1/files/{f['file_id']}").json()["chunks"][0]["chunk_id"]
    lost, dead = cluster.workers[0], cluster.workers[1]
    lost_id = lost.worker_id
    lost.kill()
    h.drop_chunk_record(lost.data_dir, chunk_id)  # its bytes lost while it was down
    mark = lost.log_mark()
    lost.start()
    # Its record from before the kill may still say alive: wait for this run's registration.
    lost.wait_for_log("registered with", timeout=h.START_TIMEOUT_S, since=mark)
    assert lost.wait_registered() == lost_id
    dead.kill()
    for _ in range(3):
        assert c.download(f["file_id"]) == data


def test_worker_chunk_get_crc_header_matches_the_bytes(cluster):
    """A worker's GET /chunks/{id} sends X-Chunk-CRC32C (the CRC it verified
    the stored payload against, not computed again): it must be the CRC32C
    of the bytes in the body, for a fresh chunk and after the chunk was
    overwritten with other bytes and another encoding."""
    m = cluster.add_master()
    w = cluster.add_worker(master=m)
    wc = w.client(h.CLUSTER_SECRET)
    first = os.urandom(300_000)
    cid = hashlib.sha256(first).hexdigest()
    second = b"overwritten " * 5000
    for body, encoding in ((first, "identity"), (second, "gzip")):
        r = wc.put(f"/chunks/{cid}", data=body,
                   headers={"X-Chunk-Encoding": encoding,
                            "X-Chunk-CRC32C": f"{h.crc32c(body):08x}"})
        assert r.status_code == 201, r.text
        r = wc.get(f"/chunks/{cid}")
        assert r.status_code == 200, r.text
        assert r.content == body
        assert r.headers["X-Chunk-Encoding"] == encoding
        assert r.headers["X-Chunk-CRC32C"] == f"{h.crc32c(body):08x}"


@pytest.mark.requires_workers(reason="kills every worker holding the chunk")
def test_failed_chunk_read_is_logged_once(cluster):
    """Helpers do not log; the handler that replies does, once: a download
    whose chunk no replica can give is one 503 chunk_unavailable and one
    WARN/ERROR line in the master's log (not one per replica tried, plus
    the reader's, plus the handler's)."""
    m = cluster.start(workers=3)
    tok = h.make_jwt({"sub": "once", "exp": int(time.time()) + 3600})
    c = m.client(tok)
    f = c.upload(os.urandom(4096), "once.bin")
    chunk_id = m.client(tok).get(f"/api/v1/files/{f['file_id']}").json()["chunks"][0]["chunk_id"]
    for w in cluster.workers:
        w.kill()  # still alive to the master: every replica is tried
    mark = m.log_mark()
    r = c.get(f"/api/v1/files/{f['file_id']}/download")
    h.assert_json_error(r, 503, "chunk_unavailable")
    m.wait_for_log(r"access GET /api/v1/files/\S+/download 503", since=mark)
    lines = [line for line in m.stderr_since(mark).splitlines()
             if (" WARN " in line or " ERROR " in line) and
             (f["file_id"] in line or chunk_id[:12] in line)]
    assert len(lines) == 1, "a failed chunk read logged %d lines:\n%s" % (
        len(lines), "\n".join(lines))
    assert "chunk_unavailable" in lines[0], lines[0]


# ---- chunks sent from the volume file (WORKER_SENDFILE_MIN_BYTES) ------------------------

SENDFILE_MIN = 256 << 10
SENDFILE_ENV = {"WORKER_SENDFILE_MIN_BYTES": "256K"}
SENT_FROM_FILE = "echofs_worker_chunk_bytes_sent_from_file_total"


def worker_metric(w, name: str) -> float:
    text = w.client(h.CLUSTER_SECRET).get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{w.name}'s /metrics has no {name}")


def put_chunk(w, body: bytes) -> str:
    cid = hashlib.sha256(body).hexdigest()
    r = w.client(h.CLUSTER_SECRET).put(
        f"/chunks/{cid}", data=body,
        headers={"X-Chunk-Encoding": "identity", "X-Chunk-CRC32C": f"{h.crc32c(body):08x}"})
    assert r.status_code == 201, r.text
    return cid


@pytest.mark.parametrize("env", [{}, SENDFILE_ENV], ids=["default", "sendfile-256K"])
def test_large_chunks_are_sent_from_the_volume_file_only_with_sendfile_on(cluster, env):
    """With WORKER_SENDFILE_MIN_BYTES=256K a chunk GET of a large chunk is
    sent from the volume file, after the worker verified it (the counter
    grows by its length), and a smaller one from the buffer it was read
    into; by default (0) every chunk is sent from the buffer. Either way
    the same bytes and headers."""
    m = cluster.add_master()
    w = cluster.add_worker(master=m, **env)
    wc = w.client(h.CLUSTER_SECRET)
    large = os.urandom(3 * SENDFILE_MIN + 1000)  # a last piece shorter than the rest
    small = os.urandom(SENDFILE_MIN - 1)
    for body, from_file in ((large, len(large) if env else 0), (small, 0)):
        cid = put_chunk(w, body)
        before = worker_metric(w, SENT_FROM_FILE)
        r = wc.get(f"/chunks/{cid}")
        assert r.status_code == 200, r.text
        assert r.content == body
        assert r.headers["Content-Length"] == str(len(body))
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["X-Chunk-Encoding"] == "identity"
        assert r.headers["X-Chunk-CRC32C"] == f"{h.crc32c(body):08x}"
        assert worker_metric(w, SENT_FROM_FILE) - before == from_file


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_large_chunk_damaged_on_disk_is_refused_not_sent_with_sendfile_on(cluster, where):
    """With WORKER_SENDFILE_MIN_BYTES the worker still verifies a chunk
    before it hands the volume file to sendfile: a payload byte flipped on
    disk (in the first, a middle or the last, short, piece the store reads
    to verify it) is answered 500 chunk_corrupt, quarantined, then 404;
    none of its bytes are sent."""
    m = cluster.add_master()
    w = cluster.add_worker(master=m, **SENDFILE_ENV)
    wc = w.client(h.CLUSTER_SECRET)
    body = os.urandom(3 * SENDFILE_MIN + 1000)
    cid = put_chunk(w, body)
    rec = h.chunk_records(w.data_dir)[cid]
    at = {"first": 0, "middle": len(body) // 2, "last": len(body) - 1}[where]
    with open(rec.path, "r+b") as f:
        f.seek(rec.payload_offset + at)
        byte = f.read(1)
        f.seek(rec.payload_offset + at)
        f.write(bytes([byte[0] ^ 0x01]))
    before = worker_metric(w, SENT_FROM_FILE)
    h.assert_json_error(wc.get(f"/chunks/{cid}"), 500, "chunk_corrupt")
    assert worker_metric(w, SENT_FROM_FILE) == before, "a damaged chunk was sent"
    assert (w.data_dir / "corrupt" / cid).is_file(), "the damaged record was not quarantined"
    h.assert_json_error(wc.get(f"/chunks/{cid}"), 404, "chunk_not_found")


@pytest.mark.requires_workers(reason="counts the bytes the workers send from their volume files")
def test_download_and_ranges_of_large_chunks_sent_from_the_volume_files(cluster):
    """End to end with 1 MiB chunks and WORKER_SENDFILE_MIN_BYTES on: the
    whole file and a range across a chunk boundary come out right, and the
    workers sent the chunks from their volume files."""
    chunk = 1 << 20
    m = cluster.start(workers=3, master_env={"CHUNK_SIZE": chunk, "CHUNK_CACHE_SIZE": 0},
                      worker_env=SENDFILE_ENV)
    c = m.user_client()
    data = os.urandom(3 * chunk + 12345)
    f = c.upload(data, "large.bin")
    before = sum(worker_metric(w, SENT_FROM_FILE) for w in cluster.workers)
    assert c.download(f["file_id"]) == data
    r = c.get(f"/api/v1/files/{f['file_id']}/download",
              headers={"Range": f"bytes={chunk - 10}-{2 * chunk + 9}"})
    assert r.status_code == 206, r.text[:200]
    assert r.content == data[chunk - 10:2 * chunk + 10]
    # The 3 large chunks of the file (its last, 12345 bytes, from memory),
    # then the 3 the range covers.
    sent = sum(worker_metric(w, SENT_FROM_FILE) for w in cluster.workers) - before
    assert sent == 6 * chunk, f"the workers sent {sent} bytes from their volume files"
