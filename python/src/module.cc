// kvcache._native: kvcache::Manager for Python. The kvcache package re-exports it.
//
// Copies and lock waits run without the GIL, so threads sharing one Manager (which is
// thread-safe) proceed in parallel; buffers passed in stay exported (so unresizable)
// while their bytes are copied.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"
#include "handles.h"
#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "kvcache/report.h"
#include "kvcache/size.h"
#include "kvcache/snapshot.h"

namespace kvcache::python {
namespace {

// A C-contiguous byte view of any object with the buffer protocol, held until scope
// exit.
class InputBuffer {
 public:
  explicit InputBuffer(py::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &buffer_, PyBUF_C_CONTIGUOUS) != 0) {
      throw py::error_already_set();
    }
  }
  ~InputBuffer() { PyBuffer_Release(&buffer_); }
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;
  std::span<const std::byte> bytes() const {
    return {static_cast<const std::byte*>(buffer_.buf), static_cast<size_t>(buffer_.len)};
  }

 private:
  Py_buffer buffer_{};
};

// metadata: None, JSON text, or anything json.dumps accepts (a dict, a list...).
std::string MetadataText(const py::object& metadata) {
  if (metadata.is_none()) return {};
  if (py::isinstance<py::str>(metadata)) return metadata.cast<std::string>();
  return py::module_::import("json").attr("dumps")(metadata).cast<std::string>();
}

PutOptions MakePutOptions(const std::optional<std::vector<uint32_t>>& prefix_tokens,
                          int32_t priority, const py::object& metadata) {
  PutOptions options;
  if (prefix_tokens) options.prefix_tokens = *prefix_tokens;
  options.priority = priority;
  options.metadata = MetadataText(metadata);
  return options;
}

py::dict ConfigDict(const PoolConfig& c) {
  py::dict d;
  d["name"] = c.name;
  d["size_bytes"] = c.size_bytes;
  d["policy"] = std::string(PolicyName(c.policy));
  d["tier"] = std::string(TierName(c.tier));
  d["max_sequences"] = c.max_sequences;
  d["block_size"] = c.block_size;
  d["prefix_block_tokens"] = c.prefix_block_tokens;
  d["mode"] = c.mode;
  return d;
}

uint64_t SizeOf(const py::object& size) {
  if (py::isinstance<py::str>(size)) return Take(ParseSize(size.cast<std::string>()));
  if (!py::isinstance<py::int_>(size) || size.cast<py::int_>() < py::int_(0)) {
    Raise(Status::InvalidArgument("size must be a positive int or a string like '512M'"));
  }
  return size.cast<uint64_t>();
}

// Runs `fn` without the GIL and returns its Status or Result; raises on failure (with
// the GIL back).
template <typename Fn>
auto Unlocked(Fn&& fn) {
  std::optional<decltype(fn())> out;
  {
    py::gil_scoped_release unlocked;
    out.emplace(fn());
  }
  if constexpr (std::is_same_v<decltype(fn()), Status>) {
    Check(*out);
  } else {
    return Take(std::move(*out));
  }
}

class PyManager {
 public:
  PyManager(std::optional<std::string> home, std::optional<std::string> shm_prefix,
            std::optional<std::string> catalog) {
    ManagerOptions o;
    o.home = home.value_or("");
    o.shm_prefix = shm_prefix.value_or("");
    o.catalog_path = catalog.value_or("");
    manager_ = std::make_unique<Manager>(std::move(o));
  }

  Manager& m() { return *manager_; }

 private:
  std::unique_ptr<Manager> manager_;
};

py::bytes BytesOfView(EntryView& view) {
  std::span<const std::byte> data = view.data();
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(data.size()));
  if (out == nullptr) throw py::error_already_set();
  {
    py::gil_scoped_release unlocked;
    if (!data.empty()) std::memcpy(PyBytes_AS_STRING(out), data.data(), data.size());
  }
  return py::reinterpret_steal<py::bytes>(out);
}

