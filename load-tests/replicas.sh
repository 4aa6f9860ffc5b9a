#!/usr/bin/env bash
# 1 vs 3 weft replicas on one fresh PostgreSQL database, release binaries, twilio-sim as provider.
# Usage: load-tests/replicas.sh N CONCURRENCY   (N replicas, each driven by its own
# `weft-load accept --concurrency CONCURRENCY --duration 10s --warmup 2s`, all at once).
# Prints each generator's JSON line, the load average, twilio-sim /stats and message statuses.
# Drops the database and stops everything it started on exit. Ports 18181.., 19100, 19101.
set -euo pipefail
N=$1; CONC=$2
BIN=${BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release}
TS=$(date +%H%M%S); DB=weft_rep_${N}_$TS; OUT=$(mktemp -d "${TMPDIR:-/tmp}/weft-replicas-$N.XXXX"); mkdir -p $OUT
SID=AC0000000000000000000000000000load; TOKEN=load-test-auth-token-0123456789ab
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM $p 2>/dev/null || true; done; sleep 4
  for p in "${PIDS[@]}"; do kill -KILL $p 2>/dev/null || true; done
  psql -h 127.0.0.1 -U postgres -d test -qAt -c "drop database if exists $DB with (force)" >/dev/null; }
trap cleanup EXIT
psql -h 127.0.0.1 -U postgres -d test -qAt -c "create database $DB"
$BIN/twilio-sim --port 19100 --control-port 19101 --account-sid $SID --auth-token $TOKEN >$OUT/sim.out 2>$OUT/sim.err & PIDS+=($!)
for i in $(seq 1 $N); do
  port=$((18180+i))
  cat >$OUT/weft$i.toml <<T
listen = "127.0.0.1:$port"
database_url = "postgres://postgres@127.0.0.1:5432/$DB"
public_url = "http://127.0.0.1:$port"
[log]
level = "warn"
[sandbox]
enabled = false
[[connections]]
id = "twilio-load"
provider = "twilio"
tenant = "load"
base_url = "http://127.0.0.1:19100"
senders = ["+15005550006"]
channels = ["sms"]
rate_limit_per_second = 100000
[connections.credentials]
account_sid = "$SID"
auth_token = "$TOKEN"
T
done
sleep 1
$BIN/weft --config $OUT/weft1.toml migrate >$OUT/admin.log 2>&1
$BIN/weft --config $OUT/weft1.toml tenant create load >>$OUT/admin.log 2>&1
# pre-create `default` so simultaneously starting replicas do not race on it (fixed in src/store/tenants.rs)
$BIN/weft --config $OUT/weft1.toml tenant create default >>$OUT/admin.log 2>&1
KEY=$($BIN/weft --config $OUT/weft1.toml api-key create --tenant load 2>>$OUT/admin.log | tail -1)
for i in $(seq 1 $N); do
  $BIN/weft --config $OUT/weft$i.toml serve >$OUT/weft$i.log 2>&1 & PIDS+=($!)
done
for i in $(seq 1 $N); do
  for _ in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:$((18180+i))/readyz && break; sleep 0.1; done
done
LP=()
for i in $(seq 1 $N); do
  WEFT_API_KEY=$KEY $BIN/weft-load accept --url http://127.0.0.1:$((18180+i)) --concurrency $CONC --duration 10s --warmup 2s --label "replica $i of $N" >$OUT/load$i.json 2>$OUT/load$i.err & LP+=($!)
done
for p in "${LP[@]}"; do wait $p; done
echo "loadavg: $(cat /proc/loadavg)"
cat $OUT/load*.json
sleep 3
curl -s http://127.0.0.1:19101/stats; echo
psql -h 127.0.0.1 -U postgres -d $DB -qAt -c "select status, count(*) from messages group by 1"
