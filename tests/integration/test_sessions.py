"""Chunked upload sessions, black box: init, chunks in any order (raw and
multipart, with and without X-Chunk-SHA256), status, complete, abort,
expiry, ownership, and every refusal the API documents."""

import hashlib
import itertools
import math
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CHUNK = 65536  # the master's CHUNK_SIZE here
CS = 4096      # the chunk_size most sessions below ask for
RF = 3
GC_GRACE_MS = 500
# MIN_CHUNK_SIZE=1: the sessions here use chunk sizes far below the 64 KiB floor
MASTER_ENV = {"CHUNK_SIZE": CHUNK, "GC_GRACE_MS": GC_GRACE_MS, "MIN_CHUNK_SIZE": 1}
DEFAULT_TTL_S = 86400
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SESSION_KEYS = {"session_id", "chunk_size", "expires_at"}
STATUS_KEYS = {"session_id", "name", "chunk_size", "received", "expires_at"}
FILE_KEYS = {"file_id", "name", "size", "sha256", "chunk_size", "chunk_count", "replication",
             "stored_bytes", "owner", "created_at"}


@pytest.fixture(scope="module")
def master(shared_cluster):
    return shared_cluster.start(workers=3, master_env=MASTER_ENV)


_user_seq = itertools.count()


def new_user(master, prefix="s"):
    user = f"{prefix}{next(_user_seq)}-{uuid.uuid4().hex[:8]}"
    return user, master.client(h.make_jwt({"sub": user, "exp": int(time.time()) + 3600}))


def init(c, expect=201, **body):
    r = c.post("/api/v1/files/upload/init", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def put_chunk(c, sid, index, data, *, sha=None, expect=200):
    headers = {"Content-Type": "application/octet-stream"}
    if sha is not None:
        headers["X-Chunk-SHA256"] = sha
    r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": index},
               data=data, headers=headers)
    if expect is not None:
        assert r.status_code == expect, f"chunk {index}: {r.status_code} {r.text}"
    return r


def status(c, sid):
    r = c.get(f"/api/v1/files/upload/{sid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert STATUS_KEYS <= set(body), body
    return body


def complete(c, sid):
    return c.post("/api/v1/files/upload/complete", json={"session_id": sid}, timeout=60)


def check_chunk_reply(r, sid, index, data):
    assert r.status_code == 200, r.text
    assert r.json() == {"session_id": sid, "chunk_index": index, "size": len(data),
                        "chunk_id": hashlib.sha256(data).hexdigest()}


def check_file(f, *, data, name, owner, chunk_size):
    assert FILE_KEYS <= set(f), f
    assert (f["name"], f["size"], f["sha256"], f["chunk_size"], f["chunk_count"],
            f["replication"], f["owner"]) == (
        name, len(data), hashlib.sha256(data).hexdigest(), chunk_size,
        math.ceil(len(data) / chunk_size), RF, owner), f
    h.parse_iso8601(f["created_at"])


def pieces(data, cs):
    return [data[i:i + cs] for i in range(0, len(data), cs)]


def wait_chunk_count(cluster, expected, timeout, what):
    try:
        return wait_until(lambda: (u := cluster.chunk_usage()).count == expected and u,
                          timeout, interval=0.1, what=what)
    except AssertionError:
        u = cluster.chunk_usage()
        raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}: the workers "
                             f"hold {u.count} chunk files, expected {expected}") from None


# ---- init and status ----------------------------------------------------------------


def test_init_defaults_to_chunk_size(master):
    _, c = new_user(master)
    before = time.time()
    s = init(c, name="default.bin")
    assert SESSION_KEYS <= set(s), s
    assert s["chunk_size"] == CHUNK
    expires = h.parse_iso8601(s["expires_at"]).timestamp()
    assert before + DEFAULT_TTL_S - 5 <= expires <= time.time() + DEFAULT_TTL_S + 5, s
    st = status(c, s["session_id"])
    assert st == {"session_id": s["session_id"], "name": "default.bin", "chunk_size": CHUNK,
                  "received": [], "expires_at": s["expires_at"]}, st


