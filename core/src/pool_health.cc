// PoolHandle::Health: recovers dead processes, then verifies every invariant of the
// segment and reports each violation in words. Every table is sized by the geometry
// validated when the segment was mapped, never by the header's (possibly damaged)
// copy of it, and every index and size read from the segment is checked before use.
#include <cstring>
#include <unordered_map>

#include "kvcache/prefix.h"
#include "pool_handle.h"

namespace kvcache {

class PoolHealthChecker {
 public:
  explicit PoolHealthChecker(PoolHandle& pool)
      : p_(pool), h_(*pool.header_), l_(pool.layout_) {}

  // REQUIRES: the pool lock.
  void Check(HealthReport& report) {
    problems_ = &report.problems;
    if (Status s = p_.CheckHeaderLocked(); !s.ok()) Problem(s.message());
    CheckSlotsAndBitmap();
    CheckIndexes();
    CheckLeases(report);
    uint32_t attached;
    std::memcpy(&attached, h_.attached, sizeof(attached));
    if (attached != p_.processes_->CountAttached()) {
      Problem("header counts " + std::to_string(attached) + " attached processes, table has " +
              std::to_string(p_.processes_->CountAttached()));
    }
    for (uint32_t i = 0; i < p_.processes_->capacity(); ++i) {
      const seg::ProcessSlot& proc = p_.processes_->at(i);
      if (proc.kind != seg::kFreeRow && proc.attach_refs > 0) {
        report.processes.push_back({proc.pid, proc.attached_at});
      }
    }
  }

 private:
  void Problem(std::string text) { problems_->push_back(std::move(text)); }

  void CheckSlotsAndBitmap() {
    std::vector<uint64_t> expected((l_.block_count + 63) / 64, 0);
    std::vector<uint32_t> owner(l_.block_count, seg::kNil);
    uint64_t live = 0, used_blocks = 0;
    for (uint32_t i = 0; i < l_.slot_capacity; ++i) {
      const seg::Slot& s = p_.slots_[i];
      if (s.state > seg::kCommitting) {
        Problem("slot " + std::to_string(i) + " has unknown state " + std::to_string(s.state));
        continue;
      }
      if (s.state == seg::kFree) continue;
      if (s.state == seg::kLive) ++live;
      if (!seg::ExtentInBounds(s.first_block, s.extent_blocks, l_.block_count)) {
        Problem("entry " + std::to_string(s.sequence_id) + " (slot " + std::to_string(i) +
                ") lies outside the data region");
        continue;
      }
      if (!seg::SlotFits(s, l_.block_count, l_.block_size)) {
        Problem("entry " + std::to_string(s.sequence_id) + " (slot " + std::to_string(i) +
                ") is larger than its extent");
      }
      for (uint64_t b = s.first_block; b < s.first_block + s.extent_blocks; ++b) {
        if (owner[b] != seg::kNil) {
          Problem("entries " + std::to_string(p_.slots_[owner[b]].sequence_id) + " and " +
                  std::to_string(s.sequence_id) + " overlap at block " + std::to_string(b));
          break;
        }
        owner[b] = i;
        expected[b >> 6] |= uint64_t{1} << (b & 63);
      }
      used_blocks += s.extent_blocks;
    }
    uint64_t unowned = 0, unmarked = 0;
    for (uint64_t b = 0; b < l_.block_count; ++b) {
      bool want = (expected[b >> 6] >> (b & 63)) & 1;
      bool have = p_.bitmap_->IsSet(b);
      unowned += have && !want;
      unmarked += want && !have;
    }
    if (unowned) Problem("bitmap marks " + std::to_string(unowned) + " blocks no entry owns");
    if (unmarked) Problem(std::to_string(unmarked) + " blocks of entries are not marked in the bitmap");
    if (h_.used != used_blocks * l_.block_size) {
      Problem("header says " + std::to_string(h_.used) + " bytes used, entries hold " +
              std::to_string(used_blocks * l_.block_size));
    }
    if (h_.free != h_.size - h_.used) Problem("used + free != size");
    if (h_.entry_count != live) {
      Problem("header counts " + std::to_string(h_.entry_count) + " entries, slots hold " +
              std::to_string(live));
    }
    if (live > p_.max_sequences_) Problem("more entries than max_sequences");
  }

