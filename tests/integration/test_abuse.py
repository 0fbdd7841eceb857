"""Resource bounds under abuse (docs/reliability.md, "Resource bounds under
abuse"): floods of idle, slowloris and half-open connections against
remote-stripe-server and the RPC socket of vhost-backend, thousands of
vhost-user connect/disconnect cycles, and a front end that shrinks a shared
memfd under the backend. Throughout, a well-behaved peer is served; at the
end the process is alive and its descriptor count (/proc/PID/fd) and VmRSS
(/proc/PID/status) are back at their baseline (RSS with a stated slack).

Each test prints one "figures:" line (connections, cycles, time, baseline,
peak and after); the figures in the docs come from those lines."""

import base64
import contextlib
import json
import mmap
import os
import random
import resource
import socket
import ssl
import struct
import subprocess
import threading
import time

import harness
import test_vhost_protocol as vp

MIB = 1 << 20
KIB = 1 << 10
MULT = float(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1") or 1)
FLOOD = 1000                  # connections per flood
IDLE, SLOW, SHUT, RST = 400, 300, 150, 150
assert IDLE + SLOW + SHUT + RST == FLOOD
CYCLES = 10000                # vhost-user connect/disconnect cycles
CHILD_NOFILE = 1024           # the soft descriptor limit the daemons start with
# VmRSS after a flood may stay above the baseline by what the allocator
# keeps for reuse instead of returning it to the kernel (glibc keeps freed
# chunks in its arenas, and top-of-heap trimming needs the top chunk free):
# this much, or a quarter of the peak's growth, whichever is larger. A leak of
# a few KiB per connection would exceed it: 1,000 connections x 8 KiB.
RSS_SLACK_KIB = 8 * KIB


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def timeout(seconds):
    return seconds * MULT


def raise_own_nofile():
    """The flood needs more than 1,000 descriptors in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 16384) if hard != resource.RLIM_INFINITY else 16384
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@contextlib.contextmanager
def started(be, log_level="info"):
    """Starts vhost-backend with the soft descriptor limit of a default
    session; stops it by pid whatever happens, keeping its log on failure."""
    saved = os.environ.get("UBIBLK_LOG")
    os.environ["UBIBLK_LOG"] = log_level  # VhostBackend passes our environment on
    try:
        with child_nofile(CHILD_NOFILE):
            be.start()
    finally:
        if saved is None:
            os.environ.pop("UBIBLK_LOG", None)
        else:
            os.environ["UBIBLK_LOG"] = saved
    try:
        yield be
    except BaseException:
        print("--- vhost-backend log ---\n" + be.process.log_text()[-6000:], flush=True)
        raise
    finally:
        be.process.close()


@contextlib.contextmanager
def child_nofile(soft):
    """Children started inside inherit a soft descriptor limit of `soft`
    (the hard limit stays), as under a default login or systemd unit."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, old[1]), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


# ---- /proc figures ----

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """Samples a process's fd count and VmRSS every 50 ms: the peaks."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_fds = self.peak_rss = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.is_set():
            try:
                self.peak_fds = max(self.peak_fds, fd_count(self.pid))
                self.peak_rss = max(self.peak_rss, rss_kib(self.pid))
            except (OSError, RuntimeError):
                return  # the process is gone: the test says so
            self.done.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(timeout=10)


class Figures:
    """Baseline, peak and after of one process, and the checks on them."""

    def __init__(self, name, pid):
        self.name, self.pid = name, pid
        # The most over half a second: a daemon that has just started may
        # still be opening what it keeps (vhost-backend makes the next
        # connection's workers after it listens).
        self.base_fds = 0
        for _ in range(6):
            self.base_fds = max(self.base_fds, fd_count(pid))
            time.sleep(0.1)
        self.base_rss = rss_kib(pid)
        # ASan keeps freed memory in its quarantine (256 MiB): RSS then
        # says nothing about leaks (LeakSanitizer does, at exit).
        self.check_rss = not harness.built_with_asan()
        self.sampler = Sampler(pid)

    def settle(self, extra_fds=0):
        """Waits until the fd count is back at the baseline; checks RSS."""
        self.sampler.done.set()
        self.sampler.thread.join(timeout=10)
        want = self.base_fds + extra_fds
        try:
            harness.wait_for(lambda: fd_count(self.pid) <= want, timeout(30),
                             f"{self.name}: descriptors back to {want}")
        except TimeoutError:
            fds = sorted(os.readlink(f"/proc/{self.pid}/fd/{n}")
                         for n in os.listdir(f"/proc/{self.pid}/fd"))
            raise AssertionError(f"{self.name}: {len(fds)} descriptors, baseline {want}: {fds}")
        self.after_fds = fd_count(self.pid)
        # Memory is given back as connections end; give it a moment.
        limit = self.rss_limit()
        if not self.check_rss:
            self.after_rss = f"{rss_kib(self.pid)} (not checked: ASan)"
            return
        harness.wait_for(lambda: rss_kib(self.pid) <= limit, timeout(10),
                         f"{self.name}: VmRSS back under {limit} KiB (baseline {self.base_rss},"
                         f" peak {self.sampler.peak_rss}, now {rss_kib(self.pid)})")
        self.after_rss = rss_kib(self.pid)

    def rss_limit(self):
        growth = max(0, self.sampler.peak_rss - self.base_rss)
        return self.base_rss + max(RSS_SLACK_KIB, growth // 4)

    def line(self, **extra):
        parts = [f"{k}={v}" for k, v in extra.items()]
        parts += [f"fds {self.base_fds}/{self.sampler.peak_fds}/{self.after_fds}",
                  f"VmRSS KiB {self.base_rss}/{self.sampler.peak_rss}/{self.after_rss}"]
        return f"figures: {self.name}: " + ", ".join(parts) + " (baseline/peak/after)"


# ---- the flood ----

def client_hello():
    """The first flight of a real TLS client, to dribble byte by byte."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Flood:
    """FLOOD connections made by `connect()`: IDLE send nothing, SLOW send
    `slow_bytes` one byte per socket every 100 ms, SHUT connect and
    shutdown(SHUT_WR), RST connect and reset. Counts what the server did
    to the slow ones (closed them: a deadline) and how many connects
    failed (refused or reset at once: a limit)."""

    def __init__(self, connect, slow_bytes):
        self.connect = connect
        self.slow_bytes = slow_bytes
        self.idle, self.slow = [], []
        self.slow_pos = {}
        self.slow_closed = 0
        self.connect_failures = 0
        self.stop = threading.Event()
        self.dribbler = threading.Thread(target=self.dribble, daemon=True)

    def open(self):
        kinds = ["idle"] * IDLE + ["slow"] * SLOW + ["shut"] * SHUT + ["rst"] * RST
        random.Random(7).shuffle(kinds)
        for kind in kinds:
            try:
                s = self.connect()
            except OSError:
                self.connect_failures += 1
                continue
            if kind == "idle":
                self.idle.append(s)
            elif kind == "slow":
                s.setblocking(False)
                self.slow.append(s)
                self.slow_pos[s] = 0
            elif kind == "shut":
                s.shutdown(socket.SHUT_WR)
                self.idle.append(s)  # kept open: the server must still close its end
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
        self.dribbler.start()

    def dribble(self):
        while not self.stop.wait(0.1):
            for s in list(self.slow):
                pos = self.slow_pos[s]
                if pos is None:
                    continue
                try:
                    s.send(self.slow_bytes[pos % len(self.slow_bytes):][:1])
                    self.slow_pos[s] = pos + 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self.slow_pos[s] = None
                    self.slow_closed += 1

    def close(self):
        self.stop.set()
        if self.dribbler.is_alive():
            self.dribbler.join(timeout=10)
        for s in self.idle + self.slow:
            s.close()
        self.idle, self.slow = [], []


class GoodPeer:
    """Runs `round_fn` over and over on its own thread until stopped;
    every round must succeed."""

    def __init__(self, round_fn):
        self.round_fn = round_fn
        self.rounds = 0
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                self.round_fn()
            except Exception as e:  # noqa: BLE001 - reported by finish()
                self.error = e
                return
            self.rounds += 1

    def __enter__(self):
        self.thread.start()
        return self

    def wait_rounds(self, n, seconds):
        harness.wait_for(lambda: self.rounds >= n or self.error is not None, timeout(seconds),
                         f"{n} rounds of the well-behaved peer")

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=timeout(120))
        expect(self.error is None, f"the well-behaved peer failed: {self.error!r}")

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=timeout(120))


