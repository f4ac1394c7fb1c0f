"""The gRPC control plane (proto/echofs.proto, docs/ARCHITECTURE.md "The
control plane"): workers beat on a Connect stream to the master's
GRPC_PORT, a broken stream makes its worker dead after GRPC_STREAM_GRACE_MS
instead of WORKER_DEAD_AFTER_MS, workers fall back to HTTP and come back,
GRPC_PORT=0 keeps them on HTTP, and an independent client (Debian's
python3-grpcio, messages from the proto's descriptors) drives the service,
malformed and oversized messages included."""

import calendar
import hashlib
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

import echofs_harness as h
import nemesis as nm
from echofs_harness import wait_until

grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")
pytestmark = pytest.mark.skipif(h.TLS, reason="these tests speak plaintext gRPC to their "
                                "masters; test_tls_cluster_streams_over_tls... makes a TLS "
                                "cluster of its own in every round")

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/echofs.v1.ControlPlane/"
# Large enough that only a broken stream can explain a death seen in a test.
DEAD_AFTER_MS = 60000
GRACE_MS = 1000
GRPC_ENV = {"WORKER_PROTOCOL": "grpc"}


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    """The proto's message classes, built from the descriptor set protoc-c
    writes (no generated Python code: the proto file is the only input)."""
    from google.protobuf import descriptor_pb2, message_factory
    out = tmp_path_factory.mktemp("proto") / "echofs.desc"
    subprocess.run(["protoc-c", f"--descriptor_set_out={out}", f"-I{ROOT / 'proto'}",
                    "echofs.proto"], check=True, timeout=60)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    classes = message_factory.GetMessages(list(files))
    return lambda name: classes[f"echofs.v1.{name}"]


def grpc_master(cluster, **env):
    return cluster.add_master(WORKER_DEAD_AFTER_MS=DEAD_AFTER_MS, HEARTBEAT_INTERVAL_MS=300,
                              GRPC_STREAM_GRACE_MS=GRACE_MS, **env)


def wait_protocol(m, worker_id, protocol, timeout=20):
    def reached():
        rec = m.worker_record(worker_id)
        return rec if rec and rec.get("protocol") == protocol and rec["status"] == "alive" \
            else None
    return wait_until(reached, timeout, what=f"{worker_id} on {protocol} and alive")


def http_beats(m, worker_id, since):
    return len(re.findall(rf"access POST /api/v1/workers/{worker_id}/heartbeat ",
                          m.stderr_since(since)))


def test_workers_beat_on_grpc_streams_and_files_round_trip(cluster):
    m = grpc_master(cluster)
    # One learns the address from its registration answer, one is given it.
    ws = [cluster.add_worker(**GRPC_ENV) for _ in range(2)]
    ws.append(cluster.add_worker(MASTER_GRPC_URL=f"grpc://127.0.0.1:{m.grpc_port}", **GRPC_ENV))
    for w in ws:
        wait_protocol(m, w.worker_id, "grpc")
        assert "heartbeats go over gRPC" in w.stderr(), w.log_tail()

    # The registration answer names the control plane.
    r = m.cluster_client().post("/api/v1/workers/register", json={
        "url": "http://127.0.0.1:9", "capacity_bytes": 10, "free_bytes": 10})
    assert r.status_code == 200, r.text
    assert r.json()["grpc_url"] == f"grpc://127.0.0.1:{m.grpc_port}", r.json()

    # Beats now travel on the streams only: no HTTP heartbeat, still alive.
    mark = m.log_mark()
    time.sleep(1.5)
    for w in ws:
        assert http_beats(m, w.worker_id, mark) == 0, m.log_tail()
        assert m.worker_record(w.worker_id)["status"] == "alive"

    # The master's metrics count the streams and the beats on them.
    metrics = m.client().get("/metrics").text
    assert re.search(r"^echofs_grpc_streams 3$", metrics, re.M), metrics
    beats = re.search(r"^echofs_grpc_heartbeats_total (\d+)", metrics, re.M)
    assert beats and int(beats.group(1)) >= 3, metrics

    alice = m.user_client("alice")
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = alice.upload(data, "g.bin")
    assert alice.download(f["file_id"]) == data


def metric(m, name):
    found = re.search(rf"^{name} (\d+)", m.client().get("/metrics").text, re.M)
    return int(found.group(1)) if found else None


def test_deleted_file_chunks_are_removed_by_pushed_instructions(cluster):
    m = grpc_master(cluster, GC_GRACE_MS=300, REPLICATION_FACTOR=2)
    streaming = cluster.add_worker(**GRPC_ENV)
    polling = cluster.add_worker(WORKER_PROTOCOL="http")
    wait_protocol(m, streaming.worker_id, "grpc")
    alice = m.user_client("alice")
    data = os.urandom(2 * 1024 * 1024 + 5)
    f = alice.upload(data, "d.bin")
    assert streaming.chunk_usage().count == polling.chunk_usage().count == 3
    marks = {w.name: w.log_mark() for w in (streaming, polling)}
    r = alice.delete(f"/api/v1/files/{f['file_id']}")
    assert r.status_code in (200, 204), r.text
    wait_until(lambda: cluster.chunk_usage().count == 0, 30, what="the chunks to be collected")
    # The streaming worker got its deletes as instructions and acked them;
    # the HTTP worker got DELETE calls.
    assert metric(m, "echofs_grpc_deletes_pushed_total") == 3
    assert metric(m, "echofs_grpc_deletes_acked_total") == 3
    deletes = r"access DELETE /chunks/"
    assert not re.search(deletes, streaming.stderr_since(marks[streaming.name])), \
        streaming.log_tail()
    assert len(re.findall(deletes, polling.stderr_since(marks[polling.name]))) == 3, \
        polling.log_tail()
    assert m.worker_record(streaming.worker_id)["protocol"] == "grpc"
    wm = streaming.client().get("/metrics").text
    assert re.search(r"^echofs_worker_pushed_deletes_total 3$", wm, re.M), wm
    assert re.search(r"^echofs_worker_grpc_connected 1$", wm, re.M), wm
    pm = polling.client().get("/metrics").text
    assert re.search(r"^echofs_worker_grpc_connected 0$", pm, re.M), pm


def test_killed_worker_is_dead_after_the_grace_not_after_worker_dead_after(cluster):
    m = grpc_master(cluster)
    streaming = cluster.add_worker(**GRPC_ENV)
    polling = cluster.add_worker(WORKER_PROTOCOL="http")
    wait_protocol(m, streaming.worker_id, "grpc")
    wait_protocol(m, polling.worker_id, "http")

    streaming.kill()
    polling.kill()
    killed = time.monotonic()
    m.wait_worker_status(streaming.worker_id, "dead", timeout=DEAD_AFTER_MS / 1000 / 2)
    # Well before WORKER_DEAD_AFTER_MS: only the broken stream can have done
    # it; the HTTP worker killed at the same moment is still counted alive.
    assert time.monotonic() - killed < DEAD_AFTER_MS / 1000 / 2
    assert m.worker_record(polling.worker_id)["status"] == "alive"
    assert re.search(rf"worker {streaming.worker_id}: its gRPC stream broke", m.stderr()), \
        m.log_tail()


@pytest.fixture
def redis_cluster(request, tmp_path):
    if not Path(h.REDIS_SERVER).exists():
        pytest.skip("needs redis-server")
    c = h.Cluster(tmp_path, label=request.node.nodeid, redis="dedicated")
    yield c
    c.close()


def test_killed_worker_is_dead_after_the_grace_with_redis_too(redis_cluster):
    # With Redis, liveness is the worker's key: the broken stream shortens
    # it to the grace, or the key would keep the worker alive for
    # WORKER_DEAD_AFTER_MS.
    m = grpc_master(redis_cluster)
    w = redis_cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    w.kill()
    killed = time.monotonic()
    m.wait_worker_status(w.worker_id, "dead", timeout=DEAD_AFTER_MS / 1000 / 2)
    assert time.monotonic() - killed < DEAD_AFTER_MS / 1000 / 2


def test_workers_reconnect_after_a_master_restart(cluster):
    m = grpc_master(cluster, REPLICATION_FACTOR=2)
    ws = [cluster.add_worker(**GRPC_ENV) for _ in range(2)]
    for w in ws:
        wait_protocol(m, w.worker_id, "grpc")
    m.stop()
    m.start()
    m.wait_ready()
    for w in ws:
        wait_protocol(m, w.worker_id, "grpc", timeout=30)
    # A stream ended by the master's own shutdown suspected nobody.
    assert "gRPC stream broke" not in m.stderr(all_runs=True)
    alice = m.user_client("alice")
    f = alice.upload(b"after the restart" * 1000, "r.bin")
    assert alice.download(f["file_id"]) == b"after the restart" * 1000


