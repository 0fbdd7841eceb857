"""Crash campaign: kill -9 during hydration from every kind of remote
source, and kill -9 of the archive tool.

Hydration scenarios (vhost-backend with autofetch, copy_on_read and
track_written, a guest-like writer, SIGKILL at a random moment; the checks
of crash_checks.py after every kill and every restart):

- remote: remote-stripe-server over TLS-PSK serving the source disk;
- archive-fs: an archive (compressed) of the source disk in a directory;
- archive-s3: an archive (compressed, encrypted) of it in Swift's S3 API
  (tests/integration/swift.py, started once for the file).

A disk whose autofetch completed is replaced by a fresh one (a new epoch),
so kills keep landing during hydration; within an epoch the FETCHED count
never goes backwards. Each scenario ends with a restart that hydrates the
disk to the end: every source stripe equals the source, every
acknowledged write is there.

archive-tool: `archive` of the same disk SIGKILLed after a random number of
stored objects (or a few ms after its start), into a directory and into
S3 in turn, with random --compress/--encrypt; then the same command again:
it completes, reuses every whole object the killed run stored, and the
archive decodes (the independent Python reader, tests/archive-golden) to
the guest's view of the disk.

UBIBLK_CRASH_ROUNDS rounds in all (20 by default), spread over the
scenarios in turn; UBIBLK_CRASH_SEED picks the kill moments (printed);
arguments name the scenarios to run (all by default). The last line is a
JSON summary (scripts/crash-campaign.sh prints it)."""

import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crash_checks  # noqa: E402
import harness  # noqa: E402
import swift  # noqa: E402
import test_archive_s3 as s3t  # noqa: E402
import test_archive_tool as tool  # noqa: E402

