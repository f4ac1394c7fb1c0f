"""A storm of /metrics scrapes: the metadata totals are computed once per
second at most, shared by concurrent scrapes, and uploads, downloads and
health go on meanwhile (issue 12, defect 9)."""

import os
import re
import threading
import time

import requests

import echofs_harness as h

SCRAPERS = 16
COMPUTED = "echofs_metadata_stats_computed_total"


def scrape(url: str) -> str:
    r = requests.get(url + "/metrics", timeout=h.HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text[:300]
    return r.text


def sample(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} is not in /metrics"
    return float(m.group(1))


class Storm:
    """SCRAPERS threads scraping /metrics back to back until stopped."""

    def __init__(self, url: str):
        self.url = url
        self.stop = threading.Event()
        self.count = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(SCRAPERS)]

    def run(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                r = session.get(self.url + "/metrics", timeout=h.HTTP_TIMEOUT_S)
                ok = r.status_code == 200
            except requests.RequestException as e:
                ok, r = False, e
            with self.lock:
                self.count += 1
                if not ok:
                    self.errors.append(repr(r)[:200])

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_scrape_storm_computes_totals_once_a_second_and_starves_nothing(cluster):
    m = cluster.start(workers=3)
    c = m.user_client("alice")
    files = {}
    for i in range(5):
        data = os.urandom(200_000 + i)
        files[c.upload(data, f"before-{i}.bin")["file_id"]] = data

    # 1. Scrapes alone: the totals are computed about once a second, not
    # once per scrape.
    before = sample(scrape(m.url), COMPUTED)
    started = time.monotonic()
    with Storm(m.url) as storm:
        time.sleep(3)
    elapsed = time.monotonic() - started
    after = sample(scrape(m.url), COMPUTED)
    assert not storm.errors, storm.errors[:5]
    computed = after - before
    print(f"{storm.count} scrapes in {elapsed:.1f} s: the totals were computed "
          f"{computed:.0f} times")
    assert storm.count >= 20, f"only {storm.count} scrapes"
    assert computed <= elapsed + 2, \
        f"{computed:.0f} computations of the totals for {storm.count} scrapes in " \
        f"{elapsed:.1f} s: not once per second"

    # 2. During a storm, uploads and downloads succeed and health answers
    # within 2 s; a scrape after an upload counts it.
    health = m.client()
    with Storm(m.url) as storm:
        for i in range(8):
            data = os.urandom(300_000 + i)
            f = c.upload(data, f"during-{i}.bin")
            files[f["file_id"]] = data
            t0 = time.monotonic()
            r = health.get("/api/v1/health", timeout=h.HTTP_TIMEOUT_S)
            took = time.monotonic() - t0
            assert r.status_code == 200, r.text
            assert took < 2, f"health took {took:.2f} s during a scrape storm"
            assert c.download(f["file_id"]) == data
            assert sample(scrape(m.url), "echofs_files") == len(files)
    assert not storm.errors, storm.errors[:5]
    for file_id, data in files.items():
        assert c.download(file_id) == data
