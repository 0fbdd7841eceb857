"""End to end: our vhost-backend lazily fetching a 256 MiB random disk from
our remote-stripe-server, both sides with encrypted disks and KEK-wrapped
secrets.

- plain TCP and TLS-PSK: init-metadata from the server, a whole-disk read
  through ubiblk-bench equals the server's plaintext, autofetch reaches
  fetched == source;
- wrong credentials (identity shorter, longer, empty; another secret; PSK
  on one side only): the backend's start-up fails with a line naming the
  cause, and the server goes on serving a good client meanwhile;
- the server killed (SIGKILL) mid-hydration and restarted on the same port:
  the backend reconnects and finishes with no Failed stripe;
- the server stopped for good: fetches fail with a clear log line, reads of
  unfetched stripes fail with an I/O error in bounded time, nothing hangs.

Stripes are 1 MiB (the server's default without a metadata file)."""

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import harness

MiB = 1 << 20
SIZE = 256 * MiB
STRIPES = SIZE // MiB
IDENTITY = "vm-1234"
# A KEK without init_vector: every wrapped secret gets its own nonce.
KEK_YAML = ("method: aes256-gcm\nkey: wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\n"
            "auth_data: dm0tMTIzNA==\n")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def sha256_file(path, size=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size if size is not None else 1 << 62
        while left:
            chunk = f.read(min(left, 4 * MiB))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


class World:
    """The shared pieces: a KEK, the random plaintext image, the server's
    encrypted copy of it, a wrapped PSK secret and the server's configs."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.kek = os.path.join(tmp, "kek.yaml")
        with open(self.kek, "w") as f:
            f.write(KEK_YAML)
        os.chmod(self.kek, 0o600)
        self.image = harness.random_file(os.path.join(tmp, "image.raw"), SIZE, seed=10)
        self.image_sha = sha256_file(self.image)
        self.secret = base64.b64encode(os.urandom(32)).decode()
        self.wrapped_secret = self.wrap(self.secret)
        # The server's disk: the image encrypted with its own wrapped keys.
        self.server_disk = os.path.join(tmp, "server.raw")
        self.server_config = harness.write_config(
            os.path.join(tmp, "server.yaml"),
            {"path": self.server_disk, "encryption_key": self.wrapped_keys()})
        proc = subprocess.run([harness.binary("xts"), "-f", self.server_config, "-k", self.kek,
                               "--action", "encode", self.image, self.server_disk],
                              capture_output=True, timeout=300)
        expect(proc.returncode == 0, f"xts encode: {proc.stderr.decode(errors='replace')}")
        expect(sha256_file(self.server_disk) != self.image_sha, "the server disk is plaintext")

    def wrap(self, *secrets):
        out = subprocess.run([harness.binary("xts"), "-k", self.kek, "--wrap"],
                             input="".join(s + "\n" for s in secrets), capture_output=True,
                             text=True, timeout=60, check=True).stdout.split()
        expect(len(out) == len(secrets), f"xts --wrap printed {out}")
        return out[0] if len(secrets) == 1 else out

    def wrapped_keys(self):
        keys = [base64.b64encode(k).decode() for k in harness.random_xts_keys()]
        return [f'"{w}"' for w in self.wrap(*keys)]


class Server:
    """remote-stripe-server serving the world's encrypted disk on a fixed
    port (so a restart is found at the same address)."""

    def __init__(self, world, tls, port=None, name="server"):
        self.world = world
        self.port = port or harness.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.listen = os.path.join(world.tmp, f"{name}-listen.yaml")
        lines = [f'address: "{self.address}"']
        if tls:
            lines += [f'psk_identity: "{IDENTITY}"', f'psk_secret: "{world.wrapped_secret}"']
        with open(self.listen, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(world.tmp, f"{name}.log")
        self.process = None

    def start(self, timeout=30):
        self.process = harness.Process(
            [harness.binary("remote-stripe-server"), "-f", self.world.server_config,
             "--listen-config", self.listen, "-k", self.world.kek],
            log_path=self.log_path, env=dict(os.environ, UBIBLK_LOG="info"))
        harness.wait_for(lambda: f"listening on {self.address}" in self.process.log_text()
                         or not self.process.alive(), timeout, "remote-stripe-server to listen")
        expect(self.process.alive(), "the server exited at start:\n" + self.process.log_text())
        return self

    def alive(self):
        return self.process is not None and self.process.alive()

    def log(self):
        return self.process.log_text() if self.process else ""

    def close(self):
        if self.process:
            self.process.close()


def client(world, name, address, psk=None, encrypted=True, **fields):
    """A vhost-backend (not started) for an empty client disk fetching from
    `address`; psk is (identity, wrapped secret) or None."""
    tmp = os.path.join(world.tmp, name)
    os.makedirs(tmp, exist_ok=True)
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), SIZE)
    rpc = os.path.join(tmp, "rpc.sock")
    if encrypted:
        fields["encryption_key"] = world.wrapped_keys()
    be = harness.VhostBackend(tmp, disk, extra_args=["-k", world.kek],
                              metadata_path=os.path.join(tmp, "disk.meta"),
                              rpc_socket_path=rpc, copy_on_read=True, num_queues=2,
                              queue_size=128, **fields)
    set_source(be, address, psk)
    return be, disk, rpc


def set_source(be, address, psk, connections=None):
    """Replace the config's stripe_source line."""
    with open(be.config) as f:
        lines = [x for x in f.read().splitlines() if not x.startswith("stripe_source:")]
    source = f'source: "remote", address: "{address}"'
    if psk:
        source += f', psk_identity: "{psk[0]}", psk_secret: "{psk[1]}"'
    if connections:
        source += f", connections: {connections}"
    lines.append(f"stripe_source: {{{source}}}")
    with open(be.config, "w") as f:
        f.write("\n".join(lines) + "\n")


def init_metadata(world, be):
    proc = harness.init_metadata(be.config, "-k", world.kek, "-v")
    out = proc.stdout.decode()
    expect(f"{STRIPES} stripes of 1048576 bytes, {STRIPES} with a source" in out, out)


def bench(be, *args, timeout=600):
    return harness.run_bench(["--socket", be.socket] + list(args), timeout=timeout)


def read_whole_disk(world, be, name="dump.raw"):
    """Read the whole device through ubiblk-bench; its sha256."""
    out = os.path.join(os.path.dirname(be.config), name)
    code, _, err = bench(be, "--mode", "read", "--bs", "1m", "--iodepth", "4", "--queues", "2",
                         "--dump", out)
    expect(code == 0, f"whole-disk read failed: {err}")
    digest = sha256_file(out)
    os.unlink(out)
    return digest


FAILED_STRIPE = re.compile(r"fetch: stripe \d+ failed .* after \d+ retries")


def hydrated(be, rpc):
    """fetched == source; a stripe marked Failed ends the wait at once."""
    failed = FAILED_STRIPE.search(be.process.log_text())
    expect(not failed, f"a stripe failed: {failed and failed.group(0)}")
    s = harness.lazy_status(rpc)
    return s["fetched"] == s["source"] == STRIPES


def finish_backend(be):
    status = be.stop()
    expect(status == 0, f"vhost-backend exit status {status}:\n{be.process.log_text()[-3000:]}")
    log = be.process.log_text()
    expect(not FAILED_STRIPE.search(log),
           f"a stripe failed:\n{log[-3000:]}")


def stop_server(server):
    status = server.process.stop()
    expect(status == 0, f"server exit status {status}:\n{server.log()[-3000:]}")


def test_plain_tcp(world):
    """Plain TCP: lazy reads of the whole disk equal the plaintext; the
    server warns that it serves without PSK."""
    server = Server(world, tls=False, name="plain").start()
    try:
        expect("NO PSK CONFIGURED" in server.log(), server.log())
        be, disk, rpc = client(world, "plain", server.address)
        init_metadata(world, be)
        with be:
            expect(read_whole_disk(world, be) == world.image_sha, "the disk differs")
            s = harness.lazy_status(rpc)
            expect(s["fetched"] == s["source"] == STRIPES, s)
            finish_backend(be)
        # Restarted, the hydrated disk is served without the server.
        stop_server(server)
        with be:
            expect(read_whole_disk(world, be, "again.raw") == world.image_sha, "after restart")
            finish_backend(be)
    finally:
        server.close()


def test_tls_credentials_and_server_gone(world):
    """TLS-PSK: a good backend reads part of the disk; backends with wrong
    credentials fail at start-up with a line naming the cause while the
    server goes on serving the good one; then the server stops for good and
    reads of unfetched stripes fail in bounded time."""
    server = Server(world, tls=True, name="tls").start()
    plain = Server(world, tls=False, name="plain-peer").start()
    good_psk = (IDENTITY, world.wrapped_secret)
    try:
        be, _, rpc = client(world, "tls-good", server.address, good_psk)
        init_metadata(world, be)
        with be:
            code, _, err = bench(be, "--mode", "read", "--bs", "1m", "--size", "16m")
            expect(code == 0, err)
            cases = [
                ("shorter identity", server.address, ("vm-123", world.wrapped_secret),
                 "TLS handshake failed"),
                ("longer identity", server.address, ("vm-12345", world.wrapped_secret),
                 "TLS handshake failed"),
                ("empty identity", server.address, ("", world.wrapped_secret),
                 "PSK identity must not be empty"),
                ("other secret", server.address,
                 (IDENTITY, world.wrap(base64.b64encode(os.urandom(32)).decode())),
                 "TLS handshake failed"),
                ("no PSK on the client", server.address, None,
                 "the server closed the connection without answering METADATA (a "
                 "server with TLS-PSK does so to a client without psk_identity"),
                ("no PSK on the server", plain.address, good_psk, "TLS handshake"),
            ]
            # One metadata file built with the right credentials serves every
            # bad client: the backend must connect at start.
            bad, _, _ = client(world, "tls-bad", server.address, good_psk, encrypted=False)
            init_metadata(world, bad)
            for what, address, psk, text in cases:
                set_source(bad, address, psk)
                start = time.monotonic()
                try:
                    bad.start()
                    raise AssertionError(f"{what}: the backend started")
                except RuntimeError as e:
                    msg = str(e)
                finally:
                    bad.process.close()
                took = time.monotonic() - start
                expect(took < 30, f"{what}: the failure took {took:.0f}s")
                lines = [x for x in msg.splitlines() if "[ERROR]" in x and text in x]
                expect(lines, f"{what}: no error line with {text!r}:\n{msg}")
                expect(world.secret not in msg and world.wrapped_secret not in msg,
                       f"{what}: a secret in the log")
                expect(server.alive() and plain.alive(), f"{what}: a server died")
            srv_log = server.log()
            expect("unknown_psk_identity" in srv_log or "handshake" in srv_log, srv_log[-2000:])
            expect(world.secret not in srv_log, "the secret in the server's log")
            # The good backend still reads from the server: the next 16 MiB.
            code, _, err = bench(be, "--mode", "read", "--bs", "1m", "--offset", "16m",
                                 "--size", "16m")
            expect(code == 0, f"the good client after the bad ones: {err}")
            expect(harness.lazy_status(rpc)["fetched"] == 32, harness.lazy_status(rpc))

            # The server stops for good: unfetched stripes fail, fetched ones
            # are still read, nothing hangs.
            stop_server(server)
            start = time.monotonic()
            code, _, err = bench(be, "--mode", "read", "--bs", "64k", "--offset", "200m",
                                 "--size", "1m", "--timeout", "120s", timeout=180)
            took = time.monotonic() - start
            expect(code != 0, "a read of an unfetched stripe must fail")
            expect(took < 60, f"the failure took {took:.0f}s")
            log = be.process.log_text()
            expect(f"remote {server.address}" in log, log[-3000:])
            expect("fetch: stripe 200 failed" in log, log[-3000:])
            code, _, err = bench(be, "--mode", "read", "--bs", "1m", "--size", "32m")
            expect(code == 0, f"fetched stripes after the server left: {err}")
            expect(be.stop() == 0, "vhost-backend exit status")
        stop_server(plain)
    finally:
        server.close()
        plain.close()


def test_tls_autofetch_with_server_killed(world):
    """TLS-PSK and autofetch: the server is killed (SIGKILL) mid-hydration
    and restarted on the same port; the backend reconnects and finishes
    with no Failed stripe, and the disk equals the plaintext."""
    server = Server(world, tls=True, name="kill").start()
    psk = (IDENTITY, world.wrapped_secret)
    try:
        be, _, rpc = client(world, "kill", server.address, psk, autofetch=True)
        init_metadata(world, be)
        with be:
            harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] >= 1, 60,
                             "hydration to start")
            # Freeze the server first, so the kill lands mid-hydration however
            # fast the loopback is.
            os.kill(server.process.pid, signal.SIGSTOP)
            s = harness.lazy_status(rpc)
            expect(s["fetched"] < STRIPES, f"hydration finished before the kill: {s}")
            server.process.kill()
            time.sleep(0.5)
            server.start()
            harness.wait_for(lambda: hydrated(be, rpc), 120, "hydration to finish after the restart")
            log = be.process.log_text()
            expect("reconnect" in log, log[-3000:])
            expect(read_whole_disk(world, be) == world.image_sha, "the disk differs")
            finish_backend(be)
        stop_server(server)
    finally:
        server.close()


