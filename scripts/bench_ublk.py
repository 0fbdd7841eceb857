#!/usr/bin/env python3
"""Benchmark ublk-backend against the kernel's loop device (direct I/O) on
the same file, in one real guest (QEMU, TCG; the host needs no ublk driver):
fio 4 KiB random reads and writes at iodepth 32 and 1, interleaved.

  scripts/bench.sh --ublk [--runtime SEC] [--reps N] [--size-mib 1024]
                          [--tcg-thread single|multi] [--markdown docs/benchmarks.md]

The guest (2 vCPUs, 1 GiB) makes an ext4 on a plain virtio-blk scratch drive
(a sparse host file, cache=none), writes a fully allocated disk file there
(not tmpfs: O_DIRECT and a real filesystem under both peers), attaches it
with `losetup --direct-io=on` and, for each measurement, starts
ublk-backend on it (io_uring, 2 queues, queue_size 128) and stops it again,
so nothing of one peer runs while the other is measured. Each round runs
every case on both peers, the peer that goes first alternating between
rounds; each figure is the median over the rounds. fio: --direct=1
--ioengine=io_uring --time_based --ramp_time=1 --norandommap.

Under TCG every instruction is emulated, so absolute IOPS say little about
real hardware; the ratio compares two block devices driven by the same fio
in the same guest on the same file."""

import argparse
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "guest"))
import bench_markdown  # noqa: E402
import harness  # noqa: E402
import run_guest  # noqa: E402

MiB = 1 << 20
CASES = [  # (name, fio rw, iodepth)
    ("4k randread qd32", "randread", 32),
    ("4k randread qd1", "randread", 1),
    ("4k randwrite qd32", "randwrite", 32),
    ("4k randwrite qd1", "randwrite", 1),
]
PEERS = ("ublk", "loop")
TARGET = 0.9   # ublk / loop, every case

GUEST_SCRIPT = r'''
EXT=/tmp/ext
DISK=$EXT/disk.raw
UBLK='@UBLK@'

setup() {
	[ -c /dev/ublk-control ] || { echo "no /dev/ublk-control"; exit 1; }
	mkfs.ext4 -q -F /dev/vda
	mkdir -p $EXT
	mount -t ext4 /dev/vda $EXT
	# Fully allocated: reads of holes or unwritten extents would cost nothing.
	dd if=/dev/zero of=$DISK bs=1M count=@SIZE_MIB@ oflag=direct conv=fsync status=none
	loop=$(losetup --direct-io=on -f --show $DISK)
	echo "$loop" >/tmp/loop.dev
	echo "$loop: dio=$(cat /sys/block/${loop#/dev/}/loop/dio)," \
		"$(ls /sys/block/${loop#/dev/}/mq | wc -l) hardware queue(s)," \
		"nr_requests=$(cat /sys/block/${loop#/dev/}/queue/nr_requests)"
	[ "$(cat /sys/block/${loop#/dev/}/loop/dio)" = 1 ] || { echo "loop without direct I/O"; exit 1; }
	printf 'path: "%s"\nnum_queues: 2\nqueue_size: 128\n' $DISK >/tmp/ublk.yaml
}

ublk_start() {
	rm -f /tmp/ublk.log /tmp/ublk.rc
	(
		set +e
		UBIBLK_LOG=info "$UBLK" -f /tmp/ublk.yaml 2>/tmp/ublk.log </dev/null >/dev/null &
		echo $! >/tmp/ublk.pid
		wait $!
		echo $? >/tmp/ublk.rc
	) &
	i=0
	until grep -q "ublk device is available at" /tmp/ublk.log 2>/dev/null; do
		i=$((i + 1))
		[ $i -le 300 ] && [ ! -e /tmp/ublk.rc ] || { echo "ublk-backend did not start:"; cat /tmp/ublk.log; exit 1; }
		sleep 0.1
	done
	dev=$(sed -n 's|.*ublk device is available at \(/dev/ublkb[0-9]*\).*|\1|p' /tmp/ublk.log | head -n 1)
	wait_for_dev "$dev" 10
	echo "$dev" >/tmp/ublk.dev
}

ublk_stop() {
	kill -TERM "$(cat /tmp/ublk.pid)"
	i=0
	until [ -e /tmp/ublk.rc ]; do
		i=$((i + 1))
		[ $i -le 300 ] || { echo "ublk-backend did not stop within 30 s"; kill -KILL "$(cat /tmp/ublk.pid)"; exit 1; }
		sleep 0.1
	done
	[ "$(cat /tmp/ublk.rc)" = 0 ] || { echo "ublk-backend exit status $(cat /tmp/ublk.rc)"; exit 1; }
}

# measure ROUND PEER RW IODEPTH: one fio run; reports IOPS and mean latency (us).
measure() {
	if [ "$2" = ublk ]; then
		ublk_start
		dev=$(cat /tmp/ublk.dev)
	else
		dev=$(cat /tmp/loop.dev)
	fi
	rc=0
	fio --name=bench --filename=$dev --direct=1 --ioengine=io_uring --rw=$3 --bs=4k \
		--iodepth=$4 --time_based --runtime=@RUNTIME@ --ramp_time=1 --norandommap \
		--randrepeat=0 --size=@SIZE_MIB@M --output-format=terse --terse-version=3 \
		>/tmp/fio.out 2>&1 || rc=$?
	[ "$2" = ublk ] && ublk_stop
	[ $rc -eq 0 ] || { cat /tmp/fio.out; exit 1; }
	# terse v3: read IOPS field 8, mean total latency 40; write 49 and 81.
	if [ "$3" = randread ]; then f=8 l=40; else f=49 l=81; fi
	iops=$(awk -F';' -v f=$f '$1 == 3 { print $f }' /tmp/fio.out)
	lat=$(awk -F';' -v l=$l '$1 == 3 { print $l }' /tmp/fio.out)
	echo "round $1 $2 $3 qd$4: $iops IOPS, mean latency $lat us ($dev)"
	value "r$1-$2-$3-qd$4" "$iops/$lat"
}

check setup setup
@MEASUREMENTS@
losetup -d "$(cat /tmp/loop.dev)"
'''


