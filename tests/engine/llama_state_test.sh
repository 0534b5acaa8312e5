#!/usr/bin/env bash
# kvcachefs as llama.cpp's state directory, end to end, with real separate processes:
#   1. an engine evaluates a prompt and saves the sequence's state into MOUNT/<pool>/<id>,
#      then attaches the prompt's tokens as the entry's prefix;
#   2. a new engine process finds the state under MOUNT/<pool>/by-prefix/<hash>/, restores
#      it and generates greedily;
#   3. a third process evaluates the prompt itself and generates greedily.
# The generated tokens of 2 and 3 must be equal.
#
# llama.cpp comes from the npm package node-llama-cpp, pinned to one exact version and
# installed once into $KVC_ENGINE_NPM_DIR (default $KVC_BUILD_DIR/engine-npm). The model
# is a tiny random-weight GGUF written by make_tiny_gguf.mjs. Exits 77 (skipped) only when
# the npm registry cannot be reached.
set -euo pipefail

readonly kVersion=3.21.1
readonly kGenerate=32
here=$(cd "$(dirname "$0")" && pwd)
build=${KVC_BUILD_DIR:?KVC_BUILD_DIR must name the build directory}
npm_dir=${KVC_ENGINE_NPM_DIR:-$build/engine-npm}
daemon_bin=$build/fs/kvcachefs

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is not installed (scripts/deps.sh installs it)"
command -v npm >/dev/null || fail "npm is not installed (scripts/deps.sh installs it)"
command -v setfattr >/dev/null || fail "setfattr is not installed (package attr)"
[ -x "$daemon_bin" ] || fail "missing $daemon_bin"

# --- llama.cpp, pinned ------------------------------------------------------------------
arch=$(node -p process.arch)
platform_pkg="@node-llama-cpp/linux-$arch"
installed() {
  [ "$(node -p "require('$npm_dir/node_modules/node-llama-cpp/package.json').version" 2>/dev/null)" = "$kVersion" ] &&
    [ -d "$npm_dir/node_modules/$platform_pkg/bins" ]
}
if ! installed; then
  mkdir -p "$npm_dir"
  cat >"$npm_dir/package.json" <<JSON
{
  "name": "kvcachefs-engine-test",
  "private": true,
  "dependencies": {
    "node-llama-cpp": "$kVersion",
    "$platform_pkg": "$kVersion"
  }
}
JSON
  echo "installing node-llama-cpp@$kVersion into $npm_dir"
  # Scripts off: the platform package carries llama.cpp prebuilt, nothing is built or
  # downloaded at install time. Optional packages off: the CUDA/Vulkan/other-OS builds.
  if ! (cd "$npm_dir" && npm install --no-audit --no-fund --ignore-scripts --omit=optional \
          --save-exact --loglevel=error >"$npm_dir/install.log" 2>&1); then
    if ! npm ping >/dev/null 2>&1; then
      echo "SKIP: the npm registry is unreachable; cannot install node-llama-cpp@$kVersion"
      exit 77
    fi
    cat "$npm_dir/install.log" >&2
    fail "npm install of node-llama-cpp@$kVersion failed"
  fi
  installed || fail "node-llama-cpp@$kVersion installed without $platform_pkg binaries"
fi
# ESM imports resolve next to the importing file.
cp "$here/engine.mjs" "$npm_dir/engine.mjs"

# --- a mount in a temp dir, always taken down -------------------------------------------
tmp=$(mktemp -d /tmp/kvc-engine.XXXXXX)
mnt=$tmp/mnt
export CORTEX_HOME=$tmp/home
export CORTEX_SHM_PREFIX=kvce_$$_
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then
    fusermount3 -u -z "$mnt" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"* 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$mnt" "$CORTEX_HOME"
"$daemon_bin" "$mnt" -f -o home="$CORTEX_HOME" -o pool_size=64M 2>"$tmp/daemon.log" &
daemon_pid=$!
mounted() { awk -v m="$mnt" '$5 == m && / fuse\.kvcachefs /' /proc/self/mountinfo | grep -q .; }
for _ in $(seq 600); do
  mounted && stat -f "$mnt" >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; fail "kvcachefs exited"; }
  sleep 0.05
done
mounted || fail "kvcachefs did not mount"
mkdir "$mnt/llama"

# --- the three engine processes ---------------------------------------------------------
model=$tmp/tiny.gguf
node "$here/make_tiny_gguf.mjs" "$model"
prompt="the cat sat on the mat and then it went in there, a tale of the sea and the wind \
at the end of the water. then the rest of it is on the stone, and the rain came in"
engine() { node "$npm_dir/engine.mjs" "$@"; }

saved=$(engine save "$model" "$prompt" "$mnt/llama" 7) || fail "save failed"
echo "saved:    $saved"
restored=$(engine restore "$model" "$prompt" "$mnt/llama" "$kGenerate") || fail "restore failed"
echo "restored: $restored"
fresh=$(engine fresh "$model" "$prompt" "$kGenerate") || fail "fresh evaluation failed"
echo "fresh:    $fresh"

tokens() { node -e 'const r = JSON.parse(process.argv[1]); console.log(r.generated.join(","))' "$1"; }
got=$(tokens "$restored")
want=$(tokens "$fresh")
[ "$(tr ',' '\n' <<<"$want" | wc -l)" -eq "$kGenerate" ] || fail "fresh generated '$want'"
case $restored in
  *"/by-prefix/"*"/7\""*) ;;
  *) fail "the state was not restored through by-prefix/<hash>/7" ;;
esac
[ "$got" = "$want" ] || fail "restored generation $got differs from fresh $want"
echo "PASS: $kGenerate tokens generated from the restored state equal a fresh evaluation's"
