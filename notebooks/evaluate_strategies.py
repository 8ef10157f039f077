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
# # Evaluate strategies
#
# Paste strategies (your own, or ones the model wrote), play each over the same seeded games, and
# compare them with the built-in baselines: random moves, a fixed preference order, and a greedy
# player that takes the move merging the most points now. Pasted code is untrusted: it only ever runs
# in the sandbox (`helpers.sandbox`), with the limits the trainer uses.
#
# - `game_config`: the board. On the original 6x6 board to 2048 random play already wins almost
#   every game, so compare scores; `PRESETS["4x4-512"]` is hard enough that wins separate strategies.
# - `N_GAMES`: games per strategy (seeds 0, 1, ...). A game on the 6x6 board takes 10-100 ms.

# %% [markdown]
# The settings: the game variant and how many seeded games each strategy plays.

# %%
import matplotlib.pyplot as plt
import pandas as pd

from helpers.config import GameConfig
from helpers.evaluate import BASELINES, PRESETS, compare_rows, evaluate_strategy

game_config = GameConfig()  # or PRESETS["4x4-512"]
N_GAMES = 20
print(game_config, "| presets:", ", ".join(PRESETS))

# %% [markdown]
# ## Paste strategies
# Each entry is the source of a `def strategy(board)` returning a key of the game's key map (here the
# original é/u/a/i). The corner strategy below looks one move ahead and prefers boards with free
# cells and the largest tile in the bottom-left corner.

# %%
strategies = {
    "corner": """
def strategy(board):
    def slide_left(rows):
        moved, gained = [], 0
        for row in rows:
            tiles, out = [v for v in row if v], []
            while tiles:
                if len(tiles) > 1 and tiles[0] == tiles[1]:
                    out.append(2 * tiles[0])
                    gained += 2 * tiles[0]
                    tiles = tiles[2:]
                else:
                    out.append(tiles.pop(0))
            moved.append(out + [0] * (len(row) - len(out)))
        return moved, gained

    def flip(rows):
        return [row[::-1] for row in rows]

    def turn(rows):
        return [list(column) for column in zip(*rows)]

    views = {"a": [], "i": [flip], "é": [turn], "u": [turn, flip]}
    best_key, best_value = "u", None
    for key in "uaié":  # down, left, right, up: ties keep big tiles in the bottom-left corner
        rows = board
        for view in views[key]:
            rows = view(rows)
        moved, gained = slide_left(rows)
        for view in reversed(views[key]):
            moved = view(moved)
        if moved == board:
            continue
        corner = moved[-1][0] == max(map(max, moved))
        value = gained + 8 * sum(row.count(0) for row in moved) + 64 * corner
        if best_value is None or value > best_value:
            best_key, best_value = key, value
    return best_key
""",
    "always left": "def strategy(board):\n    return 'a'",
}

# %% [markdown]
# ## Strategies from a run
# The latest checkpoint of this machine's run (`outputs/<profile>`; an untrained model when there is
# none) writes a few strategies, which join the pasted ones. This loads the model, so it is tagged
# `gpu`; on a CPU it loads the `cpu` profile's SmolLM2-135M-Instruct (converted first if it is missing) and
# its latest checkpoint in `outputs/cpu`.

# %% tags=["gpu", "nbval-skip"]
import os
from pathlib import Path

from helpers.config import make_config
from helpers.model import load_model
from helpers.runs import latest_checkpoint
from helpers.training import generate_strategies, start_reward_pool

os.chdir(
    Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
)  # the config's paths start there
run_config = make_config()
checkpoint = latest_checkpoint(run_config.training.output_dir)
start_reward_pool(run_config)
model, tokenizer = load_model(run_config, adapter=checkpoint)
generated = generate_strategies(model, tokenizer, run_config, n=4)
strategies |= {f"model #{i}": g.source for i, g in enumerate(generated, start=1) if g.source}
print(
    f"{checkpoint or 'untrained model'}: {sum(g.source is not None for g in generated)} of 4 held a strategy"
)

# %% [markdown]
# ## Compare with the baselines
# Every strategy plays the same seeded games; pasted ones run in the sandbox.

# %%
reports = [evaluate_strategy(name, game_config, n_games=N_GAMES) for name in BASELINES]
reports += [
    evaluate_strategy(source, game_config, n_games=N_GAMES, name=name) for name, source in strategies.items()
]
pd.DataFrame(compare_rows(reports))

# %% [markdown]
# ## Plots
# Final scores (left: the box holds the middle half of the games, the line is the median) and the
# largest tile each game ended with (right: a game whose largest tile reached the target was won).

# %%
figure, (scores_ax, tiles_ax) = plt.subplots(1, 2, figsize=(12, 4))
scores_ax.boxplot([report.scores for report in reports], tick_labels=[report.name for report in reports])
scores_ax.set(title="final score per game", ylabel="score")
tiles = pd.DataFrame({report.name: report.max_tile_counts for report in reports}).fillna(0).sort_index()
(tiles / N_GAMES).T.plot.bar(stacked=True, ax=tiles_ax, colormap="viridis", rot=0)
tiles_ax.set(title="largest tile at the end of the game", ylabel="share of games")
tiles_ax.legend(title="largest tile", fontsize=8, bbox_to_anchor=(1, 1), loc="upper left")
for ax in (scores_ax, tiles_ax):
    ax.tick_params(axis="x", labelrotation=20)
figure.suptitle(f"{game_config.size}x{game_config.size} to {game_config.target}, {N_GAMES} seeded games each")
figure.tight_layout()
