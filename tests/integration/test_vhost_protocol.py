"""vhost-backend end to end, speaking raw vhost-user from Python: the command
line, start-up refusals, the handshake QEMU does, I/O through a real split
ring in a memfd, malformed messages, reconnects and SIGTERM."""

import mmap
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess

import harness

# vhost-user requests
GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
GET_CONFIG = 24
GET_MAX_MEM_SLOTS = 36
ADD_MEM_REG = 37

VERSION = 0x1
REPLY = 0x4
NEED_REPLY = 0x8

BACKEND_FEATURES = 0x170007E46
PROTOCOL_FEATURES = 0x8209
F_VERSION_1 = 1 << 32
F_PROTOCOL_FEATURES = 1 << 30

VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_GET_ID = 8
DESC_F_NEXT = 1
DESC_F_WRITE = 2

DISK_SIZE = 64 << 20
RAM_SIZE = 4 << 20
RAM_GPA = 0x100000000
RAM_USER_ADDR = 0x7F0000000000
TIMEOUT = 10


class VhostUserClient:
    """A front end: raw messages over the Unix socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)

    def close(self):
        self.sock.close()

    def send(self, request, payload=b"", fds=(), flags=VERSION):
        data = struct.pack("<III", request, flags, len(payload)) + payload
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("backend closed the connection")
            data += chunk
        return data

    def reply(self, request):
        req, flags, size = struct.unpack("<III", self.recv_exact(12))
        assert req == request, f"reply to {req}, expected {request}"
        assert flags == VERSION | REPLY, f"reply flags {flags:#x}"
        return self.recv_exact(size)

    def get_u64(self, request):
        self.send(request)
        payload = self.reply(request)
        assert len(payload) == 8, f"u64 reply of {len(payload)} bytes"
        return struct.unpack("<Q", payload)[0]

    def set_u64(self, request, value, fds=(), need_reply=True):
        """With REPLY_ACK negotiated every set is acknowledged."""
        flags = VERSION | (NEED_REPLY if need_reply else 0)
        self.send(request, struct.pack("<Q", value), fds, flags)
        if need_reply:
            ack = struct.unpack("<Q", self.reply(request))[0]
            assert ack == 0, f"request {request} failed"

    def set_state(self, request, index, num):
        self.send(request, struct.pack("<II", index, num), flags=VERSION | NEED_REPLY)
        ack = struct.unpack("<Q", self.reply(request))[0]
        assert ack == 0, f"request {request} failed"

    def get_config(self, size, offset=0):
        self.send(GET_CONFIG, struct.pack("<III", offset, size, 0) + bytes(size))
        payload = self.reply(GET_CONFIG)
        r_offset, r_size, _ = struct.unpack("<III", payload[:12])
        assert (r_offset, r_size) == (offset, size)
        return payload[12:]

    def closed_by_backend(self, timeout=TIMEOUT):
        """True when the backend ends the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


class GuestRam:
    """Guest memory in a memfd, shared with the backend."""

    def __init__(self, size=RAM_SIZE):
        self.fd = os.memfd_create("guest-ram")
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.size = size

    def close(self):
        self.map.close()
        os.close(self.fd)

    def write(self, off, data):
        self.map[off:off + len(data)] = data

    def read(self, off, n):
        return bytes(self.map[off:off + n])

    def u16(self, off):
        return struct.unpack_from("<H", self.map, off)[0]


