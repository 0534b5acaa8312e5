#!/usr/bin/env bash
# mount_test.sh BUILD_DIR: mounts the installed kvcachefs the way operators do: with
# `mount -t fuse.kvcachefs` (through mount.fuse3), from an fstab line (`mount -T`), and
# with the commands of the shipped systemd unit; pools come back from their snapshots
# after their shared memory is gone (a reboot), and the unit saves them when it stops.
#
# mount(8) runs mount.fuse3 with a PATH of its own, so the installed tree must be at its
# prefix: the test runs in a private mount namespace (unshare -m) in which the DESTDIR's
# bin/ is overlaid on <prefix>/bin. Nothing outside the namespace sees it.
set -euo pipefail
build=$1
if [ "${KVC_MOUNT_TEST_NS:-}" != 1 ]; then
  exec env KVC_MOUNT_TEST_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvc_mount.XXXXXX")
shm_prefix="kvct_mount_$$_"
mnt=$tmp/mnt
fail() { echo "FAIL: $*" >&2; exit 1; }

# The pids of kvcachefs daemons serving $mnt (its path is unique to this run).
daemons() {
  local d
  for d in /proc/[0-9]*; do
    local args
    args=$({ tr '\0' '\n' <"$d/cmdline"; } 2>/dev/null) || continue
    grep -qxF "$mnt" <<<"$args" || continue
    [ "$(basename "$(readlink "$d/exe" 2>/dev/null)")" = kvcachefs ] && basename "$d"
  done
  return 0
}
wait_gone() {  # until no daemon serves $mnt (10 s)
  for _ in $(seq 100); do [ -z "$(daemons)" ] && return 0; sleep 0.1; done
  fail "kvcachefs on $mnt did not exit"
}
wait_mounted() {
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
  fail "$mnt was not mounted"
}
cleanup() {
  if mountpoint -q "$prefix/bin" 2>/dev/null && [ -n "${overlaid:-}" ]; then umount -l "$prefix/bin" || true; fi
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; fi
  for p in $(daemons); do kill "$p" 2>/dev/null || true; done
  rm -f /dev/shm/"$shm_prefix"* 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
prefix=$(cache_value CMAKE_INSTALL_PREFIX)
unitdir=$(cache_value KVC_SYSTEMD_UNIT_DIR)
root=$tmp/root$prefix
DESTDIR=$tmp/root cmake --install "$build" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }

# The installed programs at <prefix>/bin, where mount.fuse3's shell finds them.
mkdir -p "$prefix/bin"
mount -t overlay overlay -o "lowerdir=$root/bin:$prefix/bin" "$prefix/bin" || fail "overlay on $prefix/bin"
overlaid=1
[ "$(command -v kvcachefs)" = "$prefix/bin/kvcachefs" ] || fail "kvcachefs is not $prefix/bin/kvcachefs"
export CORTEX_HOME=$tmp/home CORTEX_SHM_PREFIX=$shm_prefix
mkdir -p "$mnt" "$CORTEX_HOME" && chmod 700 "$CORTEX_HOME"
printf 'sequence seven' >"$tmp/seven"
printf 'sequence eight' >"$tmp/eight"

# 1. mount -t fuse.kvcachefs SOURCE DIR -o ...
cortex cache create p1 --size 4M >/dev/null
mount -t fuse.kvcachefs kvcachefs "$mnt" -o "home=$CORTEX_HOME,pool_size=4M" || fail "mount -t fuse.kvcachefs"
[ "$(findmnt -n -o FSTYPE,SOURCE "$mnt" | tr -s ' ')" = "fuse.kvcachefs kvcachefs" ] ||
  fail "mounted as '$(findmnt -n -o FSTYPE,SOURCE "$mnt")'"
cp "$tmp/seven" "$mnt/p1/7"
cortex cache get p1 7 -o "$tmp/got" && cmp -s "$tmp/got" "$tmp/seven" || fail "entry written through the mount"
echo >"$mnt/p1/persist" || fail "persist through the control file"
umount "$mnt" || fail "umount"
wait_gone

