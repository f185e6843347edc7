#!/usr/bin/env bash
# Builds hourglass and its tests into ./build (RelWithDebInfo, Ninja).
# Installs the dependencies first unless HOURGLASS_SKIP_DEPS=1.
# HOURGLASS_BUILD_DIR picks another build directory (relative to the repo root).
# HOURGLASS_CMAKE_ARGS adds options to the configure step, split on spaces (the container
# image builds with HOURGLASS_CMAKE_ARGS=-DHOURGLASS_BUILD_TESTS=OFF).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${HOURGLASS_SKIP_DEPS:-0}" != 1 ]]; then
  bash tools/install_deps.sh
fi

build_dir="${HOURGLASS_BUILD_DIR:-build}"
read -r -a extra_cmake_args <<<"${HOURGLASS_CMAKE_ARGS:-}"
cmake -S . -B "${build_dir}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra_cmake_args[@]}"
cmake --build "${build_dir}"
