"""Fencing of background duties by the lease's epoch (issue 19 item 4).

Two masters on one PostgreSQL database. Master A takes the lease for
background duties first; A reaches PostgreSQL through a proxy the test
owns (nemesis.LinkProxy), so it can be cut off from its database while it
still reaches every worker. The classic fencing case (a lease holder whose
instruction is delayed past the lease's move) is built step by step:

1. A file F is uploaded through A; its chunk is on all three workers.
2. The link to worker W1 stops carrying bytes (cut): F is deleted and A's
   collector sends its DELETEs; W2 and W3 delete their copies, the DELETE
   to W1 is held in the proxy (A gives up on it after 5 s). A's DELETE
   carries A's lease epoch e1.
3. A is cut off from PostgreSQL (every connection reset): the server frees
   A's lease, master B takes it with epoch e2 > e1, and A drops its lease
   (it sends nothing more).
4. B's collector deletes a file G's chunk from W1 (new connections to W1
   pass again): W1 has now seen e2.
5. The link to W1 heals: A's old DELETE of F's chunk arrives at last, and
   W1 refuses it (409 stale_lease_epoch): the copy stays, the refusal is
   counted (echofs_worker_fenced_total) and logged.

Without the worker's check W1 would execute A's DELETE after the lease had
moved (F's copy on W1 gone). Needs ECHOFS_TEST_PG_URL (scripts/services.sh).
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse

import pytest
import requests

import echofs_harness as h
import nemesis as nm
from echofs_harness import wait_until

if not h.PG_URL:
    pytest.skip("fencing needs two masters on PostgreSQL: set ECHOFS_TEST_PG_URL "
                "(scripts/services.sh)", allow_module_level=True)

GC_GRACE_MS = 1000
LEASE_LINE = r"this master now runs the background duties \(collection, repair\), lease epoch (\d+)"
# A's collector gives up on a DELETE after 5 s (chunk_workers.c).
DELETE_GIVE_UP_S = 5


def via_proxy(url: str, port: int) -> str:
    """url with its host:port replaced by 127.0.0.1:port (same user, same
    database)."""
    parts = urllib.parse.urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def metric(url: str, name: str) -> float:
    r = requests.get(f"{url}/metrics", timeout=5)
    assert r.status_code == 200, r.text
    m = re.search(rf"^{name} (\S+)$", r.text, re.M)
    assert m, f"{name} not in {url}/metrics"
    return float(m.group(1))


def only_chunk(client: h.ApiClient, file_id: str) -> str:
    r = client.get(f"/api/v1/files/{file_id}")
    assert r.status_code == 200, r.text
    chunks = r.json()["chunks"]
    assert len(chunks) == 1, chunks
    return chunks[0]["chunk_id"]


def on_disk(w: h.Worker, chunk_id: str) -> bool:
    return chunk_id in w.chunk_usage().ids


def test_old_lease_holders_delete_is_refused_after_the_lease_moved(tmp_path, request, nemesis):
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres", redis=False)
    try:
        run(c, nemesis)
    finally:
        c.close()


def run(c: h.Cluster, nemesis: nm.Nemesis):
    pg_port = urllib.parse.urlsplit(c.database_url).port
    a_to_pg = nemesis.proxy(pg_port, "a-to-postgres")
    env = {"GC_GRACE_MS": GC_GRACE_MS, "REPLICATION_FACTOR": 3}
    a = c.add_master("master-a", DATABASE_URL=via_proxy(c.database_url, a_to_pg.port), **env)
    e1 = int(a.wait_for_log(LEASE_LINE, timeout=5 + h.TIMING_MARGIN_S).group(1))
    b = c.add_master("master-b", **env)
    # W1 is reached (by either master) through to_w1; the workers beat to
    # B, so nothing of theirs depends on A.
    w1_port = h.free_port()
    to_w1 = nemesis.proxy(w1_port, "to-w1")
    w1 = c.add_worker("w1", master=b, port=w1_port, WORKER_ADVERTISE_URL=to_w1.url(c.scheme))
    w2 = c.add_worker("w2", master=b)
    w3 = c.add_worker("w3", master=b)
    for m in (a, b):
        m.wait_workers(alive=3, total=3)

    # 1. F and G through A: B has no connection to W1 of its own yet (one
    # opened before the cut would be held by it too).
    ca, cb = a.user_client("alice"), b.user_client("alice")
    f_id = ca.upload(os.urandom(100_000), "f.bin")["file_id"]
    g_id = ca.upload(os.urandom(100_000), "g.bin")["file_id"]
    f_chunk, g_chunk = only_chunk(ca, f_id), only_chunk(ca, g_id)
    for w in (w1, w2, w3):
        assert on_disk(w, f_chunk) and on_disk(w, g_chunk), w.name

    # 2. A's DELETE to W1 is held on the way; W2 and W3 delete.
    to_w1.cut(nm.UP)
    a_mark = a.log_mark()
    assert cb.delete(f"/api/v1/files/{f_id}").status_code == 204
    a.wait_for_log(rf"chunk {f_chunk[:12]}: delete on {re.escape(to_w1.url(c.scheme))}/chunks/"
                   rf"{f_chunk} failed", since=a_mark,
                   timeout=GC_GRACE_MS / 1000 + 1 + DELETE_GIVE_UP_S + 3 + h.TIMING_MARGIN_S)
    assert not on_disk(w2, f_chunk) and not on_disk(w3, f_chunk)
    assert on_disk(w1, f_chunk)
    to_w1.release_new()  # A's DELETE stays held; new connections pass

    # 3. A loses PostgreSQL; B takes the lease with a newer epoch.
    b_mark = b.log_mark()
    a_to_pg.cut(reset=True)
    e2 = int(b.wait_for_log(LEASE_LINE, since=b_mark, timeout=10 + h.TIMING_MARGIN_S).group(1))
    assert e2 > e1, (e1, e2)
    a.wait_for_log(r"background duties (paused|stopped)", since=a_mark,
                   timeout=5 + h.TIMING_MARGIN_S)
    assert metric(b.url, "echofs_lease_epoch") == e2

    # 4. B's collector deletes G's chunk everywhere, W1 included: W1 has
    # seen e2.
    assert cb.delete(f"/api/v1/files/{g_id}").status_code == 204
    wait_until(lambda: not any(on_disk(w, g_chunk) for w in (w1, w2, w3)),
               GC_GRACE_MS / 1000 + 5 + h.TIMING_MARGIN_S,
               what="B's collector to delete G's chunk from every worker")
    assert metric(w1.url, "echofs_worker_lease_epoch") == e2
    assert metric(w1.url, "echofs_worker_fenced_total") == 0

    # 5. A's old DELETE arrives now, and is refused.
    w1_mark = w1.log_mark()
    to_w1.heal()
    w1.wait_for_log(rf"access DELETE /chunks/{f_chunk} ", since=w1_mark,
                    timeout=5 + h.TIMING_MARGIN_S)
    assert on_disk(w1, f_chunk), "W1 executed the old lease holder's DELETE"
    w1.wait_for_log(rf"DELETE /chunks/{f_chunk} refused: lease epoch {e1} is older than {e2}",
                    since=w1_mark, timeout=2)
    assert re.search(rf"access DELETE /chunks/{f_chunk} 409 ", w1.stderr_since(w1_mark))
    assert metric(w1.url, "echofs_worker_fenced_total") == 1
    # The copy is an orphan now (no metadata row): the workers' reports
    # collect it after ORPHAN_GRACE_MS, like any copy a delete missed.

    # What a restarted W1 would start from (fence.c reads it back).
    assert (w1.data_dir / "lease_epoch").read_text().strip() == str(e2)
