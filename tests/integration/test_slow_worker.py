"""A slow worker: up, answering, but throttled to 1 MiB/s (issue 19 item 3).

The victim is reached by the master through a nemesis.LinkProxy (its
WORKER_ADVERTISE_URL), throttled to 1 MiB/s each way; its heartbeats go
through another proxy that is left alone, so it stays alive. The master
gives a chunk transfer up for slowness when it moved fewer than
SLOW_WORKER_MIN_RATE (default 2 MiB/s) x 3 s bytes over its last 3 s while
bytes remained (and still moved) and another worker could take its place;
a transfer of 512 KiB or more that finished after a second or more under
that rate counts too (docs/OPERATIONS.md, "Slow workers"; a stall, no byte
for 3 s, is given up but marks nothing). The worker is then marked slow for
SLOW_WORKER_AVOID_MS: placement prefers the others, reads try its replicas
last, GET /api/v1/workers says "slow": true, and
echofs_slow_transfers_abandoned_total{op} counts the abandons.

Nothing here times the uploads: the proof that the throttled worker did
not hold them up is that it took none of the chunks once marked slow, and
that the files read back. 16 MiB chunks for the writes (8 MiB for the
reads), so that one transfer at 1 MiB/s outlasts the socket buffers (several
MiB between the master and the proxy) and the 3 s window; and the default
1 MiB chunks, whose writes finish, but too slowly.
"""

from __future__ import annotations

import os
import re
import time

import pytest
import requests

import echofs_harness as h
import nemesis as nm
from test_faults import poll, secs

MiB = 1 << 20
CHUNK = 8 * MiB  # reads
WRITE_CHUNK = 16 * MiB
RF = 3
AVOID_MS = 8000

pytestmark = pytest.mark.requires_workers(reason="throttles a worker's link")


def start(cluster: h.Cluster, nemesis: nm.Nemesis, chunk: int = CHUNK):
    m = cluster.start(workers=3, master_env={
        "CHUNK_SIZE": chunk, "REPLICATION_FACTOR": RF, "CHUNK_CACHE_SIZE": 0,
        "SLOW_WORKER_AVOID_MS": AVOID_MS})
    victim, to_victim, _ = nemesis.add_linked_worker(cluster, m, "slow")
    m.wait_workers(alive=4, total=4)
    return m, victim, to_victim


def abandons(m: h.Master, op: str) -> int:
    text = requests.get(m.url + "/metrics", timeout=h.HTTP_TIMEOUT_S).text
    found = re.search(rf'^echofs_slow_transfers_abandoned_total{{op="{op}"}} (\S+)$', text,
                      re.M)
    assert found, f"no echofs_slow_transfers_abandoned_total{{op=\"{op}\"}} in /metrics"
    return int(float(found.group(1)))


def replicas_on(api: h.ApiClient, fid: str, worker_id: str) -> int:
    """How many of a file's chunks list a replica on worker_id."""
    info = api.get(f"/api/v1/files/{fid}").json()
    return sum(any(r["worker_id"] == worker_id for r in c["replicas"]) for c in info["chunks"])


def upload(api: h.ApiClient, name: str, size: int) -> tuple[str, bytes, float]:
    data = os.urandom(size)
    began = time.monotonic()
    fid = api.upload(data, name=name, timeout=120)["file_id"]
    return fid, data, time.monotonic() - began


@pytest.mark.slow(reason="uploads through a 1 MiB/s link, then waits out SLOW_WORKER_AVOID_MS")
def test_throttled_worker_is_replaced_avoided_while_slow_and_used_again_after(cluster,
                                                                              nemesis):
    m, victim, to_victim = start(cluster, nemesis, WRITE_CHUNK)
    api = m.user_client()
    vid = victim.worker_id
    to_victim.throttle(1 * MiB)

    # 1. 32 MiB uploads (2 chunks each) until one met the victim (each chunk
    # goes to 3 of the 4 workers): the replica write to it is too slow and
    # goes to another worker; the client sees a 201.
    first: dict[str, bytes] = {}
    while not abandons(m, "write") and len(first) < 4:
        fid, data, took1 = upload(api, f"through-a-slow-link-{len(first)}.bin", 2 * WRITE_CHUNK)
        first[fid] = data
    written = abandons(m, "write")
    assert written >= 1, "no write to the throttled worker was given up: the rule did not act"
    rec = m.worker_record(vid)
    assert rec["status"] == "alive", rec
    assert rec["slow"] is True and rec["slow_for_ms"] > 0, rec
    on_victim1 = replicas_on(api, fid, vid)
    print(f"\n32 MiB through a 1 MiB/s worker: {took1:.1f} s, {written} writes given up, "
          f"{on_victim1} of 2 chunks kept a replica there")

    # 2. While it is marked slow, placement does not choose it (three other
    # workers are enough for RF 3), so no write to it is even tried.
    fid2, data2, took2 = upload(api, "while-marked-slow.bin", 2 * WRITE_CHUNK)
    assert replicas_on(api, fid2, vid) == 0, \
        "a worker marked slow was chosen although three others were free"
    assert abandons(m, "write") == written, "a write to the slow worker was tried again"
    for fid, data in first.items():
        assert api.download(fid, timeout=120) == data
    assert api.download(fid2, timeout=120) == data2

    # 3. The link recovers: the mark expires and the worker is chosen again.
    nemesis.heal()
    poll(lambda: (not (rec := m.worker_record(vid))["slow"], rec),
         secs(AVOID_MS / 1000 + 5), "the slow mark to expire")
    used = 0
    for i in range(4):  # each chunk misses it with probability about 1/4
        fid, data, _ = upload(api, f"after-recovery-{i}.bin", 2 * WRITE_CHUNK)
        used += replicas_on(api, fid, vid)
        assert api.download(fid, timeout=60) == data
        if used:
            break
    assert used, "the recovered worker was not chosen again after its slow mark expired"
    assert abandons(m, "write") == written
    marked = re.findall(rf".*worker {re.escape(vid)} marked slow for {AVOID_MS} ms.*",
                        m.stderr())
    assert marked, "the master did not log that the worker was marked slow"
    print("\n".join(marked))


