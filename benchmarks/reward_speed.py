"""Reward one realistic GRPO batch: the sandboxed worker pool against serial in-process evaluation.

The batch holds 8 completions written the way gpt-oss answers (analysis, then a final python block):
four decent strategies, one that always plays the same key (a no-op once that direction is blocked),
one infinite loop, one that raises and one syntax error. Both sides compute all three rewards, called
one after the other as TRL calls them, on the same seeded game.

- sandbox: `helpers.rewards.reward_functions(config)` with a warm pool (its template process started)
  and an empty verdict cache each repetition (every step brings new completions), so games really are
  played each time, each in a fresh walled process forked from the template.
- serial baseline, as the reference notebook did it: extract, `exec` in this process, play each game
  under a 5 s SIGALRM timer for the whole game, no stall detection, one completion after another.

    .venv/bin/python benchmarks/reward_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import ast
import signal
import statistics
import time
from types import SimpleNamespace

from helpers import rewards
from helpers.config import Config, SandboxConfig
from helpers.game import from_config
from helpers.sandbox import extract_function, get_pool, play_batch

_SLIDE = """
    def slide(rows, direction):
        size = len(rows)
        grid = [list(r) for r in rows]
        if direction in ("é", "u"):
            grid = [list(c) for c in zip(*grid)]
        if direction in ("i", "u"):
            grid = [r[::-1] for r in grid]
        out, gained = [], 0
        for row in grid:
            tiles = [v for v in row if v]
            merged, i = [], 0
            while i < len(tiles):
                if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
                    merged.append(tiles[i] * 2)
                    gained += tiles[i] * 2
                    i += 2
                else:
                    merged.append(tiles[i])
                    i += 1
            out.append(merged + [0] * (size - len(merged)))
        if direction in ("i", "u"):
            out = [r[::-1] for r in out]
        if direction in ("é", "u"):
            out = [list(c) for c in zip(*out)]
        return out, gained
"""

DECENT = {
    "most empty cells": _SLIDE
    + """
    best, best_empty = "a", -1
    for key in "auié":
        moved, _ = slide(board, key)
        if moved != board:
            empty = sum(v == 0 for row in moved for v in row)
            if empty > best_empty:
                best, best_empty = key, empty
    return best
""",
    "most points": _SLIDE
    + """
    best, best_gain = "a", -1
    for key in "aiué":
        moved, gained = slide(board, key)
        if moved != board and gained > best_gain:
            best, best_gain = key, gained
    return best
""",
    "corner preference": _SLIDE
    + """
    for key in "auié":
        if slide(board, key)[0] != board:
            return key
    return "a"
""",
    "random valid move": _SLIDE
    + """
    import random
    keys = [key for key in "éuai" if slide(board, key)[0] != board]
    return random.choice(keys) if keys else "a"
""",
}

BROKEN = {
    "constant key": '\n    return "é"\n',
    "infinite loop": "\n    while True:\n        pass\n",
    "raises": "\n    return board[10][10]\n",
}


def completion(body: str, *, broken_syntax: bool = False) -> str:
    """A completion the way gpt-oss decodes it without special tokens."""
    header = "def strategy(board)" if broken_syntax else "def strategy(board):"
    return (
        "analysisWe need a function that returns one of é, u, a, i. Keep it simple."
        f"assistantfinal```python\n{header}{body}```"
    )


def batch() -> list[str]:
    """The 8 completions: four decent, a constant key, an infinite loop, a raise, a syntax error."""
    completions = [completion(body) for body in DECENT.values()]
    completions += [completion(body) for body in BROKEN.values()]
    completions.append(completion(DECENT["corner preference"], broken_syntax=True))
    return completions


def sandboxed_step(completions: list[str], config: Config) -> list[list[float]]:
    """All reward functions, called as TRL calls them, with an empty verdict cache."""
    rewards._cache.clear()
    state = SimpleNamespace(global_step=0)
    return [
        function(
            prompts=[""] * len(completions),
            completions=completions,
            completion_ids=[[]] * len(completions),
            trainer_state=state,
            log_metric=lambda name, value: None,
            log_extra=lambda column, values: None,
        )
        for function in rewards.reward_functions(config)
    ]


class _TimeLimit(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TimeLimit


def serial_step(completions: list[str], config: Config, game_seconds: float = 5.0) -> list[list[float]]:
    """The reference notebook's way: in-process `exec`, a SIGALRM timer per game, no stall check."""
    table = config.rewards
    works, clean, succeeds = [], [], []
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for text in completions:
            source = extract_function(text)
            try:
                tree = ast.parse(source) if source else None
            except SyntaxError:
                tree = None
            works.append(table.works if tree else table.works_missing)
            clean.append(table.clean if tree else table.cheating_missing)
            if tree is None:
                succeeds.append(table.not_executed)
                continue
            namespace: dict = {}
            exec(source, namespace)  # the baseline runs untrusted code in-process, as the original did
            game = from_config(config.game, seed=table.seed)
            signal.setitimer(signal.ITIMER_REAL, game_seconds)
            try:
                while game.state() == "ongoing":
                    game.do_action(namespace["strategy"](game.board()))
                value = table.success if game.state() == "success" else table.failed
            except _TimeLimit:
                value = table.timeout
            except Exception:
                value = table.error
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            succeeds.append(value)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return [works, clean, succeeds]


def game_overhead(games: int = 100) -> dict[str, float]:
    """Milliseconds per one-move game played one at a time (process, walls, replay), with and without
    the operating-system walls: the price of a fresh walled process per game."""
    source = "def strategy(board):\n    return 'left'\n"  # one invalid key: the game ends at once
    times = {}
    for name, walls in (("all walls", SandboxConfig().os_walls), ("no OS walls", ())):
        config = SandboxConfig(os_walls=walls, max_workers=1)
        play_batch([source], seeds=[0], sandbox_config=config)  # the template is up
        start = time.perf_counter()
        play_batch([source], seeds=range(games), sandbox_config=config)
        times[name] = (time.perf_counter() - start) / games * 1000
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="sandboxed steps to time (the median is kept)")
    args = parser.parse_args()
    config = Config()
    completions = batch()

    start = time.perf_counter()
    get_pool(config.sandbox)
    first = sandboxed_step(completions, config)
    cold = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        sandboxed = sandboxed_step(completions, config)
        times.append(time.perf_counter() - start)
    assert sandboxed == first, "the sandboxed rewards changed between repetitions"
    warm = statistics.median(times)

    start = time.perf_counter()
    serial = serial_step(completions, config)
    baseline = time.perf_counter() - start

    names = list(DECENT) + list(BROKEN) + ["syntax error"]
    print(f"{'completion':<20} {'sandboxed (works, clean, succeeds)':<36} serial baseline")
    for index, name in enumerate(names):
        ours = tuple(values[index] for values in sandboxed)
        theirs = tuple(values[index] for values in serial)
        print(f"{name:<20} {ours!s:<36} {theirs}")
    pool = get_pool(config.sandbox)
    print(f"games at once: {pool.size}; one process per game ({pool.jobs_started} started)")
    print(pool.walls)
    print(f"sandboxed, first step (pool start included): {cold:.3f} s")
    print(
        f"sandboxed, warm step (median of {args.repeats}): {warm:.3f} s  (all: {', '.join(f'{t:.3f}' for t in times)})"
    )
    print(f"serial in-process with SIGALRM: {baseline:.3f} s")
    print(f"speed-up: {baseline / warm:.1f}x")
    overhead = game_overhead()
    print(
        "one-move game, one at a time: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in overhead.items())
    )


if __name__ == "__main__":
    main()
