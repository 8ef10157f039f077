"""Run the strategies the model writes: extract them, check them, play each game in a walled process.

The flow for one completion: `extract_function` (`helpers.sandbox_extract`) finds the
`def strategy(board)` in the text in linear time, `check_source` (`helpers.sandbox_checks`) inspects
its syntax tree without running anything, and only code that passes is played: `play_batch` for many
sources and seeds at once, `execute_strategy` for one game. This module judges the games; the
processes live in `helpers.sandbox_pool` (trainer side) and `helpers._sandbox_worker` (the template
and the job processes), the kernel walls in `helpers.sandbox_walls`, the lists both sides share in
`helpers.sandbox_rules`. docs/SANDBOX.md has the whole threat model.

The boundary is the operating system's. A template process, a fresh interpreter with an empty
environment (never `multiprocessing`, so any `__main__` and a CUDA parent are fine), forks a new
process for every game: nothing a strategy does there reaches another game, and nothing it starts
outlives it. Before the strategy runs, that process puts up what the machine allows, reported by
`walls_in_force()` and printed in one line when the pool starts: an unprivileged user, a seccomp
filter, network/IPC and PID namespaces, read-only file systems, an empty root, no descriptor but its
result pipe, resource limits and an audit hook no Python code can reach. The Python walls stay as
defence in depth: static checks, restricted builtins, stripped module copies.

The verdict is the trainer's: it believes a job's page and result only with the job's token, replays
the logged keys on the caller's game (so a strategy that broke every wall could only choose moves),
kills a call over `call_timeout` or a game over `game_timeout` from outside, ends `stall_moves` no-op
moves in a row as `stalled`, and cuts every reason and output to printable characters. The strategy's
`random` is seeded from the game, never with the game's spawn seed.

What this does NOT protect against: a kernel exploit from the system calls left to a job; a strategy
that escapes the Python walls reading its own game's future tiles from its own memory (it wins only
its own game: nothing else is within reach); someone who knows this source writing a strategy that
recomputes `helpers.game.spawn_seed` (a model cannot guess its key; the seeds themselves are small
integers); side channels. Walls a machine
cannot provide are missing and reported (no seccomp off Linux, no namespaces where user namespaces are
refused, no user change unless root); `RLIMIT_AS` does not hold on macOS; Windows is not supported.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from helpers.config import GameConfig, SandboxConfig
from helpers.game import GameBoard, from_config, play_keys
from helpers.sandbox_checks import MAX_SOURCE_CHARS, StaticCheck, check_source
from helpers.sandbox_extract import extract_function
from helpers.sandbox_pool import (
    SKIPPED,
    Job,
    Outcome,
    Walls,
    WorkerPool,
    auto_workers,
    get_pool,
    shutdown_pool,
)
from helpers.sandbox_rules import (
    AUDIT_EXIT,
    FORBIDDEN_ATTRIBUTES,
    FORBIDDEN_BUILTINS,
    SIGNAL_EXIT,
    WALLS_EXIT,
    printable,
)

__all__ = [
    "FORBIDDEN_ATTRIBUTES",
    "FORBIDDEN_BUILTINS",
    "MAX_RECORDED_KEYS",
    "MAX_SOURCE_CHARS",
    "STATES",
    "GameResult",
    "StaticCheck",
    "Walls",
    "WorkerPool",
    "auto_workers",
    "check_source",
    "execute_strategy",
    "extract_function",
    "get_pool",
    "play_batch",
    "shutdown_pool",
    "walls_in_force",
]

STATES = ("success", "failed", "timeout", "stalled", "error", "rejected")
"""Every `GameResult.state`."""
MAX_RECORDED_KEYS = 100_000
"""A game that played more keys keeps none in `GameResult.keys` (a 6x6 game to 2048 takes a few
thousand; only long runs of no-op moves go further), so a result holds at most 800 KB of keys."""


@dataclass(frozen=True)
class GameResult:
    """How one game of a strategy ended."""

    state: str
    """`success`, `failed`, `timeout`, `stalled`, `error` or `rejected` (see `STATES`)."""
    steps: int
    """Keys played (calls to strategy that returned)."""
    score: int
    """The game's final score."""
    max_tile: int
    """The largest tile at the end."""
    error: str | None = None
    """A short reason when the game did not simply end by the rules, or why it failed (one printable line)."""
    output: str = ""
    """What the strategy printed, cut at `SandboxConfig.max_output_chars` (printable characters, new
    lines and tabs only)."""
    keys: tuple[str, ...] = ()
    """The keys the parent replayed on its game, in order (stripped; "" for an answer that is no string
    or holds a character that cannot be shown, which no key map has).

    Replaying them on a copy of the starting game gives the final game; `len(keys) == steps`, except
    that rejected code and a game of more than `MAX_RECORDED_KEYS` keys keep none.
    """

    @property
    def invalid_key(self) -> bool:
        """Whether the game ended because the strategy answered something that is not a key.

        An invalid key, an empty string or a non-string ends the game as `failed`, and only such an
        end carries an `error`: a game that ran out of moves by the rules has none.
        """
        return self.state == "failed" and self.error is not None