# ---- remote-stripe-server ----

PSK = bytes(range(0x40, 0x60))
IDENTITY = "client1"
STRIPES = 8


def remote_server(tmp, disk):
    config = harness.write_config(os.path.join(tmp, "device.yaml"), {"path": disk})
    listen = os.path.join(tmp, "listen.yaml")
    with open(listen, "w") as f:
        f.write(f'address: "127.0.0.1:0"\npsk_identity: "{IDENTITY}"\n'
                f'psk_secret: "{base64.b64encode(PSK).decode()}"\n')
    env = dict(os.environ, UBIBLK_LOG="info")
    with child_nofile(CHILD_NOFILE):
        proc = harness.Process([harness.binary("remote-stripe-server"), "-f", config,
                                "--listen-config", listen],
                               log_path=os.path.join(tmp, "server.log"), env=env)
    port = []

    def listening():
        for line in proc.log_text().splitlines():
            if "listening on 127.0.0.1:" in line:
                port.append(int(line.rsplit(":", 1)[1]))
                return True
        return not proc.alive()
    harness.wait_for(listening, timeout(20), "remote-stripe-server to listen")
    expect(port, "remote-stripe-server exited at start:\n" + proc.log_text())
    client = os.path.join(tmp, "client.yaml")
    with open(client, "w") as f:
        f.write(f'address: "127.0.0.1:{port[0]}"\npsk_identity: "{IDENTITY}"\n'
                f'psk_secret: "{base64.b64encode(PSK).decode()}"\n')
    return proc, port[0], client


