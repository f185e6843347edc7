#!/usr/bin/env bash
# Installs everything that building and testing hourglass needs on Debian 12:
# the toolchain and libraries from Debian's archive, then the Node.js dev tools
# (buf, for linting the protobuf API; the deploy checks' linters) from package-lock.json.
#
# Idempotent and quick to rerun: apt is skipped when every package is already
# installed, npm when node_modules was installed from the current package-lock.json.
# Runs as root (CI) or as a user with sudo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_packages=(
  # Toolchain.
  build-essential cmake ninja-build pkg-config ca-certificates
  # Libraries and code generators.
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  # Push delivery over HTTP; the server's allocator.
  libcurl4-openssl-dev libjemalloc-dev
  prometheus-cpp-dev
  # C++ tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev
  # End-to-end and monitoring tests (Debian's Python: /usr/bin/python3, with PyYAML for the
  # rules and kustomization files), promtool and the Prometheus server.
  python3-grpcio python3-protobuf python3-pytest python3-yaml prometheus
  # tests/e2e/test_hostile.py speaks raw HTTP/2 (what no gRPC client sends: non-ASCII tokens,
  # half-sent requests).
  python3-h2
  # The TLS tests make their certificates with the openssl command (tests/e2e/test_tls.py).
  openssl
  # Formatting.
  clang-format
  # The libFuzzer targets (tests/fuzz, CTest fuzz_smoke): clang, its sanitizer and libFuzzer
  # runtimes (only recommended by clang, so named), llvm-symbolizer for readable crash stacks.
  clang libclang-rt-14-dev llvm-14
  # The deploy tests: a minimal Debian root filesystem to carry out the Dockerfile's runtime
  # stage in, without Docker (tests/deploy/test_runtime_stage.py).
  mmdebstrap
  # The Go example (examples/go), built offline in GOPATH mode from Debian's Go sources. The
  # golang/protobuf 1.5 shim (over google.golang.org/protobuf, which the generated stubs use) is
  # named so that apt does not take 1.3, the first choice of golang-google-grpc-dev's dependency.
  golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev
)

missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("${package}")
  fi
done
# Any Node.js with its npm will do. NodeSource's nodejs bundles npm and conflicts
# with Debian's npm package, so ask apt only for what is really absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# kubectl renders deploy/kubernetes (`kubectl kustomize`) in the deploy tests. Debian's
# kubernetes-client ships /usr/bin/kubectl, which conflicts with other kubectl packages:
# ask for it only when no kubectl is present.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if ((${#missing[@]} > 0)); then
  sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    sudo=(sudo)
  fi
  echo "install_deps: installing ${missing[*]}" >&2
  # Wait for another apt run to finish instead of failing on its lock.
  apt_options=(-o DPkg::Lock::Timeout=600)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_options[@]}" update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_options[@]}" install -y \
    --no-install-recommends "${missing[@]}"
else
  echo "install_deps: Debian packages already installed" >&2
fi

# The Node.js tools, pinned by package-lock.json: buf, and the deploy checks' dockerfilelint,
# kubernetes-models and yaml. `npm ci` runs again whenever package-lock.json differs from the
# one the last `npm ci` installed (its hash is kept in a stamp file inside node_modules).
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
npm_stamp=node_modules/.hourglass-package-lock.sha256
if [[ -x node_modules/.bin/buf ]] && [[ -f "${npm_stamp}" ]] &&
  [[ "$(cat "${npm_stamp}")" == "${lock_hash}" ]]; then
  echo "install_deps: node_modules matches package-lock.json" >&2
else
  echo "install_deps: npm ci (package-lock.json ${lock_hash:0:12})" >&2
  npm ci --no-audit --no-fund
  echo "${lock_hash}" >"${npm_stamp}"
fi
# buf is a native binary inside the npm package: it must run offline from here on.
echo "install_deps: buf $(node_modules/.bin/buf --version)" >&2

# The Node.js example's @grpc/grpc-js and @grpc/proto-loader, pinned by its own lock file, in
# examples/node/node_modules; skipped while that lock file is the one installed, and where there
# is no example (the container image's dependency layer has only this script and the top-level
# package files).
example_lock=examples/node/package-lock.json
example_stamp=examples/node/node_modules/.hourglass-package-lock.sha256
if [[ ! -f "${example_lock}" ]]; then
  echo "install_deps: no ${example_lock}, no npm ci for the Node.js example" >&2
elif [[ -f "${example_stamp}" ]] &&
  [[ "$(cat "${example_stamp}")" == "$(sha256sum "${example_lock}" | cut -d' ' -f1)" ]]; then
  echo "install_deps: examples/node/node_modules matches its package-lock.json" >&2
else
  echo "install_deps: npm ci --prefix examples/node" >&2
  npm ci --prefix examples/node --no-audit --no-fund
  sha256sum "${example_lock}" | cut -d' ' -f1 >"${example_stamp}"
fi
