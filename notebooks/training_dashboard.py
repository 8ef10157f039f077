# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: gpt-oss-2048 (.venv)
#     language: python
#     name: gpt-oss-2048
# ---

# %% [markdown]
# # Training dashboard
#
# Plots of a GRPO run from its `metrics.jsonl`, the line the trainer appends at every logged step
# (it survives a dead kernel or tmux session, so this works during and after a run). Re-run the cells
# to refresh. The figure is also saved as a PNG beside the metrics.
#
# - `RUN_DIR`: the run's output folder; by default the one of this machine's profile
#   (`outputs/<profile>` in the repository).
# - Without a run, the dashboard shows the small **sample** kept in `tests/data/`: a real log from a
#   12-step `cpu-tiny` run of the tiny *random* model, written by
#   `train(make_config("cpu-tiny", max_steps=12, save_steps=12))`. Its rewards stay flat (the random
#   model never writes a function): it shows what the plots look like, not learning.

# %% [markdown]
# Find the run: `RUN_DIR` if it holds metrics, else the clearly labelled sample.

# %%
from pathlib import Path

from helpers.config import make_config
from helpers.metrics import METRICS_FILE, read_metrics, reward_keys, series, summary

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RUN_DIR = ROOT / make_config().training.output_dir  # or Path("/path/to/outputs/my-run")
SAMPLE = ROOT / "tests" / "data" / "cpu-tiny-metrics.jsonl"

records = read_metrics(RUN_DIR / METRICS_FILE)
if records:
    source, png = f"run {RUN_DIR}", RUN_DIR / "dashboard.png"
else:
    records = read_metrics(SAMPLE)
    source, png = (
        f"SAMPLE ({SAMPLE.name}: tiny random model, not a real run)",
        ROOT / "outputs" / "dashboard-sample.png",
    )
    print(f"no {METRICS_FILE} in {RUN_DIR}: showing the sample instead")
print(f"{source}: {len(records)} logged steps, last step {records[-1]['step']}")

# %% [markdown]
# The headline: each reward's mean over the last ten logged steps.

# %%
{key: round(value, 3) for key, value in summary(records).items()}

# %% [markdown]
# Every metric in one figure: rewards per function, completion length and the share cut off at
# `max_completion_length`, entropy and KL, and the game outcomes of each step's completions.

# %%
import matplotlib.pyplot as plt


def plot(ax, keys, title, ylabel=""):
    """One panel: each metric in `keys` against the step (metrics the run did not log are left out)."""
    for key in keys:
        steps, values = series(records, key)
        if steps:
            label = key.removeprefix("rewards/").removeprefix("outcomes/").removesuffix("/mean")
            ax.plot(steps, values, marker=".", label=label)
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)


outcomes = sorted({key for record in records for key in record if key.startswith("outcomes/")})
figure, axes = plt.subplots(2, 3, figsize=(15, 7.5))
plot(axes[0, 0], ["reward", *reward_keys(records)], "reward per function", "mean reward")
plot(axes[0, 1], ["completions/mean_length", "completions/max_length"], "completion length", "tokens")
plot(axes[0, 2], ["completions/clipped_ratio"], "cut off at max_completion_length", "share")
plot(axes[1, 0], ["entropy", "kl"], "entropy and KL (KL when beta > 0)")
plot(axes[1, 1], outcomes, "game outcomes per step", "completions")
plot(axes[1, 2], ["reward_std", "frac_reward_zero_std"], "reward spread within groups")
figure.suptitle(source)
figure.tight_layout()

# %% [markdown]
# The same figure as a PNG, to share or to compare runs.

# %%
png.parent.mkdir(parents=True, exist_ok=True)
figure.savefig(png, dpi=100)
print(f"saved {png}")
