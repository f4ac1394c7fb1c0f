"""test_monitoring.py - the monitoring kit of deploy/ (docs/MONITORING.md):
the Prometheus alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), the Grafana dashboard is valid JSON whose every
query is valid PromQL, and every metric the rules and the dashboard name
is one a live master or worker exports.

promtool comes from Debian's package `prometheus` (scripts/install-deps.sh);
the tests that need it skip, saying so, when it is missing.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

import echofs_harness as h
from echofs_harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/echofs.rules.yml"
RULES_TEST = ROOT / "deploy/prometheus/echofs.rules.test.yml"
DASHBOARD = ROOT / "deploy/grafana/echofs.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

METRIC = re.compile(r"\b(echofs_[a-z0-9_]+)\b")
# What Grafana substitutes before it sends a query, for checking the syntax.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                     "$master_job": "echofs-master", "$worker_job": "echofs-worker"}


def promtool() -> str:
    if not Path(PROMTOOL).exists():
        pytest.skip(f"{PROMTOOL} is missing (Debian package prometheus; scripts/install-deps.sh)")
    return PROMTOOL


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def rule_expressions() -> list[str]:
    """Every expr: of the rules file (a small reader: the file is ours and
    keeps each expr either on its line or as a >- block)."""
    exprs, lines = [], RULES.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2) not in (">-", "|", ">"):
            exprs.append(m.group(2))
            continue
        block, indent = [], len(m.group(1))
        for more in lines[i + 1:]:
            if more.strip() and len(more) - len(more.lstrip()) <= indent:
                break
            block.append(more.strip())
        exprs.append(" ".join(block))
    return exprs


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_expressions() -> list[str]:
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    return [t["expr"] for p in walk(dashboard()["panels"]) for t in p.get("targets", [])]


def test_rules_pass_promtool_check():
    r = run_promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout


def test_rules_pass_their_unit_tests():
    r = run_promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_alert_the_issue_asks_for_has_a_unit_test():
    wanted = ["EchofsWorkerDown", "EchofsUnderReplicatedNotFalling", "EchofsWorkerDiskNearlyFull",
              "EchofsHighErrorRate", "EchofsHighLatencyP99", "EchofsScrubFoundCorruption"]
    alerts = re.findall(r"^\s*- alert:\s*(\w+)", RULES.read_text(), re.M)
    tested = set(re.findall(r"alertname:\s*(\w+)", RULES_TEST.read_text()))
    assert set(wanted) <= set(alerts), f"missing alerts: {set(wanted) - set(alerts)}"
    untested = [a for a in alerts if a not in tested]
    assert not untested, f"alerts without a promtool unit test: {untested}"


def test_dashboard_is_importable_json_with_valid_queries(tmp_path):
    d = dashboard()
    assert d["title"] and d["uid"] and d["panels"], "not a Grafana dashboard"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    exprs = dashboard_expressions()
    assert len(exprs) >= 20, f"only {len(exprs)} queries: parsing broke?"
    # promtool has no bare query checker: each query becomes a recording
    # rule, with Grafana's variables replaced as Grafana would.
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
        rules.append({"record": f"echofs:dashboard_query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def metric_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def abort_an_upload(m) -> None:
    """An upload whose client hangs up mid-body (an aborted request)."""
    with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
        s.sendall(b"POST /api/v1/files/upload?name=cut.bin HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + h.token("alice").encode() +
                  b"\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 4096)


def test_every_metric_used_exists_on_a_live_cluster(cluster):
    # A short header deadline, so that a slow connection is closed quickly.
    m = cluster.start(workers=2, master_env={"REPLICATION_FACTOR": 2, "HEADER_TIMEOUT_MS": 200})
    c = m.user_client("alice")
    f = c.upload(os.urandom(200_000), "watched.bin")
    assert c.download(f["file_id"])
    # Counters that only appear after their first event: an aborted request
    # and a connection that never completes its headers.
    abort_an_upload(m)
    slow = socket.create_connection(("127.0.0.1", m.port), timeout=5)
    slow.sendall(b"GET /api/v1/health HTTP/1.1\r\n")

    def scrape(url):
        r = requests.get(url + "/metrics", timeout=h.HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        return metric_names(r.text)

    # echofs_chunks_under_replicated appears after the repair loop's first
    # pass, the others once the abort and the slow close are counted.
    late = {"echofs_chunks_under_replicated", "echofs_ec_stripes_unrecoverable",
            "echofs_http_requests_aborted_total",
            "echofs_http_slow_connections_closed_total"}
    try:
        master = wait_until(lambda: (lambda n: n if late <= n else None)(scrape(m.url)), 15,
                            interval=0.2, what=f"the master to export {sorted(late)}")
    finally:
        slow.close()
    exported = master | set().union(*(scrape(w.url) for w in cluster.workers))

    used = {}
    for where, exprs in (("deploy/prometheus/echofs.rules.yml", rule_expressions()),
                         ("deploy/grafana/echofs.json", dashboard_expressions())):
        for expr in exprs:
            for name in METRIC.findall(expr):
                used.setdefault(name, where)
    assert len(used) >= 25, f"only {sorted(used)} found: parsing broke?"
    missing = sorted(f"{name} (in {where})" for name, where in used.items()
                     if name not in exported)
    assert not missing, ("metrics no live master or worker exports: " + ", ".join(missing) +
                         "; exported: " + ", ".join(sorted(exported)))


def test_rule_reader_sees_every_expression():
    assert len(rule_expressions()) == len(re.findall(r"^\s*expr:", RULES.read_text(), re.M))
    assert all(METRIC.search(e) or "up{" in e for e in rule_expressions())
