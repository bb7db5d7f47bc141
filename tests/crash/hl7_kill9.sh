#!/usr/bin/env bash
# The HL7 adapter's crash test: a stream of messages (default 100,000: 50,000 patients, each an
# ADT^A04 and an ORU^R01) from an interface engine to the adapter and on to the exchange on
# PostgreSQL. In the middle, the exchange is killed with SIGKILL and restarted; later the adapter
# is. At the end every message must have landed exactly once: as many source records, persons,
# visits and documents as the feed describes.
#
# usage: tests/crash/hl7_kill9.sh [PATIENTS]     (from the project root, after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
patients=${1:-50000}
messages=$((2 * patients))
hie=$PWD/target/release/hie
py=${TMPDIR:-/tmp}/hie-py
[[ -x $hie ]] || { echo "build first: cargo build --release"; exit 1; }
[[ -x $py/bin/python ]] || { python3 -m venv "$py"; "$py/bin/pip" install --quiet hl7==0.4.5; }
work=$(mktemp -d)
db=hie_crash_$$
pg=postgres://postgres@127.0.0.1:5432
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" postgres
exchange_port=$((20000 + RANDOM % 20000))
mllp_port=$((exchange_port + 1))
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" postgres || true; rm -rf "$work"; }
trap cleanup EXIT

start_exchange() {
  (cd "$work" && HIE_LOG=warn exec "$hie" demo --residents 200 --listen 127.0.0.1:$exchange_port \
      --database-url "$pg/$db" >>"$work/exchange.log" 2>&1) &
  exchange=$!; pids+=("$exchange")
  for _ in $(seq 1 600); do grep -q "serving" "$work/exchange.log" 2>/dev/null && [[ $(grep -c serving "$work/exchange.log") -ge $1 ]] && return; sleep 0.1; done
  echo "the exchange did not start"; cat "$work/exchange.log"; exit 1
}
start_adapter() {
  HIE_LOG=warn "$hie" adapter hl7v2 --listen 127.0.0.1:$mllp_port --exchange http://127.0.0.1:$exchange_port \
      --organisation QDN-H01 --data-folder "$work/adapter" >>"$work/adapter.log" 2>&1 &
  adapter=$!; pids+=("$adapter")
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$mllp_port) 2>/dev/null && return; sleep 0.1; done
  echo "the adapter did not start"; cat "$work/adapter.log"; exit 1
}
sent() { cut -d' ' -f1 "$work/progress" 2>/dev/null || echo 0; }
wait_until_sent() { while [[ $(sent) -lt $1 ]]; do sleep 0.2; done; }

started=$(date +%s)
start_exchange 1
start_adapter
"$py/bin/python" tests/crash/feed.py 127.0.0.1 $mllp_port "$patients" "$work/progress" &
feed=$!; pids+=("$feed")

wait_until_sent $((messages * 3 / 10))
echo "crash: kill -9 the exchange after $(sent) messages"
kill -9 "$exchange"; wait "$exchange" 2>/dev/null || true
sleep 3
start_exchange 2
wait_until_sent $((messages * 6 / 10))
echo "crash: kill -9 the adapter after $(sent) messages"
kill -9 "$adapter"; wait "$adapter" 2>/dev/null || true
sleep 1
start_adapter
wait "$feed"
echo "crash: the feed is done: $(cat "$work/progress")"
while :; do
  pending=$("$hie" adapter status --data-folder "$work/adapter" | python3 -c 'import json,sys; print(json.load(sys.stdin)["journal"]["pending"])')
  [[ $pending -eq 0 ]] && break
  sleep 1
done
"$hie" adapter status --data-folder "$work/adapter"
q() { psql -tA -h 127.0.0.1 -U postgres -d "$db" -c "$1"; }
records=$(q "SELECT COUNT(*) FROM source_records WHERE organisation_code = 'QDN-H01' AND local_patient_number LIKE 'CRASH-%'")
persons=$(q "SELECT COUNT(DISTINCT person_id) FROM source_records WHERE local_patient_number LIKE 'CRASH-%'")
visits=$(q "SELECT COUNT(*) FROM encounters WHERE visit_number LIKE 'CV-%'")
documents=$(q "SELECT COUNT(*) FROM documents WHERE unique_id LIKE 'urn:hie:hl7:%'")
seconds=$(( $(date +%s) - started ))
echo "crash: $messages messages in ${seconds}s; source records $records, persons $persons, visits $visits, documents $documents (each expected $patients)"
[[ $records -eq $patients && $persons -eq $patients && $visits -eq $patients && $documents -eq $patients ]] \
  && echo "crash: every message landed exactly once" || { echo "crash: FAILED"; exit 1; }
