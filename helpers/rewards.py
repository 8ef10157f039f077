"""The reward functions GRPO optimises, with TRL's signature `(completions, **kwargs) -> list[float]`.

Three rewards, the original table; the values are `helpers.config.RewardConfig`'s fields:

| reward | field | when |
|---|---|---|
| `function_works` | `works` | one well-formed top-level `def strategy(board)` (even if it cheats) |
| | `works_malformed` | it parses, but the shape is wrong: signature, extra top-level code, async, generator, ... |
| | `works_missing` | nothing extracted, or a syntax error |
| `no_cheating` | `clean` | only allowed imports and names |
| | `cheating` | a forbidden import, name or attribute, or a forbidden operation caught at run time |
| | `cheating_missing` | nothing extracted, or a syntax error (nothing to judge) |
| `strategy_succeeds` | `success` | the game was won (the mean over `games_per_completion` games) |
| | `failed` | the game was played to its end by the rules and lost |
| | `invalid` | the game ended on an answer that is no key: an invalid key, "", a non-string |
| | `timeout` | out of time (its later games are then not played: timeouts too), or stalled |
| | `error` | the strategy raised |
| | `not_executed` | not executed: nothing extracted, a syntax error, or rejected by the checks |

An answer that is no key never earns more than a legal strategy: in the original table it ended the
game as a loss (+2), more than a legal strategy that stalls (-1), and a small real model learnt to
answer invalid keys. An optional fourth reward, `strategy_graded` (`RewardConfig.graded`), pays
`graded_scale * (score / random play's score - 1)` on the same games: +20 cannot tell a good strategy
from random moves, which win most games of the original 6x6 board, but the score can, above all on a
harder preset (`helpers.config.GAME_PRESETS`).

The games. Every completion of a training step plays the same seeded games, which keeps a GRPO
group's comparison fair, and every step plays new ones (`helpers.config.training_seeds`, from the
`trainer_state` TRL passes), so no strategy is fitted to one game. Outside training (no
`trainer_state`) the games are step 0's; `explain` and `verdicts` also take explicit seeds.

TRL calls each reward function separately with the same completions. The verdict of a completion
(extraction, checks, games) is computed once, by whichever function comes first, and kept in a
bounded cache keyed by a hash of its text, the seeds and the settings, so each step plays its games
once, in parallel. Outcome counts (win, failed, invalid, timeout, stalled, error, rejected, missing)
go to TRL's `log_metric` hook as `outcomes/<name>`; during training every
completion, its rewards and its outcome are appended to `<output_dir>/completions.jsonl`. No reward
function ever raises: any input, however hostile, gets a float and a reason (`explain`).
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from helpers.config import Config, training_seeds
from helpers.evaluate import baseline_scores
from helpers.metrics import append_records, completions_path
from helpers.runs import process_rank
from helpers.sandbox import (
    MAX_SOURCE_CHARS,
    GameResult,
    StaticCheck,
    check_source,
    extract_function,
    play_batch,
)

OUTCOMES = ("win", "failed", "invalid", "timeout", "stalled", "error", "rejected", "missing")
"""What can become of one game of a completion; logged as `outcomes/<name>` counts per batch."""

MAX_COMPLETION_CHARS = 1_000_000
"""Longer completions are not searched for code (they count as `missing`)."""

CACHE_SIZE = 1024
"""Completions whose verdicts are remembered (least recently used are dropped first)."""

_OUTCOME_OF_STATE = {
    "success": "win",
    "failed": "failed",
    "timeout": "timeout",
    "stalled": "stalled",
    "error": "error",
    "rejected": "rejected",
}

Reward = Callable[..., list[float]]

MAX_LOGGED_CHARS = 20_000
"""A completion is cut at this length in `completions.jsonl`."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Everything the rewards need to know about one completion."""

    source: str | None
    """The extracted `def strategy(board)` source (None when there is none)."""
    check: StaticCheck | None
    """The static checks' findings (None when nothing was extracted)."""
    results: tuple[GameResult, ...]
    """One result per seeded game; empty when the code did not run."""
    note: str = ""
    """Why nothing was extracted, when that is the case."""

    @property
    def outcomes(self) -> list[str]:
        """One outcome name per game (see `OUTCOMES`)."""
        if self.results:
            return [_outcome(result) for result in self.results]
        return ["missing" if self.check is None else "rejected"]

    @property
    def reason(self) -> str:
        """One line for a table: what happened and why."""
        if self.check is None:
            return f"missing: {self.note}; nothing was run or judged"
        if not self.results:
            return f"rejected: {self.check.verdict}: {self.check.reason}"
        parts = []
        for result in self.results:
            detail = f"{_outcome(result)} after {result.steps} moves, score {result.score}"
            parts.append(f"{detail} ({result.error})" if result.error else detail)
        return "; ".join(parts)


