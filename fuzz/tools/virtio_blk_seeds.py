#!/usr/bin/env python3
"""Writes the seed corpus of the virtio-blk-requests fuzz target.

    fuzz/tools/virtio_blk_seeds.py fuzz/corpus/virtio-blk-requests

Each seed is a well-formed or deliberately hostile guest ring, in the input
format described in fuzz/targets/virtio_blk_requests.c: the chains of
tests/unit/vhost/test_blk_request.c and test_virtqueue.c and the hostile
chains of tests/integration/test_vhost_protocol.py.
"""
import os
import struct
import sys

T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
HOLE = 0xC000  # between region 1 (ends at 48K) and region 2 (64K)


class Ring:
    def __init__(self, log2_num=3, event_idx=False, read_only=False, capacity_4k=256,
                 max_shift=8):
        self.num = 1 << log2_num
        self.setup = bytearray(8)
        self.setup[0] = log2_num
        self.setup[1] = (1 if event_idx else 0) | (2 if read_only else 0)
        self.setup[4:6] = struct.pack('<H', capacity_4k)
        self.setup[6] = max_shift  # 512 << 8 = 128 KiB
        self.mem = bytearray(0x1000)
        self.avail = 16 * self.num
        self.used = (self.avail + 6 + 2 * self.num + 3) & ~3
        self.heads = []
        self.next_desc = 0

    def poke(self, gpa, data):
        if gpa + len(data) > len(self.mem):
            self.mem.extend(bytes(gpa + len(data) - len(self.mem)))
        self.mem[gpa:gpa + len(data)] = data

    def desc(self, table, index, addr, length, flags, nxt=0):
        self.poke(table + 16 * index, struct.pack('<QIHH', addr, length, flags, nxt))

    def chain(self, bufs):
        """bufs: (addr, len, flags); linked with NEXT in ring descriptors."""
        head = self.next_desc
        for i, (addr, length, flags) in enumerate(bufs):
            last = i == len(bufs) - 1
            self.desc(0, head + i, addr, length, flags | (0 if last else F_NEXT), head + i + 1)
        self.next_desc += len(bufs)
        return head

    def indirect(self, table, bufs):
        for i, (addr, length, flags) in enumerate(bufs):
            last = i == len(bufs) - 1
            self.desc(table, i, addr, length, flags | (0 if last else F_NEXT), i + 1)
        return self.chain([(table, 16 * len(bufs), F_INDIRECT)])

    def put(self, head):
        self.heads.append(head)

    def header(self, gpa, rtype, sector):
        self.poke(gpa, struct.pack('<IIQ', rtype, 0, sector))
        return gpa

    def encode(self, published=None):
        for i, head in enumerate(self.heads):
            self.poke(self.avail + 4 + 2 * (i % self.num), struct.pack('<H', head))
        self.setup[3] = len(self.heads) if published is None else published
        # Memory past the image is zero: trailing zeros need not be stored.
        return bytes(self.setup) + bytes(self.mem).rstrip(b'\0')


