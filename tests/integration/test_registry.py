"""The worker registry: registration, heartbeats, liveness, restarts of
workers and masters, failover, and what a registration must not accept."""

import datetime as dt
import json
import re
import time

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

HEALTH_KEYS = {"status", "workers_alive", "workers_total", "metadata"}
WORKER_KEYS = {"worker_id", "url", "status", "last_heartbeat", "capacity_bytes", "free_bytes",
               "chunk_count"}


def assert_health(health, status, alive, total):
    assert HEALTH_KEYS <= set(health), f"health lacks {HEALTH_KEYS - set(health)}: {health}"
    assert {k: health[k] for k in HEALTH_KEYS} == {
        "status": status, "workers_alive": alive, "workers_total": total, "metadata": "ok"}, health


def by_id(workers):
    return {w["worker_id"]: w for w in workers}


def test_three_workers_register_and_are_listed(cluster):
    m = cluster.start(workers=3)
    health = m.health()
    assert_health(health, "ok", 3, 3)

    r = m.user_client("alice").get("/api/v1/workers")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    workers = r.json()["workers"]
    assert len(workers) == 3, workers
    now = dt.datetime.now(dt.timezone.utc)
    for w in workers:
        assert WORKER_KEYS <= set(w), f"missing {WORKER_KEYS - set(w)} in {w}"
        assert w["status"] == "alive", w
        assert isinstance(w["capacity_bytes"], int) and w["capacity_bytes"] > 0, w
        assert isinstance(w["free_bytes"], int) and 0 <= w["free_bytes"] <= w["capacity_bytes"], w
        assert w["chunk_count"] == 0, w
        beat = h.parse_iso8601(w["last_heartbeat"])
        assert abs((now - beat).total_seconds()) < 30, f"last_heartbeat {beat} is not now ({now})"
    assert {w["url"] for w in workers} == {x.url for x in cluster.workers}
    # Each worker kept the id the master gave it, in WORKER_DATA_DIR/worker_id.
    listed = {w["url"]: w["worker_id"] for w in workers}
    for x in cluster.workers:
        assert x.stored_id() == listed[x.url] == x.worker_id, x.name
    assert len(set(listed.values())) == 3


def test_health_of_an_empty_cluster(cluster):
    m = cluster.add_master()
    assert_health(m.health(), "degraded", 0, 0)
    assert m.workers() == []


def test_health_is_ok_once_replication_factor_workers_are_alive(cluster):
    m = cluster.add_master(REPLICATION_FACTOR=2)
    cluster.add_worker()
    assert_health(m.health(), "degraded", 1, 1)
    cluster.add_worker()
    assert_health(m.wait_workers(alive=2, total=2), "ok", 2, 2)


HEARTBEAT_LINE = r"^(\S+) .*access POST /api/v1/workers/{}/heartbeat 200"


