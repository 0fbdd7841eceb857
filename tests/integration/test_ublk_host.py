"""ublk-backend on this host, which has no ublk driver (no /dev/ublk-control;
the guest test tests/guest/test_guest_ublk.py covers the driver): the
missing-driver error (exit 1, the way out named, the disk file untouched,
nothing left behind), usage errors (exit 2 with a usage line), --help and
-V, and the ublk limits on queue_size and seg_size_max (exit 1 naming the
field, checked before the driver is looked for).

A host that does have /dev/ublk-control fails the driver-dependent tests
loudly instead of skipping them: they would not test what they claim."""

import hashlib
import os
import re
import subprocess

import harness

CONTROL = "/dev/ublk-control"
USAGE = "Usage: ublk-backend"


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("[ERROR]")]


def need_no_driver():
    expect(not os.path.exists(CONTROL),
           f"this host has {CONTROL}: the missing-driver behaviour cannot be tested here "
           "(run on a host without ublk_drv; the guest test covers the driver)")


def run(*args, timeout=30):
    """ublk-backend ARGS; returns (exit code, stdout, stderr). A hang is a
    failure (TimeoutExpired), not a wait."""
    proc = subprocess.run([harness.binary("ublk-backend")] + [str(a) for a in args],
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return (proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Setup:
    """A scratch folder with a 1 MiB disk of random bytes and a config
    writer; the RPC socket and the symlink path a start would create."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.disk = harness.random_file(os.path.join(tmp, "disk.raw"), 1 << 20, seed=77)
        self.rpc = os.path.join(tmp, "rpc.sock")
        self.link = os.path.join(tmp, "links", "new", "disk")

    def config(self, name="disk.yaml", **fields):
        cfg = {"path": self.disk, "num_queues": 2, "queue_size": 64,
               "rpc_socket_path": self.rpc}
        cfg.update(fields)
        return harness.write_config(os.path.join(self.tmp, name), cfg)


def expect_missing_driver(result, what):
    code, out, err = result
    expect(code == 1, f"{what}: exit {code}, want 1; stderr: {err!r}")
    lines = error_lines(err)
    expect(lines, f"{what}: no [ERROR] line: {err!r}")
    expect(any(CONTROL in line and "modprobe ublk_drv" in line for line in lines),
           f"{what}: no error line naming {CONTROL} and 'modprobe ublk_drv': {err!r}")


def expect_field_error(result, field, what):
    code, out, err = result
    expect(code == 1, f"{what}: exit {code}, want 1; stderr: {err!r}")
    lines = error_lines(err)
    expect(any(field in line for line in lines), f"{what}: no error line naming {field}: {err!r}")
    expect(CONTROL not in err, f"{what}: the config error must come before the driver: {err!r}")


def expect_usage(result, needle, what):
    code, out, err = result
    expect(code == 2, f"{what}: exit {code}, want 2; stderr: {err!r}")
    expect(USAGE in err, f"{what}: no usage line on stderr: {err!r}")
    expect(needle in err, f"{what}: {needle!r} not in {err!r}")
    expect(out == "", f"{what}: stdout {out!r}")
    expect(CONTROL not in err, f"{what}: looked for the driver before the arguments: {err!r}")


def test_missing_driver():
    need_no_driver()
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        before = (os.path.getsize(s.disk), sha256_of(s.disk))
        expect_missing_driver(run("-f", s.config(), "--device-symlink", s.link),
                              "valid config, no driver")
        expect((os.path.getsize(s.disk), sha256_of(s.disk)) == before,
               "the disk file changed")


def test_missing_driver_leaves_nothing_behind():
    need_no_driver()
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        run("-f", s.config(), "--device-symlink", s.link)
        expect(not os.path.lexists(s.link), f"the symlink {s.link} was made without a device")
        expect(not os.path.exists(s.rpc), f"the RPC socket {s.rpc} was left behind")


def test_usage_errors():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        cfg = s.config()
        before = sha256_of(s.disk)
        expect_usage(run("-f", cfg, "--bogus"), "bogus", "an unknown option")
        expect_usage(run("-f", cfg, "-x"), "-- 'x'", "an unknown short option")
        expect_usage(run("-f", cfg, "-u"), "--unlink-kek requires --kek", "-u without -k")
        expect_usage(run("-f", cfg, "--unlink-kek"), "--unlink-kek requires --kek",
                     "--unlink-kek without -k")
        expect_usage(run("-f", cfg, "--device-symlink"), "device-symlink",
                     "--device-symlink without a value")
        expect_usage(run(), "--config", "no -f")
        expect_usage(run("-f", cfg, "extra"), "unexpected argument", "a positional argument")
        expect(sha256_of(s.disk) == before, "a usage error touched the disk")
        expect(not os.path.exists(s.rpc), "a usage error made the RPC socket")


def test_help():
    for flag in ("--help", "-h"):
        code, out, err = run(flag)
        expect(code == 0, f"{flag}: exit {code}, stderr {err!r}")
        expect(out.startswith(USAGE), f"{flag}: stdout does not start with the usage: {out!r}")
        expect("--device-symlink" in out, f"{flag}: --device-symlink not described: {out!r}")


def test_version():
    for flag in ("-V", "--version"):
        code, out, err = run(flag)
        expect(code == 0, f"{flag}: exit {code}, stderr {err!r}")
        expect(re.fullmatch(r"ublk-backend 0\.4\.0\nxts engine: (vaes-avx512|gcrypt|openssl)\n", out),
               f"{flag}: stdout {out!r}")


def test_queue_size_limit():
    need_no_driver()
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        # A valid config value (power of two up to 32768) over ublk's 4096.
        expect_field_error(run("-f", s.config(queue_size=8192)), "queue_size", "queue_size 8192")
        # 4096 itself is accepted: the driver is what is missing then.
        expect_missing_driver(run("-f", s.config(queue_size=4096)), "queue_size 4096")


def test_seg_size_max_multiple_of_4096():
    need_no_driver()
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        for bad in (1000, 6144):   # valid for the config layer (512..1 MiB), not for ublk
            expect_field_error(run("-f", s.config(seg_size_max=bad)), "seg_size_max",
                               f"seg_size_max {bad}")
        for good in (4096, 1048576):
            expect_missing_driver(run("-f", s.config(seg_size_max=good)), f"seg_size_max {good}")


def test_config_errors_exit_1():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        # The shared config layer: one line naming the field.
        expect_field_error(run("-f", s.config(num_queues=0)), "num_queues", "num_queues 0")
        code, _, err = run("-f", os.path.join(tmp, "missing.yaml"))
        expect(code == 1 and error_lines(err), f"a missing config: exit {code}, {err!r}")


if __name__ == "__main__":
    harness.main([
        test_missing_driver,
        test_missing_driver_leaves_nothing_behind,
        test_usage_errors,
        test_help,
        test_version,
        test_queue_size_limit,
        test_seg_size_max_multiple_of_4096,
        test_config_errors_exit_1,
    ])
