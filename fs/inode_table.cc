#include "inode_table.h"

#include <cassert>

namespace kvcache::fs {

InodeTable::InodeTable() {
  // The root is never forgotten: the kernel holds it for the life of the mount.
  nodes_[kRootIno] = Entry{Node{}, 1, 0};
}

InodeTable::Key InodeTable::KeyOf(const Node& node) {
  uint8_t file = 0;
  if (node.kind == NodeKind::kRootFile) file = static_cast<uint8_t>(node.root_file);
  if (node.kind == NodeKind::kPoolFile) file = static_cast<uint8_t>(node.pool_file);
  return {node.kind, file, node.pool, node.hash, node.seq};
}

Ino InodeTable::Acquire(const Node& node) {
  assert(node.kind != NodeKind::kSeqFile);
  if (node.kind == NodeKind::kRoot) return kRootIno;
  MutexLock lock(&mu_);
  Key key = KeyOf(node);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    nodes_[it->second].nlookup++;
    return it->second;
  }
  Ino ino = next_ino_++;
  nodes_[ino] = Entry{node, 1, 0};
  by_key_.emplace(std::move(key), ino);
  return ino;
}

Ino InodeTable::AcquireSeq(const std::string& pool, uint64_t seq, uint64_t generation,
                           std::optional<Ino>* superseded, const SeqAttrs& attrs) {
  MutexLock lock(&mu_);
  auto bind = seq_binding_.find({pool, seq});
  if (bind != seq_binding_.end()) {
    auto it = nodes_.find(bind->second);
    if (it != nodes_.end() && it->second.node.generation == generation) {
      it->second.nlookup++;
      return bind->second;
    }
    if (superseded != nullptr) *superseded = bind->second;
  }
  Ino ino = next_ino_++;
  Node node;
  node.kind = NodeKind::kSeqFile;
  node.pool = pool;
  node.seq = seq;
  node.generation = generation;
  node.attrs = attrs;
  nodes_[ino] = Entry{std::move(node), 1, 0};
  seq_binding_[{pool, seq}] = ino;
  return ino;
}

Ino InodeTable::CreatePending(const std::string& pool, uint64_t seq) {
  MutexLock lock(&mu_);
  Ino ino = next_ino_++;
  Node node;
  node.kind = NodeKind::kSeqFile;
  node.pool = pool;
  node.seq = seq;
  node.generation = 0;
  nodes_[ino] = Entry{std::move(node), 1, 0};
  return ino;
}

void InodeTable::Published(Ino ino, uint64_t generation, const SeqAttrs& attrs) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  Node& node = it->second.node;
  auto key = std::make_pair(node.pool, node.seq);
  if (node.generation == 0) {
    node.generation = generation;
    node.attrs = attrs;
    seq_binding_[key] = ino;
    return;
  }
  auto bind = seq_binding_.find(key);
  if (bind != seq_binding_.end() && bind->second == ino) seq_binding_.erase(bind);
}

void InodeTable::Rebound(Ino ino, uint64_t generation) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  if (it->second.last_open_generation == it->second.node.generation) {
    it->second.last_open_generation = generation;
  }
  it->second.node.generation = generation;
  seq_binding_[{it->second.node.pool, it->second.node.seq}] = ino;
}

Ino InodeTable::CreateScratch(const std::string& pool, const std::string& name) {
  MutexLock lock(&mu_);
  Ino ino = next_ino_++;
  Node node;
  node.kind = NodeKind::kScratchFile;
  node.pool = pool;
  node.name = name;
  nodes_[ino] = Entry{std::move(node), 1, 0};
  return ino;
}

bool InodeTable::Ref(Ino ino) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return false;
  it->second.nlookup++;
  return true;
}

void InodeTable::RenameScratch(Ino ino, const std::string& name) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it != nodes_.end() && it->second.node.kind == NodeKind::kScratchFile) {
    it->second.node.name = name;
  }
}

void InodeTable::Renamed(Ino ino, uint64_t seq, uint64_t generation, const SeqAttrs& attrs) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  Node& node = it->second.node;
  if (node.kind == NodeKind::kSeqFile) {
    auto bind = seq_binding_.find({node.pool, node.seq});
    if (bind != seq_binding_.end() && bind->second == ino) seq_binding_.erase(bind);
  }
  node.kind = NodeKind::kSeqFile;
  node.name.clear();
  node.seq = seq;
  node.generation = generation;
  node.attrs = attrs;
  it->second.last_open_generation = 0;
  seq_binding_[{node.pool, seq}] = ino;
}

std::optional<Ino> InodeTable::BoundSeq(const std::string& pool, uint64_t seq) const {
  MutexLock lock(&mu_);
  auto it = seq_binding_.find({pool, seq});
  if (it == seq_binding_.end()) return std::nullopt;
  return it->second;
}

void InodeTable::Unbind(const std::string& pool, uint64_t seq) {
  MutexLock lock(&mu_);
  seq_binding_.erase({pool, seq});
}

std::vector<std::pair<Ino, Node>> InodeTable::SeqNodes(const std::string& pool) const {
  MutexLock lock(&mu_);
  std::vector<std::pair<Ino, Node>> out;
  for (auto it = seq_binding_.lower_bound({pool, 0});
       it != seq_binding_.end() && it->first.first == pool; ++it) {
    auto node = nodes_.find(it->second);
    if (node != nodes_.end()) out.emplace_back(it->second, node->second.node);
  }
  return out;
}

void InodeTable::DropPool(const std::string& pool) {
  MutexLock lock(&mu_);
  auto it = seq_binding_.lower_bound({pool, 0});
  while (it != seq_binding_.end() && it->first.first == pool) it = seq_binding_.erase(it);
}

bool InodeTable::Forget(Ino ino, uint64_t n) {
  if (ino == kRootIno) return false;
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return false;
  if (it->second.nlookup > n) {
    it->second.nlookup -= n;
    return false;
  }
  const Node& node = it->second.node;
  if (node.kind == NodeKind::kSeqFile) {
    auto bind = seq_binding_.find({node.pool, node.seq});
    if (bind != seq_binding_.end() && bind->second == ino) seq_binding_.erase(bind);
  } else if (node.kind != NodeKind::kScratchFile) {
    by_key_.erase(KeyOf(node));
  }
  nodes_.erase(it);
  return true;
}

bool InodeTable::NoteOpen(Ino ino, uint64_t generation) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return false;
  bool same = it->second.last_open_generation == generation;
  it->second.last_open_generation = generation;
  return same;
}

std::optional<Ino> InodeTable::Find(const Node& node) const {
  if (node.kind == NodeKind::kRoot) return kRootIno;
  MutexLock lock(&mu_);
  auto it = by_key_.find(KeyOf(node));
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

std::optional<Node> InodeTable::Get(Ino ino) const {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.node;
}

size_t InodeTable::size() const {
  MutexLock lock(&mu_);
  return nodes_.size();
}

}  // namespace kvcache::fs
