#!/usr/bin/env bash
# Failover benchmark (not a test): `feitian up` under a 4 KiB random write load over NBD
# (fio's nbd engine, queue depth 16, a FLUSH every FSYNC writes, errors counted instead of
# stopping fio), kill -9 of the leading master KILLS times; `up` restarts the killed master.
# Each kill gets its own fio run of KILL_INTERVAL seconds with the kill 2 s in, and a line with
# the longest write pause (longest time without any write completing, from fio's per-I/O
# completion log), the I/O errors fio saw and the run's IOPS. Small chunks (CHUNK_SIZE) make
# writes need the master often (a new chunk every CHUNK_SIZE of log), as FLUSHes do.
#
# Environment: MASTERS ("1", "3" or "1 3"; default: "3 1" when `feitian up` has --masters,
# else "1"), KILLS (default 5), KILL_INTERVAL (seconds of fio per kill, default 15),
# MASTER_WAIT (the --master-wait of `up`, default 60), CHUNKSERVERS (default 6), CHUNK_SIZE
# (default 4MiB), FSYNC (default 256), BENCH_DIR (parent of the temporary directory;
# default $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-5}
KILL_INTERVAL=${KILL_INTERVAL:-15}
MASTER_WAIT=${MASTER_WAIT:-60}
CHUNKSERVERS=${CHUNKSERVERS:-6}
CHUNK_SIZE=${CHUNK_SIZE:-4MiB}
FSYNC=${FSYNC:-256}
for tool in fio python3; do
  command -v "$tool" >/dev/null || { echo "bench/failover.sh: $tool is not installed (./test.sh installs it)" >&2; exit 1; }
done

echo "building (Release)..." >&2
dotnet build cli -c Release -nologo -v q >/dev/null
feitian=cli/bin/Release/net10.0/feitian
has_masters_flag=0
"$feitian" up --help 2>/dev/null | grep -q -- '--masters' && has_masters_flag=1
if [ -z "${MASTERS:-}" ]; then
  MASTERS=1; [ "$has_masters_flag" = 1 ] && MASTERS="3 1"
fi

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/feitian-bench-failover.XXXXXX")
up_pid=""
stop_up() {
  if [ -n "$up_pid" ] && kill -TERM "$up_pid" 2>/dev/null; then
    for _ in $(seq 1 600); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  up_pid=""
}
cleanup() { stop_up; rm -rf "$work"; }
trap cleanup EXIT INT TERM

# The pid of the process listening on 127.0.0.1 TCP port $1 (the master serving gRPC there).
master_pid_on_port() {
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -1 | cut -d= -f2
}

# The gRPC port of the leader (`feitian status --json`, role=leader; a single master is its own leader).
leader_port() {
  "$feitian" status --json --data "$1" 2>/dev/null | python3 -c '
import json, sys
from urllib.parse import urlparse
masters = json.load(sys.stdin)["masters"]
leader = [m for m in masters if m.get("role") == "leader"] or (masters if len(masters) == 1 else [])
print(urlparse(leader[0]["address"]).port if leader else "")'
}

run() {
  local masters=$1 dir="$work/m$1"
  mkdir -p "$dir"
  local args=(up --data "$dir/data" --nbd-port 0 --chunkservers "$CHUNKSERVERS" --chunk-size "$CHUNK_SIZE" --master-wait "$MASTER_WAIT")
  [ "$has_masters_flag" = 1 ] && args+=(--masters "$masters")
  "$feitian" "${args[@]}" >"$dir/up.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 1200); do
    grep -q '^ready' "$dir/up.log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$dir/up.log" >&2; echo "bench/failover.sh: feitian up exited" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^ready' "$dir/up.log" || { cat "$dir/up.log" >&2; echo "bench/failover.sh: feitian up not ready after 120 s" >&2; exit 1; }
  local nbd_port
  nbd_port=$(grep -oE '^nbd +nbd://127\.0\.0\.1:[0-9]+' "$dir/up.log" | grep -oE '[0-9]+$')
  "$feitian" volume create failover --size 1GiB --replicas 3 --data "$dir/data" >&2

  # One fio run per kill, so each kill's errors and pause are its own: the leader is found
  # first (the CLI is slow on a busy machine), fio writes for KILL_INTERVAL seconds, and the
  # leader is killed 2 s in; `up` restarts it.
  echo "masters=$masters: per kill, fio randwrite 4k qd16 for ${KILL_INTERVAL}s with the leader killed 2 s in ($KILLS kills)..." >&2
  printf '%5s%13s%17s%10s%10s\n' kill "leader port" "longest pause s" errors IOPS
  for kill in $(seq 1 "$KILLS"); do
    local port="" pid="" k="$dir/kill$kill"
    for _ in $(seq 1 30); do
      port=$(leader_port "$dir/data")
      pid=$([ -n "$port" ] && master_pid_on_port "$port" || true)
      [ -n "$pid" ] && break
      sleep 1
    done
    [ -n "$pid" ] || { echo "kill $kill: no leader found" >&2; continue; }
    mkdir -p "$k"
    (cd "$k" && fio --name=failover --ioengine=nbd --uri="nbd://127.0.0.1:${nbd_port}/failover" --rw=randwrite --bs=4k \
        --iodepth=16 --size=1G --time_based --runtime="$KILL_INTERVAL" --randrepeat=0 --continue_on_error=all \
        --fsync="$FSYNC" --write_lat_log=failover --log_avg_msec=0 --output-format=json --output="$k/fio.json" 2>"$k/fio.err") &
    local fio_pid=$!
    sleep 2
    kill -KILL "$pid"
    wait "$fio_pid" || true
    python3 - "$k" "$kill" "$port" <<'PY'
import glob, json, sys
work, kill, port = sys.argv[1:4]
done = sorted(int(line.split(",")[0]) for f in glob.glob(f"{work}/failover_clat*.log") for line in open(f) if line.strip())
text = open(f"{work}/fio.json").read()
job = json.loads(text[text.index("{"):])["jobs"][0]
gaps = [b - a for a, b in zip(done, done[1:])] or [0]
errors = job.get("total_err", job.get("error", 0))
print(f"{kill:>5}{port:>13}{max(gaps) / 1000:>17.2f}{errors:>10}{job['write']['iops']:>10.0f}")
PY
  done
  stop_up
}

for m in $MASTERS; do
  run "$m"
done
