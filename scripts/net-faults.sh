#!/bin/sh
# Randomized network-fault runs (tests/integration/test_net_faults.py)
# against build-release: one line per run, then a summary table.
#   scripts/net-faults.sh [RUNS [SEED]]     RUNS defaults to 50
# A failed run reproduces with the printed seed: UBIBLK_FAULT_SEED=SEED.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="${BUILD_DIR:-$root/build-release}"
runs="${1:-50}"
seed="${2:-}"
if [ ! -x "$build/src/bin/vhost-backend" ]; then
	echo "net-faults.sh: $build is not built (meson setup build-release --werror -Dbuildtype=release; ninja -C build-release)" >&2
	exit 2
fi
export UBIBLK_BUILD_DIR="$build" UBIBLK_FAULT_RUNS="$runs"
if [ -n "$seed" ]; then
	export UBIBLK_FAULT_SEED="$seed"
fi
exec /usr/bin/python3 "$root/tests/integration/test_net_faults.py"
