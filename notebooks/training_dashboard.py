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
# - Without a run, the dashboard shows the **sample** kept in `tests/data/`: the real log of the README's
#   main command on a 2-core CPU, `python -m helpers train` with the `cpu` profile (SmolLM2-135M-Instruct,
#   30 steps; benchmarks/RESULTS.md, "Learning"). It learns the format and the rules, not to play.

# %% [markdown]
# Find the run: `RUN_DIR` if it holds metrics, else the clearly labelled sample.

# %%
from pathlib import Path

from helpers.config import make_config
from helpers.metrics import METRICS_FILE, read_metrics, summary

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RUN_DIR = ROOT / make_config().training.output_dir  # or Path("/path/to/outputs/my-run")
SAMPLE = ROOT / "tests" / "data" / "cpu-metrics.jsonl"

records = read_metrics(RUN_DIR / METRICS_FILE)
if records:
    source, png = f"run {RUN_DIR}", RUN_DIR / "dashboard.png"
else:
    records = read_metrics(SAMPLE)
    source, png = (
        f"SAMPLE ({SAMPLE.name}: the cpu profile's 30-step run, not yours)",
        ROOT / "outputs" / "dashboard-sample.png",
    )
    print(f"no {METRICS_FILE} in {RUN_DIR}: showing the sample instead")
print(f"{source}: {len(records)} logged steps, last step {records[-1]['step']}")

# %% [markdown]
# The headline: each reward's mean over the last ten logged steps.

# %%
{key: round(value, 3) for key, value in summary(records).items()}

# %% [markdown]
# Every metric in one figure: what each reward function paid, how long the completions were and how
# many were cut off at `max_completion_length`, the entropy (and the KL, logged only when `beta` > 0),
# how the games ended, and the share of GRPO groups whose completions all got the same reward (those
# teach the model nothing). On a run that learns, the total reward rises, `missing` and `rejected`
# games give way to `failed` and `win`, and the share of groups without a signal falls.

# %%
from helpers.metrics import plot_dashboard

figure = plot_dashboard(records, title=source)

# %% [markdown]
# The same figure as a PNG, to share or to compare runs.

# %%
png.parent.mkdir(parents=True, exist_ok=True)
figure.savefig(png, dpi=100)
print(f"saved {png}")

# %% [markdown]
# ## Runs side by side
# Every run under `outputs/` that holds a metrics log, on one figure (without any, the two samples:
# the small real model that learns and the tiny random one that cannot).

# %%
from helpers.metrics import plot_runs

runs = {path.parent.name: read_metrics(path) for path in sorted((ROOT / "outputs").glob("*/" + METRICS_FILE))}
if not runs:
    runs = {
        "cpu (sample)": read_metrics(SAMPLE),
        "cpu-tiny (sample)": read_metrics(SAMPLE.with_name("cpu-tiny-metrics.jsonl")),
    }
comparison = plot_runs(runs)
