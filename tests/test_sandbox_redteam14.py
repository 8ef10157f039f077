"""Red team 14: reward hacks with allowed Python (plain strategies that escape nothing).

Nothing paid: every exit a losing strategy can take (a timeout, a stall, an error, an invalid key, code that is
not run) is worth less than losing by the rules, and every reward comes from the trainer's replay. The round
found one scoring mistake, against honest play: a game lost by the rules on its last key whose job was then
killed (for time, or a crash) before it reported was judged an invalid key (-3) instead of a loss (+2).
"""

from __future__ import annotations

import signal

import pytest

from helpers.config import GameConfig, SandboxConfig
from helpers.evaluate import fixed_order_strategy
from helpers.game import from_config, play_keys
from helpers.rewards import _outcome
from helpers.sandbox import _judge, _replay, get_pool
from helpers.sandbox_pool import Outcome
from helpers.sandbox_rules import AUDIT_EXIT

GAME = GameConfig(size=4, target=512)


def lost_game_keys() -> tuple[list[str], int, int]:
    """The keys of a game the fixed-order mover loses by the rules, with its score and largest tile."""
    game, keys = from_config(GAME, seed=3407), []
    strategy = fixed_order_strategy(game.keymap)
    play_keys(game, (keys.append(key) or key for key in iter(lambda: strategy(game.board()), None)), 32)
    assert game.state() == "failed"
    return keys, game.score(), game.max_tile()


@pytest.mark.parametrize(
    "end, error, status",
    [("timeout", "the game ran over 5 s", None), ("died", None, -24), ("died", None, -9)],
    ids=["killed for time", "CPU limit", "killed"],
)
def test_a_game_lost_by_the_rules_stays_a_loss_whatever_ends_the_job_after(end, error, status):
    keys, score, max_tile = lost_game_keys()
    reported = _judge(
        from_config(GAME, seed=3407),
        Outcome(list(keys), "over", None, "", {"score": score, "max_tile": max_tile}),
        32,
    )
    assert (reported.state, reported.error, _outcome(reported)) == ("failed", None, "failed")
    killed = _judge(
        from_config(GAME, seed=3407), Outcome(list(keys), end, error, "", None, status=status), 32
    )
    assert (killed.state, killed.error, _outcome(killed)) == ("failed", None, "failed"), killed
    assert (killed.score, killed.steps) == (reported.score, reported.steps)


@pytest.mark.parametrize("status", [AUDIT_EXIT, -signal.SIGSYS])
def test_a_forbidden_operation_after_the_last_key_is_still_rejected(status):
    keys, _, _ = lost_game_keys()
    result = _judge(
        from_config(GAME, seed=3407), Outcome(list(keys), "died", None, "", None, status=status), 32
    )
    assert result.state == "rejected" and "forbidden operation" in result.error, result


def test_an_invalid_last_key_is_still_invalid_when_the_job_is_killed_after_it():
    keys, _, _ = lost_game_keys()
    game = from_config(GAME, seed=3407)
    result = _judge(game, Outcome(keys[:5] + ["x"], "timeout", "the game ran over 5 s", "", None), 32)
    assert result.state == "failed" and _outcome(result) == "invalid" and "invalid key 'x'" in result.error


def test_the_replay_helpers_judge_it_the_same():
    keys, _, _ = lost_game_keys()
    outcome = Outcome(list(keys), "timeout", "the game ran over 5 s", "", None)
    pool = get_pool(SandboxConfig(max_workers=4))  # one replay helper
    before = pool.replayers.replayed
    helped = _replay(pool, from_config(GAME, seed=3407), outcome, 32)
    assert pool.replayers.replayed == before + 1  # judged by the helper, not here
    assert helped == _judge(from_config(GAME, seed=3407), outcome, 32) and _outcome(helped) == "failed"
