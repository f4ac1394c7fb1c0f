#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""s3_rechunk.py - the time of a multipart Complete whose parts line up on
the server's chunks (joined by reference) against one whose parts do not
(re-chunked: every byte copied once), with boto3 (docs/S3.md, "Chunk
alignment").

    s3_rechunk.py --endpoint URL --key-id ID --secret S [--region R]
                  --bucket B [--mib 200] [--rounds 3] [--part-mib 8]

Each round uploads, in alternating order, a fresh random object of --mib
MiB in parts of --part-mib MiB (aligned: every part a multiple of the
1 MiB chunk) and one in parts of --part-mib MiB + 1 byte (misaligned:
nothing lines up after the first part), and times each Complete alone.
Each object is read back and checked (SHA-256), then deleted. Prints one
line per Complete and one JSON object per round: aligned and misaligned
seconds and their ratio. Exits 1 when a request fails or a check does
not hold.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import boto3
from botocore.config import Config

MIB = 1 << 20


def one(c, bucket, key, data, part_size):
    upload_id = c.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = []
    for n, first in enumerate(range(0, len(data), part_size), 1):
        r = c.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                          Body=data[first:first + part_size])
        listed.append({"PartNumber": n, "ETag": r["ETag"]})
    start = time.monotonic()
    c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                MultipartUpload={"Parts": listed})
    seconds = time.monotonic() - start
    digest = hashlib.sha256()
    body = c.get_object(Bucket=bucket, Key=key)["Body"]
    for piece in iter(lambda: body.read(MIB), b""):
        digest.update(piece)
    if digest.hexdigest() != hashlib.sha256(data).hexdigest():
        sys.exit(f"s3_rechunk: {key} read back other bytes")
    c.delete_object(Bucket=bucket, Key=key)
    return seconds, len(listed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--part-mib", type=int, default=8)
    a = ap.parse_args()
    # A misaligned Complete answers once the copy is stored: a long read.
    c = boto3.client("s3", endpoint_url=a.endpoint, aws_access_key_id=a.key_id,
                     aws_secret_access_key=a.secret, region_name=a.region,
                     config=Config(read_timeout=3600, retries={"max_attempts": 1}))
    for rnd in range(1, a.rounds + 1):
        result = {"round": rnd, "mib": a.mib}
        order = ["aligned", "misaligned"] if rnd % 2 else ["misaligned", "aligned"]
        for kind in order:
            data = os.urandom(a.mib * MIB)
            part = a.part_mib * MIB + (kind == "misaligned")
            secs, parts = one(c, a.bucket, f"rechunk-{rnd}-{kind}", data, part)
            print(f"round {rnd} {kind}: {parts} parts, Complete {secs:.2f} s", flush=True)
            result[kind + "_s"] = round(secs, 3)
        result["ratio"] = round(result["misaligned_s"] / result["aligned_s"], 1)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
