#!/usr/bin/python3
"""Golden archives for the archive format's unit tests, computed without any
of ubiblk-c's code: hashlib for SHA-256, python3-snappy for the raw snappy
block, OpenSSL's libcrypto (EVP_aes_256_xts, through ctypes) for AES-256-XTS
and python3-cryptography for the AES-256-GCM key wrap.

  make_golden.py OUT_DIR        write the archives (tests/data/archive)
  make_golden.py --check DIR [DISK] [--kek-none]
                                decode the archive in DIR (keys wrapped with
                                the golden KEK, or in clear with --kek-none)
                                and print each stripe's SHA-256; with DISK,
                                exit 1 unless every stripe equals DISK's
                                (stripes absent from the map must be zeros)

Every input is deterministic, so re-running reproduces the committed files
byte for byte (with the same libsnappy: snappy's output is encoder-specific).
"""
import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import sys

import snappy
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECTOR = 512
STRIPE_SECTORS = 16
STRIPE_BYTES = STRIPE_SECTORS * SECTOR
STRIPE_COUNT = 7
# Stripes left out of the archive (they read as zeros).
ABSENT = {3}

KEY1 = hashlib.sha256(b"archive golden key1").digest()
KEY2 = hashlib.sha256(b"archive golden key2").digest()
KEK_KEY = bytes([0x11]) * 32
KEK_IV = bytes([0x22]) * 12
KEK_AAD = b"test-aad"

ARCHIVES = {
    # name: (compression, encrypted, kek method)
    "plain": ("none", False, None),
    "snappy": ("snappy", False, None),
    "xts-kek": ("none", True, "aes256-gcm"),
    "snappy-xts-kek": ("snappy", True, "aes256-gcm"),
    "snappy-xts-nokek": ("snappy", True, "none"),
}


def counter_bytes(seed, n):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + struct.pack("<Q", i)).digest()
        i += 1
    return out[:n]


