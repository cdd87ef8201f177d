#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/fuzz for SECONDS each on a scratch
# copy of its seed corpus (tests/fuzz/corpus/<name>/). Prints the number of
# executions per target; exits non-zero if any target found a crash or leak.
set -uo pipefail
B=${1:-build}
SECONDS_PER_TARGET=${2:-20}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for bin in "$B"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name#fuzz_}
  mkdir -p "$work/$name" "tests/fuzz/corpus/$name"
  cp -r "tests/fuzz/corpus/$name/." "$work/$name/" 2>/dev/null || true
  log="$work/$name.log"
  if "$bin" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
       -artifact_prefix="$work/$name-" "$work/$name" >"$log" 2>&1; then
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz_$name: ${runs:-?} executions in ${SECONDS_PER_TARGET}s, no crash"
  else
    echo "fuzz_$name: FAILED"; tail -40 "$log"; status=1
    ls "$work/$name-"* 2>/dev/null | head -3
  fi
done
exit $status
