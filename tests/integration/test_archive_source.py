"""vhost-backend fetching a disk from an archive in a directory (the
filesystem store), the archives written by the independent Python writer
(tests/archive-golden/make_golden.py's functions: hashlib, python3-snappy,
python3-cryptography; none of ubiblk-c's code).

- every compression/encryption combination: init-metadata marks exactly the
  archived stripes HAS_SOURCE; a whole-disk read through ubiblk-bench equals
  the original while autofetch hydrates the disk completely (RPC status:
  fetched == source), and the hydrated disk file holds the original;
- an encrypted device (encryption_key) over an encrypted, compressed
  archive: the guest sees the plaintext, the disk file holds ciphertext;
- a tampered object: that stripe (and only it) is retried, then Failed;
  reads of it get I/O errors and the disk file never receives its bytes;
  the log names the stripe and the reason;
- a tampered stripe-hashes.json (bad hex, a non-string), a wrong
  archive_kek, format version 99, a stripe size that is not the disk's, no
  archive at all, copy_on_read off: init-metadata and vhost-backend refuse
  with one error line naming the cause.

The disk is 32 MiB + 192 KiB: 1 MiB stripes, the last one cut short;
random, all-zero (shared objects) and repeated stripes, and stripes that are
not archived (zeros)."""

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "archive-golden"))
import make_golden  # noqa: E402  (the independent writer)

