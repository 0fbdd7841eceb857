#!/usr/bin/env bash
# Install the Debian 12 packages a purpose needs, only if some are missing.
#   scripts/install-deps.sh run    build and run vhost-backend
#   scripts/install-deps.sh test   build and run the whole test suite
#   scripts/install-deps.sh bench  run the benchmark
#   scripts/install-deps.sh deb    build and check the Debian package (scripts/build-deb.sh)
set -euo pipefail

build=(meson ninja-build pkg-config gcc libc6-dev liburing-dev libyaml-dev libssl-dev libgcrypt20-dev libedit-dev libjansson-dev
	libsnappy-dev libcurl4-openssl-dev scdoc)
# dpkg-buildpackage checks debian/control's Build-Depends and build-essential.
deb=(debhelper dpkg-dev build-essential lintian)
case "${1:-run}" in
run) want=("${build[@]}") ;;
test) want=("${build[@]}" libcmocka-dev libjansson-dev python3 clang-format man-db fio util-linux tmux
	qemu-system-x86 qemu-utils busybox-static cpio xz-utils kmod python3-cryptography e2fsprogs
	openssl python3-snappy swift-proxy swift-account swift-container swift-object memcached awscli
	python3-botocore clang libclang-rt-14-dev stress-ng python3-prometheus-client systemd) ;;
bench) want=("${build[@]}" python3 fio qemu-utils nbdkit libnbd-bin swift-proxy swift-account
	swift-container swift-object memcached awscli stress-ng) ;;
deb) want=("${build[@]}" "${deb[@]}") ;;
*) echo "usage: $0 run|test|bench|deb" >&2; exit 2 ;;
esac
# The test command builds the package too (tests/scripts/test_package.py).
[ "${1:-run}" != test ] || want+=("${deb[@]}")

missing=()
for pkg in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
