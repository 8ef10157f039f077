"""Red team 8: what the round found, one test per hole, each failing without its mend.

- `typing.Type` hands an unknown attribute read on to `type`, and the `AttributeError` of a failed one
  carries the object it failed on in `.obj`: `typing.Type.x` gave a strategy `type`, and with `type(...)`
  called directly, metaclasses (the class-statement check never sees that call). `.obj` is now a forbidden
  attribute, and aliases of a metaclass are left out of the typing copy.
- A positional class pattern (`case int(x)`) was allowed whenever the name was used as the builtin somewhere
  in the source, also where a scope rebound it: a local `int`, a namedtuple registered over a runtime
  Protocol, read any attribute by name through its `__match_args__` (the unbound `str.format` among them).
  It is now allowed only on a builtin type the source binds nowhere.
Together they reached the live game and won the 4x4 preset 4 games in 4 with `no_cheating` paid.
"""

from __future__ import annotations

import textwrap

import pytest
from redteam import FAST, said

from helpers.sandbox import check_source, play_batch


@pytest.mark.parametrize(
    "body",
    [
        "try:\n    typing.List.x\nexcept AttributeError as e:\n    return e.obj",
        "try:\n    typing.List.x\nexcept AttributeError as e:\n    match e:\n        case AttributeError(obj=v):\n            return v",
    ],
)
def test_the_object_of_an_attribute_error_is_refused(body):
    source = "import typing\ndef strategy(board):\n" + textwrap.indent(body, "    ") + "\n"
    check = check_source(source)
    assert check.verdict == "forbidden" and "obj" in check.reason, check


def test_the_typing_copy_holds_no_alias_of_a_metaclass():
    source = (
        "import typing\ndef strategy(board):\n"
        "    raise ValueError(repr((hasattr(typing, 'Type'), hasattr(typing, 'List'), hasattr(typing, 'Callable'))))\n"
    )
    told = said(source)
    assert "(False, True, True)" in told, told


REBINDINGS = {
    "local assignment": "int = list\n    n = int(len(board))",
    "parameter": "def inner(int=list):\n        match board:\n            case int(x):\n                return x\n    n = int(len(board))",
    "for target": "for int in [list]:\n        pass\n    n = len(board)",
    "walrus": "if (int := list):\n        pass",
    "import as": "from typing import List as int",
    "class body": "class K:\n        int = list\n    n = int(len(board))",
    "comprehension": "n = [int for int in [list]]",
    "except target": "try:\n        pass\n    except ValueError as int:\n        pass",
}


@pytest.mark.parametrize("name", sorted(REBINDINGS))
def test_a_positional_class_pattern_on_a_rebound_builtin_is_refused(name):
    source = (
        "import typing\ndef strategy(board):\n    "
        + REBINDINGS[name]
        + "\n    x = int('2')\n    match board:\n        case int(y):\n            return y\n    return 'a'\n"
    )
    check = check_source(source)
    assert check.verdict == "forbidden" and "positional sub-patterns" in check.reason, (name, check)


def test_a_positional_class_pattern_on_a_builtin_still_works():
    source = (
        "def strategy(board):\n    match len(board):\n        case int(n) if n > 0:\n            return 'a'\n"
        "    return 'i'\n"
    )
    assert check_source(source).verdict == "ok"
    result = play_batch([source], seeds=[1], sandbox_config=FAST)[0][0]
    assert result.state == "stalled" and result.steps > 32, result  # it played: only 'a' ever, until stuck


READER = textwrap.dedent(
    """
    import collections, collections.abc, typing
    def strategy(board):
        @typing.runtime_checkable
        class HasMro(typing.Protocol):
            def mro(self): pass
        def attribute(obj, name):
            int = collections.namedtuple('Getter', [name])
            class Getter(int, collections.abc.Hashable):
                pass
            Getter.register(HasMro)
            int = Getter
            match obj:
                case int(value):
                    return value
        rows = int(len(board))
        fmt = attribute(str, 'for' + 'mat')
        raise ValueError('read through str.format: ' + fmt('{0}', rows))
    """
)


def test_the_rounds_attribute_reader_is_refused():
    check = check_source(READER)
    assert check.verdict == "forbidden" and "positional sub-patterns" in check.reason, check
