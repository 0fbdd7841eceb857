#!/usr/bin/env python3
"""Golden exchanges of the remote stripe protocol, computed from the
protocol's rules alone (standard library only; nothing shared with the C
implementation or with the Python peers next to this file).

  golden.py exchanges DIR   writes the request/reply files (tests/data/remote)
  golden.py inputs DIR      writes the data and metadata files the cases serve
  golden.py check DIR       exit 0 when DIR holds exactly what `exchanges` writes

Every case is a disk (data file + optional metadata file) and requests sent
to a 0.4-style server serving it. See tests/data/remote/README.md for the
list of files and what each one means.
"""

import hashlib
import os
import struct
import sys

SECTOR = 512
MAGIC = b"BDEV_UBI\x00"
FETCHED, WRITTEN, HAS_SOURCE = 0x01, 0x02, 0x04
OK, INVALID_STRIPE, NO_DATA, NOT_FETCHED = 0x00, 0x01, 0x02, 0x03
INVALID_COMMAND, SERVER_ERROR = 0xFE, 0xFF
U64_MAX = (1 << 64) - 1


def pattern(offset, length):
    """Data of the pattern disks: byte o is bits 24..31 of the 32-bit
    product o * 2654435761 (C: (uint8_t)(((uint32_t)o * 2654435761u) >> 24))."""
    return bytes(((o * 2654435761) & 0xFFFFFFFF) >> 24 for o in range(offset, offset + length))


