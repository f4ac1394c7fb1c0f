"""Repair of erasure-coded files (issue 17 items 4 and 6): lost and corrupt
shards are rebuilt from K good ones by the repair loop, and the metrics say
how many stripes are degraded, unrecoverable, and how many shards were
rebuilt.

* Corrupting one shard of every stripe on one worker (its bytes on disk):
  every read is still byte-identical, the worker's scrubber finds the
  shards (parity shards: no healthy read asks them), and repair rebuilds
  them on that worker (the only one holding no good shard of the stripes
  with six workers and ec:4+2). The same with data shards on another
  worker, found by the reads. Then two more workers are killed and every
  file still reads: the rebuilt shards are good.
* A worker is killed (seven workers, so each stripe has a spare one): its
  stripes count as degraded, and once it has been dead for REPAIR_AFTER_MS
  each regains six shards on six distinct live workers; two more workers
  killed, every file still reads. A third killed: every stripe is
  unrecoverable (gauge and stats), repair logs it and writes nothing, and
  the download is the JSON 503.

Shard i of a stripe is on the i-th of its workers by worker id
(docs/ARCHITECTURE.md "Erasure coding").
"""

from __future__ import annotations

import hashlib
import random
import re

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CHUNK = 64 * 1024
EC = {"policy": "ec:4+2"}


def master_env(**extra) -> dict:
    # No chunk cache: every read reaches the workers' shards.
    return {"CHUNK_SIZE": CHUNK, "CHUNK_CACHE_SIZE": 0, "REPLICATION_FACTOR": 3, **extra}


def upload_files(api: h.ApiClient, rng: random.Random) -> dict[str, tuple[dict, bytes]]:
    text = ("".join(rng.choice("erasure coded shards rebuilt\n") for _ in range(40_000))).encode()
    stored = {}
    for name, data in (("random.bin", rng.randbytes(5 * CHUNK + 321)),  # raw stripes
                       ("text.txt", text),                                # gzip stripes
                       ("small.bin", b"a short stripe")):
        r = api.post("/api/v1/files/upload", params={"name": name, **EC}, data=data)
        assert r.status_code == 201, r.text
        stored[name] = (r.json(), data)
    return stored


def read_all(api: h.ApiClient, stored) -> None:
    for name, (f, data) in stored.items():
        r = api.get(f"/api/v1/files/{f['file_id']}/download")
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text[:200]}"
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest(), name


def chunks_of(api: h.ApiClient, stored) -> dict[str, list[str]]:
    """{chunk id: its shard holders (worker ids)} over the files."""
    out = {}
    for f, _ in stored.values():
        g = api.get(f"/api/v1/files/{f['file_id']}")
        assert g.status_code == 200, g.text
        for c in g.json()["chunks"]:
            out[c["chunk_id"]] = [x["worker_id"] for x in c["replicas"]]
    return out


