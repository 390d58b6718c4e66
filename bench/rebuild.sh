#!/usr/bin/env bash
# Rebuild benchmark (not a test): 6 chunk servers via `feitian up` (Release build), a volume
# filled with SIZE of data, a steady fio 4 KiB random-write load over NBD (fio --ioengine=nbd);
# then one chunk server is killed with SIGKILL and its whole data directory wiped (a lost disk);
# `feitian up` starts it again, empty, with a new id on its old port (the master declares the old
# id dead at once). Prints the time from the kill to full redundancy (`feitian status --json`
# reports degradedChunks 0 and underReplicatedChunks 0 after the loss was seen), the rebuild rate,
# the foreground IOPS before and during the rebuild, and the load average of the machine.
# fio must finish without a single failed write; afterwards the data written by the fill pass and
# not overwritten since is not checked here (tests/FeitianK8s.EndToEnd.Tests RebuildTests do).
#
# Environment: SIZE (data written before the kill, default 2G; e.g. SIZE=512M for a quick run),
# DEAD_AFTER (master --dead-after seconds, default 60 as in production), QD (fio queue depth,
# default 8), BEFORE (seconds of load measured before the kill, default 20), EXTRA_UP_ARGS (more
# `feitian up` flags, e.g. "--rebuild-bandwidth 50Mi --max-rebuilds 6"), BENCH_DIR (parent of the
# temporary directory; default $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-2G}
DEAD_AFTER=${DEAD_AFTER:-60}
QD=${QD:-8}
BEFORE=${BEFORE:-20}
EXTRA_UP_ARGS=${EXTRA_UP_ARGS:-}
VICTIM=${VICTIM:-3}
for tool in fio python3; do
  command -v "$tool" >/dev/null || { echo "bench/rebuild.sh: $tool is not installed (./test.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/feitian-bench-rebuild.XXXXXX")
up_pid=""
fio_pid=""
cleanup() {
  [ -n "$fio_pid" ] && kill "$fio_pid" 2>/dev/null && wait "$fio_pid" 2>/dev/null || true
  if [ -n "$up_pid" ] && kill -TERM "$up_pid" 2>/dev/null; then
    for _ in $(seq 1 600); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "building (Release)..." >&2
dotnet build cli -c Release -nologo -v q >/dev/null
feitian=cli/bin/Release/net10.0/feitian

# shellcheck disable=SC2086
"$feitian" up --data "$work/data" --nbd-port 0 --chunkservers 6 --racks 3 --dead-after "$DEAD_AFTER" $EXTRA_UP_ARGS >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 1200); do
  grep -q '^ready' "$work/up.log" && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log" >&2; echo "bench/rebuild.sh: feitian up exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^ready' "$work/up.log" || { cat "$work/up.log" >&2; echo "bench/rebuild.sh: feitian up not ready after 120 s" >&2; exit 1; }
nbd_port=$(grep -oE '^nbd +nbd://127\.0\.0\.1:[0-9]+' "$work/up.log" | grep -oE '[0-9]+$')
master_metrics=$(grep -E '^master ' "$work/up.log" | grep -oE '\(metrics http://[^)]+\)' | sed -E 's/^\(metrics //; s/\)$//')
# Rebuild and health gauges live on the leader only: follow whichever master leads now.
leader_metrics() {
  for url in $master_metrics; do
    if curl -s --max-time 2 "$url" | grep -qE '^feitian_master_is_leader 1'; then echo "$url"; return; fi
  done
  echo "${master_metrics%%[[:space:]]*}"
}
fill_bytes=$(python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)([KMGT]?)",sys.argv[1]); print(int(m.group(1))<<{"":0,"K":10,"M":20,"G":30,"T":40}[m.group(2)])' "$SIZE")
volume_mib=$(( fill_bytes / 1048576 + 1024 ))
"$feitian" volume create bench --size "${volume_mib}MiB" --replicas 3 --data "$work/data" >&2
uri="nbd://127.0.0.1:${nbd_port}/bench"

echo "filling $SIZE..." >&2
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=32 --size="$SIZE" --output-format=json >"$work/fill.json"

echo "steady 4 KiB random writes (qd $QD)..." >&2
fio --name=load --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth="$QD" --size="$SIZE" --time_based --runtime=3600 \
    --randrepeat=0 --write_iops_log="$work/load" --log_avg_msec=1000 --output-format=json >"$work/load.json" 2>"$work/load.err" &
fio_pid=$!
load_start=$(date +%s.%N)
sleep "$BEFORE"

victim_dir="$work/data/chunkserver-$VICTIM"
victim_pid=$(pgrep -f -- "--data $victim_dir " | head -1 || true)
[ -n "$victim_pid" ] || victim_pid=$(pgrep -f -- "$victim_dir" | head -1)
victim_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$victim_dir/endpoints.json" 2>/dev/null || echo "?")
kill_at=$(date +%s.%N)
kill -KILL "$victim_pid"
# Gone, or a zombie its parent has not reaped yet: either way it runs no more.
for _ in $(seq 1 100); do
  state=$(ps -o stat= -p "$victim_pid" 2>/dev/null || true)
  [ -z "$state" ] || [ "${state:0:1}" = Z ] && break
  sleep 0.1
