#!/usr/bin/env bash
# Soak: processes through the library and through a kvcachefs mount put and read one
# pool while writers, readers and the daemon are SIGKILLed at random and restarted.
# Not part of CI. Uses the binaries in build/ (BUILD_DIR overrides).
#
#   scripts/soak.sh [-d SECONDS] [-w API_WRITERS] [-r API_READERS] [-W FS_WRITERS]
#                   [-R FS_READERS] [-k KILL_INTERVAL_SECONDS]
#
# Prints puts, gets, kills, corrupt reads (self-checking payloads), lost published
# entries (ledger vs pool at the end), wedges (an operation over 1 s, or a process
# that did not die within 1 s of SIGKILL / exit within 2 s of SIGTERM; the kernel
# stacks of every thread of such a process go to stderr), the longest time from
# SIGKILL to exit, leaked segments and fds, and the daemon's RSS at start and end.
# Exits 1 when any of corrupt, lost or wedges is non-zero. Everything it made (mount,
# pool, temp dir) is removed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
duration=600 api_writers=3 api_readers=3 fs_writers=2 fs_readers=2 kill_every=1.0
while getopts "d:w:r:W:R:k:" opt; do
  case $opt in
    d) duration=$OPTARG ;; w) api_writers=$OPTARG ;; r) api_readers=$OPTARG ;;
    W) fs_writers=$OPTARG ;; R) fs_readers=$OPTARG ;; k) kill_every=$OPTARG ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
worker=$build/tests/soak/soak_worker
daemon_bin=$build/fs/kvcachefs
cortex=$build/cli/cortex
for b in "$worker" "$daemon_bin" "$cortex"; do
  [ -x "$b" ] || { echo "missing $b (build first: scripts/build.sh)" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/kvc-soak-XXXXXX)
mnt=$dir/mnt
mkdir -p "$dir/stats" "$dir/ledger" "$dir/log" "$mnt"
export CORTEX_HOME=$dir/home CORTEX_SHM_PREFIX=kvsoak_$$_
pool=soak
writers=$((api_writers + fs_writers))
declare -A role=()   # pid -> api-writer:N | api-reader | fs-writer:N | fs-reader
daemon=0
kills_writer=0 kills_reader=0 kills_daemon=0 wedges_kill=0 daemon_restarts=0
exit_ms_daemon=0 exit_ms_worker=0  # longest time from SIGKILL to exit
rss_start="" fds_start="" rss_max=0

cleanup() {
  for pid in "${!role[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  [ "$daemon" -gt 0 ] && kill -KILL "$daemon" 2>/dev/null
  wait 2>/dev/null
  fusermount3 -u -z "$mnt" 2>/dev/null
  "$cortex" cache destroy "$pool" >/dev/null 2>&1
  rm -f /dev/shm/"$CORTEX_SHM_PREFIX"* /dev/shm/.kvc-creating-"$CORTEX_SHM_PREFIX"* 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fds_of() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

start_daemon() {
  fusermount3 -u -z "$mnt" 2>/dev/null
  "$daemon_bin" "$mnt" -f -o "home=$CORTEX_HOME" >>"$dir/log/daemon" 2>&1 &
  daemon=$!
  for _ in $(seq 500); do
    grep " $mnt " /proc/self/mountinfo | grep -q fuse.kvcachefs && stat -f "$mnt" >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  echo "kvcachefs did not mount" >&2
  return 1
}

# spawn ROLE: starts one worker of that role (api-writer:N etc.).
spawn() {
  local r=$1 kind=${1%%:*} n=${1#*:} pid
  case $kind in
    api-writer) "$worker" api-writer "$dir" "$pool" "$n" 2>>"$dir/log/workers" & ;;
    fs-writer) "$worker" fs-writer "$dir" "$mnt" "$pool" "$n" 2>>"$dir/log/workers" & ;;
    api-reader) "$worker" api-reader "$dir" "$pool" "$writers" 2>>"$dir/log/workers" & ;;
    fs-reader) "$worker" fs-reader "$dir" "$mnt" "$pool" "$writers" 2>>"$dir/log/workers" & ;;
  esac
  pid=$!
  role[$pid]=$r
}

# One line per thread of pid: tid, comm, state and kernel stack (innermost first).
thread_stacks() {
  local pid=$1 task
  for task in /proc/"$pid"/task/*; do
    [ -e "$task" ] || continue
    printf '  thread %s (%s) %s: %s\n' "${task##*/}" "$(cat "$task/comm" 2>/dev/null)" \
      "$(awk '{print $3}' "$task/stat" 2>/dev/null)" \
      "$(sed 's/^\[<0>\] //; s/+0x.*//' "$task/stack" 2>/dev/null | tr '\n' ' ')"
  done
}

