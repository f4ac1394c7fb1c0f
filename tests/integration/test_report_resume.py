"""A full chunk report whose batch fails resumes at that batch (issue 16
follow-up): the batches the master answered stand, the failed one is sent
again, and the report goes on; it used to start over from the first
chunk after REPORT_RETRY_MS, so at a million chunks one slow batch cost
the whole report again.

The worker reaches its master over HTTP (WORKER_PROTOCOL=http) through a
proxy in this test that forwards every request and counts the chunk ids
of every report batch. Armed, it fails the second batch of the next
report that carries chunks, one of two ways:

* timeout: the batch never reaches the master; the proxy holds the
  connection until the worker gives up on it;
* lost answer: the master judges the batch (its replicas' seen_at are
  written, its verdicts given) and the proxy drops the answer.

And one way that is not a failure: a slow answer (7 s, a master whose
store is slow to judge a batch) is waited for (REPORT_BATCH_TIMEOUT_MS,
60 s), not sent again: batches over HTTP used to time out after 5 s.

Then every chunk of the store is in the report once, and the failed
batch's chunks twice; the report ends (its last batch answered), and the
master marked no replica bad for it: files whose only replica is on this
worker are still fully replicated and read back.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import http.server
import json
import os
import re
import select
import threading
import time
import urllib.parse

import pytest
import requests

import echofs_harness as h

BATCH = 5000                 # REPORT_BATCH_CHUNKS in src/worker/report.c
EXTRA_CHUNKS = 2 * BATCH + 500   # three batches with chunks, and more
WRITERS = 8
REPORT_RE = re.compile(r"^/api/v1/workers/[^/]+/report$")

pytestmark = pytest.mark.skipif(bool(h.TLS), reason="the proxy here speaks plain HTTP")


class ReportProxy(http.server.ThreadingHTTPServer):
    """Forwards HTTP requests to the master at @target; records each report
    batch's chunk ids; fails one batch when armed."""

    daemon_threads = True

    def __init__(self, target: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urllib.parse.urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []   # every batch with chunks, in order
        self.fault = None                    # "timeout" or "lost-answer" while armed
        self.fault_at = 0                    # the armed report's batch with chunks to fail
        self.seen_since_armed = 0
        self.failed_batch: list[str] = []
        self.last_answered = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def arm(self, fault: "str | None", at: int = 2) -> None:
        with self.lock:
            self.batches = []
            self.fault, self.fault_at, self.seen_since_armed = fault, at, 0
            self.failed_batch = []
            self.last_answered.clear()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ReportProxy

    def log_message(self, *args):  # quiet
        pass

    def _forward(self, body: bytes):
        conn = http.client.HTTPConnection(*self.server.target, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length",
                                        "transfer-encoding", "expect")}
        conn.request(self.command, self.path, body=body if body else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def _reply(self, resp, data: bytes) -> None:
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _hold_until_client_leaves(self) -> None:
        # the worker times the request out and closes its end; at most 60 s
        select.select([self.connection], [], [], 60)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy = self.server
        fault = None
        last = False
        if self.command == "POST" and REPORT_RE.match(urllib.parse.urlsplit(self.path).path):
            batch = json.loads(body)
            ids = [c[0] for c in batch.get("chunks", [])]
            last = bool(batch.get("last"))
            if ids:
                with proxy.lock:
                    proxy.batches.append(ids)
                    if proxy.fault:
                        proxy.seen_since_armed += 1
                        if proxy.seen_since_armed == proxy.fault_at:
                            fault, proxy.fault = proxy.fault, None
                            proxy.failed_batch = ids
        if fault == "timeout":
            self._hold_until_client_leaves()
            self.close_connection = True
            return
        resp, data = self._forward(body)
        if fault == "lost-answer":
            self.close_connection = True  # judged by the master, never answered
            return
        if fault == "slow-answer":
            time.sleep(SLOW_ANSWER_S)
        self._reply(resp, data)
        if last and resp.status == 200:
            proxy.last_answered.set()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def put_chunks(worker, count):
    """PUTs @count small chunks of random ids straight into @worker's store."""
    def run(part):
        api = worker.client(h.CLUSTER_SECRET)
        for _ in range(part):
            r = api.put(f"/chunks/{os.urandom(32).hex()}", data=os.urandom(16),
                        headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
    parts = [count // WRITERS + (1 if i < count % WRITERS else 0) for i in range(WRITERS)]
    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        for f in [pool.submit(run, p) for p in parts]:
            f.result()


def metric(url: str, name: str) -> float:
    r = requests.get(f"{url}/metrics", timeout=5)
    assert r.status_code == 200, r.text
    m = re.search(rf"^{name} (\S+)$", r.text, re.M)
    assert m, f"{name} not in {url}/metrics"
    return float(m.group(1))


def answered(w) -> float:
    """The worker's count of report batches the master answered; 0 while
    it does not listen yet (it starts its report before its HTTP API)."""
    try:
        return metric(w.url, "echofs_worker_report_batches_total")
    except requests.ConnectionError:
        return 0


SLOW_ANSWER_S = 7  # past the 5 s the worker's HTTP calls used to allow a batch


@pytest.mark.parametrize("fault", ["timeout", "lost-answer", "slow-answer"])
def test_a_failed_batch_is_sent_again_and_the_report_resumes(cluster, fault):
    m = cluster.add_master(REPLICATION_FACTOR=1, CHUNK_SIZE=65536)
    proxy = ReportProxy(m.url)
    try:
        run(cluster, m, proxy, fault)
    finally:
        proxy.close()


def run(cluster, m, proxy: ReportProxy, fault: str):
    # the held batch is given up after 3 s (the default 60 s would make
    # this test wait that long)
    env = {"REPORT_BATCH_TIMEOUT_MS": "3000"} if fault == "timeout" else {}
    w = cluster.add_worker(master=m, master_url=proxy.url, WORKER_PROTOCOL="http", **env)
    api = m.user_client()
    files = {}
    for i in range(5):
        data = os.urandom(150_000)  # 3 chunks each, their only replica on w
        files[api.upload(data, f"f{i}.bin")["file_id"]] = data
    put_chunks(w, EXTRA_CHUNKS)

    # A restart registers again, which asks for a full report at once.
    w.stop()
    held = set(w.chunk_usage().ids)
    assert len(held) >= 2 * BATCH + 1, len(held)
    proxy.arm(fault)
    w.start()
    assert proxy.last_answered.wait(120), "the report did not end within 120 s"

    with proxy.lock:
        batches = list(proxy.batches)
        failed = list(proxy.failed_batch)
    assert failed, "the armed fault never fired: the report had fewer batches than expected"
    # Each batch lists chunks no earlier batch listed, or repeats the batch
    # just before it as it was (a resend: the failed one, and any other a
    # loaded machine timed out); a chunk listed again later would mean the
    # report started over.
    seen: set[str] = set()
    resends = 0
    for i, batch in enumerate(batches):
        if i > 0 and batch == batches[i - 1]:
            resends += 1
            continue
        again = seen.intersection(batch)
        assert not again, (f"batch {i} lists {len(again)} chunks an earlier batch listed: "
                           f"the report started over")
        seen.update(batch)
    assert seen == held, "the report did not list exactly the chunks the worker holds"
    i = batches.index(failed)
    if fault == "slow-answer":
        # waited for: once, then the next batch
        assert batches.count(failed) == 1 and batches[i + 1] != failed, \
            "a batch answered in 7 s was sent again"
        assert metric(w.url, "echofs_worker_report_batches_resent_total") == resends == 0
    else:
        assert batches[i + 1] == failed, "the failed batch was not sent again as it was"
        assert metric(w.url, "echofs_worker_report_batches_resent_total") == resends >= 1
    assert metric(w.url, "echofs_worker_full_reports_failed_total") == 0

    # The master marked nothing bad for the interrupted batch: each chunk's
    # one replica (on w) is still good.
    for fid, data in files.items():
        info = api.get(f"/api/v1/files/{fid}").json()
        assert all(c["good_replicas"] == 1 for c in info["chunks"]), info
        assert api.download(fid) == data
    if fault != "slow-answer":
        assert "sent again" in w.stderr(), "the worker's log does not say it sent a batch again"


def test_a_broken_grpc_report_goes_on_over_http_from_the_failed_batch(cluster, nemesis):
    """A gRPC worker's Report call that breaks partway: the rest of the
    report, from the failed batch on, goes over HTTP; the batches judged
    on the call are not listed again (it used to send the whole report
    again over HTTP). The call goes through a TCP proxy, throttled so that
    a batch takes seconds, and reset once the worker has the master's
    answers to the report's first request and its first batch of chunks."""
    m = cluster.add_master(REPLICATION_FACTOR=1, CHUNK_SIZE=65536)
    proxy = ReportProxy(m.url)
    try:
        grpc_case(cluster, m, proxy, nemesis)
    finally:
        proxy.close()


def grpc_case(cluster, m, proxy: ReportProxy, nemesis):
    stream = nemesis.proxy(m.grpc_port, "grpc-to-master")
    w = cluster.add_worker(master=m, master_url=proxy.url, WORKER_PROTOCOL="grpc",
                           MASTER_GRPC_URL=stream.url("grpc"))
    put_chunks(w, EXTRA_CHUNKS)
    w.stop()
    held = set(w.chunk_usage().ids)
    judged = metric(m.url, "echofs_grpc_report_batches_total")
    proxy.arm(None)  # counts only: no batch fails at the proxy
    stream.throttle(100_000, dirs="up")  # a 5000-chunk batch: ~4 s
    w.start()
    deadline = time.monotonic() + 60
    # Cut once the worker has the master's answers to the first two
    # batches: the master's own count grows before its answer is on the
    # wire, and a batch whose answer the cut lost is rightly sent again.
    while answered(w) < 2:
        assert time.monotonic() < deadline, "the report's first batches never came on gRPC"
        time.sleep(0.05)
    stream.cut(reset=True)
    assert proxy.last_answered.wait(120), "the report did not end within 120 s"
    stream.heal()

    with proxy.lock:
        over_http = [cid for b in proxy.batches for cid in b]
    on_grpc = metric(m.url, "echofs_grpc_report_batches_total") - judged
    assert over_http, "no batch went over HTTP: the call was not broken in time"
    assert len(set(over_http)) == len(over_http), "a chunk was sent twice over HTTP"
    # at least the first batch of chunks stood on the call
    assert len(over_http) <= len(held) - BATCH, (
        f"{len(over_http)} of {len(held)} chunks went over HTTP after {on_grpc:.0f} "
        f"batches judged on gRPC: the report started over")
    assert "over HTTP after gRPC failed" in w.stderr()


def test_a_worker_stopped_while_the_master_holds_a_batch_exits_at_once(cluster):
    """A batch the master has not answered is waited for up to
    REPORT_BATCH_TIMEOUT_MS (a minute), but a worker told to stop meanwhile
    gives up the wait and exits within the usual stop time, as over gRPC."""
    m = cluster.add_master(REPLICATION_FACTOR=1, CHUNK_SIZE=65536)
    proxy = ReportProxy(m.url)
    try:
        w = cluster.add_worker(master=m, master_url=proxy.url, WORKER_PROTOCOL="http")
        put_chunks(w, EXTRA_CHUNKS)
        w.stop()
        proxy.arm("timeout")  # held until the worker closes the connection
        w.start()
        deadline = time.monotonic() + 60
        while True:
            with proxy.lock:
                if proxy.failed_batch:
                    break
            assert time.monotonic() < deadline, "the report never reached its second batch"
            time.sleep(0.05)
        took = w.stop()  # within STOP_TIMEOUT_S, or the harness fails the test
        assert took < h.STOP_TIMEOUT_S, took
    finally:
        proxy.close()
