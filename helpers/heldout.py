"""Held-out evaluation: does the trained model write better strategies than the model it started from?

`evaluate_checkpoint` samples K strategies from the trained model (base + adapter) and K from the
untrained one (the same weights with the adapter switched off), plays every strategy on N games whose
seeds training never uses (`EvalConfig.seed`, far above `helpers.config.training_seeds`), plays the
baselines on the same games, and writes into `<run>/heldout-<checkpoint>/`: the strategies
(`strategies/trained-01.py`, ...; `best.py` is the trained model's best), `report.json`, `report.md`
and `heldout.png`. `python -m helpers play --checkpoint ...` watches `best.py` play.

The tables and plots (`summary_rows`, `plot_heldout`) need no torch; sampling does.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from helpers.config import Config, EvalConfig, training_seeds
from helpers.evaluate import EvalReport, evaluate_strategy
from helpers.rewards import reward_values, verdicts
from helpers.training import generate_strategies

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
"""The held-out evaluation's numbers, in its folder."""

BEST_FILE = "best.py"
"""The trained model's best strategy on the held-out games, in the evaluation's folder."""


class HeldOutError(ValueError):
    """The evaluation cannot be held out as asked (its seeds overlap the training games, ...)."""


@dataclass
class ScoredStrategy:
    """One sampled completion and how its strategy played on the held-out games."""

    model: str
    """`trained` or `untrained`."""
    number: int
    """1-based position among that model's samples."""
    completion: str
    """The completion as the reward functions see it."""
    source: str | None
    """The extracted `def strategy(board)`, or None when the completion held none."""
    scores: list[int] = field(default_factory=list)
    """Final score of each held-out game (empty when there was no strategy)."""
    rewards: dict[str, float] = field(default_factory=dict)
    """What each training reward function pays this completion on the held-out games."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Game state (success, failed, stalled, ...) -> games; `invalid` for answers that are no key."""
    wins: int = 0
    """Games that reached the target."""

    @property
    def mean_score(self) -> float:
        """Mean final score over the held-out games; 0 for a completion without a strategy."""
        return statistics.fmean(self.scores) if self.scores else 0.0

    @property
    def legal(self) -> bool:
        """Whether it played every game to its end by the rules (won or lost, no error, stall or bad key)."""
        return bool(self.scores) and set(self.outcomes) <= {"success", "failed"}

    @property
    def name(self) -> str:
        """`trained-03`: its file name without the suffix."""
        return f"{self.model}-{self.number:02d}"


@dataclass
class HeldOutReport:
    """A held-out evaluation: both models' strategies and the baselines, on the same games."""

    seeds: list[int]
    """The held-out games."""
    game: dict[str, Any]
    """The game settings (`GameConfig` as a dict)."""
    checkpoint: str | None
    """The trained adapter, or None when only the untrained model was sampled."""
    strategies: list[ScoredStrategy]
    """Every sampled strategy, untrained first."""
    baselines: list[EvalReport]
    """The baselines on the same games."""

    def of(self, model: str) -> list[ScoredStrategy]:
        """The strategies sampled from one model (`trained` or `untrained`)."""
        return [strategy for strategy in self.strategies if strategy.model == model]

    def best(self, model: str = "trained") -> ScoredStrategy | None:
        """The model's strategy with the highest mean score among those that played legally, else any."""
        candidates = [s for s in self.of(model) if s.legal] or [s for s in self.of(model) if s.scores]
        return max(candidates, key=lambda s: s.mean_score, default=None)


def check_held_out(config: Config, evaluation: EvalConfig) -> list[int]:
    """The held-out seeds; raises `HeldOutError` when one of them is a game the run trains on."""
    seeds = list(range(evaluation.seed, evaluation.seed + evaluation.games))
    games = config.rewards.games_per_completion
    first = training_seeds(config.rewards, 0)[0]
    last = training_seeds(config.rewards, config.training.max_steps - 1)[-1]
    overlap = [seed for seed in seeds if first <= seed <= last]
    if overlap:
        raise HeldOutError(
            f"held-out seeds {seeds[0]}..{seeds[-1]} overlap the training games {first}..{last} "
            f"({config.training.max_steps} steps x {games} games from rewards.seed {config.rewards.seed}); "
            f"choose a seed above {last}"
        )
    return seeds


def score_strategies(
    samples: Sequence[tuple[str, str]], config: Config, seeds: Sequence[int]
) -> list[ScoredStrategy]:
    """Judge every `(model, completion)` sample as training does, on `seeds`, all at once over the pool."""
    found = verdicts([completion for _, completion in samples], config, seeds)
    numbers: Counter[str] = Counter()
    scored = []
    for (model, completion), verdict in zip(samples, found, strict=True):
        numbers[model] += 1
        strategy = ScoredStrategy(model, numbers[model], completion, verdict.source)
        strategy.rewards = reward_values(verdict, config, seeds)
        if verdict.results:
            strategy.scores = [result.score for result in verdict.results]
            strategy.outcomes = dict(Counter(verdict.outcomes))
            strategy.wins = sum(result.state == "success" for result in verdict.results)
        scored.append(strategy)
    return scored