def metric(m: h.Master, name: str) -> float | None:
    text = m.client().get("/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def test_corrupt_shards_are_scrubbed_and_rebuilt(cluster):
    h.skip_without_workers(cluster)
    m = cluster.start(workers=6, master_env=master_env(),
                      worker_env={"SCRUB_INTERVAL_MS": 1500})
    api = m.user_client()
    stored = upload_files(api, random.Random(41))
    chunks = chunks_of(api, stored)
    ids = {w.stored_id() for w in cluster.workers}
    assert all(sorted(holders) == sorted(ids) for holders in chunks.values()), chunks
    wait_until(lambda: metric(m, "echofs_ec_stripes_degraded") == 0, 10,
               what="the repair loop's first count of EC stripes")
    assert metric(m, "echofs_ec_shards_rebuilt_total") == 0

    # Parity shard 5 of every stripe is on the last worker by id: healthy
    # reads never ask it, so only the scrubber can find the damage.
    victim = sorted(cluster.workers, key=lambda w: w.stored_id())[5]
    rng = random.Random(7)
    damaged = {}
    for cid in chunks:
        h.damage_chunk_payload(victim.data_dir, cid, rng)
        damaged[cid] = sha(h.read_chunk_payload(victim.data_dir, cid))
    read_all(api, stored)

    def rebuilt() -> bool:
        problems = []
        for cid, holders in chunks_of(api, stored).items():
            now = sha(h.read_chunk_payload(victim.data_dir, cid))
            if now is None or now == damaged[cid]:
                problems.append(f"{cid[:12]}: not rebuilt on {victim.name}")
            elif sorted(holders) != sorted(ids):
                problems.append(f"{cid[:12]}: holders {holders}")
        return not problems and metric(m, "echofs_ec_stripes_degraded") == 0

    wait_until(rebuilt, 30, what="the scrubbed shards to be rebuilt")
    assert metric(m, "echofs_ec_shards_rebuilt_total") >= len(chunks)
    stats = api.get("/api/v1/stats").json()
    assert stats["ec_stripes_degraded"] == 0 and stats["ec_stripes_unrecoverable"] == 0, stats
    assert stats["repair"]["ec_shards_rebuilt_total"] >= len(chunks), stats
    assert "failed its checksum" in victim.stderr(), "the scrubber found the damage"
    assert "rebuilt 1" in m.stderr()

    # Data shard 0 of every stripe rots on the first worker by id: the
    # reads find it (the worker answers chunk_corrupt), mark it bad, decode
    # from parity, and repair rebuilds it (the scrubber may get there
    # first: either way).
    ws = sorted(cluster.workers, key=lambda w: w.stored_id())
    victim = ws[0]
    rebuilt_before = metric(m, "echofs_ec_shards_rebuilt_total")
    damaged = {}
    for cid in chunks:
        h.damage_chunk_payload(victim.data_dir, cid, rng)
        damaged[cid] = sha(h.read_chunk_payload(victim.data_dir, cid))
    read_all(api, stored)
    wait_until(rebuilt, 30, what="the data shards found bad to be rebuilt")
    assert metric(m, "echofs_ec_shards_rebuilt_total") >= rebuilt_before + len(chunks)

    # The rebuilt shards are good: with data shards 1 and 2 gone, every
    # stripe needs the rebuilt data shard 0 and parity shard 5.
    ws[1].kill()
    ws[2].kill()
    read_all(api, stored)


def test_dead_workers_shards_are_rebuilt_elsewhere(cluster):
    h.skip_without_workers(cluster)
    repair_after_ms = 5000
    m = cluster.start(workers=7, master_env=master_env(REPAIR_AFTER_MS=repair_after_ms))
    api = m.user_client()
    stored = upload_files(api, random.Random(42))
    chunks = chunks_of(api, stored)
    assert all(len(set(x)) == 6 for x in chunks.values()), chunks
    by_id = {w.stored_id(): w for w in cluster.workers}
    # The worker holding the most shards dies.
    held = {wid: sum(wid in x for x in chunks.values()) for wid in by_id}
    victim_id = max(held, key=held.get)
    victim = by_id[victim_id]
    wait_until(lambda: metric(m, "echofs_ec_stripes_degraded") == 0, 10,
               what="the repair loop's first count of EC stripes")
    victim.kill()

    # Degraded as soon as it is dead; nothing rebuilt before REPAIR_AFTER_MS.
    wait_until(lambda: metric(m, "echofs_ec_stripes_degraded") == held[victim_id],
               m.dead_deadline_s() + 2, what="its stripes to count as degraded")
    assert metric(m, "echofs_ec_shards_rebuilt_total") == 0
    read_all(api, stored)  # degraded reads meanwhile

    live = set(by_id) - {victim_id}

    def rebuilt() -> bool:
        problems = [f"{cid[:12]}: {x}" for cid, x in chunks_of(api, stored).items()
                    if len(x) != 6 or len(set(x)) != 6 or not set(x) <= live]
        return not problems and metric(m, "echofs_ec_stripes_degraded") == 0

    wait_until(rebuilt, repair_after_ms / 1000 + 25, what="the dead worker's shards rebuilt")
    assert metric(m, "echofs_ec_shards_rebuilt_total") == held[victim_id]

    # Two more workers down: every stripe reads from its four others, some
    # of them rebuilt.
    others = sorted(live)
    for wid in others[:2]:
        by_id[wid].kill()
    read_all(api, stored)

    # A third: every stripe (on all six live workers) keeps three shards.
    mark = m.log_mark()
    by_id[others[2]].kill()
    total = len(chunks)
    wait_until(lambda: metric(m, "echofs_ec_stripes_unrecoverable") == total,
               m.dead_deadline_s() + 2, what="every stripe counted unrecoverable")
    stats = api.get("/api/v1/stats").json()
    assert stats["ec_stripes_unrecoverable"] == total and stats["ec_stripes_degraded"] == total
    for f, _ in stored.values():
        assert_json_error(api.get(f"/api/v1/files/{f['file_id']}/download"), 503,
                          "chunk_unavailable")
    # Once dead past REPAIR_AFTER_MS, repair tries them, says so, and writes
    # nothing.
    rebuilt_before = metric(m, "echofs_ec_shards_rebuilt_total")
    m.wait_for_log("is UNRECOVERABLE for now", timeout=repair_after_ms / 1000 + 10, since=mark)
    assert metric(m, "echofs_ec_shards_rebuilt_total") == rebuilt_before


def test_no_free_worker_means_no_rebuild_and_nothing_dropped(cluster):
    """Six workers, ec:4+2, one dead past REPAIR_AFTER_MS: every other worker
    holds a good shard of each stripe, so there is nowhere to rebuild; the
    stripes stay degraded and readable, nothing is written or removed, and
    once the worker is back they are whole again."""
    h.skip_without_workers(cluster)
    m = cluster.start(workers=6, master_env=master_env(REPAIR_AFTER_MS=0))
    api = m.user_client()
    stored = upload_files(api, random.Random(43))
    chunks = chunks_of(api, stored)
    wait_until(lambda: metric(m, "echofs_ec_stripes_degraded") == 0, 10,
               what="the repair loop's first count of EC stripes")
    victim = cluster.workers[2]
    mark = m.log_mark()
    victim.kill()
    wait_until(lambda: metric(m, "echofs_ec_stripes_degraded") == len(chunks),
               m.dead_deadline_s() + 2, what="every stripe degraded")
    # A repair pass tried them all and placed nothing.
    m.wait_for_log(r"repair: 0 chunks re-replicated or rebuilt .*, [1-9]\d* failed",
                   timeout=10, since=mark)
    assert metric(m, "echofs_ec_shards_rebuilt_total") == 0
    assert chunks_of(api, stored) == chunks, "no shard row was added or removed"
    read_all(api, stored)
    victim.start()
    victim.wait_ready()
    wait_until(lambda: metric(m, "echofs_ec_stripes_degraded") == 0, 10,
               what="the stripes whole again with the worker back")
    assert metric(m, "echofs_ec_shards_rebuilt_total") == 0
    read_all(api, stored)
