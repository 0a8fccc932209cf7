"""Shared fixtures: where ../shared lives, and skips with a reason when it is absent; every
cache of the session (this process and the commands it starts) in a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NFPF_SHARED", PROJECT_ROOT.parent / "shared"))
DATA_ROOT = SHARED / "data"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The offline data root (../shared/data); tests using it skip when it is absent."""
    if not DATA_ROOT.is_dir():
        pytest.skip(f"offline datasets not found at {DATA_ROOT} (set NFPF_SHARED)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The reference-number fixtures (../shared/fixtures); skip when absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"fixtures not found at {FIXTURES} (set NFPF_SHARED)")
    return FIXTURES


@pytest.fixture(scope="session", autouse=True)
def session_cache_dir(tmp_path_factory) -> Iterator[Path]:
    """``NFPF_CACHE_DIR`` for the whole session, this process and the commands it starts:
    a temporary directory, whatever the caller's environment says, so that tests never write
    into ``~/.cache/nfpf`` or a user's own cache; matplotlib's ``MPLCONFIGDIR`` too."""
    cache = tmp_path_factory.mktemp("nfpf-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NFPF_CACHE_DIR", str(cache))
        # matplotlib's font cache and config default to ~/.cache and ~/.config
        patch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("matplotlib")))
        yield cache


@pytest.fixture(autouse=True)
def _no_network_wandb(monkeypatch):
    """Tests never talk to a W&B server."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