# The processes of the soak in uninterruptible sleep (D), with their threads' stacks.
blocked_stacks() {
  local pid
  for pid in "${!role[@]}"; do
    grep -q ' D$' <(awk '{print $1, $3}' /proc/"$pid"/task/*/stat 2>/dev/null) || continue
    echo " ${role[$pid]} pid $pid has a thread in D:"
    thread_stacks "$pid"
  done
}

# True while a thread of pid has not exited (a zombie leader whose other threads still
# run holds the process's files, /dev/fuse among them). Builtins only: the loop below
# must not itself take the time it measures.
alive() {
  local task f
  for task in /proc/"$1"/task/*; do
    read -r -a f 2>/dev/null <"$task/stat" || continue
    [ "${f[2]}" != Z ] && [ "${f[2]}" != X ] && return 0
  done
  return 1
}

# Sets mono_us to the time since boot in microseconds (10 ms steps), a clock that never
# steps: the wall clock of a VM can jump by seconds, either way, when it is corrected,
# and an interval measured on it reads a process that exited in 100 ms as a wedge.
# Builtins only, without a subshell.
mono() {
  local up _
  read -r up _ </proc/uptime
  mono_us=$((10#${up/./} * 10000))
}

# Keeps the longest time from SIGKILL to exit, for the daemon and for workers.
note_exit_time() {
  alive "$1" && return
  mono
  local ms=$(((mono_us - $2) / 1000))
  if [ "$1" = "$daemon" ]; then
    ((ms > exit_ms_daemon)) && exit_ms_daemon=$ms
  else
    ((ms > exit_ms_worker)) && exit_ms_worker=$ms
  fi
}

# SIGKILLs pid and waits up to 1 s for it to exit (every thread gone or a zombie); a
# process still alive then is a wedge, reported with every thread's kernel stack taken
# at that moment (which thread holds the process, and where), the stacks of the soak's
# processes blocked in the kernel then, and how long the process took to go in the end
# (given up after 10 s, with the stacks again). Times are as seen by this script, which
# polls every 5 ms and shares the CPUs: an upper bound.
kill_wait() {
  local pid=$1 t0 stacks blocked
  mono
  t0=$mono_us
  kill -KILL "$pid" 2>/dev/null
  while alive "$pid" && mono && ((mono_us - t0 < 1000000)); do sleep 0.005; done
  if alive "$pid"; then
    stacks=$(thread_stacks "$pid") blocked=$(blocked_stacks)
    wedges_kill=$((wedges_kill + 1))
    printf 'wedge: pid %s (%s) still alive 1 s after SIGKILL; its threads:\n%s\n%s\n' \
      "$pid" "${role[$pid]:-daemon}" "$stacks" "$blocked" >&2
    while alive "$pid" && mono && ((mono_us - t0 < 10000000)); do sleep 0.01; done
    if alive "$pid"; then
      printf 'wedge: pid %s still alive 10 s after SIGKILL:\n%s\n' "$pid" \
        "$(thread_stacks "$pid")" >&2
      return
    fi
    mono
    echo "wedge: pid $pid gone $(((mono_us - t0) / 1000)) ms after SIGKILL" >&2
  fi
  note_exit_time "$pid" "$t0"
  wait "$pid" 2>/dev/null
}

# A pool big enough that nothing is ever evicted (lost entries are then real losses).
"$cortex" cache create "$pool" --size 128M --max-sequences 4096 >/dev/null || exit 1
segments_before=$(ls /dev/shm | grep -c "^${CORTEX_SHM_PREFIX}")
start_daemon || exit 1
sleep 1
rss_start=$(rss_of "$daemon") fds_start=$(fds_of "$daemon")
fds_last_start=$fds_start

w=0
for _ in $(seq "$api_writers"); do spawn "api-writer:$w"; w=$((w + 1)); done
for _ in $(seq "$fs_writers"); do spawn "fs-writer:$w"; w=$((w + 1)); done
for _ in $(seq "$api_readers"); do spawn "api-reader:0"; done
for _ in $(seq "$fs_readers"); do spawn "fs-reader:0"; done

echo "soak: ${duration}s, $api_writers+$fs_writers writers, $api_readers+$fs_readers readers (library+mount), a kill every ${kill_every}s, in $dir"
end=$((SECONDS + duration))
tick=0
while ((SECONDS < end)); do
  sleep "$kill_every"
  tick=$((tick + 1))
  if ((tick % 10 == 0)); then
    # The daemon, every tenth kill; the mount is taken down and mounted again.
    r=$(rss_of "$daemon"); [ -n "$r" ] && ((r > rss_max)) && rss_max=$r
    kill_wait "$daemon"
    kills_daemon=$((kills_daemon + 1))
    start_daemon || break
    daemon_restarts=$((daemon_restarts + 1))
    sleep 0.2
    fds_last_start=$(fds_of "$daemon")
    continue
  fi
  pids=("${!role[@]}")
  victim=${pids[RANDOM % ${#pids[@]}]}
  r=${role[$victim]}
  kill_wait "$victim"
  unset "role[$victim]"
  case $r in *writer*) kills_writer=$((kills_writer + 1)) ;; *) kills_reader=$((kills_reader + 1)) ;; esac
  spawn "$r"
done

# Stop: SIGTERM, then 2 s to finish the operation in progress.
rss_end=$(rss_of "$daemon") fds_end=$(fds_of "$daemon")
((rss_end > rss_max)) && rss_max=$rss_end
for pid in "${!role[@]}"; do kill -TERM "$pid" 2>/dev/null; done
sleep 2
wedges_stop=0
for pid in "${!role[@]}"; do
  if [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]; then
    wedges_stop=$((wedges_stop + 1))
    echo "wedge: ${role[$pid]} pid $pid did not stop within 2 s" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
done
wait "${!role[@]}" 2>/dev/null
role=()

# Sum the counters of every worker incarnation.
read -r puts put_errors gets misses read_errors corrupt wedges_op max_op_us < <(
  python3 - "$dir/stats" <<'PY'
import os, struct, sys
tot = [0] * 9
for f in os.listdir(sys.argv[1]):
    b = open(os.path.join(sys.argv[1], f), "rb").read(72)
    if len(b) < 72: continue
    v = struct.unpack("<9Q", b)
    for i in range(7): tot[i] += v[i]
    tot[7] = max(tot[7], v[7])
print(*tot[:8])
PY
)
verify=$("$worker" verify "$dir" "$pool" "$writers" 2>>"$dir/log/verify")
read -r _ lost _ corrupt_rest _ checked <<<"$verify"

# Leaks: segments beyond the pool's own, and the daemon's fds over its life.
segments_live=$(ls /dev/shm | grep -c "^${CORTEX_SHM_PREFIX}")
creating=$(ls -a /dev/shm | grep -c "^\.kvc-creating" || true)
kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=0
fusermount3 -u -z "$mnt" 2>/dev/null
"$cortex" cache destroy "$pool" >/dev/null 2>&1
segments_after=$(ls /dev/shm | grep -c "^${CORTEX_SHM_PREFIX}")

wedges=$((wedges_op + wedges_kill + wedges_stop))
kills=$((kills_writer + kills_reader + kills_daemon))
cat <<REPORT
soak: ${duration} s, $((api_writers + fs_writers)) writers, $((api_readers + fs_readers)) readers, pool $pool
puts:              $puts ok, $put_errors failed (failures while the daemon restarts are expected)
gets:              $gets hits, $misses misses, $read_errors errors
kills:             $kills ($kills_writer writers, $kills_reader readers, $kills_daemon daemon; $daemon_restarts daemon restarts)
exit after SIGKILL: longest $exit_ms_daemon ms (daemon), $exit_ms_worker ms (workers)
corrupt reads:     $corrupt (plus $corrupt_rest corrupt at rest at the end)
lost published:    $lost of $checked entries with an acknowledged put
wedges over 1 s:   $wedges ($wedges_op slow operations, longest $((max_op_us / 1000)) ms; $wedges_kill unkillable; $wedges_stop did not stop)
leaked segments:   $((segments_after)) after destroy (segments while running: $segments_live, expected $segments_before); $creating .kvc-creating files in /dev/shm
daemon fds:        $fds_start at start; last incarnation $fds_last_start after mounting, $fds_end at end
daemon RSS:        ${rss_start} kB at start, ${rss_end} kB at end, ${rss_max} kB largest seen
REPORT
grep -c . "$dir/log/workers" >/dev/null 2>&1 && grep -m5 -E "corrupt|lost" "$dir/log/workers" "$dir/log/verify" 2>/dev/null
((corrupt + corrupt_rest + lost + wedges == 0))
