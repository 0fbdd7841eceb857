#!/usr/bin/env python3
"""Benchmark vhost-backend against qemu-storage-daemon and plain fio, in one
run, interleaved, with ubiblk-bench as the client for both backends.

  scripts/bench.sh [--runtime SEC] [--reps N] [--completion poll|event]
                   [--save FILE] [--baseline FILE] [--markdown docs/benchmarks.md]
  scripts/bench.sh --busy [--hog-cpus N] [--runtime SEC] [--reps N]
                   [--markdown docs/benchmarks.md]

On a file (O_DIRECT): vhost-backend (io_uring) vs qemu-storage-daemon
(aio=io_uring, cache.direct=on) vs fio straight on the file (the limit).
With no storage underneath: vhost-backend (io_engine: null) vs
qemu-storage-daemon (driver=null-co, read-zeroes=off).

Each figure is the median of --reps runs; runs of different peers are
interleaved so that machine noise hits them alike. Prints a table with the
ratios; --markdown also writes it to a file. --save keeps the medians as
JSON; --baseline adds a column comparing vhost-backend with such a file (the
same rows measured on another build: "no row below today's").

--busy measures a busy host instead: `stress-ng --cpu N` (N = --hog-cpus,
default 2, every CPU of the development machine) runs during the whole
measurement, as vCPUs would on a virtualisation host, and only the vhost rows
run (both backends, file and null), each with both client modes (--completion
event and poll), all four interleaved. fio is left out: it is no vhost client."""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402
import bench_markdown  # noqa: E402
from bench_activity import activity, describe  # noqa: E402

FILE_CASES = [  # (name, mode, bs, iodepth)
    ("4k randread qd1", "randread", "4k", 1),
    ("4k randread qd32", "randread", "4k", 32),
    ("4k randwrite qd1", "randwrite", "4k", 1),
    ("4k randwrite qd32", "randwrite", "4k", 32),
    ("1M read qd4", "read", "1m", 4),
    ("1M write qd4", "write", "1m", 4),
]
NULL_CASES = [
    ("4k randread qd1", "randread", "4k", 1),
    ("4k randread qd32", "randread", "4k", 32),
    ("4k randwrite qd1", "randwrite", "4k", 1),
    ("4k randwrite qd32", "randwrite", "4k", 32),
]
FIO_RW = {"randread": "randread", "randwrite": "randwrite", "read": "read", "write": "write"}


def bench_iops(sock, mode, bs, iodepth, args, completion=None):
    code, report, err = harness.run_bench(
        ["--socket", sock, "--mode", mode, "--bs", bs, "--iodepth", str(iodepth),
         "--queue-size", "256", "--runtime", str(args.runtime), "--completion",
         completion or args.completion],
        timeout=args.runtime + 60)
    if code != 0 or report is None:
        raise RuntimeError(f"ubiblk-bench failed ({code}): {err.strip()[-500:]}")
    side = report["read"] if mode in ("randread", "read") else report["write"]
    return side["iops"], side["mb_s"], side["lat_us"]["p50"], side["lat_us"]["p99"]


def fio_iops(path, mode, bs, iodepth, args):
    argv = ["fio", "--name=limit", f"--filename={path}", "--direct=1", "--ioengine=io_uring",
            f"--rw={FIO_RW[mode]}", f"--bs={bs}", f"--iodepth={iodepth}", "--time_based",
            f"--runtime={args.runtime}", "--output-format=json", "--norandommap",
            "--randrepeat=0"]
    out = subprocess.run(argv, capture_output=True, timeout=args.runtime + 60, check=True)
    job = json.loads(out.stdout)["jobs"][0]
    side = job["read"] if mode in ("randread", "read") else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return (side["iops"], side["bw_bytes"] / 1e6, pct.get("50.000000", 0) / 1000,
            pct.get("99.000000", 0) / 1000)


def fill(path, size):
    """Write real data so reads reach the disk (unwritten extents read as
    zeroes without I/O)."""
    subprocess.run(["fio", "--name=fill", f"--filename={path}", f"--size={size}",
                    "--rw=write", "--bs=1m", "--direct=1", "--ioengine=io_uring",
                    "--iodepth=8", "--output-format=json"], capture_output=True, check=True)


