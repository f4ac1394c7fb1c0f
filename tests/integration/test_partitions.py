"""Network partitions between the master and a live worker (issue 19).

A worker is not killed: it stays up, with its data, while the links between
it and the master stop moving bytes (nemesis.LinkProxy: the master reaches
the victim through one proxy, WORKER_ADVERTISE_URL, and the victim reaches
the master through another, MASTER_URL). Uploads go on all the while. Cut:

    both               neither reaches the other
    worker_to_master   the victim's heartbeats and reports do not arrive;
                       the master can still reach it
    master_to_worker   the master (and the other workers, and reads) cannot
                       reach the victim; its heartbeats still arrive
    frozen             the connections open to the victim at that moment stop
                       moving bytes without closing (half-open, in the middle
                       of replica writes); new connections work
    iptables           master_to_worker with the kernel instead of the proxy:
                       every packet to or from the victim's port dropped
                       (nemesis.PortBlock; root only, skipped otherwise):
                       new connections time out in SYN, as on a real network

After the heal the victim comes back without a restart. Whatever the cut,
every acknowledged upload must read back byte for byte, a file deleted
during the cut must be gone from every disk, and every needed chunk must
be stored exactly REPLICATION_FACTOR times, within seconds of the heal: the
master answers the first heartbeat of a worker it had counted dead with
"full_report": true and the worker's report removes the surplus (repair
made new copies while it was away) and the chunks of deleted files.
A write the master gave up on (3 s without progress) may still land when
the link heals: the first good write to that worker afterwards asks it for
a report too, which keeps the late copy while younger than ORPHAN_GRACE_MS
(1 s here) and asks for another report once it is older.
REPORT_INTERVAL_MS stays at its default (an hour), so nothing here can
settle through a periodic report.
"""

from __future__ import annotations

import os
import random
import re
import time

import pytest

import echofs_harness as h
import nemesis as nm
from test_faults import (CHUNK, RF, Uploaders, assert_acked_download, assert_downloads,
                         check_acked, check_running, chunk_ids_of, disk_vs_needed, file_info,
                         holders, master_env, poll, replicas_missing_on_disk, secs,
                         upload_files)

# How long the cut lasts: long enough for the victim to be counted dead
# (WORKER_DEAD_AFTER_MS 1 s) and its chunks repaired (REPAIR_AFTER_MS 1 s).
# ECHOFS_PARTITION_S=20 runs the 20 s partition (a longer run).
CUT_S = float(os.environ.get("ECHOFS_PARTITION_S") or 6.0)
# The heal must settle within this (the issue asks for 30 s; the rejoin
# report takes well under 5 s here).
SETTLE_S = 15.0


def start(cluster: h.Cluster, nemesis: nm.Nemesis):
    m = cluster.start(workers=3, master_env=master_env(REPAIR_AFTER_MS=1000, GC_GRACE_MS=500,
                                                       ORPHAN_GRACE_MS=1000))
    victim, to_victim, from_victim = nemesis.add_linked_worker(cluster, m, "victim")
    m.wait_workers(alive=4, total=4)
    return m, victim, to_victim, from_victim


@pytest.mark.slow(reason="a 6 s partition under uploads, repair, then the rejoin")
@pytest.mark.parametrize("cut", ["both", "worker_to_master", "master_to_worker", "frozen",
                                 "iptables"])
