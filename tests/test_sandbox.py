"""The sandbox: extraction, the static checks, playing games in the worker pool, and the pool itself.

Hostile code lives in `test_sandbox_attacks.py`; this file checks that honest code is read, judged and
played correctly, and that the pool starts from any kind of `__main__`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import sandbox
from helpers.config import GameConfig, SandboxConfig
from helpers.game import GameBoard, from_config
from helpers.sandbox import (
    STATES,
    GameResult,
    check_source,
    execute_strategy,
    extract_function,
    get_pool,
    play_batch,
)
from helpers.sandbox_pool import _Batch, _Template

ROOT = Path(__file__).resolve().parent.parent
FAST = SandboxConfig(call_timeout=0.2, game_timeout=2.0)
"""Short limits for tests; the pool (size and memory cap) is the default one."""

CODE = "def strategy(board):\n    return 'a'\n"
RANDOM_VALID = textwrap.dedent(
    """\
    import random
    def strategy(board):
        def moves(rows):
            cols = [list(c) for c in zip(*rows)]
            def can(lines):
                return any(a == 0 and b != 0 or a == b != 0 for line in lines for a, b in zip(line, line[1:]))
            return {"a": can(rows), "i": can([r[::-1] for r in rows]), "é": can(cols), "u": can([c[::-1] for c in cols])}
        legal = [key for key, ok in moves(board).items() if ok]
        return random.choice(legal) if legal else "a"
    """
)
"""Random moves among those that change the board: wins most 6x6 games, never stalls."""


# --- extract_function -------------------------------------------------------------------------------

FENCED = "```python\ndef strategy(board):\n    return 'a'\n```"
EXTRACTION_CASES = [
    # gpt-oss decoded without special tokens: analysis, then the final answer
    ("analysisThink first.assistantfinal" + FENCED, CODE),
    # the same with the special tokens kept
    (
        "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>"
        + FENCED
        + "<|return|>",
        CODE,
    ),
    # no language tag on the fence
    ("assistantfinal```\ndef strategy(board):\n    return 'a'\n```", CODE),
    # another tag spelling
    ("assistantfinal```py\ndef strategy(board):\n    return 'a'\n```", CODE),
    # Windows line ends
    ("assistantfinal```python\r\ndef strategy(board):\r\n    return 'a'\r\n```", CODE),
    # prose around the block
    ("Here it is:\n" + FENCED + "\nIt always moves left.", CODE),
    # the fence on the same line as the prose before it
    ("Sure:```python\ndef strategy(board):\n    return 'a'\n```", CODE),
    # a final fence that was never closed (the completion hit its token limit)
    ("assistantfinal```python\ndef strategy(board):\n    return 'a'\n", CODE),
    # a draft in the analysis, the answer in the final channel: the final one wins
    (
        "analysis```python\ndef strategy(board):\n    return 'u'\n```assistantfinal" + FENCED,
        CODE,
    ),
    # cut off during the analysis: its block is still used
    ("analysis Let me write it.\n" + FENCED + "\nNow check", CODE),
    # two blocks in the final answer, only the second defines strategy
    ("assistantfinal```python\nprint(1)\n```\n" + FENCED, CODE),
    # two versions in the final answer: the last one
    ("assistantfinal```python\ndef strategy(board):\n    return 'u'\n```\n" + FENCED, CODE),
    # imports above the function are kept
    (
        "assistantfinal```python\nimport random\n\ndef strategy(board):\n    return random.choice('ai')\n```",
        "import random\n\ndef strategy(board):\n    return random.choice('ai')\n",
    ),
    # an indented block (inside a list item) is dedented
    ("1. Code:\n   ```python\n   def strategy(board):\n       return 'a'\n   ```", CODE),
    # no fences at all: from the def to the first line of prose
    ("assistantfinaldef strategy(board):\n    return 'a'\nThis moves left.", CODE),
    # async def is extracted (and judged malformed later)
    (
        "```python\nasync def strategy(board):\n    return 'a'\n```",
        "async def strategy(board):\n    return 'a'\n",
    ),
    # no code at all
    ("analysisI cannot do that.assistantfinalSorry.", None),
    # a block that does not define strategy
    ("assistantfinal```python\ndef play(board):\n    return 'a'\n```", None),
    # the empty string
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTION_CASES)
def test_extract_function(text, expected):
    assert extract_function(text) == expected


@pytest.mark.parametrize("value", [None, 3, b"def strategy(board): pass", {"content": FENCED}, ["x"]])
def test_extract_function_returns_none_for_non_text(value):
    assert extract_function(value) is None


def test_extract_function_is_quick_on_a_huge_completion():
    text = "analysis" + "x = 1\n" * 200_000 + "assistantfinal" + FENCED
    start = time.perf_counter()
    assert extract_function(text) == CODE
    assert time.perf_counter() - start < 1.0


def test_extract_function_is_linear_on_repeated_channel_headers():
    # a 1 MB completion of headers without a message once took minutes (regex backtracking)
    for text in ("<|channel|>final" * 62_500, "<|channel|>final<|message|>" * 38_000, "```" * 300_000):
        start = time.perf_counter()
        extract_function(text)
        assert time.perf_counter() - start < 1.0


def test_extract_function_builds_no_regular_expression_from_the_text():
    import re

    margin = " " * 900_000
    text = f"```python\n{margin}def strategy(board):\n{margin}    return 'a'\n```"
    before = len(re._cache)
    assert extract_function(text) == CODE
    assert len(re._cache) <= before
    assert all(len(str(key)) < 10_000 for key in re._cache)


def test_dedent_matches_textwrap():
    from helpers.sandbox_extract import dedent

    for code in ["  a\n    b\n  c", "\ta\n\t  b\n   \n\tc", "a\n  b", "  a\n\tb", "   \n  x\n \t \n  y\n"]:
        assert dedent(code) == textwrap.dedent(code)


# --- check_source -----------------------------------------------------------------------------------

CHECK_CASES = [
    # (source, verdict, well_formed)
    (CODE, "ok", True),
    ('"""Left."""\nimport math\nfrom collections import Counter\n' + CODE, "ok", True),
    ("def strategy(board):\n    import heapq, itertools\n    return 'a'\n", "ok", True),
    (
        "from __future__ import annotations\ndef strategy(b: list[list[int]]) -> str:\n    return 'a'\n",
        "ok",
        True,
    ),
    (
        "def strategy(board):\n    def helper(rows):\n        return 'a'\n    return helper(board)\n",
        "ok",
        True,
    ),
    ("def strategy(board):\n    type, input = 1, 2  # its own variables\n    return 'a'\n", "ok", True),
    ("def strategy(board):\n    return max((k for k in 'ai'), key=len)\n", "ok", True),
    ("def strategy(board)\n    return 'a'\n", "syntax_error", False),
    ("", "syntax_error", False),
    ("return 'a'\n", "syntax_error", False),
    ("def strategy(board):\n    return 'a'\x00\n", "syntax_error", False),
    ("x = " + "(" * 300 + ")" * 300 + "\n", "syntax_error", False),
    ("def play(board):\n    return 'a'\n", "malformed", False),
    (CODE + CODE, "malformed", False),
    ("def helper(b):\n    return 'a'\n" + CODE, "malformed", False),
    ("SIZE = 6\n" + CODE, "malformed", False),
    (CODE + "if __name__ == '__main__':\n    print(strategy([[0]]))\n", "malformed", False),
    ("strategy = lambda board: 'a'\n", "malformed", False),
    ("class Strategy:\n    pass\n" + CODE, "malformed", False),
    ("def strategy():\n    return 'a'\n", "malformed", False),
    ("def strategy(board, extra):\n    return 'a'\n", "malformed", False),
    ("def strategy(*boards):\n    return 'a'\n", "malformed", False),
    ("def strategy(board, **options):\n    return 'a'\n", "malformed", False),
    ("def strategy(*, board):\n    return 'a'\n", "malformed", False),
    ("def strategy(board=None):\n    return 'a'\n", "malformed", False),
    ("import functools\n@functools.cache\n" + CODE, "malformed", False),
    ("async def strategy(board):\n    return 'a'\n", "malformed", False),
    ("def strategy(board):\n    yield 'a'\n", "malformed", False),
    ("def strategy(board: print('now')) -> str:\n    return 'a'\n", "malformed", False),
    ("x = 1\n" * 20_000 + CODE, "malformed", False),
    ("import os\n" + CODE, "forbidden", True),
    ("import os\nx = 1\n" + CODE, "forbidden", False),
    ("def strategy(board):\n    return eval('\"a\"')\n", "forbidden", True),
    ("def strategy(board):\n    return type(board).__name__\n", "forbidden", True),
]


@pytest.mark.parametrize(("source", "verdict", "well_formed"), CHECK_CASES)
def test_check_source(source, verdict, well_formed):
    check = check_source(source)
    assert (check.verdict, check.well_formed) == (verdict, well_formed), check.reason


def test_check_source_names_the_line_of_the_problem():
    check = check_source("def strategy(board):\n    x = 1\n    import sys\n    return 'a'\n")
    assert check.reason.startswith("line 3:") and "sys" in check.reason


def test_check_source_takes_the_allow_list_from_the_config():
    source = "import math\n" + CODE
    assert check_source(source, SandboxConfig(allowed_imports=("random",))).verdict == "forbidden"
    assert check_source(source, SandboxConfig(allowed_imports=("math",))).verdict == "ok"


def test_check_source_marks_attribute_stores():
    assert check_source(
        "def strategy(board):\n    class C: pass\n    C.x = 1\n    return 'a'\n"
    ).stores_attributes
    assert not check_source(CODE).stores_attributes


def test_non_text_source_is_a_syntax_error():
    assert check_source(None).verdict == "syntax_error"
    assert check_source(42).verdict == "syntax_error"


# --- execute_strategy and play_batch ------------------------------------------------------------


def test_execute_strategy_leaves_the_final_board_in_the_game():
    game = GameBoard(seed=5)
    result = execute_strategy(RANDOM_VALID, game, config=FAST)
    assert result.state == game.state() != "ongoing"
    assert (result.score, result.max_tile) == (game.score(), game.max_tile())
    assert result.steps == game.moves > 100


def test_a_game_is_reproducible_from_its_seed():
    first = play_batch([RANDOM_VALID], seeds=[11, 12], sandbox_config=FAST)[0]
    again = play_batch([RANDOM_VALID], seeds=[11, 12], sandbox_config=FAST)[0]
    assert first == again
    assert first[0] != first[1]


def test_the_parent_replays_the_same_game_the_worker_played():
    game = from_config(GameConfig(), seed=21)
    result = execute_strategy(RANDOM_VALID, game, config=FAST)
    assert result.state in ("success", "failed")
    assert result.error is None  # a disagreement between worker and replay would be an error


def test_every_source_plays_every_seed_in_order():
    sources = [CODE, "def strategy(board):\n    return 'i'\n", None, "not python"]
    results = play_batch(sources, seeds=[1, 2, 3], sandbox_config=FAST)
    assert [len(row) for row in results] == [3, 3, 3, 3]
    assert [r.state for r in results[2] + results[3]] == ["rejected"] * 6
    solo = play_batch(sources[1:2], seeds=[2], sandbox_config=FAST)[0][0]
    assert results[1][1] == solo


def test_an_invalid_key_fails_the_game_after_one_move():
    result = execute_strategy("def strategy(board):\n    return 'left'\n", GameBoard(seed=1), config=FAST)
    assert (result.state, result.steps) == ("failed", 1)
    assert result.error == "invalid key 'left'"
    assert result.invalid_key


def test_a_game_lost_by_the_rules_is_not_an_invalid_key():
    result = execute_strategy(
        "def strategy(board):\n    import random\n    return random.choice('éuai')\n",
        GameBoard(size=3, target=2048, seed=1),
        config=FAST,
    )
    assert (result.state, result.error, result.invalid_key) == ("failed", None, False)


@pytest.mark.parametrize("value", ["None", "3", "['a']", "b'a'", "chr(0xD800)"])
def test_a_non_string_return_fails_the_game(value):
    result = execute_strategy(f"def strategy(board):\n    return {value}\n", GameBoard(seed=1), config=FAST)
    assert (result.state, result.error) == ("failed", "returned something that is not a key")
    assert result.invalid_key


def test_keys_are_stripped_and_case_insensitive_as_in_the_game():
    result = execute_strategy("def strategy(board):\n    return ' A\\n'\n", GameBoard(seed=1), config=FAST)
    assert result.state == "stalled" and result.steps > 1


def test_a_raising_strategy_is_an_error_with_its_message():
    result = execute_strategy(
        "def strategy(board):\n    raise ValueError('no idea')\n", GameBoard(seed=1), config=FAST
    )
    assert (result.state, result.error, result.steps) == ("error", "ValueError: no idea", 0)


def test_an_error_at_definition_time_is_an_error():
    result = execute_strategy("import collections.nothing\n" + CODE, GameBoard(seed=1), config=FAST)
    assert result.state == "error" and "ImportError" in result.error


def test_rejected_code_never_runs_and_leaves_the_game_alone():
    game = GameBoard(seed=1)
    before = game.board()
    result = execute_strategy("import os\n" + CODE, game, config=FAST)
    assert (result.state, result.steps) == ("rejected", 0)
    assert result.error.startswith("forbidden: line 1: import of os")
    assert game.board() == before and game.moves == 0
    assert result.keys == ()


def test_stall_limit_comes_from_the_config():
    source = "def strategy(board):\n    return 'é'\n"  # up: a no-op once every column is packed
    short = execute_strategy(source, GameBoard(seed=3), config=SandboxConfig(stall_moves=2))
    long = execute_strategy(source, GameBoard(seed=3), config=SandboxConfig(stall_moves=30))
    assert short.state == long.state == "stalled"
    assert long.steps - short.steps == 28


def test_printed_output_is_kept_up_to_the_cap():
    source = "def strategy(board):\n    print('move', 'left', sep='-')\n    return 'x'\n"
    result = execute_strategy(source, GameBoard(seed=1), config=FAST)
    assert result.output == "move-left\n"
    capped = execute_strategy(
        "def strategy(board):\n    print('x' * 5000)\n    return 'a'\n",
        GameBoard(seed=1),
        config=SandboxConfig(max_output_chars=100),
    )
    assert capped.output == "x" * 100


def test_state_kept_between_calls_lasts_one_game():
    source = textwrap.dedent(
        """\
        def strategy(board):
            global calls
            try:
                calls += 1
            except NameError:
                calls = 1
            return "a" if calls < 3 else "bad"
        """
    )
    first, second = play_batch([source], seeds=[1, 2], sandbox_config=FAST)[0]
    assert (first.state, first.steps, first.error) == ("failed", 3, "invalid key 'bad'")
    assert second.steps == 3


def test_warnings_from_the_strategy_do_not_end_its_game():
    # compiling `board is 0` warns (SyntaxWarning); showing a warning would import modules mid-game
    source = "def strategy(board):\n    return 'a' if board is 0 else 'x'\n"
    assert execute_strategy(source, GameBoard(seed=1), config=FAST).state == "failed"


def test_results_hold_only_known_states():
    results = play_batch([CODE, RANDOM_VALID, "x"], seeds=[0], sandbox_config=FAST)
    assert all(isinstance(r, GameResult) and r.state in STATES for row in results for r in row)


# --- the keys a game played -------------------------------------------------------------------------

TWENTY_MOVES_THEN_A_LOOP = textwrap.dedent(
    """\
    def strategy(board):
        global calls
        try:
            calls += 1
        except NameError:
            calls = 1
        while calls > 20:
            pass
        return "au"[calls % 2]
    """
)
"""Plays 20 keys, then a call runs over the call limit."""


@pytest.mark.parametrize(
    ("source", "state"),
    [
        (RANDOM_VALID, "success"),
        ("def strategy(board):\n    return 'é'\n", "stalled"),
        (TWENTY_MOVES_THEN_A_LOOP, "timeout"),
        ("def strategy(board):\n    return 'left'\n", "failed"),
        ("def strategy(board):\n    return 3\n", "failed"),
    ],
)
def test_replaying_the_recorded_keys_gives_the_game_the_sandbox_left(source, state):
    game = GameBoard(seed=5)
    replay = game.copy()
    result = execute_strategy(source, game, config=FAST)
    assert result.state == state
    assert len(result.keys) == result.steps > 0
    assert all(isinstance(key, str) for key in result.keys)
    for key in result.keys:
        replay.do_action(key)
    assert (replay.board(), replay.score(), replay.state(), replay.moves) == (
        game.board(),
        game.score(),
        game.state(),
        game.moves,
    )


def test_the_keys_are_the_stripped_keys_and_a_non_key_is_empty():
    stripped = execute_strategy("def strategy(board):\n    return ' A\\n'\n", GameBoard(seed=1), config=FAST)
    assert set(stripped.keys) == {"A"}
    assert execute_strategy("def strategy(board):\n    return None\n", GameBoard(seed=1)).keys == ("",)


def test_a_game_longer_than_the_record_keeps_no_keys(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_RECORDED_KEYS", 10)
    result = execute_strategy(RANDOM_VALID, GameBoard(seed=5), config=FAST)
    assert result.steps > 10 and result.keys == ()
    short = execute_strategy("def strategy(board):\n    return 'left'\n", GameBoard(seed=5), config=FAST)
    assert short.keys == ("left",)


# --- games that cannot be sent ----------------------------------------------------------------------


def _pool_is_idle_and_quick() -> None:
    """No job of an earlier call is left running, and the next game plays at once, as usual."""
    assert not _job_processes()
    start = time.perf_counter()
    result = execute_strategy(CODE, GameBoard(seed=1), config=FAST)
    assert (result.state, result.error) == ("stalled", "32 moves in a row changed nothing")
    assert time.perf_counter() - start < FAST.game_timeout / 2


def _job_processes() -> list[int]:
    """Live processes forked by the pool's template (its children), after a moment to let them go."""
    template = get_pool(FAST).template_pid()
    deadline = time.monotonic() + 2.0
    while True:
        children = Path(f"/proc/{template}/task/{template}/children")
        pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.02)


