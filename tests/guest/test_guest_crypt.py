#!/usr/bin/env python3
"""A real Linux guest (QEMU, TCG) on three encrypted vhost-backend disks at
once: what the guest writes reads back, and none of it (nor any of a lazily
served image) is in the files.

    host   three backends, each with its own random AES-XTS keys
           (encryption_key: two different 32-byte halves), 2 queues,
           queue_size 128, told apart in the guest by serial (device_id):
             plain  a 64 MiB sparse disk
             lazy   a 48 MiB sparse disk lazily filled from a plain random
                    raw image (32 MiB + 192 KiB: a partial last stripe),
                    copy_on_read and autofetch (hydrated before the guest
                    reads), track_written
             cold   a 16 MiB disk over an 8 MiB + 192 KiB image, copy_on_read
                    false and no autofetch: reads come from the plain image
                    through the encrypted stack, writes fetch their stripes
           init-metadata -s 9 (256 KiB stripes) runs with the keys in the
           config, so the metadata files are encrypted from the start
    guest  one boot:
             plain  4 MiB of a repeated 64-byte marker and 4 MiB of random
                    data at an odd sector (O_DIRECT), read back O_DIRECT and
                    through the page cache; fio with crc32c verify on both
                    queues; write zeroes read back as zeroes
             lazy, cold  the image's sha256 and cmp with the image over 9p
                    (64 KiB O_DIRECT reads); a marker text written from
                    mid-stripe over a few stripes, read back with the image
                    around it; the sha256 of the whole image area
    host   each backend exits 0 on SIGTERM (lazy: after the RPC status reached
           fetched == source); the disk files hold neither the markers (nor
           any 16-byte block of them), nor any 512-byte sector of the random
           data or of the images; written and fetched sectors are ciphertext,
           nothing else was written; no "BDEV_UBI" anywhere in the metadata
           files; dump-metadata (with the keys) lists the right stripes;
           decrypted on the host (Python "cryptography", skipped when
           missing) every file is exactly what the guest wrote or the backend
           fetched, and the metadata a valid file 1.0; with build/src/bin/xts
           (when built) `xts --action decode` gives the same

Each check is one line, then "N passed, N failed". --keep keeps the temp
folder; --no-encryption runs the same scenario without keys (a control: the
at-rest checks must then fail). Set UBIBLK_GUEST_TIMEOUT (seconds, default
300) for slow builds."""

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import run_guest  # noqa: E402

try:  # an independent AES-XTS for the host-side decryption checks
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ImportError:  # the checks are skipped
    Cipher = None

KiB = 1 << 10
MiB = 1 << 20
SECTOR = 512
NUM_QUEUES = 2
QUEUE_SIZE = 128
TCG_THREAD = "single"   # QEMU 7.2 multi-threaded TCG crashes a few boots (docs/testing-guest.md)
HYDRATE_TIMEOUT = 60
SHIFT = 9                                   # 256 KiB stripes
STRIPE = (1 << SHIFT) * SECTOR
META_MAGIC = b"BDEV_UBI\x00"
FETCHED, WRITTEN_FLAG, HAS_SOURCE = 0x01, 0x02, 0x04

# plain: an encrypted disk without lazy fetching.
PLAIN_ID = "ubiblk-crypt-plain"
PLAIN_BYTES = 64 * MiB
MARKER = b"UBIBLK-CRYPT-MARKER/plain: this text must never reach the file.\n"
MARKER_OFF, MARKER_LEN = 4 * MiB, 4 * MiB
RANDOM_OFF, RANDOM_LEN = 16 * MiB + 7 * SECTOR, 4 * MiB     # starts at an odd sector
FIO_OFF, FIO_JOB_MIB = 32 * MiB, 8                          # 2 jobs, one per queue
WZ_OFF, WZ_LEN = 56 * MiB, 1 * MiB                          # written, then write-zeroed
# Everything the guest writes to it (the rest of the file must stay zero).
PLAIN_WRITES = [(MARKER_OFF, MARKER_LEN), (RANDOM_OFF, RANDOM_LEN),
                (FIO_OFF, 2 * FIO_JOB_MIB * MiB), (WZ_OFF, WZ_LEN)]


