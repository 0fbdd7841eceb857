"""The archive tool against the filesystem store, end to end.

Disks and their metadata files are built here byte by byte (plain, and
encrypted the way the crypt layer stores them), archived with every
combination of --compress and --encrypt (with and without archive_kek), and
the archive is decoded by the independent Python reader in
tests/archive-golden and compared with what the guest sees: the disk where
it holds data, the raw source where a stripe was never fetched, zeros where
nothing was ever written. Also: the track_written false rule, shared
objects, every command-line and target-config error, a failed stripe read,
a run killed with SIGKILL and repeated (plain and encrypted), archiving
again into a place that holds an archive (its metadata and keys reused, a
failed mapping PUT leaving the old archive whole, settings that differ
refused), and the progress bar on a terminal."""

import base64
import hashlib
import json
import os
import shutil
import pty
import select
import signal
import struct
import subprocess
import sys
import time

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "archive-golden"))
import make_golden  # noqa: E402

SECTOR = 512
SHIFT = 11
STRIPE = SECTOR << SHIFT  # 1 MiB
FETCHED, WRITTEN, HAS_SOURCE = 0x01, 0x02, 0x04
ZERO_OBJECT = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"
ARCHIVE_KEK = (bytes([0x33]) * 32, bytes([0x44]) * 12, b"archive-aad")


def run_archive(*args, timeout=300, check=None):
    """Runs archive; returns (exit code, stdout, stderr)."""
    proc = subprocess.run([harness.binary("archive")] + list(args), capture_output=True,
                          timeout=timeout)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    if check is not None and proc.returncode != check:
        raise AssertionError(f"archive exited {proc.returncode}, expected {check}:\n{err}")
    return proc.returncode, out, err


def summary(stdout):
    """The summary's "name: value" lines as a dict of ints (the counts)."""
    values = {}
    for line in stdout.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            values[name] = int(value)
    return values


