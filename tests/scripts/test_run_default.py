#!/usr/bin/env python3
"""The README's first command, scripts/run-default.sh, as a new user meets it:
it builds, serves the default disk (here in a temporary state folder, through
UBIBLK_STATE_DIR) and prints hints; every command a hint names must exist
and work against the printed socket.

  - ubiblk-bench: run exactly as printed;
  - QEMU: the printed command line, with the "..." line (the user's boot
    options) replaced by a paused machine (-S) and a QMP socket; the machine
    is up when QMP greets (a front end that fails to attach makes QEMU exit
    before that); then it is told to quit;
  - run_guest.py: --interactive needs a person at a terminal, so the same
    command with --print-cmd instead, which takes the same path up to
    starting QEMU.

Run by scripts/test.sh (not by meson test: it builds build/ in the checkout,
as the script does for a user). The script execs vhost-backend, so the pid
started here is the backend's, stopped by pid whatever happens."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile

TOP = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402

SCRIPT = os.path.join(TOP, "scripts", "run-default.sh")
# Configuring and building build/ on a fresh clone, on a busy machine.
BUILD_TIMEOUT = 900
BENCH_HINT = "Or measure it: "


def parse_hints(text):
    """{"socket": path, "qemu": argv, "guest": argv, "bench": argv} from the
    script's output; every line that starts a command is accounted for."""
    lines = text.splitlines()
    hints = {}
    for line in lines:
        if line.startswith("socket: "):
            hints["socket"] = line[len("socket: "):].strip()
    i = 0
    commands = []
    while i < len(lines):
        line = lines[i]
        if line.startswith(BENCH_HINT):
            commands.append(line[len(BENCH_HINT):])
        elif line.startswith("  ") and not line.lstrip().startswith(("-", "...")):
            # A command, continued over lines ending in a backslash; a
            # "..." line is the user's own options.
            parts = [line.strip()]
            while parts[-1].endswith("\\") and i + 1 < len(lines):
                parts[-1] = parts[-1][:-1]
                i += 1
                if not lines[i].strip().startswith("..."):
                    parts.append(lines[i].strip())
            commands.append(" ".join(parts))
        i += 1
    for command in commands:
        argv = shlex.split(command)
        name = os.path.basename(argv[0])
        key = {"qemu-system-x86_64": "qemu", "run_guest.py": "guest",
               "ubiblk-bench": "bench"}.get(name)
        assert key, f"a hint this test does not know how to run: {command}"
        hints[key] = argv
    missing = {"socket", "qemu", "guest", "bench"} - set(hints)
    assert not missing, f"hints not found: {sorted(missing)} in:\n{text}"
    return hints


def wait_for_hints(proc, timeout):
    """The script's output once its last hint is printed."""
    def printed():
        return BENCH_HINT in proc.log_text() or not proc.alive()
    harness.wait_for(printed, timeout, "run-default.sh to print its hints")
    assert proc.alive(), "run-default.sh exited:\n" + proc.log_text()
    return proc.log_text()


def check_bench_hint(argv):
    proc = subprocess.run(argv, capture_output=True, timeout=120)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"{shlex.join(argv)}: exit {proc.returncode}:\n{out}"
    assert "iops=" in out, f"{shlex.join(argv)}: no iops in its report:\n{out}"


def qmp_command(f, command):
    f.write(json.dumps({"execute": command}).encode() + b"\n")
    f.flush()
    while True:
        reply = json.loads(f.readline())
        if "event" not in reply:
            return reply


def check_qemu_hint(argv, tmp, backend):
    qmp = os.path.join(tmp, "qmp.sock")
    argv = argv + ["-S", "-display", "none", "-nodefaults",
                   "-qmp", f"unix:{qmp},server=on,wait=off"]
    qemu = harness.Process(argv, log_path=os.path.join(tmp, "qemu.log"))
    try:
        assert harness.wait_until_accepting(qmp, qemu, 60, "QEMU's QMP socket"), \
            f"QEMU exited:\n{qemu.log_text()}"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(qmp)
        with s, s.makefile("rwb") as f:
            greeting = f.readline()
            assert b"QMP" in greeting, f"no QMP greeting: {greeting!r}\n{qemu.log_text()}"
            assert "return" in qmp_command(f, "qmp_capabilities")
            assert f"front end connected (pid {qemu.pid}," in backend.log_text(), \
                "QEMU is up but vhost-backend did not see it connect:\n" + backend.log_text()
            left = backend.log_text().count("front end disconnected")
            qmp_command(f, "quit")
        qemu.proc.wait(timeout=30)
        assert qemu.proc.returncode == 0, \
            f"QEMU exit {qemu.proc.returncode}:\n{qemu.log_text()}"
    finally:
        qemu.close()
    # The backend serves the next front end once QEMU's connection is gone.
    harness.wait_for(lambda: backend.log_text().count("front end disconnected") > left, 30,
                     "vhost-backend to see QEMU leave")


def check_guest_hint(argv, sock):
    assert "--interactive" in argv, argv
    argv = [a if a != "--interactive" else "--print-cmd" for a in argv]
    proc = subprocess.run(argv, capture_output=True, timeout=600)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, \
        f"{shlex.join(argv)}: exit {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    assert re.search(r"path=" + re.escape(sock) + r"\b", out), \
        f"the guest's QEMU command line does not attach {sock}:\n{out}"


def test_run_default_hints():
    # A fresh clone has no build/. An empty one, which anything that wants
    # a scratch folder there may leave (the test harness's scratch_dir
    # does), must be configured too, not handed to ninja as it is.
    build = os.path.join(TOP, "build")
    if not os.path.exists(build):
        os.mkdir(build)
    base = os.environ.get("TMPDIR") or "/var/tmp"
    with tempfile.TemporaryDirectory(prefix="ubiblk-run-default-", dir=base) as tmp:
        state = os.path.join(tmp, "state")
        env = dict(os.environ, UBIBLK_STATE_DIR=state)
        backend = harness.Process([SCRIPT], log_path=os.path.join(tmp, "run-default.log"),
                                  env=env)
        try:
            hints = parse_hints(wait_for_hints(backend, BUILD_TIMEOUT))
            sock = hints["socket"]
            assert sock == os.path.join(state, "vhost.sock"), sock
            for key in ("guest", "bench"):
                path = hints[key][0]
                assert os.access(path, os.X_OK), f"hint names {path}, which does not exist"
            assert harness.wait_until_accepting(sock, backend, 60, "vhost-backend"), \
                "vhost-backend exited:\n" + backend.log_text()
            check_qemu_hint(hints["qemu"], tmp, backend)
            check_bench_hint(hints["bench"])
            check_guest_hint(hints["guest"], sock)
            assert backend.stop(signal.SIGTERM) == 0, \
                "vhost-backend did not exit 0 on SIGTERM:\n" + backend.log_text()
            assert not os.path.exists(sock), "the socket was left behind"
        except BaseException:
            print("--- run-default.sh output ---\n" + backend.log_text(), flush=True)
            raise
        finally:
            # Before the exec (still building), the pid is the script's:
            # its whole session goes, ninja included.
            if backend.alive():
                try:
                    os.killpg(backend.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            backend.close()


if __name__ == "__main__":
    harness.main([test_run_default_hints])
