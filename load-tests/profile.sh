#!/usr/bin/env bash
# Counts where weft's (and optionally twilio-sim's) CPU goes, repeatably: runs the e2e load
# (`run.sh`, SQLite or PostgreSQL, Twilio simulator) with `weft serve` under
# `valgrind --tool=callgrind`, then prints instructions per delivered message and the
# functions with the most inclusive instructions. Instruction counts do not move with the
# machine's noise the way msgs/s do: compare two builds with the same COUNT/CONCURRENCY.
#
# Knobs (environment): COUNT=1500 CONCURRENCY=16 DB=sqlite (or postgres) TOP=40
#   SIM=1 (also profile twilio-sim)  OUT=dir  SKIP_BUILD=1  WEFT_BIN / SIM_BIN (binaries)
# Needs valgrind (installed if missing, from Debian's packages).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
COUNT=${COUNT:-1500}
CONCURRENCY=${CONCURRENCY:-16}
DB=${DB:-sqlite}
TOP=${TOP:-40}
SIM_PROFILE=${SIM:-0}
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}
TS=$(date +%Y%m%d_%H%M%S)
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/weft-profile-$TS.XXXX")}
mkdir -p "$OUT"
# shellcheck source=load-tests/lib.sh
. "$ROOT/load-tests/lib.sh"

if ! command -v valgrind >/dev/null; then
  log "installing valgrind (apt-get)"
  { apt-get update -qq && apt-get install -y -qq valgrind; } >/dev/null ||
    die "valgrind is not installed and apt-get failed"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building (release): weft, weft-load, twilio-sim"
  (cd "$ROOT" && bounded cargo build --release -p weft -p weft-load -p weft-twilio)
fi
REAL_WEFT=${WEFT_BIN:-$TARGET_DIR/release/weft}
REAL_SIM=${SIM_BIN:-$TARGET_DIR/release/twilio-sim}

# Wrappers: only the long-running programs run under callgrind (migrate and key creation
# stay native). `exec` keeps the pid, so weft-load's /proc readings still find weft.
wrap() { # name real-binary only-when-argument-matches
  local w=$OUT/$1
  cat >"$w" <<EOF
#!/usr/bin/env bash
case " \$* " in
  *" $3 "*) exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$1.%p" "$2" "\$@" ;;
esac
exec "$2" "\$@"
EOF
  chmod +x "$w"
  echo "$w"
}
export WEFT_BIN SIM_BIN
WEFT_BIN=$(wrap weft "$REAL_WEFT" serve)
if [[ $SIM_PROFILE == 1 ]]; then SIM_BIN=$(wrap twilio-sim "$REAL_SIM" --port); else SIM_BIN=$REAL_SIM; fi

log "e2e under callgrind: $COUNT messages at concurrency $CONCURRENCY on $DB (slow: ~50x native)"
SKIP_BUILD=1 DBS=$DB PROVIDERS=twilio MODES=e2e COUNT=$COUNT CONCURRENCY=$CONCURRENCY \
  BASELINE_DURATION=1s TIMEOUT=1200s STEP_TIMEOUT=$STEP_TIMEOUT OUT=$OUT/run \
  "$ROOT/load-tests/run.sh" >"$OUT/run.md" 2>"$OUT/run.err" || {
  tail -20 "$OUT/run.err" >&2
  die "the load run failed (see $OUT/run.err)"
}
grep -E "^\\|(---| run| $DB/)" "$OUT/run.md" || true

total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
for f in "$OUT"/callgrind.*; do
  [[ -f $f ]] || continue
  ir=$(total "$f")
  printf '\n## %s: %s instructions, %s per message (COUNT=%s)\n\n' \
    "$(basename "$f")" "$ir" "$((ir / COUNT))" "$COUNT"
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
    awk -v top="$TOP" '/file:function/ {on=1; next} on && NF && n++ < top' || true
done
log "profiles in $OUT (open with callgrind_annotate or kcachegrind)"
