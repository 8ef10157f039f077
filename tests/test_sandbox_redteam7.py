"""Red team 7: what the round found, one test per hole, each failing without its mend.

- `random.Random` in the module copy is the real, shared class, and a strategy may store attributes on it:
  `random.Random.random = spy` handed the spy the game's own generator the first time the game spawned a
  tile, and with its state every tile to come (it won the 4x4 preset with `no_cheating` paid). The game now
  calls the C method it took when it was imported.
- `functools.cached_property` reads and writes the `__dict__` entry its `attrname` names, on any instance:
  set on `typing.TypeVar`, it read `type` out of `typing.CT_co.__bound__`, and with `type` came metaclasses,
  forged methods and private classes. It is now string-driven (refused, and absent from the copies), and
  `typing.CT_co` is left out of the copy.
- `collections.UserDict.copy` imports the real `copy` itself and called the real `copy.copy`, around the
  round-6 substitute. In a game the real module's `copy`, `deepcopy` and `typing.get_origin` are now the
  substitutes.
"""

from __future__ import annotations

import textwrap

from redteam import said

from helpers.sandbox import check_source

SPY = textwrap.dedent(
    """
    import random
    def strategy(board):
        store = strategy.store if hasattr(strategy, 'store') else None
        if store is None:
            store = strategy.store = {'foreign': 0, 'calls': 0}
            mine = random.Random(7)
            original = random.Random.random
            def spy(self):
                if self is not mine:
                    store['foreign'] += 1
                return original(self)
            random.Random.random = spy
            store['mine'] = mine
        store['calls'] += 1
        store['mine'].random()
        if store['calls'] == 12:
            raise ValueError('foreign generators seen: ' + str(store['foreign']))
        return 'aiéu'[store['calls'] % 4]
    """
)


def test_a_rebound_random_method_never_sees_the_games_generator():
    """The round's attack, reduced to its core: the spy counts the generators it is handed that are not its
    own. The game's spawns after each move would be 11 or more; now it sees none."""
    assert check_source(SPY).verdict == "ok"
    told = said(SPY)
    assert "foreign generators seen: 0" in told, told


def test_cached_property_is_refused_and_absent():
    for source in (
        "import functools\ndef strategy(board):\n    return functools.cached_property\n",
        "from functools import cached_property\ndef strategy(board):\n    return 'a'\n",
    ):
        assert check_source(source).verdict == "forbidden", source
    # behind the static checks, the module copy does not hold it either
    probe = (
        "import functools, typing\ndef strategy(board):\n"
        "    raise ValueError(repr((hasattr(functools, 'cached' + '_property'), hasattr(typing, 'CT_co'),"
        " hasattr(typing, 'T'))))\n"
    )
    told = said(probe)
    assert "(False, False, True)" in told, told


def test_userdict_copy_reaches_no_real_copy():
    source = textwrap.dedent(
        """
        import collections
        def strategy(board):
            class D(collections.UserDict):
                pass
            plain = collections.UserDict({'a': 1}).copy()
            try:
                D({'a': 1}).copy()
            except TypeError as exc:
                raise ValueError(repr(dict(plain)) + ' ' + str(exc))
            raise ValueError('copied through the real copy.copy')
        """
    )
    told = said(source)
    assert "{'a': 1} copy in the sandbox copies plain data" in told, told