  // A live chunk is the one chunk of its hash, its parent (unless it starts a chain)
  // is live and counts it, and it is in the eviction order exactly when it has no
  // children: the cached chunks stay prefix-closed.
  void CheckChunk(uint32_t i, uint64_t& in_heap) {
    const seg::Slot& s = p_.slots_[i];
    std::string who = "chunk " + PrefixHashToHex(s.chain_hash);
    ++chunks_;
    if (s.chain_blocks == 0) Problem(who + " has no position in its chain");
    if (p_.FindChunkLocked(s.chain_hash) != i) Problem(who + " is not reachable by its hash");
    if (s.chain_blocks > 1) {
      uint32_t parent = p_.FindChunkLocked(s.parent_hash);
      if (parent == seg::kNil) {
        Problem(who + " has lost its parent");
      } else {
        ++children_[parent];
      }
    }
    bool placed = s.heap_pos != seg::kNil && s.heap_pos < std::min(h_.heap_size, l_.slot_capacity);
    if (placed) ++in_heap;
    if (s.children == 0 && !placed) Problem(who + " (a leaf) is missing from the eviction order");
    if (s.children > 0 && placed) Problem(who + " has children but is in the eviction order");
  }

  void CheckChunkCounts() {
    if (h_.chunk_count != chunks_) {
      Problem("header counts " + std::to_string(h_.chunk_count) + " chunks, slots hold " +
              std::to_string(chunks_));
    }
    for (uint32_t i = 0; i < l_.slot_capacity; ++i) {
      const seg::Slot& s = p_.slots_[i];
      if (s.state != seg::kLive || s.kind != seg::kChunkSlot) continue;
      auto it = children_.find(i);
      uint32_t have = it == children_.end() ? 0 : it->second;
      if (s.children != have) {
        Problem("chunk " + PrefixHashToHex(s.chain_hash) + " counts " +
                std::to_string(s.children) + " children, " + std::to_string(have) + " are live");
      }
    }
  }

  void CheckIndexes() {
    std::unordered_map<uint64_t, uint32_t> ids;
    uint64_t in_heap = 0, live = 0, with_prefix = 0, with_chain = 0;
    for (uint32_t i = 0; i < l_.slot_capacity; ++i) {
      const seg::Slot& s = p_.slots_[i];
      if (s.state != seg::kLive) continue;
      if (s.kind == seg::kChunkSlot) {
        with_chain += s.chain_blocks > 0;
        CheckChunk(i, in_heap);
        continue;
      }
      ++live;
      with_prefix += s.prefix_len > 0;
      with_chain += s.chain_blocks > 0;
      std::string who = "entry " + std::to_string(s.sequence_id);
      if (!ids.emplace(s.sequence_id, i).second) Problem(who + " is live twice");
      if (p_.FindLocked(s.sequence_id) != i) Problem(who + " is not reachable by its id");
      if (s.heap_pos == seg::kNil || s.heap_pos >= std::min(h_.heap_size, l_.slot_capacity)) {
        Problem(who + " is missing from the eviction order");
      } else {
        ++in_heap;
      }
      if (s.prefix_len > 0) {
        bool found = false;
        p_.index_
            ->ForEach<SlotIndex::kPrefixChain>(s.prefix_hash,
                                               [&](uint32_t k) { return !(found = k == i); })
            .IgnoreError();  // damage is reported by CheckChains
        if (!found) Problem(who + " is not reachable by its prefix hash");
      }
      if (s.chain_blocks > 0) {
        bool found = false;
        p_.index_
            ->ForEach<SlotIndex::kBlockChain>(s.chain_hash,
                                              [&](uint32_t k) { return !(found = k == i); })
            .IgnoreError();  // damage is reported by CheckChains
        if (!found) Problem(who + " is not reachable by its block prefix");
      }
    }
    // Each index holds every entry it should exactly once: a chain that leads out of
    // range, loops, or links anything else is damage (walks stop at such a link).
    CheckChains(SlotIndex::kIdChain, "id", live);
    CheckChains(SlotIndex::kPrefixChain, "prefix", with_prefix);
    CheckChains(SlotIndex::kBlockChain, "block-prefix", with_chain);
    CheckChunkCounts();
    if (in_heap != h_.heap_size) {
      Problem("eviction order holds " + std::to_string(h_.heap_size) + " slots, expected " +
              std::to_string(in_heap));
    }
    if (!p_.heap_->Verify()) Problem("eviction order is out of order");
    uint64_t free_slots = 0;
    const SlotIndex& index = *p_.index_;
    uint32_t i = index.free_head();
    for (; i < l_.slot_capacity && free_slots <= l_.slot_capacity; i = index.NextFree(i)) {
      if (p_.slots_[i].state != seg::kFree) {
        Problem("slot " + std::to_string(i) + " is on the free list but in use");
        break;
      }
      ++free_slots;
    }
    if (i != seg::kNil && i >= l_.slot_capacity) {
      Problem("free slot list leads to slot " + std::to_string(i) + " of " +
              std::to_string(l_.slot_capacity));
    }
    uint64_t used_slots = 0;
    for (uint32_t k = 0; k < l_.slot_capacity; ++k) used_slots += p_.slots_[k].state != seg::kFree;
    if (free_slots + used_slots != l_.slot_capacity) Problem("free slot list is inconsistent");
  }

