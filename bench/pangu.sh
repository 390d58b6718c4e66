#!/usr/bin/env bash
# Pangu append benchmark: 1 MiB append throughput and 4 KiB append latency with 3
# replicas on a fresh local cluster, next to a plain local file on the same disk.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build bench -c Release -nologo -v q >/dev/null
exec dotnet bench/bin/Release/net10.0/FeitianK8s.Bench.dll append "$@"
