#!/usr/bin/env bash
# A connection storm, TCP against WebSocket (issue #28): `plaza bench
# connect` opens N connections and logs each in with its password, then
# closes them and comes back with resume tokens, against a fresh
# plaza-server on core 0 (the load on core 1), once over TCP and once
# over WebSocket, alternated ROUNDS times. Free loopback ports; every
# server is stopped by its PID.
#
#   scripts/storm.sh [CONNECTIONS] [ROUNDS]     # default 10000, 2
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
ROUNDS=${2:-2}
ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -p plaza-server -p plaza-client
DIR=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run() { # tcp|ws
  local tcp ws port
  tcp=$(free_port); ws=$(free_port)
  taskset -c 0 target/release/plaza-server --bind "127.0.0.1:$tcp" --ws-bind "127.0.0.1:$ws" \
    --control-bind 127.0.0.1:0 --metrics-bind off --workers 1 --data-dir "$DIR/$1-$tcp" \
    --argon2-memory-kib 64 --argon2-iterations 1 --log warn --login-rate-per-ip 0 \
    --login-rate-per-account 0 --max-connections-per-ip 0 --max-users 25000 >"$DIR/server.log" 2>&1 &
  PID=$!
  wait_port "$tcp"
  local flag=""
  port=$tcp
  if [ "$1" = ws ]; then port=$ws; flag=--ws; fi
  echo "== $1: $N connections"
  taskset -c 1 target/release/plaza bench connect --server "127.0.0.1:$port" $flag \
    --connections "$N" --concurrency 256 --server-pid "$PID" 2>&1 | grep -v '^\s*$' || true
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=""
}

for _ in $(seq "$ROUNDS"); do
  run tcp
  run ws
done
