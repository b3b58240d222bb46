#!/usr/bin/env bash
# Scripted failover on loopback: a redis-server without persistence, one simulator, three
# edges, and tickcast-load spreading CLIENTS over the three edges with --reconnect. At KILL_AT
# seconds after the load starts, one edge is killed with SIGKILL; its clients resume on the
# others with Last-Event-ID. Prints the load's JSON line (id_jumps, order_errors, reconnects,
# reconnect_snapshots, reconnect_max_ms, latency), then one line per surviving edge with its
# publish-to-edge delay over the whole run (p50/p99 of tickcast_upstream_delay_seconds) and
# its upstream lag. Every process it starts is stopped at the end.
#
# Pinning (with taskset and 2+ cores): the three edges share core 0; redis-server, the
# simulator and the load generator share core 1.
#
# Environment (defaults in brackets):
#   CLIENTS   streams over the three edges       [9000]
#   DURATION  steady seconds                     [20]
#   RAMP      ramp seconds                       [5]
#   KILL_AT   seconds after the load starts      [10]
#   RETRY_MS  the load's reconnect delay         [1000]
#   RATE      the simulator's --rate             [0.5: about 70 events/s with 100 symbols]
#   SYMBOLS   first N symbols of data/symbols.csv [100]
#   START     market time at start-up            [2024-03-04T12:00:00-05:00, a fixed midday]
#   BASE_PORT first of the loopback ports used   [3980]
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-9000}
DURATION=${DURATION:-20}
RAMP=${RAMP:-5}
KILL_AT=${KILL_AT:-10}
RETRY_MS=${RETRY_MS:-1000}
RATE=${RATE:-0.5}
SYMBOLS=${SYMBOLS:-100}
START=${START:-2024-03-04T12:00:00-05:00}
BASE_PORT=${BASE_PORT:-3980}
for v in "$CLIENTS" "$DURATION" "$RAMP" "$KILL_AT" "$RETRY_MS" "$SYMBOLS" "$BASE_PORT"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "failover.sh: CLIENTS, DURATION, RAMP, KILL_AT, RETRY_MS, SYMBOLS and BASE_PORT must be whole numbers, got '$v'" >&2; exit 2; }
done
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "failover.sh: RATE must be a number, got '$RATE'" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "failover.sh: redis-server is not installed" >&2; exit 2; }
source scripts/bench_lib.sh
bench_setup failover.sh
BIN=target/release/tickcast
LOAD=target/release/tickcast-load
# taskset execs the command, so $! below is the process itself (the kill hits the edge).

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tickcast-failover.XXXXXX")
SYMBOL_FILE="$LOGDIR/symbols.csv"
awk -v n="$SYMBOLS" 'NR <= n + 1' data/symbols.csv >"$SYMBOL_FILE"
REDIS_PORT=$((BASE_PORT + 10))
REDIS="redis://127.0.0.1:${REDIS_PORT}"
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
"${LOAD_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
sleep 0.3
"${LOAD_PIN[@]}" "$BIN" --role simulator --redis "$REDIS" --addr "127.0.0.1:${BASE_PORT}" \
  --start "$START" --seed 1 --rate "$RATE" --symbols "$SYMBOL_FILE" 2>"$LOGDIR/simulator.log" &
pids+=($!)
sleep 0.5
edges=()
for i in 1 2 3; do
  port=$((BASE_PORT + i))
  "${SERVER_PIN[@]}" "$BIN" --role edge --redis "$REDIS" --addr "127.0.0.1:${port}" --symbols "$SYMBOL_FILE" \
    --max-clients 20000 --max-connections-per-ip 50000 2>"$LOGDIR/edge-$i.log" &
  pids+=($!)
  edges+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((BASE_PORT + i))/healthz" >/dev/null && break
    sleep 0.1
  done
done
echo "failover.sh: $CLIENTS clients, --rate $RATE, $SYMBOLS symbols; logs in $LOGDIR" >&2
"${LOAD_PIN[@]}" "$LOAD" --url "http://127.0.0.1:$((BASE_PORT + 1))/quotes" \
  --url "http://127.0.0.1:$((BASE_PORT + 2))/quotes" --url "http://127.0.0.1:$((BASE_PORT + 3))/quotes" \
  --clients "$CLIENTS" --ramp "$RAMP" --duration "$DURATION" --reconnect --retry-ms "$RETRY_MS" \
  --json-only --quiet &
load=$!
pids+=("$load")
sleep "$KILL_AT"
kill -KILL "${edges[0]}" || echo "failover.sh: the edge to kill had already stopped" >&2
echo "failover.sh: killed the edge on port $((BASE_PORT + 1)) at t=${KILL_AT}s" >&2
wait "$load"
for i in 2 3; do
  metrics="$LOGDIR/metrics-$i.txt"
  curl -s "http://127.0.0.1:$((BASE_PORT + i))/metrics" >"$metrics" || true
  delay=$(python3 scripts/prom_quantiles.py /dev/null "$metrics" tickcast_upstream_delay_seconds || echo null)
  lag=$(grep -E '^tickcast_upstream_(lag_seq|lag_ms|rebuilds_total)' "$metrics" | tr '\n' ' ' || true)
  echo "edge $((BASE_PORT + i)): publish to edge $delay; $lag" >&2
done