def test_a_game_subclass_defined_in_a_function_plays_like_a_plain_game():
    class LocalBoard(GameBoard):
        """Cannot be pickled: its class is local to this function."""

    game, reference = LocalBoard(seed=5), GameBoard(seed=5)
    result = execute_strategy(RANDOM_VALID, game, config=FAST)
    assert result == execute_strategy(RANDOM_VALID, reference, config=FAST)
    assert game.board() == reference.board() and result.state == "success"
    _pool_is_idle_and_quick()


def test_a_game_that_cannot_be_sent_is_refused_with_a_clear_error():
    class LocalFloat(float):
        """Cannot be pickled: its class is local to this function."""

    game = GameBoard(seed=5)
    game.probability_fours = LocalFloat(0.1)
    with pytest.raises(TypeError, match="cannot be sent to a sandbox worker"):
        execute_strategy(CODE, game, config=FAST)
    assert game.moves == 0
    _pool_is_idle_and_quick()


@pytest.mark.parametrize("game", ["a board", [[2, 0], [0, 2]], None])
def test_a_game_that_is_not_a_game_board_is_refused(game):
    with pytest.raises(TypeError, match="GameBoard"):
        execute_strategy(CODE, game, config=FAST)
    _pool_is_idle_and_quick()


@pytest.mark.parametrize(("owner", "method"), [(_Template, "send"), (_Batch, "_read_result")])
def test_an_exception_during_a_batch_leaves_the_pool_healthy(monkeypatch, owner, method):
    pool = get_pool(FAST)
    original = getattr(owner, method)

    def interrupted(*args, **kwargs):
        monkeypatch.setattr(owner, method, original)
        raise KeyboardInterrupt  # as if the person stopped the notebook cell here

    monkeypatch.setattr(owner, method, interrupted)
    with pytest.raises(KeyboardInterrupt):
        play_batch([RANDOM_VALID], seeds=[1, 2], sandbox_config=FAST)
    assert get_pool(FAST) is pool
    _pool_is_idle_and_quick()


