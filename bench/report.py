#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""report.py - turn one bench/run.sh run into the table and latest.json.

Reads WORK/facts.env (KEY=VALUE lines written by run.sh, by
bench/ec_bench --facts and, prefixed ecc_, by bench/ec_cluster.sh) and the load
generator's JSON (WORK/nginx-4k.json, small-upload.json,
small-download.json, small-download-nocache.json, and for the S3 lines
s3-large.json, s3-small-put.json, s3-small-get.json); prints each figure
with its baseline, ratio, target (issue 16's) and PASS/FAIL, each daemon's
CPU per GiB or per 1,000 requests, and the latest `make bench-million`
result (--million, written by bench/million.sh) with its date and commit;
writes all of it, the machine and the settings to --out. Exits 0, or 1
with --strict when a target of this run is missed (the million-file
targets are another run's and never fail it). Standard library only.
"""

import argparse
import json
import os
import sys

MIB = 1048576
GIB = 1073741824


def read_facts(path):
    facts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                key, value = line.split("=", 1)
                facts[key] = value
    return facts


def num(facts, key):
    return float(facts[key])


def read_loadgen(work, name):
    with open(os.path.join(work, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def fmt(value, unit):
    if value is None:
        return "-"
    if unit in ("MiB/s", "ops/s", "req/s"):
        return f"{value:,.1f} {unit}"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "s/GiB":
        return f"{value:.2f} s/GiB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value} {unit}"


# The targets `make bench` judges: issue 16's table (the second performance
# round). The first round's (issue 5: 0.75 of dd/3, 0.6 of dd, 0.35 of
# nginx, 0.15 of nginx 4 KiB for uploads, p99 < 50 ms, RSS < 200 MiB) are
# history in docs/PERFORMANCE.md, no longer judged.
TARGETS_FROM = "issue 16 (second performance round)"


def master_peaks(facts):
    """Every EchoFS master's VmHWM in this run, MiB by name: the cluster's
    first master over its whole life (REST and S3 phases), the one restarted
    with CHUNK_CACHE_SIZE=0, and the EC cluster's and AWS mode's when those
    phases ran."""
    sources = (("cluster", "s3_master_vmhwm_kib"), ("cluster_nocache", "nocache_master_vmhwm_kib"),
               ("ec_cluster", "ecc_master_vmhwm_kib"), ("aws_mode", "aws_master_vmhwm_kib"))
    return {name: int(facts[key]) / 1024 for name, key in sources if facts.get(key)}


def build(facts, lg):
    """Returns (figures, baselines, targets, ratios) as plain dicts and
    lists: targets are judged (pass True/False), ratios are the other
    figures' ratios to a baseline, shown for orientation (pass None)."""
    large_mib = int(facts["large_bytes"]) // MIB
    large_gib = int(facts["large_bytes"]) / GIB
    conc = int(facts["concurrency"])
    up_gib = int(facts["upload_bytes"]) / GIB

    baselines = {
        "dd_random_mib_s": {"label": f"dd conv=fsync, {large_mib} MiB random", "unit": "MiB/s",
                            "value": num(facts, "dd_random_mib_s")},
        "dd_text_mib_s": {"label": f"dd conv=fsync, {large_mib} MiB text", "unit": "MiB/s",
                          "value": num(facts, "dd_text_mib_s")},
        "nginx_random_mib_s": {"label": f"nginx GET, {large_mib} MiB random", "unit": "MiB/s",
                               "value": num(facts, "nginx_random_mib_s")},
        "nginx_text_mib_s": {"label": f"nginx GET, {large_mib} MiB text", "unit": "MiB/s",
                             "value": num(facts, "nginx_text_mib_s")},
        "nginx_4k_req_s": {"label": f"nginx GET 4 KiB, c={conc}", "unit": "req/s",
                           "value": lg["nginx-4k"]["ops_per_s"],
                           "p50_ms": lg["nginx-4k"]["p50_ms"], "p99_ms": lg["nginx-4k"]["p99_ms"],
                           "errors": lg["nginx-4k"]["errors"]},
    }
    for key in ("dd_random", "dd_text", "nginx_random", "nginx_text"):
        baselines[key + "_mib_s"]["samples"] = [float(x) for x in facts[key + "_samples"].split()]
        baselines[key + "_mib_s"]["statistic"] = "median"
    b = {k: v["value"] for k, v in baselines.items()}

    workers_kib = sorted(int(v) for k, v in facts.items()
                         if k.startswith("worker") and k.endswith("_vmhwm_kib"))
    stored_text = int(facts.get("stored_text_bytes") or 0)
    peaks = master_peaks(facts)
    peak_of = max(peaks, key=peaks.get)
    figures = {
        "upload_random_mib_s": {"label": f"upload {large_mib} MiB random", "unit": "MiB/s",
                                "value": num(facts, "upload_random_mib_s")},
        "upload_text_mib_s": {"label": f"upload {large_mib} MiB text", "unit": "MiB/s",
                              "value": num(facts, "upload_text_mib_s")},
        "download_random_mib_s": {"label": f"download {large_mib} MiB random", "unit": "MiB/s",
                                  "value": num(facts, "download_random_mib_s")},
        "download_text_mib_s": {"label": f"download {large_mib} MiB text", "unit": "MiB/s",
                                "value": num(facts, "download_text_mib_s")},
        "small_download_ops_s": {"label": f"4 KiB downloads, c={conc}", "unit": "ops/s",
                                 "value": lg["small-download"]["ops_per_s"]},
        "small_download_p50_ms": {"label": "4 KiB downloads p50", "unit": "ms",
                                  "value": lg["small-download"]["p50_ms"]},
        "small_download_p99_ms": {"label": "4 KiB downloads p99", "unit": "ms",
                                  "value": lg["small-download"]["p99_ms"]},
        "small_download_nocache_ops_s": {"label": f"4 KiB downloads, c={conc}, no chunk cache",
                                         "unit": "ops/s",
                                         "value": lg["small-download-nocache"]["ops_per_s"],
                                         "settings": "CHUNK_CACHE_SIZE=0 (master restarted)"},
        "small_download_nocache_p50_ms": {"label": "4 KiB downloads, no cache, p50", "unit": "ms",
                                          "value": lg["small-download-nocache"]["p50_ms"]},
        "small_download_nocache_p99_ms": {"label": "4 KiB downloads, no cache, p99", "unit": "ms",
                                          "value": lg["small-download-nocache"]["p99_ms"]},
        "small_upload_ops_s": {"label": f"4 KiB uploads, c={conc}", "unit": "ops/s",
                               "value": lg["small-upload"]["ops_per_s"]},
        "small_upload_p50_ms": {"label": "4 KiB uploads p50", "unit": "ms",
                                "value": lg["small-upload"]["p50_ms"]},
        "small_upload_p99_ms": {"label": "4 KiB uploads p99", "unit": "ms",
                                "value": lg["small-upload"]["p99_ms"]},
        "master_peak_rss_mib": {"label": "master peak RSS after the 4 KiB phases", "unit": "MiB",
                                "value": int(facts["master_vmhwm_kib"]) / 1024},
        "master_peak_rss_whole_bench_mib": {"label": "master peak RSS, whole bench",
                                            "unit": "MiB", "value": peaks[peak_of],
                                            "peak_of": peak_of, "by_master": peaks},
        "worker_peak_rss_mib": {"label": "worker peak RSS, largest of 3", "unit": "MiB",
                                "value": workers_kib[-1] / 1024 if workers_kib else None,
                                "all": [k / 1024 for k in workers_kib]},
        "cpu_s_per_gib_uploaded": {"label": "CPU s per GiB uploaded, both files",
                                   "unit": "s/GiB",
                                   "value": num(facts, "upload_cpu_s") / up_gib,
                                   "random": num(facts, "upload_random_cpu_s") / large_gib,
                                   "text": num(facts, "upload_text_cpu_s") / large_gib},
        "cpu_s_per_gib_uploaded_random": {"label": "CPU s per GiB uploaded, random",
                                          "unit": "s/GiB", "daemons": "master + workers",
                                          "value": num(facts, "upload_random_cpu_s") / large_gib},
        "text_compression": {"label": "text file: size / stored_bytes", "unit": "x",
                             "value": int(facts["large_bytes"]) / stored_text
                             if stored_text else None},
    }
    f = {k: v["value"] for k, v in figures.items()}
    # The load generator run behind each 4 KiB figure, by key prefix
    # (longest first: small_download_nocache_ before small_download_).
    phase_of = (("small_download_nocache", "small-download-nocache"),
                ("small_download", "small-download"), ("small_upload", "small-upload"))
    for prefix, name in phase_of:
        figures[prefix + "_ops_s"]["errors"] = lg[name]["errors"]

    def ratio_entry(figure, baseline_desc, baseline, minimum, baseline_unit=None):
        ratio = f[figure] / baseline if baseline else None
        if baseline_unit is None:
            baseline_unit = "req/s" if "ops_s" in figure else figures[figure]["unit"]
        return {"figure": figure, "value": f[figure], "unit": figures[figure]["unit"],
                "baseline": baseline_desc, "baseline_value": baseline,
                "baseline_unit": baseline_unit,
                "ratio": ratio,
                "target": f"ratio >= {minimum}" if minimum is not None else None,
                "pass": (ratio is not None and ratio >= minimum) if minimum is not None else None}

    def value_entry(figure, op, limit, label):
        value = f[figure]
        ok = value is not None and {"<": value < limit, "<=": value <= limit,
                                    ">=": value >= limit}[op]
        return {"figure": figure, "value": value, "unit": figures[figure]["unit"],
                "baseline": None, "baseline_value": None, "ratio": None,
                "target": f"{op} {label}", "pass": ok}

    targets = [
        value_entry("cpu_s_per_gib_uploaded_random", "<=", 4.0, "4.0 s/GiB"),
        ratio_entry("upload_random_mib_s", "dd conv=fsync / 3 (3 replicas, one disk)",
                    b["dd_random_mib_s"] / 3, 0.7),
        ratio_entry("upload_text_mib_s", "dd conv=fsync", b["dd_text_mib_s"], 0.25),
        ratio_entry("download_random_mib_s", "nginx large file", b["nginx_random_mib_s"], 0.5),
        ratio_entry("small_download_ops_s", "nginx 4 KiB", b["nginx_4k_req_s"], 0.6),
        ratio_entry("small_download_nocache_ops_s", "nginx 4 KiB", b["nginx_4k_req_s"], 0.35),
        value_entry("small_upload_ops_s", ">=", 2600, "2,600/s"),
        value_entry("small_upload_p99_ms", "<", 25, "25 ms"),
        value_entry("master_peak_rss_whole_bench_mib", "<", 150, "150 MiB"),
    ]
    ratios = [
        ratio_entry("download_text_mib_s", "nginx large file", b["nginx_text_mib_s"], None),
        ratio_entry("small_download_nocache_ops_s", "4 KiB downloads with the chunk cache",
                    f["small_download_ops_s"], None, "ops/s"),
        ratio_entry("small_upload_ops_s", "nginx 4 KiB", b["nginx_4k_req_s"], None),
    ]
    # A phase with failed requests does not pass, whatever its rate.
    for t in targets:
        for prefix, name in phase_of:
            if t["figure"].startswith(prefix + "_"):
                if lg[name]["errors"]:
                    t["pass"] = False
                break
    return figures, baselines, targets, ratios


# The phases whose CPU run.sh records per daemon (cpu_PHASE_master_s,
# cpu_PHASE_worker<N>_s): key, label, and what the CPU is divided by.
CPU_PHASES = (("upload_random", "upload {mib} MiB random", "GiB"),
              ("upload_text", "upload {mib} MiB text", "GiB"),
              ("download_random", "download {mib} MiB random", "GiB"),
              ("download_text", "download {mib} MiB text", "GiB"),
              ("small_upload", "4 KiB uploads", "small-upload"),
              ("small_download", "4 KiB downloads", "small-download"),
              ("small_download_nocache", "4 KiB downloads, no chunk cache",
               "small-download-nocache"))


def build_cpu(facts, lg):
    """CPU seconds (user + system, /proc/PID/stat around the phase) of each
    daemon per GiB of a large transfer or per 1,000 requests of a 4 KiB
    phase: the master, the workers summed, the largest worker, and all
    together. The clients (curl, loadgen) are not counted."""
    large_mib = int(facts["large_bytes"]) // MIB
    large_gib = int(facts["large_bytes"]) / GIB
    count = int(facts["workers"])
    out = {}
    for key, label, per in CPU_PHASES:
        master = num(facts, f"cpu_{key}_master_s")
        workers = [num(facts, f"cpu_{key}_worker{i}_s") for i in range(1, count + 1)]
        if per == "GiB":
            amount, unit, what = large_gib, "s/GiB", {"bytes": int(facts["large_bytes"])}
        else:
            amount, unit, what = lg[per]["ops"] / 1000, "s/1000 requests", {"requests": lg[per]["ops"]}
        amount = amount or None  # a phase of no requests has no per-request cost

        def per_unit(seconds, amount=amount):
            return seconds / amount if amount else None
        entry = {"label": label.format(mib=large_mib), "unit": unit,
                 "master": per_unit(master), "workers_sum": per_unit(sum(workers)),
                 "workers_max": per_unit(max(workers)),
                 "workers": [per_unit(w) for w in workers],
                 "total": per_unit(master + sum(workers)),
                 "cpu_s": {"master": master, "workers": workers}}
        entry.update(what)
        out[key] = entry
    return out


def print_cpu(cpu):
    print()
    print("CPU by daemon: user + system seconds from /proc/PID/stat around each phase"
          " (curl and loadgen not counted)")
    w = 44
    print(f"{'phase':{w}} {'per':<15} {'master':>8} {'workers':>8} {'largest':>8} {'all':>8}")

    def c(v, unit):
        if v is None:
            return "-"
        return f"{v:.2f}" if unit == "s/GiB" else f"{v:.3f}"
    for entry in cpu.values():
        label = entry["label"]
        per = "GiB"
        if "requests" in entry:
            label += f" ({entry['requests']:,} req)"
            per = "1,000 requests"
        u = entry["unit"]
        print(f"{label:{w}} {per:<15} {c(entry['master'], u):>8} {c(entry['workers_sum'], u):>8} "
              f"{c(entry['workers_max'], u):>8} {c(entry['total'], u):>8}")
    print("workers: the three summed; largest: the busiest worker alone.")


def build_aws(facts, figures, baselines):
    """The AWS-mode phase (S3 chunks on the local s3rver): its own baselines
    (s3rver alone, curl PUT/GET of one object per file) and figures, each
    with its ratios to the worker mode of the same run, to s3rver alone and
    to dd/nginx. No targets. Returns None when the phase did not run."""
    if "aws_upload_random_mib_s" not in facts:
        return None
    large = int(facts["large_bytes"])
    large_mib = large // MIB
    gib = large / GIB
    s3_baselines = {}
    for op, verb in (("put", "PUT"), ("get", "GET")):
        for kind in ("random", "text"):
            key = f"s3_{op}_{kind}_mib_s"
            s3_baselines[key] = {"label": f"s3rver alone: curl {verb}, {large_mib} MiB {kind}",
                                 "unit": "MiB/s", "value": num(facts, key),
                                 "samples": [float(x) for x in
                                             facts[f"s3_{op}_{kind}_samples"].split()],
                                 "statistic": "median"}

    def ratio(a, b):
        return a / b if a is not None and b else None

    aws = {}
    for op, s3op, base in (("upload", "put", "dd"), ("download", "get", "nginx")):
        for kind in ("random", "text"):
            key = f"aws_{op}_{kind}_mib_s"
            value = num(facts, key)
            base_key = f"{base}_{kind}_mib_s"
            aws[key] = {"label": f"AWS mode: {op} {large_mib} MiB {kind}", "unit": "MiB/s",
                        "value": value,
                        "vs_worker_mode": ratio(value, figures[f"{op}_{kind}_mib_s"]["value"]),
                        "vs_s3rver": ratio(value, s3_baselines[f"s3_{s3op}_{kind}_mib_s"]["value"]),
                        "vs_baseline": ratio(value, baselines[base_key]["value"]),
                        "baseline": base_key}
    up_cpu = num(facts, "aws_upload_random_cpu_s") + num(facts, "aws_upload_text_cpu_s")
    down_cpu = num(facts, "aws_download_random_cpu_s") + num(facts, "aws_download_text_cpu_s")
    worker_down_cpu = None
    if "download_random_cpu_s" in facts:
        worker_down_cpu = (num(facts, "download_random_cpu_s")
                           + num(facts, "download_text_cpu_s")) / (2 * gib)
    daemons = "master+s3rver" + ("+DynamoDB Local" if facts["aws_metadata"] == "dynamodb" else "")
    names = ["master", "s3rver"] + (["dynamodb"] if facts["aws_metadata"] == "dynamodb" else [])

    def split(op):
        """CPU s per GiB of each daemon over both files of one operation."""
        return {n: (num(facts, f"aws_{op}_random_{n}_cpu_s")
                    + num(facts, f"aws_{op}_text_{n}_cpu_s")) / (2 * gib) for n in names}
    aws["aws_cpu_s_per_gib_uploaded"] = {
        "label": "AWS mode: CPU s per GiB uploaded", "daemons": daemons, "unit": "s/GiB",
        "value": up_cpu / (2 * gib),
        "random": num(facts, "aws_upload_random_cpu_s") / gib,
        "text": num(facts, "aws_upload_text_cpu_s") / gib,
        "by_daemon": split("upload"),
        "vs_worker_mode": ratio(up_cpu / (2 * gib), figures["cpu_s_per_gib_uploaded"]["value"]),
        "vs_s3rver": None, "vs_baseline": None}
    aws["aws_cpu_s_per_gib_downloaded"] = {
        "label": "AWS mode: CPU s per GiB downloaded", "daemons": daemons, "unit": "s/GiB",
        "value": down_cpu / (2 * gib),
        "by_daemon": split("download"),
        "vs_worker_mode": ratio(down_cpu / (2 * gib), worker_down_cpu),
        "vs_s3rver": None, "vs_baseline": None}
    aws["aws_master_peak_rss_mib"] = {
        "label": "AWS mode: master peak RSS (VmHWM)", "unit": "MiB",
        "value": int(facts["aws_master_vmhwm_kib"]) / 1024,
        "vs_worker_mode": None, "vs_s3rver": None, "vs_baseline": None}
    aws["aws_s3rver_peak_rss_mib"] = {
        "label": "AWS mode: s3rver peak RSS (VmHWM)", "unit": "MiB",
        "value": int(facts["aws_s3rver_vmhwm_kib"]) / 1024,
        "vs_worker_mode": None, "vs_s3rver": None, "vs_baseline": None}
    if "aws_dynamodb_vmhwm_kib" in facts:
        aws["aws_dynamodb_peak_rss_mib"] = {
            "label": "AWS mode: DynamoDB Local peak RSS", "unit": "MiB",
            "value": int(facts["aws_dynamodb_vmhwm_kib"]) / 1024,
            "vs_worker_mode": None, "vs_s3rver": None, "vs_baseline": None}
    return {"metadata": facts["aws_metadata"],
            "chunks": f"s3rver {facts.get('s3rver_version', '?')} "
                      f"(Node.js {facts.get('node_version', '?')})",
            "baselines": s3_baselines, "figures": aws}


def build_s3(work, facts, figures, lg):
    """The S3 lines (issue 13): the same cluster's S3 endpoint, each figure
    as a ratio to the same operation through the REST API in this run,
    with its target (large >= 0.9x, 4 KiB >= 0.8x). Returns None when the
    phase did not run (an older run.sh)."""
    path = os.path.join(work, "s3-large.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        large = json.load(f)
    s3lg = {name: read_loadgen(work, name) for name in ("s3-small-put", "s3-small-get")}
    large_mib = int(facts["large_bytes"]) // MIB
    conc = int(facts["concurrency"])
    signer = facts.get("s3_signer", "curl")
    rows = (
        ("s3_put_large_mib_s", f"S3 PUT {large_mib} MiB random (boto3)", "MiB/s",
         large["put_mib_s"], "upload_random_mib_s", 0.9, None),
        ("s3_get_large_mib_s", f"S3 GET {large_mib} MiB random (boto3)", "MiB/s",
         large["get_mib_s"], "download_random_mib_s", 0.9, None),
        ("s3_curl_put_large_mib_s", f"S3 PUT {large_mib} MiB random (curl)", "MiB/s",
         num(facts, "s3_curl_put_mib_s"), "upload_random_mib_s", None, None),
        ("s3_curl_get_large_mib_s", f"S3 GET {large_mib} MiB random (curl)", "MiB/s",
         num(facts, "s3_curl_get_mib_s"), "download_random_mib_s", None, None),
        ("s3_small_put_ops_s", f"S3 PUT 4 KiB, c={conc} (loadgen, {signer} signer)", "ops/s",
         s3lg["s3-small-put"]["ops_per_s"], "small_upload_ops_s", 0.8, "s3-small-put"),
        ("s3_small_get_ops_s", f"S3 GET 4 KiB, c={conc} (loadgen, {signer} signer)", "ops/s",
         s3lg["s3-small-get"]["ops_per_s"], "small_download_ops_s", 0.8, "s3-small-get"),
    )
    out = {}
    for key, label, unit, value, native, minimum, lg_name in rows:
        base = figures[native]["value"]
        ratio = value / base if base else None
        fig = {"label": label, "unit": unit, "value": value, "native": native,
               "native_value": base, "ratio": ratio,
               "target": f"ratio >= {minimum}" if minimum else None,
               "pass": ratio is not None and ratio >= minimum if minimum else None}
        if lg_name:
            run = s3lg[lg_name]
            native_errors = figures[native].get("errors", 0)
            fig.update({"p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"],
                        "errors": run["errors"], "native_errors": native_errors})
            if run["errors"]:
                fig["pass"] = False
        out[key] = fig
    large_gib = int(facts["large_bytes"]) / GIB
    rest_cpu = None
    if "download_random_cpu_s" in facts:
        rest_cpu = num(facts, "upload_random_cpu_s") + num(facts, "download_random_cpu_s")
    return {
        "endpoint": f"the cluster's master, S3_PORT {facts.get('s3_port', '?')}",
        "large_client": large["client"] + "; put_object, one request (no multipart)",
        "small_client": "bench/loadgen s3put/s3get (libcurl SigV4, UNSIGNED-PAYLOAD, keep-alive)",
        "figures": out,
        "large_client_cpu_s": {"put": large["put_client_cpu_s"], "get": large["get_client_cpu_s"]},
        "large_cluster_cpu_s_per_gib": {
            "s3_put_get": num(facts, "s3_large_cpu_s") / large_gib,
            "s3_curl_put_get": num(facts, "s3_curl_large_cpu_s") / large_gib,
            "rest_upload_download": rest_cpu / large_gib if rest_cpu is not None else None},
        "master_peak_rss_mib_after": int(facts["s3_master_vmhwm_kib"]) / 1024,
        "loadgen": s3lg,
        "large": large,
    }


def print_s3(s3):
    print()
    if s3 is None:
        print("S3 endpoint: not measured.")
        return
    print("S3 endpoint (issue 13): the same cluster through its S3 listener, each figure as a"
          " ratio to the same operation through the REST API in this run")
    w = 40
    print(f"{'figure':{w}} {'value':>16}  {'REST API':>16}  {'ratio':>6}  {'target':<14} result")
    for fig in s3["figures"].values():
        ratio = "-" if fig["ratio"] is None else f"{fig['ratio']:.2f}"
        note = ""
        if "p99_ms" in fig:
            note = f"  p50 {fig['p50_ms']:.2f} / p99 {fig['p99_ms']:.2f} ms"
            if fig["errors"]:
                note += f", {fig['errors']} errors"
        target = fig["target"] or "-"
        result = "-" if fig["pass"] is None else ("PASS" if fig["pass"] else "FAIL")
        print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}  "
              f"{fmt(fig['native_value'], fig['unit']):>16}  {ratio:>6}  {target:<14} "
              f"{result}{note}")
    cpu = s3["large_cluster_cpu_s_per_gib"]
    rest = "-" if cpu["rest_upload_download"] is None else f"{cpu['rest_upload_download']:.2f}"
    print(f"  cluster CPU s/GiB, large PUT+GET: S3 boto3 {cpu['s3_put_get']:.2f},"
          f" S3 curl {cpu['s3_curl_put_get']:.2f}, REST {rest};"
          f" boto3's own CPU: PUT {s3['large_client_cpu_s']['put']:.2f} s,"
          f" GET {s3['large_client_cpu_s']['get']:.2f} s")
    print("Large: boto3 put_object/get_object, one request each (put_object, no multipart;"
          " targets judged here), and curl --aws-sigv4 (the REST lines' client, no target),"
          " against curl's REST upload/download of the random file; 4 KiB: the same loadgen,"
          " concurrency and duration as the REST lines.")


