#!/usr/bin/env python3
"""A real guest (QEMU TCG, one boot) on vhost-backend whose disk lives only in
an archive in Swift's S3 API, the archive compressed and encrypted, the local
disk encrypted too.

    host   an ext4 image (mkfs.ext4 -d) of a folder: a shell script, a text
           file it reads, a random file of 12+ MiB, a zero file, a nested
           compressible file; the image is a device (init-metadata,
           track_written false, so every stripe is archived) archived with
           `archive --compress --encrypt` into a Swift bucket (credentials
           and archive_kek KEK-wrapped); metadata.json says snappy and
           encrypted; the image is deleted
    host   a sparse disk with encryption_key, copy_on_read and
           stripe_source {source: archive, type: s3}; init-metadata from the
           archive; vhost-backend without autofetch
    boot   mount /dev/vda (ext4); every file's sha256 equals the host's; the
           script on the disk runs and prints what the host expects; a new
           file is written, synced and read back after dropping caches;
           unmount; e2fsck -fn on the device
    host   SIGTERM (exit 0); vhost-backend again with autofetch; the RPC
           status reaches fetched == source (every stripe); SIGTERM (exit 0);
           the disk file holds no plaintext of the random file; decrypted
           with `xts` it passes e2fsck -fn and debugfs's rdump gives back
           exactly the original files plus the guest's new one

Swift is started once and stopped by pid whatever happens, like every other
process. Each check is one line, then "N passed, N failed". --keep keeps the
temp folder. Set UBIBLK_GUEST_TIMEOUT (seconds for the boot, default 300)
for slow builds."""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import run_guest  # noqa: E402
import swift  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
STRIPE = MiB                     # init-metadata's default stripe (2048 sectors)
DISK_BYTES = 64 * MiB
STRIPES = DISK_BYTES // STRIPE   # track_written false: every stripe is archived
RANDOM_BYTES = 12 * MiB + 12345  # not a multiple of a block or a stripe
NUM_QUEUES = 2
QUEUE_SIZE = 128
HYDRATE_TIMEOUT = 120
TOOL_TIMEOUT = 300
TCG_THREAD = "single"
BUCKET = "ubiblk-guest"
PREFIX = "images/ext4-golden"
KEK_YAML = ("method: aes256-gcm\nkey: 7Gf0v3yq1oTqFh1sWcS8m4Yt8VQ3Vd5qJH2m0b8Zl9E=\n"
            "init_vector: AAECAwQFBgcICQoL\nauth_data: YXJjaGl2ZS1ndWVzdA==\n")
GREETING = "hello from an archive in swift"
SCRIPT = "bin/hello.sh"
# The script reads files beside it, so its output proves more than that the
# script's own blocks arrived.
SCRIPT_TEXT = r'''#!/bin/sh
top=$(dirname "$0")/..
echo "archived script ran: $(cat "$top/greeting.txt") $(wc -c <"$top/data/random.bin")"
'''
SCRIPT_OUTPUT = f"archived script ran: {GREETING} {RANDOM_BYTES}"
# Every file make_tree writes, in the order the guest checks them.
TREE_FILES = [SCRIPT, "greeting.txt", "data/random.bin", "data/zeros.bin",
              "data/nested/notes.txt"]
NEW_FILE = "guest/written.bin"
NEW_BYTES = 3 * MiB + 512