def run(args):
    results = {}  # (group, case, peer) -> list of (iops, mb_s, p50, p99)
    with harness.scratch_dir("ubiblk-bench-") as tmp:
        disk = os.path.join(tmp, "disk.raw")
        harness.make_disk(disk, args.size)
        print(f"filling {args.size >> 20} MiB test file ...", file=sys.stderr)
        fill(disk, args.size)
        vb_dir = os.path.join(tmp, "vb")
        vbn_dir = os.path.join(tmp, "vbn")
        q_dir = os.path.join(tmp, "q")
        qn_dir = os.path.join(tmp, "qn")
        for d in (vb_dir, vbn_dir, q_dir, qn_dir):
            os.mkdir(d)
        common = dict(num_queues=1, queue_size=256, poll_queue_timeout_us=args.poll_us)
        with harness.VhostBackend(vb_dir, disk, **common) as vb, \
                harness.VhostBackend(vbn_dir, disk, io_engine="null", **common) as vbn, \
                harness.QemuStorageDaemon(q_dir, disk) as qsd, \
                NullQsd(qn_dir, disk) as qsdn:
            peers_file = [("vhost-backend", lambda m, b, d: bench_iops(vb.socket, m, b, d, args)),
                          ("qemu-storage-daemon",
                           lambda m, b, d: bench_iops(qsd.socket, m, b, d, args)),
                          ("fio", lambda m, b, d: fio_iops(disk, m, b, d, args))]
            peers_null = [("vhost-backend null",
                           lambda m, b, d: bench_iops(vbn.socket, m, b, d, args)),
                          ("qemu-storage-daemon null-co",
                           lambda m, b, d: bench_iops(qsdn.socket, m, b, d, args))]
            if args.busy:
                peers_file, peers_null = busy_peers(vb, qsd, vbn, qsdn, args)
            for rep in range(args.reps):
                for group, cases, peers in (("file", FILE_CASES, peers_file),
                                            ("null", NULL_CASES, peers_null)):
                    for name, mode, bs, qd in cases:
                        # Rotate the order each repetition so no peer always goes first.
                        order = peers[rep % len(peers):] + peers[:rep % len(peers)]
                        for peer, fn in order:
                            r = fn(mode, bs, qd)
                            results.setdefault((group, name, peer), []).append(r)
                            print(f"rep {rep + 1}/{args.reps} {group:4} {name:18} {peer:28} "
                                  f"{r[0]:>10.0f} IOPS", file=sys.stderr)
    return results


def busy_peers(vb, qsd, vbn, qsdn, args):
    """The vhost rows only, each backend with both client modes."""
    def peer(name, sock, completion):
        return (f"{name} {completion}",
                lambda m, b, d: bench_iops(sock, m, b, d, args, completion))
    modes = ("event", "poll")
    return ([peer(n, s.socket, c) for c in modes
             for n, s in (("vhost-backend", vb), ("qemu-storage-daemon", qsd))],
            [peer(n, s.socket, c) for c in modes
             for n, s in (("vhost-backend null", vbn), ("qemu-storage-daemon null-co", qsdn))])


class Hog:
    """`stress-ng --cpu N` for the length of a with block: other work that
    wants every CPU, as a host's vCPUs do."""

    def __init__(self, cpus):
        self.cpus = cpus

    def __enter__(self):
        self.proc = subprocess.Popen(["stress-ng", "--cpu", str(self.cpus), "--quiet"],
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        time.sleep(1)
        if self.proc.poll() is not None:
            raise RuntimeError("stress-ng exited at once")
        return self

    def __exit__(self, *exc):
        # Its workers are in its session: stop them with it.
        os.killpg(self.proc.pid, 15)
        self.proc.wait(timeout=30)


class NullQsd(harness.QemuStorageDaemon):
    def argv(self):
        return ["qemu-storage-daemon",
                "--blockdev", f"driver=null-co,node-name=disk,size={self.size},read-zeroes=off",
                "--export", "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,"
                f"addr.path={self.socket},writable=on,num-queues={self.num_queues}"]

    @property
    def size(self):
        return os.path.getsize(self.disk)


def median(values, i):
    return statistics.median(v[i] for v in values)


def header(args, load):
    mode = ("both client modes (--completion event and poll), under `stress-ng --cpu "
            f"{args.hog_cpus}`" if args.busy else f"--completion {args.completion}")
    return (f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} "
            f"({os.cpu_count()} CPUs, kernel {platform.release()}); client ubiblk-bench, "
            f"1 queue, {mode}; median of {args.reps} runs of {args.runtime}s each, "
            f"interleaved; poll_queue_timeout_us {args.poll_us}. {describe(*load)}")


def medians(results):
    """{"group|case|peer": [iops, mb_s, p50, p99]}, what --save writes."""
    return {"|".join(k): [median(v, i) for i in range(4)] for k, v in results.items()}


