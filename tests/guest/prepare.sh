#!/bin/sh
# Build the guest used by the real-guest tests: a Debian kernel and a small
# initramfs (busybox-static, a few modules, tests/guest/init.sh as /init).
#
# Idempotent and cached: a second run only checks a stamp and prints the
# paths. Rebuilds when this script, init.sh or busybox change.
#
#   UBIBLK_GUEST_CACHE   cache folder (default /var/cache/ubiblk-guest, or
#                        ~/.cache/ubiblk-guest when that is not writable)
#   UBIBLK_GUEST_KVER    kernel ABI (default 6.12.117+deb12-amd64); the
#                        package is linux-image-$UBIBLK_GUEST_KVER
#
# Output (stdout, last two lines):
#   KERNEL=<cache>/vmlinuz
#   INITRD=<cache>/initramfs.cpio.gz
set -eu

KVER=${UBIBLK_GUEST_KVER:-6.12.117+deb12-amd64}
KPKG=linux-image-$KVER
# Modules the guest loads at boot, in any order; their dependencies are
# resolved with modules.dep. virtio_pci is built into this kernel. ext4 and
# loop are for the ublk test and benchmark (a real filesystem under the disk
# file, and the loop device ublk is compared with); ext4 asks the crypto API
# for "crc32c" at mount time, which nothing would load for it here.
MODULES="virtio_blk virtio_pci 9pnet 9pnet_virtio netfs 9p ublk_drv ext4 crc32c_generic loop"

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${UBIBLK_GUEST_CACHE:-/var/cache/ubiblk-guest}
if [ -z "${UBIBLK_GUEST_CACHE:-}" ] && ! { mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ]; }; then
	CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ubiblk-guest
fi
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { echo "prepare.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# Serialise concurrent runs (two test suites preparing at once).
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then
	flock -w 600 9 || die "could not lock $CACHE/.lock within 600 s"
fi

# Host packages: the guest chroots into the host root, so what the tests run
# in the guest (fio, blkdiscard, cmp, sha256sum; mkfs.ext4 and losetup for
# the ublk test and benchmark) must be installed here.
need_pkgs=""
need() { # need <command> <package>
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ||
		need_pkgs="$need_pkgs $2"
}
need qemu-system-x86_64 qemu-system-x86
need qemu-storage-daemon qemu-system-common
need cpio cpio
need fio fio
need xz xz-utils
need zstd zstd
need depmod kmod
need blkdiscard util-linux
need sha256sum coreutils
need mkfs.ext4 e2fsprogs
need losetup util-linux
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod && ldd /bin/busybox 2>&1 |
	grep -q "not a dynamic" || need_pkgs="$need_pkgs busybox-static"
if [ -n "$need_pkgs" ]; then
	log "installing:$need_pkgs"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	$SUDO apt-get install -y --no-install-recommends $need_pkgs >&2 ||
		{ $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends $need_pkgs >&2; } ||
		die "apt-get install$need_pkgs failed"
fi

STAMP_WANT=$(cat "$0" "$HERE/init.sh" /bin/busybox | sha256sum | cut -d' ' -f1)-$KVER
if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$STAMP_WANT" ] &&
	[ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initramfs.cpio.gz" ]; then
	log "cached in $CACHE"
	echo "KERNEL=$CACHE/vmlinuz"
	echo "INITRD=$CACHE/initramfs.cpio.gz"
	exit 0
fi

# 1. The kernel package.
deb=$(ls "$CACHE"/"${KPKG}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
	log "downloading $KPKG"
	# apt-get download writes to the current folder; as root it warns that
	# _apt cannot write there, which is harmless.
	(cd "$CACHE" && apt-get download "$KPKG" >&2) ||
		{ $SUDO apt-get update >&2 && (cd "$CACHE" && apt-get download "$KPKG" >&2); } ||
		die "apt-get download $KPKG failed"
	deb=$(ls "$CACHE"/"${KPKG}"_*.deb | head -n1)
fi

WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

log "extracting $(basename "$deb")"
mkdir "$WORK/pkg"
dpkg-deb -x "$deb" "$WORK/pkg"
MODDIR=$WORK/pkg/lib/modules/$KVER
[ -f "$WORK/pkg/boot/vmlinuz-$KVER" ] || die "no vmlinuz in $deb"
[ -d "$MODDIR" ] || die "no modules in $deb"
# The package ships no modules.dep (the postinst makes it); make it here.
depmod -b "$WORK/pkg" "$KVER" || die "depmod failed"

# 2. Resolve module dependencies into a load order (dependencies first).
ORDER=$WORK/order
: >"$ORDER"
builtin_mod() { grep -q "/$1\.ko\$" "$MODDIR/modules.builtin"; }
find_mod() { # print the modules.dep key of a module name (- and _ are equal)
	n=$(echo "$1" | sed 's/[-_]/[-_]/g')
	grep -E -o "^([^:]*/)?$n\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" | head -n1 | tr -d :
}
add_mod() { # add_mod <modules.dep key>
	grep -qxF "$1" "$ORDER" && return 0
	for d in $(grep -E "^$1:" "$MODDIR/modules.dep" | cut -d: -f2); do
		add_mod "$d"
	done
	echo "$1" >>"$ORDER"
}
for m in $MODULES; do
	key=$(find_mod "$m")
	if [ -n "$key" ]; then
		add_mod "$key"
	elif builtin_mod "$(echo "$m" | tr - _)" || builtin_mod "$(echo "$m" | tr _ -)"; then
		log "$m is built in"
	else
		die "module $m not found in $KPKG"
	fi
done

# 3. The initramfs tree.
ROOT=$WORK/root
mkdir -p "$ROOT/bin" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys" "$ROOT/host" "$ROOT/lib/modules"
cp /bin/busybox "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"
cp "$HERE/init.sh" "$ROOT/init"
chmod 755 "$ROOT/init"
: >"$ROOT/lib/modules/load.list"
while read -r key; do
	name=$(basename "$key")
	case "$name" in
	*.ko.xz) xz -dc "$MODDIR/$key" >"$ROOT/lib/modules/${name%.xz}" ;;
	*.ko.zst) zstd -qdc "$MODDIR/$key" >"$ROOT/lib/modules/${name%.zst}" ;;
	*.ko.gz) gzip -dc "$MODDIR/$key" >"$ROOT/lib/modules/${name%.gz}" ;;
	*.ko) cp "$MODDIR/$key" "$ROOT/lib/modules/$name" ;;
	esac
	name=${name%.xz}
	name=${name%.zst}
	echo "${name%.gz}" >>"$ROOT/lib/modules/load.list"
done <"$ORDER"
log "modules: $(tr '\n' ' ' <"$ROOT/lib/modules/load.list")"
echo "$KVER" >"$ROOT/kernel-version"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 >"$WORK/initramfs.cpio.gz"
cp "$WORK/pkg/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

mv -f "$WORK/vmlinuz" "$CACHE/vmlinuz"
mv -f "$WORK/initramfs.cpio.gz" "$CACHE/initramfs.cpio.gz"
echo "$STAMP_WANT" >"$CACHE/stamp"
log "built in $CACHE"
echo "KERNEL=$CACHE/vmlinuz"
echo "INITRD=$CACHE/initramfs.cpio.gz"