def test_init_with_custom_chunk_size_and_size(master):
    _, c = new_user(master)
    s = init(c, name="custom.bin", chunk_size=1000, size=2500)
    assert s["chunk_size"] == 1000
    st = status(c, s["session_id"])
    assert (st["chunk_size"], st["received"], st.get("size")) == (1000, [], 2500), st
    s2 = init(c, name="biggest.bin", chunk_size=64 * 1024 * 1024, size=None)
    assert s2["chunk_size"] == 64 * 1024 * 1024
    assert "size" not in status(c, s2["session_id"])
    assert s2["session_id"] != s["session_id"]


@pytest.mark.parametrize("body,code", [
    ({}, "invalid_name"),
    ({"name": ""}, "invalid_name"),
    ({"name": 7}, "invalid_name"),
    ({"name": "bad\x01name"}, "invalid_name"),
    # valid JSON, but jansson refuses \u0000 by default: either code will do
    ({"name": "nul\x00name"}, ("invalid_name", "invalid_json")),
    ({"name": "x" * 256}, "invalid_name"),
    ({"name": "a", "chunk_size": 0}, "invalid_chunk_size"),
    ({"name": "a", "chunk_size": -5}, "invalid_chunk_size"),
    ({"name": "a", "chunk_size": 64 * 1024 * 1024 + 1}, "invalid_chunk_size"),
    ({"name": "a", "chunk_size": "4096"}, "invalid_chunk_size"),
    ({"name": "a", "chunk_size": 1.5}, "invalid_chunk_size"),
    ({"name": "a", "size": -1}, "invalid_size"),
    ({"name": "a", "size": "10"}, "invalid_size"),
    ({"name": "a", "size": 2.5}, "invalid_size"),
    ({"name": "a", "size": 1_000_001, "chunk_size": 1}, "too_many_chunks"),
])
def test_init_refuses_bad_fields(master, body, code):
    _, c = new_user(master)
    err = assert_json_error(c.post("/api/v1/files/upload/init", json=body), 400)
    assert err["code"] in ((code,) if isinstance(code, str) else code), err
    assert c.get("/api/v1/files").json()["files"] == []


@pytest.mark.parametrize("path", ["/api/v1/files/upload/init", "/api/v1/files/upload/complete"])
@pytest.mark.parametrize("payload", [b"{", b"not json", b"[]", b'"a string"', b"", b"{} x"])
def test_bad_json_is_400(master, path, payload):
    _, c = new_user(master)
    r = c.post(path, data=payload, headers={"Content-Type": "application/json"})
    assert_json_error(r, 400, "invalid_json")


@pytest.mark.parametrize("body", [{}, {"session_id": 5}, {"session_id": None},
                                  {"session_id": "a" * 65}])
def test_complete_without_a_valid_session_id_is_400(master, body):
    _, c = new_user(master)
    r = c.post("/api/v1/files/upload/complete", json=body)
    assert_json_error(r, 400, "invalid_session_id")


# ---- a whole session -------------------------------------------------------------------


