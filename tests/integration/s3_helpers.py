"""s3_helpers.py - what the S3 black-box tests share (test_s3_api.py,
test_s3_copy.py, test_s3_multipart.py, test_s3_conformance.py,
test_s3_checksums.py...): a master with an S3 listener, access keys from
the REST API, boto3 clients, requests signed by botocore's SigV4 signer for
the raw HTTP tests, and the error an S3 call fails with."""

import hashlib

import boto3
import botocore
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

import echofs_harness as h

REGION = "us-east-1"


def start_s3(cluster, workers=2, **master_env):
    """A master of @cluster serving S3 on a free port, with @workers
    workers; .s3_port, .s3_url and .s3_verify (the CA under TLS) set."""
    port = h.free_port()
    master = cluster.start(workers=workers, master_env={"S3_PORT": str(port), **master_env})
    master.s3_port = port
    # HTTPS with the REST listener's certificate under ECHOFS_TEST_TLS
    master.s3_url = f"{cluster.scheme}://127.0.0.1:{port}"
    master.s3_verify = str(cluster.tls.ca) if cluster.tls else True
    return master


def access_key(master, user):
    """A new access key of @user, through the REST API: (id, secret)."""
    r = master.user_client(user).post("/api/v1/keys")
    assert r.status_code == 201, r.text
    body = r.json()
    return body["access_key_id"], body["secret_access_key"]


def client(master, key, **config):
    """A boto3 S3 client of @key (path-style, no retries)."""
    key_id, secret = key
    return boto3.client(
        "s3", endpoint_url=master.s3_url, region_name=REGION,
        aws_access_key_id=key_id, aws_secret_access_key=secret, verify=master.s3_verify,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      signature_version="s3v4", **config))


def signed_request(key, method, url, body=b"", headers=None, payload_sha256=None):
    """The headers of a request signed with SigV4 by botocore for @key
    (id, secret): the caller sends it, possibly with another body than the
    one signed. x-amz-content-sha256 is @payload_sha256, else the SHA-256
    of @body."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.headers["x-amz-content-sha256"] = payload_sha256 or hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(*key), "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def error_code(call, *args, **kwargs):
    """The S3 error code @call fails with (it must fail)."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"]


def status_of(call, *args, **kwargs):
    """The HTTP status @call fails with (it must fail)."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def failure(call, *args, **kwargs):
    """(status, code) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(*args, **kwargs)
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]
