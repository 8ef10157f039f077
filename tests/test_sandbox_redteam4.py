"""Red team 4: what the round found, one test per hole, each failing without its mend.

- A strategy could seed its own `random.Random` with training's small consecutive game seeds, find its
  game's spawn stream by trial and know every tile to come (`helpers.game.spawn_seed` now keys it).
- A `match` class pattern read attributes by name past the static checks: `case object(format=f)` took an
  unbound `str.format`, and a positional pattern on a namedtuple registered over `str` read `format_map`.
- Honest code was paid as cheating: `typing.overload` reads `func.__code__`, which the audit hook refuses.
"""

from __future__ import annotations

import random

import pytest

from helpers.config import SandboxConfig
from helpers.game import GameBoard, spawn_seed
from helpers.sandbox import check_source, play_batch

FAST = SandboxConfig(call_timeout=0.5, game_timeout=2.0)


def _stream_after_opening(rng: random.Random, draws: int = 8) -> list[float]:
    return [rng.random() for _ in range(draws)]


@pytest.mark.parametrize("seed", [0, 3407])
def test_no_small_integer_seed_reproduces_a_games_spawn_stream(seed):
    """The attack: try `random.Random(s)` for s near training's seeds and replay the spawn protocol.

    A new game has drawn four numbers (two spawns); whatever seeds a plain generator, its next draws must
    not be the game's, so the opening cannot lead to the tiles to come.
    """
    game_stream = _stream_after_opening(GameBoard(seed=seed)._rng)
    for guess in range(20_000):
        rng = random.Random(guess)
        for _ in range(4):
            rng.random()
        assert _stream_after_opening(rng) != game_stream, guess
    reference = random.Random(spawn_seed(seed))  # the documented protocol still replays the game
    for _ in range(4):
        reference.random()
    assert _stream_after_opening(reference) == game_stream


def test_spawn_seed_spreads_consecutive_seeds_and_keeps_none_fresh():
    seeds = [spawn_seed(seed) for seed in range(3407, 3407 + 64)]
    assert len(set(seeds)) == 64 and all(seed > 2**128 for seed in seeds)
    assert spawn_seed(None) is None
    assert GameBoard(seed=5).board() == GameBoard(seed=5).board()


@pytest.mark.parametrize(
    "source",
    [
        "def strategy(board):\n    match str:\n        case object(format=f):\n            pass\n"
        "    print(f('{0.__func__.__globals__}', print))\n    return 'a'\n",
        "def strategy(board):\n    match 'x':\n        case str(format=f):\n            return 'a'\n    return 'a'\n",
        "import collections\nimport collections.abc\nimport typing\ndef strategy(board):\n"
        "    NT = collections.namedtuple('NT', ['format_map'])\n"
        "    class Q(NT, collections.abc.Hashable):\n        pass\n"
        "    @typing.runtime_checkable\n    class R(typing.Protocol):\n        def casefold(self): pass\n"
        "    Q.register(R)\n    match '{a}':\n        case Q(fm):\n            print(fm({'a': 1}))\n"
        "    return 'a'\n",
        "def strategy(board):\n    int = list\n    match board:\n        case int(rows):\n            return 'a'\n"
        "    return 'a'\n",
        "def strategy(board):\n    global int\n    int = list\n    match board:\n        case int(rows):\n"
        "            return 'a'\n    return 'a'\n",
        "def strategy(board):\n    def inner():\n        global str\n        str = list\n    inner()\n"
        "    match 'x':\n        case str(f):\n            return 'a'\n    return 'a'\n",
    ],
    ids=[
        "unbound-format",
        "format-on-str",
        "positional-on-registered-namedtuple",
        "rebound-builtin",
        "builtin-rebound-through-global",
        "builtin-rebound-through-global-in-an-inner-function",
    ],
)
def test_class_patterns_that_read_attributes_by_name_are_refused(source):
    assert check_source(source).verdict == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        "    match board:\n        case list(rows) if len(rows) == 6:\n            return 'a'\n    return 'u'\n",
        "    match board[0][0]:\n        case int(x) if x > 2:\n            return 'a'\n    return 'u'\n",
        "    match board:\n        case [[0, *_], *_]:\n            return 'a'\n    return 'u'\n",
        "    P = collections.namedtuple('P', 'x y')\n"
        "    match P(1, 2):\n        case P(x=1):\n            return 'a'\n    return 'u'\n",
    ],
    ids=["builtin-list", "builtin-int", "sequence", "keyword-on-a-namedtuple"],
)
def test_honest_patterns_still_pass(body):
    assert check_source(f"import collections\ndef strategy(board):\n{body}").verdict == "ok"


OVERLOADED = """
import typing
def strategy(board):
    @typing.overload
    def best(x: int) -> str: ...
    @typing.overload
    def best(x: str) -> str: ...
    def best(x):
        return "a" if len(x) % 2 == 0 else "u"
    return best(board)
"""


def test_typing_overload_is_honest_code_not_cheating():
    result = play_batch([OVERLOADED], seeds=[1], sandbox_config=FAST)[0][0]
    assert result.state not in ("rejected", "error"), result
    assert result.steps > 0


def test_calling_an_overload_signature_is_an_error_as_in_python():
    source = OVERLOADED.replace("    def best(x):\n        return", "    def other(x):\n        return")
    result = play_batch([source], seeds=[1], sandbox_config=FAST)[0][0]
    assert result.state == "error" and "overload" in result.error, result
