#!/usr/bin/env bash
# HTTPS sweep: for each client count, the same load over plain HTTP/1.1 (the baseline, run in
# the same run so ratios hold on a noisy machine), HTTP/1.1 over TLS and HTTP/2 over TLS
# (--h2, STREAMS per connection). The server runs on core 0 and tickcast-load on core 1 when
# taskset is there. Per run: one JSON line in $OUT with the load's report, the server's CPU over
# the steady window (share of one core), its RSS before the load and in the steady window, and
# the memory per stream between the two. Loopback only; each run is bounded by
# RAMP + DURATION + a few seconds.
#
# Environment (defaults in brackets):
#   CLIENTS   client counts                     ["1000 10000"]
#   MODES     h1 (plain), tls-h1, tls-h2         ["h1 tls-h1 tls-h2"]
#   STREAMS   streams per HTTP/2 connection      [100]
#   DURATION  steady seconds per run             [15]
#   RAMP      ramp seconds per run               [5]
#   RATE      server --rate                      [1.4]
#   SYMBOLS   first N symbols of data/symbols.csv [100]
#   OUT       JSON lines output                  [target/tls_bench.jsonl]
#   PORT      loopback port                      [3991]
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-"1000 10000"}
MODES=${MODES:-"h1 tls-h1 tls-h2"}
STREAMS=${STREAMS:-100}
DURATION=${DURATION:-15}
RAMP=${RAMP:-5}
RATE=${RATE:-1.4}
SYMBOLS=${SYMBOLS:-100}
OUT=${OUT:-target/tls_bench.jsonl}
PORT=${PORT:-3991}
START=2024-03-04T12:00:00-05:00
ADDR="127.0.0.1:${PORT}"

for v in $CLIENTS "$STREAMS" "$DURATION" "$RAMP" "$PORT" "$SYMBOLS"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "tls_bench.sh: CLIENTS, STREAMS, DURATION, RAMP, PORT and SYMBOLS must be whole numbers" >&2; exit 2; }
done
((DURATION >= 4)) || { echo "tls_bench.sh: DURATION must be at least 4 seconds" >&2; exit 2; }
for m in $MODES; do
  case $m in h1 | tls-h1 | tls-h2) ;; *) echo "tls_bench.sh: unknown mode '$m'" >&2; exit 2 ;; esac
done

source scripts/bench_lib.sh
bench_setup tls_bench.sh

SERVER_PID=""
stop_server() { stop_pid SERVER_PID; }
trap stop_server EXIT
trap 'exit 130' INT TERM


mkdir -p "$(dirname "$OUT")"
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tickcast-tls-bench.XXXXXX")
SYMBOL_FILE="$LOGDIR/symbols.csv"
awk -v n="$SYMBOLS" 'NR <= n + 1' data/symbols.csv >"$SYMBOL_FILE"
echo "== writing $OUT (logs in $LOGDIR)" >&2

for clients in $CLIENTS; do
  for mode in $MODES; do
    tag="c${clients}-${mode}"
    server_tls=()
    load_args=(--url "http://${ADDR}/quotes")
    case $mode in
      tls-h1) server_tls=(--tls-self-signed); load_args=(--url "https://${ADDR}/quotes" --insecure) ;;
      tls-h2) server_tls=(--tls-self-signed); load_args=(--url "https://${ADDR}/quotes" --insecure --h2 --streams-per-conn "$STREAMS") ;;
    esac
    echo "== clients=$clients mode=$mode rate=$RATE ramp=${RAMP}s duration=${DURATION}s" >&2
    "${SERVER_PIN[@]}" target/release/tickcast --addr "$ADDR" --seed 1 --rate "$RATE" \
      --start "$START" --symbols "$SYMBOL_FILE" --max-clients "$((clients + 100))" \
      --max-connections-per-ip "$((clients + 100))" \
      "${server_tls[@]}" >"$LOGDIR/server-$tag.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
      grep -q "listening on" "$LOGDIR/server-$tag.log" && break
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    grep -q "listening on" "$LOGDIR/server-$tag.log" || {
      echo "tls_bench.sh: the server did not start; see $LOGDIR/server-$tag.log" >&2
      exit 1
    }
    sleep 1
    idle_kib=$(rss_kib "$SERVER_PID")

    "${LOAD_PIN[@]}" target/release/tickcast-load "${load_args[@]}" \
      --clients "$clients" --duration "$DURATION" --ramp "$RAMP" --json-only --quiet \
      >"$LOGDIR/load-$tag.json" 2>"$LOGDIR/load-$tag.err" &
    load_pid=$!
    sleep "$((RAMP + 1))"
    cpu0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s.%N)
    sleep "$((DURATION / 2 - 1))"
    steady_kib=$(rss_kib "$SERVER_PID")
    sleep "$((DURATION - DURATION / 2 - 1))"
    cpu1=$(cpu_ticks "$SERVER_PID"); t1=$(date +%s.%N)
    server_cpu=$(cpu_share "$cpu0" "$cpu1" "$t0" "$t1")
    load_rc=0
    wait "$load_pid" || load_rc=$?
    stop_server
    line=$(tail -n 1 "$LOGDIR/load-$tag.json")
    if [[ $line != \{* ]]; then
      echo "tls_bench.sh: tickcast-load exited $load_rc without a JSON line:" >&2
      cat "$LOGDIR/load-$tag.err" >&2
      continue
    fi
    per_stream=$(awk -v a="${idle_kib:-0}" -v b="${steady_kib:-0}" -v n="$clients" 'BEGIN { printf "%.1f", (b - a) / n }')
    printf '{"mode":"%s","rate":%s,"idle_rss_kib":%s,"rss_kib":%s,"kib_per_stream":%s,"server_cpu":%s,"load_exit":%s,%s\n' \
      "$mode" "$RATE" "${idle_kib:-null}" "${steady_kib:-null}" "$per_stream" "$server_cpu" "$load_rc" "${line#\{}" >>"$OUT"
    echo "   $(tail -n 1 "$OUT" | cut -c1-220)" >&2
  done
done
echo "== done: $OUT" >&2
