#!/usr/bin/env bash
# kvcachefs against tmpfs, side by side in one run: sequential read of a 256 MiB
# sequence file cold (after dropping the page cache) and warm, writing it, and
# `ls -l` of a pool with 10k entries; then the time a restarted daemon takes to serve
# the live pool again. Medians of RUNS runs; ratio = tmpfs time /
# kvcachefs time (above 1: kvcachefs is faster). Needs root (drop_caches, mount).
#
#   BUILD_DIR=build RUNS=5 bench/fs_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
runs=${RUNS:-5}
size_mb=${SIZE_MB:-256}
list_n=${LIST_N:-10000}
daemon=$build/fs/kvcachefs
[ -x "$daemon" ] || { echo "missing $daemon (build first)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (drop_caches)" >&2; exit 1; }

work=$(mktemp -d /tmp/kvcachefs-bench.XXXXXX)
tmpfs=$(mktemp -d /dev/shm/kvcachefs-bench.XXXXXX)
mnt=$work/mnt
export CORTEX_HOME=$work/home
export CORTEX_SHM_PREFIX=kvbench_$$_
mkdir -p "$mnt" "$CORTEX_HOME"
pid=
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null || grep -q " $mnt " /proc/self/mountinfo; then
    fusermount3 -u -z "$mnt" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work" "$tmpfs"
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"*
}
trap cleanup EXIT

"$daemon" "$mnt" -f -o home="$CORTEX_HOME" -o pool_size=$((size_mb * 2 + 64))M &
pid=$!
for _ in $(seq 500); do
  grep -q " $mnt .*fuse.kvcachefs" /proc/self/mountinfo && stat -f "$mnt" >/dev/null 2>&1 && break
  sleep 0.01
done
mkdir "$mnt/bench"
mkdir "$mnt/list"

src=$tmpfs/src
head -c "${size_mb}M" /dev/urandom > "$src"

now() { date +%s%N; }
# Prints the elapsed nanoseconds of "$@".
timed() { local t0 t1; t0=$(now); "$@"; t1=$(now); echo $((t1 - t0)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
rd() { dd if="$1" of=/dev/null bs=1M status=none; }
wr() { dd if="$src" of="$1" bs=1M status=none; }

declare -A result
measure() {  # name, then the command for each run reads $1 (target)
  local name=$1 setup=$2 target=$3 cmd=$4 ts=()
  for _ in $(seq "$runs"); do
    $setup "$target"
    ts+=("$(timed $cmd "$target")")
  done
  result[$name]=$(printf '%s\n' "${ts[@]}" | median)
}

none() { :; }
cold() { drop; }
warm() { rd "$1"; }
fresh() { rm -f "$1"; }

# Writes first: they leave the files the reads need.
measure write_fs fresh "$mnt/bench/1" wr
measure write_tmpfs fresh "$tmpfs/file" wr
cmp "$src" "$mnt/bench/1"
measure cold_fs cold "$mnt/bench/1" rd
measure cold_tmpfs cold "$tmpfs/file" rd
measure warm_fs warm "$mnt/bench/1" rd
measure warm_tmpfs warm "$tmpfs/file" rd

mkdir "$tmpfs/list"
for i in $(seq "$list_n"); do printf x > "$mnt/list/$i"; printf x > "$tmpfs/list/$i"; done
ls_l() { ls -l "$1" > /dev/null; }
warm_ls() { ls -l "$1" > /dev/null; }
measure list_fs warm_ls "$mnt/list" ls_l
measure list_tmpfs warm_ls "$tmpfs/list" ls_l

# Daemon restart: SIGKILL it (leaving a stale mount), start it again, and time until an
# entry of the live pool reads back through the mount.
restarts=()
for _ in $(seq "$runs"); do
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  t0=$(now)
  "$daemon" "$mnt" -f -o home="$CORTEX_HOME" &
  pid=$!
  until cat "$mnt/list/1" >/dev/null 2>&1; do :; done
  t1=$(now)
  restarts+=($((t1 - t0)))
done
restart_ns=$(printf '%s\n' "${restarts[@]}" | median)

mb=$size_mb
row() {  # label, fs ns, tmpfs ns, goal, unit(rate|time)
  awk -v l="$1" -v f="$2" -v t="$3" -v g="$4" -v u="$5" -v mb="$mb" 'BEGIN {
    if (u == "rate") { fs = sprintf("%.0f MB/s", mb * 1048576 / (f / 1e9) / 1e6);
                       tm = sprintf("%.0f MB/s", mb * 1048576 / (t / 1e9) / 1e6) }
    else { fs = sprintf("%.1f ms", f / 1e6); tm = sprintf("%.1f ms", t / 1e6) }
    r = t / f
    printf "%-34s %14s %14s %8.2fx   >= %.1fx  %s\n", l, fs, tm, r, g, (r >= g ? "ok" : "BELOW")
  }'
}
printf '%-34s %14s %14s %9s   %-6s\n' "test (median of $runs)" kvcachefs tmpfs ratio goal
row "sequential read ${mb} MiB, cold" "${result[cold_fs]}" "${result[cold_tmpfs]}" 0.2 rate
row "sequential read ${mb} MiB, warm" "${result[warm_fs]}" "${result[warm_tmpfs]}" 0.9 rate
row "write ${mb} MiB" "${result[write_fs]}" "${result[write_tmpfs]}" 0.8 rate
row "ls -l of $list_n entries" "${result[list_fs]}" "${result[list_tmpfs]}" 0.8 time
awk -v r="$restart_ns" 'BEGIN { ms = r / 1e6;
  printf "%-34s %14s %14s %9s   <= 100 ms %s\n", "daemon restart, reattach (SIGKILL)",
         sprintf("%.1f ms", ms), "-", "-", (ms <= 100 ? "ok" : "BELOW") }'
