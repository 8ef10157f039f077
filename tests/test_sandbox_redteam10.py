"""Red team 10: what the round found, one test per hole, each failing without its mend.

The round had the builtin `type` inside a game, with every wall up: a `collections.UserList` subclass that
defined `_UserList__cast` (a class-private hook the comparisons call with the other operand) sat in a key of a
`functools.lru_cache(typed=True)` whose hash it made collide with a key holding `type(arg)`, and the dict's
comparison handed it `type`. Class-private names are now refused like private attributes, and `lru_cache` keeps
no typed keys in a game.
"""

from __future__ import annotations

import pytest
from redteam import said

from helpers.sandbox import check_source


@pytest.mark.parametrize(
    "body",
    [
        "class Hook(collections.UserList):\n    def _UserList__cast(self, other):\n        return other",
        "class UserList(collections.UserList):\n    def __cast(self, other):\n        return other",
        "__hidden = 1",
        "_a__b = 1",
    ],
)
def test_class_private_names_are_refused(body):
    source = "import collections\ndef strategy(board):\n" + "\n".join(
        "    " + line for line in body.splitlines()
    )
    source += "\n    return 'a'\n"
    check = check_source(source)
    assert check.verdict == "forbidden" and "class-private name" in check.reason, check


def test_single_underscore_names_stay_allowed():
    source = "def strategy(board):\n    _best = 'a'\n    def _score(b):\n        return 0\n    return _best\n"
    assert check_source(source).verdict == "ok"


def test_lru_cache_keeps_no_typed_keys_and_still_caches():
    source = (
        "import functools\ndef strategy(board):\n"
        "    @functools.lru_cache(maxsize=None, typed=True)\n"
        "    def f(x, y):\n        return x * y\n"
        "    @functools.lru_cache\n    def g(x):\n        return x\n"
        "    @functools.cache\n    def h(x):\n        return x\n"
        "    f(1, 2); f(1.0, 2); g(2); g(2); h(3); h(3)\n"
        "    raise ValueError(repr((f.cache_info().hits, g.cache_info().hits, h.cache_info().hits)))\n"
    )
    assert check_source(source).verdict == "ok"
    told = said(source)
    assert "(1, 1, 1)" in told, told  # typed, (1.0, 2) would have missed
