"""The original KV-cache manager's Python API, over the kvcache core.

Callers of the original run unchanged: the names, signatures, defaults, field names and
return conventions are the original's (bools and None, never exceptions, for the
manager's methods). The pools are the same shared-memory pools `cortex cache ...`, the
kvcachefs mount and the native `kvcache` module use.

Where the original's behaviour was a bug, the fix is kept:
- Pools are shared across processes: a pool made by another process (or the CLI) is
  found by name; the manager attaches it on first use, no attach_pool needed.
- The free list covers the whole pool (the original's fixed 4 KiB bitmap stopped at
  128 MiB of blocks); HEADER_SIZE and BLOCK_SIZE stay exported for callers that read
  them, but the segment layout is the core's (docs/formats.md).
- persist writes the core's versioned, checksummed snapshot, never a pickle. restore
  also reads the original's pickle snapshots, with an unpickler that refuses every
  global (no code in the file runs): see kvcache.import_original.
- Failures are logged (logging, this module's logger) with the core's message instead
  of being silently dropped.
- The home directory honours $CORTEX_HOME (default ~/.cortex) like the CLI, and a
  missing db_path means the catalog in that home, resolved when the manager is made.
"""

import dataclasses
import enum
import json
import logging
import os
import sys

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import kvcache
from kvcache import import_original

logger = logging.getLogger(__name__)


def _home() -> Path:
    env = os.environ.get("CORTEX_HOME")
    return Path(env) if env else Path.home() / ".cortex"


CORTEX_DIR = _home()
CORTEX_DB = CORTEX_DIR / "kv_cache.db"
CORTEX_PERSIST_DIR = CORTEX_DIR / "kv_persist"
SHM_PREFIX = "cortex_kv_"
HEADER_SIZE = 4096
FREE_LIST_SIZE = 4096
BLOCK_SIZE = 4096
MAGIC_NUMBER = 0x4B564341  # "KVCA"
VERSION = 1


class CachePolicy(enum.Enum):
    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"
    PRIORITY = "priority"


