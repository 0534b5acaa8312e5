// PoolHandle::Health: recovers dead processes, then verifies every invariant of the
// segment and reports each violation in words.
#include <cstring>
#include <unordered_map>

#include "pool_handle.h"

namespace kvcache {

class PoolHealthChecker {
 public:
  explicit PoolHealthChecker(PoolHandle& pool) : p_(pool), h_(*pool.header_) {}

  // REQUIRES: the pool lock.
  void Check(HealthReport& report) {
    problems_ = &report.problems;
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
    std::vector<uint64_t> expected((h_.block_count + 63) / 64, 0);
    std::vector<uint32_t> owner(h_.block_count, seg::kNil);
    uint64_t live = 0, used_blocks = 0;
    for (uint32_t i = 0; i < h_.slot_capacity; ++i) {
      const seg::Slot& s = p_.slots_[i];
      if (s.state > seg::kRetired) {
        Problem("slot " + std::to_string(i) + " has unknown state " + std::to_string(s.state));
        continue;
      }
      if (s.state == seg::kFree) continue;
      if (s.state == seg::kLive) ++live;
      if (s.first_block > h_.block_count || s.extent_blocks > h_.block_count - s.first_block) {
        Problem("entry " + std::to_string(s.sequence_id) + " lies outside the data region");
        continue;
      }
      uint64_t payload = s.size_bytes + 4 * uint64_t{s.prefix_len} + s.metadata_len;
      if (payload > s.extent_blocks * h_.block_size) {
        Problem("entry " + std::to_string(s.sequence_id) + " is larger than its extent");
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
    for (uint64_t b = 0; b < h_.block_count; ++b) {
      bool want = (expected[b >> 6] >> (b & 63)) & 1;
      bool have = p_.bitmap_->IsSet(b);
      unowned += have && !want;
      unmarked += want && !have;
    }
    if (unowned) Problem("bitmap marks " + std::to_string(unowned) + " blocks no entry owns");
    if (unmarked) Problem(std::to_string(unmarked) + " blocks of entries are not marked in the bitmap");
    if (h_.used != used_blocks * h_.block_size) {
      Problem("header says " + std::to_string(h_.used) + " bytes used, entries hold " +
              std::to_string(used_blocks * h_.block_size));
    }
    if (h_.free != h_.size - h_.used) Problem("used + free != size");
    if (h_.entry_count != live) {
      Problem("header counts " + std::to_string(h_.entry_count) + " entries, slots hold " +
              std::to_string(live));
    }
    if (live > h_.max_sequences) Problem("more entries than max_sequences");
  }

  void CheckIndexes() {
    std::unordered_map<uint64_t, uint32_t> ids;
    uint64_t in_heap = 0;
    for (uint32_t i = 0; i < h_.slot_capacity; ++i) {
      const seg::Slot& s = p_.slots_[i];
      if (s.state != seg::kLive) continue;
      std::string who = "entry " + std::to_string(s.sequence_id);
      if (!ids.emplace(s.sequence_id, i).second) Problem(who + " is live twice");
      if (p_.FindLocked(s.sequence_id) != i) Problem(who + " is not reachable by its id");
      if (s.heap_pos == seg::kNil || s.heap_pos >= h_.heap_size) {
        Problem(who + " is missing from the eviction order");
      } else {
        ++in_heap;
      }
      if (s.prefix_len > 0) {
        bool found = false;
        seg::ForEachInChain<&seg::Slot::prefix_next>(
            p_.slots_, h_.slot_capacity,
            p_.prefix_buckets_[seg::BucketOf(s.prefix_hash, h_.prefix_bucket_count)],
            [&](uint32_t k) { return !(found = k == i); });
        if (!found) Problem(who + " is not reachable by its prefix hash");
      }
      if (s.chain_blocks > 0) {
        bool found = false;
        seg::ForEachInChain<&seg::Slot::chain_next>(
            p_.slots_, h_.slot_capacity,
            p_.chain_buckets_[seg::BucketOf(s.chain_hash, h_.chain_bucket_count)],
            [&](uint32_t k) { return !(found = k == i); });
        if (!found) Problem(who + " is not reachable by its block prefix");
      }
    }
    if (in_heap != h_.heap_size) {
      Problem("eviction order holds " + std::to_string(h_.heap_size) + " slots, expected " +
              std::to_string(in_heap));
    }
    if (h_.heap_size > h_.slot_capacity || !p_.heap_->Verify(h_.slot_capacity)) {
      Problem("eviction order is out of order");
    }
    uint64_t free_slots = 0;
    for (uint32_t i = h_.free_slot_head;
         i != seg::kNil && i < h_.slot_capacity && free_slots <= h_.slot_capacity;
         i = p_.slots_[i].id_next) {
      if (p_.slots_[i].state != seg::kFree) {
        Problem("slot " + std::to_string(i) + " is on the free list but in use");
        break;
      }
      ++free_slots;
    }
    uint64_t used_slots = 0;
    for (uint32_t i = 0; i < h_.slot_capacity; ++i) used_slots += p_.slots_[i].state != seg::kFree;
    if (free_slots + used_slots != h_.slot_capacity) Problem("free slot list is inconsistent");
  }

  void CheckLeases(HealthReport& report) {
    std::vector<uint32_t> pins(h_.slot_capacity, 0);
    uint64_t held = 0;
    for (uint32_t l = 0; l < h_.lease_capacity; ++l) {
      const seg::Lease& lease = p_.leases_->at(l);
      if (lease.slot == seg::kNil) continue;
      if (lease.slot >= h_.slot_capacity) {
        Problem("lease " + std::to_string(l) + " names no slot");
        continue;
      }
      if (!p_.processes_->IsOwnRow(lease.process, lease.owner_generation)) {
        Problem("lease " + std::to_string(l) + " is held by no registered process");
      }
      pins[lease.slot]++;
      ++held;
    }
    for (uint32_t i = 0; i < h_.slot_capacity; ++i) {
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
  }

  PoolHandle& p_;
  seg::Header& h_;
  std::vector<std::string>* problems_ = nullptr;
};

Result<HealthReport> PoolHandle::Health() {
  HealthReport report;
  uint64_t before;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    before = header_->recoveries;
  }
  KVC_ASSIGN_OR_RETURN(report.stats, Stats());  // reaps dead processes first
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    report.recovered_processes = header_->recoveries - before;
    PoolHealthChecker(*this).Check(report);
  }
  report.healthy = report.problems.empty();
  return report;
}

}  // namespace kvcache
