#!/usr/bin/env bash
# Build vhost-backend and ubiblk-bench and serve a default disk: a sparse
# 1 GiB file under state/ in the checkout (or $UBIBLK_STATE_DIR). Prints the
# socket path and commands that use it, then runs vhost-backend in the
# foreground, as this script's own process (exec), until Ctrl-C: SIGINT or
# SIGTERM to that pid stops it cleanly, so a caller can run it in the
# background too. Every command the hints name is built here, and the hints
# are tested (tests/scripts/test_run_default.py).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
state=$(realpath -m "${UBIBLK_STATE_DIR:-$top/state}")
cd "$top"

scripts/install-deps.sh run
# A build/ without build.ninja (an empty folder, or a setup that was cut
# short) is configured afresh; a configured one is only brought up to date.
if [ ! -f build/build.ninja ]; then
	wipe=()
	[ -d build/meson-private ] && wipe=(--wipe)
	meson setup "${wipe[@]}" build -Dtests=false >/dev/null
fi
ninja -C build src/bin/vhost-backend src/bin/ubiblk-bench >/dev/null

mkdir -p "$state"
disk="$state/disk.raw"
[ -e "$disk" ] || truncate -s 1G "$disk"
sock="$state/vhost.sock"
cat >"$state/config.yaml" <<YAML
path: "$disk"
socket: "$sock"
num_queues: 2
queue_size: 128
device_id: "ubiblk-default"
YAML

cat <<MSG
disk:   $disk (1 GiB, sparse)
config: $state/config.yaml
socket: $sock

Attach a QEMU guest (vhost-user needs shared guest memory):
  qemu-system-x86_64 -machine q35,accel=kvm:tcg -m 1G \\
    -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \\
    -chardev socket,id=vu0,path=$sock \\
    -device vhost-user-blk-pci,chardev=vu0,num-queues=2 \\
    ... your usual -drive/-kernel options for the boot disk ...
The guest sees the disk as /dev/vdX with serial "ubiblk-default".
A ready-made test guest (Debian's kernel, your root filesystem read-only;
needs the test packages: scripts/install-deps.sh test):
  $top/tests/guest/run_guest.py --socket $sock --interactive
Or measure it: $top/build/src/bin/ubiblk-bench --socket $sock --mode randread --runtime 5

MSG
exec build/src/bin/vhost-backend -f "$state/config.yaml"
