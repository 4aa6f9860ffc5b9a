#!/usr/bin/env bash
# weft mixed load run (issue 6): is a healthy connection's throughput unaffected by a
# throttled, slow one?
#
# Starts two twilio-sim instances as two weft connections on one SQLite weft:
#   healthy  (+1202… via [[routes]]): no faults, no rate limit of note
#   sick     (+1303… via [[routes]]): rate_limit_per_second = SICK_RATE (20), the simulator
#            answers each send after SICK_LATENCY (200ms) and holds every status callback
#            for SICK_CALLBACK_DELAY (10m), so no sick message reaches `delivered` during the
#            run and weft_message_status_total{status="delivered"} counts healthy ones only.
# Then, REPEAT times each:
#   alone:  weft-load e2e --to-prefix +12025 (COUNT messages to the healthy route)
#   loaded: the same e2e while a second weft-load `accept` pushes SICK_CONCURRENCY workers at
#           the sick route (--to-prefix +13035) for the whole e2e run; the sick backlog grows
#           far beyond what 20/s drains, so weft holds thousands of throttled messages.
#   control: the same as loaded, but the second generator's traffic goes to a *healthy*
#           third connection (+1404… → "control", its own twilio-sim with no latency and the
#           same held callbacks, no rate limit). Same offered load as "loaded"; the only
#           difference is whether the other connection is sick, so control vs loaded is the
#           effect of the sick connection itself (alone vs control is the cost of serving
#           the extra API traffic at all, which a sick connection can't be blamed for).
# All "alone" runs come first, then "control", then "loaded" (only then does a sick backlog
# exist). Prints a markdown block.
# Bounded; everything started is stopped on exit. Only 127.0.0.1 is contacted.
#
# SICK_ERROR_RATE=1 makes the sick connection a *failing* one instead: its simulator answers
# every send 500, so weft retries with back-off, the circuit opens, and the backlog waits for
# half-open probes (set SICK_RATE high, e.g. 10000, to test failure alone).
#
# Knobs: COUNT=10000 CONCURRENCY=64 REPEAT=2 SICK_CONCURRENCY=4 SICK_RATE=20 SICK_ERROR_RATE=0
#   SICK_LATENCY=200ms SICK_CALLBACK_DELAY=10m SICK_DURATION=(auto) TIMEOUT=300s LOADED_TIMEOUT=90s
#   PORT=18180 HEALTHY_PORT=19100 SICK_PORT=19200 CONTROL_PORT=19300 STEP_TIMEOUT=600 SKIP_BUILD=1 KEEP=1
#   LOG_LEVEL=warn OUT=dir
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
COUNT=${COUNT:-10000}
CONCURRENCY=${CONCURRENCY:-64}
REPEAT=${REPEAT:-2}
SICK_CONCURRENCY=${SICK_CONCURRENCY:-4}
SICK_RATE=${SICK_RATE:-20}
SICK_LATENCY=${SICK_LATENCY:-200ms}
SICK_ERROR_RATE=${SICK_ERROR_RATE:-0}
SICK_CALLBACK_DELAY=${SICK_CALLBACK_DELAY:-10m}
SICK_DURATION=${SICK_DURATION:-}
TIMEOUT=${TIMEOUT:-300s}
LOADED_TIMEOUT=${LOADED_TIMEOUT:-90s}
PORT=${PORT:-18180}
HEALTHY_PORT=${HEALTHY_PORT:-19100}
SICK_PORT=${SICK_PORT:-19200}
CONTROL_PORT=${CONTROL_PORT:-19300}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
LOG_LEVEL=${LOG_LEVEL:-warn}
TS=$(date +%Y%m%d_%H%M%S)
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/weft-mixed-$TS.XXXX")}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

SIM_SID=AC0000000000000000000000000000load
SIM_TOKEN=load-test-auth-token-0123456789ab
WEFT=${WEFT_BIN:-$TARGET_DIR/release/weft}
LOAD=${LOAD_BIN:-$TARGET_DIR/release/weft-load}
SIM=${SIM_BIN:-$TARGET_DIR/release/twilio-sim}

PIDS=()
DIR=""

# shellcheck source=load-tests/lib.sh
. "$ROOT/load-tests/lib.sh"

cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
  if [[ $KEEP != 1 && -n $DIR ]]; then rm -rf -- "$DIR"; fi
  log "logs and raw results in $OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The "delivered" sample of weft's status counter, summed (0 if absent).
delivered_now() {
  curl -fsS --max-time 5 "http://127.0.0.1:$PORT/metrics" |
    awk '/^weft_message_status_total\{/ && /status="delivered"/ {s += $NF} END {printf "%d\n", s}'
}
sim_stats() { curl -fsS --max-time 5 "http://127.0.0.1:$1/stats" || echo '{}'; }