EC_LAYOUTS = ((4, 2), (10, 4))
EC_OPS = (("encode", "encode (M parity shards)"),
          ("rebuild_1", "rebuild 1 lost data shard"),
          ("rebuild_m", "rebuild M lost data shards"))


def build_ec(facts):
    """The erasure coding micro benchmark (bench/ec_bench, one thread, the
    thread's CPU clock): per layout, memcpy of the stripe's payload (the
    baseline) and each operation in MiB of payload per CPU second with its
    ratio to that memcpy, plus the per-call decode table setup. No
    targets. None when it did not run."""
    layouts = {}
    for k, m in EC_LAYOUTS:
        key = f"ec_{k}_{m}"
        if key + "_memcpy_mib_s" not in facts:
            continue
        figures = {}
        for op, label in EC_OPS:
            mib_s = num(facts, f"{key}_{op}_mib_s")
            figures[op] = {"label": label, "unit": "MiB/s", "value": mib_s,
                           "ratio_to_memcpy": num(facts, f"{key}_{op}_ratio"),
                           "cpu_s_per_gib": 1024 / mib_s if mib_s else None}
        layouts[f"ec:{k}+{m}"] = {
            "stripe_bytes": int(facts[key + "_payload_bytes"]),
            "shard_len": int(facts[key + "_shard_len"]),
            "baseline": {"label": "memcpy of the stripe's payload", "unit": "MiB/s",
                         "value": num(facts, key + "_memcpy_mib_s")},
            "figures": figures,
            "decode_setup_us": num(facts, key + "_setup_us"),
            "rebuild_m_us": num(facts, key + "_rebuild_m_us"),
        }
    return layouts or None


