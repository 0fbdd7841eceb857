"""ubiblk-bench verify against the real vhost-backend: 1 and 4 queues, both
file engines, oversized requests, and a backend restart (graceful and kill -9)
in the middle of writing that must keep every acknowledged write. A final
cross-check reads what vhost-backend wrote through qemu-storage-daemon, so the
data is really in the file at the right offsets."""

import os
import signal
import subprocess
import time

import harness

DISK_SIZE = 64 << 20


def bench(sock, *args, timeout=300):
    code, report, err = harness.run_bench(["--socket", sock] + list(args), timeout=timeout)
    return code, report, err


def verify_with(engine, queues, bs="4k", iodepth=8, **fields):
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with harness.VhostBackend(tmp, disk, num_queues=queues, io_engine=engine,
                                  queue_size=128, **fields) as be:
            code, report, err = bench(be.socket, "--mode", "verify", "--queues", str(queues),
                                      "--iodepth", str(iodepth), "--bs", bs, "--size", "32m",
                                      "--seed", "7")
            assert code == 0, f"verify failed ({code}): {err}"
            assert report is not None, "no JSON report"
            assert be.stop() == 0, "vhost-backend did not exit 0 on SIGTERM:\n" + \
                be.process.log_text()


def test_verify_1_queue_io_uring():
    verify_with("io_uring", 1)


def test_verify_4_queues_io_uring():
    verify_with("io_uring", 4)


def test_verify_1_queue_sync():
    verify_with("sync", 1)


def test_verify_4_queues_sync():
    verify_with("sync", 4)


def test_verify_requests_beyond_advertised_segment_limits():
    # 64 KiB requests against seg_size_max 4096, seg_count_max 1, as
    # libblkio sends them. Limits are advisory; such requests must still work.
    verify_with("io_uring", 2, bs="64k", iodepth=4, seg_size_max=4096, seg_count_max=1)


def test_verify_write_through():
    verify_with("io_uring", 2, write_through=True)


def restart_keeps_acknowledged_writes(stop_signal):
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        state = os.path.join(tmp, "verify.state")
        rpc = os.path.join(tmp, "rpc.sock")
        be = harness.VhostBackend(tmp, disk, num_queues=2, queue_size=128,
                                  rpc_socket_path=rpc).start()
        try:
            argv = [harness.binary("ubiblk-bench"), "--socket", be.socket, "--mode", "verify",
                    "--verify-phase", "write", "--verify-state", state, "--queues", "2",
                    "--iodepth", "8", "--bs", "4k", "--size", "32m", "--seed", "11",
                    "--runtime", "30", "--json"]
            writer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                # Stop the backend under load: once writes flow on both
                # queues (a stop during the writer's set-up is a set-up
                # error, exit 2), and after some more.
                harness.wait_for_writes(rpc, 2, writer)
                time.sleep(2.0)
                assert writer.poll() is None, "writer ended early: " + \
                    writer.stderr.read().decode(errors="replace")
                be.stop(stop_signal)
                _, err = writer.communicate(timeout=60)
            finally:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait(timeout=10)
            # The writer sees the backend go away: exit 3 (disconnected).
            assert writer.returncode == 3, \
                f"writer exit {writer.returncode}, expected 3: {err.decode(errors='replace')}"
        finally:
            be.process.close()
        with harness.VhostBackend(tmp, disk, num_queues=2, queue_size=128) as be2:
            code, report, err = bench(be2.socket, "--mode", "verify", "--verify-phase", "read",
                                      "--verify-state", state, "--queues", "2", "--iodepth", "8")
            assert code == 0, f"acknowledged writes lost after restart ({code}): {err}"
            written = report.get("verify", {}).get("blocks_checked") if report else None
            assert written is None or written > 0, f"nothing was checked: {report}"


def test_restart_sigterm_keeps_acknowledged_writes():
    restart_keeps_acknowledged_writes(signal.SIGTERM)


def test_restart_kill9_keeps_acknowledged_writes():
    restart_keeps_acknowledged_writes(signal.SIGKILL)


def test_data_lands_in_file_readable_by_qemu_storage_daemon():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        state = os.path.join(tmp, "verify.state")
        with harness.VhostBackend(tmp, disk, num_queues=2) as be:
            code, _, err = bench(be.socket, "--mode", "verify", "--verify-phase", "write",
                                 "--verify-state", state, "--queues", "2", "--iodepth", "4",
                                 "--bs", "16k", "--size", "16m", "--seed", "5")
            assert code == 0, f"write phase failed: {err}"
            assert be.stop() == 0
        with harness.QemuStorageDaemon(tmp, disk, num_queues=1) as qsd:
            code, _, err = bench(qsd.socket, "--mode", "verify", "--verify-phase", "read",
                                 "--verify-state", state)
            assert code == 0, f"qemu-storage-daemon reads differ from what was written: {err}"


if __name__ == "__main__":
    harness.main([
        test_verify_1_queue_io_uring,
        test_verify_4_queues_io_uring,
        test_verify_1_queue_sync,
        test_verify_4_queues_sync,
        test_verify_requests_beyond_advertised_segment_limits,
        test_verify_write_through,
        test_restart_sigterm_keeps_acknowledged_writes,
        test_restart_kill9_keeps_acknowledged_writes,
        test_data_lands_in_file_readable_by_qemu_storage_daemon,
    ])
