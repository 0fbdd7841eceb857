#!/usr/bin/env python3
"""Boot a Linux guest under QEMU (TCG) attached to vhost-user-blk sockets
and/or plain virtio-blk drives backed by host files.

Library (used by the guest tests):

    kernel, initrd = prepare()
    result = run_guest(workdir, [socket], script_body, timeout=300)
    result = run_guest(workdir, [], script_body, drives=[scratch_file])
    result.checks          # {name: Check(passed, detail)}, in guest order
    result.values          # {name: value} from `value NAME VALUE` lines

The guest (tests/guest/init.sh) chroots into the host root shared read-only
over 9p and runs the script with /bin/sh, so the host's fio, blkdiscard, cmp
and sha256sum run in the guest. The script is GUEST_LIB followed by the body;
GUEST_LIB gives it `check NAME FUNCTION [ARGS]` (runs FUNCTION under set -e in
a subshell and prints a PASS or FAIL marker) and `value NAME VALUE`.

CLI (manual checks, see docs/testing-guest.md):

    run_guest.py --socket SOCK --interactive      # a shell in the guest
    run_guest.py --socket SOCK --script FILE      # run a script, print results
    run_guest.py --socket SOCK --print-cmd        # the QEMU command line only
    run_guest.py --drive FILE --interactive       # FILE as a plain virtio-blk disk
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from cpu_hog import CpuHog

HERE = os.path.dirname(os.path.abspath(__file__))
PREPARE = os.path.join(HERE, "prepare.sh")

MARK = "@@UBIBLK-"
# SeaBIOS and the kernel write terminal control sequences (ESC c resets a
# terminal); strip them from everything shown to a person.
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_a-z])")


def clean(text):
    return ANSI.sub("", text.replace("\r", ""))


# The guest covers the host's /tmp and /run with tmpfs of its own (init.sh),
# so files it must read from the host through 9p cannot live there.
GUEST_HIDDEN_DIRS = ("/tmp", "/run")


def scratch_dir(prefix, build_dir, keep=False):
    """(handle, path) of a temporary folder for a guest test: TMPDIR or the
    build folder (a real filesystem: O_DIRECT), or /var/tmp when that lies
    where the guest cannot see it (a checkout under /tmp). With keep the
    folder is not removed and handle is None; else handle.cleanup() removes it."""
    base = os.path.realpath(os.environ.get("TMPDIR") or build_dir)
    if any(base == d or base.startswith(d + "/") for d in GUEST_HIDDEN_DIRS):
        base = "/var/tmp"
    os.makedirs(base, exist_ok=True)
    if keep:
        return None, tempfile.mkdtemp(prefix=prefix, dir=base)
    handle = tempfile.TemporaryDirectory(prefix=prefix, dir=base)
    return handle, handle.name

def guest_visible(paths, folder):
    """Copies of host files the guest must run (binaries, scripts): a
    checkout under /tmp or /run is hidden from the guest by its own tmpfs,
    so they are copied into `folder` (from scratch_dir, which the guest
    sees), modes kept. Returns the copies' paths, in order."""
    os.makedirs(folder, exist_ok=True)
    out = []
    for path in paths:
        copy = os.path.join(folder, os.path.basename(path))
        shutil.copy2(path, copy)
        out.append(copy)
    return out


