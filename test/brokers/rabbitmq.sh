#!/usr/bin/env bash
# rabbitmq.sh installs Debian's rabbitmq-server if it is missing and starts a private broker
# for tests, on a free port with its own data and log directories, so it never clashes with a
# system instance. It prints the AMQP URL; tests read it from KLAMBDA_TEST_RABBITMQ_URL.
#
#   test/brokers/rabbitmq.sh install   # apt-get install, stop and disable the system broker
#   test/brokers/rabbitmq.sh start     # start the private broker, print amqp://guest:guest@127.0.0.1:PORT/
#   test/brokers/rabbitmq.sh stop      # stop it and remove its directories
#
# The Go tests in eventsources/rabbitmq call "start" themselves when KLAMBDA_TEST_RABBITMQ_URL
# is unset and rabbitmq-server is installed, and "stop" when they finish.
#
# KLAMBDA_RABBITMQ_BASE (directories), KLAMBDA_RABBITMQ_NODE (Erlang node name) and
# KLAMBDA_RABBITMQ_ADDRESS (listen address, default 127.0.0.1) let a second broker run beside
# the first; the end-to-end tests listen on the node's IP so that pods reach it, and then
# guest may log in from other hosts (loopback_users = none).
set -euo pipefail

base="${KLAMBDA_RABBITMQ_BASE:-${TMPDIR:-/tmp}/klambda-rabbitmq}"
port_file="$base/port"
node="${KLAMBDA_RABBITMQ_NODE:-klambda-test@localhost}"
address="${KLAMBDA_RABBITMQ_ADDRESS:-127.0.0.1}"

install() {
  if command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ]; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101 keeps dpkg from starting the system broker during the install.
  local policy=/usr/sbin/policy-rc.d had_policy=0
  [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  [ "$had_policy" = 1 ] || rm -f "$policy"
  # A system instance started anyway (systemd) would hold epmd and 5672: stop it.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl stop rabbitmq-server >/dev/null 2>&1 || true
    systemctl disable rabbitmq-server >/dev/null 2>&1 || true
  fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

start() {
  export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
  if [ -f "$port_file" ] && RABBITMQ_NODENAME="$node" rabbitmqctl -n "$node" status >/dev/null 2>&1; then
    echo "amqp://guest:guest@$address:$(cat "$port_file")/"
    return 0
  fi
  rm -rf "$base"
  mkdir -p "$base/mnesia" "$base/log"
  local port dist
  port=$(free_port)
  dist=$(free_port)
  echo "$port" >"$port_file"
  # The Erlang cookie: rabbitmqctl and the server must share it. Running as root, HOME's
  # cookie is used by both.
  export RABBITMQ_NODENAME="$node"
  export RABBITMQ_NODE_IP_ADDRESS="$address"
  export RABBITMQ_NODE_PORT="$port"
  export RABBITMQ_DIST_PORT="$dist"
  export RABBITMQ_MNESIA_BASE="$base/mnesia"
  export RABBITMQ_LOG_BASE="$base/log"
  export RABBITMQ_PID_FILE="$base/rabbitmq.pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$base/rabbitmq"
  echo '[].' >"$base/enabled_plugins"
  if [ "$address" = 127.0.0.1 ]; then
    : >"$base/rabbitmq.conf"
  else
    echo 'loopback_users = none' >"$base/rabbitmq.conf"
  fi
  # Debian's wrapper drops to the rabbitmq user when started as root.
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    chown -R rabbitmq: "$base"
  fi
  nohup rabbitmq-server >"$base/log/stdout.log" 2>&1 &
  # rabbitmqctl wait blocks until the node has booted.
  if ! timeout 120 rabbitmqctl -n "$node" wait "$base/rabbitmq.pid" >/dev/null 2>&1; then
    echo "rabbitmq-server did not start; log:" >&2
    tail -50 "$base/log/stdout.log" >&2 || true
    exit 1
  fi
  echo "amqp://guest:guest@$address:$port/"
}

stop() {
  export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
  rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true
  if [ -f "$base/rabbitmq.pid" ]; then
    kill "$(cat "$base/rabbitmq.pid")" 2>/dev/null || true
  fi
  rm -rf "$base"
}

case "${1:-start}" in
  install) install ;;
  start) install; start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
