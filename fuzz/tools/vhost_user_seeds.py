#!/usr/bin/env python3
"""Writes the seed corpus of the vhost-user-messages fuzz target.

    fuzz/tools/vhost_user_seeds.py fuzz/corpus/vhost-user-messages

Each seed is a front end's conversation in the input format described in
fuzz/targets/vhost_user_messages.c: QEMU's and cloud-hypervisor's handshakes
(tests/integration/test_vhost_protocol.py handshake()), and the mistakes of
tests/unit/vhost_control/test_control.c and test_message_io.c.
"""
import os
import struct
import sys

(GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_LOG_BASE, SET_LOG_FD,
 SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL,
 SET_VRING_ERR, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM,
 SET_VRING_ENABLE) = range(1, 19)
GET_CONFIG, SET_CONFIG = 24, 25
GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG = 36, 37, 38
SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE = 42, 43

FEATURES = 0x170007E46
PROTOCOL_FEATURES = 0x8209
F_PROTOCOL_FEATURES = 1 << 30
VERSION, NEED_REPLY = 1, 8
NOFD = 1 << 8

# fds byte: index into the target's fd_counts table | kind << 4.
NO_FDS, ONE, TWO, EIGHT, THIRTY_TWO, THIRTY_THREE = 0, 1, 5, 10, 14, 15
MEMFD, EVENTFD, PIPE = 0, 2, 3
RAM_PAGES = 16            # 64 KiB memfd
RAM_SIZE = RAM_PAGES * 4096
RAM_GPA = 0x40000000
RAM_VA = 0x7F0000000000


def device(queues=2, size_shift=2):
    """queues 1-4, queue size 16 << size_shift."""
    return bytes([(queues - 1) | size_shift << 2])


def msg(request, payload=b'', fds=NO_FDS, kind=MEMFD, pages=RAM_PAGES, flags=VERSION, size=None):
    if size is None:
        size = len(payload)
    return bytes([fds | kind << 4, pages]) + struct.pack('<III', request, flags, size) + payload


def u64(request, value, **kw):
    return msg(request, struct.pack('<Q', value), **kw)


def state(request, index, num, **kw):
    return msg(request, struct.pack('<II', index, num), **kw)


def region(gpa=RAM_GPA, size=RAM_SIZE, va=RAM_VA, offset=0):
    return struct.pack('<QQQQ', gpa, size, va, offset)


def mem_table(regions, fds=None, **kw):
    payload = struct.pack('<II', len(regions), 0) + b''.join(regions)
    return msg(SET_MEM_TABLE, payload, fds=ONE if fds is None else fds, **kw)


def vring_addr(index, desc, used, avail, flags=0):
    return msg(SET_VRING_ADDR, struct.pack('<IIQQQQ', index, flags, desc, used, avail, 0))


def config(request, offset=0, size=60, flags=0, data=None):
    payload = struct.pack('<III', offset, size, flags)
    payload += bytes(size) if data is None else data
    return msg(request, payload)


def negotiate(features=FEATURES, protocol=PROTOCOL_FEATURES):
    return (msg(SET_OWNER) + msg(GET_FEATURES) + msg(GET_PROTOCOL_FEATURES) +
            u64(SET_PROTOCOL_FEATURES, protocol) + u64(SET_FEATURES, features))


def ring_setup(index, base=0, num=32, offset=0):
    desc = RAM_VA + offset
    avail = desc + 16 * num
    used = (avail + 6 + 2 * num + 3) & ~3
    return (state(SET_VRING_NUM, index, num) + state(SET_VRING_BASE, index, base) +
            vring_addr(index, desc, used, avail) +
            u64(SET_VRING_KICK, index, fds=ONE, kind=EVENTFD) +
            u64(SET_VRING_CALL, index, fds=ONE, kind=EVENTFD) +
            state(SET_VRING_ENABLE, index, 1))


