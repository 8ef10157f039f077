"""Hostile strategies: each attack is refused by the static checks, and contained even when it is not.

Two walls, tested separately, one property per test:
- `test_static_checks_refuse`: the attack never reaches a worker (`check_source` says why);
- `test_contained_without_the_static_checks`: the same source, sent to a worker unchecked (through the
  pool's private job type), still cannot write the marker file, win, or harm the parent.
Then the attacks that pass the static checks by design (loops, memory, prints, odd return values) each
have a test of their own, and the reference notebook's four holes (a)-(d) have one each.
"""

from __future__ import annotations

import resource
import textwrap
import time
from dataclasses import dataclass

import pytest

from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.rewards import no_cheating
from helpers.sandbox import (
    _play_unchecked,
    check_source,
    execute_strategy,
    extract_function,
    get_pool,
    play_batch,
)

FAST = SandboxConfig(call_timeout=0.2, game_timeout=1.0)
"""Short limits; the pool itself (size, memory cap) is the default one."""


@dataclass(frozen=True)
class Attack:
    name: str
    source: str
    verdict: str
    """What `check_source` must answer."""

    def code(self, marker: str) -> str:
        return textwrap.dedent(self.source).replace("MARKER", marker)


ATTACKS = [
    Attack(
        "file write with open",
        "def strategy(board):\n    open('MARKER', 'w').write('x')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "import os",
        "import os\ndef strategy(board):\n    os.system('touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "import sys",
        "def strategy(board):\n    import sys\n    sys.modules['os'].system('touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "import gc",
        "def strategy(board):\n    import gc\n    gc.get_objects()\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "signal tampering",
        "import signal\ndef strategy(board):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "import subprocess",
        "def strategy(board):\n    import subprocess\n    subprocess.run(['touch', 'MARKER'])\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "import importlib",
        "def strategy(board):\n    import importlib\n    importlib.import_module('os').system('touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "import ctypes",
        "def strategy(board):\n    import ctypes\n    ctypes.CDLL(None).system(b'touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "from os import",
        "from os import system\ndef strategy(board):\n    system('touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack("relative import", "from . import game\ndef strategy(board):\n    return 'a'\n", "forbidden"),
    Attack(
        "dunder import",
        "def strategy(board):\n    __import__('os').system('touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "class bases walk to os",
        """\
        def strategy(board):
            for cls in ().__class__.__bases__[0].__subclasses__():
                if cls.__name__ == '_wrap_close':
                    cls.__init__.__globals__['system']('touch MARKER')
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "generator frame walk to the game",
        """\
        def strategy(board):
            frame = (x for x in [0]).gi_frame.f_back
            while frame is not None:
                if 'game' in frame.f_locals:
                    frame.f_locals['game']._score = 10**9
                frame = frame.f_back
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "traceback frame walk",
        """\
        def strategy(board):
            try:
                1 / 0
            except ZeroDivisionError as exc:
                exc.__traceback__.tb_frame.f_back.f_globals['_armed'] = False
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "real builtins through a bound method",
        "def strategy(board):\n    len.__self__.open('MARKER', 'w').write('x')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "getattr with a dunder string",
        "def strategy(board):\n    getattr(board, '__class__')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "operator.attrgetter with a dunder string",
        """\
        import operator
        def strategy(board):
            walk = operator.attrgetter('__class__.__base__.__subclasses__')
            for cls in walk(())():
                if 'wrap_close' in str(cls):
                    operator.attrgetter('__init__.__globals__')(cls)['system']('touch MARKER')
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "typing.get_type_hints evaluates a string",
        """\
        import typing
        def strategy(board):
            def probe(x: "print.__self__.open('MARKER', 'w')"):
                pass
            typing.get_type_hints(probe)
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "a module inside an allowed module",
        "import statistics\ndef strategy(board):\n    statistics.sys.modules['os'].system('touch MARKER')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "private state of an allowed module",
        "import random\ndef strategy(board):\n    random._inst.seed(0)\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "exec string",
        "def strategy(board):\n    exec(\"open('MARKER', 'w')\")\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "eval string",
        "def strategy(board):\n    return eval(\"print.__self__.open('MARKER', 'w') and 'a'\")\n",
        "forbidden",
    ),
    Attack(
        "compile", "def strategy(board):\n    compile('x = 1', 'f', 'exec')\n    return 'a'\n", "forbidden"
    ),
    Attack(
        "globals",
        "def strategy(board):\n    globals()['__builtins__']['open']('MARKER', 'w')\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "vars of a module",
        "import random\ndef strategy(board):\n    vars(random)['choice'] = None\n    return 'a'\n",
        "forbidden",
    ),
    Attack("type trick", "def strategy(board):\n    type('X', (), {})\n    return 'a'\n", "forbidden"),
    Attack(
        "match pattern reads a dunder attribute",
        "def strategy(board):\n    match board:\n        case list(__class__=cls):\n            pass\n    return 'a'\n",
        "forbidden",
    ),
    Attack("fork", "import os\ndef strategy(board):\n    os.fork()\n    return 'a'\n", "forbidden"),
    Attack(
        "threads",
        "import threading\ndef strategy(board):\n    threading.Thread(target=print).start()\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "breakpoint and input", "def strategy(board):\n    breakpoint()\n    return input()\n", "forbidden"
    ),
    Attack("memoryview", "def strategy(board):\n    memoryview(b'x')\n    return 'a'\n", "forbidden"),
    Attack(
        "star import", "from random import *\ndef strategy(board):\n    return choice('ai')\n", "forbidden"
    ),
    Attack(
        "functools.update_wrapper merges a library function's globals into the strategy's",
        """\
        import functools, random
        def strategy(board):
            def helper():
                pass
            functools.update_wrapper(helper, random.shuffle, assigned=(), updated=('__globals__',))
            _os.system('touch MARKER')
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "functools.wraps copies globals",
        """\
        from functools import wraps
        import random
        def strategy(board):
            def helper():
                pass
            wraps(random.shuffle, assigned=(), updated=('__globals__',))(helper)
            _os.system('touch MARKER')
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "functools.singledispatch evaluates a string annotation",
        """\
        import functools
        def strategy(board):
            @functools.singledispatch
            def choose(x):
                return 'a'
            def probe(x: "print.__func__.__globals__['os'].system('touch MARKER')"):
                return 'a'
            choose.register(probe)
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "copy.dispatch_table changes what copying does everywhere",
        """\
        import copy, collections
        def strategy(board):
            copy.dispatch_table[collections.Counter] = lambda c: (collections.Counter, ({'é': 99},))
            return 'a'
        """,
        "forbidden",
    ),
    Attack(
        "a format string reads globals without a call",
        "def strategy(board):\n    print('{0.__func__.__globals__[os].environ}'.format(print))\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "a format template built at run time",
        "def strategy(board):\n    t = '{0.' + '__func__}'\n    print(t.format(print))\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "format_map",
        "def strategy(board):\n    print('{x}'.format_map({'x': 1}))\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "a match pattern reads a private attribute",
        "import random\ndef strategy(board):\n    match random.choice:\n        case object(_inst=r):\n            pass\n    return 'a'\n",
        "forbidden",
    ),
    Attack(
        "module-level code",
        "x = [print('side effect') for _ in range(3)]\ndef strategy(board):\n    return 'a'\n",
        "malformed",
    ),
    Attack(
        "default argument runs code", "def strategy(board, cache=[0] * 10**9):\n    return 'a'\n", "malformed"
    ),
    Attack(
        "decorator runs code",
        "import functools\n@functools.lru_cache(maxsize=None)\ndef strategy(board):\n    return 'a'\n",
        "malformed",
    ),
    Attack(
        "annotation runs code",
        "def strategy(board: sum(range(10**12))) -> str:\n    return 'a'\n",
        "malformed",
    ),
    Attack("async strategy", "async def strategy(board):\n    return 'a'\n", "malformed"),
    Attack("generator strategy", "def strategy(board):\n    while True:\n        yield 'a'\n", "malformed"),
    Attack(
        "huge source", "def strategy(board):\n" + "    x = 1\n" * 20_000 + "    return 'a'\n", "malformed"
    ),
    Attack(
        "parser bomb",
        "def strategy(board):\n    return " + "(" * 500 + "'a'" + ")" * 500 + "\n",
        "syntax_error",
    ),
]


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "pwned"


def _unchecked(source: str, config: SandboxConfig = FAST, game: GameBoard | None = None):
    """Run a source in a worker WITHOUT the static checks."""
    return _play_unchecked(source, game or GameBoard(seed=1), config)


def test_there_are_at_least_45_distinct_attacks():
    assert len({attack.name for attack in ATTACKS}) == len(ATTACKS) >= 45


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_static_checks_refuse(attack, marker):
    check = check_source(attack.code(str(marker)))
    assert check.verdict == attack.verdict, check.reason


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_refused_code_never_runs(attack, marker):
    game = GameBoard(seed=1)
    result = execute_strategy(attack.code(str(marker)), game, config=FAST)
    assert (result.state, result.steps, game.moves) == ("rejected", 0, 0)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_contained_without_the_static_checks(attack, marker):
    result = _unchecked(attack.code(str(marker)))
    assert not marker.exists()
    assert result.state != "success"


def test_the_runtime_wall_rejects_what_the_static_checks_let_through():
    # hasattr with a string reaches a generator's frame without naming it: the audit hook ends the worker
    source = "def strategy(board):\n    hasattr((x for x in [0]), 'gi_' + 'frame')\n    return 'a'\n"
    assert check_source(source).verdict == "ok"
    result = execute_strategy(source, GameBoard(seed=1), config=FAST)
    assert (result.state, result.error) == ("rejected", "forbidden operation at run time: object.__getattr__")
    assert no_cheating(["```python\n" + source + "```"]) == [-20.0]


def test_the_allowed_modules_carry_no_string_driven_member():
    source = textwrap.dedent(
        """\
        import functools, operator, typing, copy
        def strategy(board):
            found = [name for module, name in [
                (functools, 'update_wrapper'), (functools, 'wraps'), (functools, 'singledispatch'),
                (functools, 'singledispatchmethod'), (operator, 'attrgetter'), (operator, 'methodcaller'),
                (typing, 'get_type_hints'), (typing, 'ForwardRef'), (copy, 'dispatch_table'),
            ] if hasattr(module, name)]
            raise ValueError(str(found))
        """
    )
    assert _unchecked(source).error == "ValueError: []"


def test_the_static_checks_allow_a_literal_format_template():
    assert check_source("def strategy(board):\n    return '{}{:>2}'.format('a', '')[:1]\n").verdict == "ok"


# --- attacks the static checks let through on purpose: the limits stop them -----------------------


def _timed(source: str, config: SandboxConfig = FAST):
    start = time.perf_counter()
    result = execute_strategy(source, GameBoard(seed=1), config=config)
    return result, time.perf_counter() - start


def test_swallowed_timeout_is_still_a_timeout():
    source = textwrap.dedent(
        """\
        def strategy(board):
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass
        """
    )
    result, elapsed = _timed(source)
    assert result.state == "timeout" and elapsed < FAST.call_timeout + 0.5


def test_c_level_loop_is_killed():
    result, elapsed = _timed("def strategy(board):\n    return sum(range(10**12))\n")
    assert result.state == "timeout" and elapsed < FAST.call_timeout + 0.5


def test_memory_bomb_is_an_error_and_the_parent_does_not_grow():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result, _ = _timed("def strategy(board):\n    cells = [0] * (10**10)\n    return 'a'\n")
    assert (result.state, result.error) == ("error", "MemoryError")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_memory_growth_stops_at_the_cap():
    source = "def strategy(board):\n    hoard = []\n    while True:\n        hoard.append(bytes(10**8))\n"
    result, _ = _timed(source, SandboxConfig(call_timeout=2.0, game_timeout=3.0))
    assert (result.state, result.error) == ("error", "MemoryError")


def test_runaway_recursion_is_an_error():
    result, elapsed = _timed("def strategy(board):\n    return strategy(board)\n")
    assert result.state == "error" and result.error.startswith("RecursionError")


def test_huge_prints_are_capped_and_the_game_goes_on():
    result, _ = _timed("def strategy(board):\n    print('x' * 10**7)\n    return 'a'\n")
    assert len(result.output) == FAST.max_output_chars and result.steps > 1


def test_huge_return_value_is_not_a_key():
    # building 100 MB can take over FAST's 0.2 s call limit on a busy machine: a generous limit here
    result, _ = _timed("def strategy(board):\n    return 'a' * 10**8\n", SandboxConfig(call_timeout=2.0))
    assert (result.state, result.steps) == ("failed", 1)


def test_huge_exception_message_is_cut():
    result, _ = _timed("def strategy(board):\n    raise ValueError('x' * 10**6)\n")
    assert result.state == "error" and len(result.error) <= 200


def test_str_subclass_return_runs_none_of_its_methods():
    source = textwrap.dedent(
        """\
        def strategy(board):
            class Key(str):
                def strip(self):
                    return 'not a key'
                def lower(self):
                    return 'not a key'
            return Key(' a ')
        """
    )
    result, _ = _timed(source)
    assert result.state == "stalled" and result.steps > 1  # played as 'a' (left) until it stalled


def test_base_exception_subclass_does_not_take_the_pool_down():
    source = "def strategy(board):\n    class Quit(BaseException):\n        pass\n    raise Quit()\n"
    pool = get_pool(FAST)
    before = pool.template_pid()
    result, _ = _timed(source)
    assert (result.state, result.error) == ("error", "Quit") and pool.template_pid() == before


def test_output_sent_to_a_file_argument_is_captured():
    result, _ = _timed("def strategy(board):\n    print('hi', file=None, flush=True)\n    return 'x'\n")
    assert result.output == "hi\n"


def test_a_monkeypatched_shared_class_does_not_reach_the_next_strategy():
    poison = textwrap.dedent(
        """\
        import collections
        def strategy(board):
            collections.Counter.most_common = lambda self, n=None: [('é', 1)]
            return 'x'
        """
    )
    victim = textwrap.dedent(
        """\
        import collections
        def strategy(board):
            counts = collections.Counter({'a': 2, 'u': 1})
            return counts.most_common(1)[0][0]
        """
    )
    alone = play_batch([victim], seeds=[1], sandbox_config=FAST)[0][0]
    for _ in range(3):  # however the jobs land on the workers
        after = play_batch([poison, victim], seeds=[1], sandbox_config=FAST)[1][0]
        assert after == alone


# --- the reference notebook's holes -------------------------------------------------------------------


def test_hole_a_mutating_the_board_does_not_win():
    source = "def strategy(board):\n    board[0][0] = 2048\n    board[1][1] = 2048\n    return 'a'\n"
    game = GameBoard(seed=1)
    result = execute_strategy(source, game, config=FAST)
    assert result.state == "stalled" and result.max_tile < 2048 and game.max_tile() < 2048


@pytest.mark.parametrize("module", ["os", "sys", "gc", "signal"])
def test_hole_b_standard_library_escapes_are_cheating(module):
    completion = f"```python\nimport {module}\ndef strategy(board):\n    return 'a'\n```"
    assert no_cheating([completion]) == [-20.0]


def test_hole_c_a_swallowed_timeout_inside_a_c_level_loop_is_killed():
    source = textwrap.dedent(
        """\
        def strategy(board):
            while True:
                try:
                    sum(range(10**12))
                except BaseException:
                    pass
        """
    )
    result, elapsed = _timed(source)
    assert result.state == "timeout" and elapsed < FAST.call_timeout + 0.5


def test_hole_d_a_no_op_move_stalls_at_once():
    # on a packed board "é" (up) changes nothing; the original spun for its full 5 s
    game = GameBoard.from_rows([[2, 4, 2, 4, 2, 4], [4, 2, 4, 2, 4, 2]] + [[0] * 6] * 4)
    start = time.perf_counter()
    result = execute_strategy("def strategy(board):\n    return 'é'\n", game)
    assert (result.state, result.steps) == ("stalled", SandboxConfig().stall_moves)
    assert time.perf_counter() - start < 1.0  # the original spun for 5 s


# --- red team round 3 -------------------------------------------------------------------------------

METACLASS_MATCH = """
import typing
def strategy(board):
    def attr(obj, name):
        K = typing.ABCMeta("K", (), {"__subclasshook__": classmethod(lambda cls, other: True), "__match_args__": (name,)})
        match obj:
            case K(value):
                return value
    g = attr(attr(attr(attr(print, "__self__"), "print"), "__func__"), "__globals__")
    return "a" if "os" in g else "u"
"""


def test_module_copies_hold_no_metaclass_to_build_a_class_from_strings():
    """Two walls: the static checks refuse the positional class pattern (red team 4), and past them the
    module copies have no `ABCMeta` to build the class with."""
    from helpers.config import Config
    from helpers.rewards import reward_functions

    completion = [[{"role": "assistant", "content": f"```python\n{METACLASS_MATCH}\n```"}]]
    works, clean, succeeds = (f(completion) for f in reward_functions(Config()))
    assert check_source(METACLASS_MATCH).verdict == "forbidden" and clean[0] < 0
    result = _play_unchecked(METACLASS_MATCH, GameBoard(seed=1), SandboxConfig())
    assert result.state == "error" and "ABCMeta" in result.error, result


def test_a_deeply_nested_format_template_is_judged_alone_not_the_whole_batch():
    from helpers.config import Config
    from helpers.rewards import reward_functions

    honest = "```python\ndef strategy(board):\n    return 'a'\n```"
    hostile = (
        "```python\ndef strategy(board):\n    return " + repr("{:" * 3000 + "}" * 3000) + ".format(1)\n```"
    )
    alone = [f([honest]) for f in reward_functions(Config())]
    together = [f([honest, hostile]) for f in reward_functions(Config())]
    assert [values[0] for values in together] == [values[0] for values in alone]
    assert check_source(extract_function(hostile)).verdict in ("forbidden", "syntax_error")