@pytest.mark.slow(reason="uploads through a 1 MiB/s link")
def test_default_chunks_finished_slowly_mark_the_worker_slow(cluster, nemesis):
    """With the default 1 MiB chunks a write to the 1 MiB/s worker finishes
    (the socket buffers take most of it at once) in about a second: never
    given up, but judged slow all the same (1 MiB in over a second, under
    SLOW_WORKER_MIN_RATE), so the worker takes only the chunks already on
    their way to it."""
    m = cluster.start(workers=3, master_env={"REPLICATION_FACTOR": RF, "CHUNK_CACHE_SIZE": 0,
                                             "SLOW_WORKER_AVOID_MS": AVOID_MS})
    victim, to_victim, _ = nemesis.add_linked_worker(cluster, m, "slow")
    m.wait_workers(alive=4, total=4)
    api = m.user_client()
    vid = victim.worker_id
    to_victim.throttle(1 * MiB)
    fid, data, took = upload(api, "small-chunks.bin", 24 * MiB)
    rec = m.worker_record(vid)
    assert rec["slow"] is True, rec
    on_victim = replicas_on(api, fid, vid)
    # Up to 3 chunks of an upload are stored at once (upload_pipeline.c):
    # those may have gone to it before the first came back.
    assert on_victim <= 6, f"the slow worker took {on_victim} of 24 chunks"
    assert abandons(m, "write") == 0, "a write that moved was given up"
    fid2, data2, _ = upload(api, "small-chunks-2.bin", 8 * MiB)
    assert replicas_on(api, fid2, vid) == 0
    assert api.download(fid, timeout=60) == data
    assert api.download(fid2, timeout=60) == data2
    assert re.search(rf"worker {re.escape(vid)} marked slow for {AVOID_MS} ms \(a chunk write "
                     rf"to it took \d+ ms for 1048576 bytes", m.stderr()), \
        "the master did not log why it marked the worker slow"
    print(f"\n24 MiB in 1 MiB chunks through a 1 MiB/s worker: {took:.1f} s, "
          f"{on_victim} of 24 chunks kept a replica there")


@pytest.mark.slow(reason="reads through a 1 MiB/s link")
def test_read_from_a_throttled_replica_is_bypassed_for_another(cluster, nemesis):
    m, victim, to_victim = start(cluster, nemesis)
    api = m.user_client()
    vid = victim.worker_id
    files: dict[str, bytes] = {}
    while sum(replicas_on(api, f, vid) for f in files) < 2 and len(files) < 6:
        fid, data, _ = upload(api, f"f{len(files)}.bin", 3 * CHUNK)
        files[fid] = data
    assert sum(replicas_on(api, f, vid) for f in files) >= 2, \
        "the victim holds too few chunks to read from"
    assert abandons(m, "read") == 0
    to_victim.throttle(1 * MiB)

    # Replicas are read in random order: download until a read met the
    # throttled one (each of its chunks is tried on it first 1 time in 3,
    # until the first abandon marks it slow; then it is tried last).
    for attempt in range(10):
        for fid, data in files.items():
            assert api.download(fid, timeout=120) == data, f"{fid} read back wrong"
        if abandons(m, "read"):
            break
    bypassed = abandons(m, "read")
    assert bypassed >= 1, "no read from the throttled replica was given up for another"
    rec = m.worker_record(vid)
    assert rec["slow"] is True and rec["status"] == "alive", rec
    # Marked slow: its replicas are read last, so no read waits on it again.
    for fid, data in files.items():
        assert api.download(fid, timeout=120) == data
    assert abandons(m, "read") == bypassed, "a read tried the slow worker first again"
    print(f"\nreads: {bypassed} given up on the throttled worker after {attempt + 1} rounds")
