"""The remote stripe source against peers written here, not against our own
server: a plain-TCP stripe server in Python (the protocol from its
definition), and `openssl s_server` for TLS-PSK fed a canned exchange.

init-metadata builds local metadata from a server (padded headers,
HAS_SOURCE iff the server serves the stripe); vhost-backend fetches lazily
from it (a whole-disk read through ubiblk-bench equals the served bytes) and
autofetch reaches fetched == source; a server restarted mid-hydration is
reconnected to with no failed stripe; a server gone for good makes fetches
fail with a clear log line and reads of unfetched stripes fail in bounded
time; TLS-PSK handshakes, wrong identities (shorter, longer), a wrong secret
and PSK on one side only fail with clear errors."""

import os
import select
import socket
import struct
import subprocess
import threading
import time

import harness

MiB = 1 << 20
SHIFT = 11
STRIPE = 512 << SHIFT
MAGIC = b"BDEV_UBI\x00"

OK, INVALID_STRIPE, NO_DATA, NOT_FETCHED, INVALID_COMMAND = 0, 1, 2, 3, 0xFE
FETCHED, WRITTEN, HAS_SOURCE = 1, 2, 4


def metadata_blob(headers, shift=SHIFT):
    sector0 = MAGIC + struct.pack("<HHB", 1, 0, shift)
    return sector0 + bytes(512 - len(sector0)) + bytes(headers)


def metadata_reply(headers, shift=SHIFT):
    blob = metadata_blob(headers, shift)
    return bytes([OK]) + struct.pack("<Q", len(blob)) + blob


def stripe_reply(data):
    return bytes([OK]) + struct.pack("<Q", len(data)) + data


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


class StripeServer:
    """A plain-TCP stripe server: serves `image` (bytes) with `headers`
    (default: every stripe of the image 07), checks in the protocol's order,
    one thread per connection. `delay` slows every stripe reply."""

    def __init__(self, image, headers=None, shift=SHIFT, port=0, delay=0.0):
        self.image, self.shift, self.delay = image, shift, delay
        stripe = 512 << shift
        count = (len(image) + stripe - 1) // stripe
        self.headers = headers if headers is not None else [7] * count
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns, self.requests = [], []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        stripe = 512 << self.shift
        try:
            while self.running:
                op = recv_exact(conn, 1)[0]
                if op == 0:
                    conn.sendall(metadata_reply(self.headers, self.shift))
                    continue
                if op != 1:
                    conn.sendall(bytes([INVALID_COMMAND]))
                    continue
                index = struct.unpack("<Q", recv_exact(conn, 8))[0]
                with self.lock:
                    self.requests.append(index)
                if self.delay:
                    time.sleep(self.delay)
                if index >= len(self.headers):
                    conn.sendall(bytes([INVALID_STRIPE]))
                    continue
                h = self.headers[index]
                if h & HAS_SOURCE and not h & FETCHED:
                    conn.sendall(bytes([NOT_FETCHED]))
                elif not (h & WRITTEN or (h & HAS_SOURCE and h & FETCHED)):
                    conn.sendall(bytes([NO_DATA]))
                else:
                    data = self.image[index * stripe:(index + 1) * stripe]
                    conn.sendall(stripe_reply(data + bytes(stripe - len(data))))
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.running = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(): the port is free
        except OSError:
            pass
        self.listener.close()
        # Reset, not FIN: no half-closed socket keeps the port from a
        # server restarted on it.
        with self.lock:
            for c in self.conns:
                try:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.shutdown(socket.SHUT_RD)  # wakes the session, which closes
                except OSError:
                    pass


def device(tmp, disk_size, address, **fields):
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), disk_size)
    meta = os.path.join(tmp, "disk.meta")
    rpc = os.path.join(tmp, "rpc.sock")
    be = harness.VhostBackend(tmp, disk, metadata_path=meta, rpc_socket_path=rpc,
                              copy_on_read=True, num_queues=2, queue_size=128, **fields)
    source = {"source": "remote", "address": address}
    source.update(fields.pop("source_fields", {}))
    with open(be.config, "a") as f:
        inner = ", ".join(f"{k}: {v!r}" if isinstance(v, int) else f'{k}: "{v}"'
                          for k, v in source.items())
        f.write(f"stripe_source: {{{inner}}}\n")
    return be, disk, rpc


