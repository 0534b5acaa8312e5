#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages), builds, and runs every test: what CI runs.
#
#   scripts/test.sh                 every stage below, in order; the first failure stops it
#   scripts/test.sh --quick         the normal build and suite only (local iteration)
#   scripts/test.sh --stage S[,S]   only the named stages (also ones not on by default)
#   extra arguments after -- go to every ctest run (e.g. -- -R Snapshot)
#
# Stages (each its own build directory beside build/, or under BUILD_DIR's parent);
# * marks the default ones:
#   normal* build/       g++ (-Werror in CI), the whole suite
#   asan*   build-asan/  clang (-Werror, -Wthread-safety), ASan+UBSan+LeakSanitizer,
#                        the whole suite
#   tsan*   build-tsan/  clang (-Werror, -Wthread-safety), ThreadSanitizer, the core and
#                        multi-process suites and the mount's (ctest -L 'core|fs': the
#                        daemon serves each mount from 8 threads)
#   fuzz*   build-fuzz/  clang, libFuzzer+ASan+UBSan: each fuzzer for FUZZ_SECONDS (30)
#                        from its seed corpus in tests/fuzz/corpus/<fuzzer>/
#   package* build-package/ prefix /usr, `cpack -G DEB`; installs the .deb into this machine
#                        (apt-get), uses it (tests/install/package_test.sh), removes it
#   clang   build-clang/ clang++ (-Werror, -Wthread-safety), the whole suite, unsanitized.
#                        Not by default: asan compiles and runs everything with the same
#                        clang warnings, so it would only repeat that.
#
# Sanitized runs stop at the first report (-fno-sanitize-recover=all, halt_on_error) and
# every sanitized process, including a kvcachefs daemon or a cortex a test started,
# writes its report to <build>/sanitizer-logs/; any file there fails the stage, so a
# report in a child whose exit status a test ignores is not lost.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# Stages that run by default. A stage joins this list once main passes it; until then
# `--stage NAME` runs it.
default_stages=(normal asan tsan fuzz package)
# Fuzzers run in CI, each for FUZZ_SECONDS with FUZZ_SEED (1: the same inputs on every
# run, so a red CI is repeatable; 0 picks a random seed).
ci_fuzzers=(parse_fuzzer snapshot_fuzzer control_fuzzer xattr_fuzzer segment_fuzzer)
all_fuzzers=(parse_fuzzer snapshot_fuzzer control_fuzzer xattr_fuzzer segment_fuzzer)

stages=("${default_stages[@]}")
ctest_args=()
while (($#)); do
  case "$1" in
    --quick) stages=(normal) ;;
    --stage) IFS=, read -r -a stages <<<"$2"; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    *) ctest_args+=("$1") ;;
  esac
  shift
done

build=${BUILD_DIR:-$root/build}
base=$(dirname "$build")
jobs=$(nproc)
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
# The engine test installs llama.cpp from npm once; sanitized stages reuse that install.
export KVC_ENGINE_NPM_DIR=${KVC_ENGINE_NPM_DIR:-$build/engine-npm}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
summary=()
start_all=$SECONDS

"$root/scripts/deps.sh"

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# configure DIR cmake-args...: (re)configures DIR with clang and the given options.
# Every clang build is -Werror (KVC_WERROR) and checks the thread-safety annotations
# (-Wthread-safety, added for clang by CMakeLists.txt).
configure_clang() {
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DKVC_WERROR=ON -DKVC_BUILD_BENCH=OFF "${launcher[@]}" "$@" \
    >/dev/null
}