# --- limits -------------------------------------------------------------------------------------------


def test_default_call_limit_is_half_a_second():
    start = time.perf_counter()
    result = execute_strategy("def strategy(board):\n    while True:\n        pass\n", GameBoard(seed=1))
    elapsed = time.perf_counter() - start
    assert (result.state, result.error) == ("timeout", "a call to strategy ran over 0.5 s")
    assert 0.5 <= elapsed < 1.5


@pytest.mark.slow  # waits out the five seconds
def test_default_game_limit_is_five_seconds():
    slow_moves = textwrap.dedent(
        """\
        import random
        def strategy(board):
            n = 0
            while n < 10**6:
                n += 1
            return random.choice("éuai")
        """
    )
    start = time.perf_counter()
    result = execute_strategy(slow_moves, GameBoard(seed=1))
    elapsed = time.perf_counter() - start
    assert (result.state, result.error) == ("timeout", "the game ran over 5 s")
    assert 5.0 <= elapsed < 6.5
    assert result.steps > 0


def test_explicit_timeouts_override_the_config():
    start = time.perf_counter()
    result = execute_strategy(
        "def strategy(board):\n    while True:\n        pass\n", GameBoard(seed=1), call_timeout=0.1
    )
    assert result.state == "timeout" and time.perf_counter() - start < 0.45


