"""The xts tool end to end: the worked test vectors (the test keys on a
'Hello, world!' sector, below), encode/decode round trips with --start/--len
and their asymmetric layouts, every error message and exit code, usage
errors, a KEK-wrapped config
giving the same bytes as the plain one, --wrap, progress on a terminal, a
disk written through an encrypted vhost-backend decoding to what the front
end read back, and the encrypted metadata file decoding to its header."""

import hashlib
import os
import pty
import random
import re
import select
import subprocess

import harness

SECTOR = 512
KEY1_B64 = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8="  # 0123456789abcdef x4
KEY2_B64 = "/ty6mHZUMhD+3LqYdlQyEP7cuph2VDIQ/ty6mHZUMhA="  # fedcba9876543210 x4
KEY1_WRAPPED = "rpltzOClkMIifQ4wCaIU7Wt0yu2qWzzpz8KdPEyzoCNy/VSYqfHH1lClpTAe+cjF"
KEY2_WRAPPED = "UWaSMx9abz3dgvHP9l3rEpSLNRJVpMMWMD1iw7NMX9y5Fmq5WQOp4ALoz+3R4mXn"
KEK_YAML = ('method: aes256-gcm\n'
            'key: "wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60="\n'
            'init_vector: "UEt+wI+Ldq1UgQ/P"\n'
            'auth_data: "dm0zamdlejhfMA=="\n')
HELLO_SECTOR = b"Hello, world!" + bytes(499)
# Worked vectors for the test keys (key1 = 0123456789abcdef, key2 =
# fedcba9876543210, each repeated 4 times), computed with an independent IEEE
# 1619 implementation, OpenSSL's EVP_aes_256_xts and isa-l_crypto, which
# agree: sector -> (ciphertext bytes 0-31, bytes 480-511, SHA-256 of the sector)
VECTORS = {
    0: ("26d9489bc33c42058b19157456f543cd5849577c85a0524fe488d3b202903a33",
        "cd5e5d599646cf47af889d0bcd172486cd7408bbcfe5dedeee6339120f54eafc",
        "0f1e9409adc7673b1130ddd27298918875255456429bbe8f1b504c9ffebeaff0"),
    1: ("3c06a23053c648a726af8c5e3ae79b5c7f947fc8f0ac4365b8623a3384dee455",
        "b78251f8e6b4eeeade57a4399e8375a9e792f9ab5da2013c180e7942397b3114",
        "91c62dbb453ea96dc229b90716b708d12732731ecf5f5937286f9f4b91e31d6a"),
}
# Must NOT be sector 1's first block: plain64 tweak layout, swapped keys.
WRONG_SECTOR1 = ("5d512fcb08d7ea8dc81e808d5a27edb0", "1125502a4c84b4c40cc39a47e20f0620")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def xts(*args, stdin=None, cwd=None, engine=None):
    """Runs xts (with UBIBLK_XTS_ENGINE=engine when given); returns (exit
    code, stdout bytes, stderr text)."""
    env = dict(os.environ)
    env.pop("UBIBLK_XTS_ENGINE", None)
    if engine is not None:
        env["UBIBLK_XTS_ENGINE"] = engine
    proc = subprocess.run([harness.binary("xts")] + [str(a) for a in args], input=stdin,
                          capture_output=True, timeout=120, cwd=cwd, env=env)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("[ERROR]")]


def expect_ok(result, what):
    code, out, err = result
    expect(code == 0, f"{what}: exit {code}, stderr: {err!r}")
    expect(not error_lines(err), f"{what}: errors on success: {err!r}")
    return out


def expect_error(result, needle, what):
    """Exit 1 with exactly one error line containing needle."""
    code, _, err = result
    expect(code == 1, f"{what}: exit {code} (want 1), stderr: {err!r}")
    lines = error_lines(err)
    expect(len(lines) == 1, f"{what}: want one error line, got {err!r}")
    expect(needle in lines[0], f"{what}: {needle!r} not in {lines[0]!r}")


