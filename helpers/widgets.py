"""An ipywidgets 2048 board: play by hand, or watch a strategy play move by move.

`BoardWidget` is a `VBox` holding the coloured board (HTML from `helpers.game.render_html`), the
score, the moves and the state, one button per direction labelled with its key from the active key
map, a text box that turns typed keys into moves, a key map picker, a "new game" button with a seed,
and a player (`ipywidgets.Play`) with a speed slider and a "to the end" button for a watched strategy.

Keyboard play: ipywidgets has no key-press events, so the board takes keys through a `Text` box
with `continuous_update=True`: every typed character is played as a key, then the box is emptied.
That works with the stock widgets in JupyterLab, Notebook 7 and VS Code; arrow keys would need the
`ipyevents` package, which the project does not depend on. A person's key that is not in the key map
is not played (as in the terminal `play`): the board says which keys are, and the game goes on. Only
a strategy's answer is held to the training rule, where a key outside the map ends the game.

Watching does not block the kernel: the `Play` widget ticks in the browser, and each tick asks the
kernel for one move, so cells keep running and the pause button answers at once. "To the end" plays
the rest of the game in the kernel at once and shows only the last position. A strategy is
either a trusted callable `strategy(board) -> key` (a baseline, your own code), called in the kernel
once per tick, or generated source code, which never runs in the kernel: the sandbox plays it on a
copy of the current position to the end (`helpers.sandbox.execute_strategy` with all its limits: a
few milliseconds for a typical strategy, `game_timeout` at most), and each tick replays one of the
keys it played (`GameResult.keys`). The copy carries the game's random state, so the replay shows
exactly the game the sandbox judged, and the sandbox's verdict is shown where its keys run out. A key
pressed by hand leaves the strategy's path; the next tick asks the sandbox again from the new
position. A strategy answers in the key map it was written for: change the map and it may fail.

Everything a person can do is also a method, so tests drive the board from Python:
`board.press("a")`, `board.buttons["left"].click()`, `board.new_game(seed=3)`, `board.step()`,
`board.set_keymap("wasd")`, `board.play_to_end()`. Displaying the board again (`display(board)`)
shows another view of the same board with a player of its own, so a watch cell can show the board it
drives right below it.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import ipywidgets as widgets

from helpers.config import GameConfig, SandboxConfig
from helpers.game import (
    DIRECTIONS,
    KEYMAPS,
    GameBoard,
    from_config,
    keys_by_direction,
    play_keys,
    render_html,
)
from helpers.sandbox import GameResult, execute_strategy

Strategy = Callable[[list[list[int]]], object]
"""A trusted strategy: takes a copy of the board, returns a key."""

ARROWS = {"up": "↑", "down": "↓", "left": "←", "right": "→"}
"""The arrow drawn beside each direction's key on its button."""

MAX_SPEED = 30
"""Fastest watch speed offered by the slider, in moves per second."""

TO_THE_END_SECONDS = 10.0
"""Longest "to the end" runs in the kernel before it pauses (a slow trusted strategy blocks the kernel)."""


