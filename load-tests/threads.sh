#!/usr/bin/env bash
# Per-thread CPU of a running process, once a second: which of weft's threads (the SQLite
# writer, the checkpointer, the tokio workers) is busy during a load run. Run it beside
# `run.sh`; it waits (up to 60 s) for a process whose command line matches PATTERN, then
# prints SECONDS lines of `thread-name=percent-of-one-core` (threads of one name summed,
# threads under 4 % left out), from /proc/<pid>/task/*/stat.
#
# Usage: load-tests/threads.sh PATTERN [SECONDS]
#   e.g. load-tests/threads.sh 'release/weft --config .* serve' 15 &
#        SKIP_BUILD=1 DBS=sqlite PROVIDERS=twilio MODES=accept DURATION=15s load-tests/run.sh
set -euo pipefail

pattern=${1:?usage: threads.sh PATTERN [SECONDS]}
seconds=${2:-15}
hz=$(getconf CLK_TCK)

pid=
for _ in $(seq 1 600); do
  # Not this script (its own command line holds the pattern too).
  pid=$(pgrep -af -- "$pattern" | grep -v 'threads\.sh' | head -1 | cut -d' ' -f1 || true)
  [[ -n $pid ]] && break
  sleep 0.1
done
[[ -n $pid ]] || { echo "threads.sh: no process matches $pattern" >&2; exit 1; }

# "name tid ticks" for every thread (utime + stime, fields 14 and 15 of stat).
snapshot() {
  local t stat fields
  for t in /proc/"$pid"/task/*; do
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    fields=(${stat##*) })
    echo "$(cat "$t/comm" 2>/dev/null | tr ' ' '_')|${t##*/} $((fields[11] + fields[12]))"
  done | sort
}

prev=$(snapshot)
for i in $(seq 1 "$seconds"); do
  sleep 1
  [[ -d /proc/$pid ]] || break
  cur=$(snapshot)
  join <(echo "$prev") <(echo "$cur") | awk -v i="$i" -v hz="$hz" '
    { split($1, k, "|"); busy[k[1]] += ($3 - $2) * 100 / hz }
    END {
      printf "t=%d", i
      for (n in busy) if (busy[n] >= 4) printf " %s=%d%%", n, busy[n]
      printf "\n"
    }'
  prev=$cur
done
