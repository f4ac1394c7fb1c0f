"""Failure domains (issue 17 item 2): workers declare `WORKER_ZONE`, and
placement spreads a chunk's replicas and an EC stripe's shards over
distinct zones first, then evenly (docs/ARCHITECTURE.md "Zones").

* Six workers in three zones of two, `ec:4+2` and `replicas:3` files:
  every stripe has exactly two shards per zone, every replicated chunk one
  copy per zone; /api/v1/workers shows each worker's zone (a registration
  with a bad one is 400 invalid_field); both workers of one zone killed,
  every file still reads byte-identical.
* Eight workers in zones of four, two and two: the large zone gets no more
  than its share (two shards of a stripe, one replica), which a choice by
  free space alone breaks for most stripes; the whole large zone killed,
  every file still reads.
* Repair and rebuild follow the rule given the rows already held: with
  zones of three, three and two, a dead worker's shards and replicas are
  written again in its own zone (the one holding fewest), never in a zone
  that holds its share already.

* A zone back from an outage longer than `REPAIR_AFTER_MS` (repair copied
  its chunks into the other zones meanwhile): its workers' reports keep
  their copies, the only ones of their zone, and the extra copy in the
  zone that got two goes at its holder's report; every chunk ends with
  one copy per zone (LIFECYCLE T19).

A bad `WORKER_ZONE` stops the worker at start: test_config.py.
"""

from __future__ import annotations

import collections
import hashlib
import random
import time

import echofs_harness as h
from echofs_harness import assert_json_error, wait_until

CHUNK = 64 * 1024
EC = {"policy": "ec:4+2"}


def master_env(**extra) -> dict:
    # No chunk cache: every read reaches the workers.
    return {"CHUNK_SIZE": CHUNK, "CHUNK_CACHE_SIZE": 0, "REPLICATION_FACTOR": 3, **extra}


def start_zoned(cluster: h.Cluster, zones: list[str], worker_env: dict | None = None,
                **env) -> tuple[h.Master, dict]:
    """A master and one worker per entry of zones (its WORKER_ZONE, and
    worker_env); returns the master and {worker id: (worker, zone)}."""
    h.skip_without_workers(cluster)
    m = cluster.add_master(**master_env(**env))
    ws = [cluster.add_worker(master=m, wait=False, WORKER_ZONE=z, **(worker_env or {}))
          for z in zones]
    for w in ws:
        w.wait_registered()
    m.wait_workers(alive=len(ws), total=len(ws))
    return m, {w.stored_id(): (w, z) for w, z in zip(ws, zones)}


def upload_files(api: h.ApiClient, rng: random.Random) -> dict[str, tuple[dict, bytes]]:
    text = ("".join(rng.choice("failure domains spread shards\n")
                    for _ in range(40_000))).encode()
    stored = {}
    for name, data, params in (("ec-random.bin", rng.randbytes(8 * CHUNK + 77), EC),
                               ("ec-text.txt", text, EC),
                               ("ec-small.bin", b"a short stripe", EC),
                               ("rep-random.bin", rng.randbytes(8 * CHUNK + 5), {}),
                               ("rep-text.txt", text[::-1], {})):
        r = api.post("/api/v1/files/upload", params={"name": name, **params}, data=data)
        assert r.status_code == 201, r.text
        assert r.json()["policy"] == (EC["policy"] if params else "replicas:3"), r.json()
        stored[name] = (r.json(), data)
    return stored


def read_all(api: h.ApiClient, stored) -> None:
    for name, (f, data) in stored.items():
        r = api.get(f"/api/v1/files/{f['file_id']}/download")
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text[:200]}"
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest(), name


def chunks_of(api: h.ApiClient, stored) -> dict[str, tuple[str, list[str]]]:
    """{chunk id: (the file's policy, its holders' worker ids)}."""
    out = {}
    for f, _ in stored.values():
        g = api.get(f"/api/v1/files/{f['file_id']}")
        assert g.status_code == 200, g.text
        for c in g.json()["chunks"]:
            out[c["chunk_id"]] = (f["policy"], [x["worker_id"] for x in c["replicas"]])
    return out


