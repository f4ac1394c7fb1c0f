"""The master's HTTP threading (MASTER_HTTP_THREADS, issue 16 item 3).

With MASTER_HTTP_THREADS=N the master's API serves every connection from N
epoll event threads; the handlers that wait (for the store, Redis or the
workers) run on a pool of blocking threads while their connection is
suspended (http_server.h, Threading): begin() (before 100 Continue when
the client waits for it), each piece of a streaming body, handle(), and
each read of a streaming reply. Downloads run on the event thread when
they need no worker (their chunk is in the chunk cache and the store is
local), and hand themselves to the pool otherwise.

What must hold, tested here with 0 (a thread per connection, the
default) and 2 event threads:

  - every kind of request works the same: raw, chunked and multipart
    uploads, session uploads, ranged and streamed multi-chunk downloads;
  - a refusal decided before the body still comes instead of 100 Continue;
  - downloads waiting for workers that do not answer (paused) do not stop
    the master answering others: a cached download and /metrics are
    answered while more of them hang than there are event threads.

The rest of the suite runs with the event threads when
ECHOFS_TEST_MASTER_HTTP_THREADS=2 is set (docs/HACKING.md).
"""

from __future__ import annotations

import os
import re
import threading

import pytest

import echofs_harness as h
from test_upload_memory import refused_before_the_body

pytestmark = [
    pytest.mark.skipif(h.TLS, reason="the refusal test speaks plain HTTP on a raw socket"),
    pytest.mark.requires_workers(reason="pauses workers"),
]

CHUNK = 65536
THREADS = ["0", "2"]
# More than the event threads, so that a master waiting on its event
# threads would have every one stuck.
HUNG_DOWNLOADS = 6


def start(cluster: h.Cluster, threads: str, **env) -> h.Master:
    return cluster.start(workers=3, master_env={"MASTER_HTTP_THREADS": threads,
                                                "CHUNK_SIZE": CHUNK, "MIN_CHUNK_SIZE": 1,
                                                **env})


@pytest.mark.parametrize("threads", THREADS)
def test_every_kind_of_upload_and_download(cluster, threads):
    m = start(cluster, threads)
    c = m.client(cluster.token("alice"))
    data = os.urandom(3 * CHUNK + 777)
    # raw, several chunks: the body in pieces on the pool; the download
    # is a stream read on the pool
    f = c.upload(data, "raw.bin")
    assert c.download(f["file_id"]) == data
    r = c.get(f"/api/v1/files/{f['file_id']}/download",
              headers={"Range": f"bytes={CHUNK - 10}-{2 * CHUNK + 10}"})
    assert r.status_code == 206 and r.content == data[CHUNK - 10:2 * CHUNK + 11]
    # chunked transfer encoding, cut across chunk boundaries
    cuts = [0, 1, 1000, CHUNK - 7, CHUNK + 1, 2 * CHUNK + 100, len(data)]
    r = c.post("/api/v1/files/upload", params={"name": "stream.bin"},
               data=(data[a:b] for a, b in zip(cuts, cuts[1:])))
    assert r.status_code == 201, r.text
    assert c.download(r.json()["file_id"]) == data
    # multipart form
    r = c.post("/api/v1/files/upload", files={"file": ("form.bin", data[:5000])})
    assert r.status_code == 201, r.text
    assert c.download(r.json()["file_id"]) == data[:5000]
    # a session: init, chunks out of order, complete
    r = c.post("/api/v1/files/upload/init",
               json={"name": "session.bin", "size": len(data), "chunk_size": CHUNK})
    assert r.status_code in (200, 201), r.text
    sid = r.json()["session_id"]
    for i in (3, 0, 2, 1):
        r = c.post("/api/v1/files/upload/chunk",
                   params={"session_id": sid, "chunk_index": i},
                   data=data[i * CHUNK:(i + 1) * CHUNK],
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code in (200, 201), r.text
    r = c.post("/api/v1/files/upload/complete", json={"session_id": sid})
    assert r.status_code in (200, 201), r.text
    assert c.download(r.json()["file_id"]) == data
    # small files, downloaded twice: the second from the chunk cache (on
    # an event thread with 2)
    for i in range(8):
        small = os.urandom(100 + i)
        fid = c.upload(small, f"small{i}.bin")["file_id"]
        assert c.download(fid) == small
        assert c.download(fid) == small


@pytest.mark.parametrize("threads", THREADS)
def test_a_refusal_still_comes_before_the_body(cluster, threads):
    m = start(cluster, threads)
    status, _, body = refused_before_the_body(m, cluster.token("alice"),
                                              f"session_id={'0' * 32}&chunk_index=0")
    assert (status, body["error"]["code"]) == (404, "session_not_found"), (status, body)


def in_flight(m: h.Master) -> float:
    """echofs_http_requests_in_flight, this /metrics request included."""
    text = m.client().get("/metrics").text
    found = re.search(r"^echofs_http_requests_in_flight(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert found, "no echofs_http_requests_in_flight in /metrics"
    return float(found.group(1))


@pytest.mark.parametrize("threads", THREADS)
def test_downloads_waiting_for_workers_do_not_stop_the_others(cluster, threads):
    # Workers that do not answer (paused) keep a cache-missing download
    # waiting for its replica's stall timeout; with the workers counted
    # alive for a minute the master tries each of them in turn.
    m = start(cluster, threads, WORKER_DEAD_AFTER_MS=60000)
    c = m.client(cluster.token("alice"))
    cached = c.upload(b"cached " * 100, "cached.txt")["file_id"]
    assert c.download(cached) == b"cached " * 100  # now in the chunk cache
    cold = [c.upload(os.urandom(1000 + i), f"cold{i}.bin")["file_id"]
            for i in range(HUNG_DOWNLOADS)]
    results = [None] * HUNG_DOWNLOADS
    workers = list(cluster.workers)

    def hang(i):
        try:
            results[i] = m.client(cluster.token("alice")).get(
                f"/api/v1/files/{cold[i]}/download", timeout=60).status_code
        except Exception as e:  # noqa: BLE001 - recorded, checked below
            results[i] = repr(e)

    for w in workers:
        w.pause()
    hung = [threading.Thread(target=hang, args=(i,)) for i in range(HUNG_DOWNLOADS)]
    try:
        for t in hung:
            t.start()
        # the paused workers send no heartbeats: the hung downloads and
        # the /metrics request itself are all that is in flight
        h.wait_until(lambda: in_flight(m) >= HUNG_DOWNLOADS + 1, timeout=10,
                     what="every cache-missing download to be waiting for a worker")
        # answered while they all wait
        assert c.download(cached) == b"cached " * 100
        assert m.client().get("/api/v1/health").status_code in (200, 503)
        assert in_flight(m) >= HUNG_DOWNLOADS + 1, \
            "a hung download ended before the others were answered: nothing was tested"
    finally:
        for w in workers:
            w.resume()
        for t in hung:
            t.join(timeout=90)
    assert all(r in (200, 503) for r in results), results
