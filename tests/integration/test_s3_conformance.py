"""test_s3_conformance.py - semantics S3 clients rely on, case by case from
the Amazon S3 API reference (ListObjectsV2, ListObjects, GetObject,
HeadObject, PutObject, DeleteObject), each test naming the rule it checks.

test_s3_api.py, test_s3_conditional.py, test_s3_copy.py and
test_s3_multipart.py test each operation and its errors; this file adds
the edge cases a client's correctness depends on and that are easy to get
subtly wrong: the 1,000-key cap, url encoding of listed names (checked in
the raw XML, since boto3 decodes it), FetchOwner, delimiters other than
"/" and longer than one byte, a prefix that ends inside a path segment,
a continuation token together with StartAfter, pagination while keys are
written and deleted, keys with empty, dot and blank segments, the empty
object, ranges at and past the end, and idempotent deletes.
"""
import hashlib
import urllib.parse
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from s3_helpers import access_key, client, error_code, failure, signed_request, start_s3

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture(scope="module")
def s3(shared_cluster):
    return start_s3(shared_cluster, REPLICATION_FACTOR="2")


@pytest.fixture(scope="module")
def key(s3):
    return access_key(s3, "s3-conformance")


@pytest.fixture(scope="module")
def c(s3, key):
    return client(s3, key)


def bucket(c, name):
    c.create_bucket(Bucket=name)
    return name


def put_all(c, name, keys, body=b"x"):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: c.put_object(Bucket=name, Key=k, Body=body), keys))


def all_pages(c, name, **kwargs):
    """Every key and common prefix of a v2 listing, page by page."""
    keys, prefixes, token = [], [], None
    while True:
        more = {"ContinuationToken": token} if token else {}
        page = c.list_objects_v2(Bucket=name, **kwargs, **more)
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            return keys, prefixes
        token = page["NextContinuationToken"]


def raw_list(s3, key, name, query):
    """A v2 listing's XML root, fetched with a signed request (no boto3
    decoding in between)."""
    query = urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
    url = f"{s3.s3_url}/{name}?{query}"
    r = requests.get(url, headers=signed_request(key, "GET", url), verify=s3.s3_verify,
                     timeout=30)
    assert r.status_code == 200, r.text
    return ET.fromstring(r.content)


def test_max_keys_is_capped_at_1000(c):
    """ListObjectsV2: "returns some or all (up to 1,000) of the objects";
    MaxKeys above 1,000 still returns at most 1,000, and the next page
    holds the rest."""
    name = bucket(c, "conf-thousand")
    keys = [f"k{i:05d}" for i in range(1003)]
    put_all(c, name, keys)
    for max_keys in (None, 5000):
        extra = {"MaxKeys": max_keys} if max_keys else {}
        page = c.list_objects_v2(Bucket=name, **extra)
        assert page["KeyCount"] == 1000 and page["IsTruncated"], (max_keys, page["KeyCount"])
        assert [o["Key"] for o in page["Contents"]] == keys[:1000]
        rest = c.list_objects_v2(Bucket=name, ContinuationToken=page["NextContinuationToken"])
        assert [o["Key"] for o in rest["Contents"]] == keys[1000:] and not rest["IsTruncated"]
    v1 = c.list_objects(Bucket=name, MaxKeys=5000)
    assert len(v1["Contents"]) == 1000 and v1["IsTruncated"]


def test_encoding_type_url_encodes_every_listed_name(s3, key, c):
    """ListObjectsV2 EncodingType=url: Key, Prefix, Delimiter, StartAfter
    and CommonPrefixes come url-encoded, so that names with characters XML
    1.0 cannot carry (or that a parser would mangle) survive. A decoder
    may use unquote_plus (botocore does): '+' itself must be encoded."""
    name = bucket(c, "conf-encoding")
    keys = ["a b+c&d<e>", "dir one/f\u00e9", "dir one/x%y", "ctl\x01key", "plus+/z"]
    put_all(c, name, keys)
    root = raw_list(s3, key, name, {"list-type": "2", "encoding-type": "url",
                                    "delimiter": "/", "start-after": "a b+c"})
    assert root.findtext(f"{NS}EncodingType") == "url"
    listed = [e.findtext(f"{NS}Key") for e in root.findall(f"{NS}Contents")]
    assert "+" not in "".join(listed) and "&" not in "".join(listed)
    assert [urllib.parse.unquote_plus(k) for k in listed] == ["a b+c&d<e>", "ctl\x01key"]
    prefixes = [urllib.parse.unquote_plus(p.findtext(f"{NS}Prefix"))
                for p in root.findall(f"{NS}CommonPrefixes")]
    assert prefixes == ["dir one/", "plus+/"]
    assert urllib.parse.unquote_plus(root.findtext(f"{NS}StartAfter")) == "a b+c"
    # boto3 decodes the same listing back to the keys as written
    got, pre = all_pages(c, name)
    assert got == sorted(keys, key=str.encode) and pre == []