# --- the pool -----------------------------------------------------------------------------------------


def test_the_pool_is_reused_across_calls():
    pool = get_pool(FAST)
    template = pool.template_pid()
    play_batch([CODE, RANDOM_VALID], seeds=[1, 2], sandbox_config=FAST)
    play_batch([CODE], seeds=[3], sandbox_config=FAST)
    assert get_pool(FAST) is pool and pool.template_pid() == template


def test_every_game_gets_a_process_of_its_own():
    pool = get_pool(FAST)
    before = pool.jobs_started
    play_batch([CODE, RANDOM_VALID], seeds=[1, 2], sandbox_config=FAST)
    assert pool.jobs_started - before == 4
    assert not _job_processes()


def test_a_killed_job_leaves_the_pool_working():
    results = play_batch(
        ["def strategy(board):\n    while True:\n        pass\n", RANDOM_VALID],
        seeds=[1],
        sandbox_config=FAST,
    )
    assert results[0][0].state == "timeout" and results[1][0].state in ("success", "failed")
    assert not _job_processes()
    assert execute_strategy(CODE, GameBoard(seed=1), config=FAST).state == "stalled"


def test_a_template_that_died_is_replaced_without_blaming_the_next_strategy():
    pool = get_pool(FAST)
    victim = pool.template_pid()
    os.kill(victim, signal.SIGKILL)
    results = play_batch([RANDOM_VALID + f"# {i}\n" for i in range(4)], seeds=[1], sandbox_config=FAST)
    assert [row[0].state for row in results] == [results[0][0].state] * 4
    assert results[0][0].state in ("success", "failed") and pool.template_pid() != victim