void BindTypes(py::module_& m) {
  py::class_<EntryInfo>(m, "EntryInfo", "An entry's metadata (not its bytes).")
      .def_readonly("sequence_id", &EntryInfo::sequence_id)
      .def_readonly("size_bytes", &EntryInfo::size_bytes)
      .def_readonly("token_count", &EntryInfo::token_count)
      .def_readonly("prefix_hash", &EntryInfo::prefix_hash)
      .def_readonly("prefix_length", &EntryInfo::prefix_length)
      .def_readonly("priority", &EntryInfo::priority)
      .def_readonly("created", &EntryInfo::created)
      .def_readonly("last_accessed", &EntryInfo::last_accessed)
      .def_readonly("access_count", &EntryInfo::access_count)
      .def_readonly("generation", &EntryInfo::generation)
      .def_readonly("offset", &EntryInfo::offset)
      .def_readonly("metadata", &EntryInfo::metadata)
      .def("__repr__", [](const EntryInfo& e) {
        return "EntryInfo(sequence_id=" + std::to_string(e.sequence_id) +
               ", size_bytes=" + std::to_string(e.size_bytes) +
               ", token_count=" + std::to_string(e.token_count) + ")";
      });

  py::class_<PoolStats>(m, "PoolStats", "A pool's use and counters.")
      .def_property_readonly("config", [](const PoolStats& s) { return ConfigDict(s.config); })
      .def_property_readonly("name", [](const PoolStats& s) { return s.config.name; })
      .def_readonly("shm_name", &PoolStats::shm_name)
      .def_readonly("loaded", &PoolStats::loaded)
      .def_readonly("size", &PoolStats::size)
      .def_readonly("used", &PoolStats::used)
      .def_readonly("free", &PoolStats::free)
      .def_readonly("block_count", &PoolStats::block_count)
      .def_readonly("entry_count", &PoolStats::entry_count)
      .def_readonly("hits", &PoolStats::hits)
      .def_readonly("misses", &PoolStats::misses)
      .def_readonly("evictions", &PoolStats::evictions)
      .def_readonly("puts", &PoolStats::puts)
      .def_readonly("created", &PoolStats::created)
      .def_readonly("modified", &PoolStats::modified)
      .def_readonly("attached", &PoolStats::attached)
      .def_readonly("segment_bytes", &PoolStats::segment_bytes)
      .def_readonly("chunk_count", &PoolStats::chunk_count)
      .def_readonly("chunk_tokens_asked", &PoolStats::chunk_tokens_asked)
      .def_readonly("chunk_tokens_matched", &PoolStats::chunk_tokens_matched)
      .def_property_readonly("chunk_token_hit_rate", &PoolStats::chunk_token_hit_rate)
      .def_readonly("error", &PoolStats::error)
      .def_property_readonly("hit_rate", &PoolStats::hit_rate);

  py::class_<HealthReport>(m, "HealthReport", "The result of a pool's health check.")
      .def_readonly("stats", &HealthReport::stats)
      .def_readonly("healthy", &HealthReport::healthy)
      .def_readonly("problems", &HealthReport::problems)
      .def_readonly("pinned_entries", &HealthReport::pinned_entries)
      .def_readonly("recovered_processes", &HealthReport::recovered_processes)
      .def_property_readonly("processes", [](const HealthReport& h) {
        py::list out;
        for (const AttachedProcess& p : h.processes) out.append(py::make_tuple(p.pid, p.attached_at));
        return out;
      });
}

