#!/usr/bin/env bash
# Builds hourglass (see tools/build.sh) and runs the server in the foreground
# with the embedded single-node store. Arguments go to the server, e.g.
#   tools/run.sh --grpc_address=127.0.0.1:7070 --log_level=debug
# The data directory defaults to ./data in the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The build's own output goes to stderr so that stdout is the server's alone.
bash tools/build.sh >&2
build_dir="${HOURGLASS_BUILD_DIR:-build}"

data_dir_given=0
for arg in "$@"; do
  case "${arg}" in
    --data_dir | --data_dir=* | -data_dir | -data_dir=*) data_dir_given=1 ;;
  esac
done
if ((data_dir_given)); then
  exec "${build_dir}/service/hourglass" "$@"
fi
exec "${build_dir}/service/hourglass" --data_dir=./data "$@"