class VerdictCache:
    """The verdicts of recent completions, so the reward functions of one step play its games once.

    Bounded: the least recently used are dropped past `CACHE_SIZE`. `reward_functions` gives the
    functions it binds one cache; a reward function called on its own plays its games afresh.
    """

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple, Verdict] = OrderedDict()

    def get(self, key: tuple) -> Verdict | None:
        return self.entries.get(key)

    def put(self, key: tuple, verdict: Verdict) -> None:
        """Keep `verdict` without the keys its games played: no reward reads them, and a result may hold
        800 KB of them (`MAX_RECORDED_KEYS`), so a full cache could hold a gigabyte (red team 6)."""
        if any(result.keys for result in verdict.results):
            verdict = replace(verdict, results=tuple(replace(result, keys=()) for result in verdict.results))
        self.entries[key] = verdict
        self.entries.move_to_end(key)
        while len(self.entries) > CACHE_SIZE:
            self.entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a copy in another process starts empty: the verdicts are only a shortcut

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.entries = OrderedDict()


def _outcome(result: GameResult) -> str:
    return "invalid" if result.invalid_key else _OUTCOME_OF_STATE[result.state]


def _completion_text(completion: object) -> str | None:
    """The text of a plain or conversational completion; a separate reasoning field goes first."""
    if isinstance(completion, str):
        return completion
    messages = [completion] if isinstance(completion, dict) else completion
    if not isinstance(messages, list | tuple):
        return None
    analysis, final = [], []
    for message in messages:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        for key in ("reasoning_content", "thinking", "reasoning"):
            if isinstance(message.get(key), str):
                analysis.append(message[key])
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if isinstance(content, str):
            final.append(content)
    if not analysis and not final:
        return None
    if not analysis:
        return "\n".join(final)
    return "analysis" + "\n".join(analysis) + "assistantfinal" + "\n".join(final)


def _static_verdict(text: str | None, config: Config) -> Verdict:
    """Extract and check one completion; a failure there is this completion's alone (it counts as missing)."""
    try:
        return _read_and_check(text, config)
    except Exception as exc:  # noqa: BLE001 - one hostile completion must not zero its batch
        _log.warning("could not read a completion (%s); it counts as missing", type(exc).__name__)
        return Verdict(None, None, (), f"could not be read ({type(exc).__name__})")


def _read_and_check(text: str | None, config: Config) -> Verdict:
    if text is None:
        return Verdict(None, None, (), "the completion is not text")
    if len(text) > MAX_COMPLETION_CHARS:
        return Verdict(None, None, (), f"the completion is longer than {MAX_COMPLETION_CHARS} characters")
    source = extract_function(text)
    if source is None:
        return Verdict(None, None, (), "no def strategy(board) found")
    check = check_source(source, config.sandbox)
    return Verdict(source if len(source) <= MAX_SOURCE_CHARS else None, check, ())