def marker_data(size, stripe_bytes):
    """Data of the sparse disks: zeros, except the ASCII text "stripe <i>\\n"
    at the start of every stripe i."""
    out = bytearray(size)
    for i in range(0, (size + stripe_bytes - 1) // stripe_bytes):
        text = f"stripe {i}\n".encode()
        out[i * stripe_bytes:i * stripe_bytes + len(text)] = text
    return bytes(out)


def metadata_file(shift, headers, file_bytes):
    """A ubiblk v1 metadata file of file_bytes bytes: the header sector
    (magic, version 1.0, shift, zeros), the headers, zero padding."""
    head = MAGIC + struct.pack("<HHB", 1, 0, shift)
    data = head + bytes(SECTOR - len(head)) + bytes(headers)
    return data + bytes(file_bytes - len(data))


def u64(v):
    return struct.pack("<Q", v)


class Case:
    """A disk as a 0.4 server sees it: shift, the headers it serves (all
    of a metadata file, padding included) and the data file."""

    def __init__(self, name, data, shift, headers, metadata=None):
        self.name, self.data, self.shift = name, data, shift
        self.headers, self.metadata = bytes(headers), metadata
        self.stripe_bytes = SECTOR << shift

    def metadata_reply(self):
        head = MAGIC + struct.pack("<HHB", 1, 0, self.shift)
        blob = head + bytes(SECTOR - len(head)) + self.headers
        return bytes([OK]) + u64(len(blob)) + blob

    def read_stripe_reply(self, index):
        if index >= len(self.headers):
            return bytes([INVALID_STRIPE])
        h = self.headers[index]
        if h & HAS_SOURCE and not h & FETCHED:
            return bytes([NOT_FETCHED])
        if not (h & WRITTEN or (h & HAS_SOURCE and h & FETCHED)):
            return bytes([NO_DATA])
        start = index * self.stripe_bytes
        payload = self.data[start:start + self.stripe_bytes]
        payload += bytes(self.stripe_bytes - len(payload))  # short read: zeros
        return bytes([OK]) + u64(self.stripe_bytes) + payload


_CASES = None


def cases():
    global _CASES
    if _CASES is None:
        _CASES = make_cases()
    return _CASES


def make_cases():
    mib = 1 << 20
    # The 4 MiB example: no metadata file, so shift 11 and four 0x07 headers.
    c4 = Case("4mib", pattern(0, 4 * mib), 11, [0x07] * 4)
    # Shift 6 (32 KiB stripes), a metadata file pre-sized to 3 sectors:
    # 1024 headers served, of which only 10 describe the 9.5-stripe disk.
    s6 = 32 * 1024
    h6 = [0x07, 0x02, 0x00, 0x05, 0x01, 0x07, 0x03, 0x07, 0x07, 0x07]
    padded = Case("padded-shift6", pattern(0, 9 * s6 + s6 // 2), 6, h6 + [0] * (1024 - len(h6)),
                  metadata_file(6, h6, 3 * SECTOR))
    # Headers a 0.4 server refuses to start with (HAS_SOURCE, not FETCHED):
    # the only way to get NOT_FETCHED, which servers of partially fetched
    # disks send.
    hu = [0x07, 0x04, 0x06, 0x00]
    unfetched = Case("unfetched-shift6", pattern(0, 4 * s6), 6, hu + [0] * 508,
                     metadata_file(6, hu, 2 * SECTOR))
    # Shift 17 (64 MiB stripes), 1.5 stripes of a sparse disk.
    s17 = 64 * mib
    h17 = [0x07, 0x02]
    big = Case("shift17", marker_data(s17 + s17 // 2, s17), 17, h17 + [0] * 510,
               metadata_file(17, h17, 2 * SECTOR))
    return c4, padded, unfetched, big


# Which stripes each case reads, and whether the reply is stored whole or
# as its 9-byte head plus the payload's SHA-256 (large stripes).
READS = {
    "4mib": ([0, 3, 4, U64_MAX], "head"),
    "padded-shift6": ([0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 1023, 1024, U64_MAX], "whole"),
    "unfetched-shift6": ([0, 1, 2, 3, 512], "whole"),
    "shift17": ([0, 1, 2, 512], "head"),
}


def index_name(i):
    return "max" if i == U64_MAX else str(i)


def exchanges():
    """{file name: bytes} of every golden file."""
    files, sums = {}, []
    for case in cases():
        files[f"metadata-{case.name}.request.bin"] = b"\x00"
        files[f"metadata-{case.name}.reply.bin"] = case.metadata_reply()
        if case.metadata is not None:
            files[f"metadata-{case.name}.input.bin"] = case.metadata
        indices, mode = READS[case.name]
        for i in indices:
            base = f"read-stripe-{case.name}-{index_name(i)}"
            files[f"{base}.request.bin"] = b"\x01" + u64(i)
            reply = case.read_stripe_reply(i)
            if mode == "head" and len(reply) > 1:
                files[f"{base}.reply-head.bin"] = reply[:9]
                sums.append(f"{hashlib.sha256(reply[9:]).hexdigest()}  {base}\n")
            else:
                files[f"{base}.reply.bin"] = reply
    c4 = cases()[0]
    # An unknown opcode is answered FE and the next byte is a new opcode.
    files["invalid-opcode-aa.request.bin"] = b"\xaa"
    files["invalid-opcode-aa.reply.bin"] = bytes([INVALID_COMMAND])
    files["invalid-opcode-then-metadata-4mib.request.bin"] = b"\xaa\x00"
    files["invalid-opcode-then-metadata-4mib.reply.bin"] = (bytes([INVALID_COMMAND]) +
                                                            c4.metadata_reply())
    # A failed device read: FF alone, whatever the stripe.
    files["read-stripe-server-error.reply.bin"] = bytes([SERVER_ERROR])
    files["payloads.sha256"] = "".join(sums).encode()
    return files


def write_inputs(directory):
    """The data (and metadata) files each case serves: <case>.data and
    <case>.metadata."""
    os.makedirs(directory, exist_ok=True)
    for case in cases():
        with open(os.path.join(directory, f"{case.name}.data"), "wb") as f:
            f.write(case.data)
        if case.metadata is not None:
            with open(os.path.join(directory, f"{case.name}.metadata"), "wb") as f:
                f.write(case.metadata)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("exchanges", "inputs", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    directory = argv[2]
    if argv[1] == "inputs":
        write_inputs(directory)
        return 0
    files = exchanges()
    if argv[1] == "exchanges":
        os.makedirs(directory, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        return 0
    bad = 0
    present = {n for n in os.listdir(directory) if n != "README.md"}
    for name in sorted(present - files.keys()):
        print(f"unexpected file {name}", file=sys.stderr)
        bad += 1
    for name, data in sorted(files.items()):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            print(f"missing {name}", file=sys.stderr)
            bad += 1
        elif open(path, "rb").read() != data:
            print(f"differs: {name}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
