#!/usr/bin/env bash
# Installs everything that building and testing hourglass needs on Debian 12:
# the toolchain and libraries from Debian's archive, then the Node.js dev tools
# (buf, for linting the protobuf API) from package-lock.json.
#
# Idempotent and quick to rerun: apt is skipped when every package is already
# installed, npm when node_modules already holds the locked buf.
# Runs as root (CI) or as a user with sudo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_packages=(
  # Toolchain.
  build-essential cmake ninja-build pkg-config ca-certificates
  # Libraries and code generators.
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  # Push delivery over HTTP.
  libcurl4-openssl-dev
  prometheus-cpp-dev
  # C++ tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev
  # End-to-end tests (Debian's Python: /usr/bin/python3) and promtool.
  python3-grpcio python3-protobuf python3-pytest prometheus
  # Formatting.
  clang-format
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

# buf, pinned by package-lock.json. Skip npm when the locked version is in place.
locked_buf="$(node -p 'require("./package-lock.json").packages["node_modules/@bufbuild/buf"].version')"
if [[ -x node_modules/.bin/buf ]] && [[ "$(node_modules/.bin/buf --version 2>/dev/null)" == "${locked_buf}" ]]; then
  echo "install_deps: buf ${locked_buf} already installed" >&2
else
  echo "install_deps: npm ci (buf ${locked_buf})" >&2
  npm ci --no-audit --no-fund
fi
# buf is a native binary inside the npm package: it must run offline from here on.
echo "install_deps: buf $(node_modules/.bin/buf --version)" >&2
