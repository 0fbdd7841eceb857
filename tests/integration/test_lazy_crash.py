"""Crash test: kill -9 vhost-backend at random moments while a guest-like
writer (ubiblk-bench verify) writes and autofetch hydrates the disk, 20 times.
After every kill: the metadata file is valid, FETCHED only where there is a
source, every fetched stripe the writer does not touch equals the image; after
every restart: every acknowledged write is intact."""

import os
import random
import signal
import subprocess
import time

import harness

MiB = 1 << 20
STRIPE = 256 * 1024                  # shift 9
DISK_SIZE = 192 * MiB
IMAGE_SIZE = 160 * MiB + 100 * 1024
WRITE_OFFSET, WRITE_SIZE = 4 * MiB, 6 * MiB
ROUNDS = int(os.environ.get("UBIBLK_CRASH_ROUNDS", "20"))


def stripes_touched_by_writer():
    return set(range(WRITE_OFFSET // STRIPE, (WRITE_OFFSET + WRITE_SIZE) // STRIPE))


def check_after_crash(be, image, disk):
    dump = harness.dump_metadata(be.config)
    lines = dict(line.split(": ", 1) for line in dump.splitlines() if ": " in line)
    fetched = harness.parse_stripe_list(lines.get("fetched stripes", ""))
    has_source = harness.parse_stripe_list(lines.get("has-source stripes", ""))
    assert fetched <= has_source, f"FETCHED without a source: {sorted(fetched - has_source)}"
    with open(image, "rb") as f:
        img = f.read()
    with open(disk, "rb") as f:
        dsk = f.read()
    for s in sorted(fetched - stripes_touched_by_writer()):
        lo, hi = s * STRIPE, min((s + 1) * STRIPE, len(img))
        assert dsk[lo:hi] == img[lo:hi], f"stripe {s} is marked fetched but differs from the image"
        tail_hi = min((s + 1) * STRIPE, DISK_SIZE)
        assert dsk[hi:tail_hi] == bytes(tail_hi - hi), f"stripe {s} tail past the image is not zero"
    return len(fetched)


def test_kill9_during_writes_and_autofetch():
    rng = random.Random(int(os.environ.get("UBIBLK_CRASH_SEED", "20261121")))
    with harness.scratch_dir() as tmp:
        image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_SIZE, seed=99)
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        meta = os.path.join(tmp, "disk.meta")
        state = os.path.join(tmp, "verify.state")
        rpc = os.path.join(tmp, "rpc.sock")
        fields = dict(image_path=image, metadata_path=meta, num_queues=2, queue_size=128,
                      copy_on_read=True, autofetch=True, track_written=True,
                      rpc_socket_path=rpc)
        be = harness.VhostBackend(tmp, disk, **fields)
        harness.init_metadata(be.config, "-s", "9")
        fetched_history = []
        for round_no in range(ROUNDS):
            be = harness.VhostBackend(tmp, disk, **fields).start()
            try:
                writer = subprocess.Popen(
                    [harness.binary("ubiblk-bench"), "--socket", be.socket, "--mode", "verify",
                     "--verify-phase", "write", "--verify-state", state, "--queues", "2",
                     "--iodepth", "8", "--bs", "4k", "--offset", str(WRITE_OFFSET),
                     "--size", str(WRITE_SIZE), "--seed", "17", "--runtime", "60", "--json"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                try:
                    # The kill must land while writes flow, not during the
                    # writer's set-up (which it reports as exit 2).
                    harness.wait_for_writes(rpc, 2, writer)
                    # Early rounds kill within the autofetch walk, later
                    # ones let more writes pile up.
                    early = round_no < ROUNDS // 2
                    time.sleep(rng.uniform(0.02, 0.25) if early else rng.uniform(0.05, 1.2))
                    be.stop(signal.SIGKILL)
                    _, err = writer.communicate(timeout=60)
                finally:
                    if writer.poll() is None:
                        writer.kill()
                        writer.wait(timeout=10)
                assert writer.returncode in (0, 3), \
                    f"round {round_no}: writer exit {writer.returncode}: {err.decode()[-400:]}"
            finally:
                be.process.close()
            fetched_history.append(check_after_crash(be, image, disk))
            with harness.VhostBackend(tmp, disk, **fields) as be2:
                code, _, err = harness.run_bench(
                    ["--socket", be2.socket, "--mode", "verify", "--verify-phase", "read",
                     "--verify-state", state, "--queues", "2", "--iodepth", "8"])
                assert code == 0, f"round {round_no}: acknowledged writes lost: {err[-800:]}"
                assert be2.stop() == 0
        print(f"fetched stripes after each crash: {fetched_history}", flush=True)
        # Autofetch made progress across the crashes and never went backwards.
        assert fetched_history == sorted(fetched_history), fetched_history
        assert fetched_history[-1] > 0, fetched_history


if __name__ == "__main__":
    harness.main([test_kill9_during_writes_and_autofetch])
