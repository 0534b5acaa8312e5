// Inode numbers for the nodes of the mounted tree, with the kernel's lookup counts.
//
// Numbers are never reused within a mount, so a number always names one node. A
// sequence file's inode is bound to one entry generation: when the entry gets new
// bytes (replaced, deleted and put again, restored), the next lookup gets a new inode,
// so the kernel's page cache of the old one can never be served for the new bytes.
// Opening an inode whose generation is no longer the entry's is answered with ESTALE,
// which makes the kernel look the name up again and open the new inode.
//
// Thread-safe: one mutex guards everything; every method is short and never blocks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "names.h"
#include "thread_annotations.h"

namespace kvcache::fs {

using Ino = uint64_t;
inline constexpr Ino kRootIno = 1;

enum class NodeKind : uint8_t {
  kRoot,
  kRootFile,     // status, metrics
  kPoolDir,      // <pool>/
  kPoolFile,     // <pool>/status ... restore
  kByPrefixDir,  // <pool>/by-prefix/
  kPrefixDir,    // <pool>/by-prefix/<hash>/
  kPrefixLink,   // <pool>/by-prefix/<hash>/<seq>
  kSeqFile,      // <pool>/<seq>
  kScratchFile,  // <pool>/<name> being written that is not an entry (names.h)
  kChunksDir,    // <pool>/chunks/
  kChunkFile,    // <pool>/chunks/<hash>: `hash` is the 16 hex digits of the chunk's hash
};

// What a node is. For kSeqFile, `generation` is the entry generation the inode
// stands for, 0 while the file is being created and has never been published.
// What a sequence file's attributes were at its generation: served for an inode of an
// outdated generation, whose open files still read that generation's bytes.
struct SeqAttrs {
  uint64_t size = 0;
  double created = 0;
  double last_accessed = 0;
};

struct Node {
  NodeKind kind = NodeKind::kRoot;
  RootFile root_file = RootFile::kStatus;
  PoolFile pool_file = PoolFile::kStatus;
  std::string pool;
  std::string hash;
  uint64_t seq = 0;
  uint64_t generation = 0;
  SeqAttrs attrs;    // kSeqFile: of `generation`
  std::string name;  // kScratchFile
};

class InodeTable {
 public:
  InodeTable();

  // Finds or makes the inode of a node that is not a sequence file and counts one
  // lookup. REQUIRES: node.kind != kSeqFile.
  Ino Acquire(const Node& node);

  // The inode of sequence `seq` at entry generation `generation`, counting one lookup.
  // When the id was bound to an inode of another generation, that inode is returned
  // in *superseded (its cache should be dropped) and the id is bound to a new inode.
  Ino AcquireSeq(const std::string& pool, uint64_t seq, uint64_t generation,
                 std::optional<Ino>* superseded, const SeqAttrs& attrs = {});

  // A new inode for a sequence file being created (generation 0), counting one lookup.
  // It is not bound to the id until it is published.
  Ino CreatePending(const std::string& pool, uint64_t seq);

  // The bytes of a file written through the mount were published as `generation`.
  // An inode that was still pending (its page cache can only hold the new bytes)
  // becomes the id's inode; any other inode goes stale and the next lookup makes one.
  void Published(Ino ino, uint64_t generation, const SeqAttrs& attrs = {});

  // A new inode for scratch file `name` of `pool`, counting one lookup.
  Ino CreateScratch(const std::string& pool, const std::string& name);
  // Counts one more lookup of a known inode; false when the kernel forgot it.
  bool Ref(Ino ino);
  // A scratch file renamed to another scratch name.
  void RenameScratch(Ino ino, const std::string& name);
  // `ino` (a scratch file, or the file of another id) now stands for entry `seq` at
  // `generation`, and is the id's inode: a rename published it there.
  void Renamed(Ino ino, uint64_t seq, uint64_t generation, const SeqAttrs& attrs);
  // The inode bound to an id, if any.
  std::optional<Ino> BoundSeq(const std::string& pool, uint64_t seq) const;

  // The entry of `ino` was republished with the same bytes (new attributes only):
  // the inode keeps serving it under the new generation.
  void Rebound(Ino ino, uint64_t generation);

  // The id no longer has an entry: forgets its binding.
  void Unbind(const std::string& pool, uint64_t seq);

  // Inodes of sequence files of `pool` with their generations (for invalidation).
  std::vector<std::pair<Ino, Node>> SeqNodes(const std::string& pool) const;

  // The pool disappeared: forgets the bindings of its sequence files.
  void DropPool(const std::string& pool);

  // The kernel forgot `n` lookups. Returns true when the inode was dropped.
  bool Forget(Ino ino, uint64_t n);

  // Undoes one lookup counted for a reply that could not be sent.
  void Unref(Ino ino) { Forget(ino, 1); }

  // Records an open of `ino` serving `generation`. True when the previous open of the
  // inode served the same generation, so pages the kernel cached then are still right.
  bool NoteOpen(Ino ino, uint64_t generation);

  std::optional<Node> Get(Ino ino) const;
  // The inode of a node that is not a sequence file, if the kernel knows it; no count.
  std::optional<Ino> Find(const Node& node) const;
  size_t size() const;

 private:
  struct Entry {
    Node node;
    uint64_t nlookup = 0;
    uint64_t last_open_generation = 0;  // 0: never opened
  };
  using Key = std::tuple<NodeKind, uint8_t, std::string, std::string, uint64_t>;
  static Key KeyOf(const Node& node);

  // A leaf lock: no other lock is taken while it is held (the daemon's writes_mu_ and
  // WriteState::mu may be held when it is taken).
  mutable Mutex mu_;
  Ino next_ino_ GUARDED_BY(mu_) = kRootIno + 1;
  std::unordered_map<Ino, Entry> nodes_ GUARDED_BY(mu_);
  std::map<Key, Ino> by_key_ GUARDED_BY(mu_);  // not kSeqFile
  std::map<std::pair<std::string, uint64_t>, Ino> seq_binding_ GUARDED_BY(mu_);
};

}  // namespace kvcache::fs