def read_all(be, tmp, name="dump.raw", extra=()):
    out = os.path.join(tmp, name)
    code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "read", "--bs", "64k",
                                      "--iodepth", "4", "--queues", "2", "--dump", out]
                                     + list(extra))
    assert code == 0, f"read through the backend failed: {err}"
    with open(out, "rb") as f:
        return f.read()


def hydrate(be, tmp, disk, rpc, stripes, expected):
    """Start the backend (autofetch on), wait until `stripes` are fetched,
    read the whole disk through it, stop it, check the disk file."""
    with be:
        harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] == stripes, 60,
                         "autofetch to fetch every served stripe")
        assert read_all(be, tmp) == expected
        assert be.stop() == 0
    with open(disk, "rb") as f:
        assert f.read() == expected


def test_init_metadata_from_server():
    # Headers as a pre-sized server metadata file has them: zero padding
    # past the disk, a no-data stripe, a written stripe without a source.
    headers = [HAS_SOURCE | FETCHED] * 5 + [0, WRITTEN] + [0] * 1529
    server = StripeServer(bytes(7 * STRIPE), headers=headers)
    try:
        with harness.scratch_dir() as tmp:
            be, _, _ = device(tmp, 10 * MiB, server.address)
            proc = harness.init_metadata(be.config, "-v")
            assert b"10 stripes of 1048576 bytes, 6 with a source" in proc.stdout, proc.stdout
            got = harness.metadata_stripes(be.config)
            assert got["has-source"] == {0, 1, 2, 3, 4, 6}, got
            assert got["fetched"] == set() and got["written"] == set(), got
            # The server's stripe size must be the metadata's.
            proc = harness.init_metadata(be.config, "-s", "12", "--force", check=False)
            err = proc.stderr.decode()
            assert proc.returncode == 1, err
            assert "remote stripe sector count 2048 does not match expected 4096" in err, err
    finally:
        server.stop()


def test_lazy_fetch_and_autofetch():
    image = os.urandom(20 * MiB + 300 * 1024)
    expected = image + bytes(32 * MiB - len(image))
    server = StripeServer(image)
    try:
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, 32 * MiB, server.address,
                                   source_fields={"connections": 4})
            harness.init_metadata(be.config)
            with be:
                assert read_all(be, tmp) == expected
                s = harness.lazy_status(rpc)
                assert s["fetched"] == s["source"] == 21, s
                assert be.stop() == 0
            with open(disk, "rb") as f:
                assert f.read() == expected
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, 32 * MiB, server.address, autofetch=True)
            harness.init_metadata(be.config)
            hydrate(be, tmp, disk, rpc, 21, expected)
            # Hydrated: a restart never dials the server.
            before = len(server.requests)
            server.stop()
            with be:
                assert read_all(be, tmp) == expected
                assert be.stop() == 0
            assert len(server.requests) == before
    finally:
        server.stop()


def test_disk_ending_inside_a_stripe():
    # 2.5 stripes: the server serves 3 headers, the last stripe is cut
    # short on both sides; the disk is not "too small" for its own image.
    image = os.urandom(2 * MiB + 512 * 1024)
    server = StripeServer(image)
    try:
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, len(image), server.address, autofetch=True,
                                   source_fields={"connections": 2})
            harness.init_metadata(be.config)
            hydrate(be, tmp, disk, rpc, 3, image)
    finally:
        server.stop()


def test_server_restarted_mid_hydration():
    image = os.urandom(40 * MiB)
    server = StripeServer(image, delay=0.05)
    port = server.port
    try:
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, 40 * MiB, server.address, autofetch=True,
                                   source_fields={"connections": 2})
            harness.init_metadata(be.config)
            with be:
                harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] >= 5, 60,
                                 "hydration to start")
                server.stop()
                time.sleep(1.0)
                server = StripeServer(image, port=port)
                harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] == 40, 120,
                                 "hydration to finish after the restart")
                log = be.process.log_text()
                assert "reconnect" in log or "re-established" in log, log
                assert "after 3 retries" not in log, log
                assert read_all(be, tmp) == image
                assert be.stop() == 0
    finally:
        server.stop()


