# Shared start-up for bench scripts (sourced, not run). Each function leaves a pid in a
# variable the caller's cleanup stops: bench_up -> up_pid, bench_s3rver -> s3rver_pid.

# bench_up DIR LOG [feitian up flags...]: starts `feitian up` on DIR and waits for "ready".
# Sets up_pid and nbd_port. Needs $feitian.
bench_up() {
  local data=$1 log=$2
  shift 2
  "$feitian" up --data "$data" --nbd-port 0 "$@" >"$log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 1200); do
    grep -q '^ready' "$log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$log" >&2; echo "bench: feitian up exited" >&2; return 1; }
    sleep 0.1
  done
  grep -q '^ready' "$log" || { cat "$log" >&2; echo "bench: feitian up not ready after 120 s" >&2; return 1; }
  nbd_port=$(grep -oE '^nbd +nbd://127\.0\.0\.1:[0-9]+' "$log" | grep -oE '[0-9]+$')
}

# bench_stop_up: SIGTERM, a clean stop within 60 s, else SIGKILL.
bench_stop_up() {
  if [ -n "${up_pid:-}" ] && kill -TERM "$up_pid" 2>/dev/null; then
    for _ in $(seq 1 600); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  up_pid=""
}

# bench_s3rver DIR LOG BUCKET: starts s3rver (tests/.s3rver, installed by ./test.sh) on a free
# loopback port with BUCKET created. Sets s3rver_pid and s3_endpoint; exports s3rver's credentials.
bench_s3rver() {
  local dir=$1 log=$2 bucket=$3
  local s3rver=${S3RVER:-tests/.s3rver/node_modules/.bin/s3rver}
  [ -x "$s3rver" ] || { echo "bench: $s3rver not found: run ./test.sh, or npm install --prefix tests/.s3rver s3rver@3" >&2; return 1; }
  mkdir -p "$dir"
  "$s3rver" -d "$dir" -a 127.0.0.1 -p 0 --silent --no-vhost-buckets --configure-bucket "$bucket" >"$log" 2>&1 &
  s3rver_pid=$!
  for _ in $(seq 1 600); do
    grep -q 'S3rver listening on' "$log" && break
    kill -0 "$s3rver_pid" 2>/dev/null || { cat "$log" >&2; echo "bench: s3rver exited" >&2; return 1; }
    sleep 0.1
  done
  s3_endpoint="http://127.0.0.1:$(grep -oE 'listening on [^:]+:[0-9]+' "$log" | grep -oE '[0-9]+$')"
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
}

bench_stop_s3rver() {
  if [ -n "${s3rver_pid:-}" ]; then
    kill "$s3rver_pid" 2>/dev/null || true
    wait "$s3rver_pid" 2>/dev/null || true
  fi
  s3rver_pid=""
}
