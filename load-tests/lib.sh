# Shell helpers shared by the load-test scripts (run.sh, mixed.sh). Source it after setting
# STEP_TIMEOUT; log lines are tagged with the sourcing script's name.

log() { printf '[%s %s] %s\n' "$(basename "$0")" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Stops one process we started: SIGTERM, up to 15 s, then SIGKILL.
stop_pid() {
  local pid=$1 _
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid did not stop on SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

# Bounded run of one command.
bounded() { timeout --kill-after=10 "$STEP_TIMEOUT" "$@"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # url seconds pid-to-watch
  local url=$1 secs=$2 pid=${3:-} _
  for _ in $(seq 1 $((secs * 10))); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}
