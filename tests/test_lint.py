"""House style: ruff's lint and format checks pass on the whole tree, and mypy on the torch-free modules."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(args):
    assert RUFF.exists(), f"ruff is missing beside {sys.executable}: install the dev extras (./setup.sh)"
    result = subprocess.run([str(RUFF), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_torch_free_modules_type_check():
    """mypy over the files `[tool.mypy]` in pyproject.toml names (STYLE.md: "a type checker on the CPU-only modules")."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
