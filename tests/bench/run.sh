#!/usr/bin/env bash
# make bench / make bench-quick: see tests/bench/bench.py.
set -euo pipefail
B=${1:-build}
MODE=${2:-full}
cd "$(dirname "$0")/../.."
if ! command -v haproxy >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null || true
  fi
fi
exec /usr/bin/python3 tests/bench/bench.py --build "$B" --mode "$MODE"
