"""cortex.kernel_features.kv_cache_manager: the original's API, names and conventions."""

import dataclasses
import enum
import os
import sqlite3
from pathlib import Path

import pytest

def readme_example():
    """The original README's "Python API" example, character for character."""
    return (Path(__file__).parent / "original_readme_example.py").read_text()


def test_the_original_readme_example_runs(env, capsys):
    code = readme_example()
    assert "manager.create_pool(config)" in code and "size_bytes=16 * 1024**3" in code
    # The one change: 16 GiB of RAM would be reserved up front on a shared CI machine,
    # so the pool is 16 MiB; every other character of the example is the original's.
    code = code.replace("size_bytes=16 * 1024**3", "size_bytes=16 * 1024**2")
    namespace = {}
    exec(compile(code, "README_KV_CACHE.md", "exec"), namespace)
    m = namespace["manager"]
    assert namespace["data"] == b"..."
    assert [e.sequence_id for e, _ in namespace["matches"]] == [42]
    assert "Sequence 42: 3 bytes" in capsys.readouterr().out
    assert (Path(os.environ["CORTEX_HOME"]) / "kv_persist" / "my-cache.cache").exists()
    import kvcache
    assert "my-cache" not in kvcache.Manager().pools()


def test_names_constants_and_defaults():
    from cortex.kernel_features import kv_cache_manager as kvm
    for name in ("KVCacheManager", "CacheConfig", "CacheEntry", "CacheStats", "CachePolicy",
                 "CacheTier", "parse_size", "CORTEX_DB", "CORTEX_PERSIST_DIR", "SHM_PREFIX",
                 "HEADER_SIZE", "BLOCK_SIZE", "MAGIC_NUMBER", "VERSION"):
        assert hasattr(kvm, name), name
    assert kvm.SHM_PREFIX == "cortex_kv_" and kvm.HEADER_SIZE == 4096
    assert kvm.BLOCK_SIZE == 4096 and kvm.MAGIC_NUMBER == 0x4B564341 and kvm.VERSION == 1
    assert isinstance(kvm.CORTEX_DB, Path) and kvm.CORTEX_DB.name == "kv_cache.db"
    assert kvm.CORTEX_PERSIST_DIR.name == "kv_persist"
    assert [p.value for p in kvm.CachePolicy] == ["lru", "lfu", "fifo", "priority"]
    assert [t.value for t in kvm.CacheTier] == ["cpu", "gpu", "disk"]
    assert issubclass(kvm.CachePolicy, enum.Enum)

    c = kvm.CacheConfig(name="a", size_bytes=1 << 20)
    assert dataclasses.is_dataclass(c)
    assert c.to_dict() == {"name": "a", "size_bytes": 1 << 20, "policy": "lru", "tier": "cpu",
                           "max_sequences": 10000, "block_size": 4096, "persist_path": None}
    assert kvm.CacheConfig.from_dict(c.to_dict()) == c
    e = kvm.CacheEntry(sequence_id=1, prefix_hash="", created_at=1.0, last_accessed=2.0,
                       access_count=1, token_count=3, size_bytes=4, offset=0)
    assert e.priority == 0 and e.metadata == {}
    assert kvm.CacheEntry.from_dict(e.to_dict()) == e
    assert [f.name for f in dataclasses.fields(kvm.CacheStats)] == [
        "total_bytes", "used_bytes", "free_bytes", "entry_count", "hit_count", "miss_count",
        "hit_rate", "eviction_count", "attached_processes", "created_at", "last_modified",
        "policy"]
    assert kvm.parse_size("16G") == 16 << 30 and kvm.parse_size("1.5G") == 3 << 29
    assert kvm.parse_size("512M") == 512 << 20 and kvm.parse_size("1024K") == 1 << 20
    assert kvm.parse_size("4096") == 4096 and kvm.parse_size("1T") == 1 << 40
    with pytest.raises(ValueError):
        kvm.parse_size("lots")


def test_bool_and_none_conventions(env, capsys):
    from cortex.kernel_features.kv_cache_manager import (CacheConfig, CacheEntry,
                                                          CachePolicy, KVCacheManager)
    m = KVCacheManager()
    cfg = CacheConfig(name="c", size_bytes=1 << 20, policy=CachePolicy.PRIORITY)
    assert m.create_pool(cfg) is True
    assert m.create_pool(cfg) is False  # duplicate
    assert m.create_pool(CacheConfig(name="bad/name", size_bytes=1 << 20)) is False
    assert "c" in m.pools and m.pools["c"].config == cfg
    assert m.put("c", 1, b"abc", 3, prefix_tokens=[7, 8], priority=2,
                 metadata={"k": 1}) is True
    assert m.put("c", 2, b"x" * (2 << 20), 1) is False  # larger than the pool
    assert m.put("nope", 1, b"abc", 3) is False
    assert m.get("c", 1) == b"abc"
    assert m.get("c", 99) is None and m.get("nope", 1) is None
    [(entry, data)] = m.get_by_prefix("c", [7, 8])
    assert isinstance(entry, CacheEntry) and data == b"abc"
    assert entry.metadata == {"k": 1} and entry.priority == 2 and entry.token_count == 3
    assert m.get_by_prefix("c", [1]) == [] and m.get_by_prefix("nope", [7, 8]) == []
    stats = m.get_stats("c")
    assert stats.entry_count == 1 and stats.hit_count >= 1 and stats.policy == "priority"
    assert m.delete("c", 1) is True and m.delete("c", 1) is False
    for seq in range(8):
        assert m.put("c", seq, b"y" * 10, 1)
    assert m.evict("c") == 2 and m.evict("c", percent=50.0) == 3
    assert m.evict("nope") == 0
    assert m.health("c") is True and m.health("nope") is False
    assert m.status() is None and m.list_entries("c") is None
    out = capsys.readouterr().out
    assert "POOL" in out and "SEQ" in out
    assert m.persist("c") is True and m.persist("nope") is False
    assert (m.persist_dir / "c.cache").exists()
    assert m.restore("c") is True
    assert m.restore("c", path=str(env["tmp"] / "none.cache")) is False
    assert m.detach_pool("c") is True and m.detach_pool("c") is False
    assert m.attach_pool("c") is True and m.attach_pool("nope") is False
    assert m.destroy_pool("c") is True and m.destroy_pool("c") is False
    m.cleanup()
    assert m.pools == {}


def test_db_path_is_the_catalogs_file(env):
    from cortex.kernel_features.kv_cache_manager import CacheConfig, KVCacheManager
    db = env["tmp"] / "elsewhere" / "catalog.db"
    m = KVCacheManager(db_path=db)
    assert m.create_pool(CacheConfig(name="d", size_bytes=1 << 20)) is True
    assert db.exists()
    assert not (Path(os.environ["CORTEX_HOME"]) / "kv_cache.db").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM pools").fetchall() == [("d",)]
    # The catalog in the home knows nothing of it; another manager on db finds it.
    assert KVCacheManager().attach_pool("d") is False
    assert KVCacheManager(str(db)).get("d", 1) is None
    assert KVCacheManager(str(db)).destroy_pool("d") is True
