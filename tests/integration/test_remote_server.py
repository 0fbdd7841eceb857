"""remote-stripe-server against peers that share no code with it: raw bytes
from Python over plain TCP, `openssl s_client` for TLS-PSK, and hostile
clients (garbage, slow, idle, vanishing, never reading).

The wire format these tests hold the server to (little-endian): METADATA is
the byte 00, answered 00, u64 size, then the metadata blob (the 512-byte
header sector "BDEV_UBI\\0", version 1.0, the stripe shift; then one header
byte per stripe of the disk). READ_STRIPE is 01 + u64 index, answered 00,
u64 stripe size, the stripe; or one status byte: 01 INVALID_STRIPE, 02
NO_DATA, 03 NOT_FETCHED, FF SERVER_ERROR. Any other opcode: FE."""

import base64
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import time

import harness

MIB = 1 << 20
STRIPE = MIB  # shift 11
PSK = bytes(range(0x40, 0x60))  # 32 bytes
IDENTITY = "client1"

FETCHED, WRITTEN, HAS_SOURCE = 0x01, 0x02, 0x04


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def header_sector(shift):
    return b"BDEV_UBI\0" + struct.pack("<HHB", 1, 0, shift) + bytes(498)


def metadata_reply(shift, headers):
    blob = header_sector(shift) + bytes(headers)
    return b"\x00" + struct.pack("<Q", len(blob)) + blob


def stripe_request(index):
    return b"\x01" + struct.pack("<Q", index)


def stripe_reply(data):
    return b"\x00" + struct.pack("<Q", len(data)) + data


