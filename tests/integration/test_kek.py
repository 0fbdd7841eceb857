"""The KEK file through the real binaries: every loading and unwrapping
error of vhost-backend and xts, the permission check (a regular KEK file
others may access is refused; FIFOs and pipes are fine), and when
--unlink-kek deletes the file: after a KEK that parsed, whatever fails
later; never after a KEK that did not. Each failure is one error line and
exit 1 (usage: exit 2)."""

import os
import subprocess
import threading

import harness

KEY1_B64 = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8="
KEY2_B64 = "/ty6mHZUMhD+3LqYdlQyEP7cuph2VDIQ/ty6mHZUMhA="
KEY1_WRAPPED = "rpltzOClkMIifQ4wCaIU7Wt0yu2qWzzpz8KdPEyzoCNy/VSYqfHH1lClpTAe+cjF"
KEY2_WRAPPED = "UWaSMx9abz3dgvHP9l3rEpSLNRJVpMMWMD1iw7NMX9y5Fmq5WQOp4ALoz+3R4mXn"
KEY2_FLIPPED = KEY2_WRAPPED[:-1] + "m"  # the last bit of the tag flipped
GCM_KEY = "wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60="
GCM_IV = "UEt+wI+Ldq1UgQ/P"
GCM_AAD = "dm0zamdlejhfMA=="
KEK_YAML = f"method: aes256-gcm\nkey: {GCM_KEY}\ninit_vector: {GCM_IV}\nauth_data: {GCM_AAD}\n"
SHORT_SECRET = "AAAAAAAAAAAAAAAAAAAAAA=="  # 16 bytes: too short for a nonce||ct||tag form
HELLO_SECTOR = b"Hello, world!" + bytes(499)
SECTOR1_SHA256 = "91c62dbb453ea96dc229b90716b708d12732731ecf5f5937286f9f4b91e31d6a"


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("[ERROR]")]


