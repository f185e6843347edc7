#!/usr/bin/env bash
# fuzz_smoke (CTest, LABELS fuzz): builds the libFuzzer targets with clang in the ASan + UBSan
# build directory of tests/sanitizers/sanitize.sh and runs each for a bounded time on a copy of
# its seed corpus. Fails on any crash, sanitizer report, leak, timeout or out-of-memory, printing
# the fuzzer's report and the input.
#
#   fuzz_smoke.sh <source dir> <clang build dir>
#
# The build directory is kept between runs: a rerun rebuilds only what changed. Before fuzzing,
# every input in tests/fuzz/regressions/<fuzzer>/ is run once. HOURGLASS_FUZZ_SECONDS sets the
# time per fuzzer (default 30). docs/testing.md tells how to fuzz for longer by hand.
set -euo pipefail

source_dir="$1"
build_dir="$2"
seconds="${HOURGLASS_FUZZ_SECONDS:-30}"
fuzzers=(log_reader_fuzzer request_fuzzer)

for tool in clang clang++; do
  if ! command -v "${tool}" >/dev/null; then
    echo "fuzz_smoke: ${tool} is missing (tools/install_deps.sh installs it)" >&2
    exit 1
  fi
done

started=${SECONDS}
# The ASan + UBSan tree that sanitize_asan also tests in (HOURGLASS_BUILD_FUZZERS is on there).
bash "${source_dir}/tests/sanitizers/sanitize.sh" asan "${source_dir}" "${build_dir}" --configure
# Two jobs: CI's machine has two cores. Niced, like the fuzzing below, so that the tests CTest
# runs beside this one (some of them timed) keep their share of the CPU.
nice -n 10 cmake --build "${build_dir}" -j 2 --target "${fuzzers[@]}"
echo "fuzz_smoke: built in $((SECONDS - started)) s" >&2

symbolizer="$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)"
if [[ -n "${symbolizer}" ]]; then
  export ASAN_SYMBOLIZER_PATH="${symbolizer}"
fi
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# Prints what a failed run left: the end of its log and the inputs it saved, in hex.
report() {
  local fuzzer="$1" log="$2" artifacts="$3"
  echo "fuzz_smoke: ${fuzzer} FAILED; the end of its output:" >&2
  tail -n 120 "${log}" >&2
  for input in "${artifacts}"/*; do
    [[ -f "${input}" ]] || continue
    echo "fuzz_smoke: ${fuzzer} input $(basename "${input}") ($(stat -c %s "${input}") bytes;" \
      "add it to tests/fuzz/regressions/${fuzzer}/ once understood):" >&2
    od -A x -t x1z -v "${input}" | head -n 64 >&2
  done
}

# Known bugs (tests/fuzz/regressions/KNOWN_BUGS): their inputs must still fail, and the fuzzers
# step around them.
known_bugs=()
while read -r name _; do
  [[ -z "${name}" || "${name}" == \#* ]] || known_bugs+=("${name}")
done <"${source_dir}/tests/fuzz/regressions/KNOWN_BUGS"
is_known() {
  local input_name="$1" bug
  for bug in "${known_bugs[@]}"; do
    [[ "${input_name}" == "${bug}-"* ]] && return 0
  done
  return 1
}

failed=0
for fuzzer in "${fuzzers[@]}"; do
  binary="${build_dir}/tests/fuzz/${fuzzer}"
  artifacts="${work}/${fuzzer}-artifacts"
  corpus="${work}/${fuzzer}-corpus"
  mkdir -p "${artifacts}" "${corpus}"
  log="${work}/${fuzzer}.log"

  shopt -s nullglob
  regressions=()
  for input in "${source_dir}/tests/fuzz/regressions/${fuzzer}"/*; do
    if is_known "$(basename "${input}")"; then
      if env -u HOURGLASS_FUZZ_KNOWN_BUGS "${binary}" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="${artifacts}/known-" "${input}" >"${log}" 2>&1; then
        echo "fuzz_smoke: ${fuzzer}: $(basename "${input}") passes: its bug seems fixed;" \
          "delete its line in tests/fuzz/regressions/KNOWN_BUGS" >&2
        failed=1
      else
        echo "fuzz_smoke: ${fuzzer}: $(basename "${input}") still fails (a known bug):" >&2
        grep -a -m 3 -E 'fatal|FUZZ_CHECK|ERROR: ' "${log}" >&2 || true
      fi
    else
      regressions+=("${input}")
    fi
  done
  shopt -u nullglob
  if ((${#regressions[@]} > 0)); then
    if ! env -u HOURGLASS_FUZZ_KNOWN_BUGS "${binary}" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="${artifacts}/" "${regressions[@]}" >"${log}" 2>&1; then
      report "${fuzzer}" "${log}" "${artifacts}"
      echo "fuzz_smoke: ${fuzzer}: an input in tests/fuzz/regressions/${fuzzer}/ fails" >&2
      failed=1
      continue
    fi
  fi

  cp "${source_dir}/tests/fuzz/corpus/${fuzzer}"/* "${corpus}/"
  dict=()
  if [[ -f "${source_dir}/tests/fuzz/${fuzzer}.dict" ]]; then
    dict=("-dict=${source_dir}/tests/fuzz/${fuzzer}.dict")
  fi
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: memory is bounded;
  # -max_len: inputs may grow past the largest seed (a log spanning blocks).
  if HOURGLASS_FUZZ_KNOWN_BUGS="$(IFS=,; echo "${known_bugs[*]}")" \
    nice -n 10 "${binary}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="${artifacts}/" "${dict[@]}" "${corpus}" \
    >"${log}" 2>&1; then
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || true)"
    echo "fuzz_smoke: ${fuzzer}: ${runs:-?} inputs in ${seconds} s, no crash;" \
      "corpus $(ls "${corpus}" | wc -l) inputs" >&2
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::)' "${log}" >&2 || true
  else
    report "${fuzzer}" "${log}" "${artifacts}"
    failed=1
  fi
done
echo "fuzz_smoke: done in $((SECONDS - started)) s" >&2
exit "${failed}"
