"""The file endpoints, black box: one-request uploads (raw, multipart,
chunked transfer encoding), the chunk list and where replicas live,
compression and deduplication as seen on the workers' disks, range reads
and download headers, listing with pagination, deletion and collection,
ownership, concurrency and uploads while workers are down."""

import base64
import hashlib
import itertools
import math
import os
import random
import re
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CHUNK = 65536  # CHUNK_SIZE of these tests: many chunks from little data
RF = 3
GC_GRACE_MS = 500
MASTER_ENV = {"CHUNK_SIZE": CHUNK, "GC_GRACE_MS": GC_GRACE_MS}
COLLECT_DEADLINE_S = 30.0  # the brief: the workers' disk use drops within 30 s

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
FILE_KEYS = {"file_id", "name", "size", "sha256", "chunk_size", "chunk_count", "replication",
             "stored_bytes", "owner", "created_at"}
CHUNK_KEYS = {"index", "chunk_id", "size", "stored_size", "compressed", "replicas"}
FILE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


# ---- fixtures and helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def master(shared_cluster):
    """One master and three workers for the tests that do not measure disks."""
    return shared_cluster.start(workers=3, master_env=MASTER_ENV)


@pytest.fixture
def fresh(cluster):
    """A cluster of its own (empty disks), for tests that measure the workers."""
    return cluster.start(workers=3, master_env=MASTER_ENV)


_user_seq = itertools.count()


def new_user(master, prefix="u"):
    """A user no other test uses, and a client with its token."""
    user = f"{prefix}{next(_user_seq)}-{uuid.uuid4().hex[:8]}"
    tok = h.make_jwt({"sub": user, "exp": int(time.time()) + 3600})
    return user, master.client(tok)


def english_text(size, seed):
    """English-like text: words of a small vocabulary, sentences, newlines."""
    words = (
        "the of and to in is that it was for on are with as his they be at one have this "
        "from or had by word but what some we can out other were all there when up use your "
        "how said an each she which do their time if will way about many then them write "
        "would like so these her long make thing see him two has look more day could go "
        "come did number sound no most people my over know water than call first who may "
        "down side been now find any new work part take get place made live where after "
        "back little only round man year came show every good me give our under name very "
        "through just form sentence great think say help low line differ turn cause much "
        "mean before move right boy old too same tell does set three want air well also "
        "play small end put home read hand port large spell add even land here must big "
        "high such follow act why ask men change went light kind off need house picture").split()
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(5, 16)))
        sentence = sentence[0].upper() + sentence[1:] + (".\n" if rng.random() < 0.2 else ". ")
        out.append(sentence)
        n += len(sentence)
    return "".join(out).encode()[:size]


def check_file_object(f, *, data, name, owner, chunk_size=CHUNK, replication=RF):
    """Every field of a File object against what was uploaded."""
    assert isinstance(f, dict) and FILE_KEYS <= set(f), f"File object lacks {FILE_KEYS - set(f)}: {f}"
    assert FILE_ID_RE.match(f["file_id"]), f
    assert f["name"] == name, f
    assert f["size"] == len(data), f
    assert f["sha256"] == hashlib.sha256(data).hexdigest(), f
    assert f["chunk_size"] == chunk_size, f
    assert f["chunk_count"] == math.ceil(len(data) / chunk_size), f
    assert f["replication"] == replication, f
    assert isinstance(f["stored_bytes"], int) and 0 <= f["stored_bytes"], f
    if not data:
        assert f["stored_bytes"] == 0, f
    assert f["owner"] == owner, f
    created = h.parse_iso8601(f["created_at"])
    assert abs(time.time() - created.timestamp()) < 120, f"created_at {created} is not now"
    # The id starts with the time it was made (Unix ms), read just before
    # created_at (whole seconds here).
    id_s = int(f["file_id"][:12], 16) / 1000
    assert created.timestamp() - 1 <= id_s <= created.timestamp() + 1, \
        f"file id {f['file_id']} says {id_s}, created_at {created}"


def get_file(client, file_id):
    r = client.get(f"/api/v1/files/{file_id}")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def check_chunks(cluster, master, client, f, data, *, chunk_size=CHUNK, excluded_workers=()):
    """GET /api/v1/files/{id}: the chunk list matches the bytes, each chunk
    has RF replicas on distinct registered workers, and each of those
    workers holds the chunk on disk with a payload of stored_size bytes."""
    full = get_file(client, f["file_id"])
    assert {k: full[k] for k in FILE_KEYS} == {k: f[k] for k in FILE_KEYS}, (full, f)
    chunks = full["chunks"]
    n = math.ceil(len(data) / chunk_size)
    assert [c["index"] for c in chunks] == list(range(n)), chunks
    workers = {w["worker_id"]: w["url"] for w in master.workers()}
    on_disk = {w.advertise_url: w.chunk_usage().ids for w in cluster.workers}
    stored = 0
    for c in chunks:
        assert CHUNK_KEYS <= set(c), f"chunk lacks {CHUNK_KEYS - set(c)}: {c}"
        piece = data[c["index"] * chunk_size:(c["index"] + 1) * chunk_size]
        assert c["size"] == len(piece), c
        assert c["chunk_id"] == hashlib.sha256(piece).hexdigest(), c
        assert isinstance(c["compressed"], bool), c
        if c["compressed"]:
            assert 0 < c["stored_size"] <= 0.9 * c["size"], f"kept gzip that saves < 10%: {c}"
        else:
            assert c["stored_size"] == c["size"], c
        stored += c["stored_size"]
        reps = c["replicas"]
        ids = [r["worker_id"] for r in reps]
        assert len(reps) == RF and len(set(ids)) == RF, f"chunk {c['index']}: replicas {reps}"
        assert len({r["url"] for r in reps}) == RF, reps
        for rep in reps:
            assert workers.get(rep["worker_id"]) == rep["url"], (rep, workers)
            assert rep["worker_id"] not in excluded_workers, f"replica on a dead worker: {rep}"
            held = on_disk.get(rep["url"], {})
            assert held.get(c["chunk_id"]) == c["stored_size"], (
                f"chunk {c['index']} ({c['chunk_id'][:12]}): worker {rep['url']} holds "
                f"{held.get(c['chunk_id'])!r} payload bytes, expected {c['stored_size']}")
    assert stored == f["stored_bytes"], f"stored_bytes {f['stored_bytes']} != sum {stored}"
    return chunks


