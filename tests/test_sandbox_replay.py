"""The trusted replay helpers: the same verdicts as the trainer's own replay, and never needed for them."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from helpers import sandbox_replay
from helpers.config import SandboxConfig
from helpers.game import GameBoard
from helpers.sandbox import get_pool, play_batch
from helpers.sandbox_replay import Replayers, replayer_count

WITH_HELPER = SandboxConfig(call_timeout=0.5, game_timeout=5.0, max_workers=4)
"""Four workers: one replay helper."""
WITHOUT = SandboxConfig(call_timeout=0.5, game_timeout=5.0, max_workers=2)
"""Two workers: the trainer replays every game itself."""
SOURCES = [
    "import random\ndef strategy(board):\n    return random.choice(['a', 'u', 'i', 'é'])\n",  # long games, won
    "def strategy(board):\n    return 'é'\n",  # stalls
    "def strategy(board):\n    return 'left'\n",  # an invalid key
    "def strategy(board):\n    return board[9][9]\n",  # raises
    "def strategy(board):\n    print('hi')\n    while True:\n        pass\n",  # out of time, with output
]


def test_helpers_come_one_for_four_workers():
    assert [replayer_count(size) for size in (1, 2, 3, 4, 8, 16, 32)] == [0, 0, 0, 1, 2, 4, 8]
    assert get_pool(WITHOUT).replayers.count == 0


def test_the_helpers_judge_exactly_as_the_trainer_does():
    mine = play_batch(SOURCES, seeds=[3, 4], sandbox_config=WITHOUT)
    replayers = get_pool(WITH_HELPER).replayers
    before = replayers.replayed
    theirs = play_batch(SOURCES, seeds=[3, 4], sandbox_config=WITH_HELPER)
    assert theirs == mine
    assert [row[0].state for row in theirs] == ["success", "stalled", "failed", "error", "timeout"]
    assert replayers.replayed - before == 2 * len(SOURCES)  # every game went through a helper
    assert isinstance(theirs[0][0].keys, tuple) and len(theirs[0][0].keys) == theirs[0][0].steps


def test_a_helper_that_dies_changes_nothing_and_is_replaced():
    expected = play_batch(SOURCES[:2], seeds=[5], sandbox_config=WITHOUT)
    replayers = get_pool(WITH_HELPER).replayers
    play_batch(SOURCES[:1], seeds=[6], sandbox_config=WITH_HELPER)  # a helper is running
    (helper,) = replayers.helpers
    os.kill(helper.process.pid, signal.SIGKILL)
    helper.process.wait()
    assert play_batch(SOURCES[:2], seeds=[5], sandbox_config=WITH_HELPER) == expected  # replayed here instead
    before = replayers.replayed
    assert play_batch(SOURCES[:2], seeds=[5], sandbox_config=WITH_HELPER) == expected
    assert replayers.replayed - before == 2 and replayers.helpers[0] is not helper


def test_a_helper_answering_nonsense_is_not_believed(monkeypatch):
    expected = play_batch(SOURCES[:3], seeds=[7], sandbox_config=WITHOUT)
    monkeypatch.setattr(sandbox_replay._Helper, "judge", lambda self, request: {"state": "success"})
    assert play_batch(SOURCES[:3], seeds=[7], sandbox_config=WITH_HELPER) == expected


def test_a_claim_nested_deep_gives_the_same_verdict():
    from helpers.sandbox import _judge, _replay
    from helpers.sandbox_pool import Outcome

    deep: list = []
    for _ in range(600):  # passes json.loads (a job's result) but not pickle on Python 3.11
        deep = [deep]
    pool = get_pool(WITH_HELPER)
    before = pool.replayers.replayed
    for claim in ({"score": deep, "max_tile": 4}, {"score": 0, "max_tile": 4, "extra": deep}, {"score": "0"}):
        outcome = Outcome(["a", "i"], "over", None, "", claim)
        assert _replay(pool, GameBoard(seed=2), outcome, 32) == _judge(GameBoard(seed=2), outcome, 32)
    assert pool.replayers.replayed - before == 3  # only the score and the largest tile travel


def _long_outcome():
    from helpers.sandbox_pool import Outcome

    return Outcome(["a", "u", "i", "é"] * 50_000, "log_full", None, "", None)


def test_closing_during_a_replay_falls_back_without_an_error():
    replayers = Replayers(1)
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(replayers.judge(GameBoard(seed=3), _long_outcome(), 10**9))
    )
    worker.start()
    time.sleep(0.2)
    replayers.close()
    worker.join(10)
    assert answers == [None] or (
        len(answers) == 1 and answers[0]["steps"] > 0
    )  # fell back, or finished first
    assert not replayers.helpers and replayers.judge(GameBoard(seed=3), _long_outcome(), 32) is None


def test_a_helper_that_stops_answering_is_killed_at_its_deadline(monkeypatch):
    monkeypatch.setattr(sandbox_replay, "REPLAY_TIMEOUT", 0.5)
    replayers = Replayers(1)
    try:
        assert replayers.judge(GameBoard(seed=3), _long_outcome(), 32) is not None
        (helper,) = replayers.helpers
        os.kill(helper.process.pid, signal.SIGSTOP)
        start = time.monotonic()
        assert replayers.judge(GameBoard(seed=3), _long_outcome(), 32) is None
        assert time.monotonic() - start < 3 and not replayers.helpers
        assert helper.process.poll() is not None  # killed, not left stopped
    finally:
        replayers.close()


def test_an_answer_that_is_no_result_is_thrown_away(monkeypatch):
    replayers = Replayers(1)
    try:
        for answer in (5, None, [], {"state": "success"}):
            monkeypatch.setattr(sandbox_replay._Helper, "judge", lambda self, request, answer=answer: answer)
            assert replayers.judge(GameBoard(seed=1), _long_outcome(), 32) is None
            assert not replayers.helpers
    finally:
        replayers.close()


def test_a_machine_that_cannot_start_helpers_replays_everything_itself(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no processes left")

    replayers = Replayers(2)
    monkeypatch.setattr(sandbox_replay.subprocess, "Popen", refuse)
    assert replayers.judge(GameBoard(seed=1), _long_outcome(), 32) is None
    assert replayers.broken and not replayers.helpers and replayers.starting == 0


def test_only_plain_games_leave_the_process():
    class LocalBoard(GameBoard):
        """Its class is local to this function: a helper could not rebuild it."""

    replayers = Replayers(1)
    try:
        assert replayers.judge(LocalBoard(seed=1), None, 32) is None
        assert not replayers.helpers  # nothing was started for it
    finally:
        replayers.close()


@pytest.fixture(autouse=True)
def _a_small_pool_after():
    yield
    get_pool(WITHOUT)  # leave the process-wide pool small for the next tests
