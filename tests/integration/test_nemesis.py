"""The nemesis harness itself (nemesis.py): each fault does what it says and
undoes itself. Quick: an echo server and, for the clock, one master.

A fault tool that silently does nothing makes every test built on it pass
for the wrong reason, so each helper is checked against a real socket
here: a cut link times out and delivers after heal(), a frozen connection
holds while a new one passes, a throttled link takes as long as its rate
says at least, a reset refuses, a PortBlock drops (and its rules go with
close()), and a skewed master's clock is off by the skew.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import threading
import time

import pytest

import echofs_harness as h
import nemesis as nm


@pytest.fixture
def echo_port():
    """A loopback echo server of this test; its port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", h.free_port()))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve_one(c: socket.socket) -> None:
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                c.sendall(data)
        except OSError:
            return
        finally:
            c.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=serve_one, args=(c,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()
    for c in conns:
        try:
            c.close()
        except OSError:
            pass


def connect(port: int, timeout: float = 0.5) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(timeout)
    return s


def echoes(s: socket.socket, data: bytes) -> bool:
    """Whether data comes back within the socket's timeout."""
    s.sendall(data)
    got = b""
    try:
        while len(got) < len(data):
            piece = s.recv(65536)
            if not piece:
                return False
            got += piece
    except socket.timeout:
        return False
    assert got == data, f"echo came back as {got!r}"
    return True


def test_proxy_cut_freeze_heal(nemesis, echo_port):
    link = nemesis.proxy(echo_port, "echo")
    a = connect(link.port)
    assert echoes(a, b"before")
    link.cut()
    assert not echoes(a, b"cut"), "bytes crossed a cut link"
    b = connect(link.port)  # accepted by the kernel, then nothing moves
    assert not echoes(b, b"new"), "a new connection crossed a cut link"
    link.heal()
    a.settimeout(2)
    assert a.recv(100) == b"cut", "the held bytes did not flow after heal()"
    b.settimeout(2)
    assert b.recv(100) == b"new"

    # freeze: the open connection holds, a new one passes
    assert link.freeze() == 2
    assert not echoes(a, b"frozen")
    assert echoes(connect(link.port, 2), b"fresh"), "freeze() blocked a new connection"
    link.heal()
    a.settimeout(2)
    assert a.recv(100) == b"frozen"

    # one direction: what goes up arrives, nothing comes back
    link.cut(nm.DOWN)
    assert not echoes(a, b"one-way")
    link.heal()
    a.settimeout(2)
    assert a.recv(100) == b"one-way"

    # release_new: a cut for new connections ends, the held one stays held
    link.cut()
    assert not echoes(a, b"late")
    link.release_new()
    assert echoes(connect(link.port, 2), b"after"), "release_new() blocked a new connection"
    a.settimeout(0.5)
    with pytest.raises(socket.timeout):
        a.recv(100)
    link.heal()
    a.settimeout(2)
    assert a.recv(100) == b"late"
    a.close()
    b.close()


def test_proxy_freeze_busy_only_catches_a_request_under_way(nemesis):
    sink = h.Blackhole()  # reads requests, never answers: every request stays under way
    try:
        link = nemesis.proxy(sink.port, "sink")
        idle = connect(link.port)
        busy = connect(link.port)
        busy.sendall(b"request")
        h.wait_until(lambda: link.forwarded[nm.UP] >= len(b"request"), 2, what="the request")
        assert link.connections == 2
        assert link.freeze(busy_only=True) == 1, "freeze(busy_only) took the idle connection"
        idle.sendall(b"idle one is not frozen")
        h.wait_until(lambda: link.forwarded[nm.UP] >= len(b"request") + 22, 2,
                     what="bytes of the connection that was idle")
        busy.sendall(b"held")
        time.sleep(0.3)
        assert link.forwarded[nm.UP] == len(b"request") + 22, "the frozen connection moved"
        link.heal()
        h.wait_until(lambda: link.forwarded[nm.UP] == len(b"request") + 26, 2,
                     what="the held bytes after heal()")
        idle.close()
        busy.close()
    finally:
        sink.close()


def test_proxy_throttle_and_reset(nemesis, echo_port):
    link = nemesis.proxy(echo_port, "echo")
    s = connect(link.port, 10)
    size, rate = 100_000, 100_000  # bytes, bytes/s each way
    link.throttle(rate, delay_s=0.2)
    began = time.monotonic()
    assert echoes(s, b"z" * size)
    took = time.monotonic() - began
    # A lower bound only (never an upper one: the machine may be loaded).
    assert took >= 0.8 * size / rate + 0.2, f"throttled echo took only {took:.2f} s"
    link.heal()
    link.cut(reset=True)
    with pytest.raises(OSError):
        s.sendall(b"after reset")
        s.settimeout(2)
        if s.recv(10) == b"":
            raise ConnectionResetError("closed")
    with pytest.raises(OSError):
        c = connect(link.port, 2)
        c.sendall(b"x")
        if c.recv(10) == b"":
            raise ConnectionResetError("closed")
    link.heal()
    assert echoes(connect(link.port, 2), b"back")
    s.close()


def test_port_block_drops_and_is_removed(nemesis, echo_port):
    why = nm.iptables_unavailable()
    if why:
        pytest.skip(why)
    s = connect(echo_port)
    assert echoes(s, b"before")
    block = nemesis.block_port(echo_port)
    listed = nm._iptables("-S", "OUTPUT").stdout
    assert block.comment in listed, f"rule not installed: {listed}"
    assert not echoes(s, b"dropped"), "a packet crossed a PortBlock"
    nemesis.heal()
    assert block.comment not in nm._iptables("-S", "OUTPUT").stdout, "rule left behind"
    s.settimeout(10)  # TCP retransmits what was dropped
    assert s.recv(100) == b"dropped"
    s.close()


def test_leftover_rules_of_a_dead_session_are_removed(nemesis):
    why = nm.iptables_unavailable()
    if why:
        pytest.skip(why)
    # A rule as a crashed session would leave it: a pid that cannot exist.
    stale = nm.PortBlock(1)
    stale.comment = f"{nm.RULE_TAG}:999999999:1"
    stale.install()
    try:
        assert nm.remove_leftover_rules() >= 1
        assert stale.comment not in nm._iptables("-S", "OUTPUT").stdout
    finally:
        stale.installed.clear()  # already gone; close() must not fail either way


@pytest.mark.parametrize("skew", [20, -20])
def test_clock_skew_env_moves_a_masters_wall_clock(cluster, skew):
    why = nm.faketime_unavailable()
    if why:
        pytest.skip(why)
    m = cluster.add_master(**nm.clock_skew_env(skew))
    r = m.client().get("/api/v1/health")
    assert r.status_code == 200
    # The Date header is the master's wall clock (whole seconds).
    theirs = email.utils.parsedate_to_datetime(r.headers["Date"])
    off = (theirs - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert abs(off - skew) <= 3, f"master clock off by {off:.1f} s, wanted {skew:+d} s"
