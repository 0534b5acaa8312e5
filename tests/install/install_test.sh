#!/usr/bin/env bash
# install_test.sh BUILD_DIR CXX: installs the build into a temporary DESTDIR and uses it
# the way an engine and an operator would: a C++ consumer built out of tree through
# pkg-config and through find_package(kvcache), run against a pool of its own; the
# programs, headers, libraries and the Python package where they belong.
set -euo pipefail
build=$1
cxx=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvc_install.XXXXXX")
shm_prefix="kvct_install_$$_"
cleanup() {
  rm -f /dev/shm/"$shm_prefix"* 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
prefix=$(cache_value CMAKE_INSTALL_PREFIX)
libdir=$(cache_value CMAKE_INSTALL_LIBDIR)
pydir=$(cache_value KVC_PYTHON_INSTALL_DIR)
python=$(cache_value Python3_EXECUTABLE)  # the interpreter the module was built for
dest=$tmp/root
root=$dest$prefix

DESTDIR=$dest cmake --install "$build" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }

for f in bin/cortex bin/kvcachefs "$libdir/libkvcache.a" "$libdir/pkgconfig/kvcache.pc" \
         "$libdir/cmake/kvcache/kvcacheConfig.cmake" include/kvcache/manager.h \
         include/kvcache/export.h share/man/man1/cortex-cache.1 share/man/man8/kvcachefs.8; do
  [ -e "$root/$f" ] || fail "not installed: $prefix/$f"
done

# The shared library: versioned, SONAME libkvcache.so.<major>, the dev symlink.
so=$root/$libdir/libkvcache.so
[ -L "$so" ] || fail "libkvcache.so is not the dev symlink"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libkvcache.so.0" ] || fail "SONAME is '$soname', not libkvcache.so.0"
[ -e "$root/$libdir/$soname" ] || fail "$soname not installed"
# Only the public API is exported: every defined dynamic symbol is in namespace kvcache,
# and no internal class (PoolHandle, the segment code) or bundled library (SQLiteCpp).
nm -D --defined-only -C "$so" | awk '{ $1=""; $2=""; print }' | sed 's/^ *//' >"$tmp/syms"
grep -q '^kvcache::Manager::CreatePool' "$tmp/syms" || fail "Manager::CreatePool not exported"
grep -q '^kvcache::PoolConfig::Validate' "$tmp/syms" || fail "PoolConfig::Validate not exported"
if grep -v -E '^(kvcache::|(typeinfo|typeinfo name|vtable) for kvcache::|KVCACHE_0$)' "$tmp/syms" >"$tmp/foreign"; then
  head -20 "$tmp/foreign" >&2
  fail "libkvcache.so exports symbols outside the kvcache namespace"
fi
if grep -E '^(kvcache::(BitmapAllocator|EvictionHeap|LeaseTable|ManagerInternals|MappedSegment|PoolHandle|ProcessTable|SegmentFile|SnapshotReader|SnapshotWriter)::|SQLite::)' \
    "$tmp/syms" >&2; then
  fail "libkvcache.so exports internals"
fi

# The Python package (when built) is where this python3 looks for the prefix.
if [ -n "$pydir" ]; then
[ -e "$root/$pydir/kvcache/__init__.py" ] || fail "not installed: $prefix/$pydir/kvcache"
compgen -G "$root/$pydir/kvcache/_native*.so" >/dev/null || fail "no native Python module"
"$python" - "$prefix" "$pydir" <<'PY' || fail "Python package not on $python's path for $prefix"
import os, site, sys
prefix, pydir = sys.argv[1], sys.argv[2]
want = os.path.normpath(os.path.join(prefix, pydir))
sys.exit(0 if want in [os.path.normpath(p) for p in site.getsitepackages()] else 1)
PY
PYTHONPATH=$root/$pydir "$python" -c 'import kvcache, kvcache._native' || fail "import kvcache"
fi

# The man pages render.
for page in share/man/man1/cortex-cache.1 share/man/man8/kvcachefs.8; do
  out=$(MANWIDTH=80 man -l "$root/$page" 2>"$tmp/man.err") || fail "man -l $page"
  [ ! -s "$tmp/man.err" ] || { cat "$tmp/man.err"; fail "man -l $page warns"; }
  grep -q "^SYNOPSIS" <<<"$out" || fail "$page has no SYNOPSIS"
done

export CORTEX_HOME=$tmp/home CORTEX_SHM_PREFIX=$shm_prefix
run_consumer() {  # run_consumer NAME BINARY
  local how=$1 bin=$2
  # (Not `ldd | grep -q`: grep's early exit can fail ldd with SIGPIPE under pipefail.)
  local libs
  libs=$(ldd "$bin")
  grep -q "libkvcache.so.0 => $root/$libdir/libkvcache.so.0" <<<"$libs" ||
    { echo "$libs"; fail "$how consumer does not load the installed libkvcache.so.0"; }
  "$bin" "pool_$how" || fail "$how consumer"
  [ ! -e "/dev/shm/${shm_prefix}pool_$how" ] || fail "$how consumer left its segment"
}

# 1. pkg-config, with the DESTDIR as sysroot.
export PKG_CONFIG_PATH=$root/$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
[ "$(pkg-config --modversion kvcache)" = "$(cache_value CMAKE_PROJECT_VERSION)" ] ||
  fail "pkg-config --modversion"
# shellcheck disable=SC2046
"$cxx" -o "$tmp/consumer_pc" "$here/consumer/consumer.cc" $(pkg-config --cflags --libs kvcache) \
  -Wl,-rpath,"$root/$libdir" || fail "build through pkg-config"
run_consumer pkgconfig "$tmp/consumer_pc"

# 2. find_package(kvcache) -> kvcache::kvcache.
cmake -S "$here/consumer" -B "$tmp/cmake_build" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$root" >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "configure through find_package"; }
cmake --build "$tmp/cmake_build" >>"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "build through find_package"; }
run_consumer cmake "$tmp/cmake_build/consumer"

# A version the package does not provide is refused.
mkdir -p "$tmp/wrong"
sed 's/find_package(kvcache 0.1 /find_package(kvcache 99 /' "$here/consumer/CMakeLists.txt" >"$tmp/wrong/CMakeLists.txt"
cp "$here/consumer/consumer.cc" "$tmp/wrong/"
if cmake -S "$tmp/wrong" -B "$tmp/wrong/build" -DCMAKE_PREFIX_PATH="$root" >/dev/null 2>&1; then
  fail "find_package(kvcache 99) succeeded"
fi
echo "install test passed ($prefix under $dest)"