class BoardWidget(widgets.VBox):
    """A 2048 board to play with the mouse or the keyboard, or to watch a strategy play.

    Example:
        >>> board = BoardWidget(size=4, seed=1)
        >>> board.press("a")  # left in the default (bepo) key map
        True
        >>> board.press("x"), board.game.state()  # not a key: nothing is played, the game goes on
        (False, 'ongoing')
    """

    def __init__(
        self,
        game_config: GameConfig | None = None,
        seed: int | None = 0,
        strategy: Strategy | str | None = None,
        *,
        size: int | None = None,
        target: int | None = None,
        keymap: str | None = None,
        speed: int = 5,
        sandbox_config: SandboxConfig | None = None,
    ) -> None:
        config = game_config or GameConfig()
        self.game_config = replace(
            config,
            size=size or config.size,
            target=target or config.target,
            keymap=keymap or config.keymap,
        )
        self.sandbox_config = sandbox_config or SandboxConfig()
        self.game = self._new_game(seed)
        self.strategy: Strategy | str | None = strategy
        self.strategy_name = _name_of(strategy)
        self.last_message = "new game"
        self._idle_moves = 0
        self._replay: deque[str] | None = None
        self._replay_result: GameResult | None = None
        self._quiet = False

        self.board_html = widgets.HTML()
        self.status = widgets.HTML()
        self.buttons = {
            direction: widgets.Button(layout=widgets.Layout(width="64px", grid_area=direction))
            for direction in DIRECTIONS
        }
        for direction, button in self.buttons.items():
            button.on_click(lambda _button, direction=direction: self.press(self.game.key_for(direction)))
        pad = widgets.GridBox(
            list(self.buttons.values()),
            layout=widgets.Layout(
                grid_template_areas='". up ." "left . right" ". down ."',
                grid_gap="2px",
                width="max-content",
            ),
        )
        self.keys_box = widgets.Text(
            continuous_update=True, description="Keys", layout=widgets.Layout(width="220px")
        )
        self.keys_box.observe(self._on_keys_typed, names="value")
        self.keymap_picker = widgets.Dropdown(
            options=[(f"{name} ({_keys_text(name)})", name) for name in KEYMAPS],
            value=self.game_config.keymap,
            description="Key map",
            layout=widgets.Layout(width="220px"),
        )
        self.keymap_picker.observe(lambda change: self.set_keymap(change["new"]), names="value")
        self.seed_box = widgets.IntText(
            value=seed or 0, description="Seed", layout=widgets.Layout(width="160px")
        )
        self.new_game_button = widgets.Button(description="New game", icon="refresh")
        self.new_game_button.on_click(lambda _button: self.new_game(self.seed_box.value))

        self.speed = widgets.IntSlider(value=speed, min=1, max=MAX_SPEED, description="Moves/s")
        self.speed.observe(self._on_speed, names="value")
        self.player = self._new_player()
        self._players = [self.player]
        self._displayed = False
        self.to_the_end_button = widgets.Button(
            description="To the end",
            icon="fast-forward",
            tooltip="play the watched strategy to the end of the game at once",
        )
        self.to_the_end_button.on_click(lambda _button: self.play_to_end())
        self.strategy_label = widgets.HTML()

        self._controls = widgets.HBox(
            [
                pad,
                widgets.VBox(
                    [self.keys_box, self.keymap_picker, widgets.HBox([self.seed_box, self.new_game_button])]
                ),
            ]
        )
        super().__init__(self._rows(self.player))
        self._label_keys()
        self._render()

    # --- what a person does -----------------------------------------------------------------------

    def press(self, key: str) -> bool:
        """Play one key (as a button or the keyboard would); True when the board changed.

        A key outside the key map is not played: the board says which keys are, and the game goes on.
        """
        if self.game.state() == "ongoing" and self.game.direction_of(key) is None:
            self.last_message = f"{key!r} is not a key here ({self._keys_hint()}): nothing played"
            self._render()
            return False
        self._replay = None  # a key by hand leaves the watched strategy's recorded path
        self._idle_moves = 0
        return self._play(key)

    def new_game(self, seed: int | None = None) -> None:
        """Start a new game (seeded, so the same seed gives the same game); stops the player."""
        self._pause()
        self.game = self._new_game(seed)
        self._idle_moves = 0
        self._replay = None
        if seed is not None:
            self.seed_box.value = seed
        self.last_message = "new game" + (f" (seed {seed})" if seed is not None else "")
        self._render()

    def set_keymap(self, name: str) -> None:
        """Answer in another key map of `helpers.game.KEYMAPS`; the buttons follow and the game goes on."""
        if name not in KEYMAPS:
            raise ValueError(f"unknown key map {name!r}; choose one of {', '.join(KEYMAPS)}")
        if self.keymap_picker.value != name:
            self.keymap_picker.value = name  # the picker's observer calls back here
            return
        self.game_config = replace(self.game_config, keymap=name)
        self.game.keymap = dict(KEYMAPS[name])  # keys only name the directions: the position stands
        self._replay = None  # recorded keys are in the old map; the sandbox plays again from here
        self._label_keys()
        self.last_message = f"key map {name}: {self._keys_hint()}"
        self._render()

    def watch(self, strategy: Strategy | str, name: str | None = None) -> None:
        """Choose what the player (or `step()`) moves with: a trusted callable, or source code to sandbox."""
        self._idle_moves = 0
        self._replay = None
        self.strategy = strategy
        self.strategy_name = name or _name_of(strategy)
        self._render()

    def step(self) -> bool:
        """Play the watched strategy's next move; False once it cannot go on (the reason is shown).

        It stops when there is no strategy, it raised or was ended by the sandbox, the game is over,
        or, as in training, `SandboxConfig.stall_moves` moves in a row changed nothing.
        """
        if self.strategy is None:
            return self._stop("no strategy to watch: call watch(strategy) first")
        if self.game.state() != "ongoing":
            return self._stop(self._over())
        try:
            key = (
                self._next_replayed_key(self.strategy)
                if isinstance(self.strategy, str)
                else self.strategy(self.game.board())
            )
        except _ReplayOver as over:
            return self._stop(str(over))
        except Exception as error:  # a strategy's failure is shown, never raised into the UI loop
            return self._stop(f"the strategy raised {type(error).__name__}: {error}")
        # one key through the project's game loop, allowed the no-op moves left before the stall rule
        left = max(1, self.sandbox_config.stall_moves - self._idle_moves)
        end = play_keys(self.game, [key], left, on_move=self._after_strategy_move)
        if end == "stalled":
            return self._stop(f"stalled: {self._idle_moves} moves in a row changed nothing")
        if end == "over":
            self._pause()
        self._render()
        return end == "exhausted"

    def play_to_end(self) -> int:
        """Play the watched strategy until it cannot go on, showing only the last position; returns the moves.

        It pauses after `TO_THE_END_SECONDS` (a trusted strategy runs in the kernel); call it again to go on.
        """
        self._pause()
        moves = self.game.moves
        deadline = time.monotonic() + TO_THE_END_SECONDS
        with self._rendering_once():
            while self.step():
                if time.monotonic() > deadline:
                    self.last_message = (
                        f"paused after {TO_THE_END_SECONDS:g} s: press To the end again to go on"
                    )
                    break
        return self.game.moves - moves

    def _repr_mimebundle_(self, **kwargs: object) -> dict:
        """The first display shows the board; each later one a view of it with a player of its own.

        A `Play` widget cannot be shown twice: each of its views answers a change of `playing`, and
        the second view pauses what the first started (ipywidgets 8), so ▶ would do nothing.
        """
        if not self._displayed:
            self._displayed = True
            return super()._repr_mimebundle_(**kwargs)
        player = self._new_player()
        self._players.append(player)
        return widgets.VBox(self._rows(player))._repr_mimebundle_(**kwargs)

    # --- plumbing ---------------------------------------------------------------------------------

    def _new_player(self) -> widgets.Play:
        """A player whose every tick is one move of the watched strategy."""
        player = widgets.Play(
            value=0, min=0, max=100_000, step=1, interval=1000 // self.speed.value, show_repeat=False
        )
        player.observe(self._on_tick, names="value")
        return player

    def _rows(self, player: widgets.Play) -> list[widgets.Widget]:
        """The board, its status, the controls, and a player's row: what one view of the board shows."""
        return [
            self.board_html,
            self.status,
            self._controls,
            widgets.HBox([player, self.speed, self.to_the_end_button, self.strategy_label]),
        ]

    def _pause(self) -> None:
        for player in self._players:
            player.playing = False

    def _play(self, key: str) -> bool:
        """Play a person's key (one of the key map's) on the game and show it."""
        if self.game.state() != "ongoing":
            self.last_message = self._over()
            self._render()
            return False
        moved = self.game.do_action(key)
        self.last_message = self._describe(key, moved)
        self._render()
        return moved

    def _after_strategy_move(self, key: object, moved: bool) -> None:
        """Count the watched strategy's moves that changed nothing, and say what its key did."""
        self._idle_moves = 0 if moved else self._idle_moves + 1
        self.last_message = self._describe(key, moved)

    def _describe(self, key: object, moved: bool) -> str:
        """What a key just did, for the status line (a strategy's answer may be no key at all)."""
        direction = self.game.direction_of(key)
        if direction is None:
            if isinstance(self.strategy, str):
                return self._sandbox_verdict()  # the sandbox's game ended on this key too
            if isinstance(key, str):
                return f"{key!r} is not a key of this board: game over"
            return f"the strategy returned {key!r}, not a key: game over"
        message = f"{key} {ARROWS[direction]} {direction}" + ("" if moved else ": nothing moved")
        if self.game.state() != "ongoing":
            message += f": game over, {self.game.state()} at move {self.game.moves}"
        return message

    def _over(self) -> str:
        """What a move after the end says (a late tick of ▶ too): the end stays in view, "game over" included."""
        return f"game over ({self.game.state()}) at move {self.game.moves}: press New game to play again"

    def _keys_hint(self) -> str:
        return " ".join(f"{self.game.key_for(direction)} {ARROWS[direction]}" for direction in DIRECTIONS)

    def _label_keys(self) -> None:
        """Label the buttons and the Keys box with the active key map."""
        for direction, button in self.buttons.items():
            key = self.game.key_for(direction)
            button.description = f"{key} {ARROWS[direction]}"
            button.tooltip = f"{direction} (key {key!r})"
        self.keys_box.placeholder = "type " + " ".join(map(self.game.key_for, DIRECTIONS))

    def _next_replayed_key(self, source: str) -> str:
        """The sandboxed strategy's next key; the sandbox plays a copy from here when there is no replay."""
        if self._replay is None:
            self._replay_result = execute_strategy(source, self.game.copy(), config=self.sandbox_config)
            self._replay = deque(self._replay_result.keys)
        if not self._replay:
            raise _ReplayOver(self._sandbox_verdict())
        return self._replay.popleft()

    def _sandbox_verdict(self) -> str:
        """How the sandbox ended the game it played, to show where its keys run out."""
        result = self._replay_result
        assert result is not None, "the sandbox plays before its keys are replayed"
        ended = f"ended the game: {result.state}" + (f" ({result.error})" if result.error else "")
        if result.steps and not result.keys:
            return f"the sandbox played {result.steps} keys, too many to replay, and {ended}"
        return f"the sandbox {ended}"

    def _stop(self, message: str) -> bool:
        """Show why watching stopped and stop the player; returns False (no move)."""
        self.last_message = message
        self._pause()
        self._render()
        return False

    def _new_game(self, seed: int | None) -> GameBoard:
        return from_config(self.game_config, seed=seed)

    def _on_keys_typed(self, change: dict) -> None:
        typed = change["new"]
        if not typed:
            return
        for key in typed:
            if not key.isspace():
                self.press(key)
        self.keys_box.value = ""

    def _on_speed(self, change: dict) -> None:
        for player in self._players:
            player.interval = 1000 // change["new"]

    def _on_tick(self, change: dict) -> None:
        if change["new"] > change["old"]:
            self.step()

    @contextmanager
    def _rendering_once(self) -> Iterator[None]:
        """Show nothing while the block plays, then the last position once (one message, not a thousand)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False
            self._render()

    def _render(self) -> None:
        if self._quiet:
            return
        game = self.game
        self.board_html.value = render_html(game.board())
        colour = {"ongoing": "#776e65", "success": "#2e7d32", "failed": "#c62828"}[game.state()]
        self.status.value = (
            f'<span style="font:14px sans-serif;color:#776e65">score <b>{game.score()}</b> · '
            f"moves <b>{game.moves}</b> · max tile <b>{game.max_tile()}</b> · target {game.target} · "
            f'state <b style="color:{colour}">{game.state()}</b></span><br>'
            f'<span style="font:12px sans-serif;color:#998">{html.escape(self.last_message)}</span>'
        )
        watched = html.escape(self.strategy_name) if self.strategy else "none (call watch(strategy))"
        self.strategy_label.value = f'<span style="font:12px sans-serif">strategy: {watched}</span>'


class _ReplayOver(Exception):
    """The sandboxed strategy's recorded keys are used up: the sandbox ended its game here."""


def _keys_text(name: str) -> str:
    """The keys of a key map in up, down, left, right order ("é u a i")."""
    key_of = keys_by_direction(name)
    return " ".join(key_of[direction] for direction in DIRECTIONS)


def _name_of(strategy: Strategy | str | None) -> str:
    if isinstance(strategy, str):
        return "generated code (sandboxed)"
    return getattr(strategy, "__name__", type(strategy).__name__) if strategy else ""
