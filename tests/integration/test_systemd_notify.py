"""systemd's notify protocol, against a socket the test holds (NOTIFY_SOCKET):
vhost-backend sends READY=1 only once its vhost-user socket accepts (one
connect() right after READY=1 must succeed) and its RPC socket answers;
STATUS= follows the hydration of a lazily fetched disk (raw image source, as
in test_lazy.py) and says "hydration complete" at the end; SIGTERM sends
STOPPING=1 and exits 0; an abstract "@name" socket works; a NOTIFY_SOCKET
nobody listens on changes nothing. remote-stripe-server: READY=1 once its
TCP port listens, STOPPING=1 on SIGTERM. (ublk-backend runs only in the
QEMU guest: tests/guest/test_guest_ublk.py.)"""

import os
import re
import signal
import socket
import subprocess
import time

import harness

MULT = float(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1") or 1)
TIMEOUT = 30 * MULT

MiB = 1 << 20
STRIPE = 1 * MiB                     # init-metadata's default shift 11
DISK_SIZE = 32 * MiB
IMAGE_SIZE = 20 * MiB + 300 * 1024   # a partial last source stripe
SOURCE_STRIPES = (IMAGE_SIZE + STRIPE - 1) // STRIPE


class Receiver:
    """The service manager's end: a datagram socket at a path, or in the
    abstract namespace for an address starting with '@'."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages = []

    def close(self):
        self.sock.close()

    def next(self, timeout=TIMEOUT):
        """The next message as a list of KEY=value lines."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise TimeoutError(f"no notification in {timeout}s; so far: {self.messages}")
        message = data.decode().split("\n")
        self.messages.append(message)
        return message

    def wait_for(self, predicate, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no notification with {what}; got {self.messages}")
            message = self.next(left)
            if predicate(message):
                return message

    def nothing_pending(self):
        self.sock.settimeout(0)
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return True
        self.messages.append(data.decode().split("\n"))
        return False


def status_of(message):
    for line in message:
        if line.startswith("STATUS="):
            return line[len("STATUS="):]
    return None


def start(argv, workdir, notify, name):
    env = dict(os.environ, UBIBLK_LOG="info", NOTIFY_SOCKET=notify)
    return harness.Process(argv, log_path=os.path.join(workdir, name + ".log"), env=env)


def connect_once(path):
    """One connect(), no retry: refused or missing means not serving."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    finally:
        s.close()


def stop_expect_stopping(process, receiver):
    os.kill(process.pid, signal.SIGTERM)
    receiver.wait_for(lambda m: "STOPPING=1" in m, "STOPPING=1")
    code = process.stop()
    assert code == 0, f"exit {code}:\n{process.log_text()}"


def vhost_config(tmp, **fields):
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
    sock = os.path.join(tmp, "vhost.sock")
    config = harness.write_config(os.path.join(tmp, "config.yaml"),
                                  dict({"path": disk, "socket": sock}, **fields))
    return config, sock


def test_vhost_ready_only_when_accepting_then_stopping():
    with harness.scratch_dir() as tmp:
        config, sock = vhost_config(tmp)
        receiver = Receiver(os.path.join(tmp, "notify.sock"))
        be = start([harness.binary("vhost-backend"), "-f", config], tmp, receiver.address,
                   "vhost-backend")
        try:
            ready = receiver.next()
            connect_once(sock)
            assert ready[0] == "READY=1", f"the first message must be READY=1: {ready}"
            assert status_of(ready) == f"serving {sock}", ready
            # Nothing changes while it serves a plain disk: no repeats.
            time.sleep(2.5)
            assert receiver.nothing_pending(), receiver.messages
            stop_expect_stopping(be, receiver)
            assert receiver.messages[-1] == ["STOPPING=1", "STATUS=stopping"], receiver.messages
        finally:
            be.close()
            receiver.close()


def lazy_setup(tmp, **fields):
    image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_SIZE, seed=99)
    rpc = os.path.join(tmp, "rpc.sock")
    config, sock = vhost_config(tmp, image_path=image,
                                metadata_path=os.path.join(tmp, "disk.meta"),
                                rpc_socket_path=rpc, num_queues=1, queue_size=64, **fields)
    harness.init_metadata(config)
    return config, sock, rpc


def test_vhost_status_follows_hydration():
    """autofetch off: stripes are fetched only when read, so every count is
    known; the STATUS= line is refreshed every few seconds when it changed."""
    with harness.scratch_dir() as tmp:
        config, sock, rpc = lazy_setup(tmp, autofetch=False, copy_on_read=True)
        receiver = Receiver(os.path.join(tmp, "notify.sock"))
        be = start([harness.binary("vhost-backend"), "-f", config], tmp, receiver.address,
                   "vhost-backend")
        try:
            ready = receiver.next()
            connect_once(sock)
            # The RPC socket was up before READY=1.
            assert harness.rpc(rpc, "status")["status"]["stripes"]["fetched"] == 0
            assert ready[0] == "READY=1", ready
            assert status_of(ready) == (f"serving {sock}; hydration 0/{SOURCE_STRIPES} "
                                        "stripes (0%)"), ready
            # Reading 4 MiB from the start fetches stripes 0-3.
            code, _, err = harness.run_bench(["--socket", sock, "--mode", "read", "--bs", "64k",
                                              "--size", "4m", "--iodepth", "4"])
            assert code == 0, err
            want = f"serving {sock}; hydration 4/{SOURCE_STRIPES} stripes (19%)"
            receiver.wait_for(lambda m: status_of(m) == want, want)
            # The rest: read everything.
            code, _, err = harness.run_bench(["--socket", sock, "--mode", "read", "--bs", "64k",
                                              "--iodepth", "4"])
            assert code == 0, err
            want = f"serving {sock}; hydration complete ({SOURCE_STRIPES} stripes)"
            receiver.wait_for(lambda m: status_of(m) == want, want)
            for m in receiver.messages[1:]:
                assert m[0].startswith("STATUS="), f"only STATUS= while serving: {m}"
            stop_expect_stopping(be, receiver)
        finally:
            be.close()
            receiver.close()


def test_vhost_autofetch_ends_with_hydration_complete():
    with harness.scratch_dir() as tmp:
        config, sock, _ = lazy_setup(tmp, autofetch=True)
        receiver = Receiver(os.path.join(tmp, "notify.sock"))
        be = start([harness.binary("vhost-backend"), "-f", config], tmp, receiver.address,
                   "vhost-backend")
        try:
            ready = receiver.next()
            assert ready[0] == "READY=1", ready
            assert re.fullmatch(rf"serving {re.escape(sock)}; hydration (\d+/{SOURCE_STRIPES} "
                                r"stripes \(\d+%\)|complete \(\d+ stripes\))",
                                status_of(ready)), ready
            want = f"serving {sock}; hydration complete ({SOURCE_STRIPES} stripes)"
            if status_of(ready) != want:
                receiver.wait_for(lambda m: status_of(m) == want, want)
            stop_expect_stopping(be, receiver)
        finally:
            be.close()
            receiver.close()


def test_abstract_notify_socket():
    with harness.scratch_dir() as tmp:
        config, sock = vhost_config(tmp)
        receiver = Receiver(f"@ubiblk-test-notify-{os.getpid()}-{os.path.basename(tmp)}")
        be = start([harness.binary("vhost-backend"), "-f", config], tmp, receiver.address,
                   "vhost-backend")
        try:
            ready = receiver.next()
            connect_once(sock)
            assert ready == ["READY=1", f"STATUS=serving {sock}"], ready
            stop_expect_stopping(be, receiver)
        finally:
            be.close()
            receiver.close()


def test_nobody_listening_changes_nothing():
    with harness.scratch_dir() as tmp:
        config, sock = vhost_config(tmp)
        be = start([harness.binary("vhost-backend"), "-f", config], tmp,
                   os.path.join(tmp, "nobody.sock"), "vhost-backend")
        try:
            assert harness.wait_until_accepting(sock, be, TIMEOUT, "vhost-backend"), \
                be.log_text()
            code = be.stop()
            assert code == 0, f"exit {code}:\n{be.log_text()}"
        finally:
            be.close()


def test_remote_stripe_server_ready_and_stopping():
    with harness.scratch_dir() as tmp:
        disk = harness.random_file(os.path.join(tmp, "disk.raw"), 4 * MiB, seed=5)
        config = harness.write_config(os.path.join(tmp, "device.yaml"), {"path": disk})
        listen = os.path.join(tmp, "listen.yaml")
        with open(listen, "w") as f:
            f.write('address: "127.0.0.1:0"\n')
        receiver = Receiver(os.path.join(tmp, "notify.sock"))
        server = start([harness.binary("remote-stripe-server"), "-f", config,
                        "--listen-config", listen], tmp, receiver.address, "server")
        try:
            ready = receiver.next()
            assert ready[0] == "READY=1", ready
            m = re.fullmatch(rf"serving {re.escape(disk)} on 127\.0\.0\.1:(\d+)",
                             status_of(ready) or "")
            assert m, ready
            socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10).close()
            stop_expect_stopping(server, receiver)
        finally:
            server.close()
            receiver.close()


if __name__ == "__main__":
    harness.main([test_vhost_ready_only_when_accepting_then_stopping,
                  test_vhost_status_follows_hydration,
                  test_vhost_autofetch_ends_with_hydration_complete,
                  test_abstract_notify_socket,
                  test_nobody_listening_changes_nothing,
                  test_remote_stripe_server_ready_and_stopping])
