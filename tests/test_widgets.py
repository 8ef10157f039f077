"""The ipywidgets board driven from Python: buttons, typed keys, new game, and watching a strategy."""

from __future__ import annotations

import html
import itertools

import ipywidgets
import pytest
from ipywidgets.widgets.widget import _instances

from helpers import sandbox, widgets
from helpers.config import GameConfig, SandboxConfig
from helpers.evaluate import BASELINES
from helpers.game import KEYMAPS, GameBoard, render_html
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
    key = reference.key_for(direction)
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


@pytest.mark.parametrize("key", ["x", "w", "ê", "é é", "1"])
def test_a_key_outside_the_keymap_is_not_played_and_the_game_goes_on(key):
    board = BoardWidget(seed=0)
    before = board.game.board()
    assert board.press(key) is False
    assert (board.game.state(), board.game.moves, board.game.board()) == ("ongoing", 0, before)
    assert f"{key!r} is not a key here (é ↑ u ↓ a ← i →): nothing played" in html.unescape(board.status.value)
    assert ">ongoing</b>" in board.status.value


def test_a_wrong_key_typed_between_right_ones_is_skipped():
    board = BoardWidget(seed=4)
    reference = _reference(4)
    board.keys_box.value = "axu"
    for key in "au":
        reference.do_action(key)
    assert board.game.board() == reference.board()
    assert (board.game.moves, board.game.state()) == (2, "ongoing")
    assert board.keys_box.value == ""


def test_a_typed_wrong_key_says_which_keys_are():
    board = BoardWidget(GameConfig(keymap="wasd"), seed=4)
    board.keys_box.value = "é"
    assert board.game.state() == "ongoing"
    assert "'é' is not a key here (w ↑ s ↓ a ← d →)" in html.unescape(board.status.value)


def test_a_strategy_answering_a_key_outside_the_keymap_still_fails_as_in_training():
    board = BoardWidget(seed=0, strategy=lambda rows: "x")
    board.player.playing = True
    board.player.value += 1
    assert (board.game.state(), board.player.playing) == ("failed", False)
    assert "&#x27;x&#x27; is not a key of this board: game over" in board.status.value


def _lost(board: BoardWidget) -> BoardWidget:
    """The board with a lost game on it: no move changes [[2, 4], [4, 2]]."""
    board.game = GameBoard.from_rows([[2, 4], [4, 2]])
    assert board.game.state() == "failed"
    return board


def test_after_the_game_ends_presses_change_nothing():
    board = _lost(BoardWidget(seed=0))
    before = board.game.board()
    assert board.buttons["left"].click() is None
    assert board.game.board() == before
    assert "game over (failed) at move" in board.status.value


def test_the_last_move_of_a_game_says_the_game_is_over():
    board = BoardWidget()
    board.game = GameBoard.from_rows([[2, 2], [0, 0]], target=4)
    assert board.press("a") is True
    assert board.game.state() == "success"
    assert "a ← left: game over, success at move 1" in board.status.value


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


def test_play_after_the_game_is_over_says_so_and_stops_the_player():
    board = _lost(BoardWidget(strategy=lambda rows: "a"))
    board.player.playing = True
    board.player.value += 1
    assert board.player.playing is False
    assert board.game.moves == 0
    assert "game over (failed) at move" in board.status.value


def test_play_after_a_watched_game_ends_says_so():
    keys = itertools.cycle("aéiu")
    board = BoardWidget(GameConfig(size=4, target=32), seed=2, strategy=lambda rows: next(keys))
    board.play_to_end()
    assert board.game.state() in ("success", "failed")
    board.player.playing = True
    board.player.value += 1
    assert board.player.playing is False
    assert f"game over ({board.game.state()}) at move {board.game.moves}" in board.status.value


@pytest.mark.parametrize("keymap", ["bepo", "wasd"])
def test_the_key_map_picker_offers_every_key_map_and_starts_on_the_configured_one(keymap):
    board = BoardWidget(GameConfig(keymap=keymap))
    assert [value for _label, value in board.keymap_picker.options] == list(KEYMAPS)
    assert dict(board.keymap_picker.options)["bepo (é u a i)"] == "bepo"
    assert board.keymap_picker.value == keymap


def test_picking_a_key_map_relabels_the_board_and_the_game_goes_on():
    board = BoardWidget(seed=5)
    board.press("a")
    before = (board.game.board(), board.game.score(), board.game.moves)
    board.keymap_picker.value = "wasd"
    assert (board.game.board(), board.game.score(), board.game.moves) == before
    assert [button.description for button in board.buttons.values()] == ["w ↑", "s ↓", "a ←", "d →"]
    assert board.keys_box.placeholder == "type w s a d"
    assert board.game_config.keymap == "wasd"
    assert "key map wasd: w ↑ s ↓ a ← d →" in board.status.value