def verdicts(
    completions: list[Any],
    config: Config,
    seeds: Sequence[int] | None = None,
    cache: VerdictCache | None = None,
) -> list[Verdict]:
    """The verdict of each completion: extracted, checked, and played (those not in `cache`, in one batch).

    Every completion plays the games of `seeds` (step 0's training games when None).
    """
    cache = VerdictCache() if cache is None else cache
    seeds = tuple(training_seeds(config.rewards, 0) if seeds is None else seeds)
    settings = (config.game, config.sandbox, seeds)
    texts = [_completion_text(completion) for completion in completions]
    keys = []
    found: list[Verdict] = []
    to_play: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        digest = (
            hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest() if text else text
        )
        key = (digest, settings)
        keys.append(key)
        verdict = cache.get(key)
        if verdict is None:
            verdict = _static_verdict(text, config)
            if verdict.check is not None and verdict.check.verdict == "ok" and verdict.source is not None:
                to_play.setdefault(verdict.source, []).append(index)
        found.append(verdict)
    if to_play:
        played = play_batch(list(to_play), config.game, seeds, config.sandbox, stop_at_timeout=True)
        for indices, results in zip(to_play.values(), played, strict=True):
            for index in indices:
                verdict = found[index]
                found[index] = Verdict(verdict.source, verdict.check, tuple(results))
    for key, verdict in zip(keys, found, strict=True):
        cache.put(key, verdict)
    return found


def _works(verdict: Verdict, config: Config, seeds: Sequence[int]) -> float:
    table = config.rewards
    if verdict.check is None or verdict.check.verdict == "syntax_error":
        return table.works_missing
    return table.works if verdict.check.well_formed else table.works_malformed


def _clean(verdict: Verdict, config: Config, seeds: Sequence[int]) -> float:
    table = config.rewards
    if verdict.check is None or verdict.check.verdict == "syntax_error":
        return table.cheating_missing
    if verdict.check.verdict == "forbidden" or any(result.state == "rejected" for result in verdict.results):
        return table.cheating
    return table.clean


def _succeeds(verdict: Verdict, config: Config, seeds: Sequence[int]) -> float:
    table = config.rewards
    if not verdict.results:
        return table.not_executed
    value = {
        "win": table.success,
        "failed": table.failed,
        "invalid": table.invalid,
        "timeout": table.timeout,
        "stalled": table.timeout,
        "error": table.error,
        "rejected": table.not_executed,
    }
    return statistics.fmean(value[outcome] for outcome in verdict.outcomes)


def _graded(verdict: Verdict, config: Config, seeds: Sequence[int]) -> float:
    rewards = config.rewards
    baseline = max(statistics.fmean(baseline_scores(config.game, seeds, "random")), 1.0)
    score = statistics.fmean(result.score for result in verdict.results) if verdict.results else 0.0
    return rewards.graded_scale * (score / baseline - 1.0)


def _as_list(completions: object) -> list[Any]:
    if completions is None:
        return []
    if isinstance(completions, list | tuple):
        return list(completions)
    return [completions]


Value = Callable[[Verdict, Config, Sequence[int]], float]


def _step(kwargs: dict) -> int | None:
    """The trainer's global step from TRL's `trainer_state` keyword, or None outside training."""
    step = getattr(kwargs.get("trainer_state"), "global_step", None)
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _score(
    completions: object, config: object, value: Value, kwargs: dict, seeds: Sequence[int] | None = None
) -> tuple[list[float], list[Verdict] | None, tuple[int, ...]]:
    """Rewards for every completion, never raising: on an internal failure every completion gets 0.

    The games are `seeds`, or the training step's (`training_seeds`) when None; TRL's keywords may
    carry the `verdict_cache` that `BoundReward` passes.
    """
    items = _as_list(completions)
    active = config if isinstance(config, Config) else Config()
    played = tuple(training_seeds(active.rewards, _step(kwargs)) if seeds is None else seeds)
    try:
        found = verdicts(items, active, played, kwargs.get("verdict_cache"))
        return [float(value(verdict, active, played)) for verdict in found], found, played
    except Exception:  # noqa: BLE001 - the trainer must never die because of a reward
        _log.exception("reward evaluation failed; every completion of this batch gets 0")
        return [0.0] * len(items), None, played


