"""The ipywidgets board driven from Python: buttons, typed keys, new game, and watching a strategy."""

from __future__ import annotations

import html
import itertools

import pytest

from helpers import sandbox
from helpers.config import GameConfig, SandboxConfig
from helpers.game import GameBoard, render_html
from helpers.sandbox import execute_strategy
from helpers.widgets import BoardWidget


def _reference(seed: int, size: int = 6) -> GameBoard:
    return GameBoard(size=size, seed=seed)


@pytest.mark.parametrize(
    ("keymap", "labels"),
    [
        ("bepo", {"up": "é ↑", "down": "u ↓", "left": "a ←", "right": "i →"}),
        ("wasd", {"up": "w ↑", "down": "s ↓", "left": "a ←", "right": "d →"}),
    ],
)
def test_buttons_are_labelled_with_the_active_keys(keymap, labels):
    board = BoardWidget(GameConfig(keymap=keymap))
    assert {direction: button.description for direction, button in board.buttons.items()} == labels


def test_the_board_follows_the_game_config():
    board = BoardWidget(GameConfig(size=4, target=256), seed=3)
    assert board.game.board() == _reference(3, size=4).board()
    assert board.game.target == 256
    assert board.board_html.value == render_html(board.game.board())


@pytest.mark.parametrize("direction", ["up", "down", "left", "right"])
def test_a_click_plays_its_direction(direction):
    board = BoardWidget(seed=5)
    reference = _reference(5)
    key = {d: k for k, d in reference.keymap.items()}[direction]
    board.buttons[direction].click()
    reference.do_action(key)
    assert board.game.board() == reference.board()
    assert board.game.moves == 1
    assert board.board_html.value == render_html(reference.board())


def test_score_and_state_are_shown_after_moves():
    board = BoardWidget(seed=2)
    for _ in range(6):
        for direction in ("left", "down"):
            board.buttons[direction].click()
    assert board.game.score() > 0
    assert f"score <b>{board.game.score()}</b>" in board.status.value
    assert f"moves <b>{board.game.moves}</b>" in board.status.value
    assert ">ongoing</b>" in board.status.value


def test_a_key_outside_the_keymap_ends_the_game_as_failed():
    board = BoardWidget(seed=0)
    assert board.press("x") is False
    assert board.game.state() == "failed"
    assert ">failed</b>" in board.status.value
    assert "&#x27;x&#x27; is not a key" in board.status.value


def test_after_the_game_ends_presses_change_nothing():
    board = BoardWidget(seed=0)
    board.press("x")
    before = board.game.board()
    assert board.buttons["left"].click() is None
    assert board.game.board() == before
    assert "the game is over" in board.status.value


def test_typed_keys_are_played_one_by_one_and_the_box_empties():
    board = BoardWidget(seed=4)
    reference = _reference(4)
    board.keys_box.value = "aui"
    for key in "aui":
        reference.do_action(key)
    assert board.game.board() == reference.board()
    assert board.game.moves == 3
    assert board.keys_box.value == ""


def test_typed_keys_are_case_insensitive_and_spaces_are_ignored():
    board = BoardWidget(GameConfig(keymap="wasd"), seed=4)
    board.keys_box.value = "A D"
    assert board.game.moves == 2
    assert board.game.state() == "ongoing"


def test_new_game_deals_the_seeded_game():
    board = BoardWidget(seed=0)
    board.press("a")
    board.seed_box.value = 7
    board.new_game_button.click()
    assert board.game.board() == _reference(7).board()
    assert board.game.moves == 0
    assert board.game.score() == 0


def test_new_game_from_code_sets_the_seed_box_and_stops_the_player():
    board = BoardWidget(seed=0, strategy=lambda rows: "a")
    board.player.playing = True
    board.new_game(seed=11)
    assert board.seed_box.value == 11
    assert board.player.playing is False
    assert board.game.board() == _reference(11).board()


def test_step_plays_the_watched_strategy_on_a_copy_of_the_board():
    seen = []

    def vandal(rows):
        seen.append([row[:] for row in rows])
        rows[0][0] = 2048  # must not reach the real game
        return "a"

    board = BoardWidget(seed=9)
    reference = _reference(9)
    board.watch(vandal)
    board.step()
    reference.do_action("a")
    assert seen[0] == _reference(9).board()
    assert board.game.board() == reference.board()
    assert board.game.state() == "ongoing"
    assert "strategy: vandal" in board.strategy_label.value


def test_each_player_tick_is_one_move_and_a_reset_is_none():
    board = BoardWidget(seed=1, strategy=lambda rows: "é" if rows[0][0] else "a")
    for _ in range(3):
        board.player.value += 1
    assert board.game.moves == 3
    board.player.value = 0  # the stop button rewinds the player
    assert board.game.moves == 3


def test_a_raising_strategy_is_reported_and_stops_the_player():
    def broken(rows):
        raise ValueError("no idea")

    board = BoardWidget(seed=1, strategy=broken)
    board.player.playing = True
    assert board.step() is False
    assert board.player.playing is False
    assert board.game.moves == 0
    assert "ValueError: no idea" in board.status.value


