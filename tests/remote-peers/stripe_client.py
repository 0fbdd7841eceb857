#!/usr/bin/env python3
"""A stripe client behaving like ubiblk 0.4's remote client, for
interoperability tests. Standard library only, written from the protocol
description alone (it shares nothing with the C implementation).

Like 0.4 it connects to a literal address, sends METADATA first, then one
READ_STRIPE at a time (never pipelined) on the same connection, and does not
check the blob's magic or version. Unlike 0.4 it refuses a metadata size
below 512 bytes or above 64 MiB instead of crashing or allocating it. Plain
TCP only.

Errors carry 0.4's texts: "Remote server returned error status: <n>",
"Invalid stripe index: <i>", "Stripe <i> is unavailable" (NO_DATA and
NOT_FETCHED alike), "Stripe <i> size mismatch: expected <e> bytes, got <a>
bytes".

Command line (ADDRESS is "IPv4:port" or "[IPv6]:port"):
  stripe_client.py ADDRESS metadata [--headers]
      shift, header count, source stripes (up to the last header with
      WRITTEN or HAS_SOURCE); --headers adds one line "<i> 0x<hh>" per
      non-zero header
  stripe_client.py ADDRESS fetch INDEX [--out FILE]
      fetches one stripe; prints its SHA-256 or writes it to FILE
  stripe_client.py ADDRESS compare IMAGE
      fetches every stripe the server has data for and compares it with
      IMAGE at the same offset (zero-filled past IMAGE's end); stripes the
      server has no data for are skipped. Exit 0 when all match.
Failures print "error: <text>" on stderr and exit 1.
"""

import argparse
import hashlib
import ipaddress
import socket
import struct
import sys

SECTOR = 512
WRITTEN, HAS_SOURCE = 0x02, 0x04
OK, INVALID_STRIPE, NO_DATA, NOT_FETCHED = 0x00, 0x01, 0x02, 0x03
METADATA_MIN, METADATA_MAX = 512, 64 << 20


class StripeError(Exception):
    pass


def parse_address(text):
    """(host, port, family) of a literal socket address; no host names."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        family = socket.AF_INET6
    else:
        host, sep, port = text.rpartition(":")
        family = socket.AF_INET
    if not sep or not port.isdigit() or int(port) > 65535:
        raise StripeError(f"invalid server address {text}: bad port")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as e:
        raise StripeError(f"invalid server address {text}: {e}") from None
    if (ip.version == 6) != (family == socket.AF_INET6):
        raise StripeError(f"invalid server address {text}: bad brackets")
    return host, int(port), family


class Metadata:
    def __init__(self, blob):
        self.shift = blob[13]
        self.headers = blob[SECTOR:]
        self.stripe_bytes = SECTOR << self.shift
        last = -1
        for i, h in enumerate(self.headers):
            if h & (WRITTEN | HAS_SOURCE):
                last = i
        self.source_stripes = last + 1

    def has_stripe(self, i):
        return i < len(self.headers) and bool(self.headers[i] & (WRITTEN | HAS_SOURCE))


class StripeClient:
    def __init__(self, address, timeout=20.0):
        host, port, family = parse_address(address)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.metadata = self.fetch_metadata()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise StripeError("I/O error: unexpected end of stream")
            buf += chunk
        return bytes(buf)

    def fetch_metadata(self):
        self.sock.sendall(b"\x00")
        status = self.recv_exact(1)[0]
        if status != OK:
            raise StripeError(f"Remote server returned error status: {status}")
        (size,) = struct.unpack("<Q", self.recv_exact(8))
        if size < METADATA_MIN or size > METADATA_MAX:
            raise StripeError(f"metadata size {size} out of bounds")
        return Metadata(self.recv_exact(size))

    def read_stripe(self, index):
        self.sock.sendall(b"\x01" + struct.pack("<Q", index))
        status = self.recv_exact(1)[0]
        if status == OK:
            (size,) = struct.unpack("<Q", self.recv_exact(8))
            expected = self.metadata.stripe_bytes
            if size != expected:
                raise StripeError(f"Stripe {index} size mismatch: expected {expected} bytes, "
                                  f"got {size} bytes")
            return self.recv_exact(size)
        if status == INVALID_STRIPE:
            raise StripeError(f"Invalid parameter error: Invalid stripe index: {index}")
        if status in (NO_DATA, NOT_FETCHED):
            raise StripeError(f"Stripe {index} is unavailable")
        raise StripeError(f"Remote server returned error status: {status}")


def main(argv=None):
    p = argparse.ArgumentParser(description="a ubiblk-0.4-style stripe client (plain TCP)")
    p.add_argument("address")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("metadata")
    m.add_argument("--headers", action="store_true")
    f = sub.add_parser("fetch")
    f.add_argument("index", type=int)
    f.add_argument("--out")
    c = sub.add_parser("compare")
    c.add_argument("image")
    args = p.parse_args(argv)
    try:
        with StripeClient(args.address) as client:
            md = client.metadata
            if args.command == "metadata":
                print(f"shift {md.shift}")
                print(f"stripe_bytes {md.stripe_bytes}")
                print(f"header_count {len(md.headers)}")
                print(f"source_stripes {md.source_stripes}")
                if args.headers:
                    for i, h in enumerate(md.headers):
                        if h:
                            print(f"{i} 0x{h:02x}")
            elif args.command == "fetch":
                data = client.read_stripe(args.index)
                if args.out:
                    with open(args.out, "wb") as out:
                        out.write(data)
                else:
                    print(hashlib.sha256(data).hexdigest())
            else:
                compared = skipped = 0
                with open(args.image, "rb") as img:
                    for i in range(md.source_stripes):
                        if not md.has_stripe(i):
                            skipped += 1
                            continue
                        data = client.read_stripe(i)
                        img.seek(i * md.stripe_bytes)
                        want = img.read(md.stripe_bytes)
                        want += bytes(md.stripe_bytes - len(want))
                        if data != want:
                            print(f"stripe {i} differs", file=sys.stderr)
                            return 1
                        compared += 1
                print(f"compared {compared} stripes, skipped {skipped}")
    except (OSError, StripeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
