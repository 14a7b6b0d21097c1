#!/usr/bin/env bash
# Cluster CPU per delivery with 2 and with 4 nodes, rooms local to a node
# (20 a node, one spanning two nodes), alternating two fanout-bench builds
# (docs/BENCHMARKS.md, "Issue #31"). Every run is bounded (10 s of load,
# 120 s at most) and on loopback.
#
#   scripts/cluster-interest.sh NEW_FANOUT_BENCH [BASE_FANOUT_BENCH] [ROUNDS]
set -euo pipefail
new=${1:?usage: $0 NEW_FANOUT_BENCH [BASE_FANOUT_BENCH] [ROUNDS]}
base=${2:-}
rounds=${3:-3}
for round in $(seq "$rounds"); do
  for nodes in 2 4; do
    for which in new base; do
      bin=$new
      if [ "$which" = base ]; then
        [ -n "$base" ] || continue
        bin=$base
      fi
      out=$(timeout 120 "$bin" --cluster --nodes "$nodes" --placement local --spanning "$nodes" \
        --rooms $((20 * nodes)) --members 20 --rate 1 --seconds 10 2>&1)
      echo "round $round, $nodes nodes, $which:"
      echo "$out" | grep -E "deliveries|cpu/delivery|^node" | sed 's/^/  /'
    done
  done
done
