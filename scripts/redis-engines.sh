#!/usr/bin/env bash
# The same cluster chat load on one redis-server and on a three-master Redis
# Cluster, alternated (docs/BENCHMARKS.md, "Issue #31: one Redis against a
# Redis Cluster"). Four nodes, every room spread over them, so every
# message crosses nodes. Every run is bounded (10 s of load, 120 s at most)
# and on loopback.
#
#   scripts/redis-engines.sh FANOUT_BENCH [ROUNDS] [RATE]
set -euo pipefail
bin=${1:?usage: $0 FANOUT_BENCH [ROUNDS] [RATE]}
rounds=${2:-3}
rate=${3:-1}
for round in $(seq "$rounds"); do
  for masters in 1 3; do
    out=$(timeout 120 "$bin" --cluster --nodes 4 --placement spread --rooms 40 --members 20 \
      --rate "$rate" --seconds 10 --redis-masters "$masters" 2>&1)
    echo "round $round, redis masters $masters:"
    echo "$out" | grep -E "deliveries|latency|cpu/delivery|redis" | sed 's/^/  /'
  done
done
