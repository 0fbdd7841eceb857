#!/usr/bin/env bash
# Fuzz a parser with libFuzzer (clang, ASan+UBSan) for a fixed time.
#
#   scripts/fuzz.sh TARGET SECONDS    one target (fuzz/targets/TARGET.c)
#   scripts/fuzz.sh all SECONDS       every target, SECONDS each, FUZZ_JOBS (2) at once
#   scripts/fuzz.sh list              the targets
#
# Builds build-fuzz/ on first use. Starts from the seeds in fuzz/corpus/TARGET
# and the inputs in fuzz/regressions/TARGET; inputs it finds go to a
# temporary folder (kept with FUZZ_KEEP=1 and named at the end), never into
# the repository. A crash, leak, timeout or sanitizer report fails the run
# and its input is copied to fuzz/crashes/TARGET/: fix the bug, then move the
# input to fuzz/regressions/TARGET/ so every test build replays it.
#
# One line per target on stdout: "fuzz TARGET: OK|FAIL, N runs in S s, ...";
# with FUZZ_REPORT=FILE the same figures are appended to FILE as TSV
# (target, seconds, runs, corpus inputs, coverage, result).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build="${FUZZ_BUILD_DIR:-build-fuzz}"

targets() { ls fuzz/targets/*.c 2>/dev/null | sed 's#.*/##; s#\.c$##' | tr _ -; }

usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

[ $# -ge 1 ] || usage
case "$1" in
-h | --help) usage ;;
list) targets; exit 0 ;;
esac
[ $# -eq 2 ] || usage
target=$1 seconds=$2
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] || { echo "fuzz.sh: SECONDS must be a whole number >= 1" >&2; exit 2; }

build_fuzz() {
	if [ ! -d "$build" ]; then
		CC=clang meson setup "$build" -Dfuzzing=true -Dtests=false -Dbuildtype=debugoptimized \
			-Db_sanitize=address,undefined -Db_lundef=false --werror >"$build.setup.log" 2>&1 ||
			{ cat "$build.setup.log" >&2; return 1; }
	fi
	ninja -C "$build" "$@" >"$build.ninja.log" 2>&1 || { tail -50 "$build.ninja.log" >&2; return 1; }
}

# Runs one target; prints its line; returns 0 when nothing was found.
fuzz_one() {
	local name=$1 seconds=$2 work
	work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$name.XXXXXX")
	mkdir -p "$work/corpus" "$work/crashes"
	local options=()
	[ -f "fuzz/options/$name" ] && read -r -a options <"fuzz/options/$name"
	local seeds=("fuzz/corpus/$name")
	[ -d "fuzz/regressions/$name" ] && seeds+=("fuzz/regressions/$name")
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb: bounded memory is a property we test.
	"$build/fuzz/fuzz-$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/crashes/" "${options[@]}" \
		"$work/corpus" "${seeds[@]}" >"$work/log" 2>&1
	local rc=$?
	local runs cov inputs result=OK
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | sed 's/cov: //')
	inputs=$(find "$work/corpus" "${seeds[@]}" -type f | wc -l)
	if [ $rc -ne 0 ] || [ -n "$(ls "$work/crashes")" ]; then
		result=FAIL
		mkdir -p "fuzz/crashes/$name"
		cp "$work/crashes/"* "fuzz/crashes/$name/" 2>/dev/null
		echo "--- fuzz-$name log (last 60 lines) ---" >&2
		tail -60 "$work/log" >&2
		echo "--- inputs copied to fuzz/crashes/$name/ ---" >&2
	fi
	echo "fuzz $name: $result, ${runs:-0} runs in $seconds s, $inputs inputs, coverage ${cov:-?}"
	[ -n "${FUZZ_REPORT:-}" ] &&
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seconds" "${runs:-0}" "$inputs" "${cov:-?}" "$result" >>"$FUZZ_REPORT"
	if [ "${FUZZ_KEEP:-0}" = 1 ]; then echo "  (kept: $work)"; else rm -rf "$work"; fi
	[ "$result" = OK ]
}

if [ "$target" = all ]; then
	mapfile -t names < <(targets)
	[ ${#names[@]} -gt 0 ] || { echo "fuzz.sh: no targets in fuzz/targets/" >&2; exit 1; }
	build_fuzz $(printf 'fuzz/fuzz-%s ' "${names[@]}") || exit 1
	export -f fuzz_one
	export build FUZZ_REPORT FUZZ_KEEP 2>/dev/null
	printf '%s\n' "${names[@]}" | xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'fuzz_one "$1" "$2"' _ {} "$seconds"
	exit $?
fi
# Not grep -q: stopping at the match can end the writers with SIGPIPE,
# which pipefail would count as "no such target".
targets | grep -x "$target" >/dev/null || { echo "fuzz.sh: no target '$target' (scripts/fuzz.sh list)" >&2; exit 2; }
build_fuzz "fuzz/fuzz-$target" || exit 1
fuzz_one "$target" "$seconds"