def wait_chunk_count(cluster, expected, timeout, what):
    """Polls the workers' disks until they hold expected chunk files in all;
    returns the usage, or fails saying what they hold."""
    try:
        return wait_until(lambda: (u := cluster.chunk_usage()).count == expected and u,
                          timeout, interval=0.1, what=what)
    except AssertionError:
        u = cluster.chunk_usage()
        raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}: the workers "
                             f"hold {u.count} chunk files ({u.payload_bytes} payload bytes), "
                             f"expected {expected}") from None


def list_all(client, **params):
    r = client.get("/api/v1/files", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"files", "next_cursor"}, body
    return body


# ---- uploads ---------------------------------------------------------------------


def test_raw_upload_answers_201_and_downloads_identically(master, shared_cluster):
    user, c = new_user(master)
    data = os.urandom(3 * CHUNK + 4321)
    r = c.post("/api/v1/files/upload", params={"name": "raw.bin"}, data=data,
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    f = r.json()
    check_file_object(f, data=data, name="raw.bin", owner=user)
    assert f["stored_bytes"] == len(data), "random data must stay uncompressed"
    assert c.download(f["file_id"]) == data
    check_chunks(shared_cluster, master, c, f, data)


def test_ids_sort_by_creation_time(master):
    """File and session ids start with the time they were made (docs/API.md):
    ids made a few ms apart sort in that order, whichever way the file was
    uploaded, so the store's indexes keyed by them grow at one end."""
    _, c = new_user(master)
    ids = []
    for i in range(3):
        r = c.post("/api/v1/files/upload", params={"name": f"o{i}"}, data=os.urandom(100))
        assert r.status_code == 201, r.text
        ids.append(r.json()["file_id"])
        time.sleep(0.005)
    r = c.post("/api/v1/files/upload/init", json={"name": "s.bin"})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    ids.append(sid)
    time.sleep(0.005)
    r = c.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": 0},
               data=b"x" * 100, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/files/upload/complete", json={"session_id": sid})
    assert r.status_code == 201, r.text
    ids.append(r.json()["file_id"])
    assert all(FILE_ID_RE.match(i) for i in ids), ids
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"ids out of creation order: {ids}"
    stamps = [int(i[:12], 16) for i in ids]
    assert abs(stamps[-1] / 1000 - time.time()) < 60, f"id time {stamps[-1]} is not now"


def test_multipart_upload_answers_201_and_downloads_identically(master, shared_cluster):
    user, c = new_user(master)
    data = os.urandom(2 * CHUNK + 17)
    r = c.post("/api/v1/files/upload", data={"comment": "beside the file"},
               files={"file": ("report.pdf", data, "application/pdf")})
    assert r.status_code == 201, r.text
    f = r.json()
    check_file_object(f, data=data, name="report.pdf", owner=user)
    assert c.download(f["file_id"]) == data
    check_chunks(shared_cluster, master, c, f, data)


def test_multipart_file_part_without_filename_takes_the_query_name(master):
    user, c = new_user(master)
    data = os.urandom(1000)
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + data +
            b"\r\n--XyZ--\r\n")
    r = c.post("/api/v1/files/upload", params={"name": "from-query.bin"}, data=body,
               headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 201, r.text
    check_file_object(r.json(), data=data, name="from-query.bin", owner=user)
    assert c.download(r.json()["file_id"]) == data


@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_empty_upload(master, form):
    user, c = new_user(master)
    if form == "raw":
        r = c.post("/api/v1/files/upload", params={"name": "empty.txt"}, data=b"")
    else:
        r = c.post("/api/v1/files/upload", files={"file": ("empty.txt", b"")})
    assert r.status_code == 201, r.text
    f = r.json()
    check_file_object(f, data=b"", name="empty.txt", owner=user)
    assert f["sha256"] == EMPTY_SHA256 and f["chunk_count"] == 0
    d = c.get(f"/api/v1/files/{f['file_id']}/download")
    assert d.status_code == 200, d.text
    assert d.content == b""
    assert d.headers["Content-Length"] == "0"
    assert d.headers["ETag"] == f'"{EMPTY_SHA256}"'
    assert get_file(c, f["file_id"])["chunks"] == []


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK],
                         ids=["0", "1", "chunk-1", "chunk", "chunk+1", "3chunks"])
