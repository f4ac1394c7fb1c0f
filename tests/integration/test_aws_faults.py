"""test_aws_faults.py - S3 and DynamoDB throttling in full AWS mode
(issue 11 item 8): a few throttling answers are retried and the client
never sees them; sustained throttling is a JSON 503, neither a hang nor a
500.

ThrottleProxy sits between the master and one local server (s3rver or
DynamoDB Local): the master's AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL_DYNAMODB names the proxy. It parses each HTTP request and
either answers the throttling error itself (S3: 503 SlowDown; DynamoDB:
400 ThrottlingException or ProvisionedThroughputExceededException) or
forwards the request with its bytes unchanged: the Host header stays the
proxy's address, which is what the master signed, so s3rver's SigV4 check
(scripts/s3rver_sigv4.js recomputes the signature from the headers as
received) accepts it. Modes:

    per_request(n)  the first n attempts of each distinct request
                    (method, path, X-Amz-Target and body: what a retry
                    repeats; the date and signature change) are throttled,
                    the next one is forwarded. n = 3 uses all but the last
                    of aws.c's 4 attempts on every single request.
    always()        every request is throttled (sustained throttling).
    off()           everything is forwarded.

Independently of the mode, hold_deletes() makes the proxy hold every S3
DeleteObject it receives (before forwarding it) until release_deletes()
or HOLD_MAX_S: the collector's HeadObject-then-DeleteObject window (W7)
held open as long as the test needs.

Runs in the AWS round only (ECHOFS_TEST_BACKEND=aws, `make
integration-aws`), where the harness has the local servers and gives each
cluster its bucket and tables.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import echofs_harness as h

pytestmark = pytest.mark.skipif(
    h.BACKEND != "aws", reason="full AWS mode only: ECHOFS_TEST_BACKEND=aws "
    "(make integration-aws), where the harness runs the local AWS servers")

CHUNK = 65536
# aws.c makes 4 attempts (EFS_AWS_DEFAULT_ATTEMPTS): 3 throttled, 1 through.
THROTTLED_ATTEMPTS = 3
GC_GRACE_MS = 1500
# The collector deletes an object once S3 says it is older than grace/2
# (Last-Modified, 1 s resolution): a few seconds at most.
GC_DEADLINE_S = 15 + h.TIMING_MARGIN_S
MAX_BODY = 64 << 20  # the proxy's cap on one request or answer
HOLD_MAX_S = 20  # a held DeleteObject goes on after this, released or not

S3_SLOWDOWN = (503, "application/xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
               b"<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
               b"</Error>")


def dynamodb_throttle(code: str) -> tuple[int, str, bytes]:
    body = ('{"__type":"com.amazonaws.dynamodb.v20120810#%s",'
            '"message":"Rate of requests exceeds the allowed throughput."}' % code)
    return 400, "application/x-amz-json-1.0", body.encode()


class ThrottleProxy:
    """An HTTP/1.1 proxy on a free loopback port in front of @upstream
    (http://host:port) that answers @answer (status, content type, body)
    instead of forwarding, as its mode says (see the module docstring)."""

    def __init__(self, upstream: str, answer: tuple[int, str, bytes]):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.answer = answer
        self.lock = threading.Lock()
        self.mode = "off"
        self.per_request = 0
        self.attempts: dict[str, int] = {}  # request key -> attempts seen
        self.throttled = 0
        self.forwarded = 0
        self.errors: list[str] = []
        self.holding = False
        self.held = threading.Event()  # a DeleteObject is being held
        self.release = threading.Event()
        self.deletes_forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the test reports counts
                pass

            def handle_one(self):
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def per_request_mode(self, n: int) -> None:
        with self.lock:
            self.mode, self.per_request = "per_request", n
            self.attempts.clear()

    def always(self) -> None:
        with self.lock:
            self.mode = "always"

    def off(self) -> None:
        with self.lock:
            self.mode = "off"

    def hold_deletes(self) -> None:
        with self.lock:
            self.holding = True
            self.release.clear()

    def release_deletes(self) -> None:
        with self.lock:
            self.holding = False
            self.release.set()

    def _hold(self, req: BaseHTTPRequestHandler) -> None:
        """Holds a DeleteObject while hold_deletes() is in force."""
        if req.command != "DELETE":
            return
        with self.lock:
            if not self.holding:
                return
            self.held.set()
        if not self.release.wait(HOLD_MAX_S):
            self.errors.append(f"DELETE {req.path}: held {HOLD_MAX_S} s, never released")

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _throttle(self, key: str) -> bool:
        with self.lock:
            seen = self.attempts.get(key, 0)
            self.attempts[key] = seen + 1
            if self.mode == "always" or (self.mode == "per_request" and
                                          seen < self.per_request):
                self.throttled += 1
                return True
            self.forwarded += 1
            return False

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        if req.headers.get("Transfer-Encoding"):
            # The master sends every body with a length (aws.c buffers them).
            self.errors.append(f"{req.command} {req.path}: chunked request body")
            self._reply(req, 501, "text/plain", b"the test proxy takes no chunked bodies")
            return
        length = int(req.headers.get("Content-Length") or 0)
        assert 0 <= length <= MAX_BODY, length
        body = req.rfile.read(length) if length else b""
        key = "%s %s %s %s" % (req.command, req.path, req.headers.get("X-Amz-Target", ""),
                               hashlib.sha256(body).hexdigest())
        if self._throttle(key):
            status, ctype, text = self.answer
            self._reply(req, status, ctype, b"" if req.command == "HEAD" else text)
            return
        self._hold(req)
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            # The request as the master sent it: same headers (Host is the
            # proxy's, as signed), same order, same body.
            conn.putrequest(req.command, req.path, skip_host=True, skip_accept_encoding=True)
            for name, value in req.headers.items():
                conn.putheader(name, value)
            conn.endheaders(body if length else None)
            resp = conn.getresponse()
            data = resp.read(MAX_BODY + 1)
            assert len(data) <= MAX_BODY, "answer over the proxy's cap"
            req.send_response_only(resp.status, resp.reason)
            for name, value in resp.getheaders():
                lname = name.lower()
                if lname in ("transfer-encoding", "connection") or \
                        (lname == "content-length" and req.command != "HEAD"):
                    continue
                req.send_header(name, value)
            if req.command != "HEAD":
                req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
            if req.command == "DELETE":
                with self.lock:
                    self.deletes_forwarded += 1
        except OSError as e:  # the real server is gone: the master sees a reset
            self.errors.append(f"{req.command} {req.path}: {e}")
            req.close_connection = True
        finally:
            conn.close()

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes) -> None:
        req.send_response_only(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("x-amz-request-id", "THROTTLEPROXY")
        req.end_headers()
        req.wfile.write(body)


@pytest.fixture
def s3_proxy():
    p = ThrottleProxy(h.session_aws().env["AWS_ENDPOINT_URL_S3"], S3_SLOWDOWN)
    yield p
    p.close()


def make_dynamodb_proxy(code: str = "ThrottlingException") -> ThrottleProxy:
    return ThrottleProxy(h.session_aws().env["AWS_ENDPOINT_URL_DYNAMODB"],
                         dynamodb_throttle(code))


def text_bytes(n: int) -> bytes:
    line = b"the quick brown fox jumps over the lazy dog, again and again\n"
    return (line * (n // len(line) + 1))[:n]


def session_upload(c, data: bytes, name: str) -> dict:
    r = c.post("/api/v1/files/upload/init",
               json={"name": name, "size": len(data), "chunk_size": CHUNK})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    for i in range(0, max(1, -(-len(data) // CHUNK))):
        r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": i},
                   data=data[i * CHUNK:(i + 1) * CHUNK],
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    r = c.post("/api/v1/files/upload/complete", json={"session_id": sid}, timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()


def exercise(c) -> list[tuple[dict, bytes]]:
    """Uploads (one request, multi-chunk random and text, a session),
    downloads, a range, a listing: what the data path asks of AWS."""
    files = []
    for data, name in [(os.urandom(1000), "small.bin"), (os.urandom(4 * CHUNK + 5), "big.bin"),
                       (text_bytes(3 * CHUNK), "text.txt")]:
        files.append((c.upload(data, name), data))
    sess = os.urandom(2 * CHUNK + 9)
    files.append((session_upload(c, sess, "sess.bin"), sess))
    for f, data in files:
        assert c.download(f["file_id"]) == data, f["name"]
    big_id, big = files[1][0]["file_id"], files[1][1]
    r = c.get(f"/api/v1/files/{big_id}/download",
              headers={"Range": f"bytes={CHUNK - 10}-{2 * CHUNK + 10}"})
    assert r.status_code == 206, r.text
    assert r.content == big[CHUNK - 10:2 * CHUNK + 11]
    names = sorted(f["name"] for f in c.get("/api/v1/files").json()["files"])
    assert names == sorted(f["name"] for f, _ in files)
    return files


def test_s3_throttling_is_retried_and_never_seen(cluster, s3_proxy):
    """Every S3 request (PutObject, HeadObject, GetObject, HeadBucket) is
    answered 503 SlowDown three times before it goes through: uploads,
    downloads, ranges and health all succeed, and the bucket holds each
    distinct chunk once."""
    m = cluster.add_master(AWS_ENDPOINT_URL_S3=s3_proxy.url, CHUNK_SIZE=CHUNK,
                           MIN_CHUNK_SIZE=CHUNK, CHUNK_CACHE_SIZE=0)
    s3_proxy.per_request_mode(THROTTLED_ATTEMPTS)
    c = m.user_client()
    files = exercise(c)
    health = m.cluster_client().get("/api/v1/health").json()
    assert health["status"] == "ok" and health["chunk_store"] == "ok", health
    assert s3_proxy.errors == []
    assert s3_proxy.forwarded > 0
    # each request was throttled 3 times, then went through (a request
    # repeated later, a chunk read twice, goes through at once)
    assert all(n >= THROTTLED_ATTEMPTS + 1 for n in s3_proxy.attempts.values()), \
        s3_proxy.attempts
    assert s3_proxy.throttled == THROTTLED_ATTEMPTS * len(s3_proxy.attempts)
    ids = {ch["chunk_id"] for f, _ in files
           for ch in c.get(f"/api/v1/files/{f['file_id']}").json()["chunks"]}
    keys = h.session_aws().keys(m.aws_env["S3_BUCKET_NAME"], "chunks/")
    assert sorted(k.rsplit("/", 1)[1].split(".")[0] for k in keys) == sorted(ids)


def test_dynamodb_throttling_is_retried_and_never_seen(cluster):
    """Every DynamoDB call (DescribeTable at start, GetItem, PutItem,
    TransactWriteItems, Query, BatchGetItem...) is answered 400
    ThrottlingException three times before it goes through: start,
    uploads, sessions, downloads, listing and delete all succeed."""
    proxy = make_dynamodb_proxy("ThrottlingException")
    try:
        proxy.per_request_mode(THROTTLED_ATTEMPTS)
        m = cluster.add_master(AWS_ENDPOINT_URL_DYNAMODB=proxy.url, CHUNK_SIZE=CHUNK,
                               MIN_CHUNK_SIZE=CHUNK)
        c = m.user_client()
        files = exercise(c)
        f, _ = files[0]
        assert c.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
        h.assert_json_error(c.get(f"/api/v1/files/{f['file_id']}"), 404, "file_not_found")
        assert proxy.errors == []
        assert proxy.throttled >= THROTTLED_ATTEMPTS * 10, proxy.throttled
        # the calls went through after their 3 throttled attempts (one of
        # the background loops may be between two attempts right now)
        through = [k for k, n in proxy.attempts.items() if n > THROTTLED_ATTEMPTS]
        assert len(through) >= 10 and len(through) >= len(proxy.attempts) - 2, proxy.attempts
    finally:
        proxy.close()


def test_sustained_s3_throttling_is_a_json_503(cluster, s3_proxy):
    """S3 throttling every request: an upload is a JSON 503
    chunk_store_unavailable within the retries (no hang, no 500) and leaves
    no file; a download of a stored file is a JSON 503 chunk_unavailable;
    health says the chunk store is unavailable. Once S3 lets requests through again the same master
    uploads and reads."""
    m = cluster.add_master(AWS_ENDPOINT_URL_S3=s3_proxy.url, CHUNK_SIZE=CHUNK,
                           MIN_CHUNK_SIZE=CHUNK, CHUNK_CACHE_SIZE=0)
    c = m.user_client()
    kept_data = os.urandom(2 * CHUNK)
    kept = c.upload(kept_data, "kept.bin")
    s3_proxy.always()
    r = c.post("/api/v1/files/upload", params={"name": "throttled.bin"},
               data=os.urandom(3 * CHUNK), headers={"Content-Type": "application/octet-stream"})
    h.assert_json_error(r, 503, "chunk_store_unavailable")
    h.assert_json_error(c.get(f"/api/v1/files/{kept['file_id']}/download"), 503,
                        "chunk_unavailable")
    health = m.cluster_client().get("/api/v1/health").json()
    assert health["status"] == "degraded" and health["chunk_store"] == "unavailable", health
    assert s3_proxy.throttled > 0 and s3_proxy.errors == []
    m.wait_for_log(r"SlowDown")
    assert [f["name"] for f in c.get("/api/v1/files").json()["files"]] == ["kept.bin"]

    s3_proxy.off()
    assert c.download(kept["file_id"]) == kept_data
    again = os.urandom(3 * CHUNK)
    f = c.upload(again, "after.bin")
    assert c.download(f["file_id"]) == again
    assert m.cluster_client().get("/api/v1/health").json()["chunk_store"] == "ok"


def test_sustained_dynamodb_throttling_is_a_json_503(cluster):
    """DynamoDB throttling every call (ProvisionedThroughputExceededException,
    a provisioned table's answer): reads and writes are a JSON 503
    metadata_unavailable within the retries (no hang, no 500), the upload
    leaves no file; once it lets calls through the same master works."""
    proxy = make_dynamodb_proxy("ProvisionedThroughputExceededException")
    try:
        m = cluster.add_master(AWS_ENDPOINT_URL_DYNAMODB=proxy.url, CHUNK_SIZE=CHUNK,
                               MIN_CHUNK_SIZE=CHUNK)
        c = m.user_client()
        kept_data = os.urandom(CHUNK + 3)
        kept = c.upload(kept_data, "kept.bin")
        proxy.always()
        h.assert_json_error(c.get("/api/v1/files"), 503, "metadata_unavailable")
        h.assert_json_error(c.get(f"/api/v1/files/{kept['file_id']}"), 503,
                            "metadata_unavailable")
        h.assert_json_error(c.get(f"/api/v1/files/{kept['file_id']}/download"), 503,
                            "metadata_unavailable")
        r = c.post("/api/v1/files/upload", params={"name": "throttled.bin"},
                   data=os.urandom(2 * CHUNK), headers={"Content-Type": "application/octet-stream"})
        h.assert_json_error(r, 503)
        r = c.post("/api/v1/files/upload/init", json={"name": "s.bin", "size": 10})
        h.assert_json_error(r, 503, "metadata_unavailable")
        assert m.client().get("/api/v1/health").status_code == 503
        assert proxy.throttled > 0 and proxy.errors == []
        # The warning should name AWS's code; the backend drops it on some
        # calls ("Query (by_owner) failed:  (Resource temporarily
        # unavailable)"), noted on issue 11: only the line is checked.
        m.wait_for_log(r"WARN .*dynamodb: .*failed")

        proxy.off()
        assert [f["name"] for f in c.get("/api/v1/files").json()["files"]] == ["kept.bin"]
        assert c.download(kept["file_id"]) == kept_data
        f = c.upload(kept_data + b"x", "after.bin")
        assert c.download(f["file_id"]) == kept_data + b"x"
    finally:
        proxy.close()


def test_collector_delete_racing_an_upload_through_another_master_loses_nothing(cluster):
    """W7 (docs/LIFECYCLE.md R13): two masters over one bucket and one set
    of tables, each reaching S3 through its own proxy that holds
    DeleteObject. A one-chunk file is uploaded and deleted; the lease
    holder's collector takes the chunk's row, finds the object old enough
    and sends DeleteObject, which its proxy holds. Meanwhile the same
    bytes are uploaded through the other master: it finds no row, so it
    stores the chunk anew and records it. Only then does the held delete
    reach S3. The new file must read back through both masters (before
    generation keys, the delete removed the object the new file names:
    503 chunk_unavailable), and once it is deleted too the bucket must
    empty within the usual time."""
    s3_url = h.session_aws().env["AWS_ENDPOINT_URL_S3"]
    proxies = [ThrottleProxy(s3_url, S3_SLOWDOWN) for _ in range(2)]
    try:
        for p in proxies:
            p.hold_deletes()
        masters = [cluster.add_master(AWS_ENDPOINT_URL_S3=p.url, CHUNK_SIZE=CHUNK,
                                      MIN_CHUNK_SIZE=CHUNK, CHUNK_CACHE_SIZE=0,
                                      GC_GRACE_MS=GC_GRACE_MS, LOG_LEVEL="debug")
                   for p in proxies]
        bucket = masters[0].aws_env["S3_BUCKET_NAME"]
        assert masters[1].aws_env["S3_BUCKET_NAME"] == bucket
        data = os.urandom(CHUNK)  # one chunk: the file row and its chunk together
        c0 = masters[0].user_client()
        first = c0.upload(data, "first.bin")
        assert c0.delete(f"/api/v1/files/{first['file_id']}").status_code == 204
        h.wait_until(lambda: any(p.held.is_set() for p in proxies), GC_DEADLINE_S,
                     what="the collector's DeleteObject to reach its proxy")
        holder = next(i for i, p in enumerate(proxies) if p.held.is_set())
        other = masters[1 - holder]
        proxies[1 - holder].release_deletes()  # only the lease holder collects

        # The row is gone (the collector took it before its HeadObject):
        # the other master stores the bytes anew while the delete waits.
        c = other.user_client()
        second = c.upload(data, "second.bin")
        proxies[holder].release_deletes()
        h.wait_until(lambda: proxies[holder].deletes_forwarded >= 1, 30,
                     what="the held DeleteObject to reach S3")
        for m in masters:
            r = m.user_client().get(f"/api/v1/files/{second['file_id']}/download")
            assert r.status_code == 200, \
                f"the file uploaded during the collector's delete is lost: {r.text[:300]}"
            assert r.content == data
        assert all(p.errors == [] for p in proxies), [p.errors for p in proxies]

        assert c.delete(f"/api/v1/files/{second['file_id']}").status_code == 204
        h.wait_until(lambda: h.session_aws().keys(bucket, "chunks/") == [], GC_DEADLINE_S,
                     what="the collector to empty the bucket")
    finally:
        for p in proxies:
            p.close()
