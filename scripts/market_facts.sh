#!/usr/bin/env bash
# Measures the stylized facts on the served feed: starts tickcast on loopback (pinned to core 0
# when possible) with a 23-symbol panel (the first 20 stocks of data/symbols.csv plus SPY, VOO
# and VTI, the same panel as the unit tests), captures DAYS trading days with tickcast-facts
# (pinned to core 1), prints the table, writes target/market-facts.json and redraws the plots
# in docs/. Bounded by the days asked for and tickcast-facts' --max-seconds; loopback only.
#
# Environment (defaults in brackets):
#   DAYS    trading days to capture                        [250]
#   SPEED   market seconds per wall second                  [10000]
#   RATE    events per symbol per wall second (regular)     [2000]
#   SEED    simulation seed                                 [1]
#   START   first market day                                [2024-01-02]
#   PORT    loopback port                                   [3980]
#
# At the defaults a symbol trades about 20 times per 5-minute interval (fewer trades leave
# stale prices on the grid) and 250 days take about 25 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

DAYS=${DAYS:-250}
SPEED=${SPEED:-10000}
RATE=${RATE:-2000}
SEED=${SEED:-1}
START=${START:-2024-01-02}
PORT=${PORT:-3980}
ADDR="127.0.0.1:${PORT}"

cargo build --release --quiet --bin tickcast --bin tickcast-facts

panel=target/market-panel.csv
{
  head -n 1 data/symbols.csv
  awk -F, 'NR > 1 && $8 != "Index" && n < 20 { print; n++ }' data/symbols.csv
  grep -E '^(SPY|VOO|VTI),' data/symbols.csv
} >"$panel"

# Runs a command pinned to core $1 when taskset and a second core exist. It execs, so `pin ... &`
# leaves $! the command's own PID (the trap below must stop the server, not a subshell).
pin() { if command -v taskset >/dev/null 2>&1 && (($(nproc) > 1)); then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }

pin 0 target/release/tickcast --addr "$ADDR" --symbols "$panel" --seed "$SEED" --start "$START" \
  --speed "$SPEED" --rate "$RATE" --history 500000 2>target/market-facts-server.log &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then break; fi
  sleep 0.1
done

(pin 1 target/release/tickcast-facts --url "http://${ADDR}" --days "$DAYS" --max-seconds 3600 \
  --out target/market-facts.json)
python3 scripts/plot_market.py target/market-facts.json --out-dir docs
