"""Held-out evaluation: seeds training never plays, strategies scored on them, the table, plot and files."""

from __future__ import annotations

import json

import pytest

from helpers.config import EvalConfig, GameConfig, SandboxConfig, make_config, training_seeds
from helpers.evaluate import evaluate_strategy
from helpers.heldout import (
    BEST_FILE,
    HeldOutError,
    HeldOutReport,
    check_held_out,
    markdown_table,
    plot_heldout,
    score_strategies,
    summary_rows,
    write_report,
)

GAME = GameConfig(size=4, target=512)
FAST = SandboxConfig(call_timeout=0.2, game_timeout=2.0)

LEFT_DOWN = "def strategy(board):\n    import random\n    return random.choice('aaaauuuié')\n"
"""Mostly left and down, sometimes the others: a legal game to its end (32 no-ops in a row are unlikely)."""
CORNER = "def strategy(board):\n    for key in 'auié':\n        return key\n"
"""Always left: stalls once left stops moving."""


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}```"


def config(**training):
    return make_config("cpu-tiny", game=GAME.__dict__, sandbox=FAST.__dict__, **training)


def test_held_out_seeds_never_overlap_the_training_games():
    run = config(max_steps=1000)
    last = training_seeds(run.rewards, 999)[-1]
    assert check_held_out(run, EvalConfig(seed=last + 1, games=5)) == list(range(last + 1, last + 6))
    with pytest.raises(HeldOutError, match=f"overlap the training games {run.rewards.seed}..{last}"):
        check_held_out(run, EvalConfig(seed=last - 2, games=5))
    assert EvalConfig().seed > last  # the default is held out


def test_strategies_are_scored_on_every_seed_and_judged_legal_or_not():
    samples = [
        ("untrained", "no code here"),
        ("untrained", fenced(CORNER)),
        ("trained", fenced(LEFT_DOWN)),
        ("trained", fenced("def strategy(board):\n    return 'left'\n")),
    ]
    scored = score_strategies(samples, config(), [10, 11, 12])
    assert [(s.model, s.number, s.name) for s in scored] == [
        ("untrained", 1, "untrained-01"),
        ("untrained", 2, "untrained-02"),
        ("trained", 1, "trained-01"),
        ("trained", 2, "trained-02"),
    ]
    missing, left, left_down, bad = scored
    assert missing.scores == [] and missing.mean_score == 0.0 and not missing.legal
    assert missing.rewards == {"function_works": -2.0, "no_cheating": -1.0, "strategy_succeeds": 0.0}
    assert left_down.rewards["strategy_succeeds"] == 2.0 and bad.rewards["strategy_succeeds"] == -3.0
    assert left.outcomes == {"stalled": 3} and not left.legal
    assert len(left_down.scores) == 3 and left_down.legal and left_down.mean_score > left.mean_score
    assert bad.outcomes == {"invalid": 3} and not bad.legal


def make_report():
    run = config()
    seeds = [1_000_000_000 + i for i in range(4)]
    samples = [("untrained", fenced(CORNER)), ("untrained", "nothing"), ("trained", fenced(LEFT_DOWN))]
    strategies = score_strategies(samples, run, seeds)
    baselines = [evaluate_strategy(name, GAME, 4, seeds[0], FAST) for name in ("random", "greedy")]
    return HeldOutReport(seeds, GAME.__dict__, "run/checkpoint-4", strategies, baselines)


def test_the_summary_compares_both_models_with_the_baselines():
    report = make_report()
    rows = summary_rows(report)
    assert [row["strategy"] for row in rows] == [
        "untrained model (2 samples)",
        "trained model (1 samples)",
        "random",
        "greedy",
    ]
    untrained, trained = rows[:2]
    assert (untrained["hold a strategy"], untrained["play legally"]) == (0.5, 0.0)
    assert (trained["hold a strategy"], trained["play legally"]) == (1.0, 1.0)
    assert trained["mean score"] == report.of("trained")[0].mean_score
    assert trained["mean reward"] == 1.0 + 1.0 + 2.0  # works, clean, a legal game lost on 4x4 to 512
    assert rows[2]["mean reward"] is None  # the baselines write no code
    assert report.best("trained") is report.of("trained")[0]
    table = markdown_table(rows)
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1  # aligned
    assert "| trained model (1 samples) " in table and "100%" in table


def test_the_report_is_written_with_the_strategies_and_the_best_one(tmp_path):
    report = make_report()
    folder = write_report(report, tmp_path / "heldout")
    assert (folder / "strategies" / "trained-01.py").read_text().startswith("def strategy(board):")
    assert not (folder / "strategies" / "untrained-02.py").exists()  # no strategy in that completion
    assert (folder / "strategies" / "untrained-02.txt").read_text() == "nothing"
    best = (folder / BEST_FILE).read_text()
    assert best.startswith("# trained-01: mean score") and LEFT_DOWN in best
    data = json.loads((folder / "report.json").read_text())
    assert data["seeds"] == report.seeds and len(data["strategies"]) == 3
    assert (folder / "heldout.png").stat().st_size > 10_000
    assert (folder / "report.md").read_text().startswith("| strategy")


def test_a_new_report_in_the_same_folder_keeps_the_old_one_apart(tmp_path, caplog):
    from dataclasses import replace

    report = make_report()
    write_report(report, tmp_path / "heldout")
    (tmp_path / "heldout" / "notes.md").write_text("mine")
    first = (tmp_path / "heldout" / "report.json").read_text()
    none_played = replace(report, strategies=[s for s in report.strategies if s.source is None])
    with caplog.at_level("INFO", logger="helpers.heldout"):
        folder = write_report(none_played, tmp_path / "heldout")
    assert not (folder / BEST_FILE).exists()  # the old best.py would pass for this report's
    assert sorted(path.name for path in (folder / "strategies").iterdir()) == ["untrained-02.txt"]
    assert (folder / "notes.md").read_text() == "mine"  # what a report does not write stays
    (kept,) = (folder / "earlier").iterdir()
    assert (kept / "report.json").read_text() == first  # the first report, whole, beside the new one
    assert (kept / BEST_FILE).is_file() and (kept / "strategies" / "trained-01.py").is_file()
    assert f"was kept in {kept}" in caplog.text
    write_report(report, folder)
    assert len(list((folder / "earlier").iterdir())) == 2  # a third report keeps the second as well


def test_a_report_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(HeldOutError, match="is a file"):
        write_report(make_report(), tmp_path / "afile")


def test_the_plot_has_one_column_per_model_and_a_line_per_baseline():
    import matplotlib.pyplot as plt

    figure = plot_heldout(make_report())
    ax = figure.axes[0]
    assert [label.get_text().split("\n")[0] for label in ax.get_xticklabels()] == ["untrained", "trained"]
    assert {line.get_label().split(" ")[0] for line in ax.get_lines()} >= {"random", "greedy"}
    plt.close(figure)


def test_a_completion_that_is_not_unicode_costs_the_report_nothing(tmp_path):
    from dataclasses import replace

    report = make_report()
    broken = replace(report.strategies[1], completion="nothing \ud800 here")  # a lone surrogate
    report = replace(report, strategies=[report.strategies[0], broken, report.strategies[2]])
    folder = write_report(report, tmp_path / "heldout")
    assert (folder / "strategies" / "untrained-02.txt").read_text() == "nothing \\ud800 here"
    data = json.loads((folder / "report.json").read_text())
    assert data["strategies"][1]["completion"] == "nothing \ud800 here" and (folder / BEST_FILE).is_file()