def test_server_gone_for_good():
    image = os.urandom(16 * MiB)
    server = StripeServer(image)
    try:
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, 16 * MiB, server.address,
                                   source_fields={"connections": 2})
            harness.init_metadata(be.config)
            with be:
                assert read_all(be, tmp, extra=["--size", "1m"])[:MiB] == image[:MiB]
                server.stop()
                start = time.monotonic()
                code, _, err = harness.run_bench(
                    ["--socket", be.socket, "--mode", "read", "--bs", "64k", "--offset",
                     "8m", "--size", "1m", "--timeout", "120s"], timeout=180)
                took = time.monotonic() - start
                assert code != 0, "a read of an unfetched stripe must fail"
                assert took < 60, f"the failure took {took:.0f}s"
                log = be.process.log_text()
                assert f"remote {server.address}" in log, log
                assert "fetch: stripe 8 failed" in log, log
                # The backend still serves what it has.
                assert read_all(be, tmp, "again.raw", ["--size", "1m"])[:MiB] == image[:MiB]
                # Stopping does not wait for the connections' backoff.
                start = time.monotonic()
                assert be.stop() == 0
                assert time.monotonic() - start < 5, "stopping waited for the reconnects"
    finally:
        server.stop()


def test_changed_server_refused():
    image = os.urandom(16 * MiB)
    server = StripeServer(image)
    port = server.port
    try:
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, 16 * MiB, server.address,
                                   source_fields={"connections": 1})
            harness.init_metadata(be.config)
            with be:
                assert read_all(be, tmp, extra=["--size", "1m"])[:MiB] == image[:MiB]
                server.stop()
                server = StripeServer(image[:8 * MiB], port=port)  # another disk
                code, _, err = harness.run_bench(
                    ["--socket", be.socket, "--mode", "read", "--bs", "64k", "--offset",
                     "4m", "--size", "1m"], timeout=120)
                assert code != 0, "a changed server must not be fetched from"
                log = be.process.log_text()
                assert "the server's stripe count changed from 16 to 8: refusing it" in log, log
                assert server.requests == [], server.requests
                assert be.stop() == 0
    finally:
        server.stop()


def test_config_refusals():
    with harness.scratch_dir() as tmp:
        be, _, _ = device(tmp, 4 * MiB, "localhost:4555")
        proc = harness.init_metadata(be.config, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and "invalid server address localhost:4555" in err, err
        be, _, _ = device(tmp, 4 * MiB, "127.0.0.1:1",
                          source_fields={"connections": 65})
        proc = harness.init_metadata(be.config, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and "stripe_source.connections: 65 is out of range" in err, err


# ---- TLS-PSK against openssl s_server ----

SECRET = bytes(range(0x40, 0x60))   # 32 bytes
IDENTITY = "client1"


def listening(port):
    want = f":{port:04X} "
    with open("/proc/net/tcp") as f:
        return any(want in line and line.split()[3] == "0A" for line in f.readlines()[1:])


class OpensslServer:
    """openssl s_server: TLS 1.2, PSK-AES256-GCM-SHA384, no certificate, one
    connection; `canned` is written to the client as soon as it connects,
    whatever the client sends is collected from stdout."""

    def __init__(self, canned, identity=IDENTITY, secret=SECRET):
        self.port = harness.free_port()
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-quiet", "-tls1_2", "-nocert", "-no_ticket",
             "-cipher", "PSK-AES256-GCM-SHA384", "-psk", secret.hex(),
             "-psk_identity", identity, "-naccept", "1",
             "-accept", f"127.0.0.1:{self.port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        harness.wait_for(lambda: listening(self.port), 10, "openssl s_server to listen")
        self.address = f"127.0.0.1:{self.port}"
        # s_server reads its stdin only once a client is connected: a reply
        # larger than the pipe is written from a thread.
        self.writer = threading.Thread(target=self.feed, args=(canned,), daemon=True)
        self.writer.start()

    def feed(self, canned):
        try:
            self.proc.stdin.write(canned)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def received(self, n, timeout=10):
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < n and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), n - len(data))
                if not chunk:
                    break
                data += chunk
        return data

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.writer.join(timeout=10)
        err = self.proc.stderr.read().decode(errors="replace")
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()
        return err


def b64(data):
    import base64
    return base64.b64encode(data).decode()


