"""nemesis.py - network and clock faults for the black-box tests (issue 19).

Jepsen calls the thing that breaks a cluster on purpose a nemesis. Every
fault here is scoped to processes and ports the test itself started, on
127.0.0.1 only, and undoes itself: the helpers are context managers or are
closed by the `nemesis` fixture's finalizer, even when the test fails.

    LinkProxy   a userspace TCP proxy the test owns, put between two
                processes (Nemesis.worker_links: the master reaches a
                worker through one, WORKER_ADVERTISE_URL; the worker
                reaches the master through another, MASTER_URL; with
                gRPC workers a third carries its stream, MASTER_GRPC_URL,
                cut with the other two: see add_linked_worker). Per
                direction it can
                  cut(dirs)      hold every byte, on open connections and
                                 on new ones (a partition: packets dropped,
                                 nothing closed, the sender times out;
                                 after heal() the held bytes flow again,
                                 as TCP's retransmissions would deliver
                                 them);
                  cut(reset=True) close every connection and refuse new
                                 ones (a peer that answers with RST);
                  release_new()  after cut(): new connections pass
                                 again, those open now stay held (the
                                 cut becomes a freeze of them: a request
                                 sent during the cut arrives only at
                                 heal(), late);
                  freeze(dirs, busy_only)  hold the bytes of the
                                 connections open now (busy_only: those in
                                 the middle of a request), new ones pass (a
                                 half-open link);
                  throttle(rate, delay)  at most rate bytes/s, each piece
                                 delayed by delay seconds;
                  heal()         all of it undone.
                "up" is client -> server (what the connecting side sends),
                "down" is server -> client.
    clock_skew_env(seconds)
                the environment that runs a daemon with its wall clock
                off by seconds (libfaketime through LD_PRELOAD, FAKETIME
                "+20s"; the monotonic clock is left alone; with the
                sanitizers ASan's link order check is turned off, since
                libfaketime is preloaded before it).
    PortBlock   iptables DROP rules on the loopback for one TCP port (both
                directions of every connection to that port), tagged with
                a comment "efs-nemesis:<pid>:<port>"; removed by close().
                iptables_unavailable() says why it cannot run here (not
                root, no iptables, the kernel refuses); tests skip then.
                remove_leftover_rules() deletes the rules of earlier test
                sessions whose pid is gone (conftest runs it at start).

Why a proxy is the primary tool: it needs no root and no netfilter, so it
works in every container; it touches only the connections of the processes
it sits between (iptables on a shared machine would see other sessions'
traffic unless scoped by port, and an owner match needs a dedicated uid per
process); it can cut one direction of connection set-up (the master cannot
reach the worker while the worker still reaches the master), freeze open
connections while new ones pass, and throttle, which a DROP rule cannot.
What it cannot do is drop a SYN: a connection to a cut proxy is accepted
and then hangs, which the caller sees as the same timeout. PortBlock is
the kernel-level check of that difference.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

import echofs_harness as h

UP, DOWN = "up", "down"
BOTH = (UP, DOWN)
# Bytes read from a socket at once; also what one throttled send can carry.
PIECE = 16384
# Most bytes a proxy buffers per direction of a connection before it stops
# reading from the sender (so a slow receiver slows the sender, as TCP does).
BUFFER_CAP = 1 << 20


def _dirs(dirs: Iterable[str] | str) -> set[str]:
    out = {dirs} if isinstance(dirs, str) else set(dirs)
    assert out and out <= set(BOTH), f"directions: {out!r}, use {BOTH}"
    return out


class _Pipe:
    """One direction of one proxied connection: bytes read from src wait in
    pending (with the time each piece may leave) until written to dst."""

    def __init__(self, src: socket.socket, dst: socket.socket, direction: str):
        self.src, self.dst, self.direction = src, dst, direction
        self.pending: list[tuple[float, bytes]] = []
        self.buffered = 0
        self.eof = False       # src closed its side
        self.shut = False      # dst told (shutdown SHUT_WR)
        self.held = False      # frozen or cut: nothing read, nothing written


class _Conn:
    def __init__(self, client: socket.socket, server: socket.socket):
        self.client, self.server = client, server
        self.pipes = {UP: _Pipe(client, server, UP), DOWN: _Pipe(server, client, DOWN)}
        self.closed = False
        self.moved_at = {UP: 0.0, DOWN: 0.0}  # when bytes last went each way

    @property
    def busy(self) -> bool:
        """A request under way: bytes went up after the last ones down."""
        return self.moved_at[UP] > self.moved_at[DOWN]


class LinkProxy:
    """A TCP proxy on 127.0.0.1:port to target_port (see the module doc).
    Runs one thread; close() ends it and every connection."""

    def __init__(self, target_port: int, name: str = "link", port: Optional[int] = None,
                 target_host: str = "127.0.0.1"):
        self.name = name
        self.target = (target_host, target_port)
        self.port = port or h.free_port()
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._cut: set[str] = set()
        self._reset = False
        self._rate: dict[str, Optional[float]] = {UP: None, DOWN: None}
        self._delay: dict[str, float] = {UP: 0.0, DOWN: 0.0}
        self._next_send: dict[int, float] = {}  # per pipe id: token bucket time
        # Proxies whose cut follows this one's: (proxy, {my direction: its
        # direction}, whether a reset cut resets it too). See link().
        self._linked: list[tuple["LinkProxy", dict[str, str], bool]] = []
        self.accepted = 0
        self.forwarded = {UP: 0, DOWN: 0}
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(256)
        self._listener.setblocking(False)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"nemesis-{name}", daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def link(self, other: "LinkProxy", dirs: dict[str, str], reset: bool = True) -> None:
        """Makes cut() and release_new() of this proxy apply to other too,
        direction d of this one becoming dirs[d] of other (a direction not
        in dirs is not cut there); reset=False: a cut(reset=True) of this
        one only holds other's bytes. (heal() reaches other through the
        Nemesis, which heals every proxy.) A worker's gRPC stream to the
        master is one such: its path is cut with the HTTP ones."""
        self._linked.append((other, dict(dirs), reset))

    # -- faults
    def cut(self, dirs: Iterable[str] | str = BOTH, reset: bool = False) -> None:
        """Holds every byte in dirs, on open and new connections; reset:
        closes every connection and refuses new ones instead."""
        for other, dmap, resets in self._linked:
            theirs = {dmap[d] for d in (BOTH if reset else _dirs(dirs)) if d in dmap}
            if reset and resets:
                other.cut(reset=True)
            elif theirs:
                other.cut(theirs)
        with self._lock:
            if reset:
                self._reset = True
                for c in self._conns:
                    self._close_conn(c, abort=True)
            else:
                self._cut |= _dirs(dirs)
                for c in self._conns:
                    for d in self._cut:
                        c.pipes[d].held = True
        self._wake()

    def release_new(self) -> None:
        """Ends a cut() for new connections only: the connections open now
        stay held until heal()."""
        for other, _, _ in self._linked:
            other.release_new()
        with self._lock:
            self._cut.clear()
        self._wake()

    def freeze(self, dirs: Iterable[str] | str = BOTH, busy_only: bool = False) -> int:
        """Holds the bytes of the connections open now (new ones pass);
        busy_only: only those in the middle of a request (bytes went up
        since the last ones came down). Returns how many were frozen."""
        with self._lock:
            live = [c for c in self._conns if not c.closed and (c.busy or not busy_only)]
            for c in live:
                for d in _dirs(dirs):
                    c.pipes[d].held = True
        self._wake()
        return len(live)

    def throttle(self, rate_bytes_per_s: Optional[float] = None, delay_s: float = 0.0,
                 dirs: Iterable[str] | str = BOTH) -> None:
        """At most rate bytes a second (None: no limit) in dirs, every piece
        delayed by delay_s."""
        with self._lock:
            for d in _dirs(dirs):
                self._rate[d] = rate_bytes_per_s
                self._delay[d] = delay_s
        self._wake()

    def heal(self) -> None:
        """Undoes every fault: held bytes flow, no limit, new connections
        accepted."""
        with self._lock:
            self._cut.clear()
            self._reset = False
            self._rate = {UP: None, DOWN: None}
            self._delay = {UP: 0.0, DOWN: 0.0}
            for c in self._conns:
                for p in c.pipes.values():
                    p.held = False
        self._wake()

    @property
    def connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns if not c.closed)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        self._thread.join(5)
        with self._lock:
            for c in self._conns:
                self._close_conn(c, abort=True)
            self._conns.clear()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "LinkProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the loop
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _close_conn(self, c: _Conn, abort: bool = False) -> None:
        if c.closed:
            return
        c.closed = True
        for s in (c.client, c.server):
            try:
                if abort:  # RST, not FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with self._lock:
                if self._reset:
                    self._close_conn(_Conn(client, client), abort=True)
                    continue
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                server.settimeout(2.0)
                server.connect(self.target)
            except OSError:
                server.close()
                self._close_conn(_Conn(client, client), abort=True)  # target down: refuse
                continue
            for s in (client, server):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(client, server)
            with self._lock:
                for d in self._cut:
                    c.pipes[d].held = True
                self._conns.append(c)
                self.accepted += 1

    def _pump(self, c: _Conn, p: _Pipe, now: float, readable: set, writable: set) -> float:
        """Moves what it may of one pipe; returns when it wants to run again
        (0: no timer)."""
        wake_at = 0.0
        if p.held or c.closed:
            return wake_at
        rate, delay = self._rate[p.direction], self._delay[p.direction]
        if p.src in readable and not p.eof and p.buffered < BUFFER_CAP:
            try:
                data = p.src.recv(PIECE)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                p.eof = True
            elif data:
                p.pending.append((now + delay, data))
                p.buffered += len(data)
        while p.pending and p.dst in writable:
            due, data = p.pending[0]
            if due > now:
                wake_at = due
                break
            if rate:
                key = id(p)
                t = self._next_send.get(key, now)
                if t > now:
                    wake_at = t
                    break
                data = data[:max(1, int(rate * 0.05))]
            try:
                n = p.dst.send(data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close_conn(c)
                return 0.0
            self.forwarded[p.direction] += n
            c.moved_at[p.direction] = now
            p.buffered -= n
            if n == len(p.pending[0][1]):
                p.pending.pop(0)
            else:
                p.pending[0] = (due, p.pending[0][1][n:])
            if rate:
                self._next_send[id(p)] = max(now, self._next_send.get(id(p), now)) + n / rate
        if p.eof and not p.pending and not p.shut:
            p.shut = True
            try:
                p.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return wake_at

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        timeout: Optional[float] = 0.05
        while not self._stop.is_set():
            with self._lock:
                conns = [c for c in self._conns if not c.closed]
            # Rebuild the interest set every round: a handful of connections.
            watched = {}
            now0 = time.monotonic()
            for c in conns:
                for p in c.pipes.values():
                    if p.held:
                        continue
                    if not p.eof and p.buffered < BUFFER_CAP:
                        watched.setdefault(p.src, 0)
                        watched[p.src] |= selectors.EVENT_READ
                    # Write interest only for a piece that may leave now (a
                    # delayed or throttled one waits on the timer instead).
                    if p.pending and p.pending[0][0] <= now0 and \
                            self._next_send.get(id(p), 0.0) <= now0:
                        watched.setdefault(p.dst, 0)
                        watched[p.dst] |= selectors.EVENT_WRITE
            keys = []
            for s, ev in watched.items():
                try:
                    sel.register(s, ev)
                    keys.append(s)
                except (ValueError, OSError):
                    pass
            readable: set = set()
            writable: set = set()
            try:
                for key, ev in sel.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    else:
                        if ev & selectors.EVENT_READ:
                            readable.add(key.fileobj)
                        if ev & selectors.EVENT_WRITE:
                            writable.add(key.fileobj)
            finally:
                for s in keys:
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
            now = time.monotonic()
            next_at = 0.0
            with self._lock:
                for c in conns:
                    for p in c.pipes.values():
                        # A socket with room to write is usually writable:
                        # try the sends even when select did not say so.
                        w = writable | ({p.dst} if p.pending and p.dst in watched else set())
                        at = self._pump(c, p, now, readable, w)
                        if at:
                            next_at = at if not next_at else min(next_at, at)
                    up, down = c.pipes[UP], c.pipes[DOWN]
                    if up.shut and down.shut:
                        self._close_conn(c)
                self._conns = [c for c in self._conns if not c.closed]
            timeout = 0.05 if not next_at else max(0.001, min(0.05, next_at - now))
        sel.close()


# ---- clocks ------------------------------------------------------------------------

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def faketime_unavailable() -> Optional[str]:
    return None if LIBFAKETIME.exists() else \
        f"clock skew needs libfaketime ({LIBFAKETIME}; apt-get install faketime)"


def clock_skew_env(seconds: int) -> dict:
    """Environment variables that run a daemon with its wall clock off by
    seconds (+ ahead, - behind); its monotonic clock is left alone."""
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}s",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if h.SANITIZE:
        # ASan wants to be the first preloaded library; libfaketime is.
        env["ASAN_OPTIONS"] = h.ASAN_OPTIONS + ":verify_asan_link_order=0"
    return env


# ---- iptables ---------------------------------------------------------------------

IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"
RULE_TAG = "efs-nemesis"
_RULE_RE = re.compile(rf"^-A (\S+) (.*--comment \"?{RULE_TAG}:(\d+):(\d+)\"?.*)$")
_iptables_probe: Optional[str] = "unprobed"


def _iptables(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IPTABLES, "-w", "5", *args], capture_output=True, text=True,
                          timeout=20)


def iptables_unavailable() -> Optional[str]:
    """None when PortBlock can run here; otherwise why not (for a skip)."""
    global _iptables_probe
    if _iptables_probe != "unprobed":
        return _iptables_probe
    if os.geteuid() != 0:
        _iptables_probe = "iptables rules need root"
    elif not os.path.exists(IPTABLES):
        _iptables_probe = "no iptables (apt-get install iptables)"
    else:
        probe = PortBlock(1)  # tcp port 1 on lo: nothing of ours or others
        try:
            probe.install()
            _iptables_probe = None
        except AssertionError as e:
            _iptables_probe = f"iptables refused a rule: {e}"
        finally:
            probe.close()
    return _iptables_probe


class PortBlock:
    """DROP on the loopback of every packet to or from TCP port `port` (so
    both directions of every connection to it), in the OUTPUT chain (a
    loopback packet passes it once). install() adds, close() removes."""

    def __init__(self, port: int):
        self.port = port
        self.comment = f"{RULE_TAG}:{os.getpid()}:{port}"
        self.rules = [["-o", "lo", "-p", "tcp", "--dport", str(port)],
                      ["-o", "lo", "-p", "tcp", "--sport", str(port)]]
        self.installed: list[list[str]] = []

    def _spec(self, rule: list[str]) -> list[str]:
        return [*rule, "-m", "comment", "--comment", self.comment, "-j", "DROP"]

    def install(self) -> "PortBlock":
        for rule in self.rules:
            r = _iptables("-I", "OUTPUT", *self._spec(rule))
            assert r.returncode == 0, r.stderr.strip() or f"iptables exited {r.returncode}"
            self.installed.append(rule)
        return self

    def close(self) -> None:
        while self.installed:
            rule = self.installed.pop()
            _iptables("-D", "OUTPUT", *self._spec(rule))

    def __enter__(self) -> "PortBlock":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.close()


def remove_leftover_rules() -> int:
    """Deletes the rules tagged by a test session that is gone (a crash of
    the harness itself); returns how many. Never touches an untagged rule,
    nor the rules of a session still running."""
    if os.geteuid() != 0 or not os.path.exists(IPTABLES):
        return 0
    r = _iptables("-S", "OUTPUT")
    if r.returncode != 0:
        return 0
    removed = 0
    for line in r.stdout.splitlines():
        m = _RULE_RE.match(line)
        if not m:
            continue
        pid = int(m.group(3))
        if pid != os.getpid() and Path(f"/proc/{pid}").exists():
            continue
        spec = m.group(2).replace('"', "").split()
        if _iptables("-D", m.group(1), *spec).returncode == 0:
            removed += 1
    return removed


# ---- the fixture's object ----------------------------------------------------------


class Nemesis:
    """What one test uses: proxies and rules it made, all undone by close()
    (the `nemesis` fixture's finalizer)."""

    def __init__(self):
        self.proxies: list[LinkProxy] = []
        self.blocks: list[PortBlock] = []

    def proxy(self, target_port: int, name: str = "link") -> LinkProxy:
        p = LinkProxy(target_port, name)
        self.proxies.append(p)
        return p

    def add_linked_worker(self, cluster: "h.Cluster", master: "h.Master", name: str,
                          **env) -> tuple["h.Worker", LinkProxy, LinkProxy]:
        """A worker whose every exchange with the master goes through two
        proxies: (worker, to_worker, to_master). to_worker carries what the
        master (and the other workers, and downloads) send it: it is the
        worker's WORKER_ADVERTISE_URL; to_master is its MASTER_URL.

        With gRPC workers (ECHOFS_TEST_WORKER_PROTOCOL=grpc) a third proxy
        carries the worker's stream to the master's GRPC_PORT (its
        MASTER_GRPC_URL), linked to the other two: a cut of to_master cuts
        the stream in the same directions (beats and Acks up, instructions
        down); a cut of to_worker, in either direction, holds what the
        master sends down the stream (pushed deletes), so the worker's
        beats still arrive, as they do over HTTP when only the master's
        calls to the worker are cut. A reset cut of to_worker resets the
        stream too (the master's pushes fail at once, as its calls do):
        the worker then beats over HTTP through to_master, still alive,
        and takes the stream again after heal(). (A held pushed delete
        would instead arrive at the heal and do the work the master's
        watch of a failed delete is there to do.)"""
        port = h.free_port()
        to_worker = self.proxy(port, f"to-{name}")
        to_master = self.proxy(master.port, f"{name}-to-master")
        stream = None
        # (a test may pin this worker to HTTP: WORKER_PROTOCOL="http" in env)
        if h.WORKER_PROTOCOL == "grpc" and not cluster.tls and "MASTER_GRPC_URL" not in env \
                and env.get("WORKER_PROTOCOL", "grpc") == "grpc":
            stream = self.proxy(master.grpc_port, f"{name}-grpc-to-master")
            to_master.link(stream, {UP: UP, DOWN: DOWN})
            to_worker.link(stream, {UP: DOWN, DOWN: DOWN}, reset=True)
            env["MASTER_GRPC_URL"] = stream.url("grpc")
        w = cluster.add_worker(name, master=master, port=port,
                               master_url=to_master.url(cluster.scheme),
                               WORKER_ADVERTISE_URL=to_worker.url(cluster.scheme), **env)
        if stream is not None:
            # Faults on a worker still beating over HTTP would test nothing
            # of the stream: wait until the master lists it on gRPC.
            def on_stream():
                rec = master.worker_record(w.worker_id)
                return stream.connections > 0 and rec is not None and \
                    rec.get("protocol") == "grpc" and rec["status"] == "alive"
            h.wait_until(on_stream, h.START_TIMEOUT_S, what=f"{name} on its gRPC stream")
        return w, to_worker, to_master

    def block_port(self, port: int) -> PortBlock:
        b = PortBlock(port)
        self.blocks.append(b)
        return b.install()

    def heal(self) -> None:
        for p in self.proxies:
            p.heal()
        while self.blocks:
            self.blocks.pop().close()

    def close(self) -> None:
        try:
            self.heal()
        finally:
            for p in self.proxies:
                p.close()
            self.proxies.clear()
