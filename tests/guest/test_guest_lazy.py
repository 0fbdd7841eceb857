#!/usr/bin/env python3
"""A real Linux guest (QEMU, TCG) on vhost-backend lazily serving a raw image:
the guest reads the image through virtio-blk before it is copied, writes
over stripes that were never fetched, and after a backend restart (with
copy_on_read and autofetch) reads everything back; the disk file ends up
equal to the image plus the guest's write.

    host   random image (48 MiB + 200 KiB: a partial last source stripe) and
           a 4 MiB pattern; a 64 MiB sparse disk; init-metadata -s 9
           (256 KiB stripes); vhost-backend, copy_on_read false, no autofetch
    boot 1 /dev/vda: the image's sha256 (buffered reads), cmp with the image
           over 9p (O_DIRECT reads), zeroes past it; writes the pattern
           (O_DIRECT) from mid-stripe 80 to mid-stripe 96, reads it back
    host   SIGTERM (exit 0); dump-metadata: stripes 80-96 written and fetched;
           vhost-backend again on the same files, copy_on_read and autofetch
           on; the RPC status is sampled from then on
    boot 2 the pattern, the image before and after it, zeroes past the image,
           the whole disk's sha256
    host   the status reached fetched == source; SIGTERM (exit 0); every
           source stripe fetched; the disk file is image + pattern + zeroes

Each check is one line, then "N passed, N failed". --keep keeps the temp
folder (console-1.log, console-2.log, vhost-backend.log, config.yaml, ...).
Set UBIBLK_GUEST_TIMEOUT (seconds per boot, default 300) for slow builds."""