GUEST = r'''
DEV=/dev/vda
MNT=/tmp/archived

device() {
	wait_for_dev $DEV 20
	sectors=$(cat /sys/block/vda/size)
	echo "vda: $sectors sectors"
	[ $((sectors * 512)) -eq @DISK_BYTES@ ] || { echo "size is $((sectors * 512))"; exit 1; }
}

mount_disk() {
	mkdir -p $MNT
	mount -t ext4 $DEV $MNT
	grep " $MNT " /proc/mounts
	ls -lR $MNT | head -40
}

file_sha256() { # file_sha256 PATH WANT
	got=$(sha256sum <"$MNT/$1" | cut -d' ' -f1)
	echo "$1: $got, want $2"
	[ "$got" = "$2" ]
}

run_script() {
	out=$("$MNT/@SCRIPT@")
	echo "output: $out"
	echo "want:   @SCRIPT_OUTPUT@"
	[ "$out" = "@SCRIPT_OUTPUT@" ]
}

write_file() {
	mkdir -p "$(dirname "$MNT/@NEW_FILE@")"
	cp '@PATTERN@' "$MNT/@NEW_FILE@"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	got=$(sha256sum <"$MNT/@NEW_FILE@" | cut -d' ' -f1)
	value written_sha256 "$got"
	echo "@NEW_FILE@ read back after drop_caches: $got, want @PATTERN_SHA256@"
	[ "$got" = "@PATTERN_SHA256@" ]
}

umount_disk() {
	umount $MNT
	! grep " $MNT " /proc/mounts
}

fsck_disk() {
	e2fsck -fn $DEV
}

check device device
check mount mount_disk
@FILE_CHECKS@
check run-script run_script
check write-file write_file
check umount umount_disk
check e2fsck fsck_disk
'''


