"""Limits on the request head and RFC 9112 framing, on raw sockets
(docs/API.md, Limits; issue 12 item 10).

Every refusal EchoFS can make is a 4xx/501 with the JSON envelope, decided
before any other work. A request whose body's length could be read two
ways is answered before its body is read and its connection closes: the
tests hide a second, well-formed request where one reading would find it
and assert that it is never answered. What libmicrohttpd refuses itself
(a malformed Content-Length, a head too large for its memory) gets its
HTML page, but must close the connection too.
"""

import hashlib
import json
import re
import socket
import ssl

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error

MAX_TARGET = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
MAX_PARAMS = 100
MAX_JSON_DEPTH = 32

# The request a smuggler hides: answered only if some reading of the first
# request ends before it.
HIDDEN = b"GET /api/v1/health?hidden=1 HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def master(shared_cluster):
    return shared_cluster.add_master("wire-master")


@pytest.fixture(scope="module")
def worker(shared_cluster, master):
    return shared_cluster.add_worker(master=master)


def connect(proc, timeout=3.0):
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=timeout)
    if proc.cluster.tls:
        ctx = ssl.create_default_context(cafile=h.session_tls().ca)
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.settimeout(timeout)
    return sock


def exchange(proc, data: bytes, timeout=3.0):
    """Sends @data on a fresh connection; reads until the server closes it
    or @timeout passes. Returns (responses, closed): each response is
    (status, headers dict with lower-case names, body bytes)."""
    raw, closed = exchange_raw(proc, data, timeout)
    return parse_responses(raw), closed


def exchange_raw(proc, data: bytes, timeout=3.0):
    sock = connect(proc, timeout)
    raw = b""
    closed = False
    try:
        sock.sendall(data)
        while True:
            piece = sock.recv(65536)
            if not piece:
                closed = True
                break
            raw += piece
    except socket.timeout:
        pass
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        closed = True
    finally:
        sock.close()
    return raw, closed


def parse_responses(raw: bytes):
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {raw[:300]!r}"
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", lines[0] + b" ")
        assert m, f"not a status line: {lines[0]!r}"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        length = int(headers.get("content-length", "0"))
        out.append((int(m.group(1)), headers, rest[:length]))
        raw = rest[length:]
    return out


def assert_envelope(resp, status, code):
    got_status, headers, body = resp
    assert got_status == status, f"status {got_status}, expected {status}: {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), \
        f"not the JSON envelope: {headers} {body[:300]!r}"
    err = json.loads(body)["error"]
    assert err["code"] == code, f"code {err['code']!r}, expected {code!r}: {err}"
    assert err["message"]
    return err