if [[ $SKIP_BUILD != 1 ]]; then
  log "building (release): weft, weft-load, twilio-sim into $TARGET_DIR"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR bounded cargo build --release -p weft -p weft-load)
fi
for b in "$WEFT" "$LOAD" "$SIM"; do [[ -x $b ]] || die "missing binary $b"; done
for p in "$PORT" "$HEALTHY_PORT" $((HEALTHY_PORT + 1)) "$SICK_PORT" $((SICK_PORT + 1)) "$CONTROL_PORT" $((CONTROL_PORT + 1)); do
  port_free "$p" || die "port $p on 127.0.0.1 is in use; set PORT / HEALTHY_PORT / SICK_PORT / CONTROL_PORT"
done

# One Twilio connection on its own twilio-sim: conn_toml ID PORT RATE_LIMIT
conn_toml() {
  cat <<EOT
[[connections]]
id = "$1"
provider = "twilio"
tenant = "load"
base_url = "http://127.0.0.1:$2"
senders = ["+15005550006"]
channels = ["sms"]
rate_limit_per_second = $3
[connections.credentials]
account_sid = "$SIM_SID"
auth_token = "$SIM_TOKEN"

EOT
}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/weft-mixed-db.XXXX")
cfg=$DIR/weft.toml
cat >"$cfg" <<EOF
listen = "127.0.0.1:$PORT"
database_url = "sqlite://$DIR/weft.db"
public_url = "http://127.0.0.1:$PORT"

[log]
level = "$LOG_LEVEL"

[sandbox]
enabled = false

[[routes]]
prefix = "+1202"
connections = ["healthy"]

[[routes]]
prefix = "+1303"
connections = ["sick"]

[[routes]]
prefix = "+1404"
connections = ["control"]

$(conn_toml healthy "$HEALTHY_PORT" 100000)
$(conn_toml sick "$SICK_PORT" "$SICK_RATE")
$(conn_toml control "$CONTROL_PORT" 100000)
EOF

log "starting twilio-sim: healthy on $HEALTHY_PORT, sick on $SICK_PORT (latency $SICK_LATENCY, callbacks after $SICK_CALLBACK_DELAY)"
"$SIM" --port "$HEALTHY_PORT" --control-port $((HEALTHY_PORT + 1)) \
  --account-sid "$SIM_SID" --auth-token "$SIM_TOKEN" >"$OUT/healthy.sim.out" 2>"$OUT/healthy.sim.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$((HEALTHY_PORT + 1))/stats" 20 "$!" || die "healthy twilio-sim did not start"
"$SIM" --port "$SICK_PORT" --control-port $((SICK_PORT + 1)) \
  --account-sid "$SIM_SID" --auth-token "$SIM_TOKEN" \
  --latency "$SICK_LATENCY" --callback-delay "$SICK_CALLBACK_DELAY" --error-rate "$SICK_ERROR_RATE" >"$OUT/sick.sim.out" 2>"$OUT/sick.sim.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$((SICK_PORT + 1))/stats" 20 "$!" || die "sick twilio-sim did not start"
"$SIM" --port "$CONTROL_PORT" --control-port $((CONTROL_PORT + 1)) \
  --account-sid "$SIM_SID" --auth-token "$SIM_TOKEN" \
  --callback-delay "$SICK_CALLBACK_DELAY" >"$OUT/control.sim.out" 2>"$OUT/control.sim.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$((CONTROL_PORT + 1))/stats" 20 "$!" || die "control twilio-sim did not start"

log "migrate, tenant, key"
(cd "$DIR" && bounded "$WEFT" --config "$cfg" migrate) >"$OUT/admin.log" 2>&1 || die "migrate failed (see $OUT/admin.log)"
(cd "$DIR" && bounded "$WEFT" --config "$cfg" tenant create load) >>"$OUT/admin.log" 2>&1 || die "tenant create failed"
key=$(cd "$DIR" && bounded "$WEFT" --config "$cfg" api-key create --tenant load 2>>"$OUT/admin.log" | tail -1) ||
  die "api-key create failed (see $OUT/admin.log)"
[[ -n $key ]] || die "api-key create printed no key"

log "starting weft serve"
(cd "$DIR" && exec "$WEFT" --config "$cfg" serve) >"$OUT/weft.log" 2>&1 &
weft_pid=$!
PIDS+=("$weft_pid")
wait_http "http://127.0.0.1:$PORT/readyz" 60 "$weft_pid" || die "weft did not become ready (see $OUT/weft.log)"

# One healthy e2e run. The settle wait is off: with a sick backlog the outbox never empties.
healthy_e2e() { # label timeout
  WEFT_API_KEY=$key bounded "$LOAD" e2e --url "http://127.0.0.1:$PORT" \
    --to-prefix +12025 --count "$COUNT" --concurrency "$CONCURRENCY" --timeout "$2" \
    --settle-timeout 0s --pid "$weft_pid" --label "$1" \
    --sim-control "http://127.0.0.1:$((HEALTHY_PORT + 1))" \
    >>"$RESULTS" 2>"$OUT/$1.e2e.err" || log "[$1] e2e exited non-zero"
  tail -n 12 "$OUT/$1.e2e.err" >&2
  kill -0 "$weft_pid" 2>/dev/null || die "weft died during $1 (see $OUT/weft.log)"
}

