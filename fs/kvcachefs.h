// kvcachefs: the mounted tree over the pools of one Manager.
//
//   MOUNT/status, MOUNT/metrics                         read-only text
//   MOUNT/<pool>/<seq>                                  one file per entry
//   MOUNT/<pool>/by-prefix/<hash>/<seq> -> ../../<seq>  entries by prefix hash
//   MOUNT/<pool>/{status,health,entries,config}          read-only text
//   MOUNT/<pool>/{evict,persist,restore}                 control files
//   MOUNT/<pool>/match                                   a prompt's cached chunks,
//                                                        per open handle (match_file.h)
//   MOUNT/<pool>/chunks/<hash>                           one read-only file per token
//                                                        chunk (kvcachefs_chunks.cc)
//
// The Do* functions hold the logic and return 0 or an errno; they take no fuse_req_t
// and never reply. The Op* adapters (fuse_adapters.cc) call them and only reply. No
// lock of ours is held across a reply or a Manager call that can block for long.
//
// Thread-safe: called from the threads of the multi-threaded session loop.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "caller.h"
#include "control_files.h"
#include "inode_table.h"
#include "periodic_task.h"
#include "pin_quota.h"
#include "kvcache/manager.h"
#include "match_file.h"
#include "staging_buffer.h"
#include "thread_annotations.h"

namespace kvcache::fs {

struct FsOptions {
  PoolConfig pool_defaults;  // for `mkdir MOUNT/name`; name is filled in
  // How long the kernel may trust the names and attributes of directories that only
  // come and go with pools (pool directories, by-prefix/).
  //
  // Whatever comes and goes with entries (sequence files, by-prefix/<hash>/ and its
  // links) is never cached: the kernel asks on every use, so when an unlink, an evict
  // or a restore returns, nothing it removed can still be seen, and a create never
  // trips over a stale name. The alternative, telling the kernel to forget names
  // (fuse_lowlevel_notify_inval_entry), blocks in the kernel on the directory's lock
  // while a lookup in that directory waits for this daemon; if the daemon dies then,
  // the notifying thread never returns, the process never exits, and readers hang
  // unkillable. So the daemon sends the kernel no notifications at all. Coherence of
  // sequence bytes rests on inode generations (see InodeTable).
  double dir_timeout = 1.0;
  // How long the kernel may trust the attributes of a sequence file's inode (the name
  // is still never cached). An inode stands for one generation of an entry (see
  // InodeTable), whose bytes and size never change, so its attributes stay true for
  // as long as it lives; and every path to a sequence file is looked up afresh, each
  // lookup answering with the inode the id has now and its attributes. What the
  // kernel then no longer asks for is the GETATTR of each permission check, open and
  // read of a file it has just looked up.
  double seq_attr_timeout = 1.0;
  // How long the kernel may trust the name of a sequence file (`-o name_timeout=`):
  // 0, the default, keeps the rule above, names never cached. Above 0, a lookup or
  // listing lets the kernel keep the name that long, so `ls -l` and `rm` of many files
  // need no LOOKUP each. Bytes stay as coherent as ever: an open through a kept name
  // reaches its inode, which stands for one generation; if the entry has new bytes
  // since, the open fails with ESTALE and the kernel looks the name up again (which
  // finds the new inode), and if the entry is gone it fails with ENOENT. What may be
  // old, for at most that long, is what stat() shows of a name another process
  // replaced or deleted, and the size of a file another process is creating (its
  // bytes are never readable before they are published). A created name is kept too.
  double seq_name_timeout = 0;
};

// A file being written: its bytes are staged here and published whole as entry `seq`
// by the writer: at the writer's close, fsync, the last close of its open file, or a
// rename of a scratch file onto the id. Nobody else ever sees staged bytes.
//
// Publishing copies the staging into the pool, which takes as long as the entry is
// big, so it runs without `mu` (a stat of the file must not wait for it). Meanwhile the
// staging is read-only: whoever changes it takes a ChangeLock, which waits for the
// publish to end; readers (getattr, read, getxattr) just take `mu`.
struct WriteState {
  // Lock order: a WriteState's mu comes before KvcacheFs::writes_mu_ and before every
  // lock of the core (CheckRoom asks the Manager for the pool's stats, which takes the
  // Manager's map lock and the pool lock); never two WriteStates' at once. Released
  // while the bytes are put (see Publish).
  Mutex mu;
  CondVar publish_done;  // signalled when `publishing` turns false
  bool publishing GUARDED_BY(mu) = false;
  std::string pool;          // immutable
  ScratchKind scratch GUARDED_BY(mu) = ScratchKind::kNone;  // kNone: an <id> file
  uint64_t seq GUARDED_BY(mu) = 0;  // the id published to (kNone, or renamed)
  Ino ino = 0;               // immutable
  pid_t owner = 0;           // immutable: thread group of the process that opened it
  StagingBuffer staging GUARDED_BY(mu);
  bool dirty GUARDED_BY(mu) = true;  // staged bytes not yet published
  int error GUARDED_BY(mu) = 0;      // a write refused for space: never published
  bool closed_by_owner GUARDED_BY(mu) = false;  // the writer closed or synced it once
  uint64_t limit GUARDED_BY(mu) = 0;  // the pool's size: larger is EFBIG
  uint64_t room GUARDED_BY(mu) = 0;   // fits for sure: free bytes, or pool minus pins
  // The staging's bytes counted in `ledger` for the pool (kTokens files: none).
  std::shared_ptr<StagingLedger> ledger;  // immutable once shared
  uint64_t charged GUARDED_BY(mu) = 0;
  uint64_t token_count GUARDED_BY(mu) = 0;
  PutOptions options GUARDED_BY(mu);
  // Guarded by KvcacheFs::writes_mu_, a private member of the owner that this struct
  // cannot name in an annotation; every use is in kvcachefs_files.cc under that lock.
  int handles = 0;

