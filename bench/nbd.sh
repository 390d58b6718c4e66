#!/usr/bin/env bash
# NBD benchmark (not a test): fio --ioengine=nbd against a volume of a fresh local cluster
# (`feitian up`, Release build, 3 replicas) and, in the same run, against `nbdkit file`
# serving a file on the same filesystem. Prints IOPS, mean and p99 latency per workload
# for both, and the ratio project/nbdkit.
#
# Environment: RUNTIME (seconds per job, default 10), RAMP (seconds each job runs before
# fio starts measuring, default 10: the .NET servers JIT their hot paths during the first
# seconds of a new workload; nbdkit gets the same ramp), VOLUME_SIZE (default 2GiB),
# FIO_SIZE (region the jobs touch, prefilled first; default 1G), BENCH_DIR (parent of the
# temporary directory; default $TMPDIR or /tmp), CHUNKSERVERS (default 6), WORKLOADS (names of the
# workloads to run, space-separated, e.g. "randread-4k-qd32 seqwrite-1m-qd32"; default all).
#
# CPU: after each job's ramp and at its end the script sums utime+stime (/proc/PID/stat) of
# every process of the target (`feitian up` and all its descendants: masters, chunk servers,
# the NBD engine; or nbdkit) and prints CPU seconds per GiB moved and per 1,000 requests of
# the measured period. On a real cluster the replicas run on three machines, so CPU, not
# this machine's core count, decides the cost. The load average of the machine is printed
# before and after, since other work on a shared machine skews both columns. While nbdkit is
# measured, every process of the cluster is stopped (SIGSTOP), so its background work does not
# compete with nbdkit; nbdkit, idle, costs the cluster nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME=${RUNTIME:-10}
RAMP=${RAMP:-10}
VOLUME_SIZE=${VOLUME_SIZE:-2GiB}
FIO_SIZE=${FIO_SIZE:-1G}
CHUNKSERVERS=${CHUNKSERVERS:-6}
for tool in fio nbdkit python3; do
  command -v "$tool" >/dev/null || { echo "bench/nbd.sh: $tool is not installed (./test.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/feitian-bench-nbd.XXXXXX")
up_pid=""
nbdkit_pid=""
# Sends a signal to a process and every process under it.
signal_tree() {
  local signal=$1 pid=$2 child
  for child in $(pgrep -P "$pid"); do signal_tree "$signal" "$child"; done
  kill "-$signal" "$pid" 2>/dev/null || true
}
cleanup() {
  [ -n "$up_pid" ] && signal_tree CONT "$up_pid"
  [ -n "$nbdkit_pid" ] && kill "$nbdkit_pid" 2>/dev/null && wait "$nbdkit_pid" 2>/dev/null || true
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

"$feitian" up --data "$work/data" --nbd-port 0 --chunkservers "$CHUNKSERVERS" >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 1200); do
  grep -q '^ready' "$work/up.log" && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log" >&2; echo "bench/nbd.sh: feitian up exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^ready' "$work/up.log" || { cat "$work/up.log" >&2; echo "bench/nbd.sh: feitian up not ready after 120 s" >&2; exit 1; }
nbd_port=$(grep -oE '^nbd +nbd://127\.0\.0\.1:[0-9]+' "$work/up.log" | grep -oE '[0-9]+$')
"$feitian" volume create bench --size "$VOLUME_SIZE" --replicas 3 --data "$work/data" >&2
project_uri="nbd://127.0.0.1:${nbd_port}/bench"

