#!/usr/bin/env python3
"""Benchmark archives: how fast `archive` writes a disk into an object store
and how fast vhost-backend hydrates a disk back from it (autofetch), to and
from OpenStack Swift's S3 API on loopback and a local directory, against the
tool a user would otherwise run on the same data and the same server:
`aws s3 cp` of the disk file, up and down; and filesystem hydration against
hydration from the same disk as a raw image. Also the archive's logical and
physical size with and without snappy compression. One run, rounds
interleaved.

  scripts/bench.sh --archive [--size-mib 2048] [--reps 3] [--markdown docs/benchmarks.md]

The disk is half random data, a quarter text-like compressible data and a
quarter zeros, so deduplication and compression have something to do but the
random half keeps the store busy. Page caches are dropped before every
measurement (needs root). Every upload goes to a fresh prefix (nothing is
deduplicated against an earlier round); hydration counts a stripe once it is
durable on the disk, `aws s3 cp` downloads are followed by fsync. Swift is
started once, before the clock, and stays up for the whole run."""

import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402
import bench_markdown  # noqa: E402
from bench_hydration import drop_caches, time_hydration  # noqa: E402
from bench_activity import activity  # noqa: E402
from swift import SwiftS3  # noqa: E402

MiB = 1 << 20
BUCKET = "bench"