def test_worker_streams_to_the_master_that_answers_in_its_list(cluster):
    m = grpc_master(cluster)
    dead = f"http://127.0.0.1:{h.free_port()}"
    w = cluster.add_worker(master=m, master_url=f"{dead},{m.url}", **GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    assert f"heartbeats go over gRPC to 127.0.0.1:{m.grpc_port}" in w.stderr(), w.log_tail()


def test_grpc_port_zero_keeps_workers_on_http(cluster):
    m = grpc_master(cluster, GRPC_PORT=0)
    w = cluster.add_worker(**GRPC_ENV)
    rec = wait_protocol(m, w.worker_id, "http")
    assert rec["status"] == "alive"
    r = m.cluster_client().post("/api/v1/workers/register", json={
        "url": "http://127.0.0.1:9", "capacity_bytes": 10, "free_bytes": 10})
    assert r.status_code == 200 and "grpc_url" not in r.json(), r.text
    mark = m.log_mark()
    wait_until(lambda: http_beats(m, w.worker_id, mark) >= 2, 10, what="HTTP heartbeats")
    assert "gRPC control plane listening" not in m.stderr()


def test_worker_refuses_a_grpc_url_list_that_does_not_match_master_url(cluster):
    m = cluster.add_master()
    w = cluster.add_worker(start=False, MASTER_GRPC_URL="grpc://127.0.0.1:1,grpc://127.0.0.1:2")
    w.start()
    assert w.wait_exit() == 2
    assert "MASTER_GRPC_URL" in w.stderr(), w.log_tail()
    assert m.workers() == []


def test_python_grpc_client_registers_streams_heartbeats_and_is_refused_bad_input(
        cluster, messages):
    M = messages
    m = grpc_master(cluster)
    channel = grpc.insecure_channel(f"127.0.0.1:{m.grpc_port}")
    auth = [("authorization", f"Bearer {h.CLUSTER_SECRET}")]
    ser = lambda msg: msg.SerializeToString()  # noqa: E731
    register = channel.unary_unary(SERVICE + "Register", request_serializer=ser,
                                   response_deserializer=M("RegisterReply").FromString)
    space = M("Space")(capacity_bytes=1 << 30, free_bytes=1 << 29)
    reply = register(M("RegisterRequest")(url="http://127.0.0.1:9", space=space),
                     metadata=auth, timeout=10)
    assert reply.worker_id and reply.heartbeat_interval_ms == 300, reply
    cluster_id = reply.cluster_id

    # Refusals: no secret, a wrong one, a wrong cluster, bad fields.
    def code_of(call, *args, **kwargs):
        with pytest.raises(grpc.RpcError) as e:
            call(*args, timeout=10, **kwargs)
        return e.value.code()
    req = M("RegisterRequest")(url="http://127.0.0.1:9", space=space)
    assert code_of(register, req) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(register, req, metadata=[("authorization", "Bearer nope")]) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert code_of(register, M("RegisterRequest")(url="http://127.0.0.1:9", space=space,
                                                  cluster_id="0" * 32),
                   metadata=auth) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(register, M("RegisterRequest")(url="ftp://x", space=space),
                   metadata=auth) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(register, M("RegisterRequest")(
        url="http://127.0.0.1:9", space=M("Space")(capacity_bytes=1, free_bytes=2)),
        metadata=auth) == grpc.StatusCode.INVALID_ARGUMENT
    for zone in ("rack 1", "z" * 33, "a/b"):
        assert code_of(register, M("RegisterRequest")(url="http://127.0.0.1:9", space=space,
                                                      zone=zone),
                       metadata=auth) == grpc.StatusCode.INVALID_ARGUMENT, zone
    # A zone (WORKER_ZONE) is recorded and listed; registering again
    # without one clears it.
    zoned = register(M("RegisterRequest")(url="http://127.0.0.1:8", space=space,
                                          zone="rack-1.a"), metadata=auth, timeout=10)
    assert m.worker_record(zoned.worker_id)["zone"] == "rack-1.a"
    assert m.worker_record(reply.worker_id)["zone"] == ""
    register(M("RegisterRequest")(url="http://127.0.0.1:8", worker_id=zoned.worker_id,
                                  space=space), metadata=auth, timeout=10)
    assert m.worker_record(zoned.worker_id)["zone"] == ""
    raw = channel.unary_unary(SERVICE + "Register")
    assert code_of(raw, b"\xff\xff\xff\xff", metadata=auth) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(raw, b"\x0a" + b"\x80" * 8 + b"\x01", metadata=auth) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(raw, b"x" * (2 << 20), metadata=auth) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(channel.unary_unary(SERVICE + "Nope"), b"", metadata=auth) == \
        grpc.StatusCode.UNIMPLEMENTED

    connect = channel.stream_stream(SERVICE + "Connect", request_serializer=ser,
                                    response_deserializer=M("MasterMessage").FromString)
    raw_connect = channel.stream_stream(SERVICE + "Connect")

    def hello(worker_id, cid=cluster_id):
        return M("WorkerMessage")(hello=M("Hello")(worker_id=worker_id, cluster_id=cid))

    def beat(n):
        return M("WorkerMessage")(heartbeat=M("Heartbeat")(space=space, sequence=n))

    def ended_with(call):
        for _ in call:
            pass
        return call.code()
    # A stream must begin with a Hello of a known worker of this cluster.
    with pytest.raises(grpc.RpcError) as e:
        ended_with(connect(iter([beat(1)]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        ended_with(connect(iter([hello("w-unknown")]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        ended_with(connect(iter([hello(reply.worker_id, "f" * 32)]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        ended_with(raw_connect(iter([b"\xff\xfe"]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        ended_with(raw_connect(iter([b"y" * (2 << 20)]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # A good stream: hello, heartbeats; the master tells the interval, lists
    # the worker alive on gRPC, and a cancelled stream makes it dead soon.
    stop = threading.Event()

    def upstream():
        yield hello(reply.worker_id)
        n = 0
        while not stop.is_set():
            n += 1
            yield beat(n)
            stop.wait(0.2)
    call = connect(upstream(), metadata=auth)
    first = next(call)
    assert first.WhichOneof("body") == "set_heartbeat_interval", first
    assert first.set_heartbeat_interval.heartbeat_interval_ms == 300
    wait_protocol(m, reply.worker_id, "grpc")
    call.cancel()
    stop.set()
    m.wait_worker_status(reply.worker_id, "dead", timeout=DEAD_AFTER_MS / 1000 / 2)

    # The master is unharmed: healthy, and the service still answers.
    assert m.health()["metadata"] == "ok"
    again = register(M("RegisterRequest")(url="http://127.0.0.1:9", worker_id=reply.worker_id,
                                          space=space), metadata=auth, timeout=10)
    assert again.worker_id == reply.worker_id
    channel.close()


def good_replicas(api, fid):
    r = api.get(f"/api/v1/files/{fid}")
    assert r.status_code == 200, r.text
    return {c["chunk_id"]: sorted(x["worker_id"] for x in c["replicas"])
            for c in r.json()["chunks"]}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_full_report_drops_lost_copies_deletes_orphans_and_adopts(cluster, protocol):
    """A worker's full report (sent at each registration) over a Report
    call when the worker speaks gRPC, over HTTP otherwise: the same verdicts
    either way (one judge, efs_api_report_judge). A copy the worker lost
    behind the master's back loses its replica, an old chunk the master does
    not know is deleted, and a copy that is back is adopted again."""
    m = grpc_master(cluster, REPLICATION_FACTOR=1, ORPHAN_GRACE_MS=500, CHUNK_SIZE=65536,
                    CHUNK_CACHE_SIZE=0)
    w = cluster.add_worker(WORKER_PROTOCOL=protocol)
    wid = w.worker_id
    wait_protocol(m, wid, protocol)
    # The report its registration asks for, over before the upload: one
    # still listing the store at the delete below would send the id as
    # deleted during the report (the report's "lost" path, logged as
    # reported corrupt), not leave it to the end of the full report this
    # test is about. Listing nothing, it asks for no second one.
    w.wait_for_log(r"chunk report sent", timeout=20)
    alice = m.user_client("alice")
    data = os.urandom(3 * 65536 + 5)
    fid = alice.upload(data, "r.bin")["file_id"]
    before = good_replicas(alice, fid)
    assert len(before) == 4 and all(v == [wid] for v in before.values()), before
    lost = sorted(before)[0]
    api = w.client(h.CLUSTER_SECRET)
    copy = api.get(f"/chunks/{lost}")
    assert copy.status_code == 200, copy.text
    # Lost behind the master's back (an operator's cleanup while the master
    # is down: no stream, so no delta tells it), and an old chunk the
    # master never knew (an orphan).
    m.stop()
    wait_until(lambda: re.search(r"^echofs_worker_grpc_connected 0$",
                                 w.client().get("/metrics").text, re.M), 20,
               what="the worker's stream to go")
    assert api.delete(f"/chunks/{lost}").status_code in (200, 204)
    orphan = os.urandom(32).hex()
    r = api.put(f"/chunks/{orphan}", data=os.urandom(16),
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    m.start()
    m.wait_ready()
    wait_protocol(m, wid, protocol)
    # The orphan older than ORPHAN_GRACE_MS, the replicas older than the
    # 5 s margin a report's end leaves for the masters' clocks (SKEW_MARGIN_MS
    # in src/meta): only those are judged missing.
    time.sleep(5.5)

    def report(worker, expect):
        mark, wmark = m.log_mark(), worker.log_mark()
        batches = metric(m, "echofs_grpc_report_batches_total")
        wid_ = worker.worker_id
        worker.restart()  # a registration asks for a full report
        assert worker.wait_registered() == wid_
        wait_protocol(m, wid_, protocol)
        worker.wait_for_log(r"chunk report sent", timeout=20, since=wmark)
        expect()
        http_reports = re.findall(rf"access POST /api/v1/workers/{wid_}/report ",
                                  m.stderr_since(mark))
        sent = worker.stderr_since(wmark)
        if protocol == "grpc":
            assert not http_reports, m.log_tail()
            assert "chunk report sent over gRPC" in sent, worker.log_tail()
            # the report's first batch (nothing listed) and its last at least
            assert metric(m, "echofs_grpc_report_batches_total") >= batches + 2
        else:
            assert http_reports, m.log_tail()
            assert "chunk report sent over gRPC" not in sent, worker.log_tail()
            assert metric(m, "echofs_grpc_report_batches_total") == batches

    def dropped_and_deleted():
        now = good_replicas(alice, fid)
        assert now[lost] == [], now
        assert all(v == [wid] for k, v in now.items() if k != lost), now
        assert api.head(f"/chunks/{orphan}").status_code == 404
        assert f"worker {wid} no longer holds 1 replicas it should" in m.stderr(), m.log_tail()
        assert not metric(m, "echofs_grpc_delta_marked_bad_total")
    report(w, lambda: wait_until(lambda: _passes(dropped_and_deleted), 20,
                                 what="the lost replica dropped and the orphan deleted"))

    # A copy on another worker, which no replica row names (put there by an
    # operator, older than ORPHAN_GRACE_MS): its report adopts it, the
    # chunk having no good replica left.
    other = cluster.add_worker(WORKER_PROTOCOL=protocol)
    wait_protocol(m, other.worker_id, protocol)
    mark = m.log_mark()
    r = other.client(h.CLUSTER_SECRET).put(
        f"/chunks/{lost}", data=copy.content,
        headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    time.sleep(1.0)

    def adopted():
        assert good_replicas(alice, fid)[lost] == [other.worker_id]
        assert re.search(rf"worker {other.worker_id} report: \d+ chunks, 1 adopted again",
                         m.stderr_since(mark)), m.log_tail()
    report(other, lambda: wait_until(lambda: _passes(adopted), 20,
                                     what="the copy adopted"))
    assert alice.download(fid) == data


def test_corrupt_and_deleted_copies_go_up_the_stream_as_deltas_and_are_repaired(cluster):
    """A copy the scrubber finds corrupt, and one deleted behind the
    master's back, reach the master as a ChunkDelta on the worker's stream
    before its next beat (no report: REPORT_INTERVAL_MS is an hour, and
    nothing reads the chunks): their replicas are marked bad, and repair
    copies them from the good ones."""
    # The harness's short WORKER_DEAD_AFTER_MS: repair starts 2x that after
    # the master does.
    m = cluster.add_master(REPLICATION_FACTOR=2, CHUNK_SIZE=65536, CHUNK_CACHE_SIZE=0)
    ws = [cluster.add_worker(SCRUB_INTERVAL_MS=500, **GRPC_ENV) for _ in range(3)]
    for w in ws:
        wait_protocol(m, w.worker_id, "grpc")
    by_id = {w.worker_id: w for w in ws}
    alice = m.user_client("alice")
    data = os.urandom(2 * 65536 + 3)
    fid = alice.upload(data, "c.bin")["file_id"]
    reps = good_replicas(alice, fid)
    corrupt, deleted = sorted(reps)[:2]
    rotten, emptied = by_id[reps[corrupt][0]], by_id[reps[deleted][0]]
    marks = {w.worker_id: w.log_mark() for w in ws}
    mark = m.log_mark()
    import random
    h.damage_chunk_payload(rotten.data_dir, corrupt, random.Random(7))
    r = emptied.client(h.CLUSTER_SECRET).delete(f"/chunks/{deleted}")
    assert r.status_code in (200, 204), r.text

    def repaired():
        now = good_replicas(alice, fid)
        assert all(len(v) == 2 for v in now.values()), now
        assert metric(m, "echofs_grpc_delta_marked_bad_total") == 2, m.log_tail()
    wait_until(lambda: _passes(repaired), 30, what="both copies marked bad and repaired")
    log = m.stderr_since(mark)
    # (one delta or two: both may be on the same worker)
    deltas = re.findall(r"worker (\S+) \(gRPC delta\): (\d+) chunks corrupt, (\d+) deleted", log)
    assert sum(int(c) for _, c, _ in deltas) == 1 and sum(int(d) for *_, d in deltas) == 1, log
    assert {w for w, *_ in deltas} == {rotten.worker_id, emptied.worker_id}, log
    # not by an HTTP report
    assert "/report " not in log, log
    assert "reported 1 corrupt chunks to the master on the gRPC stream" in \
        rotten.stderr_since(marks[rotten.worker_id]), rotten.log_tail()
    wm = rotten.client().get("/metrics").text
    assert re.search(r"^echofs_worker_chunk_deltas_total [1-9]", wm, re.M), wm
    assert alice.download(fid) == data


def test_worker_told_wrong_cluster_stops_using_that_masters_control_plane(cluster, messages):
    """A worker whose MASTER_GRPC_URL names another cluster's master: that
    master answers its Hello with WrongCluster (then FAILED_PRECONDITION),
    and the worker opens no more streams to it, beating over HTTP to its
    own master, whose registration checked the cluster."""
    M = messages
    m = grpc_master(cluster)
    other = cluster.add_master(name="other")
    other.restart(fresh_data_dir=True)  # its own metadata: another cluster
    other.wait_ready()
    mark = other.log_mark()
    w = cluster.add_worker(MASTER_GRPC_URL=f"grpc://127.0.0.1:{other.grpc_port}", **GRPC_ENV)
    w.wait_for_log(r"no more streams to it", timeout=20)
    # Retried streams would come 1, 2 and 4 s apart (the backoff): none.
    time.sleep(4)
    refused = re.findall(r"its gRPC stream is refused", other.stderr_since(mark))
    assert len(refused) == 1, other.log_tail()
    assert w.stderr().count("no more streams to it") == 1, w.log_tail()
    wait_protocol(m, w.worker_id, "http")
    assert other.workers() == []

    # From an independent client: the instruction, then the status.
    channel = grpc.insecure_channel(f"127.0.0.1:{other.grpc_port}")
    connect = channel.stream_stream(
        SERVICE + "Connect", request_serializer=lambda x: x.SerializeToString(),
        response_deserializer=M("MasterMessage").FromString)
    call = connect(iter([M("WorkerMessage")(hello=M("Hello")(
        worker_id=w.worker_id, cluster_id=w.data_dir.joinpath("cluster_id").read_text().strip()))]),
        metadata=[("authorization", f"Bearer {h.CLUSTER_SECRET}")], timeout=10)
    first = next(call)
    assert first.WhichOneof("body") == "wrong_cluster", first
    assert len(first.wrong_cluster.cluster_id) == 32, first
    with pytest.raises(grpc.RpcError) as e:
        next(call)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    channel.close()


def test_killed_workers_chunks_are_repaired_by_copies_pushed_down_the_streams(cluster):
    """Repair's copies to workers with a stream go down it as CopyChunk:
    the target fetches the chunk from a good replica's worker over HTTP,
    verifies it, stores it and acks; the master writes nothing over HTTP
    (no PUT in the target's access log)."""
    m = cluster.add_master(REPLICATION_FACTOR=2, CHUNK_SIZE=65536, CHUNK_CACHE_SIZE=0,
                           REPAIR_AFTER_MS=200, GRPC_STREAM_GRACE_MS=300)
    ws = [cluster.add_worker(**GRPC_ENV) for _ in range(3)]
    for w in ws:
        wait_protocol(m, w.worker_id, "grpc")
    by_id = {w.worker_id: w for w in ws}
    alice = m.user_client("alice")
    data = os.urandom(5 * 65536 + 11)
    fid = alice.upload(data, "k.bin")["file_id"]
    reps = good_replicas(alice, fid)
    counts = {w.worker_id: sum(w.worker_id in v for v in reps.values()) for w in ws}
    victim = by_id[max(counts, key=counts.get)]
    lost = counts[victim.worker_id]
    assert lost >= 1, reps
    rest = [w for w in ws if w is not victim]
    marks = {w.worker_id: w.log_mark() for w in rest}
    victim.kill()

    def repaired():
        now = good_replicas(alice, fid)
        # (the dead worker's rows stay listed until it is gone for good)
        assert all(len(set(v) - {victim.worker_id}) == 2 for v in now.values()), now
    wait_until(lambda: _passes(repaired), 30, what="the victim's chunks copied elsewhere")
    assert metric(m, "echofs_grpc_copies_pushed_total") == lost, m.log_tail()
    assert metric(m, "echofs_grpc_copies_acked_total") == lost, m.log_tail()
    stored = 0
    for w in rest:
        log = w.stderr_since(marks[w.worker_id])
        assert "access PUT /chunks/" not in log, w.log_tail()  # nothing over HTTP
        found = re.search(r"^echofs_worker_pushed_copies_total (\d+)",
                          w.client().get("/metrics").text, re.M)
        stored += int(found.group(1))
    assert stored == lost
    # the bytes travelled worker to worker over HTTP
    assert sum(len(re.findall(r"access GET /chunks/", w.stderr_since(marks[w.worker_id])))
               for w in rest) >= lost
    assert alice.download(fid) == data


def worker_behind_proxy(cluster, nemesis, link, name=None):
    """A gRPC worker that the master and other workers reach through a
    nemesis proxy named @link (for the test to throttle or cut); its own
    stream goes straight to the master. (proxy, worker)"""
    port = h.free_port()
    proxy = nemesis.proxy(port, link)
    w = cluster.add_worker(name, port=port, WORKER_ADVERTISE_URL=proxy.url(cluster.scheme),
                           **GRPC_ENV)
    return proxy, w


def test_a_pushed_copy_slower_than_the_dead_limit_leaves_its_worker_alive(cluster, nemesis):
    """A repair copy runs off the worker's heartbeat thread (a copier
    thread): a copy from a slow source, taking longer than both
    WORKER_DEAD_AFTER_MS and the master's silence limit, does not stop the
    target's beats: it stays alive on its stream the whole time, and the
    copy still lands, pushed and acked."""
    chunk = 128 * 1024
    m = cluster.add_master(REPLICATION_FACTOR=2, CHUNK_SIZE=chunk, CHUNK_CACHE_SIZE=0,
                           REPAIR_AFTER_MS=200, GRPC_STREAM_GRACE_MS=300)
    dead_after_s = m.dead_after_ms / 1000
    # The source is reached (by the master's verifying read and by the
    # target's fetch) through a proxy the test throttles; its own stream
    # goes straight to the master.
    slow, source = worker_behind_proxy(cluster, nemesis, "to-source")
    victim = cluster.add_worker(**GRPC_ENV)
    for w in (source, victim):
        wait_protocol(m, w.worker_id, "grpc")
    alice = m.user_client("alice")
    data = os.urandom(chunk)  # one chunk, incompressible: on source and victim
    fid = alice.upload(data, "slow.bin")["file_id"]
    target = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, target.worker_id, "grpc")
    mark = target.log_mark()
    # 128 KiB at 20,000 B/s: each read of the source takes about 6.5 s,
    # past the dead limit and the master's silence limit (5 s at least),
    # within the master's read budget (10 s).
    rate = 20000
    assert chunk / rate > max(dead_after_s, 5.0) + 1
    slow.throttle(rate, dirs=nm.DOWN)
    victim.kill()

    def copied():
        return int(re.search(r"^echofs_worker_pushed_copies_total (\d+)",
                             target.client().get("/metrics").text, re.M).group(1)) == 1
    started = time.monotonic()
    seen = set()
    while not copied():
        assert time.monotonic() - started < 90, \
            f"the pushed copy did not land: {m.log_tail()}\n{target.log_tail()}"
        rec = m.worker_record(target.worker_id)
        seen.add((rec["status"], rec.get("protocol")))
        time.sleep(0.1)
    took = time.monotonic() - started
    assert seen == {("alive", "grpc")}, (seen, m.log_tail(), target.log_tail())
    assert took > dead_after_s, took  # the copy did outlast the dead limit
    slow.heal()
    wait_until(lambda: metric(m, "echofs_grpc_copies_acked_total") == 1, 30,
               what="the pushed copy's Ack")
    assert metric(m, "echofs_grpc_copies_pushed_total") == 1
    assert metric(m, "echofs_grpc_streams_silenced_total") == 0
    assert metric(m, "echofs_grpc_streams_broken_total") == 1  # the victim's only
    log = target.stderr_since(mark)
    assert "access PUT /chunks/" not in log, target.log_tail()  # nothing over HTTP
    wait_until(lambda: good_replicas(alice, fid) and all(
        target.worker_id in v for v in good_replicas(alice, fid).values()), 30,
        what="the copy recorded on the target")
    assert alice.download(fid) == data


def test_a_slow_pushed_copy_does_not_hold_up_the_next_one_in_its_pass(cluster, nemesis):
    """Repair sends a pass's pushed copies without waiting for each Ack
    and records each copy when its own Ack comes: of two chunks repaired
    in one pass, the first copied from a throttled source, the second's
    copy is recorded while the first is still being fetched (before, the
    pass waited for the first Ack, up to 30 s, before it sent the
    second)."""
    chunk = 128 * 1024
    m = cluster.add_master(REPLICATION_FACTOR=2, CHUNK_SIZE=chunk, CHUNK_CACHE_SIZE=0,
                           REPAIR_AFTER_MS=5000, GRPC_STREAM_GRACE_MS=300)
    # slow_source is reached (by the master's read and the other worker's
    # fetch) through a proxy the test throttles; fast_source directly.
    slow, slow_source = worker_behind_proxy(cluster, nemesis, "to-slow-source")
    victim = cluster.add_worker(**GRPC_ENV)
    for w in (slow_source, victim):
        wait_protocol(m, w.worker_id, "grpc")
    # The pass takes chunks by id among equals: the slow one first.
    first, second = sorted((os.urandom(chunk) for _ in range(2)),
                           key=lambda b: hashlib.sha256(b).hexdigest())
    alice = m.user_client("alice")
    fid_slow = alice.upload(first, "slow.bin")["file_id"]  # on slow_source and victim
    # The second chunk on fast_source and victim: slow_source is away.
    slow_source.stop()
    wait_until(lambda: m.worker_record(slow_source.worker_id)["status"] != "alive", 20,
               what="slow_source counted away")
    fast_source = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, fast_source.worker_id, "grpc")
    fid_fast = alice.upload(second, "fast.bin")["file_id"]
    slow_source.start()
    wait_protocol(m, slow_source.worker_id, "grpc")
    (cid_slow,) = good_replicas(alice, fid_slow)
    (cid_fast,) = good_replicas(alice, fid_fast)
    assert cid_slow < cid_fast
    assert good_replicas(alice, fid_slow)[cid_slow] == sorted(
        [slow_source.worker_id, victim.worker_id])
    assert good_replicas(alice, fid_fast)[cid_fast] == sorted(
        [fast_source.worker_id, victim.worker_id])
    # 128 KiB at 20,000 B/s: the master's read of the slow chunk and
    # fast_source's fetch of it take about 6.5 s each.
    slow.throttle(20000, dirs=nm.DOWN)
    marks = {w.worker_id: w.log_mark() for w in (slow_source, fast_source)}
    victim.kill()
    # The second chunk's copy (to slow_source, from fast_source) is
    # recorded while the first's (to fast_source) is still on its way.
    wait_until(lambda: slow_source.worker_id in good_replicas(alice, fid_fast)[cid_fast], 90,
               what="the fast chunk's pushed copy recorded")
    assert fast_source.worker_id not in good_replicas(alice, fid_slow)[cid_slow], \
        (m.log_tail(), fast_source.log_tail())
    assert metric(m, "echofs_grpc_copies_pushed_total") == 2, m.log_tail()
    slow.heal()
    wait_until(lambda: fast_source.worker_id in good_replicas(alice, fid_slow)[cid_slow], 60,
               what="the slow chunk's pushed copy recorded")
    assert metric(m, "echofs_grpc_copies_acked_total") == 2, m.log_tail()
    for w in (slow_source, fast_source):  # nothing over HTTP
        assert "access PUT /chunks/" not in w.stderr_since(marks[w.worker_id]), w.log_tail()
    assert alice.download(fid_slow) == first
    assert alice.download(fid_fast) == second


def test_a_copy_pushed_to_a_worker_holding_the_chunk_is_answered_204_and_recorded(cluster):
    """A CopyChunk for a chunk the target holds already (unrecorded, as an
    earlier copy whose Ack was lost leaves it) is answered 204 at once,
    nothing fetched, and the master records the target's replica."""
    chunk = 64 * 1024
    m = cluster.add_master(REPLICATION_FACTOR=2, CHUNK_SIZE=chunk, CHUNK_CACHE_SIZE=0,
                           REPAIR_AFTER_MS=200, GRPC_STREAM_GRACE_MS=300,
                           ORPHAN_GRACE_MS=3600000)
    source, victim = (cluster.add_worker(**GRPC_ENV) for _ in range(2))
    for w in (source, victim):
        wait_protocol(m, w.worker_id, "grpc")
    alice = m.user_client("alice")
    data = os.urandom(chunk)
    fid = alice.upload(data, "held.bin")["file_id"]
    (cid,) = good_replicas(alice, fid)
    target = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, target.worker_id, "grpc")
    # Its first report done (none follows for an hour: REPORT_INTERVAL_MS),
    # so no report adopts the copy below before repair pushes one.
    wait_until(lambda: "chunk report sent" in target.stderr(), 20,
               what="the target's first chunk report")
    # The target gets the stored bytes straight from the source.
    r = source.client(h.CLUSTER_SECRET).get(f"/chunks/{cid}")
    assert r.status_code == 200, r.text
    encoding = r.headers.get("X-Chunk-Encoding", "identity")
    r = target.client(h.CLUSTER_SECRET).put(
        f"/chunks/{cid}", data=r.content,
        headers={"X-Chunk-Encoding": encoding, "X-Chunk-CRC32C": f"{h.crc32c(r.content):08x}"})
    assert r.status_code == 201, r.text
    assert good_replicas(alice, fid)[cid] == sorted([source.worker_id, victim.worker_id])
    mark = source.log_mark()
    victim.kill()
    wait_until(lambda: target.worker_id in good_replicas(alice, fid)[cid], 30,
               what="the target's copy recorded by repair")
    assert metric(m, "echofs_grpc_copies_pushed_total") == 1, m.log_tail()
    assert metric(m, "echofs_grpc_copies_acked_total") == 1, m.log_tail()
    wm = target.client().get("/metrics").text
    assert re.search(r"^echofs_worker_pushed_copies_total 0$", wm, re.M), wm
    assert re.search(r"^echofs_worker_pushed_copies_held_total 1$", wm, re.M), wm
    assert target.chunk_usage().count == 1
    # Only the master's verifying read went to the source: the target
    # fetched nothing.
    assert len(re.findall(r"access GET /chunks/", source.stderr_since(mark))) == 1, \
        source.log_tail()
    assert alice.download(fid) == data


def test_stopping_a_master_does_not_wait_for_a_pushed_copy_in_flight(cluster, nemesis):
    """A repair pass waiting for a pushed copy's Ack (up to EFS_COPY_ACK_MS,
    30 s) stops waiting when the master is told to stop: SIGTERM with a
    copy in flight to a worker whose stream is healthy (the copy crawls
    from a throttled source, so its Ack would come only at the worker's
    25 s deadline) ends the master well within 10 s, with its graceful
    stop logged and the copy forgotten (before: the stop waited for the
    Ack, about 25 s)."""
    chunk = 512 * 1024
    m = cluster.add_master(REPLICATION_FACTOR=2, CHUNK_SIZE=chunk, CHUNK_CACHE_SIZE=0,
                           REPAIR_AFTER_MS=200, GRPC_STREAM_GRACE_MS=300)
    # The source is reached (by the master's verifying read and by the
    # target's fetch) through a proxy the test throttles.
    slow, source = worker_behind_proxy(cluster, nemesis, "to-source")
    victim = cluster.add_worker(**GRPC_ENV)
    for w in (source, victim):
        wait_protocol(m, w.worker_id, "grpc")
    alice = m.user_client("alice")
    fid = alice.upload(os.urandom(chunk), "inflight.bin")["file_id"]  # on source and victim
    target = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, target.worker_id, "grpc")
    # The master's read of 512 KiB at 100,000 B/s takes about 5 s, within
    # its 10 s budget; once the copy is pushed, the target's fetch goes on
    # at 12,000 B/s: above the worker's floor (EFS_COPY_MIN_SPEED, 8 KiB/s),
    # so it neither stalls nor fails, and it would take about 40 s.
    slow.throttle(100000, dirs=nm.DOWN)
    victim.kill()
    wait_until(lambda: metric(m, "echofs_grpc_copies_pushed_total") == 1, 60,
               what="the copy pushed to the target")
    slow.throttle(12000, dirs=nm.DOWN)
    assert metric(m, "echofs_grpc_copies_acked_total") == 0, m.log_tail()
    assert target.worker_id not in good_replicas(alice, fid).popitem()[1]
    mark = m.log_mark()
    took = m.stop(timeout=60)  # exit status 0, and no sanitizer report
    slow.heal()
    log = m.stderr_since(mark)
    assert took < 10, (f"the master took {took:.1f} s to stop with a pushed copy in "
                       f"flight\n{log}")
    assert "received: finishing requests in flight" in log, log
    assert "repair: stopping: 1 pushed copies not waited for" in log, log
    assert re.search(r"\bstopped$", log, re.M), log


def test_stopping_a_master_does_not_wait_for_a_pushed_delete(cluster):
    """The collector's deletes pushed down a stream wait up to 5 s each for
    their Ack (then the same delete over HTTP, 5 s more): a master told to
    stop no longer waits for them. A frozen worker (SIGSTOP, its stream
    still open) holds four collected chunks; SIGTERM once the first delete
    is pushed ends the master well within 10 s, the delete logged as not
    waited for and the pass ended there (before: about 25 s, that delete's
    wait, its HTTP retry and an HTTP delete per further chunk)."""
    chunk = 64 * 1024
    m = grpc_master(cluster, GC_GRACE_MS=300, REPLICATION_FACTOR=1, CHUNK_SIZE=chunk,
                    CHUNK_CACHE_SIZE=0)
    w = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    alice = m.user_client("alice")
    f = alice.upload(os.urandom(4 * chunk), "frozen.bin")
    assert w.chunk_usage().count == 4
    w.pause()
    r = alice.delete(f"/api/v1/files/{f['file_id']}")
    assert r.status_code in (200, 204), r.text
    wait_until(lambda: metric(m, "echofs_grpc_deletes_pushed_total") == 1, 30,
               what="the first delete pushed to the frozen worker")
    assert metric(m, "echofs_grpc_deletes_acked_total") == 0, m.log_tail()
    mark = m.log_mark()
    took = m.stop(timeout=90)  # exit status 0, and no sanitizer report
    log = m.stderr_since(mark)
    w.resume()
    assert took < 10, (f"the master took {took:.1f} s to stop with a pushed delete "
                       f"pending\n{log}")
    assert "received: finishing requests in flight" in log, log
    assert re.search(rf"delete pushed to worker {w.worker_id} not waited for: this master "
                     r"is stopping", log), log
    assert "calling it over HTTP" not in log, log
    assert re.search(r"\bstopped$", log, re.M), log


def test_a_pushed_copy_rewritten_over_http_counts_one_repair(cluster, nemesis):
    """echofs_repair_chunks_repaired_total counts a chunk once, when it is
    repaired: a pushed copy that fails (its source refuses the target) and
    is then written over HTTP is one repair, not two (before, the chunk
    counted when its copy was sent and again when it was rewritten)."""
    chunk = 64 * 1024
    m = cluster.add_master(REPLICATION_FACTOR=3, CHUNK_SIZE=chunk, CHUNK_CACHE_SIZE=0,
                           REPAIR_AFTER_MS=200, GRPC_STREAM_GRACE_MS=300)
    # Two holders reached (by the master and the target) through proxies;
    # the victim directly.
    links = {}
    for name in ("source-a", "source-b"):
        link, w = worker_behind_proxy(cluster, nemesis, f"to-{name}", name)
        links[w.worker_id] = (w, link)
    victim = cluster.add_worker(**GRPC_ENV)
    for wid in [*links, victim.worker_id]:
        wait_protocol(m, wid, "grpc")
    alice = m.user_client("alice")
    data = os.urandom(chunk)
    fid = alice.upload(data, "counted.bin")["file_id"]
    (cid,) = good_replicas(alice, fid)
    assert good_replicas(alice, fid)[cid] == sorted([*links, victim.worker_id])
    target = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, target.worker_id, "grpc")
    # A pushed copy's source is the first good replica by worker id: it
    # refuses every connection, so the target's fetch fails (502) and the
    # master writes the copy over HTTP, reading the other holder.
    refusing = min(links)
    links[refusing][1].cut(reset=True)
    before = metric(m, "echofs_repair_chunks_repaired_total")
    marks = (m.log_mark(), target.log_mark())
    victim.kill()
    wait_until(lambda: target.worker_id in good_replicas(alice, fid)[cid], 60,
               what="the chunk rewritten on the target")
    # (the pass adds its count when it ends)
    wait_until(lambda: metric(m, "echofs_repair_chunks_repaired_total") > before, 30,
               what="the repair counted")
    log = m.stderr_since(marks[0])
    assert re.search(rf"pushed copy of chunk {cid[:12]} to worker {target.worker_id} failed "
                     r"\(status 502\)", log), log
    assert "access PUT /chunks/" in target.stderr_since(marks[1]), target.log_tail()
    assert metric(m, "echofs_grpc_copies_pushed_total") == 1, log
    assert metric(m, "echofs_repair_chunks_repaired_total") == before + 1, log
    assert metric(m, "echofs_repair_failures_total") == 0, log
    assert alice.download(fid) == data


class _Failed:
    """A failed check: false, and shown with its reason by wait_until's
    "last value"."""

    def __init__(self, why):
        self.why = why

    def __bool__(self):
        return False

    def __repr__(self):
        return f"failed: {self.why}"


def _passes(check):
    try:
        check()
        return True
    except AssertionError as e:
        return _Failed(str(e)[:2000])


def test_python_grpc_client_reports_in_batches_and_is_refused_bad_batches(cluster, messages):
    """The Report call from an independent client: each batch is answered
    with its verdicts before the next; a batch from an unknown worker, of
    another cluster, malformed, or naming another worker than the first
    ends the call; the master is unharmed."""
    M = messages
    m = grpc_master(cluster, ORPHAN_GRACE_MS=500)
    channel = grpc.insecure_channel(f"127.0.0.1:{m.grpc_port}")
    auth = [("authorization", f"Bearer {h.CLUSTER_SECRET}")]
    ser = lambda msg: msg.SerializeToString()  # noqa: E731
    register = channel.unary_unary(SERVICE + "Register", request_serializer=ser,
                                   response_deserializer=M("RegisterReply").FromString)
    space = M("Space")(capacity_bytes=1 << 30, free_bytes=1 << 29)
    reg = register(M("RegisterRequest")(url="http://127.0.0.1:9", space=space),
                   metadata=auth, timeout=10)
    report = channel.stream_stream(SERVICE + "Report", request_serializer=ser,
                                   response_deserializer=M("ReportReply").FromString)
    now = int(time.time() * 1000)
    old = os.urandom(32).hex()
    young = os.urandom(32).hex()

    def batch(worker_id=reg.worker_id, chunks=(), last=False, **kw):
        return M("ReportBatch")(
            worker_id=worker_id, started_at_ms=now, now_ms=now, last=last,
            chunks=[M("ReportedChunk")(chunk_id=c, mtime_ms=t) for c, t in chunks], **kw)
    replies = list(report(iter([batch(), batch(chunks=[(old, now - 60000), (young, now)]),
                                batch(last=True)]), metadata=auth, timeout=10))
    assert len(replies) == 3, replies
    assert replies[0].accepted == 0 and replies[0].now_ms > 0
    # unknown to the master: the old one is an orphan, the young one is
    # kept while younger than ORPHAN_GRACE_MS
    assert list(replies[1].delete) == [old], replies[1]
    assert replies[1].accepted == 2, replies[1]

    def code_of(batches, metadata=auth):
        with pytest.raises(grpc.RpcError) as e:
            list(report(iter(batches), metadata=metadata, timeout=10))
        return e.value.code()
    assert code_of([batch()], metadata=[]) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of([batch(worker_id="w-unknown")]) == grpc.StatusCode.NOT_FOUND
    assert code_of([batch(worker_id="bad id!")]) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of([batch(cluster_id="f" * 32)]) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of([batch(chunks=[("xyz", now)])]) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of([batch(), batch(worker_id=reg.worker_id + "x")]) == \
        grpc.StatusCode.INVALID_ARGUMENT
    raw = channel.stream_stream(SERVICE + "Report")
    with pytest.raises(grpc.RpcError) as e:
        list(raw(iter([b"\xff\xfe"]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        list(raw(iter([b"z" * (2 << 20)]), metadata=auth, timeout=10))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert m.health()["metadata"] == "ok"
    channel.close()


def test_frozen_stream_is_ended_by_the_master_and_the_worker_comes_back(cluster, nemesis):
    # A partition that sends neither FIN nor RST: the proxy holds every
    # byte of the open stream both ways. Only the master's silence sweep
    # (3 heartbeat intervals without a message, 5 s at least) can end it before
    # WORKER_DEAD_AFTER_MS; the worker's keepalive then breaks its side,
    # and when the link heals it streams again.
    m = grpc_master(cluster)
    link = nemesis.proxy(m.grpc_port, "grpc-freeze")
    w = cluster.add_worker(MASTER_GRPC_URL=link.url("grpc"), **GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    assert link.connections == 1
    mark = m.log_mark()
    assert link.freeze() == 1
    frozen = time.monotonic()
    m.wait_worker_status(w.worker_id, "dead", timeout=DEAD_AFTER_MS / 1000 / 2)
    assert time.monotonic() - frozen < DEAD_AFTER_MS / 1000 / 2
    log = m.stderr_since(mark)
    assert re.search(rf"worker {w.worker_id}: no message on its gRPC stream", log), \
        m.log_tail()
    assert re.search(rf"worker {w.worker_id}: its gRPC stream went silent", log), m.log_tail()
    assert metric(m, "echofs_grpc_streams_silenced_total") == 1
    link.heal()
    # Back on a stream (a new connection through the healed proxy) and alive.
    wait_protocol(m, w.worker_id, "grpc", timeout=60)
    assert metric(m, "echofs_grpc_streams") == 1


def test_a_worker_beating_on_time_is_never_silenced(cluster):
    # The sweep ends silent streams only: workers beating every interval
    # keep theirs (the same stream, opened once).
    m = grpc_master(cluster)
    w = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    opened = metric(m, "echofs_grpc_streams_opened_total")
    time.sleep(6)  # 20 heartbeat intervals, past the silence limit (5 s at least)
    assert metric(m, "echofs_grpc_streams_silenced_total") == 0
    assert metric(m, "echofs_grpc_streams_opened_total") == opened
    assert m.worker_record(w.worker_id)["protocol"] == "grpc"


@pytest.fixture
def tls_cluster(request, tmp_path):
    c = h.Cluster(tmp_path, label=request.node.nodeid, tls=True)
    yield c
    c.close()


def test_tls_cluster_streams_over_tls_and_refuses_plaintext_and_strangers(
        tls_cluster, messages, tmp_path):
    M = messages
    m = grpc_master(tls_cluster, REPLICATION_FACTOR=1)
    assert m.url.startswith("https://")
    # The HTTP listener may answer /health before the control plane's
    # start is logged (slow under the sanitizers): wait for the line.
    m.wait_for_log(r"gRPC control plane listening on \S+ \(TLS\)", timeout=10)
    # A worker that reaches the master over HTTPS streams over TLS, verified
    # with its TLS_CA_FILE, and files round-trip through it.
    w = tls_cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    assert f"heartbeats go over gRPC to 127.0.0.1:{m.grpc_port}" in w.stderr(), w.log_tail()
    alice = m.user_client("alice")
    data = os.urandom(300 * 1024 + 3)
    f = alice.upload(data, "t.bin")
    assert alice.download(f["file_id"]) == data

    ca = tls_cluster.tls.ca.read_bytes()
    target = f"127.0.0.1:{m.grpc_port}"
    space = M("Space")(capacity_bytes=1 << 30, free_bytes=1 << 29)
    req = M("RegisterRequest")(url="https://127.0.0.1:9", space=space)
    ser = lambda msg: msg.SerializeToString()  # noqa: E731

    def register(channel, **kw):
        call = channel.unary_unary(SERVICE + "Register", request_serializer=ser,
                                   response_deserializer=M("RegisterReply").FromString)
        return call(req, timeout=10, **kw)

    def code_of(channel, **kw):
        with pytest.raises(grpc.RpcError) as e:
            register(channel, **kw)
        return e.value.code()
    auth = [("authorization", f"Bearer {h.CLUSTER_SECRET}")]
    # TLS with the cluster's CA and the secret: taken.
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
        assert register(ch, metadata=auth).worker_id
        # The secret still authenticates each call over TLS.
        assert code_of(ch) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(ch, metadata=[("authorization", "Bearer nope")]) == \
            grpc.StatusCode.UNAUTHENTICATED
    # Plaintext to the TLS port: no call gets through.
    with grpc.insecure_channel(target) as ch:
        assert code_of(ch, metadata=auth) == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA refuses the master's certificate.
    other = h.make_tls_material(tmp_path / "other-ca", name="Other")
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(
            root_certificates=other.ca.read_bytes())) as ch:
        assert code_of(ch, metadata=auth) == grpc.StatusCode.UNAVAILABLE
    # The master is unharmed and the worker still streams.
    assert m.health()["metadata"] == "ok"
    assert m.worker_record(w.worker_id)["protocol"] == "grpc"


# ---- several masters: what another master sees of a stream worker ----------
#
# docs/LIFECYCLE.md "Worker liveness": a stream beat is only stamped in the
# memory of the master holding the stream; its flusher writes every stream
# worker's latest beat to the store (and Redis) every WORKER_DEAD_AFTER_MS/4,
# at once when free space crosses the full line. Another master sees that.

SHARED_DEAD_AFTER_MS = 4000  # flushes every 1 s


def shared_pair(request, tmp_path, redis):
    if not h.PG_URL:
        pytest.skip("two masters on one store need PostgreSQL: set ECHOFS_TEST_PG_URL "
                    "(scripts/services.sh start DIR && . DIR/env)")
    if redis and not Path(h.REDIS_SERVER).exists():
        pytest.skip("needs redis-server")
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres",
                  redis="dedicated" if redis else False)
    env = dict(WORKER_DEAD_AFTER_MS=SHARED_DEAD_AFTER_MS, HEARTBEAT_INTERVAL_MS=300,
               GRPC_STREAM_GRACE_MS=GRACE_MS, REPLICATION_FACTOR=1, CHUNK_SIZE=65536,
               CHUNK_CACHE_SIZE=0)
    a = c.add_master("master-a", **env)
    b = c.add_master("master-b", **env)
    return c, a, b


# A master that counts a worker dead 2 s after its last beat, beats every
# 200 ms and a broken stream dead after 300 ms: the liveness tests below.
LIVENESS_ENV = dict(WORKER_DEAD_AFTER_MS=2000, HEARTBEAT_INTERVAL_MS=200,
                    GRPC_STREAM_GRACE_MS=300)


def stream_trio(cluster):
    """A master with LIVENESS_ENV and three gRPC stream workers, each past
    its stream's first (written) beat: stamped. Returns (master, workers)."""
    m = cluster.add_master(**LIVENESS_ENV)
    ws = [cluster.add_worker(**GRPC_ENV) for _ in range(3)]
    for w in ws:
        wait_protocol(m, w.worker_id, "grpc")
    time.sleep(1.0)
    return m, ws


def hold_workers_lock(cluster, mode: str, seconds: float) -> threading.Thread:
    """Takes `LOCK TABLE workers IN <mode> MODE` on the cluster's PostgreSQL
    database from another process for `seconds`; returns the thread that
    holds it (join it to wait for the release) once the lock is granted."""
    held = "".join(word.capitalize() for word in mode.split()) + "Lock"  # pg_locks' name
    thread = threading.Thread(target=cluster.psql, args=(
        f"BEGIN; LOCK TABLE workers IN {mode} MODE; SELECT pg_sleep({seconds}); COMMIT",),
        kwargs={"timeout": 60})
    thread.start()
    wait_until(lambda: cluster.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        f"WHERE c.relname = 'workers' AND l.mode = '{held}' AND l.granted"
    ).stdout.strip() == "1", 10, what="the lock on workers")
    return thread


class StoreWriteLock:
    """Holds the metadata store's write lock on the workers' rows from
    another process (SQLite: BEGIN IMMEDIATE on the master's database, which
    WAL readers pass; PostgreSQL: LOCK TABLE workers IN EXCLUSIVE MODE, which
    SELECTs pass). stored_beats() reads the workers' stored last beats."""

    def __init__(self, cluster, m):
        self.cluster, self.m = cluster, m
        self.db = self.thread = None

    def __enter__(self):
        if h.BACKEND == "postgres":
            self.thread = hold_workers_lock(self.cluster, "EXCLUSIVE", 5)
        else:
            import sqlite3
            self.db = sqlite3.connect(str(self.m.data_dir / "echofs.db"), timeout=10,
                                      isolation_level=None)
            self.db.execute("BEGIN IMMEDIATE")
        return self

    def stored_beats(self):
        if self.db is None:
            return [int(x) for x in self.cluster.psql(
                "SELECT last_heartbeat FROM workers").stdout.split()]
        return [row[0] for row in self.db.execute("SELECT last_heartbeat FROM workers")]

    def __exit__(self, *exc):
        if self.db is not None:
            self.db.execute("ROLLBACK")
            self.db.close()
        if self.thread is not None:
            self.thread.join()


def test_stream_workers_stay_alive_on_their_master_while_its_store_cannot_be_written(cluster):
    """R17: a stream beating to a master proves its worker alive there,
    whatever the flusher has managed to write. The store's write lock is
    held by another process for more than WORKER_DEAD_AFTER_MS: the stored
    beats (and Redis keys, written after them) grow older than the dead
    limit, yet the master hearing the streams keeps listing its workers
    alive, and they stay alive after the lock goes. (CI on a loaded machine
    saw a master refuse uploads with "0 live workers" while every stream
    beat: its liveness came from the flushed beats alone.)"""
    dead_ms = LIVENESS_ENV["WORKER_DEAD_AFTER_MS"]
    m, ws = stream_trio(cluster)
    with StoreWriteLock(cluster, m) as lock:
        held = time.monotonic()
        while time.monotonic() - held < 2 * dead_ms / 1000:
            for w in ws:
                rec = m.worker_record(w.worker_id)
                assert rec["status"] == "alive", (rec, m.log_tail())
            time.sleep(0.2)
        stale = [b for b in lock.stored_beats() if time.time() * 1000 - b > dead_ms]
        assert len(stale) >= len(ws), \
            f"the stored beats stayed fresh {lock.stored_beats()}: the lock held nothing back"
    for w in ws:
        assert m.worker_record(w.worker_id)["status"] == "alive"
    alice = m.user_client("alice")
    data = os.urandom(100_000)
    assert alice.download(alice.upload(data, "after.bin")["file_id"]) == data


def test_a_stream_beat_waiting_for_a_locked_store_keeps_its_worker_alive(cluster):
    """R17 again, for a beat that must go through the store: after a gap of
    more than WORKER_DEAD_AFTER_MS / 2 (the worker paused 1.3 s) a stream's
    beat is no longer stamped in memory but written (the rejoin check), and
    while the store's write lock is held elsewhere that write waits, and
    every later beat of the stream queues behind it. The stream still beats
    to this master: its worker stays alive here all along (CI once saw one
    counted dead 2.2 s into the lock of the test above: a 1 s gap in its
    beats just before it). Without efs_registry_heard it is dead within
    WORKER_DEAD_AFTER_MS of its last stamp."""
    dead_ms = LIVENESS_ENV["WORKER_DEAD_AFTER_MS"]
    m = cluster.add_master(**LIVENESS_ENV, REPLICATION_FACTOR=1)
    w = cluster.add_worker(**GRPC_ENV)
    wait_protocol(m, w.worker_id, "grpc")
    time.sleep(0.5)
    w.pause()
    time.sleep(1.3)  # its stamp past WORKER_DEAD_AFTER_MS / 2, not yet dead
    with StoreWriteLock(cluster, m):
        w.resume()
        held = time.monotonic()
        while time.monotonic() - held < 2 * dead_ms / 1000:
            rec = m.worker_record(w.worker_id)
            assert rec["status"] == "alive", (rec, m.log_tail())
            time.sleep(0.2)
    m.wait_worker_status(w.worker_id, "alive", timeout=10)
    alice = m.user_client("alice")
    data = os.urandom(10_000)
    assert alice.download(alice.upload(data, "after.bin")["file_id"]) == data


def test_a_beat_stamped_while_the_workers_are_read_counts_as_heard(request, tmp_path):
    """R17, the list's side: GET /api/v1/workers reads the stored beats,
    then the stamps. A beat stamped while the read went on is not from the
    future: it proves its worker alive. The test holds every access to the
    workers table (ACCESS EXCLUSIVE) for 4.5 s, so that the stored beats age
    past WORKER_DEAD_AFTER_MS, and asks for the list 3 s in: its read
    waits for the lock while the streams go on beating. No Redis: a flush
    landing its keys just before the list's look would hide the stale
    reading. (CI saw a stream worker listed dead 3.8 s into the store lock
    of the test above: a reading of the clock taken before the read made
    each stamp taken during it look newer than "now", and so not counted.)"""
    if not h.PG_URL:
        pytest.skip("needs a lock that holds back the store's reads: PostgreSQL's ACCESS "
                    "EXCLUSIVE (set ECHOFS_TEST_PG_URL; SQLite's WAL readers pass any lock)")
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres", redis=False)
    try:
        m, ws = stream_trio(c)
        hold = hold_workers_lock(c, "ACCESS EXCLUSIVE", 4.5)
        try:
            held_wall = int(time.time())
            # Past the limit: every stored beat, and the one a flush that
            # waits for the lock holds (copied at most a flush period, 0.5
            # s, in), which may land just before the list's read.
            time.sleep(3.0)
            asked = time.monotonic()
            listed = {r["worker_id"]: r for r in m.workers()}
            assert time.monotonic() - asked > 0.5, "the list did not wait for the lock"
            for w in ws:
                rec = listed[w.worker_id]
                assert rec["status"] == "alive", (rec, m.log_tail())
                # its beat time is the stamp's, taken during the lock
                beat = calendar.timegm(time.strptime(rec["last_heartbeat"],
                                                     "%Y-%m-%dT%H:%M:%SZ"))
                assert beat >= held_wall + 2, (rec, held_wall)
        finally:
            hold.join()
        for w in ws:
            assert m.worker_record(w.worker_id)["status"] == "alive"
    finally:
        c.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_beat_that_waited_for_the_store_gives_no_redis_key_a_longer_life(request, tmp_path,
                                                                           protocol):
    """R17: a worker's Redis key expires WORKER_DEAD_AFTER_MS after the
    beat it holds, never later, even when the store write before it waited
    seconds for a slow or locked store (its TTL once came from a clock
    reading taken before that wait, or counted from the write: any master
    reading Redis counted a worker that stopped beating alive for as long
    again as the write waited). The workers table is write-locked for 4 s.
    A gRPC worker is paused first: the flush of its last stamp waits for
    the lock. An HTTP worker's beat that writes the store (one a quarter
    period) waits for the lock, and the worker with it. After the lock the
    key's beat and expiry are read together (one Lua call): the key of the
    old beat must not outlive it. The worker's fresh keys after must hold
    the same rule."""
    if not h.PG_URL or not Path(h.REDIS_SERVER).exists():
        pytest.skip("needs PostgreSQL and redis-server (scripts/services.sh start DIR && "
                    ". DIR/env)")
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres", redis="dedicated")
    try:
        dead_ms = LIVENESS_ENV["WORKER_DEAD_AFTER_MS"]
        m = c.add_master(**LIVENESS_ENV)
        w = c.add_worker(WORKER_PROTOCOL=protocol)
        wait_protocol(m, w.worker_id, protocol)
        time.sleep(1.0)  # a stream past its first (written) beat: stamped, flushed
        key = f"efs:worker:{w.worker_id}:alive"
        script = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"
        seen = []

        def check_key():
            out = h.redis_cli(c.redis_addr, "EVAL", script, "1", key).stdout.split()
            now_ms = time.time() * 1000
            if len(out) == 2 and out[0].isdigit() and int(out[1]) > 0:
                beat, ttl = int(out[0]), int(out[1])
                seen.append(beat)
                assert now_ms + ttl <= beat + dead_ms + 150, \
                    (f"the key of a beat at {beat} expires {now_ms + ttl - beat:.0f} ms after "
                     f"it (WORKER_DEAD_AFTER_MS {dead_ms})", m.log_tail())

        if protocol == "grpc":
            w.pause()
        try:
            c.psql("BEGIN; LOCK TABLE workers IN EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT",
                   timeout=60)
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                check_key()
                time.sleep(0.02)
        finally:
            if protocol == "grpc":
                w.resume()
        before = len(seen)
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            check_key()
            time.sleep(0.05)
        assert len(seen) > before, "no key written after the worker resumed: nothing checked"
    finally:
        c.close()


@pytest.mark.parametrize("redis", [False, True], ids=["store", "redis"])
def test_stream_worker_is_alive_on_another_master_and_dead_on_both_after_a_kill(
        request, tmp_path, redis):
    c, a, b = shared_pair(request, tmp_path, redis)
    try:
        # Streams to A only: B knows of it only through the store (Redis).
        w = c.add_worker(master=a, **GRPC_ENV)
        wait_protocol(a, w.worker_id, "grpc")
        b.wait_worker_status(w.worker_id, "alive", timeout=10)
        mark = a.log_mark()
        # For twice WORKER_DEAD_AFTER_MS B keeps listing it alive: only the
        # flushes of A's stamps (its stream beats write nothing else) can
        # keep its record young enough.
        until = time.monotonic() + 2 * SHARED_DEAD_AFTER_MS / 1000
        while time.monotonic() < until:
            rec = b.worker_record(w.worker_id)
            assert rec["status"] == "alive", (rec, a.log_tail())
            time.sleep(0.2)
        assert http_beats(a, w.worker_id, mark) == 0, "the worker beat over HTTP"
        assert metric(a, "echofs_grpc_beat_flushes_total") >= 2
        assert metric(a, "echofs_grpc_heartbeats_stamped_total") >= 5

        # Killed: its stream breaks on A, which suspects it in the store
        # (and Redis): dead on both within the grace, well before
        # WORKER_DEAD_AFTER_MS would end the life of its last flushed beat.
        w.kill()
        killed = time.monotonic()
        for m in (a, b):
            m.wait_worker_status(w.worker_id, "dead", timeout=SHARED_DEAD_AFTER_MS / 1000)
        assert time.monotonic() - killed < SHARED_DEAD_AFTER_MS / 1000, \
            "not dead on both masters within WORKER_DEAD_AFTER_MS of the kill"
    finally:
        c.close()


def test_full_stream_worker_gets_no_writes_through_another_master(request, tmp_path):
    c, a, b = shared_pair(request, tmp_path, False)
    try:
        small = 120000  # room for one 64 KiB chunk
        # weights by free space: the small one gets about one write in six
        roomy = c.add_worker(master=a, WORKER_CAPACITY_BYTES=4 << 20, **GRPC_ENV)
        full = c.add_worker(master=a, WORKER_CAPACITY_BYTES=small, **GRPC_ENV)
        for w in (roomy, full):
            wait_protocol(a, w.worker_id, "grpc")
            b.wait_worker_status(w.worker_id, "alive", timeout=10)
        # Both past their streams' first beats (written through the store):
        # from now on their beats are only stamped on A.
        wait_until(lambda: (metric(a, "echofs_grpc_heartbeats_stamped_total") or 0) >= 6, 10,
                   what="stamped beats on A")
        alice = b.user_client("alice")
        # Writes through B until one lands on the small worker.
        for i in range(40):
            alice.upload(os.urandom(60000), f"f{i}.bin")
            if full.chunk_usage().count:
                break
        used = full.chunk_usage()
        assert used.count == 1, f"no chunk reached {full.name}"

        # Its free space went up A's stream; A's flusher wrote it (at once:
        # it crossed the full line), and B reads it from the store.
        def b_knows():
            rec = b.worker_record(full.worker_id)
            return rec if rec["free_bytes"] == small - used.payload_bytes else None
        wait_until(b_knows, SHARED_DEAD_AFTER_MS / 1000, what="B to see the worker full")
        # B's placement reads a copy of the list at most EFS_REGISTRY_CACHE_MS
        # (250 ms) older than the store (registry.h): let one go by.
        time.sleep(0.5)
        # B places nothing more there: every upload lands on the roomy one.
        for i in range(10):
            alice.upload(os.urandom(60000), f"g{i}.bin")
        assert full.chunk_usage().count == 1, "B placed a chunk on a full worker"
        assert f"worker {full.worker_id}: free space now" in a.stderr(), a.log_tail()
    finally:
        c.close()