def test_partitioned_worker_rejoins_and_every_chunk_settles_at_rf(cluster, nemesis, cut):
    if cut == "iptables" and (why := nm.iptables_unavailable()):
        pytest.skip(why)
    m, victim, to_victim, from_victim = start(cluster, nemesis)
    api = m.user_client()
    rng = random.Random(19)
    files = upload_files(api, rng, 6, 2, 3)
    where = holders(api, files)
    vid = victim.worker_id
    doomed = next(fid for fid in files
                  if any(vid in where[c["chunk_id"]] for c in file_info(api, fid)["chunks"]))
    doomed_chunks = chunk_ids_of(api, [doomed])
    assert doomed_chunks & set(victim.chunk_usage().ids), "the victim holds none of them"

    up = Uploaders([m.user_client() for _ in range(2)],
                   lambda r: r.choice([CHUNK, 2 * CHUNK, 3 * CHUNK]), f"cut-{cut}", seed=19,
                   timeout=60).start()
    try:
        time.sleep(0.5)
        mark = m.log_mark()
        if cut in ("both", "master_to_worker"):
            to_victim.cut()
        if cut in ("both", "worker_to_master"):
            from_victim.cut()
        if cut == "iptables":
            nemesis.block_port(victim.port)  # behind its proxy: the worker itself
        if cut == "frozen":
            # Until some replica write is caught in the middle.
            h.wait_until(lambda: to_victim.freeze(nm.BOTH, busy_only=True), secs(10),
                         interval=0.005, what="a replica write to the victim to freeze")
        r = api.delete(f"/api/v1/files/{doomed}")
        assert r.status_code == 204, r.text
        del files[doomed]
        if cut in ("both", "worker_to_master"):
            # Its heartbeats do not arrive: dead, then repaired elsewhere.
            m.wait_worker_status(vid, "dead", timeout=secs(5))
        time.sleep(CUT_S)
        still_dead = m.worker_record(vid)["status"]
        nemesis.heal()
        healed_at = time.monotonic()
        time.sleep(1.0)  # uploads across the heal
    finally:
        up.stop()
    outcomes = up.snapshot()
    failed = [o for o in outcomes if o.status != 201]
    assert not failed, f"{len(failed)} of {len(outcomes)} uploads failed during the " \
        f"partition: " + "; ".join(f"{o.name}: {o.status} {o.error or o.body}"
                                   for o in failed[:5])
    acked = check_acked(outcomes)
    assert len(acked) >= 5, f"only {len(acked)} uploads during the partition"
    if cut in ("both", "worker_to_master"):
        assert still_dead == "dead", f"the cut-off victim was {still_dead} at the heal"
    for fid, o in acked.items():
        files[fid] = None  # checked by assert_acked_download

    needed = chunk_ids_of(api, files)
    live = [w for w in cluster.workers]

    def settled():
        check_running(cluster)
        rec = m.worker_record(vid)
        problems = [] if rec["status"] == "alive" else [f"victim is {rec['status']}"]
        problems += disk_vs_needed(cluster, needed)
        left = doomed_chunks & set(cluster.chunk_usage(live).ids)
        if left:
            problems.append(f"{len(left)} chunks of the deleted file still stored")
        for fid in files:
            for c in file_info(api, fid)["chunks"]:
                listed = [x["worker_id"] for x in c["replicas"]]
                if len(set(listed)) != RF:
                    problems.append(f"chunk {c['chunk_id'][:12]} lists {listed}")
        under = m.health()["under_replicated"]
        if under:
            problems.append(f"under_replicated={under}")
        return not problems, problems[:6]
    poll(settled, secs(SETTLE_S), f"every chunk to settle at {RF} copies after the heal")
    took = time.monotonic() - healed_at
    print(f"\n{cut}: {len(acked)} uploads acknowledged, settled {took:.1f} s after the heal")

    assert_acked_download(api, acked, f"after the {cut} partition healed")
    assert_downloads(api, {f: d for f, d in files.items() if d is not None},
                     f"after the {cut} partition healed")
    log = m.stderr_since(mark)
    if cut in ("master_to_worker", "frozen", "iptables"):
        assert re.search(rf"write to worker {re.escape(vid)} failed", log), \
            "no replica write to the victim was given up: the fault was not exercised"
    if cut in ("both", "worker_to_master"):
        assert re.search(rf"worker {re.escape(vid)} beats again after it was counted dead",
                         log), "the master did not ask the rejoined worker for a report"
        assert "registered again" not in log, "the victim re-registered: not a rejoin test"


@pytest.mark.slow(reason="a replica write held whole for 3 s, then the heal")
def test_a_given_up_write_that_lands_late_is_deleted_within_seconds(cluster, nemesis):
    """Issue 19, item 3: the master gives up a replica write whose request
    the link held whole (master -> worker bytes held, the worker's beats
    still arrive: it is never counted dead). At the heal the link delivers
    the request at once, so the worker stores the chunk without seeing a
    stall (it does not report on its own), and no good write to it follows
    (nothing asks for a report): a copy no replica row names. The master
    watches the writes it gave up and deletes such a copy (conditionally:
    only once older than ORPHAN_GRACE_MS on the worker's clock) within
    seconds; before, it waited for the worker's next periodic report (an
    hour)."""
    m, victim, to_victim, from_victim = start(cluster, nemesis)
    api = m.user_client()
    vid = victim.worker_id
    # The victim's first report is sent before the cut: held by it (a
    # gRPC stream's instructions pass the same link), it would arrive after
    # the heal with the late copy in it, and the report's verdict would
    # delete the copy before the watcher of given-up writes does.
    victim.wait_for_log(r"chunk report sent", timeout=secs(10))
    mark = m.log_mark()
    to_victim.cut(nm.UP)  # requests to the victim held; its answers and beats pass
    rng = random.Random(1903)
    files, given_up = {}, None
    for i in range(12):  # until placement has picked the victim (3 of 4 workers)
        files.update(upload_files(api, rng, 1, 1, 1, prefix=f"late{i}-"))
        found = re.search(rf"chunk (\w+): write to worker {re.escape(vid)} failed",
                          m.stderr_since(mark))
        if found:
            given_up = found.group(1)
            break
    assert given_up, "no replica write to the victim was given up"
    assert m.worker_record(vid)["status"] == "alive"
    time.sleep(1.0)
    nemesis.heal()
    # The held request lands (the copy the master gave up on).
    poll(lambda: (any(c.startswith(given_up) for c in victim.chunk_usage().ids), None),
         secs(5), "the given-up write to land on the victim at the heal")
    healed_at = time.monotonic()
    needed = chunk_ids_of(api, files)

    def settled():
        problems = disk_vs_needed(cluster, needed)
        return not problems, problems
    poll(settled, secs(10), "the late copy to be deleted")
    print(f"\nthe late copy was deleted {time.monotonic() - healed_at:.1f} s after it landed")
    log = m.stderr_since(mark)
    assert re.search(rf"chunk {given_up}\w*: the copy a write to worker {re.escape(vid)} "
                     rf"given up \d+ ms ago left there \(no replica row names it\) deleted",
                     log), "the late copy went some other way"
    assert f"worker {vid} takes writes again" not in log, \
        "a good write to the victim asked for a report: not the case tested"
    assert_downloads(api, files, "after the late copy was deleted")


