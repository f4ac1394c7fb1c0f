"""A store newer than the binary: a master whose metadata store was migrated
by a newer master (SQLite, PostgreSQL), or a worker whose volumes hold a
newer worker's records, refuses to start: exit status 2 and one stderr line
naming both versions and what to do (run the newer binary), and nothing is
written to the store. Without the check the older binary ran on and wrote
rows (records) the newer format does not expect; a worker even took the
newer records for a torn tail, dropped them from its index and let
compaction delete them.

The newer store is made as a newer binary would leave it: a row of a
higher version in efs_schema (sqlite3 / psql), a record header of a higher
format version with its CRC intact. DynamoDB mode: test_dynamodb_mode.py.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

import echofs_harness as h


def expect_refusal(proc, *needles) -> str:
    rc = proc.wait_exit()
    lines = proc.stderr_lines()
    assert rc == 2, f"{proc.name} exited {rc}, expected 2 (configuration error): {lines}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {lines}"
    for needle in needles:
        assert needle in lines[0], f"the line does not say {needle!r}: {lines[0]!r}"
    return lines[0]


def newer_schema_refused(master, read_sql, write_sql):
    """Stops @master, adds a schema version one above the store's, starts it
    again: refused, and the store is as it was (no migration ran, no row was
    written). Then without the row it starts again."""
    master.stop()
    known = int(read_sql("SELECT MAX(version) FROM efs_schema"))
    newer = known + 1
    write_sql(f"INSERT INTO efs_schema (version, applied_at) VALUES ({newer}, 0)")
    rows_before = read_sql("SELECT COUNT(*) FROM efs_schema")
    master.start()
    expect_refusal(master, f"schema version {newer}", f"({known})",
                   "run the newer echofs-master")
    assert read_sql("SELECT COUNT(*) FROM efs_schema") == rows_before
    write_sql(f"DELETE FROM efs_schema WHERE version = {newer}")
    master.start()
    master.wait_ready()


def test_master_refuses_a_sqlite_store_of_a_newer_schema(tmp_path, request):
    # SQLite whatever ECHOFS_TEST_BACKEND says: the store is the file
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="sqlite", redis=False)
    try:
        sqlite_case(c)
    finally:
        c.close()


def sqlite_case(c):
    m = c.add_master()
    db = m.data_dir / "echofs.db"

    def read_sql(sql):
        out = subprocess.run(["sqlite3", str(db), sql], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    def write_sql(sql):
        with sqlite3.connect(db) as conn:
            conn.execute(sql)

    newer_schema_refused(m, read_sql, write_sql)


@pytest.mark.skipif(not h.PG_URL, reason="ECHOFS_TEST_PG_URL is not set (scripts/services.sh)")
def test_master_refuses_a_postgres_store_of_a_newer_schema(tmp_path, request):
    c = h.Cluster(tmp_path, label=request.node.nodeid, backend="postgres", redis=False)
    try:
        m = c.add_master()
        newer_schema_refused(m, lambda sql: h.psql(sql, c.database_url).stdout.strip(),
                             lambda sql: h.psql(sql, c.database_url))
    finally:
        c.close()


def test_worker_refuses_volumes_of_a_newer_record_format(cluster):
    m = cluster.add_master(REPLICATION_FACTOR=1)
    w = cluster.add_worker(master=m)
    data = os.urandom(10_000)
    fid = m.user_client().upload(data, "kept.bin")["file_id"]
    w.stop()
    records = h.chunk_records(w.data_dir)
    assert len(records) == 1, records
    rec = next(iter(records.values()))
    with open(rec.path, "rb") as f:
        f.seek(rec.offset)
        header = bytearray(f.read(h.CHUNK_HEADER_LEN))
    known = header[4]
    original = bytes(header)
    # What a newer worker writes: the next format version, header intact.
    header[4] = known + 1
    header[92:96] = h.crc32c(bytes(header[:92])).to_bytes(4, "little")
    with open(rec.path, "r+b") as f:
        f.seek(rec.offset)
        f.write(header)
    volumes = w.data_dir / "volumes"
    before = {p.name: p.read_bytes() for p in volumes.iterdir()}

    w.start()
    expect_refusal(w, f"format version {known + 1}", f"({known})",
                   "run the newer echofs-worker", rec.path.name)
    after = {p.name: p.read_bytes() for p in volumes.iterdir()}
    assert after == before, "the refused worker changed its volumes"

    # The older format again: the worker starts and serves the chunk.
    with open(rec.path, "r+b") as f:
        f.seek(rec.offset)
        f.write(original)
    w.start()
    w.wait_ready()
    assert m.user_client().download(fid) == data
