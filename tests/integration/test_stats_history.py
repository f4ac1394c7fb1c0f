"""GET /api/v1/stats/history: the last hour of the master's own load, one
sample every HISTORY_INTERVAL_MS (shortened here), for the dashboard's
charts (docs/API.md). Who may read it is who may read /api/v1/stats; what
it counts is what the master served; the ring is bounded (the unit test
tests/unit/test_history.c checks the wrap)."""

import os
import time

import requests

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

HISTORY = "/api/v1/stats/history"


def test_history_counts_an_upload_burst(cluster):
    m = cluster.start(workers=2, master_env={"REPLICATION_FACTOR": 2,
                                             "HISTORY_INTERVAL_MS": 200})
    c = m.user_client("alice")
    sent = 0
    for i in range(5):
        data = os.urandom(300_000)
        c.upload(data, f"h{i}.bin")
        sent += len(data)
    f = c.get("/api/v1/files").json()["files"][0]
    assert len(c.download(f["file_id"])) == 300_000

    def counted():
        body = c.get(HISTORY).json()
        got = sum(s["bytes_in_per_second"] * s["seconds"] for s in body["samples"])
        out = sum(s["bytes_out_per_second"] * s["seconds"] for s in body["samples"])
        return body if got >= sent * 0.999 and out >= 300_000 else None
    body = wait_until(counted, 10, interval=0.2, what="the burst to reach the history")

    assert body["interval_ms"] == 200 and body["capacity"] == 360
    assert len(body["workers"]) == 2
    assert {w["worker_id"] for w in m.workers()} == set(body["workers"])
    samples = body["samples"]
    assert 0 < len(samples) <= 360
    times = [s["time_ms"] for s in samples]
    assert times == sorted(times), "samples are not oldest first"
    for s in samples:
        assert len(s["disk_used_bytes"]) == len(s["disk_capacity_bytes"]) == 2
        assert s["seconds"] > 0 and s["requests_per_second"] >= 0
    busy = [s for s in samples if s["bytes_in_per_second"] > 0]
    assert busy and all(s["p99_latency_seconds"] is not None for s in busy)
    assert any(s["requests_per_second"] > 0 for s in samples)
    # null until the repair loop's first pass (about a second after start), then 0
    last = wait_until(lambda: (lambda s: s if s["under_replicated_chunks"] == 0 else None)(
        c.get(HISTORY).json()["samples"][-1]), 10, interval=0.2, what="a repair pass")
    assert all(u is not None and 0 < u <= cap
               for u, cap in zip(last["disk_used_bytes"], last["disk_capacity_bytes"]))


def test_history_needs_the_stats_audience(cluster):
    m = cluster.start(workers=1, master_env={"REPLICATION_FACTOR": 1,
                                             "TOPOLOGY_VISIBLE_TO": "operators",
                                             "HISTORY_INTERVAL_MS": 200})
    r = requests.get(m.url + HISTORY, timeout=h.HTTP_TIMEOUT_S)
    assert_json_error(r, 401)
    assert_json_error(m.user_client("alice").get(HISTORY), 403, "operators_only")
    admin = h.make_jwt({"sub": "root", "exp": int(time.time()) + 3600, "admin": True})
    r = m.client(admin).get(HISTORY)
    assert r.status_code == 200, r.text
    assert m.cluster_client().get(HISTORY).status_code == 200
    assert_json_error(m.client(admin).post(HISTORY), 405)
