#!/usr/bin/env bash
# Issue #32's "every core" curve: scenario c (10 rooms x 50 members, the
# rate raised 1.5x a step) with Plaza on 1, 2, 4, 8 and 14 server cores,
# beside Redis (one core: its event loop is one thread) and NATS (every
# server core), through scripts/peers.sh. The load generator gets the last
# two cores; the server the first n. Needs a machine with at least n + 2
# cores (a 16-core one for the whole curve); counts that do not fit are
# left out, and on fewer than 3 cores it runs nothing.
#
#   scripts/scaling.sh              # the curve, 5 s a step
#   COUNTS="1 2" scripts/scaling.sh # some core counts
#
# Prints each run's best sustained step (peers.sh's full output is in
# target/scaling/).
set -euo pipefail
cd "$(dirname "$0")/.."
total=$(nproc)
if [ "$total" -lt 3 ]; then
  echo "scaling.sh: $total cores: the curve needs at least 3 (one server core, two for the load)" >&2
  exit 0
fi
load="$((total - 2))-$((total - 1))"
out=target/scaling
mkdir -p "$out"
best() { # the best sustained step of a peers.sh log
  grep -A3 "best sustained" "$1" | grep -E "^rate|latency|cpu" | tr '\n' ' ' || true
  echo
}
one() { # label cores peer
  local label=$1 cores=$2 peer=$3 log="$out/$1.log"
  SERVER_CORES="0-$((cores - 1))" LOAD_CORES=$load SCENARIOS=c scripts/peers.sh 5 "$peer" >"$log" 2>&1 ||
    echo "scaling.sh: $label failed; see $log" >&2
  printf '%-14s %s' "$label" "$(best "$log")"
}
max=$((total - 2))
one redis-1core 1 redis
for n in ${COUNTS:-1 2 4 8 14}; do
  [ "$n" -le "$max" ] || continue
  one "plaza-${n}cores" "$n" plaza
done
one "nats-${max}cores" "$max" nats
