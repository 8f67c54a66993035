#!/usr/bin/env bash
# Local L1 for the devnet: Foundry's anvil on 127.0.0.1, installed from the npm
# package @foundry-rs/anvil-linux-amd64 (it ships the anvil binary) into a
# cache folder.  Every command is idempotent.
#
#   infra/anvil/anvil.sh install   npm-install anvil into $ISOROLL_ANVIL_HOME
#   infra/anvil/anvil.sh start     install, start, wait until it answers eth_chainId
#   infra/anvil/anvil.sh stop      stop it (SIGTERM, then SIGKILL after 10 s)
#   infra/anvil/anvil.sh status    exit 0 when it answers eth_chainId on its port
#   infra/anvil/anvil.sh wipe      stop and delete the state dir
#   infra/anvil/anvil.sh bin       print the path of the anvil binary
#
# Environment (defaults in brackets):
#   ISOROLL_ANVIL_PORT        RPC port [8545]
#   ISOROLL_ANVIL_CHAIN_ID    chain id [31337]
#   ISOROLL_ANVIL_BLOCK_TIME  seconds per block, empty = mine on each tx [1]
#   ISOROLL_ANVIL_DIR         pid file, log file [<repo>/.devnet/anvil-$PORT]
#   ISOROLL_ANVIL_HOME        npm install prefix [~/.cache/isoroll/anvil-<version>]
#   ISOROLL_ANVIL_VERSION     npm package version [1.7.1]
#   ISOROLL_ANVIL_ARGS        extra anvil arguments
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
package="@foundry-rs/anvil-linux-amd64"
version="${ISOROLL_ANVIL_VERSION:-1.7.1}"
port="${ISOROLL_ANVIL_PORT:-8545}"
chain_id="${ISOROLL_ANVIL_CHAIN_ID:-31337}"
block_time="${ISOROLL_ANVIL_BLOCK_TIME-1}"
dir="${ISOROLL_ANVIL_DIR:-$repo/.devnet/anvil-$port}"
home="${ISOROLL_ANVIL_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/isoroll/anvil-$version}"
pidfile="$dir/anvil.pid"
logfile="$dir/anvil.log"

say() { echo "anvil: $*" >&2; }

# alive PID: running and not a zombie (infra/proc.sh)
source "$here/../proc.sh"

is_running() { [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; }

find_bin() {
  local b
  for b in "$home/node_modules/$package/bin/anvil" "$home/node_modules/$package/anvil"; do
    if [ -x "$b" ]; then echo "$b"; return 0; fi
  done
  b="$(find "$home/node_modules/$package" -type f -name anvil 2>/dev/null | head -n 1)"
  if [ -n "$b" ]; then chmod +x "$b"; echo "$b"; return 0; fi
  return 1
}

install() {
  if [ -f "$home/.complete" ] && find_bin >/dev/null; then return 0; fi
  command -v npm >/dev/null || { say "npm is required (to fetch $package)"; exit 1; }
  say "installing $package@$version into $home"
  mkdir -p "$home"
  [ -f "$home/package.json" ] || echo '{"name":"isoroll-anvil","private":true}' > "$home/package.json"
  # --force: the package declares os/cpu; this script only runs where they match
  npm install --prefix "$home" --no-audit --no-fund --loglevel=error --force "$package@$version" >&2
  local b; b="$(find_bin)" || { say "no anvil binary inside $package"; exit 1; }
  "$b" --version >&2
  touch "$home/.complete"
}

rpc_chain_id() {
  # prints the hex chain id when anvil answers, nothing otherwise
  local body='{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
  if command -v curl >/dev/null; then
    curl -s -m 2 -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port" 2>/dev/null \
      | sed -n 's/.*"result":"\(0x[0-9a-fA-F]*\)".*/\1/p'
  else
    python3 - "$port" "$body" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}", sys.argv[2].encode(), {"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=2))["result"])
PY
  fi
}

answers() { [ -n "$(rpc_chain_id)" ]; }

wait_ready() {
  local deadline=$((SECONDS + ${1:-30}))
  while [ $SECONDS -lt $deadline ]; do
    if ! is_running; then say "anvil exited; last lines of $logfile:"; tail -n 30 "$logfile" >&2 || true; exit 1; fi
    if answers; then return 0; fi
    sleep 0.2
  done
  say "anvil did not answer eth_chainId in time; see $logfile"; exit 1
}

start() {
  install
  if is_running && answers; then say "already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  if answers; then say "port $port already answers JSON-RPC (another node?); not starting"; exit 1; fi
  mkdir -p "$dir"
  local b; b="$(find_bin)"
  local args=(--host 127.0.0.1 --port "$port" --chain-id "$chain_id")
  if [ -n "$block_time" ]; then args+=(--block-time "$block_time"); fi
  # shellcheck disable=SC2206
  args+=(${ISOROLL_ANVIL_ARGS:-})
  say "starting on 127.0.0.1:$port (chain id $chain_id, log $logfile)"
  : > "$logfile"
  nohup "$b" "${args[@]}" >"$logfile" 2>&1 &
  echo $! > "$pidfile"
  wait_ready 30
  say "ready on http://127.0.0.1:$port"
}

stop() {
  if ! is_running; then rm -f "$pidfile"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  say "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) is_running && answers ;;
  wipe) stop; rm -rf "$dir" ;;
  bin) install; find_bin ;;
  *) echo "usage: $0 install|start|stop|status|wipe|bin" >&2; exit 2 ;;
esac
