#!/usr/bin/env python3
"""Benchmark remote hydration: how fast vhost-backend's background fetch
(autofetch) copies an image served by remote-stripe-server over loopback,
plain TCP and TLS-PSK, against the peer a user would pick for the same job,
`nbdkit file` + `nbdcopy` (plain and TLS-PSK), and against hydration from a
local raw image; plus how long after the backend starts a 4 KiB read of an
unfetched stripe completes. One run, rounds interleaved.

  scripts/bench.sh --remote [--size-mib 2048] [--reps 3] [--markdown docs/benchmarks.md]

Page caches are dropped before every measurement (needs root), so every
contender reads the image from the disk. Every copy is timed up to its data
being durable: hydration counts a stripe once it is flushed and recorded in
the metadata, nbdcopy runs with --flush. Servers are started before the
clock and stay up for the whole run, as they would on an image host."""

import argparse
import base64
import os
import re
import shutil
import socket
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

MiB = 1 << 20
IDENTITY = "bench"


class StripeServer:
    def __init__(self, tmp, image, secret=None):
        name = "tls" if secret else "plain"
        self.address = f"127.0.0.1:{harness.free_port()}"
        device = harness.write_config(os.path.join(tmp, f"server-{name}.yaml"), {"path": image})
        listen = os.path.join(tmp, f"listen-{name}.yaml")
        with open(listen, "w") as f:
            f.write(f'address: "{self.address}"\n')
            if secret:
                f.write(f'psk_identity: "{IDENTITY}"\n'
                        f'psk_secret: "{base64.b64encode(secret).decode()}"\n')
        self.process = harness.Process([harness.binary("remote-stripe-server"), "-f", device,
                                        "--listen-config", listen],
                                       log_path=os.path.join(tmp, f"server-{name}.log"))
        harness.wait_for(lambda: "listening on" in self.process.log_text()
                         or not self.process.alive(), 30, "remote-stripe-server")
        if not self.process.alive():
            raise RuntimeError(self.process.log_text())


class Nbdkit:
    def __init__(self, tmp, image, psk_file=None):
        self.port = harness.free_port()
        argv = ["nbdkit", "--foreground", "--exit-with-parent", "-i", "127.0.0.1",
                "-p", str(self.port), "--readonly"]
        if psk_file:
            argv += ["--tls=require", f"--tls-psk={psk_file}"]
            self.uri = f"nbds://{IDENTITY}@127.0.0.1:{self.port}/?tls-psk-file={psk_file}"
        else:
            self.uri = f"nbd://127.0.0.1:{self.port}/"
        argv += ["file", image]
        name = "tls" if psk_file else "plain"
        self.process = harness.Process(argv, log_path=os.path.join(tmp, f"nbdkit-{name}.log"))

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return not self.process.alive()
        harness.wait_for(up, 30, "nbdkit to listen")
        if not self.process.alive():
            raise RuntimeError(self.process.log_text())


def remote_backend(work, size, address, secret, **fields):
    disk = harness.make_disk(os.path.join(work, "disk.raw"), size)
    meta = os.path.join(work, "disk.meta")
    if os.path.exists(meta):
        os.unlink(meta)
    be = harness.VhostBackend(work, disk, metadata_path=meta, copy_on_read=True,
                              rpc_socket_path=os.path.join(work, "rpc.sock"), queue_size=128,
                              **fields)
    source = f'source: "remote", address: "{address}"'
    if secret:
        source += (f', psk_identity: "{IDENTITY}", '
                   f'psk_secret: "{base64.b64encode(secret).decode()}"')
    with open(be.config, "a") as f:
        f.write(f"stripe_source: {{{source}}}\n")
    harness.init_metadata(be.config)
    return be


def time_remote_hydration(tmp, size, address, secret):
    work = os.path.join(tmp, "remote-hydrate")
    os.makedirs(work, exist_ok=True)
    be = remote_backend(work, size, address, secret, autofetch=True)
    rpc = os.path.join(work, "rpc.sock")
    drop_caches()
    start = time.monotonic()
    with be:
        def done():
            s = harness.lazy_status(rpc)
            return s["fetched"] == s["source"]
        harness.wait_for(done, 900, "remote hydration to finish")
        elapsed = time.monotonic() - start
        assert be.stop() == 0
        if re.search(r"fetch: stripe \d+ failed", be.process.log_text()):
            raise RuntimeError("a fetch failed:\n" + be.process.log_text()[-2000:])
    shutil.rmtree(work)
    return elapsed


def time_nbdcopy(tmp, size, uri):
    dest = harness.make_disk(os.path.join(tmp, "nbdcopy.raw"), size)
    drop_caches()
    start = time.monotonic()
    subprocess.run(["nbdcopy", "--flush", uri, dest], check=True, timeout=900)
    elapsed = time.monotonic() - start
    os.unlink(dest)
    return elapsed