def busy_table(results, args, load):
    lines = [header(args, load), ""]
    lines.append("IOPS (p50 / p99 latency in µs); vb / qsd compares the two backends with "
                 "the same client mode:")
    lines.append("")
    lines.append("| engine | workload | vb, event | qsd, event | vb / qsd | vb, poll "
                 "| qsd, poll | vb / qsd |")
    lines.append("|---|---|---|---|---|---|---|---|")
    cell = lambda r: f"{median(r, 0):,.0f} ({median(r, 2):.0f} / {median(r, 3):.0f})"
    for group, cases, vb, q in (("file", FILE_CASES, "vhost-backend", "qemu-storage-daemon"),
                                ("null", NULL_CASES, "vhost-backend null",
                                 "qemu-storage-daemon null-co")):
        for name, *_ in cases:
            row = f"| {group} | {name} |"
            for c in ("event", "poll"):
                a = results[(group, name, f"{vb} {c}")]
                b = results[(group, name, f"{q} {c}")]
                row += f" {cell(a)} | {cell(b)} | {median(a, 0) / median(b, 0):.2f}x |"
            lines.append(row)
    return "\n".join(lines) + "\n"


def table(results, args, load):
    base = None
    if args.baseline:
        with open(args.baseline) as f:
            base = json.load(f)

    def vs_base(key, r):
        return f" {median(r, 0) / base[key][0]:.2f}x |" if base and key in base else ""

    lines = [header(args, load), ""]
    lines.append("On a file (O_DIRECT), IOPS (p50 / p99 latency in µs):")
    lines.append("")
    extra = (" vb / baseline |", "---|") if base else ("", "")
    lines.append("| workload | vhost-backend | qemu-storage-daemon | fio (limit) "
                 f"| vb / qsd | vb / fio |{extra[0]}")
    lines.append(f"|---|---|---|---|---|---|{extra[1]}")
    for name, *_ in FILE_CASES:
        vb = results[("file", name, "vhost-backend")]
        q = results[("file", name, "qemu-storage-daemon")]
        f = results[("file", name, "fio")]
        cell = lambda r: f"{median(r, 0):,.0f} ({median(r, 2):.0f} / {median(r, 3):.0f})"
        lines.append(f"| {name} | {cell(vb)} | {cell(q)} | {cell(f)} | "
                     f"{median(vb, 0) / median(q, 0):.2f}x | {median(vb, 0) / median(f, 0):.2f}x |"
                     + vs_base(f"file|{name}|vhost-backend", vb))
    lines.append("")
    lines.append("No storage underneath (front end alone), IOPS (p50 / p99 latency in µs):")
    lines.append("")
    lines.append(f"| workload | vhost-backend null | qemu-storage-daemon null-co | vb / qsd |"
                 f"{extra[0]}")
    lines.append(f"|---|---|---|---|{extra[1]}")
    for name, *_ in NULL_CASES:
        vb = results[("null", name, "vhost-backend null")]
        q = results[("null", name, "qemu-storage-daemon null-co")]
        cell = lambda r: f"{median(r, 0):,.0f} ({median(r, 2):.0f} / {median(r, 3):.0f})"
        lines.append(f"| {name} | {cell(vb)} | {cell(q)} | {median(vb, 0) / median(q, 0):.2f}x |"
                     + vs_base(f"null|{name}|vhost-backend null", vb))
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime", type=int, default=4, help="seconds per run (default 4)")
    p.add_argument("--reps", type=int, default=3, help="runs per figure (default 3)")
    p.add_argument("--size", type=int, default=1 << 30, help="test file bytes (default 1 GiB)")
    p.add_argument("--completion", choices=("poll", "event"), default="event",
                   help="how ubiblk-bench waits for completions (default event: on a "
                        "2-core machine a polling client starves a polling backend)")
    p.add_argument("--poll-us", type=int, default=1000, help="poll_queue_timeout_us")
    p.add_argument("--busy", action="store_true",
                   help="a busy host: vhost rows only, both client modes, under stress-ng")
    p.add_argument("--hog-cpus", type=int, default=2, help="stress-ng --cpu N (default 2)")
    p.add_argument("--save", help="write the medians to this JSON file")
    p.add_argument("--baseline", help="a --save file to compare vhost-backend with")
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args()
    load_before = activity()
    if args.busy:
        with Hog(args.hog_cpus):
            results = run(args)
    else:
        results = run(args)
    load = (load_before, activity())
    if args.save:
        with open(args.save, "w") as f:
            json.dump(medians(results), f, indent=1)
    text = busy_table(results, args, load) if args.busy else table(results, args, load)
    print(text)
    if args.markdown:
        if args.busy:
            name, title = "vhost-busy", ("## A busy host: vhost-backend vs qemu-storage-daemon "
                                         "under a CPU hog (`scripts/bench.sh --busy`)")
        else:
            name = "vhost" if args.completion == "event" else "vhost-poll"
            title = ("## vhost-backend vs qemu-storage-daemon vs fio (`scripts/bench.sh`"
                     + (", `--completion poll`)" if args.completion == "poll" else ")"))
        bench_markdown.update_section(args.markdown, name, title, text)


if __name__ == "__main__":
    main()
