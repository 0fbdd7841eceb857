"""Encryption at rest end to end: vhost-backend with encryption_key serving a
disk that ubiblk-bench writes stamped sectors to. The disk file holds no trace
of them, reads through the backend return them, and decrypting the file with
an independent EVP_aes_256_xts program (tests/unit/crypto/xts-reference, no
code shared with src/crypto) gives them back byte for byte (and the xts tool,
when built, agrees). A lazily fetched encrypted disk reads back its plaintext
raw image while its disk and metadata files are ciphertext; init-metadata and
dump-metadata work with plain and KEK-wrapped keys and say clearly what is
wrong without them."""

import base64
import json
import os
import struct
import subprocess

import harness

MiB = 1 << 20
SECTOR = 512
STAMP_MAGIC = b"UBIBENCH"  # ubiblk-bench's per-sector stamp (src/bench/block_pattern.h)

# The test keys (key1 = 0123456789abcdef and key2 = fedcba9876543210, each
# repeated 4 times), and the same keys wrapped under the example KEK of
# ubiblk's README (fixed-nonce form).
SPEC_KEY1 = bytes.fromhex("0123456789abcdef" * 4)
SPEC_KEY2 = bytes.fromhex("fedcba9876543210" * 4)
KEY1_WRAPPED = "rpltzOClkMIifQ4wCaIU7Wt0yu2qWzzpz8KdPEyzoCNy/VSYqfHH1lClpTAe+cjF"
KEY2_WRAPPED = "UWaSMx9abz3dgvHP9l3rEpSLNRJVpMMWMD1iw7NMX9y5Fmq5WQOp4ALoz+3R4mXn"
KEK_YAML = ('method: aes256-gcm\n'
            'key: "wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60="\n'
            'init_vector: "UEt+wI+Ldq1UgQ/P"\n'
            'auth_data: "dm0zamdlejhfMA=="\n')


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def reference(action, k1, k2, src, dst, first=0):
    tool = os.path.join(harness.BUILD_DIR, "tests", "unit", "crypto", "xts-reference")
    proc = subprocess.run([tool, action, k1.hex(), k2.hex(), str(first), src, dst],
                          capture_output=True, timeout=120)
    expect(proc.returncode == 0, f"xts-reference failed: {proc.stderr.decode()}")


def decrypt_file(tmp, k1, k2, path, name):
    out = os.path.join(tmp, name)
    reference("decrypt", k1, k2, path, out)
    return read(out)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def dump_through(be, tmp, name, offset, size, bs="64k"):
    out = os.path.join(tmp, name)
    code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "read", "--bs", bs,
                                      "--iodepth", "4", "--offset", str(offset),
                                      "--size", str(size), "--dump", out])
    expect(code == 0, f"read through the backend failed: {err}")
    return read(out)[offset:offset + size]


def check_stamps(plain, offset, size, seed):
    """Every sector of [offset, offset + size) carries a verify stamp for its
    own offset and the run's seed."""
    for at in range(offset, offset + size, SECTOR):
        magic, where, s = struct.unpack_from("<8sQQ", plain, at)
        expect(magic == STAMP_MAGIC and where == at and s == seed,
               f"sector at {at}: stamp {magic!r} offset {where} seed {s}")


def run_tool(tool, config, *extra):
    proc = subprocess.run([harness.binary(tool), "-f", config] + list(extra),
                          capture_output=True, timeout=120)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode(errors="replace")


def write_kek(tmp):
    path = os.path.join(tmp, "kek.yaml")
    with open(path, "w") as f:
        f.write(KEK_YAML)
    os.chmod(path, 0o600)  # group/others access is refused
    return path


