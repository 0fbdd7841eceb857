"""Shared helpers for integration and guest tests.

Every test starts the servers it needs inside a temporary folder and stops
them by pid whatever happens (context managers). Every wait has a timeout so a
broken backend fails the test instead of hanging CI."""

import base64
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD_DIR = os.environ.get("UBIBLK_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")


def binary(name):
    path = os.path.join(BUILD_DIR, "src", "bin", name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not built (set UBIBLK_BUILD_DIR)")
    return path


def built_with_asan():
    """True when the build under test has AddressSanitizer (its binaries
    link libasan): slower, and its quarantine keeps freed memory."""
    with open(binary("vhost-backend"), "rb") as f:
        return b"libasan" in f.read()


def scratch_dir(prefix="ubiblk-test-"):
    """A temporary folder on a real filesystem (O_DIRECT does not work on
    tmpfs); honours TMPDIR, defaults to the build folder."""
    base = os.environ.get("TMPDIR") or BUILD_DIR
    os.makedirs(base, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)


_ports_given = set()  # free_port() never hands out a port twice in one process
_ports_lock = threading.Lock()  # tests that run several servers from threads


def free_port():
    """A TCP port nothing listens on right now on 127.0.0.1, for a server
    the caller starts next. Picked at random below the kernel's ephemeral
    range, so that no outgoing connection (of this test or of one running
    beside it) can take it before the server binds it; a port that is in
    use, or that this process was already given, is passed over."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low = 10000 if ephemeral_low > 12000 else 1024
    high = max(low + 1000, ephemeral_low - 1)
    with _ports_lock:
        for _ in range(200):
            port = random.randint(low, high)
            if port in _ports_given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_given.add(port)
            return port
    raise RuntimeError(f"no free TCP port in {low}-{high} on 127.0.0.1")


def make_disk(path, size_bytes):
    """A sparse disk file."""
    with open(path, "wb") as f:
        f.truncate(size_bytes)
    return path


def write_config(path, fields):
    """Write a YAML device config from a dict (scalars and lists only)."""
    lines = []
    for key, value in fields.items():
        if isinstance(value, bool):
            lines.append(f"{key}: {'true' if value else 'false'}")
        elif isinstance(value, dict):
            lines.append(f"{key}: {json.dumps(value)}")  # a YAML flow mapping
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key}: [{', '.join(str(v) for v in value)}]")
        elif isinstance(value, int):
            lines.append(f"{key}: {value}")
        else:
            lines.append(f"{key}: {json.dumps(str(value))}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def random_xts_keys():
    """Two different random 32-byte AES-XTS keys: key1 (data), key2 (tweak)."""
    while True:
        k1, k2 = os.urandom(32), os.urandom(32)
        if k1 != k2:
            return k1, k2


def encryption_key_field(k1, k2):
    """The config's encryption_key as write_config prints lists: quoted base64."""
    return [json.dumps(base64.b64encode(k).decode()) for k in (k1, k2)]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def socket_accepts(path):
    """True when something listens on the Unix socket `path` (a connect()
    succeeds; the connection is closed at once)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_until_accepting(path, process, timeout, what):
    """Wait until `process` (a Process) accepts connections on the Unix
    socket `path`: True once a connect() succeeds, False if the process
    exited first, TimeoutError after `timeout` seconds.

    The socket FILE is no readiness signal: it exists between the server's
    bind() and listen(), when a connect() is still refused, and a server
    killed with SIGKILL leaves its file behind for the next one to replace.
    Every test and script that starts a server waits here."""
    wait_for(lambda: socket_accepts(path) or not process.alive(), timeout, what)
    return process.alive()


def wait_for_writes(rpc_path, num_queues, writer, timeout=60):
    """Wait until the backend behind `rpc_path` has completed writes on each
    of its first `num_queues` queues: the front end `writer` (a Popen) is
    past its vhost-user set-up and its I/O flows. A test that kills the
    backend "while writes flow" starts its clock here: a front end killed
    during set-up fails with a set-up error (ubiblk-bench exit 2), which
    is not the event under test."""
    def writing():
        if writer.poll() is not None:
            err = writer.stderr.read().decode(errors="replace") if writer.stderr else ""
            raise RuntimeError(f"the writer exited ({writer.returncode}) before "
                               f"writing: {err[-800:]}")
        try:
            queues = rpc(rpc_path, "stats")["stats"]["queues"][:num_queues]
        except OSError:
            return False  # the RPC socket is not listening yet
        return len(queues) == num_queues and all(q["write_ops"] > 0 for q in queues)
    wait_for(writing, timeout, "writes on every queue")


def thread_states(pid):
    """Where each thread of a process is, from /proc: name, state, the
    kernel function it waits in, its system call, and its pending and
    blocked signal masks. Printed when a process ignores a stop signal, so
    such a failure says where the process was without a debugger."""
    lines = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError as e:
        return f"(cannot list threads: {e})"
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        fields = {}
        for name in ("comm", "wchan", "syscall"):
            try:
                with open(f"{base}/{name}") as f:
                    fields[name] = f.read().strip()
            except OSError as e:
                fields[name] = f"? ({e.strerror})"
        try:
            with open(f"{base}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            status = {}
        sig = " ".join(f"{k}={status[k].strip()}" for k in ("State", "SigPnd", "ShdPnd",
                                                           "SigBlk") if k in status)
        lines.append(f"  {tid} {fields['comm']}: wchan={fields['wchan']} "
                     f"syscall={fields['syscall'].split(' ')[0]} {sig}")
    return "\n".join(lines)


class Process:
    """A child process stopped by pid on exit: SIGTERM, then SIGKILL."""

    def __init__(self, argv, log_path=None, env=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=env,
                                     start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Send sig and wait; returns the exit status (negative = signal)."""
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                threads = thread_states(self.proc.pid)
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                raise TimeoutError(f"{self.argv[0]} ignored signal {sig} for {timeout}s; "
                                   f"its threads then:\n{threads}")
        return self.proc.returncode

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self):
        self.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