# Fails (and prints them) when sanitizer reports were written under $1.
check_sanitizer_logs() {
  local logs=$1
  if compgen -G "$logs/*" >/dev/null; then
    echo "sanitizer reports in $logs:" >&2
    cat "$logs"/* >&2
    return 1
  fi
}

# Exports the sanitizer runtime options for a stage whose reports go to $1.
sanitizer_env() {
  local logs=$1
  rm -rf "$logs" && mkdir -p "$logs"
  local symbolizer
  symbolizer=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
  export ASAN_SYMBOLIZER_PATH=$symbolizer
  # ASan, LSan and UBSan share one log_path in a process (the last one parsed wins), so
  # they name the same one: <logs>/report.<pid>.
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$logs/report"
  export LSAN_OPTIONS="log_path=$logs/report"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/report"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$logs/tsan:external_symbolizer_path=$symbolizer"
}

run_normal() {
  BUILD_DIR=$build "$root/scripts/build.sh" "${launcher[@]}"
  (cd "$build" && ctest --output-on-failure -j"$jobs" --timeout 300 "${ctest_args[@]}")
}

run_clang() {
  local dir=$base/build-clang
  configure_clang "$dir"
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 300 "${ctest_args[@]}")
}

run_asan() {
  local dir=$base/build-asan
  configure_clang "$dir" -DKVC_SANITIZE=address,undefined
  cmake --build "$dir" -j"$jobs"
  (
    sanitizer_env "$dir/sanitizer-logs"
    cd "$dir"
    status=0
    ctest --output-on-failure -j"$jobs" --timeout 600 "${ctest_args[@]}" || status=$?
    check_sanitizer_logs "$dir/sanitizer-logs" || status=1
    exit $status
  )
}

run_tsan() {
  local dir=$base/build-tsan
  configure_clang "$dir" -DKVC_SANITIZE=thread -DKVC_BUILD_FS=ON
  cmake --build "$dir" -j"$jobs" --target tests_core tests_fs kvcachefs cortex
  (
    sanitizer_env "$dir/sanitizer-logs"
    cd "$dir"
    status=0
    ctest --output-on-failure -j"$jobs" --timeout 900 -L 'core|fs' "${ctest_args[@]}" || status=$?
    check_sanitizer_logs "$dir/sanitizer-logs" || status=1
    exit $status
  )
}

run_fuzz() {
  local dir=$base/build-fuzz
  configure_clang "$dir" -DKVC_SANITIZE=address,undefined -DKVC_BUILD_FUZZERS=ON \
    -DKVC_BUILD_TESTS=OFF
  cmake --build "$dir" -j"$jobs" --target fuzzers
  local fuzzers=("${ci_fuzzers[@]}")
  [ -n "${FUZZERS:-}" ] && IFS=, read -r -a fuzzers <<<"$FUZZERS"
  (
    sanitizer_env "$dir/sanitizer-logs"
    # libFuzzer prints the crash itself; the crashing input lands in artifacts/.
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
    export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    status=0
    for f in "${fuzzers[@]}"; do
      local work=$dir/fuzz-run/$f
      rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
      local log=$work/log
      if "$dir/tests/fuzz/$f" -max_total_time="${FUZZ_SECONDS:-30}" -timeout=10 \
          -seed="${FUZZ_SEED:-1}" \
          -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
          "$work/corpus" "$root/tests/fuzz/corpus/$f" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "fuzz: $f: ${runs:-?} runs, no crash"
      else
        echo "fuzz: $f FAILED; crashing inputs in $work/artifacts/:" >&2
        ls -l "$work/artifacts" >&2
        tail -60 "$log" >&2
        status=1
      fi
    done
    exit $status
  )
}

run_package() {
  local dir=$base/build-package
  local werror=OFF; [ "${CI:-}" = "true" ] && werror=ON
  # Release: what ships has no debug information (the static archive is not stripped).
  # -O2 as in the normal stage: g++ 12 at -O3 gives false -Wrestrict errors inside
  # std::string's operator+ (GCC bug 105329).
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVC_WERROR=$werror \
    -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DCMAKE_INSTALL_PREFIX=/usr -DKVC_BUILD_TESTS=OFF -DKVC_BUILD_BENCH=OFF "${launcher[@]}" \
    >/dev/null
  cmake --build "$dir" -j"$jobs"
  rm -f "$dir"/kvcachefs_*.deb
  (cd "$dir" && cpack -G DEB >"$dir/cpack.log" 2>&1) || { cat "$dir/cpack.log"; return 1; }
  bash "$root/tests/install/package_test.sh" "$dir"/kvcachefs_*.deb
}

for stage in "${stages[@]}"; do
  t0=$SECONDS
  echo "==== stage $stage"
  if ! "run_$stage"; then
    echo "==== stage $stage FAILED after $(elapsed $((SECONDS - t0)))" >&2
    exit 1
  fi
  summary+=("$stage $(elapsed $((SECONDS - t0)))")
  echo "==== stage $stage passed in $(elapsed $((SECONDS - t0)))"
done
echo "==== all passed in $(elapsed $((SECONDS - start_all))): ${summary[*]}"
