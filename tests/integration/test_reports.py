"""Worker chunk reports: a worker whose report takes long (many chunks, each
judged by the master and many deleted by the worker as orphans) keeps
beating all along; the report runs on its own thread (issue 12, defect 4)."""

import concurrent.futures
import hashlib
import os
import re
import threading
import time

import echofs_harness as h
from echofs_harness import wait_until

CHUNKS = 6000
WRITERS = 8


def put_chunks(worker, count):
    """PUTs @count small chunks of random ids straight into @worker's store,
    over a few keep-alive connections."""
    def run(part):
        api = worker.client(h.CLUSTER_SECRET)
        for _ in range(part):
            chunk_id = os.urandom(32).hex()
            r = api.put(f"/chunks/{chunk_id}", data=os.urandom(16),
                        headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
    parts = [count // WRITERS + (1 if i < count % WRITERS else 0) for i in range(WRITERS)]
    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        for f in [pool.submit(run, p) for p in parts]:
            f.result()


def test_worker_stays_alive_through_a_long_report(cluster):
    """Thousands of chunks the master does not know, older than
    ORPHAN_GRACE_MS: the full report at the worker's registration makes the
    worker delete every one of them (each a durable tombstone). That work is
    the report's: the heartbeat goes on meanwhile, so the master never
    lists the worker dead (WORKER_DEAD_AFTER_MS=3000, polled every 200 ms).
    On the heartbeat thread, as before, the beats stopped for the whole
    report."""
    m = cluster.start(workers=1, master_env={"WORKER_DEAD_AFTER_MS": 3000,
                                             "ORPHAN_GRACE_MS": 1000})
    w = cluster.workers[0]
    put_chunks(w, CHUNKS)
    time.sleep(1.5)  # older than ORPHAN_GRACE_MS: orphans for the next report

    # A restart registers again, which asks for a full report at once.
    w.stop()
    w.start()
    api = m.cluster_client()

    def listed():
        r = api.get("/api/v1/workers")
        assert r.status_code == 200, r.text
        workers = r.json()["workers"]
        assert len(workers) == 1, workers
        return workers[0]

    wait_until(lambda: listed()["status"] == "alive" and listed()["chunk_count"] > 0, 10,
               what="the worker to beat again")
    statuses = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        entry = listed()
        statuses.append(entry["status"])
        assert entry["status"] == "alive", \
            f"the worker was listed {entry['status']} during its report after " \
            f"{len(statuses) * 0.2:.1f} s: {entry}"
        if entry["chunk_count"] == 0:
            break
        time.sleep(0.2)
    assert entry["chunk_count"] == 0, "the report did not finish in 120 s"
    # The master counts a batch's chunks gone when it answers the batch; the
    # worker deletes them after it reads that answer, a moment later.
    wait_until(lambda: w.chunk_usage().count == 0, 10,
               what="the worker to delete the last batch's orphans")
    # The report took long enough for the old behaviour to show.
    print(f"report deleting {CHUNKS} orphans took about {len(statuses) * 0.2:.1f} s; "
          f"the worker stayed alive")
    for _ in range(5):  # and it is still alive after
        assert listed()["status"] == "alive"
        time.sleep(0.2)


def test_a_rejoin_asks_for_one_report_not_one_per_beat(cluster):
    """Issue 19, the rejoin-report loop: the master asks a worker it had
    counted dead for a full report at every beat until a report whose
    snapshot follows the ask is under way, not until one ends. Until then
    every beat answered during a long report asked for one more after it,
    and a report slow enough to delay the beats past WORKER_DEAD_AFTER_MS
    never ended the asking. An ask made during the report (the worker was
    counted dead again: repair may have copied its chunks after the
    snapshot) still stands after that report ends.

    The test plays the worker itself, by hand, so each step is exact."""
    m = cluster.add_master(WORKER_DEAD_AFTER_MS=1000)
    c = m.cluster_client()
    space = {"capacity_bytes": 1 << 30, "free_bytes": 1 << 29, "chunk_count": 0}
    r = c.post("/api/v1/workers/register", json={"url": "http://127.0.0.1:9", **space})
    assert r.status_code == 200, r.text
    wid = r.json()["worker_id"]
    # When the master last answered us: it notes a worker's contact before
    # it answers, so this is later than the master's own note.
    answered = [time.monotonic()]

    def beat() -> bool:
        r = c.post(f"/api/v1/workers/{wid}/heartbeat", json=space)
        answered[0] = time.monotonic()
        assert r.status_code == 200, r.text
        return r.json()["full_report"]

    def report(last: bool, master_started_ms=None) -> int:
        now = int(time.time() * 1000)
        body = {"started_at_ms": now, "now_ms": now, "chunks": [], "last": last}
        if master_started_ms is not None:
            body["master_started_ms"] = master_started_ms
        r = c.post(f"/api/v1/workers/{wid}/report", json=body)
        answered[0] = time.monotonic()
        assert r.status_code == 200, r.text
        return r.json()["now_ms"]

    def silent_past_dead_after():
        # Silent for WORKER_DEAD_AFTER_MS (1 s) since the master last noted
        # us: a beat within that time of a contact is no rejoin, though the
        # list may say dead already (its clock starts at the beat's start,
        # the contact's at its answer, later on a loaded machine). Then the
        # list must say dead; awaited with room for a loaded machine, since
        # the test is about the asks, not about that delay.
        time.sleep(max(0.0, answered[0] + 1.05 - time.monotonic()))
        m.wait_worker_status(wid, "dead", timeout=10 + h.TIMING_MARGIN_S)

    assert beat() is False, "a worker just registered is no rejoin"
    silent_past_dead_after()
    assert beat() is True, "a worker counted dead is asked for a report"
    assert beat() is True, "asked again while no report has begun (an answer may be lost)"
    started = report(False)  # a full report's first request: the master's reading
    assert beat() is True, "the reading alone is no report under way"
    report(False, started)  # a batch of the snapshot taken after that reading
    assert beat() is False, \
        "asked for another report while one begun after the ask was under way"
    assert beat() is False
    # Counted dead again in the middle of the report: asked anew, and the
    # report begun before that ask does not answer it.
    silent_past_dead_after()
    assert beat() is True
    report(True, started)
    assert beat() is True, "the end of a report older than the ask answered it"
    again = report(False)
    report(True, again)
    assert beat() is False, "a report begun after the ask did not answer it"
    m.wait_for_log(rf"worker {wid} beats again after it was counted dead", timeout=5)


SYNC_GATE_SO = h.REPO / "build" / ("san" if h.SANITIZE else "dev") / "tests" / "sync_gate.so"


def in_flight(worker):
    r = worker.client().get("/metrics")
    m = re.search(r"^echofs_http_requests_in_flight (\d+)", r.text, re.M)
    return int(m.group(1)) if m else 0


def test_a_copy_a_report_would_delete_during_an_upload_of_it_is_deleted_after(cluster, tmp_path):
    """A worker's report judges an old copy no row names (an orphan) while
    this master is uploading the same bytes: the master keeps the copy for
    now (the upload may be about to count it) and the worker's next full
    report is an hour away, so the late-write watch deletes it once the
    upload is over (a random-faults run found such a copy left at 4 copies
    of a chunk: a surplus replica whose row the report had dropped). The
    upload's one worker holds its disk writes (tests/preload/sync_gate.c)
    while a report batch of the orphan's worker lists it (sent here, as the
    worker would: the master gives up a write held 3 s, too short for a
    restart's report on a loaded machine); the orphan's worker is full, so
    no upload writes there."""
    assert SYNC_GATE_SO.exists(), f"{SYNC_GATE_SO} is missing: build it first (make)"
    gate = tmp_path / "gate"
    m = cluster.add_master(REPLICATION_FACTOR=1, ORPHAN_GRACE_MS=500,
                           WORKER_DEAD_AFTER_MS=60000)
    env = {"LD_PRELOAD": str(SYNC_GATE_SO), "ECHOFS_SYNC_GATE": str(gate)}
    if h.SANITIZE:
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    writer = cluster.add_worker("gated", master=m, **env)
    # room for the orphan, not for an upload (placement wants 16 KiB spare)
    full = cluster.add_worker("full", master=m, WORKER_CAPACITY_BYTES=30000)
    m.wait_workers(alive=2, total=2)
    data = os.urandom(20_000)  # random: stored as it is, one chunk
    chunk_id = hashlib.sha256(data).hexdigest()
    secret = full.client(h.CLUSTER_SECRET)
    put_at_ms = int(time.time() * 1000)
    r = secret.put(f"/chunks/{chunk_id}", data=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    time.sleep(1.0)  # older than ORPHAN_GRACE_MS
    api = m.user_client()
    answer = {}
    gate.touch()
    mark, upload = m.log_mark(), None
    try:
        upload = threading.Thread(target=lambda: answer.update(r=api.post(
            "/api/v1/files/upload", params={"name": "same.bin"}, data=data,
            headers={"Content-Type": "application/octet-stream"})))
        upload.start()
        # the upload's write is at the gated worker's disk: the chunk is
        # pinned until it is stored (the master gives up after 3 s)
        wait_until(lambda: in_flight(writer) >= 2, 3, interval=0.01,
                   what="the upload's write to be under way")
        now = int(time.time() * 1000)
        r = m.cluster_client().post(f"/api/v1/workers/{full.worker_id}/report", json={
            "started_at_ms": now, "now_ms": now, "chunks": [[chunk_id, put_at_ms]],
            "last": False})
        assert r.status_code == 200, r.text
        assert chunk_id not in r.json()["delete"], r.text  # kept: being written
    finally:
        gate.unlink()
        if upload:
            upload.join(30)
    assert answer["r"].status_code == 201, answer["r"].text
    fid = answer["r"].json()["file_id"]
    info = api.get(f"/api/v1/files/{fid}").json()
    assert [c["chunk_id"] for c in info["chunks"]] == [chunk_id], info
    assert m.wait_for_log(r"copies to delete kept for now \(this master is writing", 5,
                          since=mark)
    # deleted by the watch, not left for the report an hour away
    wait_until(lambda: secret.head(f"/chunks/{chunk_id}").status_code == 404, 20,
               what="the orphan copy deleted")
    assert api.download(fid) == data
    assert writer.client(h.CLUSTER_SECRET).head(f"/chunks/{chunk_id}").status_code == 200


def test_a_lost_copy_written_again_after_the_worker_looked_stays_good(cluster):
    """A worker's `lost` ids with `lost_checked_after_ms` (the copies a
    DELETE removed while its full report listed the store, still absent
    after the report's last answer) mark only the replicas recorded by
    then: a later row names a copy an upload wrote again after the worker
    looked (CI, 2026-12-05: the churn test of test_clock_skew.py found a
    rewritten, good copy marked bad, repaired to a fourth disk and its own
    copy never removed). Such a row stays good and the worker is asked
    for its next full report (in 5.5 s); a row recorded before is marked,
    as is any row for lost ids without the field (the scrubber's)."""
    m = cluster.add_master(CHUNK_SIZE=64 * 1024, REPLICATION_FACTOR=3)
    workers = [cluster.add_worker(master=m) for _ in range(3)]
    m.wait_workers(alive=3, total=3)
    c = m.cluster_client()
    api = m.user_client()
    w1, w2 = workers[0].stored_id(), workers[1].stored_id()

    def report(worker_id, **extra):
        now = int(time.time() * 1000)
        r = c.post(f"/api/v1/workers/{worker_id}/report",
                   json={"started_at_ms": now, "now_ms": now, "chunks": [], **extra})
        assert r.status_code == 200, r.text
        return r.json()

    def holders(fid):
        info = api.get(f"/api/v1/files/{fid}").json()
        assert len(info["chunks"]) == 1, info
        return sorted(x["worker_id"] for x in info["chunks"][0]["replicas"])

    # The worker looked (the master's answer), then the copies were written.
    looked = report(w1)["now_ms"]
    time.sleep(0.01)
    f = api.upload(os.urandom(1000), name="again.bin")
    chunk_id = api.get(f"/api/v1/files/{f['file_id']}").json()["chunks"][0]["chunk_id"]
    assert len(holders(f["file_id"])) == 3

    answer = report(w1, lost=[chunk_id], lost_checked_after_ms=looked)
    assert answer["lost_marked"] == 0, answer
    # late enough for that report's end to mark the row (rows recorded
    # 5 s before it began) if the copy were gone
    assert answer.get("report_again_in_ms", 0) > 5000, answer
    assert w1 in holders(f["file_id"])
    assert m.wait_for_log(rf"worker {w1} report: 1 chunks it found deleted have a replica "
                          r"here recorded since")

    # Looked after the row was recorded: the copy is gone, the row bad
    # (lost_marked counts rows marked; repair may write a copy there again
    # at once, so the holders are not looked at).
    answer = report(w1, lost=[chunk_id], lost_checked_after_ms=answer["now_ms"])
    assert answer["lost_marked"] == 1, answer
    assert "report_again_in_ms" not in answer, answer
    # Without the field (the scrubber's ids): marked whenever recorded.
    answer = report(w2, lost=[chunk_id])
    assert answer["lost_marked"] == 1, answer
    # An id no row of the worker names marks nothing.
    assert report(w2, lost=["ab" * 32])["lost_marked"] == 0
