# Shared by the benchmark scripts (sourced, not run): core pinning, stopping what a script
# started, and reading a process's CPU time and memory from /proc.

# What every benchmark script does first, $1 naming it: a descriptor per connection for
# every process it starts, the core pinning below, and release builds of both binaries.
bench_setup() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  pin_cores "$1"
  echo "== building release binaries" >&2
  cargo build --release --bin tickcast --bin tickcast-load >&2
}

# SERVER_PIN and LOAD_PIN: the commands that pin the server to core 0 and the load to core 1
# (empty, with a message naming script $1, without taskset or a second core).
pin_cores() {
  SERVER_PIN=()
  LOAD_PIN=()
  if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
  else
    echo "$1: taskset missing or fewer than 2 cores: running unpinned" >&2
  fi
}

# Stops the process whose pid is in the variable named $1 (TERM, then KILL after 10 s) and
# empties the variable.
stop_pid() {
  local pid=${!1}
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  printf -v "$1" '%s' ""
}

# utime + stime of process $1, in clock ticks (empty if it is gone).
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || true
}

# Resident memory of process $1 in KiB (empty if it is gone).
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true
}

# The share of one core used between two cpu_ticks readings $1 and $2 taken at the epoch
# seconds $3 and $4, as 0.000; `null` if a reading is missing.
cpu_share() {
  awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { if (a == "" || b == "" || t1 <= t0) print "null"; else printf "%.3f", (b - a) / hz / (t1 - t0) }'
}
