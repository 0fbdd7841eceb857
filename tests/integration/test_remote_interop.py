#!/usr/bin/env python3
"""Interoperability with ubiblk 0.4's remote peers, followed checklist by
checklist. The peers are tests/remote-peers: a stripe server and a stripe
client written from the protocol alone, behaving as 0.4's (padded header
count from a pre-sized metadata file, never NOT_FETCHED, serial requests,
no magic check). They share no code with ours.

- our remote-stripe-server serves a 0.4-style client: METADATA with the
  disk's real stripe count, every WRITTEN or HAS_SOURCE stripe OK with
  exactly 512 << shift bytes, FE for an unknown opcode;
- our client (init-metadata, vhost-backend) fetches from a 0.4-style
  server: padded trailing zero headers tolerated, the source size taken
  from the last served header, the whole disk equal to the served bytes.
"""

import os
import socket
import struct
import subprocess
import sys

import harness

MiB = 1 << 20
STRIPE = MiB
PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "remote-peers")
FETCHED, WRITTEN, HAS_SOURCE = 0x01, 0x02, 0x04


class PeerServer:
    """tests/remote-peers/stripe_server.py on a free loopback port."""

    def __init__(self, data, metadata=None):
        argv = [sys.executable, os.path.join(PEERS, "stripe_server.py"), "--data", data]
        if metadata:
            argv += ["--metadata", metadata]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError("peer server did not start: " + self.proc.stderr.read().decode())
        self.address = f"127.0.0.1:{int(line.split()[1])}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def peer_client(address, *args):
    return subprocess.run([sys.executable, os.path.join(PEERS, "stripe_client.py"), address]
                          + list(args), capture_output=True, timeout=120)


def metadata_file(path, headers, file_headers):
    """A ubiblk 1.0 metadata file pre-sized for `file_headers` stripes, as
    init-metadata and 0.4 lay it out: the server then sees padding."""
    blob = b"BDEV_UBI\0" + struct.pack("<HHB", 1, 0, 11)
    blob += bytes(512 - len(blob))
    blob += bytes(headers) + bytes(file_headers - len(headers))
    with open(path, "wb") as f:
        f.write(blob)


def test_our_server_serves_a_04_client():
    image = os.urandom(12 * MiB + 4096)
    with harness.scratch_dir() as tmp:
        disk = os.path.join(tmp, "disk.raw")
        with open(disk, "wb") as f:
            f.write(image + bytes(16 * MiB - len(image)))
        config = os.path.join(tmp, "device.yaml")
        harness.write_config(config, {"path": disk, "socket": os.path.join(tmp, "unused.sock")})
        port = harness.free_port()
        listen = os.path.join(tmp, "listen.yaml")
        with open(listen, "w") as f:
            f.write(f'address: "127.0.0.1:{port}"\n')
        server = harness.Process([harness.binary("remote-stripe-server"), "-f", config,
                                  "--listen-config", listen],
                                 log_path=os.path.join(tmp, "server.log"))
        try:
            harness.wait_for(lambda: _tcp_accepts(port) or not server.alive(), 30,
                             "remote-stripe-server to listen")
            assert server.alive(), server.log_text()
            address = f"127.0.0.1:{port}"
            proc = peer_client(address, "metadata")
            out = proc.stdout.decode()
            assert proc.returncode == 0, proc.stderr.decode()
            # Exactly the disk's 16 stripes, every one served.
            assert "header_count 16\n" in out and "source_stripes 16\n" in out, out
            proc = peer_client(address, "compare", disk)
            assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
            assert "compared 16 stripes, skipped 0" in proc.stdout.decode(), proc.stdout
            # An unknown opcode is answered FE and the session goes on.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"\xaa\x00")
                reply = recv_exact(c, 10)
                assert reply[:2] == b"\xfe\x00", reply
            assert server.stop() == 0
        finally:
            server.close()


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def _tcp_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_our_client_fetches_from_a_04_server():
    # The 0.4 server reads its whole pre-sized metadata file: a sector of
    # 512 headers for a 10-stripe disk, the last 502 of them zero padding. Stripe 9 is
    # the last one served; stripe 7 has no data.
    served = os.urandom(10 * STRIPE)
    headers = [HAS_SOURCE | FETCHED] * 7 + [0, WRITTEN, HAS_SOURCE | FETCHED]
    expected = bytearray(served)
    expected[7 * STRIPE:8 * STRIPE] = bytes(STRIPE)
    with harness.scratch_dir() as tmp:
        data = os.path.join(tmp, "served.raw")
        with open(data, "wb") as f:
            f.write(served)
        server_meta = os.path.join(tmp, "served.meta")
        metadata_file(server_meta, headers, 512)
        peer = PeerServer(data, server_meta)
        try:
            disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 12 * MiB)
            rpc = os.path.join(tmp, "rpc.sock")
            be = harness.VhostBackend(tmp, disk, metadata_path=os.path.join(tmp, "disk.meta"),
                                      rpc_socket_path=rpc, copy_on_read=True, num_queues=1,
                                      queue_size=128)
            with open(be.config, "a") as f:
                f.write(f'stripe_source: {{source: remote, address: "{peer.address}", '
                        f'connections: 1}}\n')
            proc = harness.init_metadata(be.config, "-v")
            assert proc.returncode == 0
            stripes = harness.metadata_stripes(be.config)
            assert stripes["has-source"] == {0, 1, 2, 3, 4, 5, 6, 8, 9}, stripes
            with be:
                out = os.path.join(tmp, "dump.raw")
                code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "read",
                                                  "--bs", "64k", "--iodepth", "1",
                                                  "--dump", out])
                assert code == 0, err
                with open(out, "rb") as f:
                    got = f.read()
                assert got[:10 * STRIPE] == bytes(expected), "served stripes differ"
                assert got[10 * STRIPE:] == bytes(2 * STRIPE)
                status = harness.lazy_status(rpc)
                assert status["fetched"] == status["source"] == 9, status
                assert be.stop() == 0
        finally:
            peer.stop()


if __name__ == "__main__":
    harness.main([test_our_server_serves_a_04_client, test_our_client_fetches_from_a_04_server])
