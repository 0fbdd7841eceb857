#!/usr/bin/env python3
"""Benchmark encryption at rest, in one run:
- the cipher alone, each AES-XTS engine this machine runs (`xts
  --benchmark`: one call per 512-byte sector, per 4 KiB and per 1 MiB), and
  `openssl speed -evp aes-256-xts` in 1 MiB and 512-byte units;
- ubiblk-bench against encrypted and plain vhost-backends, on a file and
  with io_engine null (where only the front end and the cipher cost
  anything), 4 KiB random at iodepth 32 and 1 MiB sequential, interleaved;
  the encrypted null engine both with the engine chosen for this CPU and
  forced to OpenSSL (UBIBLK_XTS_ENGINE=openssl, the path before engines).

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
from bench_activity import activity  # noqa: E402

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


def engines_alone(seconds):
    """{(engine, unit): (encrypt MB/s, decrypt MB/s)} and the chosen engine,
    from `xts --benchmark`."""
    out = subprocess.run([harness.binary("xts"), "--benchmark", "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    rows, chosen, missing = {}, None, []
    for line in out.splitlines():
        w = line.split()
        if line.startswith("chosen:"):
            chosen = w[1]
        elif "not on this machine" in line:
            missing.append(line)
        elif len(w) == 4 and w[1] in ("512B", "4KiB", "1MiB"):
            rows[(w[0], w[1])] = (float(w[2]), float(w[3]))
    return rows, chosen, missing


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
    load_before, busy_before = activity()
    with harness.scratch_dir("ubiblk-crypt-bench-") as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), args.size)
        fill(disk, args.size)
        peers = {}
        dirs = {}
        for name, fields, engine in (
                ("plain", {}, None), ("encrypted", {"encryption_key": keys}, None),
                ("plain null", {"io_engine": "null"}, None),
                ("encrypted null", {"io_engine": "null", "encryption_key": keys}, None),
                ("encrypted null openssl", {"io_engine": "null", "encryption_key": keys},
                 "openssl")):
            d = os.path.join(tmp, name.replace(" ", "-"))
            os.mkdir(d)
            dirs[name] = d
            be = harness.VhostBackend(d, disk, queue_size=256, **fields)
            if engine:
                with harness.xts_engine(engine):
                    peers[name] = be.start()
            else:
                peers[name] = be.start()
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
            xts, xts512, alone = [], [], []
            for _ in range(args.reps):
                xts.append(openssl_xts_mb_s(3, 1048576))
                xts512.append(openssl_xts_mb_s(3, 512))
                alone.append(engines_alone(1))
        finally:
            for be in peers.values():
                be.process.close()
    load_after, busy_after = activity()
    med = lambda case, name, i: statistics.median(v[i] for v in results[(case, name)])
    xts_mb = statistics.median(xts)
    xts512_mb = statistics.median(xts512)
    chosen, missing = alone[0][1], alone[0][2]
    lines = [f"The cipher alone on one core (`xts --benchmark`, in place over 1 MiB, median of "
             f"{args.reps}; `openssl speed -evp aes-256-xts` in the same run: {xts_mb:,.0f} MB/s "
             f"in 1 MiB units, {xts512_mb:,.0f} MB/s in 512-byte units). MB/s encrypt / decrypt; "
             f"the ratio is the slower direction against `openssl speed` in the same unit size "
             f"(512 B against 512-byte units, the others against 1 MiB). Chosen here: "
             f"**{chosen}**.", "",
             "| engine | 512 B per call | 4 KiB per call | 1 MiB per call |",
             "|---|---|---|---|"]
    for engine in [e for e in harness.XTS_ENGINES if (e, "1MiB") in alone[0][0]]:
        cells = []
        for unit in ("512B", "4KiB", "1MiB"):
            enc = statistics.median(a[0][(engine, unit)][0] for a in alone)
            dec = statistics.median(a[0][(engine, unit)][1] for a in alone)
            ref = xts512_mb if unit == "512B" else xts_mb
            cells.append(f"{enc:,.0f} / {dec:,.0f} ({min(enc, dec) / ref:.2f}x)")
        lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    for line in missing:
        lines.append(f"\nNot measured: {line}")
    lines += ["", f"1 queue, --completion {args.completion}; median of {args.reps} interleaved runs "
             f"of {args.runtime}s. The cipher's limit on one core, `openssl speed -evp "
             f"aes-256-xts`: {xts_mb:,.0f} MB/s in 1 MiB units, {xts512_mb:,.0f} MB/s in "
             "512-byte units (what the disk format uses: one XTS unit per sector).", "",
             "| workload | plain | encrypted | enc / plain | plain null | encrypted null "
             "| enc null / plain null | encrypted null, openssl engine |",
             "|---|---|---|---|---|---|---|---|"]
    for case, mode, bs, qd in CASES:
        i = 0 if bs == "4k" else 1
        unit = "IOPS" if i == 0 else "MB/s"
        cell = lambda name: f"{med(case, name, i):,.0f} {unit}"
        lines.append(f"| {case} | {cell('plain')} | {cell('encrypted')} | "
                     f"{med(case, 'encrypted', i) / med(case, 'plain', i):.2f}x | "
                     f"{cell('plain null')} | {cell('encrypted null')} | "
                     f"{med(case, 'encrypted null', i) / med(case, 'plain null', i):.2f}x | "
                     f"{cell('encrypted null openssl')} |")
    lines.append("")
    lines += ["| target | measured | met |", "|---|---|---|"]
    for case in ("1M read qd4", "1M write qd4"):
        ratio = med(case, "encrypted null", 1) / xts_mb
        lines.append(f"| {case}, encrypted null ≥ 1.5x `openssl speed` 1 MiB | "
                     f"{med(case, 'encrypted null', 1):,.0f} MB/s = {ratio:.2f}x | "
                     f"{'yes' if ratio >= 1.5 else 'no'} |")
    for case, mode, bs, qd in CASES:
        i = 0 if bs == "4k" else 1
        ratio = med(case, "encrypted", i) / med(case, "plain", i)
        lines.append(f"| {case}, encrypted / plain on the file ≥ 0.95x | {ratio:.2f}x | "
                     f"{'yes' if ratio >= 0.95 else 'no'} |")
    lines += ["", f"Load average before/after: {load_before} / {load_after}; busy processes "
              f"(>= 5% CPU) before: {', '.join(busy_before) or 'none'}; after: "
              f"{', '.join(busy_after) or 'none'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        bench_markdown.update_section(args.markdown, "crypt",
                                      "## Encryption at rest (`scripts/bench.sh --crypt`)", text)


if __name__ == "__main__":
    main()