  void CheckChains(SlotIndex::Chain chain, const char* name, uint64_t expected) {
    const SlotIndex& index = *p_.index_;
    uint64_t linked = 0;
    bool intact = true;
    for (uint32_t b = 0; b < index.bucket_count(chain); ++b) {
      intact &= index
                    .ForEachInBucket(chain, b,
                                     [&](uint32_t i) {
                                       linked += p_.slots_[i].state == seg::kLive;
                                       return true;
                                     })
                    .ok();
    }
    if (!intact) {
      Problem(std::string(name) + " index has a cycle or a link out of range");
    } else if (linked != expected) {
      Problem(std::string(name) + " index links " + std::to_string(linked) + " entries, " +
              std::to_string(expected) + " expected");
    }
  }

  void CheckLeases(HealthReport& report) {
    std::vector<uint32_t> pins(l_.slot_capacity, 0);
    uint64_t held = 0;
    for (uint32_t l = 0; l < l_.lease_capacity; ++l) {
      const seg::Lease& lease = p_.leases_->at(l);
      if (lease.slot == seg::kNil) continue;
      if (lease.slot >= l_.slot_capacity) {
        Problem("lease " + std::to_string(l) + " names no slot");
        continue;
      }
      if (!p_.processes_->IsOwnRow(lease.process, lease.owner_generation)) {
        Problem("lease " + std::to_string(l) + " is held by no registered process");
      }
      pins[lease.slot]++;
      ++held;
    }
    for (uint32_t i = 0; i < l_.slot_capacity; ++i) {
      const seg::Slot& s = p_.slots_[i];
      if (s.pins != pins[i]) {
        Problem("entry " + std::to_string(s.sequence_id) + " counts " + std::to_string(s.pins) +
                " pins, leases say " + std::to_string(pins[i]));
      }
      if (s.pins > 0 && s.state == seg::kLive) report.pinned_entries++;
      if (s.state == seg::kRetired && s.pins == 0) {
        Problem("replaced entry " + std::to_string(s.sequence_id) + " was never freed");
      }
    }
    if (held != h_.live_pins) Problem("lease count does not match the header");
    // The free list: in range, only free leases, no cycle, and every free lease on it.
    uint64_t listed = 0;
    uint32_t l = h_.free_lease_head;
    for (; l < l_.lease_capacity && listed <= l_.lease_capacity; l = p_.leases_->at(l).next) {
      if (p_.leases_->at(l).slot != seg::kNil) {
        Problem("lease " + std::to_string(l) + " is on the free list but in use");
        break;
      }
      ++listed;
    }
    if (l != seg::kNil && l >= l_.lease_capacity) {
      Problem("free lease list leads to lease " + std::to_string(l) + " of " +
              std::to_string(l_.lease_capacity));
    } else if (listed + held != l_.lease_capacity) {
      Problem("free lease list holds " + std::to_string(listed) + " leases, " +
              std::to_string(l_.lease_capacity - held) + " are free");
    }
  }

  PoolHandle& p_;
  seg::Header& h_;
  const seg::Layout& l_;
  uint64_t chunks_ = 0;
  std::unordered_map<uint32_t, uint32_t> children_;
  std::vector<std::string>* problems_ = nullptr;
};

Result<HealthReport> PoolHandle::Health() {
  HealthReport report;
  uint64_t before;
  {
    Locked lk(*this, /*inspect=*/true);
    KVC_RETURN_IF_ERROR(lk.status());
    before = header_->recoveries;
  }
  // Reaps dead processes first (which rebuilds what they may have left half done).
  // A damaged header refuses Stats: then the figures are the header's as they are,
  // and the problems below say what is wrong with them.
  Result<PoolStats> stats = Stats();
  if (stats.ok()) report.stats = std::move(*stats);
  {
    Locked lk(*this, /*inspect=*/true);
    KVC_RETURN_IF_ERROR(lk.status());
    if (!stats.ok()) StatsLocked(report.stats);
    report.recovered_processes = header_->recoveries - before;
    PoolHealthChecker(*this).Check(report);
  }
  report.healthy = report.problems.empty();
  return report;
}

}  // namespace kvcache