class Setup:
    """A scratch folder with a 1 MiB disk, a plaintext file for xts and a
    function writing device configs with chosen encryption keys."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 1 << 20)
        self.socket = os.path.join(tmp, "vhost.sock")
        self.meta = os.path.join(tmp, "disk.meta")
        self.plain = os.path.join(tmp, "plain.raw")
        with open(self.plain, "wb") as f:
            f.write(HELLO_SECTOR * 2)
        self.out = os.path.join(tmp, "out.raw")

    def config(self, keys=(KEY1_WRAPPED, KEY2_WRAPPED), name="disk.yaml", text=None, **fields):
        path = os.path.join(self.tmp, name)
        if text is None:
            cfg = {"path": self.disk, "socket": self.socket}
            cfg.update(fields)
            harness.write_config(path, cfg)
            if keys:
                with open(path, "a") as f:
                    f.write("encryption_key:\n" + "".join(f'  - "{k}"\n' for k in keys))
        else:
            with open(path, "w") as f:
                f.write(text)
        return path

    def kek(self, text=KEK_YAML, mode=0o600, name="kek.yaml"):
        path = os.path.join(self.tmp, name)
        if os.path.exists(path):
            os.unlink(path)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def argv(self, tool, config, kek, *extra):
        argv = [harness.binary(tool), "-f", config]
        if kek is not None:
            argv += ["-k", kek]
        argv += list(extra)
        if tool == "xts":
            argv += ["--action", "encode", self.plain, self.out]
        return argv

    def run(self, tool, config, kek, *extra, stdin=None):
        """A tool that is expected to exit by itself: (exit code, stderr)."""
        proc = subprocess.run(self.argv(tool, config, kek, *extra), stdin=stdin,
                              capture_output=True, timeout=60)
        return proc.returncode, proc.stderr.decode(errors="replace")


def expect_failure(result, needle, what, code=1):
    status, err = result
    expect(status == code, f"{what}: exit {status} (want {code}): {err!r}")
    if code == 1:
        lines = error_lines(err)
        expect(len(lines) == 1, f"{what}: want one error line: {err!r}")
        expect(needle in lines[0], f"{what}: {needle!r} not in {lines[0]!r}")
    else:
        expect(needle in err, f"{what}: {needle!r} not in {err!r}")


# ---- every KEK error, through vhost-backend and xts ----

def kek_error_cases(s):
    """(name, KEK text or None for a missing file, config keys, message)."""
    return [
        ("missing file", None, None, "Failed to read KEK file {kek}: No such file or directory"),
        ("broken YAML", "method: [unclosed\n", None, "Error parsing KEK file {kek}: "),
        ("missing method", f"key: {GCM_KEY}\n", None,
         "Error parsing KEK file {kek}: missing field `method`"),
        ("unknown method", "method: AES256-GCM\n", None, "unknown variant `AES256-GCM`"),
        ("bad base64", "method: aes256-gcm\nkey: \"%%%\"\n", None, "Invalid symbol 37, offset 0."),
        ("key required", "method: aes256-gcm\n", None, "encryption_key[0]: Key is required"),
        ("IV required", f"method: aes256-gcm\nkey: {GCM_KEY}\nauth_data: {GCM_AAD}\n",
         (SHORT_SECRET, SHORT_SECRET), "encryption_key[0]: Initialization vector is required"),
        ("auth data required", f"method: aes256-gcm\nkey: {GCM_KEY}\ninit_vector: {GCM_IV}\n",
         None, "encryption_key[0]: Authentication data is required"),
        ("bad key length", f"method: aes256-gcm\nkey: AAAAAAAAAAAAAAAAAAAAAA==\n"
         f"init_vector: {GCM_IV}\nauth_data: {GCM_AAD}\n", None,
         "encryption_key[0]: Failed to initialize cipher: Invalid Length"),
        ("bad IV length", f"method: aes256-gcm\nkey: {GCM_KEY}\ninit_vector: AAAAAAAAAAAAAAA=\n"
         f"auth_data: {GCM_AAD}\n", None,
         "encryption_key[0]: Initialization vector must be exactly 12 bytes"),
        ("wrong tag (other AAD)", f"method: aes256-gcm\nkey: {GCM_KEY}\ninit_vector: {GCM_IV}\n"
         "auth_data: b3RoZXI=\n", None, "encryption_key[0]: Failed to decrypt data: aead::Error"),
        ("wrong tag (flipped byte)", KEK_YAML,
         (KEY1_WRAPPED, KEY2_FLIPPED),
         "encryption_key[1]: Failed to decrypt data: aead::Error"),
        ("no IV, 48-byte secrets", f"method: aes256-gcm\nkey: {GCM_KEY}\nauth_data: {GCM_AAD}\n",
         None, "encryption_key[0]: Failed to decrypt data: aead::Error"),
        ("method none, wrapped keys", "method: none\n", None,
         "encryption_key[0]: Key length must be exactly 32 bytes"),
    ]


def test_kek_errors():
    for tool in ("vhost-backend", "xts"):
        with harness.scratch_dir() as tmp:
            s = Setup(tmp)
            for name, text, keys, message in kek_error_cases(s):
                kek = os.path.join(tmp, "kek.yaml")
                if text is None:
                    if os.path.exists(kek):
                        os.unlink(kek)
                else:
                    s.kek(text)
                cfg = s.config(keys or (KEY1_WRAPPED, KEY2_WRAPPED))
                expect_failure(s.run(tool, cfg, kek), message.format(kek=kek),
                               f"{tool}: {name}")
                expect(not os.path.exists(s.socket), f"{tool}: {name}: socket created")
                expect(not os.path.exists(s.out), f"{tool}: {name}: output created")


def test_flipped_tag_string_is_valid_base64():
    """The flipped-tag case above must fail in GCM, not in base64."""
    import base64
    raw = base64.b64decode(KEY2_FLIPPED, validate=True)
    good = base64.b64decode(KEY2_WRAPPED)
    expect(len(raw) == 48 and raw[:-1] == good[:-1] and raw[-1] ^ good[-1] == 1,
           "bad test vector")


def test_good_kek_through_xts():
    """The example KEK of ubiblk's README unwraps the test keys: sector 1 of
    'Hello, world!' encrypts to the known digest; the KEK file stays (xts
    never unlinks)."""
    import hashlib
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        kek = s.kek()
        status, err = s.run("xts", s.config(), kek)
        expect(status == 0, f"xts with the example KEK: {err}")
        with open(s.out, "rb") as f:
            data = f.read()
        expect(hashlib.sha256(data[512:1024]).hexdigest() == SECTOR1_SHA256, "wrong keys")
        expect(os.path.exists(kek), "xts deleted the KEK")


# ---- the permission check ----

def test_mode_check():
    for tool in ("vhost-backend", "xts", "init-metadata", "dump-metadata"):
        with harness.scratch_dir() as tmp:
            s = Setup(tmp)
            cfg = s.config(keys=None, metadata_path=s.meta)
            for mode, word in ((0o644, "readable"), (0o640, "readable"), (0o604, "readable"),
                               (0o660, "readable"), (0o620, "accessible"),
                               (0o602, "accessible")):
                kek = s.kek(mode=mode)
                message = (f"KEK file {kek} is {word} by group or others (mode {mode:04o}); "
                           "chmod 600 it")
                for extra in ((), ("-u",)) if tool != "xts" else ((),):
                    expect_failure(s.run(tool, cfg, kek, *extra), message,
                                   f"{tool} {extra} mode {mode:o}")
                    expect(os.path.exists(kek), f"{tool}: a refused KEK was deleted")
                expect(not os.path.exists(s.meta), f"{tool}: went on after a refused KEK")


def _feed(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_fifo_and_pipe_are_accepted():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        cfg = s.config()
        fifo = os.path.join(tmp, "kek.fifo")
        os.mkfifo(fifo)
        os.chmod(fifo, 0o666)  # a FIFO's mode does not matter: it hands the key over once
        writer = threading.Thread(target=_feed, args=(fifo, KEK_YAML.encode()))
        writer.start()
        status, err = s.run("xts", cfg, fifo)
        writer.join(timeout=10)
        expect(status == 0, f"KEK from a FIFO: {err}")
        os.unlink(s.out)
        # /dev/stdin as a pipe.
        proc = subprocess.run(s.argv("xts", cfg, "/dev/stdin"), input=KEK_YAML.encode(),
                              capture_output=True, timeout=60)
        expect(proc.returncode == 0, f"KEK from a pipe: {proc.stderr.decode()}")
        # /dev/stdin redirected from a 0644 regular file: the descriptor is
        # what counts, and it is a regular file others can read.
        kek = s.kek(mode=0o644)
        with open(kek, "rb") as f:
            status, err = s.run("xts", cfg, "/dev/stdin", stdin=f)
        expect_failure((status, err), "is readable by group or others (mode 0644)",
                       "KEK from a 0644 file on stdin")


# ---- --unlink-kek ----

def start_backend(s, config, kek, *extra):
    """vhost-backend with -k kek -u: returns the harness process once it is
    listening (or has exited)."""
    proc = harness.Process(s.argv("vhost-backend", config, kek, *extra),
                           log_path=os.path.join(s.tmp, "backend.log"))
    harness.wait_until_accepting(s.socket, proc, 20, "vhost-backend to accept connections")
    return proc


def test_unlink_on_success():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        # An encrypted disk with keys wrapped under the KEK, metadata included.
        cfg = s.config(metadata_path=s.meta)
        for tool in ("init-metadata", "dump-metadata"):
            kek = s.kek()
            status, err = s.run(tool, cfg, kek, "--unlink-kek")
            expect(status == 0, f"{tool}: {err}")
            expect(not os.path.exists(kek), f"{tool} kept the KEK")
        kek = s.kek()
        proc = start_backend(s, cfg, kek, "-u")
        try:
            expect(proc.alive(), f"vhost-backend exited: {proc.log_text()}")
            expect(not os.path.exists(kek), "vhost-backend kept the KEK while serving")
        finally:
            expect(proc.stop() == 0, "vhost-backend did not stop cleanly")
            proc.close()
        # Without -u the file stays.
        kek = s.kek()
        status, err = s.run("dump-metadata", cfg, kek)
        expect(status == 0 and os.path.exists(kek), f"dump-metadata without -u: {err}")


def test_unlink_kek_failure_keeps_the_file():
    """A KEK that cannot be parsed is not deleted: the operator still needs it."""
    broken = [("broken YAML", "method: [unclosed\n", "Error parsing KEK file"),
              ("missing method", f"key: {GCM_KEY}\n", "missing field `method`"),
              ("unknown method", "method: gcm\n", "unknown variant `gcm`"),
              ("bad base64", "method: none\nkey: \"%%%\"\n", "Invalid symbol 37")]
    for tool in ("vhost-backend", "init-metadata", "dump-metadata"):
        with harness.scratch_dir() as tmp:
            s = Setup(tmp)
            cfg = s.config(keys=None, metadata_path=s.meta)
            for name, text, message in broken:
                kek = s.kek(text)
                expect_failure(s.run(tool, cfg, kek, "-u"), message, f"{tool}: {name}")
                expect(os.path.exists(kek), f"{tool}: {name}: KEK deleted")
            expect_failure(s.run(tool, cfg, os.path.join(tmp, "none.yaml"), "-u"),
                           "Failed to read KEK file", f"{tool}: missing KEK")
            expect(not os.path.exists(s.meta), f"{tool}: went on after a bad KEK")
            expect(not os.path.exists(s.socket), f"{tool}: went on after a bad KEK")


def test_unlink_after_a_good_kek_whatever_fails_later():
    """Once parsed, the KEK is deleted before the config is read: it is gone
    when the config is missing, broken, invalid, fails to unwrap, or when
    the tool fails after loading it."""
    for tool in ("vhost-backend", "init-metadata", "dump-metadata"):
        with harness.scratch_dir() as tmp:
            s = Setup(tmp)
            cases = [
                ("config missing", os.path.join(tmp, "missing.yaml"), KEK_YAML,
                 "Failed to read device config file"),
                ("config broken", s.config(text="path: [unclosed\n", name="broken.yaml"),
                 KEK_YAML, "Failed to parse device config YAML"),
                ("config invalid", s.config(keys=None, name="invalid.yaml", num_queues=0),
                 KEK_YAML, "num_queues"),
                ("unwrap fails", s.config(name="wrapped.yaml"), "method: aes256-gcm\n",
                 "Key is required"),
                ("wrong tag", s.config(name="wrapped.yaml"),
                 KEK_YAML.replace(GCM_AAD, "b3RoZXI="), "aead::Error"),
                # A valid config the tool then refuses: no socket for the
                # backend, no metadata_path for the metadata tools.
                ("the tool fails later", s.config(text=f"path: {s.disk}\n", name="later.yaml"),
                 KEK_YAML, "socket must be specified" if tool == "vhost-backend"
                 else "metadata_path is none"),
            ]
            for name, cfg, kek_text, needle in cases:
                kek = s.kek(kek_text)
                expect_failure(s.run(tool, cfg, kek, "-u"), needle, f"{tool}: {name}")
                expect(not os.path.exists(kek), f"{tool}: {name}: KEK kept")
                # Without -u it stays.
                kek = s.kek(kek_text)
                expect_failure(s.run(tool, cfg, kek), needle, f"{tool}: {name} without -u")
                expect(os.path.exists(kek), f"{tool}: {name}: KEK deleted without -u")


def test_unlink_usage():
    with harness.scratch_dir() as tmp:
        s = Setup(tmp)
        cfg = s.config(keys=None, metadata_path=s.meta)
        kek = s.kek()
        for tool in ("vhost-backend", "init-metadata", "dump-metadata"):
            for flag in ("-u", "--unlink-kek"):
                expect_failure(s.run(tool, cfg, None, flag), "--unlink-kek requires --kek",
                               f"{tool} {flag} without -k", code=2)
        # xts has no unlink option at all.
        for flag in ("-u", "--unlink-kek"):
            expect_failure(s.run("xts", cfg, kek, flag), "Usage: xts", f"xts {flag}", code=2)
        expect(os.path.exists(kek), "a usage error deleted the KEK")
        expect(not os.path.exists(s.meta) and not os.path.exists(s.out), "usage errors went on")


if __name__ == "__main__":
    harness.main([
        test_kek_errors,
        test_flipped_tag_string_is_valid_base64,
        test_good_kek_through_xts,
        test_mode_check,
        test_fifo_and_pipe_are_accepted,
        test_unlink_on_success,
        test_unlink_kek_failure_keeps_the_file,
        test_unlink_after_a_good_kek_whatever_fails_later,
        test_unlink_usage,
    ])