def print_ec(ec):
    print()
    if ec is None:
        print("Erasure coding: not measured.")
        return
    print("Erasure coding (src/common/ec.c, ISA-L): one thread, MiB of payload per CPU second,"
          " ratio to memcpy of the same bytes in this run (no targets)")
    w = 34
    for name, layout in ec.items():
        base = layout["baseline"]["value"]
        print(f"{name} on {layout['stripe_bytes'] // MIB} MiB stripes "
              f"(shards of {layout['shard_len']} bytes): memcpy {fmt(base, 'MiB/s')}")
        for fig in layout["figures"].values():
            print(f"  {fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}  "
                  f"{fig['ratio_to_memcpy']:5.2f}x memcpy  {fig['cpu_s_per_gib']:.3f} CPU s/GiB")
        print(f"  {'decode table setup per call':{w}} {layout['decode_setup_us']:>12.2f} us  "
              f"({100 * layout['decode_setup_us'] / layout['rebuild_m_us']:.1f}% of rebuilding M)")


def build_ecc(facts):
    """The EC cluster phase (bench/ec_cluster.sh, facts ecc_*): one file of
    the same size stored as replicas:3 and another as ec:4+2 on one
    6-worker cluster. Figures, and the issue 17 targets as ratios: EC
    upload / replicated upload >= 0.8, EC healthy download / replicated
    download >= 0.9, the EC file's disk / its stored size <= 1.55 (against
    3 for replicas:3). Degraded / healthy download and the rebuild have no
    target. None when the phase did not run."""
    if "ecc_upload_ec_mib_s" not in facts:
        return None
    large = int(facts["ecc_large_bytes"])
    gib = large / GIB
    mib = large // MIB

    def f(key):
        return num(facts, "ecc_" + key)

    def ratio(a, b):
        return a / b if b else None

    figures = {}
    for op in ("upload", "download"):
        for tag, policy in (("rep", "replicas:3"), ("ec", "ec:4+2")):
            figures[f"{op}_{tag}_mib_s"] = {
                "label": f"{op} {mib} MiB random, {policy}", "unit": "MiB/s",
                "value": f(f"{op}_{tag}_mib_s"),
                "master_cpu_s_per_gib": f(f"{op}_{tag}_master_cpu_s") / gib,
                "workers_cpu_s_per_gib": f(f"{op}_{tag}_workers_cpu_s") / gib}
    for name, label in (("degraded1", "1 worker down"), ("degraded2", "2 workers down"),
                        ("rebuilt", "after the rebuild")):
        figures[f"download_{name}_mib_s"] = {
            "label": f"download ec:4+2, {label}", "unit": "MiB/s",
            "value": f(f"download_{name}_mib_s"),
            "master_cpu_s_per_gib": f(f"download_{name}_master_cpu_s") / gib,
            "workers_cpu_s_per_gib": f(f"download_{name}_workers_cpu_s") / gib}
    figures["rebuild_mib_s"] = {
        "label": "rebuild of a lost worker's shards", "unit": "MiB/s",
        "value": f("rebuild_mib_s"), "seconds": f("rebuild_seconds"),
        "stripes_per_s": int(facts["ecc_rebuild_shards"]) / f("rebuild_seconds")
        if f("rebuild_seconds") else None,
        "shards": int(facts["ecc_rebuild_shards"]), "stripes": int(facts["ecc_stripes"]),
        "degraded_seen": int(facts.get("ecc_degraded_seen") or 0),
        "shard_bytes": int(facts["ecc_rebuild_shard_bytes"]),
        "repair_bandwidth": facts.get("ecc_repair_bandwidth"),
        "master_cpu_s": f("rebuild_master_cpu_s"), "workers_cpu_s": f("rebuild_workers_cpu_s")}
    stored = {tag: int(facts.get(f"ecc_stored_{tag}_bytes") or large) for tag in ("rep", "ec")}
    for tag, policy in (("rep", "replicas:3"), ("ec", "ec:4+2")):
        disk = int(facts[f"ecc_disk_{tag}_bytes"])
        figures[f"disk_{tag}_ratio"] = {
            "label": f"disk used / stored size, {policy}", "unit": "x",
            "value": disk / stored[tag], "disk_bytes": disk, "stored_bytes": stored[tag],
            "metric_disk_bytes": int(facts.get(
                "ecc_metric_disk_" + ("replicas" if tag == "rep" else "ec") + "_bytes") or 0)}
    v = {k: x["value"] for k, x in figures.items()}
    targets = [
        {"figure": "upload_ec_mib_s", "label": "EC upload / replicated upload",
         "ratio": ratio(v["upload_ec_mib_s"], v["upload_rep_mib_s"]), "target": ">= 0.8",
         "minimum": 0.8},
        {"figure": "download_ec_mib_s", "label": "EC healthy download / replicated download",
         "ratio": ratio(v["download_ec_mib_s"], v["download_rep_mib_s"]), "target": ">= 0.9",
         "minimum": 0.9},
        {"figure": "download_degraded1_mib_s", "label": "EC download, 1 down / healthy",
         "ratio": ratio(v["download_degraded1_mib_s"], v["download_ec_mib_s"]), "target": None},
        {"figure": "download_degraded2_mib_s", "label": "EC download, 2 down / healthy",
         "ratio": ratio(v["download_degraded2_mib_s"], v["download_ec_mib_s"]), "target": None},
        {"figure": "disk_ec_ratio", "label": "EC disk / stored size",
         "ratio": v["disk_ec_ratio"], "target": "<= 1.55", "maximum": 1.55},
        {"figure": "disk_rep_ratio", "label": "replicas:3 disk / stored size",
         "ratio": v["disk_rep_ratio"], "target": None},
        {"figure": "disk_ec_ratio", "label": "EC disk / replicated disk",
         "ratio": ratio(v["disk_ec_ratio"], v["disk_rep_ratio"]), "target": None},
    ]
    for t in targets:
        if t["target"] is None:
            t["pass"] = None
        elif "minimum" in t:
            t["pass"] = t["ratio"] is not None and t["ratio"] >= t.pop("minimum")
        else:
            t["pass"] = t["ratio"] is not None and t["ratio"] <= t.pop("maximum")
    return {"workers": int(facts["ecc_workers"]), "file_bytes": large,
            "figures": figures, "ratios": targets,
            "sha256_with_2_down_ok": facts.get("ecc_degraded2_sha_ok") == "1",
            "master_peak_rss_mib": int(facts["ecc_master_vmhwm_kib"]) / 1024}