class SplitRing:
    """Driver side of one split virtqueue living in GuestRam at `base`."""

    def __init__(self, ram, index, base, size=16):
        self.ram, self.index, self.size = ram, index, size
        self.desc, self.avail, self.used = base, base + 0x1000, base + 0x2000
        self.data = base + 0x10000          # 4 KiB aligned buffers
        self.next_avail = 0
        self.last_used = 0
        self.kick = os.eventfd(0)
        self.call = os.eventfd(0)

    def setup(self, client):
        client.set_state(SET_VRING_NUM, self.index, self.size)
        client.set_state(SET_VRING_BASE, self.index, 0)
        addr = struct.pack("<IIQQQQ", self.index, 0, RAM_USER_ADDR + self.desc,
                           RAM_USER_ADDR + self.used, RAM_USER_ADDR + self.avail, 0)
        client.send(SET_VRING_ADDR, addr, flags=VERSION | NEED_REPLY)
        assert struct.unpack("<Q", client.reply(SET_VRING_ADDR))[0] == 0
        client.set_u64(SET_VRING_CALL, self.index, fds=[self.call])
        client.set_u64(SET_VRING_KICK, self.index, fds=[self.kick])
        client.set_state(SET_VRING_ENABLE, self.index, 1)

    def put_desc(self, i, off, length, flags, nxt):
        struct.pack_into("<QIHH", self.ram.map, self.desc + 16 * i, RAM_GPA + off, length,
                         flags, nxt)

    def request(self, req_type, sector, data_len, data_flags, payload=None):
        """Submits header, one data buffer and a status byte; waits for the
        used entry; returns (status, data buffer)."""
        header, buf, status = self.data, self.data + 0x1000, self.data + 0x1000 + data_len
        self.ram.write(header, struct.pack("<IIQ", req_type, 0, sector))
        if payload is not None:
            self.ram.write(buf, payload)
        self.ram.write(status, b"\xff")
        self.put_desc(0, header, 16, DESC_F_NEXT, 1)
        self.put_desc(1, buf, data_len, data_flags | DESC_F_NEXT, 2)
        self.put_desc(2, status, 1, DESC_F_WRITE, 0)
        struct.pack_into("<H", self.ram.map, self.avail + 4 + 2 * (self.next_avail % self.size), 0)
        self.next_avail = (self.next_avail + 1) & 0xFFFF
        struct.pack_into("<H", self.ram.map, self.avail + 2, self.next_avail)
        os.eventfd_write(self.kick, 1)
        poller = select.poll()
        poller.register(self.call, select.POLLIN)
        harness.wait_for(lambda: self.ram.u16(self.used + 2) != self.last_used, TIMEOUT,
                         "a used ring entry")
        self.last_used = self.ram.u16(self.used + 2)
        assert poller.poll(TIMEOUT * 1000), "no interrupt on the call eventfd"
        os.eventfd_read(self.call)
        return self.ram.read(status, 1)[0], self.ram.read(buf, data_len)

    def close(self):
        os.close(self.kick)
        os.close(self.call)


def handshake(client, ram, num_queues):
    """What QEMU does at start: features, queues, memory."""
    client.send(SET_OWNER)
    assert client.get_u64(GET_FEATURES) == BACKEND_FEATURES
    assert client.get_u64(GET_PROTOCOL_FEATURES) == PROTOCOL_FEATURES
    client.set_u64(SET_PROTOCOL_FEATURES, PROTOCOL_FEATURES, need_reply=False)
    assert client.get_u64(GET_QUEUE_NUM) == num_queues
    assert client.get_u64(GET_MAX_MEM_SLOTS) == 509
    client.set_u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL_FEATURES)
    region = struct.pack("<QQQQQ", 0, RAM_GPA, ram.size, RAM_USER_ADDR, 0)
    client.send(ADD_MEM_REG, region, fds=[ram.fd], flags=VERSION | NEED_REPLY)
    assert struct.unpack("<Q", client.reply(ADD_MEM_REG))[0] == 0


def run_backend(argv, timeout=20):
    env = dict(os.environ, UBIBLK_LOG="info")
    return subprocess.run([harness.binary("vhost-backend")] + argv, capture_output=True,
                          timeout=timeout, env=env)


def error_lines(proc):
    return [line for line in proc.stderr.decode().splitlines() if line.startswith("[ERROR]")]


# ---- command line ----

def test_help_and_version():
    proc = run_backend(["--help"])
    out = proc.stdout.decode()
    assert proc.returncode == 0
    for text in ("Usage: vhost-backend", "--config", "--kek", "--unlink-kek", "docs/config.md",
                 "socket"):
        assert text in out, f"--help does not mention {text}"
    for flag in ("-V", "--version"):
        proc = run_backend([flag])
        assert proc.returncode == 0
        # The reference's line, then the AES-XTS engine in use.
        assert re.fullmatch(r"vhost-backend 0\.4\.0\nxts engine: (vaes-avx512|gcrypt|openssl)\n",
                            proc.stdout.decode()), proc.stdout