class Server:
    """remote-stripe-server on 127.0.0.1 and a port the kernel picks (the
    "listening on" line says which)."""

    def __init__(self, workdir, disk, device_fields=None, psk=None, args=(), name="server"):
        self.workdir = workdir
        self.name = name
        self.config = os.path.join(workdir, f"{name}-device.yaml")
        fields = {"path": disk}
        fields.update(device_fields or {})
        harness.write_config(self.config, fields)
        self.listen = os.path.join(workdir, f"{name}-listen.yaml")
        lines = ['address: "127.0.0.1:0"']
        if psk:
            identity, secret = psk
            lines += [f'psk_identity: "{identity}"',
                      f'psk_secret: "{base64.b64encode(secret).decode()}"']
        with open(self.listen, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.args = list(args)
        self.process = None
        self.port = None

    def start(self, timeout=20):
        log = os.path.join(self.workdir, f"{self.name}.log")
        env = dict(os.environ, UBIBLK_LOG="info")
        self.process = harness.Process([harness.binary("remote-stripe-server"), "-f", self.config,
                                        "--listen-config", self.listen] + self.args,
                                       log_path=log, env=env)

        def listening():
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.process.log_text())
            if m:
                self.port = int(m.group(1))
            return self.port is not None or not self.process.alive()
        harness.wait_for(listening, timeout, "remote-stripe-server to listen")
        if self.port is None:
            raise RuntimeError("remote-stripe-server exited at start:\n" + self.process.log_text())
        return self

    def connect(self, timeout=10, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", self.port))
        return s

    def log(self):
        return self.process.log_text()

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def memory_factor(self):
        """How many bytes of RSS a byte the server touches costs: ThreadSanitizer
        keeps shadow memory (several times the application's) beside it."""
        with open(f"/proc/{self.process.pid}/maps") as f:
            return 8 if "libtsan" in f.read() else 1

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if self.process and exc_type is None and self.process.alive():
            # Every test ends with a clean stop (a sanitizer's report, a
            # leak or a crash would show here).
            status = self.process.stop()
            expect(status == 0, f"exit status {status}:\n{self.log()[-3000:]}")
        if self.process:
            self.process.close()
            if exc_type is not None:
                print(f"--- {self.name} log ---\n" + self.process.log_text()[-6000:], flush=True)


def recv_exact(s, n):
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(min(n - len(data), 4 * MIB))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def ask(s, request, reply_len):
    s.sendall(request)
    return recv_exact(s, reply_len)


def read_stripe(s, index):
    """The reply: one status byte, or (0, data)."""
    s.sendall(stripe_request(index))
    status = recv_exact(s, 1)
    if status != b"\x00":
        return status[0], None
    size = struct.unpack("<Q", recv_exact(s, 8))[0]
    return 0, recv_exact(s, size)


def closed_by_server(s, timeout=10):
    """True when the server ends the connection within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def random_disk(path, size, seed):
    return harness.random_file(path, size, seed)


def write_metadata(path, shift, headers, file_headers=None):
    """A metadata file: the header sector, the headers, zero padding up to
    file_headers (a pre-sized file, as init-metadata makes them)."""
    total = max(file_headers or 0, len(headers))
    body = header_sector(shift) + bytes(headers) + bytes(total - len(headers))
    body += bytes(-len(body) % 512)
    with open(path, "wb") as f:
        f.write(body)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def well_behaved(server, disk_bytes, rounds=3, timeout=10):
    """A client that gets METADATA and a stripe right, promptly."""
    with server.connect(timeout=timeout) as s:
        for _ in range(rounds):
            reply = ask(s, b"\x00", 9 + 512 + len(disk_bytes) // STRIPE)
            expect(reply[:1] == b"\x00", "METADATA status")
            status, data = read_stripe(s, 1)
            expect(status == 0 and data == disk_bytes[STRIPE:2 * STRIPE], "stripe 1")


# ---- plain TCP, byte for byte ----

def test_metadata_golden_4mib():
    """The 4 MiB example: no metadata file, shift 11, four stripes of 07."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 4 * MIB)
        with Server(tmp, disk) as server:
            with server.connect() as s:
                reply = ask(s, b"\x00", 9 + 516)
            golden = (bytes.fromhex("00 0402000000000000 42444556 5F554249 00 0100 0000 0B")
                      + bytes(498) + bytes.fromhex("07070707"))
            expect(reply == golden, f"METADATA reply differs: {reply[:32].hex()}...")
            expect("NO PSK CONFIGURED" in server.log(), "no plain-TCP warning")


def test_read_stripe_statuses():
    """Each answer of READ_STRIPE, in the order the checks are made, and a
    padded metadata file served with the disk's real stripe count."""
    with harness.scratch_dir() as tmp:
        size = 4 * MIB - 64 * 1024  # the last stripe is short: its tail reads as zeros
        disk = random_disk(os.path.join(tmp, "disk.raw"), size, seed=1)
        data = read(disk) + bytes(4 * MIB - size)
        headers = [0,                          # no source, written or not: served
                   HAS_SOURCE,                 # not fetched
                   HAS_SOURCE | FETCHED,       # fetched
                   HAS_SOURCE | WRITTEN]       # written but not fetched: NOT_FETCHED
        meta = write_metadata(os.path.join(tmp, "disk.meta"), 11, headers, file_headers=4096)
        fields = {"metadata_path": meta, "stripe_source": {"source": "raw", "path": disk}}
        with Server(tmp, disk, fields) as server:
            with server.connect() as s:
                served = [WRITTEN, HAS_SOURCE, HAS_SOURCE | FETCHED, HAS_SOURCE | WRITTEN]
                reply = ask(s, b"\x00", 9 + 512 + 4)
                expect(reply == metadata_reply(11, served),
                       f"METADATA: {reply[:9].hex()} ... {reply[-4:].hex()}")
                expect(read_stripe(s, 0) == (0, data[:STRIPE]), "stripe 0 (no source)")
                expect(read_stripe(s, 1) == (0x03, None), "stripe 1: NOT_FETCHED")
                expect(read_stripe(s, 2) == (0, data[2 * STRIPE:3 * STRIPE]), "stripe 2")
                expect(read_stripe(s, 3) == (0x03, None), "stripe 3: NOT_FETCHED")
                expect(read_stripe(s, 4) == (0x01, None), "stripe 4: INVALID_STRIPE")
                expect(read_stripe(s, 2**64 - 1) == (0x01, None), "index 2^64-1")
                # An unknown opcode is answered FE and the next byte is a new
                # opcode; requests sent back to back are answered in order.
                s.sendall(b"\xaa" + b"\x00" + stripe_request(1) + b"\x02")
                expect(recv_exact(s, 1) == b"\xfe", "0xAA: INVALID_COMMAND")
                expect(recv_exact(s, 9 + 516) == metadata_reply(11, served), "pipelined METADATA")
                expect(recv_exact(s, 1) == b"\x03", "pipelined READ_STRIPE")
                expect(recv_exact(s, 1) == b"\xfe", "0x02: INVALID_COMMAND")
            log = server.log()
            expect("2 of the disk's 3 stripes with a source are not fetched" in log,
                   "no warning about unfetched stripes")
        # Every stripe fetched: the last, short one too.
        write_metadata(meta, 11, [HAS_SOURCE | FETCHED] * 4, file_headers=4096)
        with Server(tmp, disk, fields, name="fetched") as server:
            with server.connect() as s:
                for i in range(4):
                    expect(read_stripe(s, i) == (0, data[i * STRIPE:(i + 1) * STRIPE]),
                           f"stripe {i}")


def test_encrypted_disk_serves_plaintext():
    """The disk and its metadata file encrypted with the config's keys (by an
    independent XTS implementation): stripes travel as plaintext."""
    with harness.scratch_dir() as tmp:
        k1, k2 = harness.random_xts_keys()
        plain = random_disk(os.path.join(tmp, "plain.raw"), 4 * MIB, seed=2)
        disk = os.path.join(tmp, "disk.raw")
        tool = os.path.join(harness.BUILD_DIR, "tests", "unit", "crypto", "xts-reference")

        def encrypt(src, dst):
            proc = subprocess.run([tool, "encrypt", k1.hex(), k2.hex(), "0", src, dst],
                                  capture_output=True, timeout=120)
            expect(proc.returncode == 0, f"xts-reference: {proc.stderr.decode()}")
        encrypt(plain, disk)
        expect(read(disk) != read(plain), "the disk is not encrypted")
        meta_plain = write_metadata(os.path.join(tmp, "meta.plain"), 11,
                                    [HAS_SOURCE | FETCHED, 0, HAS_SOURCE | FETCHED, 0])
        meta = os.path.join(tmp, "disk.meta")
        encrypt(meta_plain, meta)
        fields = {"metadata_path": meta, "stripe_source": {"source": "raw", "path": plain},
                  "encryption_key": harness.encryption_key_field(k1, k2)}
        data = read(plain)
        with Server(tmp, disk, fields) as server:
            with server.connect() as s:
                expect(ask(s, b"\x00", 9 + 516) == metadata_reply(
                    11, [HAS_SOURCE | FETCHED, WRITTEN, HAS_SOURCE | FETCHED, WRITTEN]),
                    "METADATA of the encrypted metadata file")
                for i in range(4):
                    expect(read_stripe(s, i) == (0, data[i * STRIPE:(i + 1) * STRIPE]),
                           f"stripe {i} is not the plaintext")


def test_start_up_errors():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 4 * MIB)
        server = Server(tmp, disk)
        exe = harness.binary("remote-stripe-server")
        proc = subprocess.run([exe, "-f", server.config], capture_output=True, timeout=30)
        expect(proc.returncode == 2 and b"--listen-config" in proc.stderr,
               f"missing --listen-config: {proc.returncode} {proc.stderr!r}")
        proc = subprocess.run([exe, "-f", server.config, "--listen-config", server.listen,
                               "--max-connections", "0"], capture_output=True, timeout=30)
        expect(proc.returncode == 2, "--max-connections 0 accepted")
        with open(server.listen, "w") as f:
            f.write('address: "127.0.0.1:4555"\npsk_identity: "x"\n')
        proc = subprocess.run([exe, "-f", server.config, "--listen-config", server.listen],
                              capture_output=True, timeout=30)
        expect(proc.returncode == 1 and b"Both psk_identity and psk_secret" in proc.stderr,
               f"half a PSK: {proc.returncode} {proc.stderr!r}")
        with open(server.listen, "w") as f:
            f.write(f'address: "127.0.0.1:4555"\npsk_identity: "x"\n'
                    f'psk_secret: "{base64.b64encode(bytes(8)).decode()}"\n')
        proc = subprocess.run([exe, "-f", server.config, "--listen-config", server.listen],
                              capture_output=True, timeout=30)
        expect(proc.returncode == 1 and b"at least 16 bytes" in proc.stderr,
               f"short secret: {proc.returncode} {proc.stderr!r}")
        with open(server.listen, "w") as f:
            f.write('address: "no-such-host.invalid:4555"\n')
        proc = subprocess.run([exe, "-f", server.config, "--listen-config", server.listen],
                              capture_output=True, timeout=60)
        expect(proc.returncode == 1 and b"no-such-host.invalid" in proc.stderr,
               f"unresolvable address: {proc.returncode} {proc.stderr!r}")
        # A metadata file with fewer headers than the disk has stripes.
        # (32 KiB stripes: 1024 of them, and a file with room for 512.)
        big = harness.make_disk(os.path.join(tmp, "big.raw"), 32 * MIB)
        meta = write_metadata(os.path.join(tmp, "small.meta"), 6, [7, 7])
        harness.write_config(server.config, {"path": big, "metadata_path": meta})
        with open(server.listen, "w") as f:
            f.write('address: "127.0.0.1:0"\n')
        proc = subprocess.run([exe, "-f", server.config, "--listen-config", server.listen],
                              capture_output=True, timeout=30)
        expect(proc.returncode == 1 and b"512 stripe headers" in proc.stderr
               and b"1024 stripes" in proc.stderr,
               f"short metadata file: {proc.returncode} {proc.stderr!r}")


