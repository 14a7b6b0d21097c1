#!/usr/bin/env bash
# Room fan-out against Plaza and its peers on this machine, measured alike
# (issue #5): each server pinned to core 0, the load generator to core 1.
# Installs the peers from Debian packages when missing. Every server is
# started here on a free loopback port and stopped by its PID.
#
#   scripts/peers.sh [SECONDS]        # default 10 s per run
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nats-server >/dev/null || need+=(nats-server)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

cargo build --release -p plaza-server -p plaza-bench
BENCH=target/release/peer-bench
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

start() { # name port command...
  local name=$1 port=$2; shift 2
  taskset -c 0 "$@" >"$DIR/$name.log" 2>&1 &
  PIDS+=($!)
  SERVER_PID=$!
  wait_port "$port" || { echo "$name did not start"; cat "$DIR/$name.log"; exit 1; }
}

run() { # peer port label args...
  local peer=$1 port=$2 label=$3; shift 3
  echo "== $peer: $label"
  taskset -c 1 "$BENCH" --peer "$peer" --addr "127.0.0.1:$port" --seconds "$SECS" \
    --server-pid "$SERVER_PID" "$@"
}

scenarios() { # peer port
  run "$1" "$2" "a: 1 room x 100 members x 10/s" --rooms 1 --members 100 --rate 10 --prefix a
  run "$1" "$2" "b: 100 rooms x 20 members x 1/s" --rooms 100 --members 20 --rate 1 --prefix b
}

P=$(free_port)
start plaza "$P" target/release/plaza-server --bind "127.0.0.1:$P" --control-bind 127.0.0.1:0 \
  --metrics-bind off --workers 1 --data-dir "$DIR/plaza" --argon2-memory-kib 64 --log warn \
  --login-rate-per-ip 0 --login-rate-per-account 0 --chat-rate 0 --max-connections-per-ip 0 \
  --max-users 5000 --rooms 1000
scenarios plaza "$P"

P=$(free_port)
start redis "$P" redis-server --port "$P" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR"
scenarios redis "$P"

P=$(free_port)
start nats "$P" nats-server -a 127.0.0.1 -p "$P"
scenarios nats "$P"

P=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$P" >"$DIR/mosquitto.conf"
start mosquitto "$P" "$MOSQUITTO" -c "$DIR/mosquitto.conf"
scenarios mqtt "$P"
