"""Evaluation over seeded games: determinism, the baselines' order, outcomes, and the tables."""

from __future__ import annotations

import pytest

from helpers.config import GameConfig
from helpers.evaluate import (
    BASELINES,
    PRESETS,
    EvalReport,
    baseline_scores,
    compare,
    compare_rows,
    evaluate_strategy,
)
from helpers.game import KEYMAPS, GameBoard, slide

SMALL = PRESETS["4x4-512"]


def test_same_seed_same_report_and_other_seeds_differ():
    first = evaluate_strategy("random", SMALL, n_games=8, seed=3)
    again = evaluate_strategy("random", SMALL, n_games=8, seed=3)
    other = evaluate_strategy("random", SMALL, n_games=8, seed=30)
    assert first == again
    assert first.scores != other.scores


def test_baselines_keep_their_order_on_the_hard_preset():
    reports = {
        name: evaluate_strategy(name, SMALL, n_games=16, seed=0)
        for name in ("random", "greedy", "fixed-order")
    }
    assert reports["greedy"].mean_score > reports["fixed-order"].mean_score > reports["random"].mean_score
    assert reports["random"].win_rate == 0.0
    assert reports["greedy"].win_rate > 0.0


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("keymap", sorted(KEYMAPS))
def test_baselines_answer_in_the_game_keymap_and_always_move(name, keymap):
    strategy = BASELINES[name](KEYMAPS[keymap], 0)
    game = GameBoard(size=4, seed=1, keymap=keymap)
    for _ in range(40):
        key = strategy(game.board())
        assert key in KEYMAPS[keymap]
        assert game.do_action(key) or game.state() != "ongoing"


def test_greedy_takes_the_biggest_merge():
    board = [[2, 2, 0, 0], [0, 0, 0, 0], [8, 0, 0, 0], [8, 0, 0, 0]]  # left gains 4, up/down gain 16
    key = BASELINES["greedy"](KEYMAPS["wasd"], 0)(board)
    assert key in ("s", "w")
    assert slide(board, KEYMAPS["wasd"][key])[1] == 16


def test_fixed_order_prefers_left_then_down():
    keys = KEYMAPS["bepo"]
    strategy = BASELINES["fixed-order"](keys, 0)
    assert keys[strategy([[0, 2], [0, 0]])] == "left"
    assert keys[strategy([[2, 0], [0, 0]])] == "down"  # left changes nothing


def test_report_adds_up():
    report = evaluate_strategy("greedy", SMALL, n_games=6, seed=1)
    assert isinstance(report, EvalReport)
    assert report.name == "greedy"
    assert report.games == len(report.scores) == 6
    assert sum(report.outcome_counts.values()) == 6
    assert sum(report.max_tile_counts.values()) == 6
    assert report.win_rate == report.outcome_counts.get("success", 0) / 6
    assert report.mean_moves > 0
    assert report.mean_score == pytest.approx(sum(report.scores) / 6)


def test_trusted_callables_run_in_process_with_outcomes():
    def always_left(board):
        return "a"

    def raises(board):
        raise RuntimeError("boom")

    def invalid(board):
        return "north"

    config = GameConfig(size=4, target=512)
    stalled = evaluate_strategy(always_left, config, n_games=3)
    assert stalled.name == "always_left"
    assert stalled.outcome_counts == {"stalled": 3}
    assert evaluate_strategy(raises, config, n_games=2).outcome_counts == {"error": 2}
    failed = evaluate_strategy(invalid, config, n_games=2, name="bad keys")
    assert (failed.name, failed.outcome_counts, failed.mean_moves) == ("bad keys", {"failed": 2}, 1.0)


def test_baseline_scores_match_evaluation_and_do_not_depend_on_other_seeds():
    scores = baseline_scores(SMALL, [4, 5, 6])
    assert scores == [float(s) for s in evaluate_strategy("random", SMALL, n_games=3, seed=4).scores]
    assert baseline_scores(SMALL, [6]) == scores[2:]
    greedy = evaluate_strategy("greedy", SMALL, n_games=3, seed=4).scores
    assert baseline_scores(SMALL, [4, 5, 6], name="greedy") == [float(s) for s in greedy]
    with pytest.raises(ValueError):
        baseline_scores(SMALL, [0], name="oracle")


def test_compare_table_and_rows():
    reports = [evaluate_strategy(name, SMALL, n_games=4) for name in ("random", "greedy")]
    rows = compare_rows(reports)
    assert [row["strategy"] for row in rows] == ["random", "greedy"]
    assert rows[1]["win rate"] == round(reports[1].win_rate, 3)
    table = compare(reports).splitlines()
    assert len(table) == 4
    assert table[0].startswith("| strategy | games | win rate")
    assert table[1].startswith("|---|")
    assert table[3].startswith("| greedy | 4 |")
    assert f"{reports[1].win_rate:.1%}" in table[3]
    assert compare([]) == ""


def test_presets_are_game_configs_and_the_original_is_the_default():
    assert PRESETS["original"] == GameConfig()
    assert all(isinstance(config, GameConfig) for config in PRESETS.values())


FIXED_ORDER_SOURCE = """
def strategy(board):
    def moves_left(rows):
        for row in rows:
            tiles = [v for v in row if v]
            if tiles + [0] * (len(row) - len(tiles)) != list(row):
                return True
            if any(a == b for a, b in zip(tiles, tiles[1:])):
                return True
        return False

    columns = [list(column) for column in zip(*board)]
    views = {"a": board, "u": [c[::-1] for c in columns], "i": [r[::-1] for r in board], "é": columns}
    for key in ("a", "u", "i", "é"):
        if moves_left(views[key]):
            return key
    return "a"
"""


def test_source_strategies_play_in_the_sandbox_like_the_same_callable():
    """The fixed-order baseline written as source plays the very same games through the sandbox."""
    sandboxed = evaluate_strategy(FIXED_ORDER_SOURCE, SMALL, n_games=3, seed=2, name="fixed-order source")
    trusted = evaluate_strategy("fixed-order", SMALL, n_games=3, seed=2)
    assert sandboxed.name == "fixed-order source"
    assert sandboxed.scores == trusted.scores
    assert sandboxed.outcome_counts == trusted.outcome_counts


def test_rejected_source_never_runs():
    report = evaluate_strategy("import os\ndef strategy(board):\n    return 'a'\n", SMALL, n_games=2)
    assert report.outcome_counts == {"rejected": 2}
    assert report.name == "generated"