import argparse
import hashlib
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import run_guest  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
SHIFT = 9                                  # 2^9 sectors: 256 KiB stripes
STRIPE = (1 << SHIFT) * 512
DISK_BYTES = 64 * MiB
IMAGE_BYTES = 48 * MiB + 200 * KiB         # not a multiple of STRIPE
SOURCE_STRIPES = (IMAGE_BYTES + STRIPE - 1) // STRIPE   # 193
TOTAL_STRIPES = DISK_BYTES // STRIPE                    # 256
WRITE_OFF = 20 * MiB + 128 * KiB           # mid-stripe 80
WRITE_LEN = 4 * MiB                        # ends mid-stripe 96
WRITTEN = set(range(WRITE_OFF // STRIPE, (WRITE_OFF + WRITE_LEN - 1) // STRIPE + 1))
# The stripes the write touches, as a byte range (boot 1 reads it back).
SPAN_LO = min(WRITTEN) * STRIPE
SPAN_HI = (max(WRITTEN) + 1) * STRIPE
NUM_QUEUES = 2
QUEUE_SIZE = 128
HYDRATE_TIMEOUT = 60
# Single-threaded TCG: two boots double the odds of the early-boot kernel
# "Oops: int3" that multi-threaded TCG (QEMU 7.2) gives a few percent of boots.
TCG_THREAD = "single"

assert IMAGE_BYTES % STRIPE and WRITE_OFF % STRIPE and (WRITE_OFF + WRITE_LEN) % STRIPE
assert WRITE_OFF + WRITE_LEN < IMAGE_BYTES

# Shared by both boots.
GUEST_COMMON = r'''
DEV=/dev/vda
DISK=@DISK_BYTES@
N=@IMAGE_BYTES@
IMAGE='@IMAGE@'
OFF=@WRITE_OFF@
LEN=@WRITE_LEN@
END=$((OFF + LEN))

# Forget cached blocks of vda, so the next read goes to the backend.
drop_caches() {
	blockdev --flushbufs $DEV
	echo 3 >/proc/sys/vm/drop_caches
}

device() {
	wait_for_dev $DEV 20
	sectors=$(cat /sys/block/vda/size)
	echo "vda: $sectors sectors, read_ahead_kb=$(cat /sys/block/vda/queue/read_ahead_kb)," \
		"max_sectors_kb=$(cat /sys/block/vda/queue/max_sectors_kb)"
	[ $((sectors * 512)) -eq "$DISK" ] || { echo "size is $((sectors * 512)), want $DISK"; exit 1; }
}
'''

GUEST1 = r'''
# Every read in this boot is O_DIRECT, aligned and at most one stripe long, so
# with copy_on_read false it is served from the image without fetching (only
# the read crossing the image end fetches its stripe). Buffered reads would
# not do: the block layer merges readahead requests across stripes, and a
# read across stripes fetches them.

image_sha256() {
	got=$(dd if=$DEV bs=64k count=$(((N + 65535) / 65536)) iflag=direct status=none |
		head -c $N | sha256sum | cut -d' ' -f1)
	echo "sha256 of the first $N bytes (64 KiB O_DIRECT reads): $got, image: @IMAGE_SHA256@"
	[ "$got" = "@IMAGE_SHA256@" ]
}

image_cmp() {
	# One stripe per read, against the image itself over 9p.
	dd if=$DEV bs=@STRIPE@ count=$(((N + @STRIPE@ - 1) / @STRIPE@)) iflag=direct status=none |
		cmp -n $N - "$IMAGE"
	echo "the first $N bytes (@STRIPE@-byte O_DIRECT reads) equal $IMAGE"
}

zeroes_past_image_direct() {
	from=$((N / 65536 * 65536))
	dd if=$DEV bs=64k skip=$((from / 65536)) iflag=direct status=none |
		cmp -i $((N - from)):0 -n $((DISK - N)) - /dev/zero
	echo "[$N, $DISK) reads as zeroes (64 KiB O_DIRECT reads)"
}

write_pattern() {
	cp '@PATTERN@' /tmp/pattern
	sha=$(sha256sum </tmp/pattern | cut -d' ' -f1)
	[ "$(wc -c </tmp/pattern)" -eq "$LEN" ] || { echo "pattern is not $LEN bytes"; exit 1; }
	value written_sha256 "$sha"
	# 1 MiB O_DIRECT writes from mid-stripe: each spans two stripes, none fetched yet.
	dd if=/tmp/pattern of=$DEV bs=1M seek=$OFF oflag=direct,seek_bytes conv=notrunc,fsync status=none
	sync
	echo "wrote $LEN bytes at $OFF, sha256 $sha"
}

write_readback() {
	# The stripes the write touched: the pattern, the image's data around it.
	[ -s /tmp/pattern ] || { echo "nothing was written"; exit 1; }
	drop_caches
	dd if=$DEV of=/tmp/span bs=64k skip=$((@SPAN_LO@ / 65536)) count=$(((@SPAN_HI@ - @SPAN_LO@) / 65536)) \
		iflag=direct status=none
	cmp -i $((OFF - @SPAN_LO@)):0 -n $LEN /tmp/span /tmp/pattern
	cmp -i 0:@SPAN_LO@ -n $((OFF - @SPAN_LO@)) /tmp/span "$IMAGE"
	cmp -i $((END - @SPAN_LO@)):$END -n $((@SPAN_HI@ - END)) /tmp/span "$IMAGE"
	echo "[@SPAN_LO@, @SPAN_HI@): the pattern at $OFF, the image around it"
}

check device device
check image-sha256 image_sha256
check image-cmp image_cmp
check zeroes-past-image zeroes_past_image_direct
check write-pattern write_pattern
check write-readback write_readback
'''

GUEST2 = r'''
# Reads here may fetch (copy_on_read true) while autofetch runs: the cmp
# checks read through the page cache, the sha256 checks O_DIRECT.

zeroes_past_image() {
	drop_caches
	cmp -i $N:0 -n $((DISK - N)) $DEV /dev/zero
	echo "[$N, $DISK) reads as zeroes (buffered reads)"
}

written_sha256() {
	got=$(dd if=$DEV bs=1M skip=$OFF count=$LEN iflag=direct,skip_bytes,count_bytes status=none |
		sha256sum | cut -d' ' -f1)
	echo "sha256 of [$OFF, $END): $got, written: @WRITTEN_SHA256@"
	[ "$got" = "@WRITTEN_SHA256@" ]
}

image_before_write() {
	drop_caches
	cmp -n $OFF $DEV "$IMAGE"
	echo "[0, $OFF) equals the image"
}

image_after_write() {
	drop_caches
	cmp -i $END:$END -n $((N - END)) $DEV "$IMAGE"
	echo "[$END, $N) equals the image"
}

disk_sha256() {
	got=$(dd if=$DEV bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
	echo "sha256 of the disk: $got, want @DISK_SHA256@"
	[ "$got" = "@DISK_SHA256@" ]
}

check device device
check written-sha256 written_sha256
check image-before-write image_before_write
check image-after-write image_after_write
check zeroes-past-image zeroes_past_image
check disk-sha256 disk_sha256
'''

GUEST1_CHECKS = ["device", "image-sha256", "image-cmp", "zeroes-past-image", "write-pattern",
                 "write-readback"]
GUEST2_CHECKS = ["device", "written-sha256", "image-before-write", "image-after-write",
                 "zeroes-past-image", "disk-sha256"]


class StatusMonitor:
    """Samples the RPC status in a thread: [(seconds since start, fetched)]."""

    def __init__(self, rpc_path, interval=0.25):
        self.rpc_path = rpc_path
        self.interval = interval
        self.samples = []
        self.last = None
        self.errors = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                st = harness.lazy_status(self.rpc_path, timeout=2)
                self.last = st
                self.samples.append((time.monotonic() - self._t0, st["fetched"]))
            except Exception as e:  # noqa: BLE001 - recorded, reported by the test
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


class Session:
    """Runs the whole scenario once; the test functions assert on what it
    recorded. Every process is stopped by pid whatever happens."""

    def __init__(self, keep):
        self.keep = keep
        self.error = None        # a traceback if the scenario itself broke
        self.timings = {}
        self.image_sha = self.pattern_sha = self.disk_sha = None
        self.g1 = self.g2 = None
        self.tails = {}          # console tails, kept before the folder goes
        self.b1 = {}             # backend run 1: alive_after_guest, status, stop_error
        self.b2 = {}
        self.status1 = None      # RPC status after boot 1, before the stop
        self.meta1 = self.meta2 = None
        self.monitor = None
        self.hydrated_after = None   # seconds from restart to fetched == source
        self.hydrate_error = None
        self.final_status = None
        self.disk_mismatch = None    # None = not compared; "" = equal
        self.backend_log = ""

    def run(self):
        timeout = int(os.environ.get("UBIBLK_GUEST_TIMEOUT", "300"))
        t = time.monotonic()
        kernel, initrd = run_guest.prepare()
        self.timings["prepare"] = time.monotonic() - t
        scratch, tmp = run_guest.scratch_dir("ubiblk-guest-lazy-", harness.BUILD_DIR, keep=self.keep)
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

    def _backend(self, tmp, disk, image, meta, rpc, **fields):
        return harness.VhostBackend(tmp, disk, image_path=image, metadata_path=meta,
                                    rpc_socket_path=rpc, num_queues=NUM_QUEUES,
                                    queue_size=QUEUE_SIZE, track_written=True, **fields)

    def _guest(self, tmp, sock, body, tag, kernel, initrd, timeout):
        t = time.monotonic()
        result = run_guest.run_guest(tmp, [sock], body, timeout=timeout, kernel=kernel,
                                     initrd=initrd, num_queues=NUM_QUEUES,
                                     queue_size=QUEUE_SIZE, tag=tag, tcg_thread=TCG_THREAD)
        self.timings[f"boot {tag}"] = time.monotonic() - t
        self.tails[tag] = result.console_tail(60)
        return result

    def _stop(self, be, record):
        record["alive_after_guest"] = be.process.alive()
        try:
            record["status"] = be.stop()
        except TimeoutError as e:  # killed by the context manager
            record["stop_error"] = str(e)

    def _scenario(self, tmp, kernel, initrd, timeout):
        t = time.monotonic()
        image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_BYTES, seed=4817)
        pattern = harness.random_file(os.path.join(tmp, "pattern.raw"), WRITE_LEN, seed=91)
        with open(image, "rb") as f:
            image_data = f.read()
        with open(pattern, "rb") as f:
            pattern_data = f.read()
        expected = bytearray(image_data + bytes(DISK_BYTES - IMAGE_BYTES))
        expected[WRITE_OFF:WRITE_OFF + WRITE_LEN] = pattern_data
        expected = bytes(expected)
        self.image_sha = hashlib.sha256(image_data).hexdigest()
        self.pattern_sha = hashlib.sha256(pattern_data).hexdigest()
        self.disk_sha = hashlib.sha256(expected).hexdigest()
        del image_data, pattern_data
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_BYTES)
        meta = os.path.join(tmp, "disk.meta")
        rpc = os.path.join(tmp, "rpc.sock")
        common = {"DISK_BYTES": DISK_BYTES, "IMAGE_BYTES": IMAGE_BYTES, "IMAGE": image,
                  "WRITE_OFF": WRITE_OFF, "WRITE_LEN": WRITE_LEN}

        be = self._backend(tmp, disk, image, meta, rpc, copy_on_read=False)
        harness.init_metadata(be.config, "-s", str(SHIFT))
        self.timings["host setup"] = time.monotonic() - t

        # Boot 1: copy_on_read false, no autofetch.
        with be:
            body = run_guest.substitute(GUEST_COMMON + GUEST1, dict(
                common, IMAGE_SHA256=self.image_sha, PATTERN=pattern, STRIPE=STRIPE,
                SPAN_LO=SPAN_LO, SPAN_HI=SPAN_HI))
            self.g1 = self._guest(tmp, be.socket, body, "1", kernel, initrd, timeout)
            if be.process.alive():
                self.status1 = harness.lazy_status(rpc)
            self._stop(be, self.b1)
        self.meta1 = harness.metadata_stripes(be.config)

        # Boot 2: the same files, copy_on_read and autofetch on.
        be = self._backend(tmp, disk, image, meta, rpc, copy_on_read=True, autofetch=True)
        with be:
            t = time.monotonic()
            with StatusMonitor(rpc) as self.monitor:
                body = run_guest.substitute(GUEST_COMMON + GUEST2, dict(
                    common, WRITTEN_SHA256=self.pattern_sha, DISK_SHA256=self.disk_sha))
                self.g2 = self._guest(tmp, be.socket, body, "2", kernel, initrd, timeout)
                try:
                    harness.wait_for(lambda: (self.monitor.last or {}).get("fetched") ==
                                     SOURCE_STRIPES or not be.process.alive(),
                                     HYDRATE_TIMEOUT, "fetched == source in the RPC status")
                    self.final_status = harness.lazy_status(rpc)
                    if self.final_status["fetched"] == SOURCE_STRIPES:
                        done = [s for s, f in self.monitor.samples if f == SOURCE_STRIPES]
                        self.hydrated_after = done[0] if done else time.monotonic() - t
                    else:
                        self.hydrate_error = f"status {self.final_status}"
                except Exception as e:  # noqa: BLE001 - reported by the test
                    self.hydrate_error = f"{type(e).__name__}: {e}"
            self._stop(be, self.b2)
        self.meta2 = harness.metadata_stripes(be.config)

        with open(disk, "rb") as f:
            data = f.read()
        if data == expected:
            self.disk_mismatch = ""
        elif len(data) != len(expected):
            self.disk_mismatch = f"disk file is {len(data)} bytes, want {len(expected)}"
        else:
            bad = sorted({i // STRIPE for i in range(0, len(data), 4096)
                          if data[i:i + 4096] != expected[i:i + 4096]})
            self.disk_mismatch = (f"stripes differing from image + pattern + zeroes: "
                                  f"{harness.stripes_text(bad)}")


