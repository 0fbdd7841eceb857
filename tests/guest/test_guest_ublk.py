#!/usr/bin/env python3
"""A real Linux guest (QEMU, TCG) running ublk-backend itself: the guest
kernel's ublk driver serves /dev/ublkbN, and the host's fio, blkdiscard,
cmp and sha256sum (over the 9p host root) drive it.

One boot, 2 vCPUs, 1 GiB. The disk files live on an ext4 the guest makes on
a plain virtio-blk scratch drive (a sparse 2 GiB host file, /dev/vda): ext4
supports O_DIRECT and hole punching, the guest's /tmp (tmpfs) would not do.
The binaries come from the host build folder over 9p. Scenarios, each a few
checks in the guest:

    plain  256 MiB, 2 queues, queue_size 64, seg_size_max 64 KiB, an RPC
           socket, --device-symlink into a folder that does not exist yet:
           /dev/ublkb0 and the log line, the symlink; fio crc32c verify with
           one job per CPU (so per queue); RPC version/status/queues/stats
           (reads and writes on both queues); blkdiscard and blkdiscard -z
           read back as zeroes, the rest of the disk unchanged; a flush is
           counted; SIGTERM (while crypt runs too): exit 0, its device
           nodes, symlink and RPC socket gone, crypt's not
    crypt  started while plain runs (a second device), its symlink
           replacing a regular file; 64 MiB with encryption_key (two random
           32-byte halves): fio verify; a marker text written and read back;
           SIGINT; the marker is not in the disk file; with src/bin/xts, the
           file decodes to what was read
    lazy   a random 48 MiB + 192 KiB image (a partial last stripe) copied
           into the ext4, a sparse disk of the image's size, init-metadata
           -s 9: copy_on_read false, the device cmp-equal to the image and
           with its sha256 (one-stripe O_DIRECT reads: nothing is fetched);
           restart with copy_on_read and autofetch, the RPC status reaches
           fetched == source, cmp and sha256 again; the disk file equals the
           image
    fail   a lazy disk whose image is truncated after init-metadata
           (queue_size 16, one queue, copy_on_read): 40 O_DIRECT 4 KiB reads
           of unreadable stripes each fail with EIO, a good stripe still
           reads, SIGTERM still exits 0 (no tag was lost)
    busy   SIGTERM while fio keeps 16 requests in flight: exit 0, no hang
    gone   the device deleted from outside (ublk_ctl.py del N): the backend
           exits 0 and cleans up
    bad    a config whose disk file does not exist: exit 1, no device
    huge   queue_size 4096 x seg_size_max 1 MiB (4 GiB of buffers per
           queue in a 1 GiB guest): exit 1 with an error, no /dev/ublk[bc]*
           left, nothing hangs
    partial  fd limits (ulimit -n) from 10 to 26: each run ends, exit 1
           whenever a queue failed, no device left; at least one run had one
           queue serving (its tags fetched) while the other failed
    notify NOTIFY_SOCKET held by a Python script: READY=1 first, its STATUS=
           names /dev/ublkbN, which is a block device that reads at once;
           SIGTERM sends STOPPING=1, then exit 0
    end    no ublk-backend process and no ublk device node left; no kernel
           BUG/WARNING/hung task

Every ublk-backend started is stopped by pid whatever happens (SIGTERM, then
SIGKILL); every wait has a timeout. Each check is one line, then "N passed,
N failed". --keep keeps the temp folder (console.log, guest-script.sh,
configs, the scratch drive). Set UBIBLK_GUEST_TIMEOUT (seconds, default 600)
for slow builds."""

import argparse
import hashlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import run_guest  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
SCRATCH_BYTES = 2 * GiB          # sparse on the host; the guest's ext4
TCG_THREAD = "single"            # QEMU 7.2 multi-threaded TCG crashes a few boots (docs/testing-guest.md)
START_TIMEOUT = 30               # seconds, guest time, for the device to appear
STOP_TIMEOUT = 30                # ... for ublk-backend to exit after a signal
READ_TIMEOUT = 30                # ... for one 4 KiB read to complete
HYDRATE_TIMEOUT = 60

# plain: fio owns [0, 64 MiB); the discard and write-zeroes regions follow.
PLAIN_BYTES = 256 * MiB
FIO_JOB_MIB = 32                 # per job; 2 jobs, one per CPU
DISCARD_AT, WZ_AT, REGION_MIB, HOLE_OFF, HOLE_MIB = 128, 160, 8, 2, 4
PATTERN = 0x5A

# crypt: fio owns [0, 16 MiB); the marker sits after it, 4 KiB aligned.
CRYPT_BYTES = 64 * MiB
CRYPT_FIO_JOB_MIB = 8
MARKER = b"UBIBLK-UBLK-MARKER: this text must never reach the disk file...\n"
MARKER_OFF, MARKER_LEN = 32 * MiB + 12 * KiB, 256 * KiB

# lazy: a partial last stripe, and a disk exactly the image's size.
SHIFT = 9                        # 2^9 sectors: 256 KiB stripes
STRIPE = (1 << SHIFT) * 512
IMAGE_BYTES = 48 * MiB + 192 * KiB

# fail: 48 stripes with a source, of which only the first 4 stay readable.
FAIL_IMAGE_BYTES = 12 * MiB
FAIL_KEEP_BYTES = 1 * MiB
FAIL_QUEUE_SIZE = 16
FAIL_READS = 40                  # more than FAIL_QUEUE_SIZE: a lost tag would show

assert len(MARKER) == 64 and MARKER_LEN % len(MARKER) == 0 and MARKER_OFF % 4096 == 0
assert IMAGE_BYTES % STRIPE and IMAGE_BYTES % (64 * KiB) == 0
assert FAIL_READS > FAIL_QUEUE_SIZE
assert (FAIL_IMAGE_BYTES - FAIL_KEEP_BYTES) // STRIPE >= FAIL_READS

