#!/usr/bin/env bash
# Runs every test. What the tests need beyond Rust is installed when it is
# missing (as root, from Debian's packages and npm's registry):
# - redis-server: the Redis tests start their own on a free loopback port;
# - chromium, node and npm, and tests/browser's npm packages (`npm ci`):
#   the web client's test drives Debian's Chromium headless;
# - irssi and tmux: scripts/irc-clients.sh (a real IRC client);
# - pytest, in a venv under target/, from PyPI: scripts/irctest.sh (the IRC
#   conformance suite, held to the count in tests/irctest/PASSED).
# With arguments, only `cargo test --workspace ARGS` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v irssi >/dev/null 2>&1 || missing+=(irssi)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  else
    echo "scripts/test.sh: missing ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
# The browser test's packages, from its lock file (again when it changes).
if [ ! -f tests/browser/node_modules/.package-lock.json ] ||
  [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
# The README's first command must start the server (the package has a
# second binary, plaza-ctl): checked with --version, which only builds it.
cargo run -q -p plaza-server -- --version >/dev/null
if [ $# -gt 0 ]; then
  exec cargo test --workspace "$@"
fi
cargo test --workspace
scripts/irc-clients.sh
scripts/irctest.sh
