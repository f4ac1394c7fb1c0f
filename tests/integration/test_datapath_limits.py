"""The data path at its edges: bad input is refused with a 4xx JSON error
and leaves nothing on the workers; a large upload streams through the
master in bounded memory while it keeps answering health checks."""

import hashlib
import itertools
import os
import threading
import time
import uuid

import pytest
import requests

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CHUNK = 65536
GC_GRACE_MS = 500
MASTER_ENV = {"CHUNK_SIZE": CHUNK, "GC_GRACE_MS": GC_GRACE_MS}
MIB = 1 << 20


@pytest.fixture(scope="module")
def master(shared_cluster):
    return shared_cluster.start(workers=3, master_env=MASTER_ENV)


_user_seq = itertools.count()


def new_user(master):
    user = f"lim{next(_user_seq)}-{uuid.uuid4().hex[:8]}"
    return user, master.client(h.make_jwt({"sub": user, "exp": int(time.time()) + 3600}))


def multipart(*parts, boundary="----echofs-test-boundary", closed=True):
    """A multipart/form-data body from (headers, body) pairs, byte for byte."""
    out = b""
    for headers, body in parts:
        out += b"--" + boundary.encode() + b"\r\n" + headers + b"\r\n\r\n" + body + b"\r\n"
    if closed:
        out += b"--" + boundary.encode() + b"--\r\n"
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def file_part(data, filename=b"f.bin"):
    return (b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            b"Content-Type: application/octet-stream", data)


def field_part(name, value):
    return (b'Content-Disposition: form-data; name="' + name + b'"', value)


BIG = os.urandom(3 * CHUNK + 11)  # reaches the workers before the body ends

# (id, how to send it, expected status, expected code, whether chunks may be
# written before the error shows)
_truncated = multipart(file_part(BIG), closed=False)
_no_closing = (_truncated[0][:-2], _truncated[1])  # body bytes, then EOF
_no_disposition = multipart((b"Content-Type: text/plain", b"x"), file_part(b"abc"))
_junk_after = (multipart(file_part(BIG))[0].replace(b"boundary\r\nContent", b"boundaryJUNK\r\nContent", 1),
               _truncated[1])
_only_field = multipart(field_part(b"note", b"no file here"))
_big_field = multipart(field_part(b"note", b"x" * (70 * 1024)), file_part(b"abc"))
_ctl_filename = multipart(file_part(b"abc", filename=b"bad\x01name.bin"))
_ctl_filename_ext = multipart((b'Content-Disposition: form-data; name="file"; '
                               b"filename*=UTF-8''bad%01name.bin", b"abc"))

BAD_UPLOADS = [
    ("multipart-without-boundary",
     dict(data=b"abc", headers={"Content-Type": "multipart/form-data"}),
     400, "invalid_multipart", False),
    ("multipart-garbage",
     dict(data=b"this is not a multipart body" * 100,
          headers={"Content-Type": "multipart/form-data; boundary=zzz"}),
     400, "invalid_multipart", False),
    ("multipart-truncated",
     dict(data=_no_closing[0], headers=_no_closing[1]), 400, "invalid_multipart", True),
    ("multipart-part-without-disposition",
     dict(data=_no_disposition[0], headers=_no_disposition[1]), 400, "invalid_multipart", False),
    ("multipart-junk-after-boundary",
     dict(data=_junk_after[0], headers=_junk_after[1]), 400, "invalid_multipart", False),
    ("multipart-without-file-part",
     dict(data=_only_field[0], headers=_only_field[1]), 400, "missing_file", False),
    ("multipart-form-fields-too-large",
     dict(data=_big_field[0], headers=_big_field[1]), 413, "form_too_large", False),
    # a raw control byte makes the part headers malformed; percent-encoded
    # in filename* the parser refuses it too (either code is a fair answer)
    ("multipart-control-character-in-filename",
     dict(data=_ctl_filename[0], headers=_ctl_filename[1]), 400, "invalid_multipart", False),
    ("multipart-control-character-in-filename*",
     dict(data=_ctl_filename_ext[0], headers=_ctl_filename_ext[1]), 400,
     ("invalid_name", "invalid_multipart"), False),
    ("raw-without-name",
     dict(data=BIG, headers={"Content-Type": "application/octet-stream"}),
     400, "missing_name", False),
    ("raw-empty-name",
     dict(params={"name": ""}, data=b"abc"), 400, "invalid_name", False),
    *[(f"raw-name-{label}", dict(params={"name": name}, data=BIG), 400, "invalid_name", False)
      for label, name in (("control-char", "bad\x01name"), ("tab", "a\tb"), ("newline", "a\nb"),
                          ("del", "a\x7fb"), ("nul", "a\x00b"), ("too-long", "n" * 256),
                          ("bad-utf8", b"caf\xe9"),
                          ("overlong-utf8", b"\xc0\xaf"), ("surrogate-utf8", b"\xed\xa0\x80"))],
]