def get(target: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def fields(count: int, total_bytes: int) -> bytes:
    """@count header fields (Host included) whose names and values total
    @total_bytes."""
    names = [b"Host"] + [b"X-F%d" % i for i in range(count - 1)]
    values = [b"x"] + [b"" for _ in range(count - 1)]
    spare = total_bytes - sum(len(n) + len(v) for n, v in zip(names, values))
    assert spare >= 0
    values[-1] += b"v" * spare
    return b"".join(n + b": " + v + b"\r\n" for n, v in zip(names, values))


def health(extra_target: bytes = b"", head: bytes = b"Host: x\r\n") -> bytes:
    return b"GET /api/v1/health" + extra_target + b" HTTP/1.1\r\n" + head + b"\r\n"


# ---- head limits: ours, with the envelope ----------------------------------


def test_request_target_over_8_kib_is_414_json(master):
    base = b"/api/v1/health?pad="
    at = base + b"a" * (MAX_TARGET - len(base))
    (resp,), _ = exchange(master, get(at), timeout=1.0)
    assert resp[0] == 200, resp
    (resp,), _ = exchange(master, get(at + b"a"), timeout=1.0)
    assert_envelope(resp, 414, "uri_too_long")
    # Percent-encoding counts as sent, not decoded.
    (resp,), _ = exchange(master, get(base + b"%41" * (MAX_TARGET // 3 + 1)), timeout=1.0)
    assert_envelope(resp, 414, "uri_too_long")


def test_more_than_100_header_fields_is_431_json(master):
    (resp,), _ = exchange(master, b"GET /api/v1/health HTTP/1.1\r\n" +
                          fields(MAX_HEADERS, 2000) + b"\r\n", timeout=1.0)
    assert resp[0] == 200, resp
    (resp,), _ = exchange(master, b"GET /api/v1/health HTTP/1.1\r\n" +
                          fields(MAX_HEADERS + 1, 2000) + b"\r\n", timeout=1.0)
    assert_envelope(resp, 431, "headers_too_large")


def test_header_fields_over_32_kib_are_431_json(master):
    (resp,), _ = exchange(master, b"GET /api/v1/health HTTP/1.1\r\n" +
                          fields(3, MAX_HEADER_BYTES) + b"\r\n", timeout=1.0)
    assert resp[0] == 200, resp
    (resp,), _ = exchange(master, b"GET /api/v1/health HTTP/1.1\r\n" +
                          fields(3, MAX_HEADER_BYTES + 1) + b"\r\n", timeout=1.0)
    assert_envelope(resp, 431, "headers_too_large")


def test_more_than_100_query_parameters_is_400_json(master):
    params = b"&".join(b"p%d=1" % i for i in range(MAX_PARAMS))
    (resp,), _ = exchange(master, get(b"/api/v1/health?" + params), timeout=1.0)
    assert resp[0] == 200, resp
    (resp,), _ = exchange(master, get(b"/api/v1/health?" + params + b"&x=1"), timeout=1.0)
    assert_envelope(resp, 400, "too_many_parameters")
    # A list endpoint refuses them the same way, before authentication.
    (resp,), _ = exchange(master, get(b"/api/v1/files?" + params + b"&x=1"), timeout=1.0)
    assert_envelope(resp, 400, "too_many_parameters")


def test_a_head_at_every_limit_at_once_is_served(master, worker):
    """libmicrohttpd's own limit (the master's 64 KiB per connection) is
    above ours: a request at all of them together reaches EchoFS."""
    params = b"&".join(b"p%d=1" % i for i in range(MAX_PARAMS - 1))
    target = b"/api/v1/health?" + params + b"&pad="
    target += b"a" * (MAX_TARGET - len(target))
    (resp,), _ = exchange(master, b"GET " + target + b" HTTP/1.1\r\n" +
                          fields(MAX_HEADERS, MAX_HEADER_BYTES) + b"\r\n", timeout=1.0)
    assert resp[0] == 200, resp
    # The worker's /health wants the cluster secret: 401 is past the head.
    target = target.replace(b"/api/v1/health", b"/health")
    (resp,), _ = exchange(worker, b"GET " + target + b" HTTP/1.1\r\n" +
                          fields(MAX_HEADERS, MAX_HEADER_BYTES) + b"\r\n", timeout=1.0)
    assert_envelope(resp, 401, "unauthorized")


# ---- framing and header syntax: ours, answered at once, then closed --------

def _te_cl(te, cl):
    return (b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n" + te + cl + b"\r\n"
            b"0\r\n\r\n" + HIDDEN)


FRAMING_CASES = {
    # RFC 9112 6.1: with both, a proxy reading Content-Length and a server
    # reading chunked disagree on where the next request starts.
    "content-length and chunked": (
        _te_cl(b"Transfer-Encoding: chunked\r\n", b"Content-Length: %d\r\n" % (5 + len(HIDDEN))),
        400, "invalid_framing"),
    "chunked then a short content-length": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN, 400, "invalid_framing"),
    # RFC 9112 6.3: differing lengths; we refuse equal ones too.
    "two content-lengths": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Content-Length: %d\r\n\r\n" % len(HIDDEN) + HIDDEN, 400, "invalid_framing"),
    "two equal content-lengths": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 2\r\n\r\n{}" + HIDDEN, 400, "invalid_framing"),
    # RFC 9112 6.1: a coding we do not know: 501; chunked not last: 400.
    "gzip, chunked": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + HIDDEN,
        501, "unsupported_transfer_coding"),
    "gzip and chunked in two fields": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN,
        501, "unsupported_transfer_coding"),
    "identity": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: identity\r\n\r\n" + HIDDEN, 400, "invalid_framing"),
    "chunked, identity": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + HIDDEN,
        400, "invalid_framing"),
    "chunked twice": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n0\r\n\r\n" + HIDDEN,
        400, "invalid_framing"),
    "chunked in HTTP/1.0": (
        b"POST /api/v1/workers/register HTTP/1.0\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN, 400, "invalid_framing"),
    # RFC 9112 5.1: no whitespace between a field name and the colon.
    "space before the colon": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length : %d\r\n\r\n" % len(HIDDEN) + HIDDEN, 400, "malformed_header"),
    "tab before the colon": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n" + HIDDEN, 400, "malformed_header"),
    # RFC 9112 5.2: obs-fold. libmicrohttpd 0.9.75 would glue the
    # continuation to the field name, making "Content-Length" out of it.
    "obs-fold": (
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + HIDDEN,
        400, "malformed_header"),
    "obs-fold making a content-length": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nContent-: %d\r\n Length\r\n"
        b"\r\n" % len(HIDDEN) + HIDDEN, 400, "malformed_header"),
    "obs-fold into a known field": (
        b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nX-A: a\r\n"
        b" Content-Length: %d\r\n\r\n" % len(HIDDEN) + HIDDEN, 400, "malformed_header"),
}