def test_games_run_in_parallel():
    loop = "def strategy(board):\n    while True:\n        pass\n"
    variants = [loop + f"# copy {i}\n" for i in range(2)]
    start = time.perf_counter()
    play_batch(variants, seeds=[1], sandbox_config=SandboxConfig(call_timeout=0.5, max_workers=2))
    assert time.perf_counter() - start < 0.95  # two 0.5 s timeouts side by side, not one after the other


def _hangs_on(board: list[list[int]]) -> str:
    """A strategy that hangs on one starting board and otherwise always moves left."""
    return (
        f"def strategy(board):\n    if board == {board!r}:\n        while True:\n            pass\n"
        "    return 'a'\n"
    )


def test_a_strategy_stops_at_its_first_game_out_of_time():
    one = SandboxConfig(call_timeout=0.2, game_timeout=2.0, max_workers=1)  # one game at a time: exact counts
    hangs = _hangs_on(from_config(GameConfig(), 2).board())
    played = play_batch([hangs], seeds=[1, 2, 3], sandbox_config=one)[0]
    assert [result.state for result in played] == ["stalled", "timeout", "stalled"]  # every game played
    pool = get_pool(one)
    before = pool.jobs_started
    stopped = play_batch([hangs], seeds=[1, 2, 3], sandbox_config=one, stop_at_timeout=True)[0]
    assert [result.state for result in stopped] == ["stalled", "timeout", "timeout"]
    assert stopped[0] == played[0] and stopped[1].error == played[1].error  # the games before it stand
    assert stopped[2].error == "not played: the strategy ran out of time in game 2 of 3"
    assert stopped[2].steps == 0 and stopped[2].keys == ()
    assert pool.jobs_started - before == 2  # game 3 never started


