import json
import os

import pytest


@pytest.fixture(autouse=True)
def private_env(tmp_path, monkeypatch):
    """Every test gets its own cache and no inherited lem settings."""
    for k in list(os.environ):
        if k.startswith("LEM_") or k in ("CUDA_VISIBLE_DEVICES",):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("LEM_CACHE_DIR", str(tmp_path / "cache"))
    yield


@pytest.fixture
def scenario(tmp_path):
    """Write a scenario and return its `sim:` spec."""

    def make(obj, name="s.json"):
        p = tmp_path / name
        p.write_text(json.dumps(obj))
        return f"sim:{p}"

    return make
