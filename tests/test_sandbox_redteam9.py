"""Red team 9: what the round found, one test per hole, each failing without its mend.

- Methods written in Python take any `self` when called through their class: `collections.Counter.copy(int)`
  is `int.__class__(int)`, the builtin `type`, and `UserList.copy` the same; `ChainMap.new_child` calls the
  metaclass with arguments of the strategy's choosing. The public methods and properties of the allowed
  modules' classes now refuse a `self` that is not an instance of their class.
- With `type`, a class `P` whose `__prepare__` supplied the namespace of a class body made `case int(v)`
  there read any attribute (a bare name in a class body is looked up in that namespace first); `class X(P())`
  called `type(P())` with the body's namespace. A positional class pattern in a class body is now refused,
  and a class statement refuses a base that is not a class and a metaclass with a `__prepare__` of its own,
  before the body runs.
- A dotted import name with a dunder part (`import collections.__class__`) passed the static checks.
Together they won the 4x4 preset 6 games in 6 with `no_cheating` paid.
"""

from __future__ import annotations

import textwrap

import pytest
from redteam import said

from helpers.sandbox import check_source


@pytest.mark.parametrize(
    "call",
    [
        "collections.Counter.copy(int)",
        "collections.UserList.copy(int)",
        "collections.ChainMap.new_child(Maps)",
        "collections.ChainMap.parents.fget(Maps)",
    ],
)
def test_a_method_called_through_its_class_refuses_a_foreign_self(call):
    source = textwrap.dedent(
        f"""
        import collections
        def strategy(board):
            class Maps:
                maps = [None, 'Made', (), {{}}]
            raise ValueError('made ' + repr({call}))
        """
    )
    assert check_source(source).verdict == "ok"
    told = said(source)
    assert "called on" in told and "made" not in told, told


def test_the_guarded_classes_still_work_for_honest_code():
    source = textwrap.dedent(
        """
        import collections, random, statistics
        def strategy(board):
            counts = collections.Counter(v for row in board for v in row)
            chain = collections.ChainMap({'a': 1}).new_child({'b': 2})
            class Grid(collections.UserList):
                pass
            grid = Grid([1, 2]).copy()
            made = (counts.copy()[0] > 0, counts.most_common(1)[0][0], dict(chain.parents), list(grid),
                    len(grid), random.Random(3).randint(1, 1),
                    statistics.mean([1, 3]))
            raise ValueError(repr(made))
        """
    )
    assert check_source(source).verdict == "ok"
    told = said(source)
    assert "(True, 0, {'a': 1}, [1, 2], 2, 1, 2)" in told, told


def test_a_positional_class_pattern_in_a_class_body_is_refused():
    source = (
        "def strategy(board):\n    class K:\n        match board:\n            case int(v):\n                pass\n"
        "    return 'a'\n"
    )
    check = check_source(source)
    assert check.verdict == "forbidden" and "in a class body" in check.reason, check
    method = source.replace(
        "        match board:\n            case int(v):\n                pass\n",
        "        def f(self):\n            match board:\n                case int(v):\n                    pass\n",
    )
    assert check_source(method).verdict == "ok"  # in a method the names are the function's own


def test_a_class_statement_refuses_an_instance_as_its_base():
    source = "def strategy(board):\n    class X(print):\n        pass\n    return 'a'\n"
    assert "derives from classes only" in said(source)


def test_a_metaclass_that_prepares_the_body_is_refused_before_the_body_runs():
    from helpers import _sandbox_worker as worker

    ran = []

    class Preparing(type):
        @classmethod
        def __prepare__(cls, name, bases):
            return {"int": list}

    class Base(metaclass=Preparing):
        pass

    with pytest.raises(TypeError, match="not prepared by its metaclass"):
        worker._build_class(lambda: ran.append("body"), "X", Base)
    assert ran == []


@pytest.mark.parametrize(
    "line", ["import collections.__class__", "import typing.__dict__ as q", "from collections.__x import y"]
)
def test_a_dotted_import_with_a_private_part_is_refused(line):
    check = check_source(f"{line}\ndef strategy(board):\n    return 'a'\n")
    assert check.verdict == "forbidden" and "private or dunder" in check.reason, check


# --- defence in depth: past the Python walls, no tile to come without a frame --------------------------


def test_the_game_takes_what_it_holds_before_the_strategys_module_runs(monkeypatch):
    """A module's default arguments run when it is executed: the game must have taken its random generator
    into its own frame before then, or a rebinding there would be handed the generator."""
    import builtins
    import mmap

    from helpers import _sandbox_worker as worker
    from helpers import game as game_module
    from helpers.game import GameBoard
    from helpers.sandbox_rules import SHM_BYTES

    original = game_module._UNIFORM
    monkeypatch.setattr(game_module, "_UNIFORM", original)  # restored after the test
    seen = []

    def spy(rng):
        seen.append(rng)
        return original(rng)

    def rebind():
        game_module._UNIFORM = spy

    namespace = {"__builtins__": vars(builtins) | {"rebind": rebind}, "__name__": "strategy"}
    source = "def strategy(board, _=rebind()):\n    return 'aiéu'[sum(map(sum, board)) % 4]\n"
    moves = worker._game(GameBoard(size=4, seed=3), mmap.mmap(-1, SHM_BYTES), 32)
    end, error, score, _ = worker._play(source, namespace, moves, mmap.mmap(-1, SHM_BYTES))
    assert game_module._UNIFORM is spy  # the rebinding happened
    assert seen == [] and error is None and score > 0, (end, error, score, len(seen))


def test_the_template_forgets_the_spawn_key():
    import subprocess
    import sys

    program = (
        "from helpers import _sandbox_worker as worker, game\n"
        "assert hasattr(game, 'SPAWN_KEY')\n"
        "worker._forget_spawn_key()\n"
        "print(hasattr(game, 'SPAWN_KEY'))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
