"""CI runs what README.md tells a newcomer to run: the same steps, in the same order."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci_steps() -> list[str]:
    """The commands `.ci/run` runs, in order (its `step "name" "command"` lines)."""
    return re.findall(r'^step "[^"]*" "(.*)"$', (ROOT / ".ci" / "run").read_text(), re.M)


def readme_steps() -> list[str]:
    """The commands of README.md's CI block: the `$ ` lines of the block after "CI runs these steps"."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"CI runs these steps.*?```\n(.*?)```", text, re.S)
    assert block, "README.md has no code block after a line that says what CI runs"
    return [line[2:].split("  #")[0].strip() for line in block.group(1).splitlines() if line.startswith("$ ")]


def test_ci_runs_the_readme_steps():
    assert ci_steps() == readme_steps() != []


def test_the_one_line_command_covers_what_ci_runs():
    text = (ROOT / "README.md").read_text()
    assert "$ ./setup.sh --cpu && .venv/bin/pytest --all" in text
    steps = ci_steps()
    assert steps[0] == "./setup.sh --cpu" and any(step.startswith(".venv/bin/pytest --all") for step in steps)
