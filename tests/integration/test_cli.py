"""The echofs command-line client against a real master and workers:
put/get round trips (one request and upload sessions), ls/stat/rm, errors
as one line and a non-zero exit, the progress bar (only on a terminal),
and resuming interrupted uploads and downloads."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

import echofs_harness as h
from echofs_harness import wait_until

MIB = 1024 * 1024
SMALL_SERVER_CHUNK = 64 * 1024
COMMANDS = ("put", "get", "ls", "stat", "rm", "key", "workers", "health", "token")
CHUNK_POST_RE = re.compile(r"access POST /api/v1/files/upload/chunk 200 ")
FILE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# What a sanitized client may take (ASan's shadow memory and quarantine).
CLIENT_RSS_LIMIT = (400 if h.SANITIZE else 100) * MIB


# ---- helpers -------------------------------------------------------------------


def cli_env(master: Optional[h.Master], tmp_path: Path, token: Optional[str] = None,
            **extra) -> dict:
    """The environment of a client of master: its URL and alice's token, and
    a state directory inside the test's tmp dir."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "ECHOFS_URL": None, "ECHOFS_TOKEN": None}
    if master is not None:
        env["ECHOFS_URL"] = master.url
        env["ECHOFS_TOKEN"] = token if token is not None else master.cluster.token("alice")
        if master.cluster.tls:  # ECHOFS_TEST_TLS: the master is https, signed by this CA
            env["ECHOFS_CA_FILE"] = str(master.cluster.tls.ca)
    env.update(extra)
    return h.merge_env(h.base_environ(), env)


def echofs(env: dict, *args: str, cwd: Optional[Path] = None, timeout: float = 120,
           stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
    """Runs bin/echofs (stdout and stderr are pipes, not terminals); returns
    the finished process with bytes output."""
    proc = subprocess.run([str(h.BIN_DIR / "echofs"), *args], env=env, cwd=cwd,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)
    if h.SANITIZE:
        h.assert_no_sanitizer_reports(proc.stderr.decode(errors="replace"),
                                      f"echofs {' '.join(args)}")
    return proc


def ok(proc: subprocess.CompletedProcess) -> str:
    """Asserts success with nothing on stderr; returns stdout as text."""
    assert proc.returncode == 0, \
        f"{proc.args[1:]} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    assert proc.stderr == b"", f"stderr is not empty: {proc.stderr!r}"
    return proc.stdout.decode()


def fails(proc: subprocess.CompletedProcess, *mentions: str, status: int = 1) -> str:
    """Asserts the exit status, nothing on stdout and exactly one stderr line
    "echofs: ..." mentioning each of mentions; returns that line."""
    err = proc.stderr.decode(errors="replace")
    lines = err.splitlines()
    assert proc.returncode == status, \
        f"{proc.args[1:]}: exit {proc.returncode}, expected {status}: {err!r}"
    assert proc.stdout == b"", f"printed on failure: {proc.stdout!r}"
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("echofs: "), lines[0]
    for m in mentions:
        assert m in lines[0], f"{lines[0]!r} does not mention {m!r}"
    return lines[0]


def put(env: dict, path: Path, *flags: str) -> str:
    out = ok(echofs(env, "put", *flags, str(path)))
    lines = out.splitlines()
    assert len(lines) == 1 and FILE_ID_RE.match(lines[0]), f"put printed {out!r}"
    return lines[0]


def vm_hwm(pid: int) -> int:
    """The process's peak RSS so far (VmHWM) in bytes; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def echofs_measured(env: dict, *args: str, timeout: float = 300) -> tuple[int, str, str, int]:
    """Runs echofs and returns (exit status, stdout, stderr, peak RSS in
    bytes). The peak is the client's VmHWM, sampled every 10 ms until it
    exits (it only grows). Not wait4's ru_maxrss: Linux carries the parent's
    high-water mark across fork and exec, so that figure is at least this
    pytest process's own peak (boto3, imported by other test files, makes
    that over 100 MiB)."""
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen([str(h.BIN_DIR / "echofs"), *args], env=env, stdin=devnull,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    peak = 0
    while True:  # outputs are small: read them once the client is done
        peak = max(peak, vm_hwm(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        assert time.monotonic() < deadline, f"echofs {args} took over {timeout}s"
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if h.SANITIZE:
        h.assert_no_sanitizer_reports(err.decode(errors="replace"), f"echofs {args}")
    assert peak > 0, f"echofs {args} exited before its memory could be read"
    return proc.returncode, out.decode(), err.decode(errors="replace"), peak


def write_random(path: Path, size: int, block: int = MIB) -> str:
    """Writes size random bytes to path; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(block, left))
            f.write(data)
            digest.update(data)
            left -= len(data)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def state_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state" / "echofs").glob("*.json"))


