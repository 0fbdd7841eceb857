"""The archive tool and the archive stripe source against OpenStack Swift's S3
API (tests/integration/swift.py, started once for the whole file), end to
end. Disks are built by test_archive_tool.py's Device, archives are decoded
by the independent Python reader (tests/archive-golden/make_golden.py) from
objects downloaded with the harness, and vhost-backend is driven with
test_archive_source.py's helpers.

- a 256 MiB disk (32 MiB in an ASan build, where Swift's time would
  double the test's for no more of our code run; random, all-zero,
  repeated and never-written stripes; a
  plain and an encrypted source disk) archived with every combination of
  --compress and --encrypt (archive_kek): the bucket holds exactly the
  objects the mapping names, the Python reader gets the guest's data back,
  and vhost-backend started from each archive reads the whole disk equal
  to the original while autofetch hydrates it (fetched == source; the disk
  file is the original);
- a disk whose stripe source is an archive in Swift, nothing fetched,
  archived again: every stripe read through the archive source;
- wrong credentials, a missing bucket, a missing archive: one error line
  naming the operation, key, HTTP status and S3 code, from the tool, from
  init-metadata and from vhost-backend; a missing object and a tampered
  object (another valid object's body under a data key): those stripes
  Failed, reads of them I/O errors, every other stripe right, never wrong
  data; a tampered stripe-hashes.json and a wrong archive_kek refused;
- the fault proxy (tests/integration/fault_proxy.py) in front of Swift
  answering ~20% of requests with 500/503/429, connection resets,
  truncated bodies and slow answers: the archive and the hydration both
  complete byte-identical, and the proxy counted every kind of fault;
- archive SIGKILLed in the middle of a run and run again: it completes,
  reads back identical, and uploads only what is missing;
- credentials from the environment, from ~/.aws/credentials of a scratch
  HOME and from AWS_SHARED_CREDENTIALS_FILE with a profile, and a session
  token (Swift's tempauth ignores the token, but it is signed with the rest
  of the request, so a request carrying one must still be well formed);
- virtual-hosted addressing (BUCKET.localhost) and path style, by the
  automatic rule and by the override."""

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import swift  # noqa: E402
import test_archive_source as source  # noqa: E402
import test_archive_tool as tool  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

MiB = 1 << 20
STRIPE = tool.STRIPE  # 1 MiB
KEK = tool.ARCHIVE_KEK
BUCKET = "archives"
COMBINATIONS = [(False, False), (True, False), (False, True), (True, True)]
expect = source.expect

SWIFT = None  # the SwiftS3 every test shares
WORK = None   # scratch folder of the whole file


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def kek_block(kek=KEK):
    key, iv, aad = (b64(v) for v in kek)
    return {"method": "aes256-gcm", "key": key, "init_vector": iv, "auth_data": aad}


def s3_fields(prefix, kek=KEK, endpoint=None, credentials=True, secret=None, **extra):
    """The fields of an S3 archive location: the target config of the tool,
    and (with source: archive) a device's stripe_source block."""
    fields = {"type": "s3", "bucket": BUCKET, "prefix": prefix,
              "endpoint": endpoint or SWIFT.endpoint, "region": SWIFT.region}
    if credentials:
        fields["credentials"] = {"access_key_id": b64(SWIFT.access_key),
                                 "secret_access_key": b64(secret or SWIFT.secret_key)}
    if kek:
        fields["archive_kek"] = kek_block(kek)
    fields.update(extra)
    return fields


def target_file(name, fields):
    """A target config (JSON is YAML) in WORK."""
    path = os.path.join(WORK, name + ".target.yaml")
    with open(path, "w") as f:
        json.dump(fields, f)
    return path


def archive_args(dev, target, compress=False, encrypt=False):
    return (["-f", dev.config, "--target-config", target] + (["-c"] if compress else []) +
            (["-e"] if encrypt else []))