GUEST_SCRIPT = r'''
MiB=1048576
BIN='@BIN@'
UBLK="$BIN/ublk-backend"
CFG='@CFG@'
EXT=/tmp/ext
START_TIMEOUT=@START_TIMEOUT@
STOP_TIMEOUT=@STOP_TIMEOUT@
: >/tmp/ublk.pids
# Whatever happens to the script, no backend keeps running (a check that
# stops one kills that one on its way out, whatever happened: ublk_kill).
trap ublk_cleanup EXIT

wait_until() { # wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s
	_ws=$1 _what=$2
	shift 2
	_wi=0
	until "$@"; do
		_wi=$((_wi + 1))
		[ "$_wi" -le $((_ws * 10)) ] || { echo "timed out after $_ws s waiting for $_what"; return 1; }
		sleep 0.1
	done
}

drop_caches() { # drop_caches DEV...
	for d in "$@"; do blockdev --flushbufs "$d"; done
	echo 3 >/proc/sys/vm/drop_caches
}

# ublk_start NAME CONFIG [ARGS...]: ublk-backend -f CONFIG ARGS in the
# background; stderr (its log) in /tmp/NAME.log, stdout in /tmp/NAME.out, its
# pid in /tmp/NAME.pid (and /tmp/ublk.pids, for ublk_cleanup), its exit
# status in /tmp/NAME.rc once it exited. The wrapper subshell reaps it, so
# the status outlives the check that started it and `kill -0` tells whether
# it still runs. oom_score_adj 1000: a backend that exhausts the guest's
# memory is what the OOM killer takes, not this script.
ublk_start() {
	_n=$1 _c=$2
	shift 2
	rm -f "/tmp/$_n.pid" "/tmp/$_n.rc" "/tmp/$_n.dev" "/tmp/$_n.log" "/tmp/$_n.out"
	(
		set +e
		UBIBLK_LOG=info sh -c 'echo 1000 >/proc/self/oom_score_adj; echo $$ >"$0"; exec "$@"' \
			"/tmp/$_n.pid" "$UBLK" -f "$_c" "$@" >"/tmp/$_n.out" 2>"/tmp/$_n.log" </dev/null
		echo $? >"/tmp/$_n.rc.new"
		mv "/tmp/$_n.rc.new" "/tmp/$_n.rc"
	) &
	wait_until 10 "the pid of ublk-backend $_n" test -s "/tmp/$_n.pid"
	cat "/tmp/$_n.pid" >>/tmp/ublk.pids
	echo "started ublk-backend -f $_c $* (pid $(cat "/tmp/$_n.pid"))"
}

ublk_up() { # the log line, or the process exited
	grep -q "ublk device is available at /dev/ublkb[0-9]" "/tmp/$1.log" || [ -e "/tmp/$1.rc" ]
}

# ublk_wait NAME: the log line announced the device and its node exists; the
# node's path goes to /tmp/NAME.dev.
ublk_wait() {
	wait_until $START_TIMEOUT "'ublk device is available' in the log of $1" ublk_up "$1" ||
		{ tail -n 30 "/tmp/$1.log"; return 1; }
	if [ -e "/tmp/$1.rc" ]; then
		echo "ublk-backend $1 exited at start with status $(cat "/tmp/$1.rc"):"
		tail -n 30 "/tmp/$1.log"
		return 1
	fi
	_d=$(sed -n 's|.*ublk device is available at \(/dev/ublkb[0-9]*\).*|\1|p' "/tmp/$1.log" | head -n 1)
	echo "$_d" >"/tmp/$1.dev"
	echo "log: $(grep -m 1 "ublk device is available" "/tmp/$1.log")"
	wait_for_dev "$_d" 10
}

dev_of() { # dev_of NAME: the device ublk_wait found (a path that fails otherwise)
	cat "/tmp/$1.dev" 2>/dev/null || echo "/dev/no-ublk-device-for-$1"
}

sysfs_of() { # sysfs_of NAME: /sys/block/ublkbN
	echo "/sys/block/$(basename "$(dev_of "$1")")"
}

# ublk_stop NAME [SIGNAL]: signal it (default TERM); fails unless it exits
# with status 0 within STOP_TIMEOUT s.
ublk_stop() {
	_sig=${2:-TERM}
	read -r _t0 _ </proc/uptime
	kill -"$_sig" "$(cat "/tmp/$1.pid")" || echo "ublk-backend $1 was not running"
	wait_until $STOP_TIMEOUT "ublk-backend $1 to exit after SIG$_sig" test -e "/tmp/$1.rc" ||
		{ tail -n 30 "/tmp/$1.log"; return 1; }
	read -r _t1 _ </proc/uptime
	_rc=$(cat "/tmp/$1.rc")
	echo "ublk-backend $1: exit status $_rc $(awk "BEGIN { printf \"%.1f\", $_t1 - $_t0 }") s after SIG$_sig"
	[ "$_rc" -eq 0 ] || { tail -n 30 "/tmp/$1.log"; return 1; }
}

dev_gone() { # dev_gone NAME: its /dev/ublkbN and /dev/ublkcN no longer exist
	_b=$(dev_of "$1")
	_gone=0
	for _f in "$_b" "/dev/ublkc${_b#/dev/ublkb}"; do
		if [ -e "$_f" ]; then
			echo "$_f still exists"
			_gone=1
		else
			echo "$_f is gone"
		fi
	done
	return $_gone
}

# kill_pid PID: a backend still running gets SIGTERM, then SIGKILL after 10 s.
kill_pid() {
	kill -0 "$1" 2>/dev/null || return 0
	echo "cleanup: ublk-backend pid $1 still runs: SIGTERM"
	kill -TERM "$1" 2>/dev/null
	_ci=0
	while kill -0 "$1" 2>/dev/null && [ "$_ci" -lt 100 ]; do
		sleep 0.1
		_ci=$((_ci + 1))
	done
	if kill -0 "$1" 2>/dev/null; then
		echo "cleanup: pid $1 ignored SIGTERM for 10 s: SIGKILL"
		kill -KILL "$1" 2>/dev/null
	fi
	return 0
}

ublk_kill() { # ublk_kill NAME: the EXIT trap of a check that stops NAME
	kill_pid "$(cat "/tmp/$1.pid" 2>/dev/null)"
}

ublk_cleanup() { # every backend started: between scenarios and at the end
	for _p in $(cat /tmp/ublk.pids 2>/dev/null); do
		kill_pid "$_p"
	done
	return 0
}

need_dev() { # need_dev NAME: its device is a block device (fio would create a file)
	[ -b "$(dev_of "$1")" ] || { echo "no block device for $1 ($(dev_of "$1"))"; return 1; }
}

# rpc SOCKET COMMAND [CONDITION]: prints the reply; with CONDITION (Python,
# over the parsed reply r) fails unless it holds.
rpc() {
	timeout 60 python3 - "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(json.dumps({"command": sys.argv[2]}).encode() + b"\n")
line = s.makefile().readline()
print(sys.argv[2] + ": " + line.strip())
r = json.loads(line)
if len(sys.argv) > 3 and not eval(sys.argv[3]):
    sys.exit("not true: " + sys.argv[3])
PY
}

flush_ops() { # flush_ops SOCKET: the sum over the queues of the stats
	rpc "$1" stats | sed -n 's/^stats: //p' |
		python3 -c 'import json, sys; print(sum(q["flush_ops"] for q in json.load(sys.stdin)["stats"]["queues"]))'
}

# rpc_wait_fetched SOCKET SECONDS: polls status until fetched == source.
rpc_wait_fetched() {
	timeout $(($2 + 30)) python3 - "$@" <<'PY'
import json, socket, sys, time
path, limit = sys.argv[1], float(sys.argv[2])
t0 = time.monotonic()
first = last = None
while True:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b'{"command":"status"}\n')
    last = json.loads(s.makefile().readline())["status"]["stripes"]
    s.close()
    first = first or last
    if last["fetched"] == last["source"]:
        break
    if time.monotonic() - t0 > limit:
        sys.exit(f"fetched != source after {limit:.0f} s: first {first}, last {last}")
    time.sleep(0.25)
print(f"first status {first}; fetched == source after {time.monotonic() - t0:.1f} s: {last}")
PY
}

# fio_verify DEV OFFSET JOB_MIB: two jobs pinned one per CPU, hence one per
# blk-mq queue, each on its own JOB_MIB MiB from OFFSET; random writes of
# 4-64 KiB, then the crc32c verify pass (also catches misplaced blocks).
fio_verify() {
	cd /tmp
	_frc=0
	fio --name=verify --filename="$1" --direct=1 --ioengine=libaio --iodepth=16 \
		--rw=randwrite --bsrange=4k-64k --offset="$2" --size="$3M" --offset_increment="$3M" \
		--numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_dump=0 --verify_state_save=0 \
		--group_reporting --output-format=terse --terse-version=3 >/tmp/fio.out 2>&1 || _frc=$?
	# terse v3: field 6 = read KiB (the verify pass), 47 = write KiB.
	awk -F';' '$1 == 3 { print "fio: wrote", $47, "KiB, verified", $6, "KiB, errors", $5 }' /tmp/fio.out
	[ "$_frc" -eq 0 ] || { cat /tmp/fio.out; echo "fio exit $_frc"; return 1; }
	awk -F';' -v want=$((2 * $3 * 1024)) '$1 == 3 { n++; if ($47 != want || $6 != want) exit 1 } END { if (n != 1) exit 1 }' /tmp/fio.out ||
		{ echo "fio did not write and verify all $((2 * $3)) MiB"; return 1; }
}

expect_size() { # expect_size NAME BYTES
	_got=$(($(cat "$(sysfs_of "$1")/size") * 512))
	[ "$_got" -eq "$2" ] || { echo "$(dev_of "$1"): $_got bytes, want $2"; return 1; }
}

# ---- setup ----

scratch_ext4() {
	[ -c /dev/ublk-control ] || { echo "no /dev/ublk-control (ublk_drv not loaded by init)"; exit 1; }
	wait_for_dev /dev/vda 20
	echo "vda: $(($(cat /sys/block/vda/size) * 512)) bytes"
	mkfs.ext4 -q -F /dev/vda
	mkdir -p $EXT
	mount -t ext4 /dev/vda $EXT
	grep " $EXT " /proc/mounts
}

# ---- a. plain disk ----

plain_start() {
	[ ! -e /tmp/links ] || { echo "/tmp/links exists before the start"; exit 1; }
	truncate -s @PLAIN_BYTES@ $EXT/plain.raw
	ublk_start plain "$CFG/plain.yaml" --device-symlink /tmp/links/new/plain
	ublk_wait plain
	[ "$(dev_of plain)" = /dev/ublkb0 ] || { echo "the first device is $(dev_of plain), want /dev/ublkb0"; exit 1; }
	[ -c /dev/ublkc0 ] || { echo "no /dev/ublkc0"; exit 1; }
	wait_until 10 "the symlink /tmp/links/new/plain" test -L /tmp/links/new/plain
	echo "/tmp/links/new/plain -> $(readlink /tmp/links/new/plain)"
	[ "$(readlink /tmp/links/new/plain)" = /dev/ublkb0 ] || { echo "wrong symlink target"; exit 1; }
	q=/sys/block/ublkb0/queue
	nq=$(ls /sys/block/ublkb0/mq | wc -l)
	echo "ublkb0: $(($(cat /sys/block/ublkb0/size) * 512)) bytes, $nq hardware queues," \
		"nr_requests=$(cat $q/nr_requests) logical_block_size=$(cat $q/logical_block_size)" \
		"max_sectors_kb=$(cat $q/max_sectors_kb) discard_max_bytes=$(cat $q/discard_max_bytes)" \
		"write_zeroes_max_bytes=$(cat $q/write_zeroes_max_bytes) write_cache=$(cat $q/write_cache)"
	expect_size plain @PLAIN_BYTES@
	[ "$nq" -eq 2 ] || { echo "$nq hardware queues, want 2"; exit 1; }
}

plain_fio() {
	need_dev plain
	fio_verify "$(dev_of plain)" 0 @FIO_JOB_MIB@
}

plain_rpc() {
	S=/run/ublk-plain.sock
	rpc $S version 'r == {"version": "@VERSION@"}'
	rpc $S status 'r == {"status": None}'
	rpc $S queues 'len(r["queues"]) == 2'
	# fio ran one job per CPU: both queues must have carried reads and writes.
	rpc $S stats 'len(r["stats"]["queues"]) == 2 and all(q["read_ops"] > 0 and q["write_ops"] > 0 and q["bytes_read"] > 0 and q["bytes_written"] > 0 for q in r["stats"]["queues"])'
}

# sha256 of the plain disk outside the hole [AT + HOLE_OFF, + HOLE_MIB) MiB.
# outside_sum DEV AT_MIB: a checksum of the whole disk but the hole. cksum
# (CRC-32) rather than sha256sum: it only has to tell a change apart, and
# under TCG it hashes 256 MiB in half the time.
outside_sum() {
	_lo=$(($2 + @HOLE_OFF@))
	{
		dd if="$1" bs=1M count=$_lo iflag=direct status=none
		dd if="$1" bs=1M skip=$((_lo + @HOLE_MIB@)) iflag=direct status=none
	} | cksum | cut -d' ' -f1,2
}

# hole_test AT_MIB BLKDISCARD-OPTIONS: REGION_MIB MiB of the pattern at
# AT_MIB, then the middle HOLE_MIB MiB discarded or zeroed: it reads back as
# zeroes (O_DIRECT) and nothing else on the disk changed.
hole_test() {
	need_dev plain
	P=$(dev_of plain)
	at=$1
	shift
	head -c $((@REGION_MIB@ * MiB)) /dev/zero | tr '\000' '\@PATTERN_OCT@' >/tmp/pattern
	dd if=/tmp/pattern of=$P bs=1M seek=$at oflag=direct conv=fsync status=none
	dd if=$P bs=1M skip=$at count=@REGION_MIB@ iflag=direct status=none | cmp - /tmp/pattern
	before=$(outside_sum $P $at)
	blocks=$(stat -c %b $EXT/plain.raw)
	blkdiscard "$@" -o $(((at + @HOLE_OFF@) * MiB)) -l $((@HOLE_MIB@ * MiB)) $P
	dd if=$P bs=1M skip=$((at + @HOLE_OFF@)) count=@HOLE_MIB@ iflag=direct status=none |
		cmp -n $((@HOLE_MIB@ * MiB)) - /dev/zero
	after=$(outside_sum $P $at)
	echo "blkdiscard $* of [$((at + @HOLE_OFF@)), +@HOLE_MIB@) MiB: reads as zeroes;" \
		"cksum of the rest $before before, $after after;" \
		"$EXT/plain.raw: $blocks blocks allocated before, $(stat -c %b $EXT/plain.raw) after"
	[ "$before" = "$after" ]
}

plain_discard() {
	[ "$(cat "$(sysfs_of plain)/queue/discard_max_bytes")" -gt 0 ] || { echo "the device does not advertise discard"; exit 1; }
	hole_test @DISCARD_AT@
}

plain_write_zeroes() {
	# Without the feature the kernel would write zero pages itself and hide it.
	[ "$(cat "$(sysfs_of plain)/queue/write_zeroes_max_bytes")" -gt 0 ] || { echo "the device does not advertise write zeroes"; exit 1; }
	hole_test @WZ_AT@ -z
}

plain_flush() {
	need_dev plain
	P=$(dev_of plain)
	n0=$(flush_ops /run/ublk-plain.sock)
	dd if=/dev/zero of=$P bs=4k count=1 seek=$((200 * 256)) oflag=direct conv=fsync status=none
	n1=$(flush_ops /run/ublk-plain.sock)
	echo "flush_ops (both queues) $n0 before a write with fsync, $n1 after"
	[ "$n1" -gt "$n0" ]
}

plain_stop() {
	trap 'ublk_kill plain' EXIT
	bad=0
	ublk_stop plain || bad=1
	dev_gone plain || bad=1
	if [ -e /tmp/links/new/plain ] || [ -L /tmp/links/new/plain ]; then
		echo "the symlink /tmp/links/new/plain is still there"
		bad=1
	else
		echo "the symlink is gone"
	fi
	if [ -e /run/ublk-plain.sock ]; then
		echo "the RPC socket /run/ublk-plain.sock is still there"
		bad=1
	fi
	# crypt's device (started meanwhile) is not plain's to delete.
	if [ -b "$(dev_of crypt)" ] && [ -L /tmp/links/crypt ]; then
		echo "crypt's $(dev_of crypt) and its symlink are still there"
	else
		echo "crypt's device or symlink went with plain"
		bad=1
	fi
	return $bad
}

# ---- b. encrypted disk ----

# Started while plain still runs: a second device of its own. Its symlink
# path holds a regular file, which the symlink replaces.
crypt_start() {
	truncate -s @CRYPT_BYTES@ $EXT/crypt.raw
	mkdir -p /tmp/links
	echo "not a symlink" >/tmp/links/crypt
	ublk_start crypt "$CFG/crypt.yaml" --device-symlink /tmp/links/crypt
	ublk_wait crypt
	expect_size crypt @CRYPT_BYTES@
	C=$(dev_of crypt)
	[ "$C" != "$(dev_of plain)" ] || { echo "crypt got plain's device $C"; exit 1; }
	[ -b "$(dev_of plain)" ] || { echo "$(dev_of plain) is gone"; exit 1; }
	echo "plain is $(dev_of plain), crypt is $C"
	wait_until 10 "/tmp/links/crypt to become a symlink" test -L /tmp/links/crypt
	echo "/tmp/links/crypt -> $(readlink /tmp/links/crypt)"
	[ "$(readlink /tmp/links/crypt)" = "$C" ]
}

crypt_fio() {
	need_dev crypt
	fio_verify "$(dev_of crypt)" 0 @CRYPT_FIO_JOB_MIB@
}

crypt_marker() {
	need_dev crypt
	C=$(dev_of crypt)
	cp '@MARKER_FILE@' /tmp/marker
	dd if=/tmp/marker of=$C bs=64k seek=@MARKER_OFF@ oflag=direct,seek_bytes conv=notrunc,fsync status=none
	drop_caches $C
	dd if=$C of=/tmp/marker.back bs=64k skip=@MARKER_OFF@ count=@MARKER_LEN@ \
		iflag=direct,skip_bytes,count_bytes status=none
	cmp /tmp/marker.back /tmp/marker
	# The same grep that must find nothing in the file finds it here.
	n=$(grep -a -c -F '@MARKER_TEXT@' /tmp/marker.back || true)
	echo "$C: @MARKER_LEN@ bytes at @MARKER_OFF@ read back, $n marker lines"
	[ "$n" -eq @MARKER_LINES@ ]
}

crypt_stop() {
	trap 'ublk_kill crypt' EXIT
	bad=0
	ublk_stop crypt INT || bad=1
	dev_gone crypt || bad=1
	if [ -e /tmp/links/crypt ] || [ -L /tmp/links/crypt ]; then
		echo "the symlink /tmp/links/crypt is still there"
		bad=1
	fi
	return $bad
}

crypt_file_has_no_marker() {
	n=$(grep -a -c -F '@MARKER_TEXT@' $EXT/crypt.raw || true)
	echo "$EXT/crypt.raw: $n lines with the marker text"
	[ "$n" -eq 0 ]
	# ... and the marker's range was written (it is not a hole).
	if dd if=$EXT/crypt.raw bs=64k skip=@MARKER_OFF@ count=@MARKER_LEN@ iflag=skip_bytes,count_bytes status=none |
		cmp -s -n @MARKER_LEN@ - /dev/zero; then
		echo "the marker's range of the file is all zeroes"
		exit 1
	fi
}

crypt_xts_decode() {
	'@XTS@' -f "$CFG/crypt.yaml" --start $((@MARKER_OFF@ / 512)) --len $((@MARKER_LEN@ / 512)) \
		$EXT/crypt.raw /tmp/marker.decoded
	cmp /tmp/marker.decoded /tmp/marker.back
	echo "xts decodes the marker's sectors of the file to what the device returned"
}

# ---- c. lazy disk ----

lazy_setup() {
	cp '@IMAGE@' $EXT/lazy-image.raw
	cmp $EXT/lazy-image.raw '@IMAGE@'
	truncate -s @IMAGE_BYTES@ $EXT/lazy.raw
	"$BIN/init-metadata" -f "$CFG/lazy-cold.yaml" -s @SHIFT@
	"$BIN/dump-metadata" -f "$CFG/lazy-cold.yaml" | grep stripes
}

lazy_start() { # NAME
	ublk_start $1 "$CFG/$1.yaml"
	ublk_wait $1
	expect_size $1 @IMAGE_BYTES@
}

lazy_sha256() { # NAME: the device's sha256 (64 KiB O_DIRECT reads) is the image's
	got=$(dd if="$(dev_of $1)" bs=64k iflag=direct status=none | sha256sum | cut -d' ' -f1)
	echo "sha256 of $(dev_of $1) (64 KiB O_DIRECT reads): $got, image: @IMAGE_SHA256@"
	[ "$got" = "@IMAGE_SHA256@" ]
}

# copy_on_read false: every read is O_DIRECT and inside one stripe, so it is
# served from the image without fetching (a buffered read would not do: the
# block layer's readahead crosses stripes, and a read across stripes fetches
# them, leaving nothing for the restart with autofetch to do).
lazy_cold_read() {
	need_dev lazy-cold
	L=$(dev_of lazy-cold)
	dd if=$L bs=@STRIPE@ iflag=direct status=none | cmp - $EXT/lazy-image.raw
	echo "$L equals the image (cmp, one-stripe O_DIRECT reads)"
	lazy_sha256 lazy-cold
}

lazy_cold_fetched_nothing() {
	f=$("$BIN/dump-metadata" -f "$CFG/lazy-cold.yaml" | sed -n 's/^fetched stripes: *//p')
	echo "fetched stripes after the reads with copy_on_read false: ${f:-none}"
	[ -z "$f" ]
}

# copy_on_read and autofetch: reads through the page cache, then O_DIRECT.
lazy_read() {
	need_dev lazy
	L=$(dev_of lazy)
	drop_caches $L
	cmp $L $EXT/lazy-image.raw
	echo "$L equals the image (cmp, page cache)"
	lazy_sha256 lazy
}

lazy_stop() { # NAME
	trap "ublk_kill $1" EXIT
	bad=0
	ublk_stop $1 || bad=1
	dev_gone $1 || bad=1
	"$BIN/dump-metadata" -f "$CFG/$1.yaml" | grep stripes || true
	return $bad
}

lazy_hydrate() {
	rpc_wait_fetched /run/ublk-lazy.sock @HYDRATE_TIMEOUT@
	# Nothing was fetched before the restart: this backend fetched them all.
	rpc /run/ublk-lazy.sock stats 'r["stats"]["fetch"]["stripes_fetched"] == @SOURCE_STRIPES@'
}

lazy_disk_file() {
	cmp $EXT/lazy.raw $EXT/lazy-image.raw
	echo "$EXT/lazy.raw equals the image"
}

# ---- d. failed reads must not lose tags ----

fail_setup() {
	head -c @FAIL_IMAGE_BYTES@ /dev/urandom >$EXT/fail-image.raw
	truncate -s @FAIL_IMAGE_BYTES@ $EXT/fail.raw
	"$BIN/init-metadata" -f "$CFG/fail.yaml" -s @SHIFT@
	# Stripes past the new end keep their source in the metadata, which can
	# no longer be read: fetching them fails.
	truncate -s @FAIL_KEEP_BYTES@ $EXT/fail-image.raw
	"$BIN/dump-metadata" -f "$CFG/fail.yaml" | grep stripes
}

fail_start() {
	ublk_start fail "$CFG/fail.yaml"
	ublk_wait fail
	echo "$(ls "$(sysfs_of fail)/mq" | wc -l) hardware queue(s), nr_requests $(cat "$(sysfs_of fail)/queue/nr_requests")"
}

# read_4k DEV OFFSET: one O_DIRECT 4 KiB read into /tmp/read.out; returns its
# status, or 124 when it has not completed within READ_TIMEOUT s (it is left
# behind: a read the device never completes cannot be killed).
read_4k() {
	rm -f /tmp/read.rc /tmp/read.err
	(
		set +e
		dd if="$1" of=/tmp/read.out bs=4k count=1 skip=$(($2 / 4096)) iflag=direct status=none 2>/tmp/read.err
		echo $? >/tmp/read.rc.new
		mv /tmp/read.rc.new /tmp/read.rc
	) &
	wait_until @READ_TIMEOUT@ "a 4 KiB read at $2" test -e /tmp/read.rc || return 124
	return "$(cat /tmp/read.rc)"
}

# The reads run one after another in one background loop, so that a read
# the device never completes (it cannot be killed) stops the check at its
# deadline instead of hanging it; a line per read goes to /tmp/eio.out.
fail_eio() {
	need_dev fail
	F=$(dev_of fail)
	rm -f /tmp/eio.out /tmp/eio.done
	(
		set +e
		i=0
		while [ $i -lt @FAIL_READS@ ]; do
			# A different unreadable stripe each time, at varying offsets in it.
			off=$(((@FAIL_FIRST_BAD@ + i) * @STRIPE@ + (i * 12288) % @STRIPE@))
			dd if="$F" of=/dev/null bs=4k count=1 skip=$((off / 4096)) iflag=direct \
				status=none 2>/tmp/eio.err
			rc=$?
			echo "$i $off $rc $(tr '\n' ' ' </tmp/eio.err)" >>/tmp/eio.out
			i=$((i + 1))
		done
		touch /tmp/eio.done
	) &
	if ! wait_until $((@READ_TIMEOUT@ * 2)) "@FAIL_READS@ reads" test -e /tmp/eio.done; then
		echo "$(cat /tmp/eio.out 2>/dev/null | wc -l) of @FAIL_READS@ reads completed; the next never did"
		return 1
	fi
	eio=0 ok=0 other=0
	while read -r i off rc err; do
		if [ "$rc" -eq 0 ]; then
			echo "read $i at $off: succeeded, want an I/O error"
			ok=$((ok + 1))
		elif [ "${err#*Input/output error}" != "$err" ]; then
			eio=$((eio + 1))
		else
			echo "read $i at $off: status $rc: $err"
			other=$((other + 1))
		fi
	done </tmp/eio.out
	echo "@FAIL_READS@ reads of unreadable stripes: $eio failed with EIO, $ok succeeded, $other failed otherwise"
	[ $eio -eq @FAIL_READS@ ]
}

fail_good_read() {
	need_dev fail
	F=$(dev_of fail)
	# After the failures, readable stripes still read (the first and the last
	# one the image still holds), with the image's bytes.
	for off in 0 $((@FAIL_KEEP_BYTES@ - 4096)); do
		rc=0
		read_4k $F $off || rc=$?
		[ $rc -eq 0 ] || { echo "read at $off: status $rc: $(cat /tmp/read.err 2>/dev/null)"; exit 1; }
		cmp -i 0:$off -n 4096 /tmp/read.out $EXT/fail-image.raw
		echo "read at $off: the image's bytes"
	done
}

fail_rpc() {
	rpc /run/ublk-fail.sock stats 'r["stats"]["fetch"]["fetch_failures"] > 0'
	rpc /run/ublk-fail.sock queues 'r["queues"] == [[]]'
}

fail_stop() {
	trap 'ublk_kill fail' EXIT
	bad=0
	ublk_stop fail || bad=1
	dev_gone fail || bad=1
	return $bad
}

# ---- SIGTERM under load ----

# A backend stopped while fio keeps 16 requests in flight: it still exits 0,
# the device goes, and fio ends (with errors) instead of hanging.
busy_stop() {
	trap 'ublk_kill busy' EXIT
	ublk_start busy "$CFG/busy.yaml"
	ublk_wait busy
	need_dev busy
	B=$(dev_of busy)
	rm -f /tmp/busy-fio.rc
	(
		set +e
		fio --name=busy --filename=$B --direct=1 --ioengine=libaio --iodepth=16 --rw=randrw \
			--bs=4k --time_based --runtime=120 --size=64M >/tmp/busy-fio.out 2>&1
		echo $? >/tmp/busy-fio.rc.new
		mv /tmp/busy-fio.rc.new /tmp/busy-fio.rc
	) &
	sleep 3
	bad=0
	if rpc /run/ublk-busy.sock stats 'sum(q["read_ops"] + q["write_ops"] for q in r["stats"]["queues"]) > 0' >/tmp/busy.stats; then
		cat /tmp/busy.stats
	else
		cat /tmp/busy.stats
		echo "fio's I/O did not reach the backend"
		bad=1
	fi
	ublk_stop busy || bad=1
	dev_gone busy || bad=1
	if wait_until @STOP_TIMEOUT@ "fio to end after the device went" test -e /tmp/busy-fio.rc; then
		echo "fio ended with status $(cat /tmp/busy-fio.rc) (an error is expected)"
	else
		bad=1
	fi
	return $bad
}

# ---- deleted from outside ----

# `ublk del N` (UBLK_U_CMD_DEL_DEV, sent by ublk_ctl.py) under a running
# backend: it exits 0 by itself and leaves no device, symlink or socket. The
# command returns only once the backend closed /dev/ublkcN, so it runs in
# the background.
deleted_from_outside() {
	trap 'ublk_kill gone' EXIT
	ublk_start gone "$CFG/gone.yaml" --device-symlink /tmp/links/gone
	ublk_wait gone
	need_dev gone
	wait_until 10 "the symlink /tmp/links/gone" test -L /tmp/links/gone
	id=$(dev_of gone)
	id=${id#/dev/ublkb}
	rm -f /tmp/ctl.rc
	(
		set +e
		timeout 60 python3 '@UBLK_CTL@' del $id >/tmp/ctl.out 2>&1
		echo $? >/tmp/ctl.rc.new
		mv /tmp/ctl.rc.new /tmp/ctl.rc
	) &
	bad=0
	if wait_until @STOP_TIMEOUT@ "ublk-backend gone to exit after DEL_DEV" test -e /tmp/gone.rc; then
		echo "ublk-backend gone: exit status $(cat /tmp/gone.rc) after DEL_DEV of device $id"
		[ "$(cat /tmp/gone.rc)" -eq 0 ] || { tail -n 20 /tmp/gone.log; bad=1; }
	else
		tail -n 20 /tmp/gone.log
		bad=1
	fi
	wait_until 70 "the DEL_DEV command to return" test -e /tmp/ctl.rc || bad=1
	echo "ublk_ctl.py: $(cat /tmp/ctl.out 2>/dev/null) (status $(cat /tmp/ctl.rc 2>/dev/null))"
	[ "$(cat /tmp/ctl.rc 2>/dev/null)" = 0 ] || bad=1
	dev_gone gone || bad=1
	if [ -e /tmp/links/gone ] || [ -L /tmp/links/gone ]; then
		echo "the symlink /tmp/links/gone is still there"
		bad=1
	fi
	if [ -e /run/ublk-gone.sock ]; then
		echo "the RPC socket /run/ublk-gone.sock is still there"
		bad=1
	fi
	return $bad
}

# ---- e. start-up failures ----

# The disk file does not exist: exit 1, no device made.
bad_path_start_fails() {
	trap 'ublk_kill badpath' EXIT
	before=$(ublk_nodes)
	ublk_start badpath "$CFG/badpath.yaml"
	wait_until 30 "ublk-backend badpath to exit" test -e /tmp/badpath.rc || exit 1
	rc=$(cat /tmp/badpath.rc)
	after=$(ublk_nodes)
	echo "exit status $rc; ublk nodes before: ${before:-none}; after: ${after:-none}; stderr:"
	tail -n 5 /tmp/badpath.log
	[ "$rc" -eq 1 ] && [ "$after" = "$before" ]
}

ublk_nodes() {
	ls /dev/ublkb* /dev/ublkc* 2>/dev/null | tr '\n' ' '
}

huge_start_fails() {
	trap 'ublk_kill huge' EXIT
	before=$(ublk_nodes)
	truncate -s 16M $EXT/huge.raw
	# Under ASan an allocation that large must fail like malloc, not abort.
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1
	ublk_start huge "$CFG/huge.yaml"
	wait_until 60 "ublk-backend huge to exit" test -e /tmp/huge.rc || { tail -n 20 /tmp/huge.log; exit 1; }
	rc=$(cat /tmp/huge.rc)
	after=$(ublk_nodes)
	echo "exit status $rc; ublk nodes before: ${before:-none}; after: ${after:-none}; stderr:"
	tail -n 20 /tmp/huge.log
	bad=0
	[ "$rc" -eq 1 ] || { echo "exit status $rc, want 1"; dmesg | tail -n 20; bad=1; }
	grep -qiE "error|fail|cannot" /tmp/huge.log || { echo "no error message on stderr"; bad=1; }
	[ -z "$after" ] || { echo "ublk device nodes left: $after"; bad=1; }
	return $bad
}

# partial: one queue starts (its tags fetched, so the kernel holds its
# commands) while the other cannot. Which fd limit gives that depends on the
# build, so scan a range upwards: every run must end, exit 1 when a queue
# failed, and leave no device; at least one run must have had exactly one
# queue failing. The scan ends at the first limit that serves (every higher
# one serves too).
partial_start_fails() {
	trap 'ublk_kill partial' EXIT
	# The limit applies to ublk-backend alone: the shell needs fds >= 10
	# for its own redirections.
	printf '#!/bin/sh\nulimit -n "$NOFILE" && exec "$REAL_UBLK" "$@"\n' >/tmp/ublk-nofile.sh
	chmod +x /tmp/ublk-nofile.sh
	export REAL_UBLK="$UBLK"
	partial=0 started=0
	for n in $(seq 10 26); do
		(export NOFILE=$n UBLK=/tmp/ublk-nofile.sh && ublk_start partial "$CFG/partial.yaml") >/dev/null
		wait_until $START_TIMEOUT "ublk-backend partial (nofile $n) to start or exit" \
			ublk_up partial || { tail -n 20 /tmp/partial.log; return 1; }
		if [ ! -e /tmp/partial.rc ]; then
			started=$((started + 1))
			ublk_stop partial >/dev/null || { echo "nofile $n: no clean stop"; return 1; }
		fi
		rc=$(cat /tmp/partial.rc)
		failed=$(grep -c "ublk queue [0-9]*: cannot" /tmp/partial.log || true)
		echo "nofile $n: exit status $rc, $failed queue(s) failed to start"
		if grep -q "a queue could not start" /tmp/partial.log; then
			[ "$rc" -eq 1 ] || { echo "exit status $rc after a queue failed"; return 1; }
			[ "$failed" -ne 1 ] || partial=$((partial + 1))
		fi
		[ -z "$(ublk_nodes)" ] || { echo "nofile $n: device nodes left: $(ublk_nodes)"; return 1; }
		[ "$started" -eq 0 ] || break
	done
	echo "$partial run(s) with exactly one of two queues failing, $started run(s) serving"
	[ "$partial" -ge 1 ] && [ "$started" -ge 1 ]
}

# ---- f. systemd's notify protocol ----

# NOTIFY_SOCKET names a socket this check holds: the first message is READY=1
# with "STATUS=serving /dev/ublkbN", and that device is already a block
# device that reads; SIGTERM sends STOPPING=1, then exit 0.
notify_ready_stopping() {
	_nrc=0
	timeout $((START_TIMEOUT + 2 * STOP_TIMEOUT + 30)) python3 - "$UBLK" "$CFG/notify.yaml" \
		$START_TIMEOUT $STOP_TIMEOUT <<'PY' || _nrc=$?
import mmap, os, signal, socket, stat, subprocess, sys
ublk, config, start_timeout, stop_timeout = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5])
path = "/tmp/notify.sock"
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
env = dict(os.environ, NOTIFY_SOCKET=path, UBIBLK_LOG="info")
p = subprocess.Popen([ublk, "-f", config], env=env, stdin=subprocess.DEVNULL,
                     stderr=open("/tmp/notify.log", "wb"))
with open("/tmp/ublk.pids", "a") as f:
    f.write(f"{p.pid}\n")
try:
    s.settimeout(start_timeout)
    ready = s.recv(4096).decode().split("\n")
    print("first message:", ready)
    assert ready[0] == "READY=1", "the first message is not READY=1"
    dev = ready[1].split("STATUS=serving ", 1)[1]
    assert stat.S_ISBLK(os.stat(dev).st_mode), f"{dev} is not a block device"
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    assert os.readv(fd, [buf]) == 4096, "a 4 KiB read of the device fell short"
    os.close(fd)
    print(f"{dev}: a block device, 4 KiB read at once")
    p.send_signal(signal.SIGTERM)
    s.settimeout(stop_timeout)
    while True:
        message = s.recv(4096).decode().split("\n")
        print("after SIGTERM:", message)
        if "STOPPING=1" in message:
            break
    rc = p.wait(timeout=stop_timeout)
    print("exit status", rc)
    assert rc == 0
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
PY
	[ "$_nrc" -eq 0 ] || tail -n 20 /tmp/notify.log
	return $_nrc
}

# ---- the end ----

no_leftovers() {
	left=""
	for c in /proc/[0-9]*/comm; do
		if [ "$(cat "$c" 2>/dev/null)" = ublk-backend ]; then
			left="$left ${c%/comm}"
		fi
	done
	nodes=$(ublk_nodes)
	echo "ublk-backend processes:${left:- none}; ublk device nodes: ${nodes:-none}"
	[ -z "$left" ] && [ -z "$nodes" ]
}

kernel_log() {
	dmesg | grep -iE "ublk|I/O error" | tail -n 15 || true
	if dmesg | grep -E "BUG:|WARNING:|Oops|blocked for more than|Call Trace"; then
		echo "the kernel log has the problems above"
		exit 1
	fi
}

check scratch-ext4 scratch_ext4
check plain-start plain_start
check plain-fio-verify plain_fio
check plain-rpc plain_rpc
check plain-discard plain_discard
check plain-write-zeroes plain_write_zeroes
check plain-flush plain_flush
check crypt-start crypt_start
check plain-stop plain_stop
check crypt-fio-verify crypt_fio
check crypt-marker crypt_marker
check crypt-stop crypt_stop
check crypt-file-has-no-marker crypt_file_has_no_marker
@XTS_CHECK@
ublk_cleanup
check lazy-setup lazy_setup
check lazy-cold-start lazy_start lazy-cold
check lazy-cold-read lazy_cold_read
check lazy-cold-stop lazy_stop lazy-cold
check lazy-cold-fetched-nothing lazy_cold_fetched_nothing
ublk_cleanup
check lazy-start lazy_start lazy
check lazy-hydrate lazy_hydrate
check lazy-read lazy_read
check lazy-stop lazy_stop lazy
check lazy-disk-file lazy_disk_file
ublk_cleanup
check fail-setup fail_setup
check fail-start fail_start
check fail-eio fail_eio
check fail-good-read fail_good_read
check fail-rpc fail_rpc
check fail-stop fail_stop
ublk_cleanup
check busy-stop busy_stop
ublk_cleanup
check deleted-from-outside deleted_from_outside
ublk_cleanup
check bad-path-start-fails bad_path_start_fails
check huge-start-fails huge_start_fails
ublk_cleanup
check partial-start-fails partial_start_fails
ublk_cleanup
check notify-ready-stopping notify_ready_stopping
ublk_cleanup
check no-leftovers no_leftovers
check kernel-log kernel_log
'''

