#!/usr/bin/env python3
"""The independent Python peers checked against the golden exchanges and
against each other:
  * tests/data/remote holds exactly what golden.py computes;
  * stripe_server.py answers every golden request with the golden reply,
    byte for byte, and keeps the session after FE and FF;
  * stripe_server.py refuses a metadata file with unfetched source stripes;
  * stripe_client.py reads the metadata and every stripe back and gets 0.4's
    error texts."""

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "remote")
SERVER = os.path.join(HERE, "stripe_server.py")
CLIENT = os.path.join(HERE, "stripe_client.py")
GOLDEN = os.path.join(HERE, "golden.py")

sys.path.insert(0, HERE)
import golden  # noqa: E402


def golden_file(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def payload_sums():
    sums = {}
    for line in golden_file("payloads.sha256").decode().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


class PeerServer:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, SERVER, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {self.proc.stderr.read()}")
        self.port = int(line.split()[1])
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        assert self.proc.returncode == 0, self.proc.returncode


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def check_exchange(sock, base, sums):
    """Send <base>.request.bin; the reply must be <base>.reply.bin, or
    <base>.reply-head.bin followed by a payload with the listed SHA-256."""
    sock.sendall(golden_file(base + ".request.bin"))
    if os.path.exists(os.path.join(DATA, base + ".reply.bin")):
        want = golden_file(base + ".reply.bin")
        got = recv_exact(sock, len(want))
        assert got == want, f"{base}: reply differs"
        return
    head = golden_file(base + ".reply-head.bin")
    assert recv_exact(sock, 9) == head, f"{base}: reply head differs"
    size = int.from_bytes(head[1:], "little")
    digest = hashlib.sha256()
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        assert chunk
        digest.update(chunk)
        size -= len(chunk)
    assert digest.hexdigest() == sums[base], f"{base}: payload differs"


def exchanges_of(case):
    names = sorted(n[:-len(".request.bin")] for n in os.listdir(DATA)
                   if n.endswith(".request.bin") and
                   (n.startswith(f"read-stripe-{case}-") or n.startswith(f"metadata-{case}.")))
    if case == "4mib":
        names += ["invalid-opcode-aa", "invalid-opcode-then-metadata-4mib"]
    return names


def test_golden_files_are_current():
    r = subprocess.run([sys.executable, GOLDEN, "check", DATA], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_server_matches_golden(inputs):
    sums = payload_sums()
    for case in ("4mib", "padded-shift6", "shift17"):
        args = ["--data", os.path.join(inputs, case + ".data")]
        meta = os.path.join(inputs, case + ".metadata")
        if os.path.exists(meta):
            args += ["--metadata", meta]
        with PeerServer(*args) as server:
            # Every exchange on one connection: the session survives them all.
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
                for base in exchanges_of(case):
                    check_exchange(s, base, sums)


def test_server_error_keeps_session(inputs):
    with PeerServer("--data", os.path.join(inputs, "padded-shift6.data"), "--metadata",
                    os.path.join(inputs, "padded-shift6.metadata"), "--fail-stripe", "0") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(golden_file("read-stripe-padded-shift6-0.request.bin"))
            assert recv_exact(s, 1) == golden_file("read-stripe-server-error.reply.bin")
            check_exchange(s, "read-stripe-padded-shift6-1", {})


def test_server_refuses_unfetched(inputs):
    r = subprocess.run([sys.executable, SERVER, "--data",
                        os.path.join(inputs, "unfetched-shift6.data"), "--metadata",
                        os.path.join(inputs, "unfetched-shift6.metadata")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "Not all source stripes have been fetched." in r.stderr, r.stderr


def client(*args):
    return subprocess.run([sys.executable, CLIENT, *args], capture_output=True, text=True,
                          timeout=120)


def test_client_against_server(inputs):
    data = os.path.join(inputs, "padded-shift6.data")
    with PeerServer("--data", data, "--metadata",
                    os.path.join(inputs, "padded-shift6.metadata")) as server:
        r = client(server.address, "metadata", "--headers")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[:4] == ["shift 6", "stripe_bytes 32768", "header_count 1024",
                             "source_stripes 10"], lines
        assert lines[4:7] == ["0 0x07", "1 0x02", "3 0x05"], lines
        r = client(server.address, "compare", data)
        assert r.returncode == 0, r.stderr
        # Stripes 2 (header 0) and 4 (FETCHED alone) have no data.
        assert r.stdout.strip() == "compared 8 stripes, skipped 2", r.stdout
        r = client(server.address, "fetch", "9")
        want = golden_file("read-stripe-padded-shift6-9.reply.bin")[9:]
        assert r.stdout.strip() == hashlib.sha256(want).hexdigest()
        for index, text in (("2", "Stripe 2 is unavailable"),
                            ("10", "Stripe 10 is unavailable"),
                            ("1024", "Invalid parameter error: Invalid stripe index: 1024")):
            r = client(server.address, "fetch", index)
            assert r.returncode == 1 and r.stderr.strip() == f"error: {text}", r.stderr
    with PeerServer("--data", os.path.join(inputs, "4mib.data")) as server:
        r = client(server.address, "compare", os.path.join(inputs, "4mib.data"))
        assert r.returncode == 0 and "compared 4 stripes" in r.stdout, r.stderr
    r = client("localhost:1", "metadata")
    assert r.returncode == 1 and "invalid server address localhost:1" in r.stderr, r.stderr


def main():
    base = os.environ.get("TMPDIR") or None
    with tempfile.TemporaryDirectory(prefix="remote-peers-", dir=base) as tmp:
        start = time.monotonic()
        golden.write_inputs(tmp)
        tests = [test_golden_files_are_current, test_server_matches_golden,
                 test_server_error_keeps_session, test_server_refuses_unfetched,
                 test_client_against_server]
        failed = 0
        for test in tests:
            try:
                if test.__code__.co_argcount:
                    test(tmp)
                else:
                    test()
                print(f"ok   {test.__name__}")
            except Exception as e:  # report every test, then fail
                failed += 1
                print(f"FAIL {test.__name__}: {e!r}")
        print(f"{len(tests) - failed}/{len(tests)} passed in {time.monotonic() - start:.1f}s")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