# ---- TLS-PSK with openssl s_client ----

def s_client(port, identity, psk_hex, stdin_bytes, reply_len, timeout=15):
    """openssl s_client sends stdin_bytes; returns (bytes received, exit
    status or None while still running, stderr)."""
    argv = ["openssl", "s_client", "-tls1_2", "-cipher", "PSK-AES256-GCM-SHA384",
            "-connect", f"127.0.0.1:{port}", "-quiet"]
    if psk_hex is not None:
        argv += ["-psk", psk_hex, "-psk_identity", identity]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(stdin_bytes)
        proc.stdin.flush()
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < reply_len and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4 * MIB)
                if not chunk:
                    break
                out += chunk
        status = proc.poll()
        return bytes(out), status, ""
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=10)
        s_client.last_stderr = err.decode(errors="replace")


def test_tls_psk_with_openssl_s_client():
    with harness.scratch_dir() as tmp:
        disk = random_disk(os.path.join(tmp, "disk.raw"), 4 * MIB, seed=3)
        data = read(disk)
        with Server(tmp, disk, psk=(IDENTITY, PSK)) as server:
            request = b"\x00" + stripe_request(2) + b"\xaa" + stripe_request(4)
            expected = (metadata_reply(11, [7, 7, 7, 7]) + stripe_reply(data[2 * STRIPE:3 * STRIPE])
                        + b"\xfe\x01")
            out, _, _ = s_client(server.port, IDENTITY, PSK.hex(), request, len(expected))
            expect(out == expected,
                   f"s_client got {len(out)} bytes, expected {len(expected)}: {out[:24].hex()}")
            expect("NO PSK CONFIGURED" not in server.log(), "warned about plain TCP")
            harness.wait_for(lambda: f'identity "{IDENTITY}"' in server.log(), 10,
                             "the identity in the log")

            # Wrong identities (shorter, longer, empty), a wrong secret, no PSK.
            for identity, psk, what in [("client", PSK, "shorter identity"),
                                        ("client12", PSK, "longer identity"),
                                        ("", PSK, "empty identity"),
                                        (IDENTITY, bytes(len(PSK)), "wrong secret"),
                                        (IDENTITY, None, "no PSK on the client")]:
                before = server.log().count("TLS handshake failed")
                out, status, _ = s_client(server.port, identity,
                                          psk.hex() if psk is not None else None,
                                          b"\x00", 9 + 516, timeout=5)
                expect(out == b"", f"{what}: the server answered {out[:16].hex()}")
                expect(server.process.alive(), f"{what}: the server died")
                harness.wait_for(lambda: server.log().count("TLS handshake failed") > before,
                                 10, f"{what}: a handshake failure in the log")
                # Still serving the right client.
                out, _, _ = s_client(server.port, IDENTITY, PSK.hex(), b"\x00", 9 + 516)
                expect(out == metadata_reply(11, [7, 7, 7, 7]), f"after {what}: not served")
            log = server.log()
            expect("psk identity not found" in log, "unknown identities not named in the log")

            # A plain-TCP client gets no answer to its bytes, only a closed
            # connection.
            with server.connect() as s:
                s.sendall(b"\x00")
                expect(closed_by_server(s), "a plain client was not dropped")
                expect(server.process.alive(), "the server died")


