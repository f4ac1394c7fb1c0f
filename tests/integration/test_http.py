"""HTTP behaviour shared by every endpoint: routing errors, bad input,
limits, the access log, concurrency and graceful shutdown."""

import json
import re
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import echofs_harness as h
import s3_helpers as s3h
from echofs_harness import CLUSTER_SECRET, assert_json_error


@pytest.fixture(scope="module")
def master(shared_cluster):
    return shared_cluster.add_master("http-master")


def test_unknown_path_is_404_json(master):
    c = master.user_client()
    # ("/" is the dashboard page: test_observability.py)
    for path in ("/nope", "/api/v1/nope", "/api/v2/health", "/api/v1/workers/x",
                 "/api/v1/health/extra", "/api/v1/files/", "//"):
        assert_json_error(c.get(path), 404)
    assert_json_error(master.client().post("/api/v1/nope", json={}), 404)


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/api/v1/health"),
    ("POST", "/api/v1/health"),
    ("GET", "/api/v1/workers/register"),
    ("PUT", "/api/v1/workers"),
    ("GET", "/api/v1/workers/w-1/heartbeat"),
    ("POST", "/api/v1/files"),
])
def test_wrong_method_is_405_json(master, method, path):
    r = master.cluster_client().request(method, path)
    assert_json_error(r, 405)


def test_405_names_the_allowed_methods(master):
    # RFC 9110 15.5.6: a 405 response MUST carry an Allow header.
    r = master.client().delete("/api/v1/health")
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert "GET" in allowed, f"405 without Allow: GET; headers {dict(r.headers)}"


def test_head_answers_like_get_without_a_body(master):
    r = master.client().head("/api/v1/health")
    assert r.status_code == 200
    assert r.content == b""


def test_malformed_json_is_400_json(master):
    c = master.cluster_client()
    for payload in (b"{", b"{\"url\": http://x}", b"\xff\xfe", b"{} trailing"):
        r = c.post("/api/v1/workers/register", data=payload,
                   headers={"Content-Type": "application/json"})
        assert_json_error(r, 400)


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001", "1.5", "", "99999999999999999999999"])
def test_files_limit_out_of_range_is_400(master, limit):
    r = master.user_client().get("/api/v1/files", params={"limit": limit})
    assert_json_error(r, 400)


@pytest.mark.parametrize("limit", ["1", "1000"])
def test_files_limit_in_range_is_accepted(master, limit):
    r = master.user_client().get("/api/v1/files", params={"limit": limit})
    assert r.status_code == 200, r.text
    assert r.json() == {"files": [], "next_cursor": None}


def test_oversized_header_is_refused_and_the_server_stays_up(master):
    r = master.client().get("/api/v1/health", headers={"X-Padding": "a" * (300 * 1024)})
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:200]}"
    many = {f"X-Header-{i}": "b" * 1000 for i in range(300)}
    r = master.client().get("/api/v1/health", headers=many)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:200]}"
    assert master.health()["metadata"] == "ok"


def test_headers_of_16_kib_fit_in_the_masters_connection_memory(master):
    # The master's per-connection pool is 64 KiB (it is zeroed before each
    # request, so it is kept small); a header block of 16 KiB still fits.
    r = master.client().get("/api/v1/health", headers={"X-Padding": "a" * (16 * 1024)})
    assert r.status_code == 200, f"{r.status_code}: {r.text[:200]}"


def test_oversized_body_on_a_small_route_is_413(master):
    c = master.cluster_client()
    r = c.post("/api/v1/workers/register", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
               headers={"Content-Type": "application/json"})
    assert_json_error(r, 413)
    assert master.health()["metadata"] == "ok"


def test_fifty_concurrent_health_requests_succeed(master):
    n = 50
    start = threading.Barrier(n)

    def one(_):
        start.wait(10)
        with requests.Session() as s:  # its own connection
            s.trust_env = False
            r = s.get(master.url + "/api/v1/health", timeout=h.HTTP_TIMEOUT_S)
            return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    assert [status for status, _ in results] == [200] * n
    assert all(body["metadata"] == "ok" for _, body in results)


ACCESS_RE = re.compile(r"\baccess (\S+) (\S+) (\d{3}) .*\bms=(\d+(?:\.\d+)?)")


