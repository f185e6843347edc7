#!/usr/bin/env bash
# Builds hourglass and its tests into ./build (RelWithDebInfo, Ninja).
# Installs the dependencies first unless HOURGLASS_SKIP_DEPS=1.
# HOURGLASS_BUILD_DIR picks another build directory (relative to the repo root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${HOURGLASS_SKIP_DEPS:-0}" != 1 ]]; then
  bash tools/install_deps.sh
fi

build_dir="${HOURGLASS_BUILD_DIR:-build}"
cmake -S . -B "${build_dir}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "${build_dir}"