def write_disk(path, size):
    """Half random, a quarter compressible text, a quarter zeros, in 4 MiB
    runs so every kind spans whole stripes."""
    chunk = 4 * MiB
    words = b"ubiblk archive benchmark stripe block sector guest host object store "
    text = (words * (chunk // len(words) + 1))[:chunk]
    with open(path, "wb") as f:
        for i in range(size // chunk):
            kind = i % 4
            if kind in (0, 2):
                f.write(os.urandom(chunk))
            elif kind == 1:
                f.write(text[i % 512:] + text[:i % 512])
            else:
                f.write(bytes(chunk))
        f.flush()
        os.fsync(f.fileno())


def source_device(tmp, disk):
    """A device config over the disk with every stripe archived: no source
    and track_written false, so each stripe may hold written data."""
    meta = os.path.join(tmp, "source.meta")
    config = harness.write_config(os.path.join(tmp, "source.yaml"),
                                  {"path": disk, "metadata_path": meta,
                                   "track_written": False})
    harness.init_metadata(config)
    return config


def s3_fields(s3, prefix):
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return (f'type: s3\nbucket: "{BUCKET}"\nprefix: "{prefix}"\nendpoint: "{s3.endpoint}"\n'
            f'region: "{s3.region}"\nconnections: 16\n'
            f'credentials:\n  access_key_id: "{b64(s3.access_key)}"\n'
            f'  secret_access_key: "{b64(s3.secret_key)}"\n')


def fs_fields(path):
    return f'type: filesystem\npath: "{path}"\n'


def run_archive(tmp, device, target_text, compress):
    target = os.path.join(tmp, "target.yaml")
    with open(target, "w") as f:
        f.write(target_text)
    argv = [harness.binary("archive"), "-f", device, "--target-config", target]
    if compress:
        argv.append("--compress")
    drop_caches()
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"archive failed: {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def physical_bytes(summary):
    """The physical size from archive's summary line."""
    m = re.search(r"bytes physical: (\d+)", summary)
    return int(m.group(1)) if m else None


def time_archive_hydration(tmp, size, source_block):
    work = os.path.join(tmp, "archive-hydrate")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    disk = harness.make_disk(os.path.join(work, "disk.raw"), size)
    be = harness.VhostBackend(work, disk, metadata_path=os.path.join(work, "disk.meta"),
                              copy_on_read=True, autofetch=True,
                              rpc_socket_path=os.path.join(work, "rpc.sock"), queue_size=128)
    with open(be.config, "a") as f:
        f.write(f"stripe_source: {source_block}\n")
    harness.init_metadata(be.config)
    rpc = os.path.join(work, "rpc.sock")
    drop_caches()
    start = time.monotonic()
    with be:
        def done():
            s = harness.lazy_status(rpc)
            return s["fetched"] == s["source"]
        harness.wait_for(done, 1800, "archive hydration to finish")
        elapsed = time.monotonic() - start
        assert be.stop() == 0
        if re.search(r"fetch: stripe \d+ failed", be.process.log_text()):
            raise RuntimeError("a fetch failed:\n" + be.process.log_text()[-2000:])
    shutil.rmtree(work)
    return elapsed


def aws(s3, home, *args):
    proc = subprocess.run(["aws", "--endpoint-url", s3.endpoint, "s3"] + list(args),
                          env=s3.client_env(home), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"aws s3 {' '.join(args)}: {proc.stderr[-2000:]}")


def time_aws_upload(s3, home, disk, key):
    drop_caches()
    start = time.monotonic()
    aws(s3, home, "cp", "--only-show-errors", disk, f"s3://{BUCKET}/{key}")
    return time.monotonic() - start


def time_aws_download(s3, home, tmp, key):
    dest = os.path.join(tmp, "aws-download.raw")
    drop_caches()
    start = time.monotonic()
    aws(s3, home, "cp", "--only-show-errors", f"s3://{BUCKET}/{key}", dest)
    subprocess.run(["sync", "-f", dest], check=True)
    elapsed = time.monotonic() - start
    os.unlink(dest)
    return elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=2048, help="disk size (default 2048)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--markdown", help="update the archive section of this file")
    args = p.parse_args()
    if not shutil.which("aws"):
        sys.exit("aws not found: scripts/install-deps.sh bench installs awscli")
    size = args.size_mib * MiB
    keys = ("archive-s3", "archive-s3-snappy", "aws-up", "hydrate-s3", "aws-down",
            "archive-fs", "hydrate-fs", "raw")
    times = {k: [] for k in keys}
    sizes = {}
    load_before, busy_before = activity()
    with harness.scratch_dir("ubiblk-bench-archive-") as tmp, SwiftS3() as s3:
        s3.create_bucket(BUCKET)
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        disk = os.path.join(tmp, "disk.raw")
        print(f"writing a {args.size_mib} MiB disk ...", file=sys.stderr)
        write_disk(disk, size)
        device = source_device(tmp, disk)
        # The archives hydration reads: written once, outside the clock.
        _, out = run_archive(tmp, device, s3_fields(s3, "hydrate"), False)
        sizes["plain"] = physical_bytes(out)
        _, out = run_archive(tmp, device, s3_fields(s3, "hydrate-snappy"), True)
        sizes["snappy"] = physical_bytes(out)
        fs_dir = os.path.join(tmp, "fs-archive")
        run_archive(tmp, device, fs_fields(fs_dir), False)
        aws(s3, home, "cp", "--only-show-errors", disk, f"s3://{BUCKET}/download.raw")
        s3_source = (f'{{source: archive, type: s3, bucket: "{BUCKET}", prefix: "hydrate", '
                     f'endpoint: "{s3.endpoint}", region: "{s3.region}", credentials: '
                     f'{{access_key_id: "{base64.b64encode(s3.access_key.encode()).decode()}", '
                     f'secret_access_key: '
                     f'"{base64.b64encode(s3.secret_key.encode()).decode()}"}}}}')
        fs_source = f'{{source: archive, type: filesystem, path: "{fs_dir}"}}'
        counter = iter(range(1 << 30))

        def upload(compress):
            prefix = f"up-{next(counter)}"
            return run_archive(tmp, device, s3_fields(s3, prefix), compress)[0]

        def upload_fs():
            target = os.path.join(tmp, "fs-up")
            shutil.rmtree(target, ignore_errors=True)
            return run_archive(tmp, device, fs_fields(target), False)[0]
        rounds = [
            ("archive-s3", lambda: upload(False)),
            ("archive-s3-snappy", lambda: upload(True)),
            ("aws-up", lambda: time_aws_upload(s3, home, disk, f"up-{next(counter)}.raw")),
            ("hydrate-s3", lambda: time_archive_hydration(tmp, size, s3_source)),
            ("aws-down", lambda: time_aws_download(s3, home, tmp, "download.raw")),
            ("archive-fs", upload_fs),
            ("hydrate-fs", lambda: time_archive_hydration(tmp, size, fs_source)),
            ("raw", lambda: time_hydration(disk, tmp, size)),
        ]
        for rep in range(args.reps):
            k = rep % len(rounds)
            for name, fn in rounds[k:] + rounds[:k]:
                times[name].append(fn())
                print(f"rep {rep + 1}/{args.reps} {name}: {times[name][-1]:.2f} s",
                      file=sys.stderr)
    load_after, busy_after = activity()
    med = {k: statistics.median(v) for k, v in times.items()}
    mb = size / 1e6

    def row(label, key):
        return f"| {label} | {med[key]:.2f} s | {mb / med[key]:.0f} MB/s |\n"
    ratio = lambda a, b: med[b] / med[a]  # noqa: E731 - throughput a / throughput b
    fmt_size = lambda n: "?" if n is None else f"{n / MiB:.0f} MiB"  # noqa: E731
    text = (f"Disk {args.size_mib} MiB (half random, a quarter compressible text, a quarter "
            "zeros), 1 MiB stripes, 16 connections, Swift (s3api, one replica) on loopback; "
            f"median of {args.reps} interleaved runs; page caches dropped before each. "
            f"Load average before/after: {load_before} / {load_after}; busy processes "
            f"(>= 5% CPU) before: {', '.join(busy_before) or 'none'}; after: "
            f"{', '.join(busy_after) or 'none'}.\n\n"
            "| measurement | time | throughput (logical) |\n|---|---|---|\n"
            + row("`archive` to Swift", "archive-s3")
            + row("`archive --compress` to Swift", "archive-s3-snappy")
            + row("`aws s3 cp` of the disk file to Swift", "aws-up")
            + row("hydration from Swift (autofetch, start to fetched == source)", "hydrate-s3")
            + row("`aws s3 cp` of the disk file from Swift, + fsync", "aws-down")
            + row("`archive` to a local directory", "archive-fs")
            + row("hydration from the local directory", "hydrate-fs")
            + row("hydration from the disk as a local raw image", "raw")
            + "\n| ratio (throughput) | value | target |\n|---|---|---|\n"
            f"| `archive` / `aws s3 cp` upload | **{ratio('archive-s3', 'aws-up'):.2f}x** | "
            ">= 1.0x |\n"
            f"| S3 hydration / `aws s3 cp` download | "
            f"**{ratio('hydrate-s3', 'aws-down'):.2f}x** | >= 1.0x |\n"
            f"| filesystem hydration / raw-image hydration | "
            f"**{ratio('hydrate-fs', 'raw'):.2f}x** | >= 0.9x |\n"
            "\n| archive | logical | physical |\n|---|---|---|\n"
            f"| no compression | {args.size_mib} MiB | {fmt_size(sizes['plain'])} |\n"
            f"| snappy | {args.size_mib} MiB | {fmt_size(sizes['snappy'])} |\n")
    print(text)
    if args.markdown:
        bench_markdown.update_section(args.markdown, "archive",
                                      "## Archives (`scripts/bench.sh --archive`)", text)


if __name__ == "__main__":
    main()
