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
# # Play 2048
#
# This is the game gpt-oss-20b learns to write strategies for: a 6x6 board, a tile of 2048 wins, a new
# tile is a 4 one time in ten. Play it by hand with the buttons or the keyboard, then watch a strategy
# play it move by move.
#
# - **Buttons** are labelled with the active keys: the original layout is `é` up, `u` down, `a` left,
#   `i` right. The **Key map** picker switches to w/s/a/d (or back) without ending the game.
# - **Keyboard**: click the *Keys* box and type keys; each character is one move. A character that is
#   not a key is not played: the board says which keys are (ipywidgets has no key-press events, so
#   arrow keys would need the `ipyevents` package).
# - **New game** starts the game of the given seed: the same seed always deals the same tiles.
# - **Watch**: the player (▶) makes the chosen strategy play one move per tick; the slider sets the
#   moves per second, ❚❚ pauses, ■ stops. The kernel stays free while it plays. **To the end** plays
#   the rest of the game at once: a 6x6 game lasts over a thousand moves, minutes at 5 moves a second.

# %% [markdown]
# The game settings come from the project's configuration, so this is the board the model plays.

# %%
from IPython.display import display

from helpers.config import GameConfig
from helpers.widgets import BoardWidget

game_config = GameConfig()  # try GameConfig(size=4, target=256)
print(game_config)

# %% [markdown]
# The board: click a button, or type keys in the *Keys* box.

# %%
board = BoardWidget(game_config, seed=0)
display(board)

# %% [markdown]
# Everything a button does is a method too, so the board above also moves from code (left, then down).

# %%
board.press(board.game.key_for("left")), board.press(board.game.key_for("down")), board.game.score()

# %% [markdown]
# A key that is not in the key map is not played, and the game goes on (only a strategy's answer ends
# the game, as in training).

# %%
board.press("x"), board.game.state(), board.last_message

# %% [markdown]
# ## Watch a strategy play
# The greedy baseline picks the move that merges the most points now. The board shows again right
# here, so its ▶ is at hand: both views are the same board.

# %%
from helpers.evaluate import BASELINES

board.new_game(seed=1)
board.watch(BASELINES["greedy"](board.game.keymap, 1), name="greedy (one move ahead)")
display(board)

# %% [markdown]
# Without a browser to press ▶, a few steps from code show the same thing.

# %%
for _ in range(10):
    board.step()
board.game.moves, board.game.score(), board.last_message

# %% [markdown]
# *To the end* plays the rest of the game at once and shows the last position; it returns the moves
# it played.

# %%
board.play_to_end(), board.game.state(), board.game.score(), board.last_message

# %% [markdown]
# ## Watch generated code
# Code a model wrote is untrusted, so it never runs in this kernel: give the board its source and the
# sandbox plays the game to the end under the training limits, then ▶ replays that game one move per
# tick. Code the sandbox refuses or stops (a forbidden import, a timeout) shows why instead of moving.
# This one is written for the original key map (é/u/a/i).

# %%
generated = """
def strategy(board):
    import random
    # keep the big tiles low: mostly down, left and right; up only now and then
    return random.choice(["u", "u", "a", "i", "u", "a", "i", "é"])
"""
board.new_game(seed=2)
board.watch(generated, name="generated: mostly down")
display(board)

# %% [markdown]
# Ten of its moves from code; ▶ on the board above plays the rest.

# %%
for _ in range(10):
    board.step()
board.game.moves, board.game.score(), board.last_message