def shell_round(listen, data, counter):
    """remote-stripe-shell fetches one stripe over TLS-PSK: every byte right."""
    i = counter[0] % STRIPES
    counter[0] += 1
    r = subprocess.run([harness.binary("remote-stripe-shell"), "--server-config", listen],
                       input=f"fetch_stripe {i}\ndump_stripe {i} 0 {MIB}\n",
                       capture_output=True, text=True, timeout=timeout(60))
    expect(r.returncode == 0, f"remote-stripe-shell exit {r.returncode}: {r.stderr}")
    want = f"FETCHED\n{data[i * MIB:(i + 1) * MIB].hex()}\n"
    expect(r.stdout == want, f"stripe {i}: wrong reply ({r.stdout[:80]!r}...; {r.stderr})")


def test_remote_server_flood():
    """1,000 connections (idle, ClientHello one byte at a time, SHUT_WR,
    reset) while remote-stripe-shell keeps fetching stripes over TLS-PSK;
    then the same flood with the descriptor limit cut to 256 under the
    running server: it refuses or pauses, never spins or dies, and serves
    again once the flood is gone."""
    with harness.scratch_dir() as tmp:
        disk = os.path.join(tmp, "disk.raw")
        harness.random_file(disk, STRIPES * MIB, 11)
        with open(disk, "rb") as f:
            data = f.read()
        proc, port, listen = remote_server(tmp, disk)
        try:
            counter = [0]
            shell_round(listen, data, counter)  # warm: buffers, TLS context
            fig = Figures("remote-stripe-server", proc.pid)
            hello = client_hello()

            def connect():
                s = socket.create_connection(("127.0.0.1", port), timeout=timeout(10))
                return s

            start = time.monotonic()
            with fig.sampler, GoodPeer(lambda: shell_round(listen, data, counter)) as good:
                flood = Flood(connect, hello)
                flood.open()
                expect(flood.connect_failures == 0,
                       f"{flood.connect_failures} connections failed below the limit")
                good.wait_rounds(good.rounds + 3, 120)
                # The handshake deadline (5 s) ends the slow ones, dribbling or not.
                harness.wait_for(lambda: flood.slow_closed == SLOW, timeout(30),
                                 "the server to end every slow handshake")
                good.wait_rounds(good.rounds + 1, 60)
                flood.close()
                good.finish()
            held = time.monotonic() - start
            expect(proc.alive(), "remote-stripe-server died:\n" + proc.log_text()[-3000:])
            fig.settle()
            shell_round(listen, data, counter)
            print(fig.line(connections=FLOOD, good_rounds=good.rounds,
                           seconds=f"{held:.1f}"), flush=True)

            # The descriptor limit cut under the running server: accept4
            # fails with EMFILE past it.
            soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (256, hard))
            fig2 = Figures("remote-stripe-server, 256 fds", proc.pid)
            with fig2.sampler:
                flood = Flood(connect, hello)
                flood.open()
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(2)
                cpu = cpu_seconds(proc.pid) - cpu0
                window = time.monotonic() - t0
                expect(proc.alive(), "remote-stripe-server died at the limit")
                # A server spinning on a readable listener would use a CPU.
                expect(cpu < window / 2, f"{cpu:.2f} s of CPU in {window:.2f} s at the limit")
                flood.close()
            fig2.settle()
            shell_round(listen, data, counter)
            log = proc.log_text()
            emfile = log.count("accepting connections failed: Too many open files")
            resumed = log.count("accepting connections again")
            # Once per burst: a burst ends when an accept succeeds again
            # (connections ending at their deadline make room for a while).
            expect(1 <= emfile <= resumed + 1,
                   f"EMFILE logged {emfile} times for {resumed} resumptions")
            expect(emfile == 0 or "accepting connections again" in log,
                   "accepting did not resume")
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
            print(fig2.line(connections=FLOOD, emfile_logged=emfile, resumed=resumed,
                            cpu_s=f"{cpu:.2f}/{window:.2f}"), flush=True)
            status = proc.stop()
            expect(status == 0, f"exit status {status}:\n{proc.log_text()[-3000:]}")
        except BaseException:
            print("--- remote-stripe-server log ---\n" + proc.log_text()[-6000:], flush=True)
            raise
        finally:
            proc.close()