def test_written_disk_is_ciphertext_of_what_was_read():
    with harness.scratch_dir() as tmp:
        k1, k2 = harness.random_xts_keys()
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 32 * MiB)
        offset, size, seed = 4 * MiB, 8 * MiB, 7
        with harness.VhostBackend(tmp, disk, num_queues=2, queue_size=64,
                                  encryption_key=harness.encryption_key_field(k1, k2)) as be:
            code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "verify",
                                              "--queues", "2", "--iodepth", "8", "--bs", "16k",
                                              "--offset", str(offset), "--size", str(size),
                                              "--seed", str(seed)])
            expect(code == 0, f"verify through the encrypted backend failed: {err}")
            read_back = dump_through(be, tmp, "dump.raw", offset, size)
            expect(be.stop() == 0, "backend exit status")
        raw = read(disk)
        expect(STAMP_MAGIC not in raw, "a plaintext stamp reached the disk file")
        expect(len(raw) == 32 * MiB, "disk size changed")
        plain = decrypt_file(tmp, k1, k2, disk, "plain.raw")
        check_stamps(plain, offset, size, seed)
        expect(plain[offset:offset + size] == read_back,
               "the decrypted file differs from what the backend read back")
        # The ciphertext is exactly the reference's encryption of it.
        reenc = os.path.join(tmp, "reenc.raw")
        reference("encrypt", k1, k2, os.path.join(tmp, "plain.raw"), reenc)
        expect(read(reenc)[offset:offset + size] == raw[offset:offset + size],
               "the disk file is not the reference's ciphertext")
        # The xts tool, when this build has it, decodes to the same bytes.
        xts_tool = os.path.join(harness.BUILD_DIR, "src", "bin", "xts")
        if os.path.exists(xts_tool):
            cfg = harness.write_config(os.path.join(tmp, "xts.yaml"),
                                       {"path": disk, "encryption_key": harness.encryption_key_field(k1, k2)})
            out = os.path.join(tmp, "xts.raw")
            proc = subprocess.run([xts_tool, "-f", cfg, "--action", "decode", disk, out],
                                  capture_output=True, timeout=120)
            expect(proc.returncode == 0, f"xts decode failed: {proc.stderr.decode()}")
            expect(read(out)[offset:offset + size] == read_back, "xts decodes differently")


def test_lazy_encrypted_disk_from_plain_image():
    with harness.scratch_dir() as tmp:
        k1, k2 = harness.random_xts_keys()
        stripe, disk_size, image_size = MiB, 24 * MiB, 10 * MiB + 300 * 1024
        source_stripes = (image_size + stripe - 1) // stripe
        image = harness.random_file(os.path.join(tmp, "image.raw"), image_size, seed=99)
        image_data = read(image)
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), disk_size)
        meta = os.path.join(tmp, "disk.meta")
        rpc = os.path.join(tmp, "rpc.sock")
        be = harness.VhostBackend(tmp, disk, image_path=image, metadata_path=meta,
                                  rpc_socket_path=rpc, copy_on_read=True, num_queues=2,
                                  queue_size=64, encryption_key=harness.encryption_key_field(k1, k2))
        harness.init_metadata(be.config)
        expect(read(meta)[:8] != b"BDEV_UBI", "init-metadata wrote plaintext metadata")
        fetched_end = source_stripes * stripe
        with be:
            got = dump_through(be, tmp, "dump.raw", 0, fetched_end)
            want = image_data + bytes(fetched_end - image_size)
            expect(got == want, "the lazy encrypted disk does not read back the image")
            status = harness.lazy_status(rpc)
            expect(status["fetched"] == source_stripes, f"status {status}")
            expect(be.stop() == 0, "backend exit status")
        expect(read(image) == image_data, "the raw image was changed")
        raw = read(disk)
        for at in range(0, image_size - 64, 256 * 1024):
            expect(image_data[at:at + 64] not in raw, f"image bytes at {at} stored in clear")
        plain = decrypt_file(tmp, k1, k2, disk, "plain.raw")
        expect(plain[:fetched_end] == want, "the disk file does not decrypt to the image")
        # The metadata file: encrypted with the same keys, sector numbers
        # relative to it; dump-metadata reads it with the keys only.
        meta_plain = decrypt_file(tmp, k1, k2, meta, "meta.plain")
        expect(meta_plain[:9] == b"BDEV_UBI\0", "metadata does not decrypt to the magic")
        dump = harness.dump_metadata(be.config)
        fetched = dump.split("fetched stripes: ")[1].splitlines()[0]
        expect(harness.parse_stripe_list(fetched) == set(range(source_stripes)), dump)
        plain_cfg = harness.write_config(os.path.join(tmp, "nokey.yaml"),
                                         {"path": disk, "image_path": image,
                                          "metadata_path": meta,
                                          "socket": os.path.join(tmp, "nokey.sock")})
        code, _, err = run_tool("dump-metadata", plain_cfg)
        expect(code == 1 and "an encrypted metadata file needs the config's encryption_key"
               in err, f"dump-metadata without keys: {code} {err!r}")
        other = harness.write_config(os.path.join(tmp, "other.yaml"),
                                     {"path": disk, "image_path": image, "metadata_path": meta,
                                      "encryption_key": harness.encryption_key_field(*harness.random_xts_keys())})
        code, _, err = run_tool("dump-metadata", other)
        expect(code == 1 and "wrong encryption_key" in err, f"with other keys: {err!r}")
        # The backend refuses the file without keys too, with the same hint.
        proc = subprocess.run([harness.binary("vhost-backend"), "-f", plain_cfg],
                              capture_output=True, timeout=30)
        expect(proc.returncode == 1 and b"needs the config's encryption_key" in proc.stderr,
               f"vhost-backend without keys: {proc.stderr!r}")


