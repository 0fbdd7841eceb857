#!/usr/bin/env bash
# Build the Debian package ubiblk (debian/) and check it with lintian.
#
#   scripts/build-deb.sh [OUTDIR]    (default OUTDIR: build-deb/ in the checkout)
#
# Builds from a clean copy of the tree in a temporary folder: the files git
# tracks plus untracked files that are not ignored, so local edits are in
# and the build-*/ folders of development builds are not. Runs
# `dpkg-buildpackage -us -uc -b` (log: OUTDIR/build.log), then lintian on
# the .deb (report: OUTDIR/lintian.txt); fails on any lintian error (E:).
# The last line printed is the path of the .deb.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build-deb}" && cd "${1:-$top/build-deb}" && pwd)

"$top/scripts/install-deps.sh" deb

work=$(mktemp -d "${TMPDIR:-/tmp}/ubiblk-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
src="$work/ubiblk-${version%-*}"
mkdir "$src"

# The clean copy. Outside a git checkout (a source tarball): everything but
# build folders.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			# A tracked file deleted in the work tree is not part of it.
			[ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
		done | tar --null -T - -cf -) | tar -xf - -C "$src"
else
	tar -C "$top" --exclude='./build*' --exclude='./state' -cf - . | tar -xf - -C "$src"
fi

# The upstream tarball debian/source/format (3.0 (quilt)) pairs with a
# Debian revision: only a source build (without -b) reads it.
tar -C "$work" --exclude="${src##*/}/debian" -cJf "$work/ubiblk_${version%-*}.orig.tar.xz" "${src##*/}"

log="$out/build.log"
echo "=== dpkg-buildpackage -us -uc -b (log: $log)"
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	echo "FAIL: dpkg-buildpackage (full log: $log)" >&2
	exit 1
fi

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb="ubiblk_${version}_${arch}.deb"
rm -f "$out"/ubiblk_*.deb "$out"/ubiblk_*.changes "$out"/ubiblk_*.buildinfo
cp "$work/$deb" "$work/ubiblk_${version}_${arch}.changes" "$work/ubiblk_${version}_${arch}.buildinfo" "$out/"

# Lintian's tags, one per line; every error fails the build. As root,
# lintian warns that it should not run as root: that line is not a tag.
report="$out/lintian.txt"
lintian --fail-on none "$out/$deb" >"$report" 2>&1 || {
	cat "$report" >&2
	echo "FAIL: lintian did not run" >&2
	exit 1
}
errors=$(grep -c '^E: ' "$report" || true)
warnings=$(grep -c '^W: ' "$report" || true)
echo "=== lintian: $errors errors, $warnings warnings (report: $report)"
grep '^[EW]: ' "$report" | head -n 20 || true
if [ "$errors" -ne 0 ]; then
	echo "FAIL: lintian errors" >&2
	exit 1
fi
echo "$out/$deb"
