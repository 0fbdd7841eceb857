#!/usr/bin/env python3
"""A stripe server behaving like ubiblk 0.4's remote-stripe-server, for
interoperability tests. Standard library only, written from the protocol
description alone (it shares nothing with the C implementation).

What it serves, as 0.4 does:
  * without --metadata: stripe shift 11 (1 MiB stripes), one header per
    stripe of the data file (rounded up), every header 0x07
    (FETCHED|WRITTEN|HAS_SOURCE);
  * with --metadata FILE: the file's shift and ALL its header bytes, i.e.
    (file size rounded down to whole sectors) - 512 headers, trailing zero
    padding included. Magic and version 1.0 are checked, and a file in which
    some HAS_SOURCE stripe is not FETCHED is refused ("Not all source stripes
    have been fetched."), so this server never answers NOT_FETCHED.

Protocol (little-endian): METADATA = 00 -> 00, u64 size, blob.
READ_STRIPE = 01 + u64 index -> INVALID_STRIPE (01) when index >= count;
NOT_FETCHED (03) when HAS_SOURCE and not FETCHED; NO_DATA (02) unless WRITTEN
or (HAS_SOURCE and FETCHED); else 00, u64 stripe size, stripe bytes (a read
past the end of the data file is zero-filled). A read error answers FF and
the session goes on. Any other opcode answers FE; the next byte is a new
opcode. Plain TCP only, one thread per connection, no timeouts.

Command line:
  stripe_server.py --data FILE [--metadata FILE] [--port N] [--host ADDR]
                   [--fail-stripe I ...]
prints "port <N>" on stdout once listening (port 0 picks a free one) and
logs one line per event on stderr. SIGTERM/SIGINT stop it (exit 0).
--fail-stripe makes reading stripe I fail (SERVER_ERROR), as a failing disk
would.
"""

import argparse
import os
import signal
import socket
import socketserver
import struct
import sys
import threading

SECTOR = 512
MAGIC = b"BDEV_UBI\x00"
FETCHED, WRITTEN, HAS_SOURCE = 0x01, 0x02, 0x04
OK, INVALID_STRIPE, NO_DATA, NOT_FETCHED = 0x00, 0x01, 0x02, 0x03
INVALID_COMMAND, SERVER_ERROR = 0xFE, 0xFF
OP_METADATA, OP_READ_STRIPE = 0x00, 0x01
DEFAULT_SHIFT = 11


class StartupError(Exception):
    pass


def blob_for(shift, headers):
    """The metadata blob: 512-byte header sector, then one byte per stripe."""
    head = MAGIC + struct.pack("<HHB", 1, 0, shift)
    return head + bytes(SECTOR - len(head)) + bytes(headers)


def load_metadata_file(path):
    """(shift, headers) of a ubiblk v1 metadata file, padded headers kept."""
    with open(path, "rb") as f:
        data = f.read()
    data = data[:len(data) // SECTOR * SECTOR]
    if len(data) < SECTOR:
        raise StartupError(f"metadata file {path} is shorter than one sector")
    if data[:9] != MAGIC:
        raise StartupError("Invalid metadata magic")
    major, minor, shift = struct.unpack_from("<HHB", data, 9)
    if (major, minor) != (1, 0):
        raise StartupError(f"Unsupported metadata version {major}.{minor}")
    headers = data[SECTOR:]
    for h in headers:
        if h & HAS_SOURCE and not h & FETCHED:
            raise StartupError("Not all source stripes have been fetched.")
    return shift, headers


class Disk:
    def __init__(self, data_path, metadata_path, fail_stripes):
        self.fd = os.open(data_path, os.O_RDONLY)
        size = os.fstat(self.fd).st_size
        if metadata_path:
            self.shift, self.headers = load_metadata_file(metadata_path)
        else:
            self.shift = DEFAULT_SHIFT
            stripe_sectors = 1 << DEFAULT_SHIFT
            sectors = size // SECTOR
            count = (sectors + stripe_sectors - 1) // stripe_sectors
            self.headers = bytes([FETCHED | WRITTEN | HAS_SOURCE]) * count
        self.stripe_bytes = SECTOR << self.shift
        self.fail_stripes = set(fail_stripes)
        self.blob = blob_for(self.shift, self.headers)

    def read_stripe(self, index):
        if index in self.fail_stripes:
            raise OSError("injected read failure")
        data = os.pread(self.fd, self.stripe_bytes, index * self.stripe_bytes)
        return data + bytes(self.stripe_bytes - len(data))

    def reply_read_stripe(self, index):
        if index >= len(self.headers):
            return bytes([INVALID_STRIPE])
        h = self.headers[index]
        if h & HAS_SOURCE and not h & FETCHED:
            return bytes([NOT_FETCHED])
        if not (h & WRITTEN or (h & HAS_SOURCE and h & FETCHED)):
            return bytes([NO_DATA])
        try:
            data = self.read_stripe(index)
        except OSError:
            return bytes([SERVER_ERROR])
        return bytes([OK]) + struct.pack("<Q", self.stripe_bytes) + data

    def reply_metadata(self):
        return bytes([OK]) + struct.pack("<Q", len(self.blob)) + self.blob


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        peer = "%s:%d" % self.client_address[:2]
        log(f"accepted connection from {peer}")
        disk = self.server.disk
        sock = self.request
        try:
            while True:
                op = recv_exact(sock, 1)[0]
                if op == OP_METADATA:
                    sock.sendall(disk.reply_metadata())
                elif op == OP_READ_STRIPE:
                    (index,) = struct.unpack("<Q", recv_exact(sock, 8))
                    sock.sendall(disk.reply_read_stripe(index))
                else:
                    sock.sendall(bytes([INVALID_COMMAND]))
        except (EOFError, ConnectionResetError, BrokenPipeError):
            log(f"client {peer} disconnected")
        except OSError as e:
            log(f"client {peer}: {e}")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    p = argparse.ArgumentParser(description="a ubiblk-0.4-style stripe server (plain TCP)")
    p.add_argument("--data", required=True, help="the data file served")
    p.add_argument("--metadata", help="a ubiblk v1 metadata file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fail-stripe", type=int, action="append", default=[],
                   help="reading this stripe fails (SERVER_ERROR)")
    args = p.parse_args(argv)
    try:
        disk = Disk(args.data, args.metadata, args.fail_stripe)
    except (OSError, StartupError) as e:
        log(f"error: {e}")
        return 1
    server = Server((args.host, args.port), Handler)
    server.disk = disk
    host, port = server.server_address[:2]
    log(f"listening on {host}:{port}")
    print(f"port {port}", flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
