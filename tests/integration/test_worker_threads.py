"""The worker's HTTP threading (WORKER_HTTP_THREADS, issue 16 item 3).

With WORKER_HTTP_THREADS=N the worker serves every connection from N epoll
event threads instead of a thread each. The property such a pool must
keep is the one a thread per connection gives for free: requests that
take long never stop the worker answering others. Two kinds take long:

  - uploads whose client sends the body slowly (the event threads must
    read what arrives and move on, not wait for the rest), and
  - uploads and deletes waiting for their group commit's fdatasync (a slow
    disk): these are parked (libmicrohttpd suspend/resume) and answered by
    the store's committer thread, so no event thread waits for the disk.

A slow disk is made with tests/preload/sync_gate.c, an LD_PRELOAD shim
that holds every fdatasync() of the worker while a gate file exists: the
commits cannot finish while the test looks, whatever the machine's speed,
and nothing here is timed. Each test runs with a thread per connection
(0) and with two event threads (2): both must keep the property. A pool
that waited for the sync on its event threads (efs_http_defer() refusing)
fails the first test: its /metrics and GET go unanswered until the gate
opens.
"""

from __future__ import annotations

import hashlib
import re
import signal
import socket

import pytest
import requests

import echofs_harness as h

SYNC_GATE_SO = h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "sync_gate.so"

pytestmark = [
    pytest.mark.skipif(h.TLS, reason="the slow clients speak plain HTTP on raw sockets"),
    pytest.mark.requires_workers(reason="talks to a worker directly"),
]

# More than the event threads, so that a pool blocking on either would
# have every thread stuck.
SLOW_PUTS = 12
PARKED_PUTS = 8
CHUNK_BYTES = 4096


def gated_worker(cluster: h.Cluster, threads: str, gate) -> h.Worker:
    assert SYNC_GATE_SO.exists(), f"{SYNC_GATE_SO} is missing: build it first (make)"
    env = {"WORKER_HTTP_THREADS": threads, "LD_PRELOAD": str(SYNC_GATE_SO),
           "ECHOFS_SYNC_GATE": str(gate)}
    if h.SANITIZE:
        # ASan wants to be the first preloaded library; the shim is.
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    m = cluster.add_master()
    return cluster.add_worker(master=m, **env)