KiB = 1 << 10
MiB = 1 << 20
SIZE = 32 * MiB + 192 * KiB
STRIPE = MiB
STRIPE_SECTORS = STRIPE // 512
STRIPES = (SIZE + STRIPE - 1) // STRIPE  # 33, the last one 192 KiB
ZERO = {0, 9, 17}            # all zeros, archived: one shared object unencrypted
REPEATED = {4: 2, 30: 2}     # stripe -> the stripe it repeats
ABSENT = {3, 20, 21}         # not archived: read as zeros
ARCHIVED = sorted(set(range(STRIPES)) - ABSENT)
COMBINATIONS = [("none", False), ("snappy", False), ("none", True), ("snappy", True)]
FAILED_STRIPE = re.compile(r"fetch: stripe (\d+) failed .* after \d+ retries")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def make_original(path):
    """The disk the archives hold: random, zero, repeated, compressible
    stripes; absent stripes are zeros."""
    rng = random.Random(11)
    data = bytearray()
    for i in range(STRIPES):
        size = min(STRIPE, SIZE - i * STRIPE)
        if i in ZERO or i in ABSENT:
            block = bytes(size)
        elif i in REPEATED:
            src = REPEATED[i]
            block = bytes(data[src * STRIPE:src * STRIPE + size])
        elif i % 5 == 1:
            text = b"compressible stripe %d " % i
            block = (text * (size // len(text) + 1))[:size]
        else:
            block = rng.randbytes(size)
        data += block
    assert len(data) == SIZE
    with open(path, "wb") as f:
        f.write(data)
    return bytes(data)


def write_archive(root, original, compression, encrypted):
    """An archive as 69dbc92 writes it, by make_golden's functions (its
    golden XTS keys, wrapped with its golden KEK). A stripe's plaintext is
    what the disk holds (a short last stripe stays short)."""
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    hashes = {}
    for i in ARCHIVED:
        body = original[i * STRIPE:(i + 1) * STRIPE]
        if compression == "snappy":
            body = make_golden.frame(body)
        if encrypted:
            body = make_golden.xts(body, i * STRIPE_SECTORS, True)
        h = hashlib.sha256(body).hexdigest()
        hashes[str(i)] = h
        with open(os.path.join(root, "data", h), "wb") as f:
            f.write(body)
    key = None
    if encrypted:
        key = [make_golden.base64.b64encode(make_golden.wrap(k, "aes256-gcm")).decode()
               for k in (make_golden.KEY1, make_golden.KEY2)]
    meta = {"format_version": 1, "stripe_sector_count": STRIPE_SECTORS,
            "encryption_key": key, "compression": compression}
    with open(os.path.join(root, "metadata.json"), "w") as f:
        f.write(json.dumps(meta, separators=(",", ":")))
    with open(os.path.join(root, "stripe-hashes.json"), "w") as f:
        f.write(json.dumps(hashes, separators=(",", ":")))
    return root


def golden_kek():
    """The archive_kek block: make_golden's KEK, in clear (no -k)."""
    b64 = make_golden.base64.b64encode
    return {"method": "aes256-gcm", "key": b64(make_golden.KEK_KEY).decode(),
            "init_vector": b64(make_golden.KEK_IV).decode(),
            "auth_data": b64(make_golden.KEK_AAD).decode()}


def source_block(archive, kek=True):
    block = {"source": "archive", "type": "filesystem", "path": archive, "connections": 4}
    if kek:
        block["archive_kek"] = golden_kek()
    return block


def backend(tmp, name, archive, kek=True, **fields):
    """A vhost-backend (not started) for an empty disk fetching from archive."""
    work = os.path.join(tmp, name)
    os.makedirs(work, exist_ok=True)
    disk = harness.make_disk(os.path.join(work, "disk.raw"), SIZE)
    rpc = os.path.join(work, "rpc.sock")
    be = harness.VhostBackend(work, disk, metadata_path=os.path.join(work, "disk.meta"),
                              rpc_socket_path=rpc, copy_on_read=True, num_queues=2,
                              queue_size=128, stripe_source=source_block(archive, kek),
                              **fields)
    return be, disk, rpc


def init_metadata(be, stripes=STRIPES, archived=ARCHIVED):
    proc = harness.init_metadata(be.config, "-v")
    out = proc.stdout.decode()
    expect(f"{stripes} stripes of {STRIPE} bytes, {len(archived)} with a source" in out, out)
    has_source = harness.metadata_stripes(be.config)["has-source"]
    expect(has_source == set(archived), f"HAS_SOURCE {has_source}")


def bench(be, *args, timeout=300):
    return harness.run_bench(["--socket", be.socket] + list(args), timeout=timeout)


def read_whole_disk(be, name="dump.raw"):
    out = os.path.join(be.workdir, name)
    if os.path.exists(out):
        os.unlink(out)
    code, _, err = bench(be, "--mode", "read", "--bs", "64k", "--iodepth", "4", "--queues",
                         "2", "--dump", out)
    expect(code == 0, f"whole-disk read failed: {err}\n{be.process.log_text()[-3000:]}")
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def expect_no_failed_stripe(be):
    failed = FAILED_STRIPE.search(be.process.log_text())
    expect(not failed, f"a stripe failed: {failed and failed.group(0)}")


def hydrate(be, rpc, stripes=STRIPES, archived=ARCHIVED):
    def done():
        expect_no_failed_stripe(be)
        s = harness.lazy_status(rpc)
        return s["fetched"] == s["source"] == len(archived)
    harness.wait_for(done, 120, "autofetch to hydrate the disk")
    s = harness.lazy_status(rpc)
    expect(s == {"fetched": len(archived), "source": len(archived), "total": stripes}, s)


def finish(be):
    status = be.stop()
    expect(status == 0, f"vhost-backend exit status {status}:\n{be.process.log_text()[-3000:]}")
    expect_no_failed_stripe(be)


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_every_combination(tmp, original):
    """Read through the backend while autofetch runs: equal to the original;
    then hydrated completely, and the disk file is the original."""
    for compression, encrypted in COMBINATIONS:
        name = f"{compression}-{'xts' if encrypted else 'plain'}"
        archive = write_archive(os.path.join(tmp, "archives", name), original, compression,
                                encrypted)
        be, disk, rpc = backend(tmp, name, archive, autofetch=True)
        init_metadata(be)
        with be:
            expect(read_whole_disk(be) == original, f"{name}: the disk read differs")
            hydrate(be, rpc)
            finish(be)
        expect(file_bytes(disk) == original, f"{name}: the hydrated disk file differs")
        # Everything fetched: the archive is not read again (it may be gone).
        shutil.rmtree(archive)
        with be:
            expect(read_whole_disk(be) == original, f"{name}: after the archive is gone")
            finish(be)


def test_encrypted_device(tmp, original):
    """An encrypted device over an encrypted, compressed archive: the guest
    sees the original's archived stripes, the disk file holds ciphertext.
    (Stripes without a source are never fetched: they read as whatever the
    fresh disk file decrypts to, as with any source.)"""
    archive = write_archive(os.path.join(tmp, "archives", "device-crypt"), original, "snappy",
                            True)
    keys = harness.encryption_key_field(*harness.random_xts_keys())
    be, disk, rpc = backend(tmp, "device-crypt", archive, autofetch=True, encryption_key=keys)
    init_metadata(be)
    def archived_equal(data):
        return all(data[i * STRIPE:(i + 1) * STRIPE] == original[i * STRIPE:(i + 1) * STRIPE]
                   for i in ARCHIVED)
    with be:
        expect(archived_equal(read_whole_disk(be)), "the decrypted disk differs")
        hydrate(be, rpc)
        finish(be)
    stored = file_bytes(disk)
    for i in (1, 2, 5):
        expect(stored[i * STRIPE:(i + 1) * STRIPE] != original[i * STRIPE:(i + 1) * STRIPE],
               f"stripe {i} is stored in clear")
    with be:
        expect(archived_equal(read_whole_disk(be, "again.raw")), "after a restart")
        finish(be)


def object_path(archive, stripe):
    with open(os.path.join(archive, "stripe-hashes.json")) as f:
        return os.path.join(archive, "data", json.load(f)[str(stripe)])


def test_tampered_object(tmp, original):
    """One flipped byte in a stripe's object: that stripe is retried, then
    Failed, and reads of it fail; the rest of the disk reads right, and the
    disk file never receives the bad stripe."""
    bad = 6
    archive = write_archive(os.path.join(tmp, "archives", "tampered"), original, "snappy",
                            False)
    path = object_path(archive, bad)
    body = bytearray(file_bytes(path))
    body[len(body) // 2] ^= 1
    with open(path, "wb") as f:
        f.write(body)
    be, disk, rpc = backend(tmp, "tampered", archive)
    init_metadata(be)
    with be:
        code, _, err = bench(be, "--mode", "read", "--bs", "64k", "--offset", f"{bad}m",
                             "--size", "1m", "--timeout", "60s", timeout=120)
        expect(code != 0, "a read of the tampered stripe succeeded")
        log = be.process.log_text()
        expect(f"archive source: stripe {bad} failed: sha256 hash mismatch for stripe {bad}"
               in log, log[-3000:])
        failed = FAILED_STRIPE.findall(log)
        expect(failed == [str(bad)], f"failed stripes {failed}")
        # Every other stripe reads right, before and after the bad one.
        for offset, size in ((0, bad * MiB), ((bad + 1) * MiB, SIZE - (bad + 1) * MiB)):
            out = os.path.join(be.workdir, "part.raw")
            harness.make_disk(out, SIZE)
            code, _, err = bench(be, "--mode", "read", "--bs", "64k", "--iodepth", "4",
                                 "--offset", str(offset), "--size", str(size), "--dump", out)
            expect(code == 0, f"reading around the bad stripe: {err}")
            got = file_bytes(out)[offset:offset + size]
            expect(got == original[offset:offset + size], f"data at {offset} differs")
        # A second read of the Failed stripe fails at once.
        code, _, _ = bench(be, "--mode", "read", "--bs", "4k", "--offset", f"{bad}m",
                           "--size", "4k", timeout=60)
        expect(code != 0, "the Failed stripe was readable")
        s = harness.lazy_status(rpc)
        expect(s["fetched"] == len([i for i in ARCHIVED if i != bad]), s)
        status = be.stop()
        expect(status == 0, f"exit status {status}")
    stored = file_bytes(disk)
    expect(stored[bad * STRIPE:(bad + 1) * STRIPE] == bytes(STRIPE),
           "the tampered stripe's bytes reached the disk file")
    meta = harness.metadata_stripes(be.config)
    expect(bad not in meta.get("fetched", set()), "the tampered stripe is marked fetched")


def one_error_line(proc):
    err = proc.stderr.decode(errors="replace")
    lines = [line for line in err.splitlines() if line.startswith("[ERROR]")]
    expect(proc.returncode == 1 and len(lines) == 1, f"exit {proc.returncode}: {err}")
    return lines[0]


def start_fails(be):
    proc = subprocess.run([harness.binary("vhost-backend"), "-f", be.config],
                          capture_output=True, timeout=60)
    line = one_error_line(proc)
    expect(not os.path.exists(be.socket), "the socket exists after a failed start")
    return line


def test_refused_archives(tmp, original):
    """Bad archives and configs: init-metadata and vhost-backend refuse with
    one line naming the cause. (The metadata is written from a good archive
    first, so the back end gets as far as reading the bad one.)"""
    good = write_archive(os.path.join(tmp, "archives", "refused-good"), original, "none", True)
    bad = os.path.join(tmp, "archives", "refused-bad")
    bad_hash = "A" * 64
    cases = [
        ("stripe-hashes.json", json.dumps({"0": bad_hash}), True,
         "failed to parse stripe-hashes.json"),
        ("stripe-hashes.json", json.dumps({"0": 12}), True,
         "failed to parse stripe-hashes.json"),
        ("stripe-hashes.json", json.dumps({"0": "../metadata.json"}), True,
         "failed to parse stripe-hashes.json"),
        ("metadata.json", json.dumps({"format_version": 99, "stripe_sector_count": 2048}),
         True, "unsupported archive format version 99 (supported 1..=1)"),
        ("metadata.json", json.dumps({"format_version": 1, "stripe_sector_count": 1024}),
         True, "the archive's stripe_sector_count 1024 does not match the disk's stripe of "
         "2048 sectors"),
        (None, None, False, "archive_kek cannot unwrap the archive's encryption_key"),
        ("metadata.json", None, True, "GetObject metadata.json failed: no such object"),
    ]
    be, _, _ = backend(tmp, "refused", good)
    init_metadata(be)
    for name, content, kek, message in cases:
        if os.path.exists(bad):
            shutil.rmtree(bad)
        shutil.copytree(good, bad)
        if name and content is None:
            os.unlink(os.path.join(bad, name))
        elif name:
            with open(os.path.join(bad, name), "w") as f:
                f.write(content)
        harness.write_config(be.config, {
            "path": os.path.join(be.workdir, "disk.raw"), "socket": be.socket,
            "metadata_path": os.path.join(be.workdir, "disk.meta"), "copy_on_read": True,
            "stripe_source": source_block(bad, kek)})
        line = start_fails(be)
        expect(f"stripe_source: archive {bad}: " in line and message in line,
               f"{message!r}: {line}")
        proc = harness.init_metadata(be.config, "--force", check=False)
        line = one_error_line(proc)
        expect(message in line, f"init-metadata, {message!r}: {line}")

    # A wrong KEK of the right kind: the tag does not verify.
    kek = golden_kek()
    kek["key"] = make_golden.base64.b64encode(bytes(32)).decode()
    block = source_block(good)
    block["archive_kek"] = kek
    harness.write_config(be.config, {
        "path": os.path.join(be.workdir, "disk.raw"), "socket": be.socket,
        "metadata_path": os.path.join(be.workdir, "disk.meta"), "copy_on_read": True,
        "stripe_source": block})
    line = start_fails(be)
    expect("archive key1: Failed to decrypt data" in line, line)

    # The config rules of an archive source.
    for fields, message in (
            ({"copy_on_read": False},
             "copy_on_read must be enabled when using archive stripe source."),
            ({"metadata_path": None},
             "metadata_path must be specified when using a stripe source.")):
        cfg = {"path": os.path.join(be.workdir, "disk.raw"), "socket": be.socket,
               "metadata_path": os.path.join(be.workdir, "disk.meta"), "copy_on_read": True,
               "stripe_source": source_block(good)}
        cfg.update(fields)
        harness.write_config(be.config, {k: v for k, v in cfg.items() if v is not None})
        expect(message in start_fails(be), message)
        proc = harness.init_metadata(be.config, check=False)
        expect(message in one_error_line(proc), f"init-metadata: {message}")


TESTS = [test_every_combination, test_encrypted_device, test_tampered_object,
         test_refused_archives]


def main():
    """Runs every test, or those named on the command line."""
    with harness.scratch_dir("ubiblk-archive-source-") as tmp:
        original = make_original(os.path.join(tmp, "original.raw"))
        chosen = [t for t in TESTS if not sys.argv[1:] or t.__name__ in sys.argv[1:]]

        def bound(test):
            def run():
                test(tmp, original)
            run.__name__ = test.__name__
            return run
        harness.main([bound(t) for t in chosen])


if __name__ == "__main__":
    main()
