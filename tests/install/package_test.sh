#!/usr/bin/env bash
# package_test.sh KVCACHEFS.deb: installs the package into this machine with apt-get
# (its Depends resolved by name from Debian's archive), uses what it installed the way a
# user and an operator do (cortex cache create, mount, status, unmount, destroy; an
# fstab mount that restores pools; the man pages, pkg-config, the Python module, the
# systemd unit), then removes the package. Needs root. Run by `scripts/test.sh --stage
# package`.
set -euo pipefail
# (No `cmd | grep -q`: grep's early exit can fail cmd with SIGPIPE under pipefail.)
deb=$(realpath "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvc_package.XXXXXX")
shm_prefix="kvct_package_$$_"
mnt=$tmp/mnt
fail() { echo "FAIL: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' kvcachefs 2>/dev/null | grep "install ok installed" >/dev/null; }
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; fi
  rm -f /dev/shm/"$shm_prefix"* 2>/dev/null || true
  if installed; then DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kvcachefs >/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] || fail "needs root (it installs a package)"
installed && fail "kvcachefs is already installed on this machine; remove it first"

# Depends: Debian package names, each known to apt.
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for dep in $(tr ',' '\n' <<<"$depends" | sed 's/(.*)//; s/ //g'); do
  apt-cache show "$dep" >/dev/null 2>&1 || fail "dependency '$dep' is not a Debian package apt knows"
done

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$tmp/apt.log" 2>&1 ||
  { cat "$tmp/apt.log"; fail "apt-get install $deb"; }
installed || fail "package not installed"

# Every shared library an installed program or library loads comes from a package that
# Depends names (or from this one), so apt on another machine pulls in all of them.
# The package owning a library file, under the names dpkg knows it by (with /usr merged,
# /lib/x and /usr/lib/x are one file; a package lists one of them).
owner_of() {
  local real; real=$(realpath "$1")
  for p in "$1" "$real" "${real#/usr}" "/usr${real}"; do
    dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1 && return 0
  done
  return 1
}
dep_names=" $(tr ',' '\n' <<<"$depends" | sed 's/(.*)//; s/|.*//; s/ //g' | tr '\n' ' ') "
for elf in $(dpkg -L kvcachefs | grep -E '/usr/bin/|\.so(\.[0-9]+)*$'); do
  [ -f "$elf" ] && [ ! -L "$elf" ] || continue
  ldd "$elf" | grep "not found" >/dev/null && fail "$elf: $(ldd "$elf" | grep 'not found')"
  for lib in $(ldd "$elf" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
    owner=$(owner_of "$lib") || fail "$elf loads $lib, which no package owns"
    [ "$owner" = kvcachefs ] || [[ $dep_names == *" $owner "* ]] ||
      fail "$elf loads $lib from package $owner, which Depends does not name"
  done
done

# What it installed, where the system looks.
[ "$(command -v cortex)" = /usr/bin/cortex ] || fail "cortex is not /usr/bin/cortex"
[ -x /usr/bin/kvcachefs ] || fail "no /usr/bin/kvcachefs"
ldconfig -p | grep "libkvcache.so.0 " >/dev/null || fail "libkvcache.so.0 not in the linker cache"
[ "$(pkg-config --modversion kvcache)" = "$(dpkg-deb -f "$deb" Version)" ] || fail "pkg-config kvcache"
man -w kvcachefs >/dev/null && man -w cortex-cache >/dev/null || fail "man pages not found by man"
(cd / && /usr/bin/python3 -c 'import kvcache, kvcache._native') || fail "Debian's python3 cannot import kvcache"
unit=$(dpkg -L kvcachefs | grep '/kvcachefs@.service$') || fail "no systemd unit in the package"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/units" && cp "$unit" "$tmp/units/kvcachefs@mnt-kv.service"
  systemd-analyze verify "$tmp/units/kvcachefs@mnt-kv.service" || fail "systemd-analyze verify"
fi

# A user's session with the installed commands.
export CORTEX_HOME=$tmp/home CORTEX_SHM_PREFIX=$shm_prefix
mkdir -p "$mnt"
cortex cache create p1 --size 4M --policy lfu || fail "cortex cache create"
cortex cache mount "$mnt" || fail "cortex cache mount"
printf 'sequence seven' >"$tmp/seven"
cp "$tmp/seven" "$mnt/p1/7" || fail "write through the mount"
cortex cache status p1 | grep -E '^p1 .* lfu' || fail "cortex cache status"
echo >"$mnt/p1/persist" || fail "persist"
cortex cache unmount "$mnt" || fail "cortex cache unmount"
mountpoint -q "$mnt" && fail "still mounted"

# Boot: the shared memory is gone; an fstab line mounts with restore.
rm -f "/dev/shm/${shm_prefix}p1"
echo "kvcachefs $mnt fuse.kvcachefs home=$CORTEX_HOME,restore 0 0" >"$tmp/fstab"
mount -T "$tmp/fstab" "$mnt" || fail "mount -T fstab"
for _ in $(seq 100); do [ -e "$mnt/p1/7" ] && break; sleep 0.1; done
cmp -s "$mnt/p1/7" "$tmp/seven" || fail "pool not restored by the fstab mount"
cortex cache unmount "$mnt" || fail "unmount of the fstab mount"
cortex cache destroy p1 || fail "cortex cache destroy"
cortex cache status p1 >/dev/null 2>&1 && fail "p1 still exists after destroy"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kvcachefs >/dev/null || fail "apt-get purge"
[ -e /usr/bin/cortex ] && fail "/usr/bin/cortex left after purge"
ldconfig -p | grep "libkvcache.so.0 " >/dev/null && fail "libkvcache.so.0 still in the linker cache"
echo "package test passed"
