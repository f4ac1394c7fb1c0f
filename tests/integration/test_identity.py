"""Cluster identity (issue 12, defect 7): a cluster id is drawn with the
metadata; a worker adopts it at its first registration and from then on
refuses (loudly, deleting nothing) a master of another cluster, and a
master refuses a worker whose data belongs to another cluster."""

import os
import re
import time

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CLUSTER_ID = re.compile(r"^[0-9a-f]{32}$")
REFUSAL = "refusing; nothing deleted"


def cluster_file(w) -> str:
    try:
        return (w.data_dir / "cluster_id").read_text().strip()
    except FileNotFoundError:
        return ""


def wait_adopted(workers, cluster_id):
    for w in workers:
        wait_until(lambda: cluster_file(w) == cluster_id, 10 + h.TIMING_MARGIN_S,
                   what=f"{w.name} to adopt cluster {cluster_id}")


def test_master_on_empty_metadata_is_refused_and_deletes_nothing(cluster):
    """A master started on an empty DATA_DIR against the workers of an
    existing cluster used to take every chunk for an orphan and have the
    reports delete it. Now the workers refuse it, and once the original
    master is back every file reads back byte-identical."""
    report_ms = 300
    m = cluster.start(workers=3, master_env={"ORPHAN_GRACE_MS": 500},
                      worker_env={"REPORT_INTERVAL_MS": report_ms})
    original_id = m.health().get("cluster_id")
    c = m.user_client()
    files = {}
    for i in range(4):
        data = os.urandom(200_000 + i * 7919)
        files[c.upload(data, f"f{i}.bin")["file_id"]] = data
    usage = {w.name: w.chunk_usage().ids for w in cluster.workers}
    worker_ids = sorted(w.worker_id for w in cluster.workers)
    old_data_dir, old_database = m.data_dir, m.database_url
    marks = {w.name: w.log_mark() for w in cluster.workers}

    # The same URL, empty metadata: another cluster as far as anyone can tell.
    m.restart(fresh_data_dir=True, ORPHAN_GRACE_MS=500)
    m.wait_ready()
    fresh_id = m.health().get("cluster_id")
    time.sleep(10 * report_ms / 1000 + 1 + h.TIMING_MARGIN_S)  # several report intervals
    fresh_workers = m.workers()
    m.stop()

    # The original master, on its own metadata: everything is still there.
    m.data_dir, m.database_url = old_data_dir, old_database
    m.start()
    m.wait_ready()
    wait_until(lambda: sorted(w["worker_id"] for w in m.workers() if w["status"] == "alive")
               == worker_ids, 10 + h.TIMING_MARGIN_S, what="the workers back with the original")
    for file_id, data in files.items():
        assert c.download(file_id) == data, f"file {file_id} changed or lost"
    for w in cluster.workers:
        assert set(usage[w.name]) <= set(w.chunk_usage().ids), f"{w.name} lost chunks"

    # What the operator saw meanwhile.
    assert CLUSTER_ID.match(original_id or ""), original_id
    assert CLUSTER_ID.match(fresh_id or ""), fresh_id
    assert fresh_id != original_id
    assert m.health()["cluster_id"] == original_id
    assert fresh_workers == [], f"the fresh master accepted workers: {fresh_workers}"
    for w in cluster.workers:
        assert cluster_file(w) == original_id
        log = w.stderr_since(marks[w.name])
        assert f"master {m.url} belongs to cluster {fresh_id}, this worker's data belongs to " \
            f"cluster {original_id}: {REFUSAL}" in log, w.log_tail()
        assert log.count(REFUSAL) == 1, "the refusal is logged once per master URL"
        r = w.health()
        assert r.status_code == 200 and r.json()["cluster_id"] == original_id, r.text
    assert re.search(rf"belongs to cluster {original_id}, this master to cluster {fresh_id}: "
                     "refused", m.stderr(all_runs=True)), m.log_tail()