  ~WriteState() {
    if (ledger != nullptr && charged > 0) ledger->Refund(pool, charged);
  }
  // Gives back the charge above `size` (the staging shrank to it).
  void ShrankTo(uint64_t size) REQUIRES(mu) {
    if (ledger != nullptr && size < charged) {
      ledger->Refund(pool, charged - size);
      charged = size;
    }
  }

  // Waits, releasing mu meanwhile, until no publish of this state is running.
  void WaitForPublish() REQUIRES(mu) {
    while (publishing) publish_done.Wait(&mu);
  }
};

// Holds a WriteState's mu with no publish running: what changing the staging needs (a
// publish reads it without mu). Readers (getattr, read, getxattr) just take mu.
class SCOPED_CAPABILITY ChangeLock {
 public:
  explicit ChangeLock(WriteState& state) ACQUIRE(state.mu) : state_(state) {
    state_.mu.Lock();
    state_.WaitForPublish();
  }
  ~ChangeLock() RELEASE() { state_.mu.Unlock(); }
  ChangeLock(const ChangeLock&) = delete;
  ChangeLock& operator=(const ChangeLock&) = delete;

 private:
  WriteState& state_;
};

// What an open file handle (fuse_file_info::fh) points to.
struct FileHandle {
  enum class Kind { kEntry, kWrite, kText, kControl, kMatch };
  Kind kind = Kind::kText;
  Ino ino = 0;
  EntryView view;                     // kEntry (an entry or a chunk): pinned until release
  std::string text;                   // kText: rendered at open
  std::string pool;                   // kControl, and kEntry when quota_held
  PoolFile file = PoolFile::kStatus;  // kControl
  std::shared_ptr<WriteState> write;  // kWrite
  bool quota_held = false;            // kEntry: one pin counted for quota_uid
  uid_t quota_uid = 0;
  bool trusted = false;               // kControl: opened by root or the daemon's user
  std::unique_ptr<MatchSession> match;  // kMatch
};

struct OpenResult {
  // Owned by the kernel's file until DoRelease, or until the KvcacheFs is destroyed.
  FileHandle* handle = nullptr;
  bool direct_io = false;
  bool keep_cache = false;
};

class KvcacheFs {
 public:
  KvcacheFs(Manager& manager, FsOptions options);
  // Frees the file and directory handles never released: once the session loop has
  // ended the kernel sends no more releases. Their pins and quota counts are released;
  // bytes staged by a writer that never closed are dropped unpublished (as when the
  // writer dies). REQUIRES: no other thread is calling in (the session loop has ended).
  ~KvcacheFs();
  KvcacheFs(const KvcacheFs&) = delete;
  KvcacheFs& operator=(const KvcacheFs&) = delete;

