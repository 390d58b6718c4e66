#!/usr/bin/env bash
# Long fuzz run (not part of ./test.sh's time budget): every fuzz test of the suite, each for
# FUZZ_SECONDS (default 120) instead of the few seconds ./test.sh gives it. The targets are every
# parser that takes bytes from outside: the NBD handshake and transmission requests, master namespace calls, chunk-server
# RPCs, CSI controller calls, StorageCluster specs, and backup manifests read from an object store
# (BackupManifestFuzzTests). A failure prints CsCheck's seed of the
# shrunk case; FEITIAN_FUZZ_SEED=<seed> bench/fuzz.sh replays it.
#
# Environment: FUZZ_SECONDS (default 120), FEITIAN_FUZZ_SEED (replay a seed), FILTER (extra
# dotnet test filter, default every test whose name contains "Fuzz").
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-120}
FILTER=${FILTER:-FullyQualifiedName~Fuzz}

echo "building (Release)..." >&2
dotnet build FeitianK8s.sln -c Release -nologo -v q >/dev/null
log=$(mktemp)
status=0
for project in tests/FeitianK8s.Core.Tests tests/FeitianK8s.Master.Tests tests/FeitianK8s.ChunkServer.Tests tests/FeitianK8s.Csi.Tests tests/FeitianK8s.Operator.Tests; do
  FEITIAN_FUZZ_SECONDS=$FUZZ_SECONDS dotnet test "$project" -c Release --no-build -nologo --filter "$FILTER" \
    --logger "console;verbosity=detailed" >"$log" 2>&1 || status=$?
  # One line per test: its result, CsCheck's iteration count and what the inputs reached.
  grep -E '^\s+(Passed|Failed) FeitianK8s|^\s+(Passed|Failed) [0-9,]+ iterations|outcomes:|sessions;|schema admitted|Set seed' "$log" \
    | sed -E 's/^\s+//' | uniq
done
rm -f "$log"
[ "$status" -eq 0 ] && echo "fuzz: every target held for ${FUZZ_SECONDS} s" || echo "fuzz: FAILED (seed above replays it)"
exit "$status"
