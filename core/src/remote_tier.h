// RemoteTier: one pool's remote (a Redis server) as one Manager uses it.
//
// Sending is never on the caller's path: puts (write-through) and evicted entries
// (write-back) are queued, bounded in entries and bytes (what does not fit is dropped
// and counted), and a sender thread at the lowest priority stores them, in pipelines
// of many items. A put queues a reference to its entry, which the sender reads when its
// turn comes, without the pool lock (an entry replaced meanwhile is sent once, as its
// latest version).
// Destroying the tier first flushes its queue for at most flush_deadline, the
// destroying thread sending it itself, so a process that puts and exits at once still
// sends what it put unless the remote is down or the machine dies. Fetching (read-
// through) is synchronous with the caller, bounded by the timeout, and fails at once
// while a broken connection waits out its backoff.
//
// Thread-safe. Lock order: fetch_mu_, then a pool's lock (FetchInto's target reserves in
// the pool), then mu_ (EnqueueEvicted runs under the pool lock); nothing here takes a
// pool lock while holding mu_, nor fetch_mu_ while holding a pool lock. fetch_mu_ comes
// before error_mu_ (a failed fetch notes its error); error_mu_ is a leaf.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvcache/entry_view.h"
#include "kvcache/manager.h"
#include "kvcache/remote.h"
#include "published_entry.h"
#include "redis_client.h"
#include "remote_format.h"
#include "thread_annotations.h"

namespace kvcache::remote {

struct TierOptions {
  std::string pool;
  RemoteConfig config;  // name_space resolved (never empty)
  std::chrono::milliseconds timeout{100};
  uint64_t piece_bytes = kDefaultPieceBytes;
  // Most items queued. A put or a stored chunk queues a reference (its bytes stay in
  // the pool until sent), about a hundred bytes: 65,536 of them are under 7 MiB, and
  // room for a 128k-token prompt stored as 16-token chunks (8,192) eight times over.
  size_t queue_entries = 65536;
  uint64_t queue_bytes = 256ull << 20;  // bytes of evicted entries held for sending
  std::chrono::milliseconds flush_deadline{3000};
};

// What the tier asks of its Manager.
struct TierHooks {
  // Reads the entries `refs` of the pool without its lock (PoolHandle::ReadEach): the
  // sender's way to read what puts queued, so a put never waits for the sender. An
  // error (the pool cannot be opened) leaves every outcome kUnsure.
  std::function<Status(std::span<const EntryRef> refs, const PublishedReader& read,
                       std::span<ReadOutcome> outcomes)>
      read_each;
  // Pins the entries `seqs` of the pool in one hold of its lock, without counting an
  // access: views[k] pins seqs[k], or is not valid() when that entry is gone. For the
  // entries read_each was unsure of.
  std::function<Result<std::vector<EntryView>>(std::span<const uint64_t> seqs)> pin_each;
  // Pins the chunk `hash` the same way; NotFound when it is gone.
  std::function<Result<PinnedChunk>(uint64_t hash)> pin_chunk;
  // Adds counts (and the latest failure, if any) to the catalog.
  std::function<Status(const RemoteCounters& delta, const std::string& last_error,
                       double last_error_at)>
      record;
};

class RemoteTier {
 public:
  // Parses the URL and reads the password from kRemotePasswordEnv. Connects lazily.
  static Result<std::unique_ptr<RemoteTier>> Start(TierOptions options, TierHooks hooks);
  ~RemoteTier();
  RemoteTier(const RemoteTier&) = delete;
  RemoteTier& operator=(const RemoteTier&) = delete;

  const TierOptions& options() const { return options_; }

  // Queues entry `seq` as published with `generation`: the sender pins it and stores
  // it (an entry replaced meanwhile is skipped: its replacement has its own turn).
  void EnqueuePut(uint64_t seq, uint64_t generation);
  // Queues a copy of an entry being evicted. Called under the pool lock: never blocks
  // on the remote and never throws; what does not fit the queue is dropped.
  void EnqueueEvicted(uint64_t seq, uint64_t token_count, int32_t priority,
                      std::span<const std::byte> prefix_tokens, std::string_view metadata,
                      std::span<const std::byte> data) noexcept;

