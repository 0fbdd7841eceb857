#!/usr/bin/env bash
# The crash campaign against build-release: kill -9 of vhost-backend during
# hydration from remote-stripe-server and from archives in a directory and
# in S3 (Swift on loopback), and kill -9 of the archive tool followed by a
# rerun (tests/integration/test_crash_campaign.py).
#
#   scripts/crash-campaign.sh [ROUNDS [SCENARIO...]]
#
# ROUNDS (default 100) are spread over the scenarios in turn (remote,
# archive-fs, archive-s3, archive-tool; all by default). UBIBLK_CRASH_SEED
# picks the kill moments (default: a random seed, printed so a failure can
# be replayed); BUILD_DIR overrides build-release (built if missing). Every
# round's line goes to a log file named at the end; the summary (rounds,
# kills per scenario, time, failures) is printed. Exit status 0 when no
# round failed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build="${BUILD_DIR:-build-release}"
rounds="${1:-100}"
shift || true
case "$rounds" in
'' | *[!0-9]*)
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
seed="${UBIBLK_CRASH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"

if [ ! -d "$build" ]; then
	meson setup "$build" --werror -Dbuildtype=release >/dev/null || exit 1
fi
ninja -C "$build" >/dev/null || exit 1

log=$(mktemp "${TMPDIR:-/tmp}/crash-campaign.XXXXXX.log")
echo "crash campaign: $rounds rounds, seed $seed, build $build, log $log"
start=$(date +%s)
UBIBLK_BUILD_DIR="$top/$build" UBIBLK_CRASH_ROUNDS="$rounds" UBIBLK_CRASH_SEED="$seed" \
	nice -n 10 /usr/bin/python3 tests/integration/test_crash_campaign.py "$@" >"$log" 2>&1
status=$?
end=$(date +%s)

grep -E '^(FAIL|summary)' "$log"
/usr/bin/python3 - "$log" <<'EOF'
import json
import sys

for line in open(sys.argv[1]):
    if line.startswith("summary "):
        s = json.loads(line[len("summary "):])
        print(f"seed {s['seed']}: {s['rounds']} rounds in {s['seconds']} s, "
              f"{len(s['failures'])} failed")
        for name, entry in s["scenarios"].items():
            print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))
EOF
echo "wall time $((end - start)) s, exit status $status (log: $log)"
exit $status