def chunk(seed: int) -> tuple[str, bytes]:
    body = hashlib.sha256(b"chunk %d" % seed).digest() * (CHUNK_BYTES // 32)
    return hashlib.sha256(body).hexdigest(), body


def request_head(method: str, chunk_id: str, length: int) -> bytes:
    return (f"{method} /chunks/{chunk_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {h.CLUSTER_SECRET}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def connect(w: h.Worker) -> socket.socket:
    return socket.create_connection(("127.0.0.1", w.port), timeout=h.HTTP_TIMEOUT_S)


def answered(sock: socket.socket) -> bool:
    """True when the worker has sent something on @sock or closed it,
    without blocking."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def status_of(sock: socket.socket) -> int:
    """The status code of the reply on @sock (waits for it)."""
    sock.settimeout(h.HTTP_TIMEOUT_S)
    line = sock.makefile("rb").readline().decode("latin-1")
    found = re.match(r"HTTP/1\.[01] (\d{3}) ", line)
    assert found, f"not a status line: {line!r}"
    return int(found.group(1))


def in_flight(w: h.Worker) -> float:
    text = requests.get(w.url + "/metrics", timeout=h.HTTP_TIMEOUT_S).text
    found = re.search(r"^echofs_http_requests_in_flight (\S+)$", text, re.M)
    assert found, "no echofs_http_requests_in_flight in the worker's /metrics"
    return float(found.group(1))


@pytest.mark.parametrize("threads", ["0", "2"])
def test_slow_and_syncing_requests_do_not_stop_a_get(cluster, tmp_path, threads):
    """12 uploads trickling their bodies and 8 uploads plus a delete held
    in their fdatasync are all in flight at once; the worker still answers
    /metrics and a chunk GET (the bytes stored before), while none of the
    held requests has been answered. Once the disk is let go, every held
    request gets its 201 or 204, the trickled ones finish, and every chunk
    reads back."""
    gate = tmp_path / "sync-gate"
    w = gated_worker(cluster, threads, gate)
    wc = w.client(h.CLUSTER_SECRET)
    stored_id, stored = chunk(0)
    doomed_id, doomed = chunk(1)
    for cid, body in ((stored_id, stored), (doomed_id, doomed)):
        assert wc.put(f"/chunks/{cid}", data=body).status_code == 201

    gate.touch()  # from here on every fdatasync waits: a stalled disk
    slow, held = [], []
    try:
        for i in range(SLOW_PUTS):
            cid, body = chunk(100 + i)
            s = connect(w)
            s.sendall(request_head("PUT", cid, len(body)) + body[:100])
            slow.append((s, cid, body))
        for i in range(PARKED_PUTS):
            cid, body = chunk(200 + i)
            s = connect(w)
            s.sendall(request_head("PUT", cid, len(body)) + body)
            held.append((s, cid, body))
        s = connect(w)
        s.sendall(request_head("DELETE", doomed_id, 0))
        held.append((s, doomed_id, None))

        # Every one of them reached the worker (a pool stuck in a sync
        # would not even read the later ones, nor answer this).
        h.wait_until(lambda: in_flight(w) >= SLOW_PUTS + len(held), h.HTTP_TIMEOUT_S,
                     what=f"{SLOW_PUTS + len(held)} requests in flight")
        r = requests.get(f"{w.url}/chunks/{stored_id}", timeout=h.HTTP_TIMEOUT_S,
                         headers={"Authorization": f"Bearer {h.CLUSTER_SECRET}"})
        assert r.status_code == 200, r.text
        assert r.content == stored
        # Answered while the commits were still held: none is acknowledged.
        assert not any(answered(s) for s, _, _ in held), \
            "a request was answered before its fdatasync was let through"

        gate.unlink()
        for s, cid, body in held:
            assert status_of(s) == (201 if body is not None else 204), cid
        for s, cid, body in slow:
            s.sendall(body[100:])
            assert status_of(s) == 201, cid
    finally:
        gate.unlink(missing_ok=True)
        for s, _, _ in slow + held:
            s.close()
    for cid, body in [(c, b) for _, c, b in slow + held if b is not None] + [(stored_id, stored)]:
        r = wc.get(f"/chunks/{cid}")
        assert r.status_code == 200 and r.content == body, cid
    assert wc.get(f"/chunks/{doomed_id}").status_code == 404


@pytest.mark.parametrize("threads", ["0", "2"])
def test_stop_waits_for_uploads_held_in_their_sync(cluster, tmp_path, threads):
    """SIGTERM while uploads wait for a held fdatasync: the worker does not
    exit before they are answered (libmicrohttpd must never be stopped with
    a request parked); once the sync goes through, they get their 201, the
    worker exits 0, and the chunks are there after a restart."""
    gate = tmp_path / "sync-gate"
    w = gated_worker(cluster, threads, gate)
    gate.touch()
    held = []
    try:
        for i in range(4):
            cid, body = chunk(300 + i)
            s = connect(w)
            s.sendall(request_head("PUT", cid, len(body)) + body)
            held.append((s, cid, body))
        h.wait_until(lambda: in_flight(w) >= len(held), h.HTTP_TIMEOUT_S,
                     what=f"{len(held)} uploads in flight")
        w.signal(signal.SIGTERM)
        w.wait_for_log(r"received: finishing requests in flight", timeout=h.HTTP_TIMEOUT_S)
        assert w.running, "the worker exited with uploads still waiting for their sync"
        assert not any(answered(s) for s, _, _ in held)
        gate.unlink()
        for s, cid, _ in held:
            assert status_of(s) == 201, cid
        assert w.wait_exit() == 0
    finally:
        gate.unlink(missing_ok=True)
        for s, _, _ in held:
            s.close()
    w.setenv(LD_PRELOAD=None, ECHOFS_SYNC_GATE=None)
    w.start()
    w.wait_ready()
    wc = w.client(h.CLUSTER_SECRET)
    for _, cid, body in held:
        r = wc.get(f"/chunks/{cid}")
        assert r.status_code == 200 and r.content == body, cid


@pytest.mark.parametrize("threads", ["0", "2"])
def test_the_limits_hold_on_event_threads(cluster, threads):
    """The connection limits are the server's, whatever its threading: a
    connection that never finishes its headers is closed after
    HEADER_TIMEOUT_MS (the reaper shuts its socket down; an event thread
    must see that as it would a client's close), an over-long request
    target is refused with JSON, an upload refused in begin() gets its
    reply, and the worker answers throughout."""
    m = cluster.add_master()
    w = cluster.add_worker(master=m, WORKER_HTTP_THREADS=threads, HEADER_TIMEOUT_MS=500)
    wc = w.client(h.CLUSTER_SECRET)
    trickling = [connect(w) for _ in range(8)]
    for i, s in enumerate(trickling):
        s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
    assert wc.get("/health").status_code == 200
    h.wait_until(lambda: all(answered(s) for s in trickling), h.HTTP_TIMEOUT_S,
                 what="the worker to close the connections without headers")
    for s in trickling:
        s.settimeout(h.HTTP_TIMEOUT_S)
        assert s.recv(4096) == b"", "a reply to a request whose headers never ended"
        s.close()
    r = wc.get("/health?" + "a" * 9000)
    assert r.status_code == 414 and r.json()["error"]["code"]
    cid, body = chunk(400)
    r = wc.put(f"/chunks/{cid}", data=body, headers={"X-Chunk-Encoding": "zstd"})
    assert r.status_code == 400, r.text
    assert wc.put(f"/chunks/{cid}", data=body).status_code == 201
    assert wc.get(f"/chunks/{cid}").content == body


@pytest.mark.parametrize("threads", ["0", "2"])
def test_clients_leaving_while_their_uploads_are_held(cluster, tmp_path, threads):
    """Clients that close their connections while their uploads wait for a
    held fdatasync: a parked request cannot see the close, so it is
    answered into a closed socket once the sync goes through. The worker
    stays up, the chunks are stored (the commit happened before the
    wait), and the in-flight count comes back to just the scrape."""
    gate = tmp_path / "sync-gate"
    w = gated_worker(cluster, threads, gate)
    gate.touch()
    gone = []
    try:
        for i in range(6):
            cid, body = chunk(500 + i)
            s = connect(w)
            s.sendall(request_head("PUT", cid, len(body)) + body)
            gone.append((s, cid, body))
        h.wait_until(lambda: in_flight(w) >= len(gone), h.HTTP_TIMEOUT_S,
                     what=f"{len(gone)} uploads in flight")
        for s, _, _ in gone:
            s.close()
    finally:
        gate.unlink(missing_ok=True)
    h.wait_until(lambda: in_flight(w) == 1, h.HTTP_TIMEOUT_S,
                 what="the abandoned uploads to finish")
    wc = w.client(h.CLUSTER_SECRET)
    for _, cid, body in gone:
        r = wc.get(f"/chunks/{cid}")
        assert r.status_code == 200 and r.content == body, cid
    w.check_alive()