def _record(
    completions: list[Any], found: list[Verdict], config: Config, seeds: tuple[int, ...], kwargs: dict
) -> None:
    """Count the outcomes, one per game: into TRL's hooks and the completions log."""
    counts = Counter(
        outcome
        for verdict in found
        for outcome in (verdict.outcomes if verdict.results else verdict.outcomes * len(seeds))
    )
    step = _step(kwargs)
    log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
    try:
        if callable(log_metric):
            for name in OUTCOMES:
                log_metric(f"outcomes/{name}", float(counts[name]))
        if callable(log_extra):
            log_extra("outcome", [verdict.reason for verdict in found])
        every = config.training.log_completions_every
        if step is not None and every and step % every == 0:
            _log_completions(completions, found, config, seeds, step + 1)
    except Exception:  # noqa: BLE001 - logging must not stop training
        _log.exception("could not log the outcomes of this batch")


def _log_completions(
    completions: list[Any], found: list[Verdict], config: Config, seeds: tuple[int, ...], step: int
) -> None:
    """Append one record per completion to the run's `completions.jsonl` (one file per process)."""
    rank = process_rank()
    path = completions_path(config.training.output_dir, str(rank) if rank else None)
    records = []
    for index, (completion, verdict) in enumerate(zip(completions, found, strict=True)):
        text = _completion_text(completion)
        records.append(
            {
                "step": step,
                "index": index,
                "seeds": list(seeds),
                "rewards": reward_values(verdict, config, seeds),
                "outcome": ", ".join(verdict.outcomes),
                "reason": verdict.reason,
                "score": statistics.fmean(r.score for r in verdict.results) if verdict.results else 0.0,
                "completion": text[:MAX_LOGGED_CHARS] if isinstance(text, str) else repr(completion)[:200],
            }
        )
    append_records(path, records)


