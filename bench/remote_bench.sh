#!/usr/bin/env bash
# The remote tier's ratios (goals: local hits within 5% of a pool without a remote,
# 4 KiB write-through puts >= 0.9x, warming 2 MiB entries >= 0.8x of redis-benchmark's
# GET of 2 MiB values), against a redis-server of its own on a unix socket.
#   BUILD_DIR=build [RUNS=5] [ROUNDS=11] [WARM_ROUNDS=3] [GETS=300] bench/remote_bench.sh
# Puts and hits: one run of ROUNDS alternating rounds. Warming: RUNS runs, each a run of
# remote_bench (WARM_ROUNDS rounds) then one of redis-benchmark (GETS GETs of one 2 MiB
# value, one client, as the warming loop is one caller), so both see the same machine.
set -euo pipefail
build=${BUILD_DIR:-build}
runs=${RUNS:-5}
rounds=${ROUNDS:-11}
warm_rounds=${WARM_ROUNDS:-3}
gets=${GETS:-300}
dir=$(mktemp -d /tmp/kvc-remote-bench-redis-XXXXXX)
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save "" --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log" --daemonize no &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
"$build/bench/remote_bench" "unix://$sock" --only puts,hits --rounds "$rounds"
redis-benchmark -s "$sock" -t set -d 2097152 -n 1 -c 1 -q >/dev/null 2>&1
: >"$dir/warm"
for _ in $(seq "$runs"); do
  out=$("$build/bench/remote_bench" "unix://$sock" --only warm --rounds "$warm_rounds")
  get=$(echo "$out" | awk '/^warm_2m_get_per_s/ {print $2}')
  view=$(echo "$out" | awk '/^warm_2m_view_per_s/ {print $2}')
  rb=$(redis-benchmark -s "$sock" -t get -d 2097152 -n "$gets" -c 1 -q 2>/dev/null |
         tr '\r' '\n' | awk '/^GET:/ {print $2}' | tail -1)
  echo "$get $view $rb" >>"$dir/warm"
done
# Median and range of each column, and the ratio of the medians with the range of the
# per-run ratios.
awk '
  function med(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo = a[1]; hi = a[n]; return a[int((n + 1) / 2)]
  }
  { n++; g[n] = $1; v[n] = $2; r[n] = $3; gr[n] = $1 / $3; vr[n] = $2 / $3 }
  END {
    mr = med(r, n); rlo = lo; rhi = hi
    mg = med(g, n); glo = lo; ghi = hi; med(gr, n); grlo = lo; grhi = hi
    mv = med(v, n); vlo = lo; vhi = hi; med(vr, n); vrlo = lo; vrhi = hi
    printf "| workload (%d runs, median (range)) | redis-benchmark GET 2 MiB | warmed | ratio (per-run range) | goal |\n", n
    printf "|---|---|---|---|---|\n"
    printf "| 2 MiB entries warmed from Redis, get (copy) | %.1f/s (%.1f-%.1f) | %.1f/s (%.1f-%.1f) | %.3fx (%.3f-%.3f) | >= 0.8x |\n", mr, rlo, rhi, mg, glo, ghi, mg / mr, grlo, grhi
    printf "| 2 MiB entries warmed from Redis, view | %.1f/s (%.1f-%.1f) | %.1f/s (%.1f-%.1f) | %.3fx (%.3f-%.3f) | >= 0.8x |\n", mr, rlo, rhi, mv, vlo, vhi, mv / mr, vrlo, vrhi
  }' "$dir/warm"