def test_chunk_list_matches_the_bytes(master, shared_cluster, size):
    user, c = new_user(master)
    data = os.urandom(size)
    f = c.upload(data, f"s{size}.bin")
    check_file_object(f, data=data, name=f"s{size}.bin", owner=user)
    assert f["chunk_count"] == math.ceil(size / CHUNK)
    chunks = check_chunks(shared_cluster, master, c, f, data)
    assert len(chunks) == math.ceil(size / CHUNK)
    assert all(ch["compressed"] is False for ch in chunks), chunks
    assert c.download(f["file_id"]) == data


def test_text_is_stored_compressed_and_replicated_three_times(cluster, fresh):
    user, c = new_user(fresh)
    data = english_text(5 * CHUNK + 999, seed=7)
    assert cluster.chunk_usage().count == 0
    f = c.upload(data, "words.txt")
    check_file_object(f, data=data, name="words.txt", owner=user)
    assert f["stored_bytes"] <= 0.45 * len(data), \
        f"text stored in {f['stored_bytes']} of {len(data)} bytes ({f['stored_bytes'] / len(data):.0%})"
    chunks = check_chunks(cluster, fresh, c, f, data)
    assert all(ch["compressed"] is True for ch in chunks), chunks
    usage = cluster.chunk_usage()
    assert usage.count == RF * len(chunks), usage[:2]
    expected = RF * f["stored_bytes"]
    assert abs(usage.payload_bytes - expected) <= 0.01 * expected, \
        f"workers hold {usage.payload_bytes} payload bytes, expected about {expected}"
    assert c.download(f["file_id"]) == data


def test_random_data_stays_uncompressed(master, shared_cluster):
    _, c = new_user(master)
    data = os.urandom(2 * CHUNK + 5)
    f = c.upload(data, "noise.bin")
    assert f["stored_bytes"] == len(data), f
    chunks = check_chunks(shared_cluster, master, c, f, data)
    assert [ch["compressed"] for ch in chunks] == [False] * 3
    assert [ch["stored_size"] for ch in chunks] == [CHUNK, CHUNK, 5]


def test_concurrent_uploads_all_succeed(master, shared_cluster):
    user, _ = new_user(master)
    tok = h.make_jwt({"sub": user, "exp": int(time.time()) + 3600})
    clients = [master.client(tok) for _ in range(4)]
    datas = [os.urandom(4 * CHUNK + 1000 * i) for i in range(4)]

    def one(i):
        return clients[i].upload(datas[i], f"par{i}.bin")

    with ThreadPoolExecutor(max_workers=4) as pool:
        files = list(pool.map(one, range(4)))
    for f, data, i in zip(files, datas, range(4)):
        check_file_object(f, data=data, name=f"par{i}.bin", owner=user)
    assert len({f["file_id"] for f in files}) == 4
    for f, data in zip(files, datas):
        assert clients[0].download(f["file_id"]) == data
        check_chunks(shared_cluster, master, clients[0], f, data)
    assert sorted(x["file_id"] for x in list_all(clients[0])["files"]) == \
        sorted(f["file_id"] for f in files)


def test_chunked_transfer_encoding_upload_of_unknown_length(master):
    user, c = new_user(master)
    data = os.urandom(3 * CHUNK + 12345)
    cuts = [0, 1, 1000, CHUNK - 7, CHUNK + 1, 2 * CHUNK + 100, len(data)]

    def pieces():
        for a, b in zip(cuts, cuts[1:]):
            yield data[a:b]

    r = c.post("/api/v1/files/upload", params={"name": "stream.bin"}, data=pieces())
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 201, r.text
    check_file_object(r.json(), data=data, name="stream.bin", owner=user)
    assert c.download(r.json()["file_id"]) == data


# ---- names -----------------------------------------------------------------------


def disposition_params(header):
    """filename and filename* of a Content-Disposition value (decoded)."""
    assert header.startswith("attachment"), header
    header.encode("ascii")  # a header value must be ASCII here
    plain = re.search(r'(?:^|;)\s*filename="((?:[^"\\]|\\.)*)"', header)
    ext = re.search(r"(?:^|;)\s*filename\*=UTF-8''([^;\s]*)", header, re.I)
    return (plain.group(1) if plain else None,
            urllib.parse.unquote(ext.group(1), encoding="utf-8", errors="strict") if ext else None)


@pytest.mark.parametrize("name", [
    'résumé "v2".pdf',
    "two  spaces & a?.txt",
    "日本語のファイル名.txt",
    "back\\slash;semi=colon%25.bin",
])
def test_special_names_round_trip(master, name):
    _, c = new_user(master)
    f = c.upload(b"named", name)
    assert f["name"] == name
    assert get_file(c, f["file_id"])["name"] == name
    assert [x["name"] for x in list_all(c)["files"]] == [name]
    d = c.get(f"/api/v1/files/{f['file_id']}/download")
    assert d.status_code == 200 and d.content == b"named"
    plain, ext = disposition_params(d.headers["Content-Disposition"])
    assert plain is not None, d.headers["Content-Disposition"]
    if all(0x20 <= ord(ch) < 0x7f and ch not in '"\\' for ch in name):
        assert plain == name and ext in (None, name), d.headers["Content-Disposition"]
    else:
        assert ext == name, d.headers["Content-Disposition"]