void BindManager(py::module_& m) {
  using PyM = PyManager;
  using Tokens = std::optional<std::vector<uint32_t>>;
  py::class_<PyM>(m, "Manager", R"doc(
A handle on the pools of one catalog. Safe to share between threads; every process
(multiprocessing workers too) makes its own on the same pools.

Manager(home=None, shm_prefix=None, catalog=None): home defaults to $CORTEX_HOME, else
~/.cortex; shm_prefix to $CORTEX_SHM_PREFIX, else "cortex_kv_"; catalog (the SQLite
file) to <home>/kv_cache.db. Failures raise kvcache.Error subclasses.
)doc")
      .def(py::init<std::optional<std::string>, std::optional<std::string>,
                    std::optional<std::string>>(),
           py::arg("home") = py::none(), py::arg("shm_prefix") = py::none(),
           py::arg("catalog") = py::none())
      .def_property_readonly("home", [](PyM& s) { return s.m().options().home; })
      .def_property_readonly("shm_prefix", [](PyM& s) { return s.m().options().shm_prefix; })
      .def_property_readonly("catalog_path",
                             [](PyM& s) { return s.m().options().catalog_path; })
      .def("shm_name", [](PyM& s, const std::string& pool) { return s.m().ShmName(pool); })
      .def("snapshot_path",
           [](PyM& s, const std::string& pool) { return s.m().DefaultSnapshotPath(pool); })
      // ---- pools ----
      .def(
          "create_pool",
          [](PyM& s, const std::string& name, const py::object& size, const std::string& policy,
             const std::string& tier, uint32_t max_sequences, uint32_t block_size,
             uint32_t prefix_block_tokens, uint32_t mode) {
            PoolConfig c;
            c.name = name;
            c.size_bytes = SizeOf(size);
            c.policy = Take(ParsePolicy(policy));
            c.tier = Take(ParseTier(tier));
            c.max_sequences = max_sequences;
            c.block_size = block_size;
            c.prefix_block_tokens = prefix_block_tokens;
            c.mode = mode;
            Unlocked([&] { return s.m().CreatePool(c); });
          },
          py::arg("name"), py::arg("size"), py::arg("policy") = "lru", py::arg("tier") = "cpu",
          py::arg("max_sequences") = kDefaultMaxSequences,
          py::arg("block_size") = kDefaultBlockSize,
          py::arg("prefix_block_tokens") = kDefaultPrefixBlockTokens, py::arg("mode") = 0600,
          "Creates a pool (size: bytes or '512M'). AlreadyExists for a duplicate.")
      .def("destroy_pool",
           [](PyM& s, const std::string& pool) { Unlocked([&] { return s.m().DestroyPool(pool); }); })
      .def(
          "attach",
          [](PyM& s, const std::string& pool, std::optional<int> pid) {
            pid_t p = pid ? *pid : getpid();
            Unlocked([&] { return s.m().Attach(pool, p); });
          },
          py::arg("pool"), py::arg("pid") = py::none())
      .def(
          "detach",
          [](PyM& s, const std::string& pool, std::optional<int> pid) {
            pid_t p = pid ? *pid : getpid();
            Unlocked([&] { return s.m().Detach(pool, p); });
          },
          py::arg("pool"), py::arg("pid") = py::none())
      .def("pools", [](PyM& s) { return Unlocked([&] { return s.m().ListPools(); }); },
           "Names of the catalog's pools, sorted.")
      .def("config",
           [](PyM& s, const std::string& pool) {
             return ConfigDict(Unlocked([&] { return s.m().GetConfig(pool); }));
           })
      // ---- entries ----
      .def(
          "put",
          [](PyM& s, const std::string& pool, uint64_t seq, py::handle data,
             uint64_t token_count, const Tokens& prefix_tokens, int32_t priority,
             const py::object& metadata) {
            PutOptions options = MakePutOptions(prefix_tokens, priority, metadata);
            InputBuffer in(data);
            Unlocked([&] { return s.m().Put(pool, seq, in.bytes(), token_count, options); });
          },
          py::arg("pool"), py::arg("seq"), py::arg("data"), py::arg("token_count") = 0,
          py::arg("prefix_tokens") = py::none(), py::arg("priority") = 0,
          py::arg("metadata") = py::none(),
          "Stores any C-contiguous buffer (bytes, bytearray, memoryview, numpy array, "
          "array.array) under seq, copying it once into the pool; replaces an entry of "
          "that id. NoSpace when it cannot fit.")
      .def(
          "reserve",
          [](PyM& s, const std::string& pool, uint64_t seq, size_t nbytes, uint64_t token_count,
             const Tokens& prefix_tokens, int32_t priority, const py::object& metadata) {
            PutOptions options = MakePutOptions(prefix_tokens, priority, metadata);
            return Reservation(Unlocked(
                [&] { return s.m().Reserve(pool, seq, nbytes, token_count, options); }));
          },
          py::arg("pool"), py::arg("seq"), py::arg("nbytes"), py::arg("token_count") = 0,
          py::arg("prefix_tokens") = py::none(), py::arg("priority") = 0,
          py::arg("metadata") = py::none(),
          "Reserves nbytes for seq; use as `with m.reserve(...) as mv:` and write mv.")
      .def("get",
           [](PyM& s, const std::string& pool, uint64_t seq) {
             EntryView view = Unlocked([&] { return s.m().View(pool, seq); });
             return BytesOfView(view);
           },
           py::arg("pool"), py::arg("seq"), "The entry's bytes (one copy). NotFound if absent.")
      .def("view",
           [](PyM& s, const std::string& pool, uint64_t seq) {
             return View(Unlocked([&] { return s.m().View(pool, seq); }));
           },
           py::arg("pool"), py::arg("seq"),
           "Pins the entry: `with m.view(pool, seq) as mv:` gives a read-only memoryview "
           "into the pool.")
      .def("stat",
           [](PyM& s, const std::string& pool, uint64_t seq) {
             return Unlocked([&] { return s.m().Stat(pool, seq); });
           },
           py::arg("pool"), py::arg("seq"), "Metadata only; counts nothing.")
      .def("prefix_tokens",
           [](PyM& s, const std::string& pool, uint64_t seq) {
             EntryView view = Unlocked([&] { return s.m().Pin(pool, seq); });
             return view.prefix_tokens();
           },
           py::arg("pool"), py::arg("seq"))
      .def("get_by_prefix",
           [](PyM& s, const std::string& pool, const std::vector<uint32_t>& tokens) {
             std::vector<EntryView> views =
                 Unlocked([&] { return s.m().GetByPrefix(pool, tokens); });
             py::list out;
             for (EntryView& v : views) out.append(py::make_tuple(v.info(), BytesOfView(v)));
             return out;
           },
           py::arg("pool"), py::arg("tokens"),
           "[(EntryInfo, bytes)] of the entries whose prefix is exactly `tokens`.")
      .def("longest_prefix",
           [](PyM& s, const std::string& pool,
              const std::vector<uint32_t>& tokens) -> py::object {
             Result<PrefixMatch> match{Status::NotFound("")};
             {
               py::gil_scoped_release unlocked;
               match = s.m().LongestPrefix(pool, tokens);
             }
             // No qualifying entry is an answer, not an error; a missing pool still raises.
             if (!match.ok() && match.status().code() == Code::kNotFound &&
                 match.status().message().rfind("no entry", 0) == 0) {
               return py::none();
             }
             PrefixMatch found = Take(std::move(match));
             return py::make_tuple(found.entry, found.matched_tokens);
           },
           py::arg("pool"), py::arg("tokens"),
           "(EntryInfo, matched_tokens) of the entry to reuse for the prompt `tokens`, or "
           "None.")
      // ---- token chunks ----
      .def(
          "store_chunks",
          [](PyM& s, const std::string& pool, const std::vector<uint32_t>& tokens,
             const py::sequence& chunks, const std::string& name_space) {
            std::vector<std::unique_ptr<InputBuffer>> held;
            std::vector<std::span<const std::byte>> spans;
            for (py::handle chunk : chunks) {
              held.push_back(std::make_unique<InputBuffer>(chunk));
              spans.push_back(held.back()->bytes());
            }
            ChunkStoreResult r =
                Unlocked([&] { return s.m().StoreChunks(pool, name_space, tokens, spans); });
            py::dict out;
            out["chunks"] = r.chunks;
            out["stored"] = r.stored;
            out["present"] = r.present;
            return out;
          },
          py::arg("pool"), py::arg("tokens"), py::arg("chunks"), py::arg("namespace") = "",
          "Stores chunks[i] (any C-contiguous buffer) as chunk i of `tokens` (the pool's "
          "chunk size each; a partial last chunk of tokens is not stored) under the "
          "namespace. Chunks already cached are not copied again. Returns {'chunks', "
          "'stored', 'present'}.")
      .def(
          "match",
          [](PyM& s, const std::string& pool, const std::vector<uint32_t>& tokens,
             const std::string& name_space) {
            ChunkMatch match = Unlocked([&] { return s.m().Match(pool, name_space, tokens); });
            py::list views;
            const uint64_t matched = match.matched_tokens;  // TakeViews empties the match
            for (EntryView& v : match.TakeViews()) views.append(View(std::move(v)));
            return py::make_tuple(matched, views);
          },
          py::arg("pool"), py::arg("tokens"), py::arg("namespace") = "",
          "(matched_tokens, [View]): how many leading tokens of the prompt are cached as "
          "chunks under the namespace, and those chunks, pinned until each View is "
          "released (or used as `with view as mv:`).")
      .def("remove",
           [](PyM& s, const std::string& pool, uint64_t seq) {
             Unlocked([&] { return s.m().Remove(pool, seq); });
           },
           py::arg("pool"), py::arg("seq"))
      .def("clear",
           [](PyM& s, const std::string& pool) { return Unlocked([&] { return s.m().Clear(pool); }); })
      .def("evict",
           [](PyM& s, const std::string& pool, double percent) {
             return Unlocked([&] { return s.m().Evict(pool, percent); });
           },
           py::arg("pool"), py::arg("percent") = 25.0, "Evicts percent of the entries by policy.")
      .def("entries",
           [](PyM& s, const std::string& pool) {
             return Unlocked([&] { return s.m().Entries(pool); });
           })
      // ---- observation ----
      .def("stats",
           [](PyM& s, const std::string& pool) { return Unlocked([&] { return s.m().Stats(pool); }); })
      .def("stats_all", [](PyM& s) { return Unlocked([&] { return s.m().StatsAll(); }); })
      .def("health",
           [](PyM& s, const std::string& pool) {
             return Unlocked([&] { return s.m().Health(pool); });
           })
      .def("status_text",
           [](PyM& s, std::optional<std::string> pool) {
             std::vector<PoolStats> all;
             if (pool) {
               all.push_back(Unlocked([&] { return s.m().Stats(*pool); }));
             } else {
               all = Unlocked([&] { return s.m().StatsAll(); });
             }
             return FormatStatusTable(all);
           },
           py::arg("pool") = py::none(), "The `cortex cache status` table.")
      .def("entries_text",
           [](PyM& s, const std::string& pool) {
             return FormatEntries(pool, Unlocked([&] { return s.m().Entries(pool); }));
           })
      .def("health_text",
           [](PyM& s, const std::string& pool) {
             return FormatHealth(Unlocked([&] { return s.m().Health(pool); }));
           })
      // ---- snapshots ----
      .def(
          "persist",
          [](PyM& s, const std::string& pool, std::optional<std::string> path) {
            PersistOptions o;
            o.path = path.value_or("");
            PersistResult r = Unlocked([&] { return PersistPool(s.m(), pool, o); });
            py::dict d;
            d["path"] = r.path;
            d["entries"] = r.entries;
            d["bytes"] = r.bytes;
            return d;
          },
          py::arg("pool"), py::arg("path") = py::none(),
          "Writes a snapshot (default <home>/kv_persist/<pool>.cache).")
      .def(
          "restore",
          [](PyM& s, const std::string& pool, std::optional<std::string> path, bool merge) {
            RestoreOptions o;
            o.path = path.value_or("");
            o.merge = merge;
            RestoreResult r = Unlocked([&] { return RestorePool(s.m(), pool, o); });
            py::dict d;
            d["path"] = r.path;
            d["entries"] = r.entries;
            d["bytes"] = r.bytes;
            d["created_pool"] = r.created_pool;
            d["replaced"] = r.replaced;
            return d;
          },
          py::arg("pool"), py::arg("path") = py::none(), py::arg("merge") = false);
}

}  // namespace
}  // namespace kvcache::python

PYBIND11_MODULE(_native, m) {
  using namespace kvcache;          // NOLINT
  using namespace kvcache::python;  // NOLINT
  m.doc() = "kvcache: KV-cache pools in shared memory (native part)";
  BindTypes(m);
  BindHandles(m);
  BindManager(m);
  m.def("parse_size", [](const std::string& text) { return Take(ParseSize(text)); },
        "'16G', '512M', '1.5G', '1024K', '4096', '1T' -> bytes (powers of 1024).");
  m.def("prefix_hash",
        [](const std::vector<uint32_t>& tokens) { return PrefixHash(tokens); },
        "The 16 hex digits that identify a prefix of tokens.");
  m.def("format_size", [](uint64_t bytes) { return FormatSizeLong(bytes); });
}
