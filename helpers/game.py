"""The 2048 game the model learns to play: `GameBoard`, the key maps, and text/ANSI/HTML renderers.

The rules are the original system's: a 6x6 board by default, target 2048, a spawned tile is a 4 with
probability 0.10 and a 2 otherwise, drawn from the game's own `random.Random`. A move slides
every tile as far as it goes and merges equal neighbours once per move (`[2, 2, 2, 2]` -> `[4, 4, 0, 0]`
moving left); the score adds the value of each merged tile. A move that changes nothing spawns nothing
and does not end the game; an invalid key ends it as `failed`; a tile reaching the target is a
`success`; a board where no move changes anything is `failed`. Tiles are powers of two up to 2**30.

Spawning is part of the public contract, so that a reference engine can replay a seeded game: `rng` is
`random.Random(spawn_seed(seed))`, the empty cells are listed row by row,
`empties[int(rng.random() * len(empties))]` is the cell, and then `4 if rng.random() < probability_fours
else 2` is its value. A new game spawns two tiles that way. `spawn_seed` is a keyed 256-bit digest of the
game's seed: training's seeds are small consecutive integers, and a strategy that could seed its own
`random.Random` with them would find its game's by trial and then know every tile to come. The key is in
this source, out of a strategy's reach (it reads no file); it is obscurity against the model, not a secret
from people.

Speed: the board is kept as one string, a letter per tile ("a" = 2, "b" = 4, ...; "." empty) and a
newline between rows, so that a move is a handful of C-level string operations instead of Python loops
over cells. Moving left drops the dots, lets one regular expression find the pairs that merge (`(x)\1`
matches left to right without overlap, exactly the 2048 rule), replaces each merging pair by the next
letter (largest letters first, so a new tile never merges again in the same move), and pads the rows
back with one `str.format`. Right works on the reversed string; up and down on the transposed one
(a transpose is n slices). No cache, so no memory grows. `benchmarks/game_speed.py` measures it
against a plain list-of-lists engine.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from helpers.config import GameConfig

_UNIFORM = random.Random.random
"""The C method behind `random.Random.random`, taken when this module is imported. A game calls it directly:
a strategy can rebind `random.Random.random` (a shared class) while its game runs, and the game's own
generator, handed to a rebound method, would give it every tile to come (red team 7)."""

KEYMAPS: dict[str, dict[str, str]] = {
    "bepo": {"é": "up", "u": "down", "a": "left", "i": "right"},
    "wasd": {"w": "up", "s": "down", "a": "left", "d": "right"},
}
"""Key layouts: key -> direction. `bepo` is the original system's layout."""

DIRECTIONS = ("up", "down", "left", "right")
"""The four directions a key can stand for."""

_LETTERS = "abcdefghijklmnopqrstuvwxyz{|}~"
"""Tile characters in value order, 2 to 2**30; the largest cannot merge (no board gets near it)."""
_CHAR_OF = {0: "."} | {2 ** (power + 1): letter for power, letter in enumerate(_LETTERS)}
"""Tile value -> its character in the board string."""
_VALUE_OF = {char: value for value, char in _CHAR_OF.items()}
_PAIR = re.compile(r"([a-}])\1")
_DOUBLE = {letter: letter + letter for letter in _LETTERS}
_NEXT = dict(zip(_LETTERS, _LETTERS[1:], strict=False))
_MERGED_VALUE = {letter: 2 * _VALUE_OF[letter] for letter in _LETTERS}


class _Layout(NamedTuple):
    """Format strings and slices for one board size."""

    pad_left: str
    """Re-pads the rows of a string with its dots removed, tiles to the left."""
    pad_right: str
    """The same, tiles to the right."""
    columns: tuple[slice, ...]
    """Slices of the board string that are its columns."""


@lru_cache(maxsize=64)
def _layout(size: int) -> _Layout:
    return _Layout(
        pad_left="\n".join([f"{{:.<{size}}}"] * size),
        pad_right="\n".join([f"{{:.>{size}}}"] * size),
        columns=tuple(slice(column, None, size + 1) for column in range(size)),
    )


