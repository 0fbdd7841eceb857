#!/usr/bin/python3
"""Our encoder's archives, decoded by the independent Python reader.

  test_writer.py WRITE_ARCHIVE_TOOL

Writes a disk (random, zero, repeated and text stripes, ending inside a
stripe) with every combination of compression and encryption through
write-archive-tool and checks each archive with make_golden.check()."""
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KEK = os.path.join(HERE, "..", "data", "archive", "kek.yaml")
STRIPE = 64 * 512


def disk_bytes():
    stripes = [bytes(STRIPE), make_golden.counter_bytes(b"a", STRIPE), bytes(range(256)) * 128,
               make_golden.counter_bytes(b"a", STRIPE), bytes(STRIPE),
               (b"text stripe " * 3000)[:STRIPE]]
    return b"".join(stripes) + hashlib.sha256(b"tail").digest() * 64  # 2 KiB tail


def main():
    tool = sys.argv[1]
    disk = disk_bytes()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "disk.bin")
        with open(path, "wb") as f:
            f.write(disk)
        for comp in ("none", "snappy"):
            for mode, method in (("plain", None), (KEK, "aes256-gcm"), ("clear", "none")):
                out = os.path.join(tmp, "%s-%s" % (comp, method))
                subprocess.run([tool, out, path, "64", comp, mode], check=True)
                ok = make_golden.check(out, method or "none", disk)
                print("%s %s: %s" % (comp, method, "ok" if ok else "FAILED"))
                failed += not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
