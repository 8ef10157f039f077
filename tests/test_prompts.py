"""The prompt and the game accept exactly the same keys, and the prompt says what each key does."""

from __future__ import annotations

import re

import pytest

from helpers.config import GameConfig, SandboxConfig
from helpers.game import KEYMAPS, GameBoard, slide
from helpers.prompts import build_prompt, chat_messages


def described_keys(prompt: str) -> dict[str, str]:
    """The key -> direction pairs the prompt spells out as `"key" = direction`."""
    return dict(re.findall(r'"([^"]+)" = (up|down|left|right)', prompt))


@pytest.mark.parametrize("keymap", sorted(KEYMAPS))
def test_prompt_names_every_key_of_the_map(keymap):
    prompt = build_prompt(GameConfig(keymap=keymap))
    assert described_keys(prompt) == KEYMAPS[keymap]
    other_keys = {key for name, keys in KEYMAPS.items() if name != keymap for key in keys} - set(
        KEYMAPS[keymap]
    )
    assert not other_keys & set(described_keys(prompt))


@pytest.mark.parametrize("keymap", sorted(KEYMAPS))
def test_each_described_key_moves_the_game_that_way(keymap):
    config = GameConfig(size=4, keymap=keymap)
    rows = [[0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 4, 0], [0, 0, 0, 0]]
    for key, direction in described_keys(build_prompt(config)).items():

        def strategy(board, key=key):
            return key

        game = GameBoard.from_rows(rows, keymap=config.keymap, seed=0)
        assert game.do_action(strategy(game.board()))
        expected, _, _ = slide(rows, direction)
        # the move matches the slide, plus exactly one spawned tile on a cell the slide left empty
        spawned = [
            (r, c)
            for r in range(4)
            for c in range(4)
            if game.board()[r][c] != expected[r][c] and expected[r][c] == 0
        ]
        assert len(spawned) == 1
        r, c = spawned[0]
        assert [
            [0 if (i, j) == (r, c) else v for j, v in enumerate(row)] for i, row in enumerate(game.board())
        ] == expected


def test_prompt_carries_the_board_size_target_and_allowed_imports():
    prompt = build_prompt(GameConfig(size=4, target=512))
    assert "4x4" in prompt
    assert "512" in prompt
    for module in SandboxConfig().allowed_imports:
        assert module in prompt
    assert "```python\ndef strategy(board):" in prompt
    assert "0 empty" in prompt


def test_allowed_imports_can_be_overridden():
    prompt = build_prompt(allowed_imports=["math"])
    assert "only): math." in prompt
    assert "itertools" not in prompt
    assert "none" in build_prompt(allowed_imports=[])


def test_prompt_stays_short():
    # roughly 4 characters a token: the original prompt was about 170 tokens
    assert len(build_prompt()) < 700


def test_chat_messages_is_one_user_turn():
    messages = chat_messages(GameConfig(keymap="wasd"))
    assert messages == [{"role": "user", "content": build_prompt(GameConfig(keymap="wasd"))}]
