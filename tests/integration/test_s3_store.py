"""The S3 store against OpenStack Swift's S3 API (a real object store that
checks SigV4 signatures and payload hashes), driven through store-tool
(tests/unit/store/store_tool.c): PutObject/GetObject/HeadObject round trips
read back by an independent client, missing objects and buckets, wrong
credentials, many concurrent requests, path-style and virtual-hosted
addressing, credentials from the environment and from a profile; then
retries, backoff and timeouts against small scripted HTTP servers."""

import base64
import http.server
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import swift  # noqa: E402

BUCKET = "archive"
SWIFT = None
WORK = None


def tool_path():
    path = os.path.join(harness.BUILD_DIR, "tests", "unit", "store", "store-tool")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not built (set UBIBLK_BUILD_DIR)")
    return path


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def target(name, endpoint=None, bucket=BUCKET, credentials=True, secret=None, extra=""):
    """A target config in WORK; returns its path."""
    s3 = SWIFT
    lines = ["type: s3", f"bucket: {bucket}", f"endpoint: {endpoint or s3.endpoint}"]
    if credentials:
        lines += ["region: " + s3.region, "credentials:",
                  f"  access_key_id: {b64(s3.access_key)}",
                  f"  secret_access_key: {b64(secret or s3.secret_key)}"]
    path = os.path.join(WORK, name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return path


def tool(cfg, *args, env=None, options=()):
    run_env = dict(os.environ)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        run_env.pop(key, None)
    run_env["HOME"] = WORK
    # A sanitizer build stops at the first report instead of going on.
    run_env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    run_env.update(env or {})
    r = subprocess.run([tool_path(), *options, cfg, *args], capture_output=True, text=True,
                       env=run_env, timeout=120)
    out = r.stdout + r.stderr
    expect("Sanitizer" not in out and "runtime error" not in out, f"store-tool: {out}")
    return r.returncode, out


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- against Swift ----

def test_put_get_head_round_trip():
    cfg = target("round", extra="prefix: \"/img/./deb12/\"\n")
    for size in (0, 1, (1 << 20) + 7):
        data = os.urandom(size)
        src = write(os.path.join(WORK, "in"), data)
        rc, out = tool(cfg, "put", "data/obj", src)
        expect(rc == 0, f"put of {size} bytes: {out}")
        # An independent client reads what we wrote, at the normalised key.
        expect(SWIFT.get_object(BUCKET, "img/deb12/data/obj") == data,
               f"Swift holds other bytes for {size}")
        rc, out = tool(cfg, "get", "data/obj", os.path.join(WORK, "out"))
        expect(rc == 0 and read(os.path.join(WORK, "out")) == data, f"get of {size}: {out}")
        rc, out = tool(cfg, "head", "data/obj")
        expect(rc == 0, f"head: {out}")
    # An object written by another client reads back through the store.
    SWIFT.put_object(BUCKET, "img/deb12/metadata.json", b'{"format_version":1}')
    rc, out = tool(cfg, "get", "metadata.json", os.path.join(WORK, "out"))
    expect(rc == 0 and read(os.path.join(WORK, "out")) == b'{"format_version":1}', out)
    # A body beyond the caller's limit is refused, not allocated.
    rc, out = tool(cfg, "get", "data/obj", os.path.join(WORK, "out"), "1000")
    expect(rc == 1 and "error 27:" in out and "larger than 1000 bytes" in out, out)


def test_missing_object():
    cfg = target("missing")
    rc, out = tool(cfg, "get", "data/none", os.path.join(WORK, "out"))
    expect(rc == 2, f"get of a missing object exited {rc}: {out}")
    expect("GetObject data/none (key data/none) failed: HTTP 404 NoSuchKey: "
           "The specified key does not exist." in out, out)
    expect("attempts" not in out, f"a 404 was retried: {out}")
    rc, out = tool(cfg, "head", "data/none")
    expect(rc == 2 and "HeadObject data/none (key data/none) failed: HTTP 404" in out, out)


def test_missing_bucket():
    cfg = target("nobucket", bucket="no-such-bucket")
    rc, out = tool(cfg, "put", "data/x", write(os.path.join(WORK, "in"), b"x"))
    expect(rc == 1, f"put into a missing bucket exited {rc}: {out}")
    expect("PutObject data/x (key data/x) failed: HTTP 404 NoSuchBucket" in out, out)
    expect("(bucket no-such-bucket)" in out, out)


def test_wrong_credentials():
    cfg = target("wrongsecret", secret="not-the-secret")
    rc, out = tool(cfg, "get", "data/obj", os.path.join(WORK, "out"))
    expect(rc == 1, f"exited {rc}: {out}")
    expect("GetObject data/obj (key data/obj) failed: HTTP 403 SignatureDoesNotMatch" in out,
           out)
    expect("not-the-secret" not in out and "testing" not in out, f"a secret leaked: {out}")
    expect("attempts" not in out, f"a 403 was retried: {out}")


def test_many_concurrent_requests():
    cfg = target("many", extra="connections: 16\nprefix: many-test\n")
    start = time.monotonic()
    rc, out = tool(cfg, "many", "300", "65536")
    expect(rc == 0 and "many ok 300" in out, out)
    keys = SWIFT.list_keys(BUCKET, prefix="many-test/")
    expect(len(keys) == 300, f"{len(keys)} objects in the bucket")
    print(f"     300 PUT + HEAD + GET of 64 KiB: {time.monotonic() - start:.1f}s", flush=True)


def test_path_and_virtual_hosted_addressing():
    port = SWIFT.endpoint.rsplit(":", 1)[1]
    data = os.urandom(4096)
    src = write(os.path.join(WORK, "in"), data)
    # libcurl resolves *.localhost to the loopback address itself, and the
    # harness tells Swift (storage_domain) that <bucket>.localhost names a
    # bucket.
    for mode in ("virtual", "auto", "path"):
        cfg = target("addr-" + mode, endpoint=f"http://localhost:{port}",
                     extra=f"addressing: {mode}\nprefix: {mode}\n")
        rc, out = tool(cfg, "put", "o", src)
        expect(rc == 0, f"{mode}: {out}")
        expect(SWIFT.get_object(BUCKET, f"{mode}/o") == data, f"{mode}: other bytes in Swift")
    # Virtual-hosted on an IP literal has no host name to put the bucket in.
    cfg = target("addr-ip", extra="addressing: virtual\n")
    rc, out = tool(cfg, "head", "o")
    expect(rc == 1 and "addressing: virtual needs an endpoint host name" in out, out)


def test_credentials_from_environment_and_profile():
    src = write(os.path.join(WORK, "in"), b"chain")
    cfg = target("nocreds", credentials=False)
    rc, out = tool(cfg, "put", "o", src)
    expect(rc == 1 and "No S3 credentials" in out, out)
    env = {"AWS_ACCESS_KEY_ID": SWIFT.access_key, "AWS_SECRET_ACCESS_KEY": SWIFT.secret_key,
           "AWS_REGION": SWIFT.region}
    rc, out = tool(cfg, "put", "env/o", src, env=env)
    expect(rc == 0, f"environment credentials: {out}")
    aws = os.path.join(WORK, "aws")
    os.makedirs(aws, exist_ok=True)
    with open(os.path.join(aws, "credentials"), "w") as f:
        f.write(f"[swift]\naws_access_key_id = {SWIFT.access_key}\n"
                f"aws_secret_access_key = {SWIFT.secret_key}\n")
    with open(os.path.join(aws, "config"), "w") as f:
        f.write(f"[profile swift]\nregion = {SWIFT.region}\n")
    files = {"AWS_CONFIG_FILE": os.path.join(aws, "config"),
             "AWS_SHARED_CREDENTIALS_FILE": os.path.join(aws, "credentials")}
    rc, out = tool(cfg, "put", "profile/o", src, env={**files, "AWS_PROFILE": "swift"})
    expect(rc == 0, f"profile credentials: {out}")
    expect(SWIFT.get_object(BUCKET, "profile/o") == b"chain", "profile object")
    # The environment wins over the profile: a bad environment key fails.
    rc, out = tool(cfg, "put", "profile/o", src,
                   env={**files, "AWS_PROFILE": "swift", "AWS_ACCESS_KEY_ID": "test:tester",
                        "AWS_SECRET_ACCESS_KEY": "wrong"})
    expect(rc == 1 and "HTTP 403" in out, f"environment did not win: {out}")


# ---- scripted servers: retries, backoff, timeouts ----

class Scripted(socketserver.ThreadingTCPServer):
    """Answers request i with script[min(i, len - 1)]: (status, body) or
    "stall" (read the request, then say nothing) or "reset"."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, script):
        self.script = script
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def next_step(self):
        with self.lock:
            step = self.script[min(self.requests, len(self.script) - 1)]
            self.requests += 1
            return step

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        step = self.server.next_step()
        if step == "stall":
            time.sleep(3)
            self.close_connection = True
            return
        if step == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            return
        status, body = step
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = handle_one


SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
DENIED = b"<Error><Code>AccessDenied</Code><Message>Access &amp; more</Message></Error>"
FAST = ["--backoff-ms", "20"]


def scripted(script, *args, options=FAST):
    server = Scripted(script)
    try:
        cfg = target("scripted", endpoint=server.endpoint)
        rc, out = tool(cfg, *args, options=options)
        return rc, out, server.requests
    finally:
        server.close()


def test_transient_errors_are_retried():
    out_file = os.path.join(WORK, "out")
    rc, out, n = scripted([(503, SLOW_DOWN), (500, b""), (200, b"body")], "get", "k", out_file)
    expect(rc == 0 and read(out_file) == b"body" and n == 3, f"{rc} {n}: {out}")
    rc, out, n = scripted([(503, SLOW_DOWN)], "get", "k", out_file)
    expect(rc == 1 and n == 3, f"3 attempts by default, saw {n}: {out}")
    expect("GetObject k (key k) failed: HTTP 503 SlowDown: Please reduce your request rate. "
           "(after 3 attempts)" in out, out)
    rc, out, n = scripted([(429, b"")], "head", "k", options=FAST + ["--max-attempts", "5"])
    expect(rc == 1 and n == 5 and "HTTP 429 (after 5 attempts)" in out, f"{n}: {out}")
    rc, out, n = scripted(["reset", (502, b""), (200, b"")], "head", "k")
    expect(rc == 0 and n == 3, f"reset then 502: {n}: {out}")


def test_final_errors_are_not_retried():
    rc, out, n = scripted([(403, DENIED)], "get", "k", os.path.join(WORK, "out"))
    expect(rc == 1 and n == 1, f"{n}: {out}")
    expect("HTTP 403 AccessDenied: Access & more" in out, out)
    rc, out, n = scripted([(400, b"<html>")], "head", "k")
    expect(rc == 1 and n == 1, f"{n}: {out}")


def test_backoff_waits_between_attempts():
    start = time.monotonic()
    rc, out, n = scripted([(503, b"")], "head", "k", options=["--backoff-ms", "400"])
    took = time.monotonic() - start
    expect(rc == 1 and n == 3, out)
    # Full jitter: each wait is random below the ceiling, so only the ceiling
    # is certain (400 + 800 ms at most, plus start-up).
    expect(took < 5, f"backoff took {took:.1f}s")


def test_timeouts_and_refused_connections():
    start = time.monotonic()
    rc, out, n = scripted(["stall"], "get", "k", os.path.join(WORK, "out"),
                          options=FAST + ["--attempt-timeout-ms", "300", "--max-attempts", "2"])
    took = time.monotonic() - start
    expect(rc == 1 and n == 2 and "error 110:" in out and "(after 2 attempts)" in out,
           f"{n}: {out}")
    expect(took < 3, f"two 300 ms attempts took {took:.1f}s")
    cfg = target("refused", endpoint=f"http://127.0.0.1:{harness.free_port()}")
    rc, out = tool(cfg, "head", "k", options=FAST)
    expect(rc == 1 and "error 111:" in out and "HeadObject k (key k) failed:" in out
           and "(after 3 attempts)" in out, out)


def main():
    global SWIFT, WORK
    tests = [test_put_get_head_round_trip, test_missing_object, test_missing_bucket,
             test_wrong_credentials, test_many_concurrent_requests,
             test_path_and_virtual_hosted_addressing,
             test_credentials_from_environment_and_profile, test_transient_errors_are_retried,
             test_final_errors_are_not_retried, test_backoff_waits_between_attempts,
             test_timeouts_and_refused_connections]
    with harness.scratch_dir("ubiblk-s3-") as work, swift.SwiftS3() as s3:
        SWIFT, WORK = s3, work
        s3.create_bucket(BUCKET)
        harness.main(tests)


if __name__ == "__main__":
    main()
