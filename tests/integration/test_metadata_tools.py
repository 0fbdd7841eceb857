"""init-metadata and dump-metadata end to end: the exact seven-line dump,
the file they write byte for byte, the --force rule, creating and extending
the file, --map, and every error path (one line, exit 1; usage: exit 2)."""

import base64
import json
import os
import re
import stat
import subprocess

import harness

MIB = 1024 * 1024
GOLDEN_PREFIX = bytes([0x42, 0x44, 0x45, 0x56, 0x5F, 0x55, 0x42, 0x49, 0x00, 0x01, 0x00, 0x00,
                       0x00])  # + shift byte
FETCHED, WRITTEN, HAS_SOURCE = 0x01, 0x02, 0x04


def run(tool, *args, umask=None):
    """Runs a tool; returns (exit code, stdout, stderr)."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    proc = subprocess.run([harness.binary(tool)] + list(args), capture_output=True, timeout=60,
                          preexec_fn=preexec)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def write_yaml(path, fields, source=None):
    """A device config; `source` is the stripe_source map (dict) if any."""
    harness.write_config(path, fields)
    if source is not None:
        inner = ", ".join(f"{k}: {json.dumps(v)}" for k, v in source.items())
        with open(path, "a") as f:
            f.write(f"stripe_source: {{{inner}}}\n")
    return path


class Setup:
    """disk.raw (10 MiB) and image.raw (5 MiB + 3 sectors: a partial last
    source stripe) in a scratch folder, metadata not created yet."""

    def __init__(self, tmp, disk_size=10 * MIB, image_size=5 * MIB + 1536):
        self.tmp = tmp
        self.disk = harness.make_disk(os.path.join(tmp, "disk.raw"), disk_size)
        self.image = os.path.join(tmp, "image.raw")
        with open(self.image, "wb") as f:
            f.write(os.urandom(image_size))
        self.meta = os.path.join(tmp, "disk.meta")
        self.config = write_yaml(os.path.join(tmp, "config.yaml"),
                                 {"path": self.disk, "metadata_path": self.meta},
                                 {"source": "raw", "path": self.image})

    def init(self, *args):
        return run("init-metadata", "-f", self.config, *args)

    def dump(self, *args):
        return run("dump-metadata", "-f", self.config, *args)

    def set_headers(self, flags_by_stripe):
        with open(self.meta, "r+b") as f:
            for stripe, flags in flags_by_stripe.items():
                f.seek(512 + stripe)
                f.write(bytes([flags]))

    def meta_bytes(self):
        with open(self.meta, "rb") as f:
            return f.read()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_ok(result, what):
    code, out, err = result
    expect(code == 0, f"{what}: exit {code}, stderr: {err!r}")
    return out


def expect_error(result, code, needle, what):
    got, out, err = result
    expect(got == code, f"{what}: exit {got} (wanted {code}), stderr: {err!r}")
    expect(needle in err, f"{what}: {needle!r} not in stderr {err!r}")
    if code == 1:
        errors = [l for l in err.splitlines() if l.startswith("[ERROR]")]
        expect(len(errors) == 1 and needle in errors[0], f"{what}: not one error line: {err!r}")
        expect(out == "", f"{what}: stdout not empty: {out!r}")


def test_raw_image_with_partial_last_stripe():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        out = expect_ok(s.init(), "init-metadata")
        expect(out == "", f"init-metadata printed {out!r}")
        st = os.stat(s.meta)
        expect(stat.S_IMODE(st.st_mode) == 0o600, f"mode {oct(st.st_mode)}")
        expect(st.st_size == 1024, f"size {st.st_size}")  # 512 + 10 stripes, rounded
        data = s.meta_bytes()
        expect(data[:14] == GOLDEN_PREFIX + bytes([11]), f"sector 0: {data[:14].hex()}")
        expect(data[14:512] == bytes(498), "reserved bytes not zero")
        # 5 MiB + 3 sectors: stripes 0..5 have a source, the 6th only partly.
        expect(data[512:522] == bytes([HAS_SOURCE] * 6 + [0] * 4), data[512:522].hex())
        expect(data[522:] == bytes(len(data) - 522), "surplus headers not zero")
        out = expect_ok(s.dump(), "dump-metadata")
        expect(out == f"data file: {s.disk} (10485760 bytes)\n"
                      f"source: raw (path: {s.image}, size: 5244416 bytes)\n"
                      "metadata version: 1.0\n"
                      "stripe size: 1048576 bytes\n"
                      "fetched stripes: \n"
                      "written stripes: \n"
                      "has-source stripes: 0-5\n", f"dump: {out!r}")


def test_shift_option_and_legacy_image_path():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp, disk_size=MIB, image_size=100 * 1024)
        write_yaml(s.config, {"path": s.disk, "metadata_path": s.meta, "image_path": s.image})
        expect_ok(s.init("-s", "6"), "init -s 6")
        out = expect_ok(s.dump(), "dump")
        # 32 KiB stripes: 32 of them, the 100 KiB image covers 0..3 (the 4th partly).
        expect("stripe size: 32768 bytes\n" in out, out)
        expect("has-source stripes: 0-3\n" in out, out)
        expect(f"source: raw (path: {s.image}, size: 102400 bytes)\n" in out, out)
        expect(os.path.getsize(s.meta) == 1024, "512 + 32 headers -> 1024")
        expect_ok(s.init("--stripe-sector-count-shift=16", "--force"), "init shift 16")
        out = expect_ok(s.dump(), "dump")
        expect("stripe size: 33554432 bytes\nfetched stripes: \nwritten stripes: \n"
               "has-source stripes: 0\n" in out, out)
        expect(s.meta_bytes()[13] == 16, "shift byte")


def test_no_source():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        write_yaml(s.config, {"path": s.disk, "metadata_path": s.meta})
        expect_ok(s.init(), "init")
        out = expect_ok(s.dump(), "dump")
        expect(out.splitlines(keepends=True)[1:] == [
            "source: None\n", "metadata version: 1.0\n", "stripe size: 1048576 bytes\n",
            "fetched stripes: \n", "written stripes: \n", "has-source stripes: \n"], out)
        expect(s.meta_bytes()[512:] == bytes(512), "headers not zero")


def test_lists_and_force_rule():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        expect_ok(s.init(), "init")
        s.set_headers({0: HAS_SOURCE | FETCHED, 1: HAS_SOURCE | FETCHED,
                       3: HAS_SOURCE | FETCHED | WRITTEN, 7: WRITTEN, 9: WRITTEN})
        out = expect_ok(s.dump(), "dump")
        expect("fetched stripes: 0, 1, 3\nwritten stripes: 3, 7, 9\n"
               "has-source stripes: 0-5\n" in out, out)
        before = s.meta_bytes()
        expect_error(s.init(), 1, f"{s.meta} is already initialised (3 of 6 stripes fetched); "
                     "use --force to reset it", "init over a used file")
        expect(s.meta_bytes() == before, "refused init changed the file")
        expect_ok(s.init("--force"), "init --force")
        out = expect_ok(s.dump(), "dump")
        expect("fetched stripes: \nwritten stripes: \nhas-source stripes: 0-5\n" in out, out)

        # Metadata of another version is not ours to overwrite either.
        with open(s.meta, "r+b") as f:
            f.seek(11)
            f.write(b"\x01")
        expect_error(s.init(), 1, "use --force to reset it", "init over version 1.1")
        expect_error(s.dump(), 1, "Metadata version mismatch! Expected: 1.0, Found: 1.1",
                     "dump of version 1.1")
        expect_ok(s.init("--force"), "init --force over version 1.1")
        expect_ok(s.dump(), "dump after reset")


def test_file_creation_and_extension():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        # Created 0600 whatever the umask.
        expect_ok(run("init-metadata", "-f", s.config, umask=0), "init with umask 0")
        expect(stat.S_IMODE(os.stat(s.meta).st_mode) == 0o600, "new file mode")

        # An existing empty file is extended; its mode is the operator's.
        os.unlink(s.meta)
        open(s.meta, "wb").close()
        os.chmod(s.meta, 0o640)
        expect_ok(s.init(), "init into an empty file")
        expect(os.path.getsize(s.meta) == 1024, "extended to 1024")
        expect(stat.S_IMODE(os.stat(s.meta).st_mode) == 0o640, "existing mode kept")

        # A larger (uninitialised) file is never shrunk; its surplus is zeroed.
        with open(s.meta, "wb") as f:
            f.write(b"\xff" * 8192)
        expect_ok(s.init(), "init into an 8 KiB junk file")
        data = s.meta_bytes()
        expect(len(data) == 8192, "not shrunk")
        expect(data[512:522] == bytes([HAS_SOURCE] * 6 + [0] * 4), data[512:522].hex())
        expect(data[522:] == bytes(8192 - 522), "surplus not zeroed")
        expect("has-source stripes: 0-5\n" in expect_ok(s.dump(), "dump"), "dump")

        # A short file of odd size is extended to the sector-rounded minimum.
        with open(s.meta, "wb") as f:
            f.write(b"\x01" * 700)
        expect_ok(s.init(), "init into a 700-byte file")
        expect(os.path.getsize(s.meta) == 1024, "extended to 1024")

        with open(s.meta, "wb") as f:
            f.write(bytes(3000))
        expect_error(s.init(), 1, "not a multiple of 512", "odd-sized large file")

        os.unlink(s.meta)
        target = os.path.join(tmp, "real.meta")
        harness.make_disk(target, 1024)
        os.symlink(target, s.meta)
        expect_error(s.init(), 1, "is a symbolic link", "symlink")
        expect(open(target, "rb").read() == bytes(1024), "symlink target written")

        os.unlink(s.meta)
        os.mkdir(s.meta)
        expect_error(s.init(), 1, s.meta, "directory")
        os.rmdir(s.meta)

        # A metadata_path naming the image or the disk is never overwritten.
        image_bytes = open(s.image, "rb").read()
        for victim in (s.image, s.disk):
            write_yaml(s.config, {"path": s.disk, "metadata_path": victim},
                       {"source": "raw", "path": s.image})
            expect_error(s.init("--force"), 1, "(the disk or the image); refusing to overwrite it", victim)
        expect(open(s.image, "rb").read() == image_bytes, "image changed")

        # Failing after creating the file leaves no half-made file behind.
        write_yaml(s.config, {"path": s.disk, "metadata_path": os.path.join(tmp, "no", "m")})
        expect_error(s.init(), 1, "No such file or directory", "missing directory")


def test_map():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        expect_ok(s.init(), "init")
        s.set_headers({0: HAS_SOURCE | FETCHED, 1: HAS_SOURCE | FETCHED,
                       2: HAS_SOURCE | FETCHED | WRITTEN, 7: WRITTEN})
        plain = expect_ok(s.dump(), "dump")
        out = expect_ok(s.dump("--map"), "dump --map")
        expect(out.startswith(plain + "\n"), "the seven lines come first, then a blank line")
        picture = out[len(plain) + 1:].splitlines()
        expect(picture == [
            "stripe map: 10 stripes of 1 MiB, 1 stripe per character",
            "0 |##w... w  |",
            "legend: '#' fetched, 'w' written, '+' partly fetched, '.' not fetched, "
            "' ' no source",
            "fetched: 3 (30.0%)  written: 2 (20.0%)  not fetched: 3 (30.0%)  "
            "no source: 4 (40.0%)  of 10 stripes"], picture)

        out = expect_ok(s.dump("--map", "--width", "4"), "dump --map --width 4")
        rows = [l for l in out.splitlines() if l.endswith("|")]
        expect(rows == ["0 |##w.|", "4 |.. w|", "8 |  |"], rows)
        expect_error(s.dump("--width", "4"), 2, "--width", "--width without --map")
        expect_error(s.dump("--map", "--width", "0"), 2, "--width", "--width 0")
        expect_error(s.dump("--map", "--width=x"), 2, "--width", "--width x")

        # A big disk: several stripes per character, at most 32 rows.
        harness.make_disk(s.disk, 40 * 1024 * MIB)
        expect_ok(s.init("--force", "-s", "6"), "init 40 GiB with 32 KiB stripes")
        out = expect_ok(s.dump("--map"), "dump --map of a big disk")
        expect("stripe map: 1310720 stripes of 32 KiB, 640 stripes per character" in out, out)
        rows = [l for l in out.splitlines() if l.endswith("|")]
        expect(len(rows) == 32 and all(len(r.split("|")[1]) == 64 for r in rows), rows[:2])
        # The image covers 161 stripes: all in the first character, none fetched.
        expect(rows[0].split("|")[1] == "." + " " * 63, rows[0])


def test_shift_range():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        for bad in ("5", "17", "0", "255"):
            expect_error(s.init("-s", bad), 1,
                         "stripe-sector-count-shift must be between 6 and 16.", f"-s {bad}")
        expect(not os.path.exists(s.meta), "a bad shift created the file")
        for bad in ("256", "-1", "abc", ""):
            expect_error(s.init("-s", bad), 2, "stripe-sector-count-shift", f"-s {bad!r}")


def test_usage():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        for tool in ("init-metadata", "dump-metadata"):
            expect_error(run(tool), 2, "--config", f"{tool} without -f")
            expect_error(run(tool, "-f", s.config, "--bogus"), 2, "Usage:", f"{tool} --bogus")
            expect_error(run(tool, "-f", s.config, "-u"), 2, "--unlink-kek requires --kek",
                         f"{tool} -u")
            expect_error(run(tool, "-f", s.config, "extra"), 2, "unexpected argument",
                         f"{tool} extra")
            code, out, _ = run(tool, "--help")
            expect(code == 0 and out.startswith(f"Usage: {tool} -f <CONFIG>"), out)
            code, out, _ = run(tool, "-V")
            expect(code == 0 and re.fullmatch(
                rf"{tool} 0\.4\.0\nxts engine: (vaes-avx512|gcrypt|openssl)\n", out),
                   f"{tool} -V: {out!r}")
        expect(not os.path.exists(s.meta), "usage errors touched the metadata")


def test_config_errors():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        cfg = s.config
        write_yaml(cfg, {"path": s.disk})
        for tool in ("init-metadata", "dump-metadata"):
            expect_error(run(tool, "-f", cfg), 1, "metadata_path is none", tool)

        write_yaml(cfg, {"path": os.path.join(tmp, "missing.raw"), "metadata_path": s.meta})
        for tool in ("init-metadata", "dump-metadata"):
            expect_error(run(tool, "-f", cfg), 1, "missing.raw", f"{tool}: missing disk")

        write_yaml(cfg, {"path": s.disk, "metadata_path": s.meta},
                   {"source": "raw", "path": os.path.join(tmp, "missing.img")})
        for tool in ("init-metadata", "dump-metadata"):
            expect_error(run(tool, "-f", cfg), 1, "missing.img", f"{tool}: missing image")
        expect(not os.path.exists(s.meta), "failed init left a metadata file")

        # Encryption works (test_encryption.py); equal key halves do not.
        key = base64.b64encode(bytes(range(32))).decode()
        with open(cfg, "w") as f:
            f.write(f"path: {json.dumps(s.disk)}\nmetadata_path: {json.dumps(s.meta)}\n"
                    f"encryption_key: [\"{key}\", \"{key}\"]\n")
        for tool in ("init-metadata", "dump-metadata"):
            expect_error(run(tool, "-f", cfg), 1, "the two keys must differ", tool)

        write_yaml(cfg, {"path": s.disk, "metadata_path": s.meta, "copy_on_read": True},
                   {"source": "archive", "type": "filesystem", "path": tmp})
        expect_error(run("init-metadata", "-f", cfg), 1, "GetObject metadata.json failed",
                     "init with an archive source that holds no archive")
        expect(not os.path.exists(s.meta), "failed init left a metadata file")


def test_dump_describes_every_source():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        write_yaml(s.config, {"path": s.disk, "metadata_path": s.meta})
        expect_ok(s.init(), "init")
        sources = [
            ({"source": "remote", "address": "127.0.0.1:4555"},
             "remote (address: 127.0.0.1:4555, psk_identity: None)"),
            ({"source": "archive", "type": "filesystem", "path": "/srv/archive"},
             "archive filesystem (path: /srv/archive)"),
            ({"source": "archive", "type": "s3", "bucket": "b", "region": "eu-1"},
             "archive s3 (bucket: b, prefix: None, endpoint: None, region: eu-1, "
             "profile: None, connections: 16)"),
        ]
        for source, line in sources:
            write_yaml(s.config, {"path": s.disk, "metadata_path": s.meta, "copy_on_read": True},
                       source)
            out = expect_ok(s.dump(), f"dump with {source}")
            expect(out.splitlines()[1] == f"source: {line}", out)


def test_dump_rejects_bad_files():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        harness.make_disk(s.meta, 1024)
        expect_error(s.dump(), 1, "Metadata magic mismatch! Expected: [66, 68, 69, 86, 95, 85, "
                     "66, 73, 0], Found: [0, 0, 0, 0, 0, 0, 0, 0, 0]", "all-zero file")
        expect_ok(s.init(), "init over zeros")
        for shift in (5, 18):
            with open(s.meta, "r+b") as f:
                f.seek(13)
                f.write(bytes([shift]))
            expect_error(s.dump(), 1, f"shift {shift} is out of range (6..17)", f"shift {shift}")
        os.truncate(s.meta, 0)
        expect_error(s.dump(), 1, "too short", "empty file")

        # Headers for a smaller disk: dumped with a warning, not refused.
        expect_ok(s.init("--force"), "init")
        harness.make_disk(s.disk, 1024 * MIB)
        code, out, err = s.dump()
        expect(code == 0 and "has 512 stripe headers but the disk has 1024 stripes" in err, err)
        expect("has-source stripes: 0-5\n" in out, out)


def peak_rss_mib(argv):
    """Runs a tool to its end; returns (exit code, stdout, peak RSS in MiB)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.decode(), usage.ru_maxrss // 1024


