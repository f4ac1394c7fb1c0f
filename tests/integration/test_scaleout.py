"""Scale out: several masters on one PostgreSQL database and one Redis.

The acceptance scenarios of the scale-out issue, black-box:

  * two masters on one database and one Redis, three workers given both
    masters (MASTER_URL=a,b): both healthy with 3 live workers; the schema
    is in PostgreSQL and the liveness keys are in Redis;
  * files move freely between the masters: upload through A, read through
    B; one session's chunks sent to A and B alternately; listing through B;
    delete through B and A answers 404 (its Redis file cache entry is gone);
  * master A killed: B keeps the workers, serves and stores files, and takes
    over the background duties (the collector) through the lease;
  * PostgreSQL stopped: 503 with JSON bodies, the masters keep running and
    recover by themselves when it is back;
  * Redis stopped: files are served from PostgreSQL, health is "degraded"
    with "redis": "unavailable", and "ok" again when Redis is back;
  * masters started together on an empty database all come up (migrations
    under an advisory lock).

Needs ECHOFS_TEST_PG_URL (and ECHOFS_TEST_PG_DATA for the PostgreSQL outage)
from `scripts/services.sh start DIR && . DIR/env`; uses ECHOFS_TEST_REDIS_ADDR
when set, else a redis-server of each test's own. The Redis outage tests
always start their own redis-server, so the shared one is never stopped.
"""

import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

if not h.PG_URL:
    pytest.skip("scale-out tests need PostgreSQL: set ECHOFS_TEST_PG_URL "
                "(scripts/services.sh start DIR && . DIR/env)", allow_module_level=True)
if not Path(h.REDIS_SERVER).exists() or not Path(h.REDIS_CLI).exists():
    pytest.skip("scale-out tests need redis-server and redis-cli", allow_module_level=True)

SERVICES_SH = h.REPO / "scripts" / "services.sh"
PG_DATA = os.environ.get("ECHOFS_TEST_PG_DATA", "").strip()
# scripts/services.sh keeps PostgreSQL's data in DIR/pg/data.
SERVICES_DIR = Path(PG_DATA).parents[1] if PG_DATA else None

# The shared Redis of services.sh when there is one, else each test's own.
REDIS_MODE = True if h.REDIS_ADDR else "dedicated"

ECHOFS_TABLES = {"efs_schema", "workers", "files", "chunks", "file_chunks", "replicas",
                 "sessions", "session_chunks"}
HEALTH_KEYS = {"status", "workers_alive", "workers_total", "metadata"}
LEASE_LINE = r"this master now runs the background duties"
GC_GRACE_MS = 300
MIB = 1024 * 1024


# ---- fixtures and helpers ----------------------------------------------------------


def new_cluster(request, tmp_path, **kwargs) -> h.Cluster:
    return h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres", **kwargs)


@pytest.fixture
def pg_cluster(request, tmp_path):
    """A cluster on a fresh PostgreSQL database and Redis (the shared one, or
    its own)."""
    c = new_cluster(request, tmp_path, redis=REDIS_MODE)
    yield c
    c.close()


@pytest.fixture
def own_redis_cluster(request, tmp_path):
    """A cluster on a fresh PostgreSQL database and a redis-server of its
    own (cluster.redis_server), which the test may stop."""
    c = new_cluster(request, tmp_path, redis="dedicated")
    yield c
    c.close()


def start_pair(c: h.Cluster, workers: int = 3, **master_env):
    """Master A (which takes the lease for background duties first), master
    B on the same database and Redis, and workers given MASTER_URL=A,B; waits
    until both masters count every worker alive. Returns (A, B)."""
    env = {"GC_GRACE_MS": GC_GRACE_MS, **master_env}
    a = c.add_master("master-a", **env)
    a.wait_for_log(LEASE_LINE, timeout=5 + h.TIMING_MARGIN_S)
    b = c.add_master("master-b", **env)
    ws = [c.add_worker(masters=[a, b], wait=False) for _ in range(workers)]
    for w in ws:
        w.wait_registered(a)
    for m in (a, b):
        m.wait_workers(alive=workers, total=workers)
    return a, b


