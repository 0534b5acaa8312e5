"""The same pools from Python and from the real cortex binary of this build."""

import json
import os
import subprocess

import kvcache
from conftest import cortex_binary


def cortex(*args):
    # A sanitized build preloads the ASan runtime into this interpreter (tests/python/
    # CMakeLists.txt); cortex carries its own, and two runtimes refuse to start.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run([cortex_binary(), "cache", *args], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_pool_made_by_the_cli_is_used_from_python(env, tmp_path):
    cortex("create", "clipool", "--size", "4M", "--policy", "lfu")
    src = tmp_path / "payload"
    src.write_bytes(b"from the cli " * 100)
    cortex("put", "clipool", "7", "--file", str(src), "--tokens", "12", "--prefix", "1,2,3")
    m = kvcache.Manager()
    assert m.config("clipool")["policy"] == "lfu"
    assert m.get("clipool", 7) == src.read_bytes()
    [(entry, data)] = m.get_by_prefix("clipool", [1, 2, 3])
    assert entry.sequence_id == 7 and entry.token_count == 12
    m.put("clipool", 8, b"from python")
    listed = json.loads(cortex("entries", "clipool", "--json"))
    assert sorted(e["sequence_id"] for e in listed) == [7, 8]


def test_a_pool_made_from_python_is_read_by_the_cli(env, tmp_path):
    m = kvcache.Manager()
    m.create_pool("pypool", "4M", policy="fifo")
    with m.reserve("pypool", 3, 6, token_count=2) as mv:
        mv[:] = b"hello!"
    status = json.loads(cortex("status", "pypool", "--json"))
    assert status["entry_count"] == 1 and status["policy"] == "fifo"
    out = tmp_path / "out"
    cortex("get", "pypool", "3", "--output", str(out))
    assert out.read_bytes() == b"hello!"
    cortex("destroy", "pypool")
    assert "pypool" not in m.pools()


def test_python_and_a_kvcachefs_mount_share_entries(env, tmp_path):
    m = kvcache.Manager()
    m.create_pool("mnt", "4M")
    payload = bytes(range(256)) * 40
    with m.reserve("mnt", 5, len(payload), token_count=3, prefix_tokens=[9, 8, 7]) as mv:
        mv[:] = payload
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cortex("mount", str(mnt))
    try:
        assert (mnt / "mnt" / "5").read_bytes() == payload
        hashes = os.listdir(mnt / "mnt" / "by-prefix")
        assert len(hashes) == 1
        assert (mnt / "mnt" / "by-prefix" / hashes[0] / "5").read_bytes() == payload
        written = b"written through the mount" * 100
        (mnt / "mnt" / "6").write_bytes(written)
        assert m.get("mnt", 6) == written
        m.remove("mnt", 5)
        assert not (mnt / "mnt" / "5").exists()
        assert sorted(os.listdir(mnt / "mnt")).count("6") == 1
    finally:
        subprocess.run([cortex_binary(), "cache", "unmount", str(mnt)], timeout=60)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