def bound(test, world):
    def run():
        test(world)
    run.__name__ = test.__name__
    return run


def test_server_restarted_while_idle(world):
    """Every pooled connection idle when the server is killed and restarted:
    the next fetch must not be spent on connections the server already
    closed (each would count as a failed attempt, and the stripe would be
    marked Failed with a healthy server back up)."""
    server = Server(world, tls=False, name="idle").start()
    try:
        be, _, rpc = client(world, "idle", server.address, encrypted=False)
        set_source(be, server.address, None, connections=8)
        init_metadata(world, be)
        with be:
            code, _, err = bench(be, "--mode", "read", "--bs", "1m", "--size", "1m")
            expect(code == 0, err)
            server.process.kill()
            server.start()
            code, _, err = bench(be, "--mode", "read", "--bs", "1m", "--offset", "100m",
                                 "--size", "1m", "--timeout", "60s", timeout=120)
            expect(code == 0, f"a read after the restart failed: {err}\n"
                   + be.process.log_text()[-3000:])
            expect(harness.lazy_status(rpc)["fetched"] == 2, harness.lazy_status(rpc))
            finish_backend(be)
        stop_server(server)
    finally:
        server.close()


TESTS = [test_plain_tcp, test_tls_credentials_and_server_gone,
         test_tls_autofetch_with_server_killed, test_server_restarted_while_idle]


def main():
    """Runs every test, or those named on the command line."""
    with harness.scratch_dir("ubiblk-remote-e2e-") as tmp:
        world = World(tmp)
        chosen = [t for t in TESTS if not sys.argv[1:] or t.__name__ in sys.argv[1:]]
        harness.main([bound(t, world) for t in chosen])


if __name__ == "__main__":
    main()
