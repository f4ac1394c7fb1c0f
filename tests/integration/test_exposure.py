"""Information exposure (issue 12, item 14): who sees the cluster's
internal topology - worker URLs and capacities, cluster-wide totals.

TOPOLOGY_VISIBLE_TO=users (the default) keeps the pinned contract
(/work/shared/spec/API.md) exactly: every signed-in user lists the workers
with their URLs, reads the totals and each replica's URL. With
TOPOLOGY_VISIBLE_TO=operators only operators do - the cluster secret, or a
user token with "admin": true (`echofs token --admin`) - and a plain user
gets 403 operators_only for the worker list and the totals, replicas
without their URL (the owner still sees the worker ids and good_replicas),
the health's pinned fields only, and no /metrics. docs/API.md, "Who sees
what", is the table these tests walk through: each caller against each
endpoint, in both modes.
"""

import os
import time
from dataclasses import dataclass

import pytest

import echofs_harness as h
from echofs_harness import CLUSTER_SECRET, assert_json_error

# The pinned shapes (/work/shared/spec/API.md).
WORKER_KEYS = {"worker_id", "url", "status", "last_heartbeat", "capacity_bytes", "free_bytes",
               "chunk_count"}
# What the worker list adds (docs/API.md, "Additions and interpretations").
WORKER_EXTRA = {"slow", "slow_for_ms", "protocol", "zone"}
CHUNK_KEYS = {"index", "chunk_id", "size", "stored_size", "compressed", "replicas"}
HEALTH_KEYS = {"status", "workers_alive", "workers_total", "metadata"}
# What the health adds for those who may see the topology (docs/API.md).
HEALTH_EXTRA = {"replication_factor", "under_replicated", "repair", "cluster_id"}
# Figures of the cluster as a whole on the master's /metrics.
TOTALS = ("echofs_files", "echofs_logical_bytes", "echofs_cluster_capacity_bytes",
          "echofs_workers")
REPLICATION = 2


def admin_token(user: str = "root") -> str:
    """An operator's token as any issuer would sign it (the CLI's --admin
    is tested on its own below)."""
    return h.make_jwt({"sub": user, "exp": int(time.time()) + 3600, "admin": True})


def admin_client(m: h.Master, user: str = "root") -> h.ApiClient:
    return m.client(admin_token(user))


@dataclass
class Topology:
    mode: str
    cluster: h.Cluster
    master: h.Master
    file_id: str   # alice's
    admin_file_id: str  # root's (an operator who also stores files)

    @property
    def open(self) -> bool:
        return self.mode == "users"

    def worker_urls(self) -> set:
        return {w.advertise_url for w in self.cluster.workers}

    def worker_ids(self) -> set:
        return {w.worker_id for w in self.cluster.workers}


@pytest.fixture(scope="module", params=["users", "operators"])
def topo(request, tmp_path_factory):
    mode = request.param
    c = h.Cluster(tmp_path_factory.mktemp(f"exposure_{mode}"), label=f"exposure-{mode}")
    try:
        m = c.start(workers=REPLICATION,
                    master_env={"TOPOLOGY_VISIBLE_TO": mode, "REPLICATION_FACTOR": REPLICATION},
                    worker_env={"TOPOLOGY_VISIBLE_TO": mode})
        f = m.user_client("alice").upload(os.urandom(5000), "alice.bin")
        g = admin_client(m, "root").upload(os.urandom(3000), "root.bin")
        yield Topology(mode, c, m, f["file_id"], g["file_id"])
    finally:
        c.close()


def callers(topo):
    """name -> client: the three kinds of credentials (and none)."""
    m = topo.master
    return {"user": m.user_client("bob"), "owner": m.user_client("alice"),
            "admin": admin_client(m, "root"), "cluster": m.cluster_client(),
            "anonymous": m.client()}


def assert_full_worker_list(topo, r):
    assert r.status_code == 200, r.text
    workers = r.json()["workers"]
    assert set(r.json()) == {"workers"}, r.json()
    for w in workers:
        assert set(w) == WORKER_KEYS | WORKER_EXTRA, f"not the pinned shape: {w}"
        assert w["status"] == "alive" and w["capacity_bytes"] > 0, w
    assert {w["url"] for w in workers} == topo.worker_urls()
    assert {w["worker_id"] for w in workers} == topo.worker_ids()


# ---- GET /api/v1/workers -----------------------------------------------------


def test_worker_list_by_caller(topo):
    c = callers(topo)
    for who in ("admin", "cluster"):
        assert_full_worker_list(topo, c[who].get("/api/v1/workers"))
    for who in ("user", "owner"):
        r = c[who].get("/api/v1/workers")
        if topo.open:
            assert_full_worker_list(topo, r)
        else:
            assert_json_error(r, 403, "operators_only")
            for url in topo.worker_urls():
                assert url not in r.text
    assert_json_error(c["anonymous"].get("/api/v1/workers"), 401, "unauthorized")


# ---- GET /api/v1/stats -------------------------------------------------------


def assert_full_stats(r):
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["files"] >= 2 and body["workers"]["alive"] == REPLICATION, body
    assert body["workers"]["capacity_bytes"] > 0, body


def test_stats_by_caller(topo):
    c = callers(topo)
    for who in ("admin", "cluster"):
        assert_full_stats(c[who].get("/api/v1/stats"))
    for who in ("user", "owner"):
        r = c[who].get("/api/v1/stats")
        if topo.open:
            assert_full_stats(r)
        else:
            assert_json_error(r, 403, "operators_only")
    assert_json_error(c["anonymous"].get("/api/v1/stats"), 401, "unauthorized")


