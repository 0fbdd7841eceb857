#!/usr/bin/env bash
# Build (release) and run the benchmark: vhost-backend vs qemu-storage-daemon
# vs fio, and the null-engine comparison. Options go to scripts/bench.py
# (--help lists them), e.g. scripts/bench.sh --markdown docs/benchmarks.md
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/install-deps.sh bench
[ -d build-bench ] || meson setup build-bench -Dbuildtype=release -Dtests=false >/dev/null
ninja -C build-bench src/bin/vhost-backend src/bin/ubiblk-bench >/dev/null
UBIBLK_BUILD_DIR="$top/build-bench" exec python3 scripts/bench.py "$@"