def metadata_bytes(headers, shift=SHIFT):
    head = b"BDEV_UBI\0" + struct.pack("<HHB", 1, 0, shift)
    data = head.ljust(SECTOR, b"\0") + bytes(headers)
    return data.ljust(-(-len(data) // SECTOR) * SECTOR, b"\0")


class Device:
    """A disk (disk.raw), its metadata (disk.meta), an optional raw image
    (image.raw) and the device config, in a scratch folder. `stripes` is a
    list of (header, disk bytes) per stripe; the disk may end inside its
    last stripe (tail_sectors). With keys, disk and metadata are stored
    encrypted (each 512-byte sector under its absolute sector number), as
    vhost-backend writes them."""

    def __init__(self, tmp, stripes, image=None, track_written=True, keys=None,
                 tail_sectors=0, name="dev"):
        self.tmp = tmp
        self.stripes = stripes
        self.image = image
        self.keys = keys
        self.disk_path = os.path.join(tmp, name + "-disk.raw")
        self.meta_path = os.path.join(tmp, name + "-disk.meta")
        self.config = os.path.join(tmp, name + ".yaml")
        disk = b"".join(data.ljust(STRIPE, b"\0") for _, data in stripes)
        if tail_sectors:
            disk = disk[:len(disk) - STRIPE + tail_sectors * SECTOR]
        self.disk_size = len(disk)
        meta = metadata_bytes([h for h, _ in stripes])
        if keys:
            disk = make_golden.xts(disk, 0, True, keys[0] + keys[1])
            meta = make_golden.xts(meta, 0, True, keys[0] + keys[1])
        with open(self.disk_path, "wb") as f:
            f.write(disk)
        with open(self.meta_path, "wb") as f:
            f.write(meta)
        fields = {"path": self.disk_path, "metadata_path": self.meta_path,
                  "track_written": track_written, "copy_on_read": True}
        if keys:
            fields["encryption_key"] = harness.encryption_key_field(*keys)
        harness.write_config(self.config, fields)
        if image is not None:
            self.image_path = os.path.join(tmp, name + "-image.raw")
            with open(self.image_path, "wb") as f:
                f.write(image)
            with open(self.config, "a") as f:
                f.write(f'stripe_source: {{source: raw, path: "{self.image_path}"}}\n')

    def guest_view(self, track_written=True):
        """What each stripe holds for the guest; None for a stripe with no
        data that is not archived."""
        view = {}
        for i, (header, data) in enumerate(self.stripes):
            end = min(STRIPE, self.disk_size - i * STRIPE)
            # Not fetched wins over written (a backend killed between the
            # two bits: no guest write reached the stripe).
            if header & HAS_SOURCE and not header & FETCHED:
                view[i] = self.image[i * STRIPE:(i + 1) * STRIPE][:end].ljust(STRIPE, b"\0")
            elif header & (WRITTEN | HAS_SOURCE):
                view[i] = data.ljust(STRIPE, b"\0")[:end].ljust(STRIPE, b"\0")
            elif not track_written:
                view[i] = data.ljust(STRIPE, b"\0")[:end].ljust(STRIPE, b"\0")
            else:
                view[i] = None
        return view


def target_config(tmp, name="target", kek=None, root=None, **extra):
    path = os.path.join(tmp, name + ".yaml")
    root = root or os.path.join(tmp, name)
    lines = ["type: filesystem", f'path: "{root}"']
    if kek:
        key, iv, aad = (base64.b64encode(v).decode() for v in kek)
        lines.append(f'archive_kek: {{method: aes256-gcm, key: "{key}", '
                     f'init_vector: "{iv}", auth_data: "{aad}"}}')
    lines += [f"{k}: {v}" for k, v in extra.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, root


def data_objects(root):
    """The objects in data/ (temporary files of a killed PUT start with '.')."""
    names = os.listdir(os.path.join(root, "data"))
    return sorted(n for n in names if not n.startswith("."))


def check_archive(root, view, kek=None, compression="none", encrypted=False, only_named=True):
    """Decodes the archive with the Python reader: exactly the stripes with
    data, each equal to the guest's view; returns the stripe -> hash map.
    only_named: data/ holds no object the mapping does not name (false for
    a place archived into more than once)."""
    meta, stripes = make_golden.decode(root, kek)
    assert meta["stripe_sector_count"] == STRIPE // SECTOR, meta
    assert meta["compression"] == compression, meta
    assert (meta["encryption_key"] is not None) == encrypted, meta
    expected = {i: v for i, v in view.items() if v is not None}
    assert sorted(stripes) == sorted(expected), (sorted(stripes), sorted(expected))
    for i, data in expected.items():
        assert stripes[i] == data, f"stripe {i} differs from the guest's view"
    with open(os.path.join(root, "stripe-hashes.json")) as f:
        hashes = {int(k): v for k, v in json.load(f).items()}
    assert sorted(os.listdir(root)) == ["data", "metadata.json", "stripe-hashes.json"]
    if only_named:
        assert data_objects(root) == sorted(set(hashes.values()))
    else:
        assert set(hashes.values()) <= set(data_objects(root))
    return hashes


def mixed_stripes():
    """Random, zero and repeated stripes, all written (no source)."""
    rnd = [os.urandom(STRIPE) for _ in range(4)]
    text = (b"repeated stripe " * (STRIPE // 16))
    data = [rnd[0], bytes(STRIPE), text, rnd[1], bytes(STRIPE), text, rnd[2], text,
            bytes(STRIPE), rnd[3]]
    return [(WRITTEN, d) for d in data]


def test_every_combination():
    """Plain and encrypted disks x --compress x --encrypt (archive_kek, or
    keys in clear with --allow-plaintext-key): the Python reader gets the
    guest's data back; unencrypted, equal stripes share one object."""
    with harness.scratch_dir() as tmp:
        stripes = mixed_stripes()
        devices = [Device(tmp, stripes, tail_sectors=3, name="plain"),
                   Device(tmp, stripes, tail_sectors=3, name="enc",
                          keys=harness.random_xts_keys())]
        n = 0
        for dev in devices:
            view = dev.guest_view()
            for compress in (False, True):
                for mode in ("none", "kek", "clear"):
                    n += 1
                    kek = ARCHIVE_KEK if mode == "kek" else None
                    target, root = target_config(tmp, f"t{n}", kek=kek)
                    args = ["-f", dev.config, "--target-config", target]
                    args += ["--compress"] if compress else []
                    args += {"none": [], "kek": ["--encrypt"],
                             "clear": ["--encrypt", "--allow-plaintext-key"]}[mode]
                    _, out, _ = run_archive(*args, check=0)
                    hashes = check_archive(root, view, kek,
                                           "snappy" if compress else "none", mode != "none")
                    counts = summary(out)
                    distinct = len(set(hashes.values()))
                    assert counts["stripes archived"] == 10, out
                    assert counts["objects uploaded"] == distinct, out
                    assert counts["stripes deduplicated"] == 10 - distinct, out
                    assert counts["stripes skipped"] == 0, out
                    assert counts["objects already stored"] == 0, out
                    assert counts["bytes logical"] == dev.disk_size, out
                    sizes = sum(os.path.getsize(os.path.join(root, "data", h))
                                for h in set(hashes.values()))
                    assert counts["bytes physical"] == sizes == counts["bytes uploaded"], out
                    if mode == "none":
                        # random x4, zero, text: 6 objects for 10 stripes
                        assert distinct == 6, hashes
                        assert hashes[1] == hashes[4] == hashes[8]
                        assert hashes[2] == hashes[5] == hashes[7]
                        if not compress:
                            assert hashes[1] == ZERO_OBJECT
                    else:
                        # the tweak depends on the stripe: no two objects alike
                        assert distinct == 10, hashes
                        if compress:
                            assert sizes < 7 * STRIPE, sizes


def test_lazily_fetched_disk():
    """Stripes fetched or written come from the disk, stripes never fetched
    from the raw image (the disk holds garbage there), the image's partial
    last stripe ends in zeros (not in bytes of the stripe read before),
    stripes beyond the image without data are skipped."""
    with harness.scratch_dir() as tmp:
        image = os.urandom(5 * STRIPE + 7 * SECTOR)
        garbage = [os.urandom(STRIPE) for _ in range(8)]
        headers = [HAS_SOURCE | FETCHED, HAS_SOURCE, HAS_SOURCE | FETCHED | WRITTEN, HAS_SOURCE,
                   HAS_SOURCE | FETCHED, HAS_SOURCE, 0, WRITTEN]
        disk = [image[0:STRIPE], garbage[1], garbage[2], garbage[3],
                image[4 * STRIPE:5 * STRIPE], garbage[5], garbage[6], garbage[7]]
        for keys in (None, harness.random_xts_keys()):
            name = "enc" if keys else "plain"
            dev = Device(tmp, list(zip(headers, disk)), image=image, keys=keys, name=name)
            target, root = target_config(tmp, "t-" + name)
            _, out, _ = run_archive("-f", dev.config, "--target-config", target, "-c",
                                    check=0)
            view = dev.guest_view()
            assert view[5] == image[5 * STRIPE:].ljust(STRIPE, b"\0")
            assert view[6] is None
            check_archive(root, view, compression="snappy")
            counts = summary(out)
            assert counts["stripes archived"] == 7, out
            assert counts["stripes skipped"] == 1, out
            assert counts["stripes from source"] == 3, out


def test_written_but_not_fetched():
    """WRITTEN without FETCHED on a source stripe, as a backend killed
    between storing the two bits leaves it (the crash campaign found such
    headers): no guest write reached the stripe, so it is archived from the
    source, not from the disk's garbage (found by test_crash_campaign.py;
    the tool used to take the disk's bytes)."""
    with harness.scratch_dir() as tmp:
        image = os.urandom(3 * STRIPE)
        garbage = [os.urandom(STRIPE) for _ in range(3)]
        headers = [HAS_SOURCE | WRITTEN, HAS_SOURCE | FETCHED | WRITTEN, HAS_SOURCE | WRITTEN]
        disk = [garbage[0], garbage[1], garbage[2]]
        dev = Device(tmp, list(zip(headers, disk)), image=image)
        target, root = target_config(tmp)
        _, out, _ = run_archive("-f", dev.config, "--target-config", target, check=0)
        view = dev.guest_view()
        assert view[0] == image[:STRIPE] and view[2] == image[2 * STRIPE:]
        assert view[1] == garbage[1]
        check_archive(root, view)
        counts = summary(out)
        assert counts["stripes archived"] == 3, out
        assert counts["stripes from source"] == 2, out


def test_disk_fetched_from_an_archive():
    """A disk whose stripe source is an archive, nothing fetched yet, archived
    again (encrypted, with another KEK): every stripe comes from the first
    archive through the archive source, and reads back the same."""
    with harness.scratch_dir() as tmp:
        first = Device(tmp, mixed_stripes(), tail_sectors=3, name="first")
        target1, root1 = target_config(tmp, "t1", kek=ARCHIVE_KEK)
        run_archive("-f", first.config, "--target-config", target1, "-c", "-e", check=0)
        key, iv, aad = (base64.b64encode(v).decode() for v in ARCHIVE_KEK)
        disk = harness.make_disk(os.path.join(tmp, "second.raw"), first.disk_size)
        config = os.path.join(tmp, "second.yaml")
        harness.write_config(config, {"path": disk, "metadata_path": disk + ".meta",
                                      "copy_on_read": True})
        with open(config, "a") as f:
            f.write(f'stripe_source: {{source: archive, type: filesystem, path: "{root1}", '
                    f'archive_kek: {{method: aes256-gcm, key: "{key}", init_vector: "{iv}", '
                    f'auth_data: "{aad}"}}}}\n')
        harness.init_metadata(config)
        kek2 = (os.urandom(32), os.urandom(12), b"second")
        target2, root2 = target_config(tmp, "t2", kek=kek2)
        _, out, _ = run_archive("-f", config, "--target-config", target2, "-e", check=0)
        assert summary(out)["stripes from source"] == 10, out
        check_archive(root2, first.guest_view(), kek2, encrypted=True)


def test_partial_last_stripes_end_in_zeros():
    """A disk and an image that end inside a stripe, read into buffers that
    already carried other stripes (more stripes than buffers): past the
    end the archived stripe holds zeros, not the previous stripe's bytes."""
    with harness.scratch_dir() as tmp:
        count = 40
        disk = Device(tmp, [(WRITTEN, os.urandom(STRIPE)) for _ in range(count)],
                      tail_sectors=3, name="disk")
        image = os.urandom((count - 3) * STRIPE + 5 * SECTOR)
        headers = [HAS_SOURCE if i < count - 2 else 0 for i in range(count)]
        lazy = Device(tmp, [(h, bytes(STRIPE)) for h in headers], image=image, name="lazy")
        for dev in (disk, lazy):
            target, root = target_config(tmp, "t-" + os.path.basename(dev.config))
            run_archive("-f", dev.config, "--target-config", target, check=0)
            view = dev.guest_view()
            last = max(i for i, v in view.items() if v is not None)
            assert view[last].endswith(bytes(STRIPE // 2)), last
            check_archive(root, view)


def test_track_written_false():
    """On a track_written false disk a stripe without a source may hold
    written data: every one is archived (the all-zero ones as one shared
    object); with track_written true only WRITTEN ones are."""
    with harness.scratch_dir() as tmp:
        data = [os.urandom(STRIPE), bytes(STRIPE), os.urandom(STRIPE), bytes(STRIPE),
                bytes(STRIPE)]
        for track in (False, True):
            name = "tw" if track else "no-tw"
            headers = [WRITTEN if track and i == 0 else 0 for i in range(len(data))]
            dev = Device(tmp, list(zip(headers, data)), track_written=track, name=name)
            target, root = target_config(tmp, "t-" + name)
            _, out, _ = run_archive("-f", dev.config, "--target-config", target, check=0)
            hashes = check_archive(root, dev.guest_view(track))
            counts = summary(out)
            if track:
                assert sorted(hashes) == [0], hashes
                assert counts["stripes skipped"] == 4, out
            else:
                assert sorted(hashes) == [0, 1, 2, 3, 4], hashes
                assert hashes[1] == hashes[3] == hashes[4] == ZERO_OBJECT
                assert counts["objects uploaded"] == 3, out
                assert counts["stripes deduplicated"] == 2, out


def test_errors():
    """Each command-line and target-config error: one line, exit 1 (2 for a
    bad command line), nothing written."""
    with harness.scratch_dir() as tmp:
        dev = Device(tmp, mixed_stripes()[:2])
        target, root = target_config(tmp)
        f = ["-f", dev.config]

        def fails(args, text, code=1):
            rc, out, err = run_archive(*args)
            assert rc == code, (args, rc, err)
            assert text in err, (args, err)
            assert not os.path.exists(os.path.join(root, "metadata.json")), args

        missing = os.path.join(tmp, "missing.yaml")
        fails(f + ["--target-config", missing],
              f"Failed to read archive target config {missing}: No such file")
        bad = os.path.join(tmp, "bad.yaml")
        with open(bad, "w") as fh:
            fh.write("type: [filesystem\n")
        fails(f + ["--target-config", bad], "Failed to parse archive target config YAML: ")
        for prefix in ("a/../b", "..", "./a"):
            s3, _ = target_config(tmp, "s3", bucket="b", prefix=json.dumps(prefix))
            with open(s3) as fh:
                text = fh.read().replace("type: filesystem", "type: s3")
            with open(s3, "w") as fh:
                fh.write(text)
            fails(f + ["--target-config", s3],
                  f"Invalid S3 prefix (contains . or .. components): {prefix}")
        for connections in (0, 257):
            s3 = os.path.join(tmp, "conn.yaml")
            with open(s3, "w") as fh:
                fh.write(f'type: s3\nbucket: "b"\nconnections: {connections}\n')
            fails(f + ["--target-config", s3], f"connections: {connections} is out of range "
                  "1..256")
        no_meta = os.path.join(tmp, "no-meta.yaml")
        harness.write_config(no_meta, {"path": dev.disk_path})
        fails(["-f", no_meta, "--target-config", target], "Metadata path is missing")
        fails(f + ["--target-config", target, "--encrypt"],
              "--encrypt without an archive_kek")
        fails(f, "the option --target-config <PATH> is required", 2)
        fails(["--target-config", target], "the option --config <PATH> is required", 2)
        fails(f + ["--target-config", target, "--bogus"], "Usage: archive", 2)
        fails(f + ["--target-config", target, "-u"], "--unlink-kek requires --kek", 2)
        rc, out, _ = run_archive("--help")
        assert rc == 0 and "Usage: archive" in out and "--allow-plaintext-key" in out, out
        rc, out, _ = run_archive("-V")
        assert rc == 0 and out.startswith("archive "), out


def test_failed_read_aborts():
    """A stripe the source cannot deliver (the image shrank after the
    metadata was made) ends the run with "I/O error while fetching stripe
    N"; neither JSON file is written."""
    with harness.scratch_dir() as tmp:
        image = os.urandom(4 * STRIPE)
        stripes = [(HAS_SOURCE, bytes(STRIPE))] * 4
        dev = Device(tmp, stripes, image=image)
        with open(dev.image_path, "r+b") as f:
            f.truncate(2 * STRIPE)
        target, root = target_config(tmp)
        rc, out, err = run_archive("-f", dev.config, "--target-config", target)
        assert rc == 1, err
        assert "I/O error while fetching stripe 2" in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert out == "", out
        # metadata.json comes first, the mapping only when every object is in
        assert sorted(os.listdir(root)) == ["data", "metadata.json"], os.listdir(root)


def test_killed_and_rerun():
    """SIGKILL in the middle of a run, then the same command again: it
    completes, the archive reads back identical, and it uploads only the
    objects the first run had not stored (a third run uploads nothing)."""
    with harness.scratch_dir() as tmp:
        count = 192
        stripes = [(WRITTEN, os.urandom(STRIPE)) for _ in range(count)]
        dev = Device(tmp, stripes)
        target, root = target_config(tmp)
        argv = [harness.binary("archive"), "-f", dev.config, "--target-config", target]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            data = os.path.join(root, "data")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if os.path.isdir(data) and len(data_objects(root)) >= 20:
                    break
                time.sleep(0.002)
            assert proc.poll() is None, "the run ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        assert os.path.exists(os.path.join(root, "metadata.json"))
        assert not os.path.exists(os.path.join(root, "stripe-hashes.json"))
        stored = len(data_objects(root))
        assert 20 <= stored < count, stored
        _, out, _ = run_archive("-f", dev.config, "--target-config", target, check=0)
        counts = summary(out)
        assert counts["stripes archived"] == count, out
        assert counts["objects already stored"] == stored, (stored, out)
        assert counts["objects uploaded"] == count - stored, (stored, out)
        # Temporary files of the killed PUTs may remain; the objects are whole.
        for name in os.listdir(data):
            if name.startswith("."):
                os.unlink(os.path.join(data, name))
        check_archive(root, dev.guest_view())
        _, out, _ = run_archive("-f", dev.config, "--target-config", target, check=0)
        counts = summary(out)
        assert counts["objects uploaded"] == 0 and counts["bytes uploaded"] == 0, out
        assert counts["objects already stored"] == count, out
        check_archive(root, dev.guest_view())


def kill_after_objects(argv, root, objects):
    """Starts argv and kills it with SIGKILL once data/ holds `objects`
    objects."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        data = os.path.join(root, "data")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.isdir(data) and len(data_objects(root)) >= objects:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_encrypted_killed_and_rerun():
    """--compress --encrypt with archive_kek, SIGKILL in the middle, then the
    same command again: metadata.json was written before any object, the
    second run encodes with its keys (the file stays byte for byte), finds
    the first run's objects by HEAD and uploads only the others; the
    archive reads back identical."""
    with harness.scratch_dir() as tmp:
        count = 192
        dev = Device(tmp, [(WRITTEN, os.urandom(STRIPE)) for _ in range(count)])
        target, root = target_config(tmp, kek=ARCHIVE_KEK)
        args = ["-f", dev.config, "--target-config", target, "--compress", "--encrypt"]
        kill_after_objects([harness.binary("archive")] + args, root, 20)
        stored = len(data_objects(root))
        assert 20 <= stored < count, stored
        metadata = os.path.join(root, "metadata.json")
        assert os.path.exists(metadata), "metadata.json is written before any object"
        assert not os.path.exists(os.path.join(root, "stripe-hashes.json"))
        first = read_bytes(metadata)
        _, out, _ = run_archive(*args, check=0)
        counts = summary(out)
        assert counts["stripes archived"] == count, out
        assert counts["objects already stored"] == stored, (stored, out)
        assert counts["objects uploaded"] == count - stored, (stored, out)
        assert read_bytes(metadata) == first
        for name in os.listdir(os.path.join(root, "data")):
            if name.startswith("."):  # temporary files of the killed PUTs
                os.unlink(os.path.join(root, "data", name))
        check_archive(root, dev.guest_view(), ARCHIVE_KEK, "snappy", True)


def test_archive_again_into_the_same_place():
    """A complete archive, then the disk changes (two stripes rewritten, one
    written for the first time) and is archived again into the same place,
    plain and --compress --encrypt: metadata.json stays byte for byte, only
    the new stripes' objects are uploaded (the others are the same bytes
    under the same keys), and the archive decodes to the new disk."""
    with harness.scratch_dir() as tmp:
        for kek in (None, ARCHIVE_KEK):
            name = "enc" if kek else "plain"
            old = [(WRITTEN, os.urandom(STRIPE)) for _ in range(8)] + [(0, bytes(STRIPE))] * 2
            dev = Device(tmp, old, name=name)
            target, root = target_config(tmp, "t-" + name, kek=kek)
            args = ["-f", dev.config, "--target-config", target]
            args += ["--compress", "--encrypt"] if kek else []
            run_archive(*args, check=0)
            first = read_bytes(os.path.join(root, "metadata.json"))
            new = list(old)
            for i in (2, 5, 9):
                new[i] = (WRITTEN, os.urandom(STRIPE))
            dev = Device(tmp, new, name=name)
            _, out, _ = run_archive(*args, check=0)
            counts = summary(out)
            assert counts["stripes archived"] == 9, out
            assert counts["objects uploaded"] == 3, out
            assert counts["objects already stored"] == 6, out
            assert read_bytes(os.path.join(root, "metadata.json")) == first
            check_archive(root, dev.guest_view(), kek, "snappy" if kek else "none", bool(kek),
                          only_named=False)
            assert len(data_objects(root)) == 8 + 3


def test_first_run_asks_nothing():
    """A target without metadata.json holds none of a run's objects, so the
    first run stores every object without asking (an object planted under
    data/ beforehand is written over, not counted as stored); a second run
    into the same place asks and finds them all."""
    with harness.scratch_dir() as tmp:
        stripes = [(WRITTEN, os.urandom(STRIPE)) for _ in range(4)]
        dev = Device(tmp, stripes)
        target, root = target_config(tmp)
        args = ["-f", dev.config, "--target-config", target]
        run_archive(*args, check=0)
        planted = sorted(data_objects(root))[0]
        shutil.rmtree(root)
        os.makedirs(os.path.join(root, "data"))
        with open(os.path.join(root, "data", planted), "wb") as f:
            f.write(b"planted")
        _, out, _ = run_archive(*args, check=0)
        counts = summary(out)
        assert counts["objects uploaded"] == 4 and counts["objects already stored"] == 0, out
        check_archive(root, dev.guest_view())
        _, out, _ = run_archive(*args, check=0)
        counts = summary(out)
        assert counts["objects uploaded"] == 0 and counts["objects already stored"] == 4, out


def test_failed_mapping_put_keeps_the_old_archive():
    """Archiving again, and the mapping cannot be replaced (for the run
    stripe-hashes.json is a directory, so the final rename fails): exit 1
    after the new objects are stored, and the old mapping with metadata.json
    still decodes to the OLD disk exactly - the moment a crash could leave.
    Once the fault is gone, the same command uploads nothing and the archive
    is the new disk."""
    with harness.scratch_dir() as tmp:
        old = [(WRITTEN, os.urandom(STRIPE)) for _ in range(6)]
        dev = Device(tmp, old)
        old_view = dev.guest_view()
        target, root = target_config(tmp, kek=ARCHIVE_KEK)
        args = ["-f", dev.config, "--target-config", target, "--compress", "--encrypt"]
        run_archive(*args, check=0)
        new = list(old)
        for i in (1, 4):
            new[i] = (WRITTEN, os.urandom(STRIPE))
        dev = Device(tmp, new)
        mapping = os.path.join(root, "stripe-hashes.json")
        os.rename(mapping, mapping + ".kept")
        os.mkdir(mapping)
        rc, out, err = run_archive(*args)
        assert rc == 1, err
        assert "stripe-hashes.json" in err and len(err.strip().splitlines()) == 1, err
        assert out == "", out
        assert len(data_objects(root)) == 6 + 2
        os.rmdir(mapping)
        os.rename(mapping + ".kept", mapping)
        check_archive(root, old_view, ARCHIVE_KEK, "snappy", True, only_named=False)
        _, out, _ = run_archive(*args, check=0)
        counts = summary(out)
        assert counts["objects uploaded"] == 0 and counts["objects already stored"] == 6, out
        check_archive(root, dev.guest_view(), ARCHIVE_KEK, "snappy", True, only_named=False)


def tree(root):
    """Every file under root: relative path -> bytes."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, root)] = read_bytes(path)
    return files


def test_settings_that_differ_are_refused():
    """A place that holds an archive made with other settings - compression,
    encryption, the KEK its keys are wrapped with, the stripe size - or a
    metadata.json that cannot be parsed: one line naming the difference and
    the way out, exit 1, nothing written."""
    with harness.scratch_dir() as tmp:
        dev = Device(tmp, mixed_stripes()[:3])
        target, root = target_config(tmp, kek=ARCHIVE_KEK)
        other_kek, _ = target_config(tmp, "other-kek", root=root,
                                     kek=(os.urandom(32), os.urandom(12), b"other"))
        no_kek, _ = target_config(tmp, "no-kek", root=root)
        plain_target, plain_root = target_config(tmp, "plain")
        f = ["-f", dev.config]
        run_archive(*f, "--target-config", target, "-c", "-e", check=0)
        run_archive(*f, "--target-config", plain_target, check=0)
        way_out = "archive to a fresh path or prefix, or remove the old archive"

        def refused(where, args, text):
            before = tree(where)
            rc, out, err = run_archive(*args)
            assert rc == 1, (args, rc, err)
            assert text in err and way_out in err, (args, err)
            assert len(err.strip().splitlines()) == 1, err
            assert out == "", out
            assert tree(where) == before, args

        refused(root, f + ["--target-config", target, "-e"],
                f"{root} holds an archive with compression snappy, but this run asks for none "
                "(--compress)")
        refused(root, f + ["--target-config", target, "-c"],
                f"{root} holds an encrypted archive, but this run does not ask for --encrypt")
        refused(plain_root, f + ["--target-config", plain_target, "-e",
                                 "--allow-plaintext-key"],
                f"{plain_root} holds an unencrypted archive, but this run asks for --encrypt")
        refused(plain_root, f + ["--target-config", plain_target, "-c"],
                f"{plain_root} holds an archive with compression none, but this run asks for "
                "snappy (--compress)")
        refused(root, f + ["--target-config", other_kek, "-c", "-e"],
                f"{root} holds an archive whose keys the target's archive_kek cannot unwrap: "
                "archive key1: ")
        refused(root, f + ["--target-config", no_kek, "-c", "-e", "--allow-plaintext-key"],
                f"{root} holds an archive whose keys the target's archive_kek cannot unwrap: ")
        metadata = os.path.join(root, "metadata.json")
        meta = json.loads(read_bytes(metadata))
        meta["stripe_sector_count"] = 1024
        with open(metadata, "w") as fh:
            json.dump(meta, fh)
        refused(root, f + ["--target-config", target, "-c", "-e"],
                f"{root} holds an archive with stripe_sector_count 1024, but the disk's "
                "stripes have 2048 sectors")
        with open(metadata, "w") as fh:
            fh.write("not json")
        refused(root, f + ["--target-config", target, "-c", "-e"],
                f"{root} holds a metadata.json that cannot be used: failed to parse archive "
                "metadata: ")


def test_progress_bar_on_a_terminal():
    """stderr a terminal: a bar that reaches 100%; not a terminal (every
    other test): no bar; --no-progress: none either."""
    with harness.scratch_dir() as tmp:
        dev = Device(tmp, mixed_stripes())
        for extra, expect in (([], True), (["--no-progress"], False)):
            target, _ = target_config(tmp, "t" + "".join(extra))
            master, slave = pty.openpty()
            proc = subprocess.Popen([harness.binary("archive"), "-f", dev.config,
                                     "--target-config", target] + extra,
                                    stdout=subprocess.PIPE, stderr=slave)
            os.close(slave)
            out = proc.communicate(timeout=120)[0].decode()
            tty = b""
            while select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                tty += chunk
            os.close(master)
            assert proc.returncode == 0, tty
            text = tty.decode(errors="replace")
            assert ("100% 10/10 stripes" in text) == expect, text
            assert "stripes archived: 10" in out, out


if __name__ == "__main__":
    harness.main([test_first_run_asks_nothing, test_every_combination, test_lazily_fetched_disk,
                  test_disk_fetched_from_an_archive,
                  test_partial_last_stripes_end_in_zeros, test_track_written_false,
                  test_written_but_not_fetched, test_errors, test_failed_read_aborts,
                  test_killed_and_rerun,
                  test_encrypted_killed_and_rerun, test_archive_again_into_the_same_place,
                  test_failed_mapping_put_keeps_the_old_archive,
                  test_settings_that_differ_are_refused, test_progress_bar_on_a_terminal])