def stripe_plaintext(i):
    if i in (0, 4):
        return bytes(STRIPE_BYTES)  # zeros: shared objects when not encrypted
    if i == 1:
        return counter_bytes(b"random", STRIPE_BYTES)  # incompressible
    if i == 2:
        return bytes(range(256)) * (STRIPE_BYTES // 256)
    if i == 5:
        text = b"ubiblk archive golden stripe five. "
        return (text * (STRIPE_BYTES // len(text) + 1))[:STRIPE_BYTES]
    if i == 6:  # same as stripe 2: deduplicated when not encrypted
        return stripe_plaintext(2)
    return counter_bytes(b"stripe%d" % i, STRIPE_BYTES)


def tweak(sector):
    return bytes(8) + struct.pack("<Q", sector)


def _libcrypto():
    lib = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    lib.EVP_aes_256_xts.restype = ctypes.c_void_p
    lib.EVP_CipherInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.EVP_CipherUpdate.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.POINTER(ctypes.c_int), ctypes.c_void_p, ctypes.c_int]
    return lib


_LIB = _libcrypto()


def xts(body, first_sector, encrypt, key=KEY1 + KEY2):
    """AES-256-XTS, each 512-byte sector its own data unit with its own
    tweak (the sector number, little-endian, in the tweak's second half).
    One libcrypto context keyed once; each sector only sets its tweak: 6 us
    a sector here, where a python3-cryptography Cipher made for each sector
    took 16 us (test_archive_s3 decodes 1.8 GiB of sectors). Byte for byte
    the same output."""
    assert len(key) == 64 and len(body) % SECTOR == 0
    ctx = _LIB.EVP_CIPHER_CTX_new()
    if not ctx:
        raise MemoryError("EVP_CIPHER_CTX_new")
    try:
        if _LIB.EVP_CipherInit_ex(ctx, _LIB.EVP_aes_256_xts(), None, key, None,
                                  1 if encrypt else 0) != 1:
            raise ValueError("EVP_CipherInit_ex refused the XTS key")
        src = ctypes.create_string_buffer(bytes(body), len(body))
        dst = ctypes.create_string_buffer(len(body))
        src_at, dst_at = ctypes.addressof(src), ctypes.addressof(dst)
        written = ctypes.c_int()
        written_at = ctypes.byref(written)
        init, update = _LIB.EVP_CipherInit_ex, _LIB.EVP_CipherUpdate
        for s in range(len(body) // SECTOR):
            off = s * SECTOR
            if (init(ctx, None, None, None, tweak(first_sector + s), -1) != 1 or
                    update(ctx, dst_at + off, written_at, src_at + off, SECTOR) != 1 or
                    written.value != SECTOR):
                raise ValueError("AES-256-XTS failed on sector %d" % (first_sector + s))
        return dst.raw
    finally:
        _LIB.EVP_CIPHER_CTX_free(ctx)


def frame(plain):
    c = snappy.compress(plain)
    body = struct.pack("<I", len(c)) + c
    return body + bytes(-len(body) % SECTOR)


def unframe(body):
    (n,) = struct.unpack("<I", body[:4])
    return snappy.uncompress(body[4:4 + n])


def wrap(key, method):
    if method == "none":
        return key
    return AESGCM(KEK_KEY).encrypt(KEK_IV, key, KEK_AAD)


def unwrap(wrapped, method, kek=(KEK_KEY, KEK_IV, KEK_AAD)):
    if method == "none":
        return wrapped
    key, iv, aad = kek
    return AESGCM(key).decrypt(iv, wrapped, aad)


def decode(root, kek=None):
    """Any writer's archive in the directory root, decoded as a reader does
    (hash -> decrypt -> decompress) with the keys it holds: unwrapped with
    kek = (key, init_vector, auth_data), or taken as stored when kek is None.
    Returns (metadata, {stripe index: plaintext of stripe_sector_count
    sectors}); raises on any inconsistency."""
    with open(os.path.join(root, "metadata.json")) as f:
        meta = json.load(f)
    with open(os.path.join(root, "stripe-hashes.json")) as f:
        hashes = json.load(f)
    assert meta["format_version"] == 1
    ssc = meta["stripe_sector_count"]
    size = ssc * SECTOR
    keys = meta.get("encryption_key")
    key = None
    if keys:
        method = "none" if kek is None else "aes256-gcm"
        k1, k2 = (unwrap(base64.b64decode(k), method, kek) for k in keys)
        assert len(k1) == 32 and len(k2) == 32
        key = k1 + k2
    stripes = {}
    for i, h in hashes.items():
        assert len(h) == 64 and h == h.lower()
        with open(os.path.join(root, "data", h), "rb") as f:
            body = f.read()
        assert hashlib.sha256(body).hexdigest() == h, "hash of stripe " + i
        if key:
            body = xts(body, int(i) * ssc, False, key)
        if meta.get("compression", "none") == "snappy":
            body = unframe(body)
        assert len(body) <= size
        stripes[int(i)] = body + bytes(size - len(body))
    return meta, stripes


def write_archive(root, compression, encrypted, method):
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    hashes = {}
    for i in range(STRIPE_COUNT):
        if i in ABSENT:
            continue
        body = stripe_plaintext(i)
        if compression == "snappy":
            body = frame(body)
        if encrypted:
            body = xts(body, i * STRIPE_SECTORS, True)
        h = hashlib.sha256(body).hexdigest()
        hashes[str(i)] = h
        with open(os.path.join(root, "data", h), "wb") as f:
            f.write(body)
    key = None
    if encrypted:
        key = [base64.b64encode(wrap(k, method)).decode() for k in (KEY1, KEY2)]
    meta = {"format_version": 1, "stripe_sector_count": STRIPE_SECTORS,
            "encryption_key": key, "compression": compression}
    with open(os.path.join(root, "metadata.json"), "w") as f:
        f.write(json.dumps(meta, separators=(",", ":")))
    with open(os.path.join(root, "stripe-hashes.json"), "w") as f:
        f.write(json.dumps(hashes, separators=(",", ":")))


def write_all(out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "plain.bin"), "wb") as f:
        for i in range(STRIPE_COUNT):
            f.write(bytes(STRIPE_BYTES) if i in ABSENT else stripe_plaintext(i))
    with open(os.path.join(out, "kek.yaml"), "w") as f:
        f.write("method: aes256-gcm\n")
        for name, v in (("key", KEK_KEY), ("init_vector", KEK_IV), ("auth_data", KEK_AAD)):
            f.write("%s: %s\n" % (name, base64.b64encode(v).decode()))
    for name, (compression, encrypted, method) in ARCHIVES.items():
        write_archive(os.path.join(out, name), compression, encrypted, method)


def check(root, method="aes256-gcm", disk=None):
    """Decode an archive (ours or another writer's) into stripes: hash ->
    decrypt -> decompress, as a reader does. True when it matches disk."""
    with open(os.path.join(root, "metadata.json")) as f:
        meta = json.load(f)
    with open(os.path.join(root, "stripe-hashes.json")) as f:
        hashes = json.load(f)
    assert meta["format_version"] == 1
    ssc = meta["stripe_sector_count"]
    size = ssc * SECTOR
    keys = meta.get("encryption_key")
    if keys:
        k1, k2 = (unwrap(base64.b64decode(k), method) for k in keys)
        assert (k1, k2) == (KEY1, KEY2), "keys differ from the golden keys"
    ok = True
    for i in sorted(hashes, key=int):
        with open(os.path.join(root, "data", hashes[i]), "rb") as f:
            body = f.read()
        assert hashlib.sha256(body).hexdigest() == hashes[i], "hash of stripe " + i
        if keys:
            body = xts(body, int(i) * ssc, False)
        if meta.get("compression", "none") == "snappy":
            body = unframe(body)
        body += bytes(size - len(body))
        print(i, hashlib.sha256(body).hexdigest())
        if disk is not None and body != disk[int(i) * size:(int(i) + 1) * size].ljust(size, b"\0"):
            print("stripe %s differs from the disk" % i)
            ok = False
    if disk is not None:
        for i in range((len(disk) + size - 1) // size):
            if str(i) not in hashes and any(disk[i * size:(i + 1) * size]):
                print("stripe %d is not archived but holds data" % i)
                ok = False
    return ok


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--check"] and len(args) >= 2:
        method = "none" if "--kek-none" in args else "aes256-gcm"
        rest = [a for a in args[2:] if a != "--kek-none"]
        disk = None
        if rest:
            with open(rest[0], "rb") as f:
                disk = f.read()
        sys.exit(0 if check(args[1], method, disk) else 1)
    elif len(args) == 1:
        write_all(args[0])
    else:
        sys.exit(__doc__)
