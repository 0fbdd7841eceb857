#!/usr/bin/env python3
"""A real Linux guest (QEMU, TCG) on vhost-backend: virtio-blk from the
guest's side, with the guest kernel's own driver and the host's fio.

One guest boots against one vhost-backend (2 queues, a distinctive
device_id, a sparse disk file on a real filesystem) and runs every check in
one session; each check is reported on its own line, then the host checks the
disk file itself. Ends with "N passed, N failed".

    python3 tests/guest/test_guest_vhost.py                 # vhost-backend
    python3 tests/guest/test_guest_vhost.py --backend qsd   # qemu-storage-daemon

`--backend qsd` runs the same guest against qemu-storage-daemon (there is no
serial to check there): the reference that tells a test bug from a backend
bug. Set UBIBLK_GUEST_TIMEOUT (seconds, default 300) for slow builds."""

import argparse
import hashlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import run_guest  # noqa: E402

MiB = 1 << 20
DISK_BYTES = 512 * MiB
DEVICE_ID = "ubiblk-guest-7f3a9c"  # 19 bytes; the limit is 20
NUM_QUEUES = 2
QUEUE_SIZE = 128  # QEMU's default for vhost-user-blk-pci; vhost-backend's is 64

# Disk layout (MiB): fio owns [0, 64); the other checks each own a range.
FIO_JOB_MIB = 32  # per job; 2 jobs, one per queue
DISCARD_AT, WZ_AT, REGION_MIB, HOLE_OFF, HOLE_MIB = 192, 224, 8, 2, 4
SHA_AT, SHA_MIB = 256, 16
PATTERN = 0x5A

