"""Isolation for every test: its own CORTEX_HOME and shm prefix (set in the environment
before any manager is made, so child processes and the CLI inherit them), and every
segment under that prefix removed afterwards, even when the test fails."""

import glob
import os
import uuid

import pytest


def build_dir():
    d = os.environ.get("KVC_BUILD_DIR")
    if not d:
        d = os.path.join(os.path.dirname(__file__), "..", "..", "build")
    return os.path.abspath(d)


def cortex_binary():
    return os.path.join(build_dir(), "cli", "cortex")


@pytest.fixture
def env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    prefix = f"kvcpy_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
    monkeypatch.setenv("CORTEX_HOME", str(home))
    monkeypatch.setenv("CORTEX_SHM_PREFIX", prefix)
    yield {"home": home, "prefix": prefix, "tmp": tmp_path}
    for path in glob.glob(f"/dev/shm/{prefix}*"):
        try:
            os.unlink(path)
        except OSError:
            pass


@pytest.fixture
def manager(env):
    import kvcache
    return kvcache.Manager()


@pytest.fixture
def pool(manager):
    manager.create_pool("p", "8M")
    return "p"