@pytest.mark.parametrize("case", sorted(FRAMING_CASES))
def test_ambiguous_framing_is_refused_and_the_connection_closes(master, case):
    data, status, code = FRAMING_CASES[case]
    responses, closed = exchange(master, data)
    assert len(responses) == 1, \
        f"{case}: {len(responses)} replies (a hidden request was served): {responses}"
    assert_envelope(responses[0], status, code)
    assert responses[0][1].get("connection", "").lower() == "close", responses[0][1]
    assert closed, f"{case}: the connection stayed open after the reply"


def test_a_worker_refuses_ambiguous_framing_too(worker):
    w = worker
    data = (b"PUT /chunks/" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN)
    responses, closed = exchange(w, data)
    assert len(responses) == 1 and closed, responses
    assert_envelope(responses[0], 400, "invalid_framing")


# ---- what libmicrohttpd refuses itself: its page, but the connection closes

@pytest.mark.parametrize("value,status", [
    (b"-1", 400), (b"+5", 400), (b"1x", 400), (b"0, 0", 400),
    (b"99999999999999999999999", 413),
])
def test_a_malformed_content_length_is_refused_and_the_connection_closes(master, value, status):
    data = (b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nContent-Length: " + value +
            b"\r\n\r\n" + HIDDEN)
    raw, closed = exchange_raw(master, data)
    # libmicrohttpd 0.9.75 sends the head of this page twice: only its
    # status counts, and that nothing else is answered.
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)
    assert statuses and {int(x) for x in statuses} == {status}, raw[:500]
    assert closed


CHUNKED_HEAD = (b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


@pytest.mark.parametrize("body,status", [
    (b"zz\r\nab\r\n0\r\n\r\n", 400),                     # not hex
    (b"-2\r\nab\r\n0\r\n\r\n", 400),
    (b"0x2\r\nab\r\n0\r\n\r\n", 400),
    (b"2\r\nabcd\r\n0\r\n\r\n", 400),                    # data past the size
    (b"ffffffffffffffffffff\r\nab\r\n0\r\n\r\n", 413),   # size overflows
])
def test_a_malformed_chunked_body_is_refused_and_the_connection_closes(master, body, status):
    """libmicrohttpd decodes chunked bodies; its refusals (HTML) close the
    connection, so what follows a bad chunk is never read as a request."""
    raw, closed = exchange_raw(master, CHUNKED_HEAD + body + HIDDEN)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"%d" % status], raw[:500]
    assert closed


@pytest.mark.parametrize("body", [
    b"2;ext=1\r\n{}\r\n0\r\n\r\n",   # a chunk extension
    b"2\n{}\n0\n\n",                    # bare LFs
    b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n",  # a trailer
])
def test_a_valid_chunked_body_is_read_once(master, body):
    responses, _ = exchange(master, CHUNKED_HEAD + body + HIDDEN, timeout=1.0)
    # Refused for its missing token after its body; then the next request.
    assert [r[0] for r in responses] == [401, 200], responses