def per_zone(holders: list[str], workers: dict) -> dict[str, int]:
    return dict(collections.Counter(workers[wid][1] for wid in holders))


def assert_spread(api, stored, workers, ec_share: dict, rep_share: dict) -> None:
    """Every EC stripe's shards per zone are ec_share, every replicated
    chunk's copies rep_share, each on distinct workers."""
    bad = []
    for cid, (policy, holders) in chunks_of(api, stored).items():
        want = ec_share if policy.startswith("ec:") else rep_share
        if len(set(holders)) != len(holders) or per_zone(holders, workers) != want:
            bad.append(f"{cid[:12]} ({policy}): {per_zone(holders, workers)}")
    assert not bad, f"{len(bad)} chunk(s) not spread as {ec_share} / {rep_share}: {bad}"


def test_six_workers_in_three_zones_lose_a_whole_zone(cluster):
    zones = ["a", "a", "b", "b", "c", "c"]
    m, workers = start_zoned(cluster, zones)
    # The worker list says each worker's zone.
    listed = {w["worker_id"]: w["zone"] for w in m.user_client().get("/api/v1/workers")
              .json()["workers"]}
    assert listed == {wid: z for wid, (_, z) in workers.items()}, listed

    # A registration with a bad zone is refused, naming the field.
    for zone in ("rack 7", "z" * 33, "a/b", 7):
        r = m.cluster_client().post("/api/v1/workers/register", json={
            "url": "http://127.0.0.1:9", "capacity_bytes": 10, "free_bytes": 10, "zone": zone})
        err = assert_json_error(r, 400, "invalid_field")
        assert "zone" in err["message"], err

    api = m.user_client()
    stored = upload_files(api, random.Random(17))
    assert_spread(api, stored, workers, {"a": 2, "b": 2, "c": 2}, {"a": 1, "b": 1, "c": 1})

    for w, z in workers.values():
        if z == "b":
            w.kill()
    read_all(api, stored)
    m.wait_workers(alive=4, total=6)
    read_all(api, stored)


def test_a_large_zone_gets_no_more_than_its_share(cluster):
    zones = ["big"] * 4 + ["b", "b", "c", "c"]
    m, workers = start_zoned(cluster, zones)
    api = m.user_client()
    stored = upload_files(api, random.Random(23))
    assert_spread(api, stored, workers, {"big": 2, "b": 2, "c": 2},
                  {"big": 1, "b": 1, "c": 1})

    for w, z in workers.values():
        if z == "big":
            w.kill()
    m.wait_workers(alive=4, total=8)
    read_all(api, stored)


def test_repair_and_rebuild_write_in_the_zone_that_lost_a_copy(cluster):
    repair_after_ms = 2000
    zones = ["a", "a", "a", "b", "b", "b", "c", "c"]
    m, workers = start_zoned(cluster, zones, REPAIR_AFTER_MS=repair_after_ms)
    api = m.user_client()
    stored = upload_files(api, random.Random(29))
    assert_spread(api, stored, workers, {"a": 2, "b": 2, "c": 2}, {"a": 1, "b": 1, "c": 1})

    # The worker of zone b holding the most chunks dies.
    chunks = chunks_of(api, stored)
    held = {wid: sum(wid in x for _, x in chunks.values())
            for wid, (_, z) in workers.items() if z == "b"}
    victim_id = max(held, key=held.get)
    assert held[victim_id] > 0, held
    workers[victim_id][0].kill()
    live = set(workers) - {victim_id}

    def repaired():
        now = chunks_of(api, stored)
        for cid, (policy, holders) in now.items():
            kept = [x for x in holders if x in live]
            want = 6 if policy.startswith("ec:") else 3
            if len(kept) != want:
                return None
        return now
    now = wait_until(repaired, m.dead_deadline_s() + repair_after_ms / 1000 + 30,
                     what="every chunk of the dead worker written again")
    # In zone b again: the zone that lost a copy holds fewest; a and c
    # hold their share already (a has a spare worker for every stripe).
    bad = []
    for cid, (policy, holders) in now.items():
        kept = [x for x in holders if x in live]
        want = {"a": 2, "b": 2, "c": 2} if policy.startswith("ec:") else \
            {"a": 1, "b": 1, "c": 1}
        if len(set(kept)) != len(kept) or per_zone(kept, workers) != want:
            bad.append(f"{cid[:12]} ({policy}): {per_zone(kept, workers)}")
    assert not bad, f"repaired outside the zone that lost a copy: {bad}"
    read_all(api, stored)


