"""What else the machine was doing while a benchmark ran, for the record:
the benchmark scripts print it with their tables, since on a shared
machine it explains much of the noise."""

import subprocess


def activity():
    """The load average and the processes using at least 5% of a CPU over
    one second (top's second sample)."""
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    out = subprocess.run(["top", "-b", "-n", "2", "-d", "1", "-w", "200"],
                         capture_output=True, text=True).stdout
    last = out.split("\n\n")[-1].splitlines()
    busy = []
    for line in last:
        f = line.split()
        if len(f) >= 12 and f[0].isdigit():
            try:
                if float(f[8]) >= 5.0:
                    busy.append(f"{f[11]} {float(f[8]):.0f}%")
            except ValueError:
                pass
    return load, busy[:8]


def describe(before, after):
    """One sentence for a table's header."""
    def busy(b):
        return ", ".join(b) if b else "none"
    return (f"Load average before/after: {before[0]} / {after[0]}; busy processes (>= 5% CPU) "
            f"before: {busy(before[1])}; after: {busy(after[1])}.")
