#!/usr/bin/env bash
# Installs the Debian 12 packages kvcachefs needs to build, test and run.
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config libfuse3-dev fuse3 libsqlitecpp-dev libsqlite3-dev
      libcli11-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev
      libxxhash-dev nlohmann-json3-dev attr pybind11-dev python3-dev python3-pytest
      python3-numpy man-db dpkg-dev  # dpkg-dev: dpkg-shlibdeps for the .deb
      redis-server libhiredis-dev  # the remote tier: its client and the tests' server
      clang libclang-rt-14-dev llvm ccache)  # sanitizer and fuzz stages; symbolizing
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The engine test runs llama.cpp from npm (node-llama-cpp, which needs node >= 20); a node
# installed from elsewhere (e.g. nodesource, which bundles npm) is kept.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
