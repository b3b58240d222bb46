#!/usr/bin/env bash
# Scaling sweep: for each client count, each --flush-ms setting and each role, start tickcast on
# loopback (pinned to core 0 when possible), load it with tickcast-load (pinned to core 1),
# sample the server's resident memory once in the steady window, stop the server, and append
# one JSON line per run to $OUT. Loopback only; every run is bounded by RAMP + DURATION + a few
# seconds.
#
# ROLES="all edge" compares one edge with --role all in the same sweep, alternating at each
# client count: for `edge`, a redis-server without persistence and a --role simulator with the
# same market flags run beside the load (core 1), the edge on core 0, and the JSON line gains
# the edge's publish-to-edge delay over the steady window (`upstream_delay_ms`: count, p50, p99
# from its tickcast_upstream_delay_seconds histogram).
#
# Environment (defaults in brackets):
#   CLIENTS   client counts to try             ["1000 2000 5000 10000 15000"]
#   FLUSH     --flush-ms values to try         ["100 0"]
#   DURATION  steady seconds per run           [20]
#   RAMP      ramp seconds per run             [5]
#   RATE      server --rate (updates/s/symbol) [2]
#   OUT       JSON lines output                [target/scaling.jsonl]
#   PORT      loopback port for the server     [3990]
#   START     market time at start-up          [2024-03-04T12:00:00-05:00, a fixed midday]
#   SYMBOLS   first N symbols of data/symbols.csv [100]
#   EVENTS    ?events= of the load's URL        [all kinds]
#   ROLES     roles to try: all, edge           [all]
#
# Then: python3 scripts/plot_scaling.py "$OUT"   (writes docs/scaling.svg, prints a table)
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"1000 2000 5000 10000 15000"}
FLUSH=${FLUSH:-"100 0"}
DURATION=${DURATION:-20}
RAMP=${RAMP:-5}
RATE=${RATE:-2}
OUT=${OUT:-target/scaling.jsonl}
PORT=${PORT:-3990}
START=${START:-2024-03-04T12:00:00-05:00}
SYMBOLS=${SYMBOLS:-100}
EVENTS=${EVENTS:-}
ROLES=${ROLES:-all}
ADDR="127.0.0.1:${PORT}"
REDIS_PORT=$((PORT + 10))
SIM_ADDR="127.0.0.1:$((PORT + 1))"

for n in $CLIENTS; do
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 50000)); then
    echo "scaling.sh: CLIENTS must be numbers from 1 to 50000, got '$n'" >&2
    exit 2
  fi
done
for r in $ROLES; do
  case $r in
    all) ;;
    edge) command -v redis-server >/dev/null 2>&1 ||
      { echo "scaling.sh: ROLES has edge but redis-server is not installed" >&2; exit 2; } ;;
    *) echo "scaling.sh: ROLES must be all or edge, got '$r'" >&2; exit 2 ;;
  esac
done
for f in $FLUSH; do
  [[ $f =~ ^[0-9]+$ ]] || { echo "scaling.sh: FLUSH must be numbers, got '$f'" >&2; exit 2; }
done
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "scaling.sh: RATE must be a number, got '$RATE'" >&2; exit 2; }
((DURATION >= 4)) 2>/dev/null || { echo "scaling.sh: DURATION must be at least 4 seconds" >&2; exit 2; }
for v in "$DURATION" "$RAMP" "$PORT"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "scaling.sh: DURATION, RAMP and PORT must be whole numbers" >&2; exit 2; }
done

source scripts/bench_lib.sh
bench_setup scaling.sh