@pytest.mark.slow(reason="a collector delete refused by a reset link, then the heal")
def test_a_collector_delete_that_failed_is_done_once_the_worker_answers(cluster, nemesis):
    """The collector's DELETE of a deleted file's chunk fails on a worker
    the master cannot reach while its beats still arrive (it is never
    counted dead, so no rejoin report follows): the copy was "left as an
    orphan" for the worker's next periodic report (an hour). The master
    watches it as a given-up write and deletes it within seconds of the
    heal."""
    m, victim, to_victim, from_victim = start(cluster, nemesis)
    api = m.user_client()
    vid = victim.worker_id
    rng = random.Random(1904)
    files = upload_files(api, rng, 6, 1, 2, prefix="gc")
    where = holders(api, files)
    doomed = next(fid for fid in files
                  if any(vid in where[c["chunk_id"]] for c in file_info(api, fid)["chunks"]))
    doomed_chunks = chunk_ids_of(api, [doomed])
    mark = m.log_mark()
    to_victim.cut(reset=True)  # the master's calls to the victim refused at once
    r = api.delete(f"/api/v1/files/{doomed}")
    assert r.status_code == 204, r.text
    del files[doomed]
    m.wait_for_log(rf"delete on {re.escape(to_victim.url())}/chunks/\w+ failed", timeout=secs(10),
                   since=mark)
    assert m.worker_record(vid)["status"] == "alive"
    nemesis.heal()
    healed_at = time.monotonic()
    needed = chunk_ids_of(api, files)

    def settled():
        problems = disk_vs_needed(cluster, needed)
        left = doomed_chunks & set(victim.chunk_usage().ids)
        if left:
            problems.append(f"{len(left)} chunks of the deleted file still on the victim")
        return not problems, problems
    poll(settled, secs(10), "the collector's failed delete to be done")
    print(f"\nthe orphan went {time.monotonic() - healed_at:.1f} s after the heal")
    assert f"worker {vid} beats again" not in m.stderr_since(mark), \
        "the victim was counted dead: a rejoin report, not the case tested"
    assert_downloads(api, files, "after the heal")


