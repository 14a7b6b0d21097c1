#!/usr/bin/env bash
# Runs every test. The Redis tests start their own redis-server on a free
# loopback port, so the package must be installed: this installs it when it
# is missing (as root, from Debian's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "scripts/test.sh: installing redis-server" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
  else
    echo "scripts/test.sh: redis-server is missing: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi
# The README's first command must start the server (the package has a
# second binary, plaza-ctl): checked with --version, which only builds it.
cargo run -q -p plaza-server -- --version >/dev/null
exec cargo test --workspace "$@"