  Manager& manager() { return manager_; }
  PeriodicTask& poller() { return poller_; }
  const InodeTable& inodes() const { return inodes_; }

  // ---- names and attributes (kvcachefs.cc) ----
  // A lookup of a missing id counts a miss only when `caller` is opening it to read.
  int DoLookup(const Caller& caller, Ino parent, std::string_view name,
               fuse_entry_param* entry);
  void DoForget(Ino ino, uint64_t nlookup);
  int DoGetattr(Ino ino, const FileHandle* handle, struct stat* attr, double* timeout);
  int DoSetattr(Ino ino, const struct stat& attr, int to_set, FileHandle* handle,
                struct stat* out, double* timeout);
  int DoReadlink(Ino ino, std::string* target);
  int DoMkdir(Ino parent, std::string_view name, fuse_entry_param* entry);
  int DoRmdir(Ino parent, std::string_view name);
  int DoUnlink(Ino parent, std::string_view name);
  int DoStatfs(struct statvfs* out);

  // ---- directories (kvcachefs.cc) ----
  struct DirEntry;
  struct SeqRow;
  struct DirHandle;
  int DoOpendir(Ino ino, DirHandle** handle);
  // Calls fill(name, entry, next_offset) for each entry after `offset` until it
  // returns false (buffer full). With `plus`, each entry filled counts a lookup;
  // an entry fill refused is not counted.
  using FillFn = std::function<bool(const std::string& name, const fuse_entry_param& entry,
                                    off_t next_offset)>;
  int DoReaddir(Ino ino, DirHandle* handle, off_t offset, bool plus, const FillFn& fill);
  void DoReleasedir(DirHandle* handle);

  // ---- files (kvcachefs_files.cc) ----
  // `caller.pid` (the requesting thread) tells the writer from other processes.
  int DoOpen(const Caller& caller, Ino ino, int flags, OpenResult* out);
  int DoCreate(const Caller& caller, Ino parent, std::string_view name, int flags,
               fuse_entry_param* entry, OpenResult* out);
  // Points *out at the bytes to reply: into the pinned pool mapping for entries (no
  // copy), else into *scratch.
  int DoRead(FileHandle* handle, size_t size, off_t offset, std::span<const std::byte>* out,
             std::vector<std::byte>* scratch);
  int DoWrite(FileHandle* handle, off_t offset, std::span<const std::byte> data);
  // A close: publishes when the closing process is the writer; an inherited descriptor
  // closed by another process publishes nothing.
  int DoFlush(FileHandle* handle, pid_t pid = 0);
  // Publishes what the writer staged; returns the publish's error.
  int DoFsync(FileHandle* handle);
  int DoRelease(FileHandle* handle);
  // Renames within one pool: a scratch file onto an id publishes it; an entry onto
  // another id moves it; a scratch file to another scratch name renames it.
  int DoRename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
               unsigned flags);

  // ---- extended attributes (kvcachefs_xattr.cc) ----
  int DoGetxattr(Ino ino, std::string_view name, std::string* value);
  int DoListxattr(Ino ino, std::string* names);  // NUL-separated
  int DoSetxattr(Ino ino, std::string_view name, std::string_view value, pid_t pid = 0);
  int DoRemovexattr(Ino ino, std::string_view name, pid_t pid = 0);

  // Runs now and then on poller(): pools destroyed by others drop out of the mount.
  void PollPools();