def test_worker_beats_at_the_interval_the_master_gives(cluster):
    m = cluster.add_master(HEARTBEAT_INTERVAL_MS=300, WORKER_DEAD_AFTER_MS=3000)
    # The HTTP heartbeats' access lines are what is counted (gRPC beats:
    # tests/integration/test_grpc.py).
    w = cluster.add_worker(WORKER_PROTOCOL="http")
    rx = re.compile(HEARTBEAT_LINE.format(w.worker_id), re.M)

    def beats():
        stamps = [h.parse_iso8601(x) for x in rx.findall(m.stderr())]
        return stamps if len(stamps) >= 6 else None
    stamps = wait_until(beats, 6 * 0.3 + 2 + h.TIMING_MARGIN_S, what="six heartbeats")
    gaps = sorted((b - a).total_seconds() for a, b in zip(stamps, stamps[1:]))
    median = gaps[len(gaps) // 2]
    assert 0.25 <= median <= 0.3 + 0.5 * h.TIMING_MARGIN_S, f"heartbeat gaps {gaps}"


def test_worker_with_the_wrong_cluster_secret_is_refused(cluster):
    m = cluster.add_master()
    mark = m.log_mark()
    w = cluster.add_worker(wait=False, CLUSTER_SECRET="not-the-cluster-secret-0123456789")
    # It keeps trying (and keeps being refused) ...
    m.wait_for_log(r"access POST /api/v1/workers/register 401(.|\n)*"
                   r"access POST /api/v1/workers/register 401", timeout=5, since=mark)
    assert m.workers() == []
    assert w.stored_id() is None
    # ... and says why, naming the variable to fix.
    w.wait_for_log(r"CLUSTER_SECRET", timeout=5)


def test_heartbeats_keep_workers_alive_and_advance_last_heartbeat(cluster):
    m = cluster.start(workers=2)
    first = by_id(m.workers())
    # Alive throughout more than twice WORKER_DEAD_AFTER_MS: only heartbeats
    # can explain that.
    watch_until = time.monotonic() + 2.2 * m.dead_after_ms / 1000
    while time.monotonic() < watch_until:
        states = {w["worker_id"]: w["status"] for w in m.workers()}
        assert states == {i: "alive" for i in first}, states
        time.sleep(0.1)

    def advanced():
        now = by_id(m.workers())
        return all(h.parse_iso8601(now[i]["last_heartbeat"]) >
                   h.parse_iso8601(first[i]["last_heartbeat"]) for i in first)
    # last_heartbeat may have a resolution of one second.
    wait_until(advanced, 1.0 + 2 * m.heartbeat_ms / 1000 + h.TIMING_MARGIN_S,
               what="last_heartbeat to advance")
    assert_health(m.health(), "degraded", 2, 2)  # fewer than REPLICATION_FACTOR=3


def test_capacity_is_reported(cluster):
    m = cluster.add_master()
    capped = cluster.add_worker(WORKER_CAPACITY_BYTES=123456789)
    suffixed = cluster.add_worker(WORKER_CAPACITY_BYTES="64M")
    listed = by_id(m.workers())
    assert listed[capped.worker_id]["capacity_bytes"] == 123456789
    assert 0 <= listed[capped.worker_id]["free_bytes"] <= 123456789
    assert listed[suffixed.worker_id]["capacity_bytes"] == 64 * 1024 * 1024
    assert 0 <= listed[suffixed.worker_id]["free_bytes"] <= 64 * 1024 * 1024


def test_worker_advertises_worker_advertise_url(cluster):
    m = cluster.add_master()
    w = cluster.add_worker(start=False)
    url = f"{cluster.scheme}://localhost:{w.port}"  # the certificate names localhost too
    w.setenv(WORKER_ADVERTISE_URL=url)
    w.start()
    wid = w.wait_registered()
    assert m.worker_record(wid)["url"] == url


def test_killed_worker_turns_dead_then_comes_back_under_its_id(cluster):
    m = cluster.start(workers=3)
    victim = cluster.workers[1]
    victim_id = victim.worker_id
    victim.kill()
    killed_at = time.monotonic()
    deadline = m.dead_deadline_s()
    m.wait_worker_status(victim_id, "dead", timeout=deadline)
    took = time.monotonic() - killed_at
    assert took <= deadline
    # It cannot be dead before its last beat is WORKER_DEAD_AFTER_MS old.
    assert took >= 0.7 * (m.dead_after_ms - m.heartbeat_ms) / 1000, \
        f"declared dead {took:.2f}s after the kill: sooner than WORKER_DEAD_AFTER_MS allows"
    workers = by_id(m.workers())
    assert sorted(i for i, w in workers.items() if w["status"] == "alive") == \
        sorted(w.worker_id for w in cluster.workers if w is not victim)
    assert_health(m.health(), "degraded", 2, 3)

    victim.start()
    assert victim.wait_registered() == victim_id
    assert victim.stored_id() == victim_id
    health = m.wait_workers(alive=3, total=3)
    assert_health(health, "ok", 3, 3)
    assert sorted(by_id(m.workers())) == sorted(w.worker_id for w in cluster.workers)


def test_paused_worker_turns_dead_and_comes_back_after_sigcont(cluster):
    m = cluster.start(workers=3)
    frozen = cluster.workers[0]
    frozen.pause()
    m.wait_worker_status(frozen.worker_id, "dead")
    assert_health(m.health(), "degraded", 2, 3)
    frozen.resume()
    m.wait_worker_status(frozen.worker_id, "alive",
                         timeout=2 * m.heartbeat_ms / 1000 + h.TIMING_MARGIN_S + 1)
    assert_health(m.wait_workers(alive=3, total=3), "ok", 3, 3)
    assert frozen.stored_id() == frozen.worker_id


def test_heartbeat_for_unknown_worker_is_404(cluster):
    m = cluster.add_master()
    c = m.cluster_client()
    body = {"capacity_bytes": 100, "free_bytes": 50, "chunk_count": 0}
    assert_json_error(c.post("/api/v1/workers/w-doesnotexist/heartbeat", json=body), 404)
    assert m.workers() == []
    # A known worker's heartbeat is accepted.
    r = c.post("/api/v1/workers/register", json={"url": "http://127.0.0.1:9", **body})
    assert r.status_code == 200, r.text
    wid = r.json()["worker_id"]
    r = c.post(f"/api/v1/workers/{wid}/heartbeat", json={**body, "free_bytes": 40})
    assert r.status_code == 200, r.text
    assert m.worker_record(wid)["free_bytes"] == 40


def test_manual_registration_keeps_the_given_id(cluster):
    m = cluster.add_master()
    c = m.cluster_client()
    r = c.post("/api/v1/workers/register", json={
        "worker_id": "w-chosen_1", "url": "http://127.0.0.1:9", "capacity_bytes": 1000,
        "free_bytes": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["worker_id"] == "w-chosen_1"
    assert body["heartbeat_interval_ms"] == m.heartbeat_ms
    rec = m.worker_record("w-chosen_1")
    assert rec["url"] == "http://127.0.0.1:9" and rec["status"] == "alive"
    assert (rec["capacity_bytes"], rec["free_bytes"]) == (1000, 10)


def test_master_with_fresh_data_dir_is_refused_by_its_old_workers(cluster):
    """Issue 12, defect 7: a master on empty metadata is another cluster.
    Its old workers refuse it (until issue 12 they came back under their
    old ids, and their reports deleted every chunk as an orphan); they keep
    their ids and their cluster. The data-loss side is
    test_identity.py::test_master_on_empty_metadata_is_refused_and_deletes_nothing."""
    m = cluster.start(workers=3)
    ids = sorted(w.worker_id for w in cluster.workers)
    m.restart(fresh_data_dir=True)
    m.wait_ready()
    for w in cluster.workers:
        w.wait_for_log("refusing; nothing deleted", timeout=10 + h.TIMING_MARGIN_S)
    assert m.workers() == []
    assert sorted(w.stored_id() for w in cluster.workers) == ids
    assert_health(m.health(), "degraded", 0, 0)


def test_worker_started_before_master_registers_with_backoff(cluster):
    m = cluster.add_master(start=False)
    # Until the master starts, its port drops every connection.
    rec = cluster.recorder(port=m.port)
    w = cluster.add_worker(master=m, wait=False)
    wait_until(lambda: len(rec.times) >= 4, 10, what="four registration attempts")
    gaps = [b - a for a, b in zip(rec.times, rec.times[1:])]
    assert gaps[0] >= 0.03, f"retries without pause: {gaps}"
    assert gaps[2] > 1.5 * gaps[0], f"retry gaps do not grow (no backoff): {gaps}"
    assert w.stored_id() is None
    rec.close()
    m.start()
    m.wait_ready()
    wid = w.wait_registered(timeout=10 + h.TIMING_MARGIN_S)
    assert w.stored_id() == wid
    m.wait_workers(alive=1, total=1)


def test_worker_fails_over_to_the_second_master_url(cluster):
    m = cluster.add_master()
    dead = f"http://127.0.0.1:{h.free_port()}"
    w = cluster.add_worker(master=m, master_url=f"{dead},{m.url}", wait=False,
                           WORKER_PROTOCOL="http")  # its HTTP beats are read below
    wid = w.wait_registered(m, timeout=10)
    # And it keeps beating there.
    mark = m.log_mark()
    m.wait_for_log(rf"POST /api/v1/workers/{wid}/heartbeat 200(.|\n)*"
                   rf"POST /api/v1/workers/{wid}/heartbeat 200", timeout=5, since=mark)
    assert m.worker_record(wid)["status"] == "alive"


def test_worker_with_a_lost_id_file_retires_its_old_record(cluster):
    m = cluster.add_master()
    w = cluster.add_worker()
    old_id = w.worker_id
    w.stop()
    w.id_file.unlink()
    w.start()
    new_id = w.wait_registered()
    assert new_id != old_id and w.stored_id() == new_id
    # The old record is the same machine at the same URL: dead at once, not
    # after WORKER_DEAD_AFTER_MS.
    assert m.worker_record(old_id)["status"] == "dead"
    assert_health(m.health(), "degraded", 1, 2)


def test_worker_ignores_a_corrupt_id_file(cluster):
    m = cluster.add_master()
    w = cluster.add_worker(start=False)
    w.data_dir.mkdir(parents=True)
    w.id_file.write_text("../../etc/passwd\n")
    w.start()
    wid = w.wait_registered()
    assert wid != "../../etc/passwd" and w.stored_id() == wid
    assert [x["worker_id"] for x in m.workers()] == [wid]


BAD_REGISTRATIONS = {
    "missing-url": {"capacity_bytes": 1, "free_bytes": 1},
    "ftp-url": {"url": "ftp://x", "capacity_bytes": 1, "free_bytes": 1},
    "url-without-host": {"url": "http://", "capacity_bytes": 1, "free_bytes": 1},
    "url-not-a-string": {"url": 80, "capacity_bytes": 1, "free_bytes": 1},
    "dotdot-worker-id": {"worker_id": "../x", "url": "http://127.0.0.1:9"},
    "slash-worker-id": {"worker_id": "a/b", "url": "http://127.0.0.1:9"},
    "long-worker-id": {"worker_id": "w" * 65, "url": "http://127.0.0.1:9"},
    "empty-worker-id": {"worker_id": "", "url": "http://127.0.0.1:9"},
    "negative-capacity": {"url": "http://127.0.0.1:9", "capacity_bytes": -1},
    "string-capacity": {"url": "http://127.0.0.1:9", "capacity_bytes": "12"},
    "fractional-free": {"url": "http://127.0.0.1:9", "free_bytes": 1.5},
}


@pytest.fixture(scope="module")
def registry_master(shared_cluster):
    return shared_cluster.add_master("registry-master")


@pytest.mark.parametrize("body", BAD_REGISTRATIONS.values(), ids=BAD_REGISTRATIONS.keys())
def test_register_rejects_bad_fields(registry_master, body):
    c = registry_master.cluster_client()
    assert_json_error(c.post("/api/v1/workers/register", json=body), 400)
    assert registry_master.workers() == []


@pytest.mark.parametrize("payload", [b"not json", b"{\"url\": ", b"[]", b"\"http://x\"", b"",
                                     b"{\"url\": \"http://127.0.0.1:9\", \"url\": \"http://a:1\"}"],
                         ids=["text", "truncated", "array", "string", "empty", "duplicate-key"])
def test_register_rejects_bodies_that_are_not_a_json_object(registry_master, payload):
    c = registry_master.cluster_client()
    r = c.post("/api/v1/workers/register", data=payload,
               headers={"Content-Type": "application/json"})
    assert_json_error(r, 400)
    assert registry_master.workers() == []


def big_registration():
    body = {"url": "http://127.0.0.1:9", "capacity_bytes": 1, "padding": "x" * (17 * 1024)}
    return json.dumps(body).encode()


def test_register_rejects_a_body_over_16k(registry_master):
    c = registry_master.cluster_client()
    r = c.post("/api/v1/workers/register", data=big_registration(),
               headers={"Content-Type": "application/json"})
    assert_json_error(r, 413)
    assert registry_master.workers() == []


def test_register_rejects_a_chunked_body_over_16k(registry_master):
    data = big_registration()
    pieces = (data[i:i + 4096] for i in range(0, len(data), 4096))  # no Content-Length
    c = registry_master.cluster_client()
    r = c.post("/api/v1/workers/register", data=pieces,
               headers={"Content-Type": "application/json"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert_json_error(r, 413)
    assert registry_master.workers() == []


def test_heartbeat_rejects_bad_input(registry_master):
    c = registry_master.cluster_client()
    assert_json_error(c.post("/api/v1/workers/bad.id/heartbeat", json={}), 400)
    assert_json_error(c.post("/api/v1/workers/w-x/heartbeat", data=b"nope",
                             headers={"Content-Type": "application/json"}), 400)