def _merge_pairs(text: str) -> tuple[str, int]:
    """Merge the pairs of a dot-free board string, left to right: (merged text, points gained)."""
    pairs = _PAIR.findall(text)
    if not pairs:
        return text, 0
    gained = 0
    for letter in pairs:
        gained += _MERGED_VALUE[letter]
    for letter in sorted(set(pairs), reverse=True):
        text = text.replace(_DOUBLE[letter], _NEXT[letter])
    return text, gained


def _transpose(text: str, layout: _Layout) -> str:
    return "\n".join(map(text.__getitem__, layout.columns))


def _toward_start(text: str, layout: _Layout) -> tuple[str, int]:
    """Slide every row of a board string to the left: (the new string, points gained)."""
    merged, gained = _merge_pairs(text.replace(".", ""))
    return layout.pad_left.format(*merged.split("\n")), gained


def _toward_end(text: str, layout: _Layout) -> tuple[str, int]:
    """Slide every row of a board string to the right: (the new string, points gained)."""
    merged, gained = _merge_pairs(text.replace(".", "")[::-1])
    return layout.pad_right.format(*merged[::-1].split("\n")), gained


def _move(text: str, direction: str, layout: _Layout) -> tuple[str, int]:
    """Slide a board string in a direction: (the new string, points gained)."""
    if direction == "left":
        return _toward_start(text, layout)
    if direction == "right":
        return _toward_end(text, layout)
    slide_rows = _toward_start if direction == "up" else _toward_end
    moved, gained = slide_rows(_transpose(text, layout), layout)
    return _transpose(moved, layout), gained


def _encode(rows: Sequence[Sequence[int]]) -> str:
    """The board string of a square board of powers of two (0 for empty)."""
    size = len(rows)
    if size < 2 or any(len(row) != size for row in rows):
        raise ValueError("rows must form a square board of side 2 or more")
    try:
        return "\n".join("".join(_CHAR_OF[value] for value in row) for row in rows)
    except (KeyError, TypeError):
        raise ValueError(f"tiles must be 0 or powers of two from 2 to 2**30, got {rows!r}") from None


def _decode(text: str) -> list[list[int]]:
    return [list(map(_VALUE_OF.__getitem__, row)) for row in text.split("\n")]


def _can_move(text: str, layout: _Layout) -> bool:
    """Whether some move changes the board: an empty cell or two equal neighbours."""
    return "." in text or _PAIR.search(text) is not None or _PAIR.search(_transpose(text, layout)) is not None


