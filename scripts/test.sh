#!/usr/bin/env bash
# Build and run the whole test suite twice: a release build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build. Checks formatting
# first. Ends with one summary line: "N passed, N failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/install-deps.sh test || exit 1

failed_steps=0
format_ok=1
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src tests -name '*.[ch]')
if ! clang-format --dry-run --Werror $files; then
	echo "FAIL: clang-format: run 'clang-format -i' on the files above" >&2
	format_ok=0
fi

run_suite() { # name, meson options...
	local dir="build-$1"
	shift
	echo "=== $dir: configure and build"
	if [ ! -d "$dir" ]; then
		meson setup "$dir" --werror "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
	fi
	ninja -C "$dir" || return 1
	echo "=== $dir: tests"
	meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}"
}

run_suite release -Dbuildtype=release || failed_steps=$((failed_steps + 1))
run_suite asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
	|| failed_steps=$((failed_steps + 1))

python3 - "$format_ok" build-release build-asan <<'PY'
import json, os, sys
format_ok = sys.argv[1] == "1"
passed = failed = 0
for d in sys.argv[2:]:
    log = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        print(f"{d}: no test log (build failed)")
        failed += 1
        continue
    for line in open(log):
        t = json.loads(line)
        if t["result"] in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1
            print(f"{d}: {t['name']}: {t['result']}")
if format_ok:
    passed += 1
else:
    failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
rc=$?
[ "$failed_steps" -eq 0 ] || rc=1
exit $rc