def test_access_log_has_one_line_per_request(cluster):
    m = cluster.add_master()
    tag = uuid.uuid4().hex[:8]
    c = m.client()
    # Start counting once the readiness probes are logged: a request of our
    # own that is logged after them.
    assert c.get(f"/api/v1/start-{tag}").status_code == 404
    m.wait_for_log(rf"access GET /api/v1/start-{tag} 404")
    mark = m.log_mark()
    expected = [
        ("GET", "/api/v1/health", c.get("/api/v1/health").status_code),
        ("GET", f"/api/v1/nope-{tag}", c.get(f"/api/v1/nope-{tag}").status_code),
        ("GET", "/api/v1/files", c.get("/api/v1/files").status_code),
        ("DELETE", "/api/v1/health", c.delete("/api/v1/health").status_code),
        ("POST", "/api/v1/workers/register",
         m.cluster_client().post("/api/v1/workers/register", data=b"x").status_code),
        # A newline in the path must not split (or forge) a log line.
        ("GET", f"/api/v1/x?{tag}", c.get(f"/api/v1/x%0A{tag}").status_code),
    ]
    assert [s for _, _, s in expected] == [200, 404, 401, 405, 400, 404]

    def lines():
        found = [ACCESS_RE.search(l) for l in m.stderr_since(mark).splitlines()]
        found = [f for f in found if f]
        return found if len(found) >= len(expected) else None
    found = h.wait_until(lines, 5, what="access log lines")
    logged = [(f.group(1), f.group(2), int(f.group(3))) for f in found]
    assert sorted(logged) == sorted(expected), logged
    assert all(float(f.group(4)) >= 0 for f in found)
    assert not any(l.startswith(tag) for l in m.stderr_since(mark).splitlines())


# ---- graceful shutdown -------------------------------------------------------------


def open_request(master, body_sent: bytes, total_len: int,
                 path: str = "/api/v1/workers/register") -> socket.socket:
    """Starts a POST (to the master's /api/v1/workers/register, or @path of
    any daemon) whose body is not complete: sends the headers (Expect:
    100-continue) and waits for "100 Continue", so the daemon has begun the
    request; then sends body_sent."""
    s = socket.create_connection(("127.0.0.1", master.port), timeout=h.HTTP_TIMEOUT_S)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {CLUSTER_SECRET}\r\nContent-Type: application/json\r\n"
               f"Expect: 100-continue\r\nContent-Length: {total_len}\r\n\r\n").encode())
    interim = s.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    s.sendall(body_sent)
    return s


def read_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = s.recv(65536)
        if not piece:
            break
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        piece = s.recv(65536)
        if not piece:
            break
        rest += piece
    return status, rest


@pytest.mark.requires_workers(reason="the request in flight is a worker registration")
def test_sigterm_lets_a_request_in_flight_finish(cluster):
    m = cluster.add_master()
    body = json.dumps({"url": "http://127.0.0.1:9", "capacity_bytes": 10,
                       "free_bytes": 5}).encode()
    s = open_request(m, body[:10], len(body))
    with s:
        m.signal(signal.SIGTERM)
        m.wait_for_log(r"(?i)terminated|sigterm", timeout=5)
        # Nothing to poll for: the master must simply still be there a
        # moment after it took the signal, waiting for this request.
        time.sleep(0.3)
        assert m.running, "the master exited with a request in flight"
        s.sendall(body[10:])
        status, answer = read_response(s)
    assert status == 200, answer
    assert json.loads(answer)["worker_id"].startswith("w")
    rc = m.wait_exit(timeout=5)
    assert rc == 0, m.log_tail()


