#!/usr/bin/env python3
"""A real Linux guest (QEMU, TCG) on vhost-backend whose disk image lives
only behind remote-stripe-server, over TLS-PSK (the secret KEK-wrapped on
both sides). The guest checksums the device, writes to it, and after a
backend restart checksums it again.

    host   a random 40 MiB image served by remote-stripe-server (TLS-PSK);
           a 64 MiB sparse client disk; init-metadata from the server;
           vhost-backend, copy_on_read, no autofetch
    boot 1 /dev/vda's sha256 (O_DIRECT, so every stripe is fetched from the
           server on first touch) equals image + zeroes; writes a 4 MiB
           pattern from mid-stripe 20 (O_DIRECT), reads it back
    host   SIGTERM (exit 0); vhost-backend again on the same files with
           autofetch; the RPC status reaches fetched == source
    boot 2 the written range's sha256 is the pattern's, the whole disk's
           sha256 is image + pattern + zeroes
    host   SIGTERM both (exit 0); the client disk file is image + pattern +
           zeroes

The backend has no vhost-user reconnect (no inflight tracking), so the
restart happens between two boots, as in test_guest_lazy.py. Each check is
one line, then "N passed, N failed". --keep keeps the temp folder. Set
UBIBLK_GUEST_TIMEOUT (seconds per boot, default 300) for slow builds."""

import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import run_guest  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
STRIPE = MiB                         # the server's stripes without a metadata file
DISK_BYTES = 64 * MiB
IMAGE_BYTES = 40 * MiB
SOURCE_STRIPES = IMAGE_BYTES // STRIPE
WRITE_OFF = 20 * MiB + 128 * KiB     # mid-stripe 20
WRITE_LEN = 4 * MiB
NUM_QUEUES = 2
QUEUE_SIZE = 128
HYDRATE_TIMEOUT = 60
TCG_THREAD = "single"
IDENTITY = "vm-guest"
KEK_YAML = ("method: aes256-gcm\nkey: wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\n"
            "auth_data: dm0tZ3Vlc3Q=\n")

GUEST_COMMON = r'''
DEV=/dev/vda
DISK=@DISK_BYTES@
OFF=@WRITE_OFF@
LEN=@WRITE_LEN@

device() {
	wait_for_dev $DEV 20
	sectors=$(cat /sys/block/vda/size)
	echo "vda: $sectors sectors"
	[ $((sectors * 512)) -eq "$DISK" ] || { echo "size is $((sectors * 512)), want $DISK"; exit 1; }
}

disk_sha256() {
	got=$(dd if=$DEV bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
	echo "sha256 of the disk: $got, want @DISK_SHA256@"
	[ "$got" = "@DISK_SHA256@" ]
}
'''

GUEST1 = r'''
write_pattern() {
	cp '@PATTERN@' /tmp/pattern
	sha=$(sha256sum </tmp/pattern | cut -d' ' -f1)
	value written_sha256 "$sha"
	dd if=/tmp/pattern of=$DEV bs=1M seek=$OFF oflag=direct,seek_bytes conv=notrunc,fsync status=none
	sync
	got=$(dd if=$DEV bs=1M skip=$OFF count=$LEN iflag=direct,skip_bytes,count_bytes status=none |
		sha256sum | cut -d' ' -f1)
	echo "wrote $LEN bytes at $OFF, sha256 $sha; read back $got"
	[ "$got" = "$sha" ]
}

check device device
check disk-sha256 disk_sha256
check write-pattern write_pattern
'''

GUEST2 = r'''
written_sha256() {
	got=$(dd if=$DEV bs=1M skip=$OFF count=$LEN iflag=direct,skip_bytes,count_bytes status=none |
		sha256sum | cut -d' ' -f1)
	echo "sha256 of [$OFF, $((OFF + LEN))): $got, written: @WRITTEN_SHA256@"
	[ "$got" = "@WRITTEN_SHA256@" ]
}

check device device
check written-sha256 written_sha256
check disk-sha256 disk_sha256
'''

GUEST1_CHECKS = ["device", "disk-sha256", "write-pattern"]
GUEST2_CHECKS = ["device", "written-sha256", "disk-sha256"]


