"""Authentication: user JWTs (HS256, sub and exp required), the cluster
secret, and the `echofs token` command."""

import base64
import time

import pytest

import echofs_harness as h
from echofs_harness import CLUSTER_SECRET, JWT_SECRET, assert_json_error, make_jwt, wait_until

OTHER_SECRET = "not-the-jwt-secret-0123456789abcdef"
EMPTY_LIST = {"files": [], "next_cursor": None}


@pytest.fixture(scope="module")
def master(shared_cluster):
    return shared_cluster.add_master("auth-master")


@pytest.fixture(scope="module")
def worker(shared_cluster, master):
    return shared_cluster.add_worker("auth-worker", master=master)


def now():
    return int(time.time())


def claims(**overrides):
    """Valid claims for alice (an hour left), with overrides; None drops a claim."""
    c = {"sub": "alice", "iat": now(), "exp": now() + 3600}
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}


def tampered():
    head, _, sig = h.token("alice").split(".")
    return ".".join([head, h.b64url(b'{"sub":"mallory","exp":9999999999}'), sig])


# Each builds an Authorization header value (None: no header).
BAD_CREDENTIALS = {
    "no-header": lambda: None,
    "bearer-garbage": lambda: "Bearer garbage",
    "bearer-empty": lambda: "Bearer ",
    "bearer-three-garbage-parts": lambda: "Bearer aaa.bbb.ccc",
    "other-secret": lambda: "Bearer " + make_jwt(claims(), OTHER_SECRET),
    "alg-none": lambda: "Bearer " + make_jwt(claims(), alg="none"),
    "alg-none-header-with-signature": lambda: "Bearer " + make_jwt(
        claims(), header={"alg": "none", "typ": "JWT"}),
    "alg-hs512": lambda: "Bearer " + make_jwt(claims(), alg="HS512"),
    "expired": lambda: "Bearer " + make_jwt(claims(iat=now() - 120, exp=now() - 60)),
    "no-sub": lambda: "Bearer " + make_jwt(claims(sub=None)),
    "empty-sub": lambda: "Bearer " + make_jwt(claims(sub="")),
    "sub-not-a-user-id": lambda: "Bearer " + make_jwt(claims(sub="../alice")),
    "sub-not-a-string": lambda: "Bearer " + make_jwt(claims(sub=42)),
    "no-exp": lambda: "Bearer " + make_jwt(claims(exp=None)),
    "exp-as-string": lambda: "Bearer " + make_jwt(claims(exp=str(now() + 3600))),
    "tampered-payload": lambda: "Bearer " + tampered(),
    "basic": lambda: "Basic " + base64.b64encode(b"alice:password").decode(),
    "basic-with-valid-token": lambda: "Basic " + h.token("alice"),
    "token-without-scheme": lambda: h.token("alice"),
    "cluster-secret-on-user-endpoint": lambda: "Bearer " + CLUSTER_SECRET,
}


