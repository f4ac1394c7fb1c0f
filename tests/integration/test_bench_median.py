"""The benchmarks' median (bench/lib.sh bench_median, which upload.sh,
run.sh, million.sh and worker_get.sh use): the middle value of an odd
count, the mean of the two middle values of an even one. It used to print
the lower middle value, so UPLOAD_RUNS=4 reported the second slowest run.
No script keeps a median of its own; ec_cluster.sh, which reports the
median *run* (with that run's CPU), refuses an even ECC_RUNS."""

from __future__ import annotations

import random
import re
import statistics
import subprocess

import pytest

import echofs_harness as h

BENCH = h.REPO / "bench"


def bench_median(values) -> str:
    script = f'. "{BENCH}/lib.sh"; bench_median "$@"'
    out = subprocess.run(["bash", "-c", script, "median", *map(str, values)],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 10])
def test_median_of_odd_and_even_counts(count):
    rng = random.Random(count)
    values = [round(rng.uniform(100, 20000), 2) for _ in range(count)]
    assert float(bench_median(values)) == pytest.approx(statistics.median(values))


def test_median_keeps_an_odd_middle_value_as_given_and_prints_nothing_for_none():
    assert bench_median(["3.10", "1.5", "22.000"]) == "3.10"
    assert bench_median([]) == ""


def test_no_bench_script_has_a_median_of_its_own():
    # the lower-middle pick: an awk array indexed by int((NR + 1) / 2)
    lower_middle = re.compile(r"\[\s*int\(\s*\(\s*NR\s*\+\s*1\s*\)\s*/\s*2\s*\)\s*\]")
    offenders = [p.name for p in sorted(BENCH.glob("*.sh")) if lower_middle.search(p.read_text())]
    assert offenders == [], f"a lower-middle median in {offenders}: use bench_median (lib.sh)"


def test_ec_cluster_refuses_an_even_number_of_runs(tmp_path):
    r = subprocess.run(["bash", str(BENCH / "ec_cluster.sh")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "ECC_RUNS": "4", "WORK": str(tmp_path),
                            "FACTS": str(tmp_path / "facts"), "LARGE_BYTES": "1048576",
                            "LOADGEN": "/bin/false", "ROOT": str(h.REPO)})
    assert r.returncode != 0, r.stdout + r.stderr
    assert "ECC_RUNS must be an odd number" in r.stderr, r.stderr