@pytest.mark.parametrize("kwargs,status,code,late", [b[1:] for b in BAD_UPLOADS],
                         ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_is_refused_and_nothing_is_stored(master, shared_cluster, kwargs, status,
                                                     code, late):
    _, c = new_user(master)
    before = shared_cluster.chunk_usage()
    kwargs = dict(kwargs)
    r = c.post("/api/v1/files/upload", **kwargs)
    err = assert_json_error(r, status)
    assert err["code"] in ((code,) if isinstance(code, str) else code), err
    assert c.get("/api/v1/files").json() == {"files": [], "next_cursor": None}
    if late:
        # Chunks stored before the error lose their reference and are collected.
        wait_until(lambda: shared_cluster.chunk_usage().ids == before.ids,
                   GC_GRACE_MS / 1000 + 5.0, interval=0.1,
                   what="the refused upload's chunks to be collected")
    else:
        assert shared_cluster.chunk_usage().ids == before.ids
    # the master still works
    f = c.upload(b"after", "after.bin")
    assert c.download(f["file_id"]) == b"after"


@pytest.mark.parametrize("params,code", [
    ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ({"cursor": "1." + "a" * 100}, "invalid_cursor"),
    ({"cursor": "x.0123456789abcdef0123456789abcdef"}, "invalid_cursor"),
    ({"limit": "0"}, "invalid_limit"),
    ({"limit": "1001"}, "invalid_limit"),
])
def test_bad_listing_parameters_are_400(master, shared_cluster, params, code):
    _, c = new_user(master)
    c.upload(b"one", "one.bin")
    before = shared_cluster.chunk_usage()
    assert_json_error(c.get("/api/v1/files", params=params), 400, code)
    assert shared_cluster.chunk_usage().ids == before.ids
    assert len(c.get("/api/v1/files").json()["files"]) == 1


@pytest.mark.parametrize("params,status,code", [
    ({}, 400, "missing_name"),
    ({"name": "bad\x01name"}, 400, "invalid_name"),
])
def test_early_refusal_reaches_a_client_still_sending(master, shared_cluster, params, status,
                                                      code):
    # An error decided from the headers alone, while the client streams a
    # long body with chunked transfer encoding (no Content-Length). docs/API.md,
    # "Limits": the server reads and discards up to 64 MiB of the body so the
    # client sees the reply, and closes the connection after that.
    _, c = new_user(master)
    before = shared_cluster.chunk_usage()
    piece = os.urandom(MIB)
    try:
        r = c.post("/api/v1/files/upload", params=params, data=(piece for _ in range(32)))
    except requests.ConnectionError as e:
        pytest.fail(f"the client never saw the {status} {code} reply of a 32 MiB chunked "
                    f"upload: {e!r}")
    assert_json_error(r, status, code)
    assert shared_cluster.chunk_usage().ids == before.ids


def test_refused_bodies_do_not_break_the_connection(master):
    # One keep-alive session: an error decided from the headers, then normal
    # requests on the same client.
    _, c = new_user(master)
    for _ in range(3):
        assert_json_error(c.post("/api/v1/files/upload", data=BIG), 400, "missing_name")
        f = c.upload(b"ok", "ok.bin")
        assert c.download(f["file_id"]) == b"ok"


# ---- a large upload through bounded memory ------------------------------------------------

BIG_SIZE = 300 * MIB
RSS_LIMIT = 200 * MIB


@pytest.mark.slow(reason="streams 300 MiB through the master (about 900 MiB written to workers) "
                         "and back")
def test_300_mib_upload_streams_in_bounded_memory(cluster):
    master_env = {"GC_GRACE_MS": GC_GRACE_MS}  # CHUNK_SIZE: the default, 1 MiB
    if h.SANITIZE:
        # ASan keeps freed memory in a quarantine (256 MiB by default), which
        # would count as the master's own use.
        master_env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":quarantine_size_mb=8"
    m = cluster.start(workers=3, master_env=master_env)
    user, c = new_user(m)
    c.timeout = 600
    rss_start = m.peak_rss()

    digest = hashlib.sha256()
    sent = 0

    def body():
        nonlocal sent
        piece = 256 * 1024 + 3  # not aligned with the chunk size
        while sent < BIG_SIZE:
            n = min(piece, BIG_SIZE - sent)
            data = os.urandom(n)
            digest.update(data)
            sent += n
            yield data

    stop = threading.Event()
    samples = {"rss": [], "health": [], "errors": []}

    def watch():
        probe = m.client()
        probe.timeout = 5
        while not stop.is_set():
            try:
                samples["rss"].append(m.peak_rss())
                began = time.monotonic()
                r = probe.get("/api/v1/health")
                samples["health"].append((r.status_code, time.monotonic() - began, sent))
            except Exception as e:  # noqa: BLE001 - reported below
                samples["errors"].append(repr(e))
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, name="watch-master", daemon=True)
    watcher.start()
    try:
        began = time.monotonic()
        r = c.post("/api/v1/files/upload", params={"name": "huge.bin"}, data=body())
        upload_s = time.monotonic() - began
    finally:
        stop.set()
        watcher.join(10)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 201, r.text
    f = r.json()
    assert sent == BIG_SIZE
    assert (f["size"], f["sha256"], f["chunk_count"], f["owner"]) == \
        (BIG_SIZE, digest.hexdigest(), BIG_SIZE // MIB, user), f

    peak = m.peak_rss()
    assert not samples["errors"], samples["errors"][:5]
    assert peak < RSS_LIMIT, (f"master peak RSS {peak / MIB:.0f} MiB during a {BIG_SIZE // MIB} MiB "
                              f"upload (at start {rss_start / MIB:.0f} MiB)")
    during = [s for s in samples["health"] if 0 < s[2] < BIG_SIZE]
    assert len(during) >= 5, f"only {len(during)} health checks during a {upload_s:.1f}s upload"
    assert all(status == 200 for status, _, _ in samples["health"]), samples["health"]
    slowest = max(took for _, took, _ in samples["health"])
    assert slowest < 2.0, f"a health check took {slowest:.2f}s during the upload"

    began = time.monotonic()
    assert c.download_sha256(f["file_id"]) == (BIG_SIZE, digest.hexdigest())
    download_s = time.monotonic() - began
    print(f"300 MiB: upload {upload_s:.1f}s, download {download_s:.1f}s; master peak RSS "
          f"{peak / MIB:.0f} MiB after the upload, {m.peak_rss() / MIB:.0f} MiB after the "
          f"download (start {rss_start / MIB:.0f} MiB); {len(during)} health checks during "
          f"the upload, slowest {slowest * 1000:.0f} ms")
    peak = m.peak_rss()
    assert peak < RSS_LIMIT, f"master peak RSS {peak / MIB:.0f} MiB after the download"
