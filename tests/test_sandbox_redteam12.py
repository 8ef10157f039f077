"""Red team 12: what the round found, one test per hole, each failing without its mend.

Nothing reached a reward. The round found a completion of 2-3 KB that stalls the trainer and can exhaust its
memory: try/finally blocks nested in `finally` bodies, each `try` holding a few `return`s. CPython writes a
`finally` body out once per way out of its `try`, so the static check's `compile` grew by (returns + 2) a level
(depth 7: 15 s and 3.5 GB in the trainer; depth 9, about 3.2 KB, an estimated 230 GB). The check now counts what
the compiler would write (`compiled_size`) before compiling, and refuses too much. It also found that
`statistics.mean` of a list of classes returned `fractions.Fraction`, a class outside the allow-list: statistics
now converts to number types only, in a game.
"""

from __future__ import annotations

import ast

import pytest
from redteam import said

from helpers import sandbox_checks
from helpers.rewards import explain
from helpers.sandbox import check_source
from helpers.sandbox_checks import MAX_COMPILED_NODES, compiled_size


def nested_finally(depth: int, returns: int) -> str:
    """The round's source: `depth` try/finally blocks, each in the one before's `finally`, `returns` returns each."""
    lines, indent = [], "    "
    for _ in range(depth):
        lines.append(indent + "try:")
        lines += [indent + "    if board: return 'a'"] * returns
        lines += [indent + "    pass", indent + "finally:"]
        indent += "    "
    lines.append(indent + "x = 1")
    return "def strategy(board):\n" + "\n".join(lines) + "\n    return 'a'\n"


@pytest.mark.parametrize("depth, returns", [(7, 6), (9, 6), (19, 0)])
def test_nested_finally_blocks_are_refused_without_compiling(compiled, depth, returns):
    source = nested_finally(depth, returns)
    assert len(source) < 3_500
    check = sandbox_checks._check_text(source, ())
    assert check.verdict == "syntax_error" and "compile to too much" in check.reason, check
    assert compiled == []  # compiling it would have taken seconds to minutes and gigabytes
    assert check_source(source) == check


def test_one_large_expression_in_a_finally_body_counts_once_per_exit(compiled):
    returns = "".join("        if board: return 'a'\n" for _ in range(2_000))
    source = (
        "def strategy(board):\n    try:\n"
        + returns
        + "    finally:\n        x = ["
        + "1," * 20_000
        + "]\n    return 'a'\n"
    )
    assert len(source) < sandbox_checks.MAX_SOURCE_CHARS
    check = sandbox_checks._check_text(source, ())
    assert check.verdict == "syntax_error" and "compile to too much" in check.reason, check
    assert compiled == []


def test_the_count_writes_a_finally_body_once_per_way_out():
    def size(source: str) -> int:
        return compiled_size(ast.parse(source))

    body = "def f(b):\n    try:\n        if b: return 1\n        if b: return 2\n        pass\n    finally:\n"
    one, two = size(body + "        x = 1\n"), size(body + "        x = 1\n        y = 2\n")
    assert two - one == 4 * (size("y = 2") - size(""))  # the second statement, four times: two returns + 2
    assert size("try:\n    pass\nexcept E:\n    pass\n") < 10  # no finally: counted as written


def test_honest_code_stays_far_under_the_limit(compiled):
    source = nested_finally(3, 6)  # deeper than any strategy needs, yet counted in thousands
    assert compiled_size(ast.parse(source)) < MAX_COMPILED_NODES // 50
    assert sandbox_checks._check_text(source, ()).verdict == "ok" and compiled  # compiled as before
    flat = "def strategy(board):\n" + "    x = 1\n" * 9_000 + "    return 'a'\n"
    assert len(flat) < sandbox_checks.MAX_SOURCE_CHARS
    assert check_source(flat).verdict == "ok"  # the longest flat program passes the count


def test_the_rewards_score_the_stalling_completion_as_not_compiling():
    row = explain([f"```python\n{nested_finally(8, 6)}```"], None, [3407])[0]
    assert row["outcome"] == "rejected" and row["function_works"] < 0, row
    assert "syntax_error: the code would compile to too much" in row["reason"]


STATISTICS_OF_CLASSES = """\
import statistics
def strategy(board):
    class X:
        @staticmethod
        def as_integer_ratio():
            return (1, 1)
    got = statistics.{call}([X, X, X])
    raise ValueError('got ' + repr(got))
"""


@pytest.mark.parametrize("call", ["mean", "variance", "pvariance"])
def test_statistics_of_classes_hands_out_no_class(call):
    source = STATISTICS_OF_CLASSES.format(call=call)
    assert check_source(source).verdict == "ok"
    heard = said(source)
    assert "Fraction" not in heard and "works on numbers only" in heard, heard


def test_statistics_of_numbers_works_as_before():
    source = (
        "import statistics\ndef strategy(board):\n"
        "    got = (statistics.mean([1, 2, 4]), statistics.mean([1, 2.5]), statistics.variance([1, 2, 4]),\n"
        "           statistics.median([3, 1, 2]), statistics.mean([True, False]))\n"
        "    raise ValueError(repr(got))\n"
    )
    heard = said(source)
    assert "(2.3333333333333335, 1.75, 2.3333333333333335, 2, 0.5)" in heard, heard