GUEST_SCRIPT = r'''
MiB=1048576
DEV=/dev/vda
DISK_BYTES=@DISK_BYTES@
EXPECT_ID='@DEVICE_ID@'
NUM_QUEUES=@NUM_QUEUES@

# Interrupts per request queue of vda: "req.N COUNT" lines.
queue_irqs() {
	v=$(basename "$(readlink /sys/block/vda/device)")
	awk -v pat="$v-req[.]" '$NF ~ pat { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; sub(/.*-/, "", $NF); print $NF, s }' /proc/interrupts
}

device() {
	wait_for_dev $DEV 20
	sectors=$(cat /sys/block/vda/size)
	echo "vda: $sectors sectors; queue limits:" \
		"discard_max_bytes=$(cat /sys/block/vda/queue/discard_max_bytes)" \
		"write_zeroes_max_bytes=$(cat /sys/block/vda/queue/write_zeroes_max_bytes)" \
		"write_cache=$(cat /sys/block/vda/queue/write_cache)"
	[ $((sectors * 512)) -eq "$DISK_BYTES" ] || { echo "size is $((sectors * 512)), want $DISK_BYTES"; exit 1; }
}

serial() {
	s=$(cat /sys/block/vda/serial)
	echo "serial '$s', want '$EXPECT_ID'"
	[ "$s" = "$EXPECT_ID" ]
}

queues() {
	n=$(ls /sys/block/vda/mq | wc -l)
	echo "$n blk-mq hardware queues, want $NUM_QUEUES"
	[ "$n" -eq "$NUM_QUEUES" ]
}

fio_verify() {
	cd /tmp
	queue_irqs >/tmp/irqs.before
	# Two jobs pinned to the two CPUs, hence to the two blk-mq queues, each
	# on its own @FIO_JOB_MIB@ MiB; crc32c headers also catch misplaced blocks.
	fio --name=verify --filename=$DEV --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bssplit=4k/50:16k/20:64k/20:256k/10 \
		--size=@FIO_JOB_MIB@M --offset_increment=@FIO_JOB_MIB@M --numjobs=2 \
		--cpus_allowed=0-1 --cpus_allowed_policy=split \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_dump=0 --verify_state_save=0 \
		--group_reporting --output-format=terse --terse-version=3 >/tmp/fio.out
	rc=$?
	queue_irqs >/tmp/irqs.after
	# terse v3: field 6 = read KiB (the verify pass), 47 = write KiB.
	awk -F';' '$1 == 3 { print "fio: wrote", $47, "KiB, verified", $6, "KiB, errors", $5 }' /tmp/fio.out
	[ "$rc" -eq 0 ] || { cat /tmp/fio.out; echo "fio exit $rc"; exit 1; }
	awk -F';' -v want=$((2 * @FIO_JOB_MIB@ * 1024)) '$1 == 3 { n++; if ($47 != want || $6 != want) exit 1 } END { if (n != 1) exit 1 }' /tmp/fio.out ||
		{ echo "fio did not write and verify all $((2 * @FIO_JOB_MIB@)) MiB"; exit 1; }
}

both_queues_used() {
	[ -s /tmp/irqs.after ] || { echo "no interrupt counts (fio check did not run?)"; exit 1; }
	echo "before: $(tr '\n' ' ' </tmp/irqs.before)"
	echo "after:  $(tr '\n' ' ' </tmp/irqs.after)"
	used=$(awk 'NR == FNR { b[$1] = $2; next } $2 > b[$1] { n++ } END { print n + 0 }' /tmp/irqs.before /tmp/irqs.after)
	echo "$used of $NUM_QUEUES queues completed requests during fio"
	[ "$used" -eq "$NUM_QUEUES" ]
}

# fill_region AT_MIB: PATTERN over REGION_MIB MiB, direct, then read it back.
fill_region() {
	head -c $((@REGION_MIB@ * MiB)) /dev/zero | tr '\000' '\@PATTERN_OCT@' >/tmp/pattern
	dd if=/tmp/pattern of=$DEV bs=1M seek="$1" oflag=direct conv=fsync status=none
}

# expect_hole AT_MIB: the middle HOLE_MIB MiB read as zeroes, the rest as the pattern.
expect_hole() {
	dd if=$DEV of=/tmp/readback bs=1M skip="$1" count=@REGION_MIB@ iflag=direct status=none
	hole_end=$((@HOLE_OFF@ + @HOLE_MIB@))
	cmp -n $((@HOLE_OFF@ * MiB)) /tmp/readback /tmp/pattern
	cmp -i $((@HOLE_OFF@ * MiB)):0 -n $((@HOLE_MIB@ * MiB)) /tmp/readback /dev/zero
	cmp -i $((hole_end * MiB)):$((hole_end * MiB)) /tmp/readback /tmp/pattern
	echo "[$1+@HOLE_OFF@, +@HOLE_MIB@) MiB reads as zeroes, the rest of [$1, +@REGION_MIB@) MiB is intact"
}

discard() {
	[ "$(cat /sys/block/vda/queue/discard_max_bytes)" -gt 0 ] || { echo "device does not advertise discard"; exit 1; }
	fill_region @DISCARD_AT@
	blkdiscard -o $(((@DISCARD_AT@ + @HOLE_OFF@) * MiB)) -l $((@HOLE_MIB@ * MiB)) $DEV
	expect_hole @DISCARD_AT@
}

write_zeroes() {
	# Without the feature the kernel would write zero pages itself and hide it.
	[ "$(cat /sys/block/vda/queue/write_zeroes_max_bytes)" -gt 0 ] || { echo "device does not advertise write zeroes"; exit 1; }
	fill_region @WZ_AT@
	blkdiscard -z -o $(((@WZ_AT@ + @HOLE_OFF@) * MiB)) -l $((@HOLE_MIB@ * MiB)) $DEV
	expect_hole @WZ_AT@
}

sha_roundtrip() {
	head -c $((@SHA_MIB@ * MiB)) /dev/urandom >/tmp/data
	want=$(sha256sum </tmp/data | cut -d' ' -f1)
	value data_sha256 "$want"
	# Buffered write, sync (a flush if the device has a write cache), drop
	# the page cache, then read back both O_DIRECT and through the cache.
	dd if=/tmp/data of=$DEV bs=1M seek=@SHA_AT@ status=none
	sync
	blockdev --flushbufs $DEV
	echo 3 >/proc/sys/vm/drop_caches
	direct=$(dd if=$DEV bs=1M skip=@SHA_AT@ count=@SHA_MIB@ iflag=direct status=none | sha256sum | cut -d' ' -f1)
	cached=$(dd if=$DEV bs=1M skip=@SHA_AT@ count=@SHA_MIB@ status=none | sha256sum | cut -d' ' -f1)
	echo "wrote $want, read $direct (O_DIRECT), $cached (page cache)"
	[ "$direct" = "$want" ] && [ "$cached" = "$want" ]
}

# The report a hung check leaves (GUEST_LIB's stall_report): a check that
# outlives a 1 s stall period, with a direct read in flight on vda.
stall_probe() {
	dd if=$DEV of=/dev/null bs=1M count=64 iflag=direct status=none &
	sleep 4
	wait
}

check device device
[ -z "$EXPECT_ID" ] || check serial serial
check queues queues
check fio-verify fio_verify
check both-queues-used both_queues_used
check discard discard
check write-zeroes write_zeroes
check sha256-roundtrip sha_roundtrip
_stall=$UBIBLK_STALL_SECONDS
UBIBLK_STALL_SECONDS=1
check stall-report stall_probe
UBIBLK_STALL_SECONDS=$_stall
'''


