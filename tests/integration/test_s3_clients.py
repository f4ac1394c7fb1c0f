"""test_s3_clients.py - the S3 API (docs/S3.md) driven by real, unmodified
clients from Debian: the aws CLI (`aws s3 sync/ls`), s3cmd and rclone,
each with the configuration docs/S3.md gives ("Using aws, s3cmd, rclone
and boto3"), against a master serving S3 on S3_PORT with two workers.

Each client runs with its default multipart settings: s3cmd sends its
16 MiB file as a multipart upload of 15 MiB parts (docs/S3.md#multipart-upload);
the other files are below the clients' thresholds (aws 8 MiB, rclone
200 MiB; `aws s3 cp` of 200 MiB in multipart is in test_s3_multipart.py).

Each client runs as a subprocess; when one fails, the assert message
carries its command line, stdout and stderr.
"""

import hashlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import echofs_harness as h
from s3_helpers import REGION, access_key, start_s3

AWS_CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else shutil.which("aws")
S3CMD = shutil.which("s3cmd")
RCLONE = shutil.which("rclone")
TIMEOUT = 120  # per client command; a hung client fails the test, never the suite


@pytest.fixture(scope="module")
def s3(shared_cluster):
    """The master (two workers, every chunk on both) with its S3 port."""
    master = start_s3(shared_cluster, workers=2, REPLICATION_FACTOR="2", CHUNK_SIZE=str(4 << 20))
    master.s3_ca = str(shared_cluster.tls.ca) if shared_cluster.tls else None
    return master


def boto(master, key):
    """boto3 on the same key: the 'other client' that changes objects
    behind a client's back, and reads what a client stored."""
    return boto3.client(
        "s3", endpoint_url=master.s3_url, region_name=REGION, aws_access_key_id=key[0],
        aws_secret_access_key=key[1], verify=master.s3_ca or True,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))


def run(argv, env, expect=0):
    """Run a client; its output when it ends other than @expect is the
    assert message."""
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == expect, (
        f"{' '.join(map(str, argv))}: exit {out.returncode} (expected {expect})\n"
        f"--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}")
    return out


# Names that make clients encode: spaces, UTF-8 (precomposed and not),
# reserved and sub-delimiter characters, nested directories.
NAMES = [
    "readme.txt", "empty", "with space.txt", "two  spaces and trailing .txt",
    "caf\u00e9.txt", "cafe\u0301 decomposed.txt", "\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb.txt",
    "donn\u00e9es/\u00e9t\u00e9 2024/photo \u21161.bin", "emoji \U0001f600.bin",
    "plus+sign.txt", "equals=and&amp.txt", "paren (1).txt", "comma,semi;colon.txt",
    "tilde~dollar$.txt", "at@bang!.txt", "quote'single.txt", "percent%41literal.txt",
    "a/b/c/d/e/deep.txt", "dir with space/inner file.txt", "UPPER/lower/MiXeD.BIN",
]


