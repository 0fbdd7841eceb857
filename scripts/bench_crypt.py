#!/usr/bin/env python3
"""Benchmark encryption at rest: ubiblk-bench against encrypted and plain
vhost-backends, on a file and with io_engine null (where only the front end
and the cipher cost anything), 4 KiB random at iodepth 32 and 1 MiB
sequential, in one run, interleaved; and `openssl speed -evp aes-256-xts`
as the cipher's limit on this machine.

  scripts/bench.sh --crypt [--runtime SEC] [--reps N] [--markdown docs/benchmarks.md]"""

import argparse
import base64
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402
import bench_markdown  # noqa: E402
from bench import bench_iops, fill  # noqa: E402

CASES = [("4k randread qd32", "randread", "4k", 32),
         ("4k randwrite qd32", "randwrite", "4k", 32),
         ("1M read qd4", "read", "1m", 4),
         ("1M write qd4", "write", "1m", 4)]


def openssl_xts_mb_s(seconds, unit_bytes):
    out = subprocess.run(["openssl", "speed", "-evp", "aes-256-xts", "-bytes", str(unit_bytes),
                          "-seconds", str(seconds)], capture_output=True, text=True, check=True)
    # Last line: "AES-256-XTS  <N>k" (thousands of bytes per second).
    for line in reversed(out.stdout.splitlines()):
        m = re.search(r"([\d.]+)k\s*$", line)
        if m and "xts" in line.lower():
            return float(m.group(1)) * 1000 / 1e6
    raise RuntimeError("cannot parse openssl speed output:\n" + out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--size", type=int, default=1 << 30)
    p.add_argument("--completion", choices=("poll", "event"), default="event")
    p.add_argument("--markdown")
    args = p.parse_args()
    keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(2)]
    results = {}
    with harness.scratch_dir("ubiblk-crypt-bench-") as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), args.size)
        fill(disk, args.size)
        peers = {}
        dirs = {}
        for name, fields in (("plain", {}), ("encrypted", {"encryption_key": keys}),
                             ("plain null", {"io_engine": "null"}),
                             ("encrypted null", {"io_engine": "null",
                                                 "encryption_key": keys})):
            d = os.path.join(tmp, name.replace(" ", "-"))
            os.mkdir(d)
            dirs[name] = d
            peers[name] = harness.VhostBackend(d, disk, queue_size=256, **fields).start()
        try:
            for rep in range(args.reps):
                for case, mode, bs, qd in CASES:
                    names = list(peers)
                    order = names[rep % len(names):] + names[:rep % len(names)]
                    for name in order:
                        r = bench_iops(peers[name].socket, mode, bs, qd, args)
                        results.setdefault((case, name), []).append(r)
                        print(f"rep {rep + 1} {case:18} {name:15} {r[0]:>10.0f} IOPS "
                              f"{r[1]:8.1f} MB/s", file=sys.stderr)
            xts = [openssl_xts_mb_s(3, 1048576) for _ in range(args.reps)]
            xts512 = [openssl_xts_mb_s(3, 512) for _ in range(args.reps)]
        finally:
            for be in peers.values():
                be.process.close()
    med = lambda case, name, i: statistics.median(v[i] for v in results[(case, name)])
    xts_mb = statistics.median(xts)
    xts512_mb = statistics.median(xts512)
    lines = [f"1 queue, --completion {args.completion}; median of {args.reps} interleaved runs "
             f"of {args.runtime}s. The cipher's limit on one core, `openssl speed -evp "
             f"aes-256-xts`: {xts_mb:,.0f} MB/s in 1 MiB units, {xts512_mb:,.0f} MB/s in "
             "512-byte units (what the disk format uses: one XTS unit per sector).", "",
             "| workload | plain | encrypted | enc / plain | plain null | encrypted null "
             "| enc null / plain null |", "|---|---|---|---|---|---|---|"]
    for case, mode, bs, qd in CASES:
        i = 0 if bs == "4k" else 1
        unit = "IOPS" if i == 0 else "MB/s"
        cell = lambda name: f"{med(case, name, i):,.0f} {unit}"
        lines.append(f"| {case} | {cell('plain')} | {cell('encrypted')} | "
                     f"{med(case, 'encrypted', i) / med(case, 'plain', i):.2f}x | "
                     f"{cell('plain null')} | {cell('encrypted null')} | "
                     f"{med(case, 'encrypted null', i) / med(case, 'plain null', i):.2f}x |")
    lines.append("")
    for case in ("1M read qd4", "1M write qd4"):
        lines.append(f"- {case}, encrypted null: {med(case, 'encrypted null', 1):,.0f} MB/s = "
                     f"{med(case, 'encrypted null', 1) / xts_mb * 100:.0f}% of OpenSSL's XTS "
                     f"speed in 1 MiB units, "
                     f"{med(case, 'encrypted null', 1) / xts512_mb * 100:.0f}% in 512-byte units.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        bench_markdown.update_section(args.markdown, "crypt",
                                      "## Encryption at rest (`scripts/bench.sh --crypt`)", text)


if __name__ == "__main__":
    main()