def expect_usage(result, needle, what):
    code, out, err = result
    expect(code == 2, f"{what}: exit {code} (want 2), stderr: {err!r}")
    expect(needle in err and "Usage: xts" in err, f"{what}: stderr {err!r}")
    expect(out == b"", f"{what}: stdout {out!r}")


def write_file(path, data, mode=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def config(tmp, keys=(KEY1_B64, KEY2_B64), name="xts.yaml", extra=""):
    path = os.path.join(tmp, name)
    text = 'path: "disk.raw"\n' + extra
    if keys is not None:
        text += "encryption_key:\n" + "".join(f'  - "{k}"\n' for k in keys)
    with open(path, "w") as f:
        f.write(text)
    return path


def kek_file(tmp, text=KEK_YAML, name="kek.yaml"):
    return write_file(os.path.join(tmp, name), text.encode(), mode=0o600)


def sectors(data, first, count):
    return data[first * SECTOR:(first + count) * SECTOR]


# ---- the spec's vectors ----

def test_spec_vectors():
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        plain = write_file(os.path.join(tmp, "plain.raw"), HELLO_SECTOR * 2)
        enc = os.path.join(tmp, "enc.raw")
        expect_ok(xts("-f", cfg, "--action", "encode", plain, enc), "encode")
        data = read_file(enc)
        expect(len(data) == 2 * SECTOR, f"encoded size {len(data)}")
        for sector, (head, tail, digest) in VECTORS.items():
            s = sectors(data, sector, 1)
            expect(s[:32].hex() == head, f"sector {sector} bytes 0-31: {s[:32].hex()}")
            expect(s[480:].hex() == tail, f"sector {sector} bytes 480-511: {s[480:].hex()}")
            expect(hashlib.sha256(s).hexdigest() == digest, f"sector {sector} SHA-256")
        for wrong in WRONG_SECTOR1:
            expect(sectors(data, 1, 1)[:16].hex() != wrong, "sector 1 uses a wrong layout")
        dec = os.path.join(tmp, "dec.raw")
        expect_ok(xts("-f", cfg, enc, dec), "decode (the default action)")
        expect(read_file(dec) == HELLO_SECTOR * 2, "decode did not give the plaintext back")


def test_wrapped_config_gives_the_same_bytes():
    """The config with the test keys wrapped under the README's example KEK
    (mode 0600) gives output byte-identical to the plain-base64 config's."""
    with harness.scratch_dir() as tmp:
        plain_cfg = config(tmp)
        wrapped_cfg = config(tmp, (KEY1_WRAPPED, KEY2_WRAPPED), name="wrapped.yaml")
        kek = kek_file(tmp)
        data = random.Random(7).randbytes(40 * SECTOR)
        plain = write_file(os.path.join(tmp, "plain.raw"), data)
        out_plain, out_wrapped = (os.path.join(tmp, n) for n in ("a.raw", "b.raw"))
        expect_ok(xts("-f", plain_cfg, "--action", "encode", "--start", "3", plain, out_plain),
                  "encode, plain config")
        expect_ok(xts("-f", wrapped_cfg, "-k", kek, "--action", "encode", "--start", "3", plain,
                      out_wrapped), "encode, wrapped config")
        expect(read_file(out_plain) == read_file(out_wrapped), "wrapped keys encode differently")
        for cfg, extra in ((plain_cfg, []), (wrapped_cfg, ["--kek", kek])):
            dec = os.path.join(tmp, "dec.raw")
            expect_ok(xts("-f", cfg, *extra, out_plain, dec), f"decode with {cfg}")
            expect(sectors(read_file(dec), 3, 37) == sectors(data, 3, 37),
                   "decode with the wrapped config")
        expect(os.path.exists(kek), "xts deleted the KEK file")
        # Without the KEK the wrapped strings are 48 bytes, not keys.
        expect_error(xts("-f", wrapped_cfg, out_plain, os.path.join(tmp, "x.raw")),
                     "Key length must be exactly 32 bytes", "wrapped config without --kek")


# ---- layouts and ranges ----

def test_round_trip_and_layouts():
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        total = 3000  # three chunks of 1024 sectors, the last one partial
        data = random.Random(1).randbytes(total * SECTOR)
        plain = write_file(os.path.join(tmp, "plain.raw"), data)
        full = os.path.join(tmp, "full.enc")
        expect_ok(xts("-f", cfg, "--action", "encode", plain, full), "encode all")
        enc = read_file(full)
        expect(len(enc) == len(data), "encode all: size")
        # Nothing of the plaintext is left, sector by sector.
        for s in range(0, total, 97):
            expect(sectors(enc, s, 1) != sectors(data, s, 1), f"sector {s} not encrypted")
        dec = os.path.join(tmp, "full.dec")
        expect_ok(xts("-f", cfg, full, dec), "decode all")
        expect(read_file(dec) == data, "decode all: not the plaintext")

        # encode --start/--len: (start+len)*512 bytes, zeros before start,
        # each sector at its own offset with its own tweak.
        part = os.path.join(tmp, "part.enc")
        expect_ok(xts("-f", cfg, "--action", "encode", "--start", 1000, "--len", 1500, plain,
                      part), "encode a range")
        got = read_file(part)
        expect(len(got) == 2500 * SECTOR, f"encode range: size {len(got)}")
        expect(got[:1000 * SECTOR] == bytes(1000 * SECTOR), "encode range: not zeros before")
        expect(sectors(got, 1000, 1500) == sectors(enc, 1000, 1500),
               "encode range differs from the same sectors of a full encode")

        # decode --start/--len: packed from offset 0.
        expect_ok(xts("-f", cfg, "--start", 1000, "--len", 1500, full, dec), "decode a range")
        expect(read_file(dec) == sectors(data, 1000, 1500), "decode range: not packed plaintext")
        # The tweak is the absolute sector: decoding the packed range as if
        # it started at 0 gives garbage.
        expect_ok(xts("-f", cfg, "--len", 1, "--start", 0, part, dec), "decode sector 0")
        expect(read_file(dec) != bytes(SECTOR), "decrypting zeros gave zeros")

        # --len defaults to the rest; --len 0 converts nothing.
        expect_ok(xts("-f", cfg, "--start", 2990, full, dec), "decode the tail")
        expect(read_file(dec) == sectors(data, 2990, 10), "decode tail")
        expect_ok(xts("-f", cfg, "--action", "encode", "--start=2990", plain, part),
                  "encode the tail (--opt=value)")
        expect(len(read_file(part)) == total * SECTOR, "encode tail: size")
        expect(sectors(read_file(part), 2990, 10) == sectors(enc, 2990, 10), "encode tail")
        write_file(dec, b"old contents")
        expect_ok(xts("-f", cfg, "--start", 5, "--len", 0, full, dec), "decode --len 0")
        expect(read_file(dec) == b"", "decode --len 0: output not empty")
        write_file(part, b"old contents")
        expect_ok(xts("-f", cfg, "--action", "encode", "--start", 5, "--len", 0, plain, part),
                  "encode --len 0")
        expect(read_file(part) == b"", "encode --len 0: output not empty")

        # An existing, longer output is truncated first.
        write_file(dec, b"\xff" * (4000 * SECTOR))
        expect_ok(xts("-f", cfg, "--len", 2, full, dec), "decode over a longer file")
        expect(read_file(dec) == sectors(data, 0, 2), "decode did not truncate")
        write_file(part, b"\xff" * (4000 * SECTOR))
        expect_ok(xts("-f", cfg, "--action", "encode", "--start", 4, "--len", 2, plain, part),
                  "encode over a longer file")
        got = read_file(part)
        expect(got == bytes(4 * SECTOR) + sectors(enc, 4, 2), "encode did not truncate")


def test_decode_to_a_pipe_and_umask():
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        data = random.Random(3).randbytes(64 * SECTOR)
        plain = write_file(os.path.join(tmp, "plain.raw"), data)
        enc = os.path.join(tmp, "enc.raw")
        expect_ok(xts("-f", cfg, "--action", "encode", plain, enc), "encode")
        out = expect_ok(xts("-f", cfg, "--start", 8, "--len", 16, enc, "/dev/stdout"),
                        "decode to a pipe")
        expect(out == sectors(data, 8, 16), "decode to /dev/stdout")
        # The output is created 0666 & ~umask, as a shell redirection would.
        created = os.path.join(tmp, "created.raw")
        proc = subprocess.run([harness.binary("xts"), "-f", cfg, enc, created],
                              capture_output=True, timeout=60, preexec_fn=lambda: os.umask(0o027))
        expect(proc.returncode == 0, proc.stderr.decode())
        mode = os.stat(created).st_mode & 0o777
        expect(mode == 0o640, f"output mode {mode:o}")
        # Encode needs offsets: a pipe is refused.
        expect_error(xts("-f", cfg, "--action", "encode", plain, "/dev/stdout"),
                     "encode writes sectors at their own offsets", "encode to a pipe")


# ---- errors ----

def test_range_errors():
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        two = write_file(os.path.join(tmp, "two.raw"), HELLO_SECTOR * 2)
        odd = write_file(os.path.join(tmp, "odd.raw"), bytes(2 * SECTOR + 1))
        empty = write_file(os.path.join(tmp, "empty.raw"), b"")
        out = os.path.join(tmp, "out.raw")
        cases = [
            (["--action", "decode", odd], "File size is not a multiple of sector size"),
            ([two, "--start", 2], "Start sector 2 is out of range (device has 2 sectors)"),
            ([two, "--start", 99], "Start sector 99 is out of range (device has 2 sectors)"),
            ([empty], "Start sector 0 is out of range (device has 0 sectors)"),
            ([two, "--len", 3], "Requested length 3 exceeds available sectors (2)"),
            ([two, "--start", 1, "--len", 2], "Requested length 2 exceeds available sectors (1)"),
            ([two, "--start", 1, "--len", 18446744073709551615],
             "Requested length 18446744073709551615 exceeds available sectors (1)"),
            (["--action", "encode", odd], "Input file size 1025 is not a multiple of sector size"),
            (["--action", "encode", two, "--start", 2],
             "Start sector 2 is out of range (input has 2 sectors)"),
            (["--action", "encode", empty], "Start sector 0 is out of range (input has 0 sectors)"),
            (["--action", "encode", two, "--start", 1, "--len", 5],
             "Requested length 5 exceeds available sectors (1)"),
        ]
        for args, message in cases:
            # Nothing is created...
            expect_error(xts("-f", cfg, *args, out), message, " ".join(map(str, args)))
            expect(not os.path.exists(out), f"{args}: output created")
            # ...and an existing output is left alone.
            write_file(out, b"keep me")
            expect_error(xts("-f", cfg, *args, out), message, f"{args} (existing output)")
            expect(read_file(out) == b"keep me", f"{args}: existing output changed")
            os.unlink(out)


def test_config_and_file_errors():
    with harness.scratch_dir() as tmp:
        data = HELLO_SECTOR * 4
        inp = write_file(os.path.join(tmp, "in.raw"), data)
        out = os.path.join(tmp, "out.raw")
        expect_error(xts("-f", config(tmp, keys=None), inp, out),
                     "Configuration does not contain encryption keys", "no encryption_key")
        expect_error(xts("-f", config(tmp, keys=(KEY1_B64, KEY1_B64)), inp, out),
                     "encryption_key: the two keys must differ", "equal key halves")
        expect_error(xts("-f", os.path.join(tmp, "missing.yaml"), inp, out),
                     "Failed to read device config file", "missing config")
        # All of the config is validated, though only the keys are used.
        expect_error(xts("-f", config(tmp, extra="num_queues: 0\n"), inp, out),
                     "num_queues", "invalid config")
        expect_error(xts("-f", config(tmp, extra='image_path: "base.raw"\n'), inp, out),
                     "metadata_path must be specified when using a stripe source",
                     "config without metadata_path")
        expect_error(xts("-f", config(tmp, keys=(KEY1_B64,)), inp, out),
                     "invalid length 1", "one key")
        expect(not os.path.exists(out), "a config error created the output")

        cfg = config(tmp)
        expect_error(xts("-f", cfg, os.path.join(tmp, "nope.raw"), out),
                     "cannot open", "missing input")
        expect_error(xts("-f", cfg, tmp, out), "neither a regular file nor a block device",
                     "a directory as input")
        expect_error(xts("-f", cfg, inp, os.path.join(tmp, "no", "such", "dir")),
                     "cannot create", "output in a missing folder")
        # Writing over the input is refused before anything is truncated,
        # also through another name.
        link = os.path.join(tmp, "link.raw")
        os.link(inp, link)
        for target in (inp, link):
            expect_error(xts("-f", cfg, "--action", "encode", inp, target), "is the input itself",
                         f"output {target} is the input")
            expect(read_file(inp) == data, "the input was changed")


def test_usage_errors():
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        inp = write_file(os.path.join(tmp, "in.raw"), HELLO_SECTOR)
        out = os.path.join(tmp, "out.raw")
        kek = kek_file(tmp)
        cases = [
            ([], "--config"),
            ([inp, out], "--config"),
            (["-f", cfg], "<INPUT> and <OUTPUT> are required"),
            (["-f", cfg, inp], "<INPUT> and <OUTPUT> are required"),
            (["-f", cfg, inp, out, "extra"], "unexpected argument 'extra'"),
            (["-f", cfg, "--action", "encrypt", inp, out], "invalid value 'encrypt' for --action"),
            (["-f", cfg, "--action", "", inp, out], "invalid value '' for --action"),
            (["-f", cfg, "--start", "-1", inp, out], "invalid value '-1' for --start"),
            (["-f", cfg, "--start", "abc", inp, out], "invalid value 'abc' for --start"),
            (["-f", cfg, "--start", "", inp, out], "invalid value '' for --start"),
            (["-f", cfg, "--start", "1x", inp, out], "invalid value '1x' for --start"),
            (["-f", cfg, "--start", "18446744073709551616", inp, out], "for --start"),
            (["-f", cfg, "--len", "0x10", inp, out], "invalid value '0x10' for --len"),
            (["-f", cfg, "--len", " 1", inp, out], "for --len"),
            (["-f", cfg, "--start", "1", "--start", "2", inp, out], "--start given twice"),
            (["-f", cfg, "--bogus", inp, out], "Usage: xts"),
            (["-f", cfg, "-u", "-k", kek, inp, out], "Usage: xts"),
            (["-f", cfg, "--unlink-kek", "-k", kek, inp, out], "Usage: xts"),
            (["-f", cfg, "--start"], "Usage: xts"),
            (["--wrap"], "--wrap requires --kek"),
            (["--wrap", "-k", kek, "-f", cfg], "--wrap takes only --kek"),
            (["--wrap", "-k", kek, inp], "--wrap takes only --kek"),
        ]
        for args, needle in cases:
            expect_usage(xts(*args), needle, " ".join(args) or "no arguments")
        expect(not os.path.exists(out), "a usage error created the output")
        expect(os.path.exists(kek), "a usage error deleted the KEK")

        code, text, _ = xts("--help")
        text = text.decode()
        expect(code == 0 and text.startswith("Usage: xts -f <CONFIG>"), text)
        for needle in ("--start", "--len", "--action", "encode", "decode", "--kek", "--wrap",
                       "(start+len)*512", "docs/encryption.md"):
            expect(needle in text, f"--help lacks {needle!r}")
        expect(xts("-h")[:2] == (0, text.encode()), "-h")
        for flag in ("-V", "--version"):
            code, out, _ = xts(flag)
            expect(code == 0 and re.fullmatch(
                rb"xts 0\.4\.0\nxts engine: (vaes-avx512|gcrypt|openssl)\n", out), f"{flag}: {out!r}")


# ---- the AES-XTS engines ----

def test_every_engine_writes_the_same_disk():
    """Each engine the machine runs, forced with UBIBLK_XTS_ENGINE, gives
    the spec's vectors and the same ciphertext of 4 MiB of random data from
    sector 2^32 - 100 (crossing 2^32); what one encodes, each other decodes;
    --version names the forced engine."""
    here = harness.xts_engines_here()
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        rnd = random.Random(13)
        data = bytes(rnd.getrandbits(8) for _ in range(4 << 20))
        plain = write_file(os.path.join(tmp, "plain.raw"), data)
        hello = write_file(os.path.join(tmp, "hello.raw"), HELLO_SECTOR * 2)
        start = (1 << 32) - 100

        def placed_at_start(name, payload):
            """A sparse file with payload at sector `start` (xts converts
            sectors [start, start + len) of its input)."""
            path = os.path.join(tmp, name)
            with open(path, "wb") as dst:
                dst.truncate(start * SECTOR)
                dst.seek(start * SECTOR)
                dst.write(payload)
            return path

        at = placed_at_start("at.raw", data)
        outputs = {}
        for engine in here:
            code, out, _ = xts("--version", engine=engine)
            expect(out.decode().endswith(f"xts engine: {engine}\n"), f"{engine}: --version {out!r}")
            enc = os.path.join(tmp, f"hello-{engine}.raw")
            expect_ok(xts("-f", cfg, "--action", "encode", hello, enc, engine=engine), engine)
            for sector, (head, _, digest) in VECTORS.items():
                got = sectors(read_file(enc), sector, 1)
                expect(got[:32].hex() == head and hashlib.sha256(got).hexdigest() == digest,
                       f"{engine}: sector {sector} is not the spec's vector")
            # Decrypting random bytes at sectors [start, start + 8192) is
            # as good a check as encrypting them; the output is packed.
            dec = os.path.join(tmp, f"dec-{engine}.raw")
            expect_ok(xts("-f", cfg, "--start", start, "--len", 8192, at, dec, engine=engine),
                      f"{engine} decode")
            outputs[engine] = read_file(dec)
        first = outputs[here[0]]
        for engine, out in outputs.items():
            expect(len(out) == len(data) and out == first,
                   f"{engine} and {here[0]} give different bytes")
        # What each decoded, another engine encodes back to the input.
        for i, engine in enumerate(here):
            other = here[(i + 1) % len(here)]
            src = placed_at_start(f"dec-at-{engine}.raw", outputs[engine])
            back = os.path.join(tmp, f"back-{engine}.raw")
            expect_ok(xts("-f", cfg, "--action", "encode", "--start", start, "--len", 8192,
                          src, back, engine=other), f"{other} encode")
            with open(back, "rb") as f:
                f.seek(start * SECTOR)
                expect(f.read() == data, f"{engine} then {other}: not the input back")


def test_forced_engine_errors():
    """An unknown engine, or one this machine cannot run, is refused with
    one error line and exit 1 (never another engine in its place)."""
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        plain = write_file(os.path.join(tmp, "plain.raw"), HELLO_SECTOR)
        out = os.path.join(tmp, "out.raw")
        expect_error(xts("-f", cfg, plain, out, engine="aesni-turbo"),
                     "UBIBLK_XTS_ENGINE=aesni-turbo: no such XTS engine", "unknown engine")
        code, text, _ = xts("-V", engine="aesni-turbo")
        expect(code == 0 and b"xts engine: none (UBIBLK_XTS_ENGINE=aesni-turbo" in text, text)
        here = harness.xts_engines_here()
        for engine in harness.XTS_ENGINES:
            if engine not in here:
                expect_error(xts("-f", cfg, plain, out, engine=engine),
                             "this machine cannot run it", f"{engine} forced")


def test_benchmark_option():
    code, out, err = xts("--benchmark", "--seconds", "0.01")
    expect(code == 0, f"exit {code}: {err}")
    lines = out.decode().splitlines()
    expect(lines[0].split() == ["engine", "unit", "encrypt", "MB/s", "decrypt", "MB/s"], lines[0])
    rows = [line.split() for line in lines[1:] if re.match(r"\S+\s+(512B|4KiB|1MiB)\s", line)]
    openssl_units = [r[1] for r in rows if r[0] == "openssl"]
    expect(openssl_units == ["512B", "4KiB", "1MiB"], f"openssl rows: {rows}")
    expect(all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows), f"a zero figure: {rows}")
    expect(re.fullmatch(r"chosen: (vaes-avx512|gcrypt|openssl)", lines[-1]), lines[-1])
    for argv, needle in ((["--benchmark", "-f", "x.yaml"], "--benchmark takes only --seconds"),
                         (["--benchmark", "in", "out"], "--benchmark takes only --seconds"),
                         (["--seconds", "1"], "--seconds goes with --benchmark"),
                         (["--benchmark", "--seconds", "0"], "invalid value '0' for --seconds"),
                         (["--benchmark", "--seconds", "x"], "invalid value 'x' for --seconds")):
        expect_usage(xts(*argv), needle, " ".join(argv))