  // Queues chunk `hash` as stored with `generation`, like EnqueuePut.
  void EnqueueChunk(uint64_t hash, uint64_t generation);
  // Queues a copy of a chunk being evicted, like EnqueueEvicted. `tokens` are u32 LE.
  void EnqueueEvictedChunk(uint64_t hash, uint64_t parent, uint32_t position,
                           std::span<const std::byte> tokens, std::string_view name_space,
                           std::span<const std::byte> data) noexcept;

  // The chunks a match asks for: chunk j (j < hashes.size()) is H = hashes[j] at chain
  // position first_position + j, holding tokens [j * chunk_tokens, (j + 1) *
  // chunk_tokens) of `tokens`; chunk 0's parent is `parent`.
  struct ChunkAsk {
    std::string_view name_space;  // the chunk namespace
    uint64_t seed = 0;            // ChunkChainSeed(name_space)
    uint64_t parent = 0;
    uint32_t first_position = 1;
    uint32_t chunk_tokens = 0;
    std::span<const uint64_t> hashes;
    std::span<const uint32_t> tokens;
  };
  // The leading chunks of `ask` the remote has, in order, in one or two pipelined round
  // trips that end by `deadline`. Each is checked: intact (pieces and checksums), and
  // the chunk asked for (hash, parent, position, tokens, namespace); the first that is
  // missing, refused (counted) or not read in time ends the answer. *complete says
  // whether every chunk asked for is in it.
  std::vector<ChunkRecord> FetchChunks(const ChunkAsk& ask,
                                       std::chrono::steady_clock::time_point deadline,
                                       bool* complete);

  // The entry `seq` from the remote, checked. NotFound when the remote does not have it
  // (whole); Corruption when what it has is damaged or foreign (counted as refused);
  // IOError when it did not answer in time or is down.
  Result<Record> Fetch(uint64_t seq);

  // An entry being fetched by FetchInto: its attributes, read before its payload.
  struct Head {
    uint64_t token_count = 0;
    int32_t priority = 0;
    std::vector<uint32_t> prefix_tokens;
    std::string metadata;
    uint64_t data_bytes = 0;
  };
  // Where FetchInto puts an entry's payload: given its head, a span of head.data_bytes
  // bytes (e.g. a reservation in the pool), or an empty one for FetchInto to put it in
  // *held. Called at most once; what it returns must stay valid until FetchInto returns.
  using PayloadTarget = std::function<std::span<std::byte>(const Head& head)>;
  // As Fetch, the payload read from the socket straight into what `target` gives (one
  // copy, by the kernel) and checked there: the head and what was read are only good
  // when FetchInto returns Ok. Otherwise (Fetch's errors) the caller must not use or
  // publish what was read into its target. An entry in several pieces is read whole
  // and checked before `target` is called.
  Result<Head> FetchInto(uint64_t seq, const PayloadTarget& target,
                         std::vector<std::byte>* held);
  // Asks the remote for a PING over a fresh connection: whether it answers now.
  Status Probe();
  // Sends what is queued from the calling thread until the queue is sent, the remote
  // fails (what is left stays queued for the sender thread), or `deadline`.
  void Flush(std::chrono::steady_clock::time_point deadline);

  // Counts of this tier not yet added to the catalog.
  RemoteCounters Unrecorded() const;
  // This tier's latest failure not yet added to the catalog, and when (0: none).
  std::pair<std::string, double> UnrecordedError() const;