SERVER_PID=""
SIM_PID=""
REDIS_PID=""
stop_server() {
  stop_pid SERVER_PID
  stop_pid SIM_PID
  stop_pid REDIS_PID
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Whether the node at $1 (default: the server under load) answers /healthz with 200.
healthy() {
  local addr=${1:-$ADDR}
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 1 "http://${addr}/healthz" >/dev/null 2>&1
  else
    # bash's /dev/tcp: the status line of GET /healthz must say 200.
    (
      exec 3<>"/dev/tcp/127.0.0.1/${addr##*:}" &&
        printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3 &&
        head -c 12 <&3 | grep -q ' 200'
    ) 2>/dev/null
  fi
}

# Waits up to 10 s for /healthz at $1 to say 200 while the process $2 lives.
wait_healthy() {
  for _ in $(seq 100); do
    healthy "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  healthy "$1"
}

# Saves the /metrics page of the server under load to $1 (empty if it cannot be read).
scrape() {
  curl -fsS --max-time 2 "http://${ADDR}/metrics" >"$1" 2>/dev/null || : >"$1"
}

mkdir -p "$(dirname "$OUT")"
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tickcast-scaling.XXXXXX")
# The first $SYMBOLS symbols (plus the header line).
SYMBOL_FILE="$LOGDIR/symbols.csv"
awk -v n="$SYMBOLS" 'NR <= n + 1' data/symbols.csv >"$SYMBOL_FILE"
URL_PATH="/quotes"
[ -n "$EVENTS" ] && URL_PATH="/quotes?events=${EVENTS}"
echo "== writing $OUT (logs in $LOGDIR)" >&2

MARKET=(--seed 1 --rate "$RATE" --start "$START" --symbols "$SYMBOL_FILE")
for flush in $FLUSH; do
  for clients in $CLIENTS; do
   for role in $ROLES; do
    tag="c${clients}-f${flush}-${role}"
    echo "== role=$role clients=$clients flush_ms=$flush rate=$RATE ramp=${RAMP}s duration=${DURATION}s" >&2
    NODE=(--addr "$ADDR" "${MARKET[@]}")
    if [ "$role" = edge ]; then
      # Redis and the simulator share core 1 with the load; the edge has core 0 to itself.
      "${LOAD_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no >"$LOGDIR/redis-$tag.log" 2>&1 &
      REDIS_PID=$!
      for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/${REDIS_PORT}") 2>/dev/null && break
        sleep 0.1
      done
      "${LOAD_PIN[@]}" target/release/tickcast --role simulator --redis "redis://127.0.0.1:${REDIS_PORT}" \
        --addr "$SIM_ADDR" "${MARKET[@]}" >"$LOGDIR/simulator-$tag.log" 2>&1 &
      SIM_PID=$!
      if ! wait_healthy "$SIM_ADDR" "$SIM_PID"; then
        echo "scaling.sh: the simulator did not become healthy; see $LOGDIR/simulator-$tag.log" >&2
        exit 1
      fi
      NODE=(--addr "$ADDR" --role edge --redis "redis://127.0.0.1:${REDIS_PORT}" --symbols "$SYMBOL_FILE")
    fi
    "${SERVER_PIN[@]}" target/release/tickcast "${NODE[@]}" \
      --flush-ms "$flush" --max-clients "$((clients + 100))" \
      --max-connections-per-ip "$((clients + 100))" >"$LOGDIR/server-$tag.log" 2>&1 &
    SERVER_PID=$!
    if ! wait_healthy "$ADDR" "$SERVER_PID"; then
      echo "scaling.sh: the server did not become healthy; see $LOGDIR/server-$tag.log" >&2
      exit 1
    fi

    "${LOAD_PIN[@]}" target/release/tickcast-load --url "http://${ADDR}${URL_PATH}" \
      --clients "$clients" --duration "$DURATION" --ramp "$RAMP" --json-only --quiet \
      >"$LOGDIR/load-$tag.json" 2>"$LOGDIR/load-$tag.err" &
    load_pid=$!

    # Server CPU over the steady window (less a second at each end) and one RSS sample in
    # its middle. CPU is user + system time from /proc/PID/stat, as a share of one core.
    sleep "$((RAMP + 1))"
    scrape "$LOGDIR/metrics0-$tag.txt"
    cpu0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s.%N)
    sleep "$((DURATION / 2 - 1))"
    rss=$(rss_kib "$SERVER_PID")
    rss=${rss:-null}
    sleep "$((DURATION - DURATION / 2 - 1))"
    cpu1=$(cpu_ticks "$SERVER_PID"); t1=$(date +%s.%N)
    scrape "$LOGDIR/metrics1-$tag.txt"
    delay=null
    if [ "$role" = edge ]; then
      delay=$(python3 scripts/prom_quantiles.py "$LOGDIR/metrics0-$tag.txt" \
        "$LOGDIR/metrics1-$tag.txt" tickcast_upstream_delay_seconds 2>/dev/null || echo null)
    fi
    server_cpu=$(cpu_share "$cpu0" "$cpu1" "$t0" "$t1")

    load_rc=0
    wait "$load_pid" || load_rc=$?
    stop_server

    line=$(tail -n 1 "$LOGDIR/load-$tag.json")
    if [[ $line != \{* ]]; then
      echo "scaling.sh: tickcast-load exited $load_rc without a JSON line:" >&2
      cat "$LOGDIR/load-$tag.err" >&2
      continue
    fi
    if [ "$load_rc" -ne 0 ]; then
      echo "scaling.sh: tickcast-load exited $load_rc (recorded anyway)" >&2
    fi
    printf '{"role":"%s","flush_ms":%s,"rate":%s,"rss_kib":%s,"server_cpu":%s,"upstream_delay_ms":%s,"load_exit":%s,%s\n' \
      "$role" "$flush" "$RATE" "$rss" "$server_cpu" "$delay" "$load_rc" "${line#\{}" >>"$OUT"
    echo "   $(tail -n 1 "$OUT" | cut -c1-200)" >&2
   done
  done
done
echo "== done: $OUT" >&2
