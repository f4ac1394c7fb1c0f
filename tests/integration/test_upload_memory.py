"""Session chunks and the master's memory (issue 12, defects 1 and 2).

A chunk request is checked (session, owner, index, length) before its body
is read, and the chunk bodies the master holds for all requests together
come from one budget (UPLOAD_MEMORY): docs/API.md, "Limits". Chunk
sizes have a floor (MIN_CHUNK_SIZE, 64 KiB) and a file's chunk list comes
in pages."""

import hashlib
import itertools
import json
import os
import socket
import threading
import time
import uuid

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error

MIB = 1 << 20
ATTACK_BODY = 60 * MIB
# What the attack below may add to the master's peak RSS: no chunk bytes
# of a refused request are held (the old master held every body whole).
ATTACK_RSS_GROWTH = 64 * MIB
_user_seq = itertools.count()


def new_user(master, prefix="mem"):
    user = f"{prefix}{next(_user_seq)}-{uuid.uuid4().hex[:8]}"
    token = h.make_jwt({"sub": user, "exp": int(time.time()) + 3600})
    return token, master.client(token)


def init(c, **body):
    r = c.post("/api/v1/files/upload/init", json=body)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def read_reply(sock):
    """One HTTP reply from @sock: (status, headers dict, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise AssertionError(f"connection closed after {data!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in lines[1:])}
    if status == 100:
        return status, headers, body
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return status, headers, body[:length]


def open_chunk_request(master, token, query, *, length, content_type="application/octet-stream"):
    """Sends the headers of a chunk POST of @length bytes with
    "Expect: 100-continue" and no body; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", master.port), timeout=10)
    sock.sendall((f"POST /api/v1/files/upload/chunk?{query} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{master.port}\r\n"
                  f"Authorization: Bearer {token}\r\n"
                  f"Content-Type: {content_type}\r\n"
                  f"Content-Length: {length}\r\n"
                  "Expect: 100-continue\r\n\r\n").encode())
    return sock


def refused_before_the_body(master, token, query, *, length=ATTACK_BODY, multipart=False):
    """The reply to a chunk request whose body is announced but never
    sent: the error must come instead of "100 Continue"."""
    ctype = "multipart/form-data; boundary=zz" if multipart else "application/octet-stream"
    sock = open_chunk_request(master, token, query, length=length, content_type=ctype)
    try:
        status, headers, body = read_reply(sock)
    finally:
        sock.close()
    assert status != 100, f"{query}: the master asked for the {length}-byte body"
    return status, headers, json.loads(body)


def test_bad_chunk_requests_are_refused_before_the_body(cluster):
    m = cluster.start(workers=3, master_env={"MIN_CHUNK_SIZE": 1})
    token, c = new_user(m)
    other_token, _ = new_user(m, "other")
    sid = init(c, name="mine.bin", size=3 * 65536, chunk_size=65536)
    cases = [
        (token, f"session_id={'0' * 32}&chunk_index=0", 404, "session_not_found"),
        (other_token, f"session_id={sid}&chunk_index=0", 404, "session_not_found"),
        (token, f"session_id={sid}&chunk_index=3", 400, "invalid_chunk_index"),
        (token, f"session_id={sid}&chunk_index=x", 400, "invalid_chunk_index"),
    ]
    for multipart in (False, True):
        # a multipart form may name the session in a field: the query
        # string is checked when it names one
        for who, query, status, code in cases + ([] if multipart else [
                (token, "chunk_index=0", 404, "session_not_found")]):
            got, _, body = refused_before_the_body(m, who, query, multipart=multipart)
            assert (got, body["error"]["code"]) == (status, code), (query, multipart, body)
    # raw: a length the session cannot take
    got, _, body = refused_before_the_body(m, token, f"session_id={sid}&chunk_index=0")
    assert (got, body["error"]["code"]) == (400, "chunk_too_large"), body
    got, _, body = refused_before_the_body(m, token, f"session_id={sid}&chunk_index=0",
                                           length=1000)
    assert (got, body["error"]["code"]) == (400, "chunk_size_mismatch"), body
    assert c.get(f"/api/v1/files/upload/{sid}").json()["received"] == []


