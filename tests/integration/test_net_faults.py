"""Randomized network faults (tests/integration/tcp_fault_proxy.py) between
our programs and their peers, UBIBLK_FAULT_RUNS runs (default 10) from one
seed (UBIBLK_FAULT_SEED, printed; set it to replay a run's choices),
UBIBLK_FAULT_PARALLEL (default 3) at a time.

Each run picks a path, a fault mix (latency, bandwidth cap, reset, truncate,
stall, garbage bytes: per connection and direction) and a small disk (8-32
MiB, stripes of 128 KiB to 2 MiB; a harsh run, where every attempt fails,
at most 8 MiB in stripes of 512 KiB or more):

- remote: vhost-backend (autofetch, TLS-PSK) <- proxy <- remote-stripe-server;
- archive-source: vhost-backend (autofetch) <- proxy <- Swift's S3 API,
  fetching an archive the `archive` tool wrote into Swift beforehand;
- archive-tool: `archive` -> proxy -> Swift's S3 API.

For the back end, the proxy is clean while init-metadata runs and the back
end starts, then armed. The run must end (every source stripe fetched or
Failed) within the configured timeouts plus a margin, and then:
- every Failed stripe has the fetcher's log line, and the source's own line
  naming the cause; a guest read of it gets an I/O error at once;
- the metadata's fetched stripes are exactly the RPC's count, each equal to
  the source in the disk file, and every other stripe still zeros in the
  file (nothing wrong written); a run without Failed stripes is the source;
- while it ran, the back end's fd count and VmRSS stayed under a bound; once
  the faults stop its non-TCP fds return to their baseline exactly and its
  TCP sockets to at most the pool's size; SIGTERM ends it with status 0.
For the tool: exit 0 and the archive decodes to the disk, or exit 1 with
one error line, and a rerun without faults completes and decodes right.

Swift starts once for the file (about 15 s)."""

