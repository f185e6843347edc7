#!/usr/bin/env bash
# Builds hourglass (see tools/build.sh) and runs every test with CTest: unit,
# service, buf lint and end-to-end. Extra arguments go to ctest, e.g.
#   tools/test.sh -L e2e        only the end-to-end suite
#   tools/test.sh -R buf_lint   only the API lint
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/build.sh
build_dir="${HOURGLASS_BUILD_DIR:-build}"
# --timeout: a default for tests without their own TIMEOUT, so that a hung test fails
# instead of eating CI's time.
ctest --test-dir "${build_dir}" --output-on-failure -j2 --timeout 300 "$@"