def test_after_a_key_map_change_the_new_keys_and_buttons_play_and_the_old_ones_do_not():
    board = BoardWidget(seed=5)
    reference = _reference(5)
    board.set_keymap("wasd")
    assert board.keymap_picker.value == "wasd"
    assert board.press("é") is False  # up in bepo: not a key any more
    board.keys_box.value = "s"
    board.buttons["right"].click()
    for key in "ui":  # the same directions in bepo
        reference.do_action(key)
    assert board.game.board() == reference.board()
    assert board.game.moves == 2


def test_generated_code_is_judged_again_in_the_new_key_map():
    board = BoardWidget(seed=1)
    board.watch("def strategy(board):\n    return 'u'")  # down in bepo, no key in wasd
    assert board.step() is True
    board.set_keymap("wasd")
    assert board.step() is False
    assert (board.game.state(), board.game.moves) == ("failed", 2)
    assert "the sandbox ended the game: failed (invalid key 'u')" in html.unescape(board.status.value)


def test_a_new_game_keeps_the_picked_key_map():
    board = BoardWidget(seed=0)
    board.set_keymap("wasd")
    board.new_game_button.click()
    assert board.game.keymap == KEYMAPS["wasd"]


def test_an_unknown_key_map_is_refused():
    board = BoardWidget()
    with pytest.raises(ValueError, match="unknown key map 'azerty'; choose one of bepo, wasd"):
        board.set_keymap("azerty")
    assert board.game.keymap == KEYMAPS["bepo"]


def _renders(board: BoardWidget) -> list[str]:
    shown: list[str] = []
    board.board_html.observe(lambda change: shown.append(change["new"]), names="value")
    return shown


def test_to_the_end_plays_the_whole_game_and_shows_only_the_last_position():
    stepped = BoardWidget(seed=1, strategy=BASELINES["greedy"](KEYMAPS["bepo"]))
    while stepped.step():
        pass
    board = BoardWidget(seed=1, strategy=BASELINES["greedy"](KEYMAPS["bepo"]))
    board.player.playing = True
    shown = _renders(board)
    board.to_the_end_button.click()
    assert board.game.moves > 1000  # a 6x6 game: minutes at the default speed
    assert board.game.state() == stepped.game.state() != "ongoing"
    assert board.game.board() == stepped.game.board()
    assert board.player.playing is False
    assert len(shown) <= 1  # one message to the browser, not one per move
    assert board.board_html.value == render_html(board.game.board())
    assert f"moves <b>{board.game.moves}</b>" in board.status.value


def test_to_the_end_returns_the_moves_it_played_and_then_says_the_game_is_over():
    board = BoardWidget(GameConfig(size=4, target=64), seed=3, strategy=BASELINES["greedy"](KEYMAPS["bepo"]))
    board.step()
    assert board.play_to_end() == board.game.moves - 1
    assert board.play_to_end() == 0
    assert f"game over ({board.game.state()}) at move {board.game.moves}" in board.status.value


def test_to_the_end_replays_the_game_the_sandbox_judged():
    board = BoardWidget(seed=6)
    judged = board.game.copy()
    result = execute_strategy(RANDOM_SOURCE, judged)
    board.watch(RANDOM_SOURCE)
    board.play_to_end()
    assert (board.game.state(), board.game.board()) == (result.state, judged.board())


def test_to_the_end_pauses_at_its_time_limit(monkeypatch):
    monkeypatch.setattr(widgets, "TO_THE_END_SECONDS", 0.0)
    board = BoardWidget(seed=1, strategy=BASELINES["greedy"](KEYMAPS["bepo"]))
    assert board.play_to_end() == 1
    assert board.game.state() == "ongoing"
    assert "paused after 0 s: press To the end again to go on" in board.status.value


def test_to_the_end_without_a_strategy_says_what_to_do():
    board = BoardWidget(seed=1)
    assert board.play_to_end() == 0
    assert "call watch(strategy) first" in board.status.value


def _shown(board: BoardWidget) -> ipywidgets.Widget:
    """Display the board as Jupyter would, and return the widget the output shows."""
    bundle = board._repr_mimebundle_()
    return _instances[bundle["application/vnd.jupyter.widget-view+json"]["model_id"]]


def test_each_later_display_of_the_board_has_a_player_of_its_own():
    # ipywidgets' Play shown twice does nothing on ▶: its second view pauses what the first starts
    board = BoardWidget(seed=1, strategy=BASELINES["greedy"](KEYMAPS["bepo"]))
    assert _shown(board) is board
    view = _shown(board)
    player = view.children[-1].children[0]
    assert isinstance(player, ipywidgets.Play) and player is not board.player
    assert view.children[:3] == board.children[:3]  # the same board, status and controls
    player.value += 1
    assert board.game.moves == 1
    board.speed.value = 20
    assert player.interval == 50
    player.playing = True
    board.new_game(seed=2)
    assert player.playing is False


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
