"""Shared fixtures: tiny checkpoints of every family, built offline and saved with save_pretrained."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DLLM_JEPA_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def pytest_configure(config) -> None:
    """Under pytest-xdist (scripts/test.sh runs two workers, one per core of a CI machine), each
    worker and every process it starts computes on one thread: two workers of two threads each would
    oversubscribe the cores, and OpenMP's spinning threads make that slower than one worker."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def pytest_collection_modifyitems(config, items) -> None:
    """Skip `gpu`-marked tests, naming why, when this machine has no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marker gpu); none is visible here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def shared_data_or_skip(*parts: str) -> Path:
    """Path into ../shared/data; skip with a clear message when that checkout-adjacent folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real task data not found at {path} (expected ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from dllm_jepa_train.toy.models import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """{'generic' | 'llada' | 'dream' | 'llada_nopad': checkpoint dir}; llada_nopad ignores padding."""
    from dllm_jepa_train.toy.models import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny_ckpts")
    out = {f: build_tiny_checkpoint(root / f, f, tiny_tokenizer, seed=1) for f in ("generic", "llada", "dream")}
    out["llada_nopad"] = build_tiny_checkpoint(
        root / "llada_nopad", "llada", tiny_tokenizer, seed=2, honour_attention_mask=False
    )
    return out


@pytest.fixture
def one_thread():
    """Tiny matmuls gain nothing from threads, and lose a lot when other processes share the cores
    (a module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
