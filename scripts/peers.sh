#!/usr/bin/env bash
# Plaza against the servers users would otherwise pick, measured alike
# (issue #5): Redis pub/sub, NATS, Mosquitto (MQTT) and InspIRCd (IRC).
# Each server is pinned to core 0, the load generator to core 1. Installs
# the peers from Debian packages when missing. Every server is started here
# on a free loopback port and stopped by its PID.
#
#   scripts/peers.sh [SECONDS] [PEER...]   # default 8 s per run, every peer
#   SCENARIOS="a b" scripts/peers.sh 8     # some scenarios (default: a b c d)
#   PLAZA_SERVER=/tmp/old scripts/peers.sh 8 plaza   # another build, to compare
#   SCENARIOS=c C_P99_MS=10 scripts/peers.sh 5       # c with the issue's 10 ms bound
#   SERVER_CORES=0-7 LOAD_CORES=14-15 scripts/peers.sh 5 plaza   # more cores (scripts/scaling.sh)
#
# PEER: plaza redis nats mqtt irc, plaza-nohistory (Plaza with room history
# off), plaza-irc (Plaza's IRC front end, for
# InspIRCd's IRC), plaza-ws and nats-ws (the same over
# WebSocket: Plaza's --ws-bind, NATS's websocket listener), ws-floor-plaza,
# ws-floor-tungstenite and ws-floor-fastwebsockets (the floor over
# WebSocket on plaza-net's WebSocket layer or on those crates: `ws-floor`),
# or plaza-redis (Plaza with its accounts
# in a redis-server of its own, also on core 0; scenario d only, where the
# embedded store's account data would count as connection memory), or
# plaza-cluster (the same, as a one-node cluster: --cluster; for scenario
# s, where a dropped member's seat is held in Redis), or the
# floor: floor-server, which does nothing but the writes (floor: a write
# call per delivery at once; floor-turn: one per member per event-loop turn,
# as Redis; floor-nagle: at once with Nagle's algorithm on, as InspIRCd).
#
# Plaza runs with its default send queue (a 1 MiB soft limit for 10 s, a
# 16 MiB hard limit; Redis's defaults for pub/sub clients are 8 MB for 60 s
# and 32 MB; InspIRCd's sendq is set to 64 MiB below): at c's top rates
# the load generator falls behind, and a server that drops it as a slow
# consumer ends the step. PLAZA_QUEUE adds Plaza flags, e.g. one 1 MiB
# limit as before 2026-12-07:
#   PLAZA_QUEUE="--max-send-queue-kib 1024 --send-queue-soft-kib 1024" scripts/peers.sh 5 plaza
#
# Scenarios (the issue's a-d): a 1 room x 100 members x 10/s; b 100 rooms x
# 20 members x 1/s; c 10 rooms x 50 members, the rate raised 1.5x a step
# until a message is lost or p99 passes 50 ms (C_P99_MS); d 19,000 idle
# members in 100 rooms (memory per connection and setup rate, on a fresh
# server); s (Plaza only, not in the default set) the reconnect storm with
# replay: d's members with room history come back three times, the last
# time each missing 20 messages that must be replayed to it, once, in order
# (the second comeback, warm and with nothing missed, is the one to compare
# the last with).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
shift || true
PEERS=("${@:-plaza redis nats mqtt irc}")
read -r -a PEERS <<<"${PEERS[*]}"
IDLE=${IDLE:-19000}
C_P99_MS=${C_P99_MS:-50}
SCENARIOS=" ${SCENARIOS:-a b c d} "
want() { [[ $SCENARIOS == *" $1 "* ]]; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nats-server >/dev/null || need+=(nats-server)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -x /usr/sbin/inspircd ] || need+=(inspircd)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
# 19,000 connections need as many descriptors in the server and the load.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -p plaza-server -p plaza-bench
BENCH=target/release/peer-bench
FLOOR=target/release/floor-server
PLAZA_SERVER=${PLAZA_SERVER:-target/release/plaza-server}
PLAZA_QUEUE=${PLAZA_QUEUE:-}
# The server's cores and the load's (taskset lists); Plaza gets a worker
# thread per server core.
SERVER_CORES=${SERVER_CORES:-0}
LOAD_CORES=${LOAD_CORES:-1}
WORKERS=$(taskset -c "$SERVER_CORES" nproc)
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

