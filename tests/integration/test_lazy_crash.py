"""Crash test: kill -9 vhost-backend at random moments while a guest-like
writer (ubiblk-bench verify) writes and autofetch hydrates the disk from a
raw image, 20 times. After every kill: the metadata file is valid, FETCHED
only where there is a source, every fetched stripe the writer does not touch
equals the image; after every restart: every acknowledged write is intact
(crash_checks.py; test_crash_campaign.py does the same for the other
sources)."""

import os
import random

import crash_checks
import harness

MiB = 1 << 20
STRIPE = 256 * 1024                  # shift 9
DISK_SIZE = 192 * MiB
IMAGE_SIZE = 160 * MiB + 100 * 1024
WRITE_OFFSET, WRITE_SIZE = 4 * MiB, 6 * MiB
ROUNDS = int(os.environ.get("UBIBLK_CRASH_ROUNDS", "20"))


def test_kill9_during_writes_and_autofetch():
    rng = random.Random(int(os.environ.get("UBIBLK_CRASH_SEED", "20261121")))
    with harness.scratch_dir() as tmp:
        image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_SIZE, seed=99)
        with open(image, "rb") as f:
            image_bytes = f.read()
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        meta = os.path.join(tmp, "disk.meta")
        state = os.path.join(tmp, "verify.state")
        rpc = os.path.join(tmp, "rpc.sock")
        fields = dict(image_path=image, metadata_path=meta, num_queues=2, queue_size=128,
                      copy_on_read=True, autofetch=True, track_written=True,
                      rpc_socket_path=rpc)
        be = harness.VhostBackend(tmp, disk, **fields)
        harness.init_metadata(be.config, "-s", "9")
        writer_stripes = crash_checks.stripes_between(WRITE_OFFSET, WRITE_SIZE, STRIPE)
        fetched_history = []
        for round_no in range(ROUNDS):
            # Early rounds kill within the autofetch walk, later ones let
            # more writes pile up.
            early = round_no < ROUNDS // 2
            delay = rng.uniform(0.02, 0.25) if early else rng.uniform(0.05, 1.2)
            be = harness.VhostBackend(tmp, disk, **fields)
            try:
                crash_checks.crash_round(be, rpc, state, WRITE_OFFSET, WRITE_SIZE, delay)
                sets = crash_checks.check_after_crash(be.config, image_bytes, disk, STRIPE,
                                                      skip=writer_stripes)
                fetched_history.append(len(sets["fetched"]))
                crash_checks.verify_acknowledged(harness.VhostBackend(tmp, disk, **fields),
                                                 state)
            except AssertionError as e:
                raise AssertionError(f"round {round_no}: {e}") from e
        print(f"fetched stripes after each crash: {fetched_history}", flush=True)
        # Autofetch made progress across the crashes and never went backwards.
        assert fetched_history == sorted(fetched_history), fetched_history
        assert fetched_history[-1] > 0, fetched_history


if __name__ == "__main__":
    harness.main([test_kill9_during_writes_and_autofetch])
