"""A training run's metrics: one JSON line per logged step in `<output_dir>/metrics.jsonl`, and plots.

The trainer appends a line every time it logs, so the file is the run's history even when the
notebook kernel or the tmux session dies; the dashboard notebook and the live plot read it back.
This module imports no torch (matplotlib only when plotting), so the dashboard opens in a second.

TRL's names are kept as they are: `reward` (mean total reward), `rewards/<function>/mean`,
`completions/mean_length`, `loss`, `learning_rate`, ... plus `step` and `time` added here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
"""File name of the metrics log inside a run's output folder."""

REWARD_PREFIX = "rewards/"
"""TRL logs each reward function's mean as `rewards/<name>/mean`."""

OUTCOME_PREFIX = "outcomes/"
"""The reward functions log how the step's games ended as `outcomes/<outcome>` (win, failed, timeout, ...)."""


def metrics_path(output_dir: str | os.PathLike) -> Path:
    """Where a run's metrics log lives."""
    return Path(output_dir) / METRICS_FILE


def _json_value(value: Any) -> Any:
    """Numbers as floats (NaN and infinities as None, which JSON can hold), the rest unchanged."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return value if isinstance(value, int) or math.isfinite(value) else None
    if hasattr(value, "item"):  # a numpy or torch scalar
        return _json_value(value.item())
    return str(value)


def append_metrics(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one record as a JSON line (the folder is created if needed); flushed at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({key: _json_value(value) for key, value in record.items()}, ensure_ascii=False)
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics log, oldest first; [] when it does not exist.

    A line cut short by a killed process (the last one) is skipped rather than failing the read.
    """
    path = Path(path)
    if path.is_dir():
        path = metrics_path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: str | os.PathLike, last_step: int) -> int:
    """Drop records logged after `last_step` (a resumed run logs those steps again); returns records kept.

    The kept records go to a temporary file that then replaces the log, so a write that fails (a full
    disk) or a process killed mid-way leaves the old log whole.
    """
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= last_step]
    path = Path(path)
    if path.is_file():
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_text(
                "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in kept), encoding="utf-8"
            )
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return len(kept)


def series(records: Iterable[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping records that lack it or hold no number."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "step" in record:
            steps.append(record["step"])
            values.append(float(value))
    return steps, values


def reward_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-function reward means present in the records (`rewards/<name>/mean`), sorted."""
    keys = {
        key for record in records for key in record if key.startswith(REWARD_PREFIX) and key.endswith("/mean")
    }
    return sorted(keys)


def outcome_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The game-outcome metrics present in the records (`outcomes/<outcome>`), sorted."""
    return sorted({key for record in records for key in record if key.startswith(OUTCOME_PREFIX)})


def summary(records: Sequence[Mapping[str, Any]], window: int = 10) -> dict[str, float]:
    """Mean of each reward metric over the last `window` logged steps (the dashboard's headline)."""
    recent = list(records)[-window:]
    out = {}
    for key in ["reward", *reward_keys(records)]:
        _, values = series(recent, key)
        if values:
            out[key] = sum(values) / len(values)
    return out


def plot_metrics(records: Sequence[Mapping[str, Any]], figure: Any = None, title: str = "") -> Any:
    """Draw rewards, game outcomes and completion length against the step; returns the figure.

    Pass the figure back in to redraw it in place (the live plot does, every logged step). The
    outcomes panel appears when the reward functions logged `outcomes/*` metrics.
    """
    import matplotlib.pyplot as plt

    outcomes = outcome_keys(records)
    if figure is None:
        figure = plt.figure(figsize=(5.5 * (3 if outcomes else 2), 3.6))
    figure.clear()
    axes = figure.subplots(1, 3 if outcomes else 2)
    rewards_ax, length_ax = axes[0], axes[-1]
    steps, values = series(records, "reward")
    if steps:
        rewards_ax.plot(steps, values, color="black", linewidth=2, label="total")
    for key in reward_keys(records):
        steps, values = series(records, key)
        rewards_ax.plot(steps, values, linewidth=1, label=key[len(REWARD_PREFIX) : -len("/mean")])
    rewards_ax.set_ylabel("mean reward")
    if outcomes:
        for key in outcomes:
            steps, values = series(records, key)
            axes[1].plot(steps, values, linewidth=1, label=key[len(OUTCOME_PREFIX) :])
        axes[1].set_ylabel("games per step")
    steps, values = series(records, "completions/mean_length")
    length_ax.plot(steps, values, color="tab:purple")
    length_ax.set_ylabel("completion tokens (mean)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines and ax is not length_ax:
            ax.legend(fontsize=8, loc="best")
    last = records[-1].get("step") if records else None
    figure.suptitle(
        title or (f"GRPO training, step {last}" if last is not None else "GRPO training: no steps yet")
    )
    figure.tight_layout()
    return figure
