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


COMPLETIONS_FILE = "completions.jsonl"
"""File name of the completions log: every completion of a step, its rewards, outcome and reason."""


def metrics_path(output_dir: str | os.PathLike) -> Path:
    """Where a run's metrics log lives."""
    return Path(output_dir) / METRICS_FILE


def completions_path(output_dir: str | os.PathLike, rank: str | None = None) -> Path:
    """Where a run's completions log lives (`completions-rank<N>.jsonl` for process N > 0 of several)."""
    name = COMPLETIONS_FILE if rank is None else f"completions-rank{rank}.jsonl"
    return Path(output_dir) / name


def _json_value(value: Any) -> Any:
    """Numbers as floats (NaN and infinities as None, which JSON can hold), the rest unchanged."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return value if isinstance(value, int) or math.isfinite(value) else None
    if hasattr(value, "item"):  # a numpy or torch scalar
        return _json_value(value.item())
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return str(value)


def append_metrics(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one record as a JSON line (the folder is created if needed); flushed at once."""
    append_records(path, [record])


_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}
"""Characters `str.splitlines` (and other readers) take for line ends, which JSON leaves as they are."""


def _json_line(record: Mapping[str, Any]) -> str:
    """One record as one line of JSON, the characters some readers split lines at written as escapes."""
    text = json.dumps(record, ensure_ascii=False)
    for char, escape in _LINE_BREAKS.items():
        text = text.replace(char, escape)  # only inside strings, where the escape reads back the same
    return text + "\n"


