"""A busy host for the guest tests: stress-ng keeps every core busy while a
guest runs, so the guests, the backends and their timeouts are tested on a
host whose CPUs they do not have to themselves (issue 12, "a busy host").

Set UBIBLK_TEST_CPU_HOG=N (N stress-ng CPU workers; the machine's core count
when N is 0 or "all") and run_guest wraps every QEMU boot in one:

    with CpuHog.from_env() as hog:    # a no-op when the variable is unset
        ... boot and run the guest ...
    hog.failure()                     # None, or why the hog did not hold

The workers run at normal priority, as a tenant's busy VMs would. They are
started in their own session and stopped by process group whatever happens.
"""

import os
import re
import signal
import subprocess
import tempfile

ENV = "UBIBLK_TEST_CPU_HOG"


class CpuHog:
    def __init__(self, workers):
        self.workers = workers
        self.proc = None
        self.stopped_early = False
        self.bogo_ops = None
        self._out = None

    @classmethod
    def from_env(cls):
        value = os.environ.get(ENV, "").strip()
        if not value:
            return cls(0)
        workers = (os.cpu_count() or 1) if value in ("0", "all") else int(value)
        return cls(workers)

    def __enter__(self):
        if self.workers:
            self._out = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                ["stress-ng", "--cpu", str(self.workers), "--cpu-method", "matrixprod",
                 "--metrics-brief", "--timeout", "3600s"],
                stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                start_new_session=True)
            print(f"busy host: stress-ng --cpu {self.workers} (pid {self.proc.pid})", flush=True)
        return self

    def __exit__(self, *exc):
        if not self.proc:
            return False
        # Still running at the end of the guest, or the guest did not run on
        # a busy host at all.
        self.stopped_early = self.proc.poll() is not None
        if not self.stopped_early:
            os.killpg(self.proc.pid, signal.SIGINT)  # stress-ng prints its metrics on SIGINT
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._out.seek(0)
        text = self._out.read().decode(errors="replace")
        self._out.close()
        m = re.search(r"\bcpu\s+(\d+)\s", text)
        self.bogo_ops = int(m.group(1)) if m else None
        print(f"busy host: stress-ng stopped, {self.bogo_ops} bogo ops", flush=True)
        return False

    def failure(self):
        if self.proc and self.stopped_early:
            return "the CPU hog (stress-ng) stopped before the guest did"
        return None
