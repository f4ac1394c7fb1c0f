"""Worker chunk reports: a worker whose report takes long (many chunks, each
judged by the master and many deleted by the worker as orphans) keeps
beating all along; the report runs on its own thread (issue 12, defect 4)."""

import concurrent.futures
import os
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
    assert w.chunk_usage().count == 0
    # The report took long enough for the old behaviour to show.
    print(f"report deleting {CHUNKS} orphans took about {len(statuses) * 0.2:.1f} s; "
          f"the worker stayed alive")
    for _ in range(5):  # and it is still alive after
        assert listed()["status"] == "alive"
        time.sleep(0.2)
