#!/usr/bin/env bash
# CPU per record of the audited service's threads (the journal writer, which runs the
# finisher: extraction, redaction, serialisation, chain hash; and the runtime workers)
# at a fixed request rate, so that the machine is not saturated and the figures do not
# depend on what the load generator takes. Per-thread CPU from /proc.
#
#   scripts/writer-cpu.sh [requests/s, default 8000] [seconds, default 5]
#   BENCH_SERVER=/path/to/other/bench-server scripts/writer-cpu.sh   # another build, for A/B
#   BENCH_MODE=audited-minimal scripts/writer-cpu.sh   # another layer setting (bench-server's modes)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-8000}
SECS=${2:-5}
cargo build --release -q -p kiroku-tests --bin bench-server --bin loadgen
SERVER=${BENCH_SERVER:-target/release/bench-server}
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
python3 - > "$WORK/req2k.json" <<'PY'
import json
msg = ("lorem ipsum " * 200)[:1960]
print(json.dumps({"model": "sample-1", "messages": [{"role": "user", "content": msg}]}), end="")
PY
"$SERVER" "${BENCH_MODE:-audited}" 127.0.0.1:0 "$WORK/spool" > "$WORK/out" 2>/dev/null &
PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.05; done
ADDR=$(grep -o "listening on [0-9.:]*" "$WORK/out" | awk '{print $3}')
# CPU ticks (utime + stime, 1/100 s) summed per thread name.
snap() {
  for t in /proc/$PID/task/*; do echo "$(tr ' ' _ < "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
    awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
snap > "$WORK/before"
RESULT=$(target/release/loadgen "http://$ADDR/v1/chat/completions" --conns 32 --secs "$SECS" --rate "$RATE" --body "$WORK/req2k.json")
snap > "$WORK/after"
N=$(echo "$RESULT" | grep -o '"requests":[0-9]*' | cut -d: -f2)
echo "$N requests at $RATE/s"
join "$WORK/before" "$WORK/after" | awk -v n="$N" '$3 > $2 {printf "%-18s %6.1f us of CPU per record\n", $1, ($3 - $2) * 10000 / n}'
