"""The 2048 game the model learns to play: `GameBoard`, the key maps, and text/ANSI/HTML renderers.

The rules are the original system's: a 6x6 board by default, target 2048, a spawned tile is a 4 with
probability 0.10 and a 2 otherwise, drawn from the game's own seeded `random.Random`. A move slides
every tile as far as it goes and merges equal neighbours once per move (`[2, 2, 2, 2]` -> `[4, 4, 0, 0]`
moving left); the score adds the value of each merged tile. A move that changes nothing spawns nothing
and does not end the game; an invalid key ends it as `failed`; a tile reaching the target is a
`success`; a board where no move changes anything is `failed`.

Spawning is part of the public contract, so that a reference engine can replay a seeded game: the empty
cells are listed row by row, `index = rng.randrange(len(empties))` picks one, and then
`4 if rng.random() < probability_fours else 2` is its value. A new game spawns two tiles that way.

Speed: the board is kept as a list of row tuples, and each row's slide is looked up in a bounded
`functools.lru_cache` (one per direction), so a move is a handful of dictionary hits instead of Python
loops over cells. `benchmarks/game_speed.py` measures it against a plain list-of-lists engine.
"""

from __future__ import annotations

import html
import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers.config import GameConfig

KEYMAPS: dict[str, dict[str, str]] = {
    "bepo": {"é": "up", "u": "down", "a": "left", "i": "right"},
    "wasd": {"w": "up", "s": "down", "a": "left", "d": "right"},
}
"""Key layouts: key -> direction. `bepo` is the original system's layout."""

DIRECTIONS = ("up", "down", "left", "right")
"""The four directions a key can stand for."""

ROW_CACHE_SIZE = 1 << 16
"""Rows remembered per direction by the slide caches (about 20 MB at most, all four together)."""

Row = tuple[int, ...]


@lru_cache(maxsize=ROW_CACHE_SIZE)
def _slide_row_left(row: Row) -> tuple[Row, int]:
    """Slide one row to the left: (the new row, the points gained by its merges)."""
    tiles = [value for value in row if value]
    merged: list[int] = []
    gained = 0
    i = 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            value = tiles[i] * 2
            merged.append(value)
            gained += value
            i += 2
        else:
            merged.append(tiles[i])
            i += 1
    merged.extend([0] * (len(row) - len(merged)))
    return tuple(merged), gained


@lru_cache(maxsize=ROW_CACHE_SIZE)
def _slide_row_right(row: Row) -> tuple[Row, int]:
    """Slide one row to the right: (the new row, the points gained by its merges)."""
    merged, gained = _slide_row_left(row[::-1])
    return merged[::-1], gained


def _slide_rows(rows: list[Row], direction: str) -> tuple[list[Row], int]:
    """Slide a board of row tuples in a direction: (new rows, points gained)."""
    if direction == "left" or direction == "right":
        row_slide = _slide_row_left if direction == "left" else _slide_row_right
        results = list(map(row_slide, rows))
        return [row for row, _ in results], sum(gained for _, gained in results)
    row_slide = _slide_row_left if direction == "up" else _slide_row_right
    results = list(map(row_slide, zip(*rows, strict=True)))
    return list(zip(*[column for column, _ in results], strict=True)), sum(gained for _, gained in results)