def download(prefix, name=None):
    """Every object under prefix/ copied from Swift into a fresh folder
    (key paths kept): the archive as the Python reader reads it."""
    root = os.path.join(WORK, "dl-" + (name or prefix))
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "data"))
    for key in SWIFT.list_keys(BUCKET, prefix + "/"):
        path = os.path.join(root, key[len(prefix) + 1:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(SWIFT.get_object(BUCKET, key))
    return root


def data_key(prefix, stripe):
    hashes = json.loads(SWIFT.get_object(BUCKET, f"{prefix}/stripe-hashes.json"))
    return f"{prefix}/data/{hashes[str(stripe)]}"


@contextlib.contextmanager
def environment(**changes):
    """os.environ changed for the processes started inside (None removes a
    variable); restored afterwards."""
    saved = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def original_of(view, disk_size):
    """The disk as a guest of a backend fetching the archive sees it:
    archived stripes, zeros elsewhere."""
    data = b"".join(v if v is not None else bytes(STRIPE) for _, v in sorted(view.items()))
    return data[:disk_size]


def backend(name, fields, disk_size, **extra):
    """vhost-backend (not started) for an empty disk fetching from the S3
    archive that `fields` name; init-metadata not run yet."""
    work = os.path.join(WORK, "be-" + name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    disk = harness.make_disk(os.path.join(work, "disk.raw"), disk_size)
    rpc = os.path.join(work, "rpc.sock")
    be = harness.VhostBackend(work, disk, metadata_path=os.path.join(work, "disk.meta"),
                              rpc_socket_path=rpc, copy_on_read=True, num_queues=2,
                              queue_size=128, stripe_source={"source": "archive", **fields},
                              **extra)
    return be, disk, rpc


def serve_and_hydrate(name, fields, view, disk_size, original=None):
    """vhost-backend from the archive: init-metadata marks exactly the
    archived stripes, a whole-disk read equals the original while
    autofetch runs, hydration ends with fetched == source, and the disk
    file holds the original (original_of(view, disk_size), which a caller
    serving one view many times passes in: 256 MiB to join each time)."""
    archived = sorted(i for i, v in view.items() if v is not None)
    stripes = len(view)
    if original is None:
        original = original_of(view, disk_size)
    be, disk, rpc = backend(name, fields, disk_size, autofetch=True)
    source.init_metadata(be, stripes, archived)
    with be:
        expect(source.read_whole_disk(be) == original, f"{name}: the disk read differs")
        source.hydrate(be, rpc, stripes, archived)
        source.finish(be)
        log = be.process.log_text()
    secrets = [SWIFT.secret_key]
    token = fields.get("credentials", {}).get("session_token")
    if token:
        secrets.append(base64.b64decode(token).decode())
    expect(not any(secret in log for secret in secrets), f"{name}: a secret in the log")
    expect(source.file_bytes(disk) == original, f"{name}: the hydrated disk file differs")
    shutil.rmtree(be.workdir)


def small_archive(prefix, encrypt=False):
    """tool.mixed_stripes() (10 stripes: random ones at 0, 3, 6, 9) archived
    compressed; returns (device, view)."""
    dev = tool.Device(WORK, tool.mixed_stripes(), name="small-" + prefix)
    tool.run_archive(*archive_args(dev, target_file(prefix, s3_fields(prefix)), True, encrypt),
                     check=0)
    return dev, dev.guest_view()


def one_line(rc, err):
    lines = [line for line in err.splitlines() if line.startswith("[ERROR]")]
    expect(rc == 1 and len(lines) == 1, f"exit {rc}: {err}")
    return lines[0]


# ---- the big round trip ----

# Stripes of the big disk: 256 MiB; 32 MiB (the same kinds of stripe, every
# combination) in an ASan build.
BIG_STRIPES = 32 if harness.built_with_asan() else 256


def big_disk_stripes():
    """BIG_STRIPES stripes of 1 MiB, in groups of 8: 2 random, 2 all-zero,
    3 repeating four compressible patterns (written), 1 never written
    (garbage in the disk file that must not be archived)."""
    patterns = [(b"repeated stripe %d " % p) * (STRIPE // 19) for p in range(4)]
    patterns = [p.ljust(STRIPE, b"#") for p in patterns]
    garbage = b"\xa5" * STRIPE
    stripes = []
    for i in range(BIG_STRIPES):
        kind = i % 8
        if kind < 2:
            stripes.append((tool.WRITTEN, os.urandom(STRIPE)))
        elif kind < 4:
            stripes.append((tool.WRITTEN, bytes(STRIPE)))
        elif kind < 7:
            stripes.append((tool.WRITTEN, patterns[(i // 8 + kind) % 4]))
        else:
            stripes.append((0, garbage))
    return stripes


def test_big_disk_round_trip():
    """A plain and an encrypted source disk holding the same BIG_STRIPES MiB,
    each archived with every --compress/--encrypt combination to Swift and
    to a directory: the bucket
    holds exactly the named objects, the Python reader decodes the guest's
    data, unencrypted archives of both disks are the same objects (the
    disk's own encryption does not leak into the archive), and
    vhost-backend reads and hydrates every archive to the original."""
    print(f"     a {BIG_STRIPES} MiB disk", flush=True)
    written = BIG_STRIPES * 7 // 8
    stripes = big_disk_stripes()
    devices = [tool.Device(WORK, stripes, name="big-plain"),
               tool.Device(WORK, stripes, name="big-enc", keys=harness.random_xts_keys())]
    view = devices[0].guest_view()
    archived = sorted(i for i, v in view.items() if v is not None)
    expect(len(archived) == written, len(archived))
    expect(devices[0].disk_size == devices[1].disk_size, "the two disks differ in size")
    original = original_of(view, devices[0].disk_size)
    unencrypted = {}
    for dev in devices:
        for compress, encrypt in COMBINATIONS:
            name = (f"{os.path.basename(dev.config)[:-5]}-{'c' if compress else 'n'}"
                    f"{'e' if encrypt else 'p'}")
            fields = s3_fields(name)
            _, out, _ = tool.run_archive(*archive_args(dev, target_file(name, fields), compress,
                                                       encrypt), check=0)
            root = download(name)
            hashes = tool.check_archive(root, view, KEK if encrypt else None,
                                        "snappy" if compress else "none", encrypt)
            counts = tool.summary(out)
            distinct = len(set(hashes.values()))
            expect(counts["stripes archived"] == written and
                   counts["stripes skipped"] == BIG_STRIPES - written, out)
            expect(counts["objects uploaded"] == distinct, out)
            expect(counts["objects already stored"] == 0, out)
            expect(counts["bytes logical"] == written * STRIPE, out)
            # random (a quarter), one zero, four patterns; encrypted: every
            # stripe its own
            expect(distinct == (written if encrypt else BIG_STRIPES // 4 + 1 + 4),
                   f"{name}: {distinct} objects")
            if not encrypt:
                previous = unencrypted.setdefault(compress, hashes)
                expect(previous == hashes, f"{name}: other objects than the plain disk's")
            shutil.rmtree(root)
            serve_and_hydrate(name, fields, view, dev.disk_size, original)
            # The same run into a directory: the same objects, read back the same.
            fs = {"type": "filesystem", "path": os.path.join(WORK, "fs-" + name),
                  "archive_kek": kek_block(KEK)}
            tool.run_archive(*archive_args(dev, target_file("fs-" + name, fs), compress, encrypt),
                             check=0)
            fs_hashes = tool.check_archive(fs["path"], view, KEK if encrypt else None,
                                           "snappy" if compress else "none", encrypt)
            if not encrypt:
                expect(fs_hashes == hashes, f"{name}: the directory holds other objects")
            serve_and_hydrate("fs-" + name, fs, view, dev.disk_size, original)
            shutil.rmtree(fs["path"])
        os.unlink(dev.disk_path)


def test_disk_fetched_from_an_archive():
    """A disk whose stripe source is an archive in Swift, nothing fetched
    yet, archived again to Swift (encrypted, another KEK): every stripe
    comes through the archive source, and the second archive decodes to the
    first one's disk. With the source's credentials wrong the tool stops
    with the source's error."""
    dev, view = small_archive("refetch-first", encrypt=True)
    disk = harness.make_disk(os.path.join(WORK, "refetch.raw"), dev.disk_size)
    config = os.path.join(WORK, "refetch.yaml")

    def write_device(secret=None):
        harness.write_config(config, {
            "path": disk, "metadata_path": disk + ".meta", "copy_on_read": True,
            "stripe_source": {"source": "archive",
                              **s3_fields("refetch-first", secret=secret)}})
    write_device()
    harness.init_metadata(config)
    kek2 = (os.urandom(32), os.urandom(12), b"second")
    target = target_file("refetch-second", s3_fields("refetch-second", kek=kek2))
    _, out, _ = tool.run_archive("-f", config, "--target-config", target, "-e", check=0)
    expect(tool.summary(out)["stripes from source"] == 10, out)
    tool.check_archive(download("refetch-second"), view, kek2, encrypted=True)
    write_device(secret="not-the-secret")
    rc, _, err = tool.run_archive("-f", config, "--target-config", target, "-e")
    line = one_line(rc, err)
    expect("GetObject metadata.json (key refetch-first/metadata.json) failed: HTTP 403 "
           "SignatureDoesNotMatch" in line and "not-the-secret" not in err, line)


# ---- errors ----

def test_tool_errors():
    """Wrong credentials, a missing bucket, no credentials at all: exit 1,
    one error line naming the operation, key, status and S3 code; secrets
    never printed; no metadata.json written."""
    dev = tool.Device(WORK, tool.mixed_stripes()[:3], name="tool-errors")
    cases = [
        # The first request asks whether the target already holds an archive.
        ("tool-wrong", s3_fields("tool-wrong", secret="not-the-secret"),
         ["GetObject metadata.json", "(key tool-wrong/metadata.json)",
          "failed: HTTP 403 SignatureDoesNotMatch"]),
        ("tool-nobucket", s3_fields("tool-nobucket", bucket="no-such-bucket"),
         ["GetObject metadata.json", "(key tool-nobucket/metadata.json)",
          "HTTP 404 NoSuchBucket", "(bucket no-such-bucket)"]),
        ("tool-nocreds", s3_fields("tool-nocreds", credentials=False), ["No S3 credentials"]),
    ]
    for name, fields, texts in cases:
        rc, _, err = tool.run_archive(*archive_args(dev, target_file(name, fields)))
        line = one_line(rc, err)
        for text in texts:
            expect(text in line, f"{name}: {text!r} not in {line}")
        expect("not-the-secret" not in err and SWIFT.secret_key not in err,
               f"{name}: a secret leaked: {err}")
        expect(SWIFT.list_keys(BUCKET, name + "/") == [], f"{name}: objects were stored")


def test_refused_archives():
    """init-metadata and vhost-backend refuse a bad archive location with
    one line naming the cause: wrong credentials, missing bucket, no
    archive under the prefix, a tampered stripe-hashes.json, a wrong
    archive_kek."""
    dev, view = small_archive("refused-good", encrypt=True)
    good = s3_fields("refused-good")
    be, _, _ = backend("refused", good, dev.disk_size)
    source.init_metadata(be, 10, sorted(view))
    hashes = SWIFT.get_object(BUCKET, "refused-good/stripe-hashes.json")
    SWIFT.put_object(BUCKET, "refused-bad/metadata.json",
                     SWIFT.get_object(BUCKET, "refused-good/metadata.json"))
    SWIFT.put_object(BUCKET, "refused-bad/stripe-hashes.json",
                     hashes.replace(hashes[8:16], b"ABCDEFGH", 1))
    wrong_kek = (bytes(32), KEK[1], KEK[2])
    cases = [
        (s3_fields("refused-good", secret="not-the-secret"),
         "GetObject metadata.json (key refused-good/metadata.json) failed: HTTP 403 "
         "SignatureDoesNotMatch"),
        (s3_fields("refused-good", bucket="no-such-bucket"),
         "GetObject metadata.json (key refused-good/metadata.json) failed: HTTP 404 "
         "NoSuchBucket"),
        (s3_fields("refused-none"),
         "GetObject metadata.json (key refused-none/metadata.json) failed: HTTP 404 "
         "NoSuchKey"),
        (s3_fields("refused-bad"), "failed to parse stripe-hashes.json"),
        (s3_fields("refused-good", kek=wrong_kek), "archive key1: Failed to decrypt data"),
        (s3_fields("refused-good", kek=None),
         "archive_kek cannot unwrap the archive's encryption_key"),
    ]
    # The metadata comes from the good archive, so the back end gets as far
    # as reading the bad one.
    for fields, message in cases:
        harness.write_config(be.config, {
            "path": os.path.join(be.workdir, "disk.raw"), "socket": be.socket,
            "metadata_path": os.path.join(be.workdir, "disk.meta"), "copy_on_read": True,
            "stripe_source": {"source": "archive", **fields}})
        line = source.start_fails(be)
        where = f"stripe_source: archive s3://{fields['bucket']}/{fields['prefix']}: "
        expect(where in line and message in line, f"{message!r}: {line}")
        expect("not-the-secret" not in line, f"a secret leaked: {line}")
        proc = harness.init_metadata(be.config, "--force", check=False)
        line = source.one_error_line(proc)
        expect(message in line, f"init-metadata, {message!r}: {line}")


def test_missing_and_tampered_objects():
    """A deleted object and another valid object's body under a data key:
    those two stripes are retried, then Failed, and reads of them fail;
    every other stripe reads right; the bad bytes never reach the disk
    file and the stripes are not marked fetched."""
    prefix = "bad-objects"
    dev, view = small_archive(prefix)
    missing, tampered, donor = 3, 6, 0
    missing_key = data_key(prefix, missing)
    status, _, body = SWIFT.request("DELETE", BUCKET, missing_key)
    expect(status == 204, f"DELETE {missing_key}: {status} {body!r}")
    SWIFT.put_object(BUCKET, data_key(prefix, tampered),
                     SWIFT.get_object(BUCKET, data_key(prefix, donor)))
    original = original_of(view, dev.disk_size)
    be, disk, rpc = backend(prefix, s3_fields(prefix), dev.disk_size)
    source.init_metadata(be, 10, sorted(view))
    with be:
        for bad in (missing, tampered):
            code, _, err = source.bench(be, "--mode", "read", "--bs", "64k", "--offset",
                                        f"{bad}m", "--size", "1m", "--timeout", "60s",
                                        timeout=120)
            expect(code != 0, f"a read of bad stripe {bad} succeeded")
        log = be.process.log_text()
        expect(f"archive source: stripe {missing} failed: GetObject "
               f"{missing_key[len(prefix) + 1:]} (key {missing_key}) failed: HTTP 404 NoSuchKey"
               in log, log[-3000:])
        expect(f"archive source: stripe {tampered} failed: sha256 hash mismatch for stripe "
               f"{tampered}" in log, log[-3000:])
        failed = sorted(int(i) for i in source.FAILED_STRIPE.findall(log))
        expect(failed == [missing, tampered], f"failed stripes {failed}")
        out = os.path.join(be.workdir, "part.raw")
        for start, end in ((0, missing), (missing + 1, tampered), (tampered + 1, 10)):
            offset, size = start * STRIPE, min(end * STRIPE, dev.disk_size) - start * STRIPE
            harness.make_disk(out, dev.disk_size)
            code, _, err = source.bench(be, "--mode", "read", "--bs", "64k", "--iodepth", "4",
                                        "--offset", str(offset), "--size", str(size),
                                        "--dump", out)
            expect(code == 0, f"reading stripes {start}..{end - 1}: {err}")
            expect(source.file_bytes(out)[offset:offset + size] == original[offset:offset + size],
                   f"stripes {start}..{end - 1} differ")
        s = harness.lazy_status(rpc)
        expect(s["fetched"] == 8, s)
        expect(be.stop() == 0, "vhost-backend exit status")
    stored = source.file_bytes(disk)
    for bad in (missing, tampered):
        expect(stored[bad * STRIPE:(bad + 1) * STRIPE] == bytes(STRIPE),
               f"stripe {bad}'s bytes reached the disk file")
    fetched = harness.metadata_stripes(be.config).get("fetched", set())
    expect(not fetched & {missing, tampered}, f"bad stripes marked fetched: {fetched}")


# ---- faults ----

def test_faults_on_the_way():
    """~20% of requests through the fault proxy fail (500, 503, 429,
    connection resets, truncated GetObject bodies) or answer late (1.5 s,
    shorter than the 20 s attempt timeout), and one GetObject is never
    answered (the attempt timeout ends it): an encrypted, compressed
    archive of 64 random stripes completes and decodes right, and the
    hydration through the same proxy ends byte-identical; every kind of
    fault happened."""
    prefix = "faults"
    dev = tool.Device(WORK, [(tool.WRITTEN, os.urandom(STRIPE)) for _ in range(64)],
                      name="faults")
    view = dev.guest_view()
    with FaultProxy("127.0.0.1", SWIFT.ports["proxy"], seed=20) as proxy:
        rules = {
            # One GET of a data object never answered: the attempt timeout
            # (20 s) ends it and the retry succeeds, while other stripes go on.
            "stall": proxy.add_fault("stall", kind="GetObject", key=r"/data/", times=1),
            "truncate": proxy.add_fault("truncate", kind="GetObject", fraction=0.08),
            "500": proxy.add_fault("error", status=500, fraction=0.05),
            "503": proxy.add_fault("error", status=503, fraction=0.05),
            "429": proxy.add_fault("error", status=429, fraction=0.04),
            "reset": proxy.add_fault("reset", fraction=0.04),
            "latency": proxy.add_fault("latency", delay=1.5, fraction=0.03, times=4),
        }
        # 3 attempts would lose about one request in 125 at this rate.
        fields = s3_fields(prefix, endpoint=proxy.endpoint, max_attempts=8)
        _, out, _ = tool.run_archive(*archive_args(dev, target_file(prefix, fields), True, True),
                                     check=0)
        counts = tool.summary(out)
        expect(counts["objects uploaded"] == 64, out)
        archive_faults = {name: rule.applied for name, rule in rules.items()}
        root = download(prefix)
        tool.check_archive(root, view, KEK, "snappy", True)
        serve_and_hydrate(prefix, fields, view, dev.disk_size)
        applied = {name: rule.applied for name, rule in rules.items()}
        requests = proxy.count("requests")
    faults = sum(applied.values())
    print(f"     {requests} requests, faults: {applied} (archive: {archive_faults})",
          flush=True)
    expect(all(applied.values()), f"a kind of fault never happened: {applied}")
    expect(0.12 * requests <= faults <= 0.35 * requests, f"{faults} of {requests} requests")
    expect(sum(archive_faults.values()) > 0 and faults > sum(archive_faults.values()),
           f"faults in the archive run {archive_faults}, in all {applied}")


# ---- interrupted ----

def test_killed_and_rerun():
    """SIGKILL while objects are being uploaded, then the same command:
    it completes, uploads only the objects Swift does not hold yet, and
    the archive decodes to the disk; a third run uploads nothing."""
    prefix = "killed"
    count = 128
    dev = tool.Device(WORK, [(tool.WRITTEN, os.urandom(STRIPE)) for _ in range(count)],
                      name="killed")
    target = target_file(prefix, s3_fields(prefix, connections=4))
    proc = subprocess.Popen([harness.binary("archive")] + archive_args(dev, target),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(SWIFT.list_keys(BUCKET, prefix + "/data/")) >= 16:
                break
            time.sleep(0.01)
        expect(proc.poll() is None, "the run ended before it could be killed")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    time.sleep(0.5)  # a PUT Swift had received whole may still be landing
    keys = SWIFT.list_keys(BUCKET, prefix + "/")
    # metadata.json comes before any object, the mapping only at the end.
    expect(prefix + "/metadata.json" in keys, f"no metadata.json after the kill: {keys}")
    expect(prefix + "/stripe-hashes.json" not in keys, f"a mapping was written: {keys}")
    stored = len([k for k in keys if k.startswith(prefix + "/data/")])
    expect(16 <= stored < count, f"{stored} objects after the kill")
    _, out, _ = tool.run_archive(*archive_args(dev, target), check=0)
    counts = tool.summary(out)
    expect(counts["stripes archived"] == count, out)
    expect(counts["objects already stored"] == stored, (stored, out))
    expect(counts["objects uploaded"] == count - stored, (stored, out))
    expect(counts["bytes uploaded"] == (count - stored) * STRIPE, out)
    tool.check_archive(download(prefix), dev.guest_view())
    _, out, _ = tool.run_archive(*archive_args(dev, target), check=0)
    counts = tool.summary(out)
    expect(counts["objects uploaded"] == 0 and counts["bytes uploaded"] == 0, out)
    expect(counts["objects already stored"] == count, out)
    tool.check_archive(download(prefix), dev.guest_view())


# ---- credentials ----

def test_credentials_outside_the_yaml():
    """No credentials in the YAML: from AWS_ACCESS_KEY_ID/SECRET (with and
    without AWS_SESSION_TOKEN), from ~/.aws/credentials of a scratch HOME,
    from AWS_SHARED_CREDENTIALS_FILE with the profile the YAML names; and a
    session_token in the YAML. Each archive is written by the tool and
    read back by vhost-backend (hydrated) under the same credentials."""
    dev = tool.Device(WORK, tool.mixed_stripes()[:4], name="creds")
    view = dev.guest_view()
    home = os.path.join(WORK, "home")
    os.makedirs(os.path.join(home, ".aws"), exist_ok=True)
    with open(os.path.join(home, ".aws", "credentials"), "w") as f:
        f.write(f"[default]\naws_access_key_id = {SWIFT.access_key}\n"
                f"aws_secret_access_key = {SWIFT.secret_key}\n")
    shared = os.path.join(WORK, "shared-credentials")
    with open(shared, "w") as f:
        f.write(f"[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n"
                f"[swift]\naws_access_key_id = {SWIFT.access_key}\n"
                f"aws_secret_access_key = {SWIFT.secret_key}\n")
    env_keys = {"AWS_ACCESS_KEY_ID": SWIFT.access_key,
                "AWS_SECRET_ACCESS_KEY": SWIFT.secret_key}
    token = b64(os.urandom(48))
    with_token = s3_fields("creds-yaml-token")
    with_token["credentials"]["session_token"] = b64(token)
    cases = [
        ("creds-env", s3_fields("creds-env", credentials=False), {**env_keys}),
        ("creds-env-token", s3_fields("creds-env-token", credentials=False),
         {**env_keys, "AWS_SESSION_TOKEN": token}),
        ("creds-home", s3_fields("creds-home", credentials=False), {"HOME": home}),
        ("creds-shared", s3_fields("creds-shared", credentials=False, profile="swift"),
         {"AWS_SHARED_CREDENTIALS_FILE": shared}),
        ("creds-yaml-token", with_token, {"UBIBLK_LOG": "debug"}),
    ]
    for name, fields, env in cases:
        with environment(**env):
            _, out, _ = tool.run_archive(*archive_args(dev, target_file(name, fields), True),
                                         check=0)
            expect(tool.summary(out)["stripes archived"] == 4, out)
            serve_and_hydrate(name, fields, view, dev.disk_size)
        tool.check_archive(download(name), view, compression="snappy")
    # The shared file's default profile is not Swift's user: without the
    # profile the same file fails, naming the operation.
    with environment(AWS_SHARED_CREDENTIALS_FILE=shared):
        rc, _, err = tool.run_archive(*archive_args(
            dev, target_file("creds-default", s3_fields("creds-default", credentials=False))))
        expect("failed: HTTP 403" in one_line(rc, err) and "wrong" not in err, err)


def test_virtual_hosted_addressing():
    """An endpoint with a host name and a DNS-compatible bucket: requests
    name the bucket in the host (BUCKET.localhost:PORT), by the automatic
    rule and by the override; path style by the override. Each archive is
    written, decoded and hydrated."""
    dev = tool.Device(WORK, tool.mixed_stripes()[:4], name="addressing")
    view = dev.guest_view()
    with FaultProxy("127.0.0.1", SWIFT.ports["proxy"]) as proxy:
        # The proxy sees the request line: the bucket leads the path only
        # in path style.
        for mode, in_path in (("auto", False), ("virtual", False), ("path", True)):
            name = "addressing-" + mode
            proxy.reset_counts()
            fields = s3_fields(name, endpoint=f"http://localhost:{proxy.port}", addressing=mode)
            tool.run_archive(*archive_args(dev, target_file(name, fields), True, True), check=0)
            tool.check_archive(download(name), view, KEK, "snappy", True)
            serve_and_hydrate(name, fields, view, dev.disk_size)
            targets = [target for _, _, target, _ in proxy.events]
            expect(len(targets) >= 12, f"{mode}: {targets}")
            expect(all(t.startswith(f"/{BUCKET}/{name}/") == in_path for t in targets),
                   f"{mode}: {targets}")


TESTS = [test_big_disk_round_trip, test_disk_fetched_from_an_archive, test_tool_errors, test_refused_archives,
         test_missing_and_tampered_objects, test_faults_on_the_way, test_killed_and_rerun,
         test_credentials_outside_the_yaml, test_virtual_hosted_addressing]


def main():
    """Runs every test, or those named on the command line, against one
    Swift. The processes the tests start see no AWS_* variables and a
    scratch HOME, unless a test sets them, and stop at the first
    sanitizer report."""
    global SWIFT, WORK
    chosen = [t for t in TESTS if not sys.argv[1:] or t.__name__ in sys.argv[1:]]
    with harness.scratch_dir("ubiblk-archive-s3-") as work, swift.SwiftS3() as s3:
        SWIFT, WORK = s3, work
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        # A sanitizer build stops at the first report: a failed exit status.
        os.environ.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        os.environ["HOME"] = os.path.join(work, "empty-home")
        os.makedirs(os.environ["HOME"])
        s3.create_bucket(BUCKET)
        try:
            harness.main(chosen)
        except SystemExit as e:
            status = e.code
    sys.exit(status)


if __name__ == "__main__":
    main()
