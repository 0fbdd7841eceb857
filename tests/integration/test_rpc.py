"""The RPC socket of the real vhost-backend (docs/rpc.md): per-queue stats that
add up to exactly what ubiblk-bench did through the guest queues, queues that
are empty again once the I/O is done, several clients at once alongside
guest I/O, hostile input that costs only the offending connection, and the
socket file's life: mode 0660, removed at exit, and a regular file at the path
refused and left alone."""

import json
import os
import socket
import stat
import threading

import harness

MiB = 1 << 20
DISK_SIZE = 16 * MiB


def backend(tmp, **fields):
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
    rpc = os.path.join(tmp, "rpc.sock")
    be = harness.VhostBackend(tmp, disk, rpc_socket_path=rpc, queue_size=128, **fields)
    return be, rpc


def bench(be, *args):
    code, report, err = harness.run_bench(["--socket", be.socket] + list(args))
    assert code == 0, f"ubiblk-bench failed ({code}): {err}"
    return report


class Client:
    """One RPC connection kept open across requests."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, command):
        self.send(json.dumps({"command": command}).encode() + b"\n")
        return self.line()

    def closed_by_server(self):
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def totals(stats):
    keys = ("bytes_read", "bytes_written", "read_ops", "write_ops", "flush_ops")
    return {k: sum(q[k] for q in stats["queues"]) for k in keys}


def test_stats_add_up_to_the_guest_io():
    with harness.scratch_dir() as tmp:
        be, rpc = backend(tmp, num_queues=2)
        with be:
            c = Client(rpc)
            assert c.ask("version") == {"version": "0.4.0"}
            assert c.ask("status") == {"status": None}
            assert c.ask("queues") == {"queues": [[], []]}
            first = c.ask("stats")["stats"]
            assert first["fetch"] is None, first
            assert len(first["queues"]) == 2, first
            assert totals(first) == dict.fromkeys(totals(first), 0), first

            bench(be, "--mode", "write", "--queues", "2", "--iodepth", "4", "--bs", "4k",
                  "--io-count", "1000", "--size", "8m")
            bench(be, "--mode", "read", "--queues", "2", "--iodepth", "2", "--bs", "64k",
                  "--io-count", "100", "--size", "8m")
            stats = c.ask("stats")["stats"]
            t = totals(stats)
            assert t["write_ops"] == 1000 and t["bytes_written"] == 1000 * 4096, stats
            assert t["read_ops"] == 100 and t["bytes_read"] == 100 * 65536, stats
            # The bench splits requests across its queues: both saw some.
            for q in stats["queues"]:
                assert q["write_ops"] > 0 and q["read_ops"] > 0, stats
            # Nothing is in flight any more.
            assert c.ask("queues") == {"queues": [[], []]}
            c.close()
            assert be.stop() == 0


def test_verify_flushes_are_counted():
    with harness.scratch_dir() as tmp:
        be, rpc = backend(tmp, num_queues=1)
        with be:
            bench(be, "--mode", "verify", "--iodepth", "4", "--bs", "4k", "--size", "1m",
                  "--seed", "5")
            t = totals(harness.rpc(rpc, "stats")["stats"])
            # verify writes every block, flushes, then reads every block.
            assert t["write_ops"] == 256 and t["read_ops"] == 256, t
            assert t["flush_ops"] >= 1, t
            assert be.stop() == 0


def test_many_clients_during_guest_io():
    with harness.scratch_dir() as tmp:
        be, rpc = backend(tmp, num_queues=2)
        with be:
            errors = []

            def client(n):
                try:
                    c = Client(rpc)
                    for i in range(50):
                        cmd = ("version", "queues", "stats", "status")[(n + i) % 4]
                        reply = c.ask(cmd)
                        assert list(reply) == [cmd], reply
                    c.close()
                except Exception as e:  # noqa: BLE001 - reported by the main thread
                    errors.append(f"client {n}: {e!r}")

            threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
            for th in threads:
                th.start()
            bench(be, "--mode", "randrw", "--queues", "2", "--iodepth", "8", "--bs", "4k",
                  "--io-count", "4000")
            for th in threads:
                th.join(60)
            assert not errors, errors
            assert be.stop() == 0


def test_hostile_clients_cost_only_their_connection():
    with harness.scratch_dir() as tmp:
        be, rpc = backend(tmp, num_queues=1)
        with be:
            good = Client(rpc)
            garbage = Client(rpc)
            garbage.send(b"\xff\xfe\x00garbage\x80\n{ not valid json }\n")
            assert garbage.line()["error"].startswith("invalid request"), "non-UTF-8"
            assert garbage.line()["error"].startswith("invalid request"), "bad JSON"
            assert garbage.ask("version") == {"version": "0.4.0"}

            long_line = Client(rpc)
            long_line.send(b"x" * (64 * 1024 + 1) + b"\n")
            assert long_line.closed_by_server(), "a line over 64 KiB must close the connection"
            long_line.close()

            # A client that sends without reading stalls only itself.
            deaf = Client(rpc, timeout=0.5)
            try:
                for _ in range(100000):
                    deaf.send(b'{"command":"stats"}\n')
            except socket.timeout:
                pass
            assert good.ask("version") == {"version": "0.4.0"}
            bench(be, "--mode", "read", "--bs", "4k", "--io-count", "100")
            assert good.ask("stats")["stats"]["queues"][0]["read_ops"] == 100
            for c in (good, garbage, deaf):
                c.close()
            assert be.stop() == 0


def test_socket_file_life():
    with harness.scratch_dir() as tmp:
        be, rpc = backend(tmp, num_queues=1)
        with be:
            st = os.lstat(rpc)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(
                st.st_mode)
            assert be.stop() == 0
        assert not os.path.exists(rpc), "the RPC socket must be removed at exit"


def test_regular_file_at_the_path_is_refused():
    with harness.scratch_dir() as tmp:
        be, rpc = backend(tmp, num_queues=1)
        with open(rpc, "wb") as f:
            f.write(b"not a socket")
        try:
            be.start()
            raise AssertionError("vhost-backend started over a regular file at the RPC path")
        except RuntimeError as e:
            assert "failed to remove existing RPC socket" in str(e), str(e)
        finally:
            if be.process:
                be.process.close()
        with open(rpc, "rb") as f:
            assert f.read() == b"not a socket", "the file must be left alone"


if __name__ == "__main__":
    harness.main([
        test_stats_add_up_to_the_guest_io,
        test_verify_flushes_are_counted,
        test_many_clients_during_guest_io,
        test_hostile_clients_cost_only_their_connection,
        test_socket_file_life,
        test_regular_file_at_the_path_is_refused,
    ])