def _death_reason(status: int | None, event: str) -> tuple[str, str]:
    """(state, reason) for a job process that ended without a result, from its exit status."""
    if status == AUDIT_EXIT:
        return "rejected", f"forbidden operation at run time: {event or 'a forbidden operation'}"
    if status == WALLS_EXIT:
        return "error", "the sandbox could not put up its walls for this game (not the strategy's doing)"
    if status == -signal.SIGSYS:
        return "rejected", "forbidden operation at run time: a system call the sandbox forbids (seccomp)"
    if status == -signal.SIGXCPU:
        return "timeout", "the CPU time limit ended the game"
    if status == -signal.SIGXFSZ:
        return "rejected", "forbidden operation at run time: a file write"
    if status is not None and -SIGNAL_EXIT < status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return "error", f"the worker crashed ({name})"
    return "error", f"the worker exited with status {status}"


def _judge(game: GameBoard, outcome: Outcome, stall_moves: int) -> GameResult:
    """Replay the logged keys on the parent's game and decide how the game ended."""
    end, error, claim = outcome.end, outcome.error, outcome.claim
    if end == "died":
        end, error = _death_reason(outcome.status, outcome.event)
    first_move = game.moves
    played: list[str | None] = []
    stalled = (
        play_keys(game, outcome.keys, stall_moves, on_move=lambda key, moved: played.append(key)) == "stalled"
    )
    last_key, replayed = (played[-1] if played else None), len(played)
    state = game.state()
    if state == "ongoing":
        if stalled:
            state, error = "stalled", f"{stall_moves} moves in a row changed nothing"
        elif end in ("timeout", "error", "rejected"):
            state = end
        else:
            state, error = "error", error or "the game stopped before its end"
    elif claim is not None and (claim.get("score"), claim.get("max_tile")) != (game.score(), game.max_tile()):
        state, error = "error", "the worker's game and the replay disagree"
    elif state == "failed" and game.direction_of(last_key) is None:
        error = "returned something that is not a key" if last_key is None else f"invalid key {last_key!r}"
    elif end == "rejected":  # a forbidden operation at run time stays rejected, even after the last key
        state = "rejected"
    else:  # ended by the rules on a key: a job stopped after it (time, a crash) changes nothing (red team 14)
        error = None
    recorded = (
        tuple("" if key is None or not key.isprintable() else key for key in outcome.keys[:replayed])
        if replayed <= MAX_RECORDED_KEYS
        else ()
    )
    return GameResult(
        state,
        game.moves - first_move,
        game.score(),
        game.max_tile(),
        None if error is None else printable(error)[:300],
        printable(outcome.output, keep="\n\t"),
        recorded,
    )


def _replay(pool: WorkerPool, game: GameBoard, outcome: Outcome, stall_moves: int) -> GameResult:
    """`_judge` by one of the pool's replay helpers, or here when none can."""
    fields = pool.replayers.judge(game, outcome, stall_moves)
    if fields is None:
        return _judge(game, outcome, stall_moves)
    return GameResult(**(fields | {"keys": tuple(fields["keys"])}))


def _rejected(check: StaticCheck, game: GameBoard) -> GameResult:
    return GameResult("rejected", 0, game.score(), game.max_tile(), f"{check.verdict}: {check.reason}")


def _play_unchecked(
    source: str, game: GameBoard, config: SandboxConfig, python_walls: bool = True
) -> GameResult:
    """Play a source WITHOUT the static checks (and, with `python_walls=False`, with the real builtins
    and no audit hook): how the tests show what each wall holds on its own."""
    outcome = get_pool(config).run([Job(source, game, config, python_walls)])[0]
    return _judge(game, outcome, config.stall_moves)


def walls_in_force(config: SandboxConfig | None = None) -> Walls:
    """The walls every game runs behind on this machine (starts the pool if needed).

    Example: `"seccomp" in walls_in_force()`; `print(walls_in_force())` shows the one-line report.
    """
    return get_pool(config).walls