class CacheTier(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"
    DISK = "disk"


def _value(x):
    return x.value if isinstance(x, enum.Enum) else x


def _known(cls, d: Dict[str, Any]) -> Dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclasses.dataclass
class CacheConfig:
    name: str
    size_bytes: int
    policy: str = "lru"
    tier: str = "cpu"
    max_sequences: int = 10000
    block_size: int = BLOCK_SIZE
    persist_path: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["policy"] = _value(self.policy)
        d["tier"] = _value(self.tier)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "CacheConfig":
        return cls(**_known(cls, d))


@dataclasses.dataclass
class CacheEntry:
    sequence_id: int
    prefix_hash: str
    created_at: float
    last_accessed: float
    access_count: int
    token_count: int
    size_bytes: int
    offset: int
    priority: int = 0
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "CacheEntry":
        return cls(**_known(cls, d))

    @classmethod
    def _of(cls, info) -> "CacheEntry":
        try:
            metadata = json.loads(info.metadata) if info.metadata else {}
        except ValueError:
            metadata = {"raw": info.metadata}
        return cls(sequence_id=info.sequence_id, prefix_hash=info.prefix_hash,
                   created_at=info.created, last_accessed=info.last_accessed,
                   access_count=info.access_count, token_count=info.token_count,
                   size_bytes=info.size_bytes, offset=info.offset, priority=info.priority,
                   metadata=metadata)


@dataclasses.dataclass
class CacheStats:
    total_bytes: int
    used_bytes: int
    free_bytes: int
    entry_count: int
    hit_count: int
    miss_count: int
    hit_rate: float
    eviction_count: int
    attached_processes: int
    created_at: float
    last_modified: float
    policy: str

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def parse_size(size_str: str) -> int:
    """'16G', '512M', '1.5G', '1024K', '4096', '1T' -> bytes (powers of 1024).

    Raises ValueError for anything else (kvcache.InvalidArgument is a ValueError).
    """
    return kvcache.parse_size(str(size_str))


class _Pool:
    """What the manager knows of a pool it uses (the original kept its mapping here)."""

    def __init__(self, config: CacheConfig, shm_name: str):
        self.config = config
        self.name = config.name
        self.shm_name = shm_name

    def __repr__(self):
        return f"<pool {self.name!r} shm={self.shm_name!r}>"


class KVCacheManager:
    """The original's manager. db_path is the SQLite catalog's file."""

    def __init__(self, db_path=None):
        home = _home()
        self.db_path = Path(db_path) if db_path is not None else home / "kv_cache.db"
        self.persist_dir = home / "kv_persist"
        self._native = kvcache.Manager(home=str(home), catalog=str(self.db_path))
        # The catalog itself (the original's CacheDatabase): pools, entries, stats.
        self.db = self._native
        self.pools: Dict[str, _Pool] = {}
        self._attached = set()

    # ---- helpers ----
    def _fail(self, what: str, err: Exception):
        logger.warning("%s: %s", what, err)

    def _pool(self, name: str) -> Optional[_Pool]:
        """The pool, attaching it on first use (it may have been made elsewhere)."""
        pool = self.pools.get(name)
        if pool is not None:
            return pool
        return self._attach(name)

    def _attach(self, name: str) -> Optional[_Pool]:
        try:
            cfg = self._native.config(name)
            self._native.attach(name)
        except kvcache.Error as err:
            self._fail(f"attach pool '{name}'", err)
            return None
        config = CacheConfig(name=name, size_bytes=cfg["size_bytes"], policy=cfg["policy"],
                             tier=cfg["tier"], max_sequences=cfg["max_sequences"],
                             block_size=cfg["block_size"])
        pool = _Pool(config, self._native.shm_name(name))
        self.pools[name] = pool
        self._attached.add(name)
        return pool

    # ---- pools ----
    def create_pool(self, config: CacheConfig) -> bool:
        """True when made; False for a duplicate (or any failure, logged)."""
        try:
            self._native.create_pool(config.name, int(config.size_bytes),
                                     policy=_value(config.policy), tier=_value(config.tier),
                                     max_sequences=int(config.max_sequences),
                                     block_size=int(config.block_size))
        except kvcache.Error as err:
            self._fail(f"create pool '{config.name}'", err)
            return False
        pool = self._attach(config.name)
        if pool is not None:
            pool.config = config
        return True

    def attach_pool(self, name: str) -> bool:
        self.pools.pop(name, None)
        return self._attach(name) is not None

    def detach_pool(self, name: str) -> bool:
        if self.pools.pop(name, None) is None:
            return False
        self._attached.discard(name)
        try:
            self._native.detach(name)
        except kvcache.Error as err:
            self._fail(f"detach pool '{name}'", err)
            return False
        return True

    def destroy_pool(self, name: str) -> bool:
        self.pools.pop(name, None)
        self._attached.discard(name)
        try:
            self._native.destroy_pool(name)
        except kvcache.Error as err:
            self._fail(f"destroy pool '{name}'", err)
            return False
        return True

    # ---- entries ----
    def put(self, pool: str, sequence_id: int, data: bytes, token_count: int,
            prefix_tokens: Optional[List[int]] = None, priority: int = 0,
            metadata: Optional[Dict[str, Any]] = None) -> bool:
        if self._pool(pool) is None:
            return False
        try:
            self._native.put(pool, sequence_id, data, token_count,
                             prefix_tokens=prefix_tokens, priority=priority,
                             metadata=metadata if metadata else None)
        except kvcache.Error as err:
            self._fail(f"put {sequence_id} in '{pool}'", err)
            return False
        return True

    def get(self, pool: str, sequence_id: int) -> Optional[bytes]:
        if self._pool(pool) is None:
            return None
        try:
            return self._native.get(pool, sequence_id)
        except kvcache.NotFound:
            return None
        except kvcache.Error as err:
            self._fail(f"get {sequence_id} from '{pool}'", err)
            return None

    def get_by_prefix(self, pool: str, prefix_tokens: List[int]) -> List[Tuple[CacheEntry, bytes]]:
        if self._pool(pool) is None:
            return []
        try:
            found = self._native.get_by_prefix(pool, list(prefix_tokens))
        except kvcache.Error as err:
            self._fail(f"get_by_prefix in '{pool}'", err)
            return []
        return [(CacheEntry._of(info), data) for info, data in found]

    def delete(self, pool: str, sequence_id: int) -> bool:
        if self._pool(pool) is None:
            return False
        try:
            self._native.remove(pool, sequence_id)
        except kvcache.Error as err:
            if not isinstance(err, kvcache.NotFound):
                self._fail(f"delete {sequence_id} from '{pool}'", err)
            return False
        return True

    def evict(self, pool: str, percent: float = 25.0) -> int:
        if self._pool(pool) is None:
            return 0
        try:
            if not self._native.entries(pool):
                return 0
            return self._native.evict(pool, float(percent))
        except kvcache.Error as err:
            self._fail(f"evict from '{pool}'", err)
            return 0

    # ---- snapshots ----
    def _snapshot_path(self, pool: str, path) -> Optional[str]:
        """The file to use; None for the default, persist_dir/<pool>.cache (which the
        core creates below the checked home)."""
        if path is not None:
            return str(path)
        known = self.pools.get(pool)
        if known is not None and known.config.persist_path:
            return str(known.config.persist_path)
        return None

    def persist(self, pool: str, path=None) -> bool:
        if self._pool(pool) is None:
            return False
        try:
            self._native.persist(pool, self._snapshot_path(pool, path))
        except kvcache.Error as err:
            self._fail(f"persist '{pool}'", err)
            return False
        return True

    def restore(self, pool: str, path=None) -> bool:
        """Restores the core's snapshots, and the original's pickles (safely)."""
        file = self._snapshot_path(pool, path)
        try:
            if file is None:
                file = self._native.snapshot_path(pool)
            if import_original.is_pickle(file):
                import_original.import_file(self._native, file, pool)
            else:
                self._native.restore(pool, file)
        except (kvcache.Error, import_original.RefusedSnapshot, OSError) as err:
            self._fail(f"restore '{pool}' from {file}", err)
            return False
        self.pools.pop(pool, None)
        return self._attach(pool) is not None

    # ---- observation ----
    def get_stats(self, pool: str) -> Optional[CacheStats]:
        if self._pool(pool) is None:
            return None
        try:
            s = self._native.stats(pool)
        except kvcache.Error as err:
            self._fail(f"stats of '{pool}'", err)
            return None
        return CacheStats(total_bytes=s.size, used_bytes=s.used, free_bytes=s.free,
                          entry_count=s.entry_count, hit_count=s.hits, miss_count=s.misses,
                          hit_rate=s.hit_rate, eviction_count=s.evictions,
                          attached_processes=s.attached, created_at=s.created,
                          last_modified=s.modified, policy=s.config["policy"])

    def status(self, pool: Optional[str] = None) -> None:
        """Prints the status table (every pool, or one)."""
        try:
            print(self._native.status_text(pool), end="")
        except kvcache.Error as err:
            print(f"Error: {err}", file=sys.stderr)

    def list_entries(self, pool: str) -> None:
        """Prints the pool's entries."""
        try:
            print(self._native.entries_text(pool), end="")
        except kvcache.Error as err:
            print(f"Error: {err}", file=sys.stderr)

    def health(self, pool: str) -> bool:
        """Prints the health report; True when the pool is healthy."""
        try:
            report = self._native.health(pool)
            print(self._native.health_text(pool), end="")
        except kvcache.Error as err:
            print(f"Error: {err}", file=sys.stderr)
            return False
        return bool(report.healthy)

    def cleanup(self) -> None:
        """Detaches every pool this manager attached; the pools themselves stay."""
        for name in list(self._attached):
            try:
                self._native.detach(name)
            except kvcache.Error as err:
                self._fail(f"detach pool '{name}'", err)
        self._attached.clear()
        self.pools.clear()


__all__ = [
    "KVCacheManager", "CacheConfig", "CacheEntry", "CacheStats", "CachePolicy", "CacheTier",
    "parse_size", "CORTEX_DIR", "CORTEX_DB", "CORTEX_PERSIST_DIR", "SHM_PREFIX",
    "HEADER_SIZE", "FREE_LIST_SIZE", "BLOCK_SIZE", "MAGIC_NUMBER", "VERSION",
]
