// Small file-system helpers shared inside core, and the checks that decide whether a
// directory or file under $CORTEX_HOME can be trusted.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "kvcache/status.h"

namespace kvcache {

// The directory part of `path`: "a/b" -> "a", "/a" -> "/", "b" -> ".".
std::string DirName(std::string_view path);
// The name after the last '/' of `path`: "a/b" -> "b", "b" -> "b", "a/" -> "".
std::string BaseName(std::string_view path);

// mkdir -p: creates the missing directories of `dir` with mode 0700.
Status MakeDirs(const std::string& dir);

// `'path'`, for messages that name a file.
inline std::string Quoted(std::string_view path) { return "'" + std::string(path) + "'"; }

// "uid 1001 (mallory)", or "uid 1001" when the user database has no name for it.
std::string DescribeUid(uid_t uid);

// A directory the caller may keep private files in: it (after symlinks) is a directory
// owned by the effective uid and not writable by group or others, so nobody else can
// plant, replace or remove anything in it. PermissionDenied naming the owner and mode
// otherwise; NotFound when it does not exist.
Status CheckTrustedDir(const std::string& dir);
// MakeDirs, then CheckTrustedDir.
Status MakeTrustedDir(const std::string& dir);

// For a file another library opens by name (SQLite): if `path` exists it must be a
// regular file (not a symlink) owned by the effective uid and not writable by group or
// others. Ok when it does not exist.
Status CheckTrustedFile(const std::string& path);

// Copies `len` bytes of `in` from `in_offset` to `out` at `out_offset` inside the kernel
// (splice through a pipe: no pages pass through this process's memory), falling back to
// pread/pwrite through a small buffer where a descriptor cannot splice. Both offsets are
// explicit: neither descriptor's file position moves, so a descriptor other threads use
// stays usable. IOError naming `what` when `in` ends before `len` bytes.
Status CopyFileRange(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t len,
                     std::string_view what);

// pwrite all of `bytes`.
Status WriteFullyAt(int fd, uint64_t offset, std::span<const std::byte> bytes,
                    std::string_view what);

// pread until `into` is full. IOError naming `what` when `fd` ends first.
Status ReadFullyAt(int fd, uint64_t offset, std::span<std::byte> into, std::string_view what);

}  // namespace kvcache