# ---- --wrap ----

def test_wrap():
    with harness.scratch_dir() as tmp:
        keys = f"{KEY1_B64}\n\n{KEY2_B64}\r\n".encode()
        # Fixed-nonce form under the example KEK: the known wrapped strings.
        kek = kek_file(tmp)
        out = expect_ok(xts("-k", kek, "--wrap", stdin=keys), "wrap, fixed nonce")
        expect(out.decode().split() == [KEY1_WRAPPED, KEY2_WRAPPED], f"wrapped: {out!r}")

        # Without init_vector: a fresh nonce per secret, still a working config.
        fresh = kek_file(tmp, "".join(line + "\n" for line in KEK_YAML.splitlines()
                                      if not line.startswith("init_vector")), name="fresh.yaml")
        first = expect_ok(xts("-k", fresh, "--wrap", stdin=keys), "wrap, fresh nonce").split()
        second = expect_ok(xts("-k", fresh, "--wrap", stdin=keys), "wrap again").split()
        expect(len(first) == 2 and first != second, "fresh nonces gave identical output")
        cfg = config(tmp, [w.decode() for w in first], name="fresh-cfg.yaml")
        plain = write_file(os.path.join(tmp, "plain.raw"), HELLO_SECTOR * 2)
        enc = os.path.join(tmp, "enc.raw")
        expect_ok(xts("-f", cfg, "-k", fresh, "--action", "encode", plain, enc),
                  "encode with freshly wrapped keys")
        expect(hashlib.sha256(sectors(read_file(enc), 1, 1)).hexdigest() == VECTORS[1][2],
               "freshly wrapped keys are not the test keys")

        # method none: the input back, canonical.
        none = kek_file(tmp, "method: none\n", name="none.yaml")
        out = expect_ok(xts("-k", none, "--wrap", stdin=keys), "wrap, method none")
        expect(out.decode().split() == [KEY1_B64, KEY2_B64], "method none changed the secrets")

        expect_error(xts("-k", kek, "--wrap", stdin=b"%%%\n"), "stdin line 1: Invalid symbol 37",
                     "bad base64")
        expect_error(xts("-k", kek, "--wrap", stdin=b"\n\n"), "no secrets on stdin", "no input")
        expect_error(xts("-k", kek_file(tmp, "method: aes256-gcm\n", name="nokey.yaml"), "--wrap",
                         stdin=keys), "Key is required", "KEK without a key")