def test_chunks_out_of_order_then_complete(master, shared_cluster):
    user, c = new_user(master)
    data = os.urandom(4 * CS + 123)
    parts = pieces(data, CS)
    assert len(parts) == 5
    sid = init(c, name="ooo.bin", size=len(data), chunk_size=CS)["session_id"]

    for i in (4, 1, 3):
        check_chunk_reply(put_chunk(c, sid, i, parts[i]), sid, i, parts[i])
    st = status(c, sid)
    assert (st["received"], st["name"], st["chunk_size"], st["size"]) == \
        ([1, 3, 4], "ooo.bin", CS, len(data)), st

    err = assert_json_error(complete(c, sid), 409, "incomplete_session")
    assert err.get("missing") == [0, 2], err
    check_chunk_reply(put_chunk(c, sid, 2, parts[2]), sid, 2, parts[2])
    err = assert_json_error(complete(c, sid), 409, "incomplete_session")
    assert err.get("missing") == [0], err
    assert status(c, sid)["received"] == [1, 2, 3, 4]
    check_chunk_reply(put_chunk(c, sid, 0, parts[0]), sid, 0, parts[0])

    r = complete(c, sid)
    assert r.status_code == 201, r.text
    f = r.json()
    check_file(f, data=data, name="ooo.bin", owner=user, chunk_size=CS)
    assert f["stored_bytes"] == len(data)  # random bytes: not compressed
    assert c.download(f["file_id"]) == data
    full = c.get(f"/api/v1/files/{f['file_id']}").json()
    assert [(ch["index"], ch["size"], ch["chunk_id"]) for ch in full["chunks"]] == \
        [(i, len(p), hashlib.sha256(p).hexdigest()) for i, p in enumerate(parts)]
    if shared_cluster.backend != "aws":  # S3 holds the chunks: no replicas
        assert all(len({r["worker_id"] for r in ch["replicas"]}) == RF for ch in full["chunks"])
    assert [x["file_id"] for x in c.get("/api/v1/files").json()["files"]] == [f["file_id"]]
    # the session is closed: no more chunks; a repeated complete (a lost
    # reply) answers the same file, and the status says what it became
    assert_json_error(put_chunk(c, sid, 0, parts[0], expect=None), 404, "session_not_found")
    again = complete(c, sid)
    assert again.status_code == 201, again.text
    assert again.json() == f
    st = c.get(f"/api/v1/files/upload/{sid}")
    assert st.status_code == 200, st.text
    assert st.json()["state"] == "completed" and st.json()["file_id"] == f["file_id"], st.json()


def test_parallel_chunks_and_a_single_winner_of_parallel_completes(master):
    user, c = new_user(master)
    tok = c.headers["Authorization"].split()[1]
    clients = [master.client(tok) for _ in range(4)]
    data = os.urandom(12 * CS - 1)
    parts = pieces(data, CS)
    sid = init(c, name="par.bin", size=len(data), chunk_size=CS)["session_id"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda i: put_chunk(clients[i % 4], sid, i, parts[i], expect=None),
                                range(len(parts))))
    for i, r in enumerate(replies):
        check_chunk_reply(r, sid, i, parts[i])
    assert status(c, sid)["received"] == list(range(12))
    barrier = threading.Barrier(4)

    def finish(i):
        barrier.wait(10)
        return complete(clients[i], sid)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(finish, range(4)))
    # complete is idempotent: every caller gets the one file that was made
    won = [r for r in results if r.status_code == 201]
    assert len(won) == 4, [(r.status_code, r.text[:200]) for r in results]
    assert len({r.json()["file_id"] for r in won}) == 1, [r.json() for r in won]
    check_file(won[0].json(), data=data, name="par.bin", owner=user, chunk_size=CS)
    assert [x["file_id"] for x in c.get("/api/v1/files").json()["files"]] == \
        [won[0].json()["file_id"]]
    assert c.download(won[0].json()["file_id"]) == data


def test_session_without_size_completes_at_the_highest_index(master):
    user, c = new_user(master)
    data = os.urandom(2 * CS + 7)
    parts = pieces(data, CS)
    sid = init(c, name="nosize.bin", chunk_size=CS)["session_id"]
    for i in (2, 0):
        put_chunk(c, sid, i, parts[i])
    err = assert_json_error(complete(c, sid), 409, "incomplete_session")
    assert err.get("missing") == [1], err
    put_chunk(c, sid, 1, parts[1])
    r = complete(c, sid)
    assert r.status_code == 201, r.text
    check_file(r.json(), data=data, name="nosize.bin", owner=user, chunk_size=CS)
    assert c.download(r.json()["file_id"]) == data