 private:
  struct Item {
    uint64_t seq = 0;                 // an entry's id, or a chunk's hash
    uint64_t generation = 0;          // put reference: the published generation
    std::vector<std::string> pieces;  // evicted entry: its values; empty for a put
    uint64_t bytes = 0;
    bool chunk = false;
    std::string key;                  // evicted chunk: its base key
  };
  // Queues an evicted entry's or chunk's values made by `encode`.
  template <typename Encode>
  void EnqueueEncoded(Item item, Encode encode) noexcept;
  // Encodes the chunk `item` refers to; false when it is gone or replaced.
  bool EncodeChunkRef(Item& item, std::string* base, std::vector<std::string>* pieces);
  // An item's values ready to send: its base key and pieces (the item's own, or
  // encoded from the entry or chunk it refers to, in `encoded`).
  struct Outgoing {
    std::string base;
    std::vector<std::string> encoded;
    const std::vector<std::string>* own = nullptr;  // the item's pieces, if it has them
    const std::vector<std::string>& pieces() const { return own != nullptr ? *own : encoded; }
  };
  RemoteTier(TierOptions options, TierHooks hooks, RedisClient::Options client);
  void Run();
  // What the sender read of the entries that batch[from, from + kReadAhead) refer to
  // (puts' items), index k - from for item k: each one's values, encoded, when it was
  // read without the pool lock (kRead); otherwise, when that read was unsure, its pin,
  // taken with the others' in one hold of the pool lock (not valid() when it is gone).
  struct Ahead {
    std::vector<ReadOutcome> outcomes;
    std::vector<std::vector<std::string>> encoded;
    std::vector<EntryView> views;
    size_t size() const { return outcomes.size(); }
  };
  Ahead ReadAhead(const std::vector<Item>& batch, size_t from);
  // Prepares `item` for sending; false when there is nothing to send (the entry or
  // chunk it refers to is gone, counted as dropped, or was replaced). For a put's item,
  // ahead.*[a] is what ReadAhead learned of its entry; unused for the others.
  bool Prepare(Item& item, Ahead& ahead, size_t a, Outgoing* out);
  // Stores batch[first, ...) in one pipeline of up to about kPipelineBytes, and returns
  // the end of the items it is done with (sent, skipped, or refused and counted). On a
  // broken connection it returns `first`, with *retry when those items may be tried
  // again once the backoff passes (otherwise they are dropped and counted).
  size_t SendSome(std::vector<Item>& batch, size_t first, bool* retry);
  // Takes up to kBatchItems queued items into `batch` and sends them, with mu_ released
  // meanwhile (sending_ marks the connection as in use); what could not be sent goes
  // back to the front of the queue. REQUIRES: !sending_.
  void SendBatchLocked(std::vector<Item>& batch) REQUIRES(mu_);
  // Fetch's checks of an entry whose piece 0 is `first`, and the fetch of its other
  // pieces (fetch_mu_ is taken for that).
  Result<Record> FetchRest(const std::string& base, std::string first);
  void NoteFailure(const Status& s);
  void RecordCounters();
  // Drops every queued item, counting them.
  void DropQueuedLocked() REQUIRES(mu_);

  const TierOptions options_;
  const TierHooks hooks_;
  const std::string base_prefix_;

  // Guards the send queue and the sender's state. Taken under a pool's lock (by
  // EnqueueEvicted); never held while sending, fetching or recording.
  Mutex mu_;
  CondVar wake_;  // the sender: work, a flush or stop
  CondVar idle_;  // flushers: the queue became empty or gave up
  std::deque<Item> queue_ GUARDED_BY(mu_);
  uint64_t queued_bytes_ GUARDED_BY(mu_) = 0;
  bool sending_ GUARDED_BY(mu_) = false;  // items are out of the queue
  // The sender waits for work: an enqueue signals it. While it is busy it takes what
  // was queued meanwhile in its next batch, so a put then pays no wakeup.
  bool sender_waiting_ GUARDED_BY(mu_) = false;
  int flushers_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  // Used by one thread at a time: the one that set sending_ (the sender thread, or a
  // flushing one), or, with mu_ held, any while sending_ is false.
  RedisClient sender_client_;

  // Serialises fetches over the one fetch connection; held across the round trips.
  // Before error_mu_.
  Mutex fetch_mu_;
  RedisClient fetch_client_ GUARDED_BY(fetch_mu_);
  // What Probe connects with; never changes.
  const RedisClient::Options client_options_;

  // Counts since they were last recorded.
  std::atomic<uint64_t> sent_{0}, dropped_{0}, failures_{0}, hits_{0}, misses_{0}, refused_{0};
  // A leaf lock around the last failure.
  mutable Mutex error_mu_;
  std::string last_error_ GUARDED_BY(error_mu_);  // cleared once recorded
  double last_error_at_ GUARDED_BY(error_mu_) = 0;

  std::thread sender_;
};

}  // namespace kvcache::remote