def make_tree(root: Path, count: int = 200, seed: int = 13) -> dict[str, bytes]:
    """@count files under @root, sizes 0 B..3 MiB (most small, a few large),
    text and random bytes, nested, with the odd names above: rel -> bytes."""
    rnd = random.Random(seed)
    dirs = ["", "docs/", "docs/2024/", "photos/", "photos/summer holiday/",
            "m\u00fcsic/", "x/y/z/", "\u0434\u0430\u043d\u043d\u044b\u0435/"]
    files = {}
    names = list(NAMES)
    n = 0
    while len(names) < count:
        names.append(f"{rnd.choice(dirs)}file {n:03d}{rnd.choice(['.txt', '.bin', '', '.log'])}")
        n += 1
    for i, rel in enumerate(names):
        if rel == "empty" or i % 50 == 49:
            size = 0
        elif i % 40 == 7:
            size = rnd.randint(1 << 20, 3 << 20)  # five files of 1..3 MiB
        else:
            size = rnd.choice([1, 17, 512, 4096, 65536]) + rnd.randint(0, 40000)
        if rel.endswith(".txt") or rel.endswith(".log"):
            line = f"line of {rel} \u00e9\n".encode()
            data = (line * (size // len(line) + 1))[:size]
        else:
            data = rnd.randbytes(size)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data
    return files


def tree_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def assert_same_tree(got: dict[str, bytes], want: dict[str, bytes]):
    assert sorted(got) == sorted(want), (
        f"missing: {sorted(set(want) - set(got))[:10]}, extra: {sorted(set(got) - set(want))[:10]}")
    differ = [rel for rel in want if got[rel] != want[rel]]
    assert not differ, f"{len(differ)} files differ, first: {differ[:5]}"


# ---- aws -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_env(s3, tmp_path_factory):
    home = tmp_path_factory.mktemp("aws-home")
    key = access_key(s3, "cli-aws")
    config = home / "config"
    config.write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
    env = {**h.base_environ(), "HOME": str(home), "AWS_CONFIG_FILE": str(config),
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_ACCESS_KEY_ID": key[0],
           "AWS_SECRET_ACCESS_KEY": key[1], "AWS_PAGER": "", "LC_ALL": "C.UTF-8"}
    return env, key


def aws(s3, env, *args):
    ca = ["--ca-bundle", s3.s3_ca] if s3.s3_ca else []
    return run([AWS_CLI, "--endpoint-url", s3.s3_url, *ca, *args], env).stdout


@pytest.mark.slow(reason="aws s3 sync of 200 files (~10 MiB) up, down and --delete")
@pytest.mark.skipif(AWS_CLI is None, reason="no aws CLI (Debian's awscli)")
def test_aws_s3_sync_up_and_down_gives_identical_trees(s3, aws_env, tmp_path):
    env, key = aws_env
    source = tmp_path / "source"
    files = make_tree(source)
    assert len(files) == 200 and any(len(d) > 2 << 20 for d in files.values())
    aws(s3, env, "s3", "mb", "s3://sync-bucket")
    aws(s3, env, "s3", "sync", "--no-progress", str(source), "s3://sync-bucket/tree/")

    listing = aws(s3, env, "s3", "ls", "--recursive", "s3://sync-bucket/tree/").splitlines()
    assert len(listing) == 200, "\n".join(listing[:20])
    # what landed is what was sent, read by another client
    s3b = boto(s3, key)
    for rel in NAMES:
        got = s3b.get_object(Bucket="sync-bucket", Key="tree/" + rel)["Body"].read()
        assert got == files[rel], rel

    back = tmp_path / "back"
    aws(s3, env, "s3", "sync", "--no-progress", "s3://sync-bucket/tree/", str(back))
    assert_same_tree(tree_of(back), files)
    # nothing left to do either way
    assert aws(s3, env, "s3", "sync", "--no-progress", str(source),
               "s3://sync-bucket/tree/").strip() == ""

    removed = sorted(files)[::10]  # 20 files, odd names among them
    for rel in removed:
        (source / rel).unlink()
    out = aws(s3, env, "s3", "sync", "--no-progress", "--delete", str(source),
              "s3://sync-bucket/tree/")
    assert out.count("delete: ") == len(removed), out
    listing = aws(s3, env, "s3", "ls", "--recursive", "s3://sync-bucket/tree/").splitlines()
    assert len(listing) == 200 - len(removed), "\n".join(listing[:20])
    keys = {k["Key"] for page in s3b.get_paginator("list_objects_v2").paginate(
        Bucket="sync-bucket", Prefix="tree/") for k in page.get("Contents", [])}
    assert keys == {"tree/" + rel for rel in files if rel not in removed}

    aws(s3, env, "s3", "rm", "--recursive", "s3://sync-bucket/")
    aws(s3, env, "s3", "rb", "s3://sync-bucket")


# ---- s3cmd ------------------------------------------------------------------------


@pytest.mark.slow(reason="s3cmd puts and gets a 16 MiB object; each s3cmd run starts Python")
@pytest.mark.skipif(S3CMD is None, reason="s3cmd is not installed (scripts/install-deps.sh)")
def test_s3cmd_mb_put_ls_get_del_rb(s3, tmp_path):
    key = access_key(s3, "cli-s3cmd")
    host = f"127.0.0.1:{s3.s3_port}"
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {key[0]}\nsecret_key = {key[1]}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        f"bucket_location = {REGION}\n"
        f"use_https = {'True' if s3.s3_ca else 'False'}\n"
        + (f"ca_certs_file = {s3.s3_ca}\n" if s3.s3_ca else "")
        + "signature_v2 = False\n")
    env = {**h.base_environ(), "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}

    def s3cmd(*args, expect=0):
        return run([S3CMD, "-c", str(config), "--no-progress", *args], env, expect).stdout

    small = tmp_path / "small file \u00e9.txt"
    small.write_bytes(b"s3cmd says hello\n" * 1000)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(16 * 1024 * 1024 + 3))  # 2 parts of s3cmd's 15 MiB
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    s3cmd("mb", "s3://s3cmd-bucket")
    assert "s3://s3cmd-bucket" in s3cmd("ls")
    for path, dest in [(small, "dir/small file \u00e9.txt"), (big, "big.bin"),
                       (empty, "dir/sub/empty")]:
        s3cmd("put", str(path), f"s3://s3cmd-bucket/{dest}")

    top = s3cmd("ls", "s3://s3cmd-bucket/")
    assert "DIR" in top and "s3://s3cmd-bucket/dir/" in top, top
    assert "s3://s3cmd-bucket/big.bin" in top and str(big.stat().st_size) in top, top
    everything = s3cmd("ls", "--recursive", "s3://s3cmd-bucket/")
    assert len(everything.splitlines()) == 3, everything
    assert "s3://s3cmd-bucket/dir/small file \u00e9.txt" in everything, everything

    back = tmp_path / "back"
    back.mkdir()
    for path, dest in [(small, "dir/small file \u00e9.txt"), (big, "big.bin"),
                       (empty, "dir/sub/empty")]:
        got = back / path.name
        s3cmd("get", f"s3://s3cmd-bucket/{dest}", str(got))
        assert got.read_bytes() == path.read_bytes(), dest
    # the big file went up in two parts: its ETag says so
    etag = boto(s3, key).head_object(Bucket="s3cmd-bucket", Key="big.bin")["ETag"]
    assert etag.endswith('-2"'), etag
    # s3cmd checks the ETag against the MD5 of what it got: the info says so
    info = s3cmd("info", "s3://s3cmd-bucket/big.bin")
    assert hashlib.md5(big.read_bytes()).hexdigest() in info, info

    s3cmd("rb", "s3://s3cmd-bucket", expect=13)  # not empty: BucketNotEmpty
    # one object a request: `del --recursive` sends DeleteObjects (POST
    # ?delete), 501 until batch delete exists
    for dest in ["dir/small file \u00e9.txt", "big.bin", "dir/sub/empty"]:
        s3cmd("del", f"s3://s3cmd-bucket/{dest}")
    assert s3cmd("ls", "--recursive", "s3://s3cmd-bucket/").strip() == ""
    s3cmd("rb", "s3://s3cmd-bucket")
    assert "s3://s3cmd-bucket" not in s3cmd("ls")


# ---- rclone -----------------------------------------------------------------------


@pytest.mark.slow(reason="rclone copy, sync and check of 200 files (~10 MiB)")
@pytest.mark.skipif(RCLONE is None, reason="rclone is not installed (scripts/install-deps.sh)")
def test_rclone_copy_sync_check_lsf(s3, tmp_path):
    key = access_key(s3, "cli-rclone")
    config = tmp_path / "rclone.conf"
    config.write_text(
        "[echofs]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {key[0]}\nsecret_access_key = {key[1]}\n"
        f"endpoint = {s3.s3_url}\nregion = {REGION}\nforce_path_style = true\n")
    env = {**h.base_environ(), "HOME": str(tmp_path), "RCLONE_CONFIG": str(config),
           "LC_ALL": "C.UTF-8"}
    if s3.s3_ca:
        env["RCLONE_CA_CERT"] = s3.s3_ca

    def rclone(*args, expect=0):
        return run([RCLONE, "--retries", "1", "--low-level-retries", "1", *args], env, expect)

    source = tmp_path / "source"
    files = make_tree(source, seed=31)
    remote = "echofs:rclone-bucket/tree"
    rclone("copy", str(source), remote)  # creates the bucket
    rclone("check", str(source), remote)  # sizes and MD5s (the ETags)
    listed = rclone("lsf", "-R", "--files-only", remote).stdout.splitlines()
    assert sorted(listed) == sorted(files), sorted(set(listed) ^ set(files))[:10]

    # sync: a removed file goes, a new one comes, a changed one is replaced
    removed = sorted(files)[::25]
    for rel in removed:
        (source / rel).unlink()
        del files[rel]
    (source / "new dir").mkdir()
    (source / "new dir" / "n\u00e9w.txt").write_bytes(b"added after the copy")
    files["new dir/n\u00e9w.txt"] = b"added after the copy"
    changed = sorted(files)[3]
    files[changed] = b"changed content: " + os.urandom(999)
    (source / changed).write_bytes(files[changed])
    rclone("sync", str(source), remote)
    rclone("check", str(source), remote)
    listed = rclone("lsf", "-R", "--files-only", remote).stdout.splitlines()
    assert sorted(listed) == sorted(files), sorted(set(listed) ^ set(files))[:10]
    back = tmp_path / "back"
    rclone("copy", remote, str(back))
    assert_same_tree(tree_of(back), files)

    # another client changes an object behind rclone's back (same size,
    # other bytes): check reports exactly that one
    victim = next(rel for rel in sorted(files) if len(files[rel]) > 100)
    other = bytearray(files[victim])
    other[50] ^= 0xFF
    boto(s3, key).put_object(Bucket="rclone-bucket", Key="tree/" + victim, Body=bytes(other))
    out = rclone("check", str(source), remote, expect=1)
    assert "1 differences found" in out.stderr, out.stderr
    assert victim in out.stderr, out.stderr

    rclone("purge", "echofs:rclone-bucket")
    assert "rclone-bucket" not in rclone("lsf", "echofs:").stdout