def test_kek_wrapped_keys():
    """The wrapped test keys with the README's example KEK are the test keys:
    init-metadata, dump-metadata and vhost-backend with -k, and the files
    decrypt with the unwrapped keys."""
    with harness.scratch_dir() as tmp:
        kek = write_kek(tmp)
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 8 * MiB)
        meta = os.path.join(tmp, "disk.meta")
        wrapped = [json.dumps(KEY1_WRAPPED), json.dumps(KEY2_WRAPPED)]
        be = harness.VhostBackend(tmp, disk, extra_args=["-k", kek], metadata_path=meta,
                                  encryption_key=wrapped)
        code, _, err = run_tool("init-metadata", be.config)
        expect(code == 1 and "Key length must be exactly 32 bytes" in err,
               f"wrapped keys without the KEK: {err!r}")
        harness.init_metadata(be.config, "-k", kek)
        expect(decrypt_file(tmp, SPEC_KEY1, SPEC_KEY2, meta, "m.plain")[:9] == b"BDEV_UBI\0",
               "metadata not encrypted with the unwrapped keys")
        expect("stripe size: 1048576 bytes" in harness.dump_metadata(be.config, "-k", kek),
               "dump-metadata with the KEK")
        with be:
            code, _, err = harness.run_bench(["--socket", be.socket, "--mode", "verify",
                                              "--size", "2m", "--iodepth", "4", "--seed", "5"])
            expect(code == 0, f"verify with wrapped keys failed: {err}")
            expect(be.stop() == 0, "backend exit status")
        expect(os.path.exists(kek), "the KEK was deleted without --unlink-kek")
        check_stamps(decrypt_file(tmp, SPEC_KEY1, SPEC_KEY2, disk, "d.plain"), 0, 2 * MiB, 5)


def test_init_metadata_refuses_to_reset_in_use_files():
    """--force still protects a file in use through the crypt layer, and an
    unencrypted file in use is not mistaken for garbage once keys are set."""
    with harness.scratch_dir() as tmp:
        k1, k2 = harness.random_xts_keys()
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 4 * MiB)
        meta = os.path.join(tmp, "disk.meta")
        plain_cfg = harness.write_config(os.path.join(tmp, "plain.yaml"),
                                         {"path": disk, "metadata_path": meta})
        enc_cfg = harness.write_config(os.path.join(tmp, "enc.yaml"),
                                       {"path": disk, "metadata_path": meta,
                                        "encryption_key": harness.encryption_key_field(k1, k2)})
        harness.init_metadata(plain_cfg)
        before = read(meta)
        expect(before[:8] == b"BDEV_UBI", "plaintext metadata expected")
        code, _, err = run_tool("init-metadata", enc_cfg)
        expect(code == 1 and "holds unencrypted metadata but the config sets encryption_key"
               in err, f"plaintext file with keys: {err!r}")
        expect(read(meta) == before, "the plaintext file was changed")
        code, _, err = run_tool("init-metadata", enc_cfg, "--force")
        expect(code == 0, f"--force: {err!r}")
        expect(read(meta)[:8] != b"BDEV_UBI", "still plaintext after --force")
        expect(decrypt_file(tmp, k1, k2, meta, "m.plain")[:9] == b"BDEV_UBI\0", "not encrypted")
        code, _, err = run_tool("init-metadata", enc_cfg)
        expect(code == 1 and "is already initialised" in err, f"encrypted file in use: {err!r}")
        harness.dump_metadata(enc_cfg)