# ---- progress ----

def test_progress_on_a_terminal_only():
    with harness.scratch_dir() as tmp:
        cfg = config(tmp)
        big = os.path.join(tmp, "big.raw")
        with open(big, "wb") as f:
            f.truncate(80 << 20)  # above the 64 MiB threshold; sparse, fast to read
        out = os.path.join(tmp, "out.raw")
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([harness.binary("xts"), "-f", cfg, "--action", "encode", big,
                                     out], stderr=slave, stdout=subprocess.DEVNULL)
            os.close(slave)
            slave = None
            text = b""
            while True:
                ready, _, _ = select.select([master], [], [], 60)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                text += chunk
            expect(proc.wait(timeout=120) == 0, f"exit {proc.returncode}: {text!r}")
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        shown = text.decode(errors="replace")
        expect("\rxts: encode" in shown and "100% of 80 MiB" in shown and "MB/s" in shown,
               f"no progress line: {shown!r}")
        expect(shown.rstrip("\r\n").count("\n") == shown.count("WARN"),
               f"progress is not one updating line: {shown!r}")
        expect(os.path.getsize(out) == 80 << 20, "encode output size")
        # Not a terminal: no progress.
        code, _, err = xts("-f", cfg, "--action", "encode", big, out)
        expect(code == 0 and "MB/s" not in err, f"progress without a terminal: {err!r}")


