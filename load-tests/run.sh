#!/usr/bin/env bash
# weft load tests, end to end. Builds weft, weft-load and twilio-sim (release), measures the
# generator's own ceiling, then for each store (SQLite, PostgreSQL) and each provider (the
# built-in sandbox, the Twilio simulator) starts a fresh weft on a fresh database and runs
# `e2e` (N messages until delivered) and `accept` (fixed time). Prints a markdown block to
# paste into load-tests/RESULTS.md. Every step is bounded; everything started is stopped on
# exit. Only 127.0.0.1 is ever contacted.
#
# Knobs (environment):
#   DBS="sqlite postgres"  PROVIDERS="sandbox twilio"  MODES="e2e accept" (also: inbound;
#   intake: `accept` with every message scheduled years ahead, so nothing is dispatched and
#   it measures the API and the store alone)
#   INBOUND_SENDERS=1000  INBOUND_WITH_SENDS= (send-worker concurrency during `inbound`; empty: none)
#   RECIPIENTS= (e2e/accept/intake: send to this many numbers in turn; empty: a new number each)
#   CONCURRENCY=64  DURATION=20s  WARMUP=2s  BASELINE_DURATION=10s  COUNT=50000  TIMEOUT=300s
#   POLL_INTERVAL=250ms (e2e: how often weft's /metrics is read; the delivered/s figure's
#   resolution is this interval over the run's length)
#   PORT=18080  SIM_PORT=19000  SIM_CONTROL_PORT=19001  RATE_LIMIT=100000
#   PG_HOST=127.0.0.1  PG_PORT=5432  PG_USER=postgres  PG_ADMIN_DB=test
#   PG_PARAMS=  (query of weft's database_url, e.g. sslmode=disable; default: libpq's prefer)
#   STEP_TIMEOUT=900 (seconds, any one command)  SKIP_BUILD=1 (use existing binaries)
#   OUT=dir (default: a new temp dir)  KEEP=1 (keep databases and temp dirs)
#   LOG_LEVEL=warn (weft's log level during the runs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DBS=${DBS:-"sqlite postgres"}
PROVIDERS=${PROVIDERS:-"sandbox twilio"}
MODES=${MODES:-"e2e accept"}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-2s}
BASELINE_DURATION=${BASELINE_DURATION:-10s}
COUNT=${COUNT:-50000}
TIMEOUT=${TIMEOUT:-300s}
POLL_INTERVAL=${POLL_INTERVAL:-250ms}
PORT=${PORT:-18080}
SIM_PORT=${SIM_PORT:-19000}
SIM_CONTROL_PORT=${SIM_CONTROL_PORT:-19001}
RATE_LIMIT=${RATE_LIMIT:-100000}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
PG_PARAMS=${PG_PARAMS:-}
PG_ADMIN_DB=${PG_ADMIN_DB:-test}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
INBOUND_SENDERS=${INBOUND_SENDERS:-1000}
INBOUND_WITH_SENDS=${INBOUND_WITH_SENDS:-}
RECIPIENTS=${RECIPIENTS:-}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
LOG_LEVEL=${LOG_LEVEL:-warn}
TS=$(date +%Y%m%d_%H%M%S)
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/weft-load-$TS.XXXX")}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

SIM_SID=AC0000000000000000000000000000load
SIM_TOKEN=load-test-auth-token-0123456789ab

WEFT=${WEFT_BIN:-$TARGET_DIR/release/weft}
LOAD=${LOAD_BIN:-$TARGET_DIR/release/weft-load}
SIM=${SIM_BIN:-$TARGET_DIR/release/twilio-sim}

PIDS=()
PG_DBS=()
TMP_DIRS=()

# shellcheck source=load-tests/lib.sh
. "$ROOT/load-tests/lib.sh"

psql_admin() {
  psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_ADMIN_DB" -v ON_ERROR_STOP=1 -qAt -c "$1"
}