def test_usage_errors():
    with harness.scratch_dir() as tmp:
        cfg = harness.write_config(os.path.join(tmp, "c.yaml"), {"path": "x"})
        for argv in ([], ["--bogus"], ["-f"], ["-f", cfg, "-u"], ["-f", cfg, "extra"]):
            proc = run_backend(argv)
            assert proc.returncode == 2, f"{argv}: exit {proc.returncode}"
            assert proc.stderr, f"{argv}: no message"


# ---- start-up refusals ----

def start_with(tmp, fields):
    cfg = harness.write_config(os.path.join(tmp, "c.yaml"), fields)
    return run_backend(["-f", cfg])


def test_bad_config_names_field():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 1 << 20)
        proc = start_with(tmp, {"path": disk, "socket": os.path.join(tmp, "s"),
                                "num_queues": "many"})
        assert proc.returncode == 1
        lines = error_lines(proc)
        assert len(lines) == 1, proc.stderr.decode()
        assert "num_queues" in lines[0], lines[0]
        assert not os.path.exists(os.path.join(tmp, "s"))


def test_missing_config_file():
    with harness.scratch_dir() as tmp:
        proc = run_backend(["-f", os.path.join(tmp, "absent.yaml")])
        assert proc.returncode == 1
        assert len(error_lines(proc)) == 1, proc.stderr.decode()


def test_unsupported_features_refused():
    key = ["ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=",
           "/ty6mHZUMhD+3LqYdlQyEP7cuph2VDIQ/ty6mHZUMhA="]
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 1 << 20)
        sock = os.path.join(tmp, "s")
        cases = [
            ({"encryption_key": [key[0], key[0]]}, "encryption_key",
             "the two keys must differ"),
            ({"metadata_path": os.path.join(tmp, "missing.meta")}, "missing.meta",
             "No such file"),
        ]
        for extra, field, message in cases:
            fields = {"path": disk, "socket": sock}
            fields.update(extra)
            proc = start_with(tmp, fields)
            assert proc.returncode == 1, f"{field}: exit {proc.returncode}"
            lines = error_lines(proc)
            assert len(lines) == 1, proc.stderr.decode()
            assert field in lines[0] and message in lines[0], lines[0]
            assert not os.path.exists(sock)


def test_missing_socket_refused():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 1 << 20)
        proc = start_with(tmp, {"path": disk})
        assert proc.returncode == 1
        lines = error_lines(proc)
        assert len(lines) == 1 and "socket must be specified for the vhost backend" in lines[0], \
            proc.stderr.decode()


def test_kek_loaded_first_and_unlinked():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 1 << 20)
        kek = os.path.join(tmp, "kek.yaml")
        with open(kek, "w") as f:
            f.write("method: none\n")
        os.chmod(kek, 0o600)  # a KEK others may read is refused
        cfg = harness.write_config(os.path.join(tmp, "c.yaml"), {"path": disk})
        # --unlink-kek removes the file even when the config is refused later.
        proc = run_backend(["-f", cfg, "-k", kek, "-u"])
        assert proc.returncode == 1
        assert not os.path.exists(kek)
        assert "socket must be specified" in proc.stderr.decode()
        # A missing KEK file is fatal before the config is looked at.
        proc = run_backend(["-f", cfg, "--kek", kek])
        assert proc.returncode == 1
        lines = error_lines(proc)
        assert len(lines) == 1 and "KEK" in lines[0], proc.stderr.decode()


# ---- serving ----

def test_socket_replaces_stale_file_and_has_mode_0660():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(os.path.join(tmp, "vhost.sock"))
        stale.close()
        with harness.VhostBackend(tmp, disk) as be:
            mode = stat.S_IMODE(os.stat(be.socket).st_mode)
            assert mode == 0o660, oct(mode)
            assert "Starting vhost-user-blk backend. Process ID: " \
                f"{be.process.pid}" in be.process.log_text()
            assert be.socket in be.process.log_text()