def run_on_pty(env: dict, *args: str, columns: int = 120,
               timeout: float = 60) -> tuple[int, bytes, bytes, float]:
    """Runs echofs with stderr on a pseudo-terminal (stdout a pipe); returns
    (exit status, stdout, what the terminal showed, seconds taken)."""
    master_fd, slave_fd = pty.openpty()
    fcntl.ioctl(slave_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    began = time.monotonic()
    proc = subprocess.Popen([str(h.BIN_DIR / "echofs"), *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave_fd)
    os.close(slave_fd)
    shown = b""
    try:
        while True:
            try:
                data = os.read(master_fd, 65536)
            except OSError:  # EIO: the client closed the terminal
                break
            if not data:
                break
            shown += data
        out, _ = proc.communicate(timeout=timeout)
    finally:
        os.close(master_fd)
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - began
    if h.SANITIZE:
        h.assert_no_sanitizer_reports(shown.decode(errors="replace"), f"echofs {args}")
    return proc.returncode, out, shown, took


# ---- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def master(shared_cluster):
    """A master with a small CHUNK_SIZE, so small files have many chunks."""
    m = shared_cluster.add_master("cli-master", CHUNK_SIZE=SMALL_SERVER_CHUNK)
    ws = [shared_cluster.add_worker(f"cli-worker{i}", master=m, wait=False) for i in range(3)]
    for w in ws:
        w.wait_registered()
    m.wait_workers(alive=3, total=3)
    return m


@pytest.fixture
def env(master, tmp_path):
    return cli_env(master, tmp_path)


# ---- help and usage -----------------------------------------------------------------


def test_help_lists_every_command(tmp_path):
    out = ok(echofs(cli_env(None, tmp_path), "--help"))
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and
              len(line.split()) > 1 and not line.split()[0].startswith("-")]
    for cmd in COMMANDS:
        assert cmd in listed, f"echofs --help does not list {cmd}: {out}"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(tmp_path, cmd):
    out = ok(echofs(cli_env(None, tmp_path), cmd, "--help"))
    assert out.startswith(f"usage: echofs {cmd}"), out
    assert len(out.splitlines()) >= 3, f"{cmd} --help says too little: {out!r}"


@pytest.mark.parametrize("args,mentions", [
    (["frobnicate"], "unknown command"),
    (["put"], "no FILE"),
    (["put", "--bogus", "x"], "--bogus"),
    (["put", "--chunk-size", "0", "x"], "--chunk-size"),
    (["put", "--parallel", "1000", "x"], "--parallel"),
    (["put", "--name", "a", "x", "y"], "--name"),
    (["put", "-"], "--name"),
    (["put", "--chunk-size"], "needs a value"),
    (["get"], "no FILE_ID"),
    (["rm"], "no FILE_ID"),
    (["stat"], "no FILE_ID"),
    (["ls", "--limit", "0"], "--limit"),
    (["ls", "extra"], "extra"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, args, mentions):
    proc = echofs(cli_env(None, tmp_path), *args)
    assert proc.returncode == 2, proc
    lines = [l for l in proc.stderr.decode().splitlines() if l.strip()]
    assert lines and lines[0].startswith("echofs: ") and mentions in lines[0], lines
    if args[0] != "frobnicate":  # an unknown command also shows the command list
        assert len(lines) == 1, lines


# ---- put / get round trips -------------------------------------------------------------


def test_small_file_round_trip_is_quiet_without_a_terminal(env, master, tmp_path):
    src = tmp_path / "hello world.txt"
    src.write_bytes(b"hello, echofs\n" * 20000)
    file_id = put(env, src)  # ok(): stderr is empty in a pipe
    meta = master.user_client().get(f"/api/v1/files/{file_id}").json()
    assert meta["name"] == "hello world.txt" and meta["size"] == src.stat().st_size
    assert meta["chunk_count"] == -(-src.stat().st_size // SMALL_SERVER_CHUNK)

    out = tmp_path / "out.txt"
    assert ok(echofs(env, "get", file_id, "-o", str(out))) == ""
    assert out.read_bytes() == src.read_bytes()
    assert not Path(str(out) + ".part").exists()

    # Default destination: the stored name in the current directory.
    cwd = tmp_path / "here"
    cwd.mkdir()
    ok(echofs(env, "get", file_id, cwd=cwd))
    assert (cwd / "hello world.txt").read_bytes() == src.read_bytes()
    # -o DIR puts it in DIR under its name; -o - writes to stdout.
    d = tmp_path / "dir"
    d.mkdir()
    ok(echofs(env, "get", "-o", str(d), file_id))
    assert (d / "hello world.txt").read_bytes() == src.read_bytes()
    proc = echofs(env, "get", file_id, "-o", "-")
    assert proc.returncode == 0 and proc.stderr == b"" and proc.stdout == src.read_bytes()


def test_empty_file_round_trip(env, tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    file_id = put(env, src)
    out = tmp_path / "got"
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert out.exists() and out.read_bytes() == b""


def test_multi_chunk_file_in_one_request(env, master, tmp_path):
    src = tmp_path / "multi.bin"
    sha = write_random(src, 3 * MIB + 12345)
    mark = master.log_mark()
    file_id = put(env, src)
    log = master.stderr_since(mark)
    assert "access POST /api/v1/files/upload 201" in log, "not one request"
    assert "upload/init" not in log
    meta = json.loads(ok(echofs(env, "stat", "--json", file_id)))
    assert meta["sha256"] == sha and meta["chunk_count"] == 49
    assert len(meta["chunks"]) == 49
    out = tmp_path / "multi.out"
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha


def test_session_upload_with_client_chunk_size(env, master, tmp_path):
    src = tmp_path / "session.bin"
    size = 10 * 256 * 1024 - 1000  # 10 chunks, the last one short
    sha = write_random(src, size)
    mark = master.log_mark()
    file_id = put(env, src, "--threshold", "1M", "--chunk-size", "256K", "--parallel", "3")
    log = master.stderr_since(mark)
    assert "access POST /api/v1/files/upload/init 201" in log
    assert len(CHUNK_POST_RE.findall(log)) == 10
    assert "access POST /api/v1/files/upload/complete 201" in log
    meta = master.user_client().get(f"/api/v1/files/{file_id}").json()
    assert (meta["size"], meta["sha256"], meta["chunk_size"], meta["chunk_count"]) == \
        (size, sha, 256 * 1024, 10)
    assert state_files(tmp_path) == [], "the state file outlived the upload"
    out = tmp_path / "session.out"
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha


def test_put_several_files_prints_ids_in_order(env, master, tmp_path):
    names = ["a.txt", "b.txt", "c.txt"]
    for i, n in enumerate(names):
        (tmp_path / n).write_bytes(n.encode() * (i + 1) * 1000)
    out = ok(echofs(env, "put", *[str(tmp_path / n) for n in names]))
    ids = out.splitlines()
    assert len(ids) == 3 and all(FILE_ID_RE.match(i) for i in ids)
    client = master.user_client()
    assert [client.get(f"/api/v1/files/{i}").json()["name"] for i in ids] == names


def test_put_from_stdin_needs_a_name(env, tmp_path):
    data = os.urandom(200_000)
    proc = echofs(env, "put", "--name", "from-stdin.bin", "-", stdin=data)
    file_id = ok(proc).strip()
    out = tmp_path / "stdin.out"
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert out.read_bytes() == data


# ---- ls / stat / rm ----------------------------------------------------------------


def test_ls_stat_rm(master, tmp_path):
    # A user of its own, so the listing holds only this test's files.
    env = cli_env(master, tmp_path, token=master.cluster.token("lister"))
    ids = []
    for i in range(5):
        f = tmp_path / f"file{i}.bin"
        f.write_bytes(os.urandom(1000 * (i + 1)))
        ids.append(put(env, f))

    mark = master.log_mark()
    lines = ok(echofs(env, "ls", "--limit", "2")).splitlines()
    # The access line is written when the server finishes the request,
    # which may be just after the client has the answer: poll briefly.
    pages = lambda: len(re.findall(r"access GET /api/v1/files 200", master.stderr_since(mark)))
    h.wait_until(lambda: pages() >= 3, 5, what="three listing pages in the access log")
    assert pages() == 3, "ls did not follow the cursor page by page"
    assert lines[0].split()[:2] == ["FILE", "ID"], lines[0]
    rows = [l.split() for l in lines[1:]]
    assert [r[0] for r in rows] == ids
    for i, r in enumerate(rows):
        assert r[1] == str(1000 * (i + 1)) and r[3] == f"file{i}.bin"
        h.parse_iso8601(r[2])

    text = ok(echofs(env, "stat", ids[0]))
    fields = dict(l.split(None, 1) for l in text.splitlines()[:10])
    assert fields["file_id"] == ids[0] and fields["name"] == "file0.bin"
    assert fields["size"].startswith("1000 ")
    assert fields["sha256"] == hashlib.sha256((tmp_path / "file0.bin").read_bytes()).hexdigest()
    assert "INDEX" in text and "REPLICAS" in text
    meta = json.loads(ok(echofs(env, "stat", "--json", ids[1])))
    assert meta["file_id"] == ids[1] and len(meta["chunks"]) == 1
    assert len(meta["chunks"][0]["replicas"]) == 3

    assert ok(echofs(env, "rm", ids[0], ids[1])) == ""
    rows = [l.split()[0] for l in ok(echofs(env, "ls")).splitlines()[1:]]
    assert rows == ids[2:]
    fails(echofs(env, "rm", ids[0]), f"rm {ids[0]}", "404 file_not_found")


def test_ls_of_no_files_prints_the_header_only(master, tmp_path):
    env = cli_env(master, tmp_path, token=master.cluster.token("nobody-yet"))
    lines = ok(echofs(env, "ls")).splitlines()
    assert len(lines) == 1 and lines[0].split() == ["FILE", "ID", "SIZE", "CREATED", "NAME"]


def test_workers_and_health(env, master):
    rows = ok(echofs(env, "workers")).splitlines()[1:]
    assert len(rows) == 3 and all(r.split()[1] == "alive" for r in rows)
    health = json.loads(ok(echofs(env, "health")))
    assert health["status"] == "ok" and health["workers_alive"] == 3


# ---- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["ls"], ["put", "SMALL"], ["put", "--threshold", "0", "SMALL"],
                                  ["stat", "0" * 32], ["get", "0" * 32], ["rm", "0" * 32],
                                  ["workers"]],
                         ids=["ls", "put", "put-session", "stat", "get", "rm", "workers"])
def test_bad_token_is_one_line_and_non_zero(master, tmp_path, args):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 5000)
    args = [str(small) if a == "SMALL" else a for a in args]
    env = cli_env(master, tmp_path, token="not.a.token")
    fails(echofs(env, *args, cwd=tmp_path), "401 invalid_token")
    assert list(tmp_path.glob("*.part")) == []


def test_unknown_file_id(env, tmp_path):
    unknown = "0123456789abcdef0123456789abcdef"
    fails(echofs(env, "stat", unknown), f"stat {unknown}: 404 file_not_found")
    fails(echofs(env, "get", unknown, cwd=tmp_path), f"get {unknown}: 404 file_not_found")
    fails(echofs(env, "rm", unknown), f"rm {unknown}: 404 file_not_found")
    fails(echofs(env, "get", "../etc/passwd", cwd=tmp_path), "not a file id")
    assert [p.name for p in tmp_path.iterdir() if p.name != "state"] == []


def test_missing_token_and_unreachable_master(tmp_path):
    env = cli_env(None, tmp_path, ECHOFS_URL=f"http://127.0.0.1:{h.free_port()}")
    fails(echofs(env, "ls"), "ECHOFS_TOKEN")
    fails(echofs(env, "--token", "t", "ls"), "cannot reach http://127.0.0.1:")
    fails(echofs(env, "health"), "cannot reach")


def test_missing_local_file(env, tmp_path):
    fails(echofs(env, "put", str(tmp_path / "nope")), "No such file")
    fails(echofs(env, "put", str(tmp_path)), "is a directory")


def test_no_capacity_error_is_the_servers_message(cluster, tmp_path):
    m = cluster.add_master(REPLICATION_FACTOR=3)
    cluster.add_worker(master=m)  # one worker: cannot store 3 replicas
    env = cli_env(m, tmp_path)
    f = tmp_path / "big.iso"
    f.write_bytes(os.urandom(100_000))
    line = fails(echofs(env, "put", str(f)), "put ", "big.iso: 503 no_capacity: ")
    assert len(line.split("no_capacity: ", 1)[1]) > 5, "no message after the code"


# ---- progress bar ---------------------------------------------------------------------


def test_progress_bar_on_a_terminal(env, tmp_path):
    src = tmp_path / "bar.bin"
    write_random(src, 3 * MIB)
    rc, out, shown, took = run_on_pty(env, "put", "--limit-rate", "2M", str(src))
    text = shown.decode(errors="replace")
    assert rc == 0, text
    assert FILE_ID_RE.match(out.decode().strip()), "the id goes to stdout, not the terminal"
    draws = text.count("\r")
    assert draws >= 3, f"expected a redrawn bar: {text!r}"
    assert draws <= took * 10 + 3, f"{draws} redraws in {took:.1f}s: more than 10 a second"
    final = text.rstrip("\r\n").split("\r")[-1]
    assert "bar.bin" in final and "100%" in final and "3.0 MiB/3.0 MiB" in final, final
    assert "/s" in final
    assert text.endswith("\n") or text.endswith("\r\n"), "the bar line is not ended"
    assert any(" left" in part for part in text.split("\r")), "no time left shown"

    file_id = out.decode().strip()
    rc, _, shown, _ = run_on_pty(env, "get", file_id, "-o", str(tmp_path / "bar.out"))
    assert rc == 0 and "100%" in shown.decode(errors="replace")

    # -q: nothing on the terminal at all.
    rc, out, shown, _ = run_on_pty(env, "put", "-q", str(src))
    assert rc == 0 and shown == b"", shown
    rc, out, shown, _ = run_on_pty(env, "-q", "get", file_id, "-o", str(tmp_path / "q.out"))
    assert rc == 0 and shown == b"", shown


def test_error_on_a_terminal_starts_its_own_line(master, tmp_path):
    env = cli_env(master, tmp_path, token="bad")
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(50_000))
    rc, out, shown, _ = run_on_pty(env, "put", str(src))
    lines = [l for l in shown.decode(errors="replace").replace("\r\n", "\n").split("\n") if l]
    assert rc == 1 and out == b""
    assert lines[-1].split("\r")[-1].startswith("echofs: put "), lines


# ---- resuming --------------------------------------------------------------------------


def test_get_continues_a_part_file_with_a_range_request(env, master, tmp_path):
    src = tmp_path / "r.bin"
    sha = write_random(src, 2 * MIB + 777)
    file_id = put(env, src)
    data = src.read_bytes()
    out = tmp_path / "r.out"
    part = Path(str(out) + ".part")

    part.write_bytes(data[:1_000_000])  # an interrupted download
    mark = master.log_mark()
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha and not part.exists()
    log = master.stderr_since(mark)
    sent = int(re.search(rf"GET /api/v1/files/{file_id}/download 206 in=\d+ out=(\d+)",
                         log).group(1))
    # Kept: the whole 64 KiB chunks of the .part, checked against their ids.
    assert sent == len(data) - (1_000_000 // SMALL_SERVER_CHUNK) * SMALL_SERVER_CHUNK

    # A .part with a damaged chunk keeps only the good chunks before it.
    bad = bytearray(data[:1_500_000])
    bad[700_000] ^= 0xFF
    part.write_bytes(bytes(bad))
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha and not part.exists()

    # A .part longer than the file is not a prefix of it: started over.
    part.write_bytes(data + b"extra")
    mark = master.log_mark()
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha
    assert f"GET /api/v1/files/{file_id}/download 200" in master.stderr_since(mark)


def test_rerun_after_the_saved_session_is_gone_starts_over(env, master, tmp_path):
    src = tmp_path / "gone.bin"
    sha = write_random(src, 6 * MIB)
    flags = ("--threshold", "1M", "--chunk-size", "512K", "--parallel", "1")
    proc = subprocess.Popen([str(h.BIN_DIR / "echofs"), "put", *flags, "--limit-rate", "1M",
                             str(src)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        state = wait_until(lambda: state_files(tmp_path), 20, what="a state file")[0]
    finally:
        proc.kill()
        proc.communicate()
    session_id = json.loads(state.read_text())["session_id"]
    client = master.user_client()
    assert client.delete(f"/api/v1/files/upload/{session_id}").status_code == 204

    mark = master.log_mark()
    file_id = put(env, src, *flags)
    log = master.stderr_since(mark)
    assert "access POST /api/v1/files/upload/init 201" in log, "no new session"
    assert len(CHUNK_POST_RE.findall(log)) == 12
    assert client.get(f"/api/v1/files/{file_id}").json()["sha256"] == sha
    assert state_files(tmp_path) == []


@pytest.mark.slow(reason="uploads and downloads 200 MiB, each interrupted halfway")
def test_put_killed_halfway_resumes_and_get_returns_the_same_bytes(cluster, tmp_path):
    m = cluster.start(3)
    env = cli_env(m, tmp_path)
    client = m.user_client()
    src = tmp_path / "big.iso"
    size = 200 * MIB
    sha = write_random(src, size)
    chunks = size // (4 * MIB)

    # 1. Upload at a capped rate and SIGKILL the client about halfway.
    proc = subprocess.Popen([str(h.BIN_DIR / "echofs"), "put", "--chunk-size", "4M",
                             "--limit-rate", "40M", str(src)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        state = wait_until(lambda: state_files(tmp_path), 30, what="the state file")[0]
        session_id = json.loads(state.read_text())["session_id"]

        def halfway():
            assert proc.poll() is None, "the upload finished before it could be interrupted"
            r = client.get(f"/api/v1/files/upload/{session_id}")
            return len(r.json()["received"]) >= chunks // 2
        wait_until(halfway, 120, interval=0.02, what="half the chunks on the server")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(1)  # chunks whose bodies had fully arrived finish storing
    received = client.get(f"/api/v1/files/upload/{session_id}").json()["received"]
    missing = chunks - len(received)
    assert chunks // 4 <= missing <= chunks * 3 // 4, f"{missing} of {chunks} missing"

    # 2. Run again with --resume: only the missing chunks are sent.
    mark = m.log_mark()
    rc, out, err, peak = echofs_measured(env, "put", "--resume", "--chunk-size", "4M", str(src))
    assert rc == 0 and err == "", f"exit {rc}: {err}"
    file_id = out.strip()
    assert FILE_ID_RE.match(file_id), out
    log = m.stderr_since(mark)
    sent = len(CHUNK_POST_RE.findall(log))
    assert 1 <= sent <= missing, f"sent {sent} chunks, {missing} were missing"
    assert "upload/init" not in log, "a new session was started"
    assert f"GET /api/v1/files/upload/{session_id} 200" in log
    assert state_files(tmp_path) == [], "the state file outlived the upload"
    # Chunk by chunk: a few 4 MiB buffers, never the 200 MiB file.
    assert peak < CLIENT_RSS_LIMIT, f"the client peaked at {peak >> 20} MiB"
    meta = client.get(f"/api/v1/files/{file_id}").json()
    assert (meta["size"], meta["sha256"]) == (size, sha)

    # 3. Download, SIGKILL it partway, and continue with a Range request.
    out = tmp_path / "big.out"
    part = Path(str(out) + ".part")
    proc = subprocess.Popen([str(h.BIN_DIR / "echofs"), "get", file_id, "-o", str(out),
                             "--limit-rate", "40M"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def some_bytes():
            assert proc.poll() is None, "the download finished before it could be interrupted"
            return part.exists() and part.stat().st_size >= size // 3
        wait_until(some_bytes, 120, interval=0.02, what="a third of the download")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    had = part.stat().st_size
    assert 0 < had < size
    mark = m.log_mark()
    ok(echofs(env, "get", file_id, "-o", str(out)))
    log = m.stderr_since(mark)
    got = re.search(rf"GET /api/v1/files/{file_id}/download 206 in=\d+ out=(\d+)", log)
    assert got, f"no ranged download in the log:\n{log}"
    assert size - had <= int(got.group(1)) <= size - had + 4 * MIB, "resent too much"
    assert not part.exists()
    assert out.stat().st_size == size and sha256_of(out) == sha


def test_get_and_stat_follow_the_chunk_list_pages(env, master, tmp_path):
    # ECHOFS_CHUNK_PAGE=5: the client asks for the file's chunk list five
    # chunks at a time (the server pages it, 1000 by default), and a
    # resumed get still checks the .part against every chunk id.
    env = dict(env, ECHOFS_CHUNK_PAGE="5")
    src = tmp_path / "p.bin"
    sha = write_random(src, 2 * MIB + 777)
    file_id = put(env, src)
    data = src.read_bytes()
    count = -(-len(data) // SMALL_SERVER_CHUNK)
    pages = -(-count // 5)

    mark = master.log_mark()
    meta = json.loads(ok(echofs(env, "stat", "--json", file_id)))
    assert [c["index"] for c in meta["chunks"]] == list(range(count))
    assert "next_chunk" not in meta
    gets = lambda: len(re.findall(rf"access GET /api/v1/files/{file_id} 200",
                                  master.stderr_since(mark)))
    h.wait_until(lambda: gets() >= pages, 5, what="every page in the access log")
    assert gets() == pages, "stat did not follow the chunk list page by page"

    out = tmp_path / "p.out"
    part = Path(str(out) + ".part")
    part.write_bytes(data[:1_000_000])  # an interrupted download, 15 whole chunks
    mark = master.log_mark()
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha and not part.exists()
    sent = int(re.search(rf"GET /api/v1/files/{file_id}/download 206 in=\d+ out=(\d+)",
                         master.stderr_since(mark)).group(1))
    assert sent == len(data) - (1_000_000 // SMALL_SERVER_CHUNK) * SMALL_SERVER_CHUNK
    # a damaged chunk on a later page: only the chunks before it are kept
    bad = bytearray(data[:1_500_000])
    bad[1_400_000] ^= 0xFF
    part.write_bytes(bytes(bad))
    mark = master.log_mark()
    ok(echofs(env, "get", file_id, "-o", str(out)))
    assert sha256_of(out) == sha and not part.exists()
    sent = int(re.search(rf"GET /api/v1/files/{file_id}/download 206 in=\d+ out=(\d+)",
                         master.stderr_since(mark)).group(1))
    assert sent == len(data) - (1_400_000 // SMALL_SERVER_CHUNK) * SMALL_SERVER_CHUNK
# ---- a lost reply to complete ----------------------------------------------------


class ReplyLosingProxy:
    """A TCP proxy in front of a master that forwards every byte both ways,
    except the reply to the first POST /api/v1/files/upload/complete: the
    request reaches the master (which makes the file), and as its reply
    comes back the proxy closes the client's connection without passing
    it on ("drop"), or holds it until release() and then closes ("hold").
    Requests after that one pass through."""

    def __init__(self, target_port: int, hold: bool = False):
        self.target_port = target_port
        self.hold = hold
        self.lock = threading.Lock()
        self.armed = True
        self.lost = 0
        self.released = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.listener.close()

    @staticmethod
    def _close(*socks):
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            lose = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, lose), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, lose),
                             daemon=True).start()

    def _up(self, client, upstream, lose):
        tail = b""
        try:
            while data := client.recv(65536):
                with self.lock:
                    if self.armed and b"POST /api/v1/files/upload/complete" in tail + data:
                        self.armed = False
                        lose.set()
                tail = data[-64:]
                upstream.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def _down(self, upstream, client, lose):
        try:
            while data := upstream.recv(65536):
                if lose.is_set():  # the reply to complete (HTTP/1.1: no pipelining)
                    with self.lock:
                        self.lost += 1
                    if self.hold:
                        self.released.wait(120)
                    break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)


def files_named(client, name: str) -> list[dict]:
    return [f for f in client.get("/api/v1/files").json()["files"] if f["name"] == name]


@pytest.mark.skipif(h.TLS, reason="the reply-losing proxy reads plaintext HTTP; it cannot see "
                    "inside the HTTPS round's TLS (ECHOFS_TEST_TLS)")
def test_put_asks_again_when_the_reply_to_complete_is_lost(master, tmp_path):
    user = f"lost-reply-{os.getpid()}-{time.monotonic_ns()}"
    proxy = ReplyLosingProxy(master.port)
    try:
        env = cli_env(master, tmp_path, token=master.cluster.token(user), ECHOFS_URL=proxy.url)
        src = tmp_path / "lost-reply.bin"
        sha = write_random(src, 3 * MIB)
        flags = ("--threshold", "1M", "--chunk-size", "512K", "--parallel", "1")
        mark = master.log_mark()
        first = echofs(env, "put", *flags, str(src))
        if first.returncode != 0:  # as a user would: run it again to resume
            echofs(env, "put", *flags, str(src))
        assert proxy.lost == 1, "the proxy did not lose the reply to complete"
        files = files_named(master.user_client(user), src.name)
        assert len(files) == 1, f"{len(files)} files from one put: {files}"
        assert files[0]["sha256"] == sha
        assert first.returncode == 0, first.stderr.decode(errors="replace")
        assert first.stdout.decode().strip() == files[0]["file_id"]
        log = master.stderr_since(mark)
        assert log.count("access POST /api/v1/files/upload/complete 201") == 2, log
        assert state_files(tmp_path) == []
    finally:
        proxy.close()


@pytest.mark.skipif(h.TLS, reason="the reply-losing proxy reads plaintext HTTP; it cannot see "
                    "inside the HTTPS round's TLS (ECHOFS_TEST_TLS)")
def test_put_resumed_after_complete_was_sent_gets_the_same_file(master, tmp_path):
    user = f"sent-complete-{os.getpid()}-{time.monotonic_ns()}"
    proxy = ReplyLosingProxy(master.port, hold=True)
    try:
        env = cli_env(master, tmp_path, token=master.cluster.token(user), ECHOFS_URL=proxy.url)
        src = tmp_path / "sent-complete.bin"
        sha = write_random(src, 3 * MIB)
        flags = ("--threshold", "1M", "--chunk-size", "512K", "--parallel", "1")
        mark = master.log_mark()
        # 1. The client sends complete, the master makes the file, and the
        # client is killed before the reply reaches it.
        proc = subprocess.Popen([str(h.BIN_DIR / "echofs"), "put", *flags, str(src)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            wait_until(lambda: proxy.lost == 1, 60, what="the reply to complete to be held")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            proxy.release()
        assert "access POST /api/v1/files/upload/complete 201" in master.stderr_since(mark)
        assert len(state_files(tmp_path)) == 1

        # 2. Run again with --resume: the saved session answers its file.
        mark = master.log_mark()
        file_id = put(env, src, "--resume", *flags)
        log = master.stderr_since(mark)
        assert "upload/init" not in log, "a new session was started"
        assert not CHUNK_POST_RE.findall(log), "chunks were sent again"
        files = files_named(master.user_client(user), src.name)
        assert [f["file_id"] for f in files] == [file_id], files
        assert files[0]["sha256"] == sha
        assert state_files(tmp_path) == []
    finally:
        proxy.close()