cleanup() {
  local rc=$? pid db dir
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
  if [[ $KEEP != 1 ]]; then
    for db in "${PG_DBS[@]+"${PG_DBS[@]}"}"; do
      psql_admin "drop database if exists $db with (force)" >/dev/null 2>&1 || log "could not drop database $db"
    done
    for dir in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf -- "$dir"; done
  fi
  log "logs and raw results in $OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ---------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
  log "building (release): weft, weft-load, twilio-sim into $TARGET_DIR"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR bounded cargo build --release -p weft -p weft-load)
fi
for b in "$WEFT" "$LOAD" "$SIM"; do [[ -x $b ]] || die "missing binary $b"; done

for p in "$PORT" "$SIM_PORT" "$SIM_CONTROL_PORT"; do
  port_free "$p" || die "port $p on 127.0.0.1 is in use; set PORT / SIM_PORT / SIM_CONTROL_PORT"
done

# ---------------------------------------------------------------- generator ceiling
log "baseline: generator ceiling ($BASELINE_DURATION at concurrency $CONCURRENCY)"
bounded "$LOAD" baseline --concurrency "$CONCURRENCY" --duration "$BASELINE_DURATION" \
  --label "generator ceiling" >>"$RESULTS" 2>"$OUT/baseline.err"
cat "$OUT/baseline.err" >&2

# ---------------------------------------------------------------- one store × provider
# PostgreSQL's WAL written since `lsn` (the whole server's, warm-up included) joins the
# mode's JSON line as `db_wal_bytes`, if that line is the mode's.
wal_note() {
  local lsn=$1 mode=$2 bytes
  [[ -n $lsn ]] || return 0
  tail -1 "$RESULTS" | grep -q "\"mode\":\"$mode\"" || return 0
  bytes=$(psql_admin "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')::bigint" 2>/dev/null) || return 0
  [[ $bytes =~ ^[0-9]+$ ]] || return 0
  sed -i '$ s/}$/,"db_wal_bytes":'"$bytes"'}/' "$RESULTS"
}

run_one() {
  local db=$1 provider=$2 label="$1/$2" dir dburl dbname cfg sim_pid="" weft_pid key mode
  dir=$(mktemp -d "${TMPDIR:-/tmp}/weft-load-$db-$provider.XXXX")
  TMP_DIRS+=("$dir")
  case $db in
    sqlite) dburl="sqlite://$dir/weft.db" ;;
    postgres)
      dbname="weft_load_${TS}_${provider}"
      psql_admin "create database $dbname" >/dev/null || die "cannot create database $dbname"
      PG_DBS+=("$dbname")
      dburl="postgres://$PG_USER@$PG_HOST:$PG_PORT/$dbname${PG_PARAMS:+?$PG_PARAMS}"
      ;;
    *) die "unknown DB $db (sqlite or postgres)" ;;
  esac

  cfg=$dir/weft.toml
  cat >"$cfg" <<EOF
listen = "127.0.0.1:$PORT"
database_url = "$dburl"
public_url = "http://127.0.0.1:$PORT"

[log]
level = "$LOG_LEVEL"
EOF
  local sim_args=()
  if [[ $provider == twilio ]]; then
    cat >>"$cfg" <<EOF

[sandbox]
enabled = false