def guest_script(device_id):
    subst = {"DISK_BYTES": DISK_BYTES, "DEVICE_ID": device_id or "", "NUM_QUEUES": NUM_QUEUES,
             "FIO_JOB_MIB": FIO_JOB_MIB, "DISCARD_AT": DISCARD_AT, "WZ_AT": WZ_AT,
             "REGION_MIB": REGION_MIB, "HOLE_OFF": HOLE_OFF, "HOLE_MIB": HOLE_MIB,
             "SHA_AT": SHA_AT, "SHA_MIB": SHA_MIB, "PATTERN_OCT": f"{PATTERN:03o}"}
    text = GUEST_SCRIPT
    for key, value in subst.items():
        text = text.replace(f"@{key}@", str(value))
    assert "@" not in text.replace("$@", ""), "unsubstituted placeholder"
    return text


def backend_state(rpc_socket):
    """What the backend has in flight per queue and has done, for a guest that
    hung: with the guest's stall report it tells a lost kick or call (guest
    has requests in flight, the backend none) from a request stuck at the
    device (the backend has it in flight)."""
    lines = []
    for command in ("queues", "stats"):
        try:
            lines.append(f"{command}: {json.dumps(harness.rpc(rpc_socket, command, timeout=5))}")
        except (OSError, ValueError) as e:
            lines.append(f"{command}: no answer ({e})")
    return "\n".join(lines)


def read_file_range(path, off, length):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(length)


class Session:
    """Everything one guest run produced; the test functions assert on it."""

    def __init__(self, backend, keep):
        self.backend = backend
        self.keep = keep
        self.result = None
        self.disk = None
        self.backend_status = None
        self.backend_alive_after_guest = None
        self.backend_log = ""
        self.backend_state = ""  # the backend's view when the guest hung
        self.backend_stop_error = None
        self.file_sha = (None, None)
        self.file_regions = {}
        self.timings = {}
        self.console_tail = ""

    def run(self):
        timeout = int(os.environ.get("UBIBLK_GUEST_TIMEOUT", "300"))
        t = time.monotonic()
        kernel, initrd = run_guest.prepare()
        self.timings["prepare"] = time.monotonic() - t
        scratch, tmp = run_guest.scratch_dir("ubiblk-guest-", harness.BUILD_DIR, keep=self.keep)
        try:
            self.disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_BYTES)
            rpc_socket = None
            if self.backend == "qsd":
                server = harness.QemuStorageDaemon(tmp, self.disk, num_queues=NUM_QUEUES)
                device_id = None
            else:
                rpc_socket = os.path.join(tmp, "rpc.sock")
                server = harness.VhostBackend(tmp, self.disk, num_queues=NUM_QUEUES,
                                              queue_size=QUEUE_SIZE, device_id=DEVICE_ID,
                                              rpc_socket_path=rpc_socket)
                device_id = DEVICE_ID
            with server:
                t = time.monotonic()
                self.result = run_guest.run_guest(tmp, [server.socket], guest_script(device_id),
                                                  timeout=timeout, kernel=kernel, initrd=initrd,
                                                  num_queues=NUM_QUEUES,
                                                  queue_size=QUEUE_SIZE,
                                                  # QEMU 7.2's multi-threaded TCG
                                                  # crashes the guest kernel at boot
                                                  # in a few percent of boots.
                                                  tcg_thread="single")
                self.timings["guest"] = time.monotonic() - t
                self.backend_alive_after_guest = server.process.alive()
                if rpc_socket and self.result.exit_status is None:
                    self.backend_state = backend_state(rpc_socket)
                try:
                    self.backend_status = server.stop()
                except TimeoutError as e:  # killed by the context manager
                    self.backend_stop_error = str(e)
                self.backend_log = server.process.log_text()
            self.console_tail = self.result.console_tail(60)  # before the folder goes
            self.host_checks()
        finally:
            if scratch:
                scratch.cleanup()
            else:
                print(f"kept {tmp}", flush=True)

    def host_checks(self):
        """Read the disk file after the backend stopped: what the guest wrote
        must be in the file at the offsets it used."""
        r = self.result
        want = r.values.get("data_sha256")
        got = hashlib.sha256(read_file_range(self.disk, SHA_AT * MiB, SHA_MIB * MiB)).hexdigest()
        self.file_sha = (want, got)
        self.file_regions = {}
        for name, at in (("discard", DISCARD_AT), ("write-zeroes", WZ_AT)):
            data = read_file_range(self.disk, at * MiB, REGION_MIB * MiB)
            hole = slice(HOLE_OFF * MiB, (HOLE_OFF + HOLE_MIB) * MiB)
            pattern_ok = (data[:hole.start] == bytes([PATTERN]) * hole.start and
                          data[hole.stop:] == bytes([PATTERN]) * (len(data) - hole.stop))
            self.file_regions[name] = (pattern_ok, data[hole] == bytes(HOLE_MIB * MiB))


