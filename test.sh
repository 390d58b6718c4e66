#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then
# runs every test project of the solution and prints one summary line.
set -euo pipefail
cd "$(dirname "$0")"

need_packages=()
for tool in nbdinfo:libnbd-bin nbdcopy:libnbd-bin nbdfuse:libnbd-bin qemu-io:qemu-utils fio:fio \
            mkfs.ext4:e2fsprogs mkfs.xfs:xfsprogs fusermount3:fuse3 nbdkit:nbdkit losetup:mount go:golang-go \
            chromium:chromium fincore:util-linux-extra; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_packages+=("${tool##*:}")
done
# Go sources the chart's helm-template replay (tests/helm-render) builds against.
for source in github.com/Masterminds/sprig:golang-github-masterminds-sprig-dev sigs.k8s.io/yaml:golang-k8s-sigs-yaml-dev \
              github.com/xeipuuv/gojsonschema:golang-github-xeipuuv-gojsonschema-dev; do
  [ -d "/usr/share/gocode/src/${source%%:*}" ] || need_packages+=("${source##*:}")
done
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "installing test prerequisites: ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# A real S3-compatible server for the backup tests (npm `s3rver`), kept inside the repository's tests/.
if [ ! -x tests/.s3rver/node_modules/.bin/s3rver ]; then
  command -v npm >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq npm >/dev/null; }
  echo "installing test prerequisite: s3rver (npm)"
  npm install --prefix tests/.s3rver --no-audit --no-fund --loglevel=error s3rver@3.7.1 >/dev/null
fi

dotnet build FeitianK8s.sln -c Release -nologo -v q
log=$(mktemp)
status=0
dotnet test FeitianK8s.sln -c Release --no-build -nologo -v q --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log" || status=$?

sum() { { grep -oE "$1: +[0-9]+" "$log" || true; } | awk '{s+=$2} END {print s+0}'; }
passed=$(sum Passed); failed=$(sum Failed); skipped=$(sum Skipped)
# Repeat each failure's name and message last, where a log read from its tail shows them.
if [ "$failed" -ne 0 ]; then
  echo "failed tests:"
  awk '/^ +Failed [A-Za-z]/ {show=1; lines=0} /^ +(Stack Trace|Standard Output Messages):/ {show=0} show && lines < 12 {print; lines++}' "$log"
fi
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$skipped" -ne 0 ] || [ "$passed" -eq 0 ]; then
  exit 1
fi