start() { # name port command...
  local name=$1 port=$2; shift 2
  taskset -c "$SERVER_CORES" "$@" >"$DIR/$name.log" 2>&1 &
  PIDS+=($!)
  SERVER_PID=$!
  wait_port "$port" || { echo "$name did not start"; cat "$DIR/$name.log"; exit 1; }
}
stop() { # the server, and the Redis a plaza-redis server used
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

run() { # label args...
  local label=$1; shift
  echo "== $PEER: $label"
  taskset -c "$LOAD_CORES" "$BENCH" --peer "${PEER_ARG:-${PEER%%-*}}" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
    ${METRICS:+--metrics "$METRICS"} ${WS:+--ws} "$@"
}

start_server() { # a fresh server for $PEER on a new $PORT
  PORT=$(free_port)
  # Plaza writes with sendmsg and send, which /proc/PID/io does not count:
  # peer-bench reads its write calls from its metrics.
  METRICS=""
  WS=""
  PEER_ARG=""
  case $PEER in
    ws-floor-*)
      WS=1
      PEER_ARG=floor
      start ws-floor "$PORT" target/release/ws-floor --bind "127.0.0.1:$PORT" --impl "${PEER#ws-floor-}" ;;
    plaza-redis|plaza-cluster)
      local rport cluster=""; rport=$(free_port)
      [ "$PEER" = plaza-cluster ] && cluster=--cluster
      start redis-store "$rport" redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$DIR"
      start plaza "$PORT" "$PLAZA_SERVER" --bind "127.0.0.1:$PORT" --control-bind 127.0.0.1:0 \
        --metrics-bind off --workers $WORKERS --data-dir "$DIR/plaza-$PORT" --argon2-memory-kib 64 \
        --argon2-iterations 1 --log warn --login-rate-per-ip 0 --login-rate-per-account 0 --chat-rate 0 \
        --max-connections-per-ip 0 --max-users 25000 --rooms 1000 \
        $PLAZA_QUEUE --store "redis://127.0.0.1:$rport/0" $cluster ;;
    plaza)
      METRICS=127.0.0.1:$(free_port)
      start plaza "$PORT" "$PLAZA_SERVER" --bind "127.0.0.1:$PORT" --control-bind 127.0.0.1:0 \
        --metrics-bind "$METRICS" --workers $WORKERS --data-dir "$DIR/plaza-$PORT" --argon2-memory-kib 64 \
        --argon2-iterations 1 --log warn --login-rate-per-ip 0 --login-rate-per-account 0 --chat-rate 0 \
        --max-connections-per-ip 0 --max-users 25000 --rooms 1000 \
        $PLAZA_QUEUE ;;
    plaza-nohistory)
      # Plaza with room history off (issue #30: what keeping it costs).
      METRICS=127.0.0.1:$(free_port)
      PEER_ARG=plaza
      start plaza "$PORT" "$PLAZA_SERVER" --bind "127.0.0.1:$PORT" --control-bind 127.0.0.1:0 \
        --metrics-bind "$METRICS" --workers $WORKERS --data-dir "$DIR/plaza-$PORT" --argon2-memory-kib 64 \
        --argon2-iterations 1 --log warn --login-rate-per-ip 0 --login-rate-per-account 0 --chat-rate 0 \
        --max-connections-per-ip 0 --max-users 25000 --rooms 1000 \
        $PLAZA_QUEUE --history-messages 0 ;;
    plaza-ws)
      METRICS=127.0.0.1:$(free_port)
      WS=1
      start plaza "$PORT" "$PLAZA_SERVER" --bind "127.0.0.1:$(free_port)" --ws-bind "127.0.0.1:$PORT" \
        --control-bind 127.0.0.1:0 \
        --metrics-bind "$METRICS" --workers $WORKERS --data-dir "$DIR/plaza-$PORT" --argon2-memory-kib 64 \
        --argon2-iterations 1 --log warn --login-rate-per-ip 0 --login-rate-per-account 0 --chat-rate 0 \
        --max-connections-per-ip 0 --max-users 25000 --rooms 1000 \
        $PLAZA_QUEUE ;;
    plaza-irc)
      # Plaza's IRC front end: guests (peer-bench's IRC members have no
      # accounts), channels #roomN named on the fly.
      METRICS=127.0.0.1:$(free_port)
      PEER_ARG=irc
      start plaza "$PORT" "$PLAZA_SERVER" --bind "127.0.0.1:$(free_port)" --irc-bind "127.0.0.1:$PORT" \
        --allow-guests --control-bind 127.0.0.1:0 \
        --metrics-bind "$METRICS" --workers $WORKERS --data-dir "$DIR/plaza-$PORT" --argon2-memory-kib 64 \
        --argon2-iterations 1 --log warn --login-rate-per-ip 0 --login-rate-per-account 0 --chat-rate 0 \
        --max-connections-per-ip 0 --max-users 25000 --rooms 1000 \
        $PLAZA_QUEUE ;;
    nats-ws)
      WS=1
      printf 'listen: "127.0.0.1:%s"\nwebsocket {\n  listen: "127.0.0.1:%s"\n  no_tls: true\n}\n' \
        "$(free_port)" "$PORT" >"$DIR/nats-ws.conf"
      start nats "$PORT" nats-server -c "$DIR/nats-ws.conf" ;;
    redis)
      # Protected mode admits 127.0.0.1 only; the load comes from 127.0.0.1-16.
      start redis "$PORT" redis-server --port "$PORT" --bind 127.0.0.1 --protected-mode no --save "" --appendonly no \
        --dir "$DIR" --maxclients 25000 ;;
    nats)
      start nats "$PORT" nats-server -a 127.0.0.1 -p "$PORT" ;;
    floor)
      start floor "$PORT" "$FLOOR" --bind "127.0.0.1:$PORT" --mode now ;;
    floor-turn)
      start floor "$PORT" "$FLOOR" --bind "127.0.0.1:$PORT" --mode turn ;;
    floor-nagle)
      start floor "$PORT" "$FLOOR" --bind "127.0.0.1:$PORT" --mode now --nagle ;;
    mqtt)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$PORT" \
        >"$DIR/mosquitto.conf"
      start mosquitto "$PORT" "$MOSQUITTO" -c "$DIR/mosquitto.conf" ;;
    irc)
      # Flood limits, DNS and ident lookups off; echo-message on (IRCv3),
      # so members receive their own messages as on the other servers.
      cat >"$DIR/inspircd.conf" <<CONF
