#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""report.py - turn one bench/run.sh run into the table and latest.json.

Reads WORK/facts.env (KEY=VALUE lines written by run.sh) and the load
generator's JSON (WORK/nginx-4k.json, small-upload.json,
small-download.json); prints each figure with its baseline, ratio, target
and PASS/FAIL; writes every figure, baseline, ratio, target, the machine
and the settings to --out. Exits 0, or 1 with --strict when a target is
missed. Standard library only.
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


def build(facts, lg):
    """Returns (figures, baselines, targets) as plain dicts and lists."""
    large_mib = int(facts["large_bytes"]) // MIB
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
        "small_upload_ops_s": {"label": f"4 KiB uploads, c={conc}", "unit": "ops/s",
                               "value": lg["small-upload"]["ops_per_s"]},
        "small_upload_p50_ms": {"label": "4 KiB uploads p50", "unit": "ms",
                                "value": lg["small-upload"]["p50_ms"]},
        "small_upload_p99_ms": {"label": "4 KiB uploads p99", "unit": "ms",
                                "value": lg["small-upload"]["p99_ms"]},
        "master_peak_rss_mib": {"label": "master peak RSS (VmHWM)", "unit": "MiB",
                                "value": int(facts["master_vmhwm_kib"]) / 1024},
        "worker_peak_rss_mib": {"label": "worker peak RSS, largest of 3", "unit": "MiB",
                                "value": workers_kib[-1] / 1024 if workers_kib else None,
                                "all": [k / 1024 for k in workers_kib]},
        "cpu_s_per_gib_uploaded": {"label": "CPU s per GiB uploaded (master+workers)",
                                   "unit": "s/GiB",
                                   "value": num(facts, "upload_cpu_s") / up_gib,
                                   "random": num(facts, "upload_random_cpu_s")
                                   / (int(facts["large_bytes"]) / GIB),
                                   "text": num(facts, "upload_text_cpu_s")
                                   / (int(facts["large_bytes"]) / GIB)},
        "text_compression": {"label": "text file: size / stored_bytes", "unit": "x",
                             "value": int(facts["large_bytes"]) / stored_text
                             if stored_text else None},
    }
    f = {k: v["value"] for k, v in figures.items()}
    errors = {name: lg[name]["errors"] for name in ("small-upload", "small-download")}
    figures["small_upload_ops_s"]["errors"] = errors["small-upload"]
    figures["small_download_ops_s"]["errors"] = errors["small-download"]

    def ratio_target(figure, baseline_desc, baseline, minimum):
        ratio = f[figure] / baseline if baseline else None
        return {"figure": figure, "value": f[figure], "unit": figures[figure]["unit"],
                "baseline": baseline_desc, "baseline_value": baseline,
                "baseline_unit": "req/s" if "ops_s" in figure else figures[figure]["unit"],
                "ratio": ratio,
                "target": f"ratio >= {minimum}", "pass": ratio is not None and ratio >= minimum}

    targets = [
        ratio_target("upload_random_mib_s", "dd conv=fsync / 3 (3 replicas, one disk)",
                     b["dd_random_mib_s"] / 3, 0.75),
        ratio_target("upload_text_mib_s", "dd conv=fsync", b["dd_text_mib_s"], 0.6),
        ratio_target("download_random_mib_s", "nginx large file", b["nginx_random_mib_s"], 0.35),
        ratio_target("download_text_mib_s", "nginx large file", b["nginx_text_mib_s"], 0.35),
        ratio_target("small_download_ops_s", "nginx 4 KiB", b["nginx_4k_req_s"], 0.35),
        ratio_target("small_upload_ops_s", "nginx 4 KiB", b["nginx_4k_req_s"], 0.15),
        {"figure": "small_upload_p99_ms", "value": f["small_upload_p99_ms"], "unit": "ms",
         "baseline": None, "baseline_value": None, "ratio": None, "target": "< 50 ms",
         "pass": f["small_upload_p99_ms"] < 50},
        {"figure": "master_peak_rss_mib", "value": f["master_peak_rss_mib"], "unit": "MiB",
         "baseline": None, "baseline_value": None, "ratio": None, "target": "< 200 MiB",
         "pass": f["master_peak_rss_mib"] < 200},
    ]
    # A phase with failed requests does not pass, whatever its rate.
    for t in targets:
        if t["figure"].startswith("small_upload") and errors["small-upload"]:
            t["pass"] = False
        if t["figure"].startswith("small_download") and errors["small-download"]:
            t["pass"] = False
    return figures, baselines, targets


def print_table(facts, figures, baselines, targets):
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
    for t in targets:
        by_figure.setdefault(t["figure"], []).append(t)
    print(f"{'figure':{w}} {'value':>16}  {'baseline':>20}  {'ratio':>6}  {'target':<14} result")
    for key, fig in figures.items():
        ts = by_figure.get(key)
        if not ts:
            line = f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}"
            if key == "small_upload_ops_s" or key == "small_download_ops_s":
                line += f"  errors {fig['errors']}"
            print(line)
            continue
        for t in ts:
            base = fmt(t["baseline_value"], t["baseline_unit"]) if t["baseline_value"] else "-"
            ratio = "-"
            if t["ratio"] is not None:
                ratio = f"{t['ratio']:.2f}" if t["ratio"] >= 0.1 else f"{t['ratio']:.3f}"
            result = "PASS" if t["pass"] else "FAIL"
            errs = fig.get("errors")
            note = f"  ({errs} errors)" if errs else ""
            print(f"{fig['label']:{w}} {fmt(fig['value'], fig['unit']):>16}  {base:>20}  "
                  f"{ratio:>6}  {t['target']:<14} {result}{note}")
    passed = sum(1 for t in targets if t["pass"])
    print()
    print(f"{passed} of {len(targets)} targets met.")
    print("Baselines: upload random vs dd/3 (every byte is written 3 times to this one disk);"
          " upload text vs dd (3 copies at ~1/4 size); downloads vs nginx (one HTTP hop).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="the run's temp dir")
    ap.add_argument("--out", required=True, help="where to write the JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    facts = read_facts(os.path.join(args.work, "facts.env"))
    lg = {name: read_loadgen(args.work, name)
          for name in ("nginx-4k", "small-upload", "small-download")}
    figures, baselines, targets = build(facts, lg)
    print_table(facts, figures, baselines, targets)

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
        "loadgen": lg,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"Results: {args.out}")
    if args.strict and result["targets_met"] < result["targets_total"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
