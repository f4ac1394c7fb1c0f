"""Observability: GET /metrics on the master and the workers (Prometheus
text format, checked by promtool and scraped by a real Prometheus),
GET /api/v1/stats, and the dashboard page being served.

promtool and prometheus come from Debian's package `prometheus`
(scripts/install-deps.sh); the tests that need them skip, saying so, when
the binaries are missing.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

UPLOAD = "/api/v1/files/upload"
DOWNLOAD = "/api/v1/files/{fileId}/download"


def need(binary: str) -> str:
    if not Path(binary).exists():
        pytest.skip(f"{binary} is missing (Debian package prometheus; scripts/install-deps.sh)")
    return binary


def scrape(url: str) -> str:
    """GET <url>/metrics without credentials; asserts 200 and the text
    format's content type."""
    r = requests.get(url + "/metrics", timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200, f"{url}/metrics: {r.status_code} {r.text[:300]!r}"
    assert r.headers["Content-Type"] == CONTENT_TYPE, r.headers
    return r.text


def parse(text: str) -> dict:
    """{(name, frozenset(labels.items())): value} of every sample."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in samples, f"duplicate series: {line!r}"
        samples[key] = float(m.group(3))
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """A sample's value, 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text: str, who: str) -> None:
    r = subprocess.run([need(PROMTOOL), "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics rejects {who}'s /metrics:\n{r.stdout}{r.stderr}"


def test_metrics_of_both_daemons_pass_promtool(cluster):
    m = cluster.start(workers=3)
    c = m.user_client("alice")
    f = c.upload(os.urandom(300_000) + b"x" * 2_000_000, "mixed.bin")
    assert c.download(f["file_id"])
    c.get("/no/such/path")  # an "unmatched" route
    c.get("/api/v1/files/" + "0" * 32)  # 404 on a real route
    for who, url in [("master", m.url)] + [(w.name, w.url) for w in cluster.workers]:
        text = scrape(url)
        promtool_check(text, who)
        parse(text)  # one line per series, no duplicates


def test_metrics_need_no_credentials_and_ignore_them(cluster):
    m = cluster.start(workers=1, master_env={"REPLICATION_FACTOR": 1})
    w = cluster.workers[0]
    for url in (m.url, w.url):
        for auth in ({}, {"Authorization": "Bearer " + h.CLUSTER_SECRET},
                     {"Authorization": "Bearer not-a-token"}):
            r = requests.get(url + "/metrics", headers=auth, timeout=h.HTTP_TIMEOUT_S)
            assert r.status_code == 200, (url, auth, r.status_code)
    # The worker's other endpoints still need the cluster secret.
    assert_json_error(requests.get(w.url + "/health", timeout=h.HTTP_TIMEOUT_S), 401)


def test_request_and_byte_counters_move_after_an_upload_and_a_download(cluster):
    m = cluster.start(workers=3)
    c = m.user_client("alice")
    data = os.urandom(1_500_000)  # 2 chunks
    before = parse(scrape(m.url))
    before_workers = [parse(scrape(w.url)) for w in cluster.workers]

    f = c.upload(data, "counted.bin")
    assert c.download(f["file_id"]) == data

    def moved():
        s = parse(scrape(m.url))
        return s if value(s, "echofs_http_requests_total", route=DOWNLOAD, method="GET",
                          status="200") >= 1 else None
    after = wait_until(moved, 5, what="the download to be counted")

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    up = {"route": UPLOAD, "method": "POST"}
    down = {"route": DOWNLOAD, "method": "GET"}
    assert delta("echofs_http_requests_total", status="201", **up) == 1
    assert delta("echofs_http_requests_total", status="200", **down) == 1
    assert delta("echofs_http_request_body_bytes_total", **up) == len(data)
    assert delta("echofs_http_response_body_bytes_total", **down) == len(data)
    assert delta("echofs_http_request_duration_seconds_count", **up) == 1
    assert delta("echofs_http_request_duration_seconds_count", **down) == 1
    assert delta("echofs_http_request_duration_seconds_sum", **up) > 0
    # Buckets are cumulative and end with +Inf == _count.
    for labels in (up, down):
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                          if k[0] == "echofs_http_request_duration_seconds_bucket"
                          and {x for x in k[1] if x[0] != "le"} == set(labels.items())))
        counts = [v for _, v in buckets]
        assert buckets[-1][0] == float("inf") and counts == sorted(counts), buckets
        assert counts[-1] == value(after, "echofs_http_request_duration_seconds_count", **labels)
    # Routes are patterns: no file id, no raw path in any label.
    text = scrape(m.url)
    assert f["file_id"] not in text
    assert 'route="/api/v1/files/{fileId}/download"' in text
    # The data-path gauges and counters.
    assert value(after, "echofs_files") == 1
    assert value(after, "echofs_logical_bytes") == len(data)
    assert value(after, "echofs_chunks") == 2
    assert delta("echofs_upload_chunks_total") == 2
    assert value(after, "echofs_workers", state="alive") == 3
    assert value(after, "echofs_workers", state="dead") == 0
    assert value(after, "echofs_metadata_up") == 1

    # Each worker received its replicas: 2 chunks x 3 replicas in all.
    puts = body = 0
    for w, old in zip(cluster.workers, before_workers):
        new = parse(scrape(w.url))
        labels = {"route": "/chunks/{chunkId}", "method": "PUT"}
        puts += value(new, "echofs_http_requests_total", status="201", **labels) - \
            value(old, "echofs_http_requests_total", status="201", **labels)
        body += value(new, "echofs_http_request_body_bytes_total", **labels) - \
            value(old, "echofs_http_request_body_bytes_total", **labels)
        assert value(new, "echofs_store_chunks") == 2
        assert value(new, "echofs_worker_registered") == 1
        assert value(new, "echofs_store_capacity_bytes") >= value(new, "echofs_store_free_bytes")
    assert puts == 6
    assert body == 3 * len(data)  # random bytes are stored raw


def test_unmatched_paths_share_one_label(cluster):
    m = cluster.add_master()
    c = m.client()
    for i in range(5):
        assert c.get(f"/random/{i}/{os.urandom(4).hex()}").status_code == 404
    text = scrape(m.url)
    assert "random" not in text
    s = parse(text)
    assert value(s, "echofs_http_requests_total", route="unmatched", method="GET",
                 status="404") == 5
    # A method nobody uses is not a label value of its own.
    requests.request("BREW", m.url + "/api/v1/health", timeout=h.HTTP_TIMEOUT_S)

    def counted():
        return value(parse(scrape(m.url)), "echofs_http_requests_total", route="unmatched",
                     method="OTHER", status="405")
    wait_until(counted, 5, what="the odd method to be counted")
    assert "BREW" not in scrape(m.url)


def test_stats_needs_a_token_and_adds_up(cluster):
    m = cluster.start(workers=3)
    assert_json_error(m.client().get("/api/v1/stats"), 401)
    empty = m.cluster_client().get("/api/v1/stats")
    assert empty.status_code == 200, empty.text
    s = empty.json()
    assert s["files"] == 0 and s["logical_bytes"] == 0 and s["stored_bytes"] == 0
    assert s["compression_ratio"] == 1 and s["dedup_ratio"] == 1
    assert s["workers"]["alive"] == 3 and s["workers"]["dead"] == 0
    assert s["workers"]["total"] == 3
    assert s["replication_factor"] == 3

    c = m.user_client("alice")
    text = b"the same words again and again " * 40_000  # compresses well, 1.2 MB
    c.upload(text, "a.txt")
    c.upload(text, "b.txt")  # the same chunks: deduplicated
    s = c.get("/api/v1/stats").json()
    assert s["files"] == 2
    assert s["logical_bytes"] == 2 * len(text)
    assert s["chunk_bytes"] == len(text)
    assert 0 < s["stored_bytes"] < len(text) / 10
    assert s["dedup_ratio"] == pytest.approx(2.0)
    assert s["compression_ratio"] == pytest.approx(len(text) / s["stored_bytes"])
    assert s["uploads"]["chunks_total"] == 4
    assert s["uploads"]["chunks_deduplicated_total"] == 2
    assert s["workers"]["capacity_bytes"] >= s["workers"]["free_bytes"] > 0
    assert set(s["repair"]) == {"repaired_total", "failed_total", "ec_shards_rebuilt_total"}
    assert set(s["gc"]) == {"chunks_collected_total", "sessions_expired_total"}
    def repair_pass_done():
        stats = c.get("/api/v1/stats").json()
        return stats if stats["under_replicated"] is not None else None
    s = wait_until(repair_pass_done, 10, what="the repair loop's first pass")
    assert s["under_replicated"] == 0


def test_dashboard_page_is_served_without_a_token(cluster):
    m = cluster.add_master()
    r = requests.get(m.url + "/", timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    page = r.text
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    # Self-contained: nothing is loaded from another origin.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    for endpoint in ("/api/v1/health", "/api/v1/stats", "/api/v1/workers", "/api/v1/files"):
        assert endpoint in page
    head = requests.head(m.url + "/", timeout=h.HTTP_TIMEOUT_S)
    assert head.status_code == 200 and not head.content
    assert int(head.headers["Content-Length"]) == len(r.content)


@pytest.mark.slow(reason="starts Prometheus and waits for its first scrapes")
def test_prometheus_scrapes_every_target(cluster, tmp_path):
    prometheus = need(PROMETHEUS)
    m = cluster.start(workers=3)
    port = h.free_port()
    targets = [m.url] + [w.url for w in cluster.workers]

    def hostport(url):
        return url.split("://", 1)[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: echofs-master\n    static_configs:\n"
        f"      - targets: ['{hostport(m.url)}']\n"
        f"  - job_name: echofs-worker\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(hostport(w.url)) for w in cluster.workers)}]\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        preexec_fn=h._die_with_parent)
    api = f"http://127.0.0.1:{port}"
    try:
        def all_up():
            assert proc.poll() is None, \
                "prometheus exited:\n" + (tmp_path / "prometheus.log").read_text()
            active = requests.get(api + "/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            up = {t["scrapeUrl"]: t["health"] for t in active}
            return up if len(up) == 4 and set(up.values()) == {"up"} else None
        up = wait_until(all_up, 60 if h.SANITIZE else 30, interval=0.5,
                        what="prometheus to report every target up")
        assert set(up) == {u + "/metrics" for u in targets}
        # And the samples are queryable.
        def queried():
            r = requests.get(api + "/api/v1/query",
                             params={"query": "sum(echofs_workers{state=\"alive\"})"}, timeout=2)
            result = r.json()["data"]["result"]
            return result and float(result[0]["value"][1]) == 3
        wait_until(queried, 30, interval=0.5, what="prometheus to answer a query")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
