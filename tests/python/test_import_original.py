"""kvcache.import_original: the original's pickle snapshots, read without running code."""

import json
import os
import pickle
import subprocess
import sys
import time

import pytest

import kvcache
from kvcache import import_original


def original_snapshot(path, entries):
    """A snapshot laid out as the original's persist wrote it."""
    snap = {
        "version": 1,
        "config": {"name": "orig", "size_bytes": 4 << 20, "policy": "lfu", "tier": "cpu",
                   "max_sequences": 10000, "block_size": 4096, "persist_path": None},
        "timestamp": time.time(),
        "entries": [
            {"entry": {"sequence_id": seq, "prefix_hash": "4f6addc9659d6fb9",
                       "created_at": 1.0, "last_accessed": 2.0, "access_count": 3,
                       "token_count": seq * 2, "size_bytes": len(data), "offset": 0,
                       "priority": seq, "metadata": {"seq": seq}},
             "data": data.hex()}
            for seq, data in entries.items()
        ],
    }
    with open(path, "wb") as f:
        pickle.dump(snap, f)


def test_an_original_snapshot_round_trips_into_a_pool(env, tmp_path):
    entries = {1: b"first", 2: os.urandom(10000), 3: b""}
    path = tmp_path / "orig.cache"
    original_snapshot(path, entries)
    assert import_original.is_pickle(path)
    out = subprocess.run([sys.executable, "-m", "kvcache.import_original", str(path), "imp"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Imported 3 entries" in out.stdout
    m = kvcache.Manager()
    assert m.config("imp")["policy"] == "lfu" and m.config("imp")["size_bytes"] == 4 << 20
    for seq, data in entries.items():
        assert m.get("imp", seq) == data
        info = m.stat("imp", seq)
        assert info.token_count == seq * 2 and info.priority == seq
        assert json.loads(info.metadata) == {"seq": seq}


def test_the_compat_restore_reads_an_original_snapshot(env, tmp_path):
    from cortex.kernel_features.kv_cache_manager import KVCacheManager
    m = KVCacheManager()
    m.persist_dir.mkdir(parents=True, mode=0o700)
    original_snapshot(m.persist_dir / "old.cache", {5: b"five"})
    assert m.restore("old") is True
    assert m.get("old", 5) == b"five"


class Boom:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["KVC_BOOM_FILE"],))


def test_a_pickle_naming_a_global_is_refused_without_running_it(env, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("KVC_BOOM_FILE", str(marker))
    path = tmp_path / "evil.cache"
    snap = {"version": 1, "config": {"name": "e", "size_bytes": 1 << 20}, "timestamp": 0.0,
            "entries": [{"entry": {"sequence_id": 1, "token_count": 0}, "data": Boom()}]}
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    with pytest.raises(import_original.RefusedSnapshot, match="posix.system|os.system"):
        import_original.load(path)
    out = subprocess.run([sys.executable, "-m", "kvcache.import_original", str(path), "e"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "refused" in out.stderr
    assert not marker.exists()
    assert "e" not in kvcache.Manager().pools()


@pytest.mark.parametrize("snap, why", [
    ([1, 2], "not a dict"),
    ({"version": 2, "config": {}, "entries": []}, "version"),
    ({"version": 1, "config": {}, "entries": [{"entry": {"sequence_id": 1,
      "token_count": 0}, "data": "zz"}]}, "not hex"),
    ({"version": 1, "config": {}, "entries": [{"entry": {"sequence_id": -1,
      "token_count": 0}, "data": ""}]}, "sequence_id"),
])
def test_anything_else_is_refused_with_a_clear_error(env, tmp_path, snap, why):
    path = tmp_path / "bad.cache"
    path.write_bytes(pickle.dumps(snap))
    with pytest.raises(import_original.RefusedSnapshot, match=why):
        import_original.import_file(kvcache.Manager(), path, "bad")
    assert "bad" not in kvcache.Manager().pools()