class Session:
    """Runs the scenario once; the test functions assert on what it
    recorded. Every process is stopped by pid whatever happens."""

    def __init__(self, keep):
        self.keep = keep
        self.error = None
        self.timings = {}
        self.g1 = self.g2 = None
        self.tails = {}
        self.pattern_sha = None
        self.b1, self.b2 = {}, {}
        self.hydrated = None
        self.server_status = None
        self.server_log = ""
        self.disk_mismatch = None
        self.backend_log = ""

    def run(self):
        timeout = int(os.environ.get("UBIBLK_GUEST_TIMEOUT", "300"))
        t = time.monotonic()
        kernel, initrd = run_guest.prepare()
        self.timings["prepare"] = time.monotonic() - t
        scratch, tmp = run_guest.scratch_dir("ubiblk-guest-remote-", harness.BUILD_DIR,
                                             keep=self.keep)
        try:
            self._scenario(tmp, kernel, initrd, timeout)
        except Exception:  # noqa: BLE001 - reported by the first test
            self.error = traceback.format_exc()
        finally:
            log = os.path.join(tmp, "vhost-backend.log")
            if os.path.exists(log):
                with open(log, "rb") as f:
                    self.backend_log = f.read().decode(errors="replace")
            if scratch:
                scratch.cleanup()
            else:
                print(f"kept {tmp}", flush=True)

    def _wrap(self, kek, secret):
        return subprocess.run([harness.binary("xts"), "-k", kek, "--wrap"], input=secret + "\n",
                              capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    def _backend(self, tmp, disk, meta, rpc, kek, address, wrapped, **fields):
        be = harness.VhostBackend(tmp, disk, extra_args=["-k", kek], metadata_path=meta,
                                  rpc_socket_path=rpc, copy_on_read=True,
                                  num_queues=NUM_QUEUES, queue_size=QUEUE_SIZE, **fields)
        with open(be.config, "a") as f:
            f.write(f'stripe_source: {{source: "remote", address: "{address}", '
                    f'psk_identity: "{IDENTITY}", psk_secret: "{wrapped}"}}\n')
        return be

    def _guest(self, tmp, sock, body, tag, kernel, initrd, timeout):
        t = time.monotonic()
        result = run_guest.run_guest(tmp, [sock], body, timeout=timeout, kernel=kernel,
                                     initrd=initrd, num_queues=NUM_QUEUES,
                                     queue_size=QUEUE_SIZE, tag=tag, tcg_thread=TCG_THREAD)
        self.timings[f"boot {tag}"] = time.monotonic() - t
        self.tails[tag] = result.console_tail(60)
        return result

    def _stop(self, be, record):
        record["alive_after_guest"] = be.process.alive()
        try:
            record["status"] = be.stop()
        except TimeoutError as e:
            record["stop_error"] = str(e)

    def _scenario(self, tmp, kernel, initrd, timeout):
        t = time.monotonic()
        kek = os.path.join(tmp, "kek.yaml")
        with open(kek, "w") as f:
            f.write(KEK_YAML)
        os.chmod(kek, 0o600)
        # The image lives only in the server's folder: the guest never sees it.
        server_dir = os.path.join(tmp, "server")
        os.makedirs(server_dir)
        image = harness.random_file(os.path.join(server_dir, "image.raw"), IMAGE_BYTES,
                                    seed=2024)
        pattern = harness.random_file(os.path.join(tmp, "pattern.raw"), WRITE_LEN, seed=7)
        with open(image, "rb") as f:
            image_data = f.read()
        with open(pattern, "rb") as f:
            pattern_data = f.read()
        before = image_data + bytes(DISK_BYTES - IMAGE_BYTES)
        after = bytearray(before)
        after[WRITE_OFF:WRITE_OFF + WRITE_LEN] = pattern_data
        after = bytes(after)
        sha_before = hashlib.sha256(before).hexdigest()
        sha_after = hashlib.sha256(after).hexdigest()
        self.pattern_sha = hashlib.sha256(pattern_data).hexdigest()
        del image_data, pattern_data, before

        secret = base64.b64encode(os.urandom(32)).decode()
        address = f"127.0.0.1:{harness.free_port()}"
        device = harness.write_config(os.path.join(server_dir, "image.yaml"), {"path": image})
        listen = os.path.join(server_dir, "listen.yaml")
        with open(listen, "w") as f:
            f.write(f'address: "{address}"\npsk_identity: "{IDENTITY}"\n'
                    f'psk_secret: "{self._wrap(kek, secret)}"\n')
        server = harness.Process([harness.binary("remote-stripe-server"), "-f", device,
                                  "--listen-config", listen, "-k", kek],
                                 log_path=os.path.join(server_dir, "server.log"),
                                 env=dict(os.environ, UBIBLK_LOG="info"))
        try:
            harness.wait_for(lambda: f"listening on {address}" in server.log_text()
                             or not server.alive(), 30, "remote-stripe-server to listen")
            if not server.alive():
                raise RuntimeError("remote-stripe-server exited:\n" + server.log_text())
            wrapped = self._wrap(kek, secret)  # the client host wraps its own copy
            disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_BYTES)
            meta = os.path.join(tmp, "disk.meta")
            rpc = os.path.join(tmp, "rpc.sock")
            be = self._backend(tmp, disk, meta, rpc, kek, address, wrapped)
            harness.init_metadata(be.config, "-k", kek)
            self.timings["host setup"] = time.monotonic() - t
            common = {"DISK_BYTES": DISK_BYTES, "WRITE_OFF": WRITE_OFF, "WRITE_LEN": WRITE_LEN}

            with be:
                body = run_guest.substitute(GUEST_COMMON + GUEST1, dict(
                    common, DISK_SHA256=sha_before, PATTERN=pattern))
                self.g1 = self._guest(tmp, be.socket, body, "1", kernel, initrd, timeout)
                self._stop(be, self.b1)

            be = self._backend(tmp, disk, meta, rpc, kek, address, wrapped, autofetch=True)
            with be:
                body = run_guest.substitute(GUEST_COMMON + GUEST2, dict(
                    common, DISK_SHA256=sha_after, WRITTEN_SHA256=self.pattern_sha))
                self.g2 = self._guest(tmp, be.socket, body, "2", kernel, initrd, timeout)
                harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] == SOURCE_STRIPES
                                 or not be.process.alive(), HYDRATE_TIMEOUT,
                                 "fetched == source")
                self.hydrated = harness.lazy_status(rpc)
                self._stop(be, self.b2)
            self.server_status = server.stop()
        finally:
            self.server_log = server.log_text()
            server.close()
        with open(disk, "rb") as f:
            data = f.read()
        if data == after:
            self.disk_mismatch = ""
        else:
            bad = sorted({i // STRIPE for i in range(0, min(len(data), len(after)), 4096)
                          if data[i:i + 4096] != after[i:i + 4096]})
            self.disk_mismatch = f"{len(data)} bytes; stripes differing: {harness.stripes_text(bad)}"


