#!/usr/bin/env bash
# The mount workloads of kvcachefs beside their two references, measured in the same
# run: null_fuse (the do-nothing FUSE daemon of bench/, mounted as kvcachefs is: what
# any FUSE filesystem reaches here) and tmpfs. Each workload runs RUNS times on each
# of the three, interleaved, and the table shows medians and the ratios
# kvcachefs / reference (above 1: kvcachefs is faster).
#
#   create + write SMALL_N files of 4 KiB          files/s
#   cold read of those files (page cache dropped)   files/s
#   ls -l of the SMALL_N entries (warm)             ms
#   rm of the SMALL_N files                         ms
#   cold read of BIG_N files of 2 MiB, 1 and 4 readers   GB/s, also against null_fuse
#                                                   serving distinct bytes from memory
#                                                   (-o distinct: no cache-resident source)
#   ls -l of LIST_N entries (warm)                  ms, and its cost per entry against
#                                                   the SMALL_N listing
#   daemon anonymous memory after MEM_LISTINGS more listings of LIST_N entries
#
# Needs root (drop_caches, mounts). Counts can be made small for a quick check:
#   BUILD_DIR=build RUNS=5 bench/mount_bench.sh                       # the full table
#   RUNS=1 SMALL_N=200 BIG_N=8 LIST_N=1000 MEM_LISTINGS=2 bench/mount_bench.sh   # quick
#   KVCACHEFS_OPTS=name_timeout=1 bench/mount_bench.sh     # with names kept for 1 s
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
runs=${RUNS:-5}
small_n=${SMALL_N:-10000}
small_kb=${SMALL_KB:-4}
big_n=${BIG_N:-1000}
big_mb=${BIG_MB:-2}
list_n=${LIST_N:-100000}
mem_listings=${MEM_LISTINGS:-20}
null_timeout=${NULL_TIMEOUT:-1.0}
kvcachefs=${KVCACHEFS:-$build/fs/kvcachefs}  # another build of it may be compared
# Extra kvcachefs options, space-separated, e.g. KVCACHEFS_OPTS=name_timeout=1
KVCACHEFS_OPTS=${KVCACHEFS_OPTS:-}
null_fuse=$build/bench/null_fuse
io=$build/bench/mount_io
cortex=$build/cli/cortex
for b in "$kvcachefs" "$null_fuse" "$io" "$cortex"; do
  [ -x "$b" ] || { echo "missing $b (build first)" >&2; exit 1; }
done
# 77: skipped (the smoke test of the suite counts it so where it cannot run).
[ "$(id -u)" = 0 ] && [ -c /dev/fuse ] || { echo "needs root and /dev/fuse (drop_caches, mounts)" >&2; exit 77; }

work=$(mktemp -d /tmp/mount-bench.XXXXXX)
tmpfs=$(mktemp -d /dev/shm/mount-bench.XXXXXX)
export CORTEX_HOME=$work/home
export CORTEX_SHM_PREFIX=kvmb_$$_
mkdir -p "$work/kv" "$work/null" "$work/nulld" "$CORTEX_HOME"
kv_pid= null_pid= nulld_pid=
cleanup() {
  for m in "$work/kv" "$work/null" "$work/nulld"; do
    grep -q " $m " /proc/self/mountinfo && fusermount3 -u -z "$m" 2>/dev/null
  done
  for p in $kv_pid $null_pid $nulld_pid; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$tmpfs"
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"*
}
trap cleanup EXIT

wait_mount() {  # mountpoint fstype
  for _ in $(seq 500); do
    grep -q " $1 .*fuse.$2" /proc/self/mountinfo && stat -f "$1" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "mount of $1 did not appear" >&2
  exit 1
}
# The pools of kvcachefs: b for the workloads, l for the large listing (mkdir's
# pools hold 10,000 entries at most).
"$cortex" cache create b --size $((big_n * big_mb * 5 / 4 + small_n * small_kb / 512 + 64))M \
  --max-sequences $((small_n > big_n ? small_n : big_n)) > /dev/null
"$cortex" cache create l --size $((list_n * 4 / 1024 + 64))M --max-sequences "$list_n" > /dev/null
kv_opts=()
for o in $KVCACHEFS_OPTS; do kv_opts+=(-o "$o"); done
"$kvcachefs" "$work/kv" -f -o home="$CORTEX_HOME" "${kv_opts[@]}" &
kv_pid=$!
"$null_fuse" "$work/null" -f -o timeout="$null_timeout" &
null_pid=$!
# The same daemon answering reads from as many distinct bytes as the big files hold.
"$null_fuse" "$work/nulld" -f -o timeout="$null_timeout" -o distinct=$((big_n * big_mb + 2)) &
nulld_pid=$!
wait_mount "$work/kv" kvcachefs
wait_mount "$work/null" null_fuse
wait_mount "$work/nulld" null_fuse
declare -A dir=([kv]=$work/kv [null]=$work/null [nulld]=$work/nulld [tmpfs]=$tmpfs)
targets=(kv null tmpfs)
for t in null nulld tmpfs; do mkdir "${dir[$t]}/b" "${dir[$t]}/l"; done

now() { date +%s%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
io_ns() { "$io" "$@" | awk '{print $1}'; }
ls_ns() { local t0; t0=$(now); ls -l "$1" > /dev/null; echo $(($(now) - t0)); }
rm_ns() {  # dir count: unlinks 1..count
  local t0; t0=$(now)
  (cd "$1" && seq "$2" | xargs rm -f)
  echo $(($(now) - t0))
}
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }

