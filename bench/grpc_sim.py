#!/usr/bin/python3
"""grpc_sim.py - N simulated workers against one real master: what the gRPC
control plane costs the master, next to HTTP heartbeat polling, in one run
(issue 14, "scale by simulation"; figures in docs/PERFORMANCE.md).

    make bench-grpc                         # 1000 workers, 1 s beats
    /usr/bin/python3 bench/grpc_sim.py --workers 200 --measure-s 20

Two phases, each on a fresh master (SQLite, its own temporary directory,
free ports on 127.0.0.1, HEARTBEAT_INTERVAL_MS=--interval-ms, the default
WORKER_DEAD_AFTER_MS and GRPC_STREAM_GRACE_MS):

  grpc  N workers registered with the Register RPC, each keeping its own
        Connect stream (its own connection and HTTP/2 session, as real
        workers have) with a Hello and a Heartbeat every interval (spread
        over the interval), from bench/grpc_sim_client.c (--client; or
        --client python: grpc.aio here, which falls behind at 1,000);
  http  N workers registered with POST /api/v1/workers/register, each
        beating with POST /api/v1/workers/{id}/heartbeat every interval on
        keep-alive connections (a pool of --http-conns: the master serves
        at most 512 connections, MAX_CONNECTIONS in http_server.c).

In each, once every worker beats: --measure-s seconds of the master's CPU
time (utime + stime from /proc, reported as CPU seconds per minute and as
% of one core) and its RSS at the end; then K (--kill) workers die at once
(their client process SIGKILLed / their beats stopped) and the time until
GET /api/v1/workers lists all K dead is measured. The report gives both
phases and the ratios http/grpc. Nothing here asserts a speed: it is a
benchmark, run by hand or by `make bench-grpc`, never by the tests.

Needs Debian's python3-grpcio and python3-protobuf, and protoc-c (the
messages are built from proto/echofs.proto's descriptors, as
tests/integration/test_grpc.py does).
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import grpc.aio

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "/echofs.v1.ControlPlane/"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def messages(workdir):
    from google.protobuf import descriptor_pb2, message_factory
    out = Path(workdir) / "echofs.desc"
    subprocess.run(["protoc-c", f"--descriptor_set_out={out}", f"-I{ROOT / 'proto'}",
                    "echofs.proto"], check=True, timeout=60)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    classes = message_factory.GetMessages(list(files))
    return lambda name: classes[f"echofs.v1.{name}"]


def proc_cpu_s(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Master:
    def __init__(self, bin_dir, workdir, name, interval_ms, grpc_on, redis_addr=None):
        self.dir = Path(workdir) / name
        self.dir.mkdir()
        self.port = free_port()
        self.grpc_port = free_port() if grpc_on else 0
        self.secret = secrets.token_hex(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "GRPC_"))}
        env.update({
            "MASTER_HOST": "127.0.0.1", "MASTER_PORT": str(self.port),
            "GRPC_PORT": str(self.grpc_port), "DATA_DIR": str(self.dir / "data"),
            "JWT_SECRET": secrets.token_hex(24), "CLUSTER_SECRET": self.secret,
            "HEARTBEAT_INTERVAL_MS": str(interval_ms),
        })
        for k in ("DATABASE_URL", "REDIS_ADDR", "TLS_CERT_FILE", "TLS_KEY_FILE"):
            env.pop(k, None)
        if redis_addr:
            env["REDIS_ADDR"] = redis_addr
        self.log = open(self.dir / "master.log", "wb")
        self.proc = subprocess.Popen([str(Path(bin_dir) / "echofs-master")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/api/v1/health")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"master did not start: see {self.dir}/master.log")
                time.sleep(0.1)

    def get(self, path):
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": f"Bearer {self.secret}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def workers(self):
        return json.loads(self.get("/api/v1/workers"))

    def metric(self, name):
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def worker_list(answer):
    return answer["workers"] if isinstance(answer, dict) else answer


def fake_url(i):
    return f"http://10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:8081"


async def wait_dead(master, ids, timeout):
    """Seconds until GET /api/v1/workers lists every one of ids dead."""
    t0 = time.monotonic()
    ids = set(ids)
    loop = asyncio.get_running_loop()
    while time.monotonic() - t0 < timeout:
        listed = worker_list(await loop.run_in_executor(None, master.workers))
        if all(w["status"] == "dead" for w in listed if w["worker_id"] in ids):
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    return None


async def measure(master, seconds):
    cpu0, t0 = proc_cpu_s(master.proc.pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = proc_cpu_s(master.proc.pid) - cpu0
    wall = time.monotonic() - t0
    return {"cpu_s_per_min": cpu / wall * 60, "cpu_pct_one_core": cpu / wall * 100,
            "rss_mib": proc_rss_mib(master.proc.pid), "fds": proc_fds(master.proc.pid)}


async def grpc_phase(args, M, workdir):
    master = Master(args.bin_dir, workdir, "grpc", args.interval_ms, True, args.redis_addr)
    auth = [("authorization", f"Bearer {master.secret}")]
    target = f"127.0.0.1:{master.grpc_port}"
    space = M("Space")(capacity_bytes=1 << 40, free_bytes=1 << 39, chunk_count=1000)
    ser = lambda m: m.SerializeToString()  # noqa: E731
    result = {"phase": "grpc"}
    try:
        reg_ch = grpc.aio.insecure_channel(target)
        register = reg_ch.unary_unary(SERVICE + "Register", request_serializer=ser,
                                      response_deserializer=M("RegisterReply").FromString)
        ids = []
        for i in range(args.workers):
            r = await register(M("RegisterRequest")(url=fake_url(i), space=space),
                               metadata=auth, timeout=30)
            ids.append(r.worker_id)
        await reg_ch.close()

        if args.client != "python":
            result.update(await c_streams(args, master, ids, workdir))
            result["client"] = "c"
            return result
        result["client"] = "python"
        channels, calls, every_call, drains = {}, {}, {}, []
        beat = M("WorkerMessage")(heartbeat=M("Heartbeat")(space=space, sequence=1))
        beat = beat.SerializeToString()  # one message, packed once: the client stays cheap

        async def drain(call):
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError:
                pass

        async def open_stream(wid):
            # its own channel: its own connection, as a real worker has
            ch = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            channels[wid] = ch
            call = ch.stream_stream(SERVICE + "Connect")(metadata=auth)
            await call.write(M("WorkerMessage")(hello=M("Hello")(worker_id=wid))
                             .SerializeToString())
            calls[wid] = every_call[wid] = call
            drains.append(asyncio.create_task(drain(call)))

        async def beater():
            # every stream beats once per interval, the streams spread evenly
            loop = asyncio.get_running_loop()
            step = args.interval_ms / 1000 / len(ids)
            nxt = loop.time()
            while True:
                for wid in ids:
                    call = calls.get(wid)
                    if call is not None:
                        try:
                            await call.write(beat)
                        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                            calls.pop(wid, None)
                    nxt += step
                    delay = nxt - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)

        for i in range(0, len(ids), 50):
            await asyncio.gather(*(open_stream(wid) for wid in ids[i:i + 50]))
        tasks = [asyncio.create_task(beater())]
        t0 = time.monotonic()
        while (master.metric("echofs_grpc_streams") or 0) < args.workers:
            if time.monotonic() - t0 > 120:
                raise SystemExit(f"only {master.metric('echofs_grpc_streams')} of "
                                 f"{args.workers} streams after 120 s: see {master.dir}")
            await asyncio.sleep(0.5)
        result["connect_s"] = time.monotonic() - t0
        await asyncio.sleep(args.warmup_s)
        beats0 = master.metric("echofs_grpc_heartbeats_total")
        result.update(await measure(master, args.measure_s))
        result["beats_per_s"] = (master.metric("echofs_grpc_heartbeats_total") - beats0) \
            / args.measure_s
        result["silenced_before_kill"] = master.metric("echofs_grpc_streams_silenced_total")
        # K workers die: their connections close (as a killed process's do)
        victims = ids[:args.kill]
        for wid in victims:
            calls.pop(wid, None)
            every_call[wid].cancel()  # RST_STREAM, then the connection closes
            await channels[wid].close()
        result["dead_after_kill_s"] = await wait_dead(master, victims, 60)
        result["silenced"] = master.metric("echofs_grpc_streams_silenced_total")
        tasks[0].cancel()
        for ch in channels.values():
            await ch.close()
        await asyncio.gather(*tasks, *drains, return_exceptions=True)
    finally:
        master.stop()
    return result


async def c_streams(args, master, ids, workdir):
    """The gRPC phase's streams from bench/grpc_sim_client.c: the victims in
    a process of their own, SIGKILLed to kill them."""
    result = {}
    victims, rest = ids[:args.kill], ids[args.kill:]
    procs = []
    try:
        for name, part in (("victims", victims), ("rest", rest)):
            if not part:
                continue
            path = Path(workdir) / f"ids-{name}"
            path.write_text("\n".join(part) + "\n")
            env = dict(os.environ, CLUSTER_SECRET=master.secret)
            p = await asyncio.create_subprocess_exec(
                args.client, f"127.0.0.1:{master.grpc_port}", str(path), str(args.interval_ms),
                env=env, stdout=asyncio.subprocess.PIPE)
            procs.append(p)
        t0 = time.monotonic()
        for p in procs:
            line = (await asyncio.wait_for(p.stdout.readline(), 180)).decode().strip()
            if not line.startswith("open "):
                raise SystemExit(f"grpc_sim_client: {line or 'exited'}")
        result["connect_s"] = time.monotonic() - t0
        await asyncio.sleep(args.warmup_s)
        beats0 = master.metric("echofs_grpc_heartbeats_total")
        result.update(await measure(master, args.measure_s))
        result["beats_per_s"] = (master.metric("echofs_grpc_heartbeats_total") - beats0) \
            / args.measure_s
        result["silenced_before_kill"] = master.metric("echofs_grpc_streams_silenced_total")
        if victims:
            procs[0].kill()  # SIGKILL: the kernel closes their connections
            result["dead_after_kill_s"] = await wait_dead(master, victims, 60)
        result["silenced"] = master.metric("echofs_grpc_streams_silenced_total")
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
            await p.wait()
    return result


async def http_beat(reader, writer, host, secret, wid, body):
    req = (f"POST /api/v1/workers/{wid}/heartbeat HTTP/1.1\r\nHost: {host}\r\n"
           f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"heartbeat answered {status}")


async def http_phase(args, workdir):
    master = Master(args.bin_dir, workdir, "http", args.interval_ms, False, args.redis_addr)
    host = f"127.0.0.1:{master.port}"
    result = {"phase": "http"}
    body = json.dumps({"capacity_bytes": 1 << 40, "free_bytes": 1 << 39,
                       "chunk_count": 1000}).encode()
    try:
        loop = asyncio.get_running_loop()

        def register(i):
            req = urllib.request.Request(
                master.url + "/api/v1/workers/register", method="POST",
                data=json.dumps({"url": fake_url(i), "capacity_bytes": 1 << 40,
                                 "free_bytes": 1 << 39}).encode(),
                headers={"Authorization": f"Bearer {master.secret}",
                         "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())["worker_id"]
        ids = [await loop.run_in_executor(None, register, i) for i in range(args.workers)]
        stopped = set()
        done = asyncio.Event()
        conns = min(args.http_conns, args.workers)
        errors, beats = [0], [0]

        async def connection(k):
            mine = ids[k::conns]
            reader, writer = await asyncio.open_connection("127.0.0.1", master.port)
            # each of its workers beats once per interval, spread evenly
            step = args.interval_ms / 1000 / max(len(mine), 1)
            await asyncio.sleep(random.random() * step)
            nxt = loop.time()
            while not done.is_set():
                for wid in mine:
                    if done.is_set():
                        break
                    if wid not in stopped:
                        try:
                            await http_beat(reader, writer, host, master.secret, wid, body)
                            beats[0] += 1
                        except (OSError, asyncio.IncompleteReadError, RuntimeError):
                            errors[0] += 1
                            writer.close()
                            reader, writer = await asyncio.open_connection("127.0.0.1",
                                                                           master.port)
                    nxt += step
                    await asyncio.sleep(max(0, nxt - loop.time()))
            writer.close()

        tasks = [asyncio.create_task(connection(k)) for k in range(conns)]
        t0 = time.monotonic()
        await asyncio.sleep(args.interval_ms / 1000 * 2)
        result["connect_s"] = time.monotonic() - t0
        await asyncio.sleep(args.warmup_s)
        beats0 = beats[0]
        result.update(await measure(master, args.measure_s))
        result["beats_per_s"] = (beats[0] - beats0) / args.measure_s
        result["http_conns"] = conns
        victims = ids[:args.kill]
        stopped.update(victims)
        result["dead_after_kill_s"] = await wait_dead(master, victims, 60)
        alive = [w for w in worker_list(await loop.run_in_executor(None, master.workers))
                 if w["status"] == "alive"]
        result["alive_at_end"] = len(alive)
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        result["beat_errors"] = errors[0]
    finally:
        master.stop()
    return result


def per_kbeat(phase):
    """The master's CPU seconds per minute for 1,000 beats a second."""
    return phase["cpu_s_per_min"] / phase["beats_per_s"] * 1000 if phase["beats_per_s"] else None


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