def measurements(reps):
    """The check lines of every round: each case on both peers, the first
    peer alternating between rounds."""
    lines = []
    for r in range(1, reps + 1):
        order = PEERS if r % 2 else PEERS[::-1]
        for _, rw, qd in CASES:
            for peer in order:
                lines.append(f"check r{r}-{peer}-{rw}-qd{qd} measure {r} {peer} {rw} {qd}")
    return "\n".join(lines)


def run(args):
    kernel, initrd = run_guest.prepare()
    scratch, tmp = run_guest.scratch_dir("ubiblk-ublk-bench-", harness.BUILD_DIR)
    try:
        ublk, = run_guest.guest_visible([harness.binary("ublk-backend")],
                                        os.path.join(tmp, "bin"))
        drive = harness.make_disk(os.path.join(tmp, "scratch.img"),
                                  (args.size_mib + 1024) * MiB)
        body = run_guest.substitute(GUEST_SCRIPT, {
            "UBLK": ublk, "SIZE_MIB": args.size_mib,
            "RUNTIME": args.runtime, "MEASUREMENTS": measurements(args.reps)})
        timeout = 300 + args.reps * len(CASES) * len(PEERS) * (args.runtime + 30)
        t = time.monotonic()
        result = run_guest.run_guest(tmp, [], body, timeout=timeout, kernel=kernel,
                                     initrd=initrd, drives=[drive], tcg_thread=args.tcg_thread)
        print(f"guest: {time.monotonic() - t:.0f} s", file=sys.stderr)
        failed = run_guest.report(result)
        if failed:
            raise SystemExit(f"the benchmark guest failed ({failed} problems, see above)")
        return result.values
    finally:
        scratch.cleanup()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime", type=int, default=10, help="seconds per fio run (default 10)")
    p.add_argument("--reps", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--size-mib", type=int, default=1024, help="disk file size (default 1024)")
    p.add_argument("--tcg-thread", choices=("single", "multi"), default="single",
                   help="QEMU TCG threading (default single, as the guest tests: QEMU 7.2's "
                        "multi-threaded TCG crashes a few boots)")
    p.add_argument("--markdown", help="update the ublk section of this file")
    args = p.parse_args()
    values = run(args)
    med = {}
    for name, rw, qd in CASES:
        for peer in PEERS:
            runs = [values[f"r{r}-{peer}-{rw}-qd{qd}"].split("/")
                    for r in range(1, args.reps + 1)]
            med[(name, peer)] = (statistics.median(float(i) for i, _ in runs),
                                 statistics.median(float(lat) for _, lat in runs),
                                 [float(i) for i, _ in runs])
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} ({os.cpu_count()} "
             f"CPUs, kernel {platform.release()}) in a QEMU TCG guest (2 vCPUs, "
             f"tcg thread={args.tcg_thread}, 1 GiB, Debian kernel); a {args.size_mib} MiB "
             "file on ext4 on a virtio-blk scratch drive; fio io_uring, direct, "
             f"{args.runtime} s per run; median of {args.reps} interleaved rounds.", "",
             "| workload | ublk-backend IOPS (mean µs) | loop --direct-io IOPS (mean µs) "
             "| ublk / loop | ≥ 0.9x |", "|---|---|---|---|---|"]
    met_all = True
    for name, _, _ in CASES:
        u, lo = med[(name, "ublk")], med[(name, "loop")]
        ratio = u[0] / lo[0] if lo[0] else float("nan")
        met = ratio >= TARGET
        met_all = met_all and met
        lines.append(f"| {name} | {u[0]:,.0f} ({u[1]:,.0f}) | {lo[0]:,.0f} ({lo[1]:,.0f}) | "
                     f"{ratio:.2f}x | {'yes' if met else 'no'} |")
    lines += ["", "Every run (IOPS, in round order): " + "; ".join(
        f"{name} ublk {', '.join(f'{i:,.0f}' for i in med[(name, 'ublk')][2])}, loop "
        f"{', '.join(f'{i:,.0f}' for i in med[(name, 'loop')][2])}" for name, _, _ in CASES) + ".",
        "", f"Target ublk ≥ {TARGET}x loop in every case: **{'met' if met_all else 'not met'}**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        bench_markdown.update_section(args.markdown, "ublk",
                                      "## ublk-backend vs loop (`scripts/bench.sh --ublk`)", text)


if __name__ == "__main__":
    main()