def make_tests(s):
    def ran(what):
        if s.error:
            raise AssertionError(f"not reached: the scenario broke ({s.error.splitlines()[-1]})")
        raise AssertionError(f"{what}: not reached")

    def scenario_runs():
        s.run()
        print("timings: " + "; ".join(f"{k} {v:.1f}s" for k, v in s.timings.items()), flush=True)
        if s.error:
            raise AssertionError("\n" + s.error + "--- backend log tail ---\n" +
                                 "\n".join(s.backend_log.splitlines()[-20:]) +
                                 "\n--- server log tail ---\n" +
                                 "\n".join(s.server_log.splitlines()[-20:]))

    def guest_runs(tag):
        def test():
            result = s.g1 if tag == "1" else s.g2
            if result is None:
                ran(f"boot {tag}")
            problems = result.failures()
            if problems:
                raise AssertionError("; ".join(problems) + f"\n--- console-{tag} tail ---\n" +
                                     s.tails.get(tag, "") + "\n--- backend log tail ---\n" +
                                     "\n".join(s.backend_log.splitlines()[-20:]))
        test.__name__ = f"guest{tag}_runs"
        return test

    def guest_check(tag, name):
        def test():
            run_guest.assert_check_passed(s.g1 if tag == "1" else s.g2, name)
        test.__name__ = f"guest{tag}_" + name.replace("-", "_")
        return test

    def guest1_wrote_the_pattern():
        if s.g1 is None:
            ran("boot 1")
        got = s.g1.values.get("written_sha256")
        if got != s.pattern_sha:
            raise AssertionError(f"guest wrote sha256 {got}, the pattern is {s.pattern_sha}")

    def backend_stops_cleanly(tag):
        def test():
            record = s.b1 if tag == "1" else s.b2
            if not record:
                ran(f"backend {tag}")
            if not record.get("alive_after_guest"):
                raise AssertionError("backend died:\n" + s.backend_log[-3000:])
            if record.get("stop_error") or record.get("status") != 0:
                raise AssertionError(f"{record}:\n" + s.backend_log[-3000:])
        test.__name__ = f"backend{tag}_stops_cleanly_on_sigterm"
        return test

    def restarted_backend_hydrates_over_tls():
        if s.hydrated is None:
            ran("hydration")
        print(f"     status after boot 2: {s.hydrated}", flush=True)
        if s.hydrated.get("fetched") != SOURCE_STRIPES or s.hydrated.get("source") != SOURCE_STRIPES:
            raise AssertionError(f"status {s.hydrated}")
        if re.search(r"fetch: stripe \d+ failed .* after \d+ retries", s.backend_log):
            raise AssertionError("a fetch failed:\n" + s.backend_log[-3000:])

    def server_served_tls_and_stops_cleanly():
        if s.server_status is None:
            ran("server stop")
        if f'identity "{IDENTITY}"' not in s.server_log:
            raise AssertionError("no TLS-PSK session in the server log:\n" + s.server_log[-2000:])
        if s.server_status != 0:
            raise AssertionError(f"server exit status {s.server_status}")

    def client_disk_is_image_plus_write():
        if s.disk_mismatch is None:
            ran("disk comparison")
        if s.disk_mismatch:
            raise AssertionError(s.disk_mismatch)

    return ([scenario_runs, guest_runs("1")] + [guest_check("1", n) for n in GUEST1_CHECKS] +
            [guest1_wrote_the_pattern, backend_stops_cleanly("1"), guest_runs("2")] +
            [guest_check("2", n) for n in GUEST2_CHECKS] +
            [restarted_backend_hydrates_over_tls, backend_stops_cleanly("2"),
             server_served_tls_and_stops_cleanly, client_disk_is_image_plus_write])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    harness.main(make_tests(Session(args.keep)))


if __name__ == "__main__":
    main()