def test_fetch_owner(c):
    """ListObjectsV2 returns Owner only with FetchOwner=true; ListObjects
    (v1) always returns it."""
    name = bucket(c, "conf-owner")
    c.put_object(Bucket=name, Key="k", Body=b"v")
    assert "Owner" not in c.list_objects_v2(Bucket=name)["Contents"][0]
    owner = c.list_objects_v2(Bucket=name, FetchOwner=True)["Contents"][0]["Owner"]
    assert owner["ID"]
    assert c.list_objects(Bucket=name)["Contents"][0]["Owner"]["ID"] == owner["ID"]


def test_delimiters_other_than_slash(c):
    """A delimiter is any string, not only "/": keys are rolled up at the
    first occurrence of the whole delimiter after the prefix."""
    name = bucket(c, "conf-delims")
    keys = ["a--b--c", "a--d", "a-e", "ab", "b|c", "b|d|e", "bb"]
    put_all(c, name, keys)
    assert all_pages(c, name, Delimiter="--") == (["a-e", "ab", "bb", "b|c", "b|d|e"],
                                                  ["a--"])
    assert all_pages(c, name, Delimiter="|") == (["a--b--c", "a--d", "a-e", "ab", "bb"], ["b|"])
    assert all_pages(c, name, Prefix="a--", Delimiter="--") == (["a--d"], ["a--b--"])
    # a delimiter that occurs in no key: a plain listing
    assert all_pages(c, name, Delimiter="zz") == (sorted(keys, key=str.encode), [])
    # the prefix itself is not searched for the delimiter
    assert all_pages(c, name, Prefix="b|", Delimiter="|") == (["b|c"], ["b|d|"])


def test_prefix_ending_inside_a_segment_and_empty_segments(c):
    """The prefix is matched byte by byte, not by path segment; rolling up
    starts after it, so an empty segment ("a//b") makes its own prefix."""
    name = bucket(c, "conf-prefix")
    keys = ["photos/2024/1", "photos/2025/1", "photos/20x", "photos2", "a//b", "a/b"]
    put_all(c, name, keys)
    assert all_pages(c, name, Prefix="photos/20", Delimiter="/") == (
        ["photos/20x"], ["photos/2024/", "photos/2025/"])
    assert all_pages(c, name, Prefix="photos", Delimiter="/") == (["photos2"], ["photos/"])
    assert all_pages(c, name, Prefix="a/", Delimiter="/") == (["a/b"], ["a//"])