def seeds():
    out = {}

    r = Ring()
    h = r.header(0x400, T_IN, 8)
    r.put(r.chain([(h, 16, 0), (0x2000, 4096, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['read-4k'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_OUT, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 1024, 0), (0x2400, 1024, 0), (0x3000, 1, F_WRITE)]))
    out['write-2-segments'] = r.encode()

    r = Ring(read_only=True)
    h = r.header(0x400, T_OUT, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 512, 0), (0x3000, 1, F_WRITE)]))
    out['write-read-only'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_FLUSH, 0)
    r.put(r.chain([(h, 16, 0), (0x3000, 1, F_WRITE)]))
    h = r.header(0x410, T_GET_ID, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 20, F_WRITE), (0x3001, 1, F_WRITE)]))
    out['flush-and-get-id'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_GET_ID, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 8, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['get-id-short'] = r.encode()

    for name, rtype, flags in (('discard', T_DISCARD, 0), ('write-zeroes-unmap', T_WRITE_ZEROES, 1),
                               ('discard-unmap', T_DISCARD, 1)):
        r = Ring()
        h = r.header(0x400, rtype, 0)
        r.poke(0x420, struct.pack('<QII', 16, 64, flags))
        r.put(r.chain([(h, 16, 0), (0x420, 16, 0), (0x3000, 1, F_WRITE)]))
        out[name] = r.encode()

    # Header, data and status in one writable/readable pair (any framing).
    r = Ring()
    h = r.header(0x400, T_OUT, 0)
    r.put(r.chain([(h, 16 + 512, 0), (0x3000, 1, F_WRITE)]))
    h = r.header(0x800, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 513, F_WRITE)]))
    out['any-framing'] = r.encode()

    # A header split across two descriptors.
    r = Ring()
    r.header(0x400, T_IN, 0)
    r.put(r.chain([(0x400, 7, 0), (0x407, 9, 0), (0x2000, 512, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['split-header'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.indirect(0x600, [(h, 16, 0), (0x2000, 4096, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['indirect-read'] = r.encode()

    # An indirect table inside an indirect table.
    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.desc(0x600, 0, h, 16, F_NEXT, 1)
    r.desc(0x600, 1, 0x700, 32, F_INDIRECT)
    r.desc(0x700, 0, 0x3000, 1, F_WRITE)
    r.put(r.chain([(0x600, 32, F_INDIRECT)]))
    out['indirect-nested'] = r.encode()

    # An indirect table of a length that is not a whole number of descriptors.
    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.desc(0x600, 0, h, 16, 0)
    r.put(r.chain([(0x600, 24, F_INDIRECT)]))
    out['indirect-bad-length'] = r.encode()

    # An indirect table in the hole between regions.
    r = Ring()
    r.put(r.chain([(HOLE, 48, F_INDIRECT)]))
    out['indirect-unmapped'] = r.encode()

    # A loop: 0 -> 1 -> 0.
    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.desc(0, 0, h, 16, F_NEXT, 1)
    r.desc(0, 1, 0x3000, 1, F_WRITE | F_NEXT, 0)
    r.next_desc = 2
    r.put(0)
    out['loop'] = r.encode()

    # A loop inside an indirect table.
    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.desc(0x600, 0, h, 16, F_NEXT, 1)
    r.desc(0x600, 1, 0x3000, 1, F_WRITE | F_NEXT, 0)
    r.put(r.chain([(0x600, 32, F_INDIRECT)]))
    out['indirect-loop'] = r.encode()

    # NEXT pointing past the table.
    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.desc(0, 0, h, 16, F_NEXT, 200)
    r.next_desc = 1
    r.put(0)
    out['next-out-of-range'] = r.encode()

    r = Ring()
    r.put(9)  # num is 8
    out['head-out-of-range'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_FLUSH, 0)
    r.put(r.chain([(h, 16, 0), (0x3000, 1, F_WRITE)]))
    out['avail-idx-too-far'] = r.encode(published=9)

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (HOLE - 256, 512, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['buffer-into-hole'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x8000 - 256, 512, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['buffer-spans-regions'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x10000, 4096, F_WRITE), (0x14000 - 1, 1, F_WRITE)]))
    out['buffer-in-last-region'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0xFFFFFFFFFFFFFF00, 512, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['buffer-address-wraps'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_OUT, 0)
    r.put(r.chain([(h, 16, 0), (0x3000, 1, F_WRITE), (0x2000, 512, 0)]))
    out['readable-after-writable'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 512, F_WRITE)]))
    r.put(r.chain([(h, 16, 0), (0x2000, 513, 0)]))
    out['status-missing'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 8, 0), (0x3000, 1, F_WRITE)]))
    out['header-short'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 500, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['read-not-sector-multiple'] = r.encode()

    r = Ring(capacity_4k=1)
    h = r.header(0x400, T_IN, 7)
    r.put(r.chain([(h, 16, 0), (0x2000, 1024, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['read-past-capacity'] = r.encode()

    r = Ring(max_shift=1)
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 4096, F_WRITE), (0x3000, 1, F_WRITE)]))
    out['read-over-max-size'] = r.encode()

    r = Ring()
    h = r.header(0x400, 99, 0)
    r.put(r.chain([(h, 16, 0), (0x3000, 1, F_WRITE)]))
    out['unknown-type'] = r.encode()

    r = Ring()
    h = r.header(0x400, T_IN, 0)
    r.put(r.chain([(h, 16, 0), (0x2000, 4096, 0), (0x3000, 1, F_WRITE)]))
    out['read-with-readable-data'] = r.encode()

    # Many descriptors of the same buffer: 1024 iovecs and beyond.
    r = Ring(log2_num=7, max_shift=16)
    h = r.header(0x1800, T_IN, 0)
    bufs = [(h, 16, 0)] + [(0x2000, 512, F_WRITE)] * 120 + [(0x3000, 1, F_WRITE)]
    r.put(r.chain(bufs))
    out['many-segments'] = r.encode()

    # Full ring of flushes with EVENT_IDX, starting at a wrapped index.
    r = Ring(log2_num=3, event_idx=True)
    for i in range(4):
        h = r.header(0x400 + 16 * i, T_FLUSH, 0)
        r.put(r.chain([(h, 16, 0), (0x3000 + i, 1, F_WRITE)]))
    r.setup[2] = 0xFE
    data = bytearray(r.encode())
    out['event-idx-wrapped'] = bytes(data)
    return out


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