def summary_rows(report: HeldOutReport) -> list[dict[str, Any]]:
    """One row per model and per baseline: the before/after table."""
    rows = []
    for model in ("untrained", "trained"):
        strategies = report.of(model)
        if not strategies:
            continue
        best = report.best(model)
        games = sum(len(s.scores) for s in strategies)
        rows.append(
            {
                "strategy": f"{model} model ({len(strategies)} samples)",
                "mean reward": statistics.fmean(sum(s.rewards.values()) for s in strategies),
                "hold a strategy": sum(s.source is not None for s in strategies) / len(strategies),
                "play legally": sum(s.legal for s in strategies) / len(strategies),
                "mean score": statistics.fmean(s.mean_score for s in strategies),
                "best strategy's score": best.mean_score if best else 0.0,
                "win rate": sum(s.wins for s in strategies) / games if games else 0.0,
            }
        )
    for baseline in report.baselines:
        rows.append(
            {
                "strategy": baseline.name,
                "mean reward": None,
                "hold a strategy": 1.0,
                "play legally": 1.0,
                "mean score": baseline.mean_score,
                "best strategy's score": baseline.mean_score,
                "win rate": baseline.win_rate,
            }
        )
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned Markdown table (fractions as percentages, scores rounded)."""
    if not rows:
        return ""
    headers = list(rows[0])

    def cell(key: str, value: Any) -> str:
        if value is None:
            return ""
        if key == "mean reward":
            return f"{value:+.2f}"
        if isinstance(value, float):
            return (
                f"{value:.0%}" if key in ("hold a strategy", "play legally", "win rate") else f"{value:,.0f}"
            )
        return str(value)

    table = [headers] + [[cell(key, row[key]) for key in headers] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)) + " |"
        for line in table
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def plot_heldout(report: HeldOutReport, title: str = "") -> Any:
    """Each sampled strategy's mean held-out score, per model, with the baselines as lines."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7.5, 4.2))
    models = [model for model in ("untrained", "trained") if report.of(model)]
    for position, model in enumerate(models):
        strategies = report.of(model)
        scores = [s.mean_score for s in strategies]
        jitter = [position + 0.25 * ((i % 7) - 3) / 3 for i in range(len(scores))]
        colours = ["tab:green" if s.legal else "tab:red" if s.source else "tab:gray" for s in strategies]
        ax.scatter(jitter, scores, c=colours, s=28, alpha=0.8, zorder=3)
        ax.hlines(statistics.fmean(scores), position - 0.35, position + 0.35, colors="black", zorder=4)
    styles = {"random": ":", "greedy": "--", "fixed-order": "-."}
    for baseline in report.baselines:
        ax.axhline(
            baseline.mean_score,
            color="tab:blue",
            linestyle=styles.get(baseline.name, "-"),
            label=f"{baseline.name} ({baseline.mean_score:,.0f})",
        )
    ax.set_xticks(range(len(models)), [f"{model}\n({len(report.of(model))} samples)" for model in models])
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylabel(f"mean score over {len(report.seeds)} held-out games")
    ax.scatter([], [], c="tab:green", label="played legally")
    ax.scatter([], [], c="tab:red", label="stalled, erred or bad key")
    ax.scatter([], [], c="tab:gray", label="no strategy (score 0)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    game = report.game
    ax.set_title(
        title or f"Held-out games: {game['size']}x{game['size']} to {game['target']}; a dot is a strategy"
    )
    figure.tight_layout()
    return figure


REPORT_NAMES = ("strategies", REPORT_FILE, "report.md", "heldout.png", BEST_FILE)
"""What a report writes in its folder; an earlier report's are moved under `EARLIER`, never replaced."""

EARLIER = "earlier"
"""The sub-folder of a report's folder that keeps the earlier reports, one folder each."""


def check_report_folder(folder: str | os.PathLike) -> None:
    """Raise `HeldOutError` when `folder` cannot take a report (it is a file), before anything is run."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HeldOutError(f"the report's folder {folder} is a file: choose another --output")


def keep_earlier_report(folder: str | os.PathLike) -> Path | None:
    """Move what an earlier report wrote in `folder` into `folder/earlier/<its time>/`; returns that folder.

    Only the report's own names move (`REPORT_NAMES`); anything else in `folder` stays where it is. None
    when there was nothing to move.
    """
    folder = Path(folder)
    present = [folder / name for name in REPORT_NAMES if (folder / name).exists()]
    if not present:
        return None
    dated = folder / REPORT_FILE if (folder / REPORT_FILE).exists() else present[0]
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(dated.stat().st_mtime))
    kept = folder / EARLIER / stamp
    number = 1
    while kept.exists():
        number += 1
        kept = folder / EARLIER / f"{stamp}-{number}"
    kept.mkdir(parents=True)
    for path in present:
        path.rename(kept / path.name)
    return kept


TEXT_ERRORS = "backslashreplace"
"""How the report writes text that is not valid Unicode (a lone surrogate in a completion): as its escape,
rather than losing the whole evaluation at its last write."""


def write_report(report: HeldOutReport, folder: str | os.PathLike) -> Path:
    """Write the strategies, `report.json`, `report.md`, `heldout.png` and `best.py` into `folder`.

    An earlier report there is kept, moved into `folder/earlier/<its time>/` (`keep_earlier_report`), so
    none of its files passes for this one's (a report without a strategy that played has no `best.py`)."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    check_report_folder(folder)
    kept = keep_earlier_report(folder)
    if kept is not None:
        log.info("the earlier report in %s was kept in %s", folder, kept)
    (folder / "strategies").mkdir(parents=True, exist_ok=True)
    for strategy in report.strategies:
        if strategy.source is not None:
            (folder / "strategies" / f"{strategy.name}.py").write_text(
                strategy.source + "\n", encoding="utf-8", errors=TEXT_ERRORS
            )
        (folder / "strategies" / f"{strategy.name}.txt").write_text(
            strategy.completion, encoding="utf-8", errors=TEXT_ERRORS
        )
    best = report.best("trained") or report.best("untrained")
    if best is not None and best.source is not None:
        (folder / BEST_FILE).write_text(
            f"# {best.name}: mean score {best.mean_score:,.0f} on held-out seeds "
            f"{report.seeds[0]}..{report.seeds[-1]}\n{best.source}\n",
            encoding="utf-8",
            errors=TEXT_ERRORS,
        )
    data = {
        "seeds": report.seeds,
        "game": report.game,
        "checkpoint": report.checkpoint,
        "summary": summary_rows(report),
        "strategies": [asdict(s) | {"mean_score": s.mean_score, "legal": s.legal} for s in report.strategies],
        "baselines": [asdict(b) for b in report.baselines],
    }
    (folder / REPORT_FILE).write_text(
        json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8", errors=TEXT_ERRORS
    )
    (folder / "report.md").write_text(
        markdown_table(summary_rows(report)) + "\n", encoding="utf-8", errors=TEXT_ERRORS
    )
    figure = plot_heldout(report)
    figure.savefig(folder / "heldout.png", dpi=110)
    plt.close(figure)
    return folder


def heldout_folder(checkpoint: str | os.PathLike) -> Path:
    """Where the evaluation of a checkpoint goes: `<run>/heldout-<checkpoint name>/`."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f"heldout-{checkpoint.name}"


def sample(model: Any, tokenizer: Any, config: Config, n: int, seed: int, adapter: bool = True) -> list[Any]:
    """`n` completions of the task prompt, seeded; `adapter=False` samples with the LoRA adapter off."""
    import contextlib

    import torch

    torch.manual_seed(seed)
    switch = contextlib.nullcontext() if adapter else model.disable_adapter()
    with switch:
        return generate_strategies(model, tokenizer, config, n=n)


def evaluate_models(
    model: Any,
    tokenizer: Any,
    config: Config,
    evaluation: EvalConfig | None = None,
    checkpoint: str | None = None,
    trained: bool = True,
) -> HeldOutReport:
    """Sample from the untrained model (adapter off) and, when `trained`, the trained one; play them all.

    `model` is a peft model whose adapter holds the training (a loaded checkpoint, or the model the
    notebook just trained). Raises `HeldOutError` when the held-out seeds overlap the training games.
    """
    evaluation = evaluation or EvalConfig()
    seeds = check_held_out(config, evaluation)
    samples = []
    models = ("untrained", "trained") if trained else ("untrained",)
    started = time.perf_counter()

    def progress(what: str) -> None:
        log.info("held-out evaluation, %.0f s: %s", time.perf_counter() - started, what)

    for model_name in models:
        progress(f"sampling {evaluation.strategies} strategies from the {model_name} model")
        for generated in sample(
            model, tokenizer, config, evaluation.strategies, evaluation.seed, adapter=model_name == "trained"
        ):
            samples.append((model_name, generated.text))
    progress(f"playing {len(samples)} strategies on {len(seeds)} held-out games each")
    strategies = score_strategies(samples, config, seeds)
    progress(f"playing the baselines ({', '.join(evaluation.baselines) or 'none'})")
    baselines = [
        evaluate_strategy(name, config.game, len(seeds), seeds[0], config.sandbox)
        for name in evaluation.baselines
    ]
    progress("done")
    return HeldOutReport(seeds, asdict(config.game), checkpoint, strategies, baselines)