# Shell helpers prepended to every guest script. Output of a check goes to the
# console between its BEGIN and PASS/FAIL markers (run_guest keeps it as the
# check's detail).
GUEST_LIB = r'''
check() { # check NAME FUNCTION [ARGS...]
	_name=$1
	shift
	echo "@@UBIBLK-CHECK-BEGIN $_name"
	read -r _t0 _ </proc/uptime
	(set -e; "$@") </dev/null 2>&1 &
	_pid=$!
	# A check that hangs is reported while it hangs: the host only sees a
	# timeout, and by then the guest is gone (stall_report below).
	(while sleep "${UBIBLK_STALL_SECONDS:-60}"; do stall_report "$_name"; done) </dev/null 2>&1 &
	_dog=$!
	wait "$_pid"
	_rc=$?
	kill "$_dog" 2>/dev/null
	wait "$_dog" 2>/dev/null
	read -r _t1 _ </proc/uptime
	_t=$(awk "BEGIN { printf \"%.1f\", $_t1 - $_t0 }")
	if [ "$_rc" -eq 0 ]; then
		echo "@@UBIBLK-CHECK-PASS $_name ${_t}s"
	else
		echo "@@UBIBLK-CHECK-FAIL $_name ${_t}s rc=$_rc"
	fi
}
# What a hung check waits for, as the guest kernel sees it: requests its
# block devices have in flight (and in which hardware queue), the tasks in
# uninterruptible sleep with their kernel stacks, and the virtio interrupts.
# Requests in flight in the guest while the backend has none in flight means a
# lost kick or a lost call; none in flight means the hang is not in I/O.
stall_report() { # stall_report NAME
	# Shell builtins only: under TCG on a busy host every fork costs.
	read -r _up _ </proc/uptime
	echo "stall: $1 still running at ${_up}s of guest uptime"
	for _d in /sys/block/*; do
		[ -r "$_d/inflight" ] || continue
		read -r _r _w <"$_d/inflight"
		[ "${_d##*/}" = vda ] || [ "$_r$_w" != 00 ] || continue
		echo "stall: ${_d##*/} in flight (reads writes): $_r $_w"
	done
	[ -d /sys/kernel/debug/block ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	for _f in /sys/kernel/debug/block/*/hctx*/busy /sys/kernel/debug/block/*/hctx*/dispatch; do
		[ -s "$_f" ] || continue
		_n=0
		while [ $_n -lt 4 ] && read -r _l; do
			echo "stall: $_f: $_l"
			_n=$((_n + 1))
		done <"$_f"
	done
	for _p in /proc/[0-9]*; do
		read -r _ _comm _s _ <"$_p/stat" 2>/dev/null || continue
		[ "$_s" = D ] || continue
		echo "stall: task $_comm (pid ${_p#/proc/}) in D state:"
		_n=0
		while [ $_n -lt 8 ] && read -r _l; do
			echo "stall:   $_l"
			_n=$((_n + 1))
		done <"$_p/stack" 2>/dev/null
	done
	while read -r _l; do
		case $_l in *virtio*) echo "stall: $_l" ;; esac
	done </proc/interrupts
}
value() { # value NAME VALUE: reported to the host
	echo "@@UBIBLK-VALUE $1 $2"
}
wait_for_dev() { # wait_for_dev PATH SECONDS
	_i=0
	while [ ! -b "$1" ]; do
		_i=$((_i + 1))
		[ "$_i" -le $(($2 * 10)) ] || { echo "no $1 after $2 s"; return 1; }
		sleep 0.1
	done
}
'''


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    seconds: float = None  # guest time the check took


# Lines of the guest's stall report a failure message carries.
STALL_LINES = 40