def make_tests(session, backend):
    def guest_boots():
        session.run()
        print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in session.timings.items()) +
              "; in the guest: " + ", ".join(f"{c.name} {c.seconds:.1f}s"
                                             for c in session.result.checks.values()
                                             if c.seconds is not None), flush=True)
        problems = session.result.failures()
        if problems:
            # Most telling first: CI shows the start of a failure's output.
            backend_tail = "\n".join(session.backend_log.splitlines()[-20:])
            state = ("\n--- backend state ---\n" + session.backend_state
                     if session.backend_state else "")
            raise AssertionError("; ".join(problems) + state + "\n--- backend log tail ---\n" +
                                 backend_tail + "\n--- console tail ---\n" +
                                 session.console_tail + "\n---")

    def guest_check(name):
        def test():
            if session.result is None:
                raise AssertionError("guest did not run")
            run_guest.assert_check_passed(session.result, name)
        test.__name__ = "guest_" + name.replace("-", "_")
        return test

    def host_data_matches_guest():
        if session.result is None:
            raise AssertionError("guest did not run")
        want, got = session.file_sha
        if not want:
            raise AssertionError("the guest reported no sha256 (its check did not run)")
        if want != got:
            raise AssertionError(f"disk file at {SHA_AT} MiB has sha256 {got}, guest wrote {want}")

    def host_holes_in_file():
        if session.result is None:
            raise AssertionError("guest did not run")
        if not session.file_regions:
            raise AssertionError("the disk file was not checked")
        bad = []
        for name, (pattern_ok, hole_zero) in session.file_regions.items():
            check = session.result.checks.get(name)
            if not (check and check.passed):
                bad.append(f"{name}: the guest check did not pass, nothing to compare")
            elif not (pattern_ok and hole_zero):
                bad.append(f"{name}: pattern {'ok' if pattern_ok else 'damaged'}, "
                           f"hole {'zero' if hole_zero else 'NOT zero'}")
        if bad:
            raise AssertionError("; ".join(bad))

    def backend_survives_and_stops_cleanly():
        if session.result is None:
            raise AssertionError("guest did not run")
        if not session.backend_alive_after_guest:
            raise AssertionError("backend died during the guest session:\n" +
                                 session.backend_log[-3000:])
        if session.backend_stop_error:
            raise AssertionError(session.backend_stop_error)
        if session.backend_status != 0:
            raise AssertionError(f"backend exit status {session.backend_status} on SIGTERM:\n" +
                                 session.backend_log[-3000:])

    def guest_stall_report():
        """A hung check gets the guest's view into the failure: the probe
        check outlived its 1 s stall period with a read in flight."""
        if session.result is None:
            raise AssertionError("guest did not run")
        run_guest.assert_check_passed(session.result, "stall-report")
        detail = session.result.checks["stall-report"].detail
        for want in ("stall: stall-report still running", "stall: vda in flight (reads writes):",
                     "stall: ", "virtio"):
            if want not in detail:
                raise AssertionError(f"no {want!r} in the stall report:\n{detail}")

    names = ["device", "queues", "fio-verify", "both-queues-used", "discard", "write-zeroes",
             "sha256-roundtrip"]
    if backend != "qsd":
        names.insert(1, "serial")
    return ([guest_boots] + [guest_check(n) for n in names] +
            [guest_stall_report, host_data_matches_guest, host_holes_in_file,
             backend_survives_and_stops_cleanly])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("vhost", "qsd"), default="vhost",
                    help="vhost = vhost-backend (the test); qsd = qemu-storage-daemon "
                         "(reference, for developing the test)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (console log)")
    args = ap.parse_args()
    harness.main(make_tests(Session(args.backend, args.keep), args.backend))


if __name__ == "__main__":
    main()