def print_ecc(facts, ecc):
    print()
    if ecc is None:
        print(f"EC cluster: skipped ({facts.get('ecc_skipped', 'not measured')}).")
        return
    print(f"EC cluster (bench/ec_cluster.sh, issue 17): 1 master + {ecc['workers']} workers,"
          f" {ecc['file_bytes'] // MIB} MiB random files as replicas:3 and as ec:4+2")
    w = 44
    print(f"{'figure':{w}} {'value':>14}  {'master CPU':>12}  {'workers CPU':>12}")
    for key, fig in ecc["figures"].items():
        if key.startswith("disk_") or key == "rebuild_mib_s":
            continue
        print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>14}  "
              f"{fig['master_cpu_s_per_gib']:>6.2f} s/GiB  {fig['workers_cpu_s_per_gib']:>6.2f} s/GiB")
    rb = ecc["figures"]["rebuild_mib_s"]
    print(f"{rb['label']:{w}} {fmt(rb['value'], rb['unit']):>14}  {rb['shards']} shards of"
          f" {rb['stripes']} stripes in {rb['seconds']:.2f} s"
          f" ({rb['stripes_per_s'] or 0:.1f} stripes/s; REPAIR_BANDWIDTH"
          f" {rb['repair_bandwidth']}); CPU master {rb['master_cpu_s']:.2f} s,"
          f" workers {rb['workers_cpu_s']:.2f} s")
    for tag in ("rep", "ec"):
        fig = ecc["figures"][f"disk_{tag}_ratio"]
        print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>14}  "
              f"({fig['disk_bytes']:,} bytes on disk, echofs_disk_bytes {fig['metric_disk_bytes']:,})")
    print(f"{'ratio':{w}} {'value':>14}  {'target':<8} result")
    for t in ecc["ratios"]:
        result = "-" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        value = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
        print(f"{t['label']:{w}} {value:>14}  {t['target'] or '-':<8} {result}")
    print("  the download with 2 workers down is byte-identical: "
          + ("yes" if ecc["sha256_with_2_down_ok"] else "NOT CHECKED"))


