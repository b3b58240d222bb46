#!/usr/bin/env bash
# A local tickcast cluster in one command: a redis-server without persistence, one simulator
# and three edges, all on loopback. Ctrl-C stops everything this script started (and only that).
#
#   scripts/cluster.sh              # build (release) and run until Ctrl-C
#
# Environment (defaults in brackets):
#   REDIS_PORT  port of the redis-server this script starts          [6390]
#   EDGE_PORTS  ports of the edges                                   ["3001 3002 3003"]
#   SIM_PORT    port of the simulator's /healthz and /metrics        [3000]
#   FEED        --feed name                                          [tickcast]
#   BIN         tickcast binary [built with cargo build --release: target/release/tickcast]
#   Any other TICKCAST_* variable (TICKCAST_RATE, TICKCAST_SPEED, TICKCAST_SEED, ...) reaches
#   every process, as the flags' environment variables.
#
# Point a load balancer at the edges, or open http://127.0.0.1:3001/ in a browser; see
# docs/CLUSTER.md for what happens when a process dies.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${REDIS_PORT:-6390}
EDGE_PORTS=${EDGE_PORTS:-"3001 3002 3003"}
SIM_PORT=${SIM_PORT:-3000}
FEED=${FEED:-tickcast}
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin tickcast
  BIN=target/release/tickcast
fi
REDIS="redis://127.0.0.1:${REDIS_PORT}"

command -v redis-server >/dev/null 2>&1 || {
  echo "cluster.sh: redis-server is not installed (Debian: apt-get install redis-server)" >&2
  exit 2
}

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/${REDIS_PORT}") 2>/dev/null && break
  sleep 0.1
done

"$BIN" --role simulator --redis "$REDIS" --feed "$FEED" --addr "127.0.0.1:${SIM_PORT}" &
pids+=($!)
for port in $EDGE_PORTS; do
  "$BIN" --role edge --redis "$REDIS" --feed "$FEED" --addr "127.0.0.1:${port}" &
  pids+=($!)
done

echo "cluster.sh: redis ${REDIS}, simulator http://127.0.0.1:${SIM_PORT}/healthz, edges:" >&2
for port in $EDGE_PORTS; do echo "  http://127.0.0.1:${port}/" >&2; done
echo "cluster.sh: Ctrl-C stops them all" >&2
wait -n "${pids[@]}" || true
echo "cluster.sh: a process ended; stopping the others" >&2