[[connections]]
id = "twilio-load"
provider = "twilio"
tenant = "load"
base_url = "http://127.0.0.1:$SIM_PORT"
senders = ["+15005550006"]
channels = ["sms"]
rate_limit_per_second = $RATE_LIMIT
[connections.credentials]
account_sid = "$SIM_SID"
auth_token = "$SIM_TOKEN"
EOF
    "$SIM" --port "$SIM_PORT" --control-port "$SIM_CONTROL_PORT" \
      --account-sid "$SIM_SID" --auth-token "$SIM_TOKEN" \
      >"$OUT/$db-$provider.sim.out" 2>"$OUT/$db-$provider.sim.err" &
    sim_pid=$!
    PIDS+=("$sim_pid")
    wait_http "http://127.0.0.1:$SIM_CONTROL_PORT/stats" 20 "$sim_pid" ||
      die "twilio-sim did not start (see $OUT/$db-$provider.sim.err)"
    sim_args=(--sim-control "http://127.0.0.1:$SIM_CONTROL_PORT")
  elif [[ $provider != sandbox ]]; then
    die "unknown provider $provider (sandbox or twilio)"
  fi

  log "[$label] migrate, tenant, key"
  (cd "$dir" && bounded "$WEFT" --config "$cfg" migrate) >"$OUT/$db-$provider.admin.log" 2>&1 ||
    die "weft migrate failed (see $OUT/$db-$provider.admin.log)"
  (cd "$dir" && bounded "$WEFT" --config "$cfg" tenant create load) >>"$OUT/$db-$provider.admin.log" 2>&1 ||
    die "weft tenant create failed (see $OUT/$db-$provider.admin.log)"
  key=$(cd "$dir" && bounded "$WEFT" --config "$cfg" api-key create --tenant load 2>>"$OUT/$db-$provider.admin.log" | tail -1) ||
    die "weft api-key create failed (see $OUT/$db-$provider.admin.log)"
  [[ -n $key ]] || die "weft api-key create printed no key (see $OUT/$db-$provider.admin.log)"

  log "[$label] starting weft serve"
  (cd "$dir" && exec "$WEFT" --config "$cfg" serve) >"$OUT/$db-$provider.weft.log" 2>&1 &
  weft_pid=$!
  PIDS+=("$weft_pid")
  wait_http "http://127.0.0.1:$PORT/readyz" 60 "$weft_pid" ||
    die "weft did not become ready (see $OUT/$db-$provider.weft.log)"

  local db_args=() lsn=""
  [[ $db == postgres ]] && db_args=(--db-comm postgres)
  local to_args=()
  [[ -n $RECIPIENTS ]] && to_args=(--recipients "$RECIPIENTS")
  for mode in $MODES; do
    [[ $db == postgres ]] && lsn=$(psql_admin "select pg_current_wal_lsn()" 2>/dev/null || true)
    case $mode in
      e2e)
        log "[$label] e2e: $COUNT messages at concurrency $CONCURRENCY (timeout $TIMEOUT)"
        WEFT_API_KEY=$key bounded "$LOAD" e2e --url "http://127.0.0.1:$PORT" \
          --count "$COUNT" --concurrency "$CONCURRENCY" --timeout "$TIMEOUT" --poll-interval "$POLL_INTERVAL" \
          --pid "$weft_pid" --label "$label" "${sim_args[@]+"${sim_args[@]}"}" "${db_args[@]+"${db_args[@]}"}" \
          "${to_args[@]+"${to_args[@]}"}" \
          >>"$RESULTS" 2>"$OUT/$db-$provider.e2e.err" || log "[$label] e2e exited non-zero"
        cat "$OUT/$db-$provider.e2e.err" >&2
        ;;
      accept)
        log "[$label] accept: $WARMUP + $DURATION at concurrency $CONCURRENCY"
        WEFT_API_KEY=$key bounded "$LOAD" accept --url "http://127.0.0.1:$PORT" \
          --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
          --pid "$weft_pid" --label "$label" "${db_args[@]+"${db_args[@]}"}" "${to_args[@]+"${to_args[@]}"}" \
          >>"$RESULTS" 2>"$OUT/$db-$provider.accept.err" || log "[$label] accept exited non-zero"
        cat "$OUT/$db-$provider.accept.err" >&2
        ;;
      intake)
        log "[$label] intake: $WARMUP + $DURATION at concurrency $CONCURRENCY, every message scheduled for 2099"
        WEFT_API_KEY=$key bounded "$LOAD" accept --url "http://127.0.0.1:$PORT" \
          --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" --send-at 2099-01-01T00:00:00Z \
          --pid "$weft_pid" --label "$label intake" "${db_args[@]+"${db_args[@]}"}" "${to_args[@]+"${to_args[@]}"}" \
          >>"$RESULTS" 2>"$OUT/$db-$provider.intake.err" || log "[$label] intake exited non-zero"
        cat "$OUT/$db-$provider.intake.err" >&2
        ;;
      inbound)
        # Signed Twilio inbound-SMS webhooks; the signature covers public_url (= the URL posted to).
        if [[ $provider != twilio ]]; then
          log "[$label] inbound: skipped (Twilio provider only)"
          continue
        fi
        local with_sends=()
        [[ -n $INBOUND_WITH_SENDS ]] && with_sends=(--with-sends "$INBOUND_WITH_SENDS")
        log "[$label] inbound: $WARMUP + $DURATION at concurrency $CONCURRENCY, $INBOUND_SENDERS senders${INBOUND_WITH_SENDS:+, with $INBOUND_WITH_SENDS send workers}"
        WEFT_API_KEY=$key WEFT_TWILIO_AUTH_TOKEN=$SIM_TOKEN bounded "$LOAD" inbound \
          --url "http://127.0.0.1:$PORT" --public-url "http://127.0.0.1:$PORT" \
          --connection twilio-load --account-sid "$SIM_SID" --to +15005550006 \
          --senders "$INBOUND_SENDERS" "${with_sends[@]+"${with_sends[@]}"}" \
          --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
          --pid "$weft_pid" --label "$label${INBOUND_WITH_SENDS:+ +sends}" "${db_args[@]+"${db_args[@]}"}" \
          >>"$RESULTS" 2>"$OUT/$db-$provider.inbound.err" || log "[$label] inbound exited non-zero"
        cat "$OUT/$db-$provider.inbound.err" >&2
        ;;
      *) die "unknown mode $mode (e2e, accept, intake or inbound)" ;;
    esac
    kill -0 "$weft_pid" 2>/dev/null || die "weft died during $mode (see $OUT/$db-$provider.weft.log)"
    wal_note "$lsn" "$mode"
  done

  log "[$label] stopping weft"
  stop_pid "$weft_pid"
  if [[ -n $sim_pid ]]; then
    stop_pid "$sim_pid"
    log "[$label] twilio-sim: $(tail -1 "$OUT/$db-$provider.sim.out")"
  fi
}

