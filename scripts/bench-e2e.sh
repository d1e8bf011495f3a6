#!/usr/bin/env bash
# End-to-end benchmarks on loopback, every figure paired with its baseline in the same
# run: the audit layer vs the bare service, and `kiroku proxy` vs calling the upstream
# directly. Prints JSON lines (tests/src/bin/loadgen.rs); BENCHMARKS.md has the figures.
#
#   scripts/bench-e2e.sh [seconds per measurement, default 8]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
cargo build --release -q -p kiroku-tests --bin bench-server --bin loadgen
cargo build --release -q -p kiroku-collector --bin kiroku
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start() { # name cmd... -> prints address
  local name=$1; shift
  "$@" > "$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  echo $! > "$WORK/$name.pid"
  for _ in $(seq 100); do grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -o "listening on [0-9.:]*" "$WORK/$name.out" | head -1 | awk '{print $3}'
}

python3 - > "$WORK/req2k.json" <<'PY'
import json
msg = ("lorem ipsum " * 200)[:1960]
print(json.dumps({"model": "sample-1", "messages": [{"role": "user", "content": msg}]}), end="")
PY
python3 - > "$WORK/stream.json" <<'PY'
import json
print(json.dumps({"model": "sample-1", "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "stream me a short answer please"}]}), end="")
PY
python3 - > "$WORK/req2k-20ms.json" <<'PY'
import json
msg = ("lorem ipsum " * 200)[:1960]
print(json.dumps({"model": "sample-1", "sample_delay_ms": 20, "messages": [{"role": "user", "content": msg}]}), end="")
PY
python3 - > "$WORK/hold.json" <<'PY'
import json
print(json.dumps({"model": "sample-1", "stream": True, "sample_delay_ms": 200, "messages": [{"role": "user", "content": " ".join(["word"] * 200)}]}), end="")
PY

BARE=$(start bare $BIN/bench-server bare 127.0.0.1:0)
AUD=$(start audited $BIN/bench-server audited 127.0.0.1:0 "$WORK/spool-layer")
AUDD=$(start audited-digest $BIN/bench-server audited-digest 127.0.0.1:0 "$WORK/spool-layer-digest")
AUDM=$(start audited-minimal $BIN/bench-server audited-minimal 127.0.0.1:0 "$WORK/spool-layer-minimal")
echo "# layer: 4 KiB exchange, bare vs audited (Batched 100ms): defaults (redacted capture), digest capture, and the minimal record (capture none, no extraction)"
for round in 1 2; do
  for t in bare:$BARE audited:$AUD audited-digest:$AUDD audited-minimal:$AUDM; do
    name=${t%%:*}; addr=${t#*:}
    echo "{\"what\":\"layer-max-$name\",\"round\":$round,\"result\":$($BIN/loadgen http://$addr/v1/chat/completions --conns 32 --secs $SECS --body $WORK/req2k.json)}"
  done
done
for t in bare:$BARE audited:$AUD; do
  name=${t%%:*}; addr=${t#*:}
  echo "{\"what\":\"layer-500rps-$name\",\"result\":$($BIN/loadgen http://$addr/v1/chat/completions --conns 8 --secs $SECS --rate 500 --body $WORK/req2k.json)}"
done

UP=$(start upstream $BIN/bench-server sample 127.0.0.1:0)
$BIN/kiroku keygen --out "$WORK/keys" > /dev/null
PROXY=$(start proxy $BIN/kiroku proxy --listen 127.0.0.1:0 --upstream "http://$UP" --spool "$WORK/spool-proxy" --key "$WORK/keys/signer.key")
PROXY=$(grep -o "listening on [0-9.:]*" "$WORK/proxy.out" | awk '{print $3}')
# The same proxying without auditing: what any reverse proxy costs here.
PASS=$(start passthrough $BIN/bench-server passthrough 127.0.0.1:0 "$UP")
echo "# proxy (Batched 100ms) vs direct to the sample upstream, and a passthrough proxy that records nothing"
for t in direct:$UP passthrough:$PASS proxy:$PROXY; do
  name=${t%%:*}; addr=${t#*:}
  echo "{\"what\":\"proxy-1000rps-$name\",\"result\":$($BIN/loadgen http://$addr/v1/chat/completions --conns 16 --secs $SECS --rate 1000 --body $WORK/req2k.json)}"
  echo "{\"what\":\"proxy-max-$name\",\"result\":$($BIN/loadgen http://$addr/v1/chat/completions --conns 32 --secs $SECS --body $WORK/req2k.json)}"
  echo "{\"what\":\"proxy-stream-200rps-$name\",\"result\":$($BIN/loadgen http://$addr/v1/chat/completions --conns 16 --secs $SECS --rate 200 --body $WORK/stream.json)}"
  # A model that takes 20 ms per answer (as real ones take milliseconds to seconds):
  # throughput is then set by the model, and the proxy's share of the CPU matters less.
  echo "{\"what\":\"proxy-max-model20ms-$name\",\"result\":$($BIN/loadgen http://$addr/v1/chat/completions --conns 128 --secs $SECS --body $WORK/req2k-20ms.json)}"
done
echo "# proxy memory with 1000 concurrent open streams: a fresh proxy, then the one that served the runs above"
FRESH=$(start fresh $BIN/kiroku proxy --listen 127.0.0.1:0 --upstream "http://$UP" --spool "$WORK/spool-fresh" --key "$WORK/keys/signer.key")
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
for t in fresh:$FRESH:$(cat "$WORK/fresh.pid") loaded:$PROXY:$(cat "$WORK/proxy.pid"); do
  IFS=: read -r name host port pid <<< "$t"
  echo "{\"what\":\"proxy-rss-idle-kib-$name\",\"result\":$(rss $pid)}"
  $BIN/loadgen http://$host:$port/v1/chat/completions --hold 1000 --secs 6 --body $WORK/hold.json > "$WORK/hold.out" &
  HOLD=$!
  sleep 4
  echo "{\"what\":\"proxy-rss-1000-streams-kib-$name\",\"result\":$(rss $pid)}"
  wait $HOLD
  echo "{\"what\":\"held-$name\",\"result\":$(cat $WORK/hold.out)}"
done
