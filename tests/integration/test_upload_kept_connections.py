"""Replica writes on kept-alive connections that a worker closed (issue 16).

The master keeps its connections to the workers open between uploads, and
sends a replica body of 64 KiB or more from the chunk buffer on a
connection of its own (http_client.c, direct_body) rather than through
libcurl. A worker may close such a kept connection while it sits idle (it
restarts, its idle timeout passes, a proxy in between drops it); the next
replica write must then go on another connection and succeed at once: no
failed write, no replica placed elsewhere, nothing under-replicated.

Three workers and REPLICATION_FACTOR 3, so every chunk goes to every
worker and a failed write to one could not hide behind another worker.
The victim is reached through a nemesis.LinkProxy (its
WORKER_ADVERTISE_URL): cut(reset=True) closes every connection through it
(the master's kept ones too) and heal() lets new ones pass; or the victim
is restarted on its port. Replica bodies of every size take the direct
path: files of 3.5 chunks of 256 KiB of random bytes, and files of one
4 KiB chunk (the small-file case, which went through libcurl while the
direct path took only bodies of 64 KiB or more).
"""

from __future__ import annotations

import hashlib
import os

import pytest

import echofs_harness as h
import nemesis as nm

CHUNK = 256 * 1024
RF = 3


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SIZES = {"large": 3 * CHUNK + CHUNK // 2, "small": 4096}


def upload_and_check(api: h.ApiClient, name: str, workers: set[str],
                     size: int) -> tuple[str, bytes]:
    """Uploads @size random bytes; every chunk must be on every worker."""
    data = os.urandom(size)
    body = api.upload(data, name=name)
    assert body["sha256"] == sha(data) and body["chunk_count"] == -(-size // CHUNK), body
    r = api.get(f"/api/v1/files/{body['file_id']}")
    assert r.status_code == 200, r.text
    for chunk in r.json()["chunks"]:
        held = {rep["worker_id"] for rep in chunk["replicas"]}
        assert held == workers, f"chunk {chunk['chunk_id'][:12]} is on {held}, not on {workers}"
    return body["file_id"], data


@pytest.mark.parametrize("size", ["large", "small"])
@pytest.mark.parametrize("close_by", ["proxy_reset", "worker_restart"])
def test_replica_writes_go_on_when_a_worker_closed_the_kept_connections(cluster, nemesis,
                                                                         close_by, size):
    m = cluster.start(workers=2, master_env={"CHUNK_SIZE": CHUNK, "REPLICATION_FACTOR": RF,
                                             "CHUNK_CACHE_SIZE": 0})
    victim, to_victim, _ = nemesis.add_linked_worker(cluster, m, "victim")
    m.wait_workers(alive=3, total=3)
    workers = {w["worker_id"] for w in m.workers()}
    api = m.user_client()
    files = dict([upload_and_check(api, "warm.bin", workers, SIZES[size])])
    for round_ in range(3):
        assert to_victim.connections > 0, "the master keeps no connection to the victim"
        if close_by == "proxy_reset":
            to_victim.cut(reset=True)
            to_victim.heal()
        else:
            # The new run listens before it registers.
            since = victim.log_mark()
            victim.restart()
            victim.wait_for_log(r"registered with", timeout=10, since=since)
        mark = m.log_mark()
        fid, data = upload_and_check(api, f"after-close-{round_}.bin", workers,
                                     SIZES[size])
        files[fid] = data
        failed = [line for line in m.stderr_since(mark).splitlines()
                  if "write to worker" in line or "answered" in line]
        assert not failed, f"replica writes failed after the close: {failed}"
    for fid, data in files.items():
        assert api.download(fid) == data
