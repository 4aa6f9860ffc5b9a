#!/usr/bin/env bash
# Where the whole machine's CPU goes during a load run, kernel included: samples every CPU
# with `perf record -a` for SECONDS (after DELAY), then prints each program's threads (by
# thread name, summed over processes: four PostgreSQL backends are one line) as a share of
# all CPUs, the part of it spent in the kernel, and — given the run's msgs/s — CPU µs per
# message. Idle time is the `swapper` line. Run it beside `run.sh`:
#
#   load-tests/cpu-split.sh 4 5 > split.md &
#   SKIP_BUILD=1 DBS=sqlite PROVIDERS=twilio MODES=e2e COUNT=40000 load-tests/run.sh
#   MSGS_PER_S=<delivered/s of that run> load-tests/cpu-split.sh --report perf.data
#
# Usage: cpu-split.sh DELAY SECONDS [OUT_DIR]   (records, then reports)
#        cpu-split.sh --report PERF_DATA [NAMES] (reports an earlier recording)
# MSGS_PER_S: adds the µs-per-message column. Needs perf (Debian's linux-perf, installed with
# apt-get if missing) and permission to sample every CPU (root, or perf_event_paranoid <= 0).
set -euo pipefail

report() {
  local data=$1 names=$2 cpus
  cpus=$(nproc)
  perf script -i "$data" -F comm,pid,tid,ip,dso 2>/dev/null |
    awk -v names="$names" -v cpus="$cpus" -v rate="${MSGS_PER_S:-}" '
      BEGIN {
        while ((getline line < names) > 0) { split(line, f, " "); prog[f[1]] = f[2] }
      }
      {
        pt = ""; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) { pt = $i; break }
        if (pt == "") next
        split(pt, ids, "/"); thread = $1
        name = (ids[1] in prog) ? prog[ids[1]] : (ids[1] == "0" ? "idle" : "other")
        key = name " / " thread
        n[key]++; total++
        if ($NF ~ /kernel/) k[key]++
      }
      END {
        if (total == 0) { print "no samples"; exit 1 }
        printf "| program / thread | share of all %d CPUs | in the kernel |%s\n", cpus, (rate != "" ? " CPU µs per message |" : "")
        printf "|---|---:|---:|%s\n", (rate != "" ? "---:|" : "")
        for (key in n) {
          share = n[key] / total
          if (share < 0.005) continue
          us = (rate != "") ? sprintf(" %.0f |", share * cpus * 1e6 / rate) : ""
          printf "| %s | %.1f %% | %.0f %% |%s\n", key, 100 * share, 100 * k[key] / n[key], us
        }
      }' | { read -r h1; read -r h2; echo "$h1"; echo "$h2"; sort -t'|' -k3 -rn; }
}

if [[ ${1:-} == --report ]]; then
  data=${2:?usage: cpu-split.sh --report PERF_DATA [NAMES]}
  report "$data" "${3:-$(dirname "$data")/names.txt}"
  exit 0
fi

delay=${1:?usage: cpu-split.sh DELAY SECONDS [OUT_DIR]}
seconds=${2:?usage: cpu-split.sh DELAY SECONDS [OUT_DIR]}
out=${3:-$(mktemp -d "${TMPDIR:-/tmp}/weft-cpu-split.XXXX")}
mkdir -p "$out"
if ! command -v perf >/dev/null; then
  echo "cpu-split.sh: installing perf (apt-get install linux-perf)" >&2
  { apt-get update -qq && apt-get install -y -qq linux-perf; } >/dev/null ||
    { echo "cpu-split.sh: perf is not installed and apt-get failed" >&2; exit 1; }
fi
sleep "$delay"
timeout --kill-after=10 $((seconds + 30)) perf record -a -F 999 -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf.err"
# Program names while the programs still run (a sample carries only its thread's name).
ps -e -o pid=,comm= | awk '{print $1, $2}' >"$out/names.txt"
echo "cpu-split.sh: $out/perf.data" >&2
report "$out/perf.data" "$out/names.txt"
