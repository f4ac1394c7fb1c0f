"""Configuration: a missing or malformed variable stops the process at start
with exit status 2 and one stderr line naming the variable; a port in use
stops it with a clear line."""

import signal
import socket

import pytest

import echofs_harness as h


def expect_config_error(proc, variable):
    rc = proc.wait_exit()
    lines = proc.stderr_lines()
    assert rc == 2, f"{proc.name} exited {rc}, expected 2 (configuration error); stderr: {lines}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {lines}"
    assert variable in lines[0], f"the line does not name {variable}: {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("variable,env", [
    ("JWT_SECRET", {"JWT_SECRET": None}),
    ("JWT_SECRET", {"JWT_SECRET": ""}),
    ("CLUSTER_SECRET", {"CLUSTER_SECRET": None}),
    ("MASTER_PORT", {"MASTER_PORT": "abc"}),
    ("MASTER_PORT", {"MASTER_PORT": "70000"}),
    ("CHUNK_SIZE", {"CHUNK_SIZE": "0"}),
    ("CHUNK_SIZE", {"CHUNK_SIZE": "lots"}),
    ("MIN_CHUNK_SIZE", {"CHUNK_SIZE": "4096"}),
    ("MIN_CHUNK_SIZE", {"MIN_CHUNK_SIZE": "0"}),
    ("UPLOAD_MEMORY", {"UPLOAD_MEMORY": "64M"}),
    ("UPLOAD_MEMORY_PER_USER", {"UPLOAD_MEMORY_PER_USER": "64M"}),
    ("HEADER_TIMEOUT_MS", {"HEADER_TIMEOUT_MS": "10"}),
    ("SHUTDOWN_GRACE_MS", {"SHUTDOWN_GRACE_MS": "3600001"}),
    ("MASTER_HTTP_THREADS", {"MASTER_HTTP_THREADS": "257"}),
    ("REPLICATION_FACTOR", {"REPLICATION_FACTOR": "0"}),
    ("DATABASE_URL", {"DATABASE_URL": "mysql://x"}),
    ("MASTER_HOST", {"MASTER_HOST": "not-an-address"}),
    ("LOG_LEVEL", {"LOG_LEVEL": "chatty"}),
    ("TOPOLOGY_VISIBLE_TO", {"TOPOLOGY_VISIBLE_TO": "admins"}),
    ("HEARTBEAT_INTERVAL_MS", {"HEARTBEAT_INTERVAL_MS": "-5"}),
    ("HISTORY_INTERVAL_MS", {"HISTORY_INTERVAL_MS": "50"}),
    ("MALLOC_ARENA_MAX", {"MALLOC_ARENA_MAX": "0"}),
    ("WORKER_DEAD_AFTER_MS", {"HEARTBEAT_INTERVAL_MS": "2000", "WORKER_DEAD_AFTER_MS": "1000"}),
    # AWS mode (S3 chunks): a malformed bucket, a half-set configuration.
    ("S3_BUCKET_NAME", {"S3_BUCKET_NAME": "Not_A_Bucket"}),
    ("AWS_SECRET_ACCESS_KEY", {"S3_BUCKET_NAME": "echofs-chunks", "AWS_ACCESS_KEY_ID": "AKID",
                               "AWS_SECRET_ACCESS_KEY": None}),
    ("AWS_ENDPOINT_URL_S3", {"S3_BUCKET_NAME": "echofs-chunks", "AWS_ACCESS_KEY_ID": "AKID",
                             "AWS_SECRET_ACCESS_KEY": "s", "AWS_ENDPOINT_URL_S3": "ftp://x"}),
    ("AWS_REGION", {"S3_BUCKET_NAME": "echofs-chunks", "AWS_ACCESS_KEY_ID": "AKID",
                    "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "Mars!"}),
], ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={val}" for k, val in v.items()))
def test_master_bad_configuration_exits_2(cluster, variable, env):
    m = cluster.add_master(start=True, wait=False, **env)
    expect_config_error(m, variable)


@pytest.mark.parametrize("variable,env", [
    ("CLUSTER_SECRET", {"CLUSTER_SECRET": None}),
    ("MASTER_URL", {"MASTER_URL": "ftp://x"}),
    ("MASTER_URL", {"MASTER_URL": "http://127.0.0.1:1,ftp://x"}),
    ("WORKER_PORT", {"WORKER_PORT": "abc"}),
    ("WORKER_CAPACITY_BYTES", {"WORKER_CAPACITY_BYTES": "lots"}),
    ("WORKER_ADVERTISE_URL", {"WORKER_ADVERTISE_URL": "ftp://x"}),
    ("WORKER_HOST", {"WORKER_HOST": "nowhere"}),
    ("TOPOLOGY_VISIBLE_TO", {"TOPOLOGY_VISIBLE_TO": "everyone"}),
    ("HEADER_TIMEOUT_MS", {"HEADER_TIMEOUT_MS": "10"}),
    ("SHUTDOWN_GRACE_MS", {"SHUTDOWN_GRACE_MS": "3600001"}),
    ("WORKER_ZONE", {"WORKER_ZONE": "rack 7"}),
    ("WORKER_ZONE", {"WORKER_ZONE": "z" * 33}),
    ("WORKER_ZONE", {"WORKER_ZONE": "eu/west"}),
    ("WORKER_HTTP_THREADS", {"WORKER_HTTP_THREADS": "257"}),
    ("WORKER_HTTP_THREADS", {"WORKER_HTTP_THREADS": "-1"}),
], ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={val}" for k, val in v.items()))
def test_worker_bad_configuration_exits_2(cluster, variable, env):
    w = cluster.add_worker(master_url=f"http://127.0.0.1:{h.free_port()}", wait=False, **env)
    expect_config_error(w, variable)


def test_master_exits_when_its_port_is_taken(cluster):
    port = h.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        m = cluster.add_master(port=port, wait=False)
        rc = m.wait_exit()
        lines = m.stderr_lines()
    assert rc != 0, f"master exited 0 although port {port} was taken: {lines}"
    clear = [l for l in lines if str(port) in l and "in use" in l.lower() and "MASTER_PORT" in l]
    assert clear, f"no line names the port {port}, MASTER_PORT and 'in use': {lines}"


def test_worker_exits_when_its_port_is_taken(cluster):
    port = h.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        w = cluster.add_worker(master_url=f"http://127.0.0.1:{h.free_port()}", port=port,
                               wait=False)
        rc = w.wait_exit()
        lines = w.stderr_lines()
    assert rc != 0, f"worker exited 0 although port {port} was taken: {lines}"
    clear = [l for l in lines if str(port) in l and "in use" in l.lower() and "WORKER_PORT" in l]
    assert clear, f"no line names the port {port}, WORKER_PORT and 'in use': {lines}"


def test_master_exits_when_data_dir_cannot_be_created(cluster, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    m = cluster.add_master(wait=False, DATA_DIR=blocker / "data")
    rc = m.wait_exit()
    lines = m.stderr_lines()
    assert rc != 0, f"master exited 0 with DATA_DIR under a file: {lines}"
    assert any("DATA_DIR" in l for l in lines), f"no line names DATA_DIR: {lines}"


def test_worker_exits_when_data_dir_cannot_be_created(cluster, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    w = cluster.add_worker(master_url=f"http://127.0.0.1:{h.free_port()}", wait=False,
                           WORKER_DATA_DIR=blocker / "data")
    rc = w.wait_exit()
    lines = w.stderr_lines()
    assert rc != 0, f"worker exited 0 with WORKER_DATA_DIR under a file: {lines}"
    assert any("WORKER_DATA_DIR" in l for l in lines), f"no line names WORKER_DATA_DIR: {lines}"


def test_defaults_start_and_stop_cleanly(cluster):
    """The counterpart of the above: the test configuration is accepted, the
    master and a worker run, and both exit 0 on SIGTERM promptly."""
    m = cluster.add_master()
    w = cluster.add_worker()
    assert w.stop() < 5.0
    assert m.stop() < 5.0


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_stop_signals_exit_0(cluster, sig):
    m = cluster.add_master()
    w = cluster.add_worker()
    for proc in (w, m):
        proc.signal(getattr(signal, sig))
        assert proc.wait_exit(timeout=h.STOP_TIMEOUT_S) == 0, proc.log_tail()
