"""Clock skew between a worker and the master deletes nothing acknowledged.

A worker runs with its wall clock 30 s ahead of or behind the master's
(Debian's libfaketime, LD_PRELOAD; its monotonic clock is left alone).
Every decision that can delete a copy or mark a replica bad must be made on
one clock (docs/LIFECYCLE.md, "Which clock decides what"):

  * the collector's conditional DELETE carries a duration
    (X-Unmodified-For-Ms) that the worker measures from its own write time
    on its own clock: a copy written again just before the DELETE arrives is
    kept on a worker behind the master, and a collected chunk is really
    deleted on a worker ahead of it;
  * the end of a full report compares replica creation times with the
    master's reading of the report's start: a worker ahead of the master,
    reporting while uploads are recorded, gets no fresh replica marked bad.

Needs libfaketime (`apt-get install faketime`, in scripts/install-deps.sh).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pytest

import echofs_harness as h
from echofs_harness import wait_until

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
if not LIBFAKETIME.exists():
    pytest.skip("clock skew tests need libfaketime (apt-get install faketime)",
                allow_module_level=True)

SKEW_S = 30
COLLECTED = r"collector: \d+ unreferenced chunks removed"


def skewed(seconds: int) -> dict:
    """A worker's environment with its wall clock @seconds off (+ ahead)."""
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if h.SANITIZE:
        # ASan insists on being first in the library list; a preloaded
        # libfaketime comes before it.  Both work in that order.
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    return env


def worker_clock_offset(w: h.Worker) -> float:
    """How far the worker's wall clock is from ours, from its Date header."""
    r = w.client(h.CLUSTER_SECRET).get("/health")
    their = time.mktime(time.strptime(r.headers["Date"], "%a, %d %b %Y %H:%M:%S GMT"))
    ours = time.mktime(time.gmtime())
    return their - ours


def one_worker_cluster(cluster: h.Cluster, skew_s: int, master_env: dict,
                       worker_env: dict | None = None) -> tuple[h.Master, h.Worker]:
    m = cluster.add_master(REPLICATION_FACTOR=1, **master_env)
    w = cluster.add_worker(master=m, **skewed(skew_s), **(worker_env or {}))
    m.wait_workers(alive=1, total=1)
    offset = worker_clock_offset(w)
    assert abs(offset - skew_s) < 3, f"the worker's clock is {offset:+.0f} s off, not {skew_s:+d}"
    return m, w


def stored_bytes(w: h.Worker, chunk_id: str) -> tuple[bytes, str]:
    r = w.client(h.CLUSTER_SECRET).get(f"/chunks/{chunk_id}")
    assert r.status_code == 200, r.text
    return r.content, r.headers["X-Chunk-Encoding"]


def test_collector_deletes_a_collected_chunk_on_a_worker_ahead(cluster):
    """Before the fix the DELETE said "unless written since <master time -
    grace/2>": a worker 30 s ahead stamped every write later than that and
    answered 412 for ever, keeping every collected chunk."""
    m, w = one_worker_cluster(cluster, +SKEW_S, {"GC_GRACE_MS": 500})
    api = m.user_client()
    data = os.urandom(5000)
    fid = api.upload(data, name="doomed.bin")["file_id"]
    assert set(w.chunk_usage().ids) == {hashlib.sha256(data).hexdigest()}
    mark = m.log_mark()
    assert api.delete(f"/api/v1/files/{fid}").status_code == 204
    m.wait_for_log(COLLECTED, timeout=5 + h.TIMING_MARGIN_S, since=mark)
    wait_until(lambda: w.chunk_usage().count == 0, 5 + h.TIMING_MARGIN_S,
               what="the collected chunk to leave the worker ahead of the master")


@pytest.mark.slow(reason="waits out a 12 s GC_GRACE_MS")
def test_collector_keeps_a_copy_written_again_on_a_worker_behind(cluster):
    """A copy the worker wrote moments before the collector's DELETE (an
    upload that stored the bytes again) is kept, though the worker's clock is
    30 s behind: before the fix its write time looked older than the
    master's "unless written since" time and the copy was deleted."""
    grace_ms = 12000
    m, w = one_worker_cluster(cluster, -SKEW_S, {"GC_GRACE_MS": grace_ms})
    api = m.user_client()
    data = os.urandom(5000)
    cid = hashlib.sha256(data).hexdigest()
    fid = api.upload(data, name="again.bin")["file_id"]
    body, encoding = stored_bytes(w, cid)
    mark = m.log_mark()
    assert api.delete(f"/api/v1/files/{fid}").status_code == 204
    released = time.monotonic()
    # 9 s into the 12 s grace: the collector decides 3-4 s later, well
    # within the grace/2 (6 s) the worker measures on its own clock.
    time.sleep(max(0.0, released + 9 - time.monotonic()))
    r = w.client(h.CLUSTER_SECRET).put(f"/chunks/{cid}", data=body,
                               headers={"X-Chunk-Encoding": encoding,
                                        "X-Chunk-CRC32C": f"{h.crc32c(body):08x}"})
    assert r.status_code == 201, r.text
    assert not re.search(COLLECTED, m.stderr_since(mark)), \
        "the collector ran before the copy was written again: the machine is too slow"
    m.wait_for_log(COLLECTED, timeout=8 + h.TIMING_MARGIN_S, since=mark)
    time.sleep(0.5)  # the DELETE follows the metadata transaction
    assert cid in w.chunk_usage().ids, "the copy written again was deleted"
    assert stored_bytes(w, cid) == (body, encoding)


def test_reports_of_a_worker_ahead_mark_no_fresh_replica_bad(cluster):
    """A worker 30 s ahead sends a full report every 100 ms while uploads are
    recorded on it. Before the fix the end of each report marked bad every
    good replica recorded before its start (worker clock) - 5 s: on a worker
    ahead that includes replicas recorded after its snapshot, not listed in
    it. Every file must keep its one replica good, and read back."""
    m, w = one_worker_cluster(cluster, +SKEW_S, {}, {"REPORT_INTERVAL_MS": 100})
    api = m.user_client()
    files: dict[str, bytes] = {}
    stop = time.monotonic() + 4
    while time.monotonic() < stop:
        data = os.urandom(2000)
        files[api.upload(data, name="f.bin")["file_id"]] = data
    reports = len(re.findall(r"chunk report sent", w.stderr()))
    assert reports >= 5, f"only {reports} full reports ran during the uploads"
    bad = []
    for fid, data in files.items():
        info = api.get(f"/api/v1/files/{fid}").json()
        if len(info["chunks"][0]["replicas"]) != 1:
            bad.append(fid)
    assert not bad, f"{len(bad)} of {len(files)} files lost their good replica to a report"
    assert "no longer holds" not in m.stderr()
    for fid, data in files.items():
        assert api.download(fid) == data