def read_head_and_body(s: socket.socket) -> tuple[bytes, bytes]:
    """One response on @s: its head (status line and fields) and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = s.recv(65536)
        assert piece, f"connection closed before a whole head: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        piece = s.recv(65536)
        assert piece, "connection closed inside the body"
        rest += piece
    return head, rest


@pytest.mark.requires_workers(reason="the request in flight is a worker registration")
def test_sigterm_closes_kept_connections_after_their_next_reply(cluster):
    """Once the master drains, a kept-alive client's next request is answered
    with "Connection: close" and the connection ends, so a client looping on
    its connection cannot hold the drain open until the grace runs out (the
    rolling-restart test under load saw the master serve for the full 10 s
    its stop allowed)."""
    m = cluster.add_master()
    body = json.dumps({"url": "http://127.0.0.1:9", "capacity_bytes": 10,
                       "free_bytes": 5}).encode()
    get = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", m.port), timeout=h.HTTP_TIMEOUT_S) as kept:
        kept.sendall(get)
        head, _ = read_head_and_body(kept)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert not re.search(rb"(?im)^connection:\s*close", head), head
        held = open_request(m, body[:10], len(body))  # keeps the drain waiting
        with held:
            m.signal(signal.SIGTERM)
            m.wait_for_log(r"(?i)terminated|sigterm", timeout=5)
            # The drain begins once the background threads have stopped,
            # a moment after the log line: until then replies keep the
            # connection. Then the next reply must close it.
            deadline = time.monotonic() + 10
            while True:
                kept.sendall(get)
                head, _ = read_head_and_body(kept)
                assert head.startswith(b"HTTP/1.1 200"), head
                if re.search(rb"(?im)^connection:\s*close", head):
                    break
                assert time.monotonic() < deadline, \
                    f"replies still keep the connection 10 s after SIGTERM: {head!r}"
                time.sleep(0.05)
            assert kept.recv(1) == b"", "the connection stayed open after its last reply"
            held.sendall(body[10:])
            status, answer = read_response(held)
        assert status == 200, answer
    assert m.wait_exit(timeout=5) == 0, m.log_tail()


def test_sigterm_with_a_half_sent_request_line_exits_promptly(cluster):
    m = cluster.add_master()
    with socket.create_connection(("127.0.0.1", m.port)) as s:
        s.sendall(b"GET /api/v1/hea")
        time.sleep(0.1)  # let the server read the fragment before the signal
        assert m.stop() < 5.0


def test_sigterm_with_an_idle_keep_alive_connection_exits_promptly(cluster):
    m = cluster.add_master()
    c = m.client()
    assert c.get("/api/v1/health").status_code == 200  # the connection stays open
    assert m.stop() < 5.0


GRACE_S = 3  # SHUTDOWN_GRACE_MS here; 30 s by default (tests/unit/test_config.c)


def test_sigterm_drains_the_api_and_s3_listeners_within_one_grace(cluster):
    """With S3_PORT the master has two listeners: a stop quiesces both
    and drains them at once, so requests stalled on both hold it for one
    SHUTDOWN_GRACE_MS, not one after the other (it used to take two)."""
    grace_s = 4
    m = s3h.start_s3(cluster, workers=1, SHUTDOWN_GRACE_MS=grace_s * 1000, REPLICATION_FACTOR=1)
    key = s3h.access_key(m, "alice")
    s3h.client(m, key).create_bucket(Bucket="drain")
    url = f"{m.s3_url}/drain/key"
    signed = s3h.signed_request(key, "PUT", url, payload_sha256="UNSIGNED-PAYLOAD")
    s3 = socket.create_connection(("127.0.0.1", m.s3_port), timeout=h.HTTP_TIMEOUT_S)
    s3.sendall((f"PUT /drain/key HTTP/1.1\r\nHost: 127.0.0.1:{m.s3_port}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
                + "Expect: 100-continue\r\nContent-Length: 100\r\n\r\n").encode())
    interim = s3.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    s3.sendall(b"half of it")
    api = open_request(m, b"{\"url\":", 100)
    with api, s3:
        took = m.stop(timeout=2 * grace_s + 10 + h.TIMING_MARGIN_S)
    assert grace_s - 0.5 <= took < 2 * grace_s - 1, f"took {took:.1f}s to exit"


@pytest.mark.parametrize("daemon", ["master", "worker"])
def test_sigterm_with_a_stalled_request_exits_0_after_the_grace_period(cluster, daemon):
    """A request whose body never comes holds a SIGTERM's stop for
    SHUTDOWN_GRACE_MS, no longer: then the daemon closes it and exits 0."""
    m = cluster.add_master(SHUTDOWN_GRACE_MS=GRACE_S * 1000)
    d = m
    if daemon == "worker":
        d = cluster.add_worker(master=m, SHUTDOWN_GRACE_MS=GRACE_S * 1000)
    s = open_request(d, b"{\"url\":", 100,
                     "/api/v1/workers/register" if d is m else "/chunks/batch")
    with s:
        took = d.stop(timeout=GRACE_S + 10 + h.TIMING_MARGIN_S)
    assert GRACE_S - 0.5 <= took <= GRACE_S + 5 + h.TIMING_MARGIN_S, \
        f"took {took:.1f}s to exit"