def time_first_read(tmp, size, address, secret):
    """Seconds from starting vhost-backend to the completion of a 4 KiB read
    of an unfetched stripe, and that read's own latency."""
    work = os.path.join(tmp, "remote-first")
    os.makedirs(work, exist_ok=True)
    be = remote_backend(work, size, address, secret)
    drop_caches()
    start = time.monotonic()
    with be:
        code, report, err = harness.run_bench(
            ["--socket", be.socket, "--mode", "randread", "--bs", "4k", "--io-count", "1",
             "--offset", str(size // 2), "--size", "4k"])
        elapsed = time.monotonic() - start
        assert code == 0, err
        latency = report["read"]["lat_us"]["max"] / 1e6
        assert be.stop() == 0
    shutil.rmtree(work)
    return elapsed, latency


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=2048, help="image size (default 2048)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--markdown", help="update the remote section of this file")
    args = p.parse_args()
    for tool in ("nbdkit", "nbdcopy"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: scripts/install-deps.sh bench installs it")
    size = args.size_mib * MiB
    secret = os.urandom(32)
    times = {k: [] for k in ("remote", "remote-tls", "nbdcopy", "nbdcopy-tls", "raw",
                             "first", "first-tls")}
    load_before, busy_before = activity()
    with harness.scratch_dir("ubiblk-bench-remote-") as tmp:
        image = os.path.join(tmp, "image.raw")
        print(f"writing a {args.size_mib} MiB random image ...", file=sys.stderr)
        subprocess.run(["fio", "--name=image", f"--filename={image}", f"--size={size}",
                        "--rw=write", "--bs=1m", "--direct=1", "--ioengine=io_uring",
                        "--iodepth=8", "--refill_buffers", "--output-format=json"],
                       capture_output=True, check=True)
        psk_file = os.path.join(tmp, "nbd.psk")
        with open(psk_file, "w") as f:
            f.write(f"{IDENTITY}:{secret.hex()}\n")
        os.chmod(psk_file, 0o600)
        servers = []
        try:
            plain = StripeServer(tmp, image)
            servers.append(plain.process)
            tls = StripeServer(tmp, image, secret)
            servers.append(tls.process)
            nbd = Nbdkit(tmp, image)
            servers.append(nbd.process)
            nbds = Nbdkit(tmp, image, psk_file)
            servers.append(nbds.process)
            rounds = [
                ("remote", lambda: time_remote_hydration(tmp, size, plain.address, None)),
                ("remote-tls", lambda: time_remote_hydration(tmp, size, tls.address, secret)),
                ("nbdcopy", lambda: time_nbdcopy(tmp, size, nbd.uri)),
                ("nbdcopy-tls", lambda: time_nbdcopy(tmp, size, nbds.uri)),
                ("raw", lambda: time_hydration(image, tmp, size)),
                ("first", lambda: time_first_read(tmp, size, plain.address, None)),
                ("first-tls", lambda: time_first_read(tmp, size, tls.address, secret)),
            ]
            for rep in range(args.reps):
                k = rep % len(rounds)
                for name, fn in rounds[k:] + rounds[:k]:
                    times[name].append(fn())
                    print(f"rep {rep + 1}/{args.reps} {name}: {times[name][-1]}",
                          file=sys.stderr)
        finally:
            for proc in servers:
                proc.close()
    load_after, busy_after = activity()
    med = {k: statistics.median(v) for k, v in times.items() if not k.startswith("first")}
    first = {k: (statistics.median(x[0] for x in times[k]),
                 statistics.median(x[1] for x in times[k])) for k in ("first", "first-tls")}
    mb = size / 1e6

    def row(label, key):
        return f"| {label} | {med[key]:.2f} s | {mb / med[key]:.0f} MB/s |\n"
    ratio = lambda a, b: med[b] / med[a]  # noqa: E731 - throughput a / throughput b
    text = (f"Image {args.size_mib} MiB of random data, 1 MiB stripes, 16 connections, "
            f"loopback; median of {args.reps} interleaved runs; page caches dropped "
            "before each. Load average before/after: "
            f"{load_before} / {load_after}; busy processes (>= 5% CPU) before: "
            f"{', '.join(busy_before) or 'none'}; after: {', '.join(busy_after) or 'none'}.\n\n"
            "| measurement | time | throughput |\n|---|---|---|\n"
            + row("remote hydration, plain TCP (autofetch, start to fetched == source)",
                  "remote")
            + row("remote hydration, TLS-PSK", "remote-tls")
            + row("`nbdkit file` + `nbdcopy --flush`, plain", "nbdcopy")
            + row("`nbdkit file` + `nbdcopy --flush`, TLS-PSK", "nbdcopy-tls")
            + row("hydration from a local raw image", "raw")
            + "\n| ratio (throughput) | value | target |\n|---|---|---|\n"
            f"| remote plain / nbdcopy plain | **{ratio('remote', 'nbdcopy'):.2f}x** | >= 1.0x |\n"
            f"| remote TLS / nbdcopy TLS | **{ratio('remote-tls', 'nbdcopy-tls'):.2f}x** | "
            ">= 1.0x |\n"
            f"| remote TLS / remote plain | **{ratio('remote-tls', 'remote'):.2f}x** | >= 0.8x |\n"
            f"| remote plain / local raw image | {ratio('remote', 'raw'):.2f}x | |\n"
            "\n| first 4 KiB read of an unfetched stripe | backend start to read done | "
            "the read's own latency |\n|---|---|---|\n"
            f"| plain TCP | {first['first'][0] * 1000:.0f} ms | "
            f"{first['first'][1] * 1000:.1f} ms |\n"
            f"| TLS-PSK | {first['first-tls'][0] * 1000:.0f} ms | "
            f"{first['first-tls'][1] * 1000:.1f} ms |\n")
    print(text)
    if args.markdown:
        bench_markdown.update_section(args.markdown, "remote",
                                      "## Remote hydration (`scripts/bench.sh --remote`)", text)


if __name__ == "__main__":
    main()