def test_second_backend_on_a_live_socket_is_refused():
    """A socket some backend still serves is never taken over: the second
    backend exits 1 naming it, the first keeps serving on its socket."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with harness.VhostBackend(tmp, disk) as first:
            inode = os.stat(first.socket).st_ino
            proc = subprocess.run([harness.binary("vhost-backend"), "-f", first.config],
                                  capture_output=True, timeout=30)
            assert proc.returncode == 1, proc
            err = proc.stderr.decode()
            assert "another server is listening on it" in err, err
            assert first.socket in err, err
            assert os.stat(first.socket).st_ino == inode
            assert harness.socket_accepts(first.socket)
            assert first.process.alive()


def test_handshake_config_and_io():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        ram = GuestRam()
        with harness.VhostBackend(tmp, disk, num_queues=2, device_id="vm-42") as be:
            client = VhostUserClient(be.socket)
            handshake(client, ram, 2)
            config = client.get_config(57)
            assert len(config) == 57
            capacity, size_max, seg_max = struct.unpack_from("<QII", config, 0)
            assert capacity == DISK_SIZE // 512
            assert (size_max, seg_max) == (65536, 4)
            assert struct.unpack_from("<I", config, 20)[0] == 512       # blk_size
            assert struct.unpack_from("<H", config, 34)[0] == 2         # num_queues
            assert config[32] == 1                                      # writeback
            full = client.get_config(60, offset=0x100)
            assert full[:57] == config

            rings = [SplitRing(ram, i, 0x20000 * i) for i in range(2)]
            for ring in rings:
                ring.setup(client)
            pattern = bytes((i * 7) & 0xFF for i in range(4096))
            status, _ = rings[0].request(VIRTIO_BLK_T_OUT, 8, 4096, 0, pattern)
            assert status == 0
            status, data = rings[1].request(VIRTIO_BLK_T_IN, 8, 4096, DESC_F_WRITE)
            assert status == 0 and data == pattern
            status, ident = rings[0].request(VIRTIO_BLK_T_GET_ID, 0, 20, DESC_F_WRITE)
            assert status == 0 and ident == b"vm-42" + bytes(15)
            with open(disk, "rb") as f:
                f.seek(8 * 512)
                assert f.read(4096) == pattern

            # GET_VRING_BASE stops each ring where the driver left it.
            for ring, expected in ((rings[0], 2), (rings[1], 1)):
                client.send(GET_VRING_BASE, struct.pack("<II", ring.index, 0))
                assert struct.unpack("<II", client.reply(GET_VRING_BASE)) == \
                    (ring.index, expected)
            client.close()
            for ring in rings:
                ring.close()
            # A new front end gets a fresh device.
            again = VhostUserClient(be.socket)
            handshake(again, ram, 2)
            again.close()
            assert be.stop() == 0
        ram.close()


def test_malformed_message_ends_connection_then_relisten():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with harness.VhostBackend(tmp, disk) as be:
            bad_messages = [
                struct.pack("<III", GET_FEATURES, 0, 0),                # version 0
                struct.pack("<III", SET_FEATURES, VERSION, 4) + bytes(4),  # wrong size
                struct.pack("<III", SET_VRING_NUM, VERSION, 8) + struct.pack("<II", 7, 16),
                struct.pack("<III", 200, VERSION, 0),                   # unknown request
            ]
            for bad in bad_messages:
                client = VhostUserClient(be.socket)
                client.sock.sendall(bad)
                assert client.closed_by_backend(), f"still connected after {bad!r}"
                client.close()
                assert be.process.alive()
            # Descriptors on a request that may not carry any.
            client = VhostUserClient(be.socket)
            efd = os.eventfd(0)
            client.send(GET_FEATURES, fds=[efd])
            os.close(efd)
            assert client.closed_by_backend()
            client.close()
            # And the next front end is served normally.
            client = VhostUserClient(be.socket)
            assert client.get_u64(GET_FEATURES) == BACKEND_FEATURES
            client.close()
            log = be.process.log_text()
            assert "ending the vhost-user connection" in log
            assert be.stop() == 0


SET_MEM_TABLE = 5


def test_region_past_end_of_memfd_ends_connection():
    """A region reaching past the end of its memfd would raise SIGBUS at the
    first access: it is refused, that connection ends, and the backend serves
    the next front end."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        short = GuestRam(size=RAM_SIZE // 2)
        ram = GuestRam()
        with harness.VhostBackend(tmp, disk) as be:
            cases = [  # (request, payload) claiming RAM_SIZE of a RAM_SIZE / 2 file
                (ADD_MEM_REG, struct.pack("<QQQQQ", 0, RAM_GPA, RAM_SIZE, RAM_USER_ADDR, 0)),
                (ADD_MEM_REG, struct.pack("<QQQQQ", 0, RAM_GPA, RAM_SIZE // 2, RAM_USER_ADDR,
                                          4096)),
                (SET_MEM_TABLE, struct.pack("<IIQQQQ", 1, 0, RAM_GPA, RAM_SIZE, RAM_USER_ADDR,
                                            0)),
            ]
            for request, payload in cases:
                client = VhostUserClient(be.socket)
                client.send(SET_OWNER)
                client.set_u64(SET_PROTOCOL_FEATURES, PROTOCOL_FEATURES, need_reply=False)
                client.set_u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL_FEATURES)
                client.send(request, payload, fds=[short.fd], flags=VERSION | NEED_REPLY)
                assert struct.unpack("<Q", client.reply(request))[0] == 1, \
                    f"request {request} accepted a region past the end of its file"
                assert client.closed_by_backend()
                client.close()
                assert be.process.alive()
            assert be.process.log_text().count("extends past the end of its file") == 3

            client = VhostUserClient(be.socket)
            handshake(client, ram, 1)
            ring = SplitRing(ram, 0, 0)
            ring.setup(client)
            status, _ = ring.request(VIRTIO_BLK_T_OUT, 0, 4096, 0, bytes(4096))
            assert status == 0
            client.close()
            ring.close()
            assert be.stop() == 0
        ram.close()
        short.close()


