#!/usr/bin/env python3
"""Send one ublk control command from outside the backend, the way an
administrator's `ublk del N` would: run in the test guest (the host has no
ublk driver) to delete a device under a running ublk-backend.

    ublk_ctl.py del DEV_ID     UBLK_U_CMD_DEL_DEV
    ublk_ctl.py stop DEV_ID    UBLK_U_CMD_STOP_DEV

Control commands are io_uring URING_CMDs on /dev/ublk-control (there is no
ioctl), and Debian 12 packages no tool that sends them, so this speaks
io_uring through raw syscalls (standard library only). Prints the result;
exit 0 when the kernel answered 0, 1 otherwise. DEL_DEV returns only once the
backend has closed /dev/ublkcN: run it under `timeout`."""

import ctypes
import mmap
import os
import struct
import sys

SYS_IO_URING_SETUP = 425
SYS_IO_URING_ENTER = 426
IORING_SETUP_SQE128 = 1 << 10      # ublk control commands need the big SQE ...
IORING_SETUP_CQE32 = 1 << 11       # ... and CQE
IORING_ENTER_GETEVENTS = 1
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_FEAT_SINGLE_MMAP = 1
IORING_OP_URING_CMD = 46
SQE_SIZE, CQE_SIZE = 128, 32

CTRL_CMD = struct.Struct("<IHHQQHHI")    # struct ublksrv_ctrl_cmd, 32 bytes
COMMANDS = {"del": 0x05, "stop": 0x07}   # UBLK_CMD_DEL_DEV, UBLK_CMD_STOP_DEV


def ublk_u_cmd(nr):
    """_IOWR('u', nr, struct ublksrv_ctrl_cmd): the ioctl-encoded opcode."""
    return (3 << 30) | (CTRL_CMD.size << 16) | (ord("u") << 8) | nr


class Params(ctypes.Structure):     # struct io_uring_params
    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("sq_thread_cpu", ctypes.c_uint32),
                ("sq_thread_idle", ctypes.c_uint32), ("features", ctypes.c_uint32),
                ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", ctypes.c_uint32 * 10),   # head tail mask entries flags dropped
                ("cq_off", ctypes.c_uint32 * 10)]   # array resv1 user_addr(2) / cq: ... cqes


def u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    name, dev_id = sys.argv[1], int(sys.argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    p = Params(flags=IORING_SETUP_SQE128 | IORING_SETUP_CQE32)
    ring_fd = libc.syscall(SYS_IO_URING_SETUP, 4, ctypes.byref(p))
    if ring_fd < 0:
        sys.exit(f"io_uring_setup: {os.strerror(ctypes.get_errno())}")
    sq_head, sq_tail, sq_mask, _, _, _, sq_array = p.sq_off[:7]
    cq_head, cq_tail, cq_mask, _, _, cqes = p.cq_off[:6]
    sq_len = sq_array + p.sq_entries * 4
    cq_len = cqes + p.cq_entries * CQE_SIZE
    if p.features & IORING_FEAT_SINGLE_MMAP:
        sq_len = cq_len = max(sq_len, cq_len)
    sq = mmap.mmap(ring_fd, sq_len, offset=IORING_OFF_SQ_RING)
    cq = sq if p.features & IORING_FEAT_SINGLE_MMAP else mmap.mmap(
        ring_fd, cq_len, offset=IORING_OFF_CQ_RING)
    sqes = mmap.mmap(ring_fd, p.sq_entries * SQE_SIZE, offset=IORING_OFF_SQES)

    ctl = os.open("/dev/ublk-control", os.O_RDWR)
    # One SQE: URING_CMD on the control device; cmd_op at 8, the command
    # (struct ublksrv_ctrl_cmd, queue_id -1) in the SQE's cmd area at 48.
    tail = u32(sq, sq_tail)
    idx = tail & u32(sq, sq_mask)
    sqe = bytearray(SQE_SIZE)
    struct.pack_into("<BBHiI", sqe, 0, IORING_OP_URING_CMD, 0, 0, ctl, ublk_u_cmd(COMMANDS[name]))
    struct.pack_into("<Q", sqe, 32, 0x75626c6b)              # user_data
    CTRL_CMD.pack_into(sqe, 48, dev_id, 0xFFFF, 0, 0, 0, 0, 0, 0)
    sqes[idx * SQE_SIZE:(idx + 1) * SQE_SIZE] = bytes(sqe)
    struct.pack_into("<I", sq, sq_array + idx * 4, idx)
    struct.pack_into("<I", sq, sq_tail, tail + 1)
    n = libc.syscall(SYS_IO_URING_ENTER, ring_fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0)
    if n < 0:
        sys.exit(f"io_uring_enter: {os.strerror(ctypes.get_errno())}")
    head = u32(cq, cq_head)
    if head == u32(cq, cq_tail):
        sys.exit("no completion")
    off = cqes + (head & u32(cq, cq_mask)) * CQE_SIZE
    _, res = struct.unpack_from("<Qi", cq, off)
    struct.pack_into("<I", cq, cq_head, head + 1)
    print(f"ublk {name} {dev_id}: {res} ({os.strerror(-res) if res < 0 else 'ok'})")
    return 0 if res == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
