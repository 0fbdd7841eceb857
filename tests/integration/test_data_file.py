"""vhost-backend keeps serving the data file it opened: the file renamed and
another put under its name between two front-end connections changes
nothing for the next front end (capacity, data, writes), and the newcomer
is never touched. Raw vhost-user from Python (test_vhost_protocol's
client)."""

import hashlib
import os
import struct

import harness
import test_vhost_protocol as vp

DISK_SIZE = 8 << 20
REPLACEMENT_SIZE = 1 << 20
LAST_BLOCK = DISK_SIZE // 512 - 8   # the last 4 KiB, past the replacement's end


def pattern(seed):
    return bytes((i * 13 + seed) & 0xFF for i in range(4096))


def connect(socket_path, ram, base):
    """A front end with one ring at `base` in guest memory (a fresh place for
    each connection: the old ring's used index is still in memory)."""
    client = vp.VhostUserClient(socket_path)
    vp.handshake(client, ram, 1)
    ring = vp.SplitRing(ram, 0, base)
    ring.setup(client)
    return client, ring


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_renamed_and_replaced_data_file_still_served():
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with open(disk, "r+b") as f:
            f.seek(LAST_BLOCK * 512)
            f.write(pattern(1))
        ram = vp.GuestRam()
        with harness.VhostBackend(tmp, disk, num_queues=1) as be:
            client, ring = connect(be.socket, ram, 0)
            status, data = ring.request(vp.VIRTIO_BLK_T_IN, LAST_BLOCK, 4096, vp.DESC_F_WRITE)
            assert status == 0 and data == pattern(1)

            # While the first front end is connected, the file moves away and
            # a smaller one takes its name.
            moved = os.path.join(tmp, "disk.moved")
            os.rename(disk, moved)
            with open(disk, "wb") as f:
                f.write(bytes(REPLACEMENT_SIZE))
            replacement = digest(disk)
            client.close()
            ring.close()

            client, ring = connect(be.socket, ram, 0x20000)
            capacity = struct.unpack_from("<Q", client.get_config(8), 0)[0]
            assert capacity == DISK_SIZE // 512, f"capacity {capacity}"
            status, data = ring.request(vp.VIRTIO_BLK_T_IN, LAST_BLOCK, 4096, vp.DESC_F_WRITE)
            assert status == 0, f"read past the replacement's end: status {status}"
            assert data == pattern(1), "read another file's data"
            status, _ = ring.request(vp.VIRTIO_BLK_T_OUT, LAST_BLOCK, 4096, 0, pattern(2))
            assert status == 0, f"write: status {status}"
            status, _ = ring.request(vp.VIRTIO_BLK_T_OUT, 0, 4096, 0, pattern(3))
            assert status == 0, f"write: status {status}"
            client.close()
            ring.close()
            assert be.stop() == 0
        ram.close()

        assert os.path.getsize(disk) == REPLACEMENT_SIZE, "the replacement grew"
        assert digest(disk) == replacement, "the replacement was written to"
        assert os.path.getsize(moved) == DISK_SIZE
        with open(moved, "rb") as f:
            assert f.read(4096) == pattern(3)
            f.seek(LAST_BLOCK * 512)
            assert f.read(4096) == pattern(2)


if __name__ == "__main__":
    harness.main([
        test_renamed_and_replaced_data_file_still_served,
    ])