def test_ring_longer_than_queue_size_is_explained():
    """A VMM configured for longer rings than the config's queue_size is
    refused with the reason and both ways to fix it, not told that a power
    of two is not one."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        ram = GuestRam()
        with harness.VhostBackend(tmp, disk, queue_size=64) as be:
            client = VhostUserClient(be.socket)
            handshake(client, ram, 1)
            client.send(SET_VRING_NUM, struct.pack("<II", 0, 128), flags=VERSION | NEED_REPLY)
            assert struct.unpack("<Q", client.reply(SET_VRING_NUM))[0] == 1
            assert client.closed_by_backend()
            client.close()
            log = be.process.log_text()
            line = next((l for l in log.splitlines() if "SET_VRING_NUM" in l), "")
            assert "size 128 exceeds the config's queue_size (64)" in line, log
            assert "power of two" not in line, line
            assert "queue_size to 128 or more" in line, line
            assert "queue-size=64" in line and "vhost-user-blk-pci" in line, line
            assert be.stop() == 0
        ram.close()


def test_second_front_end_refused_while_connected():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with harness.VhostBackend(tmp, disk) as be:
            first = VhostUserClient(be.socket)
            assert first.get_u64(GET_FEATURES) == BACKEND_FEATURES
            second = VhostUserClient(be.socket)
            assert second.closed_by_backend()
            second.close()
            assert first.get_u64(GET_PROTOCOL_FEATURES) == PROTOCOL_FEATURES
            first.close()
            assert be.stop() == 0


def test_sigterm_while_connected_exits_0_and_removes_socket():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        ram = GuestRam()
        with harness.VhostBackend(tmp, disk) as be:
            client = VhostUserClient(be.socket)
            handshake(client, ram, 1)
            ring = SplitRing(ram, 0, 0)
            ring.setup(client)
            status, _ = ring.request(VIRTIO_BLK_T_OUT, 0, 4096, 0, bytes(4096))
            assert status == 0
            assert be.stop(signal.SIGTERM) == 0
            assert not os.path.exists(be.socket)
            assert client.closed_by_backend()
            client.close()
            ring.close()
        ram.close()


def test_sigint_while_idle_exits_0():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with harness.VhostBackend(tmp, disk) as be:
            assert be.stop(signal.SIGINT) == 0
            assert not os.path.exists(be.socket)


if __name__ == "__main__":
    harness.main([
        test_help_and_version,
        test_usage_errors,
        test_bad_config_names_field,
        test_missing_config_file,
        test_unsupported_features_refused,
        test_missing_socket_refused,
        test_kek_loaded_first_and_unlinked,
        test_socket_replaces_stale_file_and_has_mode_0660,
        test_handshake_config_and_io,
        test_malformed_message_ends_connection_then_relisten,
        test_region_past_end_of_memfd_ends_connection,
        test_ring_longer_than_queue_size_is_explained,
        test_second_front_end_refused_while_connected,
        test_sigterm_while_connected_exits_0_and_removes_socket,
        test_sigint_while_idle_exits_0,
    ])