MiB = 1 << 20
STRIPE = tool.STRIPE            # 1 MiB: the archive's and the remote server's
STRIPES = 64
WRITE_OFFSET, WRITE_SIZE = 8 * MiB, 6 * MiB
WRITER_STRIPES = crash_checks.stripes_between(WRITE_OFFSET, WRITE_SIZE, STRIPE)
KEK = tool.ARCHIVE_KEK
BUCKET = "crash"
PSK_IDENTITY = "crash-campaign"
SCENARIOS = ["remote", "archive-fs", "archive-s3", "archive-tool"]
# The longest wait for a fresh backend to hydrate the disk completely.
HYDRATE_TIMEOUT = 120 * float(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1"))


def source_stripes():
    """The disk every scenario serves: random stripes, all-zero ones (one
    shared object), repeats of the previous stripe, and never-written ones
    (not archived: no source from an archive; zeros from the server)."""
    rng = random.Random(7)
    stripes = []
    for i in range(STRIPES):
        if i % 16 == 7:
            stripes.append((0, bytes(STRIPE)))
        elif i % 8 == 3:
            stripes.append((tool.WRITTEN, bytes(STRIPE)))
        elif i % 8 == 5:
            stripes.append(stripes[-1])
        else:
            stripes.append((tool.WRITTEN, rng.randbytes(STRIPE)))
    return stripes


class Hydration:
    """One hydration scenario: a source, a disk being hydrated from it, the
    writer's state, the history of the current epoch."""

    def __init__(self, name, work, source, stripe_source, rng):
        self.name = name
        self.work = os.path.join(work, name)
        os.makedirs(self.work)
        self.source = source            # what the guest sees of source stripes
        self.stripe_source = stripe_source
        self.rng = rng
        self.epoch = 0
        self.history = []               # fetched count after each kill, this epoch
        self.kills_mid_hydration = 0
        self.hydrated_epochs = 0
        self.written_before_fetched = 0  # kills that left WRITTEN on an unfetched stripe
        self.rounds = 0
        self.new_epoch()

    def paths(self):
        return (os.path.join(self.work, "disk.raw"), os.path.join(self.work, "disk.meta"),
                os.path.join(self.work, "verify.state"), os.path.join(self.work, "rpc.sock"))

    def backend(self):
        disk, meta, _, rpc = self.paths()
        return harness.VhostBackend(self.work, disk, metadata_path=meta, rpc_socket_path=rpc,
                                    num_queues=2, queue_size=128, copy_on_read=True,
                                    autofetch=True, track_written=True,
                                    stripe_source=self.stripe_source)

    def new_epoch(self):
        """A fresh, empty disk: nothing fetched, no writes recorded."""
        disk, meta, state, _ = self.paths()
        for path in (disk, meta, state):
            if os.path.exists(path):
                os.unlink(path)
        harness.make_disk(disk, len(self.source))
        harness.init_metadata(self.backend().config)
        self.epoch += 1
        self.history = []

    def round(self, delay):
        disk, _, state, rpc = self.paths()
        be = self.backend()
        crash_checks.crash_round(be, rpc, state, WRITE_OFFSET, WRITE_SIZE, delay)
        sets = crash_checks.check_after_crash(be.config, self.source, disk, STRIPE,
                                              skip=WRITER_STRIPES)
        fetched = len(sets["fetched"])
        assert not self.history or fetched >= self.history[-1], \
            f"FETCHED went backwards: {self.history} then {fetched}"
        self.history.append(fetched)
        if (sets["written"] & sets["has-source"]) - sets["fetched"]:
            self.written_before_fetched += 1
        crash_checks.verify_acknowledged(self.backend(), state)
        self.rounds += 1
        if sets["fetched"] == sets["has-source"]:
            self.hydrated_epochs += 1
            self.new_epoch()
        else:
            self.kills_mid_hydration += 1
        return fetched, len(sets["has-source"])

    def finish(self):
        """A restart that hydrates to the end: every source stripe (the
        writer's aside) holds the source, every write reads back."""
        disk, _, state, rpc = self.paths()
        start = time.monotonic()
        with self.backend() as be:
            def done():
                s = harness.lazy_status(rpc)
                return s["fetched"] == s["source"]
            harness.wait_for(done, HYDRATE_TIMEOUT, f"{self.name}: autofetch to finish")
            assert be.stop() == 0, f"{self.name}: vhost-backend did not stop cleanly"
        seconds = time.monotonic() - start
        sets = crash_checks.check_after_crash(be.config, self.source, disk, STRIPE,
                                              skip=WRITER_STRIPES)
        assert sets["fetched"] == sets["has-source"], sets
        if os.path.exists(state):
            crash_checks.verify_acknowledged(self.backend(), state)
        return seconds


class ArchiveTool:
    """`archive` of the source device SIGKILLed and run again, into a
    directory and into S3 in turn."""

    def __init__(self, work, device, s3, rng):
        self.name = "archive-tool"
        self.work = os.path.join(work, "archive-tool")
        os.makedirs(self.work)
        self.device = device
        self.view = device.guest_view()
        self.s3 = s3
        self.rng = rng
        self.rounds = 0
        self.kills_mid_run = 0

    def round(self, round_no):
        where = "fs" if self.rounds % 2 == 0 or self.s3 is None else "s3"
        compress, encrypt = self.rng.random() < 0.5, self.rng.random() < 0.5
        name = f"r{round_no}-{where}"
        if where == "fs":
            root = os.path.join(self.work, name)
            target = s3t.target_file(name, {"type": "filesystem", "path": root,
                                            "archive_kek": s3t.kek_block(KEK)})
        else:
            target = s3t.target_file(name, s3t.s3_fields(name, connections=4))
        argv = [harness.binary("archive")] + s3t.archive_args(self.device, target, compress,
                                                              encrypt)
        # Fewer than the distinct objects of an unencrypted archive (an
        # encrypted one has an object per stripe): the run is still going.
        distinct = len({data for header, data in self.device.stripes if header})
        objects = self.rng.randint(0, distinct * 3 // 4)
        stored_before = self.kill(argv, where, root if where == "fs" else name, objects)
        _, out, _ = tool.run_archive(*argv[1:], check=0)
        counts = tool.summary(out)
        archived = sum(1 for v in self.view.values() if v is not None)
        assert counts["stripes archived"] == archived, out
        if where == "fs":
            # The killed run's half-written objects are temporary files
            # ('.' names); every named object is whole and was reused.
            assert counts["objects already stored"] == stored_before, (stored_before, out)
            for entry in os.listdir(os.path.join(root, "data")):
                if entry.startswith("."):
                    os.unlink(os.path.join(root, "data", entry))
        else:
            # A PUT Swift received whole may land after our listing.
            assert counts["objects already stored"] >= stored_before, (stored_before, out)
            root = s3t.download(name)
        tool.check_archive(root, self.view, KEK if encrypt else None,
                           "snappy" if compress else "none", encrypt)
        shutil.rmtree(root)
        self.rounds += 1
        return where, compress, encrypt, objects, stored_before

    def kill(self, argv, where, place, objects):
        """Runs argv; SIGKILL once `objects` objects are stored (0: a few
        ms after the start). Returns the objects stored at the kill."""
        def stored():
            if where == "fs":
                data = os.path.join(place, "data")
                return len(tool.data_objects(place)) if os.path.isdir(data) else 0
            return len(self.s3.list_keys(BUCKET, place + "/data/"))
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if objects == 0:
                time.sleep(self.rng.uniform(0.0, 0.05))
            else:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and proc.poll() is None:
                    if stored() >= objects:
                        break
                    time.sleep(0.002 if where == "fs" else 0.01)
            assert proc.poll() is None, "the run ended before it could be killed"
            proc.kill()
        finally:
            proc.wait(timeout=60)
        self.kills_mid_run += 1
        if where == "s3":
            time.sleep(0.2)  # let Swift finish a PUT it received whole
        return stored()


def remote_source(work, source):
    """remote-stripe-server (TLS-PSK) serving `source`; returns (process,
    the stripe_source block)."""
    image = os.path.join(work, "server-image.raw")
    with open(image, "wb") as f:
        f.write(source)
    config = harness.write_config(os.path.join(work, "server.yaml"), {"path": image})
    port = harness.free_port()
    secret = s3t.b64(os.urandom(32))
    listen = os.path.join(work, "listen.yaml")
    with open(listen, "w") as f:
        f.write(f'address: "127.0.0.1:{port}"\npsk_identity: "{PSK_IDENTITY}"\n'
                f'psk_secret: "{secret}"\n')
    log = os.path.join(work, "server.log")
    server = harness.Process([harness.binary("remote-stripe-server"), "-f", config,
                              "--listen-config", listen], log_path=log,
                             env=dict(os.environ, UBIBLK_LOG="info"))
    harness.wait_for(lambda: f"listening on 127.0.0.1:{port}" in server.log_text()
                     or not server.alive(), 30, "remote-stripe-server to listen")
    assert server.alive(), "remote-stripe-server exited:\n" + server.log_text()
    return server, {"source": "remote", "address": f"127.0.0.1:{port}",
                    "psk_identity": PSK_IDENTITY, "psk_secret": secret}


def make_archive(device, name, fields, compress, encrypt):
    tool.run_archive(*s3t.archive_args(device, s3t.target_file(name, fields), compress,
                                       encrypt), check=0)
    return {"source": "archive", **fields}


def kill_delay(rng):
    """Most kills within the first 0.35 s of writes (autofetch of a fresh
    disk from loopback takes about 0.4 s), the others later."""
    return rng.uniform(0.0, 0.35) if rng.random() < 0.7 else rng.uniform(0.35, 1.5)


def campaign(chosen, rounds, seed, work, s3):
    rng = random.Random(seed)
    device = tool.Device(work, source_stripes(), name="source")
    view = device.guest_view()
    # What a guest sees: archived stripes, zeros elsewhere (never fetched).
    source = b"".join(v if v is not None else bytes(STRIPE) for _, v in sorted(view.items()))
    scenarios, closers = [], []
    try:
        if "remote" in chosen:
            server, block = remote_source(work, source)
            closers.append(server.close)
            scenarios.append(Hydration("remote", work, source, block, rng))
        if "archive-fs" in chosen:
            fields = {"type": "filesystem", "path": os.path.join(work, "store-fs"),
                      "archive_kek": s3t.kek_block(KEK), "connections": 4}
            block = make_archive(device, "archive-fs", fields, True, False)
            scenarios.append(Hydration("archive-fs", work, source, block, rng))
        if "archive-s3" in chosen:
            block = make_archive(device, "archive-s3", s3t.s3_fields("archive-s3", connections=4),
                                 True, True)
            scenarios.append(Hydration("archive-s3", work, source, block, rng))
        if "archive-tool" in chosen:
            scenarios.append(ArchiveTool(work, device, s3, rng))
        failures = []
        for round_no in range(rounds):
            sc = scenarios[round_no % len(scenarios)]
            start = time.monotonic()
            try:
                if isinstance(sc, Hydration):
                    delay = kill_delay(rng)
                    fetched, has_source = sc.round(delay)
                    what = f"killed after {delay:.2f}s: {fetched}/{has_source} fetched"
                else:
                    where, c, e, objects, stored = sc.round(round_no)
                    what = (f"{where} {'-c ' if c else ''}{'-e ' if e else ''}killed at "
                            f"{objects} objects ({stored} stored), rerun complete")
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                failures.append(f"round {round_no} {sc.name}: {type(exc).__name__}: {exc}")
                print(f"FAIL round {round_no} {sc.name}: {exc}", flush=True)
                continue
            print(f"round {round_no} {sc.name} ({time.monotonic() - start:.1f}s): {what}",
                  flush=True)
        summary = {"seed": seed, "rounds": rounds, "failures": failures, "scenarios": {}}
        for sc in scenarios:
            entry = {"rounds": sc.rounds}
            if isinstance(sc, Hydration):
                try:
                    seconds = sc.finish()
                    entry["final hydration s"] = round(seconds, 1)
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"{sc.name} final hydration: {type(exc).__name__}: {exc}")
                entry.update({"kills mid-hydration": sc.kills_mid_hydration,
                              "epochs hydrated": sc.hydrated_epochs,
                              "kills leaving WRITTEN before FETCHED":
                                  sc.written_before_fetched})
            else:
                entry["kills mid-run"] = sc.kills_mid_run
            summary["scenarios"][sc.name] = entry
        return summary
    finally:
        for close in closers:
            close()


def test_crash_campaign():
    chosen = [a for a in sys.argv[1:] if a in SCENARIOS] or SCENARIOS
    unknown = [a for a in sys.argv[1:] if a not in SCENARIOS]
    assert not unknown, f"unknown scenarios {unknown}; known: {SCENARIOS}"
    rounds = int(os.environ.get("UBIBLK_CRASH_ROUNDS", "20"))
    seed = int(os.environ.get("UBIBLK_CRASH_SEED", "20261206"))
    print(f"seed {seed} (UBIBLK_CRASH_SEED), {rounds} rounds over {chosen}", flush=True)
    need_s3 = bool({"archive-s3", "archive-tool"} & set(chosen))
    start = time.monotonic()
    with harness.scratch_dir("ubiblk-crash-") as work:
        s3t.WORK = work
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        os.environ["HOME"] = os.path.join(work, "empty-home")
        os.makedirs(os.environ["HOME"])
        if need_s3:
            with swift.SwiftS3() as s3:
                s3t.SWIFT = s3
                s3.create_bucket(BUCKET)
                s3t.BUCKET = BUCKET
                summary = campaign(chosen, rounds, seed, work, s3)
        else:
            summary = campaign(chosen, rounds, seed, work, None)
    summary["seconds"] = round(time.monotonic() - start, 1)
    print("summary " + json.dumps(summary), flush=True)
    assert not summary["failures"], "\n".join(summary["failures"])


if __name__ == "__main__":
    harness.main([test_crash_campaign])
