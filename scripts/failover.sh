#!/usr/bin/env bash
# Scripted failover on loopback: a redis-server without persistence, one simulator, three
# edges (pinned to core 0 when possible), and tickcast-load spreading CLIENTS over the three
# edges with --reconnect (pinned to core 1). At KILL_AT seconds after the load starts, one edge
# is killed with SIGKILL; its clients resume on the others with Last-Event-ID. Prints the
# load's JSON line (id_jumps, order_errors, reconnects, reconnect_max_ms, latency) and the
# edges' upstream lag. Every process it starts is stopped at the end.
#
# Environment (defaults in brackets):
#   CLIENTS   streams over the three edges   [9000]
#   DURATION  steady seconds                 [20]
#   RAMP      ramp seconds                   [5]
#   KILL_AT   seconds after the load starts  [10]
#   RETRY_MS  the load's reconnect delay     [1000]
#   BASE_PORT first of five loopback ports   [3980]
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-9000}
DURATION=${DURATION:-20}
RAMP=${RAMP:-5}
KILL_AT=${KILL_AT:-10}
RETRY_MS=${RETRY_MS:-1000}
BASE_PORT=${BASE_PORT:-3980}
command -v redis-server >/dev/null || { echo "failover.sh: redis-server is not installed" >&2; exit 2; }
cargo build --release --bin tickcast --bin tickcast-load >&2
BIN=target/release/tickcast
LOAD=target/release/tickcast-load
# Runs a command pinned to a core; always started in the background, where exec makes $! the
# command's own pid (so that the kill below hits the edge, not a subshell).
pin() { if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }

REDIS_PORT=$((BASE_PORT + 10))
REDIS="redis://127.0.0.1:${REDIS_PORT}"
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
sleep 0.3
pin 0 "$BIN" --role simulator --redis "$REDIS" --addr "127.0.0.1:${BASE_PORT}" \
  --start 2024-03-04T12:00:00-05:00 --seed 1 2>/dev/null &
pids+=($!)
sleep 0.5
edges=()
for i in 1 2 3; do
  port=$((BASE_PORT + i))
  pin 0 "$BIN" --role edge --redis "$REDIS" --addr "127.0.0.1:${port}" --max-clients 20000 \
    --max-connections-per-ip 50000 2>/dev/null &
  pids+=($!)
  edges+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((BASE_PORT + i))/healthz" >/dev/null && break
    sleep 0.1
  done
done
pin 1 "$LOAD" --url "http://127.0.0.1:$((BASE_PORT + 1))/quotes" \
  --url "http://127.0.0.1:$((BASE_PORT + 2))/quotes" --url "http://127.0.0.1:$((BASE_PORT + 3))/quotes" \
  --clients "$CLIENTS" --ramp "$RAMP" --duration "$DURATION" --reconnect --retry-ms "$RETRY_MS" \
  --json-only --quiet &
load=$!
sleep "$KILL_AT"
kill -KILL "${edges[0]}"
echo "failover.sh: killed the edge on port $((BASE_PORT + 1)) at t=${KILL_AT}s" >&2
wait "$load"
for i in 2 3; do
  curl -s "http://127.0.0.1:$((BASE_PORT + i))/metrics" | grep -E '^tickcast_upstream_(lag|rebuilds)' >&2
done