def execute_strategy(
    source: str,
    game: GameBoard,
    timeout: float | None = None,
    *,
    call_timeout: float | None = None,
    config: SandboxConfig | None = None,
) -> GameResult:
    """Play `game` to its end with an untrusted strategy; the final position is left in `game`.

    Args:
        source: the code of a `def strategy(board)` (checked first; rejected code never runs).
        game: the game to play, from its current position (a `GameBoard`; a subclass's overrides act
            only in the parent's replay, the worker plays a plain copy).
        timeout: seconds for the whole game (`SandboxConfig.game_timeout`, 5 s, when None).
        call_timeout: seconds for one call (`SandboxConfig.call_timeout`, 0.5 s, when None).
        config: every other limit (the default `SandboxConfig` when None).

    Returns:
        A `GameResult`; its `keys` replayed on a copy of the starting game give the final `game`. Example:
        >>> execute_strategy("def strategy(board):\\n    return 'x'", GameBoard(seed=0)).keys
        ('x',)

    Raises:
        TypeError: `game` is not a `GameBoard`, or cannot be pickled for the worker.
        ValueError: `game` is larger than a worker accepts (a board of thousands of rows).
    """
    limits = config or SandboxConfig()
    limits = replace(
        limits,
        game_timeout=limits.game_timeout if timeout is None else timeout,
        call_timeout=limits.call_timeout if call_timeout is None else call_timeout,
    )
    check = check_source(source, limits)
    if check.verdict != "ok":
        return _rejected(check, game)
    outcome = get_pool(limits).run([Job(source, game, limits)])[0]
    return _judge(game, outcome, limits.stall_moves)


def play_batch(
    sources: Sequence[str | None],
    game_config: GameConfig | None = None,
    seeds: Iterable[int] = (0,),
    sandbox_config: SandboxConfig | None = None,
    stop_at_timeout: bool = False,
) -> list[list[GameResult]]:
    """Play every source on every seeded game, each game in a process of its own, in parallel.

    All sources of one call play the same seeds, so their results compare fairly; a source that
    fails the static checks (or is None) is `rejected` without running; a repeated source plays once.
    The strategy's own `random` module is seeded from the game (never with the game's seed, whose
    stream places the new tiles), so a result is reproducible from its source and seed.

    Args:
        sources: strategy sources (e.g. from `extract_function`).
        game_config: the game variant (the default `GameConfig` when None).
        seeds: one game per seed.
        sandbox_config: the limits (the default `SandboxConfig` when None).
        stop_at_timeout: the rewards' rule: a strategy plays its games in the seeds' order and stops at
            the first that runs out of time; the later ones count as `timeout` ("not played"), whether
            or not they were started. It saves the pool from waiting out the limits of a strategy that
            hangs once per game.

    Returns:
        `results[i][j]`: source i on seed j. Example: `play_batch([src], seeds=[1, 2])[0][1].state`.
    """
    limits = sandbox_config or SandboxConfig()
    game_config = game_config or GameConfig()
    seeds = list(seeds)
    results: list[list[GameResult | None]] = [[None] * len(seeds) for _ in sources]
    out_of_time: list[int] = [len(seeds)] * len(sources)  # each source's first game stopped for time
    checks = [check_source(source, limits) for source in sources]
    jobs: list[Job] = []
    places: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for j, seed in enumerate(seeds):  # every source's first game before any second: see stop_at_timeout
        for i, (source, check) in enumerate(zip(sources, checks, strict=True)):
            if check.verdict != "ok" or source is None:
                results[i][j] = _rejected(check, from_config(game_config, seed))
                continue
            if (source, seed) not in places:
                places[source, seed] = []
                jobs.append(Job(source, from_config(game_config, seed), limits))
            places[source, seed].append((i, j))
    if jobs:
        # each game is replayed as soon as it ends, while the pool plays the others: by the pool's replay
        # helpers where it has some (`helpers.sandbox_replay`), else in a thread of this process
        pool = get_pool(limits)
        threads = max(1, pool.replayers.count)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sandbox-replay") as replays:
            judged: dict[int, Future[GameResult]] = {}

            def replay(index: int, outcome: Outcome) -> None:
                judged[index] = replays.submit(_replay, pool, jobs[index].game, outcome, limits.stall_moves)

            outcomes = pool.run(jobs, stop_at_timeout, replay)
        for index, (outcome, spots) in enumerate(zip(outcomes, places.values(), strict=True)):
            result = None if outcome.end == SKIPPED else judged[index].result()
            for i, j in spots:
                results[i][j] = result
                if outcome.end == "timeout":
                    out_of_time[i] = min(out_of_time[i], j)
    if stop_at_timeout:
        for i, first in enumerate(out_of_time):
            for j in range(first + 1, len(seeds)):
                game = from_config(game_config, seeds[j])
                reason = f"not played: the strategy ran out of time in game {first + 1} of {len(seeds)}"
                results[i][j] = GameResult("timeout", 0, game.score(), game.max_tile(), reason)
    assert all(result is not None for row in results for result in row), (
        "a game was neither played nor judged"
    )
    return results  # type: ignore[return-value]