def function_works(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Reward a completion for proposing exactly one well-formed `def strategy(board)`.

    Args:
        completions: plain strings, or conversational completions `[{"role": "assistant", "content": ...}]`.
        config: the settings (the default `Config` when None); TRL's own keyword arguments are ignored.

    Returns:
        One float per completion, a `RewardConfig` value: `works` for a single well-formed function, `works_malformed`
        when it parses but has the wrong shape, `works_missing` when nothing was
        extracted or it does not parse.

    Example:
        >>> function_works(["```python\\ndef strategy(board):\\n    return 'a'\\n```", "no code"])
        [1.0, -2.0]
    """
    return _score(completions, config, _works, kwargs)[0]


def no_cheating(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Penalise a strategy that imports outside the allow-list or reaches for the interpreter's internals.

    Args:
        completions: plain strings, or conversational completions.
        config: the settings (the default `Config` when None).

    Returns:
        One float per completion, a `RewardConfig` value: `clean`, `cheating` for a forbidden import, name or
        attribute, or a forbidden operation caught while it ran, `cheating_missing` when there is
        no parseable code to judge.

    Example:
        >>> no_cheating(["```python\\nimport os\\ndef strategy(board):\\n    return 'a'\\n```"])
        [-20.0]
    """
    return _score(completions, config, _clean, kwargs)[0]


def strategy_succeeds(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Play each strategy on the step's seeded games in the sandbox and reward the outcome.

    Args:
        completions: plain strings, or conversational completions.
        config: the settings (the default `Config` when None).
        **kwargs: TRL's `trainer_state` picks the step's games (`training_seeds`) and dates the
            records; its `log_metric` and `log_extra` hooks, when present, receive the outcome counts
            (`outcomes/win`, ...) and each completion's outcome.

    Returns:
        One float per completion, the mean over its games of: `success` for a win, `failed`
        for a game lost by the rules, `invalid` for an answer that is no key, `timeout` for a
        timeout or a stall, `error` when the strategy raised, `not_executed` for code that
        never ran; the values are `RewardConfig`'s.

    Example:
        >>> strategy_succeeds(["```python\\ndef strategy(board):\\n    return 'x'\\n```"])
        [-3.0]
    """
    active = config if isinstance(config, Config) else Config()
    rewards, found, seeds = _score(completions, active, _succeeds, kwargs)
    if found is not None:
        _record(_as_list(completions), found, active, seeds, kwargs)
    return rewards


def strategy_graded(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Reward the strategy's score relative to random play on the same seeded games.

    Args:
        completions: plain strings, or conversational completions.
        config: the settings (the default `Config` when None); `RewardConfig.graded_scale` sets the scale.

    Returns:
        One float per completion: `graded_scale * (mean score / random play's mean score - 1)`, so 0 for
        random play's level, +`graded_scale` for twice its score, -`graded_scale` for code that never ran.

    Example:
        >>> strategy_graded(["no code"])
        [-10.0]
    """
    return _score(completions, config, _graded, kwargs)[0]


_VALUES: dict[str, Value] = {
    "function_works": _works,
    "no_cheating": _clean,
    "strategy_succeeds": _succeeds,
}
"""Each reward function's value of one verdict, by the function's name."""


def _values(config: Config) -> dict[str, Value]:
    return _VALUES | ({"strategy_graded": _graded} if config.rewards.graded else {})


def reward_values(verdict: Verdict, config: Config, seeds: Sequence[int]) -> dict[str, float]:
    """What each of the run's reward functions pays for one verdict on the games of `seeds`."""
    return {name: value(verdict, config, seeds) for name, value in _values(config).items()}


class BoundReward:
    """A reward function bound to a run's settings, as TRL calls it: `reward(completions, **kwargs)`.

    A class rather than a closure, so that it pickles (TRL's own stateful rewards are classes for the
    same reason); `__name__` is the function's, which TRL logs as `rewards/<name>/mean`.
    """

    def __init__(self, function: Reward, config: Config, cache: VerdictCache | None = None) -> None:
        self.function = function
        self.config = config
        self.cache = VerdictCache() if cache is None else cache
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float]:
        kwargs.pop("config", None)
        kwargs["verdict_cache"] = self.cache
        return self.function(completions, config=self.config, **kwargs)

    def __repr__(self) -> str:
        return f"<reward {self.__name__}>"


def reward_functions(config: Config) -> list[Reward]:
    """The reward functions for TRL's `GRPOTrainer(reward_funcs=...)`, bound to `config`.

    Each keeps its module-level name, which TRL logs as `rewards/<name>/mean`; `strategy_graded` is
    included when `config.rewards.graded` is set. They share one `VerdictCache`, so a step's games are
    played once for all of them.
    """
    chosen = [function_works, no_cheating, strategy_succeeds]
    if config.rewards.graded:
        chosen.append(strategy_graded)
    cache = VerdictCache()
    return [BoundReward(function, config, cache) for function in chosen]


def explain(
    completions: list[Any], config: Config | None = None, seeds: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Each completion's rewards, outcome and reason, for the notebook's table (never raises).

    The games are `seeds`, or training step 0's when None.

    Example:
        >>> explain(["no code"])[0]["reason"]
        'missing: no def strategy(board) found; nothing was run or judged'
    """
    active = config if isinstance(config, Config) else Config()
    items = _as_list(completions)
    cache = VerdictCache()
    shared = {"verdict_cache": cache}
    columns = {
        name: _score(items, active, value, shared, seeds)[0] for name, value in _values(active).items()
    }
    rows = []
    for index in range(len(items)):
        row: dict[str, Any] = {name: values[index] for name, values in columns.items()}
        try:
            verdict = verdicts([items[index]], active, seeds, cache)[0]
            row |= {
                "outcome": ", ".join(verdict.outcomes),
                "reason": verdict.reason,
                "score": statistics.fmean(r.score for r in verdict.results) if verdict.results else 0.0,
                "source": verdict.source,
            }
        except Exception as exc:  # noqa: BLE001 - the table must show something for every completion
            row |= {
                "outcome": "error",
                "reason": f"could not evaluate: {exc!r}"[:200],
                "score": 0.0,
                "source": None,
            }
        rows.append(row)
    return rows
