"""Separate processes on one pool: multiprocessing workers, and zero-copy writes seen
across processes."""

import hashlib
import multiprocessing
import os

import kvcache


def payload(worker, i):
    """Self-checking bytes: a body and its SHA-256."""
    body = os.urandom(1000 + (worker * 7919 + i * 104729) % 60000)
    return hashlib.sha256(body).digest() + body


def check(blob):
    return hashlib.sha256(blob[32:]).digest() == blob[:32]


def worker(pool, w, n, queue):
    try:
        m = kvcache.Manager()  # CORTEX_HOME and the shm prefix come from the environment
        m.attach(pool)
        for i in range(n):
            m.put(pool, w * 100000 + i, payload(w, i), token_count=i)
        bad = 0
        read = 0
        # Read every worker's entries, the others' included, while they still write.
        for other in range(4):
            for i in range(n):
                try:
                    blob = m.get(pool, other * 100000 + i)
                except kvcache.NotFound:
                    continue
                read += 1
                bad += not check(blob)
                with m.view(pool, other * 100000 + i) as mv:
                    bad += not check(bytes(mv))
        m.detach(pool)
        queue.put((w, read, bad))
    except Exception as err:  # noqa: BLE001 - reported to the parent
        queue.put((w, -1, repr(err)))


def test_four_multiprocessing_workers_share_one_pool(env):
    m = kvcache.Manager()
    m.create_pool("shared", "64M")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=("shared", w, 100, queue)) for w in range(4)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for w, read, bad in results:
        assert read >= 100 and bad == 0, (w, read, bad)
    assert m.stats("shared").entry_count == 400
    for w in range(4):
        for i in range(100):
            assert check(m.get("shared", w * 100000 + i))
    assert m.health("shared").healthy


def reserve_and_hold(pool, ready, go):
    m = kvcache.Manager()
    with m.reserve(pool, 1, 4096) as mv:
        # Written in place: there is no buffer to copy from.
        for i in range(0, 4096, 8):
            mv[i:i + 8] = i.to_bytes(8, "little")
        ready.set()
        go.wait(30)


def test_a_write_through_reserve_is_seen_by_another_process(env):
    m = kvcache.Manager()
    m.create_pool("zc", "4M")
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=reserve_and_hold, args=("zc", ready, go))
    p.start()
    try:
        assert ready.wait(60)
        # Not committed yet: nothing is visible.
        try:
            m.get("zc", 1)
            raise AssertionError("an uncommitted reservation is visible")
        except kvcache.NotFound:
            pass
    finally:
        go.set()
        p.join(60)
    assert p.exitcode == 0
    with m.view("zc", 1) as mv:
        assert all(int.from_bytes(mv[i:i + 8], "little") == i for i in range(0, 4096, 8))



def test_a_fork_child_never_releases_the_parents_view(env):
    m = kvcache.Manager()
    m.create_pool("fk", "4M")
    m.put("fk", 1, b"z" * 4096)
    view = m.view("fk", 1)
    with view as mv:
        pid = os.fork()
        if pid == 0:
            # The child's copy is dropped here (and again at exit): inert in the child.
            try:
                view.release()
                del mv
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert m.health("fk").pinned_entries == 1
        m.remove("fk", 1)
        assert bytes(mv[:4]) == b"zzzz"
    assert m.health("fk").pinned_entries == 0