XTS_CHECK = "check crypt-xts-decode crypt_xts_decode"

GUEST_CHECKS = ["scratch-ext4",
                "plain-start", "plain-fio-verify", "plain-rpc", "plain-discard",
                "plain-write-zeroes", "plain-flush", "crypt-start", "plain-stop",
                "crypt-fio-verify", "crypt-marker", "crypt-stop",
                "crypt-file-has-no-marker",
                "lazy-setup", "lazy-cold-start", "lazy-cold-read", "lazy-cold-stop",
                "lazy-cold-fetched-nothing",
                "lazy-start", "lazy-hydrate", "lazy-read", "lazy-stop", "lazy-disk-file",
                "fail-setup", "fail-start", "fail-eio", "fail-good-read", "fail-rpc",
                "fail-stop", "busy-stop", "deleted-from-outside",
                "bad-path-start-fails", "huge-start-fails", "partial-start-fails",
                "notify-ready-stopping", "no-leftovers", "kernel-log"]

# In the guest: the ext4 on the scratch drive, and the RPC sockets on /run.
EXT = "/tmp/ext"


def configs(keys):
    """name -> config fields, paths as the guest sees them."""
    def lazy(name, image, **fields):
        return dict(path=f"{EXT}/{name}.raw", image_path=f"{EXT}/{image}",
                    metadata_path=f"{EXT}/{name}.meta", **fields)
    return {
        "plain": dict(path=f"{EXT}/plain.raw", num_queues=2, queue_size=64,
                      seg_size_max=65536, rpc_socket_path="/run/ublk-plain.sock"),
        "crypt": dict(path=f"{EXT}/crypt.raw", num_queues=2, queue_size=64,
                      encryption_key=harness.encryption_key_field(*keys)),
        "lazy-cold": lazy("lazy", "lazy-image.raw", num_queues=2, queue_size=64,
                          copy_on_read=False),
        "lazy": lazy("lazy", "lazy-image.raw", num_queues=2, queue_size=64, copy_on_read=True,
                     autofetch=True, rpc_socket_path="/run/ublk-lazy.sock"),
        "fail": lazy("fail", "fail-image.raw", num_queues=1, queue_size=FAIL_QUEUE_SIZE,
                     copy_on_read=True, rpc_socket_path="/run/ublk-fail.sock"),
        "busy": dict(path=f"{EXT}/plain.raw", num_queues=2, queue_size=64,
                     rpc_socket_path="/run/ublk-busy.sock"),
        "gone": dict(path=f"{EXT}/plain.raw", num_queues=2, queue_size=64,
                     rpc_socket_path="/run/ublk-gone.sock"),
        "badpath": dict(path=f"{EXT}/no-such-file.raw"),
        "huge": dict(path=f"{EXT}/huge.raw", num_queues=2, queue_size=4096,
                     seg_size_max=1048576),
        "partial": dict(path=f"{EXT}/plain.raw", num_queues=2, queue_size=16),
        "notify": dict(path=f"{EXT}/plain.raw", num_queues=1, queue_size=64),
    }