# ---- a disk written through vhost-backend ----

def test_disk_written_by_vhost_backend():
    """Data written through an encrypted vhost-backend, read back through it
    (ubiblk-bench --dump), is what xts decodes from the raw file; encoding
    that plaintext gives the raw file back byte for byte."""
    with harness.scratch_dir() as tmp:
        size = 4 << 20
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), size)
        kek = kek_file(tmp)
        seen = os.path.join(tmp, "seen.raw")
        with harness.VhostBackend(tmp, disk, extra_args=["-k", kek],
                                  encryption_key=[KEY1_WRAPPED, KEY2_WRAPPED]) as be:
            for mode in (["--mode", "write", "--size", "2m", "--offset", "1m"],
                         ["--mode", "read", "--dump", seen]):
                code, _, err = harness.run_bench(["-s", be.socket, "--bs", "64k",
                                                  "--iodepth", "4"] + mode)
                expect(code == 0, f"ubiblk-bench {mode[1]}: {err}")
            cfg = be.config
        raw = read_file(disk)
        plain = read_file(seen)
        expect(len(plain) == size, f"dump size {len(plain)}")
        written = plain[1 << 20:3 << 20]
        expect(written != bytes(len(written)), "the bench wrote zeros")
        # No block of what was written appears in the file.
        for off in range(0, len(written), 64 << 10):
            expect(written[off:off + 4096] not in raw, f"plaintext at {off} found in the raw file")
        dec = os.path.join(tmp, "dec.raw")
        expect_ok(xts("-f", cfg, "-k", kek, disk, dec), "decode the served disk")
        expect(read_file(dec) == plain, "xts decode differs from what the backend returned")
        enc = os.path.join(tmp, "enc.raw")
        expect_ok(xts("-f", cfg, "-k", kek, "--action", "encode", seen, enc), "encode it back")
        expect(read_file(enc) == raw, "encode of the served plaintext differs from the raw file")