class VhostBackend:
    """vhost-backend serving `disk` with the given extra config fields.

    with VhostBackend(tmp, disk, num_queues=4) as be:
        be.socket  # path to connect to
    """

    def __init__(self, workdir, disk, extra_args=(), start_timeout=20, **fields):
        self.workdir = workdir
        self.socket = os.path.join(workdir, "vhost.sock")
        self.config = os.path.join(workdir, "config.yaml")
        cfg = {"path": disk, "socket": self.socket}
        cfg.update(fields)
        write_config(self.config, cfg)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.process = None

    def start(self):
        log = os.path.join(self.workdir, "vhost-backend.log")
        env = dict(os.environ)
        env.setdefault("UBIBLK_LOG", "info")
        self.process = Process([binary("vhost-backend"), "-f", self.config] + self.extra_args,
                               log_path=log, env=env)
        try:
            accepting = wait_until_accepting(self.socket, self.process, self.start_timeout,
                                             "vhost-backend to accept connections")
        except TimeoutError:
            self.process.close()
            raise
        if not accepting:
            raise RuntimeError("vhost-backend exited at start:\n" + self.process.log_text())
        return self

    def stop(self, sig=signal.SIGTERM):
        return self.process.stop(sig)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if self.process:
            self.process.close()
            if exc_type is not None:
                # Keep the evidence: the temp folder is about to be removed.
                print("--- vhost-backend log ---\n" + self.process.log_text(), flush=True)


class QemuStorageDaemon:
    """qemu-storage-daemon exporting `disk` over vhost-user-blk: the peer to
    compare vhost-backend against, with the same client. No device_id (it
    has no serial setting). Discards punch holes in the file.

    with QemuStorageDaemon(tmp, disk, num_queues=2) as qsd:
        qsd.socket
    """

    def __init__(self, workdir, disk, num_queues=1, start_timeout=20, aio="io_uring"):
        self.workdir = workdir
        self.disk = disk
        self.socket = os.path.join(workdir, "qsd.sock")
        self.num_queues = num_queues
        self.start_timeout = start_timeout
        self.aio = aio
        self.process = None

    def argv(self):
        return ["qemu-storage-daemon",
                "--blockdev", f"driver=file,node-name=file,filename={self.disk},"
                f"cache.direct=on,aio={self.aio},discard=unmap",
                "--blockdev", "driver=raw,node-name=disk,file=file,discard=unmap",
                "--export", "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,"
                f"addr.path={self.socket},writable=on,num-queues={self.num_queues}"]

    def start(self):
        log = os.path.join(self.workdir, "qemu-storage-daemon.log")
        self.process = Process(self.argv(), log_path=log)
        try:
            accepting = wait_until_accepting(self.socket, self.process, self.start_timeout,
                                             "qemu-storage-daemon to accept connections")
        except TimeoutError:
            self.process.close()
            raise
        if not accepting:
            raise RuntimeError("qemu-storage-daemon exited at start:\n" + self.process.log_text())
        return self

    def stop(self, sig=signal.SIGTERM):
        return self.process.stop(sig)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.process:
            self.process.close()