import concurrent.futures
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "archive-golden"))
import harness  # noqa: E402
import make_golden  # noqa: E402
import swift  # noqa: E402
import test_archive_tool as tool  # noqa: E402
from tcp_fault_proxy import KINDS, FaultMix, TcpFaultProxy  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
MULT = float(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1"))
PATHS = ("remote", "archive-source", "archive-tool")
BUCKET = "netfaults"
IDENTITY = "vm-faults"
PSK = "bmV0LWZhdWx0cy10ZXN0LXNlY3JldC0zMi1ieXRlcyE="  # 32 bytes, base64
FAILED_STRIPE = re.compile(r"fetch: stripe (\d+) failed \(([^)]*)\) after \d+ retries")
# Each stripe: 4 attempts; a stalled attempt ends after the source's timeout
# (remote: 20 s per started MiB; S3: 20 s per attempt, max_attempts of them,
# backoff up to 20 s). A run longer than this bound is a hang.
RUN_BOUND = 420
# Runs at a time (UBIBLK_FAULT_PARALLEL, default 3).
PARALLEL = max(1, int(os.environ.get("UBIBLK_FAULT_PARALLEL", "3")))
PRINT_LOCK = threading.Lock()

SWIFT = None
WORK = None


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- what the back end holds ----

def unix_inodes(pid):
    inodes = set()
    try:
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            for line in f:
                inodes.add(line.split()[6])
    except OSError:
        pass
    return inodes


def fd_census(pid):
    """(non-TCP fds, TCP sockets) of a process.

    A socket counts as TCP unless it is a Unix socket: a TCP socket whose
    peer reset it is in state CLOSE, which /proc/net/tcp no longer lists,
    yet the fd stays open in libcurl's connection cache until the
    connection is next looked at. Counting it as a non-TCP fd made one ASan
    run report a leak that was a dead pooled connection."""
    unix = unix_inodes(pid)
    other = sockets = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:[") and link[8:-1] not in unix:
            sockets += 1
        else:
            other += 1
    return other, sockets


def settled_census(pid):
    """fd_census once the non-TCP count has held for 0.5 s (at most 10 s).

    The start-up probe's vhost-user connection makes vhost-backend build the
    next connection's control (an eventfd, then a queue worker's file,
    rings and eventfd) after start() returned: a census taken in between
    counted the first fd of it and not the rest."""
    deadline = time.monotonic() + 10 * MULT
    last, since = fd_census(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = fd_census(pid)
        if now[0] != last[0]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return now
    return last


def fd_links(pid):
    """What each fd is, for a failure message."""
    links = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            links.append(f"{fd}:{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return " ".join(links)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KiB
    return 0


def asan_factor():
    """4 for a build with AddressSanitizer (its quarantine keeps freed
    memory, up to 256 MiB, and its shadow memory counts too), else 1."""
    return 4 if harness.built_with_asan() else 1


class Monitor:
    """Samples a process's fd count and VmRSS every 50 ms; keeps the peaks."""

    def __init__(self, pid):
        self.pid = pid
        self.max_fds = self.max_rss = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.wait(0.05):
            try:
                other, sockets = fd_census(self.pid)
                self.max_fds = max(self.max_fds, other + sockets)
                self.max_rss = max(self.max_rss, rss_bytes(self.pid))
            except (OSError, StopIteration):
                return  # the process ended

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=10)


# ---- the data ----

def make_data(rng, size, stripe):
    """Random stripes, with zero and repeated ones (objects several stripes
    share in an unencrypted archive)."""
    out = bytearray()
    for i in range(size // stripe):
        r = rng.random()
        if r < 0.15:
            out += bytes(stripe)
        elif r < 0.25 and i:
            j = rng.randrange(i)
            out += out[j * stripe:(j + 1) * stripe]
        else:
            out += rng.randbytes(stripe)
    return bytes(out)


def write_device(work, name, data, shift, **fields):
    """A disk holding data with every stripe WRITTEN in its metadata: what
    remote-stripe-server serves and what `archive` archives."""
    stripes = len(data) // (512 << shift)
    disk = os.path.join(work, name + ".raw")
    with open(disk, "wb") as f:
        f.write(data)
    meta = os.path.join(work, name + ".meta")
    with open(meta, "wb") as f:
        f.write(tool.metadata_bytes([tool.WRITTEN] * stripes, shift))
    config = harness.write_config(os.path.join(work, name + ".yaml"),
                                  {"path": disk, "metadata_path": meta, **fields})
    return config


def s3_fields(prefix, endpoint, **extra):
    b64 = make_golden.base64.b64encode
    key, iv, aad = (b64(v).decode() for v in tool.ARCHIVE_KEK)
    return {"type": "s3", "bucket": BUCKET, "prefix": prefix, "endpoint": endpoint,
            "region": SWIFT.region,
            "credentials": {"access_key_id": b64(SWIFT.access_key.encode()).decode(),
                            "secret_access_key": b64(SWIFT.secret_key.encode()).decode()},
            "archive_kek": {"method": "aes256-gcm", "key": key, "init_vector": iv,
                            "auth_data": aad}, **extra}


def target_file(work, name, fields):
    path = os.path.join(work, name + ".target.yaml")
    with open(path, "w") as f:
        json.dump(fields, f)
    return path


def decode_prefix(work, prefix):
    """The archive under prefix/, downloaded from Swift and decoded by the
    independent Python reader: {stripe: plaintext}, and its metadata."""
    root = os.path.join(work, "dl-" + prefix)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "data"))
    for key in SWIFT.list_keys(BUCKET, prefix + "/"):
        path = os.path.join(root, key[len(prefix) + 1:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(SWIFT.get_object(BUCKET, key))
    meta, stripes = make_golden.decode(root, tool.ARCHIVE_KEK)
    shutil.rmtree(root)
    return meta, stripes


def expect_archive(work, prefix, data, stripe, what):
    meta, stripes = decode_prefix(work, prefix)
    expect(meta["stripe_sector_count"] * 512 == stripe, f"{what}: {meta}")
    count = len(data) // stripe
    expect(sorted(stripes) == list(range(count)), f"{what}: stripes {sorted(stripes)}")
    for i in range(count):
        expect(stripes[i] == data[i * stripe:(i + 1) * stripe], f"{what}: stripe {i} differs")


# ---- a run ----

class Run:
    def __init__(self, index, seed, path):
        self.index = index
        self.seed = seed
        self.rng = random.Random(seed)
        self.path = path
        self.work = os.path.join(WORK, f"run{index}")
        os.makedirs(self.work)
        self.shift = self.rng.choice([8, 9, 10, 11, 12])
        self.size = self.rng.choice([8, 16, 24, 32]) * MiB
        # One run in four is harsh: every connection gets a reset, truncation
        # or garbage within its first stripe, so retries run out and stripes
        # end Failed (or the tool gives up); the others are mild mixes.
        self.harsh = self.rng.random() < 0.25
        if self.harsh:
            # Every attempt then fails and the next waits out the re-dial
            # backoff (500 ms): at most 16 stripes, or a 256-stripe disk over
            # 2 connections takes 256 x 4 x ~1 s / 2, minutes of the suite
            # (32 stripes from Swift with 16 attempts each took 116 s).
            self.shift = max(self.shift, 10)
            self.size = min(self.size, 8 * MiB)
        self.stripe = 512 << self.shift
        self.data = make_data(self.rng, self.size, self.stripe)
        direction = "up" if path == "archive-tool" else "down"
        if self.harsh:
            kinds = self.rng.sample(["reset", "truncate", "garbage"], self.rng.randint(1, 2))
            self.mix = FaultMix(kinds, probability=1.0, data_direction=direction,
                                data_span=self.stripe, other_direction=0)
        else:
            kinds = self.rng.sample(KINDS, self.rng.randint(1, 3))
            self.mix = FaultMix(kinds, probability=self.rng.uniform(0.2, 0.6),
                                data_direction=direction,
                                data_span=3 * self.stripe + 64 * KiB, max_stalls=4)
        self.connections = self.rng.choice([2, 4, 8, 16])
        self.outcome = None
        self.detail = ""
        self.faults = {}  # what the proxy fired, by kind

    def describe(self):
        return (f"run {self.index} seed {self.seed} {self.path}: {self.size // MiB} MiB, "
                f"stripes {self.stripe // KiB} KiB, {self.connections} connections, "
                f"faults {'harsh ' if self.harsh else ''}{self.mix.describe()}")


def backend_for(run, stripe_source, rpc):
    disk = harness.make_disk(os.path.join(run.work, "disk.raw"), run.size)
    be = harness.VhostBackend(run.work, disk, metadata_path=os.path.join(run.work, "disk.meta"),
                              rpc_socket_path=rpc, copy_on_read=True, autofetch=True,
                              num_queues=1, queue_size=128, stripe_source=stripe_source,
                              start_timeout=RUN_BOUND * MULT)
    proc = harness.init_metadata(be.config, "-v", "-s", str(run.shift))
    stripes = run.size // run.stripe
    out = proc.stdout.decode()
    expect(f"{stripes} stripes of {run.stripe} bytes, {stripes} with a source" in out, out)
    return be, disk


def hydrate_under_faults(run, be, rpc, disk, proxy, cause_of):
    """Arms the proxy once the back end is up and checks everything the
    module docstring lists. cause_of(stripe, log) -> True when the source's
    own log line names why that stripe failed."""
    stripes = run.size // run.stripe
    proxy.arm(run.mix)
    start = time.monotonic()
    try:
        be.start()
    except RuntimeError:
        # A fault during start-up (the source is asked for its metadata):
        # the back end must refuse to start with a line naming the cause.
        log = be.process.log_text()
        errors = [line for line in log.splitlines() if line.startswith("[ERROR]")]
        expect(errors and "stripe_source" in errors[0], "no error line:\n" + log[-3000:])
        run.outcome = "failed-cleanly"
        run.detail = f"start-up, {time.monotonic() - start:.0f}s: {errors[0][:160]}"
        return
    pid = be.process.pid
    # Sampling starts at once: a run may be over before the count settles.
    with Monitor(pid) as mon:
        base_other, base_tcp = settled_census(pid)
        base_links = fd_links(pid)
        base_rss = rss_bytes(pid)
        # Every attempt on a dropped connection waits for a redial (backoff
        # from 500 ms): when every connection breaks, 4 attempts per stripe
        # are spread over the pool, about a second each on a busy host.
        bound = (RUN_BOUND + 4 * stripes / run.connections) * MULT
        while True:
            log = be.process.log_text()
            failed = {int(m.group(1)) for m in FAILED_STRIPE.finditer(log)}
            status = harness.lazy_status(rpc)
            if status["fetched"] + len(failed) >= stripes:
                break
            expect(be.process.alive(), "vhost-backend died:\n" + log[-3000:])
            if time.monotonic() - start > bound:
                raise AssertionError(f"hang: {status}, failed {sorted(failed)} after {bound}s; "
                                     f"proxy {proxy.counts}\n{log[-3000:]}")
            time.sleep(0.1)
        took = time.monotonic() - start
        proxy.disarm()
        # Failed stripes: the log says why, a guest read fails at once.
        for s in sorted(failed):
            causes = [m.group(2) for m in FAILED_STRIPE.finditer(log) if int(m.group(1)) == s]
            expect(causes and causes[0], f"stripe {s}: no cause in {causes}")
            expect(cause_of(s, log), f"stripe {s}: the source's log line is missing\n"
                   + log[-3000:])
        for s in sorted(failed)[:3]:
            bs = min(run.stripe, 64 * KiB)
            t0 = time.monotonic()
            code, _, err = harness.run_bench(
                ["--socket", be.socket, "--mode", "read", "--bs", str(bs), "--offset",
                 str(s * run.stripe), "--size", str(run.stripe), "--timeout", "30s"],
                timeout=120 * MULT)
            expect(code == 1, f"a read of Failed stripe {s}: exit {code}: {err[-1000:]}")
            expect(time.monotonic() - t0 < 20 * MULT, f"a read of Failed stripe {s} was slow")
        proxy.release_stalls()

        # Once the faults stop, the descriptors go back to the baseline.
        def settled():
            other, tcp = fd_census(pid)
            # Fewer non-TCP fds than at start: the source was closed after
            # the last stripe ("disconnected from the source").
            return other <= base_other and tcp <= run.connections
        try:
            harness.wait_for(settled, 60 * MULT, "the fd count to return to its baseline")
        except TimeoutError:
            raise AssertionError(f"fds {fd_census(pid)} vs baseline "
                                 f"{(base_other, base_tcp)}, pool {run.connections}; "
                                 f"now {fd_links(pid)}; at start {base_links}") from None
    max_fds = base_other + 2 * run.connections + 16
    expect(mon.max_fds <= max_fds, f"{mon.max_fds} fds during the run (bound {max_fds})")
    max_rss = (base_rss + 64 * MiB + 3 * run.connections * run.stripe) * asan_factor()
    expect(mon.max_rss <= max_rss,
           f"VmRSS {mon.max_rss // MiB} MiB during the run (bound {max_rss // MiB} MiB)")
    status = harness.lazy_status(rpc)
    given_up = harness.rpc(rpc, "stats")["stats"]["fetch"]["stripes_failed"]
    expect(given_up == len(failed), f"RPC stripes_failed {given_up}, log {sorted(failed)}")
    code = be.stop()
    expect(code == 0, f"vhost-backend exit status {code}:\n{be.process.log_text()[-3000:]}")
    fetched = harness.metadata_stripes(be.config).get("fetched", set())
    expect(len(fetched) == status["fetched"], f"metadata {len(fetched)} fetched, RPC {status}")
    expect(not fetched & failed, f"stripes both fetched and Failed: {fetched & failed}")
    with open(disk, "rb") as f:
        stored = f.read()
    zeros = bytes(run.stripe)
    for i in range(stripes):
        piece = stored[i * run.stripe:(i + 1) * run.stripe]
        if i in fetched:
            expect(piece == run.data[i * run.stripe:(i + 1) * run.stripe],
                   f"fetched stripe {i} differs from the source")
        else:
            expect(piece == zeros, f"stripe {i} (not fetched) was written")
    if not failed:
        expect(len(fetched) == stripes, f"{len(fetched)} of {stripes} fetched, none Failed")
    run.outcome = "completed" if not failed else "failed-cleanly"
    run.detail = (f"{len(fetched)}/{stripes} fetched, {len(failed)} Failed, {took:.0f}s, "
                  f"peak {mon.max_fds} fds, {mon.max_rss // MiB} MiB RSS")


def run_remote(run):
    server_config = write_device(run.work, "server", run.data, run.shift)
    port = harness.free_port()
    listen = os.path.join(run.work, "listen.yaml")
    with open(listen, "w") as f:
        f.write(f'address: "127.0.0.1:{port}"\npsk_identity: "{IDENTITY}"\n'
                f'psk_secret: "{PSK}"\n')
    server = harness.Process([harness.binary("remote-stripe-server"), "-f", server_config,
                              "--listen-config", listen],
                             log_path=os.path.join(run.work, "server.log"),
                             env=dict(os.environ, UBIBLK_LOG="info"))
    try:
        harness.wait_for(lambda: "listening on" in server.log_text() or not server.alive(),
                         30 * MULT, "remote-stripe-server to listen")
        expect(server.alive(), "the server exited:\n" + server.log_text())
        with TcpFaultProxy("127.0.0.1", port, seed=run.seed) as proxy:
            rpc = os.path.join(run.work, "rpc.sock")
            source = {"source": "remote", "address": proxy.address, "psk_identity": IDENTITY,
                      "psk_secret": PSK, "connections": run.connections}
            be, disk = backend_for(run, source, rpc)
            try:
                hydrate_under_faults(run, be, rpc, disk, proxy,
                                     lambda s, log: f"remote {proxy.address}" in log)
            finally:
                be.process.close()
            run.faults = proxy.fault_counts()
        expect(server.alive(), "the server died:\n" + server.log_text()[-3000:])
        expect(server.stop() == 0, "server exit status")
    finally:
        server.close()


def run_archive_source(run):
    prefix = f"source-{run.index}-{run.seed}"
    device = write_device(run.work, "dev", run.data, run.shift, copy_on_read=True,
                          track_written=True)
    compress, encrypt = run.rng.random() < 0.5, run.rng.random() < 0.5
    target = target_file(run.work, "direct", s3_fields(prefix, SWIFT.endpoint))
    tool.run_archive("-f", device, "--target-config", target, *(["-c"] if compress else []),
                     *(["-e"] if encrypt else []), check=0)
    with TcpFaultProxy("127.0.0.1", SWIFT.ports["proxy"], seed=run.seed) as proxy:
        rpc = os.path.join(run.work, "rpc.sock")
        source = {"source": "archive",
                  **s3_fields(prefix, f"http://{proxy.address}", connections=run.connections,
                              max_attempts=run.rng.choice([2, 3, 4]))}
        be, disk = backend_for(run, source, rpc)
        try:
            hydrate_under_faults(run, be, rpc, disk, proxy,
                                 lambda s, log: f"archive source: stripe {s} failed: " in log)
        finally:
            be.process.close()
        run.faults = proxy.fault_counts()


def run_archive_tool(run):
    prefix = f"tool-{run.index}-{run.seed}"
    device = write_device(run.work, "dev", run.data, run.shift, copy_on_read=True,
                          track_written=True)
    compress, encrypt = run.rng.random() < 0.5, run.rng.random() < 0.5
    flags = (["-c"] if compress else []) + (["-e"] if encrypt else [])
    with TcpFaultProxy("127.0.0.1", SWIFT.ports["proxy"], seed=run.seed) as proxy:
        proxy.arm(run.mix)
        fields = s3_fields(prefix, f"http://{proxy.address}", connections=min(run.connections, 8),
                           max_attempts=run.rng.choice([2, 3, 4]))
        target = target_file(run.work, "faulty", fields)
        start = time.monotonic()
        proc = subprocess.Popen([harness.binary("archive"), "-f", device, "--target-config",
                                 target] + flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with Monitor(proc.pid) as mon:
            try:
                out, err = proc.communicate(timeout=RUN_BOUND * MULT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise AssertionError(f"hang: archive ran {RUN_BOUND * MULT}s; "
                                     f"proxy {proxy.counts}") from None
        took = time.monotonic() - start
        run.faults = proxy.fault_counts()
        proxy.release_stalls()
    err = err.decode(errors="replace")
    max_rss = (64 * MiB + 4 * min(run.connections, 8) * run.stripe) * asan_factor()
    expect(mon.max_rss <= max_rss, f"archive VmRSS {mon.max_rss // MiB} MiB "
           f"(bound {max_rss // MiB} MiB)")
    expect(mon.max_fds <= 32 + 2 * run.connections, f"archive held {mon.max_fds} fds")
    if proc.returncode == 0:
        expect_archive(run.work, prefix, run.data, run.stripe, "archive under faults")
        run.outcome = "completed"
        run.detail = f"{took:.0f}s, peak {mon.max_fds} fds, {mon.max_rss // MiB} MiB RSS"
        return
    errors = [line for line in err.splitlines() if line.startswith("[ERROR]")]
    expect(proc.returncode == 1 and len(errors) == 1,
           f"archive exit {proc.returncode}, error lines {errors}:\n{err[-3000:]}")
    expect(SWIFT.secret_key not in err, "the secret in the error")
    target = target_file(run.work, "direct", s3_fields(prefix, SWIFT.endpoint))
    tool.run_archive("-f", device, "--target-config", target, *flags, check=0)
    expect_archive(run.work, prefix, run.data, run.stripe, "the rerun without faults")
    run.outcome = "failed-cleanly"
    run.detail = f"{took:.0f}s: {errors[0][:160]}"


RUNNERS = {"remote": run_remote, "archive-source": run_archive_source,
           "archive-tool": run_archive_tool}


def run_one(plan):
    """One run (index, seed, path), start to end: its outcome, its line,
    its logs if it failed."""
    run = Run(*plan)
    t0 = time.monotonic()
    try:
        RUNNERS[run.path](run)
    except Exception as e:  # noqa: BLE001 - report every run, keep going
        run.outcome = "FAIL"
        run.detail = f"{type(e).__name__}: {e}"
    faults = ",".join(f"{k}={v}" for k, v in sorted(run.faults.items()) if v)
    lines = [f"{'ok  ' if run.outcome != 'FAIL' else 'FAIL'} {run.describe()} -> "
             f"{run.outcome} ({time.monotonic() - t0:.0f}s; fired {faults or 'none'}; "
             f"{run.detail})"]
    if run.outcome == "FAIL":
        # The run's logs outlive the work folder, for the post-mortem.
        kept = os.path.join(os.environ["UBIBLK_BUILD_DIR"], "net-faults-failed",
                            f"run{run.index}")
        shutil.copytree(run.work, kept, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.raw", "*.img", "*.sock"))
        lines.append(f"     logs kept in {kept}")
    shutil.rmtree(run.work, ignore_errors=True)
    run.data = None  # up to 32 MiB a run; the summary needs none of it
    with PRINT_LOCK:
        print("\n".join(lines), flush=True)
    return run


def main():
    global SWIFT, WORK
    runs = int(os.environ.get("UBIBLK_FAULT_RUNS", "10"))
    seed = int(os.environ.get("UBIBLK_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"net-faults: {runs} runs, UBIBLK_FAULT_SEED={seed}", flush=True)
    master = random.Random(seed)
    started = time.monotonic()
    with harness.scratch_dir("ubiblk-net-faults-") as work, swift.SwiftS3() as s3:
        SWIFT, WORK = s3, work
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        os.environ["HOME"] = os.path.join(work, "empty-home")
        os.makedirs(os.environ["HOME"])
        s3.create_bucket(BUCKET)
        offset = master.randrange(len(PATHS))
        # Every run's seed comes from the master seed before any starts,
        # so a seed replays the same runs however they overlap.
        planned = [(i, master.getrandbits(32), PATHS[(i + offset) % len(PATHS)])
                   for i in range(runs)]
        # Most of a run's time is a wait (a stalled connection waits out the
        # source's 20 s timeout), so runs overlap: PARALLEL at a time.
        with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            results = list(pool.map(run_one, planned))
    print(f"net-faults summary (seed {seed}, {time.monotonic() - started:.0f}s):")
    for path in PATHS:
        mine = [r for r in results if r.path == path]
        counts = {o: sum(r.outcome == o for r in mine)
                  for o in ("completed", "failed-cleanly", "FAIL")}
        print(f"  {path:15} runs {len(mine):3}  completed {counts['completed']:3}  "
              f"failed-cleanly {counts['failed-cleanly']:3}  FAIL {counts['FAIL']:3}")
    fired = {}
    for r in results:
        for k, v in r.faults.items():
            fired[k] = fired.get(k, 0) + v
    print("  faults fired: " + ", ".join(f"{k} {v}" for k, v in sorted(fired.items())))
    bad = [r for r in results if r.outcome == "FAIL"]
    print(f"{len(results) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