# Must be quiet between runs: nothing of ours still being delivered.
quiesce() {
  local a b _
  a=$(delivered_now)
  for _ in $(seq 1 60); do
    sleep 1
    b=$(delivered_now)
    [[ $a == "$b" ]] && return 0
    a=$b
  done
  log "delivered counter still moving after 60 s"
}

e2e_secs=""
for i in $(seq 1 "$REPEAT"); do
  quiesce
  log "[alone #$i] load average $(cut -d' ' -f1-3 /proc/loadavg)"
  start=$(date +%s)
  healthy_e2e "healthy-alone-$i" "$TIMEOUT"
  e2e_secs=$(($(date +%s) - start))
done

# The second generator runs for the whole e2e: longest alone run × 3 + 10 s unless set.
dur=${SICK_DURATION:-$((e2e_secs * 3 + 10))s}
# One healthy e2e while a second generator pushes SICK_CONCURRENCY workers at another route.
with_second() { # kind(control|sick) prefix control-port run-number
  local kind=$1 prefix=$2 cport=$3 i=$4 label
  label="healthy-with-$kind-loaded-$i"
  quiesce
  log "[$kind #$i] second generator: $SICK_CONCURRENCY workers at $prefix for $dur; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  # Not through bounded(): $! must be timeout's own pid so that stopping it stops weft-load.
  WEFT_API_KEY=$key timeout --kill-after=10 "$STEP_TIMEOUT" "$LOAD" accept --url "http://127.0.0.1:$PORT" \
    --to-prefix "$prefix" --concurrency "$SICK_CONCURRENCY" --duration "$dur" --warmup 2s \
    --label "$kind-generator-$i" >>"$OUT/second.jsonl" 2>"$OUT/$kind-generator-$i.err" &
  second_pid=$!
  PIDS+=("$second_pid")
  sleep 4
  healthy_e2e "$label" "$LOADED_TIMEOUT"
  if kill -0 "$second_pid" 2>/dev/null; then
    log "[$kind #$i] healthy e2e finished while the second generator still ran (good)"
  else
    log "[$kind #$i] note: the second generator ended before the healthy e2e did"
  fi
  wait "$second_pid" || log "[$kind #$i] second generator exited non-zero"
  log "[$kind #$i] $kind twilio-sim: $(sim_stats $((cport + 1)))"
  tail -n 8 "$OUT/$kind-generator-$i.err" >&2
}
for i in $(seq 1 "$REPEAT"); do with_second control +14045 "$CONTROL_PORT" "$i"; done
for i in $(seq 1 "$REPEAT"); do with_second sick +13035 "$SICK_PORT" "$i"; done

healthy_stats=$(sim_stats $((HEALTHY_PORT + 1)))
sick_stats=$(sim_stats $((SICK_PORT + 1)))
control_stats=$(sim_stats $((CONTROL_PORT + 1)))
status_line=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT/metrics" | grep -E '^weft_(message_status_total|outbox_depth|connection_circuit_open)' || true)
printf '%s\n' "$status_line" >"$OUT/final-metrics.txt"
cat "$RESULTS" "$OUT/second.jsonl" >"$OUT/all.jsonl"

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if git -C "$ROOT" status --porcelain 2>/dev/null | grep -q .; then dirty=" (with uncommitted changes)"; fi
cat <<EOF

<!-- paste into load-tests/RESULTS.md -->
### Mixed run $TS — weft $rev$dirty

- Machine: $(nproc) CPUs, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)
- Command: \`SKIP_BUILD=$SKIP_BUILD COUNT=$COUNT LOADED_TIMEOUT=$LOADED_TIMEOUT CONCURRENCY=$CONCURRENCY REPEAT=$REPEAT SICK_CONCURRENCY=$SICK_CONCURRENCY SICK_RATE=$SICK_RATE SICK_ERROR_RATE=$SICK_ERROR_RATE SICK_LATENCY=$SICK_LATENCY SICK_CALLBACK_DELAY=$SICK_CALLBACK_DELAY load-tests/mixed.sh\`
- second generator ($SICK_CONCURRENCY workers) duration per control/loaded run: $dur

$("$LOAD" report "$OUT/all.jsonl")

healthy twilio-sim /stats: \`$healthy_stats\`
sick twilio-sim /stats: \`$sick_stats\`
control twilio-sim /stats: \`$control_stats\`

Raw JSON lines: \`$OUT/all.jsonl\`; final status counters: \`$OUT/final-metrics.txt\`
EOF
