"""What the red-team tests share: a fast sandbox and one way to hear what a strategy says."""

from __future__ import annotations

import pytest

from helpers.config import SandboxConfig
from helpers.rewards import explain
from helpers.sandbox import GameResult, check_source, play_batch, walls_in_force

FAST = SandboxConfig(call_timeout=0.5, game_timeout=2.0)
"""Short limits: the strategies of these tests report at once (most raise what they found)."""


def seccomp_only() -> SandboxConfig:
    """FAST behind the seccomp wall alone (the test is skipped, with the reason, where seccomp is missing)."""
    config = SandboxConfig(call_timeout=0.5, game_timeout=2.0, os_walls=("seccomp",))
    walls = walls_in_force(config)
    if "seccomp" not in walls:
        pytest.skip(f"seccomp is not available here: {walls.missing.get('seccomp', 'not reported')}")
    return config


SECCOMP_ENDED = "forbidden operation at run time: a system call the sandbox forbids (seccomp)"
"""The error of a game whose strategy made a system call the seccomp wall forbids."""


def job_limits(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The resource limits a job asks of the kernel (`_set_limits`), read without setting them here."""
    from helpers import _sandbox_worker

    asked: dict = {}
    monkeypatch.setattr(
        _sandbox_worker.resource, "setrlimit", lambda which, limits: asked.update({which: limits})
    )
    _sandbox_worker._set_limits(256, 5.0)
    return asked


def said(source: str, seed: int = 1) -> str:
    """Play `source` once through the sandbox and return its error (where the strategies report)."""
    result = play_batch([source], seeds=[seed], sandbox_config=FAST)[0][0]
    return result.error or ""


PREDICT_TAIL = """\
    if 'next' in store:
        store['hit' if store['next'] == board else 'miss'] += 1
    game = store['game']
    for key in game.keymap:
        future = game.copy()
        if future.do_action(key):
            store['next'] = future.board()
            if future.state() != 'ongoing':
                print('predicted', store['hit'], 'boards exactly,', store['miss'], 'wrong')
            return key
    return 'a'
"""
"""The end of a strategy that holds the live game in `store['game']`: it plays the first move that changes
the board and counts the boards it foresaw exactly (what red teams 5 and 6 did once they had the game)."""


def gets_no_game_and_no_reward(source: str) -> GameResult:
    """Assert that `source` passes the static checks (the mend is in the sandbox), yet earns no win through
    the rewards training computes and foresees no board; returns its game's result for further checks."""
    assert check_source(source).verdict == "ok"
    row = explain([f"```python\n{source}```"], None, [3407])[0]
    assert row["outcome"] == "error", row
    assert row["strategy_succeeds"] <= 0
    result = play_batch([source], seeds=[3407], sandbox_config=FAST)[0][0]
    assert "predicted" not in result.output
    return result