def test_longest_utf8_name_round_trips_in_content_disposition(master):
    # 255 bytes of UTF-8, nearly all non-ASCII: the fallback filename and the
    # percent-encoded filename* together are over 1 KiB.
    name = "é" * 127 + "x"
    assert len(name.encode()) == 255
    _, c = new_user(master)
    f = c.upload(b"long", name)
    assert f["name"] == name
    d = c.get(f"/api/v1/files/{f['file_id']}/download")
    assert d.status_code == 200 and d.content == b"long"
    header = d.headers["Content-Disposition"]
    _, ext = disposition_params(header)
    assert ext == name, f"filename* does not round-trip ({len(header)} bytes): {header!r}"


def test_multipart_utf8_filenames(master):
    _, c = new_user(master)
    # requests sends the raw UTF-8 in filename="..."
    r = c.post("/api/v1/files/upload", files={"file": ("résumé v2.pdf", b"abc")})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "résumé v2.pdf"
    # RFC 5987 filename* wins over the ASCII fallback
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"fallback.pdf\"; filename*=UTF-8''na%C3%AFve%20%E2%82%AC.pdf\r\n"
            b"Content-Type: application/pdf\r\n\r\nxyz\r\n--b0undary--\r\n")
    r = c.post("/api/v1/files/upload", data=body,
               headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "naïve €.pdf"
    assert c.download(r.json()["file_id"]) == b"xyz"


# ---- downloads: ranges and headers ------------------------------------------------


@pytest.fixture(scope="module")
def ranged(master):
    """A file of three full chunks and a bit, and its owner's client."""
    _, c = new_user(master)
    data = os.urandom(3 * CHUNK + 100)
    f = c.upload(data, "ranged.bin")
    return c, f, data


def range_get(c, f, spec):
    return c.get(f"/api/v1/files/{f['file_id']}/download", headers={"Range": spec})


S = 3 * CHUNK + 100


@pytest.mark.parametrize("spec,first,last", [
    ("bytes=0-0", 0, 0),
    (f"bytes={S - 1}-{S - 1}", S - 1, S - 1),
    (f"bytes={CHUNK - 10}-{CHUNK + 9}", CHUNK - 10, CHUNK + 9),           # two chunks
    (f"bytes=100-{2 * CHUNK + 100}", 100, 2 * CHUNK + 100),              # three chunks
    (f"bytes={CHUNK}-{2 * CHUNK - 1}", CHUNK, 2 * CHUNK - 1),            # exactly one chunk
    ("bytes=-10", S - 10, S - 1),                                        # suffix
    (f"bytes=-{S + 1000}", 0, S - 1),                                    # suffix > size
    (f"bytes={2 * CHUNK + 5}-", 2 * CHUNK + 5, S - 1),                   # open
    ("bytes=10-99999999999", 10, S - 1),                                 # end past size
], ids=["first", "last", "two-chunks", "three-chunks", "one-chunk", "suffix", "long-suffix",
        "open", "end-past-size"])
def test_range_reads(ranged, spec, first, last):
    c, f, data = ranged
    r = range_get(c, f, spec)
    assert r.status_code == 206, f"{spec}: {r.status_code} {r.text[:200]}"
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{S}"
    assert r.headers["Content-Length"] == str(last - first + 1)
    assert r.content == data[first:last + 1], spec
    assert r.headers["ETag"] == f'"{f["sha256"]}"'
    assert r.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("spec", [f"bytes={S}-", f"bytes={S}-{S + 10}", "bytes=99999999-",
                                  "bytes=-0"])
def test_unsatisfiable_range_is_416(ranged, spec):
    c, f, _ = ranged
    r = range_get(c, f, spec)
    err = assert_json_error(r, 416, "range_not_satisfiable")
    assert r.headers.get("Content-Range") == f"bytes */{S}", (spec, dict(r.headers), err)


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=0-0, -1", "bytes=abc", "items=0-1",
                                  "bytes=5-2"])
def test_multi_or_malformed_range_gives_the_whole_file(ranged, spec):
    c, f, data = ranged
    r = range_get(c, f, spec)
    assert r.status_code == 200, f"{spec}: {r.status_code}"
    assert "Content-Range" not in r.headers
    assert r.content == data


@pytest.mark.parametrize("spec", ["bytes=0-0", "bytes=-10", "bytes=0-"])
def test_range_on_an_empty_file_is_416(master, spec):
    _, c = new_user(master)
    f = c.upload(b"", "empty")
    r = range_get(c, f, spec)
    assert_json_error(r, 416, "range_not_satisfiable")
    assert r.headers.get("Content-Range") == "bytes */0"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_download_headers(ranged, method):
    c, f, data = ranged
    r = c.request(method, f"/api/v1/files/{f['file_id']}/download")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == 'attachment; filename="ranged.bin"'
    assert r.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.content == (data if method == "GET" else b"")


# ---- listing ---------------------------------------------------------------------


