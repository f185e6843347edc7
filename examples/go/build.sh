#!/usr/bin/env bash
# Builds the Go quickstart offline against Debian's Go packages into OUTDIR:
#   OUTDIR/gopath/src/hourglass/gen/hourglass/v1/  the stubs, generated from protos/ by
#                                                  protoc-gen-go and protoc-gen-go-grpc
#   OUTDIR/go-cache/                               Go's build cache
#   OUTDIR/quickstart                              the program (after `go vet`)
#
# Debian ships Go libraries as source in /usr/share/gocode (golang-google-grpc-dev,
# golang-google-protobuf-dev, ...) for GOPATH mode, so this builds in GOPATH mode, with the
# module proxy off: nothing is downloaded. The stubs' import path is the go_package of the
# .proto files, hourglass/gen/hourglass/v1.
#
# Usage: examples/go/build.sh OUTDIR
# PROTOC, GO and HOURGLASS_GOCODE (default /usr/share/gocode) override the tools and libraries.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
protoc="${PROTOC:-protoc}"
go="${GO:-go}"
gocode="${HOURGLASS_GOCODE:-/usr/share/gocode}"

for tool in "${protoc}" "${go}" protoc-gen-go protoc-gen-go-grpc; do
  if ! command -v "${tool}" >/dev/null; then
    echo "$0: ${tool} not found: install Debian's golang-go, protoc-gen-go, protoc-gen-go-grpc," \
      "golang-google-grpc-dev and golang-google-protobuf-dev (tools/install_deps.sh does)" >&2
    exit 1
  fi
done

gopath="${out}/gopath"
rm -rf "${gopath}/src/hourglass/gen"
mkdir -p "${gopath}/src"
"${protoc}" \
  --proto_path="${repo}/protos" \
  --go_out="${gopath}/src" \
  --go-grpc_out="${gopath}/src" \
  hourglass/v1/task.proto hourglass/v1/scheduler_service.proto hourglass/v1/consumer_service.proto

cd "${here}"
go_env=(env GO111MODULE=off GOPATH="${gopath}:${gocode}" GOCACHE="${out}/go-cache" GOPROXY=off
  GOFLAGS= GOENV=off)
"${go_env[@]}" "${go}" vet .
"${go_env[@]}" "${go}" build -o "${out}/quickstart" .