def slide(rows: Sequence[Sequence[int]], direction: str) -> tuple[list[list[int]], int, bool]:
    """Slide a board without spawning: (new rows as lists, points gained, whether anything moved).

    `direction` is one of "up", "down", "left", "right". Baselines use it to look one move ahead.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    text = _encode(rows)
    moved, gained = _move(text, direction, _layout(len(rows)))
    return _decode(moved), gained, moved != text


def _resolve_keymap(keymap: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(keymap, str):
        if keymap not in KEYMAPS:
            raise ValueError(f"unknown keymap {keymap!r}; choose one of {sorted(KEYMAPS)}")
        return dict(KEYMAPS[keymap])
    resolved = {key.strip().lower(): direction for key, direction in keymap.items()}
    if sorted(resolved.values()) != sorted(DIRECTIONS):
        raise ValueError(f"a keymap needs one key for each of {DIRECTIONS}, got {dict(keymap)}")
    return resolved


def keys_by_direction(keymap: str | Mapping[str, str]) -> dict[str, str]:
    """Direction -> the key that plays it, for a key map (a `KEYMAPS` name or a key -> direction mapping)."""
    return {direction: key for key, direction in _resolve_keymap(keymap).items()}


def play_keys(
    game: GameBoard,
    keys: Iterable[object],
    stall_moves: int,
    on_move: Callable[[object, bool], None] | None = None,
) -> str:
    """Play keys on `game` until it ends, `stall_moves` keys in a row change nothing, or the keys run out.

    The one game loop of the project: the sandbox, its replay, the evaluation, the widget and the
    command line all play through it, so the stall rule is written once. `keys` is asked for the
    next key only while the game goes on (a strategy's generator: `(strategy(game.board()) for _ in
    itertools.count())`); an exception it raises propagates. `on_move(key, moved)` is called after
    every key. Returns `"over"` (the game ended by its rules), `"stalled"` or `"exhausted"`.
    """
    if game.state() != "ongoing":
        return "over"
    idle = 0
    for key in keys:
        moved = game.do_action(key)
        if on_move is not None:
            on_move(key, moved)
        if game.state() != "ongoing":
            return "over"
        idle = 0 if moved else idle + 1
        if idle >= stall_moves:
            return "stalled"
    return "exhausted"


def _target_char(target: int) -> str:
    """The smallest tile character whose value reaches the target, or one above them all if none does."""
    return next((char for value, char in _CHAR_OF.items() if value >= target and value), "\x7f")


def _direction(keymap: Mapping[str, str], key: object) -> str | None:
    """The direction `key` plays in `keymap` (stripped, any case), or None for no key."""
    if not isinstance(key, str):
        return None
    direction = keymap.get(key)
    return direction if direction is not None else keymap.get(key.strip().lower())


def _place_tile(text: str, empties: int, cell_draw: float, tile_draw: float, probability_fours: float) -> str:
    """The board with a tile spawned by two uniform draws (the documented protocol): the cell is empty
    number `int(cell_draw * empties)` row by row, the tile a 4 when `tile_draw < probability_fours`."""
    # the text after the chosen dot is the last part of a split at the dots up to it
    after = text.split(".", int(cell_draw * empties) + 1)[-1]
    position = len(text) - len(after) - 1
    tile = "b" if tile_draw < probability_fours else "a"
    return text[:position] + tile + text[position + 1 :]


def _state_after(
    text: str, gained: int, empty_left: int, target: int, target_char: str, layout: _Layout
) -> str:
    """The state after a move that changed the board, gained `gained` and left `empty_left` empty cells."""
    # a merge that makes the target gains at least the target, so smaller gains need no look
    if (gained >= target or target <= 4) and max(text) >= target_char:
        return "success"
    if not empty_left and not _can_move(text, layout):
        return "failed"
    return "ongoing"


SPAWN_KEY = b"gpt-oss-2048: the spawn stream of a game"
"""The key of `spawn_seed`'s digest."""


def spawn_seed(seed: int | str | None) -> int | None:
    """The seed of a game's spawn stream: a keyed BLAKE2b digest of the game's seed (None stays None: fresh
    entropy), so that trying seeds with `random.Random` does not find a game's tiles.

        >>> spawn_seed(3407) == spawn_seed(3407) != spawn_seed(3408)
        True
    """
    if seed is None:
        return None
    return int.from_bytes(hashlib.blake2b(str(seed).encode(), key=SPAWN_KEY, digest_size=32).digest(), "big")


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
        self._setup(size, target, probability_fours, keymap, seed, "\n".join(["." * size] * size))
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
        game = cls.__new__(cls)
        game._setup(len(rows), target, probability_fours, keymap, seed, _encode(rows))
        game._state = game._judge()
        return game

    def _setup(
        self,
        size: int,
        target: int,
        probability_fours: float,
        keymap: str | Mapping[str, str],
        seed: int | None,
        text: str,
    ) -> None:
        self.size = size
        self.target = target
        self.probability_fours = probability_fours
        self.keymap = _resolve_keymap(keymap)
        self.moves = 0
        self._rng = random.Random(spawn_seed(seed))
        self._text = text
        self._layout = _layout(size)
        self._target_char = _target_char(target)
        self._score = 0

    def direction_of(self, key: object) -> str | None:
        """The direction a key plays in this game's key map (stripped, any case), or None for no key."""
        return _direction(self.keymap, key)

    def key_for(self, direction: str) -> str:
        """The key that plays `direction` (up, down, left, right) in this game's key map."""
        return keys_by_direction(self.keymap)[direction]

    def board(self) -> list[list[int]]:
        """A fresh copy of the board as a list of rows (0 is an empty cell)."""
        return _decode(self._text)

    def state(self) -> str:
        """`"ongoing"`, `"success"` (a tile reached the target) or `"failed"`."""
        return self._state

    def score(self) -> int:
        """Sum of the tiles created by merges so far."""
        return self._score

    def max_tile(self) -> int:
        """The largest tile on the board."""
        return _VALUE_OF[max(self._text)]  # "\n" sorts below every tile and "."

    def do_action(self, key: object) -> bool:
        """Play one key; True when the board changed. An invalid key ends the game as failed.

        Keys are stripped and case-insensitive. Once the game is over every action is ignored.
        """
        if self._state != "ongoing":
            return False
        self.moves += 1
        direction = self.direction_of(key)
        if direction is None:
            self._state = "failed"
            return False
        text, gained = _move(self._text, direction, self._layout)
        if text == self._text:
            return False
        self._text = text
        self._score += gained
        empty_left = self._spawn()
        self._state = _state_after(
            self._text, gained, empty_left, self.target, self._target_char, self._layout
        )
        return True

    def copy(self) -> GameBoard:
        """An independent game in the same position, with the same random state."""
        game = GameBoard.__new__(GameBoard)
        game._setup(self.size, self.target, self.probability_fours, self.keymap, None, self._text)
        game._rng.setstate(self._rng.getstate())
        game._score = self._score
        game._state = self._state
        game.moves = self.moves
        return game

    def _spawn(self) -> int:
        """Put a 2 or a 4 on a random empty cell (the documented protocol); returns the empty cells left."""
        text = self._text
        empties = text.count(".")
        if not empties:
            return 0
        rng = self._rng
        self._text = _place_tile(text, empties, _UNIFORM(rng), _UNIFORM(rng), self.probability_fours)
        return empties - 1

    def _judge(self) -> str:
        if max(self._text) >= self._target_char:
            return "success"
        return "ongoing" if _can_move(self._text, self._layout) else "failed"

    def __repr__(self) -> str:
        header = (
            f"GameBoard(size={self.size}, target={self.target}, score={self._score}, state={self._state!r})"
        )
        return header + "\n" + render_text(self.board())

    def _repr_html_(self) -> str:
        caption = f"score {self._score} · {self._state} · target {self.target}"
        return render_html(self.board(), caption=caption)


def sealed_play(game: GameBoard) -> Generator[tuple[list[list[int]], bool, str, int, int], object, None]:
    """`game` played as a generator that alone holds its random generator, in its own frame.

    It yields `(board, changed, state, score, max_tile)` and receives the next key (anything: a key not in
    the key map fails the game, like `do_action`). On its first `next` it takes what it needs from `game`, drops
    `game`, and takes the functions it calls as locals; none of them is handed the random generator, which only
    the C method taken at import draws from, nor its draws (the tile is placed here, as `_place_tile` does).
    So code that rebinds this module's names or `GameBoard`'s methods after that (a strategy past the
    sandbox's Python walls) sees boards, never a tile to come, without a frame:
    the sandbox's job process plays through it (red teams 5-9 each reached the game's generator through a
    method or a name the game called).
    """
    text, rng, score, state = game._text, game._rng, game._score, game._state
    keymap, layout, fours = dict(game.keymap), game._layout, game.probability_fours
    target, target_char = game.target, game._target_char
    del game
    uniform, move, judge, decode, direction_of = _UNIFORM, _move, _state_after, _decode, _direction
    value_of, to_int, length, largest = dict(_VALUE_OF), int, len, max
    changed = False
    while True:
        key = yield decode(text), changed, state, score, value_of[largest(text)]
        changed = False
        if state != "ongoing":
            continue
        direction = direction_of(keymap, key)
        if direction is None:
            state = "failed"
            continue
        moved, gained = move(text, direction, layout)
        if moved == text:
            continue
        score += gained
        empties = moved.count(".")
        if empties:  # `_place_tile`, written here: the draws go to no function a strategy could change
            after = moved.split(".", to_int(uniform(rng) * empties) + 1)[-1]
            position = length(moved) - length(after) - 1
            tile = "b" if uniform(rng) < fours else "a"
            moved = moved[:position] + tile + moved[position + 1 :]
        text, changed = moved, True
        state = judge(text, gained, largest(empties - 1, 0), target, target_char, layout)


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
