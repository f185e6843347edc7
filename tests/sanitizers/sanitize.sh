#!/usr/bin/env bash
# sanitize_asan / sanitize_tsan (CTest, LABELS sanitize): configures a clang build tree with
# sanitizers inside the normal build tree (once; it is kept, so a rerun rebuilds only what
# changed), builds it and runs its tests (the C++ unit and service tests, and sanitizer_check).
#
#   sanitize.sh asan|tsan <source dir> <build dir>               configure, build, test
#   sanitize.sh asan|tsan <source dir> <build dir> --configure   configure only (fuzz_smoke)
#
# asan: HOURGLASS_SANITIZE=address,undefined with the libFuzzer targets (HOURGLASS_BUILD_FUZZERS,
# which fuzz_smoke runs); tsan: HOURGLASS_SANITIZE=thread. HOURGLASS_SANITIZE_JOBS sets the
# parallelism of the build and of the tests (default 2: CI's machine has two cores).
set -euo pipefail

kind="$1"
source_dir="$2"
build_dir="$3"
jobs="${HOURGLASS_SANITIZE_JOBS:-2}"

case "${kind}" in
  asan) options=(-DHOURGLASS_SANITIZE=address,undefined -DHOURGLASS_BUILD_FUZZERS=ON) ;;
  tsan) options=(-DHOURGLASS_SANITIZE=thread) ;;
  *)
    echo "sanitize.sh: unknown kind ${kind} (asan or tsan)" >&2
    exit 2
    ;;
esac

for tool in clang clang++; do
  if ! command -v "${tool}" >/dev/null; then
    echo "sanitize.sh: ${tool} is missing (tools/install_deps.sh installs it)" >&2
    exit 1
  fi
done

started=${SECONDS}
if [[ ! -f "${build_dir}/build.ninja" ]]; then
  # -O1 and line tables only: a third faster to build than -O2 -g, and the reports still name
  # every function, file and line.
  CC=clang CXX=clang++ cmake -S "${source_dir}" -B "${build_dir}" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG" \
    -DHOURGLASS_BUILD_EXAMPLES=OFF "${options[@]}"
fi
if [[ "${4:-}" == --configure ]]; then
  exit 0
fi

# Niced: the tests that CTest runs beside this one (some of them timed) keep their share of the
# CPU.
nice -n 10 cmake --build "${build_dir}" -j "${jobs}"
echo "sanitize.sh: ${kind} tree built in $((SECONDS - started)) s" >&2

tested=${SECONDS}
status=0
nice -n 10 ctest --test-dir "${build_dir}" --output-on-failure --no-tests=error -j "${jobs}" \
  --timeout 600 || status=$?
echo "sanitize.sh: ${kind} tests ran in $((SECONDS - tested)) s (total $((SECONDS - started)) s)" >&2
exit "${status}"
