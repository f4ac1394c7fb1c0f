"""conftest.py - pytest wiring for the EchoFS black-box tests.

The harness itself (processes, clients, helpers) is in echofs_harness.py so
that test modules can import it; this file turns it into fixtures:

    cluster          a fresh, empty Cluster for one test (its own tmp dir);
                     closed after the test even when it fails: every process
                     must still be running unless the test stopped it, and
                     must exit 0 on SIGTERM with a clean sanitizer report.
    shared_cluster   one Cluster per test module, for tests that only read
                     (auth, HTTP edge cases); modules build on it.
    nemesis          network faults of one test (nemesis.Nemesis: proxies
                     between processes, iptables rules on its own ports),
                     all healed and removed after the test even when it
                     fails; rules a crashed earlier session left behind are
                     removed when the session starts.

When a test fails, the tail of every process's log is attached to its
report. `pytest -m "not slow"` skips the tests marked slow.

ECHOFS_TEST_BACKEND=postgres (with ECHOFS_TEST_PG_URL, and optionally
ECHOFS_TEST_REDIS_ADDR, from scripts/services.sh) runs every cluster's
masters on a fresh PostgreSQL database (and that Redis); tests listed in
SQLITE_ONLY below are skipped then.

Parallel runs (pytest-xdist, `-n N --dist loadfile`, as test/all.sh does):
every test of the files in SERIAL gets the marker `serial`. CI runs
`-m "not serial"` on N workers, then `-m serial` alone, so together the
two runs hold every test once. The serial files are the ones that measure
time or load (a second test's processes on the same cores would eat their
margins) or that stop a service the others share (test_scaleout stops
PostgreSQL). Each xdist worker gets a redis-server of its own in place of
ECHOFS_TEST_REDIS_ADDR (a cluster flushes the shared Redis when it starts
and closes, which would wipe the keys of a cluster on another worker);
PostgreSQL is shared safely (every cluster creates a database of its own).

ECHOFS_TEST_BACKEND=aws runs every cluster's masters in full AWS mode
(chunks in S3, metadata in DynamoDB) on local servers started once for the
session (or ECHOFS_TEST_AWS_ENV's), a fresh bucket and tables per cluster
(echofs_harness.py, "AWS"). No worker holds chunks then: tests marked
requires_workers(reason) are skipped, and so is a test that asks the
harness for a worker (NO_WORKERS); NOT_ON_AWS lists whole files that do not
apply. `make integration-aws` runs the core of the suite this way.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import echofs_harness as h
import nemesis as nm


# Tests that must not share the machine with other tests: they time
# things, load the CPU on purpose, or stop a service the others share.
# A file (every test in it) or one test, as pytest names them without the
# tests/integration/ prefix ("test_x.py" or "test_x.py::test_name") -> why.
SERIAL: dict[str, str] = {
    "test_abuse.py": "floods and slow attackers against deadlines",
    "test_cli.py::test_put_killed_halfway_resumes_and_get_returns_the_same_bytes":
        "kills 200 MiB rate-limited transfers halfway; counts what a 1 s settle stored",
    # One test of the file: the collector must not run before a copy is
    # written again 9 s into a 12 s grace (3 s of margin, and the test fails
    # saying the machine is too slow). The others run beside other files:
    # their deadlines are 5 s and more for events a second away (the churn
    # test's workers die only after 5 s of silence, for a loaded machine).
    "test_clock_skew.py::test_collector_keeps_a_copy_written_again_on_a_worker_behind":
        "a copy written again 9 s into a 12 s grace must beat the collector",
    # Four tests of the file; the other ten (scrub, a damaged replica read,
    # lost files, rejoin, master crash, full disk, old layout, the last
    # replica, unreadable chunks) poll for repair and reports with
    # deadlines of 5 s and more on events a second or two away, as the
    # parallel files' repair tests do.
    "test_faults.py::test_worker_crash_reads_fail_over_at_once_then_chunks_are_rereplicated":
        "every read must fail over before the master notices the crash (3 s)",
    "test_faults.py::test_uploads_survive_a_worker_crash":
        "not one upload may fail around a SIGKILL; counts uploads in flight at that moment",
    "test_faults.py::test_paused_worker_stalls_are_detected_and_uploads_succeed":
        "uploads timed against the 3 s stall detection",
    "test_faults.py::test_replica_written_before_a_slow_one_is_not_reported_as_an_orphan":
        "a report must land inside a 3 s stalled write",
    "test_random_faults.py": "random kills, pauses and partitions timed against heartbeat deadlines",
    "test_recovery.py": "repair and its gauges awaited against short deadlines",
    # One test of the file: the other plays the worker by hand and awaits
    # each step (test_a_rejoin_asks_for_one_report_not_one_per_beat).
    "test_reports.py::test_worker_stays_alive_through_a_long_report":
        "heartbeats timed while a report loads the worker",
    "test_rolling_restart.py": "counts failed requests while daemons restart, timed against heartbeats",
    "test_scaleout.py::test_postgres_outage_answers_503_and_recovers_without_restart":
        "stops the shared PostgreSQL",
    "test_scrape_storm.py": "a scrape storm measured against latency",
    "test_slow_clients.py": "slow clients against the server's timeouts",
    "test_slow_worker.py": "a worker throttled to 1 MiB/s must be the only one under "
        "SLOW_WORKER_MIN_RATE: a loaded machine could make a healthy one slow too",
}


# The PostgreSQL round and the sanitizer round of CI (test/all.sh) run the
# suite again for what changes with them: the metadata store's SQL, and
# memory errors in the daemons' C. Files (or single tests, "file::test")
# whose subject is neither are not repeated there (they ran in the first
# round): file -> why.
NOT_ON_POSTGRES: dict[str, str] = {
    "test_abuse.py": "HTTP limits and deadlines of the server; no store path of its own",
    "test_aws_local.py": "the local AWS servers' scripts; no EchoFS store",
    "test_dashboard.py": "the dashboard's rendering in Chromium; the API tests check its data",
    "test_docs.py": "reads the docs and sources only",
    "test_dynamodb_mode.py": "its masters keep their metadata in DynamoDB whatever the round",
    "test_install.py": "make install, the man pages and the units; no store",
    "test_monitoring.py": "the Prometheus rules and Grafana dashboard, checked by promtool",
    "test_nemesis.py": "the fault harness itself",
    "test_s3_client.py": "the S3 and DynamoDB client against the local servers; no master",
    "test_s3_clients.py": "aws, s3cmd and rclone; test_s3_api.py checks the same store calls here",
    "test_slow_worker.py": "placement's slowness marks live in the master's memory",
    "test_clock_skew.py": "the store compares times the master passes in, never the "
                          "database's clock; test_faults.py runs the collector here",
    "test_random_faults.py": "its rounds ran on SQLite; test_faults.py and "
                             "test_partitions.py run each fault on PostgreSQL",
    "test_scrape_storm.py": "the metrics endpoint under load; the store is cached out of it",
    "test_slow_clients.py": "the server's connection timeouts; no store path of its own",
    "test_rolling_restart.py": "a minute of restarts under load; on PostgreSQL test/docker.sh "
                               "runs the same rolling restart against its compose cluster, and "
                               "test_faults.py crashes and restarts daemons here",
    # One test of a file (as SERIAL names them).
    "test_cli.py::test_put_killed_halfway_resumes_and_get_returns_the_same_bytes":
        "the client's resume of a killed 200 MiB transfer (its state file, ranges, memory); "
        "the session calls it makes run on PostgreSQL in test_sessions.py and test_cli.py's "
        "other resume tests",
}
NOT_UNDER_SANITIZERS: dict[str, str] = {
    "test_aws_local.py": "the local AWS servers' scripts; no EchoFS binary",
    "test_dashboard.py": "the dashboard's rendering in Chromium (JavaScript, not the daemons' C)",
    "test_docs.py": "reads the docs and sources only",
    "test_install.py": "make install, the man pages and the units",
    "test_monitoring.py": "the Prometheus rules and Grafana dashboard, checked by promtool",
    "test_nemesis.py": "the fault harness itself",
    "test_s3_clients.py": "aws, s3cmd and rclone (CPU in the clients); test_s3_api.py drives "
                          "the same C paths here",
    # Serial tests about timing and load: under sanitizers they only run
    # longer; the fault paths they take run here in test_faults.py,
    # test_partitions.py, test_recovery.py and test_reports.py.
    "test_clock_skew.py": "clock-dependent windows; its C paths run in test_faults.py",
    "test_random_faults.py": "random fault rounds; each fault's path runs in test_faults.py "
                             "and test_partitions.py",
    "test_rolling_restart.py": "counts failed requests during restarts; test_faults.py restarts "
                               "daemons here",
    "test_scrape_storm.py": "latency under a scrape storm; the metrics code runs in "
                            "test_observability.py",
    "test_slow_clients.py": "connection timeouts against the clock; test_abuse.py runs the same "
                            "server paths here",
    "test_slow_worker.py": "transfer rates against the clock; test_partitions.py runs the "
                           "abandon path here",
}


def pytest_configure(config):
    if DURATIONS_FILE != "off":
        config.pluginmanager.register(_Durations(config), "echofs-durations")
    config.addinivalue_line(
        "markers", "slow(reason): takes several seconds (the reason says why); "
        "deselect with -m 'not slow'")
    config.addinivalue_line(
        "markers", "requires_workers(reason): checks what workers do (replicas, their "
        "disks, their faults); skipped in full AWS mode (ECHOFS_TEST_BACKEND=aws)")
    config.addinivalue_line(
        "markers", "serial: run alone, not beside other tests (conftest.SERIAL; "
        "test/all.sh runs -m 'not serial' in parallel, then -m serial)")
    stale = [key for key in [*SERIAL, *NOT_ON_POSTGRES, *NOT_UNDER_SANITIZERS]
             if not _names_a_test(key)]
    if stale:
        # It would let the test it meant run in parallel, unnoticed.
        raise pytest.UsageError(f"conftest.py SERIAL, NOT_ON_POSTGRES or NOT_UNDER_SANITIZERS names no test: {', '.join(stale)}")
    if hasattr(config, "workerinput") and h.REDIS_ADDR:
        _start_worker_redis(config)


def _names_a_test(key: str) -> bool:
    """Whether a SERIAL key names an existing test file, or a test function
    defined in one."""
    path = Path(__file__).parent / key.split("::", 1)[0]
    if not path.is_file():
        return False
    if "::" not in key:
        return True
    name = re.escape(key.split("::", 1)[1])
    return re.search(rf"^def {name}\(", path.read_text(), re.M) is not None


def pytest_unconfigure(config):
    proc = getattr(config, "_efs_worker_redis", None)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_worker_redis(config) -> None:
    """A redis-server of this xdist worker's own, in place of the shared
    one (see the module docstring); stopped by pytest_unconfigure, and
    killed with the worker if the worker dies (PR_SET_PDEATHSIG)."""
    port = h.free_port()
    proc = subprocess.Popen([h.REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--daemonize", "no",
                             "--logfile", ""], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=h._die_with_parent)
    config._efs_worker_redis = proc
    addr = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not h.redis_ping(addr):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise pytest.UsageError(f"xdist worker: redis-server on {addr} did not start")
        time.sleep(0.05)
    h.REDIS_ADDR = addr
    os.environ["ECHOFS_TEST_REDIS_ADDR"] = addr


def pytest_collection_modifyitems(config, items):
    for item in items:
        node = item.nodeid.split("tests/integration/", 1)[-1]
        if node.split("::", 1)[0] in SERIAL or node.split("[", 1)[0] in SERIAL:
            item.add_marker(pytest.mark.serial)
        for mark in item.iter_markers("slow"):
            if not (mark.kwargs.get("reason") or mark.args):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.slow needs a reason")
        module = node.split("::", 1)[0]
        if h.BACKEND == "postgres":
            reason = SQLITE_ONLY.get(node) or SQLITE_ONLY.get(node.split("[", 1)[0])
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))
            elif (why := NOT_ON_POSTGRES.get(module) or
                  NOT_ON_POSTGRES.get(node.split("[", 1)[0])):
                item.add_marker(pytest.mark.skip(reason=f"not repeated on PostgreSQL: {why}"))
        if h.SANITIZE and (why := NOT_UNDER_SANITIZERS.get(module) or
                           NOT_UNDER_SANITIZERS.get(node.split("[", 1)[0])):
            item.add_marker(pytest.mark.skip(reason=f"not repeated under sanitizers: {why}"))
        for mark in item.iter_markers("requires_workers"):
            reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: requires_workers needs a reason")
            if h.BACKEND == "aws":
                item.add_marker(pytest.mark.skip(reason=f"{h.NO_WORKERS}: {reason}"))
        if h.BACKEND == "aws":
            module = item.nodeid.split("tests/integration/", 1)[-1].split("::", 1)[0]
            if module in NOT_ON_AWS:
                item.add_marker(pytest.mark.skip(reason=f"not in full AWS mode: "
                                                 f"{NOT_ON_AWS[module]}"))
            node = item.nodeid.split("tests/integration/", 1)[-1]
            bug = KNOWN_AWS_BUGS.get(node) or KNOWN_AWS_BUGS.get(node.split("[", 1)[0])
            if bug:
                item.add_marker(pytest.mark.xfail(reason=f"known bug in AWS mode: {bug}",
                                                  strict=False))


# ---- longest files first on xdist workers ----------------------------------
#
# `--dist loadfile` hands out whole files in collection order, so a long
# file collected late (test_scaleout.py, test_sessions.py) ran alone at the
# end while the other workers idled. Each session records how long each
# test took (setup + call + teardown; skipped tests keep their last figure)
# in DURATIONS_FILE, per round (backend, TLS, sanitizers; a round without
# figures of its own uses the SQLite round's); an xdist run then collects
# its files longest first (files with no figure first of all: a new file
# may be long), each file's tests in their usual order. Only the order
# changes: every selected test still runs once. The controller reads the
# file once and passes the figures to every worker, so that all workers
# collect the same order even if another session rewrites the file.
# ECHOFS_TEST_DURATIONS=off: collection order, nothing recorded.
DURATIONS_FILE = os.environ.get("ECHOFS_TEST_DURATIONS") or \
    str(h.REPO / "build" / "integration-durations.json")
DURATIONS_CAP = 8 << 20  # bytes read of DURATIONS_FILE; a bigger one is ignored


def _round_key() -> str:
    return f"{h.BACKEND}{'+tls' if h.TLS else ''}{'+san' if h.SANITIZE else ''}"


def _read_durations() -> dict:
    """{round: {nodeid: seconds}} from DURATIONS_FILE; {} when it is
    missing, too big or not what we wrote."""
    if DURATIONS_FILE == "off":
        return {}
    try:
        with open(DURATIONS_FILE, encoding="utf-8") as f:
            text = f.read(DURATIONS_CAP + 1)
        data = json.loads(text) if len(text) <= DURATIONS_CAP else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: {n: float(t) for n, t in v.items() if isinstance(t, (int, float))}
            for k, v in data.items() if isinstance(v, dict)}


def _round_durations(data: dict) -> dict:
    return {**data.get("sqlite", {}), **data.get(_round_key(), {})}


class _Durations:
    """The plugin behind the above: registered by pytest_configure."""

    def __init__(self, config):
        self.worker = hasattr(config, "workerinput")
        # Worker: the controller's figures (none without xdist: no reorder).
        self.order = config.workerinput.get("efs_durations") if self.worker else None
        self.figures = {} if self.worker else _round_durations(_read_durations())
        self.ran: dict[str, float] = {}
        self.skipped: set[str] = set()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        """xdist controller: the figures every worker orders its tests by."""
        node.workerinput["efs_durations"] = self.figures

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        """After -m deselected what does not run: longest files first."""
        if not self.order:
            return
        weight: dict[str, float] = {}
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            path = item.nodeid.split("::", 1)[0]
            first.setdefault(path, i)
            # A test this round skips (NOT_ON_POSTGRES...) takes no time.
            t = 0.0 if item.get_closest_marker("skip") else self.order.get(item.nodeid)
            weight[path] = float("inf") if t is None else weight.get(path, 0.0) + t
        items.sort(key=lambda it: (-weight[it.nodeid.split("::", 1)[0]],
                                   first[it.nodeid.split("::", 1)[0]]))

    def pytest_runtest_logreport(self, report):
        if self.worker:
            return
        if report.skipped:
            self.skipped.add(report.nodeid)
        self.ran[report.nodeid] = self.ran.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session):
        if not self.worker:
            _write_durations({n: t for n, t in self.ran.items() if n not in self.skipped})


def _write_durations(ran: dict) -> None:
    if not ran or DURATIONS_FILE == "off":
        return
    data = _read_durations()
    data.setdefault(_round_key(), {}).update({n: round(t, 2) for n, t in ran.items()})
    # The figures of files deleted or renamed since go.
    data = {k: {n: t for n, t in v.items() if (h.REPO / n.split("::", 1)[0]).is_file()}
            for k, v in data.items()}
    tmp = f"{DURATIONS_FILE}.{os.getpid()}.tmp"
    try:
        Path(DURATIONS_FILE).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        os.replace(tmp, DURATIONS_FILE)
    except OSError as e:  # an optimisation only: say so, never fail the run
        print(f"warning: could not record test durations in {DURATIONS_FILE}: {e}")


def pytest_report_header(config):
    line = f"echofs binaries: {h.BIN_DIR}"
    if h.SANITIZE:
        line += f" (sanitizers: {h.SANITIZE})"
    backend = f"echofs metadata backend: {h.BACKEND}"
    if h.BACKEND == "postgres":
        backend += f" ({h.PG_URL}" + (f", redis {h.REDIS_ADDR}" if h.REDIS_ADDR else "") + ")"
    if h.BACKEND == "aws":
        backend += (f" (local servers of {h.AWS_ENV_FILE})" if h.AWS_ENV_FILE
                    else " (local servers started for the session)")
    if h.TLS:
        backend += " over HTTPS (ECHOFS_TEST_TLS)"
    return [line, f"echofs timing margin: {h.TIMING_MARGIN_S}s", backend]


def pytest_sessionstart(session):
    missing = [b for b in ("echofs-master", "echofs-worker", "echofs")
               if not (h.BIN_DIR / b).exists()]
    if missing:
        raise pytest.UsageError(f"missing binaries in {h.BIN_DIR}: {', '.join(missing)}; "
                                "run make (or set ECHOFS_BIN_DIR)")
    if h.BACKEND not in h.BACKENDS:
        raise pytest.UsageError(f"ECHOFS_TEST_BACKEND={h.BACKEND!r}: use one of {h.BACKENDS}")
    if h.BACKEND == "postgres" and not h.PG_URL:
        raise pytest.UsageError("ECHOFS_TEST_BACKEND=postgres needs ECHOFS_TEST_PG_URL: "
                                "scripts/services.sh start DIR && . DIR/env")
    if h.BACKEND == "aws":
        why = h.aws_local_missing()
        if why:
            raise pytest.UsageError(f"ECHOFS_TEST_BACKEND=aws: {why}")
    nm.remove_leftover_rules()


# Whole files that do not apply when ECHOFS_TEST_BACKEND=aws: file -> why.
NOT_ON_AWS: dict[str, str] = {
    "test_s3_mode.py": "it chooses its own chunk store and SQL metadata per test",
    "test_dynamodb_mode.py": "it starts its own AWS servers and tables per test",
    "test_aws_local.py": "it checks the local servers themselves, no EchoFS process",
}


# Tests that find a bug of the AWS backends not fixed yet, expected to fail
# (not strictly: a race may not show) when ECHOFS_TEST_BACKEND=aws: node id
# -> the bug. Remove the line with the fix.
KNOWN_AWS_BUGS: dict[str, str] = {}


# Tests that only make sense on the embedded SQLite store, skipped when
# ECHOFS_TEST_BACKEND=postgres: node id (as pytest prints it, without the
# tests/integration/ prefix) -> why.
SQLITE_ONLY: dict[str, str] = {}


def pytest_sessionfinish(session, exitstatus):
    # Fixtures stop everything they start; this catches what a crash of the
    # harness itself could leave behind.
    h.kill_leftovers()
    h.remove_session_tls()
    h.remove_session_aws()
    nm.remove_leftover_rules()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for cluster in h.open_clusters():
            for title, text in cluster.log_report():
                report.sections.append((title, text))


@pytest.fixture
def cluster(request, tmp_path):
    c = h.Cluster(tmp_path, label=request.node.nodeid)
    yield c
    c.close()
    if os.environ.get("ECHOFS_KEEP_LOGS"):
        print(f"\nlogs of {request.node.nodeid}: {tmp_path}")


@pytest.fixture(scope="module")
def shared_cluster(request, tmp_path_factory):
    c = h.Cluster(tmp_path_factory.mktemp(request.module.__name__.replace(".", "_")),
                  label=request.module.__name__)
    yield c
    c.close()


@pytest.fixture
def nemesis():
    n = nm.Nemesis()
    try:
        yield n
    finally:
        n.close()