declare -A samples
add() { samples[$1]+="$2 "; }  # key ns
big_reads() {  # target: writes the big files, reads them cold with 1 and 4 readers
  local d=${dir[$1]}/b
  "$io" write "$d" "$big_n" $((big_mb << 20)) > /dev/null
  drop
  add "big1.$1" "$(io_ns read "$d" "$big_n" 1)"
  drop
  add "big4.$1" "$(io_ns read "$d" "$big_n" 4)"
  rm_ns "$d" "$big_n" > /dev/null
}
for r in $(seq "$runs"); do
  for t in "${targets[@]}"; do
    d=${dir[$t]}/b
    add "write.$t" "$(io_ns write "$d" "$small_n" $((small_kb * 1024)))"
    drop
    add "read.$t" "$(io_ns read "$d" "$small_n" 1)"
    ls -l "$d" > /dev/null
    add "ls.$t" "$(ls_ns "$d")"
    add "rm.$t" "$(rm_ns "$d" "$small_n")"
    big_reads "$t"
  done
  big_reads nulld
  echo "run $r of $runs done" >&2
done

# The large listing: filled once per target (1-byte files), then listed RUNS times.
for t in "${targets[@]}"; do
  "$io" write "${dir[$t]}/l" "$list_n" 1 > /dev/null
  ls -l "${dir[$t]}/l" > /dev/null
done
for r in $(seq "$runs"); do
  for t in "${targets[@]}"; do add "lsbig.$t" "$(ls_ns "${dir[$t]}/l")"; done
done
mem_before=$(anon_kb "$kv_pid")
for _ in $(seq "$mem_listings"); do ls -l "$work/kv/l" > /dev/null; done
mem_after=$(anon_kb "$kv_pid")

med() { printf '%s\n' ${samples[$1]} | median; }
# label, key, unit, goal ratio against null_fuse or tmpfs ("-": none), which
row() {
  local kv null tmp
  kv=$(med "$2.kv"); null=$(med "$2.null"); tmp=$(med "$2.tmpfs")
  awk -v l="$1" -v kv="$kv" -v nu="$null" -v tm="$tmp" -v u="$3" -v g="$4" -v gw="$5" \
      -v files="${6:-0}" -v bytes="${7:-0}" 'function show(ns) {
        if (u == "files/s") return sprintf("%.1fk/s", files / (ns / 1e9) / 1e3)
        if (u == "GB/s") return sprintf("%.2f GB/s", bytes / (ns / 1e9) / 1e9)
        return sprintf("%.0f ms", ns / 1e6) }
      BEGIN {
        rn = nu / kv; rt = tm / kv
        verdict = "-"
        if (g != "-") { r = (gw == "tmpfs" ? rt : rn); verdict = sprintf(">= %s x %s: %s", g, gw, (r >= g ? "met" : "NOT met")) }
        printf "%-38s %11s %11s %11s %7.2fx %7.2fx  %s\n", l, show(kv), show(nu), show(tm), rn, rt, verdict
      }'
}
small_bytes=$((small_n * small_kb * 1024))
big_bytes=$((big_n * (big_mb << 20)))
echo
echo "median of $runs runs; ratios are kvcachefs / reference (time ratio inverted: above 1 = kvcachefs faster)"
printf '%-38s %11s %11s %11s %8s %8s  %s\n' workload kvcachefs null_fuse tmpfs "/null" "/tmpfs" goal
row "create+write $small_n x ${small_kb} KiB" write files/s 0.8 null "$small_n" 0
row "cold read $small_n x ${small_kb} KiB" read files/s 0.8 null "$small_n" 0
row "cold read $big_n x ${big_mb} MiB, 1 reader" big1 GB/s 0.8 null 0 "$big_bytes"
row "cold read $big_n x ${big_mb} MiB, 4 readers" big4 GB/s 0.8 null 0 "$big_bytes"
for k in big1 big4; do
  readers=$([ $k = big1 ] && echo "1 reader" || echo "4 readers")
  awk -v l="cold read $big_n x ${big_mb} MiB, $readers" -v kv="$(med $k.kv)" -v nd="$(med $k.nulld)" \
      -v bytes="$big_bytes" 'BEGIN {
    printf "%-38s %11s %11s %11s %7.2fx %8s  (null_fuse -o distinct: reads from distinct memory)\n", l,
           sprintf("%.2f GB/s", bytes / kv), sprintf("%.2f GB/s", bytes / nd), "-", nd / kv, "-" }'
done
row "ls -l of $small_n entries" ls ms 0.8 tmpfs
row "ls -l of $list_n entries" lsbig ms 0.8 tmpfs
row "rm of $small_n files" rm ms 0.8 null
awk -v a="$(med ls.kv)" -v b="$(med lsbig.kv)" -v n1="$small_n" -v n2="$list_n" 'BEGIN {
  x = b / a; lim = 1.2 * n2 / n1
  printf "kvcachefs ls -l %d / %d entries: %.1fx the time (linear within 1.2x: <= %.1fx): %s\n",
         n2, n1, x, lim, (x <= lim ? "met" : "NOT met") }'
awk -v a="$mem_before" -v b="$mem_after" -v k="$mem_listings" -v n="$list_n" 'BEGIN {
  d = (b - a) / 1024
  printf "kvcachefs anonymous memory: %.1f MB before, %.1f MB after %d more listings of %d (%+.1f MB; goal within 50 MB): %s\n",
         a / 1024, b / 1024, k, n, d, (d <= 50 ? "met" : "NOT met") }'
