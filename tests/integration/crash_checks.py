"""The steps and checks of a kill -9 round against vhost-backend, shared by
the crash tests (test_lazy_crash.py: a raw image; test_crash_campaign.py:
a remote server and archives in a directory and in S3).

A round: a guest-like writer (ubiblk-bench verify, write phase) writes
while autofetch hydrates the disk; the backend gets SIGKILL at a random
moment. Then, with nothing running:

- the metadata file is valid (dump-metadata reads it) and consistent: no
  FETCHED stripe without a source, no WRITTEN stripe outside the writer's
  range (WRITTEN without FETCHED is allowed: the backend stores WRITTEN
  first, and a write waits for both; the archive tool and the stripe
  server treat such a stripe as not fetched);
- every FETCHED stripe the writer does not touch holds the source's bytes
  (zeros past the source's end);

and, after a restart, every write the writer saw acknowledged reads back
(ubiblk-bench verify, read phase)."""

import signal
import subprocess
import time

import harness


def stripes_between(offset, size, stripe):
    """The stripes a byte range [offset, offset + size) touches."""
    if size <= 0:
        return set()
    return set(range(offset // stripe, (offset + size - 1) // stripe + 1))


def check_after_crash(config, source, disk_path, stripe, skip=()):
    """Checks the metadata and the disk of a killed backend (see the module
    comment). `source` is the bytes a guest sees for stripes with a source
    (shorter than the disk: zeros follow); stripes in `skip` (those the
    writer touches) are not compared, and only they may be WRITTEN.
    Returns the metadata's stripe sets {"fetched", "written",
    "has-source"}."""
    sets = harness.metadata_stripes(config)
    fetched, written, has_source = sets["fetched"], sets["written"], sets["has-source"]
    assert fetched <= has_source, f"FETCHED without a source: {sorted(fetched - has_source)}"
    # WRITTEN may precede FETCHED (the two bits are stored independently,
    # WRITTEN first), but only where the writer writes.
    stray = written - set(skip)
    assert not stray, f"WRITTEN stripes the writer never touches: {sorted(stray)}"
    with open(disk_path, "rb") as f:
        disk = f.read()
    for s in sorted(fetched - set(skip)):
        lo, hi = s * stripe, min((s + 1) * stripe, len(disk))
        expected = source[lo:hi]
        expected += bytes(hi - lo - len(expected))
        if disk[lo:hi] != expected:
            first = next(i for i in range(hi - lo) if disk[lo + i] != expected[i])
            raise AssertionError(f"stripe {s} is marked fetched but differs from the source "
                                 f"(first at byte {lo + first})")
    return sets


def writer_argv(socket, state, offset, size, seed=17, runtime=60):
    """ubiblk-bench writing 4 KiB blocks at random in [offset, offset+size)
    and recording every acknowledged one in `state`."""
    return [harness.binary("ubiblk-bench"), "--socket", socket, "--mode", "verify",
            "--verify-phase", "write", "--verify-state", state, "--queues", "2",
            "--iodepth", "8", "--bs", "4k", "--offset", str(offset), "--size", str(size),
            "--seed", str(seed), "--runtime", str(runtime), "--json"]


def kill_during_writes(be, rpc, writer, delay):
    """Waits until `writer` (a Popen) writes through `be` (started, with its
    RPC socket at `rpc`), lets it run `delay` seconds more, SIGKILLs the
    backend and reaps the writer, which must end with success or its
    "backend went away" status (ubiblk-bench exit 0 or 3). Returns
    whether the backend was still running when the signal was sent."""
    try:
        # The kill must land while writes flow, not during the writer's
        # set-up (which it reports as exit 2).
        harness.wait_for_writes(rpc, 2, writer)
        time.sleep(delay)
        alive = be.process.alive()
        be.stop(signal.SIGKILL)
        _, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)
    assert writer.returncode in (0, 3), \
        f"writer exit {writer.returncode}: {err.decode(errors='replace')[-400:]}"
    return alive


def crash_round(be, rpc, state, offset, size, delay, seed=17):
    """One round: start `be` (not started), write and kill after `delay`
    seconds of writes. The backend's process is closed afterwards."""
    be.start()
    try:
        writer = subprocess.Popen(writer_argv(be.socket, state, offset, size, seed=seed),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return kill_during_writes(be, rpc, writer, delay)
    finally:
        be.process.close()


def verify_acknowledged(be, state):
    """Starts `be` (not started), reads back every write recorded in
    `state`, stops it cleanly."""
    with be:
        code, _, err = harness.run_bench(
            ["--socket", be.socket, "--mode", "verify", "--verify-phase", "read",
             "--verify-state", state, "--queues", "2", "--iodepth", "8"])
        assert code == 0, f"acknowledged writes lost: {err[-800:]}"
        status = be.stop()
        assert status == 0, f"vhost-backend exit status {status}"
