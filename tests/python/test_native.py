"""The native kvcache module: buffers in, bytes and zero-copy views out, reservations,
prefixes, observation, snapshots and the typed exceptions."""

import array
import json
import os
import threading

import numpy
import pytest

import kvcache


def test_put_accepts_every_contiguous_buffer_and_get_returns_bytes(manager, pool):
    payload = bytes(range(256)) * 16
    buffers = {
        1: payload,
        2: bytearray(payload),
        3: memoryview(payload),
        4: numpy.frombuffer(payload, dtype=numpy.uint8).copy(),
        5: array.array("B", payload),
        6: numpy.frombuffer(payload, dtype=numpy.float32),  # 4-byte items, same bytes
    }
    for seq, buf in buffers.items():
        manager.put(pool, seq, buf, token_count=7)
    for seq in buffers:
        got = manager.get(pool, seq)
        assert type(got) is bytes and got == payload
    assert manager.stat(pool, 1).token_count == 7
    assert manager.stats(pool).entry_count == len(buffers)


def test_put_refuses_a_non_contiguous_array_and_stores_nothing(manager, pool):
    strided = numpy.arange(64, dtype=numpy.uint8)[::2]
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        manager.put(pool, 1, strided)
    with pytest.raises(TypeError):
        manager.put(pool, 1, "text is not bytes")
    assert manager.entries(pool) == []


def test_view_is_a_read_only_zero_copy_window_into_the_pool(manager, pool, env):
    data = numpy.arange(1024, dtype=numpy.float32)
    manager.put(pool, 9, data)
    with manager.view(pool, 9) as mv:
        assert mv.readonly and mv.nbytes == data.nbytes
        arr = numpy.frombuffer(mv, dtype=numpy.float32)
        assert numpy.array_equal(arr, data)
        assert not arr.flags.writeable
        with pytest.raises(TypeError):
            mv[0] = 1
        # The address lies inside this process's mapping of the pool's segment file.
        addr = arr.__array_interface__["data"][0]
        seg = "/dev/shm/" + manager.shm_name(pool)
        ranges = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == seg:
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((lo, hi))
        assert ranges, f"{seg} is not mapped"
        assert any(lo <= addr and addr + data.nbytes <= hi for lo, hi in ranges)
        del arr
    assert manager.health(pool).pinned_entries == 0


def test_a_view_pins_until_the_last_array_over_it_is_gone(manager, pool):
    manager.put(pool, 1, b"a" * 4096)
    v = manager.view(pool, 1)
    with v as mv:
        kept = numpy.frombuffer(mv, dtype=numpy.uint8)
    # The block is over but an array still points into the pool: the pin holds, so
    # replacing the id cannot reuse those bytes under the array.
    assert manager.health(pool).pinned_entries == 1
    manager.put(pool, 1, b"b" * 4096)
    assert bytes(kept[:4]) == b"aaaa"
    del kept, mv
    assert manager.health(pool).pinned_entries == 0
    assert v.released
    with pytest.raises(BufferError):
        memoryview(v)


def test_reserve_commits_on_clean_exit_and_frees_on_exception(manager, pool):
    with manager.reserve(pool, 5, 4096, token_count=3, prefix_tokens=[1, 2]) as mv:
        assert not mv.readonly
        numpy.frombuffer(mv, dtype=numpy.uint8)[:] = 7
    assert manager.get(pool, 5) == bytes([7]) * 4096
    assert manager.prefix_tokens(pool, 5) == [1, 2]

    used = manager.stats(pool).used
    with pytest.raises(RuntimeError):
        with manager.reserve(pool, 6, 8192) as mv:
            mv[:4] = b"half"
            raise RuntimeError("writer failed")
    with pytest.raises(kvcache.NotFound):
        manager.get(pool, 6)
    assert manager.stats(pool).used == used


def test_reserve_refuses_to_commit_while_an_array_still_writes_into_it(manager, pool):
    used = manager.stats(pool).used
    with pytest.raises(BufferError):
        with manager.reserve(pool, 8, 4096) as mv:
            leaked = numpy.frombuffer(mv, dtype=numpy.uint8)
    with pytest.raises(kvcache.NotFound):
        manager.get(pool, 8)
    del leaked, mv
    assert manager.stats(pool).used == used


def test_prefixes_exact_and_longest(manager):
    manager.create_pool("q", "8M", prefix_block_tokens=4)
    prompt = list(range(100, 120))
    manager.put("q", 1, b"one", token_count=8, prefix_tokens=prompt[:8])
    manager.put("q", 2, b"two", token_count=4, prefix_tokens=prompt[:4])
    found = manager.get_by_prefix("q", prompt[:8])
    assert [(e.sequence_id, d) for e, d in found] == [(1, b"one")]
    assert found[0][0].prefix_hash == kvcache.prefix_hash(prompt[:8])
    entry, matched = manager.longest_prefix("q", prompt)
    assert entry.sequence_id == 1 and matched == 8
    assert manager.longest_prefix("q", [9, 9, 9, 9, 9]) is None
    with pytest.raises(kvcache.NotFound):
        manager.longest_prefix("nope", prompt)


def test_remove_evict_clear_entries_and_stats(manager, pool):
    for seq in range(8):
        manager.put(pool, seq, bytes([seq]) * 100, priority=seq)
    manager.remove(pool, 0)
    with pytest.raises(kvcache.NotFound):
        manager.remove(pool, 0)
    assert manager.evict(pool, 50) == 3
    assert len(manager.entries(pool)) == 4
    assert manager.clear(pool) == 4
    s = manager.stats(pool)
    assert s.entry_count == 0 and s.evictions == 3 and s.loaded
    assert [p.name for p in manager.stats_all()] == [pool]
    assert manager.pools() == [pool]


