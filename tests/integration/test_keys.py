"""S3 access keys through the REST API and the CLI (docs/API.md "Access
keys", docs/S3.md#authentication): POST/GET/DELETE /api/v1/keys with a
user's JWT, each user sees and deletes only their own, the per-user cap,
401 without a token, the secret never stored in plain text, and
`echofs key create|list|delete`.

Runs on the harness's backend (ECHOFS_TEST_BACKEND: sqlite by default,
postgres, aws for DynamoDB); needs no worker. The plain-text check reads
the SQLite file, so it runs on sqlite only."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

import echofs_harness as h
from echofs_harness import assert_json_error

KEY_ID_RE = re.compile(r"^EK[A-Z0-9]{18}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9]{40}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
CAP = 3

_user_seq = itertools.count()


@pytest.fixture(scope="module")
def master(shared_cluster):
    """A master alone (access keys need no worker), with a small key cap."""
    return shared_cluster.add_master(MAX_ACCESS_KEYS_PER_USER=str(CAP))


def new_user(master) -> tuple[str, h.ApiClient]:
    user = f"keys-user-{next(_user_seq)}"
    return user, master.user_client(user)


def create(client) -> dict:
    r = client.post("/api/v1/keys")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"access_key_id", "secret_access_key", "created_at"}, body
    assert KEY_ID_RE.match(body["access_key_id"]), body
    assert SECRET_RE.match(body["secret_access_key"]), body
    assert ISO_RE.match(body["created_at"]), body
    return body


def listed(client) -> list[dict]:
    r = client.get("/api/v1/keys")
    assert r.status_code == 200, r.text
    keys = r.json()["keys"]
    for k in keys:
        assert set(k) == {"access_key_id", "created_at"}, k  # never a secret
    return keys


def test_create_list_delete(master):
    _, c = new_user(master)
    assert listed(c) == []
    a = create(c)
    b = create(c)
    assert a["access_key_id"] != b["access_key_id"]
    assert a["secret_access_key"] != b["secret_access_key"]
    ids = [k["access_key_id"] for k in listed(c)]
    assert ids == [a["access_key_id"], b["access_key_id"]]  # oldest first
    assert a["secret_access_key"] not in c.get("/api/v1/keys").text

    r = c.delete(f"/api/v1/keys/{a['access_key_id']}")
    assert r.status_code == 204, r.text
    assert [k["access_key_id"] for k in listed(c)] == [b["access_key_id"]]
    # deleted: gone, a second delete is 404
    assert_json_error(c.delete(f"/api/v1/keys/{a['access_key_id']}"), 404,
                      "access_key_not_found")
    # not even of our shape: 404 too
    assert_json_error(c.delete("/api/v1/keys/AKIAIOSFODNN7EXAMPLE"), 404,
                      "access_key_not_found")
    assert_json_error(c.delete("/api/v1/keys/ek" + "a" * 18), 404, "access_key_not_found")


def test_another_user_cannot_see_or_delete(master):
    _, alice = new_user(master)
    _, bob = new_user(master)
    k = create(alice)
    assert listed(bob) == []
    assert_json_error(bob.delete(f"/api/v1/keys/{k['access_key_id']}"), 404,
                      "access_key_not_found")
    assert [x["access_key_id"] for x in listed(alice)] == [k["access_key_id"]]
    r = alice.delete(f"/api/v1/keys/{k['access_key_id']}")
    assert r.status_code == 204, r.text


def test_cap_per_user(master):
    _, c = new_user(master)
    _, other = new_user(master)
    keys = [create(c) for _ in range(CAP)]
    err = assert_json_error(c.post("/api/v1/keys"), 409, "too_many_access_keys")
    assert "MAX_ACCESS_KEYS_PER_USER" in err["message"]
    assert len(listed(c)) == CAP
    create(other)  # the cap is per user
    # a delete gives a place back
    assert c.delete(f"/api/v1/keys/{keys[0]['access_key_id']}").status_code == 204
    create(c)
    assert_json_error(c.post("/api/v1/keys"), 409, "too_many_access_keys")


def test_needs_a_user_token(master):
    anonymous = master.client()
    assert_json_error(anonymous.post("/api/v1/keys"), 401, "unauthorized")
    assert_json_error(anonymous.get("/api/v1/keys"), 401, "unauthorized")
    assert_json_error(anonymous.delete("/api/v1/keys/EK" + "A" * 18), 401, "unauthorized")
    forged = master.client(h.token("mallory", secret="not-the-secret"))
    assert_json_error(forged.post("/api/v1/keys"), 401, "invalid_token")
    # the cluster secret is not a user: it owns no keys
    assert_json_error(master.cluster_client().post("/api/v1/keys"), 401, "invalid_token")


def test_secret_not_stored_in_plain_text(master, shared_cluster):
    if shared_cluster.backend != "sqlite":
        pytest.skip("reads the SQLite file (backend %s)" % shared_cluster.backend)
    _, c = new_user(master)
    k = create(c)
    stored = b""
    for f in Path(master.data_dir).rglob("*"):
        if f.is_file() and ".db" in f.name:
            stored += f.read_bytes()
    # the right files: the key id is there, the secret is not
    assert k["access_key_id"].encode() in stored, "the key is not in the SQLite files"
    assert k["secret_access_key"].encode() not in stored
    assert k["secret_access_key"].encode().hex().encode() not in stored


def test_cli_round_trip(master):
    user, c = new_user(master)
    env = {"ECHOFS_URL": master.url, "ECHOFS_TOKEN": h.token(user)}
    p = h.run_cli("key", "create", env=env)
    assert p.returncode == 0, p.stderr
    fields = dict(line.split(None, 1) for line in p.stdout.splitlines()[:3])
    key_id, secret = fields["access_key_id"], fields["secret_access_key"]
    assert KEY_ID_RE.match(key_id) and SECRET_RE.match(secret), p.stdout
    assert f"aws configure set aws_access_key_id {key_id}" in p.stdout
    assert f"aws configure set aws_secret_access_key {secret}" in p.stdout

    p = h.run_cli("key", "list", env=env)
    assert p.returncode == 0, p.stderr
    assert key_id in p.stdout and secret not in p.stdout
    assert [k["access_key_id"] for k in listed(c)] == [key_id]

    p = h.run_cli("key", "delete", key_id, env=env)
    assert p.returncode == 0 and p.stdout == "", (p.stdout, p.stderr)
    assert listed(c) == []
    p = h.run_cli("key", "delete", key_id, env=env)
    assert p.returncode == 1 and f"no access key {key_id}" in p.stderr, p.stderr

    # usage errors exit 2; no token exits 1
    assert h.run_cli("key", env=env).returncode == 2
    assert h.run_cli("key", "rotate", env=env).returncode == 2
    assert h.run_cli("key", "delete", env=env).returncode == 2
    assert h.run_cli("key", "list", "extra", env=env).returncode == 2
    p = h.run_cli("key", "list", env={"ECHOFS_URL": master.url, "ECHOFS_TOKEN": None})
    assert p.returncode == 1, p.stderr