<server name="peer.bench" description="peer bench" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="$PORT" type="clients">
<connect allow="*" timeout="60" pingfreq="1h" maxchans="20" localmax="100000" globalmax="100000"
  limit="100000" maxconnwarn="no" threshold="1000000" commandrate="1000000000" fakelag="no"
  resolvehostnames="no" useident="no" hardsendq="64M" softsendq="64M" recvq="1M">
<performance softlimit="20000" somaxconn="4096" netbuffersize="65536" clonesonconnect="no">
<options syntaxhints="no" announcets="no">
<module name="cap">
<module name="ircv3">
<module name="ircv3_echomessage">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$DIR/inspircd-file.log">
CONF
      start inspircd "$PORT" /usr/sbin/inspircd --config "$DIR/inspircd.conf" --nofork --nopid --runasroot ;;
  esac
}

for PEER in "${PEERS[@]}"; do
  if [[ $PEER != plaza-redis && $PEER != plaza-cluster ]] && { want a || want b || want c; }; then
    start_server
    if want a; then
      run "a: 1 room x 100 members x 10/s" --rooms 1 --members 100 --rate 10 --seconds "$SECS" --prefix a
    fi
    if want b; then
      run "b: 100 rooms x 20 members x 1/s" --rooms 100 --members 20 --rate 1 --seconds "$SECS" --prefix b
    fi
    if want c; then
      run "c: 10 rooms x 50 members, raised until loss or p99 > $C_P99_MS ms" --scenario saturate \
        --rooms 10 --members 50 --rate 2 --factor 1.5 --p99-ms "$C_P99_MS" --max-steps 12 --seconds 5 --prefix c
    fi
    stop
  fi
  if want d; then
    start_server
    run "d: $IDLE idle members in 100 rooms" --scenario idle --rooms 100 --connections "$IDLE" \
      --concurrency 1024 --prefix d
    stop
  fi
  if want s && [[ $PEER == plaza* ]]; then
    start_server
    run "s: $IDLE members with room history drop and rejoin three times, missing 20 messages each the last time" \
      --scenario idle --rooms 100 --connections "$IDLE" --concurrency 1024 --resume-rounds 3 --missed 20 \
      --prefix s
    stop
  fi
done