def make_tests(s):
    def ran(what):
        if s.error:
            raise AssertionError(f"not reached: the scenario broke ({s.error.splitlines()[-1]})")
        raise AssertionError(f"{what}: not reached")

    def guest_failures(result, tag):
        problems = result.failures()
        if problems:
            backend_tail = "\n".join(s.backend_log.splitlines()[-20:])
            raise AssertionError("; ".join(problems) + f"\n--- console-{tag} tail ---\n" +
                                 s.tails.get(tag, "") + "\n--- backend log tail ---\n" +
                                 backend_tail + "\n---")

    def scenario_runs():
        s.run()
        parts = [f"{k} {v:.1f}s" for k, v in s.timings.items()]
        for tag, r in (("1", s.g1), ("2", s.g2)):
            if r is not None:
                parts.append(f"boot {tag}: " + ", ".join(
                    f"{c.name} {c.seconds:.1f}s" for c in r.checks.values()
                    if c.seconds is not None))
        print("timings: " + "; ".join(parts), flush=True)
        if s.error:
            raise AssertionError("\n" + s.error + "--- backend log tail ---\n" +
                                 "\n".join(s.backend_log.splitlines()[-20:]))

    def guest_runs(tag):
        def test():
            result = s.g1 if tag == "1" else s.g2
            if result is None:
                ran(f"boot {tag}")
            guest_failures(result, tag)
        test.__name__ = f"guest{tag}_runs"
        return test

    def guest_check(tag, name):
        def test():
            result = s.g1 if tag == "1" else s.g2
            if result is None:
                ran(f"boot {tag}")
            run_guest.assert_check_passed(result, name)
        test.__name__ = f"guest{tag}_" + name.replace("-", "_")
        return test

    def guest1_reported_what_it_wrote():
        if s.g1 is None:
            ran("boot 1")
        got = s.g1.values.get("written_sha256")
        if got != s.pattern_sha:
            raise AssertionError(f"guest wrote sha256 {got}, the host's pattern is {s.pattern_sha}")

    def backend_stops_cleanly(tag):
        def test():
            record = s.b1 if tag == "1" else s.b2
            if not record:
                ran(f"backend {tag}")
            if not record.get("alive_after_guest"):
                raise AssertionError("backend died during the guest session:\n" +
                                     s.backend_log[-3000:])
            if record.get("stop_error"):
                raise AssertionError(record["stop_error"])
            if record.get("status") != 0:
                raise AssertionError(f"exit status {record.get('status')} on SIGTERM:\n" +
                                     s.backend_log[-3000:])
        test.__name__ = f"backend{tag}_stops_cleanly_on_sigterm"
        return test

    def metadata_after_boot1_marks_the_write():
        if s.meta1 is None:
            ran("dump-metadata after boot 1")
        fetched, written = s.meta1.get("fetched", set()), s.meta1.get("written", set())
        info = (f"fetched {harness.stripes_text(fetched)}; written {harness.stripes_text(written)}; "
                f"RPC status before the stop: {s.status1}")
        print(f"     after boot 1 (copy_on_read false): {info}", flush=True)
        if written != WRITTEN:
            raise AssertionError(f"written stripes {harness.stripes_text(written)}, "
                                 f"want {harness.stripes_text(WRITTEN)}")
        if not WRITTEN <= fetched:
            raise AssertionError(f"written but not fetched: {harness.stripes_text(WRITTEN - fetched)}")
        # copy_on_read false and only stripe-contained O_DIRECT reads: nothing
        # else is fetched but the stripe the read crossing the image end hit;
        # so the written stripes were fetched by the writes themselves.
        extra = fetched - WRITTEN - {SOURCE_STRIPES - 1}
        if extra:
            raise AssertionError(f"reads fetched {harness.stripes_text(extra)} with copy_on_read false")
        if s.meta1.get("has-source") != set(range(SOURCE_STRIPES)):
            raise AssertionError(f"has-source {harness.stripes_text(s.meta1.get('has-source', ()))}")

    def restarted_backend_autofetches_to_source():
        if s.monitor is None:
            ran("backend 2")
        m = s.monitor
        if not m.samples:
            raise AssertionError("no RPC status answered: " + "; ".join(m.errors[-3:]))
        fetched = [f for _, f in m.samples]
        first = fetched[0]
        print(f"     restart: first status fetched {first}, "
              f"{len(m.samples)} samples, fetched == source {SOURCE_STRIPES} after "
              f"{s.hydrated_after if s.hydrated_after is None else round(s.hydrated_after, 1)}s"
              f"; final status {s.final_status}", flush=True)
        if s.hydrate_error:
            raise AssertionError(s.hydrate_error)
        if any(b < a for a, b in zip(fetched, fetched[1:])):
            raise AssertionError(f"fetched went down: {fetched}")
        persisted = len((s.meta1 or {}).get("fetched", ()))
        if first < persisted:
            raise AssertionError(f"restart started at fetched {first}, "
                                 f"the metadata had {persisted}")
        want = {"fetched": SOURCE_STRIPES, "source": SOURCE_STRIPES, "total": TOTAL_STRIPES}
        if s.final_status != want:
            raise AssertionError(f"final status {s.final_status}, want {want}")

    def metadata_at_end_every_source_stripe_fetched():
        if s.meta2 is None:
            ran("dump-metadata at the end")
        fetched, written = s.meta2.get("fetched", set()), s.meta2.get("written", set())
        if fetched != set(range(SOURCE_STRIPES)):
            raise AssertionError(f"fetched {harness.stripes_text(fetched)}, "
                                 f"want 0-{SOURCE_STRIPES - 1}")
        if written != WRITTEN:
            raise AssertionError(f"written {harness.stripes_text(written)}, want {harness.stripes_text(WRITTEN)}")

    def host_disk_file_is_image_plus_write():
        if s.disk_mismatch is None:
            ran("disk file comparison")
        if s.disk_mismatch:
            raise AssertionError(s.disk_mismatch)

    return ([scenario_runs, guest_runs("1")] +
            [guest_check("1", n) for n in GUEST1_CHECKS] +
            [guest1_reported_what_it_wrote, backend_stops_cleanly("1"),
             metadata_after_boot1_marks_the_write, guest_runs("2")] +
            [guest_check("2", n) for n in GUEST2_CHECKS] +
            [restarted_backend_autofetches_to_source, backend_stops_cleanly("2"),
             metadata_at_end_every_source_stripe_fetched, host_disk_file_is_image_plus_write])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp folder (console logs, backend log, files)")
    args = ap.parse_args()
    harness.main(make_tests(Session(args.keep)))


if __name__ == "__main__":
    main()
