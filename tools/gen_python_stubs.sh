#!/usr/bin/env bash
# Generates the Python gRPC stubs of the hourglass API into OUTDIR:
#   hourglass/v1/{task,scheduler_service,consumer_service}_pb2{,_grpc}.py
# plus the standard health and reflection services (grpc_health.v1.health_pb2,
# grpc_reflection.v1alpha.reflection_pb2), which Debian's python3-grpcio lacks, and the e2e
# tests' push receiver (receiver_pb2: billing.v1.Invoices).
# Use them with PYTHONPATH=OUTDIR and Debian's /usr/bin/python3.
#
# Usage: tools/gen_python_stubs.sh OUTDIR
# PROTOC and GRPC_PYTHON_PLUGIN override the code generators.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$1"
protoc="${PROTOC:-protoc}"
plugin="${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}"

mkdir -p "${out}"
"${protoc}" \
  --proto_path="${repo}/protos" \
  --python_out="${out}" \
  --grpc_python_out="${out}" \
  --plugin=protoc-gen-grpc_python="${plugin}" \
  hourglass/v1/task.proto hourglass/v1/scheduler_service.proto hourglass/v1/consumer_service.proto
"${protoc}" \
  --proto_path="${repo}/tests/e2e/protos" \
  --python_out="${out}" \
  --grpc_python_out="${out}" \
  --plugin=protoc-gen-grpc_python="${plugin}" \
  grpc_health/v1/health.proto grpc_reflection/v1alpha/reflection.proto receiver.proto
