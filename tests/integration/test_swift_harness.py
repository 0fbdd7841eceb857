"""The Swift harness and the fault proxy, checked with independent clients:
the aws CLI copies files up and down, Swift refuses bad signatures and payload
hashes, and botocore sees every fault kind the proxy injects (error statuses
with S3 XML bodies, resets, stalls, truncated bodies, latency), each counted.
One Swift serves the whole group; the last test stops it and checks that
every process is gone and the folder removed."""

import functools
import hashlib
import os
import shutil
import socket
import subprocess
import time

import harness
import swift
from fault_proxy import FaultProxy

S3 = None  # the group's SwiftS3
BUCKET = "harness-test"


def with_swift_logs(test):
    """On failure, show the end of Swift's logs before the folder goes."""
    @functools.wraps(test)
    def run():
        try:
            test()
        except Exception:
            if S3 is not None and S3.daemons:
                print(S3.log_summary(), flush=True)
            raise
    return run


def botocore_modules():
    import botocore.exceptions
    return botocore.exceptions


def proxy_for_swift(seed=1):
    return FaultProxy("127.0.0.1", S3.ports["proxy"], seed=seed).start()


def no_retry_client(endpoint, **config):
    return S3.botocore_client(endpoint, retries={"total_max_attempts": 1, "mode": "standard"},
                              **config)


@with_swift_logs
def test_aws_cli_cp_up_and_down():
    aws = shutil.which("aws")
    if aws is None:
        raise FileNotFoundError("aws CLI not found (Debian package awscli)")
    with harness.scratch_dir() as tmp:
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        env = S3.client_env(home)
        # 20 MiB: above the CLI's 8 MiB multipart threshold, so Swift's
        # multipart upload (s3api + slo) is exercised too.
        src = harness.random_file(os.path.join(tmp, "src.bin"), 20 << 20, seed=11)
        back = os.path.join(tmp, "back.bin")
        for argv in ([aws, "--endpoint-url", S3.endpoint, "s3", "cp", src,
                      f"s3://{BUCKET}/dir/disk image.bin"],
                     [aws, "--endpoint-url", S3.endpoint, "s3", "cp",
                      f"s3://{BUCKET}/dir/disk image.bin", back]):
            proc = subprocess.run(argv, env=env, capture_output=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv[3:5])} failed: "
                                   f"{proc.stderr.decode(errors='replace')}")
        with open(src, "rb") as a, open(back, "rb") as b:
            original = a.read()
            assert original == b.read(), "aws s3 cp down differs from what went up"
        # Our own signer reads what the CLI wrote.
        assert S3.get_object(BUCKET, "dir/disk image.bin") == original
        assert "dir/disk image.bin" in S3.list_keys(BUCKET, "dir/")
        assert not os.path.exists(os.path.join(home, ".aws")) or \
            not os.listdir(os.path.join(home, ".aws")), "the CLI wrote credentials"


