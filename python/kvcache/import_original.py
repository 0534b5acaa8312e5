"""Imports a snapshot of the original Python KV-cache manager (a pickle) into a pool.

    python3 -m kvcache.import_original FILE POOL

The original saved `<pool>.cache` as a pickle of plain values only:
{"version": 1, "config": {...}, "timestamp": float,
 "entries": [{"entry": {...CacheEntry...}, "data": "<hex>"}, ...]}.
A pickle can name any global and so run any code when loaded; this reader refuses every
global (and persistent id) before anything is built, so loading a file runs nothing in
it, then checks the layout above field by field. The entries go into POOL (created from
the snapshot's config when it does not exist). The original stored only a hash of each
entry's prefix tokens, not the tokens, so imported entries have no prefix.
"""

import io
import pickle
import sys

import kvcache

# A pickle starts with PROTO (0x80) and a protocol number from 2 on.
_PROTO = 0x80


class RefusedSnapshot(ValueError):
    """The file is not an original snapshot this reader accepts (nothing was changed)."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise RefusedSnapshot(
            f"refused: the pickle names the global {module}.{name}; a snapshot of the "
            "original holds only plain values, and no code from a file is ever run")

    def persistent_load(self, pid):
        raise RefusedSnapshot("refused: the pickle uses persistent ids")


def is_pickle(path) -> bool:
    """True when the file starts like a pickle (protocol 2 or later)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == _PROTO and 2 <= head[1] <= 5


def load(path):
    """The snapshot's dict, checked; RefusedSnapshot for anything else."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        snap = _PlainUnpickler(io.BytesIO(raw)).load()
    except RefusedSnapshot:
        raise
    except Exception as err:  # a truncated or garbled pickle
        raise RefusedSnapshot(f"not a readable pickle: {err}") from None

    def need(cond, what):
        if not cond:
            raise RefusedSnapshot(f"not a snapshot of the original: {what}")

    need(isinstance(snap, dict), "the top level is not a dict")
    need(snap.get("version") == 1, f"version is {snap.get('version')!r}, not 1")
    need(isinstance(snap.get("config"), dict), "'config' is not a dict")
    need(isinstance(snap.get("entries"), list), "'entries' is not a list")
    for i, item in enumerate(snap["entries"]):
        need(isinstance(item, dict), f"entry {i} is not a dict")
        entry, data = item.get("entry"), item.get("data")
        need(isinstance(entry, dict), f"entry {i} has no 'entry' dict")
        need(isinstance(data, str), f"entry {i} has no hex 'data'")
        for key in ("sequence_id", "token_count"):
            need(isinstance(entry.get(key), int) and entry[key] >= 0,
                 f"entry {i}: '{key}' is not a non-negative int")
        need(isinstance(entry.get("priority", 0), int), f"entry {i}: 'priority' is not an int")
        try:
            item["data"] = bytes.fromhex(data)
        except ValueError:
            raise RefusedSnapshot(f"not a snapshot of the original: entry {i}'s data is "
                                  "not hex") from None
        need(entry.get("size_bytes", len(item["data"])) == len(item["data"]),
             f"entry {i}: size_bytes does not match its data")
    return snap


def import_file(manager, path, pool) -> int:
    """Puts the snapshot's entries into `pool` (made from its config if missing).

    Returns how many entries were imported. Raises RefusedSnapshot (nothing changed) or
    a kvcache.Error.
    """
    snap = load(path)
    if pool not in manager.pools():
        cfg = snap["config"]
        need_size = sum(len(item["data"]) for item in snap["entries"])
        size = cfg.get("size_bytes")
        manager.create_pool(pool, size if isinstance(size, int) and size > 0 else max(need_size, 1 << 20),
                            policy=str(cfg.get("policy", "lru")), tier=str(cfg.get("tier", "cpu")),
                            max_sequences=int(cfg.get("max_sequences", 10000)),
                            block_size=int(cfg.get("block_size", 4096)))
    for item in snap["entries"]:
        entry = item["entry"]
        metadata = entry.get("metadata") or None
        manager.put(pool, entry["sequence_id"], item["data"], entry["token_count"],
                    priority=entry.get("priority", 0), metadata=metadata)
    return len(snap["entries"])


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python3 -m kvcache.import_original FILE POOL", file=sys.stderr)
        return 2
    path, pool = args
    try:
        count = import_file(kvcache.Manager(), path, pool)
    except (RefusedSnapshot, kvcache.Error, OSError) as err:
        print(f"Error: {path}: {err}", file=sys.stderr)
        return 1
    print(f"Imported {count} entries from {path} into '{pool}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