def test_huge_sparse_metadata_file_costs_no_memory():
    """A 10-stripe disk with a 2 GiB sparse metadata file: the backend reads
    only the disk's headers and dump-metadata walks the rest in pieces, with
    the same output (its lists cover every header of the file)."""
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        expect_ok(s.init(), "init-metadata")
        os.truncate(s.meta, 2 * 1024 * MIB)
        far = 1_500_000_000
        s.set_headers({1: HAS_SOURCE | FETCHED, far: HAS_SOURCE | FETCHED, far + 1: WRITTEN})
        bound = 256  # MiB; a whole-file read needs 2 GiB twice over
        code, out, rss = peak_rss_mib([harness.binary("dump-metadata"), "-f", s.config])
        expect(code == 0, f"dump-metadata exit {code}")
        lines = out.splitlines()
        expect(lines[4:] == [f"fetched stripes: 1, {far}", f"written stripes: {far + 1}",
                             f"has-source stripes: 0-5, {far}"], f"dump: {out!r}")
        expect(rss < bound, f"dump-metadata peaked at {rss} MiB")

        with harness.VhostBackend(tmp, s.disk, metadata_path=s.meta, image_path=s.image) as be:
            with open(f"/proc/{be.process.pid}/status") as f:
                peak = [l for l in f if l.startswith("VmHWM:")][0]
            kib = int(peak.split()[1])
            expect(kib // 1024 < bound, f"vhost-backend peaked at {kib // 1024} MiB")
            expect(be.stop() == 0, "vhost-backend exit status")


if __name__ == "__main__":
    harness.main([
        test_raw_image_with_partial_last_stripe,
        test_shift_option_and_legacy_image_path,
        test_no_source,
        test_lists_and_force_rule,
        test_file_creation_and_extension,
        test_map,
        test_shift_range,
        test_usage,
        test_config_errors,
        test_dump_describes_every_source,
        test_dump_rejects_bad_files,
        test_huge_sparse_metadata_file_costs_no_memory,
    ])
