"""The task prompt, built from the game's key map, board size and target.

The prompt and the game must accept exactly the same keys: if they disagree, every strategy's first
answer is an invalid key, every game ends after one move with the same reward, and nothing is learnt.
So the keys are never written by hand here; they come from `helpers.game.KEYMAPS` through the
`GameConfig`. The text stays short because every GRPO generation pays for its tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpers.config import GameConfig, SandboxConfig
from helpers.game import DIRECTIONS, keys_by_direction

_TEMPLATE = """Write a short 2048 strategy in plain Python.
The board is a {size}x{size} list of lists of ints, board[0] the top row, 0 empty; reach {target} to win.
Return one key, the direction tiles slide: {keys}.
Imports allowed (inside the function only): {imports}.
Reply with one function in a python block:
```python
def strategy(board):
    return "{example}"
```
Put helpers and imports inside strategy; no other top-level code."""


def build_prompt(game_config: GameConfig | None = None, allowed_imports: Sequence[str] | None = None) -> str:
    """The task prompt for a game configuration (the default `GameConfig` when None).

    `allowed_imports` defaults to `SandboxConfig().allowed_imports`, the list the sandbox enforces.
    """
    config = game_config or GameConfig()
    imports = SandboxConfig().allowed_imports if allowed_imports is None else tuple(allowed_imports)
    key_of = keys_by_direction(config.keymap)
    keys = ", ".join(f'"{key_of[direction]}" = {direction}' for direction in DIRECTIONS)
    return _TEMPLATE.format(
        size=config.size,
        target=config.target,
        keys=keys,
        imports=", ".join(imports) if imports else "none",
        example=key_of["left"],
    )


def chat_messages(game_config: GameConfig | None = None) -> list[dict[str, str]]:
    """The prompt as a one-turn conversation, the form TRL's GRPO dataset and chat templates take."""
    return [{"role": "user", "content": build_prompt(game_config)}]
