"""test_s3_key_revoke.py - a deleted access key stops working on the S3
listener within the bound docs/S3.md#authentication states, although the
master caches signing keys (src/master/s3_auth.h) so that a request costs
no store read:

* deleted through the master that serves the S3 requests: refused at
  once (the DELETE drops the key from that master's cache), for every
  request after the DELETE's answer;
* deleted behind that master's back (through another master: on SQLite,
  which has one master per store, the row is deleted in the store file
  directly): refused within EFS_S3_AUTH_CACHE_TTL_S (10 s) plus the
  timing margin, and then for good.

Each test first makes the key's signing key cached (a signed request that
succeeds), which is what the bound is about."""

import sqlite3
import time
from pathlib import Path

import pytest

import echofs_harness as h
from s3_helpers import access_key, client, error_code, start_s3

CACHE_TTL_S = 10  # EFS_S3_AUTH_CACHE_TTL_S in src/master/s3_auth.h


@pytest.fixture(scope="module")
def s3(shared_cluster):
    return start_s3(shared_cluster, workers=1, REPLICATION_FACTOR="1")


def cached_key(s3, user):
    """A key of @user whose signing key the master has cached (a bucket
    made and an object read with it): (key, boto3 client)."""
    key = access_key(s3, user)
    c = client(s3, key)
    c.create_bucket(Bucket=f"{user}-b")
    c.put_object(Bucket=f"{user}-b", Key="k", Body=b"x" * 100)
    assert c.get_object(Bucket=f"{user}-b", Key="k")["Body"].read() == b"x" * 100
    return key, c


def test_key_deleted_through_this_master_is_refused_at_once(s3):
    key, c = cached_key(s3, "revoke-here")
    r = s3.user_client("revoke-here").delete(f"/api/v1/keys/{key[0]}")
    assert r.status_code == 204, r.text
    # Every kind of request, right after the DELETE answered (the cache
    # would otherwise serve the key for up to CACHE_TTL_S).
    assert error_code(c.get_object, Bucket="revoke-here-b", Key="k") == "InvalidAccessKeyId"
    assert error_code(c.head_object, Bucket="revoke-here-b", Key="k") in (
        "InvalidAccessKeyId", "403")  # HEAD has no body: boto3 gives the status
    assert error_code(c.put_object, Bucket="revoke-here-b", Key="k2",
                      Body=b"y") == "InvalidAccessKeyId"
    assert error_code(c.list_buckets) == "InvalidAccessKeyId"
    # and nothing was stored by the refused PUT: a fresh key of the same user sees no k2
    c2 = client(s3, access_key(s3, "revoke-here"))
    keys = [o["Key"] for o in c2.list_objects_v2(Bucket="revoke-here-b").get("Contents", [])]
    assert keys == ["k"]


def delete_behind_the_masters_back(shared_cluster, s3, user, key_id):
    """Deletes @key_id (of @user) without going through @s3's REST API."""
    if shared_cluster.backend == "sqlite":
        db = Path(s3.data_dir) / "echofs.db"
        assert db.is_file(), db
        con = sqlite3.connect(str(db), timeout=10)
        try:
            with con:
                n = con.execute("DELETE FROM access_keys WHERE access_key_id = ?",
                                (key_id,)).rowcount
                con.execute("UPDATE access_key_counts SET key_count = key_count - 1"
                            " WHERE owner = ?", (user,))
        finally:
            con.close()
        assert n == 1
        return
    # PostgreSQL, DynamoDB: the cluster's masters share the store.
    other = shared_cluster.add_master("revoker")
    r = other.user_client(user).delete(f"/api/v1/keys/{key_id}")
    assert r.status_code == 204, r.text


def test_key_deleted_elsewhere_is_refused_within_the_cache_ttl(shared_cluster, s3):
    key, c = cached_key(s3, "revoke-there")
    delete_behind_the_masters_back(shared_cluster, s3, "revoke-there", key[0])
    deleted = time.monotonic()
    bound = CACHE_TTL_S + 1 + h.TIMING_MARGIN_S
    # Judged by when each request was sent, so that a slow answer on a
    # loaded machine does not count against the master.
    while True:
        sent = time.monotonic() - deleted
        try:
            c.list_buckets()
        except Exception as e:  # noqa: BLE001 - the code is checked below
            assert error_code(c.list_buckets) == "InvalidAccessKeyId", e
            break
        assert sent <= bound, f"the deleted key still worked {sent:.1f} s later (bound {bound:.1f} s)"
        time.sleep(0.25)
    # and it stays refused (the miss forgot the cached entry)
    for _ in range(3):
        assert error_code(c.get_object, Bucket="revoke-there-b", Key="k") == "InvalidAccessKeyId"
