#!/usr/bin/env bash
# make run: drpc-testd (the test service) on 127.0.0.1:8000 as the demo upstream,
# and drpc-sidecar in front of it with config/example.json. Ctrl-C stops both.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/../.."

"$B/drpc-testd" --listen 127.0.0.1:8000 >/dev/null 2>&1 &
upstream=$!
trap 'kill $upstream 2>/dev/null; wait $upstream 2>/dev/null || true' EXIT

cat <<MSG
drpc-sidecar demo
  demo upstream (test service):  127.0.0.1:8000
  sidecar listeners:             127.0.0.1:7777 and unix:/tmp/drpc-sidecar.sock
  admin:                         http://127.0.0.1:9901/

Call through it from another terminal, e.g.:
  $B/drpc-call 127.0.0.1:7777 /test.Echo/Unary hello
  $B/drpc-call --meta trace=1 unix:/tmp/drpc-sidecar.sock /test.Echo/Metadata x
  $B/drpc-call --repeat 3 127.0.0.1:7777 /test.Echo/Conn
  $B/drpc-bench --addr 127.0.0.1:7777 --conns 32 --duration 10   (then watch the admin page)
Ctrl-C stops the sidecar and the demo upstream.

MSG
"$B/drpc-sidecar" -c config/example.json
