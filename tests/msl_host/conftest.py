"""Fixtures shared by the msl_host tests."""

import pytest

from msl_host import build


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty library cache for this test (the others share the user's cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(build, "_libraries", {})
    return tmp_path / "msl-host"


@pytest.fixture
def compiles(monkeypatch):
    """Count compiler invocations building kernels and precompiled headers (not flag probes)."""
    calls = []
    real = build.subprocess.run

    def counting_run(cmd, **kwargs):
        if cmd[-1] != "-":
            calls.append(cmd)
        return real(cmd, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", counting_run)
    return calls