def test_a_head_beyond_the_connection_memory_is_refused_and_the_server_stays_up(master):
    raw, closed = exchange_raw(master, get(b"/api/v1/health?x=" + b"a" * (80 * 1024)) + HIDDEN)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"414"] and closed, raw[:500]
    raw, closed = exchange_raw(master, health(head=b"Host: x\r\nX-A: " + b"a" * (80 * 1024) +
                                              b"\r\n") + HIDDEN)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"431"] and closed, raw[:500]
    assert master.health()["metadata"] == "ok"


# ---- what is accepted -------------------------------------------------------

def test_pipelined_requests_are_each_answered_once(master):
    responses, _ = exchange(master, health() + HIDDEN, timeout=1.0)
    assert [r[0] for r in responses] == [200, 200], responses


def test_bare_lf_line_endings_are_one_reading(master):
    """RFC 9112 2.2 lets a server take a bare LF as a line end; it then
    does so everywhere, so each request is read once."""
    data = (b"GET /api/v1/health HTTP/1.1\nHost: x\n\n" +
            b"POST /api/v1/workers/register HTTP/1.1\nHost: x\nContent-Length: %d\n\n"
            % len(HIDDEN) + HIDDEN)
    responses, _ = exchange(master, data, timeout=1.0)
    assert [r[0] for r in responses] == [200, 401], responses


def test_a_chunked_body_alone_is_still_read(master):
    c = master.cluster_client()
    r = c.post("/api/v1/workers/register", data=iter([b"{", b"\"url\": 5", b"}"]),
               headers={"Content-Type": "application/json"})
    assert "chunked" in r.request.headers.get("Transfer-Encoding", "")
    assert_json_error(r, 400, "invalid_field")
    data = (b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n"
            b"\r\n0\r\n\r\n" + HIDDEN)
    responses, _ = exchange(master, data, timeout=1.0)
    # Refused (no token) after its empty body; the next request is served.
    assert [r[0] for r in responses] == [401, 200], responses


# ---- JSON nesting -----------------------------------------------------------

def nested(depth: int) -> bytes:
    """An object whose "x" member nests arrays to @depth levels in all."""
    return b"{\"x\": " + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_json_bodies_nested_past_32_levels_are_400_before_parsing(master):
    c = master.cluster_client()
    r = c.post("/api/v1/workers/register", data=nested(MAX_JSON_DEPTH),
               headers={"Content-Type": "application/json"})
    assert_json_error(r, 400, "invalid_field")  # parsed: its url is missing
    r = c.post("/api/v1/workers/register", data=nested(MAX_JSON_DEPTH + 1),
               headers={"Content-Type": "application/json"})
    err = assert_json_error(r, 400, "invalid_json")
    assert "nested" in err["message"], err
    # Every JSON endpoint goes through the same check, a user's too.
    u = master.user_client()
    r = u.post("/api/v1/files/upload/init", data=b"[" * 5000 + b"]" * 5000,
               headers={"Content-Type": "application/json"})
    assert_json_error(r, 400, "invalid_json")
    assert master.health()["metadata"] == "ok"


def test_a_worker_still_takes_a_64_mib_chunk_with_its_head_checked(worker):
    """The head checks run on every worker request too; a chunk of the
    largest session chunk size still goes in and comes back."""
    body = b"\x5a" * (64 * 1024 * 1024)
    chunk_id = hashlib.sha256(body).hexdigest()
    wc = worker.client(h.CLUSTER_SECRET)
    r = wc.put(f"/chunks/{chunk_id}", data=body, headers={"X-Chunk-Encoding": "identity"})
    assert r.status_code == 201, r.text
    r = wc.get(f"/chunks/{chunk_id}")
    assert r.status_code == 200 and r.content == body


def test_unusual_but_valid_fields_are_served(master):
    """The syntax checks refuse nothing RFC 9110/9112 allows: empty values,
    whitespace-only values, colons inside values, lower-case names, no
    space after the colon, cookies, empty query pieces."""
    data = (b"GET /api/v1/health?a=%41&&b HTTP/1.1\r\nhost:x\r\nCookie: a=b; c=d\r\nX-E:\r\n"
            b"X-F:    \r\nX-G:\tv  \r\nX-H: a:b:c\r\nX-Tok!#$%&'*+-.^_`|~: 1\r\n\r\n")
    responses, _ = exchange(master, data, timeout=1.0)
    assert [r[0] for r in responses] == [200], responses