def file_check_name(rel):
    return "sha256-" + re.sub(r"[^A-Za-z0-9.]+", "-", rel)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def tree_manifest(root):
    """{relative path: (sha256, mode bits)} of every regular file under root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            out[rel] = (sha256_file(path), stat.S_IMODE(os.lstat(path).st_mode))
    return out


def make_tree(root):
    """The folder the ext4 image is built from: a script, what it reads, a
    random file, zeros (a shared, well compressed stripe) and text."""
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "data", "nested"))
    with open(os.path.join(root, SCRIPT), "w") as f:
        f.write(SCRIPT_TEXT)
    os.chmod(os.path.join(root, SCRIPT), 0o755)
    with open(os.path.join(root, "greeting.txt"), "w") as f:
        f.write(GREETING + "\n")
    harness.random_file(os.path.join(root, "data", "random.bin"), RANDOM_BYTES, seed=1111)
    with open(os.path.join(root, "data", "zeros.bin"), "wb") as f:
        f.write(bytes(2 * MiB))
    with open(os.path.join(root, "data", "nested", "notes.txt"), "w") as f:
        f.write("".join(f"line {i}: the disk lives only in the archive\n"
                        for i in range(20000)))


class Session:
    """Runs the scenario once; the test functions assert on what it
    recorded. Every process is stopped by pid whatever happens."""

    def __init__(self, keep):
        self.keep = keep
        self.error = None
        self.timings = {}
        self.guest = None
        self.tail = ""
        self.manifest = {}
        self.pattern_sha = None
        self.summary = None
        self.archive_meta = None
        self.b1, self.b2 = {}, {}
        self.status_after_boot = None
        self.hydrated = None
        self.backend_log = ""
        self.plaintext_on_disk = None
        self.host_fsck = None
        self.recovered = None

    def run(self):
        timeout = int(os.environ.get("UBIBLK_GUEST_TIMEOUT", "300"))
        t = time.monotonic()
        kernel, initrd = run_guest.prepare()
        self.timings["prepare"] = time.monotonic() - t
        scratch, tmp = run_guest.scratch_dir("ubiblk-guest-archive-", harness.BUILD_DIR,
                                             keep=self.keep)
        try:
            self._scenario(tmp, kernel, initrd, timeout)
        except Exception:  # noqa: BLE001 - reported by the first test
            self.error = traceback.format_exc()
        finally:
            log = os.path.join(tmp, "vhost-backend.log")
            if os.path.exists(log):
                with open(log, "rb") as f:
                    self.backend_log = f.read().decode(errors="replace")
            if scratch:
                scratch.cleanup()
            else:
                print(f"kept {tmp}", flush=True)

    def _tick(self, name, t):
        self.timings[name] = time.monotonic() - t
        return time.monotonic()

    def _wrap(self, kek, secrets):
        """Each secret (bytes) wrapped under the KEK, as the configs hold it."""
        text = "".join(base64.b64encode(s).decode() + "\n" for s in secrets)
        out = subprocess.run([harness.binary("xts"), "-k", kek, "--wrap"], input=text,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        wrapped = out.split()
        if len(wrapped) != len(secrets):
            raise RuntimeError(f"xts --wrap gave {len(wrapped)} lines for {len(secrets)}")
        return wrapped

    def _archive_fields(self, s3, wrapped):
        """The archive's location and keys as "key: value" YAML lines: one
        per line they are the target config, joined with commas the body of
        the device's stripe_source."""
        access, secret, key, iv, aad = wrapped
        return ["type: s3", f'bucket: "{BUCKET}"', f'prefix: "{PREFIX}"',
                f'endpoint: "{s3.endpoint}"', f'region: "{s3.region}"',
                f'credentials: {{access_key_id: "{access}", secret_access_key: "{secret}"}}',
                f'archive_kek: {{method: aes256-gcm, key: "{key}", init_vector: "{iv}", '
                f'auth_data: "{aad}"}}']

    def _run_tool(self, argv, what):
        proc = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n"
                               f"{proc.stdout.decode(errors='replace')}"
                               f"{proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode(errors="replace")

    def _stop(self, be, record):
        record["alive_after_guest"] = be.process.alive()
        try:
            record["status"] = be.stop()
        except TimeoutError as e:
            record["stop_error"] = str(e)

    def _scenario(self, tmp, kernel, initrd, timeout):
        t = time.monotonic()
        kek = os.path.join(tmp, "kek.yaml")
        with open(kek, "w") as f:
            f.write(KEK_YAML)
        os.chmod(kek, 0o600)

        # The filesystem image, built on the host from a folder.
        tree = os.path.join(tmp, "tree")
        make_tree(tree)
        self.manifest = tree_manifest(tree)
        if sorted(self.manifest) != sorted(TREE_FILES):
            raise RuntimeError(f"the tree holds {sorted(self.manifest)}")
        with open(os.path.join(tree, "data", "random.bin"), "rb") as f:
            random_head = f.read(64 * KiB)
        image = os.path.join(tmp, "image.raw")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "archived", "-d", tree, image,
                        f"{DISK_BYTES // KiB}k"], check=True, timeout=120, capture_output=True)
        if os.path.getsize(image) != DISK_BYTES:
            raise RuntimeError(f"mkfs.ext4 made {os.path.getsize(image)} bytes")
        shutil.rmtree(tree)  # from here on only the hashes stand for the files
        pattern = harness.random_file(os.path.join(tmp, "pattern.raw"), NEW_BYTES, seed=77)
        self.pattern_sha = sha256_file(pattern)
        source_cfg = harness.write_config(os.path.join(tmp, "image.yaml"), {
            "path": image, "metadata_path": os.path.join(tmp, "image.meta"),
            "track_written": False})
        harness.init_metadata(source_cfg)
        t = self._tick("host image", t)

        with swift.SwiftS3(workdir=os.path.join(tmp, "swift")) as s3:
            t = self._tick("swift start", t)
            s3.create_bucket(BUCKET)
            k1, k2 = harness.random_xts_keys()
            wrapped = self._wrap(kek, [s3.access_key.encode(), s3.secret_key.encode(),
                                       os.urandom(32), os.urandom(12), b"golden-ext4",
                                       k1, k2])
            where = self._archive_fields(s3, wrapped[:5])
            target = os.path.join(tmp, "target.yaml")
            with open(target, "w") as f:
                f.write("".join(line + "\n" for line in where))
            out = self._run_tool([harness.binary("archive"), "-f", source_cfg,
                                  "--target-config", target, "-k", kek, "--compress",
                                  "--encrypt", "--no-progress"], "archive")
            self.summary = {k: int(v) for k, _, v in
                            (line.partition(": ") for line in out.splitlines()) if v.isdigit()}
            print("     archive: " + "; ".join(out.strip().splitlines()), flush=True)
            status, _, body = s3.request("GET", BUCKET, f"{PREFIX}/metadata.json")
            if status != 200:
                raise RuntimeError(f"GET metadata.json: HTTP {status}: {body[:300]!r}")
            self.archive_meta = json.loads(body)
            # The disk now lives only in Swift.
            for path in (image, os.path.join(tmp, "image.meta"), source_cfg):
                os.unlink(path)
            t = self._tick("archive", t)

            disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_BYTES)
            meta = os.path.join(tmp, "disk.meta")
            rpc = os.path.join(tmp, "rpc.sock")
            fields = dict(metadata_path=meta, rpc_socket_path=rpc, copy_on_read=True,
                          num_queues=NUM_QUEUES, queue_size=QUEUE_SIZE,
                          encryption_key=[json.dumps(w) for w in wrapped[5:]])

            def backend(**more):
                be = harness.VhostBackend(tmp, disk, extra_args=["-k", kek],
                                          **dict(fields, **more))
                with open(be.config, "a") as f:
                    f.write(f"stripe_source: {{source: archive, {', '.join(where)}}}\n")
                return be

            be = backend()
            harness.init_metadata(be.config, "-k", kek)
            t = self._tick("init-metadata", t)

            with be:
                checks = "\n".join(f"check {file_check_name(rel)} file_sha256 '{rel}' "
                                   f"{self.manifest[rel][0]}" for rel in TREE_FILES)
                body = run_guest.substitute(GUEST, {
                    "DISK_BYTES": DISK_BYTES, "SCRIPT": SCRIPT, "SCRIPT_OUTPUT": SCRIPT_OUTPUT,
                    "NEW_FILE": NEW_FILE, "PATTERN": pattern,
                    "PATTERN_SHA256": self.pattern_sha, "FILE_CHECKS": checks})
                self.guest = run_guest.run_guest(tmp, [be.socket], body, timeout=timeout,
                                                 kernel=kernel, initrd=initrd,
                                                 num_queues=NUM_QUEUES, queue_size=QUEUE_SIZE,
                                                 tcg_thread=TCG_THREAD)
                t = self._tick("boot", t)
                self.tail = self.guest.console_tail(60)
                if be.process.alive():
                    self.status_after_boot = harness.lazy_status(rpc)
                self._stop(be, self.b1)

            be = backend(autofetch=True)
            with be:
                harness.wait_for(lambda: not be.process.alive() or
                                 harness.lazy_status(rpc)["fetched"] == STRIPES,
                                 HYDRATE_TIMEOUT, "fetched == source")
                self.hydrated = harness.lazy_status(rpc)
                self._stop(be, self.b2)
            t = self._tick("hydrate", t)

        with open(disk, "rb") as f:
            self.plaintext_on_disk = random_head[:4096] in f.read()
        plain = os.path.join(tmp, "plain.raw")
        self._run_tool([harness.binary("xts"), "-f", be.config, "-k", kek, disk, plain], "xts")
        proc = subprocess.run(["e2fsck", "-fn", plain], capture_output=True, timeout=120)
        self.host_fsck = (proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace"))
        out_dir = os.path.join(tmp, "recovered")
        os.makedirs(out_dir)
        subprocess.run(["debugfs", "-R", f"rdump / {out_dir}", plain], check=True,
                       capture_output=True, timeout=120)
        self.recovered = tree_manifest(out_dir)
        self._tick("host checks", t)


def make_tests(s):
    def ran(what):
        if s.error:
            raise AssertionError(f"not reached: the scenario broke ({s.error.splitlines()[-1]})")
        raise AssertionError(f"{what}: not reached")

    def scenario_runs():
        s.run()
        print("timings: " + "; ".join(f"{k} {v:.1f}s" for k, v in s.timings.items()), flush=True)
        if s.error:
            raise AssertionError("\n" + s.error + "--- backend log tail ---\n" +
                                 "\n".join(s.backend_log.splitlines()[-20:]))

    def archive_holds_every_stripe_compressed_and_encrypted():
        if s.summary is None or s.archive_meta is None:
            ran("archive")
        if s.summary.get("stripes archived") != STRIPES:
            raise AssertionError(f"summary {s.summary}, want {STRIPES} stripes archived")
        if s.summary.get("bytes logical") != DISK_BYTES:
            raise AssertionError(f"summary {s.summary}")
        if not s.summary.get("bytes physical", DISK_BYTES) < DISK_BYTES:
            raise AssertionError(f"nothing compressed: {s.summary}")
        meta = s.archive_meta
        if meta.get("compression") != "snappy" or not meta.get("encryption_key"):
            raise AssertionError(f"metadata.json {meta}")
        if meta.get("stripe_sector_count") != STRIPE // 512:
            raise AssertionError(f"metadata.json {meta}")

    def guest_runs():
        if s.guest is None:
            ran("boot")
        problems = s.guest.failures()
        if problems:
            raise AssertionError("; ".join(problems) + "\n--- console tail ---\n" + s.tail +
                                 "\n--- backend log tail ---\n" +
                                 "\n".join(s.backend_log.splitlines()[-20:]))

    def guest_check(name):
        def test():
            run_guest.assert_check_passed(s.guest, name)
        test.__name__ = "guest_" + name.replace("-", "_").replace(".", "_")
        return test

    def guest_wrote_the_pattern():
        if s.guest is None:
            ran("boot")
        got = s.guest.values.get("written_sha256")
        if got != s.pattern_sha:
            raise AssertionError(f"guest wrote sha256 {got}, the pattern is {s.pattern_sha}")

    def backend_stops_cleanly(tag):
        def test():
            record = s.b1 if tag == "1" else s.b2
            if not record:
                ran(f"backend {tag}")
            if not record.get("alive_after_guest"):
                raise AssertionError("backend died:\n" + s.backend_log[-3000:])
            if record.get("stop_error") or record.get("status") != 0:
                raise AssertionError(f"{record}:\n" + s.backend_log[-3000:])
        test.__name__ = f"backend{tag}_stops_cleanly_on_sigterm"
        return test

    def restarted_backend_hydrates_from_swift():
        if s.hydrated is None:
            ran("hydration")
        print(f"     status after the boot: {s.status_after_boot}; after autofetch: "
              f"{s.hydrated}", flush=True)
        if s.hydrated.get("fetched") != STRIPES or s.hydrated.get("source") != STRIPES:
            raise AssertionError(f"status {s.hydrated}")
        if re.search(r"fetch: stripe \d+ failed", s.backend_log):
            raise AssertionError("a fetch failed:\n" + s.backend_log[-3000:])

    def disk_file_holds_no_plaintext():
        if s.plaintext_on_disk is None:
            ran("disk scan")
        if s.plaintext_on_disk:
            raise AssertionError("the random file's first 4 KiB are in the disk file in clear")

    def decrypted_disk_passes_e2fsck():
        if s.host_fsck is None:
            ran("e2fsck")
        rc, text = s.host_fsck
        if rc != 0:
            raise AssertionError(f"e2fsck -fn exited {rc}:\n{text}")

    def decrypted_disk_holds_the_files_and_the_new_one():
        if s.recovered is None:
            ran("rdump")
        want = dict(s.manifest)
        got = dict(s.recovered)
        new = got.pop(NEW_FILE, None)
        if new is None or new[0] != s.pattern_sha:
            raise AssertionError(f"{NEW_FILE}: {new}, want sha256 {s.pattern_sha}")
        if sorted(got) != sorted(want):
            raise AssertionError(f"files {sorted(got)}, want {sorted(want)}")
        bad = [f"{rel}: {got[rel]} want {want[rel]}" for rel in sorted(want)
               if got[rel] != want[rel]]
        if bad:
            raise AssertionError("; ".join(bad))

    guest_checks = (["device", "mount"] + [file_check_name(rel) for rel in TREE_FILES] +
                    ["run-script", "write-file", "umount", "e2fsck"])
    return ([scenario_runs, archive_holds_every_stripe_compressed_and_encrypted, guest_runs] +
            [guest_check(name) for name in guest_checks] +
            [guest_wrote_the_pattern, backend_stops_cleanly("1"),
             restarted_backend_hydrates_from_swift, backend_stops_cleanly("2"),
             disk_file_holds_no_plaintext, decrypted_disk_passes_e2fsck,
             decrypted_disk_holds_the_files_and_the_new_one])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    # The configs carry the credentials; nothing from the caller's AWS
    # environment may take part.
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    harness.main(make_tests(Session(args.keep)))


if __name__ == "__main__":
    main()