def test_health_persist_and_restore(manager, pool, env):
    manager.put(pool, 1, b"x" * 5000, token_count=2, prefix_tokens=[4, 5],
                metadata={"model": "m"})
    report = manager.health(pool)
    assert report.healthy and report.problems == []
    out = manager.persist(pool)
    assert out["entries"] == 1 and out["path"] == manager.snapshot_path(pool)
    manager.destroy_pool(pool)
    res = manager.restore(pool)
    assert res["created_pool"] and res["entries"] == 1
    assert manager.get(pool, 1) == b"x" * 5000
    assert json.loads(manager.stat(pool, 1).metadata) == {"model": "m"}
    assert manager.prefix_tokens(pool, 1) == [4, 5]


def test_every_exception_type_carries_the_cores_message(manager, pool, env):
    with pytest.raises(kvcache.NotFound, match="pool 'missing' not found"):
        manager.get("missing", 1)
    with pytest.raises(kvcache.NotFound) as nf:
        manager.get(pool, 12345)
    assert isinstance(nf.value, LookupError) and "12345" in str(nf.value)
    with pytest.raises(kvcache.AlreadyExists):
        manager.create_pool(pool, "8M")
    with pytest.raises(kvcache.NoSpace):
        manager.put(pool, 1, bytes(16 << 20))
    assert kvcache.PoolFull is kvcache.NoSpace
    with pytest.raises(kvcache.InvalidArgument) as bad:
        manager.create_pool("bad/name", "8M")
    assert isinstance(bad.value, ValueError)
    with pytest.raises(ValueError):
        manager.evict(pool, 0)
    with pytest.raises(ValueError):
        kvcache.parse_size("16X")
    with pytest.raises(kvcache.InvalidArgument):
        manager.put(pool, 1, b"x", metadata="{not json")
    # A segment that is not a pool: Corruption.
    with open("/dev/shm/" + manager.shm_name(pool), "r+b") as seg:
        seg.write(b"\0" * 64)
    other = kvcache.Manager()
    with pytest.raises(kvcache.Corruption):
        other.get(pool, 1)
    # A home anyone may write in: PermissionDenied, also a PermissionError.
    open_home = env["tmp"] / "open"
    open_home.mkdir(mode=0o777)
    os.chmod(open_home, 0o777)
    with pytest.raises(kvcache.PermissionDenied) as denied:
        kvcache.Manager(home=str(open_home)).create_pool("x", "1M")
    assert isinstance(denied.value, PermissionError)
    # A snapshot that is not one: an error of the core, and nothing changes.
    junk = env["tmp"] / "junk.cache"
    junk.write_bytes(b"KVCSNAP\0" + b"\xff" * 100)
    with pytest.raises(kvcache.Error):
        kvcache.Manager().restore("fresh", str(junk))
    assert "fresh" not in kvcache.Manager().pools()
    for cls in (kvcache.NotFound, kvcache.AlreadyExists, kvcache.NoSpace,
                kvcache.InvalidArgument, kvcache.Corruption, kvcache.IOError, kvcache.Busy,
                kvcache.NotSupported, kvcache.PermissionDenied):
        assert issubclass(cls, kvcache.Error)


def test_one_manager_from_many_threads(manager, pool):
    errors = []

    def worker(t):
        try:
            for i in range(200):
                seq = t * 1000 + i
                body = (seq.to_bytes(8, "little")) * 64
                manager.put(pool, seq, body)
                assert manager.get(pool, seq) == body
                with manager.view(pool, seq) as mv:
                    assert bytes(mv[:8]) == seq.to_bytes(8, "little")
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert manager.stats(pool).entry_count == 800


def test_store_chunks_and_match_share_whole_chunks_under_a_namespace(manager, pool):
    prompt = list(range(1, 1001))  # 62 whole chunks of 16 tokens, then 8 tokens
    chunks = [bytes([c]) * 512 for c in range(62)]
    r = manager.store_chunks(pool, prompt, chunks, namespace="llama/fp16")
    assert r == {"chunks": 62, "stored": 62, "present": 0}
    assert manager.store_chunks(pool, prompt, chunks, namespace="llama/fp16")["present"] == 62

    matched, views = manager.match(pool, prompt[:500] + [7777777], namespace="llama/fp16")
    assert matched == 496 and len(views) == 31
    for c, view in enumerate(views):
        with view as mv:
            assert bytes(mv) == chunks[c]
    assert all(v.released for v in views)
    assert manager.match(pool, prompt, namespace="other")[0] == 0
    assert manager.match(pool, prompt[:15], namespace="llama/fp16") == (0, [])

    st = manager.stats(pool)
    assert st.chunk_count == 62 and st.entry_count == 0
    assert st.chunk_tokens_asked == 501 + 1000 + 15
    assert st.chunk_tokens_matched == 496
    assert st.chunk_token_hit_rate == pytest.approx(496 / 1516)


def test_store_chunks_refuses_a_wrong_number_of_chunks_and_stores_nothing(manager, pool):
    with pytest.raises(ValueError, match="2 whole chunks"):
        manager.store_chunks(pool, list(range(40)), [b"x", b"y", b"z"])
    with pytest.raises(TypeError):
        manager.store_chunks(pool, list(range(32)), ["text", "text"])
    assert manager.stats(pool).chunk_count == 0
