"""The reward functions GRPO optimises, with TRL's signature `(completions, **kwargs) -> list[float]`.

Three rewards, the original table (values in `helpers.config.RewardConfig`):

| reward | value | when |
|---|---|---|
| `function_works` | +1.0 | one well-formed top-level `def strategy(board)` (even if it cheats) |
| | -0.5 | it parses, but the shape is wrong: signature, extra top-level code, async, generator, ... |
| | -2.0 | nothing extracted, or a syntax error |
| `no_cheating` | +1.0 | only allowed imports and names |
| | -20.0 | a forbidden import, name or attribute, or a forbidden operation caught at run time |
| | -1.0 | nothing extracted, or a syntax error (nothing to judge) |
| `strategy_succeeds` | +20 | the game was won (the mean over `games_per_completion` games) |
| | +2 | game over without a win (an invalid key or a non-string return ends the game as failed) |
| | -1 | a timeout, or stalled (repeated moves that change nothing) |
| | -3 | the strategy raised |
| | 0 | not executed: nothing extracted, a syntax error, or rejected by the checks |

An optional fourth, `strategy_graded` (`RewardConfig.graded`), pays
`graded_scale * (score / random play's score - 1)` on the same seeds: +20 cannot tell a good strategy
from random moves, which win most games of the original 6x6 board, but the score can, above all on a
harder preset (`helpers.evaluate.PRESETS`).

TRL calls each reward function separately with the same completions. The verdict of a completion
(extraction, checks, games) is computed once, by whichever function comes first, and kept in a
bounded cache keyed by a hash of its text and the settings, so each step plays its games once, in
parallel, and all completions of a step play the same seeded games (`RewardConfig.seed` and the
following seeds), which keeps a GRPO group's comparison fair. Outcome counts (win, failed, timeout,
stalled, error, rejected, missing) go to TRL's `log_metric` hook as `outcomes/<name>` and into
`OUTCOME_HISTORY`. No reward function ever raises: any input, however hostile, gets a float and a
reason (`explain`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import statistics
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpers.config import Config
from helpers.evaluate import baseline_scores
from helpers.sandbox import (
    MAX_SOURCE_CHARS,
    GameResult,
    StaticCheck,
    check_source,
    extract_function,
    play_batch,
)

OUTCOMES = ("win", "failed", "timeout", "stalled", "error", "rejected", "missing")
"""What can become of one game of a completion; logged as `outcomes/<name>` counts per batch."""

MAX_COMPLETION_CHARS = 1_000_000
"""Longer completions are not searched for code (they count as `missing`)."""

CACHE_SIZE = 2048
"""Completions whose verdicts are remembered (least recently used are dropped first)."""

OUTCOME_HISTORY: deque[dict[str, Any]] = deque(maxlen=100_000)
"""One record per `strategy_succeeds` call: `step` (the trainer's global step or None), `completions`, and
the count of each outcome. The notebook shows it; `outcome_totals()` sums it."""

_OUTCOME_OF_STATE = {
    "success": "win",
    "failed": "failed",
    "timeout": "timeout",
    "stalled": "stalled",
    "error": "error",
    "rejected": "rejected",
}

Reward = Callable[..., list[float]]
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
            return [_OUTCOME_OF_STATE[result.state] for result in self.results]
        return ["missing" if self.check is None else "rejected"]

    @property
    def reason(self) -> str:
        """One line for a table: what happened and why."""
        if self.check is None:
            return f"missing: {self.note}"
        if not self.results:
            return f"rejected: {self.check.verdict}: {self.check.reason}"
        parts = []
        for result in self.results:
            detail = f"{_OUTCOME_OF_STATE[result.state]} after {result.steps} moves, score {result.score}"
            parts.append(f"{detail} ({result.error})" if result.error else detail)
        return "; ".join(parts)


_cache: OrderedDict[tuple, Verdict] = OrderedDict()


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
    if text is None:
        return Verdict(None, None, (), "the completion is not text")
    if len(text) > MAX_COMPLETION_CHARS:
        return Verdict(None, None, (), f"the completion is longer than {MAX_COMPLETION_CHARS} characters")
    source = extract_function(text)
    if source is None:
        return Verdict(None, None, (), "no def strategy(board) found")
    check = check_source(source, config.sandbox)
    return Verdict(source if len(source) <= MAX_SOURCE_CHARS else None, check, ())


def verdicts(completions: list[Any], config: Config) -> list[Verdict]:
    """The verdict of each completion: extracted, checked, and played (cached; new ones in one batch)."""
    rewards = config.rewards
    settings = (config.game, config.sandbox, rewards.seed, rewards.games_per_completion)
    texts = [_completion_text(completion) for completion in completions]
    keys = []
    found: list[Verdict | None] = []
    to_play: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        digest = (
            hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest() if text else text
        )
        key = (digest, settings)
        keys.append(key)
        verdict = _cache.get(key)
        if verdict is None:
            verdict = _static_verdict(text, config)
            if verdict.check is not None and verdict.check.verdict == "ok" and verdict.source is not None:
                to_play.setdefault(verdict.source, []).append(index)
        found.append(verdict)
    if to_play:
        seeds = range(rewards.seed, rewards.seed + max(1, rewards.games_per_completion))
        played = play_batch(list(to_play), config.game, seeds, config.sandbox)
        for indices, results in zip(to_play.values(), played, strict=True):
            for index in indices:
                verdict = found[index]
                found[index] = Verdict(verdict.source, verdict.check, tuple(results))
    for key, verdict in zip(keys, found, strict=True):
        _cache[key] = verdict
        _cache.move_to_end(key)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return found


def _works(verdict: Verdict, config: Config) -> float:
    table = config.rewards
    if verdict.check is None or verdict.check.verdict == "syntax_error":
        return table.works_missing
    return table.works if verdict.check.well_formed else table.works_malformed


def _clean(verdict: Verdict, config: Config) -> float:
    table = config.rewards
    if verdict.check is None or verdict.check.verdict == "syntax_error":
        return table.cheating_missing
    if verdict.check.verdict == "forbidden" or any(result.state == "rejected" for result in verdict.results):
        return table.cheating
    return table.clean


def _succeeds(verdict: Verdict, config: Config) -> float:
    table = config.rewards
    if not verdict.results:
        return table.not_executed
    value = {
        "success": table.success,
        "failed": table.failed,
        "timeout": table.timeout,
        "stalled": table.timeout,
        "error": table.error,
        "rejected": table.not_executed,
    }
    return statistics.fmean(value[result.state] for result in verdict.results)


def _graded(verdict: Verdict, config: Config) -> float:
    rewards = config.rewards
    games = max(1, rewards.games_per_completion)
    seeds = range(rewards.seed, rewards.seed + games)
    baseline = max(statistics.fmean(baseline_scores(config.game, seeds, "random")), 1.0)
    score = statistics.fmean(result.score for result in verdict.results) if verdict.results else 0.0
    return rewards.graded_scale * (score / baseline - 1.0)


def _as_list(completions: object) -> list[Any]:
    if completions is None:
        return []
    if isinstance(completions, list | tuple):
        return list(completions)
    return [completions]


def _score(
    completions: object, config: object, value: Callable[[Verdict, Config], float]
) -> tuple[list[float], list[Verdict] | None]:
    """Rewards for every completion, never raising: on an internal failure every completion gets 0."""
    items = _as_list(completions)
    try:
        active = config if isinstance(config, Config) else Config()
        found = verdicts(items, active)
        return [float(value(verdict, active)) for verdict in found], found
    except Exception:  # noqa: BLE001 - the trainer must never die because of a reward
        _log.exception("reward evaluation failed; every completion of this batch gets 0")
        return [0.0] * len(items), None


def _record(found: list[Verdict], config: Config, kwargs: dict) -> None:
    """Count the outcomes, one per game: into OUTCOME_HISTORY, TRL's `log_metric` and its completions table."""
    games = max(1, config.rewards.games_per_completion)
    counts = Counter(
        outcome
        for verdict in found
        for outcome in (verdict.outcomes if verdict.results else verdict.outcomes * games)
    )
    state = kwargs.get("trainer_state")
    OUTCOME_HISTORY.append(
        {"step": getattr(state, "global_step", None), "completions": len(found)}
        | {name: counts[name] for name in OUTCOMES}
    )
    log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
    try:
        if callable(log_metric):
            for name in OUTCOMES:
                log_metric(f"outcomes/{name}", float(counts[name]))
        if callable(log_extra):
            log_extra("outcome", [verdict.reason for verdict in found])
    except Exception:  # noqa: BLE001 - a logging hook must not stop training
        _log.exception("could not log the outcome counts")


def function_works(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Reward a completion for proposing exactly one well-formed `def strategy(board)`.

    Args:
        completions: plain strings, or conversational completions `[{"role": "assistant", "content": ...}]`.
        config: the settings (the default `Config` when None); TRL's own keyword arguments are ignored.

    Returns:
        One float per completion: `works` (+1.0) for a single well-formed function, `works_malformed`
        (-0.5) when it parses but has the wrong shape, `works_missing` (-2.0) when nothing was
        extracted or it does not parse.

    Example:
        >>> function_works(["```python\\ndef strategy(board):\\n    return 'a'\\n```", "no code"])
        [1.0, -2.0]
    """
    return _score(completions, config, _works)[0]


def no_cheating(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Penalise a strategy that imports outside the allow-list or reaches for the interpreter's internals.

    Args:
        completions: plain strings, or conversational completions.
        config: the settings (the default `Config` when None).

    Returns:
        One float per completion: `clean` (+1.0), `cheating` (-20.0) for a forbidden import, name or
        attribute, or a forbidden operation caught while it ran, `cheating_missing` (-1.0) when there is
        no parseable code to judge.

    Example:
        >>> no_cheating(["```python\\nimport os\\ndef strategy(board):\\n    return 'a'\\n```"])
        [-20.0]
    """
    return _score(completions, config, _clean)[0]


def strategy_succeeds(completions: list[Any], config: Config | None = None, **kwargs: Any) -> list[float]:
    """Play each strategy on the step's seeded games in the sandbox and reward the outcome.

    Args:
        completions: plain strings, or conversational completions.
        config: the settings (the default `Config` when None).
        **kwargs: TRL's `log_metric` and `log_extra` hooks, when present, receive the outcome counts
            (`outcomes/win`, ...) and each completion's outcome; `trainer_state` dates the record.

    Returns:
        One float per completion, the mean over its games of: `success` (+20) for a win, `failed` (+2)
        for a game over (an invalid key or a non-string return included), `timeout` (-1) for a timeout
        or a stall, `error` (-3) when the strategy raised, `not_executed` (0) for code that never ran.

    Example:
        >>> strategy_succeeds(["```python\\ndef strategy(board):\\n    return 'x'\\n```"])
        [2.0]
    """
    rewards, found = _score(completions, config, _succeeds)
    if found is not None:
        _record(found, config if isinstance(config, Config) else Config(), kwargs)
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
    return _score(completions, config, _graded)[0]


def reward_functions(config: Config) -> list[Reward]:
    """The reward functions for TRL's `GRPOTrainer(reward_funcs=...)`, bound to `config`.

    Each keeps its module-level name, which TRL logs as `rewards/<name>/mean`; `strategy_graded` is
    included when `config.rewards.graded` is set.
    """
    chosen = [function_works, no_cheating, strategy_succeeds]
    if config.rewards.graded:
        chosen.append(strategy_graded)
    return [_bind(function, config) for function in chosen]


def _bind(function: Reward, config: Config) -> Reward:
    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        kwargs.pop("config", None)
        return function(completions, config=config, **kwargs)

    return functools.update_wrapper(reward, function)


def explain(completions: list[Any], config: Config | None = None) -> list[dict[str, Any]]:
    """Each completion's rewards, outcome and reason, for the notebook's table (never raises).

    Example:
        >>> explain(["no code"])[0]["reason"]
        'missing: no def strategy(board) found'
    """
    active = config if isinstance(config, Config) else Config()
    items = _as_list(completions)
    columns = {
        "function_works": function_works(items, active),
        "no_cheating": no_cheating(items, active),
        "strategy_succeeds": _score(items, active, _succeeds)[0],
    }
    if active.rewards.graded:
        columns["strategy_graded"] = strategy_graded(items, active)
    rows = []
    for index in range(len(items)):
        row = {name: values[index] for name, values in columns.items()}
        try:
            verdict = verdicts([items[index]], active)[0]
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


def outcome_totals() -> dict[str, int]:
    """The outcome counts summed over `OUTCOME_HISTORY`."""
    totals = Counter()
    for record in OUTCOME_HISTORY:
        totals.update({name: record[name] for name in OUTCOMES})
    return {name: totals[name] for name in OUTCOMES}