def test_every_first_game_runs_before_any_second_so_a_hang_saves_its_later_games():
    one = SandboxConfig(call_timeout=0.2, game_timeout=2.0, max_workers=1)
    loop = "def strategy(board):\n    while True:\n        pass\n"
    others = [RANDOM_VALID + f"# {i}\n" for i in range(3)]
    pool = get_pool(one)
    before = pool.jobs_started
    results = play_batch([*others, loop], seeds=[1, 2, 3], sandbox_config=one, stop_at_timeout=True)
    assert [result.state for result in results[3]] == ["timeout"] * 3
    assert results[3][0].error.startswith("a call to strategy ran over")
    assert all(result.error.startswith("not played") for result in results[3][1:])
    assert all(result.state in ("success", "failed") for row in results[:3] for result in row)
    assert pool.jobs_started - before == 10  # 4 sources x 3 games, less the loop's last two
    assert results[:3] == play_batch(
        others, seeds=[1, 2, 3], sandbox_config=one
    )  # the others' games unchanged


def test_identical_sources_play_once():
    pool = get_pool(FAST)
    before = pool.jobs_started
    loop = "def strategy(board):\n    while True:\n        pass\n"
    start = time.perf_counter()
    results = play_batch([loop] * 6, seeds=[1], sandbox_config=FAST)
    assert time.perf_counter() - start < 1.0  # one 0.2 s timeout, not six
    assert len({r[0] for r in results}) == 1
    assert pool.jobs_started - before == 1


