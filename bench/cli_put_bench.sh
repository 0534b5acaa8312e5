#!/usr/bin/env bash
# `cortex cache put` of a large file beside `cp` of the same file into /dev/shm (tmpfs),
# and `cortex cache get -o` beside `cp` back out: wall time (median of RUNS runs, each a
# fresh process) and peak resident memory (ru_maxrss, from GNU time or python3's
# resource module). ratio = cp time / cortex time; the goal for put is >= 0.8x of cp and
# a peak memory far below the payload.
#
#   BUILD_DIR=build RUNS=7 SIZE_MB=256 bench/cli_put_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
runs=${RUNS:-7}
size_mb=${SIZE_MB:-256}
cortex=$build/cli/cortex
[ -x "$cortex" ] || { echo "missing $cortex (build first)" >&2; exit 1; }

work=$(mktemp -d /tmp/kvcache-put.XXXXXX)
export CORTEX_HOME=$work/home CORTEX_SHM_PREFIX=kvputbench_$$_
cleanup() {
  rm -rf "$work"
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"*
}
trap cleanup EXIT
head -c "${size_mb}M" /dev/urandom >"$work/in"
"$cortex" cache create bench --size "$((size_mb * 2 + 16))M" >/dev/null

# Runs the command RUNS times; prints "median_ns max_rss_kb". Each run is its own
# process, measured by python3 around fork+exec (wait4 gives the child's peak memory).
measure() {
  /usr/bin/python3 - "$runs" "$@" <<'PY'
import os, statistics, sys, time
runs, argv = int(sys.argv[1]), sys.argv[2:]
times, rss = [], []
for _ in range(runs):
    t0 = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    times.append(time.perf_counter_ns() - t0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed")
    rss.append(usage.ru_maxrss)
print(int(statistics.median(times)), max(rss))
PY
}
read -r put_ns put_rss < <(measure "$cortex" cache put bench 1 --file "$work/in")
read -r cpin_ns cpin_rss < <(measure /bin/cp "$work/in" "/dev/shm/${CORTEX_SHM_PREFIX}copy")
read -r get_ns get_rss < <(measure "$cortex" cache get bench 1 -o "$work/out")
read -r cpout_ns cpout_rss < <(measure /bin/cp "/dev/shm/${CORTEX_SHM_PREFIX}copy" "$work/out2")
cmp -s "$work/in" "$work/out" || { echo "get returned other bytes than put stored" >&2; exit 1; }

row() {  # label, cortex ns, cortex KiB, cp ns, cp KiB, goal
  awk -v l="$1" -v f="$2" -v fr="$3" -v c="$4" -v cr="$5" -v g="$6" 'BEGIN {
    r = c / f
    verdict = g == "" ? "" : (r >= g ? "ok" : "BELOW")
    printf "%-28s %9.1f ms %8.1f MiB %9.1f ms %8.1f MiB %7.2fx  %s\n",
           l, f / 1e6, fr / 1024, c / 1e6, cr / 1024, r, verdict
  }'
}
printf '%-28s %12s %12s %12s %12s %8s\n' "${size_mb} MiB (median of $runs)" cortex "peak mem" cp "peak mem" ratio
row "put (cp into /dev/shm)" "$put_ns" "$put_rss" "$cpin_ns" "$cpin_rss" 0.8
row "get -o (cp out of /dev/shm)" "$get_ns" "$get_rss" "$cpout_ns" "$cpout_rss" ""