def test_listing_paginates_over_the_callers_files_only(master):
    user, c = new_user(master)
    _, other = new_user(master, "other")
    theirs = other.upload(b"not yours", "theirs.txt")
    mine = [c.upload(os.urandom(10 + i), f"f{i}.bin") for i in range(5)]
    other.upload(b"not yours either", "theirs2.txt")

    pages, cursor = [], None
    for _ in range(10):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = list_all(c, **params)
        pages.append(body["files"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor, body
    assert [len(p) for p in pages] == [2, 2, 1], pages
    seen = [x for p in pages for x in p]
    # oldest first, each once, exactly the objects the uploads returned
    assert [x["file_id"] for x in seen] == [f["file_id"] for f in mine]
    for x, f in zip(seen, mine):
        assert {k: x[k] for k in FILE_KEYS} == {k: f[k] for k in FILE_KEYS}
        assert x["owner"] == user
    everything = list_all(c)
    assert everything["next_cursor"] is None
    assert [x["file_id"] for x in everything["files"]] == [f["file_id"] for f in mine]
    assert theirs["file_id"] not in {x["file_id"] for x in everything["files"]}
    # exactly one page's worth: no next cursor
    assert list_all(c, limit=5)["next_cursor"] is None
    assert list_all(c, limit=4)["next_cursor"] is not None


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "2.5", ""])
def test_listing_bad_limit_is_400(master, limit):
    _, c = new_user(master)
    assert_json_error(c.get("/api/v1/files", params={"limit": limit}), 400, "invalid_limit")


@pytest.mark.parametrize("cursor", ["garbage", "12345", "abc.0123", "1.bad/id", "-1.abc",
                                    "1." + "a" * 65, "9" * 200])
def test_listing_bad_cursor_is_400(master, cursor):
    _, c = new_user(master)
    assert_json_error(c.get("/api/v1/files", params={"cursor": cursor}), 400, "invalid_cursor")


# ---- ownership and deletion ---------------------------------------------------------


def test_other_users_cannot_see_read_or_delete(master):
    _, alice = new_user(master, "alice")
    _, bob = new_user(master, "bob")
    data = os.urandom(CHUNK + 3)
    f = alice.upload(data, "private.bin")
    fid = f["file_id"]
    assert_json_error(bob.get(f"/api/v1/files/{fid}"), 404, "file_not_found")
    assert_json_error(bob.get(f"/api/v1/files/{fid}/download"), 404, "file_not_found")
    assert_json_error(bob.get(f"/api/v1/files/{fid}/download", headers={"Range": "bytes=0-0"}),
                      404, "file_not_found")
    assert_json_error(bob.delete(f"/api/v1/files/{fid}"), 404, "file_not_found")
    assert list_all(bob) == {"files": [], "next_cursor": None}
    # bob's attempt changed nothing
    assert alice.download(fid) == data
    assert [x["file_id"] for x in list_all(alice)["files"]] == [fid]


def test_unknown_file_ids_are_404(master):
    _, c = new_user(master)
    for fid in ("0" * 32, "nope", "a" * 64, "..", "x%2F..%2Fy"):
        assert_json_error(c.get(f"/api/v1/files/{fid}"), 404)
        assert_json_error(c.get(f"/api/v1/files/{fid}/download"), 404)
        assert_json_error(c.delete(f"/api/v1/files/{fid}"), 404)


