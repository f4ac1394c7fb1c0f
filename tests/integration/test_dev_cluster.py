# SPDX-License-Identifier: MIT
"""./run_master.sh (scripts/dev-cluster.sh), the seed's development entry
point, as a user runs it: it comes up with three workers, and the commands
it prints work as shown: the EchoFS CLI lines and, with the S3 API on
(issue 13's "the printed aws CLI commands work as shown"), the aws CLI lines
with the access key it created.

The script runs from the repository (it builds with `make -s all`, a no-op
after the test command's build) on free ports with DATA in a temporary
directory; the printed commands run in bash from a directory holding a copy
of README.md, as from a checkout. Ctrl-C (SIGINT) must stop everything.
"""

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import echofs_harness as h

AWS_CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else shutil.which("aws")


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def worker_base_port(count: int) -> int:
    """A free port followed by count - 1 free ones (the script's workers take
    WORKER_BASE_PORT.. in a row)."""
    for _ in range(100):
        base = h.free_port()
        if base + count < 65536 and all(bindable(base + i) for i in range(1, count)):
            return base
    pytest.fail("no run of free ports for the workers")


def interrupt_default():
    """In the script's process, before exec: SIGINT and SIGQUIT back to their
    defaults. A test run started in the background of a non-interactive
    shell inherits them ignored, and bash cannot trap a signal ignored on
    entry, so the Ctrl-C this test sends would do nothing (CI saw the
    script outlive the 60 s wait)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """The script's stdout up to and including the line holding marker. A
    thread reads the lines (and keeps reading them after, so the script
    never blocks on a full pipe): a script that prints nothing more cannot
    hold the test past timeout in a blocking readline."""
    lines: queue.Queue = getattr(proc, "lines_read", None)
    if lines is None:
        lines = proc.lines_read = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
    out = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            lines.put(None)  # the end, for a later call too
            break
        out.append(line)
        if marker in line:
            return "".join(out)
    raise AssertionError(f"no {marker!r} from the script within {timeout:.0f}s; it printed:\n"
                         + "".join(out))


def read_rest(proc: subprocess.Popen, timeout: float) -> str:
    """What the script printed after read_until's marker, to its end."""
    out = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = proc.lines_read.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            return "".join(out)
        out.append(line)
    raise AssertionError(f"the script's output did not end within {timeout:.0f}s:\n"
                         + "".join(out))


@pytest.mark.skipif(not AWS_CLI, reason="the aws CLI (Debian's awscli) is not installed")
def test_run_master_comes_up_and_its_printed_commands_work(tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    work.mkdir()
    shutil.copy(h.REPO / "README.md", work / "README.md")
    ports = {"MASTER_PORT": h.free_port(), "S3_PORT": h.free_port(),
             "GRPC_PORT": h.free_port(), "WORKER_BASE_PORT": worker_base_port(3)}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ECHOFS_", "S3_", "DATABASE_", "REDIS_"))}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"DATA": str(data), "WORKER_COUNT": "3", "HOME": str(tmp_path)})
    proc = subprocess.Popen([str(h.REPO / "run_master.sh")], cwd=h.REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=interrupt_default)
    try:
        printed = read_until(proc, "Ctrl-C stops the cluster.", 120)
        assert f"EchoFS is running: master http://127.0.0.1:{ports['MASTER_PORT']} with 3 workers" \
            in printed, printed

        # The lines a user copies: the exports, then each command as shown.
        exports = [l.strip() for l in printed.splitlines() if l.strip().startswith("export ")]
        names = [re.match(r"export (\w+)=", e).group(1) for e in exports]
        for name in ("ECHOFS_URL", "ECHOFS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_DEFAULT_REGION"):
            assert name in names, f"{name} is not among the printed exports:\n{printed}"
        aws = [l.strip() for l in printed.splitlines() if l.strip().startswith("aws ")]
        assert len(aws) == 6, printed
        cli = [l.split("#")[0].strip() for l in printed.splitlines()
               if l.strip().startswith(("./bin/echofs put", "./bin/echofs ls",
                                        "./bin/echofs workers"))]
        assert len(cli) == 3, printed

        def run(command: str) -> str:
            script = "\n".join(exports + [command.replace("./bin/echofs", str(h.BIN_DIR / "echofs"))
                                          if "./bin/echofs" in command else command])
            done = subprocess.run(["bash", "-ec", script], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, \
                f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            return done.stdout

        file_id = run(cli[0]).strip().splitlines()[-1]
        assert re.fullmatch(r"[0-9a-f]{32}", file_id), file_id
        assert "README.md" in run(cli[1])
        assert run(cli[2]).count("alive") >= 3

        mb, put, ls, get, rm, rb = aws
        run(mb)
        assert "upload:" in run(put)
        listed = run(ls)
        assert "README.md" in listed and str((work / "README.md").stat().st_size) in listed, listed
        run(get)
        assert (work / "copy.md").read_bytes() == (work / "README.md").read_bytes()
        run(rm)
        assert "README.md" not in run(ls)
        run(rb)

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        rest = read_rest(proc, 10)
        assert proc.returncode == 0, rest
        assert "dev-cluster: stopped." in rest, rest
        for port in (ports["MASTER_PORT"], ports["S3_PORT"], ports["WORKER_BASE_PORT"]):
            assert bindable(port), f"port {port} is still taken after the script stopped"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