def test_a_non_string_answer_ends_the_game_and_stops_the_player():
    board = BoardWidget(seed=1, strategy=lambda rows: 3)
    board.player.playing = True
    board.player.value += 1
    assert board.game.state() == "failed"
    assert board.player.playing is False
    assert "returned 3, not a key" in board.status.value


def test_step_without_a_strategy_says_what_to_do():
    board = BoardWidget(seed=1)
    assert board.step() is False
    assert "call watch(strategy) first" in board.status.value


def test_watching_a_strategy_plays_to_the_end():
    keys = itertools.cycle("aéiu")
    board = BoardWidget(GameConfig(size=4, target=64), seed=2, strategy=lambda rows: next(keys))
    board.player.playing = True
    for _ in range(2000):
        if board.game.state() != "ongoing":
            break
        board.player.value += 1
    assert board.game.state() in ("success", "failed")
    assert f">{board.game.state()}</b>" in board.status.value
    assert board.player.playing is False


def test_a_strategy_that_changes_nothing_is_stopped_as_stalled():
    board = BoardWidget(strategy=lambda rows: "a")
    board.game = GameBoard.from_rows([[2, 0, 0], [4, 0, 0], [0, 0, 0]])  # left changes nothing
    board.player.playing = True
    ticks = 0
    while board.player.playing and ticks < 100:
        board.player.value += 1
        ticks += 1
    stall_moves = SandboxConfig().stall_moves
    assert ticks == stall_moves
    assert f"stalled: {stall_moves} moves in a row changed nothing" in board.status.value
    assert board.game.state() == "ongoing"


def test_the_speed_slider_sets_the_player_interval():
    board = BoardWidget(speed=5)
    assert board.player.interval == 200
    board.speed.value = 20
    assert board.player.interval == 50


RANDOM_SOURCE = "def strategy(board):\n    import random\n    return random.choice(['a', 'u', 'i', 'é'])"


def _watch_to_the_end(board: BoardWidget) -> int:
    steps = 0
    while board.step():
        steps += 1
    return steps


def test_generated_code_replays_exactly_the_game_the_sandbox_judged():
    board = BoardWidget(seed=6)
    board.press("a")
    judged = board.game.copy()
    result = execute_strategy(RANDOM_SOURCE, judged)
    board.watch(RANDOM_SOURCE)
    steps = _watch_to_the_end(board)
    assert "generated code (sandboxed)" in board.strategy_label.value
    assert result.state == "success" and board.game.state() == "success"
    assert steps == result.steps - 1  # the winning move ends the watch
    assert board.game.board() == judged.board()
    assert board.game.score() == result.score


def test_a_key_by_hand_sends_the_generated_code_back_to_the_sandbox():
    board = BoardWidget(GameConfig(size=4, target=256), seed=2)
    board.watch(RANDOM_SOURCE)
    for _ in range(5):
        board.step()
    board.press("u")
    judged = board.game.copy()
    execute_strategy(RANDOM_SOURCE, judged)
    _watch_to_the_end(board)
    assert board.game.board() == judged.board()
    assert board.game.moves == judged.moves


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("def strategy(board):\n    import os\n    return 'a'", "rejected (forbidden: line 2: import of os"),
        ("def strategy(board):\n    while True:\n        pass", "timeout (a call to strategy ran over"),
        ("def strategy(board):\n    return 1 / 0", "error ("),
    ],
)
def test_generated_code_the_sandbox_stops_is_reported_without_a_move(source, shown):
    board = BoardWidget(seed=1)
    board.watch(source)
    board.player.playing = True
    assert board.step() is False
    assert board.game.moves == 0
    assert board.player.playing is False
    assert f"the sandbox ended the game: {shown}" in html.unescape(board.status.value)


def test_generated_code_that_changes_nothing_stalls_like_in_training():
    board = BoardWidget(seed=1)
    board.game = GameBoard.from_rows([[2, 0, 0], [4, 0, 0], [0, 0, 0]])
    board.watch("def strategy(board):\n    return 'a'")
    assert _watch_to_the_end(board) == SandboxConfig().stall_moves - 1
    assert "stalled" in board.status.value


@pytest.mark.parametrize(
    ("answer", "shown"),
    [("'left'", "failed (invalid key 'left')"), ("3", "failed (returned something that is not a key)")],
)
def test_generated_code_that_answers_no_key_ends_with_the_sandbox_reason(answer, shown):
    board = BoardWidget(seed=1)
    board.watch(f"def strategy(board):\n    return {answer}")
    board.player.playing = True
    assert board.step() is False
    assert (board.game.state(), board.game.moves) == ("failed", 1)
    assert board.player.playing is False
    assert f"the sandbox ended the game: {shown}" in html.unescape(board.status.value)


def test_a_sandboxed_game_too_long_to_record_is_reported_without_a_move(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_RECORDED_KEYS", 5)
    board = BoardWidget(seed=6)
    board.watch(RANDOM_SOURCE)
    assert board.step() is False
    assert board.game.moves == 0
    assert "keys, too many to replay, and ended the game: success" in board.status.value
