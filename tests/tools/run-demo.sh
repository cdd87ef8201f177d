#!/usr/bin/env bash
# make run: the test DRPC server on 127.0.0.1:8000 and drpc-sidecar in
# front of it with config/example.json. Ctrl-C stops both.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/../.."

"$B/drpc-testd" --listen 127.0.0.1:8000 >/dev/null &
testd=$!
trap 'kill $testd 2>/dev/null; wait $testd 2>/dev/null || true' EXIT

cat <<MSG
drpc-sidecar demo
  upstream (drpc-testd):  127.0.0.1:8000
  sidecar listeners:      127.0.0.1:7777 and unix:/tmp/drpc-sidecar.sock
  admin:                  http://127.0.0.1:9901/   (JSON: /pools /calls /clients /metrics)

Call through it from another terminal, e.g.:
  $B/drpc-call 127.0.0.1:7777 /test.Echo/Unary hello
  $B/drpc-call --meta user=alice 127.0.0.1:7777 /test.Echo/Metadata x
  $B/drpc-bench --addr 127.0.0.1:7777 --conns 16 --duration 5
Ctrl-C stops the sidecar and the demo upstream.

MSG
"$B/drpc-sidecar" -c config/example.json