def test_resending_an_index_replaces_it(cluster):
    m = cluster.start(workers=3, master_env=MASTER_ENV)
    user, c = new_user(m)
    data = os.urandom(2 * CS)
    parts = pieces(data, CS)
    wrong = os.urandom(CS)
    sid = init(c, name="again.bin", size=len(data), chunk_size=CS)["session_id"]
    check_chunk_reply(put_chunk(c, sid, 0, wrong), sid, 0, wrong)
    put_chunk(c, sid, 1, parts[1])
    check_chunk_reply(put_chunk(c, sid, 0, parts[0]), sid, 0, parts[0])
    assert status(c, sid)["received"] == [0, 1]
    r = complete(c, sid)
    assert r.status_code == 201, r.text
    check_file(r.json(), data=data, name="again.bin", owner=user, chunk_size=CS)
    assert c.download(r.json()["file_id"]) == data
    # the replaced chunk lost its reference and leaves the workers
    usage = wait_chunk_count(cluster, RF * 2, 15.0, "the replaced chunk to be collected")
    assert set(usage.ids) == {hashlib.sha256(p).hexdigest() for p in parts}


def test_multipart_chunks(master):
    user, c = new_user(master)
    data = os.urandom(2 * CS + 99)
    parts = pieces(data, CS)
    sid = init(c, name="mp.bin", size=len(data), chunk_size=CS)["session_id"]
    for i in (1, 0):
        r = c.post("/api/v1/files/upload/chunk",
                   data={"session_id": sid, "chunk_index": str(i)},
                   files={"chunk": ("blob", parts[i], "application/octet-stream")})
        check_chunk_reply(r, sid, i, parts[i])
    # fields the form leaves out come from the query string
    r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 2},
               files={"chunk": ("blob", parts[2])},
               headers={"X-Chunk-SHA256": hashlib.sha256(parts[2]).hexdigest()})
    check_chunk_reply(r, sid, 2, parts[2])
    r = complete(c, sid)
    assert r.status_code == 201, r.text
    check_file(r.json(), data=data, name="mp.bin", owner=user, chunk_size=CS)
    assert c.download(r.json()["file_id"]) == data


