#!/usr/bin/env python3
"""Benchmark lazy hydration: how fast vhost-backend's background fetch
(autofetch) copies a raw image into the disk, against `cp` of the same image
on the same machine, in one run, interleaved; and how long after the backend
starts the first 4 KiB read of an unfetched stripe completes.

  scripts/bench.sh --hydration [--size-mib 2048] [--reps 3] [--markdown docs/benchmarks.md]

Page caches are dropped before every measurement (needs root) so both read
the image from the disk. cp is timed up to and including fsync of the copy,
since hydration makes every stripe durable before marking it fetched."""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402
import bench_markdown  # noqa: E402

MiB = 1 << 20


def drop_caches():
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        print(f"warning: cannot drop page caches ({e}); numbers include cached reads",
              file=sys.stderr)


def time_cp(image, tmp):
    copy = os.path.join(tmp, "copy.raw")
    if os.path.exists(copy):
        os.unlink(copy)
    drop_caches()
    start = time.monotonic()
    subprocess.run(["cp", "--sparse=never", image, copy], check=True)
    subprocess.run(["sync", "-f", copy], check=True)
    elapsed = time.monotonic() - start
    os.unlink(copy)
    return elapsed


def lazy_backend(tmp, image, size, **fields):
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), size)
    meta = os.path.join(tmp, "disk.meta")
    if os.path.exists(meta):
        os.unlink(meta)
    be = harness.VhostBackend(tmp, disk, image_path=image, metadata_path=meta,
                              rpc_socket_path=os.path.join(tmp, "rpc.sock"),
                              queue_size=128, **fields)
    harness.init_metadata(be.config)
    return be


def time_hydration(image, tmp, size):
    work = os.path.join(tmp, "hydrate")
    os.makedirs(work, exist_ok=True)
    be = lazy_backend(work, image, size, autofetch=True)
    drop_caches()
    start = time.monotonic()
    with be:
        rpc = os.path.join(work, "rpc.sock")

        def done():
            s = harness.rpc(rpc, "status")["status"]["stripes"]
            return s["fetched"] == s["source"]
        harness.wait_for(done, 600, "hydration to finish")
        elapsed = time.monotonic() - start
        assert be.stop() == 0
    os.unlink(be.config.replace("config.yaml", "disk.raw"))
    return elapsed


def time_first_read(image, tmp, size):
    """Seconds from starting vhost-backend to the completion of a 4 KiB read
    of an unfetched stripe (copy_on_read true: it must be fetched first),
    and the read's own latency."""
    work = os.path.join(tmp, "first")
    os.makedirs(work, exist_ok=True)
    be = lazy_backend(work, image, size, copy_on_read=True)
    drop_caches()
    start = time.monotonic()
    with be:
        code, report, err = harness.run_bench(
            ["--socket", be.socket, "--mode", "randread", "--bs", "4k", "--io-count", "1",
             "--offset", str(size // 2), "--size", "4k"])
        elapsed = time.monotonic() - start
        assert code == 0, err
        latency_us = report["read"]["lat_us"]["max"]
        assert be.stop() == 0
    os.unlink(be.config.replace("config.yaml", "disk.raw"))
    return elapsed, latency_us / 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=2048, help="image size (default 2048)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--markdown", help="update the hydration section of this file")
    args = p.parse_args()
    size = args.size_mib * MiB
    cp_s, hyd_s, first = [], [], []
    with harness.scratch_dir("ubiblk-hydration-") as tmp:
        image = os.path.join(tmp, "image.raw")
        print(f"writing a {args.size_mib} MiB image ...", file=sys.stderr)
        subprocess.run(["fio", "--name=image", f"--filename={image}", f"--size={size}",
                        "--rw=write", "--bs=1m", "--direct=1", "--ioengine=io_uring",
                        "--iodepth=8", "--refill_buffers", "--output-format=json"],
                       capture_output=True, check=True)
        for rep in range(args.reps):
            runs = [("cp", lambda: cp_s.append(time_cp(image, tmp))),
                    ("hydration", lambda: hyd_s.append(time_hydration(image, tmp, size))),
                    ("first read", lambda: first.append(time_first_read(image, tmp, size)))]
            for name, fn in runs[rep % 3:] + runs[:rep % 3]:
                fn()
                print(f"rep {rep + 1}/{args.reps} {name} done", file=sys.stderr)
    cp_med, hyd_med = statistics.median(cp_s), statistics.median(hyd_s)
    first_med = statistics.median(f[0] for f in first)
    lat_med = statistics.median(f[1] for f in first)
    mb = size / 1e6
    text = (f"Image {args.size_mib} MiB, 1 MiB stripes, io_uring engine; median of "
            f"{args.reps} interleaved runs; page caches dropped before each.\n\n"
            "| measurement | time | throughput |\n|---|---|---|\n"
            f"| `cp` + fsync of the image | {cp_med:.2f} s | {mb / cp_med:.0f} MB/s |\n"
            f"| hydration (autofetch, start to fetched == source) | {hyd_med:.2f} s | "
            f"{mb / hyd_med:.0f} MB/s |\n"
            f"| hydration / cp throughput | | **{cp_med / hyd_med:.2f}x** |\n"
            f"| backend start to first 4 KiB read of an unfetched stripe done | "
            f"{first_med * 1000:.0f} ms | |\n"
            f"| that read's own latency (fetch of its stripe included) | "
            f"{lat_med * 1000:.1f} ms | |\n")
    print(text)
    if args.markdown:
        bench_markdown.update_section(args.markdown, "hydration",
                                      "## Lazy hydration (`scripts/bench.sh --hydration`)",
                                      text)


if __name__ == "__main__":
    main()
