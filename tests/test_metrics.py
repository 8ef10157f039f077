"""The metrics log (metrics.jsonl) and its plots: what the dashboard and the live plot read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import metrics
from helpers.metrics import learning_line, learning_summary

ROOT = Path(__file__).resolve().parents[1]


def step(number: int, reward: float, **extra: float) -> dict:
    return {"step": number, "reward": reward, "rewards/function_works/mean": reward / 2, **extra}


def test_records_come_back_in_order(tmp_path):
    path = metrics.metrics_path(tmp_path)
    for number in (1, 2, 3):
        metrics.append_metrics(path, step(number, float(number)))
    assert [record["step"] for record in metrics.read_metrics(path)] == [1, 2, 3]


def test_truncate_that_cannot_write_keeps_the_old_log(tmp_path):
    # A full disk during a resume must not cost the run its history: here the file-size limit stands
    # in for the full disk, so writing the kept records fails part-way through.
    path = tmp_path / "metrics.jsonl"
    for number in range(1, 201):
        metrics.append_metrics(path, step(number, 0.5))
    before = path.read_text()
    script = (
        "import resource, signal, sys; from helpers import metrics\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n    metrics.truncate_metrics(sys.argv[1], 150)\n"
        "except OSError:\n    sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, timeout=60)
    assert done.returncode == 3
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    assert metrics.read_metrics(tmp_path) == metrics.read_metrics(path)  # a run folder works too


def test_non_finite_numbers_are_stored_as_null_and_scalars_as_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "metrics.jsonl"
    metrics.append_metrics(
        path, {"step": 1, "loss": float("nan"), "grad_norm": np.float32(0.5), "note": "ok"}
    )
    line = json.loads(path.read_text())
    assert line == {"step": 1, "loss": None, "grad_norm": 0.5, "note": "ok"}


def test_a_line_cut_short_by_a_killed_process_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    metrics.append_metrics(path, step(1, 1.0))
    with path.open("a") as file:
        file.write('{"step": 2, "rew')
    assert [record["step"] for record in metrics.read_metrics(path)] == [1]


def test_a_missing_log_reads_as_empty(tmp_path):
    assert metrics.read_metrics(tmp_path / "nothing.jsonl") == []


def test_truncate_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for number in range(1, 6):
        metrics.append_metrics(path, step(number, 0.0))
    assert metrics.truncate_metrics(path, 3) == 3
    assert [record["step"] for record in metrics.read_metrics(path)] == [1, 2, 3]


def test_series_skips_records_without_a_number():
    records = [step(1, 1.0), {"step": 2, "reward": None}, {"step": 3}, step(4, 4.0)]
    assert metrics.series(records, "reward") == ([1, 4], [1.0, 4.0])


def test_reward_and_outcome_keys_are_found():
    records = [
        step(1, 1.0, **{"rewards/no_cheating/mean": 1.0, "rewards/no_cheating/std": 0.0, "outcomes/win": 2})
    ]
    assert metrics.reward_keys(records) == ["rewards/function_works/mean", "rewards/no_cheating/mean"]
    assert metrics.outcome_keys(records) == ["outcomes/win"]


def test_summary_averages_the_last_steps():
    records = [step(number, float(number)) for number in range(1, 11)]
    summary = metrics.summary(records, window=2)
    assert summary == {"reward": 9.5, "rewards/function_works/mean": 4.75}


def test_plot_has_an_outcomes_panel_only_when_outcomes_are_logged():
    with_outcomes = [step(1, 1.0, **{"outcomes/win": 1.0}), step(2, 2.0, **{"outcomes/win": 2.0})]
    figure = metrics.plot_metrics(with_outcomes)
    assert len(figure.axes) == 3
    assert "step 2" in figure._suptitle.get_text()
    assert len(metrics.plot_metrics([step(1, 1.0)]).axes) == 2


def test_plot_redraws_the_same_figure_in_place():
    figure = metrics.plot_metrics([step(1, 1.0)])
    again = metrics.plot_metrics([step(1, 1.0), step(2, 3.0)], figure)
    assert again is figure
    total = again.axes[0].lines[0]
    assert list(total.get_ydata()) == [1.0, 3.0]


def test_an_empty_log_still_plots():
    figure = metrics.plot_metrics([])
    assert "no steps yet" in figure._suptitle.get_text()


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [text.get_text() for text in legend.get_texts()] if legend else []


def test_outcomes_that_never_happened_stay_out_of_the_legend_and_wins_stack_first():
    records = [
        step(1, 1.0, **{"outcomes/missing": 2.0, "outcomes/win": 0.0, "outcomes/error": 0.0}),
        step(2, 2.0, **{"outcomes/missing": 1.0, "outcomes/win": 1.0, "outcomes/error": 0.0}),
    ]
    outcomes_ax = metrics.plot_metrics(records).axes[1]
    assert _legend(outcomes_ax) == ["win", "missing"]


def test_game_counts_are_whole_numbers_on_the_outcomes_axis():
    records = [step(1, 1.0, **{"outcomes/missing": 2.0}), step(2, 2.0, **{"outcomes/missing": 1.0})]
    ticks = metrics.plot_metrics(records).axes[1].get_yticks()
    assert all(float(tick).is_integer() for tick in ticks)


def test_steps_are_whole_numbers_on_the_x_axis():
    figure = metrics.plot_metrics([step(1, 1.0), step(2, 2.0), step(3, 1.0)])
    ticks = figure.axes[0].get_xticks()
    assert all(float(tick).is_integer() for tick in ticks)


def test_the_dashboard_has_six_titled_panels():
    figure = metrics.plot_dashboard([step(1, 1.0, entropy=0.5), step(2, 2.0, entropy=0.4)], title="run x")
    assert len(figure.axes) == 6
    assert all(ax.get_title() for ax in figure.axes)
    assert figure._suptitle.get_text() == "run x"


def test_a_dashboard_panel_says_when_the_run_did_not_log_its_metric():
    figure = metrics.plot_dashboard([step(1, 1.0), step(2, 2.0)])
    clipped_ax = figure.axes[2]
    assert not clipped_ax.lines
    assert [text.get_text() for text in clipped_ax.texts] == ["not logged by this run"]


def test_metrics_imports_no_torch():
    code = (
        "import sys, helpers.metrics; assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_entropy_is_drawn_from_zero_so_noise_does_not_look_like_swings():
    import matplotlib.pyplot as plt

    records = [{"step": i, "entropy": 7.612 + 0.0001 * (i % 3)} for i in range(1, 11)]
    figure = metrics.plot_dashboard(records)
    entropy = figure.axes[3]
    assert entropy.get_ylim()[0] == 0.0 and entropy.get_ylim()[1] > 7.6
    assert [line.get_label() for line in entropy.lines] == ["entropy"]  # no KL: beta 0 logs none
    plt.close(figure)


def test_several_runs_share_one_figure_with_a_line_each():
    import matplotlib.pyplot as plt

    runs = {
        "learns": [
            {"step": i, "reward": float(i), "rewards/function_works/mean": i / 10} for i in range(1, 6)
        ],
        "flat": [{"step": i, "reward": -3.0} for i in range(1, 4)],
    }
    figure = metrics.plot_runs(runs)
    total, works = figure.axes[0], figure.axes[1]
    assert [line.get_label() for line in total.lines] == ["learns", "flat"]
    assert [line.get_label() for line in works.lines] == ["learns"]  # "flat" never logged it
    assert list(total.lines[0].get_ydata()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert figure.axes[2].texts[0].get_text() == "not logged by this run"  # strategy_succeeds: neither did
    plt.close(figure)


@pytest.mark.parametrize(
    ("steps", "words", "first", "last"),
    [
        (2, "first step -> last step", 1.0, 2.0),
        (5, "first 2 steps -> last 3", 1.5, 4.0),
        (10, "first 3 steps -> last 5", 2.0, 8.0),
    ],
)
def test_the_learning_line_never_counts_a_step_at_both_ends(steps, words, first, last):
    records = [{"step": step, "reward": float(step)} for step in range(1, steps + 1)]
    summary = learning_summary(records)["reward"]
    assert (summary["first"], summary["last"]) == (first, last)
    assert learning_line(records).startswith(
        f"mean reward, {words}: total reward {first:+.2f} -> {last:+.2f}"
    )


def test_a_record_with_text_that_is_not_unicode_costs_no_other_record(tmp_path):
    # Red team 15: a lone surrogate in one completion made the whole batch's write fail.
    path = tmp_path / "completions.jsonl"
    broken, honest = {"step": 1, "completion": "hi \ud800 there"}, {"step": 1, "completion": "é ok"}
    metrics.append_records(path, [broken, honest])
    assert metrics.read_metrics(path) == [broken, honest]
    assert "é ok" in path.read_text(encoding="utf-8")  # readable text stays readable
    metrics.truncate_metrics(path, 1)  # and a resume can rewrite it
    assert metrics.read_metrics(path) == [broken, honest]


def test_a_completion_with_line_separators_stays_one_record_and_a_resume_reads_it(tmp_path):
    # Red team 16: U+2028, U+2029 and U+0085 went into the log as they were, and the reader split lines at them:
    # the record was lost, and a piece such as `1` (JSON, not a record) made the resume fail.
    path = tmp_path / "completions.jsonl"
    hostile = {"step": 1, "completion": "def strategy(board):\n    return 'a'\n\u20281\u2028 \u2029[]\x85"}
    metrics.append_records(path, [hostile, {"step": 2, "completion": "ok"}])
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert not set("\u2028\u2029\x85") & set(path.read_text(encoding="utf-8"))
    assert metrics.read_metrics(path) == [hostile, {"step": 2, "completion": "ok"}]
    assert metrics.truncate_metrics(path, 1) == 1
    assert metrics.read_metrics(path) == [hostile]
    assert path.read_text(encoding="utf-8").count("\n") == 1


def test_a_log_written_before_the_escapes_still_reads_and_resumes(tmp_path):
    # An older log holds the raw separators, and a line that is JSON but no record; neither fails the read.
    path = tmp_path / "completions.jsonl"
    raw = json.dumps({"step": 1, "completion": "a\u20281\u2028b"}, ensure_ascii=False)
    path.write_text(raw + "\n1\n[2]\n" + json.dumps({"step": 2}) + "\n", encoding="utf-8")
    assert metrics.read_metrics(path) == [{"step": 1, "completion": "a\u20281\u2028b"}, {"step": 2}]
    assert metrics.truncate_metrics(path, 1) == 1


def test_a_line_cut_in_the_middle_of_a_character_is_skipped(tmp_path):
    # A process killed mid-write can leave half of a UTF-8 character at the end.
    path = tmp_path / "metrics.jsonl"
    metrics.append_records(path, [{"step": 1, "note": "é"}])
    with path.open("ab") as file:
        file.write(json.dumps({"step": 2, "note": "é"}, ensure_ascii=False).encode()[:-3])
    assert metrics.read_metrics(path) == [{"step": 1, "note": "é"}]
