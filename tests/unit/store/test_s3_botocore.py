"""The requests the S3 store sends (tests/unit/store/s3_capture_tool.c:
s3_request_setup through libcurl, captured by a local listener) signed
again by python3-botocore's S3 signer from the same method, URL, headers and
body: the Authorization headers must be equal byte for byte. botocore also
reproduces the AWS SigV4 test-suite values test_s3_sigv4.c expects of
libcurl, so the two checks rest on the same ground."""

import datetime
import os
import subprocess
import sys
import tempfile
from unittest import mock

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TOOL = sys.argv[1]
WHEN = datetime.datetime(2015, 8, 30, 12, 36, 0)
KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
# Added by libcurl after signing, or by botocore itself: not part of the
# signature either way.
UNSIGNED = {"authorization", "user-agent", "accept", "content-length", "expect"}


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return method, target, headers, body


def sign(auth_class, service, method, url, headers, body, token=None):
    request = AWSRequest(method=method, url=url, data=body)
    seen = set()
    for name, value in headers:
        low = name.lower()
        # libcurl 7.88 repeats an X-Amz-Date the caller set; the value is
        # the same, the signature covers it once.
        if low in UNSIGNED or low in seen:
            continue
        seen.add(low)
        if low in ("x-amz-date", "x-amz-security-token") or (
                low == "x-amz-content-sha256" and auth_class is S3SigV4Auth):
            continue  # botocore sets these itself, from the same values
        request.headers[name] = value
    auth = auth_class(Credentials(KEY_ID, SECRET, token), service, "us-east-1")
    with pinned_clock():
        auth.add_auth(request)
    return request.headers["Authorization"], request.headers


def pinned_clock():
    """botocore reads the clock through get_current_datetime (newer
    releases) or datetime.datetime.utcnow (Debian 12's 1.29)."""
    import botocore.auth
    if hasattr(botocore.auth, "get_current_datetime"):
        return mock.patch("botocore.auth.get_current_datetime", return_value=WHEN)

    class PinnedDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return WHEN

    return mock.patch("botocore.auth.datetime.datetime", PinnedDatetime)


def check(name, op, key, body=None, token=None):
    with tempfile.NamedTemporaryFile() as f:
        args = [TOOL, op, key]
        if body is not None:
            f.write(body)
            f.flush()
            args.append(f.name)
        if token:
            if body is None:
                args.append("-")
            args.append(token)
        raw = subprocess.run(args, check=True, capture_output=True, timeout=30).stdout
    method, target, headers, sent_body = parse(raw)
    host = dict((n.lower(), v) for n, v in headers)["host"]
    expected, signed_headers = sign(S3SigV4Auth, "s3", method, f"http://{host}{target}",
                                    headers, sent_body, token)
    sent = dict((n.lower(), v) for n, v in headers)
    problems = []
    if sent["authorization"] != expected:
        problems.append(f"libcurl sent\n  {sent['authorization']}\nbotocore signs\n  {expected}")
    # botocore's own payload hash agrees with the header we added.
    if signed_headers["X-Amz-Content-SHA256"] != sent["x-amz-content-sha256"]:
        problems.append("payload hash differs")
    if body is not None and sent_body != body:
        problems.append("the body arrived changed")
    if problems:
        raise AssertionError(f"{name}: " + "\n".join(problems))
    print(f"ok   {name}: {expected[-64:]}")


def check_suite_vectors():
    base = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=")
    cases = [
        ("GET", "/", {}, b"", "host;x-amz-date",
         "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("GET", "/?Param2=value2&Param1=value1", {}, b"", "host;x-amz-date",
         "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("POST", "/", {"Content-Type": "application/x-www-form-urlencoded"}, b"Param1=value1",
         "content-type;host;x-amz-date",
         "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ]
    for method, target, extra, body, signed, signature in cases:
        headers = [("Host", "example.amazonaws.com")] + list(extra.items())
        got, _ = sign(SigV4Auth, "service", method, "https://example.amazonaws.com" + target,
                      headers, body)
        if got != f"{base}{signed}, Signature={signature}":
            raise AssertionError(f"botocore disagrees with the suite on {method} {target}: {got}")
    print("ok   botocore reproduces the AWS SigV4 suite values")


def main():
    check_suite_vectors()
    check("GetObject", "get", "ubiblk/data/" + "ab" * 32)
    check("HeadObject", "head", "ubiblk/metadata.json")
    check("PutObject of 0 bytes", "put", "data/empty", b"")
    check("PutObject of 1 MiB + 7", "put", "data/big", os.urandom((1 << 20) + 7))
    check("GetObject with a session token", "get", "k", token="FQoGZXIvYXdzEXAMPLE//token==")
    check("PutObject with a session token", "put", "p/k", b"x" * 100, token="tok")
    check("a key that needs encoding", "get", "a b/c+d/%/é")


if __name__ == "__main__":
    main()