def test_delete_removes_the_file_and_its_chunks(cluster, fresh):
    _, c = new_user(fresh)
    data = os.urandom(4 * CHUNK + 10)
    f = c.upload(data, "doomed.bin")
    keep = c.upload(os.urandom(CHUNK), "kept.bin")
    before = cluster.chunk_usage()
    assert before.count == RF * 6 and before.payload_bytes == RF * (len(data) + CHUNK), before[:2]
    disk_before = sum(h.volume_file_bytes(w.data_dir) for w in cluster.workers)

    r = c.delete(f"/api/v1/files/{f['file_id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_json_error(c.get(f"/api/v1/files/{f['file_id']}"), 404, "file_not_found")
    assert_json_error(c.get(f"/api/v1/files/{f['file_id']}/download"), 404, "file_not_found")
    assert_json_error(c.delete(f"/api/v1/files/{f['file_id']}"), 404, "file_not_found")
    assert [x["file_id"] for x in list_all(c)["files"]] == [keep["file_id"]]

    after = wait_chunk_count(cluster, RF, COLLECT_DEADLINE_S,
                             "the deleted file's chunks to leave the workers")
    assert after.payload_bytes == RF * CHUNK, after[:2]
    assert set(after.ids) == {hashlib.sha256(c.download(keep["file_id"])).hexdigest()}
    # The bytes leave the disk too, not only the index: the workers compact
    # their volume files.
    deleted = RF * len(data)
    wait_until(lambda: sum(h.volume_file_bytes(w.data_dir) for w in cluster.workers)
               <= disk_before - 0.9 * deleted, COLLECT_DEADLINE_S, interval=0.2,
               what=f"the workers' volume files to shrink by {deleted} bytes "
                    f"(from {disk_before})")


@pytest.mark.requires_workers(reason="measures what the workers' disks hold")
def test_same_bytes_twice_are_stored_once(cluster, fresh):
    user, c = new_user(fresh)
    data = os.urandom(8 << 20)
    first = c.upload(data, "one.bin")
    after_first = cluster.chunk_usage()
    assert after_first.payload_bytes == RF * len(data), after_first[:2]
    second = c.upload(data, "two.bin")
    after_second = cluster.chunk_usage()
    grew = after_second.payload_bytes - after_first.payload_bytes
    assert grew < 2 << 20, f"the second upload of the same 8 MiB grew the workers by {grew} bytes"
    assert second["file_id"] != first["file_id"]
    check_file_object(second, data=data, name="two.bin", owner=user)
    assert second["stored_bytes"] == first["stored_bytes"]
    ids1 = [ch["chunk_id"] for ch in get_file(c, first["file_id"])["chunks"]]
    ids2 = [ch["chunk_id"] for ch in get_file(c, second["file_id"])["chunks"]]
    assert ids1 == ids2
    assert c.download_sha256(second["file_id"]) == (len(data), first["sha256"])


def test_repeated_chunks_within_a_file_are_stored_once_and_collected(cluster, fresh):
    user, c = new_user(fresh)
    data = bytes(5 * CHUNK) + b"tail"
    f = c.upload(data, "zeros.bin")
    check_file_object(f, data=data, name="zeros.bin", owner=user)
    chunks = check_chunks(cluster, fresh, c, f, data)
    assert len({ch["chunk_id"] for ch in chunks}) == 2, chunks
    assert all(ch["compressed"] for ch in chunks[:5]), chunks
    assert cluster.chunk_usage().count == RF * 2
    assert c.download(f["file_id"]) == data
    assert c.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
    wait_chunk_count(cluster, 0, COLLECT_DEADLINE_S, "a file's repeated chunk to be collected")


def test_deleting_one_of_two_files_sharing_chunks_keeps_the_other(cluster, fresh):
    _, c = new_user(fresh)
    shared = os.urandom(3 * CHUNK)
    a_data = shared + os.urandom(2 * CHUNK + 50)
    b_data = shared + os.urandom(CHUNK + 7)
    a = c.upload(a_data, "a.bin")
    b = c.upload(b_data, "b.bin")
    b_ids = {ch["chunk_id"] for ch in get_file(c, b["file_id"])["chunks"]}
    assert cluster.chunk_usage().count == RF * (3 + 3 + 2)

    assert c.delete(f"/api/v1/files/{a['file_id']}").status_code == 204
    after = wait_chunk_count(cluster, RF * len(b_ids), COLLECT_DEADLINE_S,
                             "a.bin's own chunks to be collected")
    assert set(after.ids) == b_ids and set(after.ids.values()) == {RF}, after.ids
    # later collector passes (one a second) must not take the shared chunks
    # either: the workers keep exactly these for a grace period and two passes
    deadline = time.monotonic() + GC_GRACE_MS / 1000 + 2.0
    while time.monotonic() < deadline:
        assert cluster.chunk_usage().ids == after.ids, "b.bin's chunks were collected"
        time.sleep(0.1)
    assert c.download(b["file_id"]) == b_data
    check_chunks(cluster, fresh, c, b, b_data)


# ---- one-chunk uploads: the file and its chunk recorded together, no session ---------


def upload_counters(m):
    """The master's (chunks stored, chunks deduplicated) upload counters."""
    text = m.client().get("/metrics").text
    def one(name):
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        assert found, f"{name} not in /metrics"
        return int(float(found.group(1)))
    return (one("echofs_upload_chunks_total"), one("echofs_upload_chunks_deduplicated_total"))


def test_one_chunk_uploads_deduplicate_against_every_kind_of_file(cluster, fresh):
    user, c = new_user(fresh)
    small = os.urandom(4096)
    base = upload_counters(fresh)
    a = c.upload(small, "a.bin")
    check_file_object(a, data=small, name="a.bin", owner=user)
    assert cluster.chunk_usage().count == RF
    assert upload_counters(fresh) == (base[0] + 1, base[1])
    # The same bytes again, multipart this time: a reference, nothing sent.
    r = c.post("/api/v1/files/upload", files={"file": ("b.bin", small)})
    assert r.status_code == 201, r.text
    b = r.json()
    check_file_object(b, data=small, name="b.bin", owner=user)
    assert b["file_id"] != a["file_id"] and b["stored_bytes"] == a["stored_bytes"] == 4096
    assert cluster.chunk_usage().count == RF
    assert upload_counters(fresh) == (base[0] + 2, base[1] + 1)
    # A one-chunk file of exactly the first chunk of a two-chunk file.
    big = os.urandom(CHUNK + 100)
    two = c.upload(big, "two.bin")
    assert two["chunk_count"] == 2
    head = c.upload(big[:CHUNK], "head.bin")
    check_file_object(head, data=big[:CHUNK], name="head.bin", owner=user)
    assert get_file(c, head["file_id"])["chunks"][0]["chunk_id"] == \
        get_file(c, two["file_id"])["chunks"][0]["chunk_id"]
    assert cluster.chunk_usage().count == RF * 3
    # A compressed chunk reused: the file takes the stored chunk's size.
    text = english_text(CHUNK - 1, seed=11)
    t1 = c.upload(text, "t1.txt")
    t2 = c.upload(text, "t2.txt")
    assert 0 < t1["stored_bytes"] == t2["stored_bytes"] < 0.6 * len(text), (t1, t2)
    check_chunks(cluster, fresh, c, t2, text)
    # Deleting one user of a chunk keeps it for the others.
    assert c.delete(f"/api/v1/files/{a['file_id']}").status_code == 204
    assert c.delete(f"/api/v1/files/{two['file_id']}").status_code == 204
    # two's tail goes; small, head and text stay, also over later passes.
    kept = wait_chunk_count(cluster, RF * 3, COLLECT_DEADLINE_S, "two.bin's tail to be collected")
    deadline = time.monotonic() + GC_GRACE_MS / 1000 + 2.0
    while time.monotonic() < deadline:
        assert cluster.chunk_usage().ids == kept.ids, "a chunk still referenced was collected"
        time.sleep(0.1)
    for f, data in ((b, small), (head, big[:CHUNK]), (t1, text), (t2, text)):
        assert c.download(f["file_id"]) == data
        check_chunks(cluster, fresh, c, f, data)


@pytest.mark.requires_workers(reason="kills a worker")
def test_one_chunk_uploads_with_a_killed_worker_use_the_live_ones(cluster):
    m = cluster.start(workers=4, master_env={**MASTER_ENV, "REPLICATION_FACTOR": 3})
    victim = cluster.workers[0]
    victim_id = victim.worker_id
    victim.kill()
    user, c = new_user(m)
    # At once, before the master notices: some placements pick the victim.
    datas = [os.urandom(4096 + i) for i in range(8)]
    files = [c.upload(d, f"small{i}.bin") for i, d in enumerate(datas)]
    for f, d, i in zip(files, datas, range(8)):
        check_file_object(f, data=d, name=f"small{i}.bin", owner=user)
        check_chunks(cluster, m, c, f, d, excluded_workers={victim_id})
        assert c.download(f["file_id"]) == d


@pytest.mark.requires_workers(reason="kills a worker")
def test_a_worker_dying_unnoticed_fails_a_one_chunk_upload_without_leftovers(cluster):
    m = cluster.start(workers=3, master_env=MASTER_ENV)
    cluster.workers[2].kill()
    _, c = new_user(m)
    # Before the master notices: the chunk reaches two workers only.
    for form in ("raw", "multipart"):
        if form == "raw":
            r = c.post("/api/v1/files/upload", params={"name": "x.bin"}, data=os.urandom(4096))
        else:
            r = c.post("/api/v1/files/upload", files={"file": ("x.bin", os.urandom(CHUNK))})
        err = assert_json_error(r, 503, "no_capacity")
        assert err["message"]
    assert list_all(c) == {"files": [], "next_cursor": None}
    # The copies written for it are recorded as garbage and collected.
    wait_chunk_count(cluster, 0, GC_GRACE_MS / 1000 + 5.0,
                     "the failed uploads' replicas to leave the workers")


# ---- the pipelined upload: chunks at once, each with its own encoding ---------------

# At least 256 KiB: the codec samples such chunks before deflating them whole,
# and the master stores up to 4 of them at once (4 MiB / CHUNK_SIZE, max 4).
PIPE_CHUNK = 512 * 1024
PIPE_ENV = {"CHUNK_SIZE": PIPE_CHUNK, "GC_GRACE_MS": GC_GRACE_MS}


def test_pipelined_upload_gives_each_chunk_its_encoding(cluster):
    m = cluster.start(workers=3, master_env=PIPE_ENV)
    user, c = new_user(m)
    half = os.urandom(PIPE_CHUNK // 2) + english_text(PIPE_CHUNK // 2, 6)
    # Hex digits and base64 of random bytes: no repeats for the samples'
    # level 0 to find, but 4 and 6 bits a byte (stored raw before the
    # samples' bytes were counted).
    hex_digits = os.urandom(PIPE_CHUNK // 2).hex().encode()
    b64 = base64.b64encode(os.urandom(PIPE_CHUNK * 3 // 4))
    pieces = [english_text(PIPE_CHUNK, 5), os.urandom(PIPE_CHUNK), half, bytes(PIPE_CHUNK),
              os.urandom(PIPE_CHUNK), english_text(PIPE_CHUNK, 7), bytes(PIPE_CHUNK),
              hex_digits, b64, english_text(PIPE_CHUNK // 3, 8)]
    data = b"".join(pieces)
    f = c.upload(data, "mixed.bin")
    check_file_object(f, data=data, name="mixed.bin", owner=user, chunk_size=PIPE_CHUNK)
    chunks = check_chunks(cluster, m, c, f, data, chunk_size=PIPE_CHUNK)
    assert [ch["compressed"] for ch in chunks] == \
        [True, False, True, True, False, True, True, True, True, True], chunks
    assert chunks[7]["stored_size"] < 0.6 * PIPE_CHUNK, chunks[7]
    assert chunks[8]["stored_size"] < 0.8 * PIPE_CHUNK, chunks[8]
    assert chunks[3]["chunk_id"] == chunks[6]["chunk_id"]  # stored once, referenced twice
    assert cluster.chunk_usage().count == RF * 9
    assert c.download(f["file_id"]) == data
    # The multipart way in takes the same path.
    f2 = c.post("/api/v1/files/upload", files={"file": ("mixed2.bin", data[::-1])})
    assert f2.status_code == 201, f2.text
    check_file_object(f2.json(), data=data[::-1], name="mixed2.bin", owner=user,
                      chunk_size=PIPE_CHUNK)
    assert c.download(f2.json()["file_id"]) == data[::-1]


# Threads grpc's core library starts and sizes by itself (the gRPC control
# plane, src/common/rpc.c): its executor and timers come and go with the
# streams, not with uploads. And the SQLite store's checkpoint thread
# (src/meta/sqlite_checkpoint.c), which starts once the WAL first holds
# 1,000 pages and stays.
GRPC_THREADS = ("default-executo", "event_engine", "grpc_global_tim", "resolver-execut",
                "timer_manager", "meta-checkpoint")


def own_threads(pid):
    """The process's threads but grpc's own pool and the store's checkpoint
    thread."""
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # ended meanwhile
    return sum(1 for n in names if not n.startswith(GRPC_THREADS))


@pytest.mark.requires_workers(reason="fills the workers' disks")
def test_upload_running_out_of_space_mid_way_leaves_nothing(cluster):
    # Room for about 6 of the 16 chunks on every worker: the upload fails with
    # several chunks in flight, some written, some not started.
    m = cluster.start(workers=3, master_env=PIPE_ENV,
                      worker_env={"WORKER_CAPACITY_BYTES": 3 << 20})
    _, c = new_user(m)
    list_all(c)  # the client's keep-alive connection has its own thread
    threads_before = own_threads(m.pid)
    r = c.post("/api/v1/files/upload", params={"name": "too-big.bin"},
               data=os.urandom(16 * PIPE_CHUNK))
    assert_json_error(r, 503, "no_capacity")
    assert list_all(c) == {"files": [], "next_cursor": None}
    # Every copy written for it is released and collected ...
    wait_chunk_count(cluster, 0, COLLECT_DEADLINE_S, "the failed upload's replicas to go")
    # ... the upload's helper threads are gone ...
    threads = wait_until(
        lambda: (n := own_threads(m.pid)) <= threads_before and n, 10.0,
        what=f"the master's thread count to return to {threads_before}")
    assert threads <= threads_before
    # ... and, once the workers report their space free, it is usable again.
    wait_until(lambda: all(m.worker_record(w.worker_id)["free_bytes"] == 3 << 20
                           for w in cluster.workers), 15.0, what="the workers' space reported free")
    data = os.urandom(2 * PIPE_CHUNK + 1)
    f = c.upload(data, "fits.bin")
    assert c.download(f["file_id"]) == data


# ---- workers down --------------------------------------------------------------------


@pytest.mark.requires_workers(reason="kills a worker")
def test_upload_with_a_killed_worker_uses_the_live_ones(cluster):
    m = cluster.start(workers=4, master_env={**MASTER_ENV, "REPLICATION_FACTOR": 3})
    victim = cluster.workers[0]
    victim_id = victim.worker_id
    victim.kill()
    _, c = new_user(m)
    # At once: the master may still count the victim alive and must route
    # around the failed writes.
    data = os.urandom(6 * CHUNK + 1)
    f = c.upload(data, "while-dying.bin")
    assert f["size"] == len(data)
    check_chunks(cluster, m, c, f, data, excluded_workers={victim_id})
    assert c.download(f["file_id"]) == data
    # Once it is known dead, placement never picks it.
    m.wait_worker_status(victim_id, "dead")
    data2 = os.urandom(6 * CHUNK + 2)
    f2 = c.upload(data2, "after-death.bin")
    check_chunks(cluster, m, c, f2, data2, excluded_workers={victim_id})
    assert c.download(f2["file_id"]) == data2


@pytest.mark.requires_workers(reason="stops workers")
def test_too_few_live_workers_is_503_and_nothing_is_stored(cluster):
    m = cluster.start(workers=3, master_env=MASTER_ENV)
    cluster.workers[2].kill()
    m.wait_workers(alive=2)
    _, c = new_user(m)
    data = os.urandom(2 * CHUNK + 1)
    err = assert_json_error(
        c.post("/api/v1/files/upload", params={"name": "x.bin"}, data=data), 503, "no_capacity")
    assert err["message"]
    assert_json_error(c.post("/api/v1/files/upload", files={"file": ("x.bin", data)}),
                      503, "no_capacity")
    assert list_all(c) == {"files": [], "next_cursor": None}
    assert cluster.chunk_usage().count == 0
    assert m.health()["status"] == "degraded"


@pytest.mark.requires_workers(reason="kills a worker")
def test_a_worker_dying_unnoticed_fails_the_upload_without_leftovers(cluster):
    m = cluster.start(workers=3, master_env=MASTER_ENV)
    cluster.workers[2].kill()
    _, c = new_user(m)
    # Before the master notices: the first chunk reaches two workers only.
    r = c.post("/api/v1/files/upload", params={"name": "x.bin"}, data=os.urandom(3 * CHUNK))
    assert_json_error(r, 503, "no_capacity")
    assert list_all(c) == {"files": [], "next_cursor": None}
    # Replicas written for a failed upload must not stay on the workers.
    wait_chunk_count(cluster, 0, GC_GRACE_MS / 1000 + 5.0,
                     "the failed upload's replicas to leave the workers")
