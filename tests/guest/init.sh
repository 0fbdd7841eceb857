#!/bin/sh
# /init of the test guest (runs from the initramfs built by prepare.sh).
#
# Loads the modules, mounts the host root read-only over 9p (mount tag
# "hostroot") at /host, mounts /proc, /sys, /dev, /tmp and /run inside it and
# chroots there to run a test script, so the guest runs the host's binaries.
#
# Kernel command line:
#   ubiblk.script=PATH   script in the HOST filesystem, run with /bin/sh
#   ubiblk.shell=1       interactive shell in the chroot instead (or after)
#
# Console markers, each on its own line (parsed by run_guest.py):
#   @@UBIBLK-GUEST-READY
#   @@UBIBLK-GUEST-ERROR <message>
#   @@UBIBLK-GUEST-EXIT <status of the script>
# The script prints its own per-check markers. Then the guest powers off.

export PATH=/bin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
	echo "@@UBIBLK-GUEST-ERROR $*"
	sync
	poweroff -f
	sleep 10
}

for m in $(cat /lib/modules/load.list); do
	insmod "/lib/modules/$m" 2>/tmp-insmod.err || {
		# EEXIST (already loaded) is fine; anything else is not.
		grep -q "File exists" /tmp-insmod.err || fail "insmod $m: $(cat /tmp-insmod.err)"
	}
done

script=
shell=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	ubiblk.script=*) script=${arg#ubiblk.script=} ;;
	ubiblk.shell=1) shell=1 ;;
	esac
done

mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host ||
	fail "cannot mount the host root over 9p (mount tag hostroot)"

# Copy the script before /host/tmp is covered by a tmpfs (it may live there).
if [ -n "$script" ]; then
	cp "/host$script" /guest-script.sh 2>/dev/null || fail "cannot read script $script"
fi

mount -t proc proc /host/proc || fail "mount /host/proc"
mount -t sysfs sysfs /host/sys || fail "mount /host/sys"
mount -t devtmpfs devtmpfs /host/dev || fail "mount /host/dev"
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs tmpfs /host/dev/shm 2>/dev/null
mount -t tmpfs tmpfs /host/tmp || fail "mount /host/tmp"
mount -t tmpfs tmpfs /host/run || fail "mount /host/run"

export HOME=/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM="${TERM:-linux}"
echo "@@UBIBLK-GUEST-READY"
status=0
if [ -n "$script" ]; then
	cp /guest-script.sh /host/tmp/ubiblk-guest-script.sh
	chroot /host /bin/sh /tmp/ubiblk-guest-script.sh
	status=$?
fi
echo "@@UBIBLK-GUEST-EXIT $status"
if [ -n "$shell" ]; then
	echo "ubiblk guest: host root (read-only) chroot; exit the shell to power off"
	setsid cttyhack chroot /host /bin/bash -l || setsid cttyhack chroot /host /bin/sh
fi
sync
poweroff -f
sleep 10