@with_swift_logs
def test_swift_checks_signatures_and_payload_hashes():
    status, _, body = swift.s3_request(S3.endpoint, "PUT", BUCKET, "x", b"data",
                                       secret_key="wrong")
    assert status == 403 and b"SignatureDoesNotMatch" in body, (status, body)
    # Signed for one body, sent with another.
    url = swift.object_url(S3.endpoint, BUCKET, "y")
    headers = swift.sigv4_headers("PUT", url, b"signed body", S3.access_key, S3.secret_key,
                                  S3.region)
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", S3.ports["proxy"], timeout=30)
    try:
        conn.request("PUT", f"/{BUCKET}/y", body=b"other body", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    # Swift 2.30 answers BadDigest where AWS says XAmzContentSHA256Mismatch.
    assert resp.status == 400 and (b"XAmzContentSHA256Mismatch" in body or
                                   b"BadDigest" in body), (resp.status, body)
    assert S3.get_object(BUCKET, "y") is None
    status, _, body = S3.request("GET", "no-such-bucket", "k")
    assert status == 404 and b"NoSuchBucket" in body, (status, body)


@with_swift_logs
def test_botocore_through_proxy():
    data = os.urandom(3 << 20)
    with proxy_for_swift() as proxy:
        client = no_retry_client(proxy.endpoint)
        client.put_object(Bucket=BUCKET, Key="boto/a", Body=data)
        head = client.head_object(Bucket=BUCKET, Key="boto/a")
        assert head["ContentLength"] == len(data)
        got = client.get_object(Bucket=BUCKET, Key="boto/a")["Body"].read()
        assert got == data
        assert proxy.counts["forwarded"] == 3 and proxy.counts["requests"] == 3, proxy.counts
        assert [e[0] for e in proxy.events] == ["PutObject", "HeadObject", "GetObject"]
    assert hashlib.sha256(S3.get_object(BUCKET, "boto/a")).digest() == \
        hashlib.sha256(data).digest()


@with_swift_logs
def test_proxy_error_statuses():
    exceptions = botocore_modules()
    S3.put_object(BUCKET, "err/a", b"payload")
    for status, code in ((500, "InternalError"), (503, "ServiceUnavailable"),
                         (429, "SlowDown")):
        with proxy_for_swift() as proxy:
            proxy.add_fault("error", status=status, kind="GetObject", times=1)
            client = no_retry_client(proxy.endpoint)
            try:
                client.get_object(Bucket=BUCKET, Key="err/a")
                raise AssertionError(f"{status} not seen")
            except exceptions.ClientError as e:
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == status, e.response
                assert e.response["Error"]["Code"] == code, e.response
            # The rule is used up: the next request goes through.
            assert client.get_object(Bucket=BUCKET, Key="err/a")["Body"].read() == b"payload"
            assert proxy.count("error") == 1 and proxy.count("forwarded") == 1, proxy.counts
            # A retrying client gets past one injected error (a GET: botocore
            # knows a 429 only by its body's code, which a HEAD answer lacks).
            proxy.add_fault("error", status=status, kind="GetObject", times=1)
            retrying = S3.botocore_client(proxy.endpoint,
                                          retries={"total_max_attempts": 3, "mode": "standard"})
            assert retrying.get_object(Bucket=BUCKET, Key="err/a")["Body"].read() == b"payload"
            assert proxy.count("error") == 2, proxy.counts
    # Only the named kind is hit; a custom code and message reach the client.
    with proxy_for_swift() as proxy:
        proxy.add_fault("error", status=500, kind="PutObject", code="Custom", message="m & n")
        client = no_retry_client(proxy.endpoint)
        assert client.get_object(Bucket=BUCKET, Key="err/a")["Body"].read() == b"payload"
        try:
            client.put_object(Bucket=BUCKET, Key="err/b", Body=b"x")
            raise AssertionError("PutObject error not seen")
        except exceptions.ClientError as e:
            assert e.response["Error"] == {"Code": "Custom", "Message": "m & n"} or \
                (e.response["Error"]["Code"] == "Custom" and
                 e.response["Error"]["Message"] == "m & n"), e.response
    assert S3.get_object(BUCKET, "err/b") is None


@with_swift_logs
def test_proxy_reset():
    exceptions = botocore_modules()
    S3.put_object(BUCKET, "reset/a", b"payload")
    with proxy_for_swift() as proxy:
        proxy.add_fault("reset", key=r"^reset/a$", times=1)
        client = no_retry_client(proxy.endpoint)
        try:
            client.get_object(Bucket=BUCKET, Key="reset/a")
            raise AssertionError("reset not seen")
        except (exceptions.ConnectionClosedError, exceptions.EndpointConnectionError,
                exceptions.HTTPClientError) as e:
            print(f"  reset seen as {type(e).__name__}", flush=True)
        assert proxy.count("reset") == 1, proxy.counts
        assert client.get_object(Bucket=BUCKET, Key="reset/a")["Body"].read() == b"payload"


@with_swift_logs
def test_proxy_stall():
    exceptions = botocore_modules()
    S3.put_object(BUCKET, "stall/a", b"payload")
    with proxy_for_swift() as proxy:
        proxy.add_fault("stall", kind="HeadObject")
        client = no_retry_client(proxy.endpoint, read_timeout=1, connect_timeout=2)
        start = time.monotonic()
        try:
            client.head_object(Bucket=BUCKET, Key="stall/a")
            raise AssertionError("stall not seen")
        except exceptions.ReadTimeoutError:
            pass
        assert 0.9 <= time.monotonic() - start < 10
        assert proxy.count("stall") == 1, proxy.counts
        proxy.clear_faults()
        assert client.head_object(Bucket=BUCKET, Key="stall/a")["ContentLength"] == 7
    # A proxy stopped while it holds a stalled request does not hang.
    proxy = proxy_for_swift()
    proxy.add_fault("stall")
    stalled = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    try:
        stalled.sendall(b"HEAD /x/y HTTP/1.1\r\nHost: h\r\n\r\n")
        proxy.wait_for_count("stall", 1)
        start = time.monotonic()
        proxy.stop()
        assert time.monotonic() - start < 5
        assert stalled.recv(100) == b"", "a stalled request was answered"
    finally:
        stalled.close()


@with_swift_logs
def test_proxy_truncate():
    exceptions = botocore_modules()
    data = os.urandom(1 << 20)
    S3.put_object(BUCKET, "trunc/a", data)
    with proxy_for_swift() as proxy:
        proxy.add_fault("truncate", kind="GetObject", times=1, keep_bytes=1000)
        client = no_retry_client(proxy.endpoint)
        try:
            body = client.get_object(Bucket=BUCKET, Key="trunc/a")["Body"]
            got = body.read()
            raise AssertionError(f"truncation not seen ({len(got)} bytes read)")
        except (exceptions.IncompleteReadError, exceptions.ResponseStreamingError) as e:
            print(f"  truncation seen as {type(e).__name__}", flush=True)
        assert proxy.count("truncate") == 1, proxy.counts
        # Independently: a raw read gets the full Content-Length and fewer bytes.
        proxy.add_fault("truncate", kind="GetObject", times=1)
        import http.client
        url = swift.object_url(proxy.endpoint, BUCKET, "trunc/a")
        headers = swift.sigv4_headers("GET", url, b"", S3.access_key, S3.secret_key, S3.region)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        try:
            conn.request("GET", f"/{BUCKET}/trunc/a", headers=headers)
            resp = conn.getresponse()
            assert int(resp.getheader("content-length")) == len(data)
            try:
                resp.read()
                raise AssertionError("short body not detected")
            except http.client.IncompleteRead as e:
                assert e.partial == data[:len(data) // 2]
        finally:
            conn.close()
        assert proxy.count("truncate") == 2, proxy.counts


@with_swift_logs
def test_virtual_hosted_requests():
    # Host: BUCKET.localhost:PORT, as libcurl sends for virtual-hosted
    # addressing (it resolves every *.localhost name to loopback).
    status, _, body = S3.request("PUT", BUCKET, "vh/a b", b"virtual", virtual_hosted=True)
    assert status == 200, (status, body)
    assert S3.get_object(BUCKET, "vh/a b") == b"virtual"
    with proxy_for_swift() as proxy:
        proxy.add_fault("error", status=503, kind="GetObject", key=r"^vh/", times=1)
        status, _, body = S3.request("GET", BUCKET, "vh/a b", endpoint=proxy.endpoint,
                                     virtual_hosted=True)
        assert status == 503 and b"<Code>ServiceUnavailable</Code>" in body, (status, body)
        status, _, body = S3.request("GET", BUCKET, "vh/a b", endpoint=proxy.endpoint,
                                     virtual_hosted=True)
        assert status == 200 and body == b"virtual", (status, body)
        status, _, body = S3.request("GET", BUCKET, query={"list-type": "2", "prefix": "vh/"},
                                     endpoint=proxy.endpoint, virtual_hosted=True)
        assert status == 200 and b"<Key>vh/a b</Key>" in body, (status, body)
        assert [e[0] for e in proxy.events] == ["GetObject", "GetObject", "ListObjects"], \
            proxy.events


@with_swift_logs
def test_proxy_latency():
    S3.put_object(BUCKET, "slow/a", b"payload")
    with proxy_for_swift() as proxy:
        proxy.add_fault("latency", kind="GetObject", delay=0.6)
        client = no_retry_client(proxy.endpoint)
        start = time.monotonic()
        assert client.get_object(Bucket=BUCKET, Key="slow/a")["Body"].read() == b"payload"
        assert time.monotonic() - start >= 0.6
        assert proxy.count("latency") == 1 and proxy.count("forwarded") == 0, proxy.counts


@with_swift_logs
def test_proxy_fraction_is_seeded():
    S3.put_object(BUCKET, "frac/a", b"payload")

    def run(seed):
        with FaultProxy("127.0.0.1", S3.ports["proxy"], seed=seed) as proxy:
            proxy.add_fault("error", status=503, fraction=0.3)
            outcomes = [S3.request("HEAD", BUCKET, "frac/a", endpoint=proxy.endpoint)[0]
                        for _ in range(60)]
            assert proxy.count("error") == outcomes.count(503), proxy.counts
            assert proxy.count("forwarded") == outcomes.count(200), proxy.counts
            return outcomes

    first = run(5)
    assert run(5) == first, "the same seed gave different decisions"
    assert 6 <= first.count(503) <= 30, first.count(503)
    assert set(first) == {200, 503}, set(first)


def test_stop_kills_everything():
    global S3
    s3, S3 = S3, None
    pids = [d.pid for d in s3.daemons]
    workdir = s3.workdir
    assert len(pids) == 5 and os.path.isdir(workdir)
    s3.stop()
    s3.stop()  # twice is fine
    for pid in pids:
        try:
            os.kill(pid, 0)
            raise AssertionError(f"swift process {pid} still runs")
        except ProcessLookupError:
            pass
    assert not os.path.exists(workdir), "the Swift folder was not removed"


if __name__ == "__main__":
    start = time.monotonic()
    S3 = swift.SwiftS3().start()
    print(f"Swift started in {time.monotonic() - start:.1f}s at {S3.endpoint}", flush=True)
    try:
        S3.create_bucket(BUCKET)
        harness.main([test_aws_cli_cp_up_and_down, test_swift_checks_signatures_and_payload_hashes,
                      test_botocore_through_proxy, test_proxy_error_statuses, test_proxy_reset,
                      test_proxy_stall, test_proxy_truncate, test_virtual_hosted_requests, test_proxy_latency,
                      test_proxy_fraction_is_seeded, test_stop_kills_everything])
    finally:
        if S3 is not None:
            S3.stop()