def print_aws(facts, aws):
    print()
    if aws is None:
        print(f"AWS mode: skipped ({facts.get('aws_skipped', 'not measured')}).")
        return
    w = 48
    print(f"AWS mode: S3 chunks on the local {aws['chunks']}, {aws['metadata']} metadata,"
          " 1 master, no workers (no targets: ratios for orientation)")
    for b in aws["baselines"].values():
        print(f"{b['label']:{w}} {fmt(b['value'], b['unit']):>16}")

    def r(v):
        return "-" if v is None else (f"{v:.2f}" if v >= 0.1 else f"{v:.3f}")

    print(f"{'figure':{w}} {'value':>16}  {'/ worker mode':>13}  {'/ s3rver':>8}  "
          f"{'/ dd or nginx':>13}")
    for fig in aws["figures"].values():
        print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}  "
              f"{r(fig['vs_worker_mode']):>13}  {r(fig['vs_s3rver']):>8}  "
              f"{r(fig['vs_baseline']):>13}")
    for key in ("aws_cpu_s_per_gib_uploaded", "aws_cpu_s_per_gib_downloaded"):
        fig = aws["figures"][key]
        parts = ", ".join(f"{n} {v:.2f}" for n, v in fig["by_daemon"].items())
        print(f"  CPU s per GiB {key.split('_')[-1]}: {parts}")
    print("Ratios: to the same figure in worker mode (3 workers, 3 replicas) of this run; uploads"
          " to s3rver's PUT and dd (one copy), downloads to s3rver's GET and nginx.")