class Session:
    """Runs the guest once; the test functions assert on what it recorded."""

    def __init__(self, keep):
        self.keep = keep
        self.error = None            # a traceback if the host side itself broke
        self.timings = {}
        self.result = None
        self.console_tail = ""
        self.with_xts = False

    def run(self):
        timeout = int(os.environ.get("UBIBLK_GUEST_TIMEOUT", "600"))
        t = time.monotonic()
        kernel, initrd = run_guest.prepare()
        self.timings["prepare"] = time.monotonic() - t
        scratch, tmp = run_guest.scratch_dir("ubiblk-guest-ublk-", harness.BUILD_DIR,
                                             keep=self.keep)
        try:
            self._scenario(tmp, kernel, initrd, timeout)
        except Exception:  # noqa: BLE001 - reported by the first test
            self.error = traceback.format_exc()
        finally:
            if scratch:
                scratch.cleanup()
            else:
                print(f"kept {tmp}", flush=True)

    def _scenario(self, tmp, kernel, initrd, timeout):
        t = time.monotonic()
        build_bin = os.path.dirname(harness.binary("ublk-backend"))
        tools = [harness.binary(name) for name in ("ublk-backend", "init-metadata",
                                                   "dump-metadata")]
        self.with_xts = os.path.exists(os.path.join(build_bin, "xts"))
        if self.with_xts:
            tools.append(os.path.join(build_bin, "xts"))
        bin_dir = os.path.join(tmp, "bin")
        run_guest.guest_visible(tools, bin_dir)
        ublk_ctl, = run_guest.guest_visible([os.path.join(HERE, "ublk_ctl.py")], bin_dir)
        xts = os.path.join(bin_dir, "xts")
        scratch_drive = harness.make_disk(os.path.join(tmp, "scratch.img"), SCRATCH_BYTES)
        image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_BYTES, seed=5309)
        with open(image, "rb") as f:
            image_sha = hashlib.sha256(f.read()).hexdigest()
        marker_file = os.path.join(tmp, "marker.raw")
        with open(marker_file, "wb") as f:
            f.write(MARKER * (MARKER_LEN // len(MARKER)))
        cfg_dir = os.path.join(tmp, "cfg")
        os.mkdir(cfg_dir)
        for name, fields in configs(harness.random_xts_keys()).items():
            harness.write_config(os.path.join(cfg_dir, f"{name}.yaml"), fields)
        body = run_guest.substitute(GUEST_SCRIPT.replace("@XTS_CHECK@", XTS_CHECK if
                                                         self.with_xts else ""), {
            "BIN": bin_dir, "XTS": xts, "CFG": cfg_dir, "VERSION": "0.4.0",
            "UBLK_CTL": ublk_ctl,
            "START_TIMEOUT": START_TIMEOUT, "STOP_TIMEOUT": STOP_TIMEOUT,
            "READ_TIMEOUT": READ_TIMEOUT, "HYDRATE_TIMEOUT": HYDRATE_TIMEOUT,
            "PLAIN_BYTES": PLAIN_BYTES, "FIO_JOB_MIB": FIO_JOB_MIB,
            "DISCARD_AT": DISCARD_AT, "WZ_AT": WZ_AT, "REGION_MIB": REGION_MIB,
            "HOLE_OFF": HOLE_OFF, "HOLE_MIB": HOLE_MIB, "PATTERN_OCT": f"{PATTERN:03o}",
            "CRYPT_BYTES": CRYPT_BYTES, "CRYPT_FIO_JOB_MIB": CRYPT_FIO_JOB_MIB,
            "MARKER_FILE": marker_file, "MARKER_TEXT": MARKER.decode().rstrip("\n"),
            "MARKER_OFF": MARKER_OFF, "MARKER_LEN": MARKER_LEN,
            "MARKER_LINES": MARKER_LEN // len(MARKER),
            "IMAGE": image, "IMAGE_BYTES": IMAGE_BYTES, "IMAGE_SHA256": image_sha,
            "SHIFT": SHIFT, "STRIPE": STRIPE, "SOURCE_STRIPES": -(-IMAGE_BYTES // STRIPE),
            "FAIL_IMAGE_BYTES": FAIL_IMAGE_BYTES, "FAIL_KEEP_BYTES": FAIL_KEEP_BYTES,
            "FAIL_FIRST_BAD": FAIL_KEEP_BYTES // STRIPE, "FAIL_READS": FAIL_READS})
        self.timings["host setup"] = time.monotonic() - t
        t = time.monotonic()
        self.result = run_guest.run_guest(tmp, [], body, timeout=timeout, kernel=kernel,
                                          initrd=initrd, drives=[scratch_drive],
                                          tcg_thread=TCG_THREAD)
        self.timings["guest"] = time.monotonic() - t
        self.console_tail = self.result.console_tail(60)


def make_tests(s):
    def scenario_runs():
        s.run()
        parts = [f"{k} {v:.1f}s" for k, v in s.timings.items()]
        if s.result is not None:
            parts.append("in the guest: " + ", ".join(
                f"{c.name} {c.seconds:.1f}s" for c in s.result.checks.values()
                if c.seconds is not None))
        print("timings: " + "; ".join(parts), flush=True)
        if s.error:
            raise AssertionError("\n" + s.error)
        if not s.with_xts:
            print("skip crypt-xts-decode: src/bin/xts is not built", flush=True)

    def guest_runs():
        if s.result is None:
            raise AssertionError("the guest did not run")
        problems = s.result.failures()
        if problems:
            raise AssertionError("; ".join(problems) + "\n--- console tail ---\n" +
                                 s.console_tail + "\n---")

    def guest_check(name):
        def test():
            if s.result is None:
                raise AssertionError("the guest did not run")
            run_guest.assert_check_passed(s.result, name)
        test.__name__ = "guest_" + name.replace("-", "_")
        return test

    names = list(GUEST_CHECKS)
    # Decided by what is built: known before the guest runs.
    if os.path.exists(os.path.join(harness.BUILD_DIR, "src", "bin", "xts")):
        names.insert(names.index("crypt-file-has-no-marker") + 1, "crypt-xts-decode")
    return [scenario_runs, guest_runs] + [guest_check(n) for n in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp folder (console log, guest script, configs, scratch "
                         "drive)")
    args = ap.parse_args()
    harness.main(make_tests(Session(args.keep)))


if __name__ == "__main__":
    main()