def test_worker_refuses_calls_of_another_cluster(cluster):
    """Every chunk call a master makes names its cluster: a worker of
    another cluster answers 409 wrong_cluster and keeps its chunk. A call
    naming no cluster (tools) or the right one is served as before."""
    m = cluster.start(workers=3)
    cluster_id = m.health()["cluster_id"]
    wait_adopted(cluster.workers, cluster_id)
    data = os.urandom(100_000)
    m.user_client().upload(data, "x.bin")
    w = next(w for w in cluster.workers if w.chunk_usage().count)
    chunk_id = next(iter(w.chunk_usage().ids))
    wc = w.client(h.CLUSTER_SECRET)
    other = {"X-Echofs-Cluster": "0" * 32}
    assert_json_error(wc.delete(f"/chunks/{chunk_id}", headers=other), 409, "wrong_cluster")
    assert_json_error(wc.get(f"/chunks/{chunk_id}", headers=other), 409, "wrong_cluster")
    assert_json_error(wc.put(f"/chunks/{'a' * 64}", data=b"x", headers=other), 409,
                      "wrong_cluster")
    assert wc.head(f"/chunks/{chunk_id}", headers=other).status_code == 409
    assert chunk_id in w.chunk_usage().ids
    assert wc.get(f"/chunks/{chunk_id}", headers={"X-Echofs-Cluster": cluster_id}).status_code \
        == 200
    assert wc.get(f"/chunks/{chunk_id}").status_code == 200

    # The master refuses a registration naming another cluster.
    r = m.cluster_client().post("/api/v1/workers/register", headers=other, json={
        "url": "http://127.0.0.1:9", "capacity_bytes": 1000, "free_bytes": 10})
    assert_json_error(r, 409, "wrong_cluster")
    assert r.json()["error"]["cluster_id"] == cluster_id
    assert all(rec["url"] != "http://127.0.0.1:9" for rec in m.workers())


def test_worker_with_data_of_another_cluster_is_refused(cluster):
    """A worker restarted on a data directory of another cluster, pointed
    at this cluster's master, is refused at registration: the master never
    reads its chunk report, so nothing of it is deleted."""
    a = cluster.start(workers=3, master_env={"ORPHAN_GRACE_MS": 500})
    a_id = a.health().get("cluster_id")
    b = cluster.add_master("other", start=False, ORPHAN_GRACE_MS=500, REPLICATION_FACTOR=1)
    if b.database_url is not None:
        b.database_url = cluster.new_database()
    b.start()
    b.wait_ready()
    b_id = b.health().get("cluster_id")
    stray = cluster.add_worker(master=b, REPORT_INTERVAL_MS=300)
    # Replication 1 on the other cluster: its only worker holds the chunks.
    b.user_client().upload(os.urandom(150_000), "s.bin")
    assert stray.chunk_usage().count > 0
    stray.stop()
    before = stray.chunk_usage().ids

    mark = a.log_mark()
    stray.master = a
    stray.master_url = a.url
    stray.setenv(MASTER_URL=a.url)
    stray.start()
    stray.wait_ready()
    time.sleep(3 + h.TIMING_MARGIN_S)  # several report intervals and orphan graces
    assert stray.chunk_usage().ids == before, "chunks of the other cluster were deleted"
    assert all(rec["url"] != stray.advertise_url for rec in a.workers())

    assert CLUSTER_ID.match(a_id or "") and CLUSTER_ID.match(b_id or ""), (a_id, b_id)
    assert a_id != b_id
    assert cluster_file(stray) == b_id
    assert re.search(rf"belongs to cluster {b_id}, this master to cluster {a_id}: refused",
                     a.stderr_since(mark)), a.log_tail()
    assert f"belongs to cluster {a_id}, this worker's data belongs to cluster {b_id}: " \
        f"{REFUSAL}" in stray.stderr(), stray.log_tail()
    body = stray.health().json()
    assert body["registered"] is False and body["cluster_id"] == b_id, body


def test_masters_opening_new_metadata_at_once_agree(cluster, tmp_path):
    """The cluster id is drawn in the migration's transaction: masters
    started at the same moment on one new store all read the same id."""
    url = cluster.new_database() if cluster.database_url is not None \
        else f"sqlite:{tmp_path / 'shared' / 'echofs.db'}"
    masters = [cluster.add_master(f"m{i}", start=False) for i in range(3)]
    for m in masters:
        m.database_url = url
    for m in masters:
        m.start()
    ids = {m.wait_ready().get("cluster_id") for m in masters}
    assert len(ids) == 1 and CLUSTER_ID.match(ids.pop() or ""), ids