# ---- vhost-backend: the RPC socket ----

RPC_RETRIES = [0]


def rpc_round(path):
    """One `version` request. A Unix socket whose listen backlog is full
    (the flood filled it) fails a non-blocking connect with EAGAIN where a
    blocking one would wait; and a client slower to send its request than
    the flood is to connect 64 more may be the one idle longest, and be
    closed (EPIPE, reset or EOF): it tries again, as a monitor would, within
    the timeout. Retries are counted and reported."""
    deadline = time.monotonic() + timeout(10)
    while True:
        try:
            reply = harness.rpc(path, "version", timeout=timeout(10))
            break
        except (BlockingIOError, BrokenPipeError, ConnectionResetError,
                json.JSONDecodeError):
            RPC_RETRIES[0] += 1
            expect(time.monotonic() < deadline, "no RPC answer within the timeout")
            time.sleep(0.01)
    expect(reply == {"version": "0.4.0"}, f"RPC reply {reply}")


def test_rpc_flood():
    """1,000 connections to the RPC socket (idle, a request one byte at a
    time that never ends, SHUT_WR, reset) while a client keeps asking."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 16 * MIB)
        rpc = os.path.join(tmp, "rpc.sock")
        be = harness.VhostBackend(tmp, disk, rpc_socket_path=rpc)
        with started(be):
            rpc_round(rpc)
            fig = Figures("vhost-backend RPC", be.process.pid)

            def connect():
                # A full backlog: EAGAIN, where a blocking connect would wait.
                deadline = time.monotonic() + timeout(10)
                while True:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(timeout(10))
                    try:
                        s.connect(rpc)
                        return s
                    except BlockingIOError:
                        s.close()
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.001)

            start = time.monotonic()
            with fig.sampler, GoodPeer(lambda: rpc_round(rpc)) as good:
                flood = Flood(connect, b'{"command": "version"')
                flood.open()
                expect(flood.connect_failures == 0,
                       f"{flood.connect_failures} RPC connections failed")
                good.wait_rounds(good.rounds + 20, 60)
                time.sleep(1)
                good.wait_rounds(good.rounds + 20, 60)
                flood.close()
                good.finish()
            held = time.monotonic() - start
            expect(be.process.alive(), "vhost-backend died")
            fig.settle()
            rpc_round(rpc)
            log = be.process.log_text()
            expect(log.count("each new connection replaces the one idle longest") >= 1,
                   "no word of the client limit")
            print(fig.line(connections=FLOOD, good_rounds=good.rounds, retries=RPC_RETRIES[0],
                           seconds=f"{held:.1f}"), flush=True)
            expect(be.stop() == 0, "vhost-backend did not exit 0")


# ---- vhost-backend: vhost-user ----

def fresh_ring(ram):
    """Queue 0 at the start of `ram`, wiped: a ring left by an earlier
    front end would make its indexes look like requests."""
    ram.write(0, bytes(0x20000))
    return vp.SplitRing(ram, 0, 0)


def verified_io(sock_path, ram, seed):
    """A good front end: handshake, a ring, a write and its read back
    compared, on the disk too. Returns the disk offset written."""
    client = vp.VhostUserClient(sock_path)
    try:
        vp.handshake(client, ram, 1)
        ring = fresh_ring(ram)
        try:
            ring.setup(client)
            pattern = random.Random(seed).randbytes(4096)
            sector = 8 * (seed % 1000)
            status, _ = ring.request(vp.VIRTIO_BLK_T_OUT, sector, 4096, 0, pattern)
            expect(status == 0, f"write status {status}")
            status, got = ring.request(vp.VIRTIO_BLK_T_IN, sector, 4096, vp.DESC_F_WRITE)
            expect(status == 0 and got == pattern, "read back differs")
            return sector * 512, pattern
        finally:
            ring.close()
    finally:
        client.close()


def check_on_disk(disk, offset, pattern):
    with open(disk, "rb") as f:
        f.seek(offset)
        expect(f.read(len(pattern)) == pattern, "the disk does not hold what was written")


def one_cycle(sock_path, i, ram):
    """One short-lived front end; which kind depends on i."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout(10))
    s.connect(sock_path)
    kind = i % 5
    if kind == 1:      # a few handshake messages, then gone
        s.sendall(struct.pack("<III", vp.SET_OWNER, vp.VERSION, 0) +
                  struct.pack("<III", vp.GET_FEATURES, vp.VERSION, 0))
        expect(len(s.recv(20)) > 0, "no GET_FEATURES reply")
    elif kind == 2:    # memory shared, then gone (mappings made and dropped)
        client = vp.VhostUserClient.__new__(vp.VhostUserClient)
        client.sock = s
        client.send(vp.SET_OWNER)
        client.set_u64(vp.SET_PROTOCOL_FEATURES, vp.PROTOCOL_FEATURES, need_reply=False)
        client.set_u64(vp.SET_FEATURES, vp.F_VERSION_1 | vp.F_PROTOCOL_FEATURES)
        region = struct.pack("<QQQQQ", 0, vp.RAM_GPA, ram.size, vp.RAM_USER_ADDR, 0)
        client.send(vp.ADD_MEM_REG, region, fds=[ram.fd], flags=vp.VERSION | vp.NEED_REPLY)
        expect(struct.unpack("<Q", client.reply(vp.ADD_MEM_REG))[0] == 0, "ADD_MEM_REG")
    elif kind == 3:    # half a header, then a reset
        s.sendall(struct.pack("<I", vp.GET_FEATURES))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif kind == 4:    # a header promising a payload that never comes
        s.sendall(struct.pack("<III", vp.SET_FEATURES, vp.VERSION, 8))
    s.close()          # kind 0: connect and close at once