volume_bytes=$(python3 - "$VOLUME_SIZE" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+)(KiB|MiB|GiB|TiB)", sys.argv[1])
print(int(m.group(1)) << {"KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m.group(2)])
PY
)
truncate -s "$volume_bytes" "$work/nbdkit.img"
nbdkit_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nbdkit -f -i 127.0.0.1 -p "$nbdkit_port" file "$work/nbdkit.img" &
nbdkit_pid=$!
for _ in $(seq 1 100); do nbdinfo --size "nbd://127.0.0.1:${nbdkit_port}/" >/dev/null 2>&1 && break; sleep 0.1; done
nbdkit_uri="nbd://127.0.0.1:${nbdkit_port}/"

# CPU seconds (utime+stime) of a process and all its descendants.
cpu_seconds() {
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
parent, ticks = {}, {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        stat = open(f"/proc/{entry}/stat").read()
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    parent[int(entry)] = int(fields[1])
    ticks[int(entry)] = int(fields[11]) + int(fields[12])
def under(pid):
    while pid > 1:
        if pid == root:
            return True
        pid = parent.get(pid, 0)
    return False
print(sum(t for pid, t in ticks.items() if under(pid)) / os.sysconf("SC_CLK_TCK"))
PY
}

# Context for the sequential-write row: the project appends every write to new chunk files (fresh
# page-cache pages, three replicas), while nbdkit overwrites pages of its prefilled file. On some VMs
# the first kind is several times slower than the second; print both for this filesystem.
page_cache_speed() {
  dd if=/dev/zero of="$work/dd.img" bs=1M count=1024 "$@" 2>&1 | grep -oE '[0-9.]+ [GM]B/s' | tail -1
}
echo "page cache on this filesystem (dd 1 GiB): new file $(page_cache_speed), overwrite $(page_cache_speed conv=notrunc)" >"$work/page-cache"
rm -f "$work/dd.img"
cat "$work/page-cache" >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" | tee "$work/load-before" >&2

# name rw bs iodepth
workloads=(
  "randread-4k-qd1 randread 4k 1"
  "randread-4k-qd32 randread 4k 32"
  "randwrite-4k-qd1 randwrite 4k 1"
  "randwrite-4k-qd32 randwrite 4k 32"
  "seqwrite-1m-qd32 write 1M 32"
)

if [ -n "${WORKLOADS:-}" ]; then
  selected=()
  for w in "${workloads[@]}"; do
    for wanted in $WORKLOADS; do [ "${w%% *}" = "$wanted" ] && selected+=("$w"); done
  done
  [ ${#selected[@]} -gt 0 ] || { echo "bench/nbd.sh: WORKLOADS names none of: ${workloads[*]%% *}" >&2; exit 2; }
  workloads=("${selected[@]}")
fi

for target in project nbdkit; do
  uri=$project_uri; [ "$target" = nbdkit ] && uri=$nbdkit_uri
  root=$up_pid; [ "$target" = nbdkit ] && root=$nbdkit_pid
  # The cluster's background work (JIT, scrubbing, RAF GC, heartbeats) must not run on the cores
  # nbdkit is measured on: its processes are stopped meanwhile (nbdkit idles at no CPU while the
  # project is measured).
  [ "$target" = nbdkit ] && signal_tree STOP "$up_pid"
  echo "prefilling $FIO_SIZE of $target so reads hit data..." >&2
  fio --name=prefill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=32 --size="$FIO_SIZE" \
      --output-format=json >"$work/prefill-$target.json"
  for w in "${workloads[@]}"; do
    read -r name rw bs depth <<<"$w"
    echo "$target: $name (${RAMP}s ramp, ${RUNTIME}s measured)..." >&2
    fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$depth" \
        --size="$FIO_SIZE" --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=0 \
        --output-format=json >"$work/$target-$name.json" &
    fio_pid=$!
    sleep "$RAMP"
    cpu_start=$(cpu_seconds "$root")
    wait "$fio_pid"
    echo "$(python3 -c "print($(cpu_seconds "$root") - $cpu_start)")" >"$work/$target-$name.cpu"
  done
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >"$work/load-after"
python3 - "$work" "${workloads[@]}" <<'PY'
import json, sys
work, workloads = sys.argv[1], [w.split()[0] for w in sys.argv[2:]]

def stats(target, name):
    text = open(f"{work}/{target}-{name}.json").read()
    job = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes before the JSON
    side = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
    p99 = side["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000
    cpu = float(open(f"{work}/{target}-{name}.cpu").read())
    gib = side["io_bytes"] / 2**30
    return side["iops"], side["lat_ns"]["mean"] / 1000, p99, cpu / max(gib, 1e-9), cpu / max(side["total_ios"] / 1000, 1e-9)

head = f"{'workload':<20}{'project IOPS':>14}{'mean us':>10}{'p99 us':>10}{'nbdkit IOPS':>14}{'mean us':>10}{'p99 us':>10}{'IOPS ratio':>12}{'mean lat ratio':>16}"
print(head)
print("-" * len(head))
for name in workloads:
    p, k = stats("project", name), stats("nbdkit", name)
    print(f"{name:<20}{p[0]:>14.0f}{p[1]:>10.0f}{p[2]:>10.0f}{k[0]:>14.0f}{k[1]:>10.0f}{k[2]:>10.0f}{p[0] / max(k[0], 1e-9):>12.2f}{p[1] / max(k[1], 1e-9):>16.2f}")
print()
head = f"{'CPU seconds':<20}{'project /GiB':>14}{'/1k req':>10}{'nbdkit /GiB':>14}{'/1k req':>10}{'CPU/GiB ratio':>15}"
print(head)
print("-" * len(head))
for name in workloads:
    p, k = stats("project", name), stats("nbdkit", name)
    ratio = f"{p[3] / k[3]:.1f}" if k[3] >= 0.01 else "n/a"  # below the clock tick: no ratio
    print(f"{name:<20}{p[3]:>14.2f}{p[4]:>10.3f}{k[3]:>14.2f}{k[4]:>10.3f}{ratio:>15}")
print()
print(open(f"{work}/page-cache").read().strip())
print(open(f"{work}/load-before").read().strip())
print(open(f"{work}/load-after").read().strip())
PY