def test_multipart_chunk_refusals(master):
    _, c = new_user(master)
    sid = init(c, name="mp.bin", chunk_size=CS)["session_id"]
    r = c.post("/api/v1/files/upload/chunk", data={"session_id": sid, "chunk_index": "0"},
               files={"other": ("x", b"abc")})
    assert_json_error(r, 400, "missing_chunk")
    r = c.post("/api/v1/files/upload/chunk", data=b"--zz\r\nbroken",
               headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert_json_error(r, 400, "invalid_multipart")
    r = c.post("/api/v1/files/upload/chunk", data=b"abc",
               headers={"Content-Type": "multipart/form-data"})
    assert_json_error(r, 400, "invalid_multipart")
    r = c.post("/api/v1/files/upload/chunk",
               data={"session_id": sid, "chunk_index": "0" * 200},
               files={"chunk": ("blob", b"abc")})
    assert_json_error(r, 400, "invalid_multipart")
    assert status(c, sid)["received"] == []


# ---- checks on each chunk ------------------------------------------------------------------


def test_chunk_sha256_header(master, shared_cluster):
    _, c = new_user(master)
    data = os.urandom(3 * CS)
    parts = pieces(data, CS)
    sid = init(c, name="sha.bin", size=len(data), chunk_size=CS)["session_id"]
    check_chunk_reply(put_chunk(c, sid, 0, parts[0], sha=hashlib.sha256(parts[0]).hexdigest()),
                      sid, 0, parts[0])
    check_chunk_reply(put_chunk(c, sid, 1, parts[1],
                                sha=hashlib.sha256(parts[1]).hexdigest().upper()),
                      sid, 1, parts[1])
    before = shared_cluster.chunk_usage()
    r = put_chunk(c, sid, 2, parts[2], sha=hashlib.sha256(b"something else").hexdigest(),
                  expect=None)
    err = assert_json_error(r, 400, "checksum_mismatch")
    assert hashlib.sha256(parts[2]).hexdigest() in err["message"], err
    assert_json_error(put_chunk(c, sid, 2, parts[2], sha="zz", expect=None), 400,
                      "checksum_mismatch")
    assert status(c, sid)["received"] == [0, 1]
    assert shared_cluster.chunk_usage().ids.keys() == before.ids.keys()
    assert hashlib.sha256(parts[2]).hexdigest() not in shared_cluster.chunk_usage().ids
    err = assert_json_error(complete(c, sid), 409, "incomplete_session")
    assert err["missing"] == [2]


@pytest.mark.parametrize("index", ["2", "3", "99", "1000000", "-1", "abc", "1.0", "", None])
def test_bad_chunk_index_is_400(master, index):
    _, c = new_user(master)
    sid = init(c, name="idx.bin", size=2 * CS, chunk_size=CS)["session_id"]
    params = {"session_id": sid} | ({"chunk_index": index} if index is not None else {})
    r = c.post("/api/v1/files/upload/chunk", params=params, data=os.urandom(CS))
    assert_json_error(r, 400, "invalid_chunk_index")
    assert status(c, sid)["received"] == []


def test_chunk_index_limit_without_size(master):
    _, c = new_user(master)
    sid = init(c, name="idx.bin", chunk_size=CS)["session_id"]
    assert_json_error(put_chunk(c, sid, 1_000_000, b"x", expect=None), 400, "invalid_chunk_index")
    put_chunk(c, sid, 999_999, b"x")
    assert status(c, sid)["received"] == [999_999]


@pytest.mark.parametrize("form", ["raw", "chunked", "multipart"])
def test_oversized_chunk_is_400(master, form):
    _, c = new_user(master)
    sid = init(c, name="big.bin", chunk_size=CS)["session_id"]
    data = os.urandom(CS + 1)
    url = "/api/v1/files/upload/chunk"
    q = {"session_id": sid, "chunk_index": 0}
    if form == "raw":
        r = c.post(url, params=q, data=data)
    elif form == "chunked":
        r = c.post(url, params=q, data=iter([data[:100], data[100:]]))
    else:
        r = c.post(url, params=q, files={"chunk": ("blob", data)})
    assert_json_error(r, 400, "chunk_too_large")
    assert status(c, sid)["received"] == []
    # exactly chunk_size is fine
    put_chunk(c, sid, 0, data[:CS])


def test_chunk_of_the_wrong_length_with_a_declared_size_is_400(master):
    _, c = new_user(master)
    size = 2 * CS + 10
    sid = init(c, name="len.bin", size=size, chunk_size=CS)["session_id"]
    for index, length in ((0, CS - 1), (1, 1), (2, 9), (2, 11), (2, CS)):
        r = put_chunk(c, sid, index, os.urandom(length), expect=None)
        assert_json_error(r, 400, "chunk_size_mismatch")
    assert_json_error(put_chunk(c, sid, 0, b"", expect=None), 400, "chunk_size_mismatch")
    assert status(c, sid)["received"] == []
    put_chunk(c, sid, 2, os.urandom(10))
    assert status(c, sid)["received"] == [2]


def test_empty_chunk_without_size_is_400(master):
    _, c = new_user(master)
    sid = init(c, name="e.bin", chunk_size=CS)["session_id"]
    assert_json_error(put_chunk(c, sid, 0, b"", expect=None), 400, "empty_chunk")
    assert status(c, sid)["received"] == []


def test_short_middle_chunk_without_size_is_409_at_complete(master):
    user, c = new_user(master)
    sid = init(c, name="short.bin", chunk_size=1000)["session_id"]
    a, b = os.urandom(500), os.urandom(1000)
    put_chunk(c, sid, 0, a)
    put_chunk(c, sid, 1, b)
    assert_json_error(complete(c, sid), 409, "short_chunk")
    assert status(c, sid)["received"] == [0, 1]  # still open: it can be fixed
    a = os.urandom(1000)
    put_chunk(c, sid, 0, a)
    r = complete(c, sid)
    assert r.status_code == 201, r.text
    check_file(r.json(), data=a + b, name="short.bin", owner=user, chunk_size=1000)
    assert c.download(r.json()["file_id"]) == a + b


@pytest.mark.parametrize("declared", [None, 0])
def test_empty_session_completes_into_an_empty_file(master, declared):
    user, c = new_user(master)
    body = {"name": "nothing.txt"} | ({"size": declared} if declared is not None else {})
    sid = init(c, **body)["session_id"]
    if declared == 0:
        assert_json_error(put_chunk(c, sid, 0, b"x", expect=None), 400, "invalid_chunk_index")
    r = complete(c, sid)
    assert r.status_code == 201, r.text
    f = r.json()
    check_file(f, data=b"", name="nothing.txt", owner=user, chunk_size=CHUNK)
    assert (f["sha256"], f["chunk_count"], f["stored_bytes"]) == (EMPTY_SHA256, 0, 0)
    assert c.download(f["file_id"]) == b""


# ---- unknown, foreign, aborted and expired sessions -----------------------------------------


def assert_session_gone(c, sid, code="session_not_found"):
    assert_json_error(put_chunk(c, sid, 0, b"abc", expect=None), 404, code)
    r = c.post("/api/v1/files/upload/chunk", data={"session_id": sid, "chunk_index": "0"},
               files={"chunk": ("blob", b"abc")})
    assert_json_error(r, 404, code)
    assert_json_error(c.get(f"/api/v1/files/upload/{sid}"), 404, code)
    assert_json_error(complete(c, sid), 404, code)
    assert_json_error(c.delete(f"/api/v1/files/upload/{sid}"), 404, code)


@pytest.mark.parametrize("sid", ["0" * 32, "nope", "a" * 64])
def test_unknown_session_is_404(master, sid):
    _, c = new_user(master)
    assert_session_gone(c, sid)


def test_chunk_without_session_id_is_404(master):
    _, c = new_user(master)
    r = c.post("/api/v1/files/upload/chunk", params={"chunk_index": 0}, data=b"abc")
    assert_json_error(r, 404, "session_not_found")


def test_another_users_session_is_404(master):
    user, alice = new_user(master, "alice")
    _, bob = new_user(master, "bob")
    data = os.urandom(CS + 5)
    parts = pieces(data, CS)
    sid = init(alice, name="mine.bin", size=len(data), chunk_size=CS)["session_id"]
    put_chunk(alice, sid, 0, parts[0])
    assert_session_gone(bob, sid)
    # bob changed nothing
    assert status(alice, sid)["received"] == [0]
    put_chunk(alice, sid, 1, parts[1])
    r = complete(alice, sid)
    assert r.status_code == 201, r.text
    check_file(r.json(), data=data, name="mine.bin", owner=user, chunk_size=CS)
    assert bob.get("/api/v1/files").json()["files"] == []


def test_upload_sessions_are_not_listed_as_files(master):
    _, c = new_user(master)
    sid = init(c, name="pending.bin", chunk_size=CS)["session_id"]
    put_chunk(c, sid, 0, os.urandom(CS))
    assert c.get("/api/v1/files").json() == {"files": [], "next_cursor": None}


def test_abort(cluster):
    m = cluster.start(workers=3, master_env=MASTER_ENV)
    _, c = new_user(m)
    sid = init(c, name="abort.bin", chunk_size=CS)["session_id"]
    put_chunk(c, sid, 0, os.urandom(CS))
    put_chunk(c, sid, 1, os.urandom(100))
    assert cluster.chunk_usage().count == 2 * RF
    r = c.delete(f"/api/v1/files/upload/{sid}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_session_gone(c, sid)
    assert c.get("/api/v1/files").json()["files"] == []
    wait_chunk_count(cluster, 0, 15.0, "an aborted session's chunks to be collected")


def test_expired_session_is_404_and_its_chunks_are_collected(cluster):
    ttl = 1
    m = cluster.start(workers=3, master_env={**MASTER_ENV, "SESSION_TTL": ttl})
    _, c = new_user(m)
    began = time.time()
    s = init(c, name="late.bin", chunk_size=CS)
    sid = s["session_id"]
    expires = h.parse_iso8601(s["expires_at"]).timestamp()
    assert began + ttl - 1.5 <= expires <= time.time() + ttl + 1.5, s
    put_chunk(c, sid, 0, os.urandom(CS))
    put_chunk(c, sid, 1, os.urandom(10))
    assert cluster.chunk_usage().count == 2 * RF
    wait_until(lambda: c.get(f"/api/v1/files/upload/{sid}").status_code == 404,
               ttl + 2 + h.TIMING_MARGIN_S, what="the session to expire")
    assert_session_gone(c, sid)
    assert c.get("/api/v1/files").json()["files"] == []
    wait_chunk_count(cluster, 0, 15.0, "an expired session's chunks to be collected")


def test_repeated_complete_answers_the_same_file_to_its_owner_only(master):
    user, c = new_user(master)
    _, other = new_user(master, "other")
    data = os.urandom(2 * CS + 3)
    sid = init(c, name="twice.bin", size=len(data), chunk_size=CS)["session_id"]
    for i, p in enumerate(pieces(data, CS)):
        put_chunk(c, sid, i, p)
    first = complete(c, sid)
    assert first.status_code == 201, first.text
    f = first.json()
    for _ in range(2):
        again = complete(c, sid)
        assert again.status_code == 201, again.text
        assert again.json() == f
    st = c.get(f"/api/v1/files/upload/{sid}")
    assert st.status_code == 200, st.text
    assert st.json()["session_id"] == sid
    assert st.json()["state"] == "completed"
    assert st.json()["file_id"] == f["file_id"]
    assert (st.json()["name"], st.json()["size"]) == ("twice.bin", len(data))
    assert [x["file_id"] for x in c.get("/api/v1/files").json()["files"]] == [f["file_id"]]
    # another user learns nothing
    assert_json_error(complete(other, sid), 404, "session_not_found")
    assert_json_error(other.get(f"/api/v1/files/upload/{sid}"), 404, "session_not_found")
    # once the file is deleted, the retry says so
    assert c.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
    assert_json_error(complete(c, sid), 404, "file_not_found")
    assert_json_error(c.get(f"/api/v1/files/upload/{sid}"), 404, "file_not_found")
    assert c.get("/api/v1/files").json()["files"] == []


def test_chunks_move_the_expiry_forward(cluster):
    ttl = 3
    m = cluster.start(workers=3, master_env={**MASTER_ENV, "SESSION_TTL": ttl})
    user, c = new_user(m)
    chunks = 6
    data = os.urandom(chunks * CS)
    s = init(c, name="slow.bin", size=len(data), chunk_size=CS)
    sid = s["session_id"]
    began = time.time()
    expiry = h.parse_iso8601(s["expires_at"]).timestamp()
    for i, p in enumerate(pieces(data, CS)):
        time.sleep(1)  # each chunk well within SESSION_TTL of the one before
        put_chunk(c, sid, i, p)
        moved = h.parse_iso8601(status(c, sid)["expires_at"]).timestamp()
        assert moved >= expiry, (i, moved, expiry)
        expiry = moved
    assert time.time() - began > ttl + 1  # longer than one TTL in all
    r = complete(c, sid)
    assert r.status_code == 201, r.text
    check_file(r.json(), data=data, name="slow.bin", owner=user, chunk_size=CS)
    assert c.download(r.json()["file_id"]) == data


def completed_session_rows(m):
    """Rows of the completed_sessions table (SQLite in DATA_DIR only)."""
    import sqlite3
    db = sqlite3.connect(str(m.data_dir / "echofs.db"))
    try:
        return db.execute("SELECT COUNT(*) FROM completed_sessions").fetchone()[0]
    finally:
        db.close()


def test_completed_sessions_are_forgotten_after_their_expiry(cluster):
    ttl = 1
    m = cluster.start(workers=3, master_env={**MASTER_ENV, "SESSION_TTL": ttl})
    _, c = new_user(m)
    data = os.urandom(CS + 1)
    sid = init(c, name="brief.bin", size=len(data), chunk_size=CS)["session_id"]
    for i, p in enumerate(pieces(data, CS)):
        put_chunk(c, sid, i, p)
    f = complete(c, sid).json()
    again = complete(c, sid)
    assert again.status_code == 201 and again.json() == f, again.text
    wait_until(lambda: complete(c, sid).status_code == 404, ttl + 3 + h.TIMING_MARGIN_S,
               what="the completed session to be forgotten")
    assert_json_error(complete(c, sid), 404, "session_not_found")
    assert_json_error(c.get(f"/api/v1/files/upload/{sid}"), 404, "session_not_found")
    assert c.download(f["file_id"]) == data  # the file stays
    if cluster.backend == "sqlite":
        wait_until(lambda: completed_session_rows(m) == 0, 5 + h.TIMING_MARGIN_S,
                   what="the collector to delete the completed session's row")


@pytest.fixture
def race_cluster(request, tmp_path):
    """A cluster on PostgreSQL when ECHOFS_TEST_PG_URL is set (where the
    window below is widest: each read is a round trip), else the default."""
    c = h.Cluster(tmp_path, label=request.node.nodeid,
                  backend="postgres" if h.PG_URL else None)
    yield c
    c.close()


def test_concurrent_completes_never_see_a_completed_session_as_incomplete(race_cluster):
    # A complete that read the session just before a concurrent complete
    # committed, and its chunks just after (moved to the file by then),
    # must answer the file like any repeated complete, not 409
    # incomplete_session with every chunk "missing" (seen on PostgreSQL
    # by the abuse run's retried completes: test_abuse.py). Many small
    # sessions, each completed by several clients at once, to hit that
    # window.
    m = race_cluster.start(workers=3, master_env=MASTER_ENV)
    user, c = new_user(m)
    tok = c.headers["Authorization"].split()[1]
    clients = [m.client(tok) for _ in range(6)]
    wrong = []
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        for round_ in range(60):
            data = os.urandom(CS + round_)
            sid = init(c, name=f"race-{round_}.bin", size=len(data),
                       chunk_size=CS)["session_id"]
            for i, p in enumerate(pieces(data, CS)):
                put_chunk(c, sid, i, p)
            barrier = threading.Barrier(len(clients))

            def finish(client):
                barrier.wait(10)
                return complete(client, sid)
            replies = list(pool.map(finish, clients))
            files = {r.json()["file_id"] for r in replies if r.status_code == 201}
            wrong += [(round_, r.status_code, r.text[:200]) for r in replies
                      if r.status_code != 201]
            assert len(files) <= 1, (round_, files)
    assert not wrong, f"{len(wrong)} of {60 * len(clients)} completes: {wrong[:5]}"
    assert len(c.get("/api/v1/files", params={"limit": 1000}).json()["files"]) == 60


def test_status_during_complete_never_shows_the_chunks_gone(race_cluster):
    # The status of a session being completed is either the open session
    # with every chunk received or the completed one: a status that read
    # the session just before the complete committed and the rest just
    # after must not answer 404 session_not_found nor "received": [] (a
    # resuming client would start over, or send every chunk again to a
    # session that is gone).
    m = race_cluster.start(workers=3, master_env=MASTER_ENV)
    user, c = new_user(m)
    tok = c.headers["Authorization"].split()[1]
    pollers = [m.client(tok) for _ in range(5)]
    wrong = []
    with ThreadPoolExecutor(max_workers=len(pollers) + 1) as pool:
        for round_ in range(60):
            data = os.urandom(CS + round_)
            sid = init(c, name=f"race-{round_}.bin", size=len(data),
                       chunk_size=CS)["session_id"]
            for i, p in enumerate(pieces(data, CS)):
                put_chunk(c, sid, i, p)
            every = list(range(len(pieces(data, CS))))
            done = threading.Event()

            def poll(client):
                seen = []
                while not done.is_set():
                    r = client.get(f"/api/v1/files/upload/{sid}")
                    body = r.json()
                    if r.status_code != 200 or (body.get("state") != "completed" and
                                                body.get("received") != every):
                        seen.append((round_, r.status_code, r.text[:200]))
                    if body.get("state") == "completed":
                        break
                return seen

            polls = [pool.submit(poll, p) for p in pollers]
            r = complete(c, sid)
            done.set()
            assert r.status_code == 201, r.text
            for f in polls:
                wrong += f.result()
    assert not wrong, f"{len(wrong)} statuses: {wrong[:5]}"
