#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""s3_large.py - one large PUT and one GET through an S3 endpoint with boto3,
for bench/run.sh's S3 lines (issue 13).

    s3_large.py --endpoint URL --key-id ID --secret S [--region R]
                --bucket B --key K --file FILE [--create-bucket] [--put-only]

PUT: one put_object of FILE, the body an open file object (botocore streams
it; over plain HTTP it first reads the file once to compute the payload's
SHA-256 for the signature, as every boto3 user on HTTP pays). One request,
no multipart, to compare one stream with the REST upload's one stream
(boto3's upload_file would switch to multipart above 8 MiB). The ETag
answered must be the file's MD5.

GET: one get_object, the body read in 1 MiB pieces and dropped; its length
must be the file's. --put-only skips it (bench/s3_large.sh's BENCH_BOTO3
rounds, which take the master's CPU around the PUT alone).

Prints one JSON object: put_seconds, get_seconds, bytes, put/get MiB/s and
the client's own CPU seconds for each (user + system of this process), so
that the report can say how much of a transfer's time the client spent.
Exits 1 (message on stderr) when a request fails or a check does not hold.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import boto3
from botocore.config import Config

PIECE = 1 << 20


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--create-bucket", action="store_true")
    ap.add_argument("--put-only", action="store_true")
    args = ap.parse_args()

    s3 = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name=args.region,
        aws_access_key_id=args.key_id, aws_secret_access_key=args.secret,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      retries={"max_attempts": 1}, read_timeout=600, connect_timeout=10))
    if args.create_bucket:
        s3.create_bucket(Bucket=args.bucket)

    size = os.path.getsize(args.file)
    md5 = hashlib.md5()
    with open(args.file, "rb") as f:
        for piece in iter(lambda: f.read(PIECE), b""):
            md5.update(piece)

    cpu0, t0 = cpu_seconds(), time.monotonic()
    with open(args.file, "rb") as f:
        answer = s3.put_object(Bucket=args.bucket, Key=args.key, Body=f,
                               ContentType="application/octet-stream")
    put_s, put_cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    etag = answer.get("ETag", "").strip('"')
    if etag != md5.hexdigest():
        print(f"s3_large: PUT answered ETag {etag!r}, the file's MD5 is {md5.hexdigest()}",
              file=sys.stderr)
        return 1

    cpu0, t0 = cpu_seconds(), time.monotonic()
    got = size
    if not args.put_only:
        body = s3.get_object(Bucket=args.bucket, Key=args.key)["Body"]
        got = 0
        for piece in iter(lambda: body.read(PIECE), b""):
            got += len(piece)
    get_s, get_cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    if got != size:
        print(f"s3_large: GET sent {got} bytes, the object has {size}", file=sys.stderr)
        return 1

    mib = size / 1048576
    json.dump({"client": f"boto3 {boto3.__version__}, put_object/get_object, one request each",
               "bytes": size, "put_seconds": round(put_s, 4), "get_seconds": round(get_s, 4),
               "put_mib_s": round(mib / put_s, 2),
               "get_mib_s": None if args.put_only else round(mib / get_s, 2),
               "put_client_cpu_s": round(put_cpu, 3), "get_client_cpu_s": round(get_cpu, 3)},
              sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
