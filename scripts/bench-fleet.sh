#!/usr/bin/env bash
# Shipping and compaction through an S3-compatible store on loopback (moto's server from
# .venv-fleet, see scripts/setup-interop.sh), against local compaction of the same spool
# in the same run. moto is a Python server: the store's figures are moto's, not S3's;
# the ratios show what the object store path costs here, not what a cloud store does.
#
# usage: scripts/bench-fleet.sh [records] [chains]     (defaults: 200000 records, 4 chains)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
CHAINS=${2:-4}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv-fleet/bin/moto_server -H 127.0.0.1 -p "$PORT" > "$WORK/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -s "http://127.0.0.1:$PORT" > /dev/null && break; sleep 0.1; done
curl -s -X PUT "http://127.0.0.1:$PORT/bench" > /dev/null
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"

cargo build --release -q -p kiroku-collector
K=target/release/kiroku
KIROKU_BENCH_SPOOL_OUT="$WORK/gen" KIROKU_BENCH_RECORDS=$N KIROKU_BENCH_CHAINS=$CHAINS \
  cargo bench -q -p kiroku-collector --bench compact
BYTES=$(du -sb "$WORK/gen/spool" | cut -f1)
SEGS=$(find "$WORK/gen/spool" -name '*.seg' | wc -l)
echo "spool: $N records, $CHAINS chains, $SEGS segments, $BYTES bytes; machine: $(nproc) cores"

secs() { python3 -c "import time,subprocess,sys; t=time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(f'{time.perf_counter()-t:.3f}')" "$@"; }
rate() { python3 -c "import sys; n,b,s=map(float,sys.argv[1:]); print(f'{n/s:,.0f} rec/s, {b/s/1e6:.1f} MB/s')" "$N" "$BYTES" "$1"; }

cp -r "$WORK/gen/spool" "$WORK/local-spool"
T=$(secs $K compact --spool "$WORK/local-spool" --archive "$WORK/local-archive" --pubkey "$WORK/gen/signer.vkey")
echo "baseline: local spool -> local archive: ${T}s ($(rate "$T"))"

cp -r "$WORK/gen/spool" "$WORK/ship1"
T=$(secs $K ship --spool "$WORK/ship1" --to s3://bench/one)
echo "ship (upload, read back, verify, remove): ${T}s ($(rate "$T"))"

T=$(secs $K compact --spool s3://bench/one --archive s3://bench/archive-one --pubkey "$WORK/gen/signer.vkey")
echo "compact from the store, one compactor: ${T}s ($(rate "$T"))"

cp -r "$WORK/gen/spool" "$WORK/ship2"
$K ship --spool "$WORK/ship2" --to s3://bench/two > /dev/null
START=$(python3 -c 'import time; print(time.perf_counter())')
$K compact --spool s3://bench/two --archive s3://bench/archive-two --pubkey "$WORK/gen/signer.vkey" > "$WORK/c1.log" &
P1=$!
$K compact --spool s3://bench/two --archive s3://bench/archive-two --pubkey "$WORK/gen/signer.vkey" > "$WORK/c2.log" &
P2=$!
wait $P1 $P2
T=$(python3 -c "import time; print(f'{time.perf_counter()-$START:.3f}')")
echo "compact from the store, two compactors at once: ${T}s ($(rate "$T")); $(head -1 "$WORK/c1.log") | $(head -1 "$WORK/c2.log")"
$K verify --archive s3://bench/archive-two --pubkey "$WORK/gen/signer.vkey" | tail -1