def test_continuation_token_with_start_after(c):
    """Clients (the boto3 paginator, the aws CLI) send StartAfter again with
    every continuation token: the token decides where the page starts, and
    no key is repeated or skipped."""
    name = bucket(c, "conf-token")
    keys = [f"k{i}" for i in range(10)]
    put_all(c, name, keys)
    first = c.list_objects_v2(Bucket=name, StartAfter="k3", MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == ["k4", "k5"]
    rest = c.list_objects_v2(Bucket=name, StartAfter="k3", MaxKeys=100,
                             ContinuationToken=first["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == ["k6", "k7", "k8", "k9"]
    assert c.list_objects_v2(Bucket=name, StartAfter="k9")["KeyCount"] == 0
    assert c.list_objects_v2(Bucket=name, StartAfter="zzz")["KeyCount"] == 0


def test_pagination_while_keys_are_written_and_deleted(c):
    """A listing continued after writes sees each key once, in order: keys
    written behind its position are not returned, keys written ahead are,
    and keys deleted ahead are not."""
    name = bucket(c, "conf-live")
    put_all(c, name, [f"k{i:02d}" for i in range(0, 40, 2)])
    page = c.list_objects_v2(Bucket=name, MaxKeys=5)
    seen = [o["Key"] for o in page["Contents"]]
    assert seen == ["k00", "k02", "k04", "k06", "k08"]
    put_all(c, name, ["k01", "k05", "k09", "k11", "k39"])  # two behind, three ahead
    for k in ("k12", "k30"):
        c.delete_object(Bucket=name, Key=k)
    token = page["NextContinuationToken"]
    while token:
        page = c.list_objects_v2(Bucket=name, MaxKeys=5, ContinuationToken=token)
        seen += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken") if page["IsTruncated"] else None
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {"k09", "k11", "k39"} <= set(seen)
    assert not {"k01", "k05", "k12", "k30"} & set(seen)


def test_v1_next_marker_with_a_delimiter(c):
    """ListObjects (v1): with a delimiter, a truncated page carries
    NextMarker (which may be a common prefix); continuing from it repeats
    nothing."""
    name = bucket(c, "conf-v1")
    put_all(c, name, ["a/1", "a/2", "b", "c/1", "d", "e/1"])
    got, marker = [], ""
    while True:
        page = c.list_objects(Bucket=name, Delimiter="/", MaxKeys=2, Marker=marker)
        got += [o["Key"] for o in page.get("Contents", [])]
        got += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert sorted(got) == ["a/", "b", "c/", "d", "e/"] and len(got) == 5


@pytest.mark.parametrize("k", ["dir/", "a//b", "./x", "../y", "a/./b", " ", "x " * 100,
                               "\u00e9t\u00e9/\u2603", "k" * 1024])
def test_keys_are_opaque_strings(c, k):
    """Object keys are UTF-8 strings of up to 1,024 bytes; "/" has no
    meaning to the store: "dir/" (a console "folder"), empty, dot and blank
    segments are keys like any other, never normalised."""
    name = "conf-keys"
    try:
        c.create_bucket(Bucket=name)
    except c.exceptions.BucketAlreadyOwnedByYou:
        pass
    body = k.encode()[:64]
    c.put_object(Bucket=name, Key=k, Body=body)
    assert c.get_object(Bucket=name, Key=k)["Body"].read() == body
    assert k in [o["Key"] for o in c.list_objects_v2(Bucket=name, Prefix=k)["Contents"]]
    c.delete_object(Bucket=name, Key=k)
    assert error_code(c.head_object, Bucket=name, Key=k) == "404"


def test_a_key_over_1024_bytes_is_refused(c):
    name = bucket(c, "conf-long")
    assert error_code(c.put_object, Bucket=name, Key="k" * 1025, Body=b"x") == "KeyTooLongError"
    assert error_code(c.put_object, Bucket=name, Key="\u00e9" * 513, Body=b"x") == \
        "KeyTooLongError"


def test_the_empty_object(c):
    """A zero-byte object has the MD5 of nothing as its ETag; a range on it
    is unsatisfiable (416 InvalidRange), a plain GET returns no bytes."""
    name = bucket(c, "conf-empty")
    put = c.put_object(Bucket=name, Key="e", Body=b"")
    assert put["ETag"] == '"%s"' % hashlib.md5(b"").hexdigest()
    got = c.get_object(Bucket=name, Key="e")
    assert got["ContentLength"] == 0 and got["Body"].read() == b""
    assert c.head_object(Bucket=name, Key="e")["ContentLength"] == 0
    assert failure(c.get_object, Bucket=name, Key="e", Range="bytes=0-0") == \
        (416, "InvalidRange")
    assert c.list_objects_v2(Bucket=name)["Contents"][0]["Size"] == 0


@pytest.mark.parametrize("header, status, content_range, want", [
    ("bytes=5-1000", 206, "bytes 5-9/10", b"56789"),  # last byte past the end: clamped
    ("bytes=-100", 206, "bytes 0-9/10", b"0123456789"),  # suffix longer than the object
    ("bytes=9-", 206, "bytes 9-9/10", b"9"),
    ("bytes=0-0", 206, "bytes 0-0/10", b"0"),
    ("bytes=-1", 206, "bytes 9-9/10", b"9"),
    ("bytes=10-", 416, None, None),  # first byte past the end
    ("bytes=10-20", 416, None, None),
])
def test_ranges_at_and_past_the_end(c, header, status, content_range, want):
    """GetObject Range (RFC 9110 14.1.2): a last-byte-pos past the end is
    the end; a suffix longer than the object is the whole object; a range
    that starts at or past the end is 416 InvalidRange."""
    name = "conf-ranges"
    try:
        c.create_bucket(Bucket=name)
        c.put_object(Bucket=name, Key="digits", Body=b"0123456789")
    except c.exceptions.BucketAlreadyOwnedByYou:
        pass
    if status == 416:
        assert failure(c.get_object, Bucket=name, Key="digits", Range=header) == \
            (416, "InvalidRange")
        return
    got = c.get_object(Bucket=name, Key="digits", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == status
    assert got["ContentRange"] == content_range and got["Body"].read() == want


def test_deletes_are_idempotent(c):
    """DeleteObject of a key that does not exist succeeds (204), and so
    does each key of DeleteObjects; HeadObject of it is 404 without a
    body (the SDK sees code "404"), GetObject NoSuchKey."""
    name = bucket(c, "conf-delete")
    c.put_object(Bucket=name, Key="once", Body=b"x")
    for _ in range(2):
        r = c.delete_object(Bucket=name, Key="once")
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    r = c.delete_object(Bucket=name, Key="never-was")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    out = c.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "once"}, {"Key": "nope"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["nope", "once"]
    assert not out.get("Errors")
    assert error_code(c.head_object, Bucket=name, Key="once") == "404"
    assert error_code(c.get_object, Bucket=name, Key="once") == "NoSuchKey"


def test_user_metadata_names_are_case_insensitive(c):
    """x-amz-meta-* names are HTTP header names: returned lower-case,
    whatever case they were sent in; values are kept as sent."""
    name = bucket(c, "conf-meta")
    c.put_object(Bucket=name, Key="m", Body=b"x", Metadata={"Color": "Dark Blue", "n": "1"})
    assert c.head_object(Bucket=name, Key="m")["Metadata"] == {"color": "Dark Blue", "n": "1"}
