"""The abuse run (issue 12, "Done when"): every abuse class at once against
one cluster, while honest clients upload and download.

One master and three workers (REPLICATION_FACTOR 2), one of them on a
32 MiB tmpfs, Redis pointed at a blackhole (a socket that accepts and
never answers), UPLOAD_MEMORY at its minimum (128 MiB), a 16 MiB chunk
cache. For RUN_S seconds, together:

  memory      ATTACKERS threads sending 60 MiB raw and multipart chunk
              bodies that name a session that does not exist, or are too
              large for their session, whole and without waiting for 100
              Continue; a user holding two 16 MiB chunks of a real session
              stalled one byte before their end (64 MiB of the budget);
  slow        SLOW_CLIENTS connections that send part of a request head and
              trickle a byte now and then, reopened as the master closes
              them (HEADER_TIMEOUT_MS 3 s);
  malformed   every refusal of test_wire_limits.py's framing cases and
              test_datapath_limits.py's bad uploads (multipart, form fields
              over 64 KiB, bad UTF-8 and control characters in names), head
              sizes, JSON depth and size, chunk indices and lengths, ranges,
              cursors, paths, methods and tokens, each with the status it
              must get;
  Redis       every Redis call goes to the blackhole;
  scrapes     SCRAPERS threads fetching /metrics back to back;
  disk        another tenant of the small worker's disk fills it, leaves it
              2 MiB for 0.4 s, fills it again: chunk writes placed while it
              looked free meet ENOSPC (507), the master places them
              elsewhere; it ends full;
  retries     every honest session's complete is sent first with its reply
              never read (a lost 201); then, as a resuming client does, its
              status is asked (all chunks received, or completed), and
              complete is sent again, sometimes twice at once;

while HONEST clients (one user each) upload one-request files (raw and
multipart, one chunk and several) and session files (several chunks) and
read them back (whole and in ranges).

Asserted: health answers 200 within HEALTH_BOUND_S at every sample, and
no worker is ever listed dead (heartbeats get through); every
honest request gets its success status, the only other answer allowed
being 503 upload_memory_full with Retry-After (which a well-formed request
gets whenever the upload budget is full, and is retried); every abusive
request gets exactly the refusal documented for it (no 5xx but the 501 RFC
9112 prescribes for an unknown transfer coding); the master's peak RSS
(VmHWM) stays under RSS_BOUND; afterwards every acknowledged file reads
back byte-identical, each honest user owns exactly the files acknowledged
to them (a retried complete made no second file), all workers are alive
and the full worker still serves what it holds. docs/OPERATIONS.md, "Abuse
run", has the figures.

Raw sockets: skipped over HTTPS. Under sanitizers the memory bound is not
checked (ASan's shadow memory and quarantine inflate RSS several times).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from typing import Callable, Optional

import pytest
import requests

import echofs_harness as h
from test_datapath_limits import BAD_UPLOADS
from test_upload_memory import open_chunk_request, read_reply, send_multipart, send_raw
from test_wire_limits import FRAMING_CASES, HIDDEN, exchange, exchange_raw, fields, nested

pytestmark = pytest.mark.skipif(h.TLS, reason="the abuse classes speak raw HTTP on sockets")

MIB = 1 << 20
RUN_S = 20.0
UPLOAD_MEMORY = 128 * MIB         # the minimum the master accepts
CHUNK_CACHE_SIZE = 16 * MIB
CHUNK_SIZE = 256 * 1024
PIPELINE_BUDGET = 32 * MIB        # OPERATIONS.md: the pipeline's 16 MiB and its copies
# What the master needs besides upload bytes and the chunk cache: code,
# SQLite's page cache, 512 connections' 64 KiB memory pools and thread
# stacks, libcurl handles. Measured on main: see OPERATIONS.md.
RSS_OVERHEAD = 64 * MIB
RSS_BOUND = UPLOAD_MEMORY + PIPELINE_BUDGET + CHUNK_CACHE_SIZE + RSS_OVERHEAD
HEALTH_BOUND_S = 2.0 + (h.TIMING_MARGIN_S if h.SANITIZE else 0.0)
SMALL_DISK = 32 * MIB
# The others are capped, so that placement (weighted by free space) sends
# the small one its share.
BIG_CAPACITY = 512 * MIB
# What the ballast leaves free on the small disk between fillings.
BALLAST_LEAVES = 2 * MIB
HONEST = 6
SLOW_CLIENTS = 300                # below the 448 past which waiting connections are evicted
HEADER_TIMEOUT_MS = 3000
SCRAPERS = 4
ATTACKERS = 3
ATTACK_BODY = 60 * MIB
STALLED_CHUNK = 16 * MIB
CLIENT_TIMEOUT_S = 120.0


class Run:
    """What every thread of the run records, and the stop signal."""

    def __init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.counts: Counter = Counter()
        self.health: list[tuple[float, object]] = []  # (seconds, status or error)
        self.rss: list[int] = []
        # file_id -> (owner, size, sha256); owner -> {file_id}
        self.acked: dict[str, tuple[str, int, str]] = {}
        self.owned: dict[str, set[str]] = {}

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def ack(self, owner: str, f: dict, data: bytes) -> None:
        with self.lock:
            self.acked[f["file_id"]] = (owner, len(data), hashlib.sha256(data).hexdigest())
            self.owned.setdefault(owner, set()).add(f["file_id"])

    def loop(self, body: Callable[[], None], name: str) -> threading.Thread:
        """A thread running body() until stop; an exception is a violation."""
        def run():
            while not self.stop.is_set():
                try:
                    body()
                except Exception as e:  # noqa: BLE001 - reported at the end
                    self.violation(f"{name}: {e!r}"[:400])
                    self.stop.wait(0.2)
        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        return t


def describe(r: requests.Response) -> str:
    return f"{r.request.method} {r.request.path_url[:80]} -> {r.status_code} {r.text[:200]!r}"


def error_code(r: requests.Response) -> Optional[str]:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# ---- honest clients ---------------------------------------------------------------


class Honest:
    """One user uploading and reading back, retrying what the API says to
    retry (503 upload_memory_full with Retry-After)."""

    def __init__(self, run: Run, m: h.Master, index: int):
        self.run, self.m = run, m
        self.user = f"honest{index}"
        self.c = m.client(m.cluster.token(self.user))
        self.c.timeout = CLIENT_TIMEOUT_S
        self.rng = random.Random(index)
        self.mine: list[tuple[str, bytes]] = []  # (file_id, data) of small files
        self.ops = itertools.cycle([self.raw_upload, self.multipart_upload, self.session_upload,
                                    self.read_back, self.multichunk_upload, self.session_upload,
                                    self.read_back])

    def send(self, what: str, expect: int, call: Callable[[], requests.Response]):
        """call() until it answers @expect; a 503 upload_memory_full with
        Retry-After is retried, anything else is a violation (None)."""
        while True:
            r = call()
            self.run.count(f"honest {r.status_code}")
            if r.status_code == expect:
                return r
            if r.status_code == 503 and error_code(r) == "upload_memory_full" and \
                    r.headers.get("Retry-After") == "1":
                self.run.count("honest retried after upload_memory_full")
                time.sleep(0.2 + 0.3 * self.rng.random())
                continue
            self.run.violation(f"honest {self.user} {what}: {describe(r)}")
            return None

    def data(self, size: int) -> bytes:
        if self.rng.random() < 0.3:  # compressible
            line = f"{self.user} line {self.rng.random()}\n".encode()
            return (line * (size // len(line) + 1))[:size]
        return os.urandom(size)

    def acked(self, f: dict, data: bytes) -> None:
        if (f["size"], f["sha256"], f["owner"]) != \
                (len(data), hashlib.sha256(data).hexdigest(), self.user):
            self.run.violation(f"honest {self.user}: file {f} does not describe the bytes sent")
        self.run.ack(self.user, f, data)
        if len(data) <= 512 * 1024:
            self.mine.append((f["file_id"], data))

    def step(self) -> None:
        next(self.ops)()

    def raw_upload(self) -> None:
        data = self.data(self.rng.randint(1, 200_000))
        name = f"raw-{self.rng.random()}.bin"
        r = self.send("raw upload", 201, lambda: self.c.post(
            "/api/v1/files/upload", params={"name": name}, data=data,
            headers={"Content-Type": "application/octet-stream"}))
        if r is not None:
            self.acked(r.json(), data)

    def multipart_upload(self) -> None:
        data = self.data(self.rng.randint(0, 300_000))
        name = f"form-{self.rng.random()}.bin"
        r = self.send("multipart upload", 201, lambda: self.c.post(
            "/api/v1/files/upload", files={"file": (name, data)}))
        if r is not None:
            self.acked(r.json(), data)

    def multichunk_upload(self) -> None:
        data = self.data(2 * CHUNK_SIZE + self.rng.randint(1, CHUNK_SIZE))
        name = f"big-{self.rng.random()}.bin"
        r = self.send("multi-chunk upload", 201, lambda: self.c.post(
            "/api/v1/files/upload", params={"name": name}, data=data,
            headers={"Content-Type": "application/octet-stream"}))
        if r is not None:
            self.acked(r.json(), data)

    def session_upload(self) -> None:
        cs = 65536 * self.rng.choice((1, 4))
        data = self.data(cs * self.rng.randint(1, 4) + self.rng.randint(0, cs - 1))
        r = self.send("init", 201, lambda: self.c.post(
            "/api/v1/files/upload/init",
            json={"name": f"session-{self.rng.random()}.bin", "size": len(data),
                  "chunk_size": cs}))
        if r is None:
            return
        sid = r.json()["session_id"]
        pieces = [data[i:i + cs] for i in range(0, len(data), cs)] or [b""]
        order = list(range(len(pieces)))
        self.rng.shuffle(order)
        for i in order:
            if not pieces[i]:
                continue
            if self.send(f"chunk {i}", 200, lambda i=i: self.c.post(
                    "/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": i},
                    data=pieces[i], headers={"Content-Type": "application/octet-stream"})) is None:
                return
        self.complete_with_retries(sid, data, cs)

    def complete_with_retries(self, sid: str, data: bytes, chunk_size: int) -> None:
        """complete as a client that lost the reply does it: the first one's
        201 is never read, then it is sent again (sometimes twice at once),
        and every answer must be the one file."""
        body = json.dumps({"session_id": sid}).encode()
        lost = socket.create_connection(("127.0.0.1", self.m.port), timeout=10)
        lost.sendall(b"POST /api/v1/files/upload/complete HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: " + self.c.headers["Authorization"].encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        lost.close()
        self.run.count("complete sent and its reply lost")
        # A resuming client asks first what the session holds: every chunk,
        # or the file it became, whether the lost complete has finished.
        r = self.send("status", 200, lambda: self.c.get(f"/api/v1/files/upload/{sid}"))
        if r is None:
            return
        every = list(range(-(-len(data) // chunk_size)))
        if r.json().get("state") != "completed" and r.json().get("received") != every:
            self.run.violation(f"status of {sid} after a lost complete: {r.text[:200]}")
        replies: list[Optional[requests.Response]] = []

        def again():
            replies.append(self.send("complete again", 201, lambda: self.c.post(
                "/api/v1/files/upload/complete", json={"session_id": sid})))
        if self.rng.random() < 0.5:
            other = self.m.client(self.c.headers["Authorization"].split()[1])
            other.timeout = CLIENT_TIMEOUT_S
            t = threading.Thread(target=lambda: replies.append(self.send(
                "complete at once", 201, lambda: other.post(
                    "/api/v1/files/upload/complete", json={"session_id": sid}))))
            t.start()
            again()
            t.join(CLIENT_TIMEOUT_S)
            other.close()
        else:
            again()
        again()
        if any(r is None for r in replies):
            return
        files = [r.json() for r in replies]
        self.run.count("complete retried", len(files))
        if len({f["file_id"] for f in files}) != 1:
            self.run.violation(f"retried completes of {sid} answered several files: {files}")
            return
        self.acked(files[0], data)

    def read_back(self) -> None:
        if not self.mine:
            return
        file_id, data = self.rng.choice(self.mine)
        r = self.send("download", 200, lambda: self.c.get(f"/api/v1/files/{file_id}/download"))
        if r is not None and r.content != data:
            self.run.violation(f"honest {self.user}: {file_id} read back different bytes")
        if len(data) > 10:
            first = self.rng.randrange(len(data) - 1)
            last = self.rng.randrange(first, len(data))
            r = self.send("range", 206, lambda: self.c.get(
                f"/api/v1/files/{file_id}/download", headers={"Range": f"bytes={first}-{last}"}))
            if r is not None and r.content != data[first:last + 1]:
                self.run.violation(f"honest {self.user}: range {first}-{last} of {file_id} differs")


# ---- abusers ----------------------------------------------------------------------


class Attacker:
    """Memory: large bodies the master must not hold, and a user who holds
    what she may."""

    def __init__(self, run: Run, m: h.Master):
        self.run, self.m = run, m
        self.user = "mallory"
        self.token = m.cluster.token(self.user)
        self.c = m.client(self.token)
        self.c.timeout = CLIENT_TIMEOUT_S
        r = self.c.post("/api/v1/files/upload/init", json={"name": "m.bin", "chunk_size": 65536})
        assert r.status_code == 201, r.text
        self.small_sid = r.json()["session_id"]
        self.kinds = itertools.cycle([self.raw_missing, self.multipart_missing,
                                      self.too_large_for_session])
        self.stalled: list[socket.socket] = []

    def expect(self, what: str, got, status: int, code: str) -> None:
        self.run.count(f"attack {what}")
        if (got[0], got[1].get("error", {}).get("code")) != (status, code):
            self.run.violation(f"attack {what}: {got[0]} {got[1]}, expected {status} {code}")

    def raw_missing(self) -> None:
        got = send_raw(self.m, self.token, f"session_id={'0' * 32}&chunk_index=0", ATTACK_BODY)
        self.expect("raw 60 MiB chunk, no such session", got, 404, "session_not_found")

    def multipart_missing(self) -> None:
        got = send_multipart(self.m, self.token, [("session_id", "f" * 32), ("chunk_index", "0")],
                             ATTACK_BODY)
        self.expect("multipart 60 MiB chunk, no such session", got, 404, "session_not_found")

    def too_large_for_session(self) -> None:
        got = send_raw(self.m, self.token, f"session_id={self.small_sid}&chunk_index=0",
                       ATTACK_BODY)
        self.expect("raw 60 MiB chunk, too large for its session", got, 400, "chunk_too_large")

    def step(self) -> None:
        next(self.kinds)()

    def hold(self) -> None:
        """Two chunks of a 16 MiB-chunk session, sent but their last byte:
        admitted, they hold 64 MiB of the 128 MiB budget until the end."""
        r = self.c.post("/api/v1/files/upload/init",
                        json={"name": "held.bin", "chunk_size": STALLED_CHUNK})
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        for index in range(2):
            sock = open_chunk_request(self.m, self.token, f"session_id={sid}&chunk_index={index}",
                                      length=STALLED_CHUNK)
            self.stalled.append(sock)
            status, _, body = read_reply(sock)
            assert status == 100, f"stalled chunk {index}: {status} {body!r}"
            sock.sendall(bytes(STALLED_CHUNK - 1))
        self.run.count("attack stalled 16 MiB chunks held", 2)

    def release(self) -> None:
        for s in self.stalled:
            s.close()


def malformed_cases(m: h.Master, run: Run):
    """(label, function) pairs; each function sends one malformed request
    and returns None, or what was wrong with the answer."""
    user = "malformed"
    c = m.client(m.cluster.token(user))
    c.timeout = CLIENT_TIMEOUT_S
    data = os.urandom(5000)
    r = c.post("/api/v1/files/upload", params={"name": "target.bin"}, data=data)
    assert r.status_code == 201, r.text
    fid = r.json()["file_id"]
    run.ack(user, r.json(), data)
    anon = m.client()
    cases: list[tuple[str, Callable[[], Optional[str]]]] = []

    def raw_envelope(label, payload, status, code):
        def send():
            responses, _ = exchange(m, payload, timeout=5.0)
            got = [(s, json.loads(b).get("error", {}).get("code") if b.startswith(b"{") else b[:60])
                   for s, _, b in responses]
            return None if got == [(status, code)] else f"{got}, expected {[(status, code)]}"
        cases.append((label, send))

    def raw_page(label, payload, status):
        def send():
            raw, closed = exchange_raw(m, payload, timeout=5.0)
            statuses = {int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)}
            return None if statuses == {status} and closed else \
                f"statuses {statuses} closed {closed}, expected {status}: {raw[:120]!r}"
        cases.append((label, send))

    def api(label, call, status, codes):
        codes = (codes,) if isinstance(codes, str) or codes is None else codes
        def send():
            r = call()
            if r.status_code == status and (codes == (None,) or error_code(r) in codes):
                return None
            return f"{describe(r)}, expected {status} {codes}"
        cases.append((label, send))

    for label, (payload, status, code) in FRAMING_CASES.items():
        raw_envelope(f"framing: {label}", payload, status, code)
    raw_envelope("target over 8 KiB", b"GET /api/v1/health?pad=" + b"a" * 8200 +
                 b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long")
    raw_envelope("101 header fields", b"GET /api/v1/health HTTP/1.1\r\n" + fields(101, 2000) +
                 b"\r\n", 431, "headers_too_large")
    raw_envelope("header fields over 32 KiB", b"GET /api/v1/health HTTP/1.1\r\n" +
                 fields(3, 32 * 1024 + 1) + b"\r\n", 431, "headers_too_large")
    raw_envelope("101 query parameters", b"GET /api/v1/files?" +
                 b"&".join(b"p%d=1" % i for i in range(101)) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 400, "too_many_parameters")
    raw_page("content-length -1", b"POST /api/v1/files/upload HTTP/1.1\r\nHost: x\r\n"
             b"Content-Length: -1\r\n\r\n" + HIDDEN, 400)
    raw_page("chunk size not hex", b"POST /api/v1/workers/register HTTP/1.1\r\nHost: x\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n" + HIDDEN, 400)
    raw_page("head of 80 KiB", b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-A: " +
             b"a" * (80 * 1024) + b"\r\n\r\n" + HIDDEN, 431)
    for label, kwargs, status, code, _ in BAD_UPLOADS:
        api(f"upload: {label}", lambda kwargs=kwargs: c.post("/api/v1/files/upload", **kwargs),
            status, code)
    api("deep JSON", lambda: c.post("/api/v1/files/upload/init", data=nested(5000),
                                    headers={"Content-Type": "application/json"}),
        400, "invalid_json")
    api("JSON not an object", lambda: c.post("/api/v1/files/upload/complete", data=b"[1,2",
                                             headers={"Content-Type": "application/json"}),
        400, "invalid_json")
    api("init with a bad UTF-8 name", lambda: c.post(
        "/api/v1/files/upload/init", data=b'{"name": "caf\xe9"}',
        headers={"Content-Type": "application/json"}), 400, ("invalid_json", "invalid_name"))
    api("chunk size below the floor", lambda: c.post(
        "/api/v1/files/upload/init", json={"name": "t.bin", "chunk_size": 1}),
        400, "invalid_chunk_size")
    api("JSON body over 16 KiB", lambda: c.post(
        "/api/v1/files/upload/init", json={"name": "x" * 20000}), 413, "body_too_large")
    api("chunk of no session", lambda: c.post(
        "/api/v1/files/upload/chunk", params={"session_id": "0" * 32, "chunk_index": 0},
        data=b"abc"), 404, "session_not_found")
    r = c.post("/api/v1/files/upload/init", json={"name": "s.bin", "size": 70000})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    for index in ("x", "-1", "1", "99999999999999999999"):
        api(f"chunk index {index}", lambda index=index: c.post(
            "/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": index},
            data=b"abc"), 400, "invalid_chunk_index")
    api("chunk of the wrong length", lambda: c.post(
        "/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 0},
        data=b"abc"), 400, "chunk_size_mismatch")
    api("chunk with a wrong X-Chunk-SHA256", lambda: c.post(
        "/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 0},
        data=bytes(70000), headers={"X-Chunk-SHA256": "0" * 64}), 400, "checksum_mismatch")
    api("complete of an incomplete session", lambda: c.post(
        "/api/v1/files/upload/complete", json={"session_id": sid}), 409, "incomplete_session")
    api("complete of no session", lambda: c.post(
        "/api/v1/files/upload/complete", json={"session_id": "0" * 32}),
        404, "session_not_found")
    for spec in ("bytes=5000-", "bytes=-0"):
        api(f"range {spec}", lambda spec=spec: c.get(f"/api/v1/files/{fid}/download",
                                                     headers={"Range": spec}),
            416, "range_not_satisfiable")
    for spec in ("bytes=abc", "bytes=5-1", "bytes=0-1,3-4", "items=0-1",
                 "bytes=99999999999999999999-"):
        api(f"range {spec}", lambda spec=spec: c.get(f"/api/v1/files/{fid}/download",
                                                     headers={"Range": spec}), 200, None)
    for params, code in (({"cursor": "garbage"}, "invalid_cursor"),
                         ({"cursor": "1." + "a" * 100}, "invalid_cursor"),
                         ({"cursor": "\u00e9\u0000"}, "invalid_cursor"),
                         ({"limit": "0"}, "invalid_limit"), ({"limit": "-1"}, "invalid_limit"),
                         ({"limit": "99999999999999999999"}, "invalid_limit")):
        api(f"listing {params}", lambda params=params: c.get("/api/v1/files", params=params),
            400, code)
    api("chunk list cursor", lambda: c.get(f"/api/v1/files/{fid}", params={"chunks_from": "-1"}),
        400, "invalid_cursor")
    api("unknown file", lambda: c.get("/api/v1/files/" + "0" * 32), 404, "file_not_found")
    api("a path segment of 200 bytes", lambda: c.get("/api/v1/files/" + "a" * 200),
        404, "not_found")
    api("no such endpoint", lambda: c.get("/api/v1/nothing"), 404, "not_found")
    api("wrong method", lambda: c.put("/api/v1/health"), 405, "method_not_allowed")
    for label, bearer in (("garbage token", "not.a.token"),
                          ("token of another secret",
                           h.make_jwt({"sub": "x", "exp": int(time.time()) + 60}, "wrong" * 8)),
                          ("alg none", h.make_jwt({"sub": "x", "exp": int(time.time()) + 60},
                                                  alg="none")),
                          ("expired token", h.make_jwt({"sub": "x", "exp": 1})),
                          ("token of 4 KiB", "a" * 4096)):
        api(label, lambda bearer=bearer: anon.get(
            "/api/v1/files", headers={"Authorization": f"Bearer {bearer}"}),
            401, "invalid_token")
    api("no token", lambda: anon.get("/api/v1/files"), 401, "unauthorized")
    api("a user token for the workers' API", lambda: c.post(
        "/api/v1/workers/register", json={"url": "http://127.0.0.1:1"}), 401, "unauthorized")
    return cases


class SlowClients:
    """SLOW_CLIENTS connections each with half a request head, a byte sent
    to each now and then, reopened when the master closes them."""

    def __init__(self, run: Run, port: int):
        self.run, self.port = run, port
        self.socks: list[Optional[socket.socket]] = [None] * SLOW_CLIENTS
        self.seq = itertools.count()

    def open_one(self) -> Optional[socket.socket]:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow-{next(self.seq)}: "
                      .encode())
            s.setblocking(False)
            self.run.count("slow connections opened")
            return s
        except OSError:
            self.run.count("slow connections refused")
            return None

    def step(self) -> None:
        for i, s in enumerate(self.socks):
            if self.run.stop.is_set():
                return
            if s is not None:
                try:
                    if s.recv(4096) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    try:
                        s.send(b"a")
                        continue
                    except OSError:
                        pass
                except OSError:
                    pass
                s.close()
                self.run.count("slow connections closed by the master")
            self.socks[i] = self.open_one()
        self.run.stop.wait(0.5)

    def close(self) -> None:
        for s in self.socks:
            if s is not None:
                s.close()


def vm_rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class DiskFiller:
    """Another tenant of the small worker's disk: a ballast file that fills
    the disk, leaves it BALLAST_LEAVES free for a moment, and fills it
    again, so that writes placed while the disk looked free meet ENOSPC."""

    def __init__(self, run: Run, path):
        self.run, self.path = run, path / "ballast"
        self.size = 0

    def fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            block = bytes(64 * 1024)
            while os.write(fd, block) > 0:
                pass
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        finally:
            self.size = os.fstat(fd).st_size
            os.close(fd)

    def step(self) -> None:
        self.fill()
        self.run.count("disk filled")
        if self.run.stop.wait(0.4):
            return
        self.size = max(0, self.size - BALLAST_LEAVES)
        os.truncate(self.path, self.size)
        self.run.stop.wait(0.4)


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    why = h.mount_tmpfs(mnt, SMALL_DISK)
    if why:
        pytest.skip(f"cannot mount a {SMALL_DISK // MIB} MiB tmpfs (needs root): {why}")
    yield mnt
    h.unmount(mnt)


@pytest.fixture
def blackhole():
    b = h.Blackhole()
    yield b
    b.close()


def list_files(c: h.ApiClient) -> list[str]:
    ids, cursor = [], None
    while True:
        r = c.get("/api/v1/files", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        ids += [f["file_id"] for f in r.json()["files"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids


@pytest.mark.slow(reason=f"runs every abuse class for {RUN_S:.0f} s, then reads every file back")
def test_every_abuse_class_at_once(cluster, small_disk, blackhole):
    env = {"REDIS_ADDR": blackhole.addr, "REPLICATION_FACTOR": 2, "CHUNK_SIZE": CHUNK_SIZE,
           "UPLOAD_MEMORY": UPLOAD_MEMORY, "CHUNK_CACHE_SIZE": CHUNK_CACHE_SIZE,
           "HEADER_TIMEOUT_MS": HEADER_TIMEOUT_MS}
    if h.SANITIZE:
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":quarantine_size_mb=8"
    m = cluster.add_master(**env)
    workers = [cluster.add_worker(master=m, wait=False, WORKER_CAPACITY_BYTES=BIG_CAPACITY)
               for _ in range(2)]
    small = cluster.add_worker("small", master=m, wait=False, WORKER_DATA_DIR=small_disk)
    for w in workers + [small]:
        w.wait_registered()
    m.wait_workers(alive=3, total=3)
    assert m.health()["redis"] == "unavailable"
    rss_start = vm_rss(m.pid)

    run = Run()
    honest = [Honest(run, m, i) for i in range(HONEST)]
    attacker = Attacker(run, m)
    cases = malformed_cases(m, run)
    slow = SlowClients(run, m.port)

    def malformed():
        label, send = random.choice(cases)
        wrong = send()
        run.count("malformed requests")
        if wrong:
            run.violation(f"malformed {label}: {wrong}")

    scrape_session = [requests.Session() for _ in range(SCRAPERS)]

    def scraper(i):
        def scrape():
            r = scrape_session[i].get(m.url + "/metrics", timeout=CLIENT_TIMEOUT_S)
            run.count("scrapes")
            if r.status_code != 200:
                run.violation(f"scrape: {r.status_code} {r.text[:200]!r}")
        return scrape

    operator = m.cluster_client()
    operator.timeout = CLIENT_TIMEOUT_S

    def health():
        probe = h.ApiClient(m.url, timeout=30.0)  # a fresh connection each time
        began = time.monotonic()
        try:
            status: object = probe.get("/api/v1/health").status_code
        except requests.RequestException as e:
            status = repr(e)[:200]
        finally:
            probe.close()
        with run.lock:
            run.health.append((time.monotonic() - began, status))
        r = operator.get("/api/v1/workers")
        if r.status_code != 200:
            run.violation(f"worker list: {describe(r)}")
        else:
            dead = [w["worker_id"] for w in r.json()["workers"] if w["status"] != "alive"]
            if dead:
                run.violation(f"workers seen dead: {dead}")
        run.stop.wait(0.25)

    def rss():
        value = vm_rss(m.pid)
        with run.lock:
            run.rss.append(value)
        run.stop.wait(0.1)

    threads = [run.loop(x.step, f"honest-{i}") for i, x in enumerate(honest)]
    threads += [run.loop(attacker.step, f"attacker-{i}") for i in range(ATTACKERS)]
    threads += [run.loop(malformed, f"malformed-{i}") for i in range(2)]
    threads += [run.loop(scraper(i), f"scraper-{i}") for i in range(SCRAPERS)]
    threads += [run.loop(slow.step, "slow"), run.loop(health, "health"), run.loop(rss, "rss")]
    began = time.monotonic()
    filler = DiskFiller(run, small_disk)
    held_before = 0
    try:
        attacker.hold()
        run.stop.wait(RUN_S / 4)
        held_before = small.chunk_usage().count
        threads.append(run.loop(filler.step, "disk-filler"))
        run.stop.wait(max(0.0, RUN_S - (time.monotonic() - began)))
    finally:
        run.stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S)
        slow.close()
        attacker.release()
        for s in scrape_session:
            s.close()
    ran = time.monotonic() - began
    peak = m.peak_rss()
    filler.fill()  # the small worker ends full
    slowest = max(t for t, _ in run.health)
    summary = (f"abuse run of {ran:.1f} s: {len(run.acked)} files acknowledged, "
               f"{len(run.health)} health samples (slowest {slowest * 1000:.0f} ms), master RSS "
               f"{rss_start / MIB:.0f} MiB at start, {max(run.rss) / MIB:.0f} MiB at most sampled, "
               f"VmHWM {peak / MIB:.0f} MiB (bound {RSS_BOUND / MIB:.0f} MiB); "
               f"small worker: {held_before} chunks before the disk filled, up to a {filler.size / MIB:.0f} MiB ballast, "
               f"{small.chunk_usage().count} after, {len(re.findall(' 507 ', small.stderr()))} "
               f"writes refused with 507; {dict(sorted(run.counts.items()))}")
    print(summary)

    # Every answer was the one it must be.
    distinct = Counter(run.violations)
    assert not distinct, f"{len(run.violations)} violations: " + \
        "\n".join(f"{n}x {v}" for v, n in distinct.most_common(30)) + "\n" + summary
    # Health within the bound, every time.
    bad = [(round(t, 2), s) for t, s in run.health if s != 200 or t > HEALTH_BOUND_S]
    assert len(run.health) >= RUN_S and not bad, \
        f"health slower than {HEALTH_BOUND_S} s or failing: {bad[:20]}\n{summary}"
    # Bounded memory.
    if not h.SANITIZE:
        assert peak < RSS_BOUND, f"master VmHWM {peak / MIB:.0f} MiB\n{summary}"
    # The run did what it says (not vacuous).
    for what, least in (("complete retried", 6), ("slow connections closed by the master",
                                                   SLOW_CLIENTS), ("scrapes", 20),
                        ("malformed requests", 20), ("honest 201", 20)):
        assert run.counts[what] >= least, f"only {run.counts[what]} {what}\n{summary}"
    assert attacker_done(run), summary
    assert held_before > 0 and run.counts["disk filled"] > 0 and blackhole.accepted > 0, summary

    # Afterwards: every acknowledged file reads back byte-identical, and
    # each user owns exactly what was acknowledged to them.
    for user, ids in run.owned.items():
        c = m.client(cluster.token(user))
        c.timeout = CLIENT_TIMEOUT_S
        listed = list_files(c)
        assert len(listed) == len(set(listed)) and set(listed) == ids, \
            f"{user}: listed {len(listed)} files, acknowledged {len(ids)}: extra " \
            f"{sorted(set(listed) - ids)[:5]}, missing {sorted(ids - set(listed))[:5]}"
        for file_id in ids:
            _, size, sha = run.acked[file_id]
            assert c.download_sha256(file_id) == (size, sha), f"{user}: {file_id} differs"

    # The cluster is whole: every worker alive, the full one listed full
    # and still serving what it holds.
    for w in m.workers():
        assert w["status"] == "alive", w
    h.wait_until(lambda: m.worker_record(small.worker_id)["free_bytes"] < CHUNK_SIZE,
                 2 + h.TIMING_MARGIN_S, what="the small worker to be listed full")
    wc = small.client(h.CLUSTER_SECRET)
    held = small.chunk_usage().ids
    for chunk_id in held:
        r = wc.get(f"/chunks/{chunk_id}")
        assert r.status_code == 200, f"read of {chunk_id} on the full worker: {r.status_code}"
    m.check_alive()


def attacker_done(run: Run) -> bool:
    return all(run.counts[f"attack {what}"] > 0 for what in (
        "raw 60 MiB chunk, no such session", "multipart 60 MiB chunk, no such session",
        "raw 60 MiB chunk, too large for its session", "stalled 16 MiB chunks held"))
