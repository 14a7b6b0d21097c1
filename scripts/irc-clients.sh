#!/usr/bin/env bash
# Plaza's IRC front end with real clients, for a person to rerun and watch:
# Debian's irssi (in tmux) logs in with SASL PLAIN as `irene` and joins #1;
# a `plaza chat` user (`carl`, also in tmux) and a browser user (`bea`,
# Plaza's web page in headless Chromium) are in room 1. Each one's line
# reaches the other two; the script prints what irssi and `plaza chat`
# showed, and fails if a line did not arrive within 60 s.
#
#   scripts/irc-clients.sh           # needs irssi, tmux, chromium, node
#   KEEP=1 scripts/irc-clients.sh    # leave tmux up: tmux -L <socket> attach
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in irssi tmux chromium node; do
  command -v "$tool" >/dev/null || { echo "irc-clients.sh: needs $tool (apt-get install irssi tmux chromium nodejs npm)" >&2; exit 1; }
done
[ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --no-audit --no-fund)
cargo build -q -p plaza-server -p plaza-client
dir=$(mktemp -d)
sock="plaza-irc-$$"
server=""
browser=""
cleanup() {
  [ -n "$browser" ] && kill "$browser" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  if [ -z "${KEEP:-}" ]; then
    tmux -L "$sock" kill-server 2>/dev/null || true
    rm -rf "$dir"
  fi
  true
}
trap cleanup EXIT

# Polls `cmd` until it succeeds, for at most 60 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "irc-clients.sh: timed out waiting for $what" >&2
  return 1
}
pane_has() { tmux -L "$sock" capture-pane -p -t "$1" -S -200 | grep -qF -- "$2"; }

target/debug/plaza-server --data-dir "$dir/data" --bind 127.0.0.1:0 --control-bind 127.0.0.1:0 \
  --metrics-bind off --irc-bind 127.0.0.1:0 --ws-bind 127.0.0.1:0 --enter-leave-delay-ms 0 \
  --log warn,plaza_server=info >"$dir/server.log" 2>&1 &
server=$!
wait_for "the server" grep -q "plaza-server listening" "$dir/server.log"
listening=$(grep "plaza-server listening" "$dir/server.log")
addr=$(sed -E 's/.* addr=([0-9.:]+).*/\1/' <<<"$listening")
irc=$(sed -E 's/.*irc_addr=Some\(([0-9.:]+)\).*/\1/' <<<"$listening")
ws=$(sed -E 's/.*ws_addr=Some\(([0-9.:]+)\).*/\1/' <<<"$listening")
echo "server: chat $addr, IRC $irc, web http://$ws/"

# irene's account, for SASL.
printf 'pw\n' | target/debug/plaza chat --server "$addr" --user irene --register >/dev/null

# carl, with plaza chat, in room 1.
tmux -L "$sock" new-session -d -s clients -n carl -x 132 -y 40 \
  "target/debug/plaza chat --server $addr --user carl --register; sleep 600"
wait_for "carl's password prompt" pane_has clients:carl "assword"
tmux -L "$sock" send-keys -t clients:carl "pw" Enter
wait_for "carl's login" pane_has clients:carl "logged in as carl"
tmux -L "$sock" send-keys -t clients:carl "/join 1" Enter

# bea, in the browser, in room 1.
(cd tests/browser && PLAZA_WS="$ws" SHOT="$dir/browser.png" node irc-room.mjs) >"$dir/browser.log" 2>&1 &
browser=$!
wait_for "bea in room 1" grep -q "bea is in room 1" "$dir/browser.log"

# irene, in irssi: SASL PLAIN, then #1.
mkdir -p "$dir/irssi"
cat >"$dir/irssi/config" <<CONF
servers = (
  { address = "${irc%:*}"; port = "${irc##*:}"; chatnet = "plaza"; use_tls = "no"; autoconnect = "yes"; }
);
chatnets = {
  plaza = { type = "IRC"; sasl_mechanism = "PLAIN"; sasl_username = "irene"; sasl_password = "pw"; };
};
channels = ( { name = "#1"; chatnet = "plaza"; autojoin = "yes"; } );
settings = {
  core = { real_name = "Irene"; user_name = "irene"; nick = "irene"; };
  "fe-common/core" = { theme = "default"; };
};
CONF
tmux -L "$sock" new-window -t clients -n irssi "irssi --home=$dir/irssi"
wait_for "irssi's join" pane_has clients:irssi "Act: 2"
tmux -L "$sock" send-keys -t clients:irssi "/window goto #1" Enter
wait_for "irssi in #1" pane_has clients:irssi "has joined #1"
tmux -L "$sock" send-keys -t clients:irssi "hello from irssi" Enter
wait_for "carl hearing irene" pane_has clients:carl "hello from irssi"
wait_for "irene hearing bea" pane_has clients:irssi "hello from the browser"
tmux -L "$sock" send-keys -t clients:carl "hello from plaza chat" Enter
wait_for "irene hearing carl" pane_has clients:irssi "hello from plaza chat"
wait "$browser"
browser=""
cat "$dir/browser.log"
echo "---- what irssi showed (irene) ----"
tmux -L "$sock" capture-pane -p -t clients:irssi | grep -v '^\s*$'
echo "---- what plaza chat showed (carl) ----"
tmux -L "$sock" capture-pane -p -t clients:carl | grep -v '^\s*$'
echo "irc-clients.sh: irssi, plaza chat and the browser heard each other in room 1"
if [ -n "${KEEP:-}" ]; then
  echo "tmux -L $sock attach   (files in $dir)"
fi
