"""The 2048 rules, cross-checked against a plain reference engine, and the renderers."""

from __future__ import annotations

import random

import pytest

from helpers.config import GameConfig
from helpers.game import (
    KEYMAPS,
    GameBoard,
    from_config,
    render_ansi,
    render_html,
    render_text,
    slide,
    spawn_seed,
)

# --- a plain reference engine: nested lists, loops, no caches -------------------------------------


def reference_merge_left(line: list[int]) -> tuple[list[int], int]:
    tiles = [v for v in line if v != 0]
    out: list[int] = []
    gained = 0
    skip = False
    for index, value in enumerate(tiles):
        if skip:
            skip = False
            continue
        if index + 1 < len(tiles) and tiles[index + 1] == value:
            out.append(2 * value)
            gained += 2 * value
            skip = True
        else:
            out.append(value)
    return out + [0] * (len(line) - len(out)), gained


def reference_move(board: list[list[int]], direction: str) -> tuple[list[list[int]], int]:
    n = len(board)
    new = [[0] * n for _ in range(n)]
    gained = 0
    for k in range(n):
        line = list(board[k]) if direction in ("left", "right") else [board[r][k] for r in range(n)]
        if direction in ("right", "down"):
            line.reverse()
        merged, points = reference_merge_left(line)
        gained += points
        if direction in ("right", "down"):
            merged.reverse()
        for i in range(n):
            if direction in ("left", "right"):
                new[k][i] = merged[i]
            else:
                new[i][k] = merged[i]
    return new, gained


def reference_spawn(board: list[list[int]], rng: random.Random, probability_fours: float) -> None:
    empties = [(r, c) for r in range(len(board)) for c in range(len(board)) if board[r][c] == 0]
    if empties:
        r, c = empties[int(rng.random() * len(empties))]
        board[r][c] = 4 if rng.random() < probability_fours else 2


# --- rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected", "gained"),
    [
        ([2, 2, 2, 2], [4, 4, 0, 0], 8),  # two merges, each pair once
        ([2, 2, 4, 0], [4, 4, 0, 0], 4),  # a merged 4 does not merge again with the 4 beside it
        ([4, 4, 8, 0], [8, 8, 0, 0], 8),  # no double merge in one move
        ([2, 0, 0, 2], [4, 0, 0, 0], 4),  # merges across gaps
        ([2, 4, 2, 4], [2, 4, 2, 4], 0),  # nothing to do
        ([0, 0, 0, 2], [2, 0, 0, 0], 0),  # slides without merging
        ([8, 8, 8, 0], [16, 8, 0, 0], 16),  # the leading pair merges first
    ],
)
def test_slide_left_rules(row, expected, gained):
    rows = [row, [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    moved, points, changed = slide(rows, "left")
    assert moved[0] == expected
    assert points == gained
    assert changed == (expected != row)


def test_slide_in_every_direction():
    rows = [[2, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 4]]
    assert slide(rows, "right")[0] == [[0, 0, 0, 4], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 2, 4]]
    assert slide(rows, "up")[0] == [[4, 0, 0, 2], [0, 0, 0, 4], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert slide(rows, "down")[0] == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2], [4, 0, 0, 4]]


def test_slide_does_not_touch_its_input_and_rejects_unknown_directions():
    rows = [[2, 2], [0, 0]]
    slide(rows, "left")
    assert rows == [[2, 2], [0, 0]]
    with pytest.raises(ValueError):
        slide(rows, "sideways")


def test_score_adds_merged_tiles():
    game = GameBoard.from_rows([[2, 2, 4, 4], [0] * 4, [0] * 4, [8, 8, 0, 0]], seed=0)
    assert game.do_action("a")
    assert game.score() == 4 + 8 + 16