def test_bad_keys_are_refused_at_start():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), MiB)
        same = os.urandom(32)
        meta = os.path.join(tmp, "m")
        with open(meta, "wb") as f:
            f.write(bytes(1024))
        cfg = harness.write_config(os.path.join(tmp, "same.yaml"),
                                   {"path": disk, "socket": os.path.join(tmp, "s.sock"),
                                    "metadata_path": meta,
                                    "encryption_key": harness.encryption_key_field(same, same)})
        message = "encryption_key: the two keys must differ"
        proc = subprocess.run([harness.binary("vhost-backend"), "-f", cfg],
                              capture_output=True, timeout=30)
        expect(proc.returncode == 1 and message.encode() in proc.stderr,
               f"vhost-backend with equal halves: {proc.stderr!r}")
        for tool in ("init-metadata", "dump-metadata"):
            code, _, err = run_tool(tool, cfg)
            expect(code == 1 and message in err, f"{tool} with equal halves: {err!r}")
        expect(read(meta) == bytes(1024), "the metadata file was written")
        expect(same.hex() not in proc.stderr.decode() and
               base64.b64encode(same).decode() not in proc.stderr.decode(),
               "a key appeared in the log")


def test_engines_read_each_others_disks():
    """Each AES-XTS engine this machine runs serves the disk in turn
    (UBIBLK_XTS_ENGINE): what vhost-backend wrote with one, it reads back
    with the next, and the file is the reference's ciphertext whichever
    wrote it. The backend logs its engine once at start-up (debug)."""
    here = harness.xts_engines_here()
    with harness.scratch_dir() as tmp:
        k1, k2 = harness.random_xts_keys()
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 16 * MiB)
        region = 2 * MiB
        os.environ["UBIBLK_LOG"] = "debug"
        try:
            for i, writer in enumerate(here):
                reader = here[(i + 1) % len(here)]
                offset, seed = i * region, 100 + i
                # A folder per backend: each has its own log.
                wdir, rdir = (os.path.join(tmp, f"{i}-{role}") for role in ("write", "read"))
                os.mkdir(wdir)
                os.mkdir(rdir)
                with harness.xts_engine(writer), harness.VhostBackend(
                        wdir, disk, encryption_key=harness.encryption_key_field(k1, k2)) as be:
                    code, _, err = harness.run_bench(
                        ["--socket", be.socket, "--mode", "verify", "--iodepth", "8",
                         "--bs", "16k", "--offset", str(offset), "--size", str(region),
                         "--seed", str(seed)])
                    expect(code == 0, f"{writer}: verify failed: {err}")
                    expect(be.stop() == 0, f"{writer}: backend exit status")
                    log = be.process.log_text()
                    expect(log.count(f"xts: engine {writer} (forced by UBIBLK_XTS_ENGINE)") == 1,
                           f"{writer}: the engine is not logged once:\n{log}")
                with harness.xts_engine(reader), harness.VhostBackend(
                        rdir, disk, encryption_key=harness.encryption_key_field(k1, k2)) as be:
                    check_stamps(bytes(offset) + dump_through(be, tmp, "dump.raw", offset, region),
                                 offset, region, seed)
                    expect(be.stop() == 0, f"{reader}: backend exit status")
        finally:
            del os.environ["UBIBLK_LOG"]
        raw = read(disk)
        plain = decrypt_file(tmp, k1, k2, disk, "plain.raw")
        for i in range(len(here)):
            check_stamps(plain, i * region, region, 100 + i)
        reenc = os.path.join(tmp, "reenc.raw")
        reference("encrypt", k1, k2, os.path.join(tmp, "plain.raw"), reenc)
        expect(read(reenc) == raw, "the disk file is not the reference's ciphertext")


if __name__ == "__main__":
    harness.main([
        test_written_disk_is_ciphertext_of_what_was_read,
        test_lazy_encrypted_disk_from_plain_image,
        test_kek_wrapped_keys,
        test_init_metadata_refuses_to_reset_in_use_files,
        test_bad_keys_are_refused_at_start,
        test_engines_read_each_others_disks,
    ])