def append_records(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records as JSON lines in one write (the folder is created if needed).

    A lone surrogate in a string (text that is not valid Unicode) is written as its JSON escape, so one
    such record neither fails the write of the others nor reads back any different.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(
        _json_line({key: _json_value(value) for key, value in record.items()}) for record in records
    )
    with path.open("a", encoding="utf-8", errors="backslashreplace") as file:
        file.write(lines)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics log, oldest first; [] when it does not exist.

    A line cut short by a killed process (the last one) is skipped rather than failing the read, and so is
    one that holds no record (a line of a log written before `_json_line` escaped its line breaks).
    """
    path = Path(path)
    if path.is_dir():
        path = metrics_path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
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
                "".join(_json_line(record) for record in kept),
                encoding="utf-8",
                errors="backslashreplace",
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


FIRST_STEPS = 3
"""Steps averaged for the start of a run in `learning_summary`."""

LAST_STEPS = 5
"""Steps averaged for the end of a run in `learning_summary`."""


def _windows(steps: int) -> tuple[int, int]:
    """How many of `steps` logged steps make the start and the end of a run: `FIRST_STEPS` and `LAST_STEPS`,
    fewer in a short run, so that no step counts for both."""
    first = min(FIRST_STEPS, steps // 2)
    return first, min(LAST_STEPS, steps - first)


def learning_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """For the total reward and each reward function: the mean of the first 3 and of the last 5 steps
    (in a run of fewer than 8, of its first and second halves).

    Returns `{key: {"first": ..., "last": ..., "change": last - first}}`; empty with fewer than 2 steps.
    """
    out = {}
    for key in ["reward", *reward_keys(records)]:
        _, values = series(records, key)
        if len(values) < 2:
            continue
        start, end = _windows(len(values))
        first = sum(values[:start]) / start
        last = sum(values[-end:]) / end
        out[key] = {"first": round(first, 3), "last": round(last, 3), "change": round(last - first, 3)}
    return out


def learning_line(records: Sequence[Mapping[str, Any]]) -> str:
    """One line on what a run learnt: each reward's mean over its first and its last steps."""
    summary = learning_summary(records)
    if not summary:
        return "too few logged steps to say what was learnt"
    parts = [
        f"{key.split('/')[1] if '/' in key else 'total reward'} {values['first']:+.2f} -> {values['last']:+.2f}"
        for key, values in summary.items()
    ]
    start, end = _windows(len(series(records, "reward")[1]))
    first = "first step" if start == 1 else f"first {start} steps"
    last = "last step" if end == 1 else f"last {end}"
    return f"mean reward, {first} -> {last}: " + ", ".join(parts)


OUTCOME_COLORS = {
    "win": "tab:green",
    "failed": "tab:orange",
    "invalid": "tab:brown",
    "stalled": "tab:olive",
    "timeout": "tab:purple",
    "error": "tab:red",
    "rejected": "black",
    "missing": "tab:gray",
}
"""One colour per game outcome, the same in every plot; outcomes stack in this order, wins at the bottom."""


def _label(key: str) -> str:
    """A metric's name without TRL's prefixes and suffixes (`rewards/no_cheating/mean` -> `no_cheating`)."""
    return key.removeprefix(REWARD_PREFIX).removeprefix(OUTCOME_PREFIX).removesuffix("/mean")


def _style_step_axis(ax: Any) -> None:
    """Whole-number steps on the x axis, a light grid, and plain tick labels (no `+7.61` offset)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def _plot_lines(ax: Any, records: Sequence[Mapping[str, Any]], labels: Mapping[str, str], title: str) -> None:
    """One line per metric of `labels` (metric -> legend label); metrics the run did not log are left out."""
    for key, label in labels.items():
        steps, values = series(records, key)
        if steps:
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=label)
    ax.set_title(title, fontsize=10)
    _style_step_axis(ax)
    if ax.lines:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(
            0.5, 0.5, "not logged by this run", ha="center", va="center", transform=ax.transAxes, color="gray"
        )


def _plot_rewards(ax: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """The total reward in bold black, each reward function's mean beside it."""
    steps, values = series(records, "reward")
    if steps:
        ax.plot(steps, values, color="black", linewidth=2, label="total")
    for key in reward_keys(records):
        steps, values = series(records, key)
        ax.plot(steps, values, linewidth=1, label=_label(key))
    ax.set_title("reward per function (mean over the step's completions)", fontsize=10)
    ax.set_ylabel("reward")
    _style_step_axis(ax)
    if ax.lines:
        ax.legend(fontsize=8, loc="best")


def _plot_outcomes(ax: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """How each step's games ended, stacked; outcomes that never happened are left out of the legend."""
    from matplotlib.ticker import MaxNLocator

    order = list(OUTCOME_COLORS)
    logged = [key for key in outcome_keys(records) if any(series(records, key)[1])]
    present = sorted(logged, key=lambda key: order.index(_label(key)) if _label(key) in order else len(order))
    steps = [record["step"] for record in records if "step" in record]
    if present and steps:
        counts = [[float(record.get(key) or 0) for record in records if "step" in record] for key in present]
        names = [_label(key) for key in present]
        colors = [OUTCOME_COLORS.get(name, "tab:blue") for name in names]
        ax.stackplot(steps, counts, labels=names, colors=colors, alpha=0.8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("how the step's games ended", fontsize=10)
    ax.set_ylabel("games")
    _style_step_axis(ax)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


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
    _plot_rewards(axes[0], records)
    if outcomes:
        _plot_outcomes(axes[1], records)
    length_ax = axes[-1]
    _plot_lines(length_ax, records, {"completions/mean_length": "mean"}, "completion length")
    length_ax.set_ylabel("tokens")
    length_ax.set_ylim(bottom=0)
    last = records[-1].get("step") if records else None
    figure.suptitle(
        title or (f"GRPO training, step {last}" if last is not None else "GRPO training: no steps yet")
    )
    figure.tight_layout()
    return figure


def plot_dashboard(records: Sequence[Mapping[str, Any]], title: str = "") -> Any:
    """The training dashboard: six panels of every metric against the step; returns the figure.

    Rewards per function, completion length, the share of completions cut off at
    `max_completion_length`, entropy and KL, how the games ended, and the reward spread within GRPO
    groups (a group whose completions all get the same reward gives no learning signal).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    figure, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    _plot_rewards(axes[0, 0], records)
    _plot_lines(
        axes[0, 1],
        records,
        {"completions/mean_length": "mean", "completions/max_length": "longest"},
        "completion length",
    )
    axes[0, 1].set(ylabel="tokens", ylim=(0, None))
    _plot_lines(
        axes[0, 2],
        records,
        {"completions/clipped_ratio": "cut off"},
        "completions cut off at max_completion_length",
    )
    _plot_lines(
        axes[1, 0],
        records,
        {"entropy": "entropy", "kl": "KL to the base model"},
        "entropy (and KL when beta > 0)",
    )
    axes[1, 0].set_ylim(
        bottom=0
    )  # both are >= 0; a zoomed axis makes noise in the fifth digit look like swings
    _plot_outcomes(axes[1, 1], records)
    _plot_lines(
        axes[1, 2],
        records,
        {"frac_reward_zero_std": "groups with one reward for all (no signal)"},
        "GRPO groups without a learning signal",
    )
    for ax in (axes[0, 2], axes[1, 2]):
        ax.set(ylim=(-0.05, 1.05), ylabel="share")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    last = records[-1].get("step") if records else None
    figure.suptitle(title or f"GRPO training, {len(records)} logged steps, last step {last}")
    figure.tight_layout()
    return figure


COMPARED = (
    "reward",
    "rewards/function_works/mean",
    "rewards/strategy_succeeds/mean",
    "completions/mean_length",
)
"""The metrics `plot_runs` compares by default, one panel each."""


def plot_runs(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str] = COMPARED, title: str = ""
) -> Any:
    """Several runs on one figure: a panel per metric, a line per run (`runs`: name -> records)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        _plot_lines(ax, [], {}, _label(key) if key != "reward" else "total reward")
        for name, records in runs.items():
            steps, values = series(records, key)
            if steps:
                ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=name)
        if ax.lines:
            for text in list(ax.texts):
                text.remove()
            ax.legend(fontsize=8, loc="best")
    figure.suptitle(title or f"{len(runs)} runs compared")
    figure.tight_layout()
    return figure