def multipart_body(fields, chunk_len, boundary=b"zz"):
    head = b""
    for name, value in fields:
        head += (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" +
                 name.encode() + b"\"\r\n\r\n" + value.encode() + b"\r\n")
    head += (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"chunk\"; "
             b"filename=\"blob\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    tail = b"\r\n--" + boundary + b"--\r\n"
    return head, chunk_len, tail


def send_multipart(master, token, fields, chunk_len):
    """Sends a whole multipart chunk request (the chunk is zeros) without
    waiting for permission; returns (status, body)."""
    head, n, tail = multipart_body(fields, chunk_len)
    sock = socket.create_connection(("127.0.0.1", master.port), timeout=60)
    try:
        sock.sendall((f"POST /api/v1/files/upload/chunk HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{master.port}\r\n"
                      f"Authorization: Bearer {token}\r\n"
                      "Content-Type: multipart/form-data; boundary=zz\r\n"
                      f"Content-Length: {len(head) + n + len(tail)}\r\n\r\n").encode() + head)
        block = bytes(MIB)
        left = n
        try:
            while left:
                sock.sendall(block[:min(left, MIB)])
                left -= min(left, MIB)
            sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed: the reply is still readable
        status, _, body = read_reply(sock)
        return status, json.loads(body)
    finally:
        sock.close()


def send_raw(master, token, query, length):
    """Sends a whole raw chunk request of @length zero bytes without
    waiting for permission; returns (status, body)."""
    sock = socket.create_connection(("127.0.0.1", master.port), timeout=60)
    try:
        sock.sendall((f"POST /api/v1/files/upload/chunk?{query} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{master.port}\r\n"
                      f"Authorization: Bearer {token}\r\n"
                      "Content-Type: application/octet-stream\r\n"
                      f"Content-Length: {length}\r\n\r\n").encode())
        block = bytes(MIB)
        try:
            for _ in range(length // MIB):
                sock.sendall(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = read_reply(sock)
        return status, json.loads(body)
    finally:
        sock.close()


def test_parallel_large_chunks_to_bad_sessions_do_not_grow_the_master(cluster):
    # The attack of issue 12: many 60 MiB chunk bodies at once naming a
    # session that does not exist, another user's, an index out of range,
    # or too large for their session. Each is refused with its 4xx and the
    # master holds none of their bytes (the old one buffered each whole).
    env = {"MIN_CHUNK_SIZE": 1}
    if h.SANITIZE:
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":quarantine_size_mb=8"
    m = cluster.start(workers=3, master_env=env)
    token, c = new_user(m)
    other_token, _ = new_user(m, "other")
    sid = init(c, name="small.bin", chunk_size=65536)
    kinds = [
        (token, [("session_id", "0" * 32), ("chunk_index", "0")], 404, "session_not_found"),
        (other_token, [("session_id", sid), ("chunk_index", "0")], 404, "session_not_found"),
        (token, [("session_id", sid), ("chunk_index", "1000000")], 400, "invalid_chunk_index"),
        (token, [("session_id", sid), ("chunk_index", "0")], 400, "chunk_too_large"),
    ]
    rss_before = m.peak_rss()
    results = []

    # the same as raw bodies, the names in the query string
    kinds += [(who, "&".join(f"{k}={v}" for k, v in fields), status, code)
              for who, fields, status, code in kinds]

    def attack(kind):
        who, fields, status, code = kind
        try:
            if isinstance(fields, str):
                results.append((kind, send_raw(m, who, fields, ATTACK_BODY)))
            else:
                results.append((kind, send_multipart(m, who, fields, ATTACK_BODY)))
        except Exception as e:  # noqa: BLE001 - reported below
            results.append((kind, e))

    threads = [threading.Thread(target=attack, args=(k,)) for k in kinds * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(results) == len(threads)
    for (who, fields, status, code), got in results:
        assert not isinstance(got, Exception), (fields, got)
        assert (got[0], got[1]["error"]["code"]) == (status, code), (fields, got)
    peak = m.peak_rss()
    assert peak - rss_before < ATTACK_RSS_GROWTH, \
        (f"master peak RSS grew from {rss_before / MIB:.0f} MiB to {peak / MIB:.0f} MiB under "
         f"{len(threads)} refused {ATTACK_BODY // MIB} MiB chunk requests")
    assert c.get(f"/api/v1/files/upload/{sid}").json()["received"] == []
    assert m.client().get("/api/v1/health").status_code == 200


def test_upload_memory_is_one_budget_for_all_requests(cluster):
    # UPLOAD_MEMORY=128M holds one 64 MiB chunk (with its compressed
    # copy): a second one, or a one-request upload, waits its turn with 503
    # upload_memory_full and Retry-After, and is admitted once the first
    # request is over.
    m = cluster.start(workers=3, master_env={"UPLOAD_MEMORY": "128M"})
    token, c = new_user(m)
    big = 64 * MIB
    sid = init(c, name="big.bin", chunk_size=big)
    first = open_chunk_request(m, token, f"session_id={sid}&chunk_index=0", length=big)
    try:
        status, _, _ = read_reply(first)
        assert status == 100
        got, headers, body = refused_before_the_body(m, token, f"session_id={sid}&chunk_index=1",
                                                     length=big)
        assert (got, body["error"]["code"]) == (503, "upload_memory_full"), body
        assert headers.get("retry-after") == "1", headers
        # small chunks are refused too while the budget is full
        r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 2},
                   data=b"abc", headers={"Content-Type": "application/octet-stream"})
        assert_json_error(r, 503, "upload_memory_full")
        r = c.post("/api/v1/files/upload", params={"name": "one.bin"}, data=b"abc")
        assert_json_error(r, 503, "upload_memory_full")
        assert r.headers.get("Retry-After") == "1", r.headers
    finally:
        first.close()
    h.wait_until(lambda: c.post("/api/v1/files/upload/chunk",
                                params={"session_id": sid, "chunk_index": 2}, data=b"abc",
                                headers={"Content-Type": "application/octet-stream"}
                                ).status_code == 200,
                 timeout=10, what="the budget to be given back")
    assert c.get(f"/api/v1/files/upload/{sid}").json()["received"] == [2]
    assert c.download(c.upload(b"abc", "one.bin")["file_id"]) == b"abc"


def test_one_user_cannot_take_the_whole_upload_memory(cluster):
    # UPLOAD_MEMORY (256 MiB) holds two 64 MiB chunks with their copies;
    # one user's share (UPLOAD_MEMORY_PER_USER: a quarter, but at least
    # one such chunk, 128 MiB) holds one. Alice holds hers with a chunk
    # half sent; her second chunk waits its turn (503, Retry-After), and
    # Bob's uploads are still admitted (the old master gave Alice all 256
    # MiB and refused Bob).
    m = cluster.start(workers=3)
    alice_token, alice = new_user(m, "alice")
    bob_token, bob = new_user(m, "bob")
    big = 64 * MIB
    sid = init(alice, name="big.bin", chunk_size=big)
    held = []
    try:
        first = open_chunk_request(m, alice_token, f"session_id={sid}&chunk_index=0",
                                   length=big)
        held.append(first)
        status, _, _ = read_reply(first)
        assert status == 100
        first.sendall(bytes(MIB))  # part of the body, then nothing
        second = open_chunk_request(m, alice_token, f"session_id={sid}&chunk_index=1",
                                    length=big)
        held.append(second)
        status, headers, body = read_reply(second)
        assert status == 503, f"Alice's second 64 MiB chunk got {status}: past her share"
        assert json.loads(body)["error"]["code"] == "upload_memory_full", body
        assert "UPLOAD_MEMORY_PER_USER" in json.loads(body)["error"]["message"], body
        assert headers.get("retry-after") == "1", headers
        # Bob: a small upload is stored, and a chunk as large as Alice's is
        # admitted
        f = bob.upload(b"bob's small file", "small.txt")
        assert bob.download(f["file_id"]) == b"bob's small file"
        bob_sid = init(bob, name="bob.bin", chunk_size=big)
        bob_chunk = open_chunk_request(m, bob_token, f"session_id={bob_sid}&chunk_index=0",
                                       length=big)
        held.append(bob_chunk)
        status, _, body = read_reply(bob_chunk)
        assert status == 100, f"Bob's chunk got {status}: {body!r}"
    finally:
        for sock in held:
            sock.close()
    # Alice's share comes back when her request ends
    h.wait_until(lambda: alice.post("/api/v1/files/upload/chunk",
                                    params={"session_id": sid, "chunk_index": 2},
                                    data=bytes(big),
                                    headers={"Content-Type": "application/octet-stream"}
                                    ).status_code == 200,
                 timeout=30, what="Alice's share to be given back")


# ---- defect 2: a floor under chunk sizes, and the chunk list in pages ----------------------


def test_chunk_size_below_the_floor_is_400(cluster):
    m = cluster.start(workers=3)
    _, c = new_user(m)
    for chunk_size in (1, 4096, 65535):
        r = c.post("/api/v1/files/upload/init", json={"name": "t.bin", "chunk_size": chunk_size})
        err = assert_json_error(r, 400, "invalid_chunk_size")
        assert "65536" in err["message"], err
    assert init(c, name="ok.bin", chunk_size=65536)


def walk_chunk_pages(c, file_id, limit):
    """Every page of the file's chunk list at @limit a page: (pages, chunks)."""
    pages, chunks, start = [], [], 0
    while True:
        r = c.get(f"/api/v1/files/{file_id}", params={"chunks_from": start, "chunk_limit": limit})
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        assert len(page["chunks"]) <= limit, page
        chunks += page["chunks"]
        if page["next_chunk"] is None:
            return pages, chunks
        assert page["next_chunk"] == page["chunks"][-1]["index"] + 1, page
        start = page["next_chunk"]


def test_file_chunk_list_comes_in_pages(cluster):
    m = cluster.start(workers=3, master_env={"CHUNK_SIZE": 65536})
    _, c = new_user(m)
    data = os.urandom(10 * 65536 + 5)
    f = c.upload(data, "paged.bin")
    assert f["chunk_count"] == 11
    pages, chunks = walk_chunk_pages(c, f["file_id"], 3)
    assert [p["next_chunk"] for p in pages] == [3, 6, 9, None]
    assert [ch["index"] for ch in chunks] == list(range(11))
    for ch in chunks:
        piece = data[ch["index"] * 65536:(ch["index"] + 1) * 65536]
        assert ch["chunk_id"] == hashlib.sha256(piece).hexdigest()
    # every page carries the whole File object
    for p in pages:
        assert {k: p[k] for k in f} == f
    # the default page holds up to 1000 chunks
    whole = c.get(f"/api/v1/files/{f['file_id']}").json()
    assert [ch["index"] for ch in whole["chunks"]] == list(range(11))
    assert whole["next_chunk"] is None
    past = c.get(f"/api/v1/files/{f['file_id']}", params={"chunks_from": 11}).json()
    assert (past["chunks"], past["next_chunk"]) == ([], None)
    for params, code in (({"chunk_limit": 0}, "invalid_limit"),
                         ({"chunk_limit": 1001}, "invalid_limit"),
                         ({"chunk_limit": "x"}, "invalid_limit"),
                         ({"chunks_from": "-1"}, "invalid_cursor"),
                         ({"chunks_from": "x"}, "invalid_cursor")):
        assert_json_error(c.get(f"/api/v1/files/{f['file_id']}", params=params), 400, code)


def test_a_file_of_more_chunks_than_the_default_page(cluster):
    # 1001 chunks of 16 bytes (MIN_CHUNK_SIZE lowered for the test): two
    # pages by default, each chunk listed once.
    m = cluster.start(workers=1, master_env={"MIN_CHUNK_SIZE": 1, "CHUNK_SIZE": 16,
                                             "REPLICATION_FACTOR": 1})
    _, c = new_user(m)
    c.timeout = 300
    data = os.urandom(1001 * 16)
    f = c.upload(data, "many.bin")
    assert f["chunk_count"] == 1001
    first = c.get(f"/api/v1/files/{f['file_id']}").json()
    assert (len(first["chunks"]), first["next_chunk"]) == (1000, 1000)
    pages, chunks = walk_chunk_pages(c, f["file_id"], 1000)
    assert len(pages) == 2
    assert [ch["index"] for ch in chunks] == list(range(1001))