FORKED = textwrap.dedent(
    """\
    import os, sys
    sys.path.insert(0, {root!r})
    from helpers.game import GameBoard
    from helpers.sandbox import execute_strategy, get_pool
    code = "def strategy(board):\\n    return 'a'\\n"
    template = get_pool().template_pid()
    child = os.fork()
    if child == 0:
        state = execute_strategy(code, GameBoard(seed=1)).state
        os._exit(0 if state == "stalled" and get_pool().template_pid() != template else 1)
    _, status = os.waitpid(child, 0)
    print(os.waitstatus_to_exitcode(status), execute_strategy(code, GameBoard(seed=1)).state, get_pool().template_pid() == template)
    """
)


def test_a_forked_child_starts_its_own_pool_and_leaves_its_parents_alone():
    done = _run_python(["-c", FORKED.format(root=str(ROOT))])
    assert done.returncode == 0, done.stderr
    assert _without_walls(done.stdout) == ["0 stalled True"]


# --- where the pool can start from ---------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """\
    import sys
    sys.path.insert(0, {root!r})
    from helpers.sandbox import play_batch
    print("top-level code ran", flush=True)
    results = play_batch(["def strategy(board):\\n    return 'x'\\n"], seeds=[1])
    print(results[0][0].state)
    """
)


def _without_walls(printed: str) -> list[str]:
    """The lines printed, less the one line naming the walls, which the pool prints when it starts."""
    lines = printed.splitlines()
    walls = [line for line in lines if line.startswith("sandbox walls: ")]
    assert len(walls) == 1, lines
    return [line for line in lines if line not in walls]


def _run_python(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd="/", **kwargs
    )


def test_pool_starts_from_a_script_without_a_main_guard(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    done = _run_python([str(script)])
    assert done.returncode == 0, done.stderr
    assert _without_walls(done.stdout) == ["top-level code ran", "failed"]  # the script ran once


def test_pool_starts_from_python_reading_stdin():
    done = _run_python(["-"], input=SCRIPT.format(root=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert _without_walls(done.stdout) == ["top-level code ran", "failed"]


def test_pool_starts_from_a_notebook_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(SCRIPT.format(root=str(ROOT)))]
    nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(output.get("text", "") for output in notebook.cells[0].outputs)
    assert _without_walls(printed) == ["top-level code ran", "failed"]


def test_the_worker_never_imports_the_callers_main_or_its_heavy_modules(tmp_path):
    script = tmp_path / "heavy.py"
    script.write_text(
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "sys.modules['torch'] = type(sys)('torch')  # as if CUDA were initialised here\n"
        "from helpers.sandbox import execute_strategy\n"
        "from helpers.game import GameBoard\n"
        'src = \'import math\\ndef strategy(board):\\n    return "a" if math.pi else "u"\\n\'\n'
        "print(execute_strategy(src, GameBoard(seed=1)).state)\n"
    )
    done = _run_python([str(script)])
    assert done.returncode == 0, done.stderr
    assert _without_walls(done.stdout) == ["stalled"]


@pytest.mark.gpu
def test_pool_works_after_cuda_is_initialised():
    torch = pytest.importorskip("torch")
    torch.zeros(1, device="cuda")
    assert execute_strategy(RANDOM_VALID, GameBoard(seed=2)).state in ("success", "failed")


def test_sandbox_and_rewards_import_without_torch():
    code = (
        "import sys, helpers.game, helpers.prompts, helpers.sandbox, helpers.rewards, helpers.evaluate; "
        "print(sorted({'torch', 'transformers', 'trl', 'unsloth'} & set(sys.modules)))"
    )
    done = _run_python(["-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_check_cache_keeps_digests_not_sources():
    from helpers import sandbox_checks

    source = "def strategy(board):\n    return 'a'\n" + "# padding\n" * 9_000
    check_source(source)
    assert all(len(digest) == 16 for digest, _ in sandbox_checks._checked)
    assert len(sandbox_checks._checked) <= sandbox_checks.CHECK_CACHE_SIZE


def test_a_source_too_long_is_malformed_without_being_remembered():
    from helpers import sandbox_checks

    before = len(sandbox_checks._checked)
    assert check_source("#" * (sandbox.MAX_SOURCE_CHARS + 1)).verdict == "malformed"
    assert len(sandbox_checks._checked) == before


# --- text from a strategy is cut to printable characters ---------------------------------------------

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\u202etxt.exe\u200b\r"


def test_a_reason_holds_no_control_character():
    source = f"def strategy(board):\n    raise ValueError({ESCAPES!r} + 'end')\n"
    error = execute_strategy(source, GameBoard(seed=1), config=FAST).error
    assert error.isprintable() and error.endswith("end") and "pwned" in error


def test_printed_output_keeps_new_lines_and_tabs_only():
    source = f"def strategy(board):\n    print({ESCAPES!r}, 'a\\tb')\n    return 'x'\n"
    output = execute_strategy(source, GameBoard(seed=1), config=FAST).output
    assert output.endswith("a\tb\n") and output.replace("\n", "").replace("\t", "").isprintable()


def test_a_key_that_cannot_be_shown_is_recorded_as_empty():
    result = execute_strategy(
        "def strategy(board):\n    return 'a\\x1b[2J'\n", GameBoard(seed=1), config=FAST
    )
    assert (result.state, result.keys) == ("failed", ("",))
    assert result.error == "invalid key 'a\\x1b[2J'"


def test_printable_removes_controls_and_plains_spaces():
    from helpers.sandbox_rules import printable

    assert printable("a\x1b[0m\u00a0b\ud800\u2028c") == "a[0m b c"
    assert printable("x\ny\tz\x07", keep="\n\t") == "x\ny\tz"


def test_a_source_is_parsed_once_per_allow_list():
    source = "import heapq\ndef strategy(board):\n    return 'a'\n"
    assert check_source(source) is check_source(source)  # the rewards and the pool both ask
    narrow = SandboxConfig(allowed_imports=("math",))
    assert (check_source(source).verdict, check_source(source, narrow).verdict) == ("ok", "forbidden")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "def strat(board):\n    return 'a'\n",
            "no function named strategy: the code needs a top-level def strategy(board) (it defines strat instead)",
        ),
        ("x = 1\n", "no function named strategy: the code needs a top-level def strategy(board)"),
    ],
)
def test_code_without_a_strategy_is_told_so(source, reason):
    check = check_source(source)
    assert (check.verdict, check.reason) == ("malformed", reason)