# Issue 16's targets for the million-file run, judged on that run's own
# full/empty ratios (not counted in this run's targets nor by --strict:
# the figures are from another run, on another day perhaps).
MILLION_TARGETS = (("upload_ops_s", "ratio", 0.8, "full/empty >= 0.8"),
                   ("download_ops_s", "ratio", 0.8, "full/empty >= 0.8"),
                   ("worker_restart_serve_ms", "full_below", 10000, "full < 10,000 ms"))
MILLION_HOW = "make bench-million (N=1000000, BACKENDS=\"sqlite postgres\"; minutes)"


def build_million(path, facts):
    """The latest `make bench-million` result (bench/million.sh writes it to
    PATH): its date, commit, N and every measurement's empty and full values
    and ratio per backend, with issue 16's million-file targets judged on
    them. {"missing": why, "how": the command} when there is none."""
    if not path or not os.path.exists(path):
        return {"missing": f"no {path or 'million-file result'}", "how": MILLION_HOW,
                "source": path}
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        results = run["results"]
    except (OSError, ValueError, KeyError) as e:
        return {"missing": f"{path} is unreadable: {e}", "how": MILLION_HOW, "source": path}
    targets = []
    for backend, rows in results.items():
        for key, kind, limit, label in MILLION_TARGETS:
            row = rows.get(key)
            if row is None:
                continue
            value = row["full_over_empty"] if kind == "ratio" else row["full"]
            ok = None
            if isinstance(value, (int, float)):
                ok = value >= limit if kind == "ratio" else value < limit
            targets.append({"backend": backend, "measurement": key, "value": value,
                            "target": label, "pass": ok})
    return {"source": path, "date": run.get("date"), "git_commit": run.get("git_commit"),
            "same_commit_as_this_run": run.get("git_commit") == facts["git_commit"],
            "n": run.get("n"), "backends": run.get("backends"),
            "seconds_each": run.get("seconds_each"), "nproc": run.get("nproc"),
            "loadavg_start": run.get("loadavg_start"), "loadavg_end": run.get("loadavg_end"),
            "results": results, "targets": targets}


