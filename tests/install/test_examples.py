"""The example configs installed to share/doc/ubiblk/examples work as they
are, with only their paths (/var/lib/ubiblk, /run/ubiblk) and the server
address replaced: each is served by the real tools and read back through
ubiblk-bench, the remote and archive ones end to end from golden.yaml."""

import hashlib
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from install_common import EXAMPLES, TIMEOUT  # noqa: E402

SIZE = 16 << 20


class Examples:
    """The examples copied into a scratch folder, paths and address replaced."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.lib = os.path.join(tmp, "lib")
        self.run = os.path.join(tmp, "run")
        os.makedirs(self.lib)
        os.makedirs(self.run)
        self.address = f"127.0.0.1:{harness.free_port()}"
        self.paths = {}
        for name in sorted(os.listdir(EXAMPLES)):
            if not name.endswith(".yaml"):
                continue
            with open(os.path.join(EXAMPLES, name)) as f:
                text = f.read()
            text = (text.replace("/var/lib/ubiblk/", self.lib + "/")
                    .replace("/run/ubiblk/", self.run + "/")
                    .replace("0.0.0.0:4555", self.address)
                    .replace("192.0.2.10:4555", self.address))
            for line in text.splitlines():
                # The scratch folder itself may lie under /var (a checkout
                # in /var/tmp): only what is left outside it counts.
                rest = line.replace(tmp, "")
                if not line.lstrip().startswith("#") and any(
                        p in rest for p in ("/var/", "/run/ubiblk", "/etc/", "0.0.0.0",
                                            "192.0.2.10")):
                    raise AssertionError(f"{name}: a path or address the test does not "
                                         f"replace: {line!r}")
            # The socket folders (/run/ubiblk/NAME): systemd's RuntimeDirectory.
            for folder in re.findall(re.escape(self.run) + r"/([^/\s]+)/", text):
                os.makedirs(os.path.join(self.run, folder), exist_ok=True)
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            self.paths[name] = path
        os.chmod(self.paths["kek.yaml"], 0o600)

    def __getitem__(self, name):
        return self.paths[name]

    def disk(self, name):
        return harness.make_disk(os.path.join(self.lib, name), SIZE)


def run(argv, what):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT * 5,
                          env=dict(os.environ, UBIBLK_LOG="info"))
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return proc


def serve(ex, config, *extra):
    """vhost-backend serving an example config, accepting connections."""
    with open(config) as f:
        sock = next(line.split(":", 1)[1].split("#")[0].strip()
                    for line in f if line.startswith("socket:"))
    log = os.path.join(ex.tmp, os.path.basename(config) + ".log")
    proc = harness.Process([harness.binary("vhost-backend"), "-f", config] + list(extra),
                           log_path=log, env=dict(os.environ, UBIBLK_LOG="info"))
    try:
        if not harness.wait_until_accepting(sock, proc, 30 * TIMEOUT // 60,
                                            f"vhost-backend -f {config}"):
            raise AssertionError(f"vhost-backend -f {config} exited:\n{proc.log_text()}")
    except BaseException:
        proc.close()
        raise
    return proc, sock


def stop(proc, what):
    try:
        status = proc.stop()
        if status != 0:
            raise AssertionError(f"{what} exited {status}:\n{proc.log_text()[-3000:]}")
    finally:
        proc.close()


def bench(sock, *args):
    code, _, err = harness.run_bench(["--socket", sock] + list(args), timeout=TIMEOUT * 5)
    if code != 0:
        raise AssertionError(f"ubiblk-bench {' '.join(args)} exited {code}: {err[-3000:]}")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_back(ex, sock, name):
    """The whole device as its guest reads it (ubiblk-bench --dump)."""
    out = os.path.join(ex.tmp, name)
    bench(sock, "--mode", "read", "--bs", "1m", "--iodepth", "4", "--dump", out)
    return sha256(out)


def test_plain_disk(ex):
    ex.disk("disk.raw")
    proc, sock = serve(ex, ex["disk.yaml"])
    try:
        bench(sock, "--mode", "verify", "--queues", "2", "--iodepth", "4", "--size", "4m")
        status = harness.rpc(os.path.join(ex.run, "disk", "rpc.sock"), "version")
        if "version" not in status:
            raise AssertionError(f"the RPC socket answered {status}")
    finally:
        stop(proc, "vhost-backend -f disk.yaml")


def test_encrypted_disk(ex):
    raw = ex.disk("encrypted.raw")
    proc, sock = serve(ex, ex["encrypted-disk.yaml"], "-k", ex["kek.yaml"])
    try:
        bench(sock, "--mode", "verify", "--iodepth", "4", "--size", "4m")
    finally:
        stop(proc, "vhost-backend -f encrypted-disk.yaml -k kek.yaml")
    # What is on disk is not what the guest wrote: xts decodes it back.
    plain = os.path.join(ex.tmp, "plain.raw")
    run([harness.binary("xts"), "-f", ex["encrypted-disk.yaml"], "-k", ex["kek.yaml"],
         "--len", "8192", raw, plain], "xts decode")
    with open(raw, "rb") as f:
        stored = f.read(4 << 20)
    with open(plain, "rb") as f:
        decoded = f.read()
    if stored == decoded or decoded.count(0) == len(decoded):
        raise AssertionError("encrypted-disk.yaml stored the guest's data in clear")


def test_remote_and_archive_from_golden(ex):
    golden = ex.disk("golden.raw")
    run([harness.binary("init-metadata"), "-f", ex["golden.yaml"]], "init-metadata golden.yaml")
    proc, sock = serve(ex, ex["golden.yaml"])
    try:
        bench(sock, "--mode", "write", "--bs", "1m", "--iodepth", "4", "--seed", "7")
    finally:
        stop(proc, "vhost-backend -f golden.yaml")
    want = sha256(golden)
    if want == hashlib.sha256(bytes(SIZE)).hexdigest():
        raise AssertionError("the golden disk is still all zeros")

    server = harness.Process([harness.binary("remote-stripe-server"), "-f", ex["golden.yaml"],
                              "--listen-config", ex["golden.listen.yaml"]],
                             log_path=os.path.join(ex.tmp, "server.log"),
                             env=dict(os.environ, UBIBLK_LOG="info"))
    try:
        harness.wait_for(lambda: f"listening on {ex.address}" in server.log_text()
                         or not server.alive(), 30 * TIMEOUT // 60, "remote-stripe-server")
        if not server.alive():
            raise AssertionError(f"remote-stripe-server exited:\n{server.log_text()}")
        if "TLS-PSK" not in server.log_text() and "NO PSK" in server.log_text():
            raise AssertionError("golden.listen.yaml did not give the server a PSK")
        ex.disk("remote-disk.raw")
        run([harness.binary("init-metadata"), "-f", ex["remote-disk.yaml"]],
            "init-metadata remote-disk.yaml")
        proc, sock = serve(ex, ex["remote-disk.yaml"])
        try:
            got = read_back(ex, sock, "remote.dump")
        finally:
            stop(proc, "vhost-backend -f remote-disk.yaml")
        if got != want:
            raise AssertionError("remote-disk.yaml reads other data than golden.raw holds")
        if "TLS-PSK session" not in server.log_text():
            raise AssertionError(f"no TLS-PSK session in the server log:\n{server.log_text()}")
    finally:
        stop(server, "remote-stripe-server")

    run([harness.binary("archive"), "-f", ex["golden.yaml"], "--target-config",
         ex["archive-target.yaml"], "-q"], "archive -f golden.yaml")
    ex.disk("archive-disk.raw")
    run([harness.binary("init-metadata"), "-f", ex["archive-disk.yaml"]],
        "init-metadata archive-disk.yaml")
    proc, sock = serve(ex, ex["archive-disk.yaml"])
    try:
        got = read_back(ex, sock, "archive.dump")
    finally:
        stop(proc, "vhost-backend -f archive-disk.yaml")
    if got != want:
        raise AssertionError("archive-disk.yaml reads other data than golden.raw holds")


def test_every_example_is_used():
    used = {"disk.yaml", "encrypted-disk.yaml", "kek.yaml", "golden.yaml",
            "golden.listen.yaml", "remote-disk.yaml", "archive-target.yaml",
            "archive-disk.yaml", "README"}
    present = set(os.listdir(EXAMPLES))
    if present != used:
        raise AssertionError(f"examples not run by this test: {sorted(present - used)}; "
                             f"run but missing: {sorted(used - present)}")


def with_examples(test):
    def run_one():
        with harness.scratch_dir("ubiblk-examples-") as tmp:
            test(Examples(tmp))
    run_one.__name__ = test.__name__
    return run_one


if __name__ == "__main__":
    if not shutil.which("python3"):
        raise SystemExit("python3 missing")
    harness.main([
        test_every_example_is_used,
        with_examples(test_plain_disk),
        with_examples(test_encrypted_disk),
        with_examples(test_remote_and_archive_from_golden),
    ])