class LazyDisk:
    """An encrypted disk lazily served from a plain random image; the guest
    writes `length` bytes of a 64-byte marker text at `off` (mid-stripe)."""

    def __init__(self, name, disk_bytes, image_bytes, off, length, marker, seed, **fields):
        self.name = name
        self.serial = f"ubiblk-crypt-{name}"
        self.disk_bytes = disk_bytes
        self.image_bytes = image_bytes
        self.off, self.length = off, length
        self.marker = marker
        self.seed = seed
        self.fields = fields                        # copy_on_read, autofetch
        self.source_stripes = (image_bytes + STRIPE - 1) // STRIPE
        self.total_stripes = disk_bytes // STRIPE
        self.written = set(range(off // STRIPE, (off + length - 1) // STRIPE + 1))
        self.span = (min(self.written) * STRIPE, (max(self.written) + 1) * STRIPE)
        assert len(marker) == 64 and length % 64 == 0
        assert image_bytes % STRIPE and image_bytes % (64 * KiB) == 0   # partial last stripe
        assert off % STRIPE and (off + length) % STRIPE and off + length < image_bytes
        assert length % (256 * KiB) == 0


LAZY = LazyDisk("lazy", 48 * MiB, 32 * MiB + 192 * KiB, 8 * MiB + 128 * KiB, 1 * MiB,
                b"UBIBLK-CRYPT-MARKER/lazy: written over the fetched image stripe\n",
                seed=2718, copy_on_read=True, autofetch=True)
COLD = LazyDisk("cold", 16 * MiB, 8 * MiB + 192 * KiB, 2 * MiB + 128 * KiB, 512 * KiB,
                b"UBIBLK-CRYPT-MARKER/cold: written over never-fetched stripes...\n",
                seed=1618, copy_on_read=False, autofetch=False)
LAZY_DISKS = (LAZY, COLD)

assert len(MARKER) == 64 and MARKER_LEN % 64 == 0

GUEST_SCRIPT = r'''
drop_caches() { # drop_caches DEV...
	for d in "$@"; do blockdev --flushbufs "$d"; done
	echo 3 >/proc/sys/vm/drop_caches
}

# sha256 of LEN bytes at OFF of DEV, O_DIRECT (OFF and LEN multiples of 512).
direct_sha256() { # DEV OFF LEN
	dd if="$1" bs=64k skip="$2" count="$3" iflag=direct,skip_bytes,count_bytes status=none |
		sha256sum | cut -d' ' -f1
}

dev() { # dev NAME: the device node devices() found for NAME
	cat "/tmp/$1.dev" 2>/dev/null || echo "/dev/no-$1-disk"
}

# The disks, told apart by serial (device_id), not by probe order.
devices() {
	for d in @DEVS@; do wait_for_dev /dev/$d 20; done
	for b in /sys/block/vd*; do
		n=${b##*/}
		s=$(cat "$b/serial")
		bytes=$(($(cat "$b/size") * 512))
		q=$(ls "$b/mq" | wc -l)
		echo "$n: serial '$s', $bytes bytes, $q queues"
		case "$s" in
		@SERIAL_CASES@
		*) echo "unexpected disk $n"; exit 1 ;;
		esac
		echo "/dev/$n" >"/tmp/$name.dev"
		[ "$bytes" -eq "$want" ] || { echo "$n: size $bytes, want $want"; exit 1; }
		[ "$q" -eq @NUM_QUEUES@ ] || { echo "$n: $q queues, want @NUM_QUEUES@"; exit 1; }
	done
	for name in @NAMES@; do
		[ -s "/tmp/$name.dev" ] || { echo "no disk with serial ubiblk-crypt-$name"; exit 1; }
	done
}

# ---- plain: an encrypted disk ----

plain_write() {
	cp '@MARKER_FILE@' /tmp/marker
	cp '@RANDOM_FILE@' /tmp/random
	value plain_marker_sha256 "$(sha256sum </tmp/marker | cut -d' ' -f1)"
	value plain_random_sha256 "$(sha256sum </tmp/random | cut -d' ' -f1)"
	dd if=/tmp/marker of=$P bs=1M seek=@MARKER_OFF@ oflag=direct,seek_bytes conv=notrunc,fsync status=none
	dd if=/tmp/random of=$P bs=1M seek=@RANDOM_OFF@ oflag=direct,seek_bytes conv=notrunc,fsync status=none
	sync
	echo "$P: marker at @MARKER_OFF@ (@MARKER_LEN@ bytes), random data at @RANDOM_OFF@ (@RANDOM_LEN@ bytes)"
}

plain_read_direct() {
	drop_caches $P
	m=$(direct_sha256 $P @MARKER_OFF@ @MARKER_LEN@)
	r=$(direct_sha256 $P @RANDOM_OFF@ @RANDOM_LEN@)
	echo "O_DIRECT: marker range $m (want @MARKER_SHA256@), random range $r (want @RANDOM_SHA256@)"
	[ "$m" = "@MARKER_SHA256@" ] && [ "$r" = "@RANDOM_SHA256@" ]
}

plain_read_cached() {
	drop_caches $P
	m=$(dd if=$P bs=64k skip=@MARKER_OFF@ count=@MARKER_LEN@ iflag=skip_bytes,count_bytes status=none |
		sha256sum | cut -d' ' -f1)
	r=$(dd if=$P bs=64k skip=@RANDOM_OFF@ count=@RANDOM_LEN@ iflag=skip_bytes,count_bytes status=none |
		sha256sum | cut -d' ' -f1)
	echo "page cache: marker range $m, random range $r"
	[ "$m" = "@MARKER_SHA256@" ] && [ "$r" = "@RANDOM_SHA256@" ]
}

plain_fio() {
	cd /tmp
	# Two jobs pinned one per CPU, hence one per queue: encryption on both
	# queues at once; crc32c headers catch misplaced blocks.
	fio --name=crypt --filename=$P --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bssplit=4k/50:16k/20:64k/20:256k/10 \
		--offset=@FIO_OFF@ --size=@FIO_JOB_MIB@M --offset_increment=@FIO_JOB_MIB@M --numjobs=2 \
		--cpus_allowed=0-1 --cpus_allowed_policy=split \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_dump=0 --verify_state_save=0 \
		--group_reporting --output-format=terse --terse-version=3 >/tmp/fio.out
	rc=$?
	awk -F';' '$1 == 3 { print "fio: wrote", $47, "KiB, verified", $6, "KiB, errors", $5 }' /tmp/fio.out
	[ "$rc" -eq 0 ] || { cat /tmp/fio.out; echo "fio exit $rc"; exit 1; }
	awk -F';' -v want=$((2 * @FIO_JOB_MIB@ * 1024)) '$1 == 3 { n++; if ($47 != want || $6 != want) exit 1 } END { if (n != 1) exit 1 }' /tmp/fio.out ||
		{ echo "fio did not write and verify all $((2 * @FIO_JOB_MIB@)) MiB"; exit 1; }
}

plain_write_zeroes() {
	# Zeroes must read back as zeroes, not as the decryption of zeroes.
	n=${P##*/}
	echo "write_zeroes_max_bytes=$(cat /sys/block/$n/queue/write_zeroes_max_bytes)" \
		"discard_max_bytes=$(cat /sys/block/$n/queue/discard_max_bytes)"
	head -c @WZ_LEN@ /dev/urandom >/tmp/wz
	dd if=/tmp/wz of=$P bs=1M seek=@WZ_OFF@ oflag=direct,seek_bytes conv=notrunc,fsync status=none
	blkdiscard -z -o @WZ_OFF@ -l @WZ_LEN@ $P
	drop_caches $P
	dd if=$P bs=64k skip=@WZ_OFF@ count=@WZ_LEN@ iflag=direct,skip_bytes,count_bytes status=none |
		cmp -n @WZ_LEN@ - /dev/zero
	echo "[@WZ_OFF@, +@WZ_LEN@) reads as zeroes after blkdiscard -z"
}

# ---- lazy, cold: encrypted disks lazily served from a plain image ----
# Every read is O_DIRECT, 64 KiB, aligned: inside one stripe, so with
# copy_on_read false (cold) it is served from the image without fetching.

image_sha256() { # DEV N SHA
	got=$(dd if=$1 bs=64k count=$(($2 / 65536)) iflag=direct status=none | sha256sum | cut -d' ' -f1)
	echo "$1: sha256 of [0, $2) $got, want $3"
	[ "$got" = "$3" ]
}

image_cmp() { # DEV N IMAGE
	dd if=$1 bs=64k count=$(($2 / 65536)) iflag=direct status=none | cmp -n $2 - "$3"
	echo "$1: [0, $2) equals $3"
}

lazy_write() { # NAME DEV PATTERN OFF
	cp "$3" "/tmp/$1.pattern"
	value "$1_pattern_sha256" "$(sha256sum <"/tmp/$1.pattern" | cut -d' ' -f1)"
	# 256 KiB writes from mid-stripe: each spans two stripes.
	dd if="/tmp/$1.pattern" of=$2 bs=256k seek=$4 oflag=direct,seek_bytes conv=notrunc,fsync status=none
	sync
	echo "$2: $(wc -c <"/tmp/$1.pattern") bytes of marker at $4"
}

lazy_readback() { # NAME DEV OFF LEN SPAN_LO SPAN_HI IMAGE
	[ -s "/tmp/$1.pattern" ] || { echo "nothing was written"; exit 1; }
	drop_caches $2
	dd if=$2 of=/tmp/span bs=64k skip=$(($5 / 65536)) count=$((($6 - $5) / 65536)) iflag=direct status=none
	end=$(($3 + $4))
	cmp -i $(($3 - $5)):0 -n $4 /tmp/span "/tmp/$1.pattern"
	cmp -i 0:$5 -n $(($3 - $5)) /tmp/span "$7"
	cmp -i $((end - $5)):$end -n $(($6 - end)) /tmp/span "$7"
	echo "$2: [$5, $6) holds the marker at $3, the image around it"
}

check devices devices
P=$(dev plain)
check plain-write plain_write
check plain-read-direct plain_read_direct
check plain-read-cached plain_read_cached
check plain-fio-verify plain_fio
check plain-write-zeroes plain_write_zeroes
@LAZY_CHECKS@
'''

LAZY_CHECKS = r'''
D=$(dev @NAME@)
check @NAME@-image-sha256 image_sha256 $D @IMAGE_BYTES@ @IMAGE_SHA256@
check @NAME@-image-cmp image_cmp $D @IMAGE_BYTES@ '@IMAGE@'
check @NAME@-write lazy_write @NAME@ $D '@PATTERN@' @OFF@
check @NAME@-readback lazy_readback @NAME@ $D @OFF@ @LEN@ @SPAN_LO@ @SPAN_HI@ '@IMAGE@'
check @NAME@-after-write-sha256 image_sha256 $D @IMAGE_BYTES@ @EXPECTED_SHA256@
'''

GUEST_CHECKS = (["devices", "plain-write", "plain-read-direct", "plain-read-cached",
                 "plain-fio-verify", "plain-write-zeroes"] +
                [f"{d.name}-{c}" for d in LAZY_DISKS for c in
                 ("image-sha256", "image-cmp", "write", "readback", "after-write-sha256")])


def xts_decrypt(keys, data, first_sector):
    """AES-256-XTS decryption as ubiblk's format stores sectors (docs/encryption.md):
    one data unit per 512-byte sector, key1 || key2, tweak = 8 zero bytes
    then the sector number as u64 little-endian."""
    key = keys[0] + keys[1]
    out = bytearray()
    for i in range(0, len(data), SECTOR):
        tweak = bytes(8) + (first_sector + i // SECTOR).to_bytes(8, "little")
        d = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
        out += d.update(data[i:i + SECTOR]) + d.finalize()
    return bytes(out)


def read_range(path, off, length):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(length)


def sectors(data, lo=0, hi=None):
    hi = len(data) if hi is None else hi
    return (data[i:i + SECTOR] for i in range(lo, hi, SECTOR))


def nonzero_runs(data, skip=(), base=0):
    """[(lo, hi)] byte ranges (+ base) of non-zero sectors outside the
    `skip` ranges [(off, len)], merged."""
    zero = bytes(SECTOR)
    runs = []
    for i in range(0, len(data), SECTOR):
        if data[i:i + SECTOR] == zero or any(off <= i < off + n for off, n in skip):
            continue
        if runs and runs[-1][1] == base + i:
            runs[-1] = (runs[-1][0], base + i + SECTOR)
        else:
            runs.append((base + i, base + i + SECTOR))
    return runs


def runs_text(runs):
    return ", ".join(f"[{lo}, {hi})" for lo, hi in runs[:5]) + (" ..." if len(runs) > 5 else "")


def plaintext_leaks(data, chunks):
    """Which of `chunks` (bytes) occur in data: [(chunk index, offset)]."""
    found = []
    for n, chunk in enumerate(chunks):
        at = data.find(chunk)
        if at >= 0:
            found.append((n, at))
    return found


def marker_chunks(marker):
    """The marker and its four 16-byte AES blocks."""
    return [marker] + [marker[i:i + 16] for i in range(0, len(marker), 16)]


class Session:
    """Runs the whole scenario once; the test functions assert on what it
    recorded. Every process is stopped by pid whatever happens."""

    def __init__(self, keep, encrypt=True):
        self.keep = keep
        self.encrypt = encrypt
        self.error = None            # a traceback if the scenario itself broke
        self.timings = {}
        self.guest = None
        self.console_tail = ""
        self.names = ["plain"] + [d.name for d in LAZY_DISKS]
        self.backend_log = {n: "" for n in self.names}
        self.stop = {n: {} for n in self.names}
        self.keys = {}
        self.configs = {}
        self.paths = {}              # disk files by name, metadata files by NAME.meta
        self.sha = {}                # sha256 of what the guest writes / reads
        self.expected = {}           # plaintexts that must not be in the files
        self.hydrate_error = None
        self.final_status = None
        self.meta = {}               # name -> dump-metadata's stripe lists
        self.dump_error = {}
        self.files = {}              # name -> contents after the backends stopped
        self.xts_tool = None         # name -> (returncode, stderr) when the tool exists
        self.xts_out = {}

    def run(self):
        timeout = int(os.environ.get("UBIBLK_GUEST_TIMEOUT", "300"))
        t = time.monotonic()
        kernel, initrd = run_guest.prepare()
        self.timings["prepare"] = time.monotonic() - t
        scratch, tmp = run_guest.scratch_dir("ubiblk-guest-crypt-", harness.BUILD_DIR, keep=self.keep)
        try:
            self._scenario(tmp, kernel, initrd, timeout)
        except Exception:  # noqa: BLE001 - reported by the first test
            self.error = traceback.format_exc()
        finally:
            for name in self.names:
                log = os.path.join(tmp, name, "vhost-backend.log")
                if os.path.exists(log):
                    with open(log, "rb") as f:
                        self.backend_log[name] = f.read().decode(errors="replace")
            if scratch:
                scratch.cleanup()
            else:
                print(f"kept {tmp}", flush=True)

    def _stop(self, be, name):
        record = self.stop[name]
        record["alive_after_guest"] = be.process.alive()
        try:
            record["status"] = be.stop()
        except TimeoutError as e:  # killed by the context manager
            record["stop_error"] = str(e)

    def _backend(self, tmp, name, disk_bytes, **fields):
        workdir = os.path.join(tmp, name)
        os.makedirs(workdir)
        disk = harness.make_disk(os.path.join(workdir, "disk.raw"), disk_bytes)
        if self.encrypt:
            self.keys[name] = harness.random_xts_keys()
            fields["encryption_key"] = harness.encryption_key_field(*self.keys[name])
        be = harness.VhostBackend(workdir, disk, num_queues=NUM_QUEUES, queue_size=QUEUE_SIZE,
                                  device_id=f"ubiblk-crypt-{name}", **fields)
        self.configs[name] = be.config
        self.paths[name] = disk
        return be

    def _scenario(self, tmp, kernel, initrd, timeout):
        t = time.monotonic()
        subst = {"NUM_QUEUES": NUM_QUEUES, "NAMES": " ".join(self.names),
                 "DEVS": " ".join(f"vd{chr(ord('a') + i)}" for i in range(len(self.names)))}

        # plain: the marker, the random data, the disk.
        marker_file = os.path.join(tmp, "marker.raw")
        with open(marker_file, "wb") as f:
            f.write(MARKER * (MARKER_LEN // len(MARKER)))
        random_file = harness.random_file(os.path.join(tmp, "random.raw"), RANDOM_LEN, seed=7331)
        self.expected["marker"] = read_range(marker_file, 0, MARKER_LEN)
        self.expected["random"] = read_range(random_file, 0, RANDOM_LEN)
        self.sha["marker"] = hashlib.sha256(self.expected["marker"]).hexdigest()
        self.sha["random"] = hashlib.sha256(self.expected["random"]).hexdigest()
        backends = [self._backend(tmp, "plain", PLAIN_BYTES)]
        subst.update(MARKER_FILE=marker_file, RANDOM_FILE=random_file,
                     MARKER_OFF=MARKER_OFF, MARKER_LEN=MARKER_LEN, RANDOM_OFF=RANDOM_OFF,
                     RANDOM_LEN=RANDOM_LEN, MARKER_SHA256=self.sha["marker"],
                     RANDOM_SHA256=self.sha["random"], FIO_OFF=FIO_OFF,
                     FIO_JOB_MIB=FIO_JOB_MIB, WZ_OFF=WZ_OFF, WZ_LEN=WZ_LEN)
        cases = [f"'ubiblk-crypt-plain') name=plain; want={PLAIN_BYTES} ;;"]

        # lazy, cold: an image, a marker file, the disk, metadata made with the keys.
        lazy_checks = []
        for d in LAZY_DISKS:
            image = harness.random_file(os.path.join(tmp, f"{d.name}-image.raw"), d.image_bytes,
                                        seed=d.seed)
            pattern = os.path.join(tmp, f"{d.name}-pattern.raw")
            with open(pattern, "wb") as f:
                f.write(d.marker * (d.length // len(d.marker)))
            data = bytearray(read_range(image, 0, d.image_bytes))
            self.expected[f"{d.name}-image"] = bytes(data)
            self.sha[f"{d.name}-image"] = hashlib.sha256(data).hexdigest()
            data[d.off:d.off + d.length] = read_range(pattern, 0, d.length)
            self.expected[d.name] = bytes(data)  # [0, image_bytes) after the guest's write
            self.sha[d.name] = hashlib.sha256(data).hexdigest()
            self.sha[f"{d.name}-pattern"] = hashlib.sha256(data[d.off:d.off + d.length]).hexdigest()
            meta = os.path.join(tmp, d.name, "disk.meta")
            fields = dict(image_path=image, metadata_path=meta, track_written=True, **d.fields)
            if d is LAZY:
                fields["rpc_socket_path"] = os.path.join(tmp, d.name, "rpc.sock")
            be = self._backend(tmp, d.name, d.disk_bytes, **fields)
            self.paths[f"{d.name}.meta"] = meta
            harness.init_metadata(be.config, "-s", str(SHIFT))
            backends.append(be)
            cases.append(f"'{d.serial}') name={d.name}; want={d.disk_bytes} ;;")
            lazy_checks.append(run_guest.substitute(LAZY_CHECKS, {
                "NAME": d.name, "IMAGE": image, "IMAGE_BYTES": d.image_bytes,
                "IMAGE_SHA256": self.sha[f"{d.name}-image"], "PATTERN": pattern,
                "OFF": d.off, "LEN": d.length, "SPAN_LO": d.span[0], "SPAN_HI": d.span[1],
                "EXPECTED_SHA256": self.sha[d.name]}))
        subst.update(SERIAL_CASES="\n\t\t".join(cases), LAZY_CHECKS="".join(lazy_checks))
        body = run_guest.substitute(GUEST_SCRIPT, subst)
        self.timings["host setup"] = time.monotonic() - t

        with contextlib.ExitStack() as stack:
            for be in backends:
                stack.enter_context(be)
            t = time.monotonic()
            self.guest = run_guest.run_guest(tmp, [be.socket for be in backends], body,
                                             timeout=timeout, kernel=kernel, initrd=initrd,
                                             num_queues=NUM_QUEUES, queue_size=QUEUE_SIZE,
                                             tcg_thread=TCG_THREAD)
            self.timings["guest"] = time.monotonic() - t
            self.console_tail = self.guest.console_tail(60)

            # lazy: let autofetch finish, so every source stripe is in the file.
            lazy_be = backends[1 + LAZY_DISKS.index(LAZY)]
            rpc = os.path.join(tmp, LAZY.name, "rpc.sock")
            t = time.monotonic()
            try:
                harness.wait_for(lambda: not lazy_be.process.alive() or
                                 harness.lazy_status(rpc, timeout=2)["fetched"] ==
                                 LAZY.source_stripes, HYDRATE_TIMEOUT, "fetched == source")
                if lazy_be.process.alive():
                    self.final_status = harness.lazy_status(rpc)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.hydrate_error = f"{type(e).__name__}: {e}"
            self.timings["hydration wait"] = time.monotonic() - t
            for name, be in zip(self.names, backends):
                self._stop(be, name)

        for d in LAZY_DISKS:
            try:
                self.meta[d.name] = harness.metadata_stripes(self.configs[d.name])
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.dump_error[d.name] = f"{type(e).__name__}: {e}"
        for name, path in self.paths.items():
            with open(path, "rb") as f:
                self.files[name] = f.read()

        xts = os.path.join(harness.BUILD_DIR, "src", "bin", "xts")
        if os.path.exists(xts) and self.encrypt:
            self.xts_tool = {}
            for name, path in self.paths.items():
                out = os.path.join(tmp, f"{name}.decoded")
                proc = subprocess.run([xts, "-f", self.configs[name.split(".")[0]],
                                       "--action", "decode", path, out],
                                      capture_output=True, timeout=120)
                self.xts_tool[name] = (proc.returncode, proc.stderr.decode(errors="replace"))
                if proc.returncode == 0 and os.path.exists(out):
                    with open(out, "rb") as f:
                        self.xts_out[name] = f.read()


def make_tests(s):
    def ran(what):
        if s.error:
            raise AssertionError(f"not reached: the scenario broke ({s.error.splitlines()[-1]})")
        raise AssertionError(f"{what}: not reached")

    def need_files():
        if not s.files:
            ran("the files after the backends stopped")

    def logs_tail():
        return "".join(f"\n--- {n} backend log tail ---\n" + "\n".join(log.splitlines()[-20:])
                       for n, log in s.backend_log.items())

    def scenario_runs():
        s.run()
        parts = [f"{k} {v:.1f}s" for k, v in s.timings.items()]
        if s.guest is not None:
            parts.append("in the guest: " + ", ".join(
                f"{c.name} {c.seconds:.1f}s" for c in s.guest.checks.values()
                if c.seconds is not None))
        print("timings: " + "; ".join(parts), flush=True)
        if s.error:
            raise AssertionError("\n" + s.error + logs_tail())

    def guest_runs():
        if s.guest is None:
            ran("the guest")
        problems = s.guest.failures()
        if problems:
            raise AssertionError("; ".join(problems) + "\n--- console tail ---\n" +
                                 s.console_tail + logs_tail() + "\n---")

    def guest_check(name):
        def test():
            if s.guest is None:
                ran("the guest")
            run_guest.assert_check_passed(s.guest, name)
        test.__name__ = "guest_" + name.replace("-", "_")
        return test

    def guest_wrote_what_the_host_has():
        if s.guest is None:
            ran("the guest")
        bad = []
        for value, key in ([("plain_marker_sha256", "marker"), ("plain_random_sha256", "random")] +
                           [(f"{d.name}_pattern_sha256", f"{d.name}-pattern")
                            for d in LAZY_DISKS]):
            got = s.guest.values.get(value)
            if got != s.sha[key]:
                bad.append(f"{value}: guest {got}, host {s.sha[key]}")
        if bad:
            raise AssertionError("; ".join(bad))

    def backend_stops_cleanly(name):
        def test():
            record = s.stop[name]
            if not record:
                ran(f"the {name} backend's stop")
            if not record.get("alive_after_guest"):
                raise AssertionError("backend died during the guest session:\n" +
                                     s.backend_log[name][-3000:])
            if record.get("stop_error"):
                raise AssertionError(record["stop_error"])
            if record.get("status") != 0:
                raise AssertionError(f"exit status {record.get('status')} on SIGTERM:\n" +
                                     s.backend_log[name][-3000:])
        test.__name__ = f"{name}_backend_stops_cleanly_on_sigterm"
        return test

    # ---- plain ----

    def plain_file_has_no_marker():
        need_files()
        leaks = plaintext_leaks(s.files["plain"], marker_chunks(MARKER))
        if leaks:
            raise AssertionError("plaintext in the disk file: " + ", ".join(
                f"{'the marker' if n == 0 else f'marker block {n - 1}'} at {at}"
                for n, at in leaks))

    def plain_file_has_no_random_sector():
        need_files()
        wanted = set(sectors(s.expected["random"]))
        hits = [i for i, sec in enumerate(sectors(s.files["plain"])) if sec in wanted]
        if hits:
            raise AssertionError(f"{len(hits)} sectors of the file are sectors of the random "
                                 f"data, the first at byte {hits[0] * SECTOR}")

    def plain_file_holds_ciphertext():
        need_files()
        data = s.files["plain"]
        zero = bytes(SECTOR)
        problems = []
        for what, off, n in (("marker", MARKER_OFF, MARKER_LEN),
                             ("random", RANDOM_OFF, RANDOM_LEN)):
            secs = list(sectors(data, off, off + n))
            zeros = sum(1 for x in secs if x == zero)
            if zeros:
                problems.append(f"{zeros} of the {len(secs)} sectors the guest wrote the "
                                f"{what} to are zero in the file")
            # The marker's 8192 sectors are the same plaintext: each sector's
            # own tweak must make every ciphertext different.
            distinct = len(set(secs))
            if distinct != len(secs):
                problems.append(f"{what}: only {distinct} different sectors of {len(secs)}")
        stray = nonzero_runs(data, PLAIN_WRITES)
        if stray:
            problems.append("written outside the guest's writes: " + runs_text(stray))
        if problems:
            raise AssertionError("; ".join(problems))

    # ---- lazy, cold ----

    def fetched_of(d):
        """The fetched stripes by dump-metadata, else what they must be."""
        meta = s.meta.get(d.name)
        if meta is not None:
            return meta.get("fetched", set())
        return set(range(d.source_stripes)) if d is LAZY else set(d.written)

    def lazy_autofetch_reaches_source():
        if s.hydrate_error:
            raise AssertionError(s.hydrate_error)
        want = {"fetched": LAZY.source_stripes, "source": LAZY.source_stripes,
                "total": LAZY.total_stripes}
        if s.final_status != want:
            if s.final_status is None and s.error:
                ran("the RPC status")
            raise AssertionError(f"final status {s.final_status}, want {want}")

    def dump_metadata_reads_it(d):
        def test():
            if d.name in s.dump_error:
                raise AssertionError(s.dump_error[d.name])
            meta = s.meta.get(d.name)
            if meta is None:
                ran("dump-metadata")
            fetched, written = meta.get("fetched", set()), meta.get("written", set())
            source = meta.get("has-source", set())
            print(f"     {d.name}: dump-metadata: fetched {harness.stripes_text(fetched)}; written "
                  f"{harness.stripes_text(written)}; has-source {harness.stripes_text(source)}", flush=True)
            bad = []
            all_source = set(range(d.source_stripes))
            if d.fields.get("autofetch"):
                if fetched != all_source:
                    bad.append(f"fetched {harness.stripes_text(fetched)}, want {harness.stripes_text(all_source)}")
            else:
                # Reads inside one stripe with copy_on_read false fetch
                # nothing; the writes fetched their stripes.
                if not d.written <= fetched or fetched - d.written:
                    bad.append(f"fetched {harness.stripes_text(fetched)}, want the written stripes "
                               f"{harness.stripes_text(d.written)}")
            if written != d.written:
                bad.append(f"written {harness.stripes_text(written)}, want {harness.stripes_text(d.written)}")
            if source != all_source:
                bad.append(f"has-source {harness.stripes_text(source)}, want {harness.stripes_text(all_source)}")
            if bad:
                raise AssertionError("; ".join(bad))
        test.__name__ = f"{d.name}_dump_metadata_reads_it"
        return test

    def disk_file_has_no_image_sector(d):
        def test():
            need_files()
            data = s.files[d.name]
            image = s.expected[f"{d.name}-image"]
            wanted = set(sectors(image))
            hits = [i for i, sec in enumerate(sectors(data)) if sec in wanted]
            if hits:
                raise AssertionError(f"{len(hits)} sectors of the disk file are sectors of the "
                                     f"plain image, the first at byte {hits[0] * SECTOR}")
            # Also unaligned samples, in case the layout were shifted.
            step = d.image_bytes // 16
            leaks = plaintext_leaks(data, [image[o:o + 64] for o in range(12345, d.image_bytes - 64,
                                                                          step)])
            if leaks:
                raise AssertionError(f"image bytes in the disk file: {leaks[:5]}")
        test.__name__ = f"{d.name}_disk_file_has_no_image_sector"
        return test

    def disk_file_has_no_marker(d):
        def test():
            need_files()
            leaks = plaintext_leaks(s.files[d.name], marker_chunks(d.marker))
            if leaks:
                raise AssertionError(f"marker plaintext in the disk file: {leaks[:5]}")
        test.__name__ = f"{d.name}_disk_file_has_no_marker"
        return test

    def disk_file_holds_ciphertext(d):
        """Fetched stripes' image sectors are non-zero (the encrypted image),
        every other sector of the file is still zero."""
        def test():
            need_files()
            data = s.files[d.name]
            zero = bytes(SECTOR)
            fetched = fetched_of(d)
            problems = []
            for st in sorted(fetched):
                lo, hi = st * STRIPE, min((st + 1) * STRIPE, d.image_bytes)
                zeros = sum(1 for sec in sectors(data, lo, hi) if sec == zero)
                if zeros:
                    problems.append(f"stripe {st} (fetched): {zeros} zero sectors")
            skip = [(st * STRIPE, STRIPE) for st in fetched]
            stray = nonzero_runs(data, skip)
            if stray:
                problems.append("written outside the fetched stripes: " + runs_text(stray))
            if problems:
                raise AssertionError("; ".join(problems[:5]))
        test.__name__ = f"{d.name}_disk_file_holds_ciphertext"
        return test

    def metadata_file_is_encrypted(d):
        def test():
            need_files()
            data = s.files[f"{d.name}.meta"]
            if len(data) < SECTOR:
                raise AssertionError(f"metadata file is {len(data)} bytes")
            if data.startswith(b"BDEV_UBI"):
                raise AssertionError("the metadata file starts with the plaintext magic BDEV_UBI")
            at = data.find(b"BDEV_UBI")
            if at >= 0:
                raise AssertionError(f"BDEV_UBI at byte {at} of the metadata file")
            # Plaintext headers would be runs of HAS_SOURCE|FETCHED bytes.
            if data[SECTOR:SECTOR + 16] in (b"\x04" * 16, b"\x05" * 16):
                raise AssertionError("the stripe headers are plaintext")
        test.__name__ = f"{d.name}_metadata_file_is_encrypted"
        return test

    # ---- decryption on the host ----

    def first_diff(a, b):
        if len(a) != len(b):
            return f"{len(a)} bytes, want {len(b)}"
        for i in range(0, len(a), SECTOR):
            if a[i:i + SECTOR] != b[i:i + SECTOR]:
                return f"the sector at +{i} differs"
        return None

    def plain_ranges_differ(decoded, offset_of):
        """Which of the marker/random ranges of a decrypted plain disk differ."""
        bad = []
        for what, off, n in (("marker", MARKER_OFF, MARKER_LEN),
                             ("random", RANDOM_OFF, RANDOM_LEN)):
            diff = first_diff(offset_of(decoded, off, n), s.expected[what])
            if diff:
                bad.append(f"{what} at {off}: {diff}")
        return bad

    def host_decrypts_plain_disk():
        need_files()
        bad = plain_ranges_differ(
            s.files["plain"], lambda data, off, n: xts_decrypt(s.keys["plain"],
                                                               data[off:off + n], off // SECTOR))
        if bad:
            raise AssertionError("decrypted with the config's keys: " + "; ".join(bad))

    def lazy_ranges_differ(d, plain):
        """Fetched stripes of the decrypted disk `plain` vs image + marker."""
        want = s.expected[d.name]
        bad = []
        for st in sorted(fetched_of(d)):
            lo, hi = st * STRIPE, min((st + 1) * STRIPE, d.image_bytes)
            diff = first_diff(plain[lo:hi], want[lo:hi])
            if diff:
                bad.append(f"stripe {st}: {diff}")
        return bad

    def host_decrypts_lazy_disk(d):
        def test():
            need_files()
            n = max(fetched_of(d), default=-1) + 1
            plain = xts_decrypt(s.keys[d.name], s.files[d.name][:n * STRIPE], 0)
            bad = lazy_ranges_differ(d, plain)
            if bad:
                raise AssertionError(f"decrypted fetched stripes differ from image + marker: "
                                     f"{'; '.join(bad[:5])}")
        test.__name__ = f"host_decrypts_{d.name}_disk"
        return test

    def metadata_problems(d, plain):
        """A decrypted metadata file vs format 1.0 and the expected headers."""
        if plain[:9] != META_MAGIC or plain[9:13] != b"\x01\x00\x00\x00" or plain[13] != SHIFT:
            return [f"sector 0 starts {plain[:16].hex(' ')}, want magic BDEV_UBI\\0, "
                    f"version 1.0, shift {SHIFT}"]
        fetched = fetched_of(d)
        bad = []
        for i in range(d.total_stripes):
            want = ((HAS_SOURCE if i < d.source_stripes else 0) |
                    (FETCHED if i in fetched else 0) | (WRITTEN_FLAG if i in d.written else 0))
            if plain[SECTOR + i] != want:
                bad.append(f"stripe {i}: {plain[SECTOR + i]:#04x}, want {want:#04x}")
        return bad

    def host_decrypts_metadata(d):
        def test():
            need_files()
            data = s.files[f"{d.name}.meta"]
            n = 1 + (d.total_stripes + SECTOR - 1) // SECTOR
            bad = metadata_problems(d, xts_decrypt(s.keys[d.name], data[:n * SECTOR], 0))
            if bad:
                raise AssertionError(f"decrypted metadata: {len(bad)} problems: " +
                                     "; ".join(bad[:5]))
        test.__name__ = f"host_decrypts_{d.name}_metadata"
        return test

    def xts_tool_decodes(name):
        def test():
            if s.xts_tool is None:
                ran("xts")
            rc, err = s.xts_tool[name]
            if rc != 0:
                raise AssertionError(f"xts --action decode exit {rc}: {err.strip()[-500:]}")
            out = s.xts_out.get(name)
            if out is None:
                raise AssertionError("xts wrote no output file")
            if name == "plain":
                bad = plain_ranges_differ(out, lambda data, off, n: data[off:off + n])
            else:
                d = {x.name: x for x in LAZY_DISKS}[name.split(".")[0]]
                bad = (metadata_problems(d, out) if name.endswith(".meta") else
                       lazy_ranges_differ(d, out))
            if bad:
                raise AssertionError("decoded file: " + "; ".join(bad[:5]))
        test.__name__ = "xts_decode_" + name.replace(".meta", "_metadata") + (
            "" if name.endswith(".meta") else "_disk")
        return test

    tests = ([scenario_runs, guest_runs] + [guest_check(n) for n in GUEST_CHECKS] +
             [guest_wrote_what_the_host_has, backend_stops_cleanly("plain"),
              plain_file_has_no_marker, plain_file_has_no_random_sector,
              plain_file_holds_ciphertext, lazy_autofetch_reaches_source])
    for d in LAZY_DISKS:
        tests += [backend_stops_cleanly(d.name), dump_metadata_reads_it(d),
                  disk_file_has_no_image_sector(d), disk_file_has_no_marker(d),
                  disk_file_holds_ciphertext(d), metadata_file_is_encrypted(d)]
    if Cipher is None:
        print("skip host_decrypts_*: Python 'cryptography' is not installed", flush=True)
    elif not s.encrypt:
        print("skip host_decrypts_*: --no-encryption", flush=True)
    else:
        tests.append(host_decrypts_plain_disk)
        for d in LAZY_DISKS:
            tests += [host_decrypts_lazy_disk(d), host_decrypts_metadata(d)]
    if not os.path.exists(os.path.join(harness.BUILD_DIR, "src", "bin", "xts")):
        print("skip xts_decode_*: src/bin/xts is not built", flush=True)
    elif s.encrypt:
        tests += [xts_tool_decodes(n) for n in
                  ["plain"] + [x for d in LAZY_DISKS for x in (d.name, f"{d.name}.meta")]]
    return tests


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp folder (console log, backend logs, configs, files)")
    ap.add_argument("--no-encryption", action="store_true",
                    help="control run without encryption_key: the guest checks pass, the "
                         "at-rest checks must fail")
    args = ap.parse_args()
    harness.main(make_tests(Session(args.keep, encrypt=not args.no_encryption)))


if __name__ == "__main__":
    main()
