#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS
#
# Runs every libFuzzer target BUILD_DIR/fuzz/fuzz_<name> for SECONDS on a
# scratch copy of its seed corpus tests/fuzz/corpus/<name>/ (an empty one if
# the target has no seeds yet), with tests/fuzz/<name>.dict as libFuzzer
# dictionary if there is one, one target after the other. New targets need
# no change here: a binary and, optionally, a corpus directory are enough.
#
# Prints one line per target with libFuzzer's execution count; a target
# that crashes, leaks, times out or runs out of memory prints the tail of
# its log, keeps the reproducer in BUILD_DIR/fuzz-artifacts/, and makes the
# script exit non-zero. The seed corpora are never modified.
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
build=$(cd "$1" 2>/dev/null && pwd) || { echo "run.sh: no build directory $1" >&2; exit 2; }
seconds=${2:-20}
case $seconds in
  '' | *[!0-9]*) echo "run.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/../.." && pwd)
artifacts="$build/fuzz-artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/drpc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
  echo "run.sh: no fuzz targets in $build/fuzz (run make B=... fuzz-bins)" >&2
  exit 1
fi

status=0
for bin in "${targets[@]}"; do
  if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then continue; fi
  target=$(basename "$bin")
  name=${target#fuzz_}
  seeds="$repo/tests/fuzz/corpus/$name"
  corpus="$work/corpus-$name"
  mkdir -p "$corpus" "$work/art-$name"
  n_seeds=0
  if [ -d "$seeds" ]; then
    cp -R "$seeds/." "$corpus/"
    n_seeds=$(find "$seeds" -type f | wc -l)
  fi
  dict=()
  [ -f "$repo/tests/fuzz/$name.dict" ] && dict=(-dict="$repo/tests/fuzz/$name.dict")
  log="$work/$name.log"
  # A 10 s limit per input (libFuzzer would wait 20 min) turns a hang into a failure.
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/art-$name/" "${dict[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  # libFuzzer ends with "Done N runs in S second(s)" and, with -print_final_stats,
  # "stat::number_of_executed_units: N".
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  found=("$work/art-$name"/*)
  if [ $rc -eq 0 ] && [ ${#found[@]} -eq 0 ]; then
    printf '%-16s ok      %12s executions in %ss (%s seeds, coverage %s)\n' \
      "$target" "${runs:-?}" "$seconds" "$n_seeds" "${cov:-?}"
  else
    status=1
    printf '%-16s FAILED  exit %d after %s executions\n' "$target" "$rc" "${runs:-?}"
    grep -E '^==[0-9]+==ERROR|^SUMMARY|check failed|runtime error|Test unit written' "$log" |
      head -20 | sed 's/^/    /'
    tail -20 "$log" | sed 's/^/    | /'
    if [ ${#found[@]} -gt 0 ]; then
      mkdir -p "$artifacts"
      for a in "${found[@]}"; do
        cp "$a" "$artifacts/$target-$(basename "$a")"
        echo "    reproducer: $artifacts/$target-$(basename "$a")  (run: $bin FILE)"
      done
    fi
  fi
done
exit $status