def print_million(million):
    print()
    if "missing" in million:
        print(f"Costs at a million files: no result ({million['missing']});"
              f" run {million['how']}.")
        return
    same = "" if million["same_commit_as_this_run"] else ", not this run's commit"
    small = " (fewer than the issue's 1,000,000)" if (million["n"] or 0) < 1000000 else ""
    print(f"Costs at a million files: the latest make bench-million, {million['date']},"
          f" commit {million['git_commit']}{same}; N={million['n']:,}{small}, load"
          f" {million['loadavg_start']} at start ({million['source']}; not judged in this run)")
    w = 34

    def v(x):  # as the file has it: integers whole, the rest with 2 decimals
        if x is None:
            return "-"
        if isinstance(x, int):
            return f"{x:,}"
        if isinstance(x, float):
            return f"{x:,.2f}"
        return str(x)
    for backend, rows in million["results"].items():
        print(f"{backend + ':':{w}} {'empty':>12} {'full':>12} {'full/empty':>10}")
        for key, row in rows.items():
            r = row["full_over_empty"]
            print(f"  {key:{w - 2}} {v(row['empty']):>12} {v(row['full']):>12} "
                  f"{'-' if r is None else f'{r:.2f}':>10}")
    for t in million["targets"]:
        result = "-" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        value = v(t["value"])
        print(f"  issue 16 target, {t['backend']} {t['measurement']}: {value}"
              f" ({t['target']}) {result}")