def test_plain_server_and_tls_client():
    """No PSK on the server: a TLS client's handshake fails (its ClientHello is
    answered as unknown opcodes) and the server goes on."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 4 * MIB)
        with Server(tmp, disk) as server:
            out, _, _ = s_client(server.port, IDENTITY, PSK.hex(), b"\x00", 9 + 516, timeout=5)
            expect(out == b"", "a TLS client got data from a plain server")
            with server.connect() as s:
                expect(ask(s, b"\x00", 525)[:1] == b"\x00", "not serving after a TLS client")


# ---- hostile clients ----

def test_hostile_clients():
    with harness.scratch_dir() as tmp:
        disk = random_disk(os.path.join(tmp, "disk.raw"), 8 * MIB, seed=4)
        data = read(disk)
        args = ["--max-connections", "700", "--idle-timeout-ms", "3000", "--io-timeout-ms",
                "3000"]
        with Server(tmp, disk, args=args) as server:
            well_behaved(server, data)
            baseline = server.rss_kib()

            # Garbage: every byte that is not an opcode is answered FE.
            with server.connect() as s:
                garbage = bytes(b for b in random.Random(5).randbytes(4000) if b > 1)
                s.sendall(garbage)
                expect(recv_exact(s, len(garbage)) == b"\xfe" * len(garbage), "garbage")
                well_behaved(server, data, rounds=1)

            # 500 idle connections.
            idle = [server.connect() for _ in range(500)]
            harness.wait_for(lambda: server.fd_count() >= 500, 20, "500 connections accepted")
            well_behaved(server, data)

            # One byte a second: a request that never completes in time.
            slow = server.connect()
            slow.sendall(b"\x01")

            # Vanishing mid-reply: read a little of a stripe, then reset.
            for _ in range(20):
                s = server.connect()
                s.sendall(stripe_request(3))
                recv_exact(s, 100)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

            # Never reading: 1 MiB replies asked for, none read.
            stuck = []
            for _ in range(80):
                s = server.connect(rcvbuf=4096)
                s.sendall(b"".join(stripe_request(i % 8) for i in range(32)))
                stuck.append(s)

            t0 = time.monotonic()
            slow_dropped = False
            for i in range(3):
                well_behaved(server, data, rounds=2, timeout=5)
                try:
                    slow.sendall(b"\x00")  # 3 of the 8 index bytes
                except OSError:
                    slow_dropped = True
                time.sleep(0.5)
            expect(server.process.alive(), "the server died")
            rss = server.rss_kib()
            # 64 reply buffers of 1 MiB at most, whatever 600 clients do.
            expect(rss - baseline < 100 * 1024 * server.memory_factor(),
                   f"RSS grew from {baseline} to {rss} KiB")

            # Deadlines: the slow, idle and stuck clients are dropped.
            expect(slow_dropped or closed_by_server(slow, timeout=10),
                   "the one-byte-a-second client stayed")
            expect(all(closed_by_server(s, timeout=10) for s in idle[:20]),
                   "idle connections stayed")
            log = server.log()
            expect("timed out in the middle of a request" in log, "no slow-client timeout logged")
            expect("idle timeout" in log, "no idle timeout logged")
            harness.wait_for(lambda: "timed out sending a reply" in server.log(), 15,
                             "a stuck client's reply timeout")
            for s in idle + stuck + [slow]:
                s.close()
            harness.wait_for(lambda: server.fd_count() < 50, 20, "every connection closed")
            well_behaved(server, data)
            expect(time.monotonic() - t0 < 60, "too slow")


def test_connection_limit():
    with harness.scratch_dir() as tmp:
        disk = random_disk(os.path.join(tmp, "disk.raw"), 4 * MIB, seed=6)
        data = read(disk)
        with Server(tmp, disk, args=["--max-connections", "50"]) as server:
            held = [server.connect() for _ in range(50)]
            harness.wait_for(lambda: server.log().count("accepted connection") >= 50, 20,
                             "50 sessions")
            extra = [server.connect() for _ in range(30)]
            expect(all(closed_by_server(s, timeout=10) for s in extra),
                   "connections beyond the limit were kept")
            log = server.log()
            expect(log.count("refusing new connections") == 1,
                   "the refusals were not logged once")
            for s in held[:10]:
                s.close()
            harness.wait_for(lambda: server.log().count("disconnected") >= 10, 10, "10 closed")
            well_behaved(server, data)
            expect("accepting connections again (30 refused)" in server.log(),
                   "the end of the burst was not logged")
            for s in held[10:] + extra:
                s.close()


def test_sigterm_finishes_the_reply_in_flight():
    with harness.scratch_dir() as tmp:
        disk = random_disk(os.path.join(tmp, "disk.raw"), 4 * MIB, seed=7)
        data = read(disk)
        with Server(tmp, disk, args=["--io-timeout-ms", "10000"]) as server:
            idle = server.connect()
            # 16 MiB of replies asked for at once: more than the socket
            # buffers hold, so the server is in the middle of one of them.
            s = server.connect(rcvbuf=4096)
            s.sendall(b"".join(stripe_request(i % 4) for i in range(16)))
            expect(recv_exact(s, 9) == b"\x00" + struct.pack("<Q", STRIPE), "reply header")
            time.sleep(0.5)
            os.kill(server.process.pid, signal.SIGTERM)
            expect(closed_by_server(idle, timeout=10), "an idle session outlived SIGTERM")
            time.sleep(0.5)
            expect(server.process.alive(), "the server exited before the reply was sent")
            stream = bytearray(b"\x00" + struct.pack("<Q", STRIPE))
            s.settimeout(20)
            while True:
                chunk = s.recv(4 * MIB)
                if not chunk:
                    break
                stream += chunk
            # Whole replies only, each right, then the end of the session.
            reply = STRIPE + 9
            count = len(stream) // reply
            expect(len(stream) % reply == 0, f"a reply was cut: {len(stream)} bytes")
            expect(1 <= count < 16, f"{count} replies")
            for i in range(count):
                expect(bytes(stream[i * reply:(i + 1) * reply]) ==
                       stripe_reply(data[(i % 4) * STRIPE:(i % 4 + 1) * STRIPE]), f"reply {i}")
            s.close()
            expect(server.process.stop(timeout=20) == 0, "exit status")

        # A reply nobody reads delays the exit by the I/O timeout at most.
        with Server(tmp, disk, args=["--io-timeout-ms", "1500"], name="stuck") as server:
            s = server.connect(rcvbuf=4096)
            s.sendall(stripe_request(1))
            recv_exact(s, 9)
            t0 = time.monotonic()
            expect(server.process.stop(timeout=20) == 0, "exit status")
            expect(time.monotonic() - t0 < 10, "the stop waited past the I/O timeout")
            s.close()


def test_a_flooding_client_does_not_starve_others():
    """A client that pipelines requests answered without the disk (here
    unknown opcodes, each answered FE) as fast as the server answers them,
    and reads every answer, always has more input ready: the server must
    still take turns with everyone else."""
    import threading
    with harness.scratch_dir() as tmp:
        disk = random_disk(os.path.join(tmp, "disk.raw"), 4 * MIB, seed=8)
        data = read(disk)
        with Server(tmp, disk) as server:
            flood = server.connect()
            stop = threading.Event()
            answered = [0]

            def send():
                chunk = b"\xfe" * 65536
                try:
                    while not stop.is_set():
                        flood.sendall(chunk)
                except OSError:
                    pass

            def receive():
                try:
                    while not stop.is_set():
                        got = flood.recv(1 << 20)
                        if not got:
                            return
                        answered[0] += len(got)
                except OSError:
                    pass

            threads = [threading.Thread(target=send), threading.Thread(target=receive)]
            for t in threads:
                t.start()
            try:
                harness.wait_for(lambda: answered[0] > 1 << 20, 20, "the flood answered")
                t0 = time.monotonic()
                well_behaved(server, data, rounds=2, timeout=15)
                took = time.monotonic() - t0
                expect(took < 5, f"a well-behaved client waited {took:.1f} s")
            finally:
                stop.set()
                flood.shutdown(socket.SHUT_RDWR)
                for t in threads:
                    t.join()
                flood.close()


if __name__ == "__main__":
    harness.main([
        test_metadata_golden_4mib,
        test_read_stripe_statuses,
        test_encrypted_disk_serves_plaintext,
        test_start_up_errors,
        test_tls_psk_with_openssl_s_client,
        test_plain_server_and_tls_client,
        test_hostile_clients,
        test_connection_limit,
        test_sigterm_finishes_the_reply_in_flight,
        test_a_flooding_client_does_not_starve_others,
    ])
