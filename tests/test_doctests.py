"""The examples in the package's docstrings run, and say what they show (`>>>` lines are tests too)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
WITH_EXAMPLES = sorted(
    f"helpers.{path.stem}" for path in HELPERS.glob("*.py") if ">>> " in path.read_text(encoding="utf-8")
)


def test_some_modules_have_examples():
    assert {"helpers.game", "helpers.rewards"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    from helpers.sandbox import get_pool

    get_pool()  # started here, so that the line it prints once is not part of an example's output
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert results.attempted > 0 and results.failed == 0, results