@pytest.mark.parametrize("make_header", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_files_refuses_bad_credentials(master, make_header):
    header = make_header()
    c = master.client()
    r = c.get("/api/v1/files", headers={"Authorization": header} if header is not None else {})
    assert_json_error(r, 401)
    assert "bearer" in r.headers.get("WWW-Authenticate", "").lower(), \
        f"401 without WWW-Authenticate: Bearer: {dict(r.headers)}"


def test_files_accepts_a_token_from_echofs_token(master):
    r = master.client(h.token("alice")).get("/api/v1/files")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == EMPTY_LIST


def test_files_accepts_a_hand_built_token(master):
    # The bad-credential cases above differ from this one in one defect each.
    r = master.client(make_jwt(claims(exp=now() + 30))).get("/api/v1/files")
    assert r.status_code == 200, r.text
    assert r.json() == EMPTY_LIST


def test_auth_scheme_is_case_insensitive(master):
    r = master.client().get("/api/v1/files", headers={"Authorization": "bearer " + h.token()})
    assert r.status_code == 200, r.text


@pytest.mark.slow(reason="waits about two seconds for a token to expire")
def test_token_from_echofs_token_expires(master):
    tok = h.token("alice", ttl=2)
    c = master.client(tok)
    assert c.get("/api/v1/files").status_code == 200
    issued_exp = h.decode_jwt(tok)[1]["exp"]

    def refused():
        r = c.get("/api/v1/files")
        return (r,) if r.status_code == 401 else None  # (a 4xx Response is falsy)
    r, = wait_until(refused, 3 + h.TIMING_MARGIN_S, interval=0.1, what="the token to expire")
    assert now() >= issued_exp
    assert_json_error(r, 401)


def test_user_token_cannot_register_or_heartbeat(master, worker):
    user = master.user_client("alice")
    body = {"url": "http://127.0.0.1:9", "capacity_bytes": 1, "free_bytes": 1}
    assert_json_error(user.post("/api/v1/workers/register", json=body), 401)
    beat = {"capacity_bytes": 1, "free_bytes": 1, "chunk_count": 0}
    assert_json_error(user.post(f"/api/v1/workers/{worker.worker_id}/heartbeat", json=beat), 401)
    anonymous = master.client()
    assert_json_error(anonymous.post("/api/v1/workers/register", json=body), 401)
    wrong = master.client(OTHER_SECRET)
    assert_json_error(wrong.post("/api/v1/workers/register", json=body), 401)
    assert_json_error(wrong.post(f"/api/v1/workers/{worker.worker_id}/heartbeat", json=beat), 401)
    # Nothing was registered, and the real worker's record is untouched.
    listed = master.workers()
    assert [w["worker_id"] for w in listed] == [worker.worker_id]
    assert listed[0]["url"] == worker.url and listed[0]["capacity_bytes"] > 1


def test_workers_list_accepts_cluster_secret_and_user_token(master, worker):
    by_cluster = master.cluster_client().get("/api/v1/workers")
    by_user = master.user_client("bob").get("/api/v1/workers")
    for r in (by_cluster, by_user):
        assert r.status_code == 200, r.text
        assert [w["worker_id"] for w in r.json()["workers"]] == [worker.worker_id]
    assert_json_error(master.client().get("/api/v1/workers"), 401)
    assert_json_error(master.client("garbage").get("/api/v1/workers"), 401)
    assert_json_error(master.client(OTHER_SECRET).get("/api/v1/workers"), 401)
    expired = make_jwt(claims(exp=now() - 1))
    assert_json_error(master.client(expired).get("/api/v1/workers"), 401)


def test_health_needs_no_credentials(master):
    r = master.client().get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] in ("ok", "degraded")


@pytest.mark.parametrize("header", [None, "user-token", "Bearer " + OTHER_SECRET,
                                    "Bearer " + JWT_SECRET, "Basic " + CLUSTER_SECRET,
                                    CLUSTER_SECRET],
                         ids=["none", "user-token", "wrong-secret", "jwt-secret",
                              "basic-scheme", "no-scheme"])
def test_worker_health_refuses_anything_but_the_cluster_secret(worker, header):
    if header == "user-token":
        header = "Bearer " + h.token("alice")
    r = worker.client().get("/health", headers={"Authorization": header} if header else {})
    assert_json_error(r, 401)


def test_worker_health_accepts_the_cluster_secret(worker):
    r = worker.health()
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"


# ---- echofs token ------------------------------------------------------------


def test_echofs_token_signs_with_jwt_secret():
    before = now()
    tok = h.token("carol", ttl=600)
    header, payload, _ = h.decode_jwt(tok)
    assert header["alg"] == "HS256"
    assert payload["sub"] == "carol"
    assert before + 600 <= payload["exp"] <= now() + 600
    assert h.jwt_signature_valid(tok, JWT_SECRET)
    assert not h.jwt_signature_valid(tok, OTHER_SECRET)
    default = h.decode_jwt(h.token("carol"))[1]
    assert default["exp"] > now() + 60, "the default ttl is not a usable token"


@pytest.mark.parametrize("args,env,mentions", [
    (["token"], None, "--user"),
    (["token", "--ttl", "60"], None, "--user"),
    (["token", "--user", "alice"], {"JWT_SECRET": None}, "JWT_SECRET"),
    (["token", "--user", "alice"], {"JWT_SECRET": ""}, "JWT_SECRET"),
    (["token", "--user", "alice", "--ttl", "0"], None, "--ttl"),
    (["token", "--user", "alice", "--ttl", "abc"], None, "--ttl"),
    (["token", "--user", "not a user"], None, "user"),
], ids=["no-user", "ttl-without-user", "no-jwt-secret", "empty-jwt-secret", "ttl-zero",
        "ttl-abc", "bad-user"])
def test_echofs_token_refuses_bad_arguments(args, env, mentions):
    proc = h.run_cli(*args, env=env)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode != 0, f"echofs {' '.join(args)} succeeded: {proc.stdout!r}"
    assert proc.stdout == "", f"printed something on failure: {proc.stdout!r}"
    assert len(lines) == 1, f"expected one stderr line: {lines}"
    assert mentions in lines[0], f"{lines[0]!r} does not mention {mentions}"
