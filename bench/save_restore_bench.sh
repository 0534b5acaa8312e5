#!/usr/bin/env bash
# An engine's save and restore through kvcachefs against tmpfs and against the
# do-nothing FUSE daemon (bench/null_fuse): a 12 MiB state written in 8 KiB pieces (as
# stdio does) and read back in 8 KiB pieces, then the prefix tokens and token count set
# on the published entry (in place: no payload copy), timed beside the save, and the
# same save in 1 MiB writes. Medians of RUNS runs; ratio = reference time / kvcachefs
# time. Needs python3.
#
# The do-nothing daemon is mounted three ways, to show what bounds a FUSE save here:
#   as kvcachefs        the same options as kvcachefs (every write() a round trip);
#   + writeback cache   the kernel buffers writes in its page cache and sends them in
#                       1 MiB pieces at close (kvcachefs does not: a save that cannot fit
#                       must fail at write(), not at close(), which engines ignore);
#   + no getxattr       as above, and without xattrs, so the kernel stops asking for
#                       security.capability before every buffered write (kvcachefs serves
#                       user.kvcache.* attributes, so it cannot do without them).
#
#   BUILD_DIR=build RUNS=9 bench/save_restore_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
runs=${RUNS:-9}
size_kb=${SIZE_KB:-12288}
daemon=$build/fs/kvcachefs
null=$build/bench/null_fuse
[ -x "$daemon" ] || { echo "missing $daemon (build first)" >&2; exit 1; }
[ -x "$null" ] || { echo "missing $null (build with KVC_BUILD_BENCH=ON)" >&2; exit 1; }
command -v getfattr >/dev/null || { echo "getfattr missing (package attr)" >&2; exit 1; }

work=$(mktemp -d /tmp/kvcachefs-save.XXXXXX)
tmpfs=$(mktemp -d /dev/shm/kvcachefs-save.XXXXXX)
mnt=$work/mnt
export CORTEX_HOME=$work/home
export CORTEX_SHM_PREFIX=kvsave_$$_
mkdir -p "$mnt" "$CORTEX_HOME" "$work/null" "$work/null_wb" "$work/null_wb_nox"
pids=()
cleanup() {
  for m in "$mnt" "$work/null" "$work/null_wb" "$work/null_wb_nox"; do
    if grep -q " $m " /proc/self/mountinfo; then fusermount3 -u -z "$m" 2>/dev/null || true; fi
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$tmpfs"
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"*
}
trap cleanup EXIT

wait_mounted() {  # mountpoint, fs type
  for _ in $(seq 500); do
    grep -q " $1 .*fuse.$2" /proc/self/mountinfo && stat -f "$1" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "$1 did not mount" >&2
  exit 1
}
"$daemon" "$mnt" -f -o home="$CORTEX_HOME" -o pool_size=256M &
pids+=($!)
"$null" "$work/null" -f &
pids+=($!)
"$null" "$work/null_wb" -f -o writeback &
pids+=($!)
"$null" "$work/null_wb_nox" -f -o writeback -o noxattr &
pids+=($!)
wait_mounted "$mnt" kvcachefs
for m in null null_wb null_wb_nox; do
  wait_mounted "$work/$m" null_fuse
  mkdir "$work/$m/engine"
done
mkdir "$mnt/engine"

# Timed inside one process (python3), so that process start-up is not counted: each save
# is open + 8 KiB os.write()s + close, each restore open + 8 KiB os.read()s, each
# attribute set two os.setxattr() calls, each large save open + 1 MiB os.write()s + close.
# kvcachefs and tmpfs keep the bytes, so what they read back is checked and they get
# every test; the do-nothing daemon keeps none, so it gets the save and restore only.
# Prints one line per directory: name and the medians in ns (save restore set big
# again, "-" for a test not run), "again" being a second restore of the same entry.
declare -A t
while read -r name save restore set big again; do
  t[save_$name]=$save t[restore_$name]=$restore t[set_$name]=$set t[big_$name]=$big
  t[again_$name]=$again
done < <(
python3 - "$runs" "$size_kb" "fs=$mnt/engine" "tmpfs=$tmpfs" "null=$work/null/engine" \
  "null_wb=$work/null_wb/engine" "null_wb_nox=$work/null_wb_nox/engine" <<'PY'
import os, statistics, sys, time
runs, size = int(sys.argv[1]), int(sys.argv[2]) * 1024
data = os.urandom(size)
view = memoryview(data)
tokens = ",".join(str(t) for t in range(1, 3001)).encode()
for target in sys.argv[3:]:
    name, d = target.split("=", 1)
    full = name in ("fs", "tmpfs")
    saves, restores, sets, bigs, agains = [], [], [], [], []
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
        saves.append(t1 - t0); restores.append(t2 - t1)
        if full:
            # Restored again: the kernel keeps the pages of an entry that did not change.
            t1 = time.perf_counter_ns()
            fd = os.open(path, os.O_RDONLY)
            while os.read(fd, 8192):
                pass
            os.close(fd)
            agains.append(time.perf_counter_ns() - t1)
        if len(got) != size:
            sys.exit(f"{path}: read back {len(got)} bytes of {size}")
        if not full:
            continue
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
        sets.append(t3 - t2); bigs.append(t4 - t3)
    med = lambda v: str(int(statistics.median(v))) if v else "-"
    print(name, med(saves), med(restores), med(sets), med(bigs), med(agains))
PY
)
# The attributes landed on the entry.
[ "$(getfattr --absolute-names --only-values -n user.kvcache.token_count "$mnt/engine/1")" = 3000 ]

row() {  # label, fs ns, reference ns, goal ("" for none)
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
row "restore again (pages kept by the kernel)" "${t[again_fs]}" "${t[again_tmpfs]}" ""
row "save ${mib} MiB in 1 MiB writes" "${t[big_fs]}" "${t[big_tmpfs]}" ""
row "set 3000 prefix tokens + token_count" "${t[set_fs]}" "${t[set_tmpfs]}" ""
awk -v s="${t[set_fs]}" -v w="${t[save_fs]}" 'BEGIN {
  printf "attributes on the published %s entry: %.1f ms, %.0f%% of its save (no payload copy)\n",
         "kvcachefs", s / 1e6, 100 * s / w }'

echo
echo "what a FUSE daemon that does nothing reaches here (ratio = its time / kvcachefs time;"
echo "its own ratio to tmpfs after the slash)"
printf '%-46s %13s %13s %8s   %s\n' "test (median of $runs)" kvcachefs "do-nothing" ratio "do-nothing / tmpfs"
ceiling() {  # label, fs ns, null ns, tmpfs ns
  awk -v l="$1" -v f="$2" -v n="$3" -v t="$4" 'BEGIN {
    printf "%-46s %10.1f ms %10.1f ms %7.2fx   %.2fx\n", l, f / 1e6, n / 1e6, n / f, t / n
  }'
}
for m in "null:as kvcachefs" "null_wb:+ writeback cache" "null_wb_nox:+ writeback, no getxattr"; do
  key=${m%%:*} label=${m#*:}
  ceiling "save, do-nothing $label" "${t[save_fs]}" "${t[save_$key]}" "${t[save_tmpfs]}"
done
for m in "null:as kvcachefs" "null_wb:+ writeback cache"; do
  key=${m%%:*} label=${m#*:}
  ceiling "restore, do-nothing $label" "${t[restore_fs]}" "${t[restore_$key]}" "${t[restore_tmpfs]}"
done