# ---- a file's chunk list -----------------------------------------------------


def test_owner_sees_worker_ids_and_good_replicas_of_each_chunk(topo):
    r = topo.master.user_client("alice").get(f"/api/v1/files/{topo.file_id}")
    assert r.status_code == 200, r.text
    chunks = r.json()["chunks"]
    assert chunks, r.json()
    for ch in chunks:
        assert CHUNK_KEYS <= set(ch), f"chunk lacks {CHUNK_KEYS - set(ch)}: {ch}"
        assert len(ch["replicas"]) == REPLICATION, ch
        assert {rep["worker_id"] for rep in ch["replicas"]} == topo.worker_ids(), ch
        assert ch["good_replicas"] == REPLICATION, ch
        for rep in ch["replicas"]:
            if topo.open:  # the pinned shape
                assert set(rep) == {"worker_id", "url"}, rep
                assert rep["url"] in topo.worker_urls(), rep
            else:
                assert set(rep) == {"worker_id"}, f"a plain user sees more than ids: {rep}"
    if not topo.open:
        for url in topo.worker_urls():
            assert url not in r.text, f"{url} leaked in a plain user's chunk list"


def test_an_operator_sees_the_urls_of_its_own_files(topo):
    r = admin_client(topo.master, "root").get(f"/api/v1/files/{topo.admin_file_id}")
    assert r.status_code == 200, r.text
    for ch in r.json()["chunks"]:
        assert ch["good_replicas"] == REPLICATION, ch
        assert {rep["url"] for rep in ch["replicas"]} == topo.worker_urls(), ch


def test_file_chunks_stay_private_whatever_the_role(topo):
    c = callers(topo)
    # an operator's token is no key to other users' files
    assert_json_error(c["admin"].get(f"/api/v1/files/{topo.file_id}"), 404, "file_not_found")
    assert_json_error(c["user"].get(f"/api/v1/files/{topo.file_id}"), 404, "file_not_found")
    assert_json_error(c["cluster"].get(f"/api/v1/files/{topo.file_id}"), 401, "invalid_token")


# ---- GET /api/v1/health --------------------------------------------------------


def test_health_by_caller(topo):
    c = callers(topo)
    bad = topo.master.client("not-a-token")
    for who, client in [*c.items(), ("bad-token", bad)]:
        r = client.get("/api/v1/health")
        assert r.status_code == 200, f"{who}: {r.text}"
        body = r.json()
        assert HEALTH_KEYS <= set(body), f"{who}: {body}"
        assert body["status"] in ("ok", "degraded") and body["metadata"] == "ok", body
        assert body["workers_alive"] == body["workers_total"] == REPLICATION, body
        if topo.open or who in ("admin", "cluster"):
            assert HEALTH_EXTRA <= set(body), f"{who}: {body}"
            assert body["replication_factor"] == REPLICATION
        else:
            assert set(body) == HEALTH_KEYS, f"{who} sees more than the pinned fields: {body}"


# ---- /metrics ----------------------------------------------------------------


def metric_names(text: str) -> set:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def assert_full_metrics(r, who):
    assert r.status_code == 200, f"{who}: {r.status_code} {r.text}"
    names = metric_names(r.text)
    for name in TOTALS:
        assert name in names, f"{who}: {name} missing from /metrics"


def test_master_metrics_by_caller(topo):
    c = callers(topo)
    for who in ("admin", "cluster"):
        assert_full_metrics(c[who].get("/metrics"), who)
    if topo.open:  # Prometheus scrapes without credentials
        for who in ("anonymous", "user"):
            assert_full_metrics(c[who].get("/metrics"), who)
        return
    assert_json_error(c["anonymous"].get("/metrics"), 401, "unauthorized")
    assert_json_error(topo.master.client("not-a-token").get("/metrics"), 401, "invalid_token")
    assert_json_error(c["user"].get("/metrics"), 403, "operators_only")


def test_worker_metrics_by_caller(topo):
    w = topo.cluster.workers[0]
    by_cluster = w.client(CLUSTER_SECRET).get("/metrics")
    assert by_cluster.status_code == 200 and "echofs_store_chunks" in by_cluster.text
    anonymous = w.client().get("/metrics")
    user = w.client(topo.cluster.token("bob")).get("/metrics")
    admin = w.client(admin_token()).get("/metrics")
    if topo.open:
        assert anonymous.status_code == 200 and "echofs_store_chunks" in anonymous.text
        return
    # a worker has no JWT_SECRET: the cluster secret is its only operator
    for r in (anonymous, user, admin):
        assert_json_error(r, 401, "unauthorized")


# ---- the CLI -------------------------------------------------------------------


def test_echofs_token_admin_adds_the_claim():
    head, payload, _ = h.decode_jwt(h.token("root", admin=True))
    assert payload["admin"] is True and payload["sub"] == "root", payload
    plain = h.decode_jwt(h.token("root"))[1]
    assert "admin" not in plain, plain


def test_echofs_workers_by_role(topo):
    env = {"ECHOFS_URL": topo.master.url}
    plain = h.run_cli("workers", env={**env, "ECHOFS_TOKEN": topo.cluster.token("bob")})
    admin = h.run_cli("workers",
                      env={**env, "ECHOFS_TOKEN": topo.cluster.token("root", admin=True)})
    assert admin.returncode == 0, admin.stderr
    for url in topo.worker_urls():
        assert url in admin.stdout
    if topo.open:
        assert plain.returncode == 0, plain.stderr
    else:
        assert plain.returncode != 0 and "operators_only" in plain.stderr, plain
        assert plain.stdout == "", plain.stdout
