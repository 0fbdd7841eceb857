"""vhost-backend lazily serving a raw image: the whole disk read through
ubiblk-bench equals the image (zeroes past its end), with copy_on_read false
and true, with autofetch on (the status RPC reaches fetched == source) and
off; writes over unfetched stripes keep the image's data around them; and
what was fetched is in the disk file and marked in the metadata file."""

import os

import harness

MiB = 1 << 20
STRIPE = 1 * MiB                     # shift 11
DISK_SIZE = 32 * MiB
IMAGE_SIZE = 20 * MiB + 300 * 1024   # a partial last source stripe
SOURCE_STRIPES = (IMAGE_SIZE + STRIPE - 1) // STRIPE


def setup(tmp, **fields):
    image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_SIZE, seed=1234)
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
    meta = os.path.join(tmp, "disk.meta")
    rpc = os.path.join(tmp, "rpc.sock")
    be = harness.VhostBackend(tmp, disk, image_path=image, metadata_path=meta,
                              rpc_socket_path=rpc, num_queues=2, queue_size=128, **fields)
    harness.init_metadata(be.config)
    return be, image, disk, rpc


def read_all(be, tmp, name="dump.raw"):
    out = os.path.join(tmp, name)
    code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "read", "--bs", "64k",
                                      "--iodepth", "4", "--queues", "2", "--dump", out])
    assert code == 0, f"read through the backend failed: {err}"
    with open(out, "rb") as f:
        return f.read()


def expected_disk(image):
    with open(image, "rb") as f:
        data = f.read()
    return data + bytes(DISK_SIZE - len(data))


def fetched_stripes(be):
    dump = harness.dump_metadata(be.config)
    return harness.parse_stripe_list(dump.split("fetched stripes: ")[1].splitlines()[0])


def status(rpc):
    reply = harness.rpc(rpc, "status")
    return reply["status"]["stripes"]


def test_copy_on_read_false_serves_image_without_fetching():
    with harness.scratch_dir() as tmp:
        be, image, disk, rpc = setup(tmp, copy_on_read=False)
        with be:
            assert read_all(be, tmp) == expected_disk(image)
            s = status(rpc)
            # Only a read crossing the image end (inside the partial last
            # source stripe) fetches its stripe rather than split the read.
            assert s["total"] == 32 and s["source"] == SOURCE_STRIPES, s
            assert s["fetched"] <= 1, s
            assert be.stop() == 0
        fetched = fetched_stripes(be)
        assert fetched <= {SOURCE_STRIPES - 1}, fetched
        with open(disk, "rb") as f:
            data = f.read()
        untouched = (SOURCE_STRIPES - 1) * STRIPE
        assert data[:untouched] == bytes(untouched), "reads from the image must not touch the disk"


def test_copy_on_read_true_fetches_then_reads():
    with harness.scratch_dir() as tmp:
        be, image, disk, rpc = setup(tmp, copy_on_read=True)
        with be:
            assert read_all(be, tmp) == expected_disk(image)
            s = status(rpc)
            assert s["fetched"] == SOURCE_STRIPES == s["source"], s
            # A second read is served from the disk.
            assert read_all(be, tmp, "again.raw") == expected_disk(image)
            assert be.stop() == 0
        with open(disk, "rb") as f:
            assert f.read() == expected_disk(image), "fetched stripes must be in the disk file"
        dump = harness.dump_metadata(be.config)
        fetched = dump.split("fetched stripes: ")[1].splitlines()[0]
        assert harness.parse_stripe_list(fetched) == set(range(SOURCE_STRIPES)), dump


def test_autofetch_hydrates_everything():
    with harness.scratch_dir() as tmp:
        be, image, disk, rpc = setup(tmp, autofetch=True)
        with be:
            harness.wait_for(lambda: status(rpc)["fetched"] == SOURCE_STRIPES, 60,
                             "autofetch to fetch every source stripe")
            assert read_all(be, tmp) == expected_disk(image)
            stats = harness.rpc(rpc, "stats")["stats"]
            assert stats["fetch"]["stripes_fetched"] == SOURCE_STRIPES, stats
            assert stats["fetch"]["bytes_fetched"] >= IMAGE_SIZE, stats
            assert be.stop() == 0
        with open(disk, "rb") as f:
            assert f.read() == expected_disk(image)


def test_writes_over_unfetched_stripes_keep_the_image_around_them():
    with harness.scratch_dir() as tmp:
        be, image, disk, rpc = setup(tmp, copy_on_read=False, track_written=True)
        with be:
            # verify mode writes every 4 KiB block of 2 MiB starting mid-stripe 3:
            # stripes 3, 4 and 5 must be fetched first.
            code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "verify",
                                              "--offset", "3584k", "--size", "2m",
                                              "--iodepth", "8", "--seed", "3"])
            assert code == 0, err
            data = read_all(be, tmp)
            want = expected_disk(image)
            lo, hi = 3584 * 1024, 3584 * 1024 + 2 * MiB
            assert data[:lo] == want[:lo] and data[hi:] == want[hi:], \
                "data around the written range must be the image's"
            assert be.stop() == 0
        # Stripes 3, 4 and 5 were fetched for the writes (and perhaps the
        # partial last source stripe for a read crossing the image end).
        fetched = fetched_stripes(be)
        assert {3, 4, 5} <= fetched <= {3, 4, 5, SOURCE_STRIPES - 1}, fetched
        dump = harness.dump_metadata(be.config)
        written = dump.split("written stripes: ")[1].splitlines()[0]
        assert harness.parse_stripe_list(written) == {3, 4, 5}, dump


def test_rpc_version_queues_and_errors():
    with harness.scratch_dir() as tmp:
        be, _, _, rpc = setup(tmp)
        with be:
            assert harness.rpc(rpc, "version") == {"version": "0.4.0"}
            q = harness.rpc(rpc, "queues")["queues"]
            assert q == [[], []], q
            assert "unknown command" in harness.rpc(rpc, "nope")["error"]
            assert be.stop() == 0


if __name__ == "__main__":
    harness.main([
        test_copy_on_read_false_serves_image_without_fetching,
        test_copy_on_read_true_fetches_then_reads,
        test_autofetch_hydrates_everything,
        test_writes_over_unfetched_stripes_keep_the_image_around_them,
        test_rpc_version_queues_and_errors,
    ])
