#!/usr/bin/env bash
# Scaling sweep: for each client count and each --flush-ms setting, start tickcast on loopback
# (pinned to core 0 when possible), load it with tickcast-load (pinned to core 1), sample the
# server's resident memory once in the steady window, stop the server, and append one JSON line
# per run to $OUT. Loopback only; every run is bounded by RAMP + DURATION + a few seconds.
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
ADDR="127.0.0.1:${PORT}"

for n in $CLIENTS; do
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 50000)); then
    echo "scaling.sh: CLIENTS must be numbers from 1 to 50000, got '$n'" >&2
    exit 2
  fi
done
for f in $FLUSH; do
  [[ $f =~ ^[0-9]+$ ]] || { echo "scaling.sh: FLUSH must be numbers, got '$f'" >&2; exit 2; }
done
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "scaling.sh: RATE must be a number, got '$RATE'" >&2; exit 2; }
((DURATION >= 4)) 2>/dev/null || { echo "scaling.sh: DURATION must be at least 4 seconds" >&2; exit 2; }
for v in "$DURATION" "$RAMP" "$PORT"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "scaling.sh: DURATION, RAMP and PORT must be whole numbers" >&2; exit 2; }
done

# Both processes need a descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PIN=()
LOAD_PIN=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  LOAD_PIN=(taskset -c 1)
else
  echo "scaling.sh: taskset missing or fewer than 2 cores: running unpinned" >&2
fi

echo "== building release binaries" >&2
cargo build --release --bin tickcast --bin tickcast-load >&2

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

healthy() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 1 "http://${ADDR}/healthz" >/dev/null 2>&1
  else
    # bash's /dev/tcp: the status line of GET /healthz must say 200.
    (
      exec 3<>"/dev/tcp/127.0.0.1/${PORT}" &&
        printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$ADDR" >&3 &&
        head -c 12 <&3 | grep -q ' 200'
    ) 2>/dev/null
  fi
}

# utime + stime of a process, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || true
}

mkdir -p "$(dirname "$OUT")"
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tickcast-scaling.XXXXXX")
# The first $SYMBOLS symbols (plus the header line).
SYMBOL_FILE="$LOGDIR/symbols.csv"
awk -v n="$SYMBOLS" 'NR <= n + 1' data/symbols.csv >"$SYMBOL_FILE"
URL_PATH="/quotes"
[ -n "$EVENTS" ] && URL_PATH="/quotes?events=${EVENTS}"
echo "== writing $OUT (logs in $LOGDIR)" >&2

for flush in $FLUSH; do
  for clients in $CLIENTS; do
    tag="c${clients}-f${flush}"
    echo "== clients=$clients flush_ms=$flush rate=$RATE ramp=${RAMP}s duration=${DURATION}s" >&2
    "${SERVER_PIN[@]}" target/release/tickcast --addr "$ADDR" --seed 1 --rate "$RATE" \
      --start "$START" --symbols "$SYMBOL_FILE" \
      --flush-ms "$flush" --max-clients "$((clients + 100))" \
      --max-connections-per-ip "$((clients + 100))" >"$LOGDIR/server-$tag.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
      healthy && break
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if ! healthy; then
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
    cpu0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s.%N)
    sleep "$((DURATION / 2 - 1))"
    rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)
    rss_kib=${rss_kib:-null}
    sleep "$((DURATION - DURATION / 2 - 1))"
    cpu1=$(cpu_ticks "$SERVER_PID"); t1=$(date +%s.%N)
    server_cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { if (a == "" || b == "" || t1 <= t0) print "null"; else printf "%.3f", (b - a) / hz / (t1 - t0) }')

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
    printf '{"flush_ms":%s,"rate":%s,"rss_kib":%s,"server_cpu":%s,"load_exit":%s,%s\n' \
      "$flush" "$RATE" "$rss_kib" "$server_cpu" "$load_rc" "${line#\{}" >>"$OUT"
    echo "   $(tail -n 1 "$OUT" | cut -c1-200)" >&2
  done
done
echo "== done: $OUT" >&2