for db in $DBS; do
  for provider in $PROVIDERS; do
    run_one "$db" "$provider"
  done
done

# ---------------------------------------------------------------- markdown for RESULTS.md
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if git -C "$ROOT" status --porcelain 2>/dev/null | grep -q .; then dirty=" (with uncommitted changes)"; fi
pg_version=$(psql_admin "show server_version" 2>/dev/null || echo "n/a")
pg_sync=$(psql_admin "show synchronous_commit" 2>/dev/null || echo "n/a")

cat <<EOF

<!-- paste into load-tests/RESULTS.md -->
### Run $TS — weft $rev$dirty

- Machine: $(nproc) CPUs ($cpu_model), $mem_total RAM, $(uname -sr); PostgreSQL $pg_version (synchronous_commit=$pg_sync)
- Load average when the report was written: $(cut -d' ' -f1-3 /proc/loadavg)
- Command: \`DBS="$DBS" PROVIDERS="$PROVIDERS" MODES="$MODES" CONCURRENCY=$CONCURRENCY DURATION=$DURATION WARMUP=$WARMUP COUNT=$COUNT TIMEOUT=$TIMEOUT${RECIPIENTS:+ RECIPIENTS=$RECIPIENTS} load-tests/run.sh\`
- weft log level: $LOG_LEVEL; twilio-sim: no injected latency or faults, callbacks without delay; Twilio rate limit $RATE_LIMIT/s

$("$LOAD" report "$RESULTS")

Raw JSON lines: \`$RESULTS\`
EOF