def test_tls_init_metadata_from_openssl():
    headers = [7] * 3 + [0]
    peer = OpensslServer(metadata_reply(headers))
    try:
        with harness.scratch_dir() as tmp:
            be, _, _ = device(tmp, 4 * MiB, peer.address, source_fields={
                "psk_identity": IDENTITY, "psk_secret": b64(SECRET), "connections": 1})
            harness.init_metadata(be.config)
            assert peer.received(1) == b"\x00", "the client must send exactly METADATA"
            got = harness.metadata_stripes(be.config)
            assert got["has-source"] == {0, 1, 2}, got
    finally:
        peer.close()


def test_tls_fetch_from_openssl():
    # One connection, autofetch in stripe order: the canned replies are
    # METADATA then stripes 0..3.
    image = os.urandom(4 * STRIPE)
    canned = metadata_reply([7] * 4) + b"".join(
        stripe_reply(image[i * STRIPE:(i + 1) * STRIPE]) for i in range(4))
    peer = OpensslServer(canned)
    try:
        with harness.scratch_dir() as tmp:
            be, disk, rpc = device(tmp, 4 * MiB, peer.address, autofetch=True,
                                   source_fields={"psk_identity": IDENTITY,
                                                  "psk_secret": b64(SECRET),
                                                  "connections": 1})
            # init-metadata from the Python server (s_server takes one client).
            plain = StripeServer(image)
            try:
                with open(be.config) as f:
                    text = f.read()
                with open(be.config, "w") as f:
                    f.write(text.replace(peer.address, plain.address)
                            .replace(f'psk_identity: "{IDENTITY}", ', "")
                            .replace(f'psk_secret: "{b64(SECRET)}", ', ""))
                harness.init_metadata(be.config)
                with open(be.config, "w") as f:
                    f.write(text)
            finally:
                plain.stop()
            with be:
                harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] == 4, 60,
                                 "autofetch over TLS")
                want = b"\x00" + b"".join(b"\x01" + struct.pack("<Q", i) for i in range(4))
                assert peer.received(len(want)) == want
                assert be.stop() == 0
            with open(disk, "rb") as f:
                assert f.read() == image
    finally:
        peer.close()


def init_fails(tmp, address, source_fields, *texts):
    be, _, _ = device(tmp, 4 * MiB, address, source_fields=source_fields)
    start = time.monotonic()
    proc = harness.init_metadata(be.config, "--force", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert time.monotonic() - start < 30, "a failed handshake must not wait for long"
    for text in texts:
        assert text in err, f"{text!r} not in {err!r}"
    return err


def test_tls_wrong_credentials():
    # s_server hands its key to any identity (it only warns), so refusing
    # another identity is the server's part, tested against our server's
    # TLS context in the unit tests; here: the secret, and PSK on one side.
    psk = {"psk_identity": IDENTITY, "psk_secret": b64(SECRET), "connections": 1}
    cases = [
        ({**psk, "psk_secret": b64(bytes(32))}, "TLS handshake failed"),
        ({"connections": 1}, "a server with TLS-PSK answers nothing to a client without "
                             "psk_identity and psk_secret"),
    ]
    for fields, text in cases:
        peer = OpensslServer(metadata_reply([7] * 4))
        try:
            with harness.scratch_dir() as tmp:
                init_fails(tmp, peer.address, fields, "stripe_source: remote server", text)
        finally:
            peer.close()
    # PSK on the client only: a plain server cannot answer a ClientHello.
    server = StripeServer(bytes(4 * STRIPE))
    try:
        with harness.scratch_dir() as tmp:
            init_fails(tmp, server.address, psk, "TLS handshake")
    finally:
        server.stop()
    # An empty identity never gets as far as a connection.
    with harness.scratch_dir() as tmp:
        init_fails(tmp, "127.0.0.1:1", {**psk, "psk_identity": ""},
                   "PSK identity must not be empty")


if __name__ == "__main__":
    harness.main([
        test_init_metadata_from_server,
        test_lazy_fetch_and_autofetch,
        test_disk_ending_inside_a_stripe,
        test_server_restarted_mid_hydration,
        test_server_gone_for_good,
        test_changed_server_refused,
        test_config_refusals,
        test_tls_init_metadata_from_openssl,
        test_tls_fetch_from_openssl,
        test_tls_wrong_credentials,
    ])
