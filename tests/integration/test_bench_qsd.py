#!/usr/bin/env python3
"""ubiblk-bench against qemu-storage-daemon (a file on a real filesystem, and
a null device): verify mode with 1, 2 and 4 queues (chained and indirect
descriptors), JSON reports of the load modes, detection of blocks corrupted,
misplaced or made stale behind the daemon's back, acknowledged writes
surviving a daemon killed mid-run, --dump of what sequential reads returned,
and usage errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import QemuStorageDaemon, make_disk, run_bench, scratch_dir  # noqa: E402

MiB = 1 << 20
BLOCK = 4096


class NullStorageDaemon(QemuStorageDaemon):
    """qemu-storage-daemon exporting a null device: no storage cost at all,
    so what is measured is the vhost-user path and the client."""

    def __init__(self, workdir, size, num_queues=1):
        super().__init__(workdir, disk=None, num_queues=num_queues)
        self.size = size

    def argv(self):
        return ["qemu-storage-daemon",
                "--blockdev", f"driver=null-co,node-name=disk,size={self.size},read-zeroes=off",
                "--export", "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,"
                f"addr.path={self.socket},writable=on,num-queues={self.num_queues}"]


def expect(condition, what, stderr=""):
    if not condition:
        raise AssertionError(what + (f"\n--- bench stderr:\n{stderr}" if stderr else ""))


def expect_ok(rc, result, stderr):
    expect(rc == 0, f"ubiblk-bench exited {rc}", stderr)
    expect(result is not None, "no JSON report", stderr)
    expect(result["outcome"] == "completed" and result["exit_status"] == 0,
           f"outcome {result['outcome']}", stderr)
    expect(result["io_errors"] == 0, f"{result['io_errors']} I/O errors", stderr)


def expect_sane_latency(direction, stderr):
    lat = direction["lat_us"]
    expect(0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"],
           f"latency percentiles out of order: {lat}", stderr)
    expect(lat["min"] <= lat["mean"] <= lat["max"], f"mean outside min..max: {lat}", stderr)


def pwrite_file(path, offset, data):
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def pread_file(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def test_verify_one_two_and_four_queues():
    with scratch_dir() as tmp:
        disk = make_disk(os.path.join(tmp, "disk.img"), 64 * MiB)
        with QemuStorageDaemon(tmp, disk, num_queues=4) as qsd:
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify", "--queues", "4",
                                      "--iodepth", "8", "--size", "32m"])
            expect_ok(rc, res, err)
            blocks = 32 * MiB // BLOCK
            v = res["verify"]
            expect(v["blocks_written"] == blocks and v["blocks_checked"] == blocks
                   and v["blocks_mismatched"] == 0, f"verify counts {v}", err)
            expect(res["write"]["ios"] == blocks and res["read"]["ios"] == blocks,
                   "one write and one read per block", err)
            expect(res["flushes"] == 4, "one flush per queue after the write phase", err)
            expect(res["device"]["queues"] == 4 and res["device"]["capacity_bytes"] == 64 * MiB,
                   f"device {res['device']}", err)

            # Random overwrites on one queue, sleeping on interrupts, no EVENT_IDX.
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--iodepth", "4", "--offset", "40m", "--size", "4m",
                                      "--io-count", "3000", "--completion", "event",
                                      "--no-event-idx"])
            expect_ok(rc, res, err)
            v = res["verify"]
            expect(v["blocks_written"] == 3000 and v["blocks_mismatched"] == 0, f"{v}", err)
            expect(900 < v["blocks_checked"] <= 1024, f"distinct blocks checked {v}", err)
            expect(res["interrupts"] > 0 and not res["event_idx"], "interrupt mode used", err)

            # Indirect tables: one ring entry per request.
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify", "--indirect",
                                      "--queues", "2", "--iodepth", "32", "--offset", "48m",
                                      "--size", "8m"])
            expect_ok(rc, res, err)
            expect(res["indirect"] and res["queue_size"] == 32, "indirect ring of 32", err)
            expect(res["verify"]["blocks_checked"] == 2048, f"{res['verify']}", err)


def test_load_modes_report_json():
    with scratch_dir() as tmp:
        disk = make_disk(os.path.join(tmp, "disk.img"), 64 * MiB)
        with QemuStorageDaemon(tmp, disk, num_queues=2) as qsd:
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "randwrite",
                                      "--io-count", "4000", "--iodepth", "16", "--queues", "2"])
            expect_ok(rc, res, err)
            expect(res["write"]["ios"] == 4000 and res["read"]["ios"] == 0, "4000 writes", err)
            expect(res["write"]["bytes"] == 4000 * BLOCK, "bytes", err)
            expect_sane_latency(res["write"], err)
            iops = res["write"]["iops"]
            expect(abs(iops - 4000 / res["elapsed_s"]) < 0.01 * iops + 1, "iops = ios / time", err)
            expect(abs(res["write"]["mb_s"] - iops * BLOCK / 1e6) < 0.01 * res["write"]["mb_s"] + 0.01,
                   "MB/s = iops x bs", err)

            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "randread",
                                      "--runtime", "1", "--iodepth", "16"])
            expect_ok(rc, res, err)
            expect(res["read"]["ios"] > 100 and res["write"]["ios"] == 0, "reads only", err)
            expect(1.0 <= res["elapsed_s"] < 10, f"elapsed {res['elapsed_s']}", err)
            expect_sane_latency(res["read"], err)

            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "read", "--bs", "64k",
                                      "--size", "16m", "--iodepth", "4", "--queues", "2"])
            expect_ok(rc, res, err)
            expect(res["read"]["ios"] == 256 and res["block_size"] == 65536,
                   "one sequential pass of 64 KiB reads", err)

            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "randrw",
                                      "--io-count", "2000", "--rwmixread", "70", "--iodepth", "8"])
            expect_ok(rc, res, err)
            expect(res["read"]["ios"] + res["write"]["ios"] == 2000, "2000 I/Os", err)
            expect(1200 < res["read"]["ios"] < 1600, f"70 % reads: {res['read']['ios']}", err)


def test_damage_behind_the_daemon_is_detected():
    with scratch_dir() as tmp:
        disk = make_disk(os.path.join(tmp, "disk.img"), 16 * MiB)
        state = os.path.join(tmp, "verify.state")
        with QemuStorageDaemon(tmp, disk) as qsd:
            write = ["--socket", qsd.socket, "--mode", "verify", "--verify-phase", "write",
                     "--verify-state", state, "--iodepth", "8"]
            read = ["--socket", qsd.socket, "--mode", "verify", "--verify-phase", "read",
                    "--verify-state", state, "--iodepth", "8"]
            rc, res, err = run_bench(write + ["--size", "8m"])
            expect_ok(rc, res, err)
            expect(res["verify"]["blocks_written"] == 2048, "generation 1 of every block", err)
            generation_1_of_block_20 = pread_file(disk, 20 * BLOCK, BLOCK)
            # The state file fixes bs, offset and size; the second pass writes generation 2.
            rc, res, err = run_bench(write)
            expect_ok(rc, res, err)
            rc, res, err = run_bench(read)
            expect_ok(rc, res, err)
            expect(res["verify"]["blocks_checked"] == 2048, "a clean read-back first", err)

            # Behind the daemon's back: a flipped byte in sector 1 of block 3,
            # block 10's data in block 11, and block 20 rolled back.
            byte = pread_file(disk, 3 * BLOCK + 1000, 1)
            pwrite_file(disk, 3 * BLOCK + 1000, bytes([byte[0] ^ 0x40]))
            pwrite_file(disk, 11 * BLOCK, pread_file(disk, 10 * BLOCK, BLOCK))
            pwrite_file(disk, 20 * BLOCK, generation_1_of_block_20)

            rc, res, err = run_bench(read)
            expect(rc == 1, f"exit 1 on damage, got {rc}", err)
            v = res["verify"]
            expect(v["blocks_mismatched"] == 3 and v["sectors_mismatched"] == 1 + 8 + 8,
                   f"three damaged blocks: {v}", err)
            expect("mismatch at offset 12800: corrupt" in err, "flipped byte named", err)
            expect("mismatch at offset 45056: misplaced" in err
                   and "found magic=0x48434e4542494255 offset=40960" in err,
                   "misplaced block named with the offset it belongs to", err)
            expect("mismatch at offset 81920: stale" in err and "generation=2;" in err
                   and "generation=1 " in err, "stale block named with both generations", err)


def start_daemon(tmp, disk, num_queues):
    # A daemon killed with SIGKILL leaves its socket file behind; start()
    # waits for the new daemon to accept, not for the file.
    return QemuStorageDaemon(tmp, disk, num_queues=num_queues).start()


def test_acknowledged_writes_survive_daemon_kill():
    with scratch_dir() as tmp:
        disk = make_disk(os.path.join(tmp, "disk.img"), 32 * MiB)
        state = os.path.join(tmp, "verify.state")
        qsd = start_daemon(tmp, disk, 4)
        try:
            argv = [harness.binary("ubiblk-bench"), "--socket", qsd.socket, "--mode", "verify",
                    "--verify-phase", "write", "--verify-state", state, "--queues", "4",
                    "--iodepth", "8", "--size", "16m", "--runtime", "60", "--json"]
            bench = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(1.5)
            qsd.stop(signal.SIGKILL)
            out, err = bench.communicate(timeout=60)
            err = err.decode(errors="replace")
            expect(bench.returncode == 3, f"exit 3 when the backend dies, got {bench.returncode}",
                   err)
            res = json.loads(out.decode())
            expect(res["outcome"] == "backend_lost", f"outcome {res['outcome']}", err)
            written = res["verify"]["blocks_written"]
            expect(written > 0, "some writes were acknowledged before the kill", err)
        finally:
            qsd.process.close()

        qsd = start_daemon(tmp, disk, 4)
        try:
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--verify-phase", "read", "--verify-state", state,
                                      "--queues", "2", "--iodepth", "16"])
            expect_ok(rc, res, err)
            v = res["verify"]
            expect(v["blocks_checked"] > 0 and v["blocks_mismatched"] == 0, f"{v}", err)
            # The same state carries on: new generations on top, then a full check.
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--verify-state", state, "--queues", "4",
                                      "--iodepth", "8", "--io-count", "4000"])
            expect_ok(rc, res, err)
            expect(res["verify"]["blocks_mismatched"] == 0, "continued state verifies", err)
        finally:
            qsd.process.close()


def files_equal(a, b):
    return subprocess.run(["cmp", a, b], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def test_read_dump_matches_disk():
    with scratch_dir() as tmp:
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(os.urandom(16 * MiB))
        out = os.path.join(tmp, "out.img")
        with QemuStorageDaemon(tmp, disk, num_queues=2) as qsd:
            read = ["--socket", qsd.socket, "--mode", "read", "--bs", "64k", "--iodepth", "4",
                    "--queues", "2"]
            rc, res, err = run_bench(read + ["--dump", out])
            expect_ok(rc, res, err)
            expect(res["read"]["ios"] == 256, "one pass of 64 KiB reads", err)
            expect(files_equal(disk, out), "the dump equals the disk byte for byte", err)
            umask = os.umask(0)
            os.umask(umask)
            mode = os.stat(out).st_mode & 0o777
            expect(mode == 0o644 & ~umask, f"dump created with mode {mode:o}", err)

            # A new file: only 1m..3m is written, the first MiB stays a hole.
            part = os.path.join(tmp, "part.img")
            rc, res, err = run_bench(read + ["--offset", "1m", "--size", "2m", "--dump", part])
            expect_ok(rc, res, err)
            expect(os.path.getsize(part) == 3 * MiB, f"size {os.path.getsize(part)}", err)
            expect(pread_file(part, 0, MiB) == bytes(MiB), "nothing before the range", err)
            expect(pread_file(part, MiB, 2 * MiB) == pread_file(disk, MiB, 2 * MiB),
                   "the range as the disk holds it", err)

            # An existing file is not truncated: outside the range it keeps its bytes.
            filler = b"\xa5" * (8 * MiB)
            with open(part, "wb") as f:
                f.write(filler)
            rc, res, err = run_bench(read + ["--offset", "1m", "--size", "2m", "--dump", part])
            expect_ok(rc, res, err)
            expect(os.path.getsize(part) == 8 * MiB, "not truncated", err)
            expect(pread_file(part, 0, MiB) == filler[:MiB]
                   and pread_file(part, 3 * MiB, 5 * MiB) == filler[:5 * MiB],
                   "bytes outside the range untouched", err)
            expect(pread_file(part, MiB, 2 * MiB) == pread_file(disk, MiB, 2 * MiB),
                   "the range overwritten with the disk's data", err)

            # Read mode only, refused before connecting; an unwritable file is a setup error.
            for mode_name in ("randread", "write", "verify"):
                rc, res, err = run_bench(["--socket", qsd.socket, "--mode", mode_name,
                                          "--dump", out])
                expect(rc == 2 and "--dump needs --mode read" in err,
                       f"--dump with --mode {mode_name}: exit {rc}", err)
            rc, res, err = run_bench(read + ["--dump", os.path.join(tmp, "no", "such", "dir")])
            expect(rc == 2 and "--dump" in err, f"unwritable dump file: exit {rc}", err)
            expect(files_equal(disk, out), "the refused runs left the dump alone", err)


def test_null_backend():
    with scratch_dir() as tmp:
        with NullStorageDaemon(tmp, 1 << 30, num_queues=2) as qsd:
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "randread",
                                      "--iodepth", "32", "--runtime", "1"])
            expect_ok(rc, res, err)
            expect(res["read"]["iops"] > 1000, f"null randread iops {res['read']['iops']}", err)
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "write", "--bs", "1m",
                                      "--queues", "2", "--iodepth", "4", "--io-count", "512"])
            expect_ok(rc, res, err)
            expect(res["write"]["ios"] == 512, "512 writes", err)


def test_usage_and_setup_errors():
    with scratch_dir() as tmp:
        rc, res, err = run_bench(["--mode", "randread"])
        expect(rc == 2 and "--socket" in err, "missing --socket is a usage error", err)
        rc, res, err = run_bench(["--socket", os.path.join(tmp, "nothing.sock")])
        expect(rc == 2 and "cannot connect" in err, "unreachable socket", err)
        rc, res, err = run_bench(["--socket", "x", "--bs", "4q"])
        expect(rc == 2 and "--bs" in err, "bad size", err)
        disk = make_disk(os.path.join(tmp, "disk.img"), 16 * MiB)
        with QemuStorageDaemon(tmp, disk, num_queues=2) as qsd:
            rc, res, err = run_bench(["--socket", qsd.socket, "--queues", "3"])
            expect(rc == 2 and "serves only 2 queues" in err, "too many queues", err)
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--verify-phase", "read"])
            expect(rc == 2 and "--verify-state" in err, "read phase needs a state file", err)
            state = os.path.join(tmp, "st")
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--verify-phase", "read", "--verify-state", state])
            expect(rc == 2 and "does not exist" in err, "missing state file", err)
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--verify-phase", "write", "--verify-state", state,
                                      "--size", "1m"])
            expect_ok(rc, res, err)
            rc, res, err = run_bench(["--socket", qsd.socket, "--mode", "verify",
                                      "--verify-phase", "read", "--verify-state", state,
                                      "--bs", "8k"])
            expect(rc == 2 and "--bs differs" in err, "state file geometry wins", err)
            rc, res, err = run_bench(["--socket", qsd.socket, "--offset", "32m"])
            expect(rc == 2 and "beyond" in err, "offset past the end", err)


if __name__ == "__main__":
    if shutil.which("qemu-storage-daemon") is None:
        print("qemu-storage-daemon not installed: skipping")
        sys.exit(77)
    harness.main([
        test_verify_one_two_and_four_queues,
        test_load_modes_report_json,
        test_damage_behind_the_daemon_is_detected,
        test_acknowledged_writes_survive_daemon_kill,
        test_read_dump_matches_disk,
        test_null_backend,
        test_usage_and_setup_errors,
    ])
