#!/usr/bin/env bash
# Build (release) and run a benchmark:
#   scripts/bench.sh [OPTIONS]              vhost-backend vs qemu-storage-daemon vs fio,
#                                           and the null-engine comparison (scripts/bench.py)
#   scripts/bench.sh --busy [OPTIONS]       the same vhost rows on a busy host: both backends,
#                                           both client modes, under stress-ng --cpu 2
#                                           (scripts/bench.py --busy)
#   scripts/bench.sh --hydration [OPTIONS]  lazy hydration vs cp (scripts/bench_hydration.py)
#   scripts/bench.sh --remote [OPTIONS]     remote hydration (remote-stripe-server, plain and
#                                           TLS-PSK) vs nbdkit + nbdcopy and the raw image
#                                           (scripts/bench_remote.py)
#   scripts/bench.sh --archive [OPTIONS]    archive to / hydration from Swift (S3) and a
#                                           directory vs aws s3 cp and the raw image
#                                           (scripts/bench_archive.py)
#   scripts/bench.sh --crypt [OPTIONS]      each XTS engine alone vs openssl speed, encrypted vs plain
#                                           (scripts/bench_crypt.py)
#   scripts/bench.sh --ublk [OPTIONS]       ublk-backend vs loop --direct-io in a QEMU
#                                           guest (scripts/bench_ublk.py)
# --help after any of them lists its options; --markdown docs/benchmarks.md records the run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/install-deps.sh bench
[ -d build-bench ] || meson setup build-bench -Dbuildtype=release -Dtests=false >/dev/null
targets=(src/bin/vhost-backend src/bin/ubiblk-bench src/bin/init-metadata src/bin/dump-metadata)
script=scripts/bench.py
case "${1:-}" in
--hydration) script=scripts/bench_hydration.py; shift ;;
--remote) script=scripts/bench_remote.py; targets+=(src/bin/remote-stripe-server); shift ;;
--archive) script=scripts/bench_archive.py; targets+=(src/bin/archive); shift ;;
--crypt) script=scripts/bench_crypt.py; targets+=(src/bin/xts); shift ;;
# The guest runs ublk-backend from build-bench over 9p; tests/guest/prepare.sh
# (run by the script) installs QEMU and what else the guest needs.
--ublk) script=scripts/bench_ublk.py; targets=(src/bin/ublk-backend); shift ;;
esac
ninja -C build-bench "${targets[@]}" >/dev/null
UBIBLK_BUILD_DIR="$top/build-bench" exec python3 "$script" "$@"