 private:
  // kvcachefs.cc
  // `timeout`: how long the kernel may trust both the name and the attributes.
  void FillEntry(Ino ino, const struct stat& attr, fuse_entry_param* entry, double timeout);
  // The attributes every node shares (owner, times, block size). A node of a pool
  // shows the pool's owner, and permission bits derived from the pool's (see
  // PoolPerms), whatever `mode` asks for: default_permissions enforces them.
  // `owner`: the pool's segment owner when the caller has just read it (else it is
  // looked up).
  void BaseAttr(Ino ino, mode_t mode, struct stat* attr, const PoolOwner* owner = nullptr);
  void DirAttr(Ino ino, mode_t perms, struct stat* attr, const PoolOwner* owner = nullptr);
  void FileAttr(Ino ino, mode_t perms, uint64_t size, struct stat* attr,
                const PoolOwner* owner = nullptr);
  void SeqAttr(Ino ino, const EntryInfo& info, struct stat* attr);
  // The same from what a listing kept, with the pool's owner looked up once for it.
  void SeqAttr(Ino ino, const SeqAttrs& attrs, const PoolOwner& owner, struct stat* attr);
  // The pool's segment owner and bits; a pool without a live segment shows as the
  // daemon's user's alone.
  PoolOwner OwnerOf(const std::string& pool);
  // True when `caller` is not counted against the pool's pin quota.
  bool IsPrivileged(const Caller& caller, const PoolOwner& owner) const;
  // 0 when the catalog has `pool`, else an errno. *owner (when not null) is set to the
  // segment's owner when that was read on the way (else nullopt).
  int PoolExists(const std::string& pool, std::optional<PoolOwner>* owner = nullptr);
  int LookupInRoot(std::string_view name, fuse_entry_param* entry);
  int LookupInPool(const Caller& caller, const std::string& pool, std::string_view name,
                   fuse_entry_param* entry);
  // A missing id counts a miss when thread `caller_pid` is opening it to read. `owner`:
  // the pool's segment owner when the caller has just read it (else it is looked up).
  int LookupSeq(const std::string& pool, uint64_t seq, pid_t caller_pid,
                fuse_entry_param* entry, const std::optional<PoolOwner>& owner = std::nullopt);
  int ListDir(Ino ino, const Node& node, DirHandle* out);
  void NotePool(const std::string& pool);
  int EntryFor(const DirEntry& d, fuse_entry_param* entry);
  void SeqEntryFor(const DirHandle& dir, const SeqRow& row, fuse_entry_param* entry);

  // kvcachefs_files.cc
  // The writer of a pending inode or scratch file `ino`.
  std::shared_ptr<WriteState> FindWrite(Ino ino);
  // The writer of id `seq` of `pool` owned by thread group `owner` (0: any owner).
  std::shared_ptr<WriteState> FindWriter(const std::string& pool, uint64_t seq, pid_t owner);
  // A new writer registered under writes_; limits read from the pool.
  Result<std::shared_ptr<WriteState>> NewWrite(Ino ino, const std::string& pool, uint64_t seq,
                                               ScratchKind scratch, pid_t owner);
  void DropWrite(const std::shared_ptr<WriteState>& state);
  // Checks that `end` bytes fit the pool; 0, EFBIG or ENOSPC.
  int CheckRoom(WriteState& state, uint64_t end) REQUIRES(state.mu);
  // Publishes the staged bytes if dirty. state.mu is released while the bytes are put
  // and held again on return.
  int Publish(WriteState& state) REQUIRES(state.mu);
  // The tokens staged in scratch file "<seq>.tokens" of `pool`, if any.
  std::optional<std::vector<uint32_t>> CompanionTokens(const std::string& pool, uint64_t seq);
  void DropCompanion(const std::string& pool, uint64_t seq);
  // At the close of a "<id>.tokens" file: attaches the tokens to <id> when it is
  // published and nobody is writing it; else they wait for its publish.
  int ApplyCompanion(const std::shared_ptr<WriteState>& state);
  // DoOpen and DoCreate before the handle they give out is recorded in open_files_.
  int OpenFile(const Caller& caller, Ino ino, int flags, OpenResult* out);
  int CreateFile(const Caller& caller, Ino parent, std::string_view name, int flags,
                 fuse_entry_param* entry, OpenResult* out);
  int OpenSeq(const Caller& caller, Ino ino, const Node& node, int flags, OpenResult* out,
              const std::optional<PoolOwner>& owner = std::nullopt);
  int OpenScratch(Ino ino, const std::shared_ptr<WriteState>& state, int flags,
                  OpenResult* out);
  // The reply to a CREATE that made write inode `ino` (new, empty): entry and handle.
  void ReplyCreated(Ino ino, std::shared_ptr<WriteState> write, fuse_entry_param* entry,
                    OpenResult* out, const PoolOwner* owner = nullptr);
  int CreateScratch(const std::string& pool, std::string_view name, ScratchName scratch,
                    int flags, fuse_entry_param* entry, OpenResult* out, pid_t pid);
  int LookupScratch(const std::string& pool, std::string_view name, fuse_entry_param* entry);
  int UnlinkScratch(const std::string& pool, std::string_view name);
  int RenameToSeq(const std::string& pool, std::string_view name, uint64_t target,
                  unsigned flags);
  int MoveSeq(const std::string& pool, uint64_t from, uint64_t to, unsigned flags);