def slide(rows: Sequence[Sequence[int]], direction: str) -> tuple[list[list[int]], int, bool]:
    """Slide a board without spawning: (new rows as lists, points gained, whether anything moved).

    `direction` is one of "up", "down", "left", "right". Baselines use it to look one move ahead.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    board = [tuple(row) for row in rows]
    moved, gained = _slide_rows(board, direction)
    return [list(row) for row in moved], gained, moved != board


def _can_move(rows: list[Row]) -> bool:
    """Whether some move changes the board: an empty cell or two equal neighbours."""
    for row in rows:
        if 0 in row:
            return True
    for lines in (rows, zip(*rows, strict=True)):
        for line in lines:
            for a, b in zip(line, line[1:], strict=False):
                if a == b:
                    return True
    return False


def _resolve_keymap(keymap: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(keymap, str):
        if keymap not in KEYMAPS:
            raise ValueError(f"unknown keymap {keymap!r}; choose one of {sorted(KEYMAPS)}")
        return dict(KEYMAPS[keymap])
    resolved = {key.strip().lower(): direction for key, direction in keymap.items()}
    if sorted(resolved.values()) != sorted(DIRECTIONS):
        raise ValueError(f"a keymap needs one key for each of {DIRECTIONS}, got {dict(keymap)}")
    return resolved


class GameBoard:
    """One game of 2048: the board, the score, the state, and the keys that move it.

    Example:
        >>> game = GameBoard(size=4, seed=1)
        >>> game.do_action("a")  # "a" is left in the default (bepo) key map
        True
    """

    def __init__(
        self,
        size: int = 6,
        seed: int | None = None,
        target: int = 2048,
        probability_fours: float = 0.10,
        keymap: str | Mapping[str, str] = "bepo",
    ) -> None:
        if size < 2:
            raise ValueError(f"size must be at least 2, not {size}")
        self.size = size
        self.target = target
        self.probability_fours = probability_fours
        self.keymap = _resolve_keymap(keymap)
        self.moves = 0
        self._rng = random.Random(seed)
        self._rows: list[Row] = [(0,) * size for _ in range(size)]
        self._score = 0
        self._spawn()
        self._spawn()
        self._state = self._judge()

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Sequence[int]],
        *,
        target: int = 2048,
        probability_fours: float = 0.10,
        keymap: str | Mapping[str, str] = "bepo",
        seed: int | None = None,
    ) -> GameBoard:
        """A game that starts from the given square board, with no tile spawned."""
        board = [tuple(int(value) for value in row) for row in rows]
        size = len(board)
        if size < 2 or any(len(row) != size for row in board):
            raise ValueError("rows must form a square board of side 2 or more")
        game = cls.__new__(cls)
        game.size = size
        game.target = target
        game.probability_fours = probability_fours
        game.keymap = _resolve_keymap(keymap)
        game.moves = 0
        game._rng = random.Random(seed)
        game._rows = board
        game._score = 0
        game._state = game._judge()
        return game

    def board(self) -> list[list[int]]:
        """A fresh copy of the board as a list of rows (0 is an empty cell)."""
        return [list(row) for row in self._rows]

    def state(self) -> str:
        """`"ongoing"`, `"success"` (a tile reached the target) or `"failed"`."""
        return self._state

    def score(self) -> int:
        """Sum of the tiles created by merges so far."""
        return self._score

    def max_tile(self) -> int:
        """The largest tile on the board."""
        return max(map(max, self._rows))

    def do_action(self, key: object) -> bool:
        """Play one key; True when the board changed. An invalid key ends the game as failed.

        Keys are stripped and case-insensitive. Once the game is over every action is ignored.
        """
        if self._state != "ongoing":
            return False
        self.moves += 1
        direction = self.keymap.get(key.strip().lower()) if isinstance(key, str) else None
        if direction is None:
            self._state = "failed"
            return False
        rows, gained = _slide_rows(self._rows, direction)
        if rows == self._rows:
            return False
        self._rows = rows
        self._score += gained
        spawned = self._spawn()
        if (gained and self.max_tile() >= self.target) or spawned >= self.target:
            self._state = "success"
        elif not _can_move(rows):
            self._state = "failed"
        return True

    def copy(self) -> GameBoard:
        """An independent game in the same position, with the same random state."""
        game = GameBoard.from_rows(
            self._rows, target=self.target, probability_fours=self.probability_fours, keymap=self.keymap
        )
        game._rng.setstate(self._rng.getstate())
        game._score = self._score
        game._state = self._state
        game.moves = self.moves
        return game

    def _spawn(self) -> int:
        """Put a 2 or a 4 on a random empty cell (the documented protocol); returns its value."""
        rows = self._rows
        empties = [(i, j) for i, row in enumerate(rows) for j, value in enumerate(row) if not value]
        if not empties:
            return 0
        i, j = empties[self._rng.randrange(len(empties))]
        value = 4 if self._rng.random() < self.probability_fours else 2
        row = list(rows[i])
        row[j] = value
        rows[i] = tuple(row)
        return value

    def _judge(self) -> str:
        if self.max_tile() >= self.target:
            return "success"
        return "ongoing" if _can_move(self._rows) else "failed"

    def __repr__(self) -> str:
        header = (
            f"GameBoard(size={self.size}, target={self.target}, score={self._score}, state={self._state!r})"
        )
        return header + "\n" + render_text(self._rows)

    def _repr_html_(self) -> str:
        caption = f"score {self._score} · {self._state} · target {self.target}"
        return render_html(self._rows, caption=caption)


def from_config(game_config: GameConfig, seed: int | None = None) -> GameBoard:
    """A new game with the settings of a `helpers.config.GameConfig`."""
    return GameBoard(
        size=game_config.size,
        seed=seed,
        target=game_config.target,
        probability_fours=game_config.probability_fours,
        keymap=game_config.keymap,
    )


# --- rendering ------------------------------------------------------------------------------------

_TILE_COLOURS = {
    0: ("#cdc1b4", "#776e65"),
    2: ("#eee4da", "#776e65"),
    4: ("#ede0c8", "#776e65"),
    8: ("#f2b179", "#f9f6f2"),
    16: ("#f59563", "#f9f6f2"),
    32: ("#f67c5f", "#f9f6f2"),
    64: ("#f65e3b", "#f9f6f2"),
    128: ("#edcf72", "#f9f6f2"),
    256: ("#edcc61", "#f9f6f2"),
    512: ("#edc850", "#f9f6f2"),
    1024: ("#edc53f", "#f9f6f2"),
    2048: ("#edc22e", "#f9f6f2"),
}
"""(background, text) colour of each tile in the HTML renderer; larger tiles are dark."""

_ANSI_BACKGROUNDS = {0: 250, 2: 255, 4: 230, 8: 215, 16: 209, 32: 203, 64: 196}
"""256-colour background codes of small tiles in the ANSI renderer; 128 and up are gold."""


def _cell_width(rows: Sequence[Sequence[int]]) -> int:
    return max(len(str(value)) for row in rows for value in row)


def render_text(rows: Sequence[Sequence[int]]) -> str:
    """The board as plain text, one line per row, right-aligned; empty cells are dots."""
    width = _cell_width(rows)
    return "\n".join(" ".join(str(v).rjust(width) if v else ".".rjust(width) for v in row) for row in rows)


def render_ansi(rows: Sequence[Sequence[int]]) -> str:
    """The board with ANSI 256-colour backgrounds, for terminals and logs."""
    width = _cell_width(rows) + 2
    lines = []
    for row in rows:
        cells = []
        for value in row:
            background = _ANSI_BACKGROUNDS.get(value, 178 if value <= 2048 else 94)
            foreground = 232 if value <= 4 else 255
            text = (str(value) if value else "·").center(width)
            cells.append(f"\x1b[48;5;{background}m\x1b[38;5;{foreground}m{text}\x1b[0m")
        lines.append("".join(cells))
    return "\n".join(lines)


def render_html(rows: Sequence[Sequence[int]], caption: str = "") -> str:
    """The board as a self-contained HTML table with coloured tiles (inline CSS only)."""
    size = max(28, 220 // max(len(rows), 1))
    font = max(10, size // 3)
    cells = []
    for row in rows:
        tds = []
        for value in row:
            background, colour = _TILE_COLOURS.get(value, ("#3c3a32", "#f9f6f2"))
            tds.append(
                f'<td style="width:{size}px;height:{size}px;background:{background};color:{colour};'
                f"text-align:center;vertical-align:middle;font:bold {font}px sans-serif;"
                f'border-radius:4px;padding:0">{value or ""}</td>'
            )
        cells.append("<tr>" + "".join(tds) + "</tr>")
    caption_html = (
        f'<caption style="caption-side:bottom;font:12px sans-serif;color:#776e65">{html.escape(caption)}</caption>'
        if caption
        else ""
    )
    return (
        '<table style="border-collapse:separate;border-spacing:4px;background:#bbada0;border-radius:6px">'
        + caption_html
        + "".join(cells)
        + "</table>"
    )
