#!/usr/bin/env bash
# An engine's save and restore through kvcachefs against tmpfs: a 12 MiB state written
# in 8 KiB pieces (as stdio does) and read back in 8 KiB pieces, then the prefix tokens
# and token count set on the published entry (in place: no payload copy), timed beside
# the save, and the same save in 1 MiB writes. Medians of RUNS runs; ratio = tmpfs time /
# kvcachefs time. Needs python3.
#
#   BUILD_DIR=build RUNS=9 bench/save_restore_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
runs=${RUNS:-9}
size_kb=${SIZE_KB:-12288}
daemon=$build/fs/kvcachefs
[ -x "$daemon" ] || { echo "missing $daemon (build first)" >&2; exit 1; }
command -v getfattr >/dev/null || { echo "getfattr missing (package attr)" >&2; exit 1; }

work=$(mktemp -d /tmp/kvcachefs-save.XXXXXX)
tmpfs=$(mktemp -d /dev/shm/kvcachefs-save.XXXXXX)
mnt=$work/mnt
export CORTEX_HOME=$work/home
export CORTEX_SHM_PREFIX=kvsave_$$_
mkdir -p "$mnt" "$CORTEX_HOME"
pid=
cleanup() {
  if grep -q " $mnt " /proc/self/mountinfo; then fusermount3 -u -z "$mnt" 2>/dev/null || true; fi
  if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work" "$tmpfs"
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"*
}
trap cleanup EXIT

"$daemon" "$mnt" -f -o home="$CORTEX_HOME" -o pool_size=256M &
pid=$!
for _ in $(seq 500); do
  grep -q " $mnt .*fuse.kvcachefs" /proc/self/mountinfo && stat -f "$mnt" >/dev/null 2>&1 && break
  sleep 0.01
done
mkdir "$mnt/engine"

# Timed inside one process (python3), so that process start-up is not counted: each save
# is open + 8 KiB os.write()s + close, each restore open + 8 KiB os.read()s, each
# attribute set two os.setxattr() calls, each large save open + 1 MiB os.write()s + close.
# Prints the eight medians in ns.
read -r save_fs restore_fs set_fs big_fs save_tmpfs restore_tmpfs set_tmpfs big_tmpfs < <(
python3 - "$mnt/engine" "$tmpfs" "$runs" "$size_kb" <<'PY'
import os, statistics, sys, time
dirs, runs, size = sys.argv[1:3], int(sys.argv[3]), int(sys.argv[4]) * 1024
data = os.urandom(size)
view = memoryview(data)
tokens = ",".join(str(t) for t in range(1, 3001)).encode()
out = []
for d in dirs:
    saves, restores, sets, bigs = [], [], [], []
    for i in range(runs):
        path = os.path.join(d, str(i + 1))
        t0 = time.perf_counter_ns()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for off in range(0, size, 8192):
            os.write(fd, view[off:off + 8192])
        os.close(fd)
        t1 = time.perf_counter_ns()
        fd = os.open(path, os.O_RDONLY)
        got = bytearray()
        while chunk := os.read(fd, 8192):
            got += chunk
        os.close(fd)
        t2 = time.perf_counter_ns()
        os.setxattr(path, "user.kvcache.prefix_tokens", tokens)
        os.setxattr(path, "user.kvcache.token_count", b"3000")
        t3 = time.perf_counter_ns()
        if bytes(got) != data:
            sys.exit(f"{path}: read back differs from what was saved")
        fd = os.open(os.path.join(d, str(100000 + i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for off in range(0, size, 1 << 20):
            os.write(fd, view[off:off + (1 << 20)])
        os.close(fd)
        t4 = time.perf_counter_ns()
        saves.append(t1 - t0); restores.append(t2 - t1); sets.append(t3 - t2)
        bigs.append(t4 - t3)
    out += [statistics.median(saves), statistics.median(restores), statistics.median(sets),
            statistics.median(bigs)]
print(" ".join(str(int(v)) for v in out))
PY
)
# The attributes landed on the entry.
[ "$(getfattr --absolute-names --only-values -n user.kvcache.token_count "$mnt/engine/1")" = 3000 ]
declare -A t=([save_fs]=$save_fs [restore_fs]=$restore_fs [set_fs]=$set_fs [big_fs]=$big_fs
              [save_tmpfs]=$save_tmpfs [restore_tmpfs]=$restore_tmpfs [set_tmpfs]=$set_tmpfs
              [big_tmpfs]=$big_tmpfs)

row() {  # label, fs ns, tmpfs ns, goal ("" for none)
  awk -v l="$1" -v f="$2" -v t="$3" -v g="$4" 'BEGIN {
    r = t / f
    verdict = g == "" ? "" : (r >= g ? "ok" : "BELOW")
    goal = g == "" ? "-" : sprintf(">= %.1fx", g)
    printf "%-46s %10.1f ms %10.1f ms %7.2fx   %-8s %s\n", l, f / 1e6, t / 1e6, r, goal, verdict
  }'
}
mib=$(awk -v k="$size_kb" 'BEGIN { printf "%g", k / 1024 }')
printf '%-46s %13s %13s %8s   %s\n' "test (median of $runs)" kvcachefs tmpfs ratio goal
row "save ${mib} MiB in 8 KiB writes" "${t[save_fs]}" "${t[save_tmpfs]}" 0.8
row "restore ${mib} MiB in 8 KiB reads" "${t[restore_fs]}" "${t[restore_tmpfs]}" 0.9
row "save ${mib} MiB in 1 MiB writes" "${t[big_fs]}" "${t[big_tmpfs]}" ""
row "set 3000 prefix tokens + token_count" "${t[set_fs]}" "${t[set_tmpfs]}" ""
awk -v s="${t[set_fs]}" -v w="${t[save_fs]}" 'BEGIN {
  printf "attributes on the published %s entry: %.1f ms, %.0f%% of its save (no payload copy)\n",
         "kvcachefs", s / 1e6, 100 * s / w }'
