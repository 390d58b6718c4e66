#!/usr/bin/env bash
# Backup benchmark (not a test): a fresh local cluster (`feitian up`, Release build) and a real
# S3-compatible server (s3rver) on loopback. A volume is filled with SIZE of random data and
# snapshotted; then, side by side against the same server:
#   - `feitian backup create` of the snapshot (read from the cluster, hash, upload 1 MiB blocks),
#   - a plain parallel upload of the same bytes as 1 MiB objects (bench `s3put`: same S3 client,
#     same parallelism, no cluster reads, no hashing), from a local file holding the volume's bytes.
# Prints both throughputs and their ratio, then the bytes an incremental backup sends after a
# 1% change (4 KiB written into 1% of the volume's 1 MiB blocks), and the load average.
#
# Environment: SIZE (default 1GiB), CHUNKSERVERS (default 3), REPLICAS (default 3), BENCH_DIR
# (parent of the temporary directory; default $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SIZE=${SIZE:-1GiB}
CHUNKSERVERS=${CHUNKSERVERS:-3}
REPLICAS=${REPLICAS:-3}
for tool in fio nbdcopy python3; do
  command -v "$tool" >/dev/null || { echo "bench/backup.sh: $tool is not installed (./test.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/feitian-bench-backup.XXXXXX")
up_pid=""
s3rver_pid=""
cleanup() {
  bench_stop_up
  bench_stop_s3rver
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building (Release)..." >&2
dotnet build cli -c Release -nologo -v q >/dev/null
dotnet build bench -c Release -nologo -v q >/dev/null
feitian=cli/bin/Release/net10.0/feitian
bench=bench/bin/Release/net10.0/FeitianK8s.Bench

bench_s3rver "$work/s3" "$work/s3rver.log" bench
bench_up "$work/data" "$work/up.log" --chunkservers "$CHUNKSERVERS" --racks "$CHUNKSERVERS"
"$feitian" volume create vol --size "$SIZE" --replicas "$REPLICAS" --data "$work/data" >&2
uri="nbd://127.0.0.1:${nbd_port}/vol"
bytes=$(python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)(KiB|MiB|GiB)",sys.argv[1]); print(int(m.group(1))<<{"KiB":10,"MiB":20,"GiB":30}[m.group(2)])' "$SIZE")

echo "filling $SIZE with random data..." >&2
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=16 --size="$bytes" --refill_buffers=1 --output-format=json >"$work/fill.json"
"$feitian" snapshot create vol --name full --data "$work/data" >&2
echo "copying the volume's bytes to a local file for the plain upload..." >&2
nbdcopy "$uri" "$work/volume.img"

target="s3://bench/cluster"
now() { date +%s.%N; }
echo "backup of the snapshot..." >&2
t0=$(now)
"$feitian" backup create full --target "$target" --endpoint "$s3_endpoint" --json --data "$work/data" >"$work/b1.json" 2>"$work/b1.err" || { tail -5 "$work/b1.err" >&2; exit 1; }
t1=$(now)
echo "plain parallel upload of the same bytes..." >&2
plain=$("$bench" s3put --file "$work/volume.img" --target "s3://bench/plain" --endpoint "$s3_endpoint" --object-size 1048576 --parallel 8)

echo "1% change: 4 KiB into 1% of the 1 MiB blocks..." >&2
blocks=$(( bytes / 1048576 ))
changed=$(( (blocks + 99) / 100 ))
python3 - "$blocks" "$changed" "$uri" >"$work/change.fio" <<'PY'
import random, sys
blocks, changed = int(sys.argv[1]), int(sys.argv[2])
random.seed(42)
print(f"[global]\nioengine=nbd\nuri={sys.argv[3]}\n")
for i, b in enumerate(sorted(random.sample(range(blocks), changed))):
    print(f"[c{i}]\nrw=write\nbs=4k\nsize=4k\noffset={b * 1048576 + 8192}\nrefill_buffers=1\n")
PY
fio "$work/change.fio" --output-format=json >/dev/null
"$feitian" snapshot create vol --name changed --data "$work/data" >&2
t2=$(now)
"$feitian" backup create changed --target "$target" --endpoint "$s3_endpoint" --json --data "$work/data" >"$work/b2.json" 2>"$work/b2.err" || { tail -5 "$work/b2.err" >&2; exit 1; }
t3=$(now)

python3 - "$work/b1.json" "$work/b2.json" "$t0" "$t1" "$t2" "$t3" "$plain" "$changed" "$blocks" <<'PY'
import json, sys
b1, b2 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t0, t1, t2, t3 = map(float, sys.argv[3:7])
_, plain_bytes, plain_s = sys.argv[7].split()
changed, blocks = int(sys.argv[8]), int(sys.argv[9])
mib = 1 << 20
backup_s = t1 - t0
print(f"volume {b1['sizeBytes'] / mib:.0f} MiB, random data, 1 MiB blocks")
print(f"backup (feitian backup create): {b1['uploadedBytes'] / mib:.0f} MiB sent in {backup_s:.1f} s = {b1['uploadedBytes'] / mib / backup_s:.1f} MiB/s (whole command: cluster read, SHA-256, upload, manifest)")
print(f"plain parallel upload (8 x 1 MiB PUTs): {int(plain_bytes) / mib:.0f} MiB in {float(plain_s):.1f} s = {int(plain_bytes) / mib / float(plain_s):.1f} MiB/s")
print(f"ratio backup/plain throughput: {(b1['uploadedBytes'] / backup_s) / (int(plain_bytes) / float(plain_s)):.2f}")
print(f"incremental after a 1% change ({changed} of {blocks} blocks, 4 KiB each): {b2['uploadedBytes']} bytes sent = {100 * b2['uploadedBytes'] / b1['uploadedBytes']:.2f}% of the first backup, in {t3 - t2:.1f} s")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
