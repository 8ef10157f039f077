"""Play a strategy over many seeded games and compare it with built-in baselines.

On the original 6x6 board with target 2048, random moves already win most games, so a win tells a
good strategy from a random one badly. This module measures what separates them: win rate, score,
max-tile distribution and moves over N seeded games (`evaluate_strategy`), the baselines to measure
against (`BASELINES`: random, greedy one-ply, a fixed preference order), harder game presets
(`PRESETS`), and random play's score on given seeds (`baseline_scores`), which the graded reward
compares a strategy with.

A strategy is either a trusted Python callable `strategy(board) -> key`, run in this process, or
source text from the model, which only ever runs through `helpers.sandbox`.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from helpers.config import GAME_PRESETS, GameConfig, SandboxConfig
from helpers.game import GameBoard, from_config, keys_by_direction, play_keys, slide
from helpers.sandbox import GameResult, play_batch

Board = list[list[int]]
Strategy = Callable[[Board], str]
BaselineFactory = Callable[[Mapping[str, str], int], Strategy]

PREFERENCE = ("left", "down", "right", "up")
"""The fixed-order baseline's preference, and the greedy baseline's tie-break."""

PRESETS: dict[str, GameConfig] = GAME_PRESETS
"""Game variants (`helpers.config.GAME_PRESETS`): the original, and harder ones where random play rarely wins."""


def random_strategy(keymap: Mapping[str, str], seed: int) -> Strategy:
    """A uniformly random move among those that change the board (seeded apart from the game's own).

    This is the game a random key per turn plays when no-op keys are simply retried: trying the
    directions in a random order and taking the first that moves picks each moving direction with
    equal chance. It never stalls, so it is fair to compare scores with.
    """
    rng = random.Random(f"random-baseline:{seed}")
    key_of = keys_by_direction(keymap)
    directions = list(PREFERENCE)

    def strategy(board: Board) -> str:
        rng.shuffle(directions)
        for direction in directions:
            if slide(board, direction)[2]:
                return key_of[direction]
        return key_of[directions[0]]

    return strategy


def greedy_strategy(keymap: Mapping[str, str], seed: int = 0) -> Strategy:
    """One-ply greedy: the move whose merges gain the most points now; ties go to `PREFERENCE` order."""
    key_of = keys_by_direction(keymap)

    def strategy(board: Board) -> str:
        best, best_gain = PREFERENCE[0], -1
        for direction in PREFERENCE:
            _, gained, changed = slide(board, direction)
            if changed and gained > best_gain:
                best, best_gain = direction, gained
        return key_of[best]

    return strategy


def fixed_order_strategy(keymap: Mapping[str, str], seed: int = 0) -> Strategy:
    """The first move of left, down, right, up that changes the board."""
    key_of = keys_by_direction(keymap)

    def strategy(board: Board) -> str:
        for direction in PREFERENCE:
            if slide(board, direction)[2]:
                return key_of[direction]
        return key_of[PREFERENCE[0]]

    return strategy


BASELINES: dict[str, BaselineFactory] = {
    "random": random_strategy,
    "greedy": greedy_strategy,
    "fixed-order": fixed_order_strategy,
}
"""Built-in baselines: `BASELINES[name](keymap, game_seed)` returns a `strategy(board) -> key`."""


@dataclass
class EvalReport:
    """How one strategy did over a set of seeded games."""

    name: str
    """The strategy's name in tables."""
    games: int
    """Games played."""
    win_rate: float
    """Fraction of games that reached the target."""
    mean_score: float
    """Mean final score."""
    median_score: float
    """Median final score."""
    mean_moves: float
    """Mean number of actions per game."""
    max_tile_counts: dict[int, int] = field(default_factory=dict)
    """Largest tile at the end of a game -> number of games, smallest tile first."""
    outcome_counts: dict[str, int] = field(default_factory=dict)
    """Final state (success, failed, timeout, stalled, error, rejected) -> number of games."""
    scores: list[int] = field(default_factory=list)
    """Final score of each game, in seed order."""


def _play_in_process(strategy: Strategy, game: GameBoard, stall_moves: int) -> GameResult:
    """Play a trusted callable to the end (`helpers.game.play_keys`); an exception it raises is an error."""
    keys = (strategy(game.board()) for _ in itertools.count())
    try:
        end = play_keys(game, keys, stall_moves)
    except Exception as error:  # noqa: BLE001 - a baseline or a user's function that raises lost its game
        return GameResult(
            "error", game.moves, game.score(), game.max_tile(), f"{type(error).__name__}: {error}"[:200]
        )
    state = "stalled" if end == "stalled" else game.state()
    return GameResult(state, game.moves, game.score(), game.max_tile())


def _play_in_sandbox(
    source: str, config: GameConfig, seeds: Sequence[int], sandbox: SandboxConfig
) -> list[GameResult]:
    """Play untrusted source on every seed, in parallel over the sandbox's worker pool."""
    return play_batch([source], config, seeds, sandbox)[0]


def _progress(items: Iterable, enabled: bool, total: int, name: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=name, leave=False)


def _report(name: str, outcomes: Sequence[GameResult]) -> EvalReport:
    scores = [outcome.score for outcome in outcomes]
    games = len(outcomes)
    return EvalReport(
        name=name,
        games=games,
        win_rate=sum(outcome.state == "success" for outcome in outcomes) / games if games else 0.0,
        mean_score=statistics.fmean(scores) if scores else 0.0,
        median_score=float(statistics.median(scores)) if scores else 0.0,
        mean_moves=statistics.fmean(outcome.steps for outcome in outcomes) if outcomes else 0.0,
        max_tile_counts=dict(sorted(Counter(outcome.max_tile for outcome in outcomes).items())),
        outcome_counts=dict(Counter(outcome.state for outcome in outcomes).most_common()),
        scores=scores,
    )


def evaluate_strategy(
    strategy: Strategy | str,
    game_config: GameConfig | None = None,
    n_games: int = 100,
    seed: int = 0,
    sandbox_config: SandboxConfig | None = None,
    progress: bool = False,
    *,
    name: str | None = None,
) -> EvalReport:
    """Play `n_games` seeded games (seeds `seed`, `seed + 1`, ...) and summarise them.

    Args:
        strategy: a trusted callable `strategy(board) -> key` (run in this process), the name of a
            built-in baseline (`BASELINES`, rebuilt per game with that game's seed), or the source
            text of a `def strategy(board)` (untrusted: run through `helpers.sandbox`).
        game_config: the game variant; the default `GameConfig` when None.
        n_games: games to play.
        seed: seed of the first game.
        sandbox_config: limits for source strategies, and the stall limit for callables.
        progress: show a progress bar.
        name: the report's name; defaults to the baseline's or the callable's name.

    Returns:
        An `EvalReport`. Example: `evaluate_strategy("greedy", PRESETS["4x4-512"], n_games=20)`.
    """
    config = game_config or GameConfig()
    sandbox = sandbox_config or SandboxConfig()
    seeds = range(seed, seed + n_games)
    if isinstance(strategy, str) and strategy in BASELINES:
        factory = BASELINES[strategy]
        outcomes = []
        for game_seed in _progress(seeds, progress, n_games, strategy):
            game = from_config(config, seed=game_seed)
            outcomes.append(_play_in_process(factory(game.keymap, game_seed), game, sandbox.stall_moves))
        return _report(name or strategy, outcomes)
    if isinstance(strategy, str):
        return _report(name or "generated", _play_in_sandbox(strategy, config, list(seeds), sandbox))
    outcomes = [
        _play_in_process(strategy, from_config(config, seed=game_seed), sandbox.stall_moves)
        for game_seed in _progress(seeds, progress, n_games, name or "strategy")
    ]
    return _report(name or str(getattr(strategy, "__name__", "strategy")), outcomes)


@lru_cache(maxsize=1 << 14)
def _baseline_score(config: GameConfig, name: str, seed: int) -> float:
    game = from_config(config, seed=seed)
    strategy = BASELINES[name](game.keymap, seed)
    return float(_play_in_process(strategy, game, SandboxConfig().stall_moves).score)


def baseline_scores(game_config: GameConfig, seeds: Iterable[int], name: str = "random") -> list[float]:
    """A baseline's final score on each seeded game (cached per config, baseline and seed).

    The graded reward divides a strategy's score by random play's on the same seeds. A seed's value
    never depends on the other seeds asked for.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return [_baseline_score(game_config, name, seed) for seed in seeds]


def compare_rows(reports: Sequence[EvalReport]) -> list[dict[str, object]]:
    """One plain dict per report (for pandas or a notebook table)."""
    rows = []
    for report in reports:
        top_tile = max(report.max_tile_counts, default=0)
        rows.append(
            {
                "strategy": report.name,
                "games": report.games,
                "win rate": round(report.win_rate, 3),
                "mean score": round(report.mean_score, 1),
                "median score": round(report.median_score, 1),
                "mean moves": round(report.mean_moves, 1),
                "best tile": top_tile,
                "outcomes": ", ".join(f"{state} {count}" for state, count in report.outcome_counts.items()),
            }
        )
    return rows


def compare(reports: Sequence[EvalReport]) -> str:
    """A markdown table with one row per report, in the order given."""
    rows = compare_rows(reports)
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [[f"{row[h]:.1%}" if h == "win rate" else str(row[h]) for h in headers] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    return "\n".join(lines)