  // kvcachefs_chunks.cc: <pool>/chunks/ and <pool>/match
  int LookupChunk(const std::string& pool, std::string_view name, fuse_entry_param* entry);
  void ChunkAttr(Ino ino, const ChunkInfo& info, struct stat* attr);
  int GetChunkAttr(Ino ino, const Node& node, const FileHandle* handle, struct stat* attr);
  // Appends the chunks of `pool` to a listing.
  int ListChunks(const std::string& pool, std::vector<DirEntry>* out);
  int OpenChunk(const Caller& caller, Ino ino, const Node& node, int flags, OpenResult* out);
  int OpenMatch(const Caller& caller, const Node& node, int flags, OpenResult* out);
  int ReadMatch(FileHandle* handle, size_t size, std::vector<std::byte>* scratch);
  int ChunkXattr(const Node& node, std::string_view short_name, std::string* value);

  // kvcachefs_xattr.cc
  int UpdateInPlace(Ino ino, const Node& node, std::string_view name, std::string_view value);
  int RepublishWithCopy(Ino ino, const Node& node, std::string_view name,
                        std::string_view value);

  Manager& manager_;
  const FsOptions options_;
  const uint64_t boot_generation_;
  const uid_t uid_;
  const gid_t gid_;
  InodeTable inodes_;
  ControlFiles controls_;
  PeriodicTask poller_;

  // Bytes staged per pool by every WriteState; outlives them (each holds a reference).
  const std::shared_ptr<StagingLedger> staging_ledger_ = std::make_shared<StagingLedger>();
  // Guards the writer maps (and each WriteState's `handles`). Lock order: after a
  // WriteState's mu; otherwise a leaf (no core, inode-table or state lock under it).
  Mutex writes_mu_;
  // Every writer: of pending inodes, of published ids replaced in place, of scratch
  // files (which outlive their handles until renamed or unlinked).
  std::unordered_multimap<Ino, std::shared_ptr<WriteState>> writes_ GUARDED_BY(writes_mu_);
  // Scratch files by (pool, name).
  std::map<std::pair<std::string, std::string>, std::shared_ptr<WriteState>> scratch_
      GUARDED_BY(writes_mu_);

  // A leaf lock around the names of the pools seen (none is listed or mapped under it).
  Mutex pools_mu_;
  std::set<std::string> known_pools_ GUARDED_BY(pools_mu_);

  PinQuota pin_quota_;

  static constexpr uint32_t kTrimAfterForgets = 16384;
  std::atomic<uint32_t> forgotten_since_trim_{0};

  // Handles given out and not yet released, freed by the destructor. A leaf lock:
  // nothing else is taken while it is held.
  Mutex handles_mu_;
  std::unordered_set<FileHandle*> open_files_ GUARDED_BY(handles_mu_);
  std::unordered_set<DirHandle*> open_dirs_ GUARDED_BY(handles_mu_);
};

}  // namespace kvcache::fs