done
state=$(ps -o stat= -p "$victim_pid" 2>/dev/null || true)
[ -z "$state" ] || [ "${state:0:1}" = Z ] || { echo "bench/rebuild.sh: chunk server $VICTIM survived SIGKILL" >&2; exit 1; }
# Renamed away at once (before `up` restarts it, 0.5 s after the death), deleted in the background.
mv "$victim_dir" "$work/lost-disk"
mkdir -p "$victim_dir"
rm -rf "$work/lost-disk" &
echo "killed chunk server $VICTIM ($victim_id, pid $victim_pid) and wiped its data directory; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Poll the master's /metrics (cheap) twice a second; confirm the end with `feitian status --json` (the contract).
metric() { awk -v n="$1" '$1 == n { printf "%d", $2 }' <<<"$2"; }
dead_at=""
done_at=""
degraded_at=""
for _ in $(seq 1 7200); do
  metrics=$(leader_metrics)
  m=$(curl -s --max-time 5 "$metrics" || true)
  now=$(date +%s.%N)
  dead=$(metric feitian_master_chunk_servers_dead "$m"); degraded=$(metric feitian_master_degraded_chunks "$m")
  under=$(metric feitian_master_under_replicated_chunks "$m"); active=$(metric feitian_master_rebuild_copies_active "$m")
  remaining=$(metric feitian_master_rebuild_remaining_bytes "$m"); rate=$(metric feitian_master_rebuild_rate_bytes_per_second "$m")
  if [ "${dead:-0}" -ge 1 ] && [ -z "$dead_at" ]; then dead_at=$now; echo "declared dead after $(python3 -c "print(f'{$now-$kill_at:.1f}')") s" >&2; fi
  # The loss is seen: the old id declared dead, or its replicas found missing when it came back.
  if [ -z "$degraded_at" ] && { [ "${dead:-0}" -ge 1 ] || [ "${degraded:-0}" -gt 0 ] || [ "${under:-0}" -gt 0 ]; }; then degraded_at=$now; fi
  line="dead=$dead degraded=$degraded under=$under left=$(( ${remaining:-0} / 1048576 ))MiB rate=$(( ${rate:-0} / 1048576 ))MiB/s active=$active"
  if [ "$line" != "${last_line:-}" ]; then
    printf '  t=%6.1fs %s\n' "$(python3 -c "print($now-$kill_at)")" "$line" >&2
    last_line=$line
  fi
  if [ -n "$degraded_at" ] && [ "$degraded" = 0 ] && [ "$under" = 0 ] && [ "$active" = 0 ]; then
    json=$("$feitian" status --json --data "$work/data")
    if python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s["degradedChunks"]==0 and s["underReplicatedChunks"]==0 else 1)' "$json"; then
      done_at=$now
      break
    fi
  fi
  kill -0 "$fio_pid" 2>/dev/null || { cat "$work/load.err" >&2; echo "bench/rebuild.sh: fio stopped during the rebuild" >&2; exit 1; }
  sleep 0.5
done
[ -n "$done_at" ] || { echo "bench/rebuild.sh: no full redundancy after an hour" >&2; exit 1; }
copied=$(curl -s "$metrics" | awk '$1 == "feitian_master_rebuild_copied_bytes_total" { printf "%d", $2 }')
sleep 2
kill -INT "$fio_pid"
wait "$fio_pid" || true
fio_pid=""

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$work" "$load_start" "$kill_at" "$degraded_at" "$done_at" "${copied:-0}" "$SIZE" "$DEAD_AFTER" "$loadavg" <<'PY'
import glob, json, sys
work, load_start, kill_at, dead_at, done_at, copied, size, dead_after, loadavg = sys.argv[1:]
load_start, kill_at, dead_at, done_at, copied = map(float, (load_start, kill_at, dead_at, done_at, copied))
text = open(f"{work}/load.json").read()
job = json.loads(text[text.index("{"):])["jobs"][0]
errors = job.get("error", 0)
samples = []
for path in glob.glob(f"{work}/load_iops*.log"):
    for line in open(path):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2:
            samples.append((load_start + int(parts[0]) / 1000, float(parts[1])))
def mean(a, b):
    window = [v for t, v in samples if a <= t < b]
    return sum(window) / len(window) if window else float("nan")
before = mean(kill_at - 15, kill_at)
during = mean(dead_at, done_at)
rebuild_seconds = max(done_at - dead_at, 1e-9)
print(f"data written before the kill:     {size}")
print(f"--dead-after:                     {dead_after} s")
print(f"loss seen by the master after:    {dead_at - kill_at:.1f} s")
print(f"time to full redundancy:          {done_at - kill_at:.1f} s after the kill ({rebuild_seconds:.1f} s of rebuild)")
print(f"rebuilt:                          {copied / 2**20:.0f} MiB at {copied / 2**20 / rebuild_seconds:.1f} MiB/s")
print(f"foreground 4k randwrite IOPS:     {before:.0f} before, {during:.0f} during the rebuild ({during / before * 100 if before else float('nan'):.0f}%)")
print(f"fio write errors:                 {errors}")
print(f"load average (1/5/15 min):        {loadavg}")
sys.exit(1 if errors else 0)
PY