def print_table(facts, figures, baselines, targets, ratios):
    busy = float(facts["loadavg_start"].split()[0]) >= 0.5 * int(facts["nproc"])
    print()
    print(f"EchoFS benchmark  {facts['date']}  commit {facts['git_commit']}"
          f"{'  (QUICK)' if facts['quick'] == '1' else ''}")
    print(f"machine: {facts['nproc']} CPUs ({facts['cpu_model']}), kernel {facts['kernel']}, "
          f"{facts['fs_type']} on {facts['fs_device']}, load {facts['loadavg_start']} at start, "
          f"{facts['loadavg_end']} at end")
    if busy:
        print("NOTE: the machine was busy (load average >= half the CPUs): "
              "figures are noisy, for orientation only.")
    print()
    w = 40
    print(f"{'baseline':{w}} {'value':>16}  {'p50 / p99':>17}")
    for b in baselines.values():
        extra = ""
        if "p99_ms" in b:
            extra = f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f} ms"
        print(f"{b['label']:{w}} {fmt(b['value'], b['unit']):>16}  {extra:>17}")
    print()
    by_figure = {}
    for t in targets + ratios:
        by_figure.setdefault(t["figure"], []).append(t)
    print(f"Targets: {TARGETS_FROM}.")
    print(f"{'figure':{w}} {'value':>16}  {'baseline':>20}  {'ratio':>6}  {'target':<16} result")
    for key, fig in figures.items():
        notes = []
        if fig.get("errors"):
            notes.append(f"{fig['errors']} errors")
        if key == "master_peak_rss_whole_bench_mib":
            notes.append("peak: " + ", ".join(f"{n} {v:.1f}" for n, v in fig["by_master"].items()))
        note = f"  ({'; '.join(notes)})" if notes else ""
        ts = by_figure.get(key)
        if not ts:
            print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}{note}")
            continue
        for t in ts:
            base = fmt(t["baseline_value"], t["baseline_unit"]) if t["baseline_value"] else "-"
            ratio = "-"
            if t["ratio"] is not None:
                ratio = f"{t['ratio']:.2f}" if t["ratio"] >= 0.1 else f"{t['ratio']:.3f}"
            result = "-" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
            line_note = note
            if t["pass"] is None and t["baseline"]:
                line_note += f"  (/ {t['baseline']})"
            print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}  {base:>20}  "
                  f"{ratio:>6}  {t['target'] or '-':<16} {result}{line_note}")
    passed = sum(1 for t in targets if t["pass"])
    print()
    print(f"{passed} of {len(targets)} targets met.")
    print("Baselines: upload random vs dd/3 (every byte is written 3 times to this one disk);"
          " upload text vs dd (3 copies at ~1/4 size); downloads vs nginx (one HTTP hop)."
          " A ratio without a target is for orientation.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="the run's temp dir")
    ap.add_argument("--out", required=True, help="where to write the JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--million", help="the latest make bench-million JSON, quoted in the report")
    args = ap.parse_args()

    facts = read_facts(os.path.join(args.work, "facts.env"))
    lg = {name: read_loadgen(args.work, name)
          for name in ("nginx-4k", "small-upload", "small-download", "small-download-nocache")}
    figures, baselines, targets, ratios = build(facts, lg)
    cpu = build_cpu(facts, lg)
    million = build_million(args.million, facts)
    aws = build_aws(facts, figures, baselines)
    ec = build_ec(facts)
    s3 = build_s3(args.work, facts, figures, lg)
    print_table(facts, figures, baselines, targets, ratios)
    print_cpu(cpu)
    print_million(million)
    print_s3(s3)
    print_ec(ec)
    ecc = build_ecc(facts)
    print_ecc(facts, ecc)
    print_aws(facts, aws)

    result = {
        "schema": 1,
        "date": facts["date"],
        "git_commit": facts["git_commit"],
        "machine": {
            "nproc": int(facts["nproc"]),
            "kernel": facts["kernel"],
            "cpu_model": facts["cpu_model"],
            "mem_total_mib": int(facts["mem_total_mib"]),
            "loadavg_start": facts["loadavg_start"],
            "loadavg_end": facts["loadavg_end"],
            "filesystem": facts["fs_type"],
            "device": facts["fs_device"],
            "nginx": facts.get("nginx_version"),
        },
        "settings": {
            "quick": facts["quick"] == "1",
            "large_file_bytes": int(facts["large_bytes"]),
            "small_file_bytes": int(facts["small_size"]),
            "small_phase_seconds": float(facts["small_seconds"]),
            "concurrency": int(facts["concurrency"]),
            "baseline_runs": int(facts["baseline_runs"]),
            "workers": int(facts["workers"]),
            "replication_factor": int(facts["replication"]),
            "chunk_size": "default (1 MiB)",
            "metadata": "SQLite",
            "log_level": facts["log_level"],
            "large_file_client": "curl, one request, streaming (-T)",
            "small_file_client": "bench/loadgen (libcurl multi, keep-alive)",
        },
        "baselines": baselines,
        "figures": figures,
        "targets": targets,
        "targets_met": sum(1 for t in targets if t["pass"]),
        "targets_total": len(targets),
        "targets_from": TARGETS_FROM,
        "ratios": ratios,
        "cpu_by_daemon": cpu,
        "million": million,
        "loadgen": lg,
        "s3": s3 if s3 is not None else {"skipped": "not measured"},
        "erasure_coding": ec if ec is not None else {"skipped": "not measured"},
        "ec_cluster": ecc if ecc is not None else {"skipped": facts.get("ecc_skipped",
                                                                       "not measured")},
        "aws_mode": aws if aws is not None else {"skipped": facts.get("aws_skipped",
                                                                     "not measured")},
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"Results: {args.out}")
    if args.strict and result["targets_met"] < result["targets_total"]:
        return 1
    if args.strict and s3 is not None and any(f["pass"] is False for f in s3["figures"].values()):
        return 1
    if args.strict and ecc is not None and any(t["pass"] is False for t in ecc["ratios"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
