"""Red team 19 (the Python walls): no escape and no unearned reward; one wall passed, now mended.

A class statement takes no `metaclass=`, and `_build_class` checked `"metaclass" in keywords` before handing the
same keywords to the real `__build_class__`, which hashes the names again. A name that was a `str` subclass
taking `__hash__` and `__eq__` from `collections.UserString` (which read `self.data`, a property counting its
reads) said `'zzz'` to the check and `'metaclass'` to CPython: the strategy's own metaclass ran on the class
body, with every wall up. It reached no `type` (the check after building still holds), but it reopened the first
step of rounds 3, 6 and 9. Keyword names must now be plain strings.
"""

from __future__ import annotations

import pytest
from redteam import said

from helpers.sandbox import check_source

TURNCOAT_NAME = """import collections
def strategy(board):
    calls = [0]
    class S(collections.UserString, str):
        def getter(self):
            calls[0] += 1
            return 'metaclass' if calls[0] > CUT else 'zzz'
        data = property(getter, lambda self, value: None)
    def meta(name, bases, ns):
        return ['made by my metaclass', sorted(ns)]
    class X(**{S('zzz'): meta}):
        pass
    raise ValueError(repr(X))
"""


@pytest.mark.parametrize("cut", range(8))  # 4 passed the check on Python 3.11; others may on other versions
def test_a_keyword_name_that_changes_its_mind_brings_no_metaclass(cut):
    source = TURNCOAT_NAME.replace("CUT", str(cut))
    assert check_source(source).verdict == "ok"  # the static checks allow it: the mend is in the sandbox
    error = said(source)
    assert "made by my metaclass" not in error
    assert error.endswith(
        ("a class in the sandbox takes keyword names that are plain strings", "takes no metaclass")
    ), error


def test_plain_keyword_names_pass_the_check_as_before():
    refused = "def strategy(board):\n    class X(metaclass=list):\n        pass\n    return 'a'\n"
    assert said(refused).endswith("a class in the sandbox takes no metaclass")
    passed = "def strategy(board):\n    class X(tag='plain'):\n        pass\n    return 'a'\n"
    assert "takes no keyword arguments" in said(passed)  # CPython's own answer: the sandbox let it through