async def main_async(args):
    workdir = tempfile.mkdtemp(prefix="echofs-grpc-sim-")
    try:
        M = messages(workdir)
        g = await grpc_phase(args, M, workdir)
        print(f"grpc: {json.dumps(g)}", file=sys.stderr)
        h = await http_phase(args, workdir)
        print(f"http: {json.dumps(h)}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)
    report = {
        "workers": args.workers, "interval_ms": args.interval_ms, "measure_s": args.measure_s,
        "kill": args.kill, "grpc": g, "http": h,
        "ratio_http_over_grpc": {
            "cpu": ratio(h["cpu_s_per_min"], g["cpu_s_per_min"]),
            "cpu_per_beat": ratio(per_kbeat(h), per_kbeat(g)),
            "rss": ratio(h["rss_mib"], g["rss_mib"]),
            "dead_after_kill": ratio(h["dead_after_kill_s"], g["dead_after_kill_s"]),
        },
    }
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_GRPC_WORKERS",
                                                                       1000)))
    ap.add_argument("--interval-ms", type=int, default=1000)
    ap.add_argument("--measure-s", type=float, default=30)
    ap.add_argument("--warmup-s", type=float, default=5)
    ap.add_argument("--kill", type=int, default=10)
    ap.add_argument("--http-conns", type=int, default=200)
    ap.add_argument("--bin-dir", default=str(ROOT / "bin"))
    ap.add_argument("--client", default=str(ROOT / "build/dev/bench/grpc_sim_client"),
                    help="the gRPC streams' client: the path of grpc_sim_client (make "
                    "bench-grpc builds it), or 'python' for grpc.aio in this process")
    ap.add_argument("--redis-addr", help="REDIS_ADDR for both masters (host:port of a Redis "
                    "nobody else uses: liveness in Redis, the store written once a quarter "
                    "of WORKER_DEAD_AFTER_MS per worker)")
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--keep", action="store_true", help="keep the masters' directories")
    args = ap.parse_args()
    args.kill = min(args.kill, args.workers)
    if args.client != "python" and not os.access(args.client, os.X_OK):
        raise SystemExit(f"{args.client} is missing: `make build/dev/bench/grpc_sim_client`, "
                         "or --client python")
    report = asyncio.run(main_async(args))
    g, h, r = report["grpc"], report["http"], report["ratio_http_over_grpc"]
    print(f"{args.workers} simulated workers, {args.interval_ms} ms heartbeats, "
          f"{args.measure_s:g} s measured, one master (SQLite"
          f"{', Redis' if args.redis_addr else ''})")
    print(f"{'':22}{'gRPC streams':>14}{'HTTP polling':>14}{'HTTP/gRPC':>11}")
    print(f"{'master CPU s/min':22}{g['cpu_s_per_min']:14.2f}{h['cpu_s_per_min']:14.2f}"
          f"{r['cpu'] or 0:11.2f}")
    print(f"{'  % of one core':22}{g['cpu_pct_one_core']:14.1f}{h['cpu_pct_one_core']:14.1f}")
    print(f"{'beats/s delivered':22}{g['beats_per_s']:14.1f}{h['beats_per_s']:14.1f}")
    print(f"{'CPU s/min per 1k b/s':22}{per_kbeat(g) or 0:14.2f}{per_kbeat(h) or 0:14.2f}"
          f"{r['cpu_per_beat'] or 0:11.2f}")
    print(f"{'master RSS MiB':22}{g['rss_mib']:14.1f}{h['rss_mib']:14.1f}{r['rss'] or 0:11.2f}")
    print(f"{'master open fds':22}{g['fds']:14d}{h['fds']:14d}")
    gd, hd = g["dead_after_kill_s"], h["dead_after_kill_s"]
    print(f"{f'{args.kill} killed: dead in s':22}"
          f"{gd if gd is None else round(gd, 2)!s:>14}{hd if hd is None else round(hd, 2)!s:>14}"
          f"{r['dead_after_kill'] or 0:11.2f}")
    if g.get("silenced_before_kill"):
        print(f"warning: the master ended {g['silenced_before_kill']:g} streams as silent before "
              "the kill: this client could not beat on time (a loaded machine); lengthen "
              "--interval-ms", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