@pytest.mark.slow(reason="a worker's report slowed to seconds by a throttled link")
def test_a_copy_deleted_while_its_report_is_judged_is_not_counted(cluster, nemesis):
    """Found by the 500-round randomized run (seed 500): a worker's full
    report listed a copy no replica row named (a write the master had
    given up on); the master's watch of that write deleted the copy; then
    the report's batch was judged, while the chunk was short of replicas
    (another holder had just been killed), and the master adopted the
    copy: a replica row for a copy that was gone, counted until the
    worker's next full report (an hour by default). If a holder's surplus
    copy was then dropped, the chunk had 3 rows and 2 copies. The worker
    now tells the master, after the report's last answer, which chunks
    were deleted while it listed them: the master marks such a replica
    bad (repair then copies the chunk). Here the report's batch crawls up
    a throttled link (150 B/s), and the test deletes the copy straight
    after the snapshot."""
    # ORPHAN_GRACE_MS long: the victim's reports before the one tested
    # keep its unnamed copy (young), and no late-write watch runs here.
    m = cluster.start(workers=3, master_env=master_env(
        WORKER_DEAD_AFTER_MS=8000, REPAIR_AFTER_MS=600000, ORPHAN_GRACE_MS=600000))
    api = m.user_client()
    data = random.Random(1905).randbytes(3000)
    fid = api.upload(data, name="adopted.bin")["file_id"]
    (chunk,) = chunk_ids_of(api, [fid])
    # HTTP whatever ECHOFS_TEST_WORKER_PROTOCOL says: the test throttles
    # the report's HTTP requests and watches them in the access log (with a
    # stream, the report is a gRPC Report call, and the delete below a
    # chunk delta).
    victim, to_victim, from_victim = nemesis.add_linked_worker(cluster, m, "victim",
                                                               WORKER_PROTOCOL="http")
    m.wait_workers(alive=4, total=4)
    vid = victim.worker_id
    direct = victim.client(h.CLUSTER_SECRET)
    # A copy no replica row names, as a given-up write leaves one.
    r = direct.put(f"/chunks/{chunk}", data=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    # The chunk short of good replicas on live workers: a report adopts a
    # listed copy of it.
    holder = cluster.workers[0]
    holder.kill()
    poll(lambda: (m.worker_record(holder.worker_id)["status"] == "dead", None),
         secs(20), "the killed holder to be counted dead")
    # Every request the victim sends the master crawls (beats too, but
    # WORKER_DEAD_AFTER_MS is 8 s); its restart asks for a full report.
    from_victim.throttle(150, dirs=nm.UP)
    mark = m.log_mark()
    victim.kill()
    victim.start()
    # The report's first request (it lists nothing) is answered; the
    # victim then lists its store, and the one batch crawls up the link.
    m.wait_for_log(rf"POST /api/v1/workers/{re.escape(vid)}/report 200", timeout=secs(30),
                   since=mark)
    time.sleep(0.3)
    r = direct.delete(f"/chunks/{chunk}")
    assert r.status_code == 204, r.text
    m.wait_for_log(rf"worker {re.escape(vid)} report: 1 chunks, 1 adopted again",
                   timeout=secs(30), since=mark)
    nemesis.heal()
    assert chunk not in victim.chunk_usage().ids

    def counted_only_where_stored():
        problems = replicas_missing_on_disk(api, cluster, [fid])
        return not problems, problems
    poll(counted_only_where_stored, secs(10),
         "the adopted replica whose copy was deleted to be marked bad")
    # Marked by the ids the worker sent with the master's time before it
    # looked (lost_checked_after_ms, on either transport): a copy written
    # again after that look would have been left good.
    m.wait_for_log(rf"worker {re.escape(vid)} report: 1 replicas of chunks deleted while its "
                   r"report listed the store marked bad \(recorded by \d+", timeout=secs(5),
                   since=mark)


@pytest.mark.slow(reason="an upload of stored bytes waits out a held HEAD (3 s)")
def test_a_copy_written_in_place_of_an_unconfirmed_one_is_trimmed(cluster, nemesis):
    """An upload of bytes already stored asks each replica's worker whether
    it still holds them (HEAD). A worker the master cannot reach (its
    requests held; its beats still arrive, so it is never counted dead and
    owes no rejoin report) is not counted, and a copy is written elsewhere
    in its place: four good replicas, one a surplus that only that worker's
    full report can trim (found by a random-faults CI run that settled at
    four). The master now asks that worker for a full report, whose verdict
    drops its copy: every chunk settles at exactly three."""
    m, victim, to_victim, from_victim = start(cluster, nemesis)
    api = m.user_client()
    vid = victim.worker_id
    victim.wait_for_log(r"chunk report sent", timeout=secs(10))
    rng = random.Random(2029)
    files, data = {}, None
    for i in range(12):  # until placement has put one on the victim (3 of 4 workers)
        got = upload_files(api, rng, 1, 1, 1, prefix=f"head{i}-")
        files.update(got)
        (fid, blob), = got.items()
        if any(vid in ws for ws in holders(api, [fid]).values()):
            data = blob
            break
    assert data is not None, "placement never put a chunk on the victim"
    chunk_id = next(iter(chunk_ids_of(api, [fid])))
    mark = m.log_mark()
    to_victim.cut(nm.UP)  # requests to the victim held; its beats and answers pass
    try:
        again = api.upload(data, "same-bytes.bin")  # the HEAD to the victim times out
    finally:
        nemesis.heal()
    files[again["file_id"]] = data
    log = m.wait_for_log(rf"worker {re.escape(vid)} did not answer whether it holds chunk "
                         rf"{chunk_id[:12]}", timeout=secs(5), since=mark)
    assert log
    assert len(holders(api, [again["file_id"]])[chunk_id]) >= 3
    needed = chunk_ids_of(api, files)

    def settled():
        problems = disk_vs_needed(cluster, needed)
        rows = holders(api, files)
        problems += [f"{c[:12]} on {sorted(ws)}" for c, ws in rows.items() if len(ws) != RF]
        return not problems, problems
    poll(settled, secs(15), "the surplus copy to be trimmed")
    assert vid not in holders(api, files)[chunk_id], "the unconfirmed copy is the surplus"
    assert_downloads(api, files, "after the trim")
