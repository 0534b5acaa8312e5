#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, creates a ready pool and mounts kvcachefs.
#   scripts/run.sh [MOUNTPOINT]      (default /tmp/kvcachefs)
# POOL_NAME, POOL_SIZE and POOL_POLICY override the pool's defaults (demo, 256M, lru).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mnt=${1:-/tmp/kvcachefs}
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
build=${BUILD_DIR:-$root/build}
cortex="$build/cli/cortex"
pool=${POOL_NAME:-demo}
if ! "$cortex" cache status "$pool" >/dev/null 2>&1; then
  "$cortex" cache create "$pool" --size "${POOL_SIZE:-256M}" --policy "${POOL_POLICY:-lru}"
fi
mkdir -p "$mnt"
"$cortex" cache mount "$mnt"
cat <<MSG

kvcachefs is mounted on $mnt with pool '$pool'. Try:
  cat $mnt/status
  head -c 1M /dev/urandom > $mnt/$pool/42          # put sequence 42
  setfattr -n user.kvcache.prefix_tokens -v 1,2,3 $mnt/$pool/42
  ls -l $mnt/$pool; getfattr -d $mnt/$pool/42
  ls $mnt/$pool/by-prefix/
  echo 25 > $mnt/$pool/evict; cat $mnt/$pool/evict
  $cortex cache status; $cortex cache entries $pool
Unmount with: $cortex cache unmount $mnt
MSG