def test_a_zone_back_from_an_outage_keeps_its_copies_and_the_extra_one_goes(cluster):
    repair_after_ms = 1500
    zones = ["a", "a", "b", "b", "c", "c"]
    # Reports every second: the holders of the extra copies report soon
    # after the zone is back (at most REPORT_INTERVAL_MS in production).
    m, workers = start_zoned(cluster, zones, worker_env={"REPORT_INTERVAL_MS": 1000},
                             REPAIR_AFTER_MS=repair_after_ms)
    api = m.user_client()
    rng = random.Random(41)
    stored = {}
    for name, data in (("rep-random.bin", rng.randbytes(8 * CHUNK + 5)),
                       ("rep-small.bin", b"one chunk, three zones"),
                       ("rep-two.bin", rng.randbytes(2 * CHUNK - 3))):
        r = api.post("/api/v1/files/upload", params={"name": name}, data=data)
        assert r.status_code == 201, r.text
        stored[name] = (r.json(), data)
    assert_spread(api, stored, workers, {}, {"a": 1, "b": 1, "c": 1})

    # Zone a down (SIGKILL) longer than REPAIR_AFTER_MS: repair copies
    # every chunk into b or c, one of which then holds two.
    away = {wid for wid, (_, z) in workers.items() if z == "a"}
    for wid in away:
        workers[wid][0].kill()
    m.wait_workers(alive=4, total=6)

    def repaired():
        now = chunks_of(api, stored)
        for cid, (_, holders) in now.items():
            if len([x for x in holders if x not in away]) != 3:
                return None
        return now
    during = wait_until(repaired, m.dead_deadline_s() + repair_after_ms / 1000 + 30,
                        what="every chunk of zone a copied into b and c")
    for cid, (_, holders) in during.items():
        kept = [x for x in holders if x not in away]
        assert sorted(per_zone(kept, workers).values()) == [1, 2], (cid[:12], kept)
    read_all(api, stored)

    # Zone a back: its workers register and report at once.
    for wid in away:
        workers[wid][0].start()
    for wid in away:
        assert workers[wid][0].wait_registered() == wid
    m.wait_workers(alive=6, total=6)

    def disk_holders(cid):
        return sorted(wid for wid, (w, _) in workers.items() if cid in w.chunk_usage().ids)

    def settled():
        now = chunks_of(api, stored)
        problems = []
        for cid, (_, holders) in now.items():
            if len(holders) != 3 or per_zone(holders, workers) != {"a": 1, "b": 1, "c": 1}:
                problems.append(f"{cid[:12]}: {per_zone(holders, workers)}")
            elif disk_holders(cid) != sorted(holders):
                problems.append(f"{cid[:12]}: on the disks of {len(disk_holders(cid))}")
        return None if problems else now

    try:
        wait_until(settled, 30, interval=0.25,
                   what="every chunk at three copies, one per zone")
    except AssertionError:
        now = chunks_of(api, stored)
        raise AssertionError("not one copy per zone: " + ", ".join(
            f"{cid[:12]} {per_zone(x, workers)}" for cid, (_, x) in now.items())) from None
    # Zone a's copies were never dropped: its disks still hold them.
    for cid in during:
        assert any(cid in workers[wid][0].chunk_usage().ids for wid in away), cid[:12]
    read_all(api, stored)
    # and it stays so: the next reports keep every copy
    time.sleep(2.5)
    assert settled() is not None
    read_all(api, stored)
