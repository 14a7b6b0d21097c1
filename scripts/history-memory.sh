#!/usr/bin/env bash
# Room history with every room full (issue #30): a release plaza-server
# with 1,000 rooms (pinned to core 0), one member per room, each away while
# its room gets 100 messages of SIZE bytes (default 64); peer-bench prints
# the server's RSS before and after the posting, per kept message, then
# every member rejoins and must get its 100 messages replayed. The server
# is started on a free loopback port and stopped by its PID.
#
#   scripts/history-memory.sh [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-64}
cargo build --release -p plaza-server -p plaza-bench
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
taskset -c 0 target/release/plaza-server --bind "127.0.0.1:$PORT" --control-bind 127.0.0.1:0 --metrics-bind off \
  --workers 1 --data-dir "$DIR" --argon2-memory-kib 64 --argon2-iterations 1 --log warn --login-rate-per-ip 0 \
  --login-rate-per-account 0 --chat-rate 0 --max-connections-per-ip 0 --max-users 25000 --rooms 1000 &
PID=$!
trap 'kill $PID; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
taskset -c 1 target/release/peer-bench --peer plaza --addr "127.0.0.1:$PORT" --scenario idle --rooms 1000 \
  --connections 1000 --concurrency 64 --resume-rounds 2 --missed 100 --size "$SIZE" --server-pid "$PID" --prefix f