@dataclass
class GuestResult:
    console_log: str
    duration: float = 0.0
    timed_out: bool = False
    ready: bool = False
    exit_status: int = None  # the script's status; None if it never finished
    errors: list = field(default_factory=list)  # @@UBIBLK-GUEST-ERROR lines
    checks: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    unfinished: str = None  # the check the guest was in when it stopped
    stall: list = field(default_factory=list)  # stall_report lines of the unfinished check

    def failures(self):
        """Problems with the guest run itself (not with a check)."""
        out = list(self.errors)
        if self.timed_out:
            out.append(f"guest timed out after {self.duration:.0f}s")
        if not self.ready:
            out.append("guest never reached the test script")
        elif self.exit_status is None:
            out.append("guest script did not finish" +
                       (f" (check {self.unfinished} never finished)" if self.unfinished else ""))
        if self.stall and (self.timed_out or self.exit_status is None):
            # First, before any console tail: what the hung check waited for.
            out.append("the guest's stall report:\n" + "\n".join(self.stall[:STALL_LINES]))
        elif self.exit_status != 0:
            out.append(f"guest script exited with status {self.exit_status}")
        return out

    def console_tail(self, lines=40):
        try:
            with open(self.console_log, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(clean(text).splitlines()[-lines:])


def substitute(template, values):
    """Replace @KEY@ in a guest script template by str(values[KEY]); fails on
    a placeholder left over (a typo would otherwise reach the guest's shell)."""
    text = template
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    left = re.findall(r"@[A-Z][A-Z0-9_]*@", text)
    if left:
        raise ValueError(f"unsubstituted placeholders: {sorted(set(left))}")
    return text


def cache_dir():
    return os.environ.get("UBIBLK_GUEST_CACHE") or "/var/cache/ubiblk-guest"


def prepare(timeout=900):
    """Run prepare.sh (cached); returns (kernel, initrd) paths."""
    proc = subprocess.run(["sh", PREPARE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("prepare.sh failed:\n" + proc.stderr.decode(errors="replace"))
    paths = dict(line.split("=", 1) for line in proc.stdout.decode().splitlines() if "=" in line)
    return paths["KERNEL"], paths["INITRD"]


def qemu_argv(kernel, initrd, sockets, append="", mem_mb=1024, smp=2, num_queues=2,
              queue_size=128, extra=(), tcg_thread=None, drives=()):
    """QEMU command line: TCG, shared memfd memory (vhost-user needs it), one
    vhost-user-blk-pci device per socket (vda, vdb, ...), then one plain
    virtio-blk-pci device per host file in drives (raw, cache=none,
    aio=threads; after the sockets' disks, so /dev/vda... in order when there
    are no sockets), the host root over 9p read-only, serial console on
    stdio. queue_size must not exceed the backend's (vhost-backend:
    queue_size in its config, default 64).
    tcg_thread="single" runs all vCPUs in one host thread (-accel
    tcg,thread=single): still smp vCPUs and queues, but no early-boot
    "Oops: int3" from the kernel patching its text while another vCPU runs it
    (seen in a few percent of multi-threaded TCG boots with QEMU 7.2)."""
    if tcg_thread:
        accel = ["-machine", "q35", "-accel", f"tcg,thread={tcg_thread}"]
    else:
        accel = ["-machine", "q35,accel=tcg"]
    argv = (["qemu-system-x86_64"] + accel +
            ["-cpu", "max", "-smp", str(smp), "-m", f"{mem_mb}M",
             "-object", f"memory-backend-memfd,id=mem,size={mem_mb}M,share=on",
             "-numa", "node,memdev=mem",
             "-nographic", "-no-reboot", "-nodefaults", "-serial", "mon:stdio",
             "-kernel", kernel, "-initrd", initrd,
             "-append", f"console=ttyS0 panic=-1 quiet loglevel=4 {append}".strip(),
             "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                        "multidevs=remap"])
    for i, sock in enumerate(sockets):
        sock = os.path.abspath(sock)
        argv += ["-chardev", f"socket,id=vu{i},path={sock}",
                 "-device", f"vhost-user-blk-pci,chardev=vu{i},num-queues={num_queues},"
                            f"queue-size={queue_size}"]
    for i, path in enumerate(drives):
        # cache=none: the guest's flushes and O_DIRECT reach the host file as
        # they would a real disk; the host page cache does not flatter it.
        path = os.path.abspath(path)
        if "," in path:
            raise ValueError(f"drive path with a comma (QEMU option syntax): {path}")
        argv += ["-drive", f"file={path},format=raw,if=none,id=d{i},cache=none,aio=threads",
                 "-device", f"virtio-blk-pci,drive=d{i}"]
    return argv + list(extra)


def parse_console(text, result):
    """Fill result from the guest's console text."""
    current = None  # (name, [lines]) of the open check
    for raw in clean(text).splitlines():
        i = raw.find(MARK)
        if i < 0:
            if current:
                current[1].append(raw)
            continue
        line = raw[i + len(MARK):]
        if current and i > 0:
            current[1].append(raw[:i])
        kind, _, rest = line.partition(" ")
        if kind == "GUEST-READY":
            result.ready = True
        elif kind == "GUEST-ERROR":
            result.errors.append("guest init: " + rest)
        elif kind == "GUEST-EXIT":
            try:
                result.exit_status = int(rest.strip())
            except ValueError:
                result.exit_status = -1
        elif kind == "CHECK-BEGIN":
            current = (rest.strip(), [])
        elif kind in ("CHECK-PASS", "CHECK-FAIL"):
            words = rest.split()
            name = words[0] if words else ""
            seconds = None
            if len(words) > 1 and words[1].endswith("s"):
                try:
                    seconds = float(words[1][:-1])
                except ValueError:
                    pass
            detail = "\n".join(current[1]) if current and current[0] == name else ""
            if kind == "CHECK-FAIL":
                detail = (detail + "\n" + rest).strip()
            result.checks[name] = Check(name, kind == "CHECK-PASS", detail, seconds)
            current = None
        elif kind == "VALUE":
            name, _, value = rest.partition(" ")
            result.values[name] = value.strip()
    if current:  # the guest died inside a check
        result.unfinished = current[0]
        result.stall = [line for line in current[1] if line.startswith("stall: ")]
        result.checks[current[0]] = Check(current[0], False,
                                          "\n".join(current[1] + ["(check never finished)"]))
    return result


def _log_has(path, needle):
    with open(path, "rb") as f:
        return needle.encode() in f.read()


def run_guest(workdir, sockets, script_body, timeout=300, num_queues=2, queue_size=128,
              kernel=None, initrd=None, smp=2, mem_mb=1024, ready_timeout=90, tag=None,
              tcg_thread=None, drives=(), stall_seconds=60):
    """Boot one guest that runs GUEST_LIB + script_body, wait for it to power
    off and parse the markers. sockets may be empty; drives are host files
    attached as plain virtio-blk disks after the sockets' disks. QEMU is killed by pid after `timeout` seconds,
    or after `ready_timeout` if the guest has not reached the script by then
    (it boots in a few seconds; a backend that breaks the device setup would
    otherwise cost the whole timeout). A check still running after
    stall_seconds (guest time) prints the guest's stall report, and again
    every stall_seconds; GuestResult.stall keeps those lines. The script, console log and QEMU
    command line stay in workdir (guest-script.sh, console.log, qemu.cmd;
    with a tag, guest-script-TAG.sh, console-TAG.log and qemu-TAG.cmd, so
    several boots in one workdir keep theirs)."""
    if kernel is None or initrd is None:
        kernel, initrd = prepare()
    suffix = f"-{tag}" if tag else ""
    script = os.path.join(workdir, f"guest-script{suffix}.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\n" + f"UBIBLK_STALL_SECONDS={int(stall_seconds)}\n" + GUEST_LIB +
                "\n" + script_body + "\n")
    os.chmod(script, 0o755)
    log = os.path.join(workdir, f"console{suffix}.log")
    argv = qemu_argv(kernel, initrd, sockets, append=f"ubiblk.script={os.path.abspath(script)}",
                     num_queues=num_queues, queue_size=queue_size, smp=smp, mem_mb=mem_mb,
                     tcg_thread=tcg_thread, drives=drives)
    with open(os.path.join(workdir, f"qemu{suffix}.cmd"), "w") as f:
        f.write(shlex.join(argv) + "\n")
    result = GuestResult(console_log=log)
    start = time.monotonic()
    hog = CpuHog.from_env()
    with hog, open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = start + timeout
            ready_deadline = start + ready_timeout
            while proc.poll() is None:
                now = time.monotonic()
                if now >= deadline:
                    result.timed_out = True
                    break
                if ready_deadline and now >= ready_deadline:
                    if _log_has(log, MARK + "GUEST-READY"):
                        ready_deadline = None
                    else:
                        result.timed_out = True
                        result.errors.append(f"guest not ready after {ready_timeout}s")
                        break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    result.duration = time.monotonic() - start
    if hog.failure():
        result.errors.append(hog.failure())
    with open(log, "rb") as f:
        parse_console(f.read().decode(errors="replace"), result)
    if proc.returncode not in (0, -signal.SIGKILL) and not result.ready:
        result.errors.append(f"qemu exited with status {proc.returncode}")
    return result


def assert_check_passed(result, name):
    """For a host-side test per guest check: raises AssertionError unless the
    check `name` ran in the guest and passed (with the tail of its output)."""
    if result is None:
        raise AssertionError("the guest did not run")
    check = result.checks.get(name)
    if check is None:
        raise AssertionError("not run in the guest")
    if not check.passed:
        raise AssertionError("\n" + "\n".join(
            "     | " + line for line in check.detail.splitlines()[-40:]))


def report(result, expected=()):
    """Print one line per check (and the detail of failures); returns the
    number of failures, counting missing expected checks and a broken run."""
    failed = 0
    for problem in result.failures():
        print(f"FAIL guest: {problem}")
        failed += 1
    for check in result.checks.values():
        took = f" ({check.seconds:.1f}s)" if check.seconds is not None else ""
        print(f"{'ok  ' if check.passed else 'FAIL'} {check.name}{took}")
        if not check.passed:
            failed += 1
            for line in check.detail.splitlines()[-30:]:
                print(f"     | {line}")
    for name in expected:
        if name not in result.checks:
            print(f"FAIL {name}: not run")
            failed += 1
    if failed and result.failures():
        print("--- console tail ---\n" + result.console_tail() + "\n---")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", action="append", default=[],
                    help="vhost-user-blk socket (repeat for vdb, vdc...)")
    ap.add_argument("--drive", action="append", default=[],
                    help="host file attached as a plain virtio-blk disk, after the sockets' "
                         "disks (repeat for more)")
    ap.add_argument("--num-queues", type=int, default=2)
    ap.add_argument("--queue-size", type=int, default=128,
                    help="virtqueue size; at most the backend's queue_size")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--mem-mb", type=int, default=1024)
    ap.add_argument("--tcg-thread", choices=("single", "multi"),
                    help="TCG threading (default: QEMU's, multi-threaded)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--script", help="shell script body to run in the guest (GUEST_LIB "
                                       "helpers: check, value, wait_for_dev)")
    mode.add_argument("--interactive", action="store_true",
                      help="a root shell in the guest on this terminal (Ctrl-a x quits QEMU)")
    mode.add_argument("--print-cmd", action="store_true", help="print the QEMU command line")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--workdir", help="keep the script and console log here")
    args = ap.parse_args()

    kernel, initrd = prepare()
    if args.print_cmd or args.interactive:
        argv = qemu_argv(kernel, initrd, args.socket, append="ubiblk.shell=1",
                         num_queues=args.num_queues, queue_size=args.queue_size, smp=args.smp,
                         mem_mb=args.mem_mb, tcg_thread=args.tcg_thread, drives=args.drive)
        if args.print_cmd:
            print(shlex.join(argv))
            return 0
        os.execvp(argv[0], argv)
    if not args.script:
        ap.error("one of --script, --interactive or --print-cmd is required")
    with open(args.script) as f:
        body = f.read()
    workdir = args.workdir or tempfile.mkdtemp(prefix="ubiblk-guest-")
    os.makedirs(workdir, exist_ok=True)
    result = run_guest(workdir, args.socket, body, timeout=args.timeout,
                       num_queues=args.num_queues, queue_size=args.queue_size,
                       kernel=kernel, initrd=initrd,
                       smp=args.smp, mem_mb=args.mem_mb, tcg_thread=args.tcg_thread,
                       drives=args.drive)
    for name, value in result.values.items():
        print(f"value {name} = {value}")
    failed = report(result)
    passed = sum(1 for c in result.checks.values() if c.passed)
    print(f"console log: {result.console_log} ({result.duration:.1f}s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
