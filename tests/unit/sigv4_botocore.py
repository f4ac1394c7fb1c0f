#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""sigv4_botocore.py - signatures of a few fixed requests computed by
botocore, for tests/unit/test_sigv4.c to compare with its own (a second
opinion beyond AWS's published vectors, from the signer the aws CLI uses).

Prints one line per case, "<name> <signature>", and for the presigned URL
"<name> <query string>". Exits 77 (the test skips)
when botocore is not installed (Debian: python3-botocore, pulled in by
awscli). The cases here and in test_sigv4.c:test_matches_botocore() are the
same requests: change both together.
"""
import datetime
import sys
from unittest import mock

try:
    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    sys.exit(77)

AMZ_DATE = "20150830T123600Z"
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

CASES = [
    ("dynamodb-post", SigV4Auth, "dynamodb", "POST",
     "https://dynamodb.us-east-1.amazonaws.com/",
     {"Content-Type": "application/x-amz-json-1.0",
      "X-Amz-Target": "DynamoDB_20120810.GetItem"},
     b'{"TableName":"files","Key":{"id":{"S":"a b"}}}'),
    ("service-path-query", SigV4Auth, "service", "GET",
     "https://example.amazonaws.com/a%20b/./c/../d?z=1&a=%2F&a=%20&empty=",
     {"My-Header": "  x   y  "}, b""),
    ("s3-get-key", S3SigV4Auth, "s3", "GET",
     "https://bucket.s3.amazonaws.com/dir/my%20key%2Bplus.txt?versionId=abc",
     {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "Range": "bytes=0-9"}, b""),
    ("s3-list", S3SigV4Auth, "s3", "GET",
     "https://s3.amazonaws.com/bucket?list-type=2&prefix=a%2Fb%20c&delimiter=%2F",
     {"X-Amz-Content-SHA256": EMPTY}, b""),
]

for name, cls, service, method, url, headers, body in CASES:
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    request.context["timestamp"] = AMZ_DATE
    request.headers["X-Amz-Date"] = AMZ_DATE
    auth = cls(CREDS, service, "us-east-1")
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    print(name, auth.signature(string_to_sign, request))

# A presigned GET with temporary credentials: the whole query string.
request = AWSRequest(method="GET",
                     url="https://bucket.s3.amazonaws.com/dir/a%20b.txt?versionId=abc",
                     headers={})
with mock.patch("botocore.auth.datetime") as clock:
    clock.datetime.utcnow.return_value = datetime.datetime(2015, 8, 30, 12, 36)
    S3SigV4QueryAuth(Credentials(CREDS.access_key, CREDS.secret_key, "tok/en+=="),
                     "s3", "us-east-1", expires=900).add_auth(request)
print("s3-presign", request.url.split("?", 1)[1])