def test_metadata_file_decodes():
    """The metadata file of an encrypted disk is encrypted with the disk's
    keys, tweaks counted from the start of the metadata file: xts decodes
    it to the format 1.0 header."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 4 << 20)
        meta = os.path.join(tmp, "disk.meta")
        cfg = config(tmp, extra=f'metadata_path: "{meta}"\n')
        with open(cfg) as f:
            text = f.read().replace('path: "disk.raw"', f'path: "{disk}"')
        with open(cfg, "w") as f:
            f.write(text)
        harness.init_metadata(cfg)
        magic = b"BDEV_UBI\x00\x01\x00\x00\x00"
        raw = read_file(meta)
        expect(not raw.startswith(magic[:8]), "the metadata file is not encrypted")
        dec = os.path.join(tmp, "meta.dec")
        expect_ok(xts("-f", cfg, meta, dec), "decode the metadata file")
        header = read_file(dec)
        expect(header.startswith(magic + bytes([11])), f"decoded header {header[:16].hex()}")
        expect(header[512:512 + 4] == bytes(4), "stripe headers of an empty disk are not 0")


if __name__ == "__main__":
    harness.main([
        test_spec_vectors,
        test_wrapped_config_gives_the_same_bytes,
        test_round_trip_and_layouts,
        test_decode_to_a_pipe_and_umask,
        test_range_errors,
        test_config_and_file_errors,
        test_usage_errors,
        test_wrap,
        test_progress_on_a_terminal_only,
        test_disk_written_by_vhost_backend,
        test_metadata_file_decodes,
        test_every_engine_writes_the_same_disk,
        test_forced_engine_errors,
        test_benchmark_option,
    ])