def test_no_op_move_spawns_nothing_and_does_not_end_the_game():
    rows = [[2, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    game = GameBoard.from_rows(rows, seed=0)
    assert game.do_action("a") is False  # already flush left
    assert game.board() == rows
    assert game.state() == "ongoing"
    assert game.do_action("i") is True  # right moves, and spawns exactly one tile
    assert sum(v != 0 for row in game.board() for v in row) == 3


@pytest.mark.parametrize("key", ["x", "", "up", "W", None, 3, ["a"]])
def test_invalid_key_ends_the_game_as_failed(key):
    game = GameBoard(size=4, seed=0)
    before = game.board()
    assert game.do_action(key) is False
    assert game.state() == "failed"
    assert game.board() == before
    assert game.do_action("a") is False  # a finished game ignores further moves


@pytest.mark.parametrize("key", ["A", " a ", "a\n", "É"])
def test_keys_are_stripped_and_case_insensitive(key):
    game = GameBoard.from_rows([[0, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 0]], seed=0)
    assert game.do_action(key) is True
    assert game.state() == "ongoing"


def test_success_when_a_tile_reaches_the_target():
    game = GameBoard.from_rows([[64, 64, 0], [0, 0, 0], [0, 0, 0]], target=128, seed=0)
    assert game.state() == "ongoing"
    assert game.do_action("a")
    assert game.state() == "success"
    assert game.max_tile() == 128


def test_failed_when_no_move_changes_the_board():
    stuck = [[2, 4, 2], [4, 2, 4], [2, 4, 2]]
    assert GameBoard.from_rows(stuck).state() == "failed"
    # one move from stuck: the slide leaves one gap, the spawned 2 fills it, and no pair is left
    game = GameBoard.from_rows([[2, 4, 2], [4, 2, 4], [0, 8, 16]], seed=0, probability_fours=0.0)
    assert game.state() == "ongoing"
    assert game.do_action("a")
    assert game.board() == [[2, 4, 2], [4, 2, 4], [8, 16, 2]]
    assert game.state() == "failed"


def test_board_returns_a_copy():
    game = GameBoard(size=4, seed=0)
    board = game.board()
    board[0][0] = 2048
    assert game.board() != board
    assert game.state() == "ongoing"


def test_new_game_has_two_tiles_and_seeds_are_deterministic():
    a, b = GameBoard(seed=7), GameBoard(seed=7)
    assert a.board() == b.board()
    assert sum(v != 0 for row in a.board() for v in row) == 2
    for key in "aéuiaaiué" * 20:
        assert a.do_action(key) == b.do_action(key)
    assert a.board() == b.board()
    assert a.score() == b.score()
    assert GameBoard(seed=8).board() != a.board() or GameBoard(seed=9).board() != a.board()


def test_copy_is_independent_and_replays_the_same_future():
    game = GameBoard(size=4, seed=3)
    twin = game.copy()
    for key in "aiéuaiéu":
        game.do_action(key)
        twin.do_action(key)
    assert game.board() == twin.board()
    twin.do_action("x")
    assert game.state() == "ongoing"
    assert twin.state() == "failed"


def test_keymaps_and_attributes():
    assert KEYMAPS["bepo"] == {"é": "up", "u": "down", "a": "left", "i": "right"}
    assert KEYMAPS["wasd"] == {"w": "up", "s": "down", "a": "left", "d": "right"}
    game = GameBoard(size=5, target=256, keymap="wasd", seed=0)
    assert (game.size, game.target, game.keymap) == (5, 256, KEYMAPS["wasd"])
    game.do_action("d")
    assert game.moves == 1
    with pytest.raises(ValueError):
        GameBoard(keymap="dvorak")


def test_from_config_uses_every_setting():
    config = GameConfig(size=4, target=512, probability_fours=1.0, keymap="wasd")
    game = from_config(config, seed=1)
    assert (game.size, game.target, game.keymap) == (4, 512, KEYMAPS["wasd"])
    assert sorted(v for row in game.board() for v in row if v) == [4, 4]  # every spawn is a 4


@pytest.mark.parametrize(("size", "keymap"), [(4, "bepo"), (6, "wasd"), (5, "bepo")])
def test_matches_the_reference_engine_move_by_move(size, keymap):
    """Random seeded games: the cached engine and the plain one agree after every move."""
    keys = {direction: key for key, direction in KEYMAPS[keymap].items()}
    for seed in range(6):
        game = GameBoard(size=size, seed=seed, target=512, keymap=keymap)
        rng = random.Random(spawn_seed(seed))
        reference = [[0] * size for _ in range(size)]
        reference_spawn(reference, rng, 0.10)
        reference_spawn(reference, rng, 0.10)
        assert game.board() == reference
        score = 0
        chooser = random.Random(1000 + seed)
        while game.state() == "ongoing":
            direction = chooser.choice(["up", "down", "left", "right"])
            moved, gained = reference_move(reference, direction)
            changed = moved != reference
            if changed:
                reference = moved
                score += gained
                reference_spawn(reference, rng, 0.10)
            assert game.do_action(keys[direction]) == changed
            assert game.board() == reference
            assert game.score() == score
        can_move = any(reference_move(reference, d)[0] != reference for d in ("up", "down", "left", "right"))
        top = max(max(row) for row in reference)
        assert game.state() == ("success" if top >= 512 else "failed")
        if game.state() == "failed":
            assert not can_move


def test_renderers_show_every_tile():
    rows = [[0, 2, 4, 8], [16, 32, 64, 128], [256, 512, 1024, 2048], [4096, 0, 0, 2]]
    text, ansi, page = render_text(rows), render_ansi(rows), render_html(rows, caption="score <3")
    for value in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
        assert str(value) in text
        assert f" {value} " in ansi or f"{value}" in ansi
        assert f">{value}</td>" in page
    assert len(text.splitlines()) == 4
    assert "\x1b[" in ansi
    assert page.count("<td") == 16
    assert "score &lt;3" in page  # the caption is escaped


def test_notebook_representations():
    game = GameBoard(size=4, seed=0)
    assert "GameBoard(size=4" in repr(game)
    assert game._repr_html_().startswith("<table")
    assert str(game.max_tile()) in game._repr_html_()


@pytest.mark.parametrize(
    "rows",
    [
        [[3, 0], [0, 0]],  # not a power of two
        [[2, 0, 0], [0, 0, 0]],  # not square
        [[2]],  # too small
        [[2**31, 0], [0, 0]],  # beyond the largest tile
    ],
)
def test_from_rows_rejects_boards_that_are_not_2048_boards(rows):
    with pytest.raises(ValueError):
        GameBoard.from_rows(rows)


def test_large_tiles_and_small_targets():
    game = GameBoard.from_rows([[2**29, 2**29], [0, 0]], target=2**31, seed=0)
    assert game.do_action("a")
    assert game.max_tile() == 2**30
    assert game.score() == 2**30
    assert game.state() == "ongoing"
    # a spawned 4 reaches a target of 4 at once
    assert GameBoard(size=3, seed=0, target=4, probability_fours=1.0).state() == "success"


def test_a_pickled_game_plays_the_same_future():
    import pickle

    game = GameBoard(size=5, seed=11, keymap="wasd")
    game.do_action("a")
    twin = pickle.loads(pickle.dumps(game))
    for key in "wasdwasdsd":
        assert game.do_action(key) == twin.do_action(key)
    assert (twin.board(), twin.score(), twin.moves) == (game.board(), game.score(), game.moves)


# --- the one game loop and the key lookup ------------------------------------------------------------


def test_play_keys_ends_with_the_game_and_asks_for_no_key_after_it():
    from helpers.game import play_keys

    game = GameBoard(size=2, target=2048, seed=3)  # a seed whose game ends after 8 moves of left and down
    asked = []

    def keys():
        while True:
            asked.append(game.moves)
            yield "a" if len(asked) % 2 else "u"

    assert play_keys(game, keys(), stall_moves=32) == "over"
    assert game.state() == "failed" and len(asked) == game.moves  # no key asked once the game was over


def test_play_keys_stops_a_run_of_moves_that_change_nothing():
    from helpers.game import play_keys

    game = GameBoard(size=4, seed=3)
    seen = []
    assert (
        play_keys(game, iter(lambda: "a", None), stall_moves=5, on_move=lambda k, m: seen.append(m))
        == "stalled"
    )
    assert seen[-5:] == [False] * 5 and game.state() == "ongoing"
    assert play_keys(GameBoard(size=4, seed=3), ["a", "u"], stall_moves=5) == "exhausted"


def test_keys_by_direction_inverts_a_key_map():
    from helpers.game import keys_by_direction

    assert keys_by_direction("bepo") == {"up": "é", "down": "u", "left": "a", "right": "i"}
    assert keys_by_direction({"W": "up", "S": "down", "A": "left", "D": "right"})["left"] == "a"
    assert GameBoard(keymap="wasd").key_for("up") == "w"


# --- the sealed play (the sandbox's job process plays through it) ---------------------------------------


def test_sealed_play_plays_exactly_as_the_game():
    import random as stdlib_random

    from helpers.game import sealed_play

    for seed in range(6):
        keys = stdlib_random.Random(seed).choices(["a", "i", "é", "u", "x", " A "], k=400)
        game, reference = GameBoard(size=4, seed=seed, target=256), GameBoard(size=4, seed=seed, target=256)
        play = sealed_play(game)
        board, _, state, score, top = next(play)
        assert (board, state, score, top) == (reference.board(), reference.state(), 0, reference.max_tile())
        for key in keys:
            if reference.state() != "ongoing":
                break
            board, changed, state, score, top = play.send(key)
            assert changed == reference.do_action(key)
            assert (board, state, score, top) == (
                reference.board(),
                reference.state(),
                reference.score(),
                reference.max_tile(),
            )


def test_sealed_play_hands_its_random_generator_to_nothing_rebound_after_it_starts(monkeypatch):
    """What a strategy past the sandbox's Python walls could rebind while its game runs: this module's names,
    the game's methods, the random classes. None of them sees the generator or the game, and play goes on."""
    import _random

    from helpers import game as game_module
    from helpers.game import sealed_play

    keys = "aiéu" * 25
    reference = GameBoard(size=4, seed=9)
    expected = []
    for key in keys:
        reference.do_action(key)
        expected.append((reference.board(), reference.state(), reference.score()))
    play = sealed_play(GameBoard(size=4, seed=9))
    next(play)
    seen = []

    def spy(original):
        def spied(*args, **kwargs):
            seen.extend(type(arg).__name__ for arg in args if isinstance(arg, random.Random | GameBoard))
            return original(*args, **kwargs)

        return spied

    for name in ("_UNIFORM", "_move", "_place_tile", "_state_after", "_decode", "_direction", "_can_move"):
        monkeypatch.setattr(game_module, name, spy(getattr(game_module, name)))
    draws = []
    for name, builtin in (("int", int), ("len", len), ("max", max)):  # a module global shadows the builtin

        def shadow(*args, builtin=builtin, **kwargs):
            draws.extend(arg for arg in args if isinstance(arg, float))
            return builtin(*args, **kwargs)

        monkeypatch.setattr(game_module, name, shadow, raising=False)
    for name in ("do_action", "board", "state", "_spawn", "direction_of", "score", "max_tile"):
        monkeypatch.setattr(GameBoard, name, spy(getattr(GameBoard, name)))
    monkeypatch.setattr(random.Random, "random", spy(random.Random.random))
    monkeypatch.setattr(_random.Random, "random", spy(_random.Random.random))
    played = []
    for key in keys:
        board, _, state, score, _ = play.send(key)
        played.append((board, state, score))
    assert played == expected
    assert seen == [] and draws == []  # red team 11 logged the draws through a function given them