def payload(size: int) -> bytes:
    """size random bytes: they do not compress, and no two calls share a
    chunk (deduplication would blur what each test stores)."""
    return os.urandom(size)


def health_response(m: h.Master):
    return m.client().get("/api/v1/health")


def assert_health_ok(body: dict, alive: int, *, redis: str = "ok", status: str = "ok"):
    assert HEALTH_KEYS <= set(body), f"health lacks {HEALTH_KEYS - set(body)}: {body}"
    assert (body["status"], body["workers_alive"], body["workers_total"], body["metadata"]) == \
        (status, alive, alive, "ok"), body
    assert body.get("redis") == redis, body


def chunk_ids(client: h.ApiClient, file_id: str) -> list[str]:
    r = client.get(f"/api/v1/files/{file_id}")
    assert r.status_code == 200, r.text
    return [c["chunk_id"] for c in r.json()["chunks"]]


def listed_ids(client: h.ApiClient) -> set[str]:
    r = client.get("/api/v1/files", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {f["file_id"] for f in r.json()["files"]}


def session_upload(init_client: h.ApiClient, chunk_clients: list, complete_client: h.ApiClient,
                   data: bytes, chunk_size: int, name: str) -> dict:
    """A chunked session opened on init_client, chunk i sent through
    chunk_clients[i % len], completed through complete_client; returns the
    File object."""
    r = init_client.post("/api/v1/files/upload/init",
                         json={"name": name, "size": len(data), "chunk_size": chunk_size})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    count = (len(data) + chunk_size - 1) // chunk_size
    for i in range(count):
        piece = data[i * chunk_size:(i + 1) * chunk_size]
        via = chunk_clients[i % len(chunk_clients)]
        r = via.post("/api/v1/files/upload/chunk", params={"session_id": sid, "chunk_index": i},
                     data=piece, headers={"Content-Type": "application/octet-stream",
                                          "X-Chunk-SHA256": hashlib.sha256(piece).hexdigest()})
        assert r.status_code == 200, f"chunk {i} via {via.base_url}: {r.status_code} {r.text}"
        assert r.json()["chunk_index"] == i
    # Every master sees every chunk, whichever received it.
    for via in {id(x): x for x in [init_client, complete_client, *chunk_clients]}.values():
        r = via.get(f"/api/v1/files/upload/{sid}")
        assert r.status_code == 200, r.text
        assert r.json()["received"] == list(range(count)), (via.base_url, r.json())
    r = complete_client.post("/api/v1/files/upload/complete", json={"session_id": sid})
    assert r.status_code == 201, r.text
    f = r.json()
    assert (f["name"], f["size"], f["sha256"], f["chunk_count"]) == \
        (name, len(data), hashlib.sha256(data).hexdigest(), count), f
    # The session is over on every master (its cache entry is gone too):
    # no chunk is taken, and each master knows the file it became.
    for via in (init_client, *chunk_clients):
        st = via.get(f"/api/v1/files/upload/{sid}")
        assert st.status_code == 200, st.text
        assert (st.json()["state"], st.json()["file_id"]) == ("completed", f["file_id"]), st.json()
        assert_json_error(via.post("/api/v1/files/upload/chunk",
                                   params={"session_id": sid, "chunk_index": 0}, data=b"x",
                                   headers={"Content-Type": "application/octet-stream"}), 404)
    return f


def services(command: str) -> None:
    """scripts/services.sh pg-stop / pg-start on the services' directory."""
    proc = subprocess.run([str(SERVICES_SH), command, str(SERVICES_DIR)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"services.sh {command}: {proc.stdout}{proc.stderr}"


def pg_up() -> bool:
    return h.psql("SELECT 1", check=False, timeout=10).returncode == 0


class TcpProxy:
    """A TCP relay on a free loopback port to 127.0.0.1:target_port that can
    be cut (a network partition: open connections are reset, new ones are
    closed at once) and healed again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = h.free_port()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(5)
        self._sock.close()


# ---- two masters, one database, one Redis ---------------------------------------------


def test_two_masters_share_postgres_and_redis(pg_cluster):
    a, b = start_pair(pg_cluster)
    for m in (a, b):
        assert_health_ok(m.health(), 3)
        workers = m.workers()
        assert sorted(w["worker_id"] for w in workers) == \
            sorted(w.worker_id for w in pg_cluster.workers), (m.name, workers)
        assert all(w["status"] == "alive" for w in workers), (m.name, workers)
        assert "metadata in postgres" in m.stderr(), f"{m.name} does not say it runs on postgres"

    # The metadata is in PostgreSQL ...
    tables = set(h.pg_tables(pg_cluster.database_url))
    assert ECHOFS_TABLES <= tables, f"missing tables {ECHOFS_TABLES - tables}: {tables}"
    versions = pg_cluster.psql("SELECT version FROM efs_schema ORDER BY version").stdout.split()
    assert versions and versions == [str(v) for v in range(1, len(versions) + 1)], versions
    rows = pg_cluster.psql("SELECT worker_id FROM workers ORDER BY worker_id").stdout.split()
    assert rows == sorted(w.worker_id for w in pg_cluster.workers), rows
    # ... and not in a SQLite file under DATA_DIR.
    for m in (a, b):
        assert not (m.data_dir / "echofs.db").exists(), f"{m.name} made a SQLite store"

    # Liveness is in Redis, one key per worker, expiring with it.
    keys = set(pg_cluster.redis_keys("efs:*"))
    for w in pg_cluster.workers:
        assert f"efs:worker:{w.worker_id}:alive" in keys, sorted(keys)
        ttl = int(h.redis_cli(pg_cluster.redis_addr, "PTTL",
                              f"efs:worker:{w.worker_id}:alive").stdout.strip() or -3)
        assert 0 < ttl <= a.dead_after_ms, f"liveness key of {w.worker_id}: PTTL {ttl}"

    # Only one of them runs the background duties.
    assert LEASE_LINE in a.stderr()
    time.sleep(1.5)  # more than one collector tick of B
    assert LEASE_LINE not in b.stderr(), "both masters run the background duties"


def test_files_move_between_masters(pg_cluster):
    a, b = start_pair(pg_cluster)
    ca, cb = a.user_client("alice"), b.user_client("alice")

    # Upload through A, read through B.
    data = payload(2 * MIB + 12345)
    f = ca.upload(data, "through-a.bin")
    assert f["chunk_count"] == 3
    assert cb.download(f["file_id"]) == data
    r = cb.get(f"/api/v1/files/{f['file_id']}/download", headers={"Range": "bytes=1048570-1048585"})
    assert r.status_code == 206 and r.content == data[1048570:1048586], r.status_code
    meta_b = cb.get(f"/api/v1/files/{f['file_id']}")
    assert meta_b.status_code == 200 and meta_b.json()["sha256"] == f["sha256"], meta_b.text
    # Another user sees it on neither master.
    for m in (a, b):
        assert_json_error(m.user_client("bob").get(f"/api/v1/files/{f['file_id']}"), 404)

    # One session, its chunks sent to A and B in turn, completed on either.
    chunk = 256 * 1024
    s1 = payload(5 * chunk + 777)
    f1 = session_upload(ca, [ca, cb], cb, s1, chunk, "alternating-1.bin")
    assert ca.download(f1["file_id"]) == s1 and cb.download(f1["file_id"]) == s1
    s2 = payload(4 * chunk)
    f2 = session_upload(cb, [cb, ca], ca, s2, chunk, "alternating-2.bin")
    assert ca.download(f2["file_id"]) == s2 and cb.download(f2["file_id"]) == s2

    # Listing through B shows what went in through A, and the other way.
    want = {f["file_id"], f1["file_id"], f2["file_id"]}
    assert listed_ids(cb) == want
    assert listed_ids(ca) == want

    # A has the file in its cache (it just served it); delete through B.
    assert ca.get(f"/api/v1/files/{f['file_id']}").status_code == 200
    r = cb.delete(f"/api/v1/files/{f['file_id']}")
    assert r.status_code == 204, r.text
    assert_json_error(ca.get(f"/api/v1/files/{f['file_id']}"), 404, "file_not_found")
    assert_json_error(ca.get(f"/api/v1/files/{f['file_id']}/download"), 404, "file_not_found")
    assert_json_error(ca.delete(f"/api/v1/files/{f['file_id']}"), 404)
    assert listed_ids(ca) == {f1["file_id"], f2["file_id"]}
    # The entry is gone or a tombstone ("deleted"), never the file's metadata.
    key = f"efs:file:{f['file_id']}"
    if key in pg_cluster.redis_keys("efs:file:*"):
        assert h.redis_cli(pg_cluster.redis_addr, "GET", key).stdout.strip() == "deleted"


def lists_read(m) -> float:
    text = m.cluster_client().get("/metrics").text
    for line in text.splitlines():
        if line.startswith("echofs_download_chunk_lists_read_total "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{m.name}'s /metrics has no echofs_download_chunk_lists_read_total")


def test_cached_small_file_deleted_through_the_other_master_is_a_404(pg_cluster):
    """A small file A has downloaded (its row, chunk ids and chunk cached
    in A's memory) and B deletes: A's next download is a 404. With a
    store other masters write, every download reads the chunk list, which
    is what finds the delete: A's own caches never hear of it."""
    a, b = start_pair(pg_cluster)
    ca, cb = a.user_client("alice"), b.user_client("alice")
    data = payload(4096)
    f = ca.upload(data, "small.bin")
    before = lists_read(a)
    for _ in range(3):
        assert ca.download(f["file_id"]) == data
    assert lists_read(a) - before == 3, "a shared store: every download reads the chunk list"
    assert cb.delete(f"/api/v1/files/{f['file_id']}").status_code == 204
    assert_json_error(ca.get(f"/api/v1/files/{f['file_id']}/download"), 404, "file_not_found")


def test_same_content_through_both_masters_at_once_keeps_every_reference(pg_cluster):
    """Deduplication and reference counts under concurrency across masters:
    the same bytes uploaded through A and B at the same time, copies deleted
    while more copies arrive, with a short GC_GRACE_MS. No file may lose a
    chunk; once every copy is deleted the chunks are collected."""
    a, b = start_pair(pg_cluster)
    clients = [a.user_client("alice"), b.user_client("alice")]
    data = payload(2 * MIB + 4096)
    digest = hashlib.sha256(data).hexdigest()
    errors: list[str] = []

    def run_all(jobs):
        threads = [threading.Thread(target=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    ids: list[str] = []
    lock = threading.Lock()

    def upload(i):
        def job():
            # Each thread its own session: requests.Session is not thread-safe.
            c = h.ApiClient(clients[i % 2].base_url, pg_cluster.token("alice"))
            try:
                r = c.post("/api/v1/files/upload", params={"name": f"copy-{i}.bin"}, data=data,
                           headers={"Content-Type": "application/octet-stream"})
                if r.status_code != 201 or r.json()["sha256"] != digest:
                    errors.append(f"upload {i}: {r.status_code} {r.text[:200]}")
                else:
                    with lock:
                        ids.append(r.json()["file_id"])
            finally:
                c.close()
        return job

    def delete(i, fid):
        def job():
            c = h.ApiClient(clients[i % 2].base_url, pg_cluster.token("alice"))
            try:
                r = c.delete(f"/api/v1/files/{fid}")
                if r.status_code != 204:
                    errors.append(f"delete {fid}: {r.status_code} {r.text[:200]}")
            finally:
                c.close()
        return job

    run_all([upload(i) for i in range(6)])
    assert not errors, errors
    first = list(ids)
    chunks = set(chunk_ids(clients[0], first[0]))
    assert len(chunks) == 3
    # Delete copies while new copies arrive, through both masters.
    ids.clear()
    run_all([delete(i, fid) for i, fid in enumerate(first[:5])] +
            [upload(10 + i) for i in range(4)])
    assert not errors, errors
    kept = [first[5], *ids]
    time.sleep(GC_GRACE_MS / 1000 + 2.2)  # two collector passes after the grace
    for i, fid in enumerate(kept):
        size, got = clients[i % 2].download_sha256(fid)
        assert (size, got) == (len(data), digest), f"file {fid} lost data"
    held = pg_cluster.chunk_usage().ids
    assert all(held.get(cid, 0) == 3 for cid in chunks), held
    refs = pg_cluster.psql("SELECT chunk_id, refcount FROM chunks").stdout.split()
    want = {f"{cid}|{len(kept)}" for cid in chunks}
    assert set(refs) == want, f"reference counts {refs}, expected {len(kept)} for each chunk"

    run_all([delete(i, fid) for i, fid in enumerate(kept)])
    assert not errors, errors

    def collected():
        return not (chunks & set(pg_cluster.chunk_usage().ids))
    wait_until(collected, GC_GRACE_MS / 1000 + 4 + h.TIMING_MARGIN_S,
               what="every chunk to be collected")
    assert pg_cluster.psql("SELECT count(*) FROM chunks").stdout.strip() == "0"


def test_copy_written_through_one_master_survives_a_report_answered_by_the_other(pg_cluster):
    """Two first uploads of the same new bytes run at once, one through each
    master: B's is recorded (the chunk now has REPLICATION_FACTOR good
    replicas), A's has written its copy on a third worker and not recorded
    it yet. That worker's full report, answered by B, must keep the copy:
    B's in-flight table knows nothing of A's write, and before the fix the
    verdict for a surplus unnamed copy (LIFECYCLE T17) had no age check. A's
    write is simulated by writing the chunk straight to the worker with the
    cluster secret, exactly as a master does. Once older than
    ORPHAN_GRACE_MS on the worker's clock, the copy, still unrecorded, goes."""
    c = pg_cluster
    grace_ms = 8000
    a, b = start_pair(c, workers=2, REPLICATION_FACTOR=2, ORPHAN_GRACE_MS=grace_ms)
    data = payload(50_000)
    cid = hashlib.sha256(data).hexdigest()
    fid = b.user_client().upload(data, name="first.bin")["file_id"]
    w1 = c.workers[0]
    got = w1.client(h.CLUSTER_SECRET).get(f"/chunks/{cid}")
    assert got.status_code == 200, got.text
    third = c.add_worker(masters=[b], REPORT_INTERVAL_MS=300)
    for m in (a, b):
        m.wait_workers(alive=3, total=3)
    assert cid not in third.chunk_usage().ids

    mark = third.log_mark()
    r = third.client(h.CLUSTER_SECRET).put(
        f"/chunks/{cid}", data=got.content,
        headers={"X-Chunk-Encoding": got.headers["X-Chunk-Encoding"],
                 "X-Chunk-CRC32C": f"{h.crc32c(got.content):08x}"})
    assert r.status_code == 201, r.text
    written = time.monotonic()

    def reports_since() -> int:
        return len(re.findall(r"chunk report sent", third.stderr_since(mark)))
    wait_until(lambda: reports_since() >= 2, 5 + h.TIMING_MARGIN_S,
               what="two full reports of the third worker")
    assert time.monotonic() - written < grace_ms / 1000, "too slow to judge a young copy"
    assert cid in third.chunk_usage().ids, \
        "a report answered by master B deleted the copy master A was writing"

    # Never recorded, it is surplus once older than the grace: it goes.
    wait_until(lambda: cid not in third.chunk_usage().ids, grace_ms / 1000 + 10,
               what="the unrecorded surplus copy to be dropped after ORPHAN_GRACE_MS")
    info = a.user_client().get(f"/api/v1/files/{fid}").json()
    assert len(info["chunks"][0]["replicas"]) == 2, info
    assert a.user_client().download(fid) == data


def test_master_killed_the_other_takes_over(pg_cluster):
    a, b = start_pair(pg_cluster)
    ca, cb = a.user_client("alice"), b.user_client("alice")
    files = {}
    for i, via in enumerate((ca, cb, ca)):
        data = payload(MIB + 1000 * i)
        files[via.upload(data, f"before-{i}.bin")["file_id"]] = data
    victim = payload(2 * MIB)
    victim_id = ca.upload(victim, "victim.bin")["file_id"]
    victim_chunks = set(chunk_ids(ca, victim_id))
    held = pg_cluster.chunk_usage().ids
    assert all(held.get(cid) == 3 for cid in victim_chunks), held

    mark = b.log_mark()
    a.kill()
    killed_at = time.monotonic()

    # The workers move to B, which counts them alive all along.
    for w in pg_cluster.workers:
        b.wait_for_log(rf"access POST /api/v1/workers/{w.worker_id}/heartbeat 200",
                       timeout=5 + h.TIMING_MARGIN_S, since=mark)
    time.sleep(max(0.0, b.dead_after_ms / 1000 + 0.3 - (time.monotonic() - killed_at)))
    assert_health_ok(b.wait_workers(alive=3, total=3, timeout=2 + h.TIMING_MARGIN_S), 3)

    # Every file is served, uploads and listing work.
    for fid, data in files.items():
        assert cb.download(fid) == data
    assert cb.download(victim_id) == victim
    after = payload(MIB // 2)
    new_id = cb.upload(after, "after.bin")["file_id"]
    assert cb.download(new_id) == after
    assert listed_ids(cb) == {*files, victim_id, new_id}

    # The lease moved: B collects the chunks of a file deleted now.
    b.wait_for_log(LEASE_LINE, timeout=5 + h.TIMING_MARGIN_S, since=mark)
    assert cb.delete(f"/api/v1/files/{victim_id}").status_code == 204
    b.wait_for_log(r"collector: \d+ unreferenced chunks removed",
                   timeout=GC_GRACE_MS / 1000 + 3 + h.TIMING_MARGIN_S, since=mark)

    def collected():
        ids = pg_cluster.chunk_usage().ids
        return not (victim_chunks & set(ids))
    wait_until(collected, 3 + h.TIMING_MARGIN_S, what="the victim's chunks to leave the workers")
    for fid, data in files.items():
        assert cb.download(fid) == data


# ---- outages -----------------------------------------------------------------------


@pytest.mark.skipif(SERVICES_DIR is None,
                    reason="needs ECHOFS_TEST_PG_DATA (scripts/services.sh env) to stop PostgreSQL")
def test_postgres_outage_answers_503_and_recovers_without_restart(pg_cluster):
    a, b = start_pair(pg_cluster)
    ca, cb = a.user_client("alice"), b.user_client("alice")
    data = payload(MIB + 4321)
    fid = ca.upload(data, "kept.bin")["file_id"]
    assert cb.download(fid) == data  # in B's cache too

    services("pg-stop")
    try:
        assert not pg_up()
        for m, c in ((a, ca), (b, cb)):
            r = health_response(m)
            assert r.status_code == 503, f"{m.name} health: {r.status_code} {r.text}"
            body = r.json()
            assert HEALTH_KEYS <= set(body) and body["metadata"] == "unavailable", body
            for what, resp in (
                    ("metadata", c.get(f"/api/v1/files/{fid}")),
                    ("download", c.get(f"/api/v1/files/{fid}/download")),
                    ("list", c.get("/api/v1/files")),
                    ("upload", c.post("/api/v1/files/upload", params={"name": "x.bin"},
                                      data=b"during the outage",
                                      headers={"Content-Type": "application/octet-stream"})),
                    ("init", c.post("/api/v1/files/upload/init", json={"name": "y.bin"})),
                    ("delete", c.delete(f"/api/v1/files/{fid}")),
                    ("workers", m.cluster_client().get("/api/v1/workers"))):
                err = assert_json_error(resp, 503)
                assert err["code"] == "metadata_unavailable", (m.name, what, err)
            m.check_alive()
    finally:
        services("pg-start")
    wait_until(pg_up, 30, what="PostgreSQL to be back")

    # Both recover by themselves.
    for m in (a, b):
        wait_until(lambda m=m: health_response(m).status_code == 200,
                   10 + h.TIMING_MARGIN_S, what=f"{m.name} health 200 again")
    for m in (a, b):
        m.wait_workers(alive=3, total=3, timeout=15 + h.TIMING_MARGIN_S)
    for c in (ca, cb):
        assert c.download(fid) == data
    more = payload(MIB // 3)
    new_id = cb.upload(more, "after.bin")["file_id"]
    assert ca.download(new_id) == more
    assert listed_ids(ca) == {fid, new_id}
    for m in (a, b):
        m.check_alive()
        assert m.runs == 1, f"{m.name} was restarted"
    # The outage was logged (once) and the recovery too.
    a.wait_for_log(r"metadata store unreachable", timeout=1)
    a.wait_for_log(r"metadata store reachable again", timeout=1)


def test_redis_outage_serves_from_postgres_and_recovers(own_redis_cluster):
    c = own_redis_cluster
    m = c.start(workers=3, master_env={"GC_GRACE_MS": GC_GRACE_MS})
    redis = c.redis_server
    assert redis is not None and m.environ()["REDIS_ADDR"] == redis.addr
    u = m.user_client("alice")
    data = payload(MIB + 99)
    fid = u.upload(data, "kept.bin")["file_id"]
    assert u.download(fid) == data
    assert_health_ok(m.health(), 3)

    redis.kill()
    killed_at = time.monotonic()
    body = m.health()  # 200: Redis is an accelerator
    assert_health_ok(body, 3, redis="unavailable", status="degraded")
    # Liveness falls back to the store: the workers stay alive past
    # WORKER_DEAD_AFTER_MS without Redis.
    time.sleep(max(0.0, 2 * m.dead_after_ms / 1000 - (time.monotonic() - killed_at)))
    assert_health_ok(m.health(), 3, redis="unavailable", status="degraded")
    assert all(w["status"] == "alive" for w in m.workers())
    assert u.download(fid) == data
    more = payload(MIB // 2)
    new_id = u.upload(more, "during.bin")["file_id"]
    assert u.download(new_id) == more
    assert listed_ids(u) == {fid, new_id}
    assert u.delete(f"/api/v1/files/{new_id}").status_code == 204
    assert_json_error(u.get(f"/api/v1/files/{new_id}"), 404)
    m.wait_for_log(r"redis .* unreachable", timeout=1)

    redis.start()  # same port, empty
    redis.wait_ready()

    def back():
        body = m.health()
        return body if body.get("redis") == "ok" and body["status"] == "ok" else None
    assert_health_ok(wait_until(back, 5 + h.TIMING_MARGIN_S, what="redis ok again"), 3)
    assert u.download(fid) == data
    assert_json_error(u.get(f"/api/v1/files/{new_id}"), 404)
    wait_until(lambda: any(k.startswith("efs:worker:") for k in c.redis_keys()),
               2 + h.TIMING_MARGIN_S, what="liveness keys in the new Redis")
    m.check_alive()
    assert m.runs == 1


def test_redis_restart_does_not_make_live_workers_dead(own_redis_cluster):
    """A Redis that restarts empty has lost the liveness keys; the workers
    are still beating and must not count as dead (nor be skipped by
    placement) until their next heartbeat. Heartbeats here are 1 s apart, as
    slow as the check below needs to see the gap (the default is 2 s)."""
    c = own_redis_cluster
    m = c.start(workers=3, master_env={"HEARTBEAT_INTERVAL_MS": 1000,
                                       "WORKER_DEAD_AFTER_MS": 5000})
    u = m.user_client("alice")
    redis = c.redis_server
    redis.kill()
    assert m.health()["workers_alive"] == 3
    redis.start()
    redis.wait_ready()
    body = m.health()
    assert body.get("redis") == "ok", body
    data = payload(64 * 1024)
    r = u.post("/api/v1/files/upload", params={"name": "right-after.bin"}, data=data,
               headers={"Content-Type": "application/octet-stream"})
    assert (body["workers_alive"], r.status_code) == (3, 201), (
        f"right after Redis came back: {body['workers_alive']} workers alive, upload answered "
        f"{r.status_code} {r.text[:200]}")


def test_heartbeat_for_an_unknown_worker_is_404_every_time(pg_cluster):
    """API.md: a heartbeat with an unknown id answers 404 (and the worker
    registers again), also when Redis takes the heartbeats."""
    m = pg_cluster.add_master()
    c = m.cluster_client()
    body = {"capacity_bytes": 100, "free_bytes": 50, "chunk_count": 0}
    statuses = [c.post("/api/v1/workers/w-nobody-here/heartbeat", json=body).status_code
                for _ in range(4)]
    assert statuses == [404] * 4, f"heartbeats of an unknown worker answered {statuses}"
    assert m.workers() == []
    assert not pg_cluster.redis_keys("efs:worker:w-nobody-here:*"), \
        "an unknown worker's heartbeat left liveness keys in Redis"


def test_delete_during_a_redis_partition_leaves_no_stale_cache_entry(own_redis_cluster):
    """A delete whose cache invalidation cannot reach Redis (the master is
    cut off from it for a moment) must not let the deleted file come back
    from the cache once Redis is reachable again."""
    c = own_redis_cluster
    c.redis_addr  # starts the cluster's redis-server
    proxy = TcpProxy(c.redis_server.port)
    try:
        a, b = start_pair(c, REDIS_ADDR=proxy.addr)
        ca, cb = a.user_client("alice"), b.user_client("alice")
        data = payload(MIB // 2)
        fid = ca.upload(data, "gone.bin")["file_id"]
        assert ca.download(fid) == data  # downloads read through the cache
        assert f"efs:file:{fid}" in c.redis_keys("efs:file:*")

        proxy.cut()
        assert cb.delete(f"/api/v1/files/{fid}").status_code == 204
        assert_json_error(cb.get(f"/api/v1/files/{fid}"), 404)
        proxy.heal()
        for m in (a, b):
            wait_until(lambda m=m: m.health().get("redis") == "ok", 5 + h.TIMING_MARGIN_S,
                       what=f"{m.name} to reach Redis again")
        stale = c.redis_keys("efs:file:*")
        r = ca.get(f"/api/v1/files/{fid}")
        dl = ca.get(f"/api/v1/files/{fid}/download")
        assert (r.status_code, dl.status_code) == (404, 404), (
            f"master A answers {r.status_code} (metadata) and {dl.status_code} (download) for a "
            f"file deleted through B while Redis was unreachable: the cache entry survived "
            f"(keys now {stale}): {r.text[:300]} / {dl.text[:200]}")
        assert_json_error(r, 404, "file_not_found")
        assert_json_error(dl, 404, "file_not_found")
    finally:
        proxy.close()


# ---- start-up ------------------------------------------------------------------------


def test_masters_started_together_on_an_empty_database_all_come_up(request, tmp_path):
    c = new_cluster(request, tmp_path, redis=False)
    try:
        for round_ in range(3):
            url = c.new_database()
            masters = [c.add_master(f"r{round_}-m{i}", start=False) for i in range(3)]
            for m in masters:
                m.database_url = url
            for m in masters:  # as close together as Popen allows
                m.start()
            for m in masters:
                m.wait_ready()
                body = m.health()
                assert body["metadata"] == "ok", body
            logs = [m.stderr() for m in masters]
            for m, log in zip(masters, logs):
                assert " ERROR " not in log, f"{m.name}:\n{log}"
            # The migrations ran once, by one of them.
            # (version 1 exactly: "version 10" must not count)
            migrated = sum(len(re.findall(r"metadata schema migrated to version 1\b", log))
                           for log in logs)
            assert migrated == 1, f"version 1 applied {migrated} times"
            versions = h.psql("SELECT version FROM efs_schema ORDER BY version", url).stdout.split()
            assert versions == [str(v) for v in range(1, len(versions) + 1)] and versions, versions
            assert ECHOFS_TABLES <= set(h.pg_tables(url))
            # They share it: a worker registered with one is listed by all.
            w = c.add_worker(master=masters[0])
            for m in masters:
                assert w.worker_id in {x["worker_id"] for x in m.workers()}, m.name
            w.stop()
            for m in masters:
                m.stop()
    finally:
        c.close()