XTS_ENGINES = ("vaes-avx512", "gcrypt", "openssl")


def xts_engines_here():
    """The AES-XTS engines this machine runs, in order of preference, from
    `xts --benchmark`'s table (openssl always); prints the ones it cannot
    run, so a test run says what it did not test."""
    proc = subprocess.run([binary("xts"), "--benchmark", "--seconds", "0.01"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"xts --benchmark: exit {proc.returncode}: {proc.stderr}")
    here = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if "not on this machine:" in line:
            print(f"engine {words[0]} not tested here: {line.split(': ', 1)[1]}")
        elif words and words[0] in XTS_ENGINES and words[0] not in here:
            here.append(words[0])
    if "openssl" not in here:
        raise AssertionError(f"openssl missing from xts --benchmark: {proc.stdout!r}")
    return here


@contextlib.contextmanager
def xts_engine(name):
    """UBIBLK_XTS_ENGINE=name for the processes started inside."""
    old = os.environ.get("UBIBLK_XTS_ENGINE")
    os.environ["UBIBLK_XTS_ENGINE"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["UBIBLK_XTS_ENGINE"]
        else:
            os.environ["UBIBLK_XTS_ENGINE"] = old


def run_bench(args, timeout=300):
    """Run ubiblk-bench with --json; returns (exit code, parsed JSON or None, stderr)."""
    argv = [binary("ubiblk-bench")] + list(args) + ["--json"]
    proc = subprocess.run(argv, capture_output=True, timeout=timeout)
    try:
        result = json.loads(proc.stdout.decode())
    except ValueError:
        result = None
    return proc.returncode, result, proc.stderr.decode(errors="replace")


def main(tests):
    """Run a list of test functions; print one line per test and the summary
    line; exit non-zero if any failed."""
    passed = failed = 0
    for test in tests:
        start = time.monotonic()
        try:
            test()
            passed += 1
            print(f"ok   {test.__name__} ({time.monotonic() - start:.1f}s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print(f"FAIL {test.__name__}: {type(e).__name__}: {e}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def rpc(path, command, timeout=10):
    """Send one RPC command to the backend's RPC socket; returns the reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps({"command": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data)
    finally:
        s.close()


def init_metadata(config, *extra, check=True):
    """Run init-metadata; returns the CompletedProcess."""
    proc = subprocess.run([binary("init-metadata"), "-f", config] + list(extra),
                          capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"init-metadata failed: {proc.stderr.decode(errors='replace')}")
    return proc


def dump_metadata(config, *extra):
    proc = subprocess.run([binary("dump-metadata"), "-f", config] + list(extra),
                          capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"dump-metadata failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def stripes_text(stripes):
    """{1, 2, 3, 7} -> '1-3, 7' (dump-metadata's notation; parse_stripe_list
    reads it back)."""
    out, run = [], []
    for s in sorted(stripes):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [s]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out) or "none"


def parse_stripe_list(text):
    """'0-3, 7, 9' -> {0, 1, 2, 3, 7, 9}"""
    result = set()
    for item in filter(None, (x.strip() for x in text.split(","))):
        if "-" in item:
            a, b = item.split("-")
            result.update(range(int(a), int(b) + 1))
        else:
            result.add(int(item))
    return result


def random_file(path, size, seed):
    import random
    rng = random.Random(seed)
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            f.write(rng.randbytes(n))
            remaining -= n
        # Out of the page cache, so reads of it cost what they would on a
        # fresh machine.
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def metadata_stripes(config):
    """dump-metadata's stripe lists as sets: {"fetched": {...}, "written":
    {...}, "has-source": {...}} (also while the backend runs)."""
    out = {}
    for line in dump_metadata(config).splitlines():
        for key in ("fetched", "written", "has-source"):
            prefix = f"{key} stripes:"
            if line.startswith(prefix):
                out[key] = parse_stripe_list(line[len(prefix):])
    return out


def lazy_status(rpc_path, timeout=10):
    """The RPC status reply's stripe counters: {"fetched", "source", "total"}."""
    return rpc(rpc_path, "status", timeout=timeout)["status"]["stripes"]