def test_vhost_user_cycles():
    """10,000 connect/disconnect cycles (some with handshake messages or
    shared memory, some abrupt), then a good front end does verified I/O."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), vp.DISK_SIZE)
        ram = vp.GuestRam()
        be = harness.VhostBackend(tmp, disk)
        with started(be, log_level="warn"):  # "info" logs two lines a cycle
            offset, pattern = verified_io(be.socket, ram, 1)  # warm
            fig = Figures("vhost-backend vhost-user", be.process.pid)
            start = time.monotonic()
            with fig.sampler:
                for i in range(CYCLES):
                    one_cycle(be.socket, i, ram)
                    if i % 1000 == 999:
                        expect(be.process.alive(), f"vhost-backend died after {i + 1} cycles")
            held = time.monotonic() - start
            offset, pattern = verified_io(be.socket, ram, 2)
            check_on_disk(disk, offset, pattern)
            fig.settle()
            print(fig.line(cycles=CYCLES, seconds=f"{held:.1f}"), flush=True)
            expect(be.stop() == 0, "vhost-backend did not exit 0")
        ram.close()


# ---- vhost-backend: a shrunk memfd ----

RINGS_GPA = vp.RAM_GPA
DATA_GPA = vp.RAM_GPA + vp.RAM_SIZE
DATA_UVA = vp.RAM_USER_ADDR + vp.RAM_SIZE


def add_region(client, gpa, size, uva, fd):
    region = struct.pack("<QQQQQ", 0, gpa, size, uva, 0)
    client.send(vp.ADD_MEM_REG, region, fds=[fd], flags=vp.VERSION | vp.NEED_REPLY)
    expect(struct.unpack("<Q", client.reply(vp.ADD_MEM_REG))[0] == 0, "ADD_MEM_REG")


def test_memfd_shrunk_under_the_backend():
    """Rings in one memfd, request headers and data in another; the front
    end truncates the second to 0 and submits a request. Without the guard
    the worker's read of the header raises SIGBUS and kills vhost-backend;
    with it the connection ends, the process lives and the next front end
    is served. A memfd that allows seals is sealed: it cannot be shrunk."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), vp.DISK_SIZE)
        ram = vp.GuestRam()
        be = harness.VhostBackend(tmp, disk)
        with started(be):
            verified_io(be.socket, ram, 3)
            fig = Figures("vhost-backend memfd", be.process.pid)
            with fig.sampler:
                # A sealable memfd is sealed against shrinking once shared.
                sealable = os.memfd_create("sealable", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
                os.ftruncate(sealable, vp.RAM_SIZE)
                client = vp.VhostUserClient(be.socket)
                vp.handshake(client, ram, 1)
                add_region(client, DATA_GPA, vp.RAM_SIZE, DATA_UVA, sealable)
                try:
                    os.ftruncate(sealable, 0)
                    raise AssertionError("a shared sealable memfd could be shrunk")
                except PermissionError:
                    pass
                client.close()
                os.close(sealable)

                # One that cannot be sealed: truncated, then used.
                data_fd = os.memfd_create("data")  # no MFD_ALLOW_SEALING
                os.ftruncate(data_fd, vp.RAM_SIZE)
                data_map = mmap.mmap(data_fd, vp.RAM_SIZE)
                client = vp.VhostUserClient(be.socket)
                vp.handshake(client, ram, 1)
                add_region(client, DATA_GPA, vp.RAM_SIZE, DATA_UVA, data_fd)
                ring = fresh_ring(ram)
                ring.setup(client)
                # First a request through the data region while it is whole.
                header, buf, status = 0, 0x1000, 0x3000
                data_map[header:header + 16] = struct.pack("<IIQ", vp.VIRTIO_BLK_T_OUT, 0, 64)
                data_map[buf:buf + 4096] = bytes([0x5A]) * 4096
                data_map[status] = 0xFF

                def submit():
                    struct.pack_into("<QIHH", ram.map, ring.desc, DATA_GPA + header, 16,
                                     vp.DESC_F_NEXT, 1)
                    struct.pack_into("<QIHH", ram.map, ring.desc + 16, DATA_GPA + buf, 4096,
                                     vp.DESC_F_NEXT, 2)
                    struct.pack_into("<QIHH", ram.map, ring.desc + 32, DATA_GPA + status, 1,
                                     vp.DESC_F_WRITE, 0)
                    struct.pack_into("<H", ram.map, ring.avail + 4 +
                                     2 * (ring.next_avail % ring.size), 0)
                    ring.next_avail = (ring.next_avail + 1) & 0xFFFF
                    struct.pack_into("<H", ram.map, ring.avail + 2, ring.next_avail)
                    os.eventfd_write(ring.kick, 1)

                submit()
                harness.wait_for(lambda: ram.u16(ring.used + 2) == 1, timeout(10),
                                 "the first request's used entry")
                expect(data_map[status] == 0, f"first request status {data_map[status]}")
                data_map.close()
                os.ftruncate(data_fd, 0)
                submit()  # the backend reads a header that is no longer there
                expect(client.closed_by_backend(timeout(10)),
                       "the connection outlived its broken memory")
                expect(be.process.alive(), "vhost-backend died of SIGBUS:\n" +
                       be.process.log_text()[-3000:])
                client.close()
                ring.close()
                os.close(data_fd)
                harness.wait_for(lambda: "shrank a shared memory file" in be.process.log_text(),
                                 timeout(10), "word of the shrunk file in the log")
                offset, pattern = verified_io(be.socket, ram, 4)
                check_on_disk(disk, offset, pattern)
            fig.settle()
            print(fig.line(), flush=True)
            expect(be.stop() == 0, "vhost-backend did not exit 0:\n" +
                   be.process.log_text()[-3000:])
        ram.close()


if __name__ == "__main__":
    raise_own_nofile()
    harness.main([
        test_memfd_shrunk_under_the_backend,
        test_rpc_flood,
        test_remote_server_flood,
        test_vhost_user_cycles,
    ])