# A bad option is refused, clearly, and nothing is mounted.
if mount -t fuse.kvcachefs kvcachefs "$mnt" -o "home=$CORTEX_HOME,policy=bogus" 2>"$tmp/err"; then
  fail "mount with policy=bogus succeeded"
fi
grep -q "policy" "$tmp/err" || { cat "$tmp/err"; fail "no message naming the bad option"; }
mountpoint -q "$mnt" && fail "mounted despite a bad option"

# 2. A "reboot": the pool's shared memory is gone, its snapshot and record stay. An
# fstab line with `restore` brings it back.
rm -f "/dev/shm/${shm_prefix}p1"
echo "kvcachefs $mnt fuse.kvcachefs home=$CORTEX_HOME,restore,pool_size=4M 0 0" >"$tmp/fstab"
mount -T "$tmp/fstab" "$mnt" || fail "mount -T fstab"
wait_mounted
cmp -s "$mnt/p1/7" "$tmp/seven" || fail "pool not restored at mount from the fstab line"
umount "$mnt" || fail "umount (fstab)"
wait_gone

# 3. The systemd unit: verified by systemd-analyze when it is there, and its commands
# run as systemd would (%f the mount point, $$ a $, ${CORTEX_HOME} from Environment=).
unit=$root/$unitdir/kvcachefs@.service
[ -f "$unit" ] || fail "unit not installed at $prefix/$unitdir"
grep -q "^ExecStart=$prefix/bin/kvcachefs " "$unit" || fail "unit does not run the installed daemon"
instance=$(systemd-escape --path "$mnt" 2>/dev/null || echo mnt)
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/units"
  cp "$unit" "$tmp/units/kvcachefs@$instance.service"
  # --man=no: the man pages the unit names are in the DESTDIR, not where man looks
  # (the package test verifies the installed unit with them).
  systemd-analyze verify --man=no "$tmp/units/kvcachefs@$instance.service" >"$tmp/verify" 2>&1 ||
    { cat "$tmp/verify"; fail "systemd-analyze verify"; }
  if grep -i "kvcachefs@" "$tmp/verify"; then fail "systemd-analyze warns about the unit"; fi
fi
exec_line() {  # exec_line KEY: the unit's command line KEY=, as systemd expands it
  sed -n "s/^$1=//p" "$unit" | sed -e "s|%f|$mnt|g" -e 's/\$\$/$/g' \
    -e "s|\${CORTEX_HOME}|$CORTEX_HOME|g"
}
[ -n "$(exec_line ExecStop)" ] || fail "the unit has no ExecStop (persist on stop)"
grep -q -- "restore" <<<"$(exec_line ExecStart)" || fail "the unit does not restore at start"
rm -f "/dev/shm/${shm_prefix}p1"
eval "$(exec_line ExecStartPre)"
eval "exec $(exec_line ExecStart)" 2>"$tmp/service.log" &
service=$!
wait_mounted
cmp -s "$mnt/p1/7" "$tmp/seven" || { cat "$tmp/service.log"; fail "unit start did not restore the pool"; }
cp "$tmp/eight" "$mnt/p1/8"
eval "$(exec_line ExecStop)" || fail "ExecStop"
kill -TERM "$service"  # what systemd does after ExecStop
wait "$service" || fail "the daemon exited with status $? on SIGTERM"
mountpoint -q "$mnt" && fail "still mounted after the service stopped"
# The stop saved entry 8: after another "reboot" a restore has both.
rm -f "/dev/shm/${shm_prefix}p1"
cortex cache restore p1 >/dev/null || fail "restore after the service stopped"
cortex cache get p1 8 -o "$tmp/got" && cmp -s "$tmp/got" "$tmp/eight" || fail "stop did not persist entry 8"
cortex cache destroy p1 >/dev/null
echo "mount test passed"