def seeds():
    out = {}
    qemu = (negotiate() + msg(GET_QUEUE_NUM) + config(GET_CONFIG) + msg(GET_MAX_MEM_SLOTS) +
            mem_table([region()]) + ring_setup(0) + ring_setup(1, offset=0x4000) +
            state(GET_VRING_BASE, 0, 0) + state(GET_VRING_BASE, 1, 0))
    out['qemu-handshake'] = device() + qemu
    # cloud-hypervisor reads the config at 0x100 and adds regions one by one.
    out['cloud-hypervisor-handshake'] = device(queues=1) + (
        negotiate() + config(GET_CONFIG, offset=0x100, size=60) +
        msg(ADD_MEM_REG, bytes(8) + region(), fds=ONE) + ring_setup(0) +
        state(GET_VRING_BASE, 0, 0))
    out['restart-ring'] = device(queues=1) + (
        negotiate() + mem_table([region()]) + ring_setup(0, base=5) +
        state(GET_VRING_BASE, 0, 0) + ring_setup(0, base=7))
    out['new-table-while-running'] = device(queues=1) + (
        negotiate() + mem_table([region()]) + ring_setup(0) +
        mem_table([region(gpa=0, va=0x1000000)]) + state(GET_VRING_BASE, 0, 0))
    out['remove-region-while-running'] = device(queues=1) + (
        negotiate() + msg(ADD_MEM_REG, bytes(8) + region(), fds=ONE) + ring_setup(0) +
        msg(REM_MEM_REG, bytes(8) + region()) + state(GET_VRING_BASE, 0, 0))
    out['reply-ack'] = device() + (
        negotiate() + msg(SET_OWNER, flags=VERSION | NEED_REPLY) +
        u64(SET_FEATURES, FEATURES, flags=VERSION | NEED_REPLY) +
        u64(SET_FEATURES, 1, flags=VERSION | NEED_REPLY))
    out['reset-owner'] = device() + (negotiate() + msg(RESET_OWNER) + negotiate())
    out['no-protocol-features'] = device() + (
        msg(SET_OWNER) + u64(SET_FEATURES, FEATURES & ~F_PROTOCOL_FEATURES) +
        mem_table([region()]) + ring_setup(0))
    out['unoffered-feature'] = device() + msg(SET_OWNER) + u64(SET_FEATURES, 1)
    out['unoffered-protocol-feature'] = device() + (
        msg(SET_OWNER) + u64(SET_FEATURES, FEATURES) + u64(SET_PROTOCOL_FEATURES, 2))
    out['queue-num-without-mq'] = device() + negotiate(protocol=0) + msg(GET_QUEUE_NUM)
    out['config-without-feature'] = device() + negotiate(protocol=0) + config(GET_CONFIG)
    out['config-sizes'] = device() + negotiate() + (
        config(GET_CONFIG, size=4) + config(GET_CONFIG, size=256) +
        config(SET_CONFIG, offset=0x20, size=1, flags=1))
    out['config-bad-range'] = device() + negotiate() + config(GET_CONFIG, offset=4090, size=60)
    out['config-size-mismatch'] = device() + negotiate() + msg(
        GET_CONFIG, struct.pack('<III', 0, 60, 0) + bytes(10))
    out['mem-table-two-regions'] = device() + negotiate() + mem_table(
        [region(), region(gpa=0, va=0x1000000, offset=0x8000, size=0x8000)], fds=TWO)
    out['mem-table-overlap'] = device() + negotiate() + mem_table(
        [region(), region(gpa=RAM_GPA + 0x1000, va=0x1000000)], fds=TWO)
    out['mem-table-past-end-of-memfd'] = device() + negotiate() + mem_table(
        [region(size=RAM_SIZE * 2)])
    out['mem-table-offset-past-end'] = device() + negotiate() + mem_table(
        [region(offset=RAM_SIZE - 0x1000)])
    out['mem-table-zero-size'] = device() + negotiate() + mem_table([region(size=0)])
    out['mem-table-overflow'] = device() + negotiate() + mem_table(
        [region(gpa=0xFFFFFFFFFFFFF000)])
    out['mem-table-fd-count-mismatch'] = device() + negotiate() + mem_table(
        [region()], fds=TWO)
    out['mem-table-eventfd'] = device() + negotiate() + mem_table([region()], kind=EVENTFD)
    out['mem-table-32-regions'] = device() + negotiate() + mem_table(
        [region(gpa=i * 0x10000, va=0x1000000 + i * 0x10000, size=0x1000) for i in range(32)],
        fds=THIRTY_TWO, pages=1)
    out['too-many-fds'] = device() + negotiate() + mem_table([region()], fds=THIRTY_THREE,
                                                              kind=EVENTFD)
    out['fds-on-get-features'] = device() + msg(GET_FEATURES, fds=ONE, kind=EVENTFD)
    out['add-region-without-slots-feature'] = device() + negotiate(protocol=0) + msg(
        ADD_MEM_REG, bytes(8) + region(), fds=ONE)
    out['add-region-without-fd'] = device() + negotiate() + msg(ADD_MEM_REG, bytes(8) + region())
    out['add-overlapping-region'] = device() + negotiate() + (
        msg(ADD_MEM_REG, bytes(8) + region(), fds=ONE) +
        msg(ADD_MEM_REG, bytes(8) + region(gpa=RAM_GPA + 0x1000, va=0x1000000), fds=ONE))
    out['remove-unknown-region'] = device() + negotiate() + msg(
        REM_MEM_REG, bytes(8) + region(), fds=ONE)
    out['vring-index-out-of-range'] = device() + negotiate() + state(SET_VRING_NUM, 2, 32)
    out['vring-kick-index-out-of-range'] = device() + negotiate() + u64(
        SET_VRING_KICK, 7, fds=ONE, kind=EVENTFD)
    out['vring-num-not-power-of-two'] = device() + negotiate() + state(SET_VRING_NUM, 0, 24)
    out['vring-num-over-queue-size'] = device() + negotiate() + state(SET_VRING_NUM, 0, 1024)
    out['vring-base-over-16-bits'] = device() + negotiate() + state(SET_VRING_BASE, 0, 0x10000)
    out['vring-kick-nofd'] = device() + negotiate() + mem_table([region()]) + (
        state(SET_VRING_NUM, 0, 16) +
        vring_addr(0, RAM_VA, RAM_VA + 0x200, RAM_VA + 0x100) + u64(SET_VRING_KICK, NOFD) +
        u64(SET_VRING_CALL, NOFD) + u64(SET_VRING_ERR, 0, fds=ONE, kind=EVENTFD) +
        state(GET_VRING_BASE, 0, 0))
    out['vring-kick-fd-with-nofd-bit'] = device() + negotiate() + u64(
        SET_VRING_KICK, NOFD, fds=ONE, kind=EVENTFD)
    out['vring-kick-unknown-bits'] = device() + negotiate() + u64(SET_VRING_CALL, 1 << 20)
    out['vring-kick-pipe'] = device() + negotiate() + mem_table([region()]) + (
        state(SET_VRING_NUM, 0, 16) +
        vring_addr(0, RAM_VA, RAM_VA + 0x200, RAM_VA + 0x100) +
        u64(SET_VRING_KICK, 0, fds=ONE, kind=PIPE) + state(GET_VRING_BASE, 0, 0))
    out['vring-addr-before-memory'] = device() + negotiate() + vring_addr(
        0, RAM_VA, RAM_VA + 0x200, RAM_VA + 0x100)
    out['vring-addr-misaligned'] = device() + negotiate() + mem_table([region()]) + vring_addr(
        0, RAM_VA + 8, RAM_VA + 0x200, RAM_VA + 0x100)
    out['vring-addr-unmapped'] = device() + negotiate() + mem_table([region()]) + vring_addr(
        0, RAM_VA, RAM_VA + RAM_SIZE, RAM_VA + 0x100)
    out['vring-addr-ring-past-region'] = device() + negotiate() + mem_table([region()]) + (
        state(SET_VRING_NUM, 0, 128) +
        vring_addr(0, RAM_VA + RAM_SIZE - 16, RAM_VA, RAM_VA + 0x100) +
        u64(SET_VRING_KICK, 0, fds=ONE, kind=EVENTFD))
    out['vring-addr-unknown-flags'] = device() + negotiate() + mem_table([region()]) + vring_addr(
        0, RAM_VA, RAM_VA + 0x200, RAM_VA + 0x100, flags=2)
    out['vring-set-while-running'] = device(queues=1) + negotiate() + mem_table([region()]) + (
        ring_setup(0) + state(SET_VRING_NUM, 0, 16))
    out['vring-enable-without-protocol-features'] = device() + (
        msg(SET_OWNER) + u64(SET_FEATURES, FEATURES & ~F_PROTOCOL_FEATURES) +
        state(SET_VRING_ENABLE, 0, 1))
    out['vring-enable-bad-value'] = device() + negotiate() + state(SET_VRING_ENABLE, 0, 2)
    out['device-state'] = device() + negotiate() + (
        state(SET_DEVICE_STATE_FD, 0, 0, fds=ONE, kind=PIPE) + msg(CHECK_DEVICE_STATE))
    out['log-base'] = device() + negotiate() + msg(SET_LOG_BASE, bytes(16), fds=ONE)
    out['log-fd'] = device() + negotiate() + u64(SET_LOG_FD, 0, fds=ONE, kind=EVENTFD)
    out['unknown-request'] = device() + negotiate() + msg(99)
    out['bad-version'] = device() + msg(GET_FEATURES, flags=2)
    out['reply-flag-on-request'] = device() + msg(GET_FEATURES, flags=VERSION | 4)
    out['unknown-flag-bits'] = device() + msg(GET_FEATURES, flags=VERSION | 0x100)
    out['oversized-payload'] = device() + msg(SET_CONFIG, size=4097)
    out['fixed-size-mismatch'] = device() + msg(SET_FEATURES, bytes(4))
    out['truncated-payload'] = device() + negotiate() + msg(SET_MEM_TABLE, bytes(20), size=200)
    out['truncated-header'] = device() + msg(SET_OWNER) + bytes([0, 0, 3, 0, 0])
    return out


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(folder, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
